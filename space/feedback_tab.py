"""The Space's Feedback tab: the human feedback that closes the loop. Two continuations of a prompt in random order
(`new_pair`); the person picks the better one or a tie (`vote`) and each choice is appended durably to the Space's
preference store (`rlhf_demo.feedback.PreferenceStore`, or `HubPreferenceStore` to keep it in a Hub dataset) in
TRL's preference format (`prompt`, `chosen`, `rejected`, plus metadata), once per pair however many votes on it
arrive at once (`JudgedPairs`); anyone can download the whole file (`download_preferences`) to train the next
reward model. Not private, and it says so (`PUBLIC_NOTICE`).

`build_feedback_tab` is the builder `build_demo` calls.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import random
import shutil
import sys
import uuid

import gradio as gr

from rlhf_demo.feedback import PreferenceStore, summarize_preferences
from rlhf_demo.models import display_name
from rlhf_demo.space.shared import (
    DEFAULT_TEXT,
    EXAMPLE_PROMPTS,
    MAX_INPUT_CHARS,
    MAX_NEW_TOKENS,
    MAX_SEED,
    JudgedPairs,
    PairAlreadyJudged,
    SpaceText,
    TempFolders,
    check_number,
    check_text,
    visitor_reason,
)
from rlhf_demo.space.space_models import SpaceModels


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
