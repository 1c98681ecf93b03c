"""PPO for RLHF: a policy, a frozen reference, a value model and any reward function.

One PPO step (`PPOTrainer.step`) reads top to bottom:
    rollout (sample responses) -> forward passes (policy, reference, value) -> score the decoded text
    -> per-token reward r_t = -beta * KL_t (+ score on the last token) -> GAE -> whitened advantages
    -> num_ppo_epochs x num_mini_batches of clipped policy + clipped value loss -> adapt beta -> log.
Sources: Schulman et al. 2017 (PPO), Schulman et al. 2016 (GAE), Ziegler et al. 2019 (KL-shaped reward,
adaptive KL controller), Huang et al. 2024 "The N+ Implementation Details of RLHF with PPO" (padding,
temperature, whitening, value clipping). The list of details and why lives in docs/ppo_details.md.

Value model choice: a separate network (the policy's or the reward model's backbone with a scalar head), as in
Ziegler et al. 2019 and Stiennon et al. 2020, not a head on the policy: value-loss gradients never disturb the
policy's features, the two can start from different models, and the value model is saved with the run.
"""

from __future__ import annotations

import copy
import glob
import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from tqdm.auto import tqdm

from . import __version__
from .config import PPOConfig, save_config
from .models import forward_response, logprobs_from_logits, pad_left, position_ids_from_mask, sample
from .rewards import check_scores

# ----------------------------------------------------------------------------------------------------------
# Small pure functions (each tested against a naive implementation in tests/test_ppo_math.py)


# ----------------------------------------------------------------------------------------------------------
# The rollout batch


@dataclass
class Rollout:
    """One batch of episodes. B episodes, L query tokens (left-padded), T response tokens."""

    query_ids: torch.Tensor  # (B, L) long, left-padded queries
    query_mask: torch.Tensor  # (B, L) long, 1 = real query token
    responses: torch.Tensor  # (B, T) long, sampled response tokens
    response_mask: torch.Tensor  # (B, T) long, 1 = real response token (0 after EOS when stopping at EOS)
    logprobs: torch.Tensor  # (B, T) log pi_old(a_t|s_t), nats, logits / temperature
    ref_logprobs: torch.Tensor  # (B, T) log pi_ref(a_t|s_t), nats
    values: torch.Tensor  # (B, T) V_old(s_t)
    entropy: torch.Tensor  # (B, T) entropy of pi_old(.|s_t), nats
    scores: torch.Tensor  # (B,) reward function output after penalty / clipping / normalisation
    raw_scores: torch.Tensor  # (B,) reward function output as returned
    kl: torch.Tensor  # (B, T) per-token KL estimate, nats
    rewards: torch.Tensor  # (B, T) -beta * KL_t, plus the score on the last real token
    advantages: torch.Tensor  # (B, T) GAE advantages (whitened when configured)
    returns: torch.Tensor  # (B, T) value targets
    queries_text: list[str]  # B decoded queries
    responses_text: list[str]  # B decoded responses


# ----------------------------------------------------------------------------------------------------------
# The trainer


