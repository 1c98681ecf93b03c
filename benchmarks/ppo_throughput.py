"""PPO throughput of a random GPT-2 of a given shape (default GPT-2-124M's: 12 layers, 768 wide, 12 heads), with
the tiny preset's tokenizer (8,192 tokens, so nothing is downloaded) and its reward model: episodes/s at each
`--batch_sizes`, on the GPU when there is one, in fp32 or under `--mixed_precision`.

Each batch size runs `--steps` PPO steps (the first left out as warm-up) with the preset's settings otherwise
(24-token responses, 2 PPO epochs); a random policy learns nothing useful, so only the time is read.

    python benchmarks/ppo_throughput.py SCRATCH_DIR [--batch_sizes 64 8] [--steps 4] [--mixed_precision no]
"""

import argparse
import json
import os
import time

import torch
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from rlhf_demo.config import PPOConfig, parse_config
from rlhf_demo.names import PRESETS_DIR
from rlhf_demo.ppo import PPOTrainer
from rlhf_demo.runs import machine_description


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scratch")
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[64, 8])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--n_layer", type=int, default=12)
    p.add_argument("--n_embd", type=int, default=768)
    p.add_argument("--n_head", type=int, default=12)
    p.add_argument("--mixed_precision", default="no")
    p.add_argument("--out", default=None, help="JSON file for the results (default: print only).")
    args = p.parse_args()
    tok = AutoTokenizer.from_pretrained(os.path.join(PRESETS_DIR, "tiny", "policy"))
    torch.manual_seed(0)
    policy = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=1024, n_layer=args.n_layer,
                                        n_embd=args.n_embd, n_head=args.n_head))
    path = os.path.join(args.scratch, "policy")
    policy.save_pretrained(path)
    tok.save_pretrained(path)
    params = sum(p.numel() for p in policy.parameters())
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else machine_description()
    rows = []
    for batch in args.batch_sizes:
        cfg = parse_config(PPOConfig, ["--preset", "tiny", "--model_name_or_path", path, "--value_model_name_or_path",
                                       path, "--batch_size", str(batch), "--total_episodes", str(batch * args.steps),
                                       "--output_dir", os.path.join(args.scratch, f"run-{batch}"),
                                       "--overwrite_output_dir", "true", "--save_steps", "0", "--progress_bar",
                                       "false", "--mixed_precision", args.mixed_precision, "--eval_num_prompts", "0"],
                           section="train")
        trainer = PPOTrainer(cfg)
        times = []
        for _ in range(args.steps):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            trainer.step()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        step_s = sum(times[1:]) / max(1, len(times) - 1)
        peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
        rows.append({"batch_size": batch, "seconds_per_step": step_s, "episodes_per_s": batch / step_s,
                     "peak_gpu_memory_gib": peak})
        print(f"batch {batch}: {step_s:.2f} s/step, {batch / step_s:.1f} episodes/s"
              + (f", peak GPU memory {peak:.1f} GiB" if peak is not None else ""), flush=True)
        del trainer
    result = {"device": device, "policy_parameters": params, "mixed_precision": args.mixed_precision, "rows": rows}
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
