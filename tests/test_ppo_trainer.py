"""The PPO trainer end to end on tiny models built in code: invariants, learning, resume, bad rewards."""

import json
import os

import pytest
import torch
from conftest import count_word, crashing_on_call, make_tiny_gpt2, make_word_tokenizer, word_prompts

from rlhf_demo.config import PPOConfig
from rlhf_demo.models import load_policy, pad_left, response_logprobs
from rlhf_demo.ppo import PPOTrainer
from rlhf_demo.sampling import sample


def make_trainer(policy_dir, out, reward_fn, **overrides):
    kw = dict(output_dir=str(out), model_name_or_path=policy_dir, reward=[], total_episodes=64, batch_size=16,
              num_mini_batches=2, response_length=6, learning_rate=1e-3, save_steps=0, sample_steps=0,
              progress_bar=False, seed=0)
    kw.update(overrides)
    cfg = PPOConfig(**kw)
    tok = make_word_tokenizer()
    return PPOTrainer(cfg, tokenizer=tok, reward_fn=reward_fn, train_dataset=word_prompts(tok))


def read_metrics(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_first_step_kl_zero_and_ratio_one(word_policy_dir, tmp_path):
    trainer = make_trainer(word_policy_dir, tmp_path / "run", count_word("good"), total_episodes=16)
    m = trainer.step()
    # The policy against its identical copy: 0 up to float rounding (the policy's log-probs come from the sampling
    # loop's KV-cache logits, the reference's from a full forward pass).
    assert m["objective/kl"] == pytest.approx(0.0, abs=1e-5)
    assert m["policy/approxkl_first_mb"] == pytest.approx(0.0, abs=1e-10)
    assert m["policy/clipfrac_first_mb"] == 0.0
    assert m["val/ratio_first_mb"] == pytest.approx(1.0, abs=1e-6)


def test_logprobs_do_not_depend_on_left_padding(word_policy_dir):
    tok = make_word_tokenizer()
    model = load_policy(word_policy_dir)
    q = tok("the movie was", add_special_tokens=False)["input_ids"]
    ids, mask = pad_left([q], tok.pad_token_id)
    torch.manual_seed(0)
    responses, rmask = sample(model, ids, mask, max_new_tokens=5, pad_token_id=tok.pad_token_id)
    base = response_logprobs(model, ids, mask, responses, rmask)
    for extra in (1, 4):
        ids2, mask2 = pad_left([q, q + q[:1] * extra], tok.pad_token_id)  # batch forces `extra` pads on row 0
        lp = response_logprobs(model, ids2[:1], mask2[:1], responses, rmask)
        assert mask2[0, :extra].sum() == 0
        assert torch.allclose(lp, base, atol=1e-5)


def test_toy_reward_rises(word_policy_dir, tmp_path):
    out = tmp_path / "run"
    trainer = make_trainer(word_policy_dir, out, count_word("good"), total_episodes=16 * 30, kl_coef=0.01,
                           logging_steps=1)
    trainer.train()
    scores = [m["objective/scores"] for m in read_metrics(out)]
    first, last = sum(scores[:5]) / 5, sum(scores[-5:]) / 5
    # A random 18-token policy says "good" ~6/18 times per 6 tokens; PPO must push it well above that.
    assert last > first + 1.0, (first, last)
    # The final policy is a plain causal LM.
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(str(out)) is not None
    assert os.path.isfile(out / "value_model" / "config.json")


def test_resume_matches_uninterrupted_run(word_policy_dir, tmp_path):
    common = dict(total_episodes=16 * 6, save_steps=3, save_total_limit=5)
    full = tmp_path / "full"
    make_trainer(word_policy_dir, full, count_word("good"), **common).train()

    part = tmp_path / "part"
    with pytest.raises(RuntimeError, match="went away"):
        make_trainer(word_policy_dir, part, crashing_on_call(5, count_word("good")), **common).train()
    assert os.path.isdir(part / "checkpoints" / "checkpoint-3")  # the crash left the last checkpoint intact
    assert not any(p.startswith(".tmp") for p in os.listdir(part / "checkpoints"))
    make_trainer(word_policy_dir, part, count_word("good"), resume_from_checkpoint="latest", **common).train()

    a, b = read_metrics(full), read_metrics(part)
    assert [m["step"] for m in b] == [1, 2, 3, 4, 5, 6]
    keys = ["objective/scores", "objective/kl", "loss/policy_avg", "loss/value_avg", "policy/approxkl_avg", "lr"]
    for ma, mb in zip(a[3:], b[3:]):
        for k in keys:
            assert ma[k] == pytest.approx(mb[k], abs=1e-5), (k, ma["step"])
    wa = load_policy(str(full)).state_dict()
    wb = load_policy(str(part)).state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)


@pytest.mark.parametrize("bad,match", [(lambda q, r: [float("nan")] * len(r), "non-finite"),
                                       (lambda q, r: [0.0] * (len(r) - 1), "exactly one score per response")])
def test_bad_reward_is_refused_clearly(word_policy_dir, tmp_path, bad, match):
    trainer = make_trainer(word_policy_dir, tmp_path / "run", bad, total_episodes=16)
    with pytest.raises(ValueError, match=match):
        trainer.train()


