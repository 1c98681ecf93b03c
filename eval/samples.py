"""The samples schema of the evaluation suite: `samples.jsonl`, one JSON line per episode (prompt x sample).

Writer and reader side by side, so what `run_eval` writes is what the report and the model card read. A row:

    prompt_index          index of the prompt (episodes of one prompt are consecutive)
    prompt                the prompt text, as both models saw it
    query_ids             the prompt's token ids (aligned policy's tokenizer)
    {model}_response      the sampled continuation's text, for model in MODELS (reference, aligned)
    {model}_response_ids  its token ids
    {model}_reward        reward-model score            {model}_judge     independent sentiment judge score
    {model}_toxicity      toxicity probability          {model}_kl        log pi(response) - log pi_ref(response)

These keys are the ones the suite has always written: committed results (`eval/results/tiny/samples.jsonl`) stay valid.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import NamedTuple

from rlhf_demo.runs import read_jsonl

SAMPLES_FILE = "samples.jsonl"
MODELS = ("reference", "aligned")
SCORES = ("reward", "judge", "toxicity", "kl")


class SamplePair(NamedTuple):
    """The two models' responses to one prompt, as the report and the model card show them."""

    prompt: str
    reference: str
    aligned: str
    reference_reward: float | None = None
    aligned_reward: float | None = None


# --------------------------------------------------------------------------------------------- writer
def sample_row(prompt_index: int, prompt: str, query_ids: Sequence[int], reference: dict, aligned: dict) -> dict:
    """One row of samples.jsonl. `reference` and `aligned` each hold `response` (text), `response_ids` and the
    scores of SCORES (reward, judge, toxicity, kl). Raises KeyError when one of them is missing."""
    row = {"prompt_index": int(prompt_index), "prompt": prompt, "query_ids": [int(i) for i in query_ids]}
    for name, episode in zip(MODELS, (reference, aligned)):
        row[f"{name}_response"] = episode["response"]
        row[f"{name}_response_ids"] = [int(i) for i in episode["response_ids"]]
        row.update({f"{name}_{score}": float(episode[score]) for score in SCORES})
    return row


def sample_rows(prompts: Sequence[str], query_ids: Sequence[Sequence[int]], samples_per_prompt: int,
                reference: dict, aligned: dict) -> list[dict]:
    """The rows of a whole evaluation, one per episode. `prompts[e]` and `query_ids[e]` are episode e's prompt
    (each prompt repeated `samples_per_prompt` times); `reference` and `aligned` are the suite's per-model results:
    `texts` and `ids` (one per episode) and one array per score of SCORES. Raises KeyError for a missing field."""

    def episode(results: dict, e: int) -> dict:
        scores = {s: results[s][e] for s in SCORES}
        return {"response": results["texts"][e], "response_ids": results["ids"][e], **scores}

    return [sample_row(e // samples_per_prompt, prompt, ids, episode(reference, e), episode(aligned, e))
            for e, (prompt, ids) in enumerate(zip(prompts, query_ids))]


def write_samples(path: str, rows: Sequence[dict]) -> None:
    """Write `rows` (from `sample_row`) to `path` as JSON lines, replacing the file. Raises OSError when it cannot."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


# --------------------------------------------------------------------------------------------- reader
def read_samples(path: str) -> list[dict]:
    """The rows of a samples.jsonl file, in order. A missing file reads as empty; a line cut short is skipped."""
    return read_jsonl(path)


def _score(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def sample_pairs(samples: str | os.PathLike | Sequence[dict], n: int | None = None) -> list[SamplePair]:
    """The first `n` (all when None) rows of `samples` (a samples.jsonl path, or its rows) as SamplePairs.

    Rows without a prompt and both responses as text are skipped; a reward that is missing or not finite reads as
    None. Never raises for a malformed or missing file: it gives fewer pairs (none at worst)."""
    rows = read_samples(samples) if isinstance(samples, (str, os.PathLike)) else samples
    pairs = []
    for row in rows:
        if n is not None and len(pairs) >= n:
            break
        row = row if isinstance(row, dict) else {}
        texts = [row.get("prompt")] + [row.get(f"{m}_response") for m in MODELS]
        if all(isinstance(t, str) for t in texts):
            pairs.append(SamplePair(*texts, *(_score(row.get(f"{m}_reward")) for m in MODELS)))
    return pairs
