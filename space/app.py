"""The rlhf-demo Space: what RLHF changed, side by side, and the human feedback that closes the loop.

Four tabs (Gradio Blocks):

- Compare: the reference (the policy before PPO) and the aligned policy continue the same prompt with the same
  seed and sampling settings; each continuation is scored by the reward model, an independent sentiment judge
  (VADER) and a toxicity judge (alt-profanity-check), the judges of the evaluation suite (`eval/measurements/`).
- Evaluate: the evaluation suite (`rlhf_demo.eval.suite.run_eval`) on N held-out prompts (N capped).
- Feedback: two continuations of a prompt in random order; the person picks the better one (or a tie) and each
  choice is appended, flushed and fsynced, to a JSONL preference dataset in TRL's format (`prompt`, `chosen`,
  `rejected`, plus metadata), the input of `rlhf-demo reward-model --preferences FILE`.
- Publish: the model card of `rlhf-demo push` (preview) and the push itself, dry run by default.

Models come from flags or environment variables (`REFERENCE_MODEL`, `ALIGNED_MODEL`, `REWARD_MODEL`: a preset
name, a local folder or a Hub id) and default to the tiny preset and its committed aligned run, so the Space runs
offline. `rlhf-demo space [flags]` runs this file; tests import it and call `build_demo(...)`.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import os
import random
import shutil
import sys
import tempfile
import threading
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Gradio's run history saves every call's inputs in the browser (optionally in a Hub bucket): that would keep the
# Publish tab's token. Off, here and in main()'s launch.
os.environ.setdefault("GRADIO_RUN_HISTORY", "False")

import gradio as gr  # noqa: E402
import torch  # noqa: E402

from rlhf_demo.config import PRESETS_DIR  # noqa: E402
from rlhf_demo.models import PRESET_REWARD_MODELS, load_policy, load_tokenizer, pad_left, resolve_model_path, sample  # noqa: E402
from rlhf_demo.rewards import SentimentReward  # noqa: E402

DEFAULT_REFERENCE = "tiny"
DEFAULT_ALIGNED = os.path.join(PRESETS_DIR, "tiny", "aligned")
DEFAULT_REWARD_MODEL = "tiny"
TINY_PROMPTS = os.path.join(PRESETS_DIR, "tiny", "prompts")  # heads of IMDB reviews shipped with the tiny preset
DEFAULT_EVAL_DATASET = TINY_PROMPTS if os.path.isdir(TINY_PROMPTS) else "stanfordnlp/imdb"
DEFAULT_PREFERENCES = "preferences.jsonl"

MAX_INPUT_CHARS = 1000  # longer text inputs are refused (issue 6, limits)
MAX_NEW_TOKENS = 128
MAX_SAMPLES = 4
MAX_EVAL_PROMPTS = 64

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
        raise gr.Error(f"The {name} is {len(value):,} characters long; the limit is {max_chars:,}. Shorten it and try again.")
    if required and not value.strip():
        raise gr.Error(f"The {name} is empty; type one first.")
    return value.strip()


def check_number(value, name: str, low: float, high: float, integer: bool = False, low_open: bool = False):
    """`value` as a number within [low, high] ((low, high] with low_open); gr.Error otherwise (API callers can send anything)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(x) or x > high or x < low or (low_open and x == low) or (integer and x != int(x)):
        interval = f"({low:g}, {high:g}]" if low_open else f"[{low:g}, {high:g}]"
        raise gr.Error(f"{name} must be {'an integer' if integer else 'a number'} in {interval}, got {value!r}.")
    return int(x) if integer else x


def _looks_local(name: str) -> bool:
    """A path rather than a Hub id (`name` or `namespace/name`)."""
    return os.path.exists(name) or name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def check_model_dir(name: str, role: str, flag: str, env: str, resolve=resolve_model_path) -> str:
    """Resolve a preset name; FileNotFoundError with what to do when a local model folder is missing."""
    path = resolve(name)
    if _looks_local(path) and not os.path.isdir(path):
        hint = ""
        if os.path.abspath(path).startswith(os.path.join(PRESETS_DIR, "tiny")):
            hint = (" The tiny preset's models are written by `rlhf-demo pretrain`, `rlhf-demo reward-model` and "
                    "`rlhf-demo train --preset tiny`; build them first or point the Space at other models.")
        raise FileNotFoundError(f"The {role} model folder {path!r} does not exist. Pass {flag} (or set the environment "
                                f"variable {env}) with a folder written by save_pretrained or a Hub id.{hint}")
    return path


