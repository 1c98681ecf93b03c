"""Loading a model folder safely: where a name points, what the folder must hold, and the one-line errors for
everything `from_pretrained` can raise on a user's folder (missing, truncated, of an unknown type, without
tokenizer files), plus the small tokenizer and classifier helpers every loader shares. `models.py` builds and runs
the models on top of this; nothing here imports it.
"""

from __future__ import annotations

import json
import os
import pickle
from contextlib import contextmanager

from .errors import MissingInputError, UserInputError, one_line
from .gguf_models import resolve_gguf
from .names import PRESET_POLICIES, is_gguf_name, is_local_path, resolve_model_path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model", "spiece.model",
                   "vocab.txt")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def check_model_path(name_or_path: str, role: str, presets: dict[str, str] = PRESET_POLICIES) -> str:
    """Resolve a preset and return the path or Hub id to load; a `gguf:` name becomes its converted folder (converted
    on first use, `gguf_models.resolve_gguf`). Raises MissingInputError naming `role` when a local path does not
    exist (or a `gguf:` model's wheel is not installed), UserInputError when it is a file rather than a model
    folder."""
    path = resolve_model_path(name_or_path, presets)
    if is_gguf_name(path):
        return resolve_gguf(path)
    if is_local_path(path) and not os.path.exists(path):
        raise MissingInputError(f"The {role} {name_or_path!r} does not exist. Pass a folder written by "
                                f"save_pretrained, a Hub id or a preset ({', '.join(presets)}).")
    if os.path.isfile(path):
        raise UserInputError(f"The {role} {name_or_path!r} is a file, not a model folder. Pass the folder that holds "
                             "config.json and the weights.")
    return path


@contextmanager
def expected_load_report():
    """Silence transformers' warnings (its weight-loading report: MISSING / UNEXPECTED keys) while loading a model
    whose report is expected, e.g. a value model, whose new head is missing from its backbone's checkpoint by design
    and set right after. Anything transformers logs at error level still shows; outside this block nothing changes."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _weights_file(path: str) -> str:
    """The weights file `from_pretrained` reads in the folder `path` (for error messages), else the folder."""
    for name in WEIGHT_FILES:
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    return path


@contextmanager
def loading_errors(name_or_path: str, role: str):
    """Context manager turning what `from_pretrained` raises for a bad model folder or an unreachable Hub id into
    one-line user errors naming `role` and the file: truncated or corrupt weights (UserInputError), a config or
    tokenizer file that is not valid JSON (UserInputError), no weights, or a Hub id that cannot be downloaded
    (MissingInputError). Other exceptions pass through unchanged."""
    from safetensors import SafetensorError

    local = os.path.isdir(name_or_path)
    if local:
        check_model_type(name_or_path, role)
    try:
        yield
    except UserInputError:
        raise
    except RuntimeError as e:
        if "ignore_mismatched_sizes" not in str(e):  # transformers' refusal of weights that do not fit the config
            raise
        raise UserInputError(f"The weights of the {role}, {_weights_file(name_or_path)!r}, do not fit its config.json "
                             "(tensor shapes differ: the load report above lists them); save the model and its "
                             "config together with save_pretrained.") from None
    except (SafetensorError, pickle.UnpicklingError, EOFError) as e:
        raise UserInputError(f"The weights of the {role}, {_weights_file(name_or_path)!r}, are truncated or "
                             f"corrupt ({one_line(e)}); save the model again with save_pretrained.") from None
    except json.JSONDecodeError as e:
        raise UserInputError(f"A JSON file of the {role} {name_or_path!r} is corrupt ({e}); save the model and "
                             "tokenizer again with save_pretrained.") from None
    except OSError as e:
        if local:
            raise UserInputError(f"The {role} {name_or_path!r} cannot be loaded: {one_line(e)} Save it again with "
                                 "save_pretrained.") from None
        raise MissingInputError(f"Could not load the {role} {name_or_path!r}: it is not a local folder, and as a Hub "
                                "id it could not be downloaded (offline, or no such repository). Pass a folder "
                                "written by save_pretrained, or a preset (tiny).") from None


def check_model_type(path: str, role: str) -> None:
    """Raise UserInputError when the config.json of the local folder `path` names a `model_type` this transformers
    does not know (a typo, or a model newer than the installed version), before `from_pretrained` fails with two
    tracebacks. A folder without config.json, or with one that is not JSON, is left to `loading_errors`."""
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            model_type = json.load(f).get("model_type")
    except (OSError, ValueError, AttributeError):
        return
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if isinstance(model_type, str) and model_type and model_type not in CONFIG_MAPPING:
        raise UserInputError(f"The {role} {path!r} has model_type {model_type!r} in its config.json, which the "
                             "installed transformers does not know; fix model_type there (e.g. gpt2), or upgrade "
                             "transformers if the model is newer.")


def check_tokenizer_files(path: str, role: str) -> None:
    """Raise UserInputError when the local folder `path` holds no tokenizer files (transformers would build an empty
    tokenizer from config.json alone, which fails much later with an unrelated message)."""
    if os.path.isdir(path) and not any(os.path.isfile(os.path.join(path, n)) for n in TOKENIZER_FILES):
        raise UserInputError(f"The {role} {path!r} has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...); "
                             "save the tokenizer into it with tokenizer.save_pretrained.")


def ensure_pad_token(tokenizer):
    """Give a tokenizer without a pad token (GPT-2) its EOS as pad token, and return it.

    Padding is never inferred from token ids (masks say what is real), so sharing the id with EOS is safe.
    """
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def text_classifier(name_or_path: str):
    """A transformers `text-classification` pipeline on the CPU returning every label's score (`top_k=None`); a
    GPT-2-style classifier without a pad token pads with EOS so batches work."""
    from transformers import pipeline

    classifier = pipeline("text-classification", model=name_or_path, top_k=None, device="cpu")
    ensure_pad_token(classifier.tokenizer)
    if getattr(classifier.model.config, "pad_token_id", None) is None:
        classifier.model.config.pad_token_id = classifier.tokenizer.pad_token_id
    return classifier
