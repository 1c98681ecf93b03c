"""The Space on the Hub: `rlhf-demo push --model RUN --repo_id ME/MODEL --space ME/SPACE`.

After the model, a Gradio Space goes up that shows it next to its reference, with everything it needs to build on
a free CPU Space:

- `app.py`: three lines that run `rlhf_demo.space.app.main` with `space_config.yaml`;
- `space_config.yaml`: the models it loads, by Hub id (the aligned model is the pushed repository; the reference
  and the reward model come from the run, or `--space_reference` / `--space_reward_model`; the tiny preset's
  models are named `tiny`, which the package ships);
- `README.md`: the Space's front matter (gradio SDK and version; no OAuth: a deployed Space holds no run to
  publish, so it asks visitors for no login; `models:` listing the Hub models it loads, `preload_from_hub:` so
  they are downloaded when the Space is built, not at its first request) and a short description;
- `requirements.txt`: torch from the CPU wheel index (a CPU Space must not pull CUDA wheels), the package as the
  wheel uploaded with the Space (a URL into the Space's own repository, pinned by its sha256: rlhf-demo is not on
  PyPI), and its dependencies pinned to the versions it was tested with here;
- the wheel, built from this checkout (`pip wheel`), or `--space_wheel`.

With `--dry_run` the Space's folder is written to `OUTPUT_DIR_space` instead. The Space is private with
`--private`; its build then needs access to its own wheel URL, so a public Space is the simple case.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

from rlhf_demo.config import PushConfig
from rlhf_demo.errors import UserInputError
from rlhf_demo.portable import PACKAGE_PARENT

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
SOURCE_PARTS = ("pyproject.toml", "README.md", "rlhf_demo", "eval", "space")
LAUNCHER = '''"""The rlhf-demo Space, as `rlhf-demo push --space` wrote it: the app ships in the rlhf-demo wheel of
requirements.txt; space_config.yaml names the models (environment variables of the Space override it)."""

import os

from rlhf_demo.space.app import main

main(["--config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "space_config.yaml")])
'''


# --------------------------------------------------------------------------------------------- models
def _preset_name(path: str | None, presets: dict[str, str]) -> str | None:
    """The preset (e.g. `tiny`) whose model `path` is, else None."""
    if not path:
        return None
    target = os.path.normpath(os.path.abspath(os.path.expanduser(path)))
    if not os.path.exists(target):
        target = os.path.normpath(os.path.join(PACKAGE_PARENT, path))  # stored relative to the package's parent
    for name, model in presets.items():
        if os.path.isabs(model) and os.path.normpath(model) == target:
            return name
    return None


def _hub_or_preset(name: str | None, presets: dict[str, str], flag: str, role: str) -> str:
    """`name` as the Space can load it: a Hub id as is, a preset's model as the preset name. Raises
    UserInputError for a local folder, which the Space cannot reach."""
    from rlhf_demo.models import is_local_path

    if name and not is_local_path(name):
        return name
    preset = _preset_name(name, presets)
    if preset:
        return preset
    raise UserInputError(f"The {role} of this run is a local folder ({os.path.basename(str(name))!r}), which a "
                         f"Space cannot load: push it to the Hub and pass {flag} HUB_ID.")


def space_models(cfg: PushConfig) -> dict[str, str]:
    """The Space's configuration: `aligned` (the pushed repository), `reference`, `reward_model`, `reward_label` and,
    when the run's prompts are on the Hub, `eval_dataset`. Raises UserInputError when the reference or the reward
    model is a local folder and no --space_reference / --space_reward_model names it on the Hub."""
    from rlhf_demo.models import PRESET_POLICIES, PRESET_REWARD_MODELS, is_local_path
    from rlhf_demo.eval.for_run import eval_reward_model, read_training_config

    train = read_training_config(cfg.model) if not (cfg.space_reference and cfg.space_reward_model) else {}
    reference = _hub_or_preset(cfg.space_reference or train.get("model_name_or_path"), PRESET_POLICIES,
                               "--space_reference", "reference (base model)")
    if cfg.space_reward_model:
        path, _, label = cfg.space_reward_model.partition("@")
    else:
        path, label = eval_reward_model(train.get("reward"), train.get("model_name_or_path"))
    config = {"aligned": cfg.repo_id, "reference": reference,
              "reward_model": _hub_or_preset(path, PRESET_REWARD_MODELS, "--space_reward_model", "reward model"),
              "reward_label": label or "POSITIVE"}
    dataset = train.get("dataset_name")
    if dataset and not is_local_path(dataset):
        config["eval_dataset"] = dataset
    return config


# --------------------------------------------------------------------------------------------- files
def build_wheel(dest: str, wheel: str | None = None) -> str:
    """The rlhf-demo wheel the Space installs, in `dest`: a copy of `wheel` when given, else one built from this
    checkout's source (copied to a temporary folder first, so the checkout gets no build folders). Raises
    UserInputError when there is neither a wheel nor a source checkout, or the build fails."""
    if wheel:
        if not (os.path.isfile(wheel) and wheel.endswith(".whl")):
            raise UserInputError(f"--space_wheel {wheel!r} is not a wheel file (.whl).")
        return shutil.copy(wheel, dest)
    if not os.path.isfile(os.path.join(PACKAGE_PARENT, "pyproject.toml")):
        raise UserInputError("rlhf-demo is installed without its source, so the Space's wheel cannot be built: pass "
                             "--space_wheel PATH (e.g. from `pip wheel --no-deps` of a checkout).")
    with tempfile.TemporaryDirectory(prefix="rlhf-demo-wheel-") as src:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "runs", "build", "*.egg-info")
        for part in SOURCE_PARTS:
            path = os.path.join(PACKAGE_PARENT, part)
            if os.path.isdir(path):
                shutil.copytree(path, os.path.join(src, part), ignore=ignore)
            elif os.path.isfile(path):
                shutil.copy(path, src)
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                               "-w", dest, src], capture_output=True, text=True)
    wheels = [n for n in os.listdir(dest) if n.endswith(".whl")] if proc.returncode == 0 else []
    if not wheels:
        raise UserInputError(f"Building the rlhf-demo wheel failed: {proc.stderr.strip().splitlines()[-1:]}")
    return os.path.join(dest, wheels[0])


def requirements(wheel_url: str) -> str:
    """requirements.txt of the Space: CPU torch, the wheel at `wheel_url` (pinned by its sha256 fragment), and the
    package's dependencies at the versions installed here."""
    torch_version = importlib.metadata.version("torch").split("+")[0]
    lines = ["# Written by `rlhf-demo push --space`: installs on a CPU Space, pinned to what the app was tested with.",
             "# torch comes from the CPU wheel index (PyPI's default torch wheels pull CUDA libraries).",
             f"--extra-index-url {CPU_INDEX}", f"torch=={torch_version}+cpu",
             "# rlhf-demo is not on PyPI: the wheel uploaded with this Space.", f"rlhf-demo @ {wheel_url}"]
    gradio = importlib.metadata.version("gradio")
    lines.append(f"gradio=={gradio}")  # no [oauth]: the deployed Space asks visitors for no login
    for req in importlib.metadata.requires("rlhf-demo") or []:
        name = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]
        if "extra ==" in req or name.lower() in ("torch", "gradio"):
            continue
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(req)
    return "\n".join(lines) + "\n"


