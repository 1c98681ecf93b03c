"""Encoder-decoder policies (tiny T5 models built here) through the same PPO step, sampler, value model, export and
evaluation as causal LMs; and the flan-t5-detox recipe's code path on tiny models: a prompt-only dataset with a
template, a hate-speech-style classifier reward, LoRA with the adapter-disabled reference."""

import copy
import json
import math
import os

import pytest
import torch
from conftest import REPO, count_word, make_word_tokenizer, word_prompts

from rlhf_demo.config import PPOConfig
from rlhf_demo.models import load_policy, pad_left, response_logprobs, value_forward
from rlhf_demo.ppo import PPOTrainer
from rlhf_demo.sampling import sample
from rlhf_demo.seq2seq import Seq2SeqValueModel, right_align

TINY_TOKENIZER = os.path.join(REPO, "rlhf_demo", "presets", "tiny", "policy")
TEMPLATE = "Summarize the following conversation.\n\n{dialogue}\n\nSummary:"


def make_tiny_t5(tok, seed=0):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    config = T5Config(vocab_size=len(tok), d_model=32, d_ff=64, d_kv=16, num_layers=1, num_heads=2, dropout_rate=0.1,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                      decoder_start_token_id=tok.pad_token_id)
    return T5ForConditionalGeneration(config).eval()


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    """A saved 1-layer T5 on the word-level tokenizer."""
    tok = make_word_tokenizer()
    path = tmp_path_factory.mktemp("t5") / "policy"
    make_tiny_t5(tok).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def make_trainer(policy_dir, out, reward_fn, **overrides):
    kw = dict(output_dir=str(out), model_name_or_path=policy_dir, reward=[], total_episodes=16, batch_size=16,
              num_mini_batches=2, response_length=6, learning_rate=1e-3, save_steps=0, sample_steps=0,
              progress_bar=False, eval_num_prompts=0, seed=0)
    kw.update(overrides)
    tok = make_word_tokenizer()
    return PPOTrainer(PPOConfig(**kw), tokenizer=tok, reward_fn=reward_fn, train_dataset=word_prompts(tok))


def test_first_step_kl_zero_and_ratio_one(t5_dir, tmp_path):
    trainer = make_trainer(t5_dir, tmp_path / "run", count_word("good"))
    assert trainer.accelerator.unwrap_model(trainer.policy).config.is_encoder_decoder
    assert isinstance(trainer.accelerator.unwrap_model(trainer.value_model), Seq2SeqValueModel)
    m = trainer.step()
    # The sampler's decoder logits (KV cache) against a full forward pass of the frozen copy: 0 up to rounding.
    assert m["objective/kl"] == pytest.approx(0.0, abs=1e-5)
    assert m["policy/approxkl_first_mb"] == pytest.approx(0.0, abs=1e-10)
    assert m["policy/clipfrac_first_mb"] == 0.0
    assert m["val/ratio_first_mb"] == pytest.approx(1.0, abs=1e-6)
    assert m["val/mean"] == 0.0  # zero-initialised value head


def test_logprobs_are_the_decoder_token_logprobs_and_ignore_encoder_padding(t5_dir):
    tok = make_word_tokenizer()
    model = load_policy(t5_dir)
    q = tok("the movie was very", add_special_tokens=False)["input_ids"]
    ids, mask = pad_left([q], tok.pad_token_id)
    torch.manual_seed(0)
    responses, rmask, logits = sample(model, ids, mask, max_new_tokens=5, pad_token_id=tok.pad_token_id,
                                      return_logits=True)
    base = response_logprobs(model, ids, mask, responses, rmask)
    # The same numbers as the sampler's logits, and as T5's own teacher-forced loss (labels = the response).
    sampled = logits.log_softmax(-1).gather(-1, responses[..., None])[..., 0]
    assert torch.allclose(base, sampled, atol=1e-5)
    loss = model(input_ids=ids, attention_mask=mask, labels=responses).loss
    assert -base.mean().item() == pytest.approx(loss.item(), abs=1e-5)
    for extra in (1, 4):
        ids2, mask2 = pad_left([q, q + q[:1] * extra], tok.pad_token_id)  # the batch forces `extra` pads on row 0
        assert mask2[0, :extra].sum() == 0
        assert torch.allclose(response_logprobs(model, ids2[:1], mask2[:1], responses, rmask), base, atol=1e-5)
    enc_ids, enc_mask = right_align(ids2, mask2)
    assert enc_mask[0].tolist() == [1] * len(q) + [0] * 4 and enc_ids[0, : len(q)].tolist() == q


