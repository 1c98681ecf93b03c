"""The Space's Compare tab: the reference (the policy before PPO) and the aligned policy continue the same prompt with
the same seed and sampling settings, shown as they are written (streamed); each continuation is then scored by the
reward model, an independent sentiment judge (VADER) and a toxicity judge (alt-profanity-check), the judges of the
evaluation suite. A generation that outlives the Space's timeout keeps the text written so far, unscored.

`compare` is the handler (a generator of updates), `build_compare_tab` the builder `build_demo` calls.
"""

from __future__ import annotations

import functools
import time

import gradio as gr

from rlhf_demo.space.shared import (
    DEFAULT_TEXT,
    MAX_INPUT_CHARS,
    MAX_NEW_TOKENS,
    MAX_SAMPLES,
    MAX_SEED,
    SpaceText,
    check_number,
    check_text,
)
from rlhf_demo.space.space_models import SpaceModels, timeout_message


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
