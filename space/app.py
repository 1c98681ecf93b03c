"""The rlhf-demo Space: what RLHF changed, side by side, and the human feedback that closes the loop.

This module puts the Space together (`build_demo`) and serves it (`main`); each tab is built by its own module:

- Compare (`space/compare.py`): the reference (the policy before PPO) and the aligned policy continue the same
  prompt with the same seed and sampling settings, shown as they are written (streamed); each continuation is
  scored by the reward model, an independent sentiment judge (VADER) and a toxicity judge (alt-profanity-check),
  the judges of the evaluation suite.
- Evaluate (`space/evaluate_tab.py`): the evaluation suite (`rlhf_demo.eval.suite.run_eval`) on N held-out prompts
  (N capped).
- Feedback (`space/feedback_tab.py`): two continuations of a prompt in random order; the person picks the better
  one (or a tie) and each choice is appended durably (`rlhf_demo.feedback.PreferenceStore`) to a JSONL file in TRL's
  preference format (`prompt`, `chosen`, `rejected`, plus metadata), loadable with
  `datasets.load_dataset("json", data_files=FILE)` to train the next reward model; with `--preferences_dataset` it
  is also kept in a Hub dataset (`rlhf_demo.feedback.HubPreferenceStore`), so it survives restarts.
- Publish (`space/publish.py`): the model card of `rlhf-demo push` for one of the Space's own runs (its images
  served by the Space), and its push with the visitor's own Hugging Face login (never the Space's token); dry run by
  default. A Space without runs of its own (e.g. one deployed by `rlhf-demo push --space`) says so instead.
- Methods (`space/methods.py`): PPO, DPO, RLOO, GRPO and best-of-n on the same feedback, the reward-KL frontier of
  `benchmarks/frontier.py` and each method's responses to a held-out prompt (static: no model runs).

What they share: the models, loaded once and sampled with streaming (`space/space_models.py`'s `SpaceModels`), and
the limits, defaults, input checks, page wording and temporary folders (`space/shared.py`). The options (flags,
environment variables, `--config` file, a preset's `space:` section) are read by `space/options.py`.

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
`space_config.yaml`; tests call `build_demo(...)`. The tabs' handlers (`compare`, `new_pair`, `vote`,
`download_preferences`) and the options' `parse_args` and `missing_models` can be imported from here too.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

# First: it sets Gradio's environment (and sets a malformed GRADIO_SERVER_PORT aside) before Gradio is imported.
from rlhf_demo.space.options import missing_models, parse_args

import gradio as gr
from gradio import utils as gr_utils

from rlhf_demo.feedback import HubPreferenceStore, PreferenceStore  # noqa: E402
from rlhf_demo.hub import configure_timeouts
from rlhf_demo.models import display_name

from rlhf_demo.space.compare import build_compare_tab, compare
from rlhf_demo.space.evaluate_tab import build_evaluate_tab, evaluate
from rlhf_demo.space.feedback_tab import build_feedback_tab, download_preferences, new_pair, vote
from rlhf_demo.space.methods import build_methods_tab
from rlhf_demo.space.publish import build_publish_tab, find_runs
from rlhf_demo.space.shared import (
    DEFAULT_ALIGNED,
    DEFAULT_EVAL_DATASET,
    DEFAULT_PREFERENCES,
    DEFAULT_REFERENCE,
    DEFAULT_REWARD_MODEL,
    DEFAULT_RUNS_DIR,
    EXAMPLE_PROMPTS,
    MAX_EVAL_PROMPTS,
    SpaceText,
    TempFolders,
    visitor_reason,
)
from rlhf_demo.space.space_models import GenerationTimeout, SpaceModels

__all__ = ["DEFAULT_ALIGNED", "DEFAULT_REFERENCE", "DEFAULT_REWARD_MODEL", "EXAMPLE_PROMPTS", "GenerationTimeout",
           "SpaceModels", "SpaceText", "build_demo", "compare", "download_preferences", "evaluate", "main",
           "missing_models", "new_pair", "parse_args", "vote"]


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