def test_lora_reference_is_the_adapter_disabled_policy(t5_dir):
    from peft import LoraConfig, get_peft_model

    tok = make_word_tokenizer()
    base = load_policy(t5_dir)
    frozen = copy.deepcopy(base)
    policy = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q", "v"], task_type="SEQ_2_SEQ_LM"))
    with torch.no_grad():  # an adapter that has learnt something (LoRA's B starts at 0)
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    ids, mask = pad_left([tok("a good film", add_special_tokens=False)["input_ids"], [5, 6]], tok.pad_token_id)
    torch.manual_seed(0)
    responses, rmask = sample(frozen, ids, mask, max_new_tokens=6, pad_token_id=tok.pad_token_id)
    reference = response_logprobs(frozen, ids, mask, responses, rmask)
    with policy.disable_adapter():
        disabled = response_logprobs(policy, ids, mask, responses, rmask)
    adapted = response_logprobs(policy, ids, mask, responses, rmask)
    assert torch.allclose(disabled, reference, atol=1e-6)
    assert (adapted - reference).abs().max() > 1e-2


def test_value_model_saves_and_loads_with_its_head(t5_dir, tmp_path):
    from safetensors.torch import load_file

    tok = make_word_tokenizer()
    value_model = Seq2SeqValueModel.from_backbone(t5_dir)
    torch.nn.init.normal_(value_model.score.weight)
    ids, mask = pad_left([[5, 6, 7], [8, 9]], tok.pad_token_id)
    responses, rmask = torch.tensor([[2, 3, 4], [4, 5, 0]]), torch.tensor([[1, 1, 1], [1, 1, 0]])
    values = value_forward(value_model, ids, mask, responses, rmask)
    assert values.shape == (2, 3) and values.abs().sum() > 0
    value_model.save_pretrained(tmp_path / "value_model")
    again = Seq2SeqValueModel.from_pretrained(str(tmp_path / "value_model"))
    assert torch.allclose(value_forward(again, ids, mask, responses, rmask), values, atol=1e-6)
    fresh = Seq2SeqValueModel.from_backbone(t5_dir)  # what a checkpoint resume does: load_state_dict(strict=False)
    result = fresh.load_state_dict(load_file(tmp_path / "value_model" / "model.safetensors"), strict=False)
    assert not result.unexpected_keys and "score.weight" not in result.missing_keys
    assert torch.allclose(value_forward(fresh, ids, mask, responses, rmask), values, atol=1e-6)


@pytest.mark.slow  # about 20 s of PPO on 2 cores
def test_toy_reward_rises(t5_dir, tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    out = tmp_path / "run"
    trainer = make_trainer(t5_dir, out, count_word("good"), total_episodes=16 * 25, kl_coef=0.01, logging_steps=1,
                           learning_rate=3e-3)
    trainer.train()
    with open(out / "metrics.jsonl") as f:
        scores = [json.loads(line)["objective/scores"] for line in f]
    first, last = sum(scores[:5]) / 5, sum(scores[-5:]) / 5
    assert last > first + 1.0, (first, last)
    assert AutoModelForSeq2SeqLM.from_pretrained(str(out)).config.is_encoder_decoder  # the export loads as seq2seq


# ---- prompt-only datasets ------------------------------------------------------------------------------------------


def write_jsonl(path, rows):
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return str(path)


DIALOGUES = ["#Person1#: Hello, how are you? #Person2#: Fine, thanks.",
             "#Person1#: Where is the station? #Person2#: Two streets down, on the left.",
             "#Person1#: Did you like the film? #Person2#: It was a great film, very good."]


def test_prompt_only_dataset_with_a_template(tmp_path):
    from rlhf_demo.data import build_prompt_dataset
    from rlhf_demo.models import load_tokenizer

    tok = load_tokenizer(TINY_TOKENIZER)
    data = write_jsonl(tmp_path / "dialogues.jsonl", [{"id": i, "dialogue": d} for i, d in enumerate(DIALOGUES)])
    ds = build_prompt_dataset(tok, data, "test", prompt_template=TEMPLATE, seed=0)
    assert sorted(ds["query"]) == sorted(TEMPLATE.format(dialogue=d) for d in DIALOGUES)  # used as is
    for query, ids in zip(ds["query"], ds["input_ids"]):
        assert ids == tok(query)["input_ids"]
    long = max(len(x) for x in ds["input_ids"])
    left = build_prompt_dataset(tok, data, "test", prompt_template=TEMPLATE, max_prompt_length=8, seed=0)
    right = build_prompt_dataset(tok, data, "test", prompt_template=TEMPLATE, max_prompt_length=8, seed=0,
                                 truncation_side="right")
    assert long > 8 and all(len(x) == 8 for x in list(left["input_ids"]) + list(right["input_ids"]))
    for full, kept_end, kept_start in zip(ds["input_ids"], left["input_ids"], right["input_ids"]):
        assert kept_end == full[-8:] and kept_start == full[:8]
    assert all(q.endswith("Summary:") for q in left["query"])
    prompt_col = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "The movie was"}, {"prompt": "I think"}])
    ds = build_prompt_dataset(tok, prompt_col, "train", prompt_column="prompt", num_prompts=1)
    assert len(ds) == 1 and ds["query"][0] in ("The movie was", "I think")


