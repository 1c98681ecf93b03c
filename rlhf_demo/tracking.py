"""Experiment trackers of `rlhf-demo train --report_to`: accelerate's (`accelerate.tracking`), named as TRL names them.

`--report_to` takes `none`, `all` (every tracker whose package is installed), or one name or a comma-separated list
of `TRACKERS` (`tensorboard,wandb`). The PPO trainer's own Accelerator logs to them (`log_with`, `init_trackers`,
`log`, on the main process only); TensorBoard's event files go under RUN/runs/ (RUN/runs/rlhf-demo/), which
`rlhf-demo push` uploads for the Hub's metrics tab. metrics.jsonl and samples.jsonl are the run folder's own logs
(`runs.RunLogger`), written whatever `--report_to` says.
"""

from __future__ import annotations

import dataclasses
import os

from .errors import UserInputError

# accelerate's tracker names -> the package each needs (what `pip install` takes)
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml",
            "aim": "aim", "clearml": "clearml", "dvclive": "dvclive", "swanlab": "swanlab", "trackio": "trackio"}
PROJECT = "rlhf-demo"  # the W&B / Trackio project, MLflow experiment, and TensorBoard folder under RUN/runs/
LOGGING_DIR = "runs"


def parse_report_to(report_to) -> list[str]:
    """The names in `report_to` (a string, comma-separated, or a list of them): [] for `none`, ["all"] when `all` is
    among them. Raises UserInputError for a name accelerate has no tracker for. Imports nothing."""
    items = report_to if isinstance(report_to, (list, tuple)) else [report_to or "none"]
    names = list(dict.fromkeys(n.strip() for item in items for n in str(item).split(",") if n.strip()))
    unknown = [n for n in names if n not in TRACKERS and n not in ("all", "none")]
    if unknown:
        raise UserInputError(f"--report_to {','.join(unknown)} is not a tracker; pass none, all, or one or more of "
                             f"{', '.join(TRACKERS)}, comma-separated.")
    if "all" in names:
        return ["all"]
    return [n for n in names if n != "none"]


def installed_trackers() -> list[str]:
    """The names of the trackers whose package is installed (accelerate's own check)."""
    from accelerate.tracking import get_available_trackers

    return [str(t) for t in get_available_trackers()]


def resolve_trackers(report_to) -> list[str]:
    """The trackers `report_to` starts: `all` -> every installed one. Raises UserInputError, naming each tracker
    whose package is missing and how to install it, before any model is loaded (accelerate would skip it quietly)."""
    names, installed = parse_report_to(report_to), installed_trackers()
    if names == ["all"]:
        return installed
    missing = [n for n in names if n not in installed]
    if missing:
        packages = [TRACKERS[n] for n in missing]
        one = len(missing) == 1
        raise UserInputError(f"--report_to {','.join(missing)} needs the {' and '.join(packages)} "
                             f"package{'' if one else 's'} (pip install {' '.join(packages)}), or drop "
                             f"{'it' if one else 'them'}.")
    return names


def accelerator_kwargs(report_to, run_dir: str) -> dict:
    """Keyword arguments of `Accelerator` that log to the trackers of `report_to`, TensorBoard's under RUN/runs/.
    Raises what `resolve_trackers` raises."""
    from accelerate.utils import ProjectConfiguration

    names = resolve_trackers(report_to)
    return {"log_with": names or None,
            "project_config": ProjectConfiguration(project_dir=run_dir, logging_dir=os.path.join(run_dir, LOGGING_DIR))}


def start(accelerator, config) -> None:
    """Start the accelerator's trackers (main process only) with the run's config as hyperparameters (values a
    tracker cannot store, lists and dicts, as text)."""
    if not accelerator.log_with:
        return
    values = {k: v if v is None or isinstance(v, (bool, int, float, str)) else str(v)
              for k, v in dataclasses.asdict(config).items()}
    accelerator.init_trackers(PROJECT, config=values)


def finish(accelerator) -> None:
    """Close the trackers `start` opened (flush TensorBoard, end the W&B / Trackio run). Not `end_training`: that
    also destroys the process group, which `rlhf-demo loop` (several trainings in one process) still needs."""
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.trackers = []
