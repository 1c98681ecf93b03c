"""Rebuild `tiny/aligned/` (and the repository's `eval/results/tiny/`) from a finished, evaluated run of
`rlhf-demo train --preset tiny`.

The shipped copy holds the aligned policy in fp16 storage (the config still loads it as fp32), its tokenizer,
`run_info.json`, `training_config.yaml`, `metrics.jsonl`, `training_curves.png`, the eval report (`eval/`, without
the 0.5 MB of samples) and the model card that `rlhf-demo push` would upload. `eval/results/tiny/` gets the whole
eval folder. Absolute paths inside this repository are written relative to its root, so the files read the same
on every machine.

Usage (after `rlhf-demo train --preset tiny` and
`rlhf-demo eval --preset tiny --model runs/tiny --output_dir runs/tiny/eval`):
    python -m rlhf_demo.presets.make_aligned runs/tiny
"""

import os
import shutil
import sys

from transformers import AutoModelForCausalLM, AutoTokenizer

from rlhf_demo.card import build_model_card
from rlhf_demo.curves import CURVES_FILE
from rlhf_demo.runs import atomic_save, mark_shipped_copy, save_half

REPO_ID, LICENSE = "rlhf-demo/tiny-imdb-positive", "apache-2.0"
COPIED = ("run_info.json", "training_config.yaml", "metrics.jsonl")
TEXT_SUFFIXES = (".json", ".jsonl", ".yaml", ".md")
SHIPPED_NOTE = ("the aligned policy as shipped inside the package: its value model (needed only to resume or continue "
                "PPO) and checkpoints are left out to keep the package small")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def copy_with_relative_paths(src_dir: str, dst_dir: str, names) -> None:
    """Copy `names` from `src_dir` to `dst_dir`, writing `REPO_ROOT/` as nothing in the text files (paths become
    relative to the repository root)."""
    os.makedirs(dst_dir, exist_ok=True)
    for name in names:
        src, dst = os.path.join(src_dir, name), os.path.join(dst_dir, name)
        if name.endswith(TEXT_SUFFIXES):
            with open(src, encoding="utf-8") as f:
                text = f.read()
            with open(dst, "w", encoding="utf-8") as f:
                f.write(text.replace(REPO_ROOT + os.sep, ""))
        else:
            shutil.copyfile(src, dst)


def build(run_dir: str, dest: str, eval_dest: str) -> None:
    """Write the shipped copy of `run_dir` to `dest` and its whole eval folder to `eval_dest` (each atomically)."""
    eval_dir = os.path.join(run_dir, "eval")
    if not os.path.isfile(os.path.join(eval_dir, "eval_results.json")):
        raise FileNotFoundError(f"{run_dir}/eval/eval_results.json not found: evaluate the run first "
                                f"(rlhf-demo eval --preset tiny --model {run_dir} --output_dir {run_dir}/eval).")
    eval_files = sorted(os.listdir(eval_dir))

    def write(tmp: str) -> None:
        model = AutoModelForCausalLM.from_pretrained(run_dir)
        save_half(model, AutoTokenizer.from_pretrained(run_dir), tmp)
        copy_with_relative_paths(run_dir, tmp, COPIED)
        if os.path.isfile(os.path.join(run_dir, CURVES_FILE)):  # the card shows the training curves
            shutil.copyfile(os.path.join(run_dir, CURVES_FILE), os.path.join(tmp, CURVES_FILE))
        copy_with_relative_paths(eval_dir, os.path.join(tmp, "eval"), [n for n in eval_files if n != "samples.jsonl"])
        mark_shipped_copy(tmp, SHIPPED_NOTE)
        build_model_card(tmp, REPO_ID, LICENSE).save(os.path.join(tmp, "README.md"))

    atomic_save(write, dest)
    atomic_save(lambda tmp: copy_with_relative_paths(eval_dir, tmp, eval_files), eval_dest)
    print(f"wrote {dest} and {eval_dest}")


if __name__ == "__main__":
    build(sys.argv[1] if len(sys.argv) > 1 else "runs/tiny",
          os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny", "aligned"),
          os.path.join(REPO_ROOT, "eval", "results", "tiny"))
