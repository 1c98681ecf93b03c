"""Prompt datasets: IMDB reviews cut to short queries, as in Ziegler et al. (2019) and TRL's gpt2-sentiment example.

Every review is cleaned (`<br />` tags become spaces), reviews of at most `min_review_chars` characters are
dropped, and each remaining review becomes one query: its first L tokens, with L drawn uniformly from
[min_query_tokens, max_query_tokens] by a seeded generator, so the same seed always gives the same queries.
The train split feeds PPO; the test split feeds evaluation, so evaluation prompts are never training prompts.
"""

from __future__ import annotations

import os
import random

import datasets

from .models import is_local_path

DEFAULT_DATASET = "stanfordnlp/imdb"


def clean_review(text: str) -> str:
    """Replace IMDB's HTML line breaks (`<br />`, `<br/>`, `<br>`) by spaces."""
    return text.replace("<br />", " ").replace("<br/>", " ").replace("<br>", " ")


def load_reviews(dataset_name_or_path: str = DEFAULT_DATASET, split: str = "train",
                 text_column: str = "text") -> datasets.Dataset:
    """Load one split of a review dataset from a Hub id or a local path and check it.

    Args:
        dataset_name_or_path: a Hub dataset id (`stanfordnlp/imdb`) or a local folder that
            `datasets.load_dataset` reads (parquet, csv, json files named by split).
        split: `train` for training prompts, `test` for held-out evaluation prompts.
        text_column: the column that holds the review text.

    Raises:
        FileNotFoundError: the local path does not exist.
        ValueError: the split is missing, the text column is missing (the message lists the columns
            found), or the split is empty.
    """
    path = os.path.expanduser(dataset_name_or_path)
    if is_local_path(dataset_name_or_path) and not os.path.exists(path):
        raise FileNotFoundError(
            f"Prompt dataset path {dataset_name_or_path!r} does not exist. Pass a folder that "
            "`datasets.load_dataset` can read (e.g. one with train.parquet and test.parquet) or a Hub id such "
            f"as {DEFAULT_DATASET!r}."
        )
    try:
        dsd = datasets.load_dataset(path if os.path.exists(path) else dataset_name_or_path)
    except ValueError as e:
        if "corresponds to no data" in str(e):  # datasets' message for a split with no rows
            raise ValueError(f"Dataset {dataset_name_or_path!r} is empty: a split holds no reviews ({e}).") from e
        raise
    except (ConnectionError, OSError) as e:  # offline, or an unknown Hub id
        raise OSError(
            f"Could not load the dataset {dataset_name_or_path!r} ({e}). Without internet, pass a local copy "
            "with --dataset_name PATH (e.g. the IMDB parquet files)."
        ) from e
    if split not in dsd:
        raise ValueError(f"Dataset {dataset_name_or_path!r} has no split {split!r}; splits found: {sorted(dsd)}.")
    ds = dsd[split]
    if text_column not in ds.column_names:
        raise ValueError(
            f"Dataset {dataset_name_or_path!r} split {split!r} has no {text_column!r} column; columns found: "
            f"{ds.column_names}. Pass --text_column with the name of the column holding the text."
        )
    if len(ds) == 0:
        raise ValueError(f"Dataset {dataset_name_or_path!r} split {split!r} is empty: it holds no reviews.")
    return ds


def build_prompt_dataset(
    tokenizer,
    dataset_name_or_path: str = DEFAULT_DATASET,
    split: str = "train",
    *,
    text_column: str = "text",
    min_review_chars: int = 200,
    min_query_tokens: int = 2,
    max_query_tokens: int = 8,
    num_prompts: int | None = None,
    seed: int = 0,
) -> datasets.Dataset:
    """Build the query dataset: the first L tokens of each long-enough review, L ~ U[min, max].

    Args:
        tokenizer: the policy's tokenizer (any `PreTrainedTokenizerBase`; a pad token is not needed).
        num_prompts: keep only the first `num_prompts` queries after a seeded shuffle (None: all).
        seed: seeds both the shuffle and the query lengths.

    Returns:
        A `datasets.Dataset` with columns `input_ids` (list[int], length L in [min, max]) and `query`
        (the decoded query text).

    Raises:
        ValueError: bad lengths, or no review is longer than `min_review_chars` (plus the errors of
            `load_reviews`).
    """
    if not 1 <= min_query_tokens <= max_query_tokens:
        raise ValueError(
            f"Query lengths must satisfy 1 <= min_query_tokens <= max_query_tokens; got {min_query_tokens} and "
            f"{max_query_tokens}."
        )
    ds = load_reviews(dataset_name_or_path, split, text_column)
    ds = ds.map(lambda b: {"text": [clean_review(t) for t in b[text_column]]}, batched=True,
                remove_columns=ds.column_names)
    ds = ds.filter(lambda b: [len(t) > min_review_chars for t in b["text"]], batched=True)
    if len(ds) == 0:
        raise ValueError(
            f"No review in {dataset_name_or_path!r} split {split!r} is longer than {min_review_chars} characters; "
            "lower --min_review_chars or use another dataset."
        )
    ds = ds.shuffle(seed=seed)
    if num_prompts is not None:
        if num_prompts < 1:
            raise ValueError(f"num_prompts must be at least 1, got {num_prompts}.")
        ds = ds.select(range(min(num_prompts, len(ds))))
    rng = random.Random(seed)
    lengths = [rng.randint(min_query_tokens, max_query_tokens) for _ in range(len(ds))]

    def tokenize(batch, indices):
        # Only the head of each review is needed; 4 characters per token is a generous bound.
        heads = [t[: 16 * max_query_tokens] for t in batch["text"]]
        ids = tokenizer(heads, add_special_tokens=False)["input_ids"]
        ids = [x[: lengths[i]] for x, i in zip(ids, indices)]
        return {"input_ids": ids, "query": tokenizer.batch_decode(ids)}

    return ds.map(tokenize, batched=True, with_indices=True, remove_columns=["text"])
