"""The value head on the policy's trunk (value_head_on_policy): the same logits as the policy's own forward, values
of each prefix only, and a PPO run that learns, checkpoints and resumes with it."""

import pytest
import torch
from conftest import count_word, crashing_on_call, make_word_tokenizer
from test_ppo_trainer import make_trainer, read_metrics

from rlhf_demo.config import PPOConfig
from rlhf_demo.errors import UserInputError
from rlhf_demo.models import forward_response, load_policy, pad_left
from rlhf_demo.value_head import PolicyValueHead, build_policy_value_head, policy_value_forward


def batch(tok):
    ids, mask = pad_left([tok("the movie was", add_special_tokens=False)["input_ids"],
                          tok("a film", add_special_tokens=False)["input_ids"]], tok.pad_token_id)
    responses = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    return ids, mask, responses, torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])


def test_logits_equal_the_policys_forward_and_values_see_only_the_prefix(word_policy_dir):
    tok = make_word_tokenizer()
    policy = load_policy(word_policy_dir)
    head = build_policy_value_head(policy)
    ids, mask, responses, rmask = batch(tok)
    _, values = policy_value_forward(policy, head, ids, mask, responses, rmask, with_logits=False)
    assert values.shape == (2, 4) and values.abs().max() == 0  # the head starts at zero
    torch.manual_seed(0)
    torch.nn.init.normal_(head.score.weight)
    for temperature in (1.0, 0.7):
        logits, values = policy_value_forward(policy, head, ids, mask, responses, rmask, temperature)
        assert torch.allclose(logits, forward_response(policy, ids, mask, responses, rmask, temperature), atol=1e-5)
    # V(s_t) reads query + response_<t: the last response token changes no value, the first changes all but V(s_0).
    changed = responses.clone()
    changed[:, -1] = 13
    assert torch.allclose(policy_value_forward(policy, head, ids, mask, changed, rmask)[1], values, atol=1e-6)
    changed[:, 0] = 13
    v2 = policy_value_forward(policy, head, ids, mask, changed, rmask)[1]
    assert torch.allclose(v2[:, 0], values[:, 0], atol=1e-6) and not torch.allclose(v2[:, 1:], values[:, 1:])


def test_ppo_with_the_value_head_on_the_policy_learns_and_resumes(word_policy_dir, tmp_path):
    common = dict(value_head_on_policy=True, total_episodes=16 * 6, save_steps=3, save_total_limit=5, kl_coef=0.01)
    full = tmp_path / "full"
    trainer = make_trainer(word_policy_dir, full, count_word("good"), **common)
    assert isinstance(trainer.value_model, PolicyValueHead)
    assert sum(p.numel() for p in trainer.value_model.parameters()) == trainer.policy.config.hidden_size + 1
    trainer.train()
    a = read_metrics(full)
    assert a[-1]["objective/scores"] > a[0]["objective/scores"]
    # The head starts at 0 and learns the returns (the "good" count is positive).
    assert a[0]["val/mean"] == 0 and a[-1]["val/mean"] > 0.1, (a[0]["val/mean"], a[-1]["val/mean"])
    head = PolicyValueHead.from_pretrained(str(full / "value_model"))
    assert head.score.weight.abs().sum() > 0

    part = tmp_path / "part"
    with pytest.raises(RuntimeError, match="went away"):
        make_trainer(word_policy_dir, part, crashing_on_call(5, count_word("good")), **common).train()
    make_trainer(word_policy_dir, part, count_word("good"), resume_from_checkpoint="latest", **common).train()
    b = read_metrics(part)
    for ma, mb in zip(a[3:], b[3:]):
        for k in ("objective/scores", "loss/value_avg", "val/mean"):
            assert ma[k] == pytest.approx(mb[k], abs=1e-5), (k, ma["step"])
    wa, wb = load_policy(str(full)).state_dict(), load_policy(str(part)).state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)


def test_resume_refuses_a_checkpoint_with_the_other_value_model(word_policy_dir, tmp_path):
    out = tmp_path / "run"
    make_trainer(word_policy_dir, out, count_word("good"), total_episodes=16).train()
    with pytest.raises(UserInputError, match="value_head_on_policy"):
        make_trainer(word_policy_dir, out, count_word("good"), value_head_on_policy=True,
                     resume_from_checkpoint="latest")


def test_options_it_does_not_cover_are_refused(word_policy_dir):
    for bad in (dict(use_peft=True), dict(value_head_init="reward_model")):
        with pytest.raises(UserInputError, match="value_head_on_policy"):
            PPOConfig(value_head_on_policy=True, reward=[], **bad)
    from peft import LoraConfig, get_peft_model

    policy = get_peft_model(load_policy(word_policy_dir), LoraConfig(r=2, target_modules=["c_attn"]))
    with pytest.raises(UserInputError, match="causal LM trained in full"):
        build_policy_value_head(policy)
