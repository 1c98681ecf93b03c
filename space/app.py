"""The rlhf-demo Space: what RLHF changed, side by side, and the human feedback that closes the loop.

Five tabs (Gradio Blocks), one builder function each, called from `build_demo`:

- Compare (`build_compare_tab`): the reference (the policy before PPO) and the aligned policy continue the same
  prompt with the same seed and sampling settings; each continuation is scored by the reward model, an independent
  sentiment judge (VADER) and a toxicity judge (alt-profanity-check), the judges of the evaluation suite.
- Evaluate (`build_evaluate_tab`): the evaluation suite (`rlhf_demo.eval.suite.run_eval`) on N held-out prompts
  (N capped).
- Feedback (`build_feedback_tab`): two continuations of a prompt in random order; the person picks the better one
  (or a tie) and each choice is appended durably (`rlhf_demo.feedback.PreferenceStore`) to a JSONL file in TRL's
  preference format (`prompt`, `chosen`, `rejected`, plus metadata), loadable with
  `datasets.load_dataset("json", data_files=FILE)` to train the next reward model; with `--preferences_dataset` it
  is also kept in a Hub dataset (`rlhf_demo.feedback.HubPreferenceStore`), so it survives restarts.
- Publish (`space/publish.py`): the model card of `rlhf-demo push` for one of the Space's own runs, and its push
  with the visitor's own Hugging Face login (never the Space's token); dry run by default.
- Methods (`space/methods.py`): PPO, DPO, RLOO, GRPO and best-of-n on the same feedback, the reward-KL frontier of
  `benchmarks/frontier.py` and each method's responses to a held-out prompt (static: no model runs).

Safe to leave public: text inputs, tokens, samples and evaluation prompts are capped; the events that run a model
share one concurrency slot (`concurrency_id="models"`), so simultaneous visitors wait in the queue (64 at most) in
order instead of starving the CPU; each generation is stopped after a timeout; temporary folders are deleted
(`space/shared.py`'s `TempFolders`, `gr.Blocks(delete_cache=...)`); no answer shows a server path.

Models come from flags, environment variables (`REFERENCE_MODEL`, `ALIGNED_MODEL`, `REWARD_MODEL`: a preset name, a
local folder or a Hub id) or a `--config` file, and default to the tiny preset and its committed aligned run, so
the Space runs offline. Installed as `rlhf_demo.space.app`: `rlhf-demo space [flags]` calls `main(argv)`; a Space
deployed by `rlhf-demo push --space` runs it from its `app.py` with its `space_config.yaml`; tests call
`build_demo(...)`.
"""



from __future__ import annotations

import argparse
import datetime
import functools
import os
import random
import shutil
import sys
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Gradio's run history saves every call's inputs in the browser (optionally in a Hub bucket). Off, here and in
# main()'s launch.
os.environ.setdefault("GRADIO_RUN_HISTORY", "False")

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
    EXAMPLE_PROMPTS,
    MAX_EVAL_PROMPTS,
    MAX_INPUT_CHARS,
    MAX_NEW_TOKENS,
    MAX_SAMPLES,
    MAX_SEED,
    TINY_PROMPTS,
    GenerationTimeout,
    SpaceModels,
    TempFolders,
    check_number,
    check_text,
)
from rlhf_demo.models import display_name  # noqa: E402