def test_lora_reference_is_the_adapter_free_policy(word_policy_dir, tmp_path):
    out = tmp_path / "lora"
    trainer = make_trainer(word_policy_dir, out, count_word("good"), use_peft=True, lora_r=4, lora_alpha=8,
                           lora_target_modules=["c_attn"], total_episodes=48)
    assert trainer.ref_policy is None  # no second copy in memory
    m = trainer.step()
    assert m["objective/kl"] == pytest.approx(0.0, abs=1e-5)  # LoRA's B starts at 0: the same model, up to rounding
    trainer.train()
    last = read_metrics(out)[-1]
    assert abs(last["objective/kl"]) > 1e-3  # the adapter moved the policy away from the reference
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(str(out))
    assert merged.config.n_layer == 1 and os.path.isdir(out / "adapter")


def test_config_validation_messages():
    with pytest.raises(ValueError, match="divisible by num_mini_batches"):
        PPOConfig(batch_size=10, num_mini_batches=3)
    with pytest.raises(ValueError, match="needs stop_at_eos"):
        PPOConfig(missing_eos_penalty=1.0)
    with pytest.raises(ValueError, match="kl_estimator"):
        PPOConfig(kl_estimator="k9")


def test_stop_at_eos_masks_after_eos(word_policy_dir):
    tok = make_word_tokenizer()
    model = make_tiny_gpt2(len(tok))
    with torch.no_grad():  # make EOS very likely so some responses stop early
        model.lm_head.weight[tok.eos_token_id] += 0.5
    ids, mask = pad_left([tok("the movie", add_special_tokens=False)["input_ids"]] * 32, tok.pad_token_id)
    torch.manual_seed(0)
    responses, rmask = sample(model, ids, mask, max_new_tokens=8, eos_token_id=tok.eos_token_id,
                              pad_token_id=tok.pad_token_id)
    for r, m in zip(responses.tolist(), rmask.tolist()):
        if tok.eos_token_id in r:
            k = r.index(tok.eos_token_id)
            assert m[: k + 1] == [1] * (k + 1) and m[k + 1:] == [0] * (len(m) - k - 1)
        else:
            assert all(m)


def run_data_parallel(out, nproc: int, port: int) -> list[dict]:
    """Train dp_worker.py under torchrun with `nproc` processes; return each rank's report."""
    import subprocess
    import sys

    worker = os.path.join(os.path.dirname(__file__), "dp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                           "--master_port",
                           str(port), worker, str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.load(open(out / f"rank{r}.json")) for r in range(nproc)]


@pytest.mark.slow
def test_data_parallel_matches_one_process(tmp_path):
    one = run_data_parallel(tmp_path / "one", 1, 29531)
    two = run_data_parallel(tmp_path / "two", 2, 29533)
    for rep in two:
        assert rep["world_size"] == 2
        assert rep["episodes"] == one[0]["episodes"] == 32 * 3  # episodes count both processes
        assert rep["max_diff_across_ranks"] == 0.0  # gradients were all-reduced: the ranks never drift apart
        assert rep["moved"] > 0  # and training did change the weights
    # The same global batch, so the same schedule: the learning rate is stepped once per PPO step, whatever the number
    # of processes (accelerate's scheduler wrapper once stepped it per process, driving it below 0).
    lr_one = [m["lr"] for m in read_metrics(tmp_path / "one")]
    lr_two = [m["lr"] for m in read_metrics(tmp_path / "two")]
    assert lr_one == pytest.approx([1e-3, 1e-3 * 2 / 3, 1e-3 / 3], abs=1e-12)  # the rate each step used
    assert lr_two == pytest.approx(lr_one, abs=1e-12)
    assert [m["episode"] for m in read_metrics(tmp_path / "two")] == [32, 64, 96]


def test_report_to_tensorboard_writes_events(word_policy_dir, tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "tb"
    make_trainer(word_policy_dir, out, count_word("good"), total_episodes=32, report_to="tensorboard",
                 sample_steps=1).train()
    events = [os.path.join(d, f) for d, _, files in os.walk(out / "runs") for f in files
              if f.startswith("events.out.tfevents")]
    assert events  # under RUN/runs/, which push uploads for the Hub's metrics tab
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for path in events:
        acc = EventAccumulator(path)
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {"objective/kl", "objective/scores"} <= tags
    samples = [json.loads(line) for line in open(out / "samples.jsonl")]
    assert samples and {"step", "query", "response", "score"} <= set(samples[0])


@pytest.mark.slow
def test_the_readme_torchrun_command_trains_with_two_processes(tmp_path):
    """What the README says: `torchrun --nproc_per_node N -m rlhf_demo.cli train ...` on the CPU (gloo). Once every
    rank believed itself the only one (an accelerate state made before the trainer's) and both wrote the run folder,
    crashing on each other's temporary files; now one export, one metrics line per step, a resumable checkpoint."""
    import subprocess
    import sys

    from conftest import free_port

    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(free_port()), "-m", "rlhf_demo.cli", "train", "--preset", "tiny", "--output_dir",
                           str(out), "--total_episodes", "64", "--batch_size", "16", "--save_steps", "1",
                           "--eval_num_prompts", "0", "--progress_bar", "false"],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.load(open(out / "run_info.json"))
    assert info["processes"] == 2 and info["episodes"] == 64 and info["steps"] == 2
    assert [m["episode"] for m in read_metrics(out)] == [32, 64]
    assert sorted(os.listdir(out / "checkpoints")) == ["checkpoint-1", "checkpoint-2"]
    assert {f"rng_state_{r}.pth" for r in (0, 1)} <= set(os.listdir(out / "checkpoints" / "checkpoint-2"))
    assert proc.stdout.count("Aligned policy saved to") == 1  # the main process speaks once
