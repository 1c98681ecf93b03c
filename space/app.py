"""The rlhf-demo Space: what RLHF changed, side by side, and the human feedback that closes the loop.

Four tabs (Gradio Blocks), one builder function each, called from `build_demo`:

- Compare (`build_compare_tab`): the reference (the policy before PPO) and the aligned policy continue the same
  prompt with the same seed and sampling settings; each continuation is scored by the reward model, an independent
  sentiment judge (VADER) and a toxicity judge (alt-profanity-check), the judges of the evaluation suite.
- Evaluate (`build_evaluate_tab`): the evaluation suite (`rlhf_demo.eval.suite.run_eval`) on N held-out prompts
  (N capped).
- Feedback (`build_feedback_tab`): two continuations of a prompt in random order; the person picks the better one
  (or a tie) and each choice is appended durably (`rlhf_demo.feedback.PreferenceStore`) to a JSONL file in TRL's
  preference format (`prompt`, `chosen`, `rejected`, plus metadata), loadable with
  `datasets.load_dataset("json", data_files=FILE)` to train the next reward model.
- Publish (`build_publish_tab`): the model card of `rlhf-demo push` (preview) and the push itself, dry run by
  default.

Models come from flags or environment variables (`REFERENCE_MODEL`, `ALIGNED_MODEL`, `REWARD_MODEL`: a preset
name, a local folder or a Hub id) and default to the tiny preset and its committed aligned run, so the Space runs
offline. Installed as `rlhf_demo.space.app`: `rlhf-demo space [flags]` calls `main(argv)`; on a Hugging Face
Space, `python app.py` runs it from the `space/` folder (its requirements install rlhf-demo); tests call
`build_demo(...)`.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import math
import os
import random
import sys
import tempfile
import threading
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Gradio's run history saves every call's inputs in the browser (optionally in a Hub bucket): that would keep the
# Publish tab's token. Off, here and in main()'s launch.
os.environ.setdefault("GRADIO_RUN_HISTORY", "False")

import gradio as gr  # noqa: E402

from rlhf_demo import sampling  # noqa: E402
from rlhf_demo.card import build_model_card  # noqa: E402
from rlhf_demo.config import PRESETS_DIR, EvalConfig, PushConfig  # noqa: E402
from rlhf_demo.feedback import PreferenceStore  # noqa: E402
from rlhf_demo.hub import HubPushError, check_run_dir, push, scrub_secrets  # noqa: E402
from rlhf_demo.models import (  # noqa: E402
    PRESET_POLICIES,
    PRESET_REWARD_MODELS,
    check_model_path,
    is_local_path,
    load_causal_lm,
    resolve_model_path,
)
from rlhf_demo.rewards import SentimentReward  # noqa: E402

DEFAULT_REFERENCE = "tiny"
DEFAULT_ALIGNED = os.path.join(PRESETS_DIR, "tiny", "aligned")
DEFAULT_REWARD_MODEL = "tiny"
TINY_PROMPTS = os.path.join(PRESETS_DIR, "tiny", "prompts")  # heads of IMDB reviews shipped with the tiny preset
DEFAULT_EVAL_DATASET = TINY_PROMPTS if os.path.isdir(TINY_PROMPTS) else "stanfordnlp/imdb"
DEFAULT_PREFERENCES = "preferences.jsonl"

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
    hint = ""
    if os.path.abspath(path).startswith(os.path.join(PRESETS_DIR, "tiny")):
        hint = (" The tiny preset's models are written by `rlhf-demo pretrain`, `rlhf-demo reward-model` and "
                "`rlhf-demo train --preset tiny`; build them first or point the Space at other models.")
    raise FileNotFoundError(f"The {role} model folder {path!r} does not exist. Pass {flag} (or set the environment "
                            f"variable {env}) with a folder written by save_pretrained or a Hub id.{hint}")


def _display_name(name: str) -> str:
    """A preset name or Hub id as is; a local path by its last two components (no machine paths in the page)."""
    if not is_local_path(name):
        return name
    parts = os.path.normpath(os.path.abspath(os.path.expanduser(name))).split(os.sep)
    return "/".join(parts[-2:])


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


# ------------------------------------------------------------------------------------------------ Compare


def _samples_text(prompt: str, texts: list[str]) -> str:
    if len(texts) == 1:
        return prompt + texts[0]
    return "\n\n".join(f"[{i + 1}] {prompt}{t}" for i, t in enumerate(texts))


def _score_bars(scores: list[dict[str, float]]) -> dict[str, float]:
    """Means as labelled bars in [0, 1] (gr.Label): reward-model P(positive), judge rescaled to [0, 1], toxicity."""
    def mean(key):
        return sum(s[key] for s in scores) / len(scores)

    return {"positive, reward model": mean("reward_probability"), "positive, judge (VADER)": (mean("judge") + 1) / 2,
            "toxicity": mean("toxicity")}


def compare(models: SpaceModels, prompt, max_new_tokens, temperature, top_p, seed, num_samples):
    """Compare tab: paired samples of both models with their scores (texts, bars, table, status line)."""
    prompt = check_text(prompt, "prompt")
    max_new_tokens = check_number(max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS, integer=True)
    temperature = check_number(temperature, "Temperature", 0, 2, low_open=True)
    top_p = check_number(top_p, "Top-p", 0, 1, low_open=True)
    seed = check_number(seed, "Seed", 0, MAX_SEED, integer=True)
    num_samples = check_number(num_samples, "Number of samples", 1, MAX_SAMPLES, integer=True)
    start = time.monotonic()
    out = models.generate(["reference", "aligned"], prompt, num_samples, seed, max_new_tokens, temperature, top_p)
    took = time.monotonic() - start
    scores = {role: models.score(prompt, texts) for role, texts in out.items()}
    rows = [[role, i + 1, *(round(s[k], 3) for k in ("reward", "reward_probability", "judge", "toxicity"))]
            for role in ("reference", "aligned") for i, s in enumerate(scores[role])]
    status = (f"{num_samples} sample(s) per model with seed {seed}, up to {max_new_tokens} new tokens, "
              f"temperature {temperature:g}, top-p {top_p:g} ({took:.1f} s).")
    return (_samples_text(prompt, out["reference"]), _samples_text(prompt, out["aligned"]),
            _score_bars(scores["reference"]), _score_bars(scores["aligned"]), rows, status)


def build_compare_tab(models: SpaceModels) -> None:
    """The Compare tab: a prompt and sampling controls; both models' continuations and scores side by side."""
    with gr.Tab("Compare", id="compare"):
        with gr.Row():
            with gr.Column(scale=2):
                prompt = gr.Textbox(label="Prompt", placeholder="The start of a movie review", lines=2,
                                    max_length=MAX_INPUT_CHARS, value=EXAMPLE_PROMPTS[0], elem_id="compare-prompt")
                gr.Examples([[p] for p in EXAMPLE_PROMPTS], inputs=[prompt], label="IMDB test prompts")
            with gr.Column(scale=1):
                tokens = gr.Slider(1, MAX_NEW_TOKENS, value=32, step=1, label="Max new tokens",
                                   elem_id="compare-tokens")
                temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature")
                top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p")
                with gr.Row():
                    seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="compare-seed")
                    n = gr.Slider(1, MAX_SAMPLES, value=1, step=1, label="Samples", elem_id="compare-samples")
        button = gr.Button("Generate", variant="primary", elem_id="compare-generate")
        status = gr.Markdown(elem_id="compare-status")
        with gr.Row():
            with gr.Column():
                ref = gr.Textbox(label="Reference (before RLHF)", lines=6, interactive=False,
                                 elem_id="compare-reference")
                ref_scores = gr.Label(label="Reference scores (mean)", show_heading=False,
                                      elem_id="compare-reference-scores")
            with gr.Column():
                ali = gr.Textbox(label="Aligned (after PPO)", lines=6, interactive=False, elem_id="compare-aligned")
                ali_scores = gr.Label(label="Aligned scores (mean)", show_heading=False,
                                      elem_id="compare-aligned-scores")
        table = gr.Dataframe(
            headers=["model", "sample", "reward (logit)", "P(positive), reward model", "judge [-1, 1]", "toxicity"],
            label="Scores per sample: reward model and VADER judge on prompt + continuation, toxicity "
                  "(alt-profanity-check) on the continuation", interactive=False)
        button.click(functools.partial(compare, models), [prompt, tokens, temperature, top_p, seed, n],
                     [ref, ali, ref_scores, ali_scores, table, status], api_name="compare")


