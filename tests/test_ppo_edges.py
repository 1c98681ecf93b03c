"""PPO at the edges: the reward model sees every response, accumulation and clipping do what they say, and the
logged metrics are the ones the step used."""

import pytest
import torch
from conftest import count_word, make_word_tokenizer
from test_ppo_trainer import make_trainer, read_metrics
from transformers import GPT2Config, GPT2ForSequenceClassification

from rlhf_demo.rewards import ClassifierReward, WeightedSum, context_window, truncated_count


def small_classifier(tmp_path, n_positions=16):
    """A random two-label GPT-2 classifier over the word vocabulary, with only `n_positions` positions, saved with a
    tokenizer that truncates on the RIGHT (transformers' default side)."""
    tok = make_word_tokenizer()
    tok.truncation_side = "right"
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(GPT2Config(
        vocab_size=len(tok), n_positions=n_positions, n_embd=16, n_layer=1, n_head=2, num_labels=2,
        pad_token_id=tok.pad_token_id, id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1}))
    with torch.no_grad():
        model.score.weight.normal_(std=2.0)
    path = tmp_path / "rm"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_long_query_never_hides_the_response_from_the_reward_model(tmp_path):
    reward = ClassifierReward(small_classifier(tmp_path))
    assert reward.window == 16  # the model's own positions, not a fixed 512
    query = " ".join(["the movie was"] * 10)  # 30 tokens: more than the whole window
    scores = reward([query, query], [" good good great", " bad bad awful"])
    # Right truncation would keep the query's first 16 tokens, the same text for both: identical scores (and with
    # the old fixed 512-token window, an IndexError past the 16 positions).
    assert abs(scores[0] - scores[1]) > 1e-3
    assert truncated_count(reward) == 2
    both = WeightedSum([reward, reward])  # two models that cut the same texts: each text counts once
    both([query, query], [" good good great", " bad bad awful"])
    assert truncated_count(both) == 2
    short = reward(["the movie"], [" good"])
    assert truncated_count(reward) == 0 and len(short) == 1


def test_a_texts_score_does_not_depend_on_the_texts_beside_it():
    """The shipped tiny reward model (a GPT-2 classifier whose tokenizer was saved padding on the left, with no
    position ids given) once scored a short text differently alone and beside a long one: the reward of an episode
    depended on its batch, and so on the batch size and the number of processes."""
    from rlhf_demo.names import PRESET_REWARD_MODELS

    reward = ClassifierReward(PRESET_REWARD_MODELS["tiny"])
    queries = ["This movie", "I thought"]
    responses = [" was bad.", " it was one of the best films of the year, with a cast that gave everything to it."]
    alone = [reward([q], [r])[0] for q, r in zip(queries, responses)]
    together = reward(queries, responses)
    assert together == pytest.approx(alone, abs=1e-4)
    assert abs(alone[0] - alone[1]) > 0.1  # the two texts do score differently


def test_context_window_takes_the_smallest_bound(tmp_path):
    reward = ClassifierReward(small_classifier(tmp_path, n_positions=32), max_length=20)
    assert reward.window == 20
    assert context_window(reward.model, reward.tokenizer) == 32


def capture_gradients(trainer, rollout):
    """The gradients of the first optimizer step of `trainer.update(rollout)` (clipping and the step skipped)."""
    captured = []

    def capture(policy_params, value_params, stats, rollout):
        if not captured:
            captured.append([p.grad.detach().clone() for p in policy_params + value_params])
        for key in ("policy_grad_norm", "value_grad_norm"):
            stats[key].append(torch.tensor(0.0))
        trainer.optimizer.zero_grad(set_to_none=True)

    trainer._clip_and_step = capture
    trainer.update(rollout)
    return captured[0]


