"""`--report_to`: accelerate's trackers, named and combined as TRL accepts them (`rlhf_demo.tracking`)."""

import importlib.util
import os
import subprocess
import sys

import accelerate.tracking
import pytest
from accelerate.utils import LoggerType

from rlhf_demo import tracking
from rlhf_demo.config import PPOConfig
from rlhf_demo.errors import UserInputError


@pytest.mark.parametrize("value, names", [("none", []), ("tensorboard", ["tensorboard"]),
                                          ("tensorboard,wandb", ["tensorboard", "wandb"]),
                                          (" trackio , tensorboard,trackio", ["trackio", "tensorboard"]),
                                          (["mlflow", "comet_ml"], ["mlflow", "comet_ml"]), ("wandb,all", ["all"])])
def test_report_to_is_none_all_a_name_or_a_list(value, names):
    assert tracking.parse_report_to(value) == names


def test_an_unknown_tracker_is_refused_by_the_config():
    with pytest.raises(UserInputError, match="tensorbord is not a tracker; pass none, all, or one or more of "
                                             "tensorboard, wandb, mlflow"):
        PPOConfig(report_to="tensorboard,tensorbord")


def test_a_missing_tracker_package_is_one_line_naming_it(monkeypatch):
    monkeypatch.setattr(accelerate.tracking, "_available_trackers", [LoggerType.TENSORBOARD])
    with pytest.raises(UserInputError) as e:
        tracking.resolve_trackers("tensorboard,wandb")
    assert str(e.value) == "--report_to wandb needs the wandb package (pip install wandb), or drop it."
    with pytest.raises(UserInputError, match=r"wandb,mlflow needs the wandb and mlflow packages \(pip install wandb "
                                             r"mlflow\), or drop them"):
        tracking.resolve_trackers("wandb,mlflow")
    assert tracking.resolve_trackers("tensorboard") == ["tensorboard"]


def test_all_is_every_installed_tracker_and_only_those(monkeypatch, tmp_path):
    installed = tracking.installed_trackers()
    assert tracking.resolve_trackers("all") == installed and set(installed) <= set(tracking.TRACKERS)
    assert ("wandb" in installed) == (importlib.util.find_spec("wandb") is not None)
    monkeypatch.setattr(accelerate.tracking, "_available_trackers", [LoggerType.TENSORBOARD, LoggerType.TRACKIO])
    assert tracking.resolve_trackers("all") == ["tensorboard", "trackio"]
    kwargs = tracking.accelerator_kwargs("all", str(tmp_path))
    assert kwargs["log_with"] == ["tensorboard", "trackio"]
    assert kwargs["project_config"].logging_dir == os.path.join(str(tmp_path), "runs")  # the Hub's metrics tab
    monkeypatch.setattr(accelerate.tracking, "_available_trackers", [])
    assert tracking.accelerator_kwargs("all", str(tmp_path))["log_with"] is None


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_train_with_a_missing_tracker_stops_with_one_line_before_any_work(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "rlhf_demo.cli", "train", "--preset", "tiny", "--output_dir",
                           str(out), "--report_to", "tensorboard,wandb", "--eval_num_prompts", "0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "error: --report_to wandb needs the wandb package (pip install wandb), or drop it."
    assert not out.exists()
