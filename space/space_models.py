"""The Space's models: the reference, the aligned policy, the reward model and the two judges of the evaluation
suite, loaded once (`SpaceModels`) and shared by every request; sampled one request at a time, streamed as the
continuations grow (`SpaceModels.stream`), stopped after the generation timeout (`GenerationTimeout`) or when nobody
waits any more, and scored as the evaluation suite scores."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterator

import gradio as gr

from rlhf_demo import sampling
from rlhf_demo.config import PRESETS_DIR
from rlhf_demo.gguf_models import is_gguf_name
from rlhf_demo.models import PRESET_POLICIES, PRESET_REWARD_MODELS, check_model_path, load_causal_lm, resolve_model_path
from rlhf_demo.rewards import ClassifierReward


class GenerationTimeout(Exception):
    """Raised from a forward pre-hook when a generation request outlives its deadline."""


class GenerationStopped(Exception):
    """Raised from a forward pre-hook when nobody waits for a streamed generation any more (the visitor left)."""


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


def timeout_message(timeout: float) -> str:
    """What a visitor reads when a generation outlived the Space's generation timeout."""
    return (f"Generation took longer than {timeout:g} s and was stopped. Lower max new tokens or the number of "
            "samples, or try again when the Space is less busy.")


@dataclasses.dataclass
class Streamed:
    """One update of `SpaceModels.stream`: every role's continuations so far (empty before its model starts), the
    state ("running", "done" or "timeout"), and the role sampling now with the tokens it has sampled (None, 0 when
    none is)."""

    texts: dict[str, list[str]]
    state: str
    role: str | None = None
    tokens: int = 0


class _TokenCapture:
    """The tokens one `sampling.generate` call has sampled so far, read from the policy's inputs: the sampler calls
    the model once for the prompt (a causal LM) or the decoder start token (an encoder-decoder), then once per step
    with the tokens sampled at the step before (`input_ids`, or `decoder_input_ids`, of shape (B, 1)). Each row stops
    at its EOS, as the sampler masks what follows it. The last token never reaches the model: the final texts are
    what `generate` returns."""

    def __init__(self, rows: int, eos_token_id: int | None):
        self.ids: list[list[int]] = [[] for _ in range(rows)]
        self.ended = [False] * rows
        self.eos_token_id, self.calls, self.done = eos_token_id, 0, False
        self._lock = threading.Lock()

    def forward(self, kwargs: dict) -> None:
        """Record the tokens of one forward call (the sampling thread)."""
        self.calls += 1
        fed = kwargs.get("decoder_input_ids", kwargs.get("input_ids"))
        if self.calls == 1 or fed is None or fed.dim() != 2 or fed.shape[1] != 1 or fed.shape[0] != len(self.ids):
            return
        with self._lock:
            for row, token in enumerate(fed[:, 0].tolist()):
                if not self.ended[row]:
                    self.ids[row].append(token)
                    self.ended[row] = token == self.eos_token_id

    @property
    def tokens(self) -> int:
        """Tokens sampled per row so far."""
        return max(self.calls - 1, 0)

    def texts(self, tokenizer) -> list[str]:
        """The rows decoded so far (a byte-level token that ends mid-character shows once the character is whole)."""
        with self._lock:
            ids = [list(row) for row in self.ids]
        return [t.rstrip("\ufffd") for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]


