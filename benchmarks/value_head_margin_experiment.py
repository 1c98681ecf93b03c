"""Experiment: rlhf_demo_ppo in the speed benchmark, with its value head started as the reward model's margin.

The benchmark gives TRL 1.12's PPO a value model whose head is W_pos - W_neg of the tiny reward model; ours
starts from the same backbone with a zero head (`models.build_value_model`). This runs our PPO in the same harness
and settings as the recorded benchmark, with the head set to W_pos - W_neg, to see whether that explains the gap
in time to target. Not a shipped option (yet): it patches `build_value_model` for this process only.

    python benchmarks/value_head_margin_experiment.py 180 /tmp/vhead   # budget in seconds, scratch folder
"""

import os
import sys

import torch
from transformers import AutoModelForSequenceClassification

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import rlhf_speed  # noqa: E402

import rlhf_demo.models as models  # noqa: E402

zero_head_value_model = models.build_value_model


def margin_head_value_model(path):
    value_model = zero_head_value_model(path)
    w = AutoModelForSequenceClassification.from_pretrained(path).score.weight.detach()  # (2, d): NEGATIVE, POSITIVE
    with torch.no_grad():
        value_model.classifier.weight.copy_((w[1] - w[0])[None])
    return value_model


if __name__ == "__main__":
    budget, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    models.build_value_model = margin_head_value_model
    args = rlhf_speed.parse_args(["--budget_s", budget, "--target_reward", "1.5", "--learning_rate", "3e-5",
                                  "--kl_coef", "0.1",
                                  "--eval_every_s", "30", "--work_dir", work, "--policy",
                                  os.path.join(rlhf_speed.PRESET_DIR, "policy"),
                                  "--reward_model", os.path.join(rlhf_speed.PRESET_DIR, "reward_model"),
                                  "--_worker", "rlhf_demo_ppo", "--_worker_out",
                                  os.path.join(work, "rlhf_demo_ppo_margin_head.json")])
    rlhf_speed.worker_main(args)