__all__ = ["EXAMPLE_PROMPTS", "GenerationTimeout", "SpaceModels", "build_demo", "main", "parse_args"]


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
        # Generation holds the models' lock: one model-bound request at a time (all tabs share the "models"
        # concurrency id), the others wait in the queue, in order, instead of starving the CPU.
        button.click(functools.partial(compare, models), [prompt, tokens, temperature, top_p, seed, n],
                     [ref, ali, ref_scores, ali_scores, table, status], api_name="compare", concurrency_id="models",
                     concurrency_limit=1)


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
        # One model-bound request at a time, all tabs together (concurrency_id "models"), in the queue's order.
        button.click(functools.partial(evaluate, models, eval_dataset, max_eval_prompts, temp,
                                       prompt_options=prompt_options), [n, tokens, seed],
                     [table, report, plot, results], api_name="evaluate", concurrency_id="models", concurrency_limit=1)


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
           "temperature": pair["temperature"], "reference": display_name(models.reference_name),
           "aligned": display_name(models.aligned_name),
           "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    try:
        n = store.append(row)
    except (OSError, ValueError) as e:
        raise gr.Error(f"The choice could not be saved: {e}", print_exception=False) from None
    said = "a tie" if choice == "tie" else f"{choice} is better"
    return ("", "", None, f"Saved ({said}); {n} choice(s) in `{os.path.basename(store.path)}`: "
            f"{summarize_preferences(store.rows())} Click 'New pair' for the next one.")


def download_preferences(store: PreferenceStore, temp: TempFolders) -> str:
    """Feedback tab: a copy of the preference file to download, in a folder of `temp` (deleted later); gr.Error
    when nothing is recorded yet."""
    try:
        snapshot = store.snapshot()
    except FileNotFoundError as e:
        raise gr.Error(str(e), print_exception=False) from None
    dest = os.path.join(temp.new("preferences-"), os.path.basename(snapshot))
    shutil.move(snapshot, dest)
    shutil.rmtree(os.path.dirname(snapshot), ignore_errors=True)  # the snapshot's own temporary folder
    return dest


NEXT_STEPS = """**Next: train a reward model on these choices and align against it** (with the downloaded file):

```bash
rlhf-demo reward-model --preferences preferences.jsonl --model_name_or_path REFERENCE --output_dir runs/rm
rlhf-demo train --model_name_or_path ALIGNED --reward preference=runs/rm --value_model_name_or_path runs/rm \\
    --output_dir runs/next-round
```
`REFERENCE` and `ALIGNED` are the models shown above (ties are dropped; `rlhf-demo preferences` adds simulated
comparisons, `rlhf-demo loop` runs whole rounds)."""


def build_feedback_tab(models: SpaceModels, store: PreferenceStore, temp: TempFolders) -> None:
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
        gr.Markdown(NEXT_STEPS)
        new.click(functools.partial(new_pair, models), [prompt, mode, tokens, temperature],
                  [prompt, a, b, pair, status], api_name="new_pair", concurrency_id="models", concurrency_limit=1)
        for button, choice, name in ((pick_a, "A", "prefer_a"), (pick_b, "B", "prefer_b"), (tie, "tie", "tie")):
            button.click(functools.partial(vote, models, store, choice), [pair], [a, b, pair, status], api_name=name)
        download.click(functools.partial(download_preferences, store, temp), None, file,
                       api_name="download_preferences")


# ------------------------------------------------------------------------------------------------ the app


