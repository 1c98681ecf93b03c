"""Reward-model over-optimisation on the tiny preset (the protocol of Gao et al. 2022, at laptop scale).

    python benchmarks/overoptimization.py --work_dir runs/overoptimization [--sizes 250 1000 4000]

Gold: the simulated annotator (the tiny preset's IMDB sentiment classifier, POSITIVE logit). Proxies: Bradley-Terry
reward models trained on the first N of one file of gold-labelled comparisons (tau = 1), for each N in `--sizes`.
PPO runs against each proxy (the gold never seen) with a checkpoint every `--save_steps` steps; `rlhf-demo eval`
scores every checkpoint twice on the same held-out prompts and samples, once with the gold and once with the proxy
as the reward column, giving gold and proxy score against KL to the reference (nats per response). Writes
WORK_DIR/results.json and WORK_DIR/overoptimization.png (gold and proxy gain against sqrt(KL), as Gao et al. plot).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def cli(*args: str, done: str | None = None) -> None:
    """Run `rlhf-demo ARGS`, failing loudly; skipped when the file `done` exists (an interrupted run resumes)."""
    if done is None or not os.path.exists(done):
        subprocess.run([sys.executable, "-m", "rlhf_demo.cli", *args], check=True)


def frontier(eval_dir: str) -> list[dict]:
    """(step, reward_mean, kl) of the reference, every checkpoint and the final model, by KL."""
    with open(os.path.join(eval_dir, "eval_results.json")) as f:
        return sorted(json.load(f)["frontier"], key=lambda p: p["kl_to_reference_mean"])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work_dir", default="runs/overoptimization")
    p.add_argument("--sizes", type=int, nargs="+", default=[250, 1000, 4000])
    p.add_argument("--total_episodes", type=int, default=5760)
    p.add_argument("--save_steps", type=int, default=10)
    p.add_argument("--frontier_num_prompts", type=int, default=128)
    p.add_argument("--kl_coef", type=float, default=None, help="A fixed KL coefficient for PPO (default: the tiny "
                                                                "preset's adaptive one, target 4 nats); a small one "
                                                                "lets PPO reach the KL where the gold turns down.")
    p.add_argument("--preferences", default=None, help="An existing gold-labelled preference file to take the first N "
                                                        "pairs from (default: sample max(--sizes) pairs first).")
    args = p.parse_args(argv)
    from rlhf_demo.config import PRESETS_DIR

    tiny, w = os.path.join(PRESETS_DIR, "tiny"), args.work_dir
    prefs = args.preferences or os.path.join(w, "preferences", "preferences.jsonl")
    cli("preferences", "--preset", "tiny", "--output", os.path.dirname(prefs), "--num_pairs", str(max(args.sizes)),
        done=prefs)
    rows = open(prefs, encoding="utf-8").read().split("\n")
    results = {"settings": vars(args), "runs": {}}
    for n in args.sizes:
        run = os.path.join(w, f"n{n}")
        os.makedirs(run, exist_ok=True)
        subset = os.path.join(run, "preferences.jsonl")
        with open(subset, "w", encoding="utf-8") as f:
            f.write("\n".join([r for r in rows if r.strip()][:n]) + "\n")
        rm, ppo = os.path.join(run, "reward_model"), os.path.join(run, "ppo")
        cli("reward-model", "--preferences", subset, "--model_name_or_path", os.path.join(tiny, "policy"),
            "--output_dir", rm, "--num_train_epochs", "2", "--learning_rate", "2e-4", "--batch_size", "32",
            "--max_length", "64", done=os.path.join(rm, "reward_model_report.json"))
        cli("train", "--preset", "tiny", "--reward", f"preference={rm}", "--value_model_name_or_path", rm,
            "--output_dir", ppo, "--total_episodes", str(args.total_episodes), "--save_steps", str(args.save_steps),
            "--save_total_limit", "1000", "--eval_num_prompts", "0",
            *(["--kl_coef", str(args.kl_coef), "--adaptive_kl", "false"] if args.kl_coef is not None else []),
            done=os.path.join(ppo, "model.safetensors"))
        common = ["--model", ppo, "--num_prompts", str(args.frontier_num_prompts), "--frontier_num_prompts", "0"]
        cli("eval", "--preset", "tiny", *common, "--output_dir", os.path.join(run, "eval_gold"))
        cli("eval", "--preset", "tiny", *common, "--reward_model", rm, "--output_dir", os.path.join(run, "eval_proxy"))
        report = json.load(open(os.path.join(rm, "reward_model_report.json")))
        results["runs"][n] = {"rm_heldout_accuracy": report["eval_accuracy"],
                              "gold": frontier(os.path.join(run, "eval_gold")),
                              "proxy": frontier(os.path.join(run, "eval_proxy"))}
        with open(os.path.join(w, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    plot(results, os.path.join(w, "overoptimization.png"))


def plot(results: dict, path: str) -> None:
    """Gold (solid) and proxy (dashed) score gain over the reference against sqrt(KL), one colour per N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (n, run), colour in zip(results["runs"].items(), ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        for key, style in (("gold", "-"), ("proxy", "--")):
            points = run[key]
            base = next(p["reward_mean"] for p in points if p["step"] == 0)
            ax.plot([max(p["kl_to_reference_mean"], 0) ** 0.5 for p in points],
                    [p["reward_mean"] - base for p in points], style, color=colour, marker=".",
                    label=f"{key}, RM from {n} pairs")
    ax.set_xlabel("sqrt(KL to reference), sqrt(nats)")
    ax.set_ylabel("score gain over the reference")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
