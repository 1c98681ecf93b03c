"""Statistics of the evaluation suite: per-prompt means, paired bootstrap confidence intervals (Efron & Tibshirani
1993), distinct-n under resampling, win rates. Plain numpy functions of per-episode arrays, prompt-major
(episode e = prompt p * samples_per_prompt + sample s)."""

from __future__ import annotations

import numpy as np

from rlhf_demo.config import EvalConfig

METRICS = (
    "reward_mean", "reward_positive_rate", "judge_score_mean", "judge_positive_rate", "toxicity_mean", "toxicity_rate",
    "kl_to_reference_mean", "perplexity", "distinct_1", "distinct_2", "distinct_3", "response_length_mean",
)
# Per-episode arrays whose per-prompt mean gives a metric (the rest are corpus statistics).
MEAN_METRICS = {
    "reward_mean": "reward", "reward_positive_rate": "reward_positive", "judge_score_mean": "judge",
    "judge_positive_rate": "judge_positive", "toxicity_mean": "toxicity", "toxicity_rate": "toxic",
    "kl_to_reference_mean": "kl", "response_length_mean": "length",
}


def per_prompt(values: np.ndarray, samples_per_prompt: int) -> np.ndarray:
    """(N,) per-episode values, prompt-major, -> (P,) per-prompt means."""
    return np.asarray(values, dtype=float).reshape(-1, samples_per_prompt).mean(1)


def bootstrap_indices(num_prompts: int, num_samples: int, seed: int) -> np.ndarray:
    """(num_samples, num_prompts) prompt indices drawn with replacement, shared by every metric (paired)."""
    return np.random.default_rng(seed).integers(0, num_prompts, size=(num_samples, num_prompts))


def paired_bootstrap(point: float, resampled: np.ndarray) -> dict[str, float]:
    """Percentile 95% CI of a difference from its bootstrap replicates (Efron & Tibshirani 1993, ch. 13)."""
    low, high = np.nanpercentile(resampled, [2.5, 97.5])
    return {"diff": float(point), "ci_low": float(low), "ci_high": float(high)}


def ngram_incidence(texts: list[str], n: int, samples_per_prompt: int):
    """Per prompt: the set of n-gram ids of its responses and its n-gram count (words, as the distinct_n module).

    Returns (incidence (P, G) bool, totals (P,)): incidence[p, g] says whether prompt p's responses contain n-gram g.
    """
    vocab: dict[tuple, int] = {}
    rows, totals = [], []
    for p in range(0, len(texts), samples_per_prompt):
        ids, total = set(), 0
        for text in texts[p : p + samples_per_prompt]:
            words = text.lower().split()
            grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
            total += len(grams)
            ids.update(vocab.setdefault(g, len(vocab)) for g in grams)
        rows.append(ids)
        totals.append(total)
    incidence = np.zeros((len(rows), max(len(vocab), 1)), dtype=np.float32)
    for p, ids in enumerate(rows):
        incidence[p, list(ids)] = 1.0
    return incidence, np.asarray(totals, dtype=float)


def distinct_bootstrap(texts: list[str], n: int, samples_per_prompt: int, idx: np.ndarray,
                       chunk: int = 100) -> np.ndarray:
    """Distinct-n of each prompt resample idx (S, P) -> (S,). A prompt drawn twice adds its n-grams twice
    to the total but no new distinct n-gram, exactly as distinct-n of the resampled corpus."""
    incidence, totals = ngram_incidence(texts, n, samples_per_prompt)
    out = np.empty(len(idx))
    for s in range(0, len(idx), chunk):
        block = idx[s : s + chunk]
        counts = np.zeros((len(block), len(totals)), dtype=np.float32)  # (S', P) multiplicity of each prompt
        np.add.at(counts, (np.arange(len(block))[:, None], block), 1.0)
        unique = ((counts > 0).astype(np.float32) @ incidence > 0).sum(1)
        total = counts @ totals
        out[s : s + chunk] = np.where(total > 0, unique / np.maximum(total, 1), 0.0)
    return out


def win_rate(aligned: np.ndarray, reference: np.ndarray) -> float:
    """Share of prompts where aligned scores higher than reference, ties counting one half. Inputs (P,)."""
    return float(np.mean((aligned > reference) + 0.5 * (aligned == reference)))


def compute_differences(ref: dict, aligned: dict, cfg: EvalConfig, num_prompts: int) -> dict[str, dict[str, float]]:
    """Aligned minus reference for every metric with a paired bootstrap 95% CI over prompts.

    `ref` and `aligned` hold per-episode arrays plus "texts", "nll", "ref_tokens" and "metrics".
    """
    S = cfg.samples_per_prompt
    idx = bootstrap_indices(num_prompts, cfg.bootstrap_samples, cfg.seed)
    out = {}
    for key, col in MEAN_METRICS.items():
        a, r = per_prompt(aligned[col], S), per_prompt(ref[col], S)
        out[key] = paired_bootstrap(aligned["metrics"][key] - ref["metrics"][key], (a - r)[idx].mean(1))
    # Perplexity: a ratio estimator, resampled as sums of per-prompt NLL and token counts.
    def ppl(d):
        nll, tok = d["nll"].reshape(-1, S).sum(1)[idx].sum(1), d["ref_tokens"].reshape(-1, S).sum(1)[idx].sum(1)
        return np.exp(nll / np.where(tok > 0, tok, np.nan))
    out["perplexity"] = paired_bootstrap(aligned["metrics"]["perplexity"] - ref["metrics"]["perplexity"],
                                         ppl(aligned) - ppl(ref))
    for n in (1, 2, 3):
        key = f"distinct_{n}"
        boot = distinct_bootstrap(aligned["texts"], n, S, idx) - distinct_bootstrap(ref["texts"], n, S, idx)
        point = aligned["metrics"][key] - ref["metrics"][key]
        # Resampling with replacement duplicates responses, which lowers distinct-n (more for the more diverse
        # model), so the raw bootstrap distribution is biased; recentre it on the point estimate (bias correction,
        # Efron & Tibshirani 1993, ch. 10) so the interval brackets the reported difference.
        boot = boot - (np.median(boot) - point)
        out[key] = paired_bootstrap(point, boot)
    return {k: out[k] for k in METRICS}
