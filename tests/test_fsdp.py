"""Sharded training (`--fsdp`, PyTorch FSDP2) on the CPU: two processes under torchrun with the gloo backend, against
one process, through the README's command on the tiny preset; sharded parameters, the sampler's lock-step, and a
checkpoint that resumes exactly and exports an ordinary folder."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import free_port
from test_ppo_trainer import read_metrics

from rlhf_demo.config import PPOConfig
from rlhf_demo.errors import UserInputError

TRAIN = ["-m", "rlhf_demo.cli", "train", "--preset", "tiny", "--eval_num_prompts", "0", "--progress_bar", "false",
         "--sample_steps", "0"]


def run(nproc: int, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node nproc` (or plain python for 1) with `args`; one thread per process (2 cores)."""
    launch = ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", str(free_port())]
    proc = subprocess.run([sys.executable, *(launch if nproc > 1 else []), *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def weights(run_dir):
    from safetensors.torch import load_file

    return load_file(os.path.join(run_dir, "model.safetensors"))


@pytest.mark.slow
def test_two_sharded_processes_train_as_one_process_does(tmp_path):
    """The same 32 episodes per step, once in one process and once as 2 x 16 in two FSDP2 processes. The algorithm is
    the same by construction when nothing depends on how the batch is split: top_p 1e-6 keeps one token, so both
    runs sample the same responses (each process otherwise draws from its own random stream); one minibatch per
    epoch, and advantages not whitened (each process whitens its own batch). What is left is float rounding: the
    gradient is a mean of two 16-episode means instead of one 32-episode mean, reduce-scattered instead of summed in
    place, and matrix products run on other shapes; over 3 steps that stays below the tolerances asserted here."""
    same = ["--total_episodes", "96", "--top_p", "1e-6", "--num_mini_batches", "1", "--whiten_advantages", "false",
            "--save_steps", "0"]
    run(1, [*TRAIN, *same, "--batch_size", "32", "--output_dir", str(tmp_path / "one")])
    run(2, [*TRAIN, *same, "--batch_size", "16", "--fsdp", "--output_dir", str(tmp_path / "two")])
    one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [m["episode"] for m in two] == [32, 64, 96]
    local = ("time/", "tokens_per_s", "_first_mb", "val/ratio_var")  # timings; first minibatch and ratios per process
    for a, b in zip(one, two):
        for key, value in a.items():
            if key.startswith(local[0]) or any(part in key for part in local[1:]):
                continue
            # A clip fraction counts tokens at a threshold, where rounding can move one: 2 of 1,536 per step allowed.
            tolerance = dict(abs=3e-3) if "clipfrac" in key else dict(rel=1e-3, abs=1e-4)
            assert b[key] == pytest.approx(value, **tolerance), (key, a["step"])
    assert one[-1]["objective/kl"] > 0.01  # and the policy did move from its reference
    w1, w2 = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert sorted(w1) == sorted(w2)
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-5


@pytest.mark.slow
def test_sharded_run_checkpoints_resumes_exactly_and_exports_an_ordinary_folder(tmp_path):
    """2 FSDP2 processes, 3 steps with a checkpoint after each; a run killed after its first checkpoint (its folder:
    checkpoint-1 and the logs up to it) resumes and ends where the uninterrupted run ends, metric for metric and
    weight for weight; the export loads with from_pretrained; resuming without --fsdp is refused in one line."""
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

    common = [*TRAIN, "--total_episodes", "96", "--batch_size", "16", "--save_steps", "1", "--fsdp"]
    full = tmp_path / "full"
    run(2, [*common, "--output_dir", str(full)])
    state = json.load(open(full / "checkpoints" / "checkpoint-3" / "trainer_state.json"))
    assert state["fsdp"] is True and state["world_size"] == 2
    info = json.load(open(full / "run_info.json"))
    assert info["processes"] == 2 and info["steps"] == 3
    from rlhf_demo.names import PRESET_POLICIES

    def size(model):
        return sum(p.numel() for p in model.parameters())

    start = AutoModelForCausalLM.from_pretrained(PRESET_POLICIES["tiny"])
    assert size(AutoModelForCausalLM.from_pretrained(str(full))) == size(start)  # whole, not one process's shard
    AutoModelForTokenClassification.from_pretrained(str(full / "value_model"))

    killed = tmp_path / "killed"
    os.makedirs(killed / "checkpoints")
    shutil.copytree(full / "checkpoints" / "checkpoint-1", killed / "checkpoints" / "checkpoint-1")
    shutil.copy(full / "training_config.yaml", killed)
    with open(killed / "metrics.jsonl", "w") as f:
        f.write(open(full / "metrics.jsonl").readline())
    refused = run(2, [*common[:-1], "--output_dir", str(killed), "--resume_from_checkpoint", "latest"], check=False)
    assert refused.returncode != 0 and "written with --fsdp; resume it the same way" in refused.stderr
    run(2, [*common, "--output_dir", str(killed), "--resume_from_checkpoint", "latest"])
    a, b = read_metrics(full), read_metrics(killed)
    assert [m["step"] for m in b] == [1, 2, 3]
    for ma, mb in zip(a, b):
        for key in ("objective/scores", "objective/kl", "loss/policy_avg", "loss/value_avg", "policy/grad_norm", "lr"):
            assert mb[key] == pytest.approx(ma[key], abs=1e-6), (key, ma["step"])
    wa, wb = weights(full), weights(killed)
    assert all((wa[k] - wb[k]).abs().max().item() <= 1e-6 for k in wa)


@pytest.mark.slow
def test_each_process_holds_half_of_every_model_and_samples_in_step(tmp_path):
    run(2, [os.path.join(os.path.dirname(__file__), "fsdp_worker.py"), str(tmp_path)])
    reports = [json.load(open(tmp_path / f"rank{r}.json")) for r in (0, 1)]
    for rep in reports:
        assert rep["sharded"]
        for name in ("policy", "value_model", "reference"):
            assert rep[name] == pytest.approx(0.5, abs=0.01), name
        # Rank 0's rows ended at their first token; it kept stepping (masked) until rank 1's were done.
        assert rep["response_tokens"] == 5
    assert reports[0]["rank0_mask"] == [[1, 0, 0, 0, 0]] * 2
    assert reports[0]["moved"] > 0


def test_fsdp_refuses_lora_and_a_single_process(word_policy_dir, tmp_path):
    with pytest.raises(UserInputError, match="--fsdp with --use_peft is not supported"):
        PPOConfig(output_dir=str(tmp_path / "a"), model_name_or_path=word_policy_dir, fsdp=True, use_peft=True)
    from test_ppo_trainer import make_trainer

    with pytest.raises(UserInputError, match="this launch has one: start it with `torchrun"):
        make_trainer(word_policy_dir, tmp_path / "b", lambda q, r: [0.0] * len(r), fsdp=True)