class SpaceModels:
    """Reference, aligned policy, reward model and the two judges, loaded once and shared by all requests.

    Generation seeds the global torch RNG (`rlhf_demo.sampling.generate` with a seed), so requests that sample are
    serialised by `lock`; the queue's concurrency limit keeps the waiting line short. `stream` samples in a thread of
    its own and yields the continuations as they grow: a forward pre-hook on each policy (`_before_forward`) reads
    the tokens the sampler feeds back at every step, and stops the request after `generation_timeout` seconds (the
    text so far is kept) or once nobody waits for it. `generate` is the same without the partial texts.

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
        self._request = threading.local()  # the sampling thread's deadline, stop event and token capture
        self.models, self.tokenizers = {}, {}
        for role, path, flag in (("reference", self.reference_path, "--reference"),
                                 ("aligned", self.aligned_path, "--aligned")):
            self.models[role], self.tokenizers[role] = load_causal_lm(path, f"{role} model ({flag})")
            self.models[role].register_forward_pre_hook(self._before_forward, with_kwargs=True)
        try:
            self.reward = ClassifierReward(self.reward_path, label=reward_label)
        except OSError as e:
            raise FileNotFoundError(f"Could not load the reward model {self.reward_path!r}: {e}") from e
        except ValueError as e:
            raise ValueError(f"Could not load the reward model {self.reward_path!r}: {e}") from e
        from rlhf_demo.eval.suite import load_measurement  # the judges of the evaluation suite

        self.judge = load_measurement("sentiment_judge", "default")  # VADER, offline
        self.toxicity = load_measurement("toxicity", "default")  # alt-profanity-check, offline

    def _before_forward(self, module, args, kwargs):
        """Each forward call of a policy during `stream`, one per sampled token: record the tokens fed back; past
        the deadline, raise GenerationTimeout; when nobody waits any more, GenerationStopped."""
        request = self._request
        capture = getattr(request, "capture", None)
        if capture is not None:  # first, so that a stopped request keeps the token sampled last
            capture.forward(kwargs)
        deadline = getattr(request, "deadline", None)
        if deadline is not None and time.monotonic() > deadline:
            raise GenerationTimeout
        stop = getattr(request, "stop", None)
        if stop is not None and stop.is_set():
            raise GenerationStopped

    def stream(self, roles: list[str], prompt: str, num_samples: int, seed: int, max_new_tokens: int,
               temperature: float, top_p: float, interval: float = 0.15) -> Iterator[Streamed]:
        """`num_samples` continuations of `prompt` by each model in `roles` (one after the other), all from torch seed
        `seed` (paired), as `Streamed` updates about every `interval` seconds while they grow; the last one has state
        "done" (the texts `rlhf_demo.sampling.generate` returned) or "timeout" (the request outlived
        `generation_timeout`: the texts so far, a model not yet started with empty ones).

        Closing the generator (a visitor who leaves) stops the sampling at its next token.

        Raises gr.Error when the prompt has no tokens or does not fit a model's context with `max_new_tokens`.
        """
        texts = {role: [""] * num_samples for role in roles}
        captures: dict[str, _TokenCapture] = {}
        finished, stop, failure = threading.Event(), threading.Event(), []

        def work():
            with self.lock:
                request = self._request
                request.deadline, request.stop = time.monotonic() + self.generation_timeout, stop
                try:
                    for role in roles:
                        tok = self.tokenizers[role]
                        captures[role] = request.capture = _TokenCapture(num_samples, tok.eos_token_id)
                        texts[role] = sampling.generate(self.models[role], tok, [prompt] * num_samples,
                                                        max_new_tokens=max_new_tokens, temperature=temperature,
                                                        top_p=top_p, stop_at_eos=True, seed=seed).texts
                        captures[role].done = True
                except Exception as e:  # GenerationTimeout, GenerationStopped, a prompt the model cannot take
                    failure.append(e)
                finally:
                    request.deadline = request.stop = request.capture = None
                    finished.set()

        def update(state: str) -> Streamed:
            now = {role: texts[role] if role not in captures or captures[role].done
                   else captures[role].texts(self.tokenizers[role]) for role in roles}
            running = next((r for r in roles if r in captures and not captures[r].done), None)
            return Streamed(now, state, running, captures[running].tokens if running else 0)

        threading.Thread(target=work, name="rlhf-space-sampling", daemon=True).start()
        try:
            while not finished.wait(interval):
                yield update("running")
            error = failure[0] if failure else None
            if isinstance(error, GenerationTimeout):
                yield update("timeout")
                return
            if isinstance(error, ValueError):  # an empty prompt, or one too long for the model's context
                role = next((r for r in roles if r in captures and not captures[r].done), roles[0])
                raise gr.Error(f"The {role} model cannot continue this prompt: {error}", print_exception=False)
            if error is not None:
                raise error
            yield update("done")
        finally:
            stop.set()  # the sampling thread stops at its next token if it still runs

    def generate(self, roles: list[str], prompt: str, num_samples: int, seed: int, max_new_tokens: int,
                 temperature: float, top_p: float) -> dict[str, list[str]]:
        """`stream`'s final texts: `num_samples` continuations of `prompt` by each model in `roles`, from torch seed
        `seed` (paired).

        Raises gr.Error when the prompt has no tokens, does not fit a model's context with `max_new_tokens`, or the
        request outlives `generation_timeout`.
        """
        *_, last = self.stream(roles, prompt, num_samples, seed, max_new_tokens, temperature, top_p)
        if last.state == "timeout":
            raise gr.Error(timeout_message(self.generation_timeout), print_exception=False)
        return last.texts

    def score(self, prompt: str, responses: list[str]) -> list[dict[str, float]]:
        """Per response: reward-model logit and P(label) on prompt + response (one forward pass), judge score in
        [-1, 1] on prompt + response, toxicity probability of the response alone (the evaluation suite's
        conventions)."""
        logits, probs = self.reward.logit_and_probability([prompt] * len(responses), responses)
        judge = self.judge.compute(data=[prompt + r for r in responses])["scores"]
        tox = self.toxicity.compute(data=list(responses))["toxicity"]
        return [{"reward": float(a), "reward_probability": float(b), "judge": float(c), "toxicity": float(d)}
                for a, b, c, d in zip(logits, probs, judge, tox)]