class PPOTrainer:
    """PPO trainer for causal LMs with a KL penalty against a frozen reference.

    Args:
        config: a `PPOConfig`.
        policy: the causal LM to align (loaded from `config.model_name_or_path` when None).
        tokenizer: the policy's tokenizer (loaded when None). GPT-2's missing pad token is handled with masks.
        reward_fn: callable `(queries: list[str], responses: list[str]) -> list[float]` (built from `config.reward`
            when None). It must return one finite number per response, else ValueError (nothing is lost:
            the last checkpoint stays intact).
        train_dataset: a dataset with `input_ids` (queries as token lists) and `query` (built from
            `config.dataset_name` when None).
        value_model: a token-classification model with 1 label (built when None).
        ref_policy: the reference (a frozen copy of the policy when None; with LoRA, the adapter-disabled policy).
    """

    def __init__(self, config: PPOConfig, policy=None, tokenizer=None, reward_fn=None, train_dataset=None, value_model=None, ref_policy=None):
        from .models import load_policy, load_tokenizer, use_fused_gelu

        self.config = cfg = config
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
        torch.manual_seed(cfg.seed + self.accelerator.process_index)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)

        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg.model_name_or_path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        policy = policy if policy is not None else load_policy(cfg.model_name_or_path)
        disable_dropout(policy)
        use_fused_gelu(policy)
        if cfg.use_peft:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                              target_modules=cfg.lora_target_modules, fan_in_fan_out=True, task_type="CAUSAL_LM")
            policy = get_peft_model(policy, lora)
            self.ref_policy = None  # the reference is the policy with its adapter disabled
        else:
            self.ref_policy = use_fused_gelu(ref_policy) if ref_policy is not None else copy.deepcopy(policy)
            self.ref_policy.eval().requires_grad_(False)
        if value_model is None:
            value_model = build_value_model(cfg.value_model_name_or_path or cfg.model_name_or_path)
        disable_dropout(value_model)
        use_fused_gelu(value_model)
        self.reward_fn = reward_fn if reward_fn is not None else _build_reward(cfg)
        if train_dataset is None:
            from .data import build_prompt_dataset

            train_dataset = build_prompt_dataset(self.tokenizer, cfg.dataset_name, "train", text_column=cfg.text_column,
                                                 min_review_chars=cfg.min_review_chars, min_query_tokens=cfg.min_query_tokens,
                                                 max_query_tokens=cfg.max_query_tokens, seed=cfg.seed)
        if len(train_dataset) == 0:
            raise ValueError("The training dataset holds no queries.")
        self.train_dataset = train_dataset

        # Derived sizes, computed once (as in CleanRL).
        self.world_size = self.accelerator.num_processes
        self.global_batch = cfg.batch_size * self.world_size
        self.num_steps = max(1, cfg.total_episodes // self.global_batch)
        self.mini_batch_size = cfg.batch_size // cfg.num_mini_batches
        self.micro_batch_size = self.mini_batch_size // cfg.gradient_accumulation_steps

        params = [p for p in policy.parameters() if p.requires_grad] + list(value_model.parameters())
        # fused: one kernel per parameter instead of ~6 elementwise passes (torch docs, "Algorithms" / fused); same math.
        fused = self.accelerator.device.type in ("cpu", "cuda")
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, eps=cfg.adam_eps, weight_decay=cfg.weight_decay, fused=fused)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / self.num_steps)
        self.policy, self.value_model, self.optimizer, self.scheduler = self.accelerator.prepare(policy, value_model, optimizer, scheduler)
        if self.ref_policy is not None:
            self.ref_policy = self.ref_policy.to(self.accelerator.device)
        self.policy.eval()  # eval mode throughout: dropout is off anyway, and eval() makes that explicit
        self.value_model.eval()

        self.kl_ctl = AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon) if cfg.adaptive_kl else FixedKLController(cfg.kl_coef)
        self.reward_stats = RunningMoments()
        self.state = {"step": 0, "episode": 0, "wall_time_s": 0.0}
        self.log_writer = None

    # ---- data ------------------------------------------------------------------------------------------
    def _query_batch(self, step: int):
        """Queries for PPO step `step` on this process: a seeded permutation per pass, so a resumed run
        sees exactly the data it would have seen."""
        n = len(self.train_dataset)
        start = step * self.global_batch + self.accelerator.process_index * self.config.batch_size
        idx = []
        for pos in range(start, start + self.config.batch_size):
            epoch, offset = divmod(pos, n)
            perm = self._permutation(epoch)
            idx.append(int(perm[offset]))
        rows = self.train_dataset.select(idx)
        return rows["input_ids"], rows["query"]

    def _permutation(self, epoch: int):
        if getattr(self, "_perm_epoch", None) != epoch:
            self._perm = np.random.default_rng(self.config.seed + epoch).permutation(len(self.train_dataset))
            self._perm_epoch = epoch
        return self._perm

    # ---- one PPO step, top to bottom --------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        """Run one PPO iteration (rollout, score, KL-shaped reward, GAE, PPO epochs); return its metrics."""
        cfg, device = self.config, self.accelerator.device
        policy = self.accelerator.unwrap_model(self.policy)
        value_model = self.accelerator.unwrap_model(self.value_model)
        t0 = time.time()

        # 1. Rollout: sample responses to left-padded queries with the KV cache.
        query_lists, queries_text = self._query_batch(self.state["step"])
        query_ids, query_mask = pad_left(query_lists, self.tokenizer.pad_token_id)
        query_ids, query_mask = query_ids.to(device), query_mask.to(device)
        response_length = cfg.response_length
        if cfg.min_response_length is not None:
            response_length = random.Random(cfg.seed * 7919 + self.state["step"]).randint(cfg.min_response_length, cfg.response_length)
        # Steps 1-2 run under inference_mode (no autograd bookkeeping). The logits the tokens were sampled from
        # (/ temperature, before top-k/top-p) give the policy's log-probs: no second policy forward pass over the
        # rollout (TRL's PPO reuses its generation logits likewise).
        with torch.inference_mode():
            responses, response_mask, logits = sample(
                policy, query_ids, query_mask, max_new_tokens=response_length, temperature=cfg.temperature, top_k=cfg.top_k,
                top_p=cfg.top_p, eos_token_id=self.tokenizer.eos_token_id if cfg.stop_at_eos else None,
                pad_token_id=self.tokenizer.pad_token_id, return_logits=True,
            )

            # 2. Log-probs of policy and reference (logits / temperature), values, entropy.
            logprobs = logprobs_from_logits(logits, responses) * response_mask
            entropy = entropy_from_logits(logits) * response_mask
            del logits
            if self.ref_policy is None:  # LoRA: the reference is the base model, adapter off
                with policy.disable_adapter():
                    ref_logits = forward_response(policy, query_ids, query_mask, responses, response_mask, cfg.temperature)
            else:
                ref_logits = forward_response(self.ref_policy, query_ids, query_mask, responses, response_mask, cfg.temperature)
            ref_logprobs = logprobs_from_logits(ref_logits, responses) * response_mask
            del ref_logits
            values = value_forward(value_model, query_ids, query_mask, responses, response_mask) * response_mask
        # Ordinary copies for the update: its autograd graph may not save inference tensors.
        responses, response_mask, logprobs, ref_logprobs, values, entropy = (
            t.clone() for t in (responses, response_mask, logprobs, ref_logprobs, values, entropy))

        # 3. Score the decoded text (reward models use their own tokenizers).
        responses_text = self.tokenizer.batch_decode(responses * response_mask + self.tokenizer.pad_token_id * (1 - response_mask), skip_special_tokens=True)
        raw = check_scores(self.reward_fn(list(queries_text), responses_text), len(responses_text), self.reward_fn)
        raw_scores = torch.tensor(raw, dtype=torch.float32, device=device)
        scores = raw_scores.clone()
        if cfg.missing_eos_penalty is not None:
            has_eos = (responses == self.tokenizer.eos_token_id).logical_and(response_mask.bool()).any(1)
            scores = torch.where(has_eos, scores, scores - cfg.missing_eos_penalty)
        if cfg.reward_clip is not None:
            scores = scores.clamp(-cfg.reward_clip, cfg.reward_clip)
        if cfg.normalize_reward:
            self.reward_stats.update(self.accelerator.gather(scores))
            scores = (scores - self.reward_stats.mean) / self.reward_stats.std
        t_rollout = time.time() - t0

        # 4. Per-token reward: -beta * KL_t everywhere, plus the score on the last real response token.
        kl = kl_per_token(logprobs, ref_logprobs, cfg.kl_estimator) * response_mask
        beta = self.kl_ctl.value
        rewards = -beta * kl
        last = response_mask.sum(1).long() - 1
        rewards[torch.arange(len(last), device=device), last] += scores

        # 5. GAE advantages and returns; advantages whitened over the batch.
        advantages, returns = compute_gae(rewards, values, response_mask.float(), cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = masked_whiten(advantages, response_mask.float())
        rollout = Rollout(query_ids, query_mask, responses, response_mask, logprobs, ref_logprobs, values, entropy,
                          scores, raw_scores, kl, rewards, advantages, returns, list(queries_text), responses_text)

        # 6. PPO epochs over minibatches.
        t1 = time.time()
        update_stats = self._update(rollout)
        t_update = time.time() - t1

        # 7. Adapt beta, log.
        mean_kl = self.accelerator.gather(kl.sum(1)).mean().item()
        self.kl_ctl.update(mean_kl, self.global_batch)
        self.state["step"] += 1
        self.state["episode"] += self.global_batch
        tokens = int(self.accelerator.gather(response_mask.sum()).sum().item()) + int(self.accelerator.gather(query_mask.sum()).sum().item())
        metrics = {
            "episode": self.state["episode"],
            "step": self.state["step"],
            "objective/kl": mean_kl,
            "objective/entropy": self._gmean(entropy.sum(1)),
            "objective/non_score_reward": self._gmean((-beta * kl).sum(1)),
            "objective/rlhf_reward": self._gmean(raw_scores - beta * kl.sum(1)),
            "objective/scores": self._gmean(raw_scores),
            "objective/scores_std": self.accelerator.gather(raw_scores).std().item() if self.global_batch > 1 else 0.0,
            "objective/kl_coef": beta,
            **update_stats,
            "val/mean": self._gmean(masked_mean(values, response_mask.float(), 1)),
            "lr": self.scheduler.get_last_lr()[0],
            "response_length_mean": self._gmean(response_mask.sum(1).float()),
            "time/rollout_s": t_rollout,
            "time/update_s": t_update,
            "tokens_per_s": tokens / (time.time() - t0),
        }
        self._last_rollout = rollout
        return metrics

    def _update(self, rollout: Rollout) -> dict[str, float]:
        """num_ppo_epochs passes of minibatch updates on the clipped policy and value losses."""
        cfg = self.config
        stats = {k: [] for k in ("approxkl", "clipfrac", "policy_loss", "value_loss", "value_clipfrac", "ratio", "entropy")}
        gen = torch.Generator().manual_seed(cfg.seed * 104729 + self.state["step"])
        for _epoch in range(cfg.num_ppo_epochs):
            perm = torch.randperm(cfg.batch_size, generator=gen)
            for mb_start in range(0, cfg.batch_size, self.mini_batch_size):
                mb_idx = perm[mb_start : mb_start + self.mini_batch_size]
                for micro_start in range(0, self.mini_batch_size, self.micro_batch_size):
                    idx = mb_idx[micro_start : micro_start + self.micro_batch_size].to(rollout.responses.device)
                    mask = rollout.response_mask[idx].float()
                    new_logits = forward_response(self.policy, rollout.query_ids[idx], rollout.query_mask[idx], rollout.responses[idx], rollout.response_mask[idx], cfg.temperature)
                    new_logprobs = logprobs_from_logits(new_logits, rollout.responses[idx])
                    pg_loss, pg_stats = policy_loss(new_logprobs, rollout.logprobs[idx], rollout.advantages[idx], mask, cfg.cliprange)
                    new_values = value_forward(self.value_model, rollout.query_ids[idx], rollout.query_mask[idx], rollout.responses[idx], rollout.response_mask[idx])
                    vf_loss, vf_clipfrac = value_loss(new_values, rollout.values[idx], rollout.returns[idx], mask, cfg.cliprange_value)
                    loss = pg_loss + cfg.vf_coef * vf_loss
                    if cfg.ent_coef:
                        entropy = masked_mean(entropy_from_logits(new_logits), mask)
                        loss = loss - cfg.ent_coef * entropy
                        stats["entropy"].append(entropy.detach())
                    self.accelerator.backward(loss / cfg.gradient_accumulation_steps)
                    for k, v in (("approxkl", pg_stats["approxkl"]), ("clipfrac", pg_stats["clipfrac"]), ("ratio", pg_stats["ratio"]),
                                 ("policy_loss", pg_loss.detach()), ("value_loss", vf_loss.detach()), ("value_clipfrac", vf_clipfrac)):
                        stats[k].append(v)
                params = [p for group in self.optimizer.param_groups for p in group["params"]]
                self.accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        s = {k: self._gmean(torch.stack(v)) for k, v in stats.items() if v}
        out = {
            "policy/approxkl_avg": s["approxkl"], "policy/clipfrac_avg": s["clipfrac"],
            "loss/policy_avg": s["policy_loss"], "loss/value_avg": s["value_loss"],
            "val/clipfrac_avg": s["value_clipfrac"], "val/ratio": s["ratio"],
        }
        if "entropy" in s:
            out["policy/entropy_avg"] = s["entropy"]
        # The first minibatch of the first epoch, as a correctness probe (ratio must be exactly 1 there).
        out["policy/approxkl_first_mb"] = stats["approxkl"][0].item()
        out["policy/clipfrac_first_mb"] = stats["clipfrac"][0].item()
        out["val/ratio_first_mb"] = stats["ratio"][0].item()
        return out

    def _gmean(self, x: torch.Tensor) -> float:
        """Mean over all elements on all processes."""
        return self.accelerator.gather(x.detach().float().reshape(-1)).mean().item()

    # ---- the loop ----------------------------------------------------------------------------------------
    def train(self) -> dict[str, float]:
        """Run PPO until `total_episodes`, with progress bar, metrics.jsonl, samples and checkpoints.

        Returns the last step's metrics. The final aligned policy goes to `output_dir` (see `save_model`).
        """
        cfg = self.config
        os.makedirs(cfg.output_dir, exist_ok=True)
        if cfg.resume_from_checkpoint:
            self.load_checkpoint(self._resolve_checkpoint(cfg.resume_from_checkpoint))
        if self.accelerator.is_main_process:
            save_config(cfg, os.path.join(cfg.output_dir, "training_config.yaml"))
            self._open_loggers()
        bar = tqdm(total=self.num_steps * self.global_batch, initial=self.state["episode"], unit="episode", desc="PPO",
                   disable=not (cfg.progress_bar and self.accelerator.is_main_process))
        metrics: dict[str, float] = {}
        while self.state["step"] < self.num_steps:
            t0 = time.time()
            metrics = self.step()
            self.state["wall_time_s"] += time.time() - t0
            metrics["time/total_s"] = self.state["wall_time_s"]
            bar.update(self.global_batch)
            bar.set_postfix(score=f"{metrics['objective/scores']:.2f}", kl=f"{metrics['objective/kl']:.2f}")
            step = self.state["step"]
            if self.accelerator.is_main_process and (step % cfg.logging_steps == 0 or step == self.num_steps):
                self._log(metrics)
            if self.accelerator.is_main_process and cfg.sample_steps and (step % cfg.sample_steps == 0 or step == 1):
                self._log_samples(bar)
            if cfg.save_steps and step % cfg.save_steps == 0 and step < self.num_steps:
                self.save_checkpoint()
        bar.close()
        self.save_checkpoint()
        self.save_model(cfg.output_dir, metrics)
        self._close_loggers()
        return metrics

    # ---- logging ---------------------------------------------------------------------------------------
    def _open_loggers(self):
        cfg = self.config
        if cfg.report_to == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self.log_writer = SummaryWriter(os.path.join(cfg.output_dir, "runs"))
        elif cfg.report_to == "trackio":
            import trackio

            trackio.init(project="rlhf-demo", config=asdict(cfg))
            self.log_writer = trackio

    def _log(self, metrics: dict[str, float]):
        with open(os.path.join(self.config.output_dir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(metrics) + "\n")
        if self.config.report_to == "tensorboard":
            for k, v in metrics.items():
                self.log_writer.add_scalar(k, v, int(metrics["episode"]))
        elif self.config.report_to == "trackio":
            self.log_writer.log(metrics, step=int(metrics["episode"]))

    def _log_samples(self, bar):
        r = self._last_rollout
        rows = [{"step": self.state["step"], "query": q, "response": resp, "score": s}
                for q, resp, s in zip(r.queries_text, r.responses_text, r.raw_scores.tolist())][: self.config.num_samples_logged]
        with open(os.path.join(self.config.output_dir, "samples.jsonl"), "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        for row in rows[:2]:
            bar.write(f"[step {row['step']}] {row['query']!r} -> {row['response']!r} (score {row['score']:.2f})")

    def _close_loggers(self):
        if self.config.report_to == "tensorboard" and self.log_writer is not None:
            self.log_writer.close()
        elif self.config.report_to == "trackio" and self.log_writer is not None:
            self.log_writer.finish()

    # ---- checkpoints -----------------------------------------------------------------------------------
    def _resolve_checkpoint(self, path: str) -> str:
        if path == "latest":
            found = sorted(glob.glob(os.path.join(self.config.output_dir, "checkpoints", "checkpoint-*")),
                           key=lambda p: int(p.rsplit("-", 1)[1]) if p.rsplit("-", 1)[1].isdigit() else -1)
            found = [p for p in found if p.rsplit("-", 1)[1].isdigit()]
            if not found:
                raise FileNotFoundError(f"No checkpoint under {self.config.output_dir}/checkpoints to resume from; drop --resume_from_checkpoint to start fresh.")
            return found[-1]
        if not os.path.isfile(os.path.join(path, "trainer_state.json")):
            raise FileNotFoundError(f"{path!r} is not a checkpoint folder (no trainer_state.json); pass a checkpoint-N folder or `latest`.")
        return path

    def save_checkpoint(self) -> str:
        """Write `output_dir/checkpoints/checkpoint-<step>` atomically (temporary folder, then rename) and keep
        the last `save_total_limit`. Holds policy, value model, optimizer, scheduler, KL controller, reward
        statistics, RNG states and the data position (the step)."""
        cfg, acc = self.config, self.accelerator
        root = os.path.join(cfg.output_dir, "checkpoints")
        final = os.path.join(root, f"checkpoint-{self.state['step']}")
        tmp = os.path.join(root, f".tmp-checkpoint-{self.state['step']}")
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
        acc.wait_for_everyone()
        rng = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
        torch.save(rng, os.path.join(tmp, f"rng_state_{acc.process_index}.pth"))
        if acc.is_main_process:
            acc.unwrap_model(self.policy).save_pretrained(os.path.join(tmp, "policy"))
            acc.unwrap_model(self.value_model).save_pretrained(os.path.join(tmp, "value_model"))
            self.tokenizer.save_pretrained(os.path.join(tmp, "policy"))
            torch.save(self.optimizer.state_dict(), os.path.join(tmp, "optimizer.pt"))
            torch.save(self.scheduler.state_dict(), os.path.join(tmp, "scheduler.pt"))
            state = {**self.state, "kl_coef": self.kl_ctl.value, "reward_stats": vars(self.reward_stats), "world_size": acc.num_processes}
            with open(os.path.join(tmp, "trainer_state.json"), "w") as f:
                json.dump(state, f, indent=2)
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            done = sorted((p for p in glob.glob(os.path.join(root, "checkpoint-*")) if p.rsplit("-", 1)[1].isdigit()),
                          key=lambda p: int(p.rsplit("-", 1)[1]))
            for old in done[: max(0, len(done) - cfg.save_total_limit)]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final

    def load_checkpoint(self, path: str) -> None:
        """Restore everything `save_checkpoint` wrote, so training continues as if never interrupted."""
        from safetensors.torch import load_file

        acc = self.accelerator
        with open(os.path.join(path, "trainer_state.json")) as f:
            state = json.load(f)
        if state.get("world_size", 1) != acc.num_processes:
            raise ValueError(f"Checkpoint {path} was written by {state['world_size']} processes; resume with the same number (now {acc.num_processes}).")
        policy = acc.unwrap_model(self.policy)
        if self.config.use_peft:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(policy, load_file(os.path.join(path, "policy", "adapter_model.safetensors")))
        else:
            policy.load_state_dict(load_file(os.path.join(path, "policy", "model.safetensors")), strict=False)
        acc.unwrap_model(self.value_model).load_state_dict(load_file(os.path.join(path, "value_model", "model.safetensors")), strict=False)
        self.optimizer.load_state_dict(torch.load(os.path.join(path, "optimizer.pt"), weights_only=False))
        self.scheduler.load_state_dict(torch.load(os.path.join(path, "scheduler.pt"), weights_only=False))
        self.kl_ctl.value = state["kl_coef"]
        vars(self.reward_stats).update(state["reward_stats"])
        self.state = {k: state[k] for k in ("step", "episode", "wall_time_s")}
        if acc.is_main_process:  # forget what was logged after the checkpoint: those steps will run again
            for name in ("metrics.jsonl", "samples.jsonl"):
                log = os.path.join(self.config.output_dir, name)
                if os.path.exists(log):
                    with open(log) as f:
                        rows = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= self.state["step"]]
                    with open(log, "w") as f:
                        f.writelines(rows)
        rng = torch.load(os.path.join(path, f"rng_state_{acc.process_index}.pth"), weights_only=False)
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])

    def save_model(self, output_dir: str, final_metrics: dict | None = None) -> None:
        """Save the aligned policy (merged, if LoRA) loadable with `AutoModelForCausalLM.from_pretrained`,
        its tokenizer and generation config, the value model (`value_model/`) and `run_info.json`."""
        acc = self.accelerator
        if not acc.is_main_process:
            return
        policy = acc.unwrap_model(self.policy)
        if self.config.use_peft:
            policy.save_pretrained(os.path.join(output_dir, "adapter"))
            policy = copy.deepcopy(policy).merge_and_unload()
        gen = policy.generation_config
        gen.do_sample, gen.top_k, gen.top_p, gen.temperature = True, self.config.top_k, self.config.top_p, self.config.temperature
        gen.max_new_tokens = self.config.response_length
        gen.pad_token_id = self.tokenizer.pad_token_id
        gen.eos_token_id = self.tokenizer.eos_token_id
        policy.save_pretrained(output_dir)
        self.tokenizer.save_pretrained(output_dir)
        acc.unwrap_model(self.value_model).save_pretrained(os.path.join(output_dir, "value_model"))
        from .pretrain import machine_description

        info = {
            "base_model": self.config.model_name_or_path,
            "reward_functions": [repr(self.reward_fn)],
            "dataset": self.config.dataset_name,
            "episodes": self.state["episode"],
            "steps": self.state["step"],
            "wall_time_s": self.state["wall_time_s"],
            "machine": machine_description(),
            "processes": acc.num_processes,
            "rlhf_demo_version": __version__,
            "final_metrics": final_metrics or {},
        }
        with open(os.path.join(output_dir, "run_info.json"), "w") as f:
            json.dump(info, f, indent=2)


def _build_reward(cfg: PPOConfig):
    from .rewards import build_reward

    return build_reward(cfg.reward)
