"""Human-readable outputs of the evaluation suite: the Markdown report and the two plots."""

from __future__ import annotations

import numpy as np

from rlhf_demo.curves import new_figure

from .samples import sample_pairs

# (metric key, label shown, higher is better? None: neither)
ROWS = (
    ("reward_mean", "Reward (reward-model logit)", True),
    ("reward_positive_rate", "Positive by reward model", True),
    ("judge_score_mean", "Judge sentiment [-1, 1]", True),
    ("judge_positive_rate", "Positive by judge", True),
    ("toxicity_mean", "Toxicity (mean prob.)", False),
    ("toxicity_rate", "Toxic (> 0.5)", False),
    ("kl_to_reference_mean", "KL to reference (nats/seq)", None),
    ("perplexity", "Perplexity under reference", False),
    ("distinct_1", "Distinct-1", True),
    ("distinct_2", "Distinct-2", True),
    ("distinct_3", "Distinct-3", True),
    ("response_length_mean", "Response length (tokens)", None),
)


def _fmt(x: float) -> str:
    return "nan" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _significance(diff: dict) -> str:
    """'*' when the 95% CI excludes 0."""
    return " *" if diff["ci_low"] > 0 or diff["ci_high"] < 0 else ""


def _cell(text: str) -> str:
    """`text` as one Markdown table cell."""
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _reward(x: float | None) -> str:
    return "" if x is None else f" ({x:.2f})"


def write_report(path: str, results: dict, samples: list[dict]) -> None:
    """eval_report.md: the metrics table (reference, aligned, difference with 95% CI), verdict lines, and the
    `samples` given (rows of samples.jsonl, read with `samples.sample_pairs`). Raises KeyError for results that
    lack a field of the eval_results.json schema, OSError when `path` cannot be written."""
    ref, pol, diffs = results["metrics"]["reference"], results["metrics"]["aligned"], results["differences"]
    s, models, judges, win = results["settings"], results["models"], results["judges"], results["win_rate"]
    lines = [
        "# Evaluation: aligned vs reference",
        "",
        f"Aligned `{models['aligned']}` vs reference `{models['reference']}` on {s['num_prompts']} held-out prompts "
        f"({s['dataset']}, split {s['split']}) x {s['samples_per_prompt']} sample(s), "
        f"{s['max_new_tokens']} new tokens, temperature {s['temperature']}, top_p {s['top_p']}, seed {s['seed']}.",
        f"Judges: reward model `{judges['reward_model']}`, sentiment `{judges['sentiment_judge']}`, "
        f"toxicity `{judges['toxicity']}`.",
        "",
        "| Metric | Reference | Aligned | Aligned - reference [95% CI] |",
        "|---|---:|---:|---:|",
    ]
    for key, label, _ in ROWS:
        d = diffs[key]
        lines.append(f"| {label} | {_fmt(ref[key])} | {_fmt(pol[key])} "
                     f"| {_fmt(d['diff'])} [{_fmt(d['ci_low'])}, {_fmt(d['ci_high'])}]{_significance(d)} |")
    hacking = ("- **Possible reward hacking**: the reward rose but the independent judge did not."
               if results["reward_hacking_flag"] else
               "- Reward-hacking flag not raised (it is raised when the reward rises, CI above 0, "
               "while the judge's CI reaches 0 or below).")
    lines += [
        "",
        "\\* the 95% paired bootstrap interval excludes 0.",
        "",
        f"- Win rate of aligned over reference: {win['reward_model']:.1%} by the reward model, "
        f"{win['judge']:.1%} by the judge (ties count half).",
        f"- Reward model and judge agree on positive/negative for {results['reward_judge_agreement']:.1%} "
        "of responses.",
        hacking,
    ]
    if results["frontier"]:
        lines += ["", "Reward-KL frontier (`reward_kl_frontier.png`):", "",
                  "| Checkpoint | Step | Reward | KL (nats) |", "|---|---:|---:|---:|"]
        lines += [f"| {p['checkpoint']} | {p['step'] if p['step'] >= 0 else 'final'} | {_fmt(p['reward_mean'])} "
                  f"| {_fmt(p['kl_to_reference_mean'])} |" for p in results["frontier"]]
    pairs = sample_pairs(samples)
    if pairs:
        lines += ["", "## Samples", "", "| Prompt | Reference | Aligned |", "|---|---|---|"]
        lines += [f"| {_cell(p.prompt)} | {_cell(p.reference)}{_reward(p.reference_reward)} "
                  f"| {_cell(p.aligned)}{_reward(p.aligned_reward)} |" for p in pairs]
    lines += ["", "Numbers: `eval_results.json`; every sample: `samples.jsonl`.", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def plot_score_distributions(path: str, ref: dict, pol: dict) -> None:
    """Histograms of reward, judge score and toxicity per response, reference vs aligned, one PNG."""
    fig = new_figure((13, 3.6))
    axes = fig.subplots(1, 3)
    panels = (("reward", "Reward-model score"), ("judge", "Judge sentiment"), ("toxicity", "Toxicity"))
    for ax, (key, title) in zip(axes, panels):
        both = np.concatenate([ref[key], pol[key]])
        bins = np.linspace(both.min(), both.max() + 1e-9, 30)
        ax.hist(ref[key], bins=bins, alpha=0.55, label="reference")
        ax.hist(pol[key], bins=bins, alpha=0.55, label="aligned")
        ax.set_title(title)
        ax.set_ylabel("responses")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_frontier(path: str, frontier: list[dict]) -> None:
    """Reward mean against KL to the reference, from the reference (step 0) through every checkpoint to the final
    model (step -1, a star), as in the DPO paper's reward-KL frontier (Rafailov et al. 2023, Fig. 2)."""
    points = [p for p in frontier if p["step"] >= 0]
    final = [p for p in frontier if p["step"] < 0]
    fig = new_figure((5.5, 4))
    ax = fig.subplots()
    ax.plot([p["kl_to_reference_mean"] for p in points], [p["reward_mean"] for p in points], "o-",
            label="reference and checkpoints")
    for p in points:
        ax.annotate(str(p["step"]), (p["kl_to_reference_mean"], p["reward_mean"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    if final:
        ax.plot([final[0]["kl_to_reference_mean"]], [final[0]["reward_mean"]], "r*", markersize=12, label="final model")
    ax.set_xlabel("KL(policy || reference), nats per response")
    ax.set_ylabel("mean reward")
    ax.set_title("Reward-KL frontier")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
