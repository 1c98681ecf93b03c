"""`rlhf-demo loop` end to end in a CI-sized setting: two rounds of feedback, reward model, PPO and evaluation."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml


def loop_command(out, *extra):
    return subprocess.run(
        [sys.executable, "-m", "rlhf_demo.cli", "loop", "--preset", "tiny", "--output_dir", str(out), "--rounds", "2",
         "--pairs_per_round", "16", "--fresh_pairs", "8", "--ppo_episodes", "64", "--eval_num_prompts", "8", *extra],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=900)


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.mark.slow
def test_two_round_loop_on_the_tiny_preset(tmp_path):
    out = tmp_path / "loop"
    proc = loop_command(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "round 1/2" in proc.stdout and "round 2/2 done" in proc.stdout
    results = json.load(open(out / "loop_results.json"))
    rounds = results["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert [r["pairs_so_far"] for r in rounds] == [16, 32]  # the reward model of round 2 sees both rounds' pairs
    for r in rounds:
        # one PPO step moves the policy little: the sampled k1 estimate on 8 prompts may dip just below 0, but a
        # clearly negative mean would be a sampling mismatch
        assert 0 <= r["rm_fresh_accuracy"] <= 1 and -0.1 < r["kl_to_start"] < 10
    assert results["settings"]["annotator"] == "sentiment=tiny/reward_model@POSITIVE"  # no machine path
    rows = [json.loads(line) for line in open(out / "preferences.jsonl")]
    assert [r["round"] for r in rows] == [1] * 16 + [2] * 16
    assert rows[16]["model_a"].endswith("round-1/policy")  # round 2's feedback is on round 1's policy
    ppo2 = yaml.safe_load(open(out / "round-2" / "policy" / "training_config.yaml"))
    assert ppo2["model_name_or_path"] == str(out / "round-1" / "policy")
    assert ppo2["reward"] == [f"preference={out / 'round-2' / 'reward_model'}"]
    assert (out / "loop.png").stat().st_size > 0 and "| 2 | 32 |" in (out / "loop_results.md").read_text()

    # The same command again: both rounds are kept, nothing is labelled, trained or overwritten again.
    round1 = sha(out / "round-1" / "policy" / "model.safetensors")
    proc = loop_command(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "round 1/2: finished earlier" in proc.stdout and "round 2/2: finished earlier" in proc.stdout
    assert len(open(out / "preferences.jsonl").readlines()) == 32
    assert sha(out / "round-1" / "policy" / "model.safetensors") == round1

    # Interrupted while round 2 labelled its pairs (8 of 16 written, no reward model or PPO yet): the rerun labels
    # round 2 again from the start and leaves round 1 alone.
    lines = open(out / "preferences.jsonl").readlines()
    (out / "preferences.jsonl").write_text("".join(lines[:24]))
    for name in ("reward_model", "policy", "eval", "round_results.json"):
        path = out / "round-2" / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    proc = loop_command(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "round 2: dropped its 8 of 16 pairs" in proc.stdout
    rows = [json.loads(line) for line in open(out / "preferences.jsonl")]
    assert [r["round"] for r in rows] == [1] * 16 + [2] * 16
    assert sha(out / "round-1" / "policy" / "model.safetensors") == round1
    assert [r["round"] for r in json.load(open(out / "loop_results.json"))["rounds"]] == [1, 2]

    # Other settings than the loop in the folder: refused in one line, before any work.
    proc = loop_command(out, "--pairs_per_round", "8")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error:"), proc.stderr[-2000:]
    assert "pairs_per_round: 16 before, 8 now" in proc.stderr
