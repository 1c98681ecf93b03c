"""What every tab of the Space shares: its limits and defaults, input checks, the models (loaded once), the
temporary folders its requests write (deleted again, see `TempFolders`), the pairs already judged (`JudgedPairs`)
and the one reason of a failure that a visitor may read (`visitor_reason`)."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import time
import weakref

import gradio as gr

from rlhf_demo import sampling
from rlhf_demo.config import PRESETS_DIR
from rlhf_demo.gguf_models import is_gguf_name
from rlhf_demo.models import PRESET_POLICIES, PRESET_REWARD_MODELS, check_model_path, load_causal_lm, resolve_model_path
from rlhf_demo.portable import portable_text
from rlhf_demo.rewards import SentimentReward

DEFAULT_REFERENCE = "tiny"
DEFAULT_ALIGNED = os.path.join(PRESETS_DIR, "tiny", "aligned")
DEFAULT_REWARD_MODEL = "tiny"
TINY_PROMPTS = os.path.join(PRESETS_DIR, "tiny", "prompts")  # heads of IMDB reviews shipped with the tiny preset
DEFAULT_EVAL_DATASET = TINY_PROMPTS if os.path.isdir(TINY_PROMPTS) else "stanfordnlp/imdb"
DEFAULT_PREFERENCES = "preferences.jsonl"
DEFAULT_RUNS_DIR = "runs"  # the training runs the Publish tab offers

MAX_INPUT_CHARS = 1000  # longer text inputs are refused
MAX_NEW_TOKENS = 128
MAX_SAMPLES = 4
MAX_EVAL_PROMPTS = 64
MAX_SEED = 2**31 - 1

# The first words of IMDB test-split reviews (Maas et al. 2011), held out from PPO's training prompts.
EXAMPLE_PROMPTS = [
    "This is a big disappointment. The",
    "Superb story of a dedicated young",
    "Tim Burton the man behind the",
    "Well, I have to say, this",
    "I own this movie. I've seen",
    "Low budget mystery. A shot rattles",
    "Following on from the huge success",
    "This is a title in search",
]


class GenerationTimeout(Exception):
    """Raised from a forward pre-hook when a generation request outlives its deadline."""


# ------------------------------------------------------------------------------------------------ inputs


def check_text(value, name: str, *, required: bool = True, max_chars: int = MAX_INPUT_CHARS) -> str:
    """`value` as a stripped string; gr.Error when it is empty (if required) or longer than `max_chars`."""
    value = "" if value is None else str(value)
    if len(value) > max_chars:
        raise gr.Error(f"The {name} is {len(value):,} characters long; the limit is {max_chars:,}. "
                       "Shorten it and try again.")
    if required and not value.strip():
        raise gr.Error(f"The {name} is empty; type one first.")
    return value.strip()


def check_number(value, name: str, low: float, high: float, integer: bool = False, low_open: bool = False):
    """`value` as a number within [low, high] ((low, high] with `low_open`); gr.Error otherwise (API callers can
    send anything)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(x) or x > high or x < low or (low_open and x == low) or (integer and x != int(x)):
        interval = f"({low:g}, {high:g}]" if low_open else f"[{low:g}, {high:g}]"
        raise gr.Error(f"{name} must be {'an integer' if integer else 'a number'} in {interval}, got {value!r}.")
    return int(x) if integer else x


def visitor_reason(error: BaseException) -> str:
    """Why `error` happened, in words an anonymous visitor may read: an OSError's description ("Read-only file
    system", "No space left on device"), never its file names; any other error's message with this machine's paths
    rewritten by `rlhf_demo.portable.portable_text`. The full error belongs in the server's log (stderr)."""
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    return portable_text(str(error)) or type(error).__name__