@pytest.mark.parametrize("rows,options,match", [
    ([{"dialogue": "hi"}], {"prompt_column": "prompt"}, r"has no column 'prompt' \(--prompt_column is it\); "
                                                         r"columns found: \['dialogue'\]"),
    ([{"text": "hi"}], {"prompt_template": TEMPLATE}, r"has no column 'dialogue' \(--prompt_template names it\)"),
    ([{"prompt": "fine"}, {"prompt": "  "}], {"prompt_column": "prompt"}, r"the prompt of row 1 \(from 0\) is empty"),
    ([{"prompt": "fine"}, {"prompt": None}], {"prompt_column": "prompt"},
     r"column 'prompt' of row 1 \(from 0\) is missing"),
    ([{"prompt": [{"role": "user", "content": "hi"}]}], {"prompt_column": "prompt"}, "conversational prompts"),
    ([{"dialogue": "hi"}], {"prompt_template": "Summarize: {}"}, "must name the dataset's columns"),
    ([{"dialogue": "hi"}], {"prompt_template": "Summarize: {dialogue"}, "not a valid template"),
])
def test_bad_prompt_datasets_are_refused_clearly(tmp_path, rows, options, match):
    from rlhf_demo.data import build_prompt_dataset
    from rlhf_demo.errors import UserInputError

    data = write_jsonl(tmp_path / "prompts.jsonl", rows)
    with pytest.raises(UserInputError, match=match):
        build_prompt_dataset(make_word_tokenizer(), data, "train", **options)


def test_prompt_options_are_checked_with_the_config():
    from rlhf_demo.errors import UserInputError

    with pytest.raises(UserInputError, match="not both"):
        PPOConfig(prompt_column="prompt", prompt_template=TEMPLATE)
    with pytest.raises(UserInputError, match="applies to prompt-only datasets"):
        PPOConfig(max_prompt_length=64)
    with pytest.raises(UserInputError, match="truncation_side"):
        PPOConfig(prompt_column="prompt", truncation_side="middle")


def test_prompts_beyond_the_context_are_refused(t5_dir, word_policy_dir, tmp_path):
    from rlhf_demo.errors import UserInputError

    data = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": " ".join(["good"] * 60)}, {"prompt": "a film"}])
    kw = dict(output_dir=str(tmp_path / "run"), reward=["keyword=good"], dataset_name=data, prompt_column="prompt",
              response_length=8, progress_bar=False, eval_num_prompts=0)
    with pytest.raises(UserInputError, match=r"Queries plus responses of up to 68 tokens \(--max_prompt_length \+ "
                                             r"--response_length\) exceed the context of 64 tokens"):
        PPOTrainer(PPOConfig(model_name_or_path=word_policy_dir, **kw))  # GPT-2 with 64 positions
    PPOTrainer(PPOConfig(model_name_or_path=word_policy_dir, max_prompt_length=40, **kw))  # cut to fit: accepted
    # An encoder-decoder model bounds the query (encoder) and the response (decoder) each on its own.
    from rlhf_demo.models import check_context_length

    t5 = load_policy(t5_dir)
    t5.config.n_positions = 32
    check_context_length(t5, 30, 30, "--model_name_or_path")
    with pytest.raises(UserInputError, match=r"Queries of up to 40 tokens \(--max_prompt_length\) exceed the context "
                                             "of 32 tokens of the encoder-decoder model"):
        check_context_length(t5, 40, 8, "--model_name_or_path", "--max_prompt_length")


