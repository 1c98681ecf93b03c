"""`rlhf-demo pretrain` end to end on a few reviews: tokenizer, model, held-out report, and an exact resume."""

import json

import datasets
import pytest
import torch

from rlhf_demo.config import PretrainConfig
from rlhf_demo.pretrain import lr_at, pretrain

REVIEWS = ["A wonderful film with a great cast and a moving story.", "Terrible plot, awful acting, a waste of time.",
           "I loved every minute of this movie; the music was superb.", "Boring and far too long. I fell asleep."]


@pytest.fixture
def reviews_dir(tmp_path):
    path = tmp_path / "reviews"
    for split, n in (("train", 40), ("test", 8)):
        texts = [REVIEWS[i % len(REVIEWS)] + f" Review {i}." for i in range(n)]
        datasets.Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(n)]}).to_parquet(
            str(path / f"{split}.parquet"))
    return str(path)


def small_config(reviews_dir, out, **kw):
    base = dict(output_dir=str(out), dataset_name=reviews_dir, vocab_size=300, n_layer=1, n_embd=32, n_head=2,
                block_size=32, batch_size=4, warmup_steps=2, max_steps=6, save_steps=2, eval_reviews=8)
    return PretrainConfig(**{**base, **kw})


def test_pretrain_writes_a_model_and_its_report(reviews_dir, tmp_path):
    report = pretrain(small_config(reviews_dir, tmp_path / "run"))
    final = tmp_path / "run" / "final"
    assert report["steps"] == 6 and report["reviews"] == 8 and 0 < report["bits_per_byte"] < 20
    assert json.load(open(final / "pretrain_report.json"))["loss"] == pytest.approx(report["loss"])
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(final))
    assert model.config.n_positions == 32 and model.dtype == torch.float32  # fp16 on disk, fp32 on load


def test_resume_continues_from_the_checkpoint(reviews_dir, tmp_path, capsys):
    part = pretrain(small_config(reviews_dir, tmp_path / "run", max_steps=4))
    state = tmp_path / "run" / "checkpoint" / "state.pt"
    assert torch.load(state)["step"] == 4
    resumed = pretrain(small_config(reviews_dir, tmp_path / "run", resume=True))  # extended to 6 steps
    assert "at step 4" in capsys.readouterr().out
    assert resumed["steps"] == 6 and torch.load(state)["step"] == 6
    assert resumed["train_s"] >= part["train_s"]  # the time of the first run is carried over


def test_learning_rate_warms_up_then_decays_to_the_floor():
    cfg = PretrainConfig(learning_rate=1e-3, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_at(cfg, 0) == pytest.approx(1e-4) and lr_at(cfg, 9) == pytest.approx(1e-3)
    assert lr_at(cfg, 110) == pytest.approx(1e-4) and lr_at(cfg, 60) == pytest.approx(0.55e-3)