def readme(space_id: str, config: dict[str, str]) -> str:
    """README.md of the Space: front matter (SDK, OAuth, the Hub models it loads, preloaded at build time) and text."""
    from rlhf_demo.models import PRESET_POLICIES, PRESET_REWARD_MODELS, is_local_path

    hub_models = []  # the Hub models it loads; a preset's are Hub ids (gpt2) or ship in the package (tiny)
    for key, presets in (("aligned", {}), ("reference", PRESET_POLICIES), ("reward_model", PRESET_REWARD_MODELS)):
        resolved = presets.get(config[key], config[key])
        if not is_local_path(resolved) and resolved not in hub_models:
            hub_models.append(resolved)
    meta = {"title": space_id.split("/")[-1], "emoji": "🎬", "colorFrom": "indigo", "colorTo": "green",
            "sdk": "gradio", "sdk_version": importlib.metadata.version("gradio"), "python_version": "3.11",
            "app_file": "app.py", "pinned": False, "license": "apache-2.0",
            "short_description": "A model before and after RLHF with PPO, side by side",
            "models": hub_models, "preload_from_hub": list(hub_models),
            "datasets": [config.get("eval_dataset", "stanfordnlp/imdb")], "tags": ["rlhf", "ppo"]}
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return (f"---\n{front}---\n\n# {meta['title']}: what RLHF changed\n\n"
            f"[`{config['aligned']}`](https://huggingface.co/{config['aligned']}), aligned with PPO by rlhf-demo, "
            f"next to its reference `{config['reference']}`, scored by the reward model `{config['reward_model']}` "
            "and two independent judges. Tabs: Compare (both models, same prompt and seed), Evaluate (the evaluation "
            "suite on held-out prompts), Feedback (blind A/B choices, kept as a preference dataset in TRL's format) "
            "and Publish (how to publish a run of your own from a terminal; this Space holds no run and asks for "
            "no login).\n\n"
            "The models come from `space_config.yaml`; the Space's variables `REFERENCE_MODEL`, `ALIGNED_MODEL`, "
            "`REWARD_MODEL` and `REWARD_LABEL` override it. Set `PREFERENCES_DATASET` (a dataset id) and an "
            "`HF_TOKEN` secret with write access to keep the collected preferences across restarts.\n")


def space_contents(cfg: PushConfig, workdir: str) -> dict[str, str | bytes]:
    """Path in the Space repository -> local file or bytes, for the Space of `cfg` (the wheel built in `workdir`)."""
    config = space_models(cfg)
    wheel = build_wheel(workdir, cfg.space_wheel)
    with open(wheel, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    endpoint = (cfg.endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    name = os.path.basename(wheel)
    url = f"{endpoint}/spaces/{cfg.space}/resolve/main/{name}#sha256={digest}"
    return {"README.md": readme(cfg.space, config).encode(), "app.py": LAUNCHER.encode(),
            "space_config.yaml": yaml.safe_dump(config, sort_keys=False).encode(),
            "requirements.txt": requirements(url).encode(), name: wheel}


def push_space(cfg: PushConfig) -> str:
    """Push the Space of `cfg` (see the module docstring) to `cfg.space` in one commit; return the commit URL, or,
    with --dry_run, the folder it was written to (OUTPUT_DIR_space). Raises UserInputError (HubPushError for the
    Hub's failures, see `rlhf_demo.hub.commit_to_hub`)."""
    from rlhf_demo.hub import commit_to_hub, write_folder

    with tempfile.TemporaryDirectory(prefix="rlhf-demo-space-") as workdir:
        contents = space_contents(cfg, workdir)
        if cfg.dry_run:
            dest = os.path.normpath(cfg.output_dir) + "_space"
            write_folder(contents, dest)
            return dest
        space_cfg = dataclasses.replace(cfg, revision="main")
        return commit_to_hub(space_cfg, contents, cfg.commit_message or f"Space for {cfg.repo_id} (rlhf-demo)",
                             cfg.space, repo_type="space", space_sdk="gradio")
