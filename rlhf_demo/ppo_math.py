"""Pure PPO math: masked statistics, KL estimators, GAE, the clipped losses, entropy and the KL controllers.

Every function takes and returns tensors with the shapes in its docstring and has no state; each is tested against
a naive implementation or an invariant in tests/test_ppo_math.py. Sources: Schulman et al. 2017 (PPO), Schulman et al.
2016 (GAE), Ziegler et al. 2019 (adaptive KL), Schulman 2020 (KL estimators), Huang et al. 2022/2024 (details).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    """Mean of `x` over entries where `mask` is 1. x, mask: same shape."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of `x` over masked entries (Bessel-corrected when `unbiased`)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        if n < 2:
            return var
        var = var * n / (n - 1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / sqrt(var + 1e-8) with mean and variance over masked entries; masked-out entries become 0."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) on tokens sampled from pi, in nats. (B, T) -> (B, T).

    k1 = log pi - log pi_ref (unbiased, can be negative per token);
    k3 = (r - 1) - log r with r = pi_ref / pi (unbiased, always >= 0) -- Schulman 2020, "Approximating KL divergence".
    """
    logr = ref_logprobs - logprobs
    if estimator == "k1":
        return -logr
    if estimator == "k3":
        return torch.expm1(logr) - logr
    raise ValueError(f"Unknown KL estimator {estimator!r}; use k1 or k3.")


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16), masked.

        delta_t = r_t + gamma * V_{t+1} - V_t          (V_T = 0 past the last real token)
        A_t     = delta_t + gamma * lam * A_{t+1}
        R_t     = A_t + V_t                            (the value target)

    Args: rewards, values, mask: (B, T); mask is 1 on real response tokens. Rewards and values at masked
    positions are treated as 0, so an episode ends at its last real token.
    Returns: advantages (B, T), returns (B, T); both 0 where mask is 0.
    """
    rewards, values = rewards * mask, values * mask
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    lastgaelam = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(values[:, 0])
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        lastgaelam = delta + gamma * lam * lastgaelam
        advantages[:, t] = lastgaelam
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def policy_loss(new_logprobs, old_logprobs, advantages, mask, cliprange: float):
    """Clipped surrogate loss (Schulman et al. 2017, eq. 7), negated for minimisation. Inputs (B, T).

    Returns (loss, stats) with stats: approxkl = mean 0.5 (log ratio)^2, clipfrac, mean ratio.
    """
    logratio = new_logprobs - old_logprobs
    ratio = torch.exp(logratio)
    pg_losses = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(pg_losses, pg_losses2), mask)
    with torch.no_grad():
        stats = {
            "approxkl": 0.5 * masked_mean(logratio**2, mask),
            "clipfrac": masked_mean((pg_losses2 > pg_losses).float(), mask),
            "ratio": masked_mean(ratio, mask),
        }
    return loss, stats


def value_loss(new_values, old_values, returns, mask, cliprange_value: float):
    """Clipped value loss, 0.5 max((V - R)^2, (V_clip - R)^2) with V_clip = V_old + clip(V - V_old, +-eps).

    As in OpenAI's baselines PPO2 and TRL (Huang et al. 2022, detail 9). Inputs (B, T). Returns (loss, clipfrac).
    """
    clipped = old_values + torch.clamp(new_values - old_values, -cliprange_value, cliprange_value)
    losses1 = (new_values - returns) ** 2
    losses2 = (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(losses1, losses2), mask)
    return loss, masked_mean((losses2 > losses1).float(), mask).detach()


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) in nats: (B, T, V) -> (B, T)."""
    logp = logits.float().log_softmax(-1)  # fp32 under mixed precision too
    return -(logp.exp() * logp).sum(-1)


def nonfinite(**tensors: torch.Tensor) -> list[str]:
    """The names of the given tensors (any shapes) that hold a NaN or an infinity, in the order given."""
    return [name for name, x in tensors.items() if not bool(torch.isfinite(x).all())]


class AdaptiveKLController:
    """beta <- beta * (1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon)  (Ziegler et al. 2019, eq. 2).

    KL is the mean per-response KL in nats; n the episodes in the step; horizon in episodes.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_episodes: int) -> None:
        error = float(np.clip(current_kl / self.target - 1, -0.2, 0.2))
        self.value *= 1 + error * n_episodes / self.horizon


class FixedKLController:
    """A constant beta."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_episodes: int) -> None:
        pass


class RunningMoments:
    """Running mean and standard deviation of scores (Chan et al. parallel algorithm), for reward normalisation."""

    def __init__(self):
        self.mean, self.var, self.count = 0.0, 1.0, 1e-24

    def update(self, xs: torch.Tensor) -> None:
        batch_mean, batch_var, n = xs.mean().item(), xs.var(unbiased=False).item(), xs.numel()
        delta, total = batch_mean - self.mean, self.count + n
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / total, total

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 1e-12))