def test_gradient_accumulation_equals_one_big_minibatch_for_uneven_lengths(word_policy_dir, tmp_path):
    common = dict(total_episodes=16, num_mini_batches=1, num_ppo_epochs=1)
    one = make_trainer(word_policy_dir, tmp_path / "one", count_word("good"), **common)
    four = make_trainer(word_policy_dir, tmp_path / "four", count_word("good"), gradient_accumulation_steps=4,
                        **common)
    rollout = one.make_rollout()
    lengths = torch.tensor([1, 6, 2, 6, 3, 5, 1, 6, 4, 2, 6, 1, 5, 6, 2, 3])  # responses that ended early
    mask = (torch.arange(rollout.response_mask.shape[1])[None] < lengths[:, None]).long()
    rollout.response_mask = mask
    for name in ("logprobs", "values", "advantages", "returns"):
        setattr(rollout, name, getattr(rollout, name) * mask)
    big, accumulated = capture_gradients(one, rollout), capture_gradients(four, rollout)
    num = sum(((a - b) ** 2).sum() for a, b in zip(big, accumulated)).sqrt()
    den = sum((a ** 2).sum() for a in big).sqrt()
    assert den > 0 and (num / den).item() < 1e-5


def test_each_network_is_clipped_to_its_own_norm(word_policy_dir, tmp_path):
    trainer = make_trainer(word_policy_dir, tmp_path / "run", count_word("good"), total_episodes=16,
                           max_grad_norm=1e-3, vf_coef=10.0)
    rollout = trainer.make_rollout()
    policy = [p for p in trainer.policy.parameters() if p.requires_grad]
    value = list(trainer.value_model.parameters())
    after = []
    step = trainer.optimizer.step

    def record_then_step(*args, **kwargs):
        norm = lambda ps: torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in ps])).item()  # noqa: E731
        after.append((norm(policy), norm(value)))
        return step(*args, **kwargs)

    trainer.optimizer.step = record_then_step
    stats = trainer.update(rollout)
    assert stats["policy/grad_norm"] > 1e-3 and stats["val/grad_norm"] > 1e-3  # both were clipped
    for policy_norm, value_norm in after:
        # Joint clipping would leave the policy at 1e-3 * |g_policy| / |g_all|, far below 1e-3 with vf_coef 10.
        assert policy_norm == pytest.approx(1e-3, rel=1e-3)
        assert value_norm == pytest.approx(1e-3, rel=1e-3)


def test_logged_learning_rate_is_the_one_the_step_used(word_policy_dir, tmp_path):
    out = tmp_path / "run"
    make_trainer(word_policy_dir, out, count_word("good"), total_episodes=48).train()  # 3 steps, lr 1e-3 -> 0
    assert [m["lr"] for m in read_metrics(out)] == pytest.approx([1e-3, 1e-3 * 2 / 3, 1e-3 / 3], abs=1e-12)


def test_every_step_logs_entropy_grad_norms_eos_and_ratio_variance(word_policy_dir, tmp_path):
    out = tmp_path / "run"
    make_trainer(word_policy_dir, out, count_word("good"), total_episodes=32, ent_coef=0.0,
                 stop_at_eos=True).train()
    for m in read_metrics(out):
        assert m["policy/entropy_avg"] > 0  # logged with ent_coef 0 as well
        assert m["policy/grad_norm"] > 0 and m["val/grad_norm"] > 0
        assert m["val/ratio_var"] >= 0 and m["policy/ratio"] == m["val/ratio"]
        assert isinstance(m["val/num_eos_tokens"], (int, float)) and m["val/num_eos_tokens"] >= 0
        assert m["objective/reward_truncated_frac"] == 0.0


def test_the_classifier_reward_keeps_its_former_name_one_release():
    from rlhf_demo import rewards

    assert rewards.SentimentReward is ClassifierReward and rewards.REWARD_KINDS["sentiment"] is ClassifierReward
    assert issubclass(rewards.ToxicityReward, ClassifierReward) and issubclass(rewards.PreferenceReward,
                                                                             ClassifierReward)
