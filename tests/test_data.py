"""Prompt building: cleaning, lengths, determinism, errors, and the real GPT-2 tokenizer (no pad token)."""

import os

import datasets
import pytest

from rlhf_demo.data import build_prompt_dataset, clean_review, load_reviews
from rlhf_demo.models import load_tokenizer, pad_left


def test_clean_review_replaces_br_tags():
    assert clean_review("Great.<br /><br />Really.") == "Great.  Really."


def test_queries_have_2_to_8_tokens_and_are_deterministic(imdb_path, gpt2_tokenizer_path):
    tok = load_tokenizer(gpt2_tokenizer_path)
    a = build_prompt_dataset(tok, imdb_path, "train", num_prompts=300, seed=1)
    b = build_prompt_dataset(tok, imdb_path, "train", num_prompts=300, seed=1)
    c = build_prompt_dataset(tok, imdb_path, "train", num_prompts=300, seed=2)
    lengths = [len(x) for x in a["input_ids"]]
    assert min(lengths) == 2 and max(lengths) == 8  # 300 draws cover the whole range
    assert a["input_ids"] == b["input_ids"] and a["query"] == b["query"]
    assert a["input_ids"] != c["input_ids"]
    assert all("<br" not in q for q in a["query"])
    assert tok.decode(a["input_ids"][0]) == a["query"][0]


def test_short_reviews_are_dropped(tmp_path, gpt2_tokenizer_path):
    tok = load_tokenizer(gpt2_tokenizer_path)
    short, long = "Too short.", "A long review. " * 20
    datasets.Dataset.from_dict({"text": [short, long], "label": [0, 1]}).to_parquet(str(tmp_path / "train.parquet"))
    ds = build_prompt_dataset(tok, str(tmp_path), "train")
    assert len(ds) == 1 and long.startswith(ds["query"][0])


def test_gpt2_tokenizer_without_pad_token_pads_by_mask(gpt2_tokenizer_path, imdb_path):
    from transformers import AutoTokenizer

    raw = AutoTokenizer.from_pretrained(gpt2_tokenizer_path)
    assert raw.pad_token is None  # GPT-2 has none
    tok = load_tokenizer(gpt2_tokenizer_path)
    assert tok.pad_token_id == tok.eos_token_id == 50256 and tok.padding_side == "left"
    ds = build_prompt_dataset(tok, imdb_path, "test", num_prompts=8)
    ids, mask = pad_left(ds["input_ids"], tok.pad_token_id)
    for row, m, q in zip(ids.tolist(), mask.tolist(), ds["input_ids"]):
        assert sum(m) == len(q) and row[len(row) - len(q):] == q  # the mask, not the pad id, says what is real


def test_errors_name_the_problem(tmp_path, gpt2_tokenizer_path):
    tok = load_tokenizer(gpt2_tokenizer_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_reviews(str(tmp_path / "missing"))
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    datasets.Dataset.from_dict({"review": ["x" * 300], "label": [1]}).to_parquet(str(wrong / "train.parquet"))
    with pytest.raises(ValueError, match=r"no 'text' column; columns found: \['review', 'label'\]"):
        load_reviews(str(wrong))
    empty = tmp_path / "empty"
    empty.mkdir()
    datasets.Dataset.from_dict({"text": [], "label": []}).to_parquet(str(empty / "train.parquet"))
    with pytest.raises(ValueError, match="is empty"):
        load_reviews(str(empty))
    with pytest.raises(ValueError, match="no split 'test'"):
        load_reviews(str(wrong), "test")
    with pytest.raises(ValueError, match="min_query_tokens"):
        build_prompt_dataset(tok, str(wrong), min_query_tokens=5, max_query_tokens=3)


@pytest.mark.parametrize("values,match", [
    ([7, 8], r"column 'text' holds an int in row 0 \(from 0\), not text; pass --text_column"),
    (["x" * 20, None], r"column 'text' holds null in row 1 \(from 0\), not text \(1 of 2 rows are null\)"),
    ([{"body": "x"}, {"body": "y"}], "column 'text' holds a dict in row 0"),
])
def test_review_texts_that_are_not_text_name_their_row(tmp_path, values, match):
    import json

    from conftest import make_word_tokenizer

    from rlhf_demo.errors import UserInputError

    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps({"text": v}) + "\n" for v in values))
    with pytest.raises(UserInputError, match=match):
        build_prompt_dataset(make_word_tokenizer(), str(path), min_review_chars=0)


def test_a_cache_that_cannot_be_written_is_named(tmp_path):
    import errno

    from datasets import config

    from rlhf_demo.data import _cache_problem

    inside = os.path.join(str(config.HF_DATASETS_CACHE), "json", "x.lock")
    error = OSError(errno.EROFS, "Read-only file system", inside)
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = error
    assert "datasets cache" in _cache_problem(wrapped) and "HF_DATASETS_CACHE (or HF_HOME)" in _cache_problem(wrapped)
    assert "is full" in _cache_problem(OSError(errno.ENOSPC, "No space left on device", inside))
    assert _cache_problem(OSError(errno.EROFS, "Read-only file system", str(tmp_path / "data.csv"))) is None
