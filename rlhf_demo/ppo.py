"""PPO for RLHF: a policy, a frozen reference, a value model and any reward function.

One PPO iteration (`PPOTrainer.step`) reads top to bottom:
    make_rollout: sample responses -> log-probs of policy and reference, values -> score the decoded text
                  -> per-token reward r_t = -beta * KL_t (+ score on the last token) -> GAE -> whitened advantages
    update:       num_ppo_epochs x num_mini_batches of clipped policy + clipped value loss
    then:         adapt beta, count episodes, return the metrics.
Sources: Schulman et al. 2017 (PPO), Schulman et al. 2016 (GAE), Ziegler et al. 2019 (KL-shaped reward,
adaptive KL controller), Huang et al. 2024 "The N+ Implementation Details of RLHF with PPO" (padding,
temperature, whitening, value clipping). The list of details and why lives in docs/ppo_details.md; the pure math
in ppo_math.py; models, sampling, the run folder and its checkpoints in models.py, sampling.py, runs.py and
checkpoints.py.

Value model choice: a separate network (the policy's or the reward model's backbone with a scalar head), as in
Stiennon et al. 2020 and TRL's PPO (Ziegler et al. 2019's code puts a zero-initialised head on the policy's trunk:
`value_head_on_policy`): value-loss gradients never disturb the policy's features, the two can start from
different models, and the value model is saved with the run.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from . import checkpoints, devices, runs, sharding, tracking
from .config import PPOConfig, prompt_options, save_config
from .data import QueryOrder, build_prompt_dataset
from .errors import TrainingDivergedError, UserInputError
from .models import (build_ppo_models, check_context_length, ensure_pad_token, forward_response,
                     is_trunk_value_head, loading_errors, load_tokenizer, logits_and_values, logprobs_from_logits,
                     pad_left, reference_logits)
from .ppo_math import (AdaptiveKLController, FixedKLController, RunningMoments, compute_gae, entropy_from_logits,
                       kl_per_token, masked_mean, masked_whiten, nonfinite, policy_loss, value_loss)
from .rewards import build_reward, check_scores, reward_label_of, truncated_count
from .sampling import sample


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
    reward_truncated: torch.Tensor  # () share of episodes whose text a reward model cut to its window (query start)
    kl: torch.Tensor  # (B, T) per-token KL estimate, nats
    rewards: torch.Tensor  # (B, T) -beta * KL_t, plus the score on the last real token
    advantages: torch.Tensor  # (B, T) GAE advantages (whitened when configured)
    returns: torch.Tensor  # (B, T) value targets
    queries_text: list[str]  # B decoded queries
    responses_text: list[str]  # B decoded responses


class PPOTrainer:
    """PPO trainer for causal or encoder-decoder LMs with a KL penalty against a frozen reference (what differs for an
    encoder-decoder policy stays inside the model helpers: models.py, sampling.py, seq2seq.py).

    Args:
        config: a `PPOConfig`.
        policy: the causal or encoder-decoder LM to align (loaded from `config.model_name_or_path` when None).
        tokenizer: the policy's tokenizer (loaded when None). GPT-2's missing pad token is handled with masks.
        reward_fn: callable `(queries: list[str], responses: list[str]) -> list[float]` (built from `config.reward`
            when None). It must return one finite number per response, else ValueError (nothing is lost:
            the last checkpoint stays intact).
        train_dataset: a dataset with `input_ids` (queries as token lists) and `query` (built from
            `config.dataset_name` when None).
        value_model: a token-classification model with 1 label (built when None).
        ref_policy: the reference (a frozen copy of the policy when None; with LoRA, the adapter-disabled policy).

    Raises:
        UserInputError: an unwritable output folder, a checkpoint that is missing or has another batch size, seed or
            model, a model that cannot be loaded, queries + responses beyond a model's context, no training queries,
            or (from `step`) a reward function that returns the wrong number of scores or a non-finite one.
        TrainingDivergedError: (from `step`) a NaN or infinite reward, advantage, loss or gradient; the last
            checkpoint stays intact.
    """

    def __init__(self, config: PPOConfig, policy=None, tokenizer=None, reward_fn=None, train_dataset=None,
                 value_model=None, ref_policy=None):
        self.config = cfg = config
        # Before any work: a writable folder, and the checkpoint a resume continues or no other run to overwrite.
        self.resume_path = checkpoints.check_run_start(cfg)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        # --report_to: accelerate's trackers; one with its package missing is refused here, before any model loads.
        self.accelerator = Accelerator(**devices.accelerator_kwargs(cfg.mixed_precision),  # auto: bf16 if fast
                                       **tracking.accelerator_kwargs(cfg.report_to, cfg.output_dir))
        self.recompute_logprobs = devices.recompute_logprobs(cfg.recompute_logprobs, self.accelerator.mixed_precision)
        torch.manual_seed(cfg.seed + self.accelerator.process_index)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)

        if tokenizer is None:
            tokenizer = load_tokenizer(cfg.model_name_or_path, "policy (--model_name_or_path)")
        self.tokenizer = ensure_pad_token(tokenizer)
        backbone = cfg.value_model_name_or_path or cfg.model_name_or_path  # a reward model's: its head starts there
        policy, self.ref_policy, value_model = build_ppo_models(cfg, policy, ref_policy, value_model,
                                                                reward_label_of(backbone, cfg.reward))
        with loading_errors(" ".join(cfg.reward), "reward (--reward)"):  # a reward model folder that cannot load
            self.reward_fn = reward_fn if reward_fn is not None else build_reward(cfg.reward, self.accelerator.device)
        if train_dataset is None:  # the train split of --dataset_name, tokenized with the policy's tokenizer
            train_dataset = build_prompt_dataset(self.tokenizer, cfg.dataset_name, "train", text_column=cfg.text_column,
                                                 seed=cfg.seed, min_review_chars=cfg.min_review_chars,
                                                 min_query_tokens=cfg.min_query_tokens,
                                                 max_query_tokens=cfg.max_query_tokens, **prompt_options(cfg))
        if len(train_dataset) == 0:
            raise UserInputError("The training dataset holds no queries; pass another --dataset_name.")
        self.train_dataset, self.query_order = train_dataset, QueryOrder(train_dataset, cfg.seed)
        # The longest query the models' context must hold: review heads' bound, or a prompt-only dataset's longest.
        query_tokens, query_flag = cfg.max_query_tokens, "--max_query_tokens"
        if cfg.prompt_column is not None or cfg.prompt_template is not None:
            query_tokens, query_flag = max(map(len, train_dataset["input_ids"])), "--max_prompt_length"
        self.value_on_policy = is_trunk_value_head(value_model)  # one network: value_head.py
        for model, flag in ((policy, "--model_name_or_path"), (value_model, "--value_model_name_or_path")):
            check_context_length(model, query_tokens, cfg.response_length, flag, query_flag)  # a head has no context

        # Derived sizes, computed once (as in CleanRL).
        self.world_size = self.accelerator.num_processes
        self.sharded = cfg.fsdp  # FSDP2: each process holds 1/N of the policy, value model and reference
        policy, value_model, self.ref_policy = sharding.shard_models(self.accelerator, cfg.fsdp, policy, value_model,
                                                                     self.ref_policy, self.value_on_policy)
        self.global_batch = cfg.batch_size * self.world_size
        self.num_steps = max(1, cfg.total_episodes // self.global_batch)
        if self.num_steps * self.global_batch != cfg.total_episodes and self.accelerator.is_main_process:
            print(f"note: --total_episodes {cfg.total_episodes} is not a multiple of the episodes per PPO step "
                  f"(batch_size {cfg.batch_size} x {self.world_size} process(es) = {self.global_batch}): training "
                  f"runs {self.num_steps} step(s), {self.num_steps * self.global_batch} episodes.", file=sys.stderr)
        self.mini_batch_size = cfg.batch_size // cfg.num_mini_batches
        self.micro_batch_size = self.mini_batch_size // cfg.gradient_accumulation_steps

        # The tensors the optimizer steps, kept for clipping: FSDP2 registers other ones while a model is gathered.
        self.params = ([p for p in policy.parameters() if p.requires_grad],
                       [p for p in value_model.parameters() if p.requires_grad])
        # fused: one kernel per parameter instead of ~6 elementwise passes (torch docs, "Algorithms"); same math.
        optimizer = torch.optim.AdamW(self.params[0] + list(value_model.parameters()), lr=cfg.learning_rate,
                                      eps=cfg.adam_eps, weight_decay=cfg.weight_decay,
                                      fused=self.accelerator.device.type in ("cpu", "cuda"))
        # Linear decay to 0 over the run, stepped once per PPO step. The scheduler is NOT given to accelerator.prepare:
        # accelerate's wrapper steps it once per process per call, which with 2 processes drove the lr negative.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / self.num_steps)
        self.policy, self.value_model, self.optimizer = sharding.prepare(self.accelerator, policy, value_model,
                                                                         optimizer, self.sharded)  # DDP unless FSDP
        self.policy.eval()  # eval mode throughout: dropout is off anyway, and eval() makes that explicit
        self.value_model.eval()

        self.kl_ctl = (AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon) if cfg.adaptive_kl
                       else FixedKLController(cfg.kl_coef))
        self.reward_stats = RunningMoments()
        self.state = {"step": 0, "episode": 0, "wall_time_s": 0.0}
        self.last_rollout: Rollout | None = None  # the last step's episodes, for the samples log and inspection

    # ---- one PPO iteration, top to bottom ---------------------------------------------------------------
    def step(self) -> dict[str, float]:
        """Run one PPO iteration (rollout, score, KL-shaped reward, GAE, PPO epochs, adapt beta); return its metrics."""
        t0 = time.time()
        rollout = self.make_rollout()  # 1-5: sample, log-probs, values, scores, rewards, advantages
        t_rollout = time.time() - t0
        update_stats = self.update(rollout)  # 6: PPO epochs over minibatches
        t_update = time.time() - t0 - t_rollout

        # 7. Adapt beta, count, log.
        beta, lr = self.kl_ctl.value, self.scheduler.get_last_lr()[0]  # what this step used (before stepping)
        mean_kl = self.accelerator.gather(rollout.kl.sum(1)).mean().item()
        self.kl_ctl.update(mean_kl, self.global_batch)
        self.scheduler.step()
        self.state["step"] += 1
        self.state["episode"] += self.global_batch
        self.last_rollout = rollout
        tokens = self.accelerator.gather(rollout.response_mask.sum() + rollout.query_mask.sum()).sum().item()
        return {
            "episode": self.state["episode"], "step": self.state["step"],
            **self._rollout_metrics(rollout, beta, mean_kl),
            **update_stats, "lr": lr,
            "time/rollout_s": t_rollout, "time/update_s": t_update, "tokens_per_s": tokens / (time.time() - t0),
        }

    def make_rollout(self) -> Rollout:
        """Sample this step's episodes and compute everything the update needs: steps 1-5 of the PPO iteration."""
        cfg, device = self.config, self.accelerator.device
        # 1. Queries, left-padded.
        query_lists, queries_text = self.query_order.batch(self.state["step"], self.global_batch,
                                                           self.accelerator.process_index, cfg.batch_size)
        query_ids, query_mask = (t.to(device) for t in pad_left(query_lists, self.tokenizer.pad_token_id))
        # 2. Responses with log-probs of policy and reference (logits / temperature), values and entropy.
        responses, response_mask, logprobs, ref_logprobs, values, entropy = self._generate(query_ids, query_mask)
        # 3. Score the decoded text (reward models use their own tokenizers).
        raw_scores, scores, responses_text, truncated = self._score(list(queries_text), responses, response_mask)
        # 4. Per-token reward: -beta * KL_t everywhere, plus the score on the last real response token.
        kl = kl_per_token(logprobs, ref_logprobs, cfg.kl_estimator) * response_mask
        rewards = -self.kl_ctl.value * kl
        last = response_mask.sum(1).long() - 1
        rewards[torch.arange(len(last), device=device), last] += scores
        # 5. GAE advantages and returns; advantages whitened over the batch.
        advantages, returns = compute_gae(rewards, values, response_mask.float(), cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = masked_whiten(advantages, response_mask.float())
        bad = nonfinite(scores=scores, kl=kl, values=values, advantages=advantages, returns=returns)
        if self.accelerator.gather(torch.tensor([float(len(bad))], device=device)).sum() > 0:  # all processes stop
            raise self._diverged(f"the {', '.join(bad) or 'rollout of another process'}",
                                 f"largest absolute score {raw_scores.abs().max().item():.3g}")
        return Rollout(query_ids=query_ids, query_mask=query_mask, responses=responses, response_mask=response_mask,
                       logprobs=logprobs, ref_logprobs=ref_logprobs, values=values, entropy=entropy, scores=scores,
                       raw_scores=raw_scores, reward_truncated=truncated, kl=kl, rewards=rewards,
                       advantages=advantages, returns=returns,
                       queries_text=list(queries_text), responses_text=responses_text)

    def _response_length(self) -> int:
        cfg = self.config
        if cfg.min_response_length is None:
            return cfg.response_length
        return random.Random(cfg.seed * 7919 + self.state["step"]).randint(cfg.min_response_length, cfg.response_length)

    def _generate(self, query_ids: torch.Tensor, query_mask: torch.Tensor):
        """Sample responses (B, T) with their mask, and the per-token policy log-probs, reference log-probs, values
        and entropies (each (B, T), 0 on masked positions), as ordinary tensors the update's autograd may save."""
        cfg, unwrap = self.config, self.accelerator.unwrap_model
        policy, value_model = unwrap(self.policy), unwrap(self.value_model)
        # Under inference_mode (no_grad if sharded: FSDP2 reuses its buffers) and the run's autocast. The logits the
        # tokens were sampled from (/ temperature, before top-k/top-p) give the policy's log-probs: no second policy
        # pass over the rollout (TRL's PPO reuses its generation logits likewise), except under mixed precision.
        with torch.no_grad() if self.sharded else torch.inference_mode(), self.accelerator.autocast():
            responses, response_mask, logits = sample(
                policy, query_ids, query_mask, max_new_tokens=self._response_length(), temperature=cfg.temperature,
                top_k=cfg.top_k, top_p=cfg.top_p, eos_token_id=self.tokenizer.eos_token_id if cfg.stop_at_eos else None,
                pad_token_id=self.tokenizer.pad_token_id, return_logits=True, sync_processes=self.sharded)
            if self.recompute_logprobs:  # the update's own forward pass, so the first ratio is 1 up to its rounding
                logits = forward_response(policy, query_ids, query_mask, responses, response_mask, cfg.temperature)
            logprobs = logprobs_from_logits(logits, responses) * response_mask
            entropy = entropy_from_logits(logits) * response_mask
            del logits
            ref_logprobs = logprobs_from_logits(reference_logits(  # LoRA (no ref_policy): the policy, adapter off
                policy, self.ref_policy, query_ids, query_mask, responses, response_mask, cfg.temperature),
                responses) * response_mask
            values = logits_and_values(policy, value_model, query_ids, query_mask, responses, response_mask,
                                       with_logits=False)[1].float() * response_mask
        # Ordinary copies for the update: its autograd graph may not save inference tensors.
        return tuple(t.clone() for t in (responses, response_mask, logprobs, ref_logprobs, values, entropy))

    def _score(self, queries_text: list[str], responses: torch.Tensor, response_mask: torch.Tensor):
        """(raw scores (B,), shaped scores (B,), decoded responses, share of texts a reward model truncated ()): the
        reward function on the decoded text, then the missing-EOS penalty, clipping and running normalisation the
        config asks for."""
        cfg, pad_id = self.config, self.tokenizer.pad_token_id
        responses_text = self.tokenizer.batch_decode(responses * response_mask + pad_id * (1 - response_mask),
                                                     skip_special_tokens=True)
        # The reward function's output is the user's to fix: UserInputError, one line, no traceback.
        raw = check_scores(self.reward_fn(queries_text, responses_text), len(responses_text), self.reward_fn)
        raw_scores = torch.tensor(raw, dtype=torch.float32, device=responses.device)
        scores = raw_scores.clone()
        if cfg.missing_eos_penalty is not None:
            has_eos = (responses == self.tokenizer.eos_token_id).logical_and(response_mask.bool()).any(1)
            scores = torch.where(has_eos, scores, scores - cfg.missing_eos_penalty)
        if cfg.reward_clip is not None:
            scores = scores.clamp(-cfg.reward_clip, cfg.reward_clip)
        if cfg.normalize_reward:
            self.reward_stats.update(self.accelerator.gather(scores))
            scores = (scores - self.reward_stats.mean) / self.reward_stats.std
        cut = truncated_count(self.reward_fn)
        truncated = torch.tensor(0.0 if cut is None else cut / len(responses_text), device=responses.device)
        return raw_scores, scores, responses_text, truncated

    def update(self, rollout: Rollout) -> dict[str, float]:
        """num_ppo_epochs passes of minibatch updates on the clipped policy and value losses; returns loss metrics.

        Each minibatch is one optimizer step. Its micro-batches (`gradient_accumulation_steps`) weigh every token by
        1 / (real response tokens of the whole minibatch), so the accumulated gradient is the one big minibatch's
        for any response lengths; only the last micro-batch all-reduces under DDP (`no_sync` before it). Gradients
        are clipped per network (policy and value model each to `max_grad_norm`), so the value model's gradient
        never shrinks the policy's step; the pre-clip norms are logged."""
        cfg = self.config
        names = ("approxkl", "clipfrac", "policy_loss", "value_loss", "value_clipfrac", "ratio", "entropy",
                 "policy_grad_norm", "value_grad_norm")
        stats: dict[str, list[torch.Tensor]] = {k: [] for k in names}
        gen = torch.Generator().manual_seed(cfg.seed * 104729 + self.state["step"])
        for _epoch in range(cfg.num_ppo_epochs):
            perm = torch.randperm(cfg.batch_size, generator=gen)
            for mb_start in range(0, cfg.batch_size, self.mini_batch_size):
                mb_idx = perm[mb_start : mb_start + self.mini_batch_size].to(rollout.responses.device)
                mb_tokens = rollout.response_mask[mb_idx].sum().clamp(min=1)
                for micro_start in range(0, self.mini_batch_size, self.micro_batch_size):
                    idx = mb_idx[micro_start : micro_start + self.micro_batch_size]
                    last = micro_start + self.micro_batch_size >= self.mini_batch_size
                    with contextlib.ExitStack() as no_sync:  # all-reduce once per minibatch, not per micro-batch
                        if not last:
                            no_sync.enter_context(sharding.no_sync(self.accelerator, self.policy))
                            no_sync.enter_context(sharding.no_sync(self.accelerator, self.value_model))
                        weight = rollout.response_mask[idx].sum() / mb_tokens  # token mean -> share of minibatch
                        self.accelerator.backward(self._loss(rollout, idx, stats) * weight)
                self._clip_and_step(*self.params, stats, rollout)
        s = {k: self._gathered_mean(torch.stack(v)) for k, v in stats.items() if v}
        ratios = self.accelerator.gather(torch.stack(stats["ratio"]).reshape(-1))
        return {
            "policy/approxkl_avg": s["approxkl"], "policy/clipfrac_avg": s["clipfrac"],
            "loss/policy_avg": s["policy_loss"], "loss/value_avg": s["value_loss"],
            "val/clipfrac_avg": s["value_clipfrac"], "val/ratio": s["ratio"], "policy/ratio": s["ratio"],
            "val/ratio_var": ratios.var().item() if len(ratios) > 1 else 0.0, "policy/entropy_avg": s["entropy"],
            "policy/grad_norm": s["policy_grad_norm"], "val/grad_norm": s["value_grad_norm"],
            # The first minibatch of the first epoch, as a correctness probe (ratio must be exactly 1 there).
            "policy/approxkl_first_mb": stats["approxkl"][0].item(),
            "policy/clipfrac_first_mb": stats["clipfrac"][0].item(), "val/ratio_first_mb": stats["ratio"][0].item(),
        }

    def _clip_and_step(self, policy_params, value_params, stats: dict[str, list], rollout: Rollout) -> None:
        """Clip the policy's and the value model's gradients each to `max_grad_norm` (their pre-clip norms go to
        `stats`), refuse NaN or infinite gradients, and take one optimizer step."""
        for params, key in ((policy_params, "policy_grad_norm"), (value_params, "value_grad_norm")):
            norm = sharding.clip_grad_norm_(self.accelerator, params, self.config.max_grad_norm) if params else None
            if norm is None:
                continue
            if not torch.isfinite(norm):  # never step on NaN / inf gradients
                raise self._diverged(f"the {key.split('_')[0]} gradient norm",
                                     f"value loss {stats['value_loss'][-1].item():.3g}, largest absolute return "
                                     f"{rollout.returns.abs().max().item():.3g}")
            stats[key].append(norm.detach().float())
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _loss(self, rollout: Rollout, idx: torch.Tensor, stats: dict[str, list]) -> torch.Tensor:
        """Clipped policy loss + vf_coef x clipped value loss (- ent_coef x entropy), each a mean over the real
        response tokens of the episodes `idx`; appends the micro-batch's statistics to `stats`."""
        cfg = self.config
        q_ids, q_mask, resp, resp_mask = (rollout.query_ids[idx], rollout.query_mask[idx], rollout.responses[idx],
                                          rollout.response_mask[idx])
        mask = resp_mask.float()
        with self.accelerator.autocast():  # fp32 logits and values come out (logprobs_from_logits casts)
            new_logits, new_values = logits_and_values(self.policy, self.value_model, q_ids, q_mask, resp, resp_mask,
                                                       cfg.temperature)
        new_logprobs = logprobs_from_logits(new_logits, resp)
        pg_loss, pg_stats = policy_loss(new_logprobs, rollout.logprobs[idx], rollout.advantages[idx], mask,
                                        cfg.cliprange)
        vf_loss, vf_clipfrac = value_loss(new_values, rollout.values[idx], rollout.returns[idx], mask,
                                          cfg.cliprange_value)
        loss = pg_loss + cfg.vf_coef * vf_loss
        if cfg.ent_coef:
            entropy = masked_mean(entropy_from_logits(new_logits), mask)
            loss = loss - cfg.ent_coef * entropy
        else:
            with torch.no_grad():  # the metric only, outside the graph
                entropy = masked_mean(entropy_from_logits(new_logits.detach()), mask)
        minibatch_stats = {**pg_stats, "policy_loss": pg_loss.detach(), "value_loss": vf_loss.detach(),
                           "value_clipfrac": vf_clipfrac, "entropy": entropy.detach()}
        for k, v in minibatch_stats.items():
            stats[k].append(v)
        return loss

    def _diverged(self, what: str, detail: str) -> TrainingDivergedError:
        return TrainingDivergedError.at_step(self.state["step"] + 1, what, detail,
                                             os.path.join(self.config.output_dir, runs.CHECKPOINTS))

    def _rollout_metrics(self, r: Rollout, beta: float, mean_kl: float) -> dict[str, float]:
        """The rollout's TRL-named metrics, averaged over all processes."""
        return {
            "objective/kl": mean_kl,
            "objective/entropy": self._gathered_mean(r.entropy.sum(1)),
            "objective/non_score_reward": self._gathered_mean((-beta * r.kl).sum(1)),
            "objective/rlhf_reward": self._gathered_mean(r.raw_scores - beta * r.kl.sum(1)),
            "objective/scores": self._gathered_mean(r.raw_scores),
            "objective/scores_std": self.accelerator.gather(r.raw_scores).std().item() if self.global_batch > 1 else 0.,
            "objective/kl_coef": beta,
            "val/mean": self._gathered_mean(masked_mean(r.values, r.response_mask.float(), 1)),
            "val/num_eos_tokens": self.accelerator.gather(((r.responses == self.tokenizer.eos_token_id)
                                                           & r.response_mask.bool()).sum()).sum().item(),
            "objective/reward_truncated_frac": self._gathered_mean(r.reward_truncated),
            "response_length_mean": self._gathered_mean(r.response_mask.sum(1).float()),
        }

    def _gathered_mean(self, x: torch.Tensor) -> float:
        """Mean over all elements on all processes."""
        return self.accelerator.gather(x.detach().float().reshape(-1)).mean().item()

    # ---- the loop ----------------------------------------------------------------------------------------
    def train(self) -> dict[str, float]:
        """Run PPO until `total_episodes`, with progress bar, metrics.jsonl, samples and checkpoints.

        Returns the last step's metrics. The final aligned policy goes to `output_dir` (see `save_model`).
        """
        cfg, main = self.config, self.accelerator.is_main_process
        if main:  # a new run with --overwrite_output_dir clears the old one; a crash's half-written checkpoint goes
            checkpoints.prepare_run_dir(cfg.output_dir, bool(self.resume_path), cfg.overwrite_output_dir)
        self.accelerator.wait_for_everyone()
        if self.resume_path:
            self.load_checkpoint(self.resume_path)
        logger = runs.RunLogger(cfg.output_dir) if main else None
        tracking.start(self.accelerator, cfg)
        if main and not os.path.exists(os.path.join(cfg.output_dir, runs.RUN_INFO_FILE)):  # a finished run's: kept
            save_config(cfg, os.path.join(cfg.output_dir, runs.TRAINING_CONFIG_FILE))  # until the export replaces it
        bar = tqdm(total=self.num_steps * self.global_batch, initial=self.state["episode"], unit="episode", desc="PPO",
                   disable=not (cfg.progress_bar and main))
        # A resumed run that had already finished logs no step: its final metrics are the last ones logged.
        logged = runs.read_jsonl(os.path.join(cfg.output_dir, runs.METRICS_FILE)) if self.resume_path else []
        metrics: dict[str, float] = logged[-1] if logged else {}
        while self.state["step"] < self.num_steps:
            t0 = time.time()
            metrics = self.step()
            self.state["wall_time_s"] += time.time() - t0
            metrics["time/total_s"] = self.state["wall_time_s"]
            bar.update(self.global_batch)
            bar.set_postfix(score=f"{metrics['objective/scores']:.2f}", kl=f"{metrics['objective/kl']:.2f}")
            step = self.state["step"]
            if main and (step % cfg.logging_steps == 0 or step == self.num_steps):
                logger.log(metrics)
                self.accelerator.log(metrics, step=int(metrics["episode"]))
            if main and cfg.sample_steps and (step % cfg.sample_steps == 0 or step == 1):
                r = self.last_rollout
                logger.log_samples(step, r.queries_text, r.responses_text, r.raw_scores.tolist(),
                                   cfg.num_samples_logged, show=bar.write)
            if cfg.save_steps and step % cfg.save_steps == 0 and step < self.num_steps:
                self.save_checkpoint()
        bar.close()
        self.save_checkpoint()
        self.save_model(cfg.output_dir, metrics)
        tracking.finish(self.accelerator)
        return metrics

    # ---- checkpoints and export (the files themselves: checkpoints.py, runs.py) -------------------------------
    def save_checkpoint(self) -> str:
        """Write `output_dir/checkpoints/checkpoint-<step>` atomically and keep the last `save_total_limit`; it holds
        everything `load_checkpoint` needs to continue exactly. Returns its path (on the main process)."""
        return checkpoints.save_trainer(self)

    def load_checkpoint(self, path: str) -> None:
        """Restore a checkpoint of `save_checkpoint`, so training continues as if never interrupted (UserInputError
        when it was written by another number of processes); this run's optimizer settings apply from here on."""
        checkpoints.load_trainer(self, path)

    def save_model(self, output_dir: str, final_metrics: dict | None = None) -> None:
        """Save the aligned policy (merged, if LoRA) loadable with `AutoModelForCausalLM.from_pretrained` (an
        encoder-decoder policy: `AutoModelForSeq2SeqLM`), its tokenizer and sampling settings, the value model
        (`value_model/`), training_config.yaml and `run_info.json`, atomically (`runs.export_run`). Every process
        calls it: under --fsdp the models are gathered from every process's shards onto the main one."""
        policy, value_model = (sharding.full_model(self.accelerator, m) for m in (self.policy, self.value_model))
        if self.accelerator.is_main_process:
            runs.export_run(output_dir, self.config, policy, self.tokenizer, value_model, self.reward_fn, self.state,
                            self.accelerator.num_processes, final_metrics)
