"""RLHF from simulated human feedback on the tiny preset, measured against the gold annotator.

    python benchmarks/preference_rlhf.py --work_dir runs/preference_rlhf [--pairs 2000] [--fresh_pairs 1000]
    python benchmarks/preference_rlhf.py --work_dir runs/rm-3ep --preferences FILE --rm_epochs 3 --no_ppo

Steps (each the package's own command or function, so the numbers are what a user gets):
1. `rlhf-demo preferences --preset tiny`: the tiny policy writes two continuations of each of `--pairs` IMDB
   prompts; the gold annotator (the tiny preset's IMDB sentiment classifier, POSITIVE logit) labels them with
   Bradley-Terry noise, tau = `--annotator_temperature`.
2. `rlhf-demo reward-model --preferences`: a Bradley-Terry reward model initialised from the tiny policy.
3. Its agreement with the gold's noiseless preference on `--fresh_pairs` new pairs of the tiny policy.
4. `rlhf-demo train --preset tiny --reward preference=RM`: PPO against the learned reward model (the gold never seen),
   the value model started from the reward model, then `rlhf-demo eval` with the gold as the reward column.
Writes WORK_DIR/results.json; the ceiling (PPO on the gold itself) is the main job's evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def cli(*args: str, done: str | None = None) -> float | None:
    """Run `rlhf-demo ARGS` (this interpreter), fail loudly, return the wall time in seconds; skipped (None) when the
    file `done` exists, so an interrupted benchmark resumes at its first unfinished step."""
    if done is not None and os.path.exists(done):
        return None
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "rlhf_demo.cli", *args], check=True)
    return time.time() - t0


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work_dir", default="runs/preference_rlhf")
    p.add_argument("--pairs", type=int, default=2000)
    p.add_argument("--fresh_pairs", type=int, default=1000)
    p.add_argument("--annotator_temperature", type=float, default=1.0)
    p.add_argument("--rm_epochs", type=float, default=2.0)
    p.add_argument("--rm_learning_rate", type=float, default=2e-4)
    p.add_argument("--preferences", default=None, help="Reuse this gold-labelled preference file (default: sample "
                                                       "--pairs new ones into WORK_DIR/preferences).")
    p.add_argument("--no_ppo", action="store_true", help="Stop after the reward model's agreement (step 3).")
    args = p.parse_args(argv)

    from rlhf_demo.config import PRESETS_DIR, LoopConfig
    from rlhf_demo.loop import fresh_pair_accuracy
    from rlhf_demo.rewards import build_reward
    from rlhf_demo.runs import machine_description

    tiny = os.path.join(PRESETS_DIR, "tiny")
    w = args.work_dir
    rm, ppo = os.path.join(w, "reward_model"), os.path.join(w, "ppo")
    prefs = args.preferences or os.path.join(w, "preferences", "preferences.jsonl")
    times = {"preferences_s": cli("preferences", "--preset", "tiny", "--output", os.path.dirname(prefs),
                                  "--num_pairs", str(args.pairs), "--annotator_temperature",
                                  str(args.annotator_temperature), done=prefs)}
    times["reward_model_s"] = cli("reward-model", "--preferences", prefs,
                                  "--model_name_or_path", os.path.join(tiny, "policy"), "--output_dir", rm,
                                  "--num_train_epochs", str(args.rm_epochs), "--batch_size", "32", "--max_length", "64",
                                  "--learning_rate", str(args.rm_learning_rate),
                                  done=os.path.join(rm, "reward_model_report.json"))
    gold = build_reward([f"sentiment={os.path.join(tiny, 'reward_model')}@POSITIVE"])
    cfg = LoopConfig(model_name_or_path=os.path.join(tiny, "policy"), fresh_pairs=args.fresh_pairs)
    t0 = time.time()
    agreement = fresh_pair_accuracy(os.path.join(tiny, "policy"), rm, gold, cfg,
                                    {"dataset_name": os.path.join(tiny, "prompts"), "min_review_chars": 0}, seed=123)
    times["agreement_s"] = time.time() - t0
    rm_report = json.load(open(os.path.join(rm, "reward_model_report.json")))
    results = {"settings": vars(args), "machine": machine_description(), "times": times,
               "reward_model": {"pairs": rm_report["pairs"], "heldout_accuracy": rm_report["eval_accuracy"],
                                "fresh_pair_agreement_with_gold": agreement}}
    if args.no_ppo:
        write(results, w)
        return
    times["ppo_s"] = cli("train", "--preset", "tiny", "--reward", f"preference={rm}", "--value_model_name_or_path", rm,
                         "--output_dir", ppo, "--eval_num_prompts", "0", done=os.path.join(ppo, "model.safetensors"))
    times["eval_s"] = cli("eval", "--preset", "tiny", "--model", ppo, "--output_dir", os.path.join(ppo, "eval"),
                          "--frontier", "false")
    ev = json.load(open(os.path.join(ppo, "eval", "eval_results.json")))
    results["ppo_on_learned_reward"] = {k: ev["differences"][k] for k in
                                        ("reward_mean", "judge_positive_rate", "kl_to_reference_mean", "perplexity")}
    write(results, w)


def write(results: dict, work_dir: str) -> None:
    with open(os.path.join(work_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
