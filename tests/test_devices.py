"""Where PPO runs (`devices.py`): mixed precision (`--mixed_precision`: bf16 autocast on the CPU with fp32 weights
and fp32 math, the rollout's log-probs recomputed with the update's forward pass), the choices a machine gets, and
the sharded launches refused."""

import pytest
import torch
from accelerate.state import AcceleratorState
from conftest import count_word
from test_ppo_trainer import make_trainer, read_metrics

from rlhf_demo import devices
from rlhf_demo.config import PPOConfig
from rlhf_demo.errors import UserInputError


@pytest.fixture
def fresh_accelerator_state():
    """accelerate keeps one process-wide state whose mixed precision cannot change once set: reset it around the
    test, so the trainers of other tests (fp32) and this one's (bf16) each get their own."""
    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def test_the_choices_a_machine_gets():
    assert devices.resolve_mixed_precision("no", "cpu") == "no"
    assert devices.resolve_mixed_precision("bf16", "cpu") == "bf16"
    fast = devices.has_fast_bf16("cpu")  # AMX: Intel Sapphire Rapids and newer
    assert devices.resolve_mixed_precision("auto", "cpu") == ("bf16" if fast else "no")
    with pytest.raises(UserInputError, match="fp16 needs a CUDA GPU"):
        devices.resolve_mixed_precision("fp16", "cpu")
    assert devices.recompute_logprobs("auto", "bf16") and not devices.recompute_logprobs("auto", "no")
    assert devices.recompute_logprobs("true", "no") and not devices.recompute_logprobs("false", "bf16")
    with pytest.raises(UserInputError, match="mixed_precision must be one of no, bf16, fp16, auto"):
        PPOConfig(mixed_precision="fp8")


@pytest.mark.slow
def test_a_bf16_run_learns_with_fp32_weights_and_a_first_ratio_of_one(word_policy_dir, tmp_path,
                                                                       fresh_accelerator_state):
    out = tmp_path / "run"
    trainer = make_trainer(word_policy_dir, out, count_word("good"), total_episodes=16 * 30, kl_coef=0.01,
                           logging_steps=1, mixed_precision="bf16")
    assert trainer.accelerator.mixed_precision == "bf16" and trainer.recompute_logprobs
    trainer.train()
    rows = read_metrics(out)
    # Master weights and optimizer state stay fp32; only the matrix products ran in bf16.
    assert all(p.dtype == torch.float32 for p in trainer.policy.parameters())
    assert all(s.dtype == torch.float32 for st in trainer.optimizer.state.values() for s in st.values()
               if torch.is_tensor(s) and s.is_floating_point())
    # The rollout's log-probs come from the update's own forward pass: the first ratio is 1 and the first KL 0, as
    # in fp32 (without the recompute, bf16 rounding alone moves them; benchmarks/mixed_precision.py measures it).
    assert rows[0]["val/ratio_first_mb"] == pytest.approx(1.0, abs=1e-4)
    assert rows[0]["policy/approxkl_first_mb"] == pytest.approx(0.0, abs=1e-6)
    assert rows[0]["objective/kl"] == pytest.approx(0.0, abs=1e-4)
    scores = [m["objective/scores"] for m in rows]
    assert sum(scores[-5:]) / 5 > sum(scores[:5]) / 5 + 1.0, scores  # it learns, as the fp32 run of the toy test


def test_a_sharded_launch_is_refused_in_one_line(word_policy_dir, tmp_path, monkeypatch):
    """`accelerate launch` with an FSDP or DeepSpeed config sets these variables; PPO refuses before loading and
    names its own --fsdp."""
    for variable, name in devices.SHARDED_LAUNCH.items():
        monkeypatch.setenv(variable, "true")
        with pytest.raises(UserInputError, match=rf"^This launch asks for accelerate's {name} \({variable}\), which "
                                                 "rlhf-demo's PPO does not use; .* add --fsdp to shard") as e:
            make_trainer(word_policy_dir, tmp_path / "run", count_word("good"))
        assert "\n" not in str(e.value)
        monkeypatch.delenv(variable)