def build_demo(reference: str = DEFAULT_REFERENCE, aligned: str = DEFAULT_ALIGNED,
               reward_model: str = DEFAULT_REWARD_MODEL, preferences_path: str = DEFAULT_PREFERENCES,
               eval_dataset: str = DEFAULT_EVAL_DATASET, *, reward_label: str = "POSITIVE",
               generation_timeout: float = 60.0, concurrency_limit: int = 2, max_eval_prompts: int = MAX_EVAL_PROMPTS,
               hub_endpoint: str | None = None, runs_dir: str | None = DEFAULT_RUNS_DIR,
               preferences_dataset: str | None = None, login: bool | None = None, max_queue: int = 64,
               temp_max_age: float = 600.0, eval_prompt_options: dict | None = None) -> gr.Blocks:
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
        concurrency_limit: events of each kind that run at once (the queue's default concurrency limit); the events
            that run a model run one at a time, all tabs together, in the queue's order.
        max_eval_prompts: the most prompts one evaluation may use.
        hub_endpoint: Hub URL for the Publish tab and the preference dataset (default: HF_ENDPOINT, else
            huggingface.co).
        runs_dir: folder whose run folders the Publish tab offers (with the aligned model when it is a local run).
        preferences_dataset: a Hub dataset NAMESPACE/NAME that keeps the preferences across restarts
            (`rlhf_demo.feedback.HubPreferenceStore`, with the Space's HF_TOKEN); None: the local file only.
        login: show the Hugging Face login button that pushing needs (default: when running on a Hugging Face
            Space, whose `hf_oauth: true` provides the login).
        max_queue: requests that may wait in the queue; more are refused with a "queue full" message.
        temp_max_age: seconds after which the temporary folders of requests are deleted.

    Raises:
        FileNotFoundError: a local model folder does not exist (the message says which and what to pass), or a Hub
            id cannot be loaded.
        ValueError: a model holds the wrong kind of model or lacks `reward_label`.
    """
    configure_timeouts(10.0, 60.0)  # every Hub request of the Space (preference uploads, pushes) can time out
    models = SpaceModels(reference, aligned, reward_model, reward_label, generation_timeout)
    if preferences_dataset:
        folder = os.path.splitext(preferences_path)[0] + "-dataset"
        store = HubPreferenceStore(folder, preferences_dataset, endpoint=hub_endpoint)
    else:
        store = PreferenceStore(preferences_path)
    temp = TempFolders(temp_max_age)
    login = bool(gr_utils.get_space()) if login is None else login
    runs = find_runs(runs_dir, [models.aligned_path])
    with gr.Blocks(title="rlhf-demo: RLHF with PPO, side by side", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as demo:  # Gradio's copies of returned files: deleted after an hour
        gr.Markdown(
            "# rlhf-demo: what RLHF changed\n"
            "A GPT-2-family model aligned with PPO towards positive movie-review continuations (Ziegler et al. 2019). "
            f"Reference: `{display_name(reference)}`. Aligned: `{display_name(aligned)}`. "
            f"Reward model: `{display_name(reward_model)}`."
        )
        with gr.Tabs():
            build_compare_tab(models)
            build_evaluate_tab(models, eval_dataset, max_eval_prompts, temp, eval_prompt_options)
            build_feedback_tab(models, store, temp)
            build_publish_tab(runs, hub_endpoint, temp, login)
            build_methods_tab()
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=max_queue)
    demo.space_models, demo.preference_store, demo.temp_folders, demo.runs = models, store, temp, runs  # for tests
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags of `rlhf-demo space`. Each value comes from the flag, else its environment variable (a hosted
    Space's variables), else the `--config FILE` (env SPACE_CONFIG), else the default."""
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
                   help="Start from a preset's `space` section (e.g. smollm2: SmolLM2-135M-Instruct before and after "
                   "LoRA PPO); --config, environment variables and flags override it.")
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
    p.add_argument("--eval_max_prompt_length", type=int,
                   default=default("EVAL_MAX_PROMPT_LENGTH", "eval_max_prompt_length", None),
                   help="A prompt-only --eval_dataset: cut longer prompts to this many tokens, from the left (env "
                   "EVAL_MAX_PROMPT_LENGTH).")
    p.add_argument("--runs_dir", default=default("RUNS_DIR", "runs_dir", DEFAULT_RUNS_DIR),
                   help="Folder of training runs the Publish tab offers (env RUNS_DIR; default ./runs).")
    p.add_argument("--generation_timeout", type=float, default=float(default("GENERATION_TIMEOUT",
                                                                              "generation_timeout", 60.0)),
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
                          concurrency_limit=args.concurrency_limit, runs_dir=args.runs_dir,
                          preferences_dataset=args.preferences_dataset,
                          eval_prompt_options={"prompt_column": args.eval_prompt_column,
                                               "prompt_template": args.eval_prompt_template,
                                               "max_prompt_length": args.eval_max_prompt_length})
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, run_history=False)


if __name__ == "__main__":
    main()