# ------------------------------------------------------------------------------------------------ Evaluate


def evaluate(models: SpaceModels, eval_dataset: str, max_eval_prompts: int, num_prompts, max_new_tokens, seed,
             progress=gr.Progress(track_tqdm=True)):  # noqa: B008 (gradio's way to ask for a progress bar)
    """Evaluate tab: `run_eval` on `num_prompts` held-out prompts (table, report, plot, eval_results.json)."""
    from rlhf_demo.eval.report import ROWS
    from rlhf_demo.eval.suite import run_eval

    num_prompts = check_number(num_prompts, "Number of prompts", 1, max_eval_prompts, integer=True)
    max_new_tokens = check_number(max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS, integer=True)
    seed = check_number(seed, "Seed", 0, MAX_SEED, integer=True)
    out_dir = tempfile.mkdtemp(prefix="rlhf-space-eval-")
    # The shipped prompts are 100-character review heads: keep them all.
    extra = {"min_review_chars": 0} if os.path.abspath(eval_dataset) == TINY_PROMPTS else {}
    progress(0, desc="loading models and prompts")
    try:
        cfg = EvalConfig(model=models.aligned_path, reference=models.reference_path, output_dir=out_dir,
                         num_prompts=num_prompts, max_new_tokens=max_new_tokens, seed=seed, dataset_name=eval_dataset,
                         reward_model=models.reward_path, reward_label=models.reward_label, batch_size=16,
                         frontier=False, num_report_samples=3, **extra)
        with models.lock:  # run_eval seeds the global torch RNG too
            results = run_eval(cfg)
    except (OSError, ValueError) as e:  # FileNotFoundError is an OSError
        raise gr.Error(f"The evaluation could not run: {e}", print_exception=False) from None
    ref, ali, diffs = results["metrics"]["reference"], results["metrics"]["aligned"], results["differences"]
    table = [[label, round(ref[k], 4), round(ali[k], 4), round(diffs[k]["diff"], 4),
              f"[{diffs[k]['ci_low']:.3g}, {diffs[k]['ci_high']:.3g}]"] for k, label, _ in ROWS if k in ref]
    with open(os.path.join(out_dir, "eval_report.md"), encoding="utf-8") as f:
        report = f.read()
    plot = os.path.join(out_dir, "score_distributions.png")
    return table, report, plot if os.path.isfile(plot) else None, os.path.join(out_dir, "eval_results.json")


