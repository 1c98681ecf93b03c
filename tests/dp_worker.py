"""Run by `torchrun --nproc_per_node N` from test_ppo_trainer.py: 3 PPO steps data-parallel with a global batch of 32
episodes (32 / N per process) through `PPOTrainer.train`, so `<out>/metrics.jsonl` can be compared across N; then
checks that the parameters are identical on every rank and writes `<out>/rank<r>.json`."""

import json
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import count_word, make_tiny_gpt2, make_word_tokenizer, word_prompts  # noqa: E402

from rlhf_demo.config import PPOConfig  # noqa: E402
from rlhf_demo.models import build_value_model  # noqa: E402
from rlhf_demo.ppo import PPOTrainer  # noqa: E402

out = sys.argv[1]
if not dist.is_initialized():
    dist.init_process_group("gloo")
world = dist.get_world_size()
tok = make_word_tokenizer()
policy = make_tiny_gpt2(len(tok), seed=0)  # same seed: the same start on every rank
cfg = PPOConfig(output_dir=out, model_name_or_path="unused", reward=[], total_episodes=32 * 3, batch_size=32 // world,
                num_mini_batches=2, response_length=6, learning_rate=1e-3, save_steps=0, sample_steps=0,
                progress_bar=False)
policy_dir = os.path.join(out, "start")
if dist.get_rank() == 0:
    policy.save_pretrained(policy_dir)
    tok.save_pretrained(policy_dir)
dist.barrier()
trainer = PPOTrainer(cfg, policy=policy, tokenizer=tok, reward_fn=count_word("good"), train_dataset=word_prompts(tok),
                     value_model=build_value_model(policy_dir))
last = trainer.train()
flat = torch.cat([p.detach().reshape(-1) for p in trainer.accelerator.unwrap_model(trainer.policy).parameters()])
gathered = [torch.zeros_like(flat) for _ in range(world)]
dist.all_gather(gathered, flat)
start = make_tiny_gpt2(len(tok), seed=0)
moved = (flat - torch.cat([p.reshape(-1) for p in start.parameters()])).abs().max().item()
with open(os.path.join(out, f"rank{dist.get_rank()}.json"), "w") as f:
    json.dump({"world_size": world, "max_diff_across_ranks": max((g - flat).abs().max().item() for g in gathered),
               "moved": moved, "episodes": last["episode"]}, f)
