"""The tiny preset's first PPO step with three starts of the value head: the rewarded label's row (the default,
`value_head_init auto`), the margin W_POSITIVE - W_NEGATIVE (the default until this release) and zero.

Prints, for each start, the first step's value loss, value clip fraction, pre-clip gradient norms, mean score and
mean V(s_t). Same seed, so the same rollout for all three; one thread.

    python benchmarks/value_head_first_step.py SCRATCH_DIR
"""

import os
import sys

import torch
from transformers import AutoModelForSequenceClassification

from rlhf_demo.config import PPOConfig, parse_config
from rlhf_demo.models import PRESET_REWARD_MODELS
from rlhf_demo.ppo import PPOTrainer
from rlhf_demo.runs import machine_description

METRICS = ("loss/value_avg", "val/clipfrac_avg", "val/grad_norm", "policy/grad_norm", "objective/scores", "val/mean")


def main(scratch: str) -> None:
    torch.set_num_threads(1)
    rm = AutoModelForSequenceClassification.from_pretrained(PRESET_REWARD_MODELS["tiny"])
    labels = {v.upper(): int(k) for k, v in rm.config.id2label.items()}
    w = rm.score.weight.detach()
    print(machine_description())
    for start in ("row", "margin", "zero"):
        cfg = parse_config(PPOConfig, ["--preset", "tiny", "--output_dir", os.path.join(scratch, start),
                                       "--progress_bar", "false", "--overwrite_output_dir", "true"], section="train")
        trainer = PPOTrainer(cfg)
        head = trainer.accelerator.unwrap_model(trainer.value_model).classifier
        with torch.no_grad():
            if start == "margin":
                head.weight[0].copy_(w[labels["POSITIVE"]] - w[labels["NEGATIVE"]])
            elif start == "zero":
                head.weight.zero_()
        m = trainer.step()
        print(start, {k: round(m[k], 4) for k in METRICS}, flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/value_head_first_step")
