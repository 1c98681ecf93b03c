"""The PPO building blocks against naive implementations written from the formulas."""

import math

import numpy as np
import pytest
import torch

from rlhf_demo.ppo_math import (AdaptiveKLController, RunningMoments, compute_gae, entropy_from_logits, kl_per_token,
                                masked_mean, masked_var, masked_whiten, policy_loss, value_loss)


def random_batch(B=5, T=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    rewards, values = torch.randn(B, T, generator=g), torch.randn(B, T, generator=g)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None] < lengths[:, None]).float()
    return rewards, values, mask, lengths


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 1.0), (0.99, 0.0)])
def test_gae_matches_naive_loop(gamma, lam):
    rewards, values, mask, lengths = random_batch()
    adv, ret = compute_gae(rewards, values, mask, gamma, lam)
    for b, n in enumerate(lengths.tolist()):
        for t in range(n):
            # A_t = sum_j (gamma lam)^j delta_{t+j}, episode ending at its last real token
            a = 0.0
            for j in range(n - t):
                k = t + j
                v_next = values[b, k + 1].item() if k + 1 < n else 0.0
                delta = rewards[b, k].item() + gamma * v_next - values[b, k].item()
                a += (gamma * lam) ** j * delta
            assert adv[b, t].item() == pytest.approx(a, abs=1e-5)
            assert ret[b, t].item() == pytest.approx(a + values[b, t].item(), abs=1e-5)
        assert torch.all(adv[b, n:] == 0) and torch.all(ret[b, n:] == 0)


def test_masked_stats_match_torch_on_the_unmasked_slice():
    rewards, _, mask, _ = random_batch(seed=1)
    real = rewards[mask.bool()]
    assert masked_mean(rewards, mask).item() == pytest.approx(real.mean().item(), abs=1e-6)
    assert masked_var(rewards, mask).item() == pytest.approx(real.var(unbiased=True).item(), abs=1e-5)
    w = masked_whiten(rewards, mask)
    expected = (real - real.mean()) / torch.sqrt(real.var(unbiased=True) + 1e-8)
    assert torch.allclose(w[mask.bool()], expected, atol=1e-5)
    assert torch.all(w[~mask.bool()] == 0)


def test_kl_estimators():
    g = torch.Generator().manual_seed(2)
    logp, ref = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    assert torch.allclose(kl_per_token(logp, ref, "k1"), logp - ref)
    r = torch.exp(ref - logp)
    assert torch.allclose(kl_per_token(logp, ref, "k3"), (r - 1) - torch.log(r), atol=1e-5)
    assert torch.all(kl_per_token(logp, ref, "k3") >= 0)
    for est in ("k1", "k3"):
        assert torch.all(kl_per_token(logp, logp, est) == 0)
    with pytest.raises(ValueError, match="k1 or k3"):
        kl_per_token(logp, ref, "k2")


def test_policy_loss_at_ratio_one_and_clipping():
    g = torch.Generator().manual_seed(3)
    old, adv = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    mask = torch.ones(3, 5)
    loss, stats = policy_loss(old.clone(), old, adv, mask, 0.2)
    assert stats["approxkl"].item() == 0 and stats["clipfrac"].item() == 0 and stats["ratio"].item() == 1
    assert loss.item() == pytest.approx(-adv.mean().item(), abs=1e-6)
    # Naive: per token max(-A r, -A clip(r)).
    new = old + 0.5 * torch.randn(3, 5, generator=g)
    loss, stats = policy_loss(new, old, adv, mask, 0.2)
    r = torch.exp(new - old)
    naive = torch.maximum(-adv * r, -adv * r.clamp(0.8, 1.2)).mean()
    assert loss.item() == pytest.approx(naive.item(), abs=1e-6)
    assert 0 < stats["clipfrac"].item() < 1


def test_value_loss_matches_naive():
    g = torch.Generator().manual_seed(4)
    new, old, ret = (torch.randn(2, 6, generator=g) for _ in range(3))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.float)
    loss, clipfrac = value_loss(new, old, ret, mask, 0.2)
    clipped = old + (new - old).clamp(-0.2, 0.2)
    naive = 0.5 * torch.maximum((new - ret) ** 2, (clipped - ret) ** 2)[mask.bool()].mean()
    assert loss.item() == pytest.approx(naive.item(), abs=1e-6)
    assert 0 <= clipfrac.item() <= 1


def test_entropy_of_uniform_is_log_v():
    assert torch.allclose(entropy_from_logits(torch.zeros(2, 3, 10)), torch.full((2, 3), math.log(10)))


def test_adaptive_kl_controller_follows_ziegler_eq2():
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=10000)
    ctl.update(9.0, 100)  # error clipped to +0.2
    assert ctl.value == pytest.approx(0.2 * (1 + 0.2 * 100 / 10000))
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=10000)
    ctl.update(5.4, 256)  # error -0.1
    assert ctl.value == pytest.approx(0.2 * (1 - 0.1 * 256 / 10000))


def test_running_moments_match_numpy():
    rng = np.random.default_rng(0)
    chunks = [rng.normal(3, 2, size=n) for n in (5, 17, 64)]
    m = RunningMoments()
    for c in chunks:
        m.update(torch.tensor(c, dtype=torch.float64))
    allx = np.concatenate(chunks)
    assert m.mean == pytest.approx(allx.mean(), rel=1e-6)
    assert m.std == pytest.approx(allx.std(), rel=1e-6)