def check_model_dir(name: str, role: str, flag: str, env: str, presets: dict[str, str] = PRESET_POLICIES) -> str:
    """`name` resolved (`rlhf_demo.models.check_model_path`): a preset's model, a local path or a Hub id.

    Raises:
        FileNotFoundError: a local model folder does not exist; the message names the flag and the environment
            variable to set, and how the tiny preset's models are built.
    """
    try:
        return check_model_path(name, f"{role} model", presets)
    except FileNotFoundError:
        path = resolve_model_path(name, presets)
        if is_gguf_name(path):  # a model inside a wheel that is not installed: its message says how to install it
            raise
    hint = ""
    if os.path.abspath(path).startswith(os.path.join(PRESETS_DIR, "tiny")):
        hint = (" The tiny preset's models are written by `rlhf-demo pretrain`, `rlhf-demo reward-model` and "
                "`rlhf-demo train --preset tiny`; build them first or point the Space at other models.")
    raise FileNotFoundError(f"The {role} model folder {path!r} does not exist. Pass {flag} (or set the environment "
                            f"variable {env}) with a folder written by save_pretrained or a Hub id.{hint}")


# ------------------------------------------------------------------------------------------------ models


class SpaceModels:
    """Reference, aligned policy, reward model and the two judges, loaded once and shared by all requests.

    Generation seeds the global torch RNG (`rlhf_demo.sampling.generate` with a seed), so requests that sample are
    serialised by `lock`; the queue's concurrency limit keeps the waiting line short. A request is stopped after
    `generation_timeout` seconds by a forward pre-hook that checks a per-thread deadline at every token.

    Raises:
        FileNotFoundError: a local model folder does not exist, or a Hub id cannot be loaded (e.g. offline).
        ValueError: a folder holds the wrong kind of model, or `reward_label` is not a label of the reward model.
    """

    def __init__(self, reference: str, aligned: str, reward_model: str, reward_label: str = "POSITIVE",
                 generation_timeout: float = 60.0):
        self.reference_name, self.aligned_name, self.reward_name = reference, aligned, reward_model
        self.reward_label = reward_label
        self.reference_path = check_model_dir(reference, "reference", "--reference", "REFERENCE_MODEL")
        self.aligned_path = check_model_dir(aligned, "aligned", "--aligned", "ALIGNED_MODEL")
        self.reward_path = check_model_dir(reward_model, "reward", "--reward_model", "REWARD_MODEL",
                                           PRESET_REWARD_MODELS)
        self.generation_timeout = generation_timeout
        self.lock = threading.Lock()
        self._deadline = threading.local()
        self.models, self.tokenizers = {}, {}
        for role, path, flag in (("reference", self.reference_path, "--reference"),
                                 ("aligned", self.aligned_path, "--aligned")):
            self.models[role], self.tokenizers[role] = load_causal_lm(path, f"{role} model ({flag})")
            self.models[role].register_forward_pre_hook(self._check_deadline)
        try:
            self.reward = SentimentReward(self.reward_path, label=reward_label)
        except OSError as e:
            raise FileNotFoundError(f"Could not load the reward model {self.reward_path!r}: {e}") from e
        except ValueError as e:
            raise ValueError(f"Could not load the reward model {self.reward_path!r}: {e}") from e
        from rlhf_demo.eval.suite import load_measurement  # the judges of the evaluation suite

        self.judge = load_measurement("sentiment_judge", "default")  # VADER, offline
        self.toxicity = load_measurement("toxicity", "default")  # alt-profanity-check, offline

    def _check_deadline(self, module, args):
        deadline = getattr(self._deadline, "t", None)
        if deadline is not None and time.monotonic() > deadline:
            raise GenerationTimeout

    def generate(self, roles: list[str], prompt: str, num_samples: int, seed: int, max_new_tokens: int,
                 temperature: float, top_p: float) -> dict[str, list[str]]:
        """`num_samples` continuations of `prompt` by each model in `roles`, all from torch seed `seed` (paired).

        Raises gr.Error when the prompt has no tokens, does not fit a model's context with `max_new_tokens`, or the
        request outlives `generation_timeout`.
        """
        out = {}
        with self.lock:
            self._deadline.t = time.monotonic() + self.generation_timeout
            try:
                for role in roles:
                    out[role] = sampling.generate(self.models[role], self.tokenizers[role], [prompt] * num_samples,
                                                  max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                                  stop_at_eos=True, seed=seed).texts
            except ValueError as e:  # an empty prompt, or one too long for the model's context
                raise gr.Error(f"The {role} model cannot continue this prompt: {e}", print_exception=False) from None
            except GenerationTimeout:
                raise gr.Error(f"Generation took longer than {self.generation_timeout:g} s and was stopped. Lower max "
                               "new tokens or the number of samples, or try again when the Space is less busy.",
                               print_exception=False) from None
            finally:
                self._deadline.t = None
        return out

    def score(self, prompt: str, responses: list[str]) -> list[dict[str, float]]:
        """Per response: reward-model logit and P(label) on prompt + response (one forward pass), judge score in
        [-1, 1] on prompt + response, toxicity probability of the response alone (the evaluation suite's
        conventions)."""
        logits, probs = self.reward.logit_and_probability([prompt] * len(responses), responses)
        judge = self.judge.compute(data=[prompt + r for r in responses])["scores"]
        tox = self.toxicity.compute(data=list(responses))["toxicity"]
        return [{"reward": float(a), "reward_probability": float(b), "judge": float(c), "toxicity": float(d)}
                for a, b, c, d in zip(logits, probs, judge, tox)]


