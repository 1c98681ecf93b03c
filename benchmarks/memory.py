"""Memory per process of PPO training on the CPU, one process against two (torchrun with gloo), data parallel (DDP)
and sharded (`--fsdp`, FSDP2): the tiny preset, and a random policy of GPT-2-124M's shape (12 layers, 768 wide, the
tiny tokenizer's 8,192 tokens) with a value model of the same shape.

Each run is `rlhf-demo train` (under `torchrun --nproc_per_node 2` for two processes) started through a small
wrapper that records, for its own process: the model states it holds when training ends (the bytes of this
process's parameters of policy, value model and reference, and of AdamW's state: its shards under FSDP2), the
resident set size then (VmRSS), and the peak resident set size of the whole run (`getrusage`; it includes loading
the full models, which every process does before sharding them). The two-process runs sample half the episodes per
process, so the same episodes per step.

    python benchmarks/memory.py SCRATCH_DIR [--out benchmarks/results/DATE-memory]
"""

import argparse
import datetime
import glob
import json
import os
import subprocess
import sys

from rlhf_demo.runs import machine_description

WRAPPER = """import atexit, json, os, resource, runpy, sys
import rlhf_demo.ppo as ppo
found = {}

def local_bytes(tensors):
    from torch.distributed.tensor import DTensor
    return sum((t.to_local() if isinstance(t, DTensor) else t).nbytes for t in tensors)

def measure(self, *args, **kwargs):  # every process calls save_model when training ends
    models = [m for m in (self.policy, self.value_model, self.ref_policy) if m is not None]
    found["model_states_gib"] = (sum(local_bytes(m.parameters()) for m in models) + local_bytes(
        t for s in self.optimizer.state.values() for t in s.values() if hasattr(t, "nbytes"))) / 2**30
    found["rss_end_gib"] = int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) / 2**20
    return save_model(self, *args, **kwargs)

save_model, ppo.PPOTrainer.save_model = ppo.PPOTrainer.save_model, measure

def report():
    found["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    with open(os.path.join(os.environ["RSS_DIR"], "rank" + os.environ.get("RANK", "0") + ".json"), "w") as f:
        json.dump(found, f)
atexit.register(report)
sys.argv = ["rlhf-demo"] + sys.argv[1:]
runpy.run_module("rlhf_demo.cli", run_name="__main__")
"""


def gpt2_124m_shape(scratch: str) -> str:
    """A random policy of GPT-2-124M's shape with the tiny preset's tokenizer, saved under `scratch`."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from rlhf_demo.names import PRESETS_DIR

    path = os.path.join(scratch, "gpt2-124m-shape")
    if not os.path.isdir(path):
        tok = AutoTokenizer.from_pretrained(os.path.join(PRESETS_DIR, "tiny", "policy"))
        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config(vocab_size=len(tok))).save_pretrained(path)
        tok.save_pretrained(path)
    return path


def run(scratch: str, name: str, nproc: int, flags: list[str]) -> dict:
    rss_dir = os.path.join(scratch, f"rss-{name}-{nproc}")
    os.makedirs(rss_dir, exist_ok=True)
    for old in glob.glob(os.path.join(rss_dir, "*.json")):
        os.remove(old)
    wrapper = os.path.join(scratch, "rss_wrapper.py")
    with open(wrapper, "w") as f:
        f.write(WRAPPER)
    launch = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                                                  str(nproc)]
    cmd = launch + [wrapper, "train", "--output_dir", os.path.join(scratch, f"run-{name}-{nproc}"),
                    "--overwrite_output_dir", "true", "--save_steps", "0", "--eval_num_prompts", "0",
                    "--progress_bar", "false", *flags]
    env = {**os.environ, "RSS_DIR": rss_dir, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // nproc))}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"{name} x{nproc}: {proc.stderr[-3000:]}")
    ranks = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(rss_dir, "rank*.json")))]  # KiB -> GiB above
    return {"model": name, "processes": nproc, **{key: [r[key] for r in ranks] for key in ranks[0]}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scratch")
    p.add_argument("--out", default=os.path.join("benchmarks", "results",
                                                 f"{datetime.date.today().isoformat()}-memory"))
    args = p.parse_args()
    os.makedirs(args.scratch, exist_ok=True)
    big = gpt2_124m_shape(args.scratch)
    cases = [("tiny preset", ["--preset", "tiny"], 64, 2),
             ("GPT-2-124M shape", ["--preset", "tiny", "--model_name_or_path", big, "--value_model_name_or_path", big],
              16, 1)]
    rows = []
    for name, flags, batch, steps in cases:
        for nproc, launch in ((1, "one process"), (2, "DDP"), (2, "FSDP2")):
            per_process = batch // nproc
            rows.append(run(args.scratch, f"{name}-{launch}".replace(" ", "_"), nproc, flags + [
                "--batch_size", str(per_process), "--num_mini_batches", "2" if per_process % 2 == 0 else "1",
                "--total_episodes", str(batch * steps), *(["--fsdp"] if launch == "FSDP2" else [])]))
            rows[-1].update(model=name, launch=launch)
            print(rows[-1], flush=True)
    result = {"machine": machine_description(), "rows": rows}
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    lines = [f"# Memory per process, PPO on the CPU ({result['machine']})", "",
             "Per process, in GiB: the model states it holds when training ends (its parameters of policy, value "
             "model and reference, and AdamW's state; its shards under FSDP2), its resident set size then, and its "
             "peak resident set size over the run (getrusage; every process loads the full models before sharding "
             "them, so the peak includes them). torchrun with gloo; the same episodes per step for 1 and 2 "
             "processes.", "",
             "| model | launch | processes | model states | RSS at the end | peak RSS |", "|---|---|---:|---|---|---|"]

    def cells(values):
        return ", ".join(f"{x:.2f}" for x in values)

    lines += [f"| {r['model']} | {r['launch']} | {r['processes']} | {cells(r['model_states_gib'])} | "
              f"{cells(r['rss_end_gib'])} | {cells(r['peak_rss_gib'])} |" for r in rows]
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
