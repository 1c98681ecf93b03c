"""Worker for benchmarks/rlhf_speed.py: TRL 1.12's `trl.experimental.ppo.PPOTrainer`, the last TRL release with PPO.

Runs in its own virtualenv (TRL 1.12 with transformers 5.23 and torch 2.13), started by rlhf_speed.py as

    benchmarks/.venv-trl112/bin/python benchmarks/trl_ppo_1_12_runner.py <rlhf_speed.py flags> --_worker_out OUT.json

and writes the same result record as the other workers (the evaluation and counters are rlhf_speed.py's,
imported from the repository; rlhf_demo is imported from the source tree, not installed in that venv).

TRL 1.12's PPO scores token ids with 1-label sequence classifiers that share the policy's tokenizer:
- reward model: the preset's 2-label classifier with head W_pos (`--trl112_reward_head pos`, default), so its
  single logit is exactly the POSITIVE logit the other trainers get; `margin` uses W_pos - W_neg instead;
- value model: the same backbone with head W_pos - W_neg.
With transformers 5.23 a 1-label checkpoint loads only with `problem_type="regression"` in its config.
Its `train()` ignores `control.should_training_stop`, so the budget callback raises `BudgetReached`.
"""

from __future__ import annotations

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # rlhf_speed (this folder) and rlhf_demo (the repository)

import rlhf_speed  # noqa: E402
import torch  # noqa: E402


class BudgetReached(Exception):
    """Raised from a callback to end TRL 1.12's PPO loop, which does not check should_training_stop."""


def one_label_classifier(src: str, dst: str, head: str) -> str:
    """Save `src` (a 2-label GPT2ForSequenceClassification with NEGATIVE/POSITIVE) as a 1-label model at `dst`
    whose score row is W_pos (`head="pos"`) or W_pos - W_neg (`head="margin"`)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(src, dtype=torch.float32)
    labels = {v.upper(): int(k) for k, v in model.config.id2label.items()}
    pos, neg = labels["POSITIVE"], labels["NEGATIVE"]
    w = model.score.weight.data  # (num_labels, hidden)
    row = w[pos] if head == "pos" else w[pos] - w[neg]
    model.score = torch.nn.Linear(w.shape[1], 1, bias=False)
    model.score.weight.data.copy_(row.unsqueeze(0))
    model.config.num_labels = 1
    model.config.id2label, model.config.label2id = {0: "LABEL_0"}, {"LABEL_0": 0}
    model.config.problem_type = "regression"  # transformers 5.23 loads a 1-label checkpoint only with this
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return dst


def run(args) -> dict:
    import trl.experimental.ppo.ppo_trainer as ppo_module
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    from rlhf_demo.models import load_policy, load_tokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    work = os.path.join(args.work_dir, "trl_ppo_1_12")
    os.makedirs(work, exist_ok=True)
    rm_path = one_label_classifier(args.reward_model, os.path.join(work, "reward_model_1label"),
                                   args.trl112_reward_head)
    vm_path = one_label_classifier(args.reward_model, os.path.join(work, "value_model_1label"), "margin")
    reward_model = AutoModelForSequenceClassification.from_pretrained(rm_path, dtype=torch.float32)
    value_model = AutoModelForSequenceClassification.from_pretrained(vm_path, dtype=torch.float32)
    tokenizer = load_tokenizer(args.policy)  # left padding; the tiny tokenizer has its own pad token
    if tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ValueError("TRL 1.12's PPO finds padding by token id: the policy's tokenizer needs a pad token distinct "
                         "from EOS.")
    policy = load_policy(args.policy)
    prompts = rlhf_speed.train_prompts(args, tokenizer)
    dataset = Dataset.from_dict({"input_ids": list(prompts["input_ids"])})

    config = PPOConfig(
        output_dir=work, per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,
        num_mini_batches=args.num_mini_batches,
        num_ppo_epochs=args.num_ppo_epochs, local_rollout_forward_batch_size=args.batch_size,
        response_length=args.response_length, stop_token=None, temperature=args.temperature, kl_coef=args.kl_coef,
        learning_rate=args.learning_rate, lr_scheduler_type="constant", warmup_steps=0, total_episodes=10**9,
        num_sample_generations=0, save_strategy="no", report_to="none", logging_steps=10**9, disable_tqdm=True,
        use_cpu=True, seed=args.seed,
        gradient_checkpointing=False,  # TRL's default is True; rlhf-demo does not checkpoint
        # TRL's default is True: bf16 autocast, many times slower than fp32 on a CPU without bf16 units
        bf16=False,
    )
    rec = rlhf_speed.Recorder(args, rlhf_speed.HeldOutEval(args))
    rec.n_params = rlhf_speed.policy_flop_params(policy)

    class Budget(TrainerCallback):
        def on_train_begin(self, _args, state, control, **kw):
            rec.start()
            rec.maybe_eval(policy)

        def on_step_end(self, _args, state, control, **kw):
            rec.steps += 1
            rec.episodes += args.batch_size
            rec.maybe_eval(policy)
            if rec.done():
                raise BudgetReached()

    trainer = PPOTrainer(args=config, processing_class=tokenizer, model=policy, ref_model=None,
                         reward_model=reward_model,
                         train_dataset=dataset, value_model=value_model, callbacks=[Budget()])
    torch.set_num_threads(args.threads)

    # Rollout = from generation until the first training forward of that iteration (the PPO epochs).
    rollout_start = [None]
    batch_generation, forward = ppo_module.batch_generation, ppo_module.forward

    def timed_batch_generation(model, queries, *a, **kw):
        rollout_start[0] = time.perf_counter()
        query_responses, logits = batch_generation(model, queries, *a, **kw)
        rec.rollout_tokens += (query_responses.shape[1] - queries.shape[1]) * queries.shape[0]
        return query_responses, logits

    def counted_forward(model, query_responses, pad_token_id):
        if isinstance(model, ppo_module.PolicyAndValueWrapper):  # a training forward of the PPO epochs
            if rollout_start[0] is not None:
                rec.rollout_s += time.perf_counter() - rollout_start[0]
                rollout_start[0] = None
            rec.update_tokens += int((query_responses != pad_token_id).sum())
        return forward(model, query_responses, pad_token_id)

    rec.trainer_config = {**rlhf_speed.config_subset(config, rlhf_speed.ALGO_KEYS),
                          "reward_head": args.trl112_reward_head}
    ppo_module.batch_generation, ppo_module.forward = timed_batch_generation, counted_forward
    try:
        trainer.train()
    except BudgetReached:
        pass
    return rec.finish(policy)


def main():
    args = rlhf_speed.parse_args()
    result = run(args)
    with open(args._worker_out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