# ---- the flan-t5-detox recipe on tiny models, through the command line ----------------------------------------------


@pytest.fixture(scope="module")
def detox_world(tmp_path_factory):
    """A tiny T5 and a tiny RoBERTa hate-speech-style classifier (labels nothate / hate), both on the tiny preset's
    tokenizer, and dialogue prompts in local files (train and test splits)."""
    from transformers import AutoTokenizer, RobertaConfig, RobertaForSequenceClassification

    root = tmp_path_factory.mktemp("detox")
    tok = AutoTokenizer.from_pretrained(TINY_TOKENIZER)
    make_tiny_t5(tok).save_pretrained(root / "t5")
    tok.save_pretrained(root / "t5")
    torch.manual_seed(1)
    classifier = RobertaForSequenceClassification(RobertaConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=600, pad_token_id=tok.pad_token_id, id2label={0: "nothate", 1: "hate"},
        label2id={"nothate": 0, "hate": 1}))
    classifier.save_pretrained(root / "classifier")
    tok.save_pretrained(root / "classifier")
    os.makedirs(root / "dialogsum")
    for split, n in (("train", 24), ("test", 8)):
        write_jsonl(root / "dialogsum" / f"{split}.jsonl",
                    [{"id": f"{split}_{i}", "dialogue": f"{DIALOGUES[i % 3]} #Person1#: Number {i}."}
                     for i in range(n)])
    return root


@pytest.mark.slow  # a short PPO run and an evaluation on tiny models: about 30 s
def test_detox_recipe_trains_and_evaluates_from_the_command_line(detox_world, tmp_path, capsys):
    from safetensors.torch import load_file

    from rlhf_demo.cli import main

    w = detox_world
    run = tmp_path / "run"
    main(["train", "--preset", "flan-t5-detox", "--model_name_or_path", str(w / "t5"), "--reward",
          f"sentiment={w / 'classifier'}@nothate", "--dataset_name", str(w / "dialogsum"), "--max_prompt_length",
          "48", "--total_episodes", "16", "--batch_size", "8", "--num_mini_batches", "2", "--response_length", "12",
          "--min_response_length", "6", "--learning_rate", "1e-3", "--eval_num_prompts", "0", "--progress_bar",
          "false", "--save_steps", "1", "--output_dir", str(run)])
    config = json.load(open(run / "adapter" / "adapter_config.json"))
    assert config["r"] == 32 and config["lora_alpha"] == 32 and sorted(config["target_modules"]) == ["q", "v"]
    main(["eval", "--preset", "flan-t5-detox", "--model", str(run), "--reference", str(w / "t5"), "--reward_model",
          str(w / "classifier"), "--toxicity_judge", str(w / "classifier"), "--dataset_name", str(w / "dialogsum"),
          "--max_prompt_length", "48", "--max_new_tokens", "12", "--num_prompts", "8", "--batch_size", "8",
          "--bootstrap_samples", "200", "--output_dir", str(tmp_path / "eval")])
    results = json.load(open(tmp_path / "eval" / "eval_results.json"))
    assert results["metrics"]["reference"]["kl_to_reference_mean"] == 0.0
    assert math.isfinite(results["metrics"]["aligned"]["kl_to_reference_mean"])  # ~0 after 2 steps: either sign
    merged, base = load_file(run / "model.safetensors"), load_file(w / "t5" / "model.safetensors")
    changed = [k for k in merged if k.endswith((".q.weight", ".v.weight")) and not torch.equal(merged[k], base[k])]
    assert changed and all(torch.equal(merged[k], base[k]) for k in merged if ".k." in k)  # LoRA on q, v merged in
    tox = results["differences"]["toxicity_mean"]
    assert tox["ci_low"] <= tox["diff"] <= tox["ci_high"]
    assert 0 <= results["metrics"]["aligned"]["toxicity_mean"] <= 1
    frontier = results["frontier"]  # the reference, then each LoRA checkpoint loaded onto its base
    assert frontier[0]["checkpoint"] == "reference" and len(frontier) >= 2
    assert all(math.isfinite(p["reward_mean"]) and math.isfinite(p["kl_to_reference_mean"]) for p in frontier)
    samples = [json.loads(line) for line in open(tmp_path / "eval" / "samples.jsonl")]
    assert all(s["prompt"].endswith("Summary:") for s in samples)
