"""Time and profile rlhf-demo PPO steps on the tiny preset (the benchmark's settings), for before/after comparisons.

    python benchmarks/profile_ppo_step.py                 # 2 warm-up steps, then 5 timed steps
    python benchmarks/profile_ppo_step.py --profile 25    # also a torch.profiler table of one step (top 25 ops)
    python benchmarks/profile_ppo_step.py --record results/speed_changes.json --label "fused AdamW"
    PYTHONPATH=WORKTREE_OF_AN_OLDER_COMMIT python benchmarks/profile_ppo_step.py ...  # that commit's rlhf_demo

Prints episodes per second and the rollout / update split (seconds per step, median of the timed steps).
Run it when the CPU is otherwise idle; compare only runs from the same machine and thread count.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import rlhf_speed  # noqa: E402  (the same defaults and prompts as the benchmark)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5, help="Timed PPO steps (after 2 warm-up steps).")
    p.add_argument("--profile", type=int, default=0, help="Also profile one step and print the top N ops by self CPU "
                                                          "time.")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--num_ppo_epochs", type=int, default=4)
    p.add_argument("--response_length", type=int, default=24)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--record", default=None, help="Append this measurement (with --label and the git commit) to a JSON "
                                                  "list file.")
    p.add_argument("--compile", action="store_true", help="Wrap the policy's and the value model's forward in "
                                                          "torch.compile (inductor, dynamic shapes) before timing.")
    p.add_argument("--value_head_on_policy", action="store_true", help="The value head on the policy's trunk "
                                                                        "(PPOConfig.value_head_on_policy).")
    p.add_argument("--count_flops", action="store_true", help="Also count the matrix FLOPs of one rollout and one "
                                                               "update (torch.utils.flop_counter) and print the time "
                                                               "they need at the machine's matmul rate: a lower bound.")
    p.add_argument("--label", default="", help="What this measurement is of (the change), for --record.")
    args = p.parse_args(argv)

    bench = rlhf_speed.parse_args(["--batch_size", str(args.batch_size), "--num_ppo_epochs", str(args.num_ppo_epochs),
                                   "--response_length", str(args.response_length)]
                                  + (["--threads", str(args.threads)] if args.threads else [])
                                  + ["--value_head_on_policy", str(args.value_head_on_policy)])
    bench.work_dir = tempfile.mkdtemp()
    torch.set_num_threads(bench.threads)
    trainer = rlhf_speed.build_rlhf_demo_ppo(bench)
    if args.compile:  # an experiment: the trainer itself never compiles
        for model in (trainer.accelerator.unwrap_model(trainer.policy), trainer.ref_policy,
                      trainer.accelerator.unwrap_model(trainer.value_model)):
            if model is not None:
                model.forward = torch.compile(model.forward, dynamic=True)
    t_warm = time.perf_counter()
    for _ in range(2):
        trainer.step()
    print(f"2 warm-up steps: {time.perf_counter() - t_warm:.1f} s")
    times, rollout, update = [], [], []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        m = trainer.step()
        times.append(time.perf_counter() - t0)
        rollout.append(m["time/rollout_s"])
        update.append(m["time/update_s"])
    step_s = statistics.median(times)
    print(f"threads {torch.get_num_threads()}: {args.batch_size / step_s:.2f} episodes/s; per step (median of "
          f"{args.steps}): "
          f"{step_s:.3f} s = rollout {statistics.median(rollout):.3f} s + update {statistics.median(update):.3f} s")
    if args.record:
        import json
        import subprocess

        import rlhf_demo  # the measured code: PYTHONPATH=<a git worktree> measures another commit

        src = os.path.dirname(os.path.abspath(rlhf_demo.__file__))
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=src, capture_output=True,
                                text=True).stdout.strip()
        rows = json.load(open(args.record)) if os.path.exists(args.record) else []
        rows.append({"label": args.label, "commit": commit, "episodes_per_s": round(args.batch_size / step_s, 3),
                     "step_s": round(step_s, 3), "rollout_s": round(statistics.median(rollout), 3),
                     "update_s": round(statistics.median(update), 3), "steps_timed": args.steps,
                     "batch_size": args.batch_size, "num_ppo_epochs": args.num_ppo_epochs,
                     "response_length": args.response_length,
                     "machine": rlhf_speed.machine_facts(torch.get_num_threads())})
        with open(args.record, "w") as f:
            json.dump(rows, f, indent=1)
    if args.count_flops:
        count_flops(trainer, args.batch_size)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            trainer.step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile))


def count_flops(trainer, batch_size: int) -> None:
    """Print the FLOPs of one rollout and one update and the seconds they take at the fp32 matmul rate
    `rlhf_speed.matmul_rate` measures. `torch.utils.flop_counter.FlopCounterMode` counts the ops it has formulas for:
    matrix products (`mm`, `addmm`, `bmm`); elementwise work counts 0, as does attention where its CPU kernel has no
    formula. So the time printed is a lower bound: no implementation of the same step on this machine can be faster,
    and the step's episodes/s is at most batch_size / (the two times together)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        rollout = trainer.make_rollout()
    rollout_flops = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        trainer.update(rollout)
    update_flops = counter.get_total_flops()
    by_op = {str(op): n for op, n in counter.get_flop_counts().get("Global", {}).items()}
    rate = rlhf_speed.matmul_rate(torch.get_num_threads())["gflops"] * 1e9
    lower = (rollout_flops + update_flops) / rate
    print(f"FLOPs per step: rollout {rollout_flops / 1e9:.1f} G, update {update_flops / 1e9:.1f} G "
          f"({', '.join(f'{k} {v / 1e9:.1f} G' for k, v in sorted(by_op.items(), key=lambda kv: -kv[1]))}); "
          f"at the matmul rate {rate / 1e9:.0f} GFLOP/s: rollout >= {rollout_flops / rate:.2f} s, update >= "
          f"{update_flops / rate:.2f} s, so at most {batch_size / lower:.1f} episodes/s")


if __name__ == "__main__":
    main()