# ------------------------------------------------------------------------------------------------ temporary folders


class TempFolders:
    """The temporary folders of the Space's requests (evaluations, preference downloads, dry runs), all under one
    root folder, so that a public Space does not fill its disk: each `new()` first deletes the folders older than
    `max_age` seconds (Gradio has copied a result into its own cache, which `gr.Blocks(delete_cache=...)` empties,
    long before), and `close()` deletes the root, as does the end of the process."""

    def __init__(self, max_age: float = 600.0):
        self.root = tempfile.mkdtemp(prefix="rlhf-space-")
        self.max_age = max_age
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.root, ignore_errors=True)

    def new(self, prefix: str = "") -> str:
        """A new empty folder under the root (after sweeping the old ones)."""
        with self._lock:
            self.sweep()
            os.makedirs(self.root, exist_ok=True)
            return tempfile.mkdtemp(prefix=prefix, dir=self.root)

    def sweep(self, max_age: float | None = None) -> int:
        """Delete the folders older than `max_age` (default: the instance's) seconds; return how many."""
        age = self.max_age if max_age is None else max_age
        now, removed = time.time(), 0
        for name in os.listdir(self.root) if os.path.isdir(self.root) else []:
            path = os.path.join(self.root, name)
            try:
                if now - os.path.getmtime(path) >= age:
                    if os.path.isdir(path):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        os.remove(path)
                    removed += 1
            except OSError:  # deleted meanwhile
                continue
        return removed

    def folders(self) -> list[str]:
        """The folders under the root now."""
        return sorted(os.listdir(self.root)) if os.path.isdir(self.root) else []

    def close(self) -> None:
        """Delete the root folder and everything under it."""
        self._finalizer()


# ------------------------------------------------------------------------------------------------ judged pairs


class PairAlreadyJudged(Exception):
    """Raised by `JudgedPairs.record_once` for a pair that was judged before."""


class JudgedPairs:
    """The ids of the Feedback tab's pairs that have been judged, shared by every session and thread of the Space, so
    each pair is recorded once: the first vote on it wins, later ones (a double click, simultaneous API calls, the
    other buttons) are refused. A Gradio session's state cannot do this alone: every handler that starts before the
    first one has cleared the pair sees the pair too.

    The lock is held while the vote is saved, so a second vote waits for the first one's outcome: if the first could
    not be saved, the pair is not marked and the next vote may record it. The newest `max_pairs` ids are kept (a
    session's pair is cleared once judged, so only very old ids could come back, and only from the session holding
    that pair).
    """

    def __init__(self, max_pairs: int = 100_000):
        self.max_pairs = max_pairs
        self._ids: dict[str, None] = {}  # insertion-ordered: the oldest first
        self._lock = threading.Lock()

    def record_once(self, pair_id: str, save):
        """Call `save()` and mark `pair_id` judged when it returns; return what it returned.

        Raises:
            PairAlreadyJudged: `pair_id` was judged before (`save` is not called).
            whatever `save` raises (the pair stays unjudged).
        """
        with self._lock:
            if pair_id in self._ids:
                raise PairAlreadyJudged(pair_id)
            result = save()
            self._ids[pair_id] = None
            while len(self._ids) > self.max_pairs:
                del self._ids[next(iter(self._ids))]
            return result

    def __contains__(self, pair_id: str) -> bool:
        with self._lock:
            return pair_id in self._ids

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)
