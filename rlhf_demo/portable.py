"""Names and paths as they may leave this machine: in a model card, an uploaded config, an eval report.

A run folder's files record the paths the run used (`training_config.yaml`, `run_info.json`, `eval/`), many of them
absolute paths of this machine. Before anything is uploaded or shown, `portable_text` rewrites every absolute path:

- inside the run folder: the path relative to it (the run folder itself: the repository id it is pushed as);
- inside the installed package (the tiny preset's models and prompts): relative to the package's parent folder,
  `rlhf_demo/presets/tiny/policy`, which reads the same in every checkout and installation;
- anything else: its last component, marked `NAME (local)`.

`describe_local_model` names a local model by what it is, from its own files (config.json, the safetensors header,
its README's front matter): "the tiny preset's policy of rlhf-demo 0.1.0 (a 5.3M-parameter GPT-2, trained on
stanfordnlp/imdb)".
"""

from __future__ import annotations

import json
import math
import os
import re
import struct

import yaml

from .names import PACKAGE_DIR, PRESETS_DIR

PACKAGE_PARENT = os.path.dirname(PACKAGE_DIR)

# An absolute POSIX path inside text: a "/" that does not follow a word character, a dot, a colon or another "/"
# (so URLs, relative paths and "nats/seq" are left alone), up to a quote, space, bracket or separator; "@" and ":"
# end it too, as in reward specs (`sentiment=/path@LABEL:WEIGHT`).
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[^\s'\"`|,;:@()\[\]{}<>]+")
_ARCHITECTURES = {"gpt2": "GPT-2", "gpt_neo": "GPT-Neo", "gpt_neox": "GPT-NeoX", "llama": "Llama", "opt": "OPT",
                  "distilbert": "DistilBERT", "roberta": "RoBERTa", "bert": "BERT", "t5": "T5", "qwen2": "Qwen2"}
_ROLES = {"policy": "policy", "reward_model": "reward model", "aligned": "aligned policy"}


# --------------------------------------------------------------------------------------------- paths
def _norm(path: str) -> str:
    return os.path.normpath(os.path.abspath(os.path.expanduser(path)))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def portable_path(path: str, run_dir: str | None = None, repo_id: str | None = None) -> str:
    """`path` (a local path) as it may be shown elsewhere: relative to the run folder `run_dir` (the folder itself
    as `repo_id`, or "."), relative to the package's parent folder for the package's own files (`rlhf_demo/...`),
    else its last component followed by " (local)". Never raises."""
    p = _norm(path)
    if run_dir:
        root = _norm(run_dir)
        if p == root:
            return repo_id or "."
        if _inside(p, root):
            return os.path.relpath(p, root).replace(os.sep, "/")
    if _inside(p, PACKAGE_DIR):
        return os.path.relpath(p, PACKAGE_PARENT).replace(os.sep, "/")
    return f"{os.path.basename(p) or p} (local)"


def portable_text(text: str, run_dir: str | None = None, repo_id: str | None = None) -> str:
    """`text` with every absolute path of this machine rewritten by `portable_path`. A match counts as a path of
    this machine when its first component exists here (`/home`, `/tmp`, ...), so text such as "/api" is kept."""

    def replace(m: re.Match) -> str:
        s = m.group(0)
        first = s.split("/")[1]
        if not re.match(r"[\w-]", first) or not os.path.exists("/" + first):  # not "/.", "/", nor "/api" here
            return s
        tail = ""
        while s and s[-1] == ".":  # a sentence's full stop after the path
            s, tail = s[:-1], s[-1] + tail
        return portable_path(s, run_dir, repo_id) + tail

    return _ABSOLUTE_PATH.sub(replace, text)


def local_model_dir(name: str | None) -> str | None:
    """The folder `name` refers to when it is a local model folder: as given, or relative to the package's parent
    folder (how portable names such as `rlhf_demo/presets/tiny/policy` are stored). None when there is none."""
    if not isinstance(name, str) or not name:
        return None
    candidates = [os.path.expanduser(name)]
    if not os.path.isabs(name):
        candidates.append(os.path.join(PACKAGE_PARENT, name))
    for c in candidates:
        if os.path.isfile(os.path.join(c, "config.json")):
            return os.path.normpath(os.path.abspath(c))
    return None


# --------------------------------------------------------------------------------------------- describing models
def count_parameters(model_dir: str) -> int | None:
    """Parameters stored in a folder's safetensors files (read from their headers only), or None without any."""
    names = []
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                names = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, ValueError, KeyError):
            return None
    elif os.path.isfile(os.path.join(model_dir, "model.safetensors")):
        names = ["model.safetensors"]
    total = 0
    for name in names:
        try:
            with open(os.path.join(model_dir, name), "rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(size))
        except (OSError, ValueError, struct.error):
            return None
        total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    return total or None


def format_count(n: int) -> str:
    """5322240 -> "5.3M"; 124439808 -> "124M"; 1.5e9 -> "1.5B"; 12000 -> "12K"."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            value = n / scale
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
    return str(n)


def _front_matter(model_dir: str) -> dict:
    try:
        with open(os.path.join(model_dir, "README.md"), encoding="utf-8") as f:
            text = f.read()
        meta = yaml.safe_load(text.split("---")[1]) if text.startswith("---") else {}
    except (OSError, IndexError, yaml.YAMLError):
        return {}
    return meta if isinstance(meta, dict) else {}


def describe_local_model(name: str | None) -> str | None:
    """What the local model folder `name` is, in one phrase built from its own files, e.g. "the tiny preset's policy
    of rlhf-demo 0.1.0 (a 5.3M-parameter GPT-2, trained on stanfordnlp/imdb)" or "`reward_model` (a local 0.1M-parameter
    GPT-2 classifier of NEGATIVE/POSITIVE)". None when `name` is not a local model folder."""
    from rlhf_demo import __version__

    model_dir = local_model_dir(name)
    if model_dir is None:
        return None
    try:
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        config = {}
    config = config if isinstance(config, dict) else {}
    model_type = str(config.get("model_type") or "")
    what = _ARCHITECTURES.get(model_type, model_type or "model")
    architecture = (config.get("architectures") or [""])[0]
    if architecture.endswith("ForSequenceClassification"):
        labels = list((config.get("id2label") or {}).values())
        what += f" classifier of {'/'.join(map(str, labels))}" if len(labels) > 1 else " reward model (one logit)"
    n = count_parameters(model_dir)
    what = f"{format_count(n)}-parameter {what}" if n else what
    datasets = _front_matter(model_dir).get("datasets")
    if isinstance(datasets, list) and datasets:
        what += f", trained on {', '.join(map(str, datasets))}"
    if _inside(model_dir, PRESETS_DIR):
        parts = os.path.relpath(model_dir, PRESETS_DIR).split(os.sep)
        role = _ROLES.get(parts[-1], parts[-1].replace("_", " ")) if len(parts) > 1 else "model"
        return f"the {parts[0]} preset's {role} of rlhf-demo {__version__} (a {what})"
    return f"`{os.path.basename(model_dir)}` (a local {what})"
