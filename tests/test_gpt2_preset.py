"""The gpt2 preset's code path offline: a random GPT-2-config policy on GPT-2's real tokenizer (no pad token), and a
tiny DistilBERT reward model with its own WordPiece tokenizer, so scores must come from decoded text."""

import json
import os

import pytest
import torch

from rlhf_demo.config import PPOConfig, parse_config
from rlhf_demo.ppo import PPOTrainer
from rlhf_demo.rewards import ClassifierReward


def make_distilbert_reward_model(path, texts):
    from tokenizers import BertWordPieceTokenizer
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, PreTrainedTokenizerFast

    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(texts, vocab_size=500, show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=wp._tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                  cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(1)
    cfg = DistilBertConfig(vocab_size=len(tok), dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                           max_position_embeddings=128,
                           id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1},
                           pad_token_id=tok.pad_token_id)
    DistilBertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)


def test_gpt2_preset_runs_with_a_reward_model_of_another_tokenizer(tmp_path, gpt2_tokenizer_path, imdb_path):
    import datasets
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    texts = datasets.load_dataset(imdb_path, split="train").select(range(200))["text"]
    rm_dir, policy_dir = str(tmp_path / "rm"), str(tmp_path / "policy")
    make_distilbert_reward_model(rm_dir, texts)
    gpt2_tok = AutoTokenizer.from_pretrained(gpt2_tokenizer_path)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(gpt2_tok), n_positions=64, n_embd=32, n_layer=1,
                               n_head=2)).save_pretrained(policy_dir)
    gpt2_tok.save_pretrained(policy_dir)

    cfg = parse_config(PPOConfig,
                       ["--preset", "gpt2", "--model_name_or_path", policy_dir, "--reward",
                        f"sentiment={rm_dir}@POSITIVE",
                                   "--dataset_name", imdb_path, "--output_dir", str(tmp_path / "run"),
                        "--total_episodes", "16",
                                   "--batch_size", "8", "--num_mini_batches", "2", "--save_steps", "0",
                        "--sample_steps", "0",
                                   "--progress_bar", "false"], section="train")
    assert cfg.response_length == 16 and cfg.adaptive_kl and cfg.learning_rate == 1.41e-5  # the preset's values survive
    trainer = PPOTrainer(cfg)
    # GPT-2: pad with EOS, mask by length
    assert trainer.tokenizer.pad_token_id == trainer.tokenizer.eos_token_id == 50256
    m = trainer.step()
    assert m["objective/kl"] == pytest.approx(0.0, abs=1e-4) and m["response_length_mean"] == 16  # up to rounding
    r = trainer.last_rollout
    # The score is the DistilBERT logit of POSITIVE on the decoded text, not on GPT-2 ids.
    expected = ClassifierReward(rm_dir)(r.queries_text, r.responses_text)
    assert torch.allclose(r.raw_scores, torch.tensor(expected), atol=1e-5)
    trainer.train()
    rows = [json.loads(line) for line in open(os.path.join(cfg.output_dir, "metrics.jsonl"))]
    assert rows[-1]["episode"] == 16 and os.path.isfile(os.path.join(cfg.output_dir, "model.safetensors"))