def build_evaluate_tab(models: SpaceModels, eval_dataset: str, max_eval_prompts: int) -> None:
    """The Evaluate tab: the evaluation suite on at most `max_eval_prompts` prompts of `eval_dataset`."""
    with gr.Tab("Evaluate", id="evaluate"):
        gr.Markdown("Runs the evaluation suite (`rlhf-demo eval`) on held-out prompts of "
                    f"`{_display_name(eval_dataset)}` (test split): both models sample with the same seeds, then "
                    "reward model, judge, toxicity, KL and perplexity are compared with paired bootstrap 95% "
                    "confidence intervals.")
        with gr.Row():
            n = gr.Slider(1, max_eval_prompts, value=min(16, max_eval_prompts), step=1,
                          label=f"Prompts (at most {max_eval_prompts})")
            tokens = gr.Slider(1, MAX_NEW_TOKENS, value=24, step=1, label="Max new tokens")
            seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
        button = gr.Button("Run evaluation", variant="primary")
        table = gr.Dataframe(headers=["metric", "reference", "aligned", "aligned - reference", "95% CI"],
                             label="Results", interactive=False)
        plot = gr.Image(label="Score distributions", type="filepath", interactive=False)
        results = gr.File(label="eval_results.json")
        with gr.Accordion("Full report", open=False):
            report = gr.Markdown()
        button.click(functools.partial(evaluate, models, eval_dataset, max_eval_prompts), [n, tokens, seed],
                     [table, report, plot, results], api_name="evaluate")


# ------------------------------------------------------------------------------------------------ Feedback


def new_pair(models: SpaceModels, prompt, mode, max_new_tokens, temperature):
    """Feedback tab: two continuations of `prompt` (a random IMDB prompt when empty) in random order."""
    prompt = check_text(prompt, "prompt", required=False) or random.choice(EXAMPLE_PROMPTS)
    max_new_tokens = check_number(max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS, integer=True)
    temperature = check_number(temperature, "Temperature", 0, 2, low_open=True)
    seed = random.SystemRandom().randrange(MAX_SEED + 1)
    if mode == "two aligned samples":
        texts = models.generate(["aligned"], prompt, 2, seed, max_new_tokens, temperature, 1.0)["aligned"]
        sources = ["aligned", "aligned"]
    else:
        out = models.generate(["reference", "aligned"], prompt, 1, seed, max_new_tokens, temperature, 1.0)
        texts, sources = [out["reference"][0], out["aligned"][0]], ["reference", "aligned"]
    if random.random() < 0.5:  # random order; which side is which is never shown
        texts, sources = texts[::-1], sources[::-1]
    pair = {"prompt": prompt, "texts": texts, "sources": sources, "mode": mode, "seed": seed,
            "max_new_tokens": max_new_tokens, "temperature": temperature}
    return prompt, texts[0], texts[1], pair, "Which continuation is better? Pick A, B or tie."


