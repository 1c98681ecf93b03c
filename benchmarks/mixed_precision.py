"""Mixed precision on this machine: the tiny preset's PPO steps in fp32 and under bf16 autocast, with and without
the rollout's log-probs recomputed by the update's forward pass (`--recompute_logprobs`, devices.py).

For each setting, `rlhf-demo train --preset tiny` runs `--steps` PPO steps in its own process (accelerate's
precision is process-wide) on free cores, and this script reads its metrics.jsonl: seconds per step (rollout +
update, the first step left out as warm-up), episodes/s, and the correctness probes of the first step (the ratio
and approxkl of the first minibatch, which must be 1 and 0, and the policy-vs-reference KL, which must be 0 at the
start). It also measures the machine's fp32 and bf16 matmul rates (2048 x 2048, this process's threads), which say
whether bf16 can pay here at all (AMX or a GPU: yes; AVX2 only: bf16 is emulated and slower).

    python benchmarks/mixed_precision.py SCRATCH_DIR [--steps 6] [--out benchmarks/results/DATE-mixed-precision]
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

import torch

from rlhf_demo import devices
from rlhf_demo.runs import machine_description

SETTINGS = (("fp32", "no", "auto"), ("bf16, sampler's log-probs", "bf16", "false"),
            ("bf16, recomputed log-probs", "bf16", "auto"))


def matmul_rate(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n x n matmul in `dtype` (best of `repeats`, after one warm-up)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(scratch: str, name: str, mixed_precision: str, recompute: str, steps: int) -> dict:
    out = os.path.join(scratch, name.replace(" ", "_").replace(",", "").replace("'", ""))
    cmd = [sys.executable, "-m", "rlhf_demo.cli", "train", "--preset", "tiny", "--output_dir", out,
           "--overwrite_output_dir", "true", "--total_episodes", str(64 * steps), "--save_steps", "0",
           "--eval_num_prompts", "0", "--progress_bar", "false", "--mixed_precision", mixed_precision,
           "--recompute_logprobs", recompute]
    metrics = os.path.join(out, "metrics.jsonl")
    done = os.path.isfile(metrics) and sum(1 for _ in open(metrics, encoding="utf-8")) == steps
    if not done:  # a finished run of the same setting in SCRATCH is read again, not rerun (bf16 can be slow)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{name}: {proc.stderr[-2000:]}")
    rows = [json.loads(line) for line in open(metrics, encoding="utf-8")]
    step_s = [r["time/rollout_s"] + r["time/update_s"] for r in rows[1:]]
    mean_s = sum(step_s) / len(step_s)
    first = rows[0]
    return {"setting": name, "mixed_precision": mixed_precision, "recompute_logprobs": recompute,
            "seconds_per_step": mean_s, "episodes_per_s": 64 / mean_s,
            "first_ratio": first["val/ratio_first_mb"], "first_approxkl": first["policy/approxkl_first_mb"],
            "first_kl": first["objective/kl"], "last_score": rows[-1]["objective/scores"], "steps": len(rows)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scratch")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--out", default=os.path.join("benchmarks", "results",
                                                 f"{datetime.date.today().isoformat()}-mixed-precision"))
    args = p.parse_args()
    result = {"machine": machine_description(), "amx_or_fast_bf16": devices.has_fast_bf16("cpu"),
              "auto_gives": devices.resolve_mixed_precision("auto", "cpu"),
              "matmul_gflops": {"fp32": matmul_rate(torch.float32), "bf16": matmul_rate(torch.bfloat16)},
              "runs": [run(args.scratch, *s, args.steps) for s in SETTINGS]}
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    lines = [f"# Mixed precision on the tiny preset ({result['machine']})", "",
             f"Matmul 2048x2048: fp32 {result['matmul_gflops']['fp32']:.1f} GFLOP/s, bf16 "
             f"{result['matmul_gflops']['bf16']:.1f} GFLOP/s; fast bf16 (AMX): {result['amx_or_fast_bf16']}; "
             f"`--mixed_precision auto` gives `{result['auto_gives']}` here.", "",
             "| setting | s / step | episodes/s | first ratio | first approxkl | first KL (nats) | score, last step |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['setting']} | {r['seconds_per_step']:.2f} | {r['episodes_per_s']:.1f} | {r['first_ratio']:.6f} | "
              f"{r['first_approxkl']:.2e} | {r['first_kl']:.2e} | {r['last_score']:.2f} |" for r in result["runs"]]
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
