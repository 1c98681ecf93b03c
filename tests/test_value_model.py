"""The value model's head starts at the reward model's score (value_head_init): V(s) of a prefix is exactly the
reward model's logit of the rewarded label on that prefix."""

import pytest
import torch
from conftest import make_word_tokenizer
from transformers import AutoModelForSequenceClassification, GPT2Config, GPT2ForSequenceClassification

from rlhf_demo.errors import UserInputError
from rlhf_demo.models import PRESET_REWARD_MODELS, build_value_model, value_forward
from rlhf_demo.rewards import reward_label_of

TINY_RM = PRESET_REWARD_MODELS["tiny"]


def last_token_values(value_model, ids):
    """V(s) for s = each (unpadded) row of `ids`, as PPO reads it (`value_forward` gives V before each response
    token, so one more token is appended): (B,)."""
    ids = torch.cat([ids, ids[:, :1]], 1)
    mask = torch.ones_like(ids)
    return value_forward(value_model, ids[:, :1], mask[:, :1], ids[:, 1:], mask[:, 1:])[:, -1]


def test_two_label_reward_model_gives_the_rewarded_labels_logit():
    rm = AutoModelForSequenceClassification.from_pretrained(TINY_RM).eval()
    ids = torch.randint(rm.config.pad_token_id + 1, rm.config.vocab_size, (3, 9))  # no padding token
    with torch.no_grad():
        logits = rm(input_ids=ids).logits  # (3, 2): NEGATIVE, POSITIVE
        labels = {v.upper(): int(k) for k, v in rm.config.id2label.items()}
        values = last_token_values(build_value_model(TINY_RM, "auto", "POSITIVE").eval(), ids)
        zero = last_token_values(build_value_model(TINY_RM, "zero", "POSITIVE").eval(), ids)
        negative = last_token_values(build_value_model(TINY_RM, "reward_model", "NEGATIVE").eval(), ids)
    # The reward is the POSITIVE logit alone, so the value starts there (not at the POSITIVE - NEGATIVE margin,
    # which is about twice the reward's scale).
    torch.testing.assert_close(values, logits[:, labels["POSITIVE"]], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(negative, logits[:, labels["NEGATIVE"]], atol=1e-4, rtol=1e-4)
    margin = logits[:, labels["POSITIVE"]] - logits[:, labels["NEGATIVE"]]
    assert (values - margin).abs().max() > 0.1 and zero.abs().max() == 0


def test_a_saved_value_model_loads_again(tmp_path):
    """RUN/value_model of a run whose value model started from the tiny reward model: its config once kept the
    classifier's "single_label_classification" with one label, which transformers refuses to load; a later run's
    --value_model_name_or_path RUN/value_model failed with it."""
    from transformers import AutoModelForTokenClassification

    build_value_model(TINY_RM, "auto", "POSITIVE").save_pretrained(tmp_path / "value_model")
    assert AutoModelForTokenClassification.from_pretrained(tmp_path / "value_model").config.num_labels == 1
    assert build_value_model(str(tmp_path / "value_model")).config.num_labels == 1


def test_one_logit_reward_model_gives_its_logit(tmp_path):
    tok = make_word_tokenizer()
    torch.manual_seed(0)
    rm = GPT2ForSequenceClassification(GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=16, n_layer=1,
                                                  n_head=2, num_labels=1, pad_token_id=tok.pad_token_id)).eval()
    with torch.no_grad():
        rm.score.weight.normal_()
    rm.save_pretrained(tmp_path / "bt")
    ids = torch.randint(2, len(tok), (4, 6))
    with torch.no_grad():
        values = last_token_values(build_value_model(str(tmp_path / "bt"), "auto", "").eval(), ids)
        torch.testing.assert_close(values, rm(input_ids=ids).logits[:, 0], atol=1e-5, rtol=1e-5)


def test_auto_falls_back_to_zero_and_reward_model_refuses(word_policy_dir):
    ids = torch.randint(2, 18, (2, 5))
    with torch.no_grad():
        assert last_token_values(build_value_model(word_policy_dir, "auto", None), ids).abs().max() == 0
        # the tiny reward model without a rewarded label: no direction to start from
        assert last_token_values(build_value_model(TINY_RM, "auto", None), ids).abs().max() == 0
    with pytest.raises(UserInputError, match="value_head_init reward_model needs"):
        build_value_model(word_policy_dir, "reward_model", "POSITIVE")
    with pytest.raises(UserInputError, match="value_head_init must be"):
        build_value_model(TINY_RM, "margin", "POSITIVE")


def test_reward_label_of_matches_the_value_backbone():
    specs = ["keyword=good", f"sentiment={TINY_RM}@POSITIVE:0.5"]
    assert reward_label_of(TINY_RM, specs) == "POSITIVE"
    assert reward_label_of("tiny", ["sentiment=tiny@NEGATIVE"]) == "NEGATIVE"  # preset names resolve
    assert reward_label_of(TINY_RM, ["preference=" + TINY_RM]) == ""
    assert reward_label_of("other/model", specs) is None


def test_speed_benchmark_ppo_starts_at_the_reward_models_score(tmp_path, imdb_path):
    # The benchmark hands PPOTrainer a reward function object; its config must still name that reward model, or
    # value_head_init auto silently falls back to a zero head and the benchmark measures the wrong start.
    import importlib.util
    import os

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("rlhf_speed", os.path.join(REPO, "benchmarks", "rlhf_speed.py"))
    rlhf_speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rlhf_speed)
    args = rlhf_speed.parse_args(["--dataset", imdb_path, "--work_dir", str(tmp_path)])
    trainer = rlhf_speed.build_rlhf_demo_ppo(args)
    head = trainer.accelerator.unwrap_model(trainer.value_model).classifier.weight[0]
    rm = AutoModelForSequenceClassification.from_pretrained(TINY_RM)
    labels = {v.upper(): int(k) for k, v in rm.config.id2label.items()}
    assert torch.allclose(head, rm.score.weight[labels["POSITIVE"]])