def vote(models: SpaceModels, store: PreferenceStore, choice: str, pair):
    """Feedback tab: append the choice ("A", "B" or "tie") on `pair` to the preference file; clear the pair."""
    if not pair:
        raise gr.Error("There is no pair to judge: click 'New pair' first.")
    i = 1 if choice == "B" else 0
    row = {"prompt": pair["prompt"], "chosen": pair["texts"][i], "rejected": pair["texts"][1 - i],
           "tie": choice == "tie", "chosen_model": pair["sources"][i], "rejected_model": pair["sources"][1 - i],
           "mode": pair["mode"], "seed": pair["seed"], "max_new_tokens": pair["max_new_tokens"],
           "temperature": pair["temperature"], "reference": models.reference_name, "aligned": models.aligned_name,
           "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    try:
        n = store.append(row)
    except (OSError, ValueError) as e:
        raise gr.Error(f"The choice could not be saved: {e}", print_exception=False) from None
    said = "a tie" if choice == "tie" else f"{choice} is better"
    return ("", "", None, f"Saved ({said}); {n} choice(s) in `{os.path.basename(store.path)}`. "
            "Click 'New pair' for the next one.")


def download_preferences(store: PreferenceStore) -> str:
    """Feedback tab: a copy of the preference file to download; gr.Error when nothing is recorded yet."""
    try:
        return store.snapshot()
    except FileNotFoundError as e:
        raise gr.Error(str(e), print_exception=False) from None


def build_feedback_tab(models: SpaceModels, store: PreferenceStore) -> None:
    """The Feedback tab: blind A/B pairs; each choice goes to `store` (TRL's preference format)."""
    with gr.Tab("Feedback", id="feedback"):
        gr.Markdown("Two continuations of the same prompt, in random order; which model wrote which is not shown. "
                    "Pick the better one. Each choice is saved at once to a JSONL preference dataset in TRL's format "
                    "(`prompt`, `chosen`, `rejected`), loadable with `datasets.load_dataset(\"json\", "
                    "data_files=...)` to train the next reward model (drop the rows marked `tie` first).")
        with gr.Row():
            prompt = gr.Textbox(label="Prompt (empty: a random IMDB prompt)", lines=2, max_length=MAX_INPUT_CHARS,
                                scale=3, elem_id="feedback-prompt")
            with gr.Column(scale=1):
                mode = gr.Radio(["reference vs aligned", "two aligned samples"], value="reference vs aligned",
                                label="Pair")
                tokens = gr.Slider(1, MAX_NEW_TOKENS, value=32, step=1, label="Max new tokens")
                temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature")
        new = gr.Button("New pair", variant="primary", elem_id="feedback-new")
        pair = gr.State(None)
        with gr.Row():
            a = gr.Textbox(label="A", lines=5, interactive=False, elem_id="feedback-a")
            b = gr.Textbox(label="B", lines=5, interactive=False, elem_id="feedback-b")
        with gr.Row():
            pick_a = gr.Button("A is better", elem_id="feedback-pick-a")
            tie = gr.Button("Tie", elem_id="feedback-tie")
            pick_b = gr.Button("B is better", elem_id="feedback-pick-b")
        status = gr.Markdown(elem_id="feedback-status")
        with gr.Row():
            download = gr.Button("Download preferences (JSONL)")
            file = gr.File(label="Preference dataset", interactive=False)
        new.click(functools.partial(new_pair, models), [prompt, mode, tokens, temperature],
                  [prompt, a, b, pair, status], api_name="new_pair")
        for button, choice, name in ((pick_a, "A", "prefer_a"), (pick_b, "B", "prefer_b"), (tie, "tie", "tie")):
            button.click(functools.partial(vote, models, store, choice), [pair], [a, b, pair, status], api_name=name)
        download.click(functools.partial(download_preferences, store), None, file, api_name="download_preferences")


# ------------------------------------------------------------------------------------------------ Publish


def preview_card(run_dir, repo_id, license):
    """Publish tab: the model card `rlhf-demo push` would write (rendered text, README.md source)."""
    run_dir = check_text(run_dir, "run directory")
    repo_id = check_text(repo_id, "repository id")
    license = check_text(license, "license", max_chars=100)
    try:
        check_run_dir(run_dir)
        card = build_model_card(run_dir, repo_id, license=license)
    except HubPushError as e:
        raise gr.Error(str(e), print_exception=False) from None
    return card.text, str(card)


def publish(hub_endpoint: str | None, run_dir, repo_id, token, license, dry_run, private):
    """Publish tab: `rlhf-demo push` of `run_dir` (dry run: the file list); no error or status shows the token."""
    token = check_text(token, "token", required=False, max_chars=MAX_INPUT_CHARS)
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
        raise gr.Error(scrub_secrets(str(e.message), [token]), print_exception=False) from None
    except (HubPushError, ValueError, OSError) as e:
        raise gr.Error(scrub_secrets(str(e), [token]), print_exception=False) from None
    if dry_run:
        files = sorted(os.path.relpath(os.path.join(d, n), result).replace(os.sep, "/")
                       for d, _, names in os.walk(result) for n in names)
        listing = "\n".join(f"- `{f}`" for f in files)
        return (f"**Dry run**: nothing was uploaded. These {len(files)} files would be pushed to `{repo_id}`:"
                f"\n\n{listing}")
    return scrub_secrets(f"Pushed to `{repo_id}`: {result}", [token])


def build_publish_tab(default_run_dir: str, hub_endpoint: str | None) -> None:
    """The Publish tab: model card preview and push (dry run by default) to `hub_endpoint` (None: the Hub)."""
    with gr.Tab("Publish", id="publish"):
        gr.Markdown("Builds the model card of `rlhf-demo push` for a training run and pushes the run to the Hugging "
                    "Face Hub. Dry run (the default) only writes the folder that would be uploaded. The token is used "
                    "for this push only: it is never shown, logged or stored.")
        with gr.Row():
            run = gr.Textbox(label="Run directory (written by `rlhf-demo train`)", value=default_run_dir,
                             max_length=MAX_INPUT_CHARS)
            repo = gr.Textbox(label="Repository id", placeholder="your-name/gpt2-imdb-ppo", max_length=MAX_INPUT_CHARS)
        with gr.Row():
            token = gr.Textbox(label="Hugging Face token (write access)", type="password", max_length=MAX_INPUT_CHARS)
            license = gr.Textbox(label="License", value="mit", max_length=100)
            with gr.Column():
                dry = gr.Checkbox(value=True, label="Dry run (upload nothing)")
                private = gr.Checkbox(value=False, label="Private repository")
        with gr.Row():
            preview_button = gr.Button("Preview model card")
            push_button = gr.Button("Push", variant="primary")
        status = gr.Markdown()
        with gr.Tabs():
            with gr.Tab("Card"):
                card = gr.Markdown()
            with gr.Tab("README.md"):
                raw = gr.Code(language="markdown", interactive=False)
        preview_button.click(preview_card, [run, repo, license], [card, raw], api_name="preview_card")
        push_button.click(functools.partial(publish, hub_endpoint), [run, repo, token, license, dry, private], status,
                          api_name="push")


# ------------------------------------------------------------------------------------------------ the app


def build_demo(reference: str = DEFAULT_REFERENCE, aligned: str = DEFAULT_ALIGNED,
               reward_model: str = DEFAULT_REWARD_MODEL, preferences_path: str = DEFAULT_PREFERENCES,
               eval_dataset: str = DEFAULT_EVAL_DATASET, *, reward_label: str = "POSITIVE",
               generation_timeout: float = 60.0, concurrency_limit: int = 2, max_eval_prompts: int = MAX_EVAL_PROMPTS,
               hub_endpoint: str | None = None) -> gr.Blocks:
    """The Space as a `gr.Blocks` with its queue configured; launch it with `demo.launch()`.

    Args:
        reference, aligned: the policy before and after PPO: a preset name (`tiny`, `gpt2`), a local folder or a
            Hub id.
        reward_model: the sequence classifier PPO optimised (preset name, folder or Hub id); `reward_label` its label.
        preferences_path: the JSONL file the Feedback tab appends to (created on the first choice).
        eval_dataset: prompts of the Evaluate tab (Hub id or local folder with a `test` split).
        generation_timeout: seconds after which one generation request is stopped with an error.
        concurrency_limit: events of each kind that run at once (the queue's default concurrency limit).
        max_eval_prompts: the most prompts one evaluation may use.
        hub_endpoint: Hub URL for the Publish tab (default: HF_ENDPOINT, else huggingface.co).

    Raises:
        FileNotFoundError: a local model folder does not exist (the message says which and what to pass), or a Hub
            id cannot be loaded.
        ValueError: a model holds the wrong kind of model or lacks `reward_label`.
    """
    models = SpaceModels(reference, aligned, reward_model, reward_label, generation_timeout)
    store = PreferenceStore(preferences_path)
    default_run_dir = models.aligned_path if os.path.isdir(models.aligned_path) else ""
    with gr.Blocks(title="rlhf-demo: RLHF with PPO, side by side", analytics_enabled=False) as demo:
        gr.Markdown(
            "# rlhf-demo: what RLHF changed\n"
            "A GPT-2-family model aligned with PPO towards positive movie-review continuations (Ziegler et al. 2019). "
            f"Reference: `{_display_name(reference)}`. Aligned: `{_display_name(aligned)}`. "
            f"Reward model: `{_display_name(reward_model)}`."
        )
        with gr.Tabs():
            build_compare_tab(models)
            build_evaluate_tab(models, eval_dataset, max_eval_prompts)
            build_feedback_tab(models, store)
            build_publish_tab(default_run_dir, hub_endpoint)
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=64)
    demo.space_models, demo.preference_store = models, store  # for tests and scripts
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags of `rlhf-demo space` (each with an environment variable for a hosted Space)."""
    env = os.environ.get
    p = argparse.ArgumentParser(prog="rlhf-demo space", description="Launch the Gradio Space: reference vs aligned "
                                "side by side, evaluation, human feedback, publishing.")
    p.add_argument("--reference", "--reference_model", dest="reference",
                   default=env("REFERENCE_MODEL", DEFAULT_REFERENCE),
                   help="Policy before PPO: preset (tiny, gpt2), folder or Hub id (env REFERENCE_MODEL; default tiny).")
    p.add_argument("--aligned", "--aligned_model", dest="aligned", default=env("ALIGNED_MODEL", DEFAULT_ALIGNED),
                   help="Aligned policy: folder or Hub id (env ALIGNED_MODEL; default the tiny preset's committed "
                   "PPO run).")
    p.add_argument("--reward_model", default=env("REWARD_MODEL", DEFAULT_REWARD_MODEL),
                   help="Reward model PPO optimised: preset (tiny, gpt2), folder or Hub id (env REWARD_MODEL; "
                   "default tiny).")
    p.add_argument("--reward_label", default=env("REWARD_LABEL", "POSITIVE"),
                   help="Label of the reward model whose logit is the reward (env REWARD_LABEL).")
    p.add_argument("--preferences", default=env("PREFERENCES_FILE", DEFAULT_PREFERENCES),
                   help="JSONL file the Feedback tab appends to (env PREFERENCES_FILE; default ./preferences.jsonl).")
    p.add_argument("--eval_dataset", default=env("EVAL_DATASET", DEFAULT_EVAL_DATASET),
                   help="Prompts of the Evaluate tab: Hub id or local folder with a test split (env EVAL_DATASET; "
                   "default the tiny preset's shipped IMDB review heads when present, else stanfordnlp/imdb).")
    p.add_argument("--generation_timeout", type=float, default=60.0,
                   help="Seconds before a generation request is stopped.")
    p.add_argument("--concurrency_limit", type=int, default=2, help="Requests of each kind that run at once.")
    p.add_argument("--host", default=None, help="Address to serve on (default: GRADIO_SERVER_NAME, else 127.0.0.1).")
    p.add_argument("--port", type=int, default=None,
                   help="Port (default: GRADIO_SERVER_PORT, else 7860 or the next free one).")
    p.add_argument("--share", action="store_true",
                   help="Also serve through a public gradio.live link (off by default).")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Parse `argv` (default: sys.argv[1:]), build the Space and serve it until interrupted.

    A missing or unloadable model ends the program with one line `error: ...` (SystemExit), no traceback.
    """
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        demo = build_demo(args.reference, args.aligned, args.reward_model, args.preferences, args.eval_dataset,
                          reward_label=args.reward_label, generation_timeout=args.generation_timeout,
                          concurrency_limit=args.concurrency_limit)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, run_history=False)


if __name__ == "__main__":
    main()
