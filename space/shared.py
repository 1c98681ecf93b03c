"""What every tab of the Space shares: its limits and defaults, what it says about its task (`SpaceText`, a preset's
`space:` section), input checks, the temporary folders its requests write (deleted again, see `TempFolders`), the
pairs already judged (`JudgedPairs`) and the one reason of a failure that a visitor may read (`visitor_reason`). The
models the tabs share are `space/space_models.py`'s `SpaceModels`."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
import threading
import time
import weakref

import gradio as gr

from rlhf_demo.config import TINY_PROMPTS, SpaceConfig, load_yaml_config, preset_path  # noqa: F401 (TINY_PROMPTS)
from rlhf_demo.portable import portable_text

# The default Space's models and files: `rlhf-demo space`'s defaults (SpaceConfig), for the builders' signatures.
_DEFAULTS = SpaceConfig()
DEFAULT_REFERENCE, DEFAULT_ALIGNED = _DEFAULTS.reference, _DEFAULTS.aligned
DEFAULT_REWARD_MODEL = _DEFAULTS.reward_model
DEFAULT_EVAL_DATASET, DEFAULT_PREFERENCES = _DEFAULTS.eval_dataset, _DEFAULTS.preferences
DEFAULT_RUNS_DIR = _DEFAULTS.runs_dir  # the training runs the Publish tab offers

MAX_INPUT_CHARS = 1000  # longer text inputs are refused
MAX_NEW_TOKENS = 128
MAX_SAMPLES = 4
MAX_EVAL_PROMPTS = 64
MAX_SEED = 2**31 - 1


# ------------------------------------------------------------------------------------------------ what it says


def score_label_for(reward: str) -> str:
    """What a higher reward means, in a word or two (the score bars' and the table's label), from a reward spec of
    `rlhf-demo train --reward` (`KIND=TARGET[@LABEL]`) or a classifier's label alone: `sentiment` -> its label
    (POSITIVE -> "positive"; `nothate`, the non-hate label of Meta's hate-speech classifier -> "non-toxic"),
    `toxicity` -> "non-toxic", `keyword` -> the word, `preference` -> "preferred", `vader` -> "positive", a Python
    function -> "rewarded"."""
    from rlhf_demo.rewards import REWARD_KINDS, split_reward_spec

    kind, label = "sentiment", reward
    if reward.partition("=")[0].partition(":")[0] in REWARD_KINDS and ("=" in reward or reward.startswith("vader")):
        spec = split_reward_spec(reward)
        kind, label = spec.kind, spec.target if spec.kind == "keyword" else spec.label or "POSITIVE"
    named = {"toxicity": "non-toxic", "preference": "preferred", "vader": "positive", "python": "rewarded",
             "keyword": label}
    if kind in named:
        return named[kind]
    return {"nothate": "non-toxic", "not_toxic": "non-toxic"}.get(label.lower(), label.lower())


@dataclasses.dataclass(frozen=True)
class SpaceText:
    """What the Space says about its task: the keys of a preset's `space:` section besides the models.

    `title` (the page's heading and the browser tab's title), `description` (the task, one or two sentences, under
    the heading), `prompt_placeholder` and `example_prompts` (with their `examples_label`) of the Compare tab, and
    `score_label`: what a higher reward means (`score_label_for`), written on the score bars and in the table.
    """

    title: str
    description: str
    prompt_placeholder: str
    examples_label: str
    example_prompts: tuple[str, ...]
    score_label: str

    KEYS = ("title", "description", "prompt_placeholder", "examples_label", "example_prompts", "score_label")

    @classmethod
    def from_config(cls, conf: dict, reward_label: str | None = None, where: str = "the Space config") -> SpaceText:
        """The text of `conf` (a `space:` section or a `--config` mapping): each key it lacks is the default Space's
        (`DEFAULT_TEXT`, the tiny preset's), except `score_label`, which then follows `reward_label`
        (`score_label_for`) when one is given.

        Raises ValueError (one line naming the key and `where`) for a value of the wrong type: a text that is not a
        non-empty string, or `example_prompts` that is not a non-empty list of such strings of at most
        MAX_INPUT_CHARS characters.
        """
        values = {"score_label": score_label_for(reward_label)} if reward_label else {}
        for key in cls.KEYS:
            if key not in conf:
                continue
            value = conf[key]
            if key == "example_prompts":
                ok = (isinstance(value, list) and value
                      and all(isinstance(p, str) and p.strip() and len(p) <= MAX_INPUT_CHARS for p in value))
                if not ok:
                    raise ValueError(f"example_prompts in {where} must be a list of prompts (non-empty strings of at "
                                     f"most {MAX_INPUT_CHARS} characters), got {value!r}.")
                value = tuple(value)
            elif not (isinstance(value, str) and value.strip()):
                raise ValueError(f"{key} in {where} must be a non-empty string, got {value!r}.")
            values[key] = value
        return dataclasses.replace(DEFAULT_TEXT, **values)


# The default Space is the tiny preset's: its `space:` section says what the page says.
DEFAULT_TEXT = SpaceText(**{k: (tuple(v) if k == "example_prompts" else v)
                            for k, v in load_yaml_config(preset_path("tiny"), "space").items() if k in SpaceText.KEYS})
# The first words of IMDB test-split reviews (Maas et al. 2011), held out from PPO's training prompts.
EXAMPLE_PROMPTS = list(DEFAULT_TEXT.example_prompts)


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
