"""The command line as a user runs it: help, the shipped tiny preset offline, and train -> eval -> push."""

import json
import os
import subprocess
import sys

import pytest

from rlhf_demo.config import PRESETS_DIR

TINY = os.path.join(PRESETS_DIR, "tiny")
needs_tiny = pytest.mark.skipif(not os.path.isfile(os.path.join(TINY, "policy", "model.safetensors")),
                                reason="the tiny preset's models are not built yet (rlhf-demo pretrain / reward-model)")


def run_cli(*args, timeout=900):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    return subprocess.run([sys.executable, "-m", "rlhf_demo.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_help_lists_every_command_with_one_line():
    out = run_cli("--help")
    assert out.returncode == 0
    for command in ("train", "eval", "push", "generate", "pretrain", "reward-model", "space"):
        assert any(line.strip().startswith(command + " ") for line in out.stdout.splitlines()), command


def test_train_help_documents_flags():
    out = run_cli("train", "--help")
    assert out.returncode == 0 and "--kl_coef" in out.stdout and "--preset" in out.stdout and "GAE lambda" in out.stdout


def test_bad_flag_value_is_one_clear_line():
    out = run_cli("train", "--preset", "tiny", "--batch_size", "10", "--num_mini_batches", "3")
    assert out.returncode == 2
    assert "error: batch_size (10) must be divisible by num_mini_batches (3)" in out.stderr
    assert "Traceback" not in out.stderr


@needs_tiny
def test_a_full_disk_or_read_only_file_system_is_one_line(monkeypatch, capsys):
    import errno

    from safetensors import SafetensorError

    from rlhf_demo import cli

    for error, text in ((OSError(errno.ENOSPC, "No space left on device"), "No space left on the device; free"),
                        (SafetensorError("I/O error: No space left on device (os error 28)"), "No space left"),
                        (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/x"), "read-only ('/mnt/ro/x')"),
                        (PermissionError(errno.EACCES, "Permission denied", "/data/x"), "Permission denied on "
                                                                                        "'/data/x'")):
        monkeypatch.setitem(cli.HANDLERS, "train", lambda argv, error=error: (_ for _ in ()).throw(error))
        with pytest.raises(SystemExit) as e:
            cli.main(["train"])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and text in err and "--resume_from_checkpoint latest" in err
    monkeypatch.setitem(cli.HANDLERS, "eval", lambda argv: (_ for _ in ()).throw(FileNotFoundError(errno.ENOENT,
                                                                                                   "gone", "/x")))
    with pytest.raises(FileNotFoundError):  # any other OSError is a bug: it keeps its traceback
        cli.main(["eval"])


def test_shipped_preset_generates_offline():
    out = run_cli("generate", "--preset", "tiny", "--prompt", "This movie", "--num_samples", "2")
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("[")]
    assert len(lines) == 2 and all(line.split("] ", 1)[1].startswith("This movie") for line in lines)
    assert all(len(line) > len("[1] This movie") + 5 for line in lines)


@needs_tiny
@pytest.mark.slow
def test_train_eval_push_on_the_tiny_preset(tmp_path):
    run = tmp_path / "run"
    out = run_cli("train", "--preset", "tiny", "--output_dir", str(run), "--total_episodes", "64", "--batch_size", "32",
                  "--save_steps", "1", "--sample_steps", "1", "--eval_num_prompts", "16")
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert [m["episode"] for m in metrics] == [32, 64]
    for key in ("objective/kl", "objective/entropy", "objective/scores", "objective/rlhf_reward", "policy/approxkl_avg",
                "policy/clipfrac_avg", "loss/policy_avg", "loss/value_avg", "val/clipfrac_avg", "val/ratio", "lr",
                "time/rollout_s", "time/update_s", "tokens_per_s"):
        assert key in metrics[0], key
    assert metrics[0]["objective/kl"] == pytest.approx(0.0, abs=1e-4)  # policy vs its own copy, up to rounding
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "training_config.yaml",
                 "run_info.json", "value_model/model.safetensors"):
        assert (run / name).exists(), name

    out = run_cli("eval", "--preset", "tiny", "--model", str(run), "--output_dir", str(run / "eval"), "--num_prompts",
                  "16",
                  "--bootstrap_samples", "100", "--frontier_num_prompts", "8")
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((run / "eval" / "eval_results.json").read_text())
    assert results["metrics"]["reference"]["kl_to_reference_mean"] == 0.0
    assert results["settings"]["num_prompts"] == 16

    out = run_cli("push", "--model", str(run), "--repo_id", "someone/tiny-rlhf", "--dry_run", "--output_dir",
                  str(tmp_path / "upload"))
    assert out.returncode == 0, out.stderr[-3000:]
    from huggingface_hub import ModelCard

    card = ModelCard.load(str(tmp_path / "upload" / "README.md"))
    assert any(r.metric_type == "kl" for r in card.data.eval_results) and card.data.pipeline_tag == "text-generation"
    assert not any("optimizer" in name for _, _, files in os.walk(tmp_path / "upload") for name in files)

    out = run_cli("generate", "--model", str(run), "--prompt", "I loved", "--num_samples", "1")
    assert out.returncode == 0 and "I loved" in out.stdout
