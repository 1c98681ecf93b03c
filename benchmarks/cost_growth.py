"""How PPO's cost grows with response length and model size: episodes/s and peak RSS, ours and TRL 1.12's PPO.

    python benchmarks/cost_growth.py --output benchmarks/results           # all rows (about 20 min on 2 cores)
    python benchmarks/cost_growth.py --sizes tiny --lengths 24 --budget_s 20  # one row, a quick look
    python benchmarks/cost_growth.py --trainers trl_ppo_1_12 --budget_s 20    # one trainer: fills its rows in

For each model size (`tiny`: the tiny preset's policy and reward model; `gpt2-124m`: a randomly initialised
GPT-2-124M configuration with GPT-2's real tokenizer, policy and reward model alike, throughput only) and each
response length, `rlhf_speed.py` runs `rlhf_demo_ppo` and `trl_ppo_1_12` for `--budget_s` seconds of training
(at least one PPO step) with the speed benchmark's shared settings; the held-out evaluation is cut to a few
prompts, since only throughput counts here. Writes `<output>/<date>-cost-growth.json` and `.md`: a user can
predict a GPT-2 run's cost from a tiny one. Run it on an otherwise idle CPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import rlhf_speed  # noqa: E402

TRAINERS = ("rlhf_demo_ppo", "trl_ppo_1_12")


def build_gpt2_124m(folder: str, tokenizer_dir: str) -> tuple[str, str]:
    """A randomly initialised GPT-2-124M policy and a two-label (NEGATIVE, POSITIVE) GPT-2-124M sequence classifier
    as the reward model, both with GPT-2's tokenizer from `tokenizer_dir` plus a pad token; (policy folder, reward
    model folder)."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    policy_dir, rm_dir = os.path.join(folder, "policy"), os.path.join(folder, "reward_model")
    if os.path.exists(os.path.join(rm_dir, "config.json")):
        return policy_dir, rm_dir
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    # A pad token of its own (TRL 1.12's PPO finds padding by token id, so it cannot share EOS's): one more row.
    tok.add_special_tokens({"pad_token": "<|pad|>"})
    config = GPT2Config(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                        bos_token_id=tok.bos_token_id)  # GPT-2-124M: 12 layers, 768 hidden, 1024 positions
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(policy_dir)
    tok.save_pretrained(policy_dir)
    rm_config = GPT2Config(**config.to_dict())
    rm_config.num_labels, rm_config.id2label = 2, {0: "NEGATIVE", 1: "POSITIVE"}
    rm_config.label2id = {"NEGATIVE": 0, "POSITIVE": 1}
    GPT2ForSequenceClassification(rm_config).save_pretrained(rm_dir)
    tok.save_pretrained(rm_dir)
    return policy_dir, rm_dir


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="tiny,gpt2-124m", help="Comma-separated subset of tiny, gpt2-124m.")
    p.add_argument("--lengths", default="24,48,96", help="Response lengths in tokens, comma-separated.")
    p.add_argument("--trainers", default=",".join(TRAINERS), help="Comma-separated subset of "
                                                                 f"{', '.join(TRAINERS)}.")
    p.add_argument("--budget_s", type=float, default=45.0, help="Training seconds per trainer and row (at least one "
                                                                 "step).")
    p.add_argument("--batch_size", type=int, default=64, help="Episodes per PPO step, tiny rows.")
    p.add_argument("--batch_size_124m", type=int, default=16, help="Episodes per PPO step, gpt2-124m rows (64 would "
                                                                    "take minutes per step on 2 cores).")
    p.add_argument("--tokenizer", default=os.path.join(rlhf_speed.data_dir(), "gpt2-tokenizer"),
                   help="GPT-2's tokenizer files, for the gpt2-124m rows.")
    p.add_argument("--work_dir", default=None, help="Scratch folder (default: a new temporary folder).")
    p.add_argument("--output", default=os.path.join(HERE, "results"), help="Folder for the .json and .md.")
    args = p.parse_args(argv)
    work = args.work_dir or tempfile.mkdtemp(prefix="cost-growth-")
    rows = []
    for size in args.sizes.split(","):
        if size == "tiny":
            policy, rm = os.path.join(rlhf_speed.PRESET_DIR, "policy"), os.path.join(rlhf_speed.PRESET_DIR,
                                                                                    "reward_model")
            batch = args.batch_size
        elif size == "gpt2-124m":
            policy, rm = build_gpt2_124m(os.path.join(work, "gpt2-124m"), args.tokenizer)
            batch = args.batch_size_124m
        else:
            raise SystemExit(f"Unknown size {size!r}; choose tiny or gpt2-124m.")
        for length in (int(x) for x in args.lengths.split(",")):
            out = os.path.join(work, f"{size}-{length}")
            cmd = [sys.executable, os.path.join(HERE, "rlhf_speed.py"), "--trainers", args.trainers,
                   "--budget_s", str(args.budget_s), "--eval_every_s", "1e9", "--eval_prompts", "8",
                   "--response_length", str(length), "--batch_size", str(batch), "--policy", policy,
                   "--reward_model", rm, "--work_dir", os.path.join(out, "work"), "--output", out]
            print(f"== {size}, {length}-token responses: {' '.join(cmd)}", flush=True)
            subprocess.run(cmd, check=True)
            [result_file] = [f for f in os.listdir(out) if f.endswith(".json")]
            with open(os.path.join(out, result_file)) as f:
                report = json.load(f)
            for name in args.trainers.split(","):
                r = report["trainers"].get(name, {})
                rows.append({"size": size, "response_length": length, "batch_size": batch, "trainer": name,
                             "status": r.get("status"), "episodes_per_s": r.get("episodes_per_s"),
                             "peak_rss_mb": r.get("peak_rss_mb"), "steps": r.get("steps"),
                             "train_s": r.get("train_s")})
            machine = report["machine"]
    date = datetime.date.today().isoformat()
    os.makedirs(args.output, exist_ok=True)
    stem = os.path.join(args.output, f"{date}-cost-growth")
    rows = merge_rows(stem + ".json", rows, args.sizes.split(","))
    with open(stem + ".json", "w") as f:
        json.dump({"machine": machine, "budget_s": args.budget_s, "rows": rows}, f, indent=1)
    lines = [f"# Cost growth, {date}", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores; torch {machine.get('torch')}. "
             f"`python benchmarks/cost_growth.py --budget_s {args.budget_s:g}`; each row trains at least one PPO "
             "step (4 epochs, one minibatch) with the speed benchmark's shared settings.", "",
             "| model | response tokens | batch | trainer | episodes/s | peak RSS (MB) | steps |",
             "|---|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        eps = f"{r['episodes_per_s']:.2f}" if r["episodes_per_s"] else r["status"]
        lines.append(f"| {r['size']} | {r['response_length']} | {r['batch_size']} | {r['trainer']} | {eps} | "
                     f"{r['peak_rss_mb'] or ''} | {r['steps'] or ''} |")
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def merge_rows(path: str, rows: list[dict], sizes: list[str]) -> list[dict]:
    """`rows` plus the rows of an earlier run of the same day (`path`) that this run did not measure (another
    trainer, length or size), ordered by size, response length, then trainer: a rerun of one trainer completes the
    table instead of replacing it."""
    key = lambda r: (r["size"], r["response_length"], r["trainer"])  # noqa: E731
    if os.path.exists(path):
        with open(path) as f:
            new = {key(r) for r in rows}
            rows = rows + [r for r in json.load(f)["rows"] if key(r) not in new]
    order = {size: i for i, size in enumerate(dict.fromkeys(["tiny", "gpt2-124m", *sizes]))}
    return sorted(rows, key=lambda r: (order.get(r["size"], 99), r["response_length"], TRAINERS.index(r["trainer"])))


if __name__ == "__main__":
    main()
