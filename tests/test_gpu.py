"""On a CUDA device (skipped without one; `benchmarks/gpu_smoke.sh` runs these there): every model of a PPO step,
the reward model included, and every rollout tensor live on the GPU; fp32 and bf16 keep the first ratio at 1."""

import pytest
import torch
from accelerate.state import AcceleratorState
from conftest import count_word
from test_ppo_trainer import make_trainer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    AcceleratorState._reset_state(True)  # accelerate's process-wide precision differs between these tests
    yield
    AcceleratorState._reset_state(True)


@pytest.mark.parametrize("mixed_precision", ["no", "bf16"])
def test_a_ppo_step_runs_on_the_gpu(word_policy_dir, tmp_path, mixed_precision):
    trainer = make_trainer(word_policy_dir, tmp_path / "run", count_word("good"), total_episodes=16,
                           mixed_precision=mixed_precision)
    assert trainer.accelerator.device.type == "cuda"
    for model in (trainer.policy, trainer.ref_policy, trainer.value_model):
        assert {p.device.type for p in model.parameters()} == {"cuda"}
    rollout = trainer.make_rollout()
    tensors = {k: v for k, v in vars(rollout).items() if torch.is_tensor(v)}
    assert {k: v.device.type for k, v in tensors.items()} == dict.fromkeys(tensors, "cuda")
    m = trainer.step()
    assert m["val/ratio_first_mb"] == pytest.approx(1.0, abs=1e-4)
    assert m["objective/kl"] == pytest.approx(0.0, abs=1e-3)


def test_a_classifier_reward_scores_on_the_gpu(tmp_path):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from conftest import make_word_tokenizer
    from rlhf_demo.rewards import build_reward

    tok = make_word_tokenizer()
    GPT2ForSequenceClassification(GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=16, n_layer=1, n_head=2,
                                             num_labels=2, pad_token_id=tok.pad_token_id,
                                             id2label={0: "NEGATIVE", 1: "POSITIVE"},
                                             label2id={"NEGATIVE": 0, "POSITIVE": 1})).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    reward = build_reward([f"sentiment={tmp_path}@POSITIVE"], device="cuda")
    assert next(reward.model.parameters()).device.type == "cuda"
    assert len(reward(["the movie"], ["was good"])) == 1
