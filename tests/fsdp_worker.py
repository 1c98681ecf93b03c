"""Run by `torchrun --nproc_per_node 2` from test_fsdp.py: a PPOTrainer with --fsdp on a tiny GPT-2 (2 blocks) over
the word vocabulary; writes `<out>/rank<r>.json` with the share of each model's parameters this rank holds, what
the sampler returned when this rank's responses all end at EOS at the first token and the other rank's never do,
and whether one PPO step ran and moved the weights."""

import json
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import count_word, make_word_tokenizer, save_with_word_tokenizer, word_prompts  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

from rlhf_demo import sharding  # noqa: E402
from rlhf_demo.config import PPOConfig  # noqa: E402
from rlhf_demo.models import build_value_model, pad_left  # noqa: E402
from rlhf_demo.ppo import PPOTrainer  # noqa: E402
from rlhf_demo.sampling import sample  # noqa: E402

out = sys.argv[1]
dist.init_process_group("gloo")
tok = make_word_tokenizer()
torch.manual_seed(0)  # the same start on every rank
policy = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=32, n_layer=2, n_head=2)).eval()
policy_dir = os.path.join(out, "start")
if dist.get_rank() == 0:
    save_with_word_tokenizer(policy, policy_dir)
dist.barrier()
cfg = PPOConfig(output_dir=os.path.join(out, "run"), model_name_or_path="unused", reward=[], total_episodes=16,
                batch_size=8, num_mini_batches=2, response_length=6, learning_rate=1e-3, save_steps=0, sample_steps=0,
                progress_bar=False, fsdp=True)
trainer = PPOTrainer(cfg, policy=policy, tokenizer=tok, reward_fn=count_word("good"), train_dataset=word_prompts(tok),
                     value_model=build_value_model(policy_dir))
rank = trainer.accelerator.process_index
report = {name: sharding.local_share(model) for name, model in
          (("policy", trainer.policy), ("value_model", trainer.value_model), ("reference", trainer.ref_policy))}
report["sharded"] = all(map(sharding.is_sharded, (trainer.policy, trainer.value_model, trainer.ref_policy)))

# Stopping at EOS: rank 0's rows all end at their first token (its EOS is the token its policy puts first), rank 1's
# never (an EOS its policy never samples). top_p 1e-6 keeps the most likely token only: the same tokens on both ranks.
# Each forward of a sharded model is a collective: had rank 0 stopped alone, rank 1 would wait on it forever.
query_ids, query_mask = pad_left([[3, 4], [3, 4]], tok.pad_token_id)
greedy = dict(max_new_tokens=5, top_p=1e-6, pad_token_id=tok.pad_token_id)
first, _ = sample(trainer.policy, query_ids, query_mask, **greedy)
eos = int(first[0, 0]) if rank == 0 else next(t for t in range(len(tok)) if t not in first.tolist()[0])
responses, mask = sample(trainer.policy, query_ids, query_mask, eos_token_id=eos, sync_processes=True, **greedy)
report["response_tokens"], report["rank0_mask"] = responses.shape[1], mask.tolist()

before = sharding.full_model(trainer.accelerator, trainer.policy)
trainer.step()
after = sharding.full_model(trainer.accelerator, trainer.policy)
if rank == 0:
    report["moved"] = max((a - b).abs().max().item() for a, b in zip(after.parameters(), before.parameters()))
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump(report, f)