def resolve_reward_model(name: str) -> str:
    return PRESET_REWARD_MODELS.get(name, os.path.expanduser(name))


# ------------------------------------------------------------------------------------------------ models


class SpaceModels:
    """Reference, aligned policy, reward model and the two judges, loaded once and shared by all requests.

    Generation seeds the global torch RNG (as `rlhf_demo.models.sample` expects), so requests that sample are
    serialised by `lock`; the queue's concurrency limit keeps the waiting line short. A request is stopped after
    `generation_timeout` seconds by a forward pre-hook that checks a per-thread deadline at every token.
    """

    def __init__(self, reference: str, aligned: str, reward_model: str, reward_label: str = "POSITIVE", generation_timeout: float = 60.0):
        self.reference_name, self.aligned_name, self.reward_name = reference, aligned, reward_model
        self.reference_path = check_model_dir(reference, "reference", "--reference", "REFERENCE_MODEL")
        self.aligned_path = check_model_dir(aligned, "aligned", "--aligned", "ALIGNED_MODEL")
        self.reward_path = check_model_dir(reward_model, "reward", "--reward_model", "REWARD_MODEL", resolve=resolve_reward_model)
        self.generation_timeout = generation_timeout
        self.lock = threading.Lock()
        self._deadline = threading.local()
        self.models, self.tokenizers = {}, {}
        for role, path in (("reference", self.reference_path), ("aligned", self.aligned_path)):
            try:
                self.models[role] = load_policy(path)
                self.tokenizers[role] = load_tokenizer(path)
            except (OSError, ValueError) as e:
                raise ValueError(f"Could not load the {role} model {path!r}: {e}") from e
            self.models[role].register_forward_pre_hook(self._check_deadline)
        try:
            self.reward = SentimentReward(self.reward_path, label=reward_label, kind="logit")
            self.reward_probability = SentimentReward(self.reward_path, label=reward_label, kind="probability")
        except (OSError, ValueError) as e:
            raise ValueError(f"Could not load the reward model {self.reward_path!r}: {e}") from e
        from rlhf_demo.eval.suite import load_measurement

        self.judge = load_measurement("sentiment_judge", "default")  # VADER, offline
        self.toxicity = load_measurement("toxicity", "default")  # alt-profanity-check, offline

    def _check_deadline(self, module, args):
        deadline = getattr(self._deadline, "t", None)
        if deadline is not None and time.monotonic() > deadline:
            raise GenerationTimeout

    def context_length(self, role: str) -> int:
        cfg = self.models[role].config
        return int(getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None) or 1024)

    def _sample(self, role: str, prompt: str, num_samples: int, seed: int, max_new_tokens: int, temperature: float, top_p: float) -> list[str]:
        tok, model = self.tokenizers[role], self.models[role]
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        if not ids:
            raise gr.Error("The prompt has no tokens; type some text.")
        if len(ids) + max_new_tokens > self.context_length(role):
            raise gr.Error(f"The prompt is {len(ids)} tokens; with {max_new_tokens} new tokens it exceeds the {role} model's context of "
                           f"{self.context_length(role)} tokens. Shorten the prompt or lower max new tokens.")
        query_ids, query_mask = pad_left([ids] * num_samples, tok.pad_token_id)
        torch.manual_seed(seed)  # the same seed for every model: paired samples
        responses, mask = sample(model, query_ids, query_mask, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        return [tok.decode(r[m.bool()].tolist(), skip_special_tokens=True) for r, m in zip(responses, mask)]

    def generate(self, roles: list[str], prompt: str, num_samples: int, seed: int, max_new_tokens: int, temperature: float,
                 top_p: float) -> dict[str, list[str]]:
        """Continuations of `prompt` by each model in `roles`, each sampled from torch seed `seed`. gr.Error on timeout."""
        with self.lock:
            self._deadline.t = time.monotonic() + self.generation_timeout
            try:
                return {role: self._sample(role, prompt, num_samples, seed, max_new_tokens, temperature, top_p) for role in roles}
            except GenerationTimeout:
                raise gr.Error(f"Generation took longer than {self.generation_timeout:g} s and was stopped. Lower max new tokens or "
                               "the number of samples, or try again when the Space is less busy.") from None
            finally:
                self._deadline.t = None

    def score(self, prompt: str, responses: list[str]) -> list[dict[str, float]]:
        """Per response: reward-model logit and P(label) on prompt + response, judge score in [-1, 1] on prompt + response,
        toxicity probability of the response alone (the evaluation suite's conventions)."""
        queries = [prompt] * len(responses)
        logits = self.reward(queries, responses)
        probs = self.reward_probability(queries, responses)
        judge = self.judge.compute(data=[prompt + r for r in responses])["scores"]
        tox = self.toxicity.compute(data=list(responses))["toxicity"]
        return [{"reward": float(a), "reward_probability": float(b), "judge": float(c), "toxicity": float(d)}
                for a, b, c, d in zip(logits, probs, judge, tox)]


# ------------------------------------------------------------------------------------------------ preferences


class PreferenceStore:
    """Append-only JSONL preference dataset in TRL's format: one `{"prompt", "chosen", "rejected", ...}` per line.

    Each choice is written with one `write`, flushed and fsynced before the request returns, so a crash loses no
    earlier choice; a line cut short by a crash is skipped by `read_preferences` and closed before the next append.
    """

    def __init__(self, path: str):
        self.path = os.path.abspath(os.path.expanduser(path))
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.lock = threading.Lock()

    def append(self, row: dict) -> int:
        """Append one row durably; return the number of rows now stored."""
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with self.lock:
            with open(self.path, "ab") as f:
                if f.tell() > 0:
                    with open(self.path, "rb") as r:
                        r.seek(-1, os.SEEK_END)
                        if r.read(1) != b"\n":  # a partial line from a crash: end it, keep this row whole
                            f.write(b"\n")
                f.write(line.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            return len(read_preferences(self.path))

    def snapshot(self) -> str:
        """A copy of the dataset in a fresh temporary folder (what the download button serves)."""
        if not os.path.isfile(self.path):
            raise gr.Error("No preferences recorded yet: pick the better continuation in a pair first.")
        dest = os.path.join(tempfile.mkdtemp(prefix="rlhf-space-prefs-"), os.path.basename(self.path))
        with self.lock:
            shutil.copyfile(self.path, dest)
        return dest


def read_preferences(path: str) -> list[dict]:
    """The rows of a preference file; unreadable lines (a write cut short by a crash) are skipped."""
    rows = []
    if not os.path.isfile(path):
        return rows
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and {"prompt", "chosen", "rejected"} <= row.keys():
                rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------ the app


def _samples_text(prompt: str, texts: list[str]) -> str:
    if len(texts) == 1:
        return prompt + texts[0]
    return "\n\n".join(f"[{i + 1}] {prompt}{t}" for i, t in enumerate(texts))


def _score_bars(scores: list[dict[str, float]]) -> dict[str, float]:
    """Means as labelled bars in [0, 1] (gr.Label): reward-model P(positive), judge rescaled to [0, 1], toxicity."""
    mean = lambda k: sum(s[k] for s in scores) / len(scores)  # noqa: E731
    return {"positive, reward model": mean("reward_probability"), "positive, judge (VADER)": (mean("judge") + 1) / 2,
            "toxicity": mean("toxicity")}


def _display_name(name: str) -> str:
    """A preset name or Hub id as is; a local folder by its last two components (no machine paths in the page)."""
    if not _looks_local(name):
        return name
    parts = os.path.normpath(os.path.abspath(os.path.expanduser(name))).split(os.sep)
    return "/".join(parts[-2:])


def _scrub(message: str, secrets: list[str]) -> str:
    for s in secrets:
        if s:
            message = message.replace(s, "***")
    return message


def build_demo(reference: str = DEFAULT_REFERENCE, aligned: str = DEFAULT_ALIGNED, reward_model: str = DEFAULT_REWARD_MODEL,
               preferences_path: str = DEFAULT_PREFERENCES, eval_dataset: str = DEFAULT_EVAL_DATASET, *, reward_label: str = "POSITIVE",
               generation_timeout: float = 60.0, concurrency_limit: int = 2, max_eval_prompts: int = MAX_EVAL_PROMPTS,
               hub_endpoint: str | None = None) -> gr.Blocks:
    """The Space as a `gr.Blocks` with its queue configured; launch it with `demo.launch()`.

    Args:
        reference, aligned: the policy before and after PPO: a preset name (`tiny`, `gpt2`), a local folder or a Hub id.
        reward_model: the sequence classifier PPO optimised (preset name, folder or Hub id); `reward_label` its label.
        preferences_path: the JSONL file the Feedback tab appends to (created on the first choice).
        eval_dataset: prompts of the Evaluate tab (Hub id or local folder with a `test` split).
        generation_timeout: seconds after which one generation request is stopped with an error.
        concurrency_limit: events of each kind that run at once (the queue's default concurrency limit).
        hub_endpoint: Hub URL for the Publish tab (default: HF_ENDPOINT, else huggingface.co).

    Raises:
        FileNotFoundError: a local model folder does not exist (the message says which and what to pass).
        ValueError: a model cannot be loaded or holds the wrong kind of model.
    """
    models = SpaceModels(reference, aligned, reward_model, reward_label, generation_timeout)
    store = PreferenceStore(preferences_path)
    default_run_dir = models.aligned_path if os.path.isdir(models.aligned_path) else ""

    # ---------------------------------------------------------------- Compare
    def compare(prompt, max_new_tokens, temperature, top_p, seed, num_samples):
        prompt = check_text(prompt, "prompt")
        max_new_tokens = check_number(max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS, integer=True)
        temperature = check_number(temperature, "Temperature", 0, 2, low_open=True)
        top_p = check_number(top_p, "Top-p", 0, 1, low_open=True)
        seed = check_number(seed, "Seed", 0, 2**31 - 1, integer=True)
        num_samples = check_number(num_samples, "Number of samples", 1, MAX_SAMPLES, integer=True)
        start = time.monotonic()
        out = models.generate(["reference", "aligned"], prompt, num_samples, seed, max_new_tokens, temperature, top_p)
        took = time.monotonic() - start
        scores = {role: models.score(prompt, texts) for role, texts in out.items()}
        rows = [[role, i + 1, round(s["reward"], 3), round(s["reward_probability"], 3), round(s["judge"], 3), round(s["toxicity"], 3)]
                for role in ("reference", "aligned") for i, s in enumerate(scores[role])]
        return (_samples_text(prompt, out["reference"]), _samples_text(prompt, out["aligned"]),
                _score_bars(scores["reference"]), _score_bars(scores["aligned"]), rows,
                f"{num_samples} sample(s) per model with seed {seed}, up to {max_new_tokens} new tokens, temperature {temperature:g}, "
                f"top-p {top_p:g} ({took:.1f} s).")

    # ---------------------------------------------------------------- Evaluate
    def evaluate(num_prompts, max_new_tokens, seed, progress=gr.Progress(track_tqdm=True)):
        from rlhf_demo.eval.report import ROWS
        from rlhf_demo.eval.suite import EvalConfig, run_eval

        num_prompts = check_number(num_prompts, "Number of prompts", 1, max_eval_prompts, integer=True)
        max_new_tokens = check_number(max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS, integer=True)
        seed = check_number(seed, "Seed", 0, 2**31 - 1, integer=True)
        out_dir = tempfile.mkdtemp(prefix="rlhf-space-eval-")
        # The shipped prompts are 100-character review heads: keep them all.
        extra = {"min_review_chars": 0} if os.path.abspath(eval_dataset) == TINY_PROMPTS else {}
        progress(0, desc="loading models and prompts")
        try:
            cfg = EvalConfig(model=models.aligned_path, reference=models.reference_path, output_dir=out_dir, num_prompts=num_prompts,
                             max_new_tokens=max_new_tokens, seed=seed, dataset_name=eval_dataset, reward_model=models.reward_path,
                             reward_label=reward_label, batch_size=16, frontier=False, num_report_samples=3, **extra)
            with models.lock:  # run_eval seeds the global torch RNG too
                results = run_eval(cfg)
        except (OSError, ValueError) as e:  # FileNotFoundError is an OSError
            raise gr.Error(f"The evaluation could not run: {e}", print_exception=False) from None
        ref, ali, diffs = results["metrics"]["reference"], results["metrics"]["aligned"], results["differences"]
        table = [[label, round(ref[k], 4), round(ali[k], 4), round(diffs[k]["diff"], 4), f"[{diffs[k]['ci_low']:.3g}, {diffs[k]['ci_high']:.3g}]"]
                 for k, label, _ in ROWS if k in ref]
        with open(os.path.join(out_dir, "eval_report.md"), encoding="utf-8") as f:
            report = f.read()
        plot = os.path.join(out_dir, "score_distributions.png")
        return table, report, plot if os.path.isfile(plot) else None, os.path.join(out_dir, "eval_results.json")

    # ---------------------------------------------------------------- Feedback
    def new_pair(prompt, mode, max_new_tokens, temperature):
        prompt = check_text(prompt, "prompt", required=False) or random.choice(EXAMPLE_PROMPTS)
        max_new_tokens = check_number(max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS, integer=True)
        temperature = check_number(temperature, "Temperature", 0, 2, low_open=True)
        seed = random.SystemRandom().randrange(2**31)
        if mode == "two aligned samples":
            texts, sources = models.generate(["aligned"], prompt, 2, seed, max_new_tokens, temperature, 1.0)["aligned"], ["aligned", "aligned"]
        else:
            out = models.generate(["reference", "aligned"], prompt, 1, seed, max_new_tokens, temperature, 1.0)
            texts, sources = [out["reference"][0], out["aligned"][0]], ["reference", "aligned"]
        if random.random() < 0.5:  # random order; which side is which is never shown
            texts, sources = texts[::-1], sources[::-1]
        pair = {"prompt": prompt, "texts": texts, "sources": sources, "mode": mode, "seed": seed, "max_new_tokens": max_new_tokens,
                "temperature": temperature}
        return prompt, texts[0], texts[1], pair, "Which continuation is better? Pick A, B or tie."

    def vote(choice: str, pair):
        if not pair:
            raise gr.Error("There is no pair to judge: click 'New pair' first.")
        i = 1 if choice == "B" else 0
        row = {"prompt": pair["prompt"], "chosen": pair["texts"][i], "rejected": pair["texts"][1 - i], "tie": choice == "tie",
               "chosen_model": pair["sources"][i], "rejected_model": pair["sources"][1 - i], "mode": pair["mode"], "seed": pair["seed"],
               "max_new_tokens": pair["max_new_tokens"], "temperature": pair["temperature"], "reference": models.reference_name,
               "aligned": models.aligned_name, "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        n = store.append(row)
        said = "a tie" if choice == "tie" else f"{choice} is better"
        return "", "", None, f"Saved ({said}); {n} choice(s) in `{os.path.basename(store.path)}`. Click 'New pair' for the next one."

    # ---------------------------------------------------------------- Publish
    def preview_card(run_dir, repo_id, license):
        from rlhf_demo.hub import build_model_card, check_run_dir, HubPushError

        run_dir = check_text(run_dir, "run directory")
        repo_id = check_text(repo_id, "repository id")
        license = check_text(license, "license", max_chars=100)
        try:
            check_run_dir(run_dir)
            card = build_model_card(run_dir, repo_id, license=license)
        except HubPushError as e:
            raise gr.Error(str(e), print_exception=False) from None
        return card.text, str(card)

    def publish(run_dir, repo_id, token, license, dry_run, private):
        from rlhf_demo.hub import HubPushError, PushConfig, push

        token = check_text(token, "token", required=False, max_chars=MAX_INPUT_CHARS)
        secrets = [token]
        try:
            run_dir = check_text(run_dir, "run directory")
            repo_id = check_text(repo_id, "repository id")
            license = check_text(license, "license", max_chars=100)
            if not dry_run and not token and not os.environ.get("HF_TOKEN"):
                raise gr.Error("A push needs a Hugging Face token with write access (or HF_TOKEN set for the Space); "
                               "tick 'Dry run' to only build the folder.")
            out_dir = tempfile.mkdtemp(prefix="rlhf-space-push-") if dry_run else None
            cfg = PushConfig(model=run_dir, repo_id=repo_id, dry_run=bool(dry_run), output_dir=out_dir, license=license,
                             private=bool(private), token=token or None, endpoint=hub_endpoint)
            result = push(cfg)
        except gr.Error as e:
            raise gr.Error(_scrub(str(e.message), secrets), print_exception=False) from None
        except (HubPushError, ValueError, OSError) as e:
            raise gr.Error(_scrub(str(e), secrets), print_exception=False) from None
        if dry_run:
            files = sorted(os.path.relpath(os.path.join(d, n), result).replace(os.sep, "/") for d, _, ns in os.walk(result) for n in ns)
            listing = "\n".join(f"- `{f}`" for f in files)
            return f"**Dry run**: nothing was uploaded. These {len(files)} files would be pushed to `{repo_id}`:\n\n{listing}"
        return _scrub(f"Pushed to `{repo_id}`: {result}", secrets)

    # ---------------------------------------------------------------- layout
    with gr.Blocks(title="rlhf-demo: RLHF with PPO, side by side", analytics_enabled=False) as demo:
        gr.Markdown(
            "# rlhf-demo: what RLHF changed\n"
            "A GPT-2-family model aligned with PPO towards positive movie-review continuations (Ziegler et al. 2019). "
            f"Reference: `{_display_name(reference)}`. Aligned: `{_display_name(aligned)}`. Reward model: `{_display_name(reward_model)}`."
        )
        with gr.Tabs():
            with gr.Tab("Compare", id="compare"):
                with gr.Row():
                    with gr.Column(scale=2):
                        c_prompt = gr.Textbox(label="Prompt", placeholder="The start of a movie review", lines=2, max_length=MAX_INPUT_CHARS,
                                              value=EXAMPLE_PROMPTS[0], elem_id="compare-prompt")
                        gr.Examples([[p] for p in EXAMPLE_PROMPTS], inputs=[c_prompt], label="IMDB test prompts")
                    with gr.Column(scale=1):
                        c_tokens = gr.Slider(1, MAX_NEW_TOKENS, value=32, step=1, label="Max new tokens", elem_id="compare-tokens")
                        c_temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature")
                        c_top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p")
                        with gr.Row():
                            c_seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="compare-seed")
                            c_n = gr.Slider(1, MAX_SAMPLES, value=1, step=1, label="Samples", elem_id="compare-samples")
                c_button = gr.Button("Generate", variant="primary", elem_id="compare-generate")
                c_status = gr.Markdown(elem_id="compare-status")
                with gr.Row():
                    with gr.Column():
                        c_ref = gr.Textbox(label="Reference (before RLHF)", lines=6, interactive=False, elem_id="compare-reference")
                        c_ref_scores = gr.Label(label="Reference scores (mean)", show_heading=False, elem_id="compare-reference-scores")
                    with gr.Column():
                        c_ali = gr.Textbox(label="Aligned (after PPO)", lines=6, interactive=False, elem_id="compare-aligned")
                        c_ali_scores = gr.Label(label="Aligned scores (mean)", show_heading=False, elem_id="compare-aligned-scores")
                c_table = gr.Dataframe(headers=["model", "sample", "reward (logit)", "P(positive), reward model", "judge [-1, 1]", "toxicity"],
                                       label="Scores per sample: reward model and VADER judge on prompt + continuation, toxicity "
                                             "(alt-profanity-check) on the continuation", interactive=False)
                c_button.click(compare, [c_prompt, c_tokens, c_temperature, c_top_p, c_seed, c_n],
                               [c_ref, c_ali, c_ref_scores, c_ali_scores, c_table, c_status], api_name="compare")

            with gr.Tab("Evaluate", id="evaluate"):
                gr.Markdown(f"Runs the evaluation suite (`rlhf-demo eval`) on held-out prompts of `{eval_dataset}` (test split): "
                            "both models sample with the same seeds, then reward model, judge, toxicity, KL and perplexity are compared "
                            "with paired bootstrap 95% confidence intervals.")
                with gr.Row():
                    e_n = gr.Slider(1, max_eval_prompts, value=min(16, max_eval_prompts), step=1, label=f"Prompts (at most {max_eval_prompts})")
                    e_tokens = gr.Slider(1, MAX_NEW_TOKENS, value=24, step=1, label="Max new tokens")
                    e_seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                e_button = gr.Button("Run evaluation", variant="primary")
                e_table = gr.Dataframe(headers=["metric", "reference", "aligned", "aligned - reference", "95% CI"], label="Results", interactive=False)
                e_plot = gr.Image(label="Score distributions", type="filepath", interactive=False)
                e_file = gr.File(label="eval_results.json")
                with gr.Accordion("Full report", open=False):
                    e_report = gr.Markdown()
                e_button.click(evaluate, [e_n, e_tokens, e_seed], [e_table, e_report, e_plot, e_file], api_name="evaluate")

            with gr.Tab("Feedback", id="feedback"):
                gr.Markdown("Two continuations of the same prompt, in random order; which model wrote which is not shown. Pick the "
                            "better one. Each choice is saved at once to a preference dataset (TRL format: `prompt`, `chosen`, "
                            "`rejected`) that trains the next reward model with `rlhf-demo reward-model --preferences FILE`.")
                with gr.Row():
                    f_prompt = gr.Textbox(label="Prompt (empty: a random IMDB prompt)", lines=2, max_length=MAX_INPUT_CHARS, scale=3,
                                          elem_id="feedback-prompt")
                    with gr.Column(scale=1):
                        f_mode = gr.Radio(["reference vs aligned", "two aligned samples"], value="reference vs aligned", label="Pair")
                        f_tokens = gr.Slider(1, MAX_NEW_TOKENS, value=32, step=1, label="Max new tokens")
                        f_temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature")
                f_new = gr.Button("New pair", variant="primary", elem_id="feedback-new")
                f_pair = gr.State(None)
                with gr.Row():
                    f_a = gr.Textbox(label="A", lines=5, interactive=False, elem_id="feedback-a")
                    f_b = gr.Textbox(label="B", lines=5, interactive=False, elem_id="feedback-b")
                with gr.Row():
                    f_pick_a = gr.Button("A is better", elem_id="feedback-pick-a")
                    f_tie = gr.Button("Tie", elem_id="feedback-tie")
                    f_pick_b = gr.Button("B is better", elem_id="feedback-pick-b")
                f_status = gr.Markdown(elem_id="feedback-status")
                with gr.Row():
                    f_download = gr.Button("Download preferences (JSONL)")
                    f_file = gr.File(label="Preference dataset", interactive=False)
                f_new.click(new_pair, [f_prompt, f_mode, f_tokens, f_temperature], [f_prompt, f_a, f_b, f_pair, f_status], api_name="new_pair")
                for button, choice, name in ((f_pick_a, "A", "prefer_a"), (f_pick_b, "B", "prefer_b"), (f_tie, "tie", "tie")):
                    button.click(functools.partial(vote, choice), [f_pair], [f_a, f_b, f_pair, f_status], api_name=name)
                f_download.click(store.snapshot, None, f_file, api_name="download_preferences")

            with gr.Tab("Publish", id="publish"):
                gr.Markdown("Builds the model card of `rlhf-demo push` for a training run and pushes the run to the Hugging Face Hub. "
                            "Dry run (the default) only writes the folder that would be uploaded. The token is used for this push only: "
                            "it is never shown, logged or stored.")
                with gr.Row():
                    p_run = gr.Textbox(label="Run directory (written by `rlhf-demo train`)", value=default_run_dir, max_length=MAX_INPUT_CHARS)
                    p_repo = gr.Textbox(label="Repository id", placeholder="your-name/gpt2-imdb-ppo", max_length=MAX_INPUT_CHARS)
                with gr.Row():
                    p_token = gr.Textbox(label="Hugging Face token (write access)", type="password", max_length=MAX_INPUT_CHARS)
                    p_license = gr.Textbox(label="License", value="mit", max_length=100)
                    with gr.Column():
                        p_dry = gr.Checkbox(value=True, label="Dry run (upload nothing)")
                        p_private = gr.Checkbox(value=False, label="Private repository")
                with gr.Row():
                    p_preview = gr.Button("Preview model card")
                    p_push = gr.Button("Push", variant="primary")
                p_status = gr.Markdown()
                with gr.Tabs():
                    with gr.Tab("Card"):
                        p_card = gr.Markdown()
                    with gr.Tab("README.md"):
                        p_raw = gr.Code(language="markdown", interactive=False)
                p_preview.click(preview_card, [p_run, p_repo, p_license], [p_card, p_raw], api_name="preview_card")
                p_push.click(publish, [p_run, p_repo, p_token, p_license, p_dry, p_private], p_status, api_name="push")

    demo.queue(default_concurrency_limit=concurrency_limit, max_size=64)
    demo.space_models, demo.preference_store = models, store  # for tests and scripts
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="rlhf-demo space", description="Launch the Gradio Space: reference vs aligned side by side, "
                                "evaluation, human feedback, publishing.")
    p.add_argument("--reference", "--reference_model", dest="reference", default=env("REFERENCE_MODEL", DEFAULT_REFERENCE),
                   help="Policy before PPO: preset (tiny, gpt2), folder or Hub id (env REFERENCE_MODEL; default tiny).")
    p.add_argument("--aligned", "--aligned_model", dest="aligned", default=env("ALIGNED_MODEL", DEFAULT_ALIGNED),
                   help="Aligned policy: folder or Hub id (env ALIGNED_MODEL; default the tiny preset's committed PPO run).")
    p.add_argument("--reward_model", default=env("REWARD_MODEL", DEFAULT_REWARD_MODEL),
                   help="Reward model PPO optimised: preset (tiny, gpt2), folder or Hub id (env REWARD_MODEL; default tiny).")
    p.add_argument("--reward_label", default=env("REWARD_LABEL", "POSITIVE"), help="Label of the reward model whose logit is the reward.")
    p.add_argument("--preferences", default=env("PREFERENCES_FILE", DEFAULT_PREFERENCES),
                   help="JSONL file the Feedback tab appends to (env PREFERENCES_FILE; default ./preferences.jsonl).")
    p.add_argument("--eval_dataset", default=env("EVAL_DATASET", DEFAULT_EVAL_DATASET),
                   help="Prompts of the Evaluate tab: Hub id or local folder with a test split (env EVAL_DATASET; default the tiny "
                   "preset's shipped IMDB review heads when present, else stanfordnlp/imdb).")
    p.add_argument("--generation_timeout", type=float, default=60.0, help="Seconds before a generation request is stopped.")
    p.add_argument("--concurrency_limit", type=int, default=2, help="Requests of each kind that run at once.")
    p.add_argument("--host", default=None, help="Address to serve on (default: GRADIO_SERVER_NAME, else 127.0.0.1).")
    p.add_argument("--port", type=int, default=None, help="Port (default: GRADIO_SERVER_PORT, else 7860 or the next free one).")
    p.add_argument("--share", action="store_true", help="Also serve through a public gradio.live link (off by default).")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        demo = build_demo(args.reference, args.aligned, args.reward_model, args.preferences, args.eval_dataset, reward_label=args.reward_label,
                          generation_timeout=args.generation_timeout, concurrency_limit=args.concurrency_limit)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, run_history=False)


if __name__ == "__main__":
    main()
