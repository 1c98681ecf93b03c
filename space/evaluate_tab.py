"""The Space's Evaluate tab: the evaluation suite of `rlhf-demo eval` (`rlhf_demo.eval.suite.run_eval`) on N
held-out prompts (N capped), both models sampled with the same seeds, the differences with paired bootstrap
confidence intervals; its report and `eval_results.json` name the models without the server's paths.

`evaluate` is the handler, `build_evaluate_tab` the builder `build_demo` calls.
"""

from __future__ import annotations

import functools
import os

import gradio as gr

from rlhf_demo.config import EvalConfig
from rlhf_demo.models import display_name
from rlhf_demo.portable import portable_text
from rlhf_demo.space.shared import MAX_NEW_TOKENS, MAX_SEED, TINY_PROMPTS, TempFolders, check_number
from rlhf_demo.space.space_models import SpaceModels


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
