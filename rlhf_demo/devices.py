"""Where PPO runs: the device, the launch (one process, or data parallel under `torchrun` / `accelerate launch`) and
mixed precision (`--mixed_precision`): which one a device gets, and what stays in fp32.

The models' matrix products run under autocast (accelerate's `mixed_precision`, `torch.autocast`); the weights and
AdamW's state stay fp32 (master weights), and log-softmax, entropy, KL, GAE and the losses are computed on fp32
logits and values (`models.logprobs_from_logits`, `ppo_math.entropy_from_logits` cast first). bf16 pays where the
hardware multiplies bf16 natively: a CUDA GPU with bf16 support (Ampere and newer), or an x86 CPU with AMX (Intel
Sapphire Rapids and newer); on an AVX2-only CPU it is emulated and slower than fp32, so `auto` keeps fp32 there.
fp16 needs a CUDA GPU (loss scaling is accelerate's).

Under mixed precision the sampler's logits (one token at a time, KV cache) and the update's logits (one full
forward pass) round differently, so the ratio of the first minibatch would move off 1 by rounding alone. The
rollout's log-probs are therefore recomputed with the update's own forward pass (`recompute_logprobs`), as OpenRLHF
and verl do; measured in `benchmarks/mixed_precision.py` (results in `benchmarks/results/`).

Sharding is rlhf-demo's own `--fsdp` (PyTorch FSDP2, sharding.py) under a plain data-parallel launch. An
`accelerate launch` configured for accelerate's FSDP plugin or for DeepSpeed ZeRO is refused in one line
(`accelerator_kwargs`) rather than half-working: the trainer prepares its models itself.
"""

from __future__ import annotations

import os

import torch

from .errors import UserInputError

CHOICES = ("no", "bf16", "fp16", "auto")  # --mixed_precision
RECOMPUTE_CHOICES = ("auto", "true", "false")  # --recompute_logprobs


def check_choices(mixed_precision: str, recompute_logprobs: str) -> None:
    """The one check of `--mixed_precision` and `--recompute_logprobs` (PPOConfig runs it): UserInputError naming the
    option and its choices. The functions below take checked choices."""
    if mixed_precision not in CHOICES:
        raise UserInputError(f"mixed_precision must be one of {', '.join(CHOICES)}, got {mixed_precision!r}.")
    if recompute_logprobs not in RECOMPUTE_CHOICES:
        raise UserInputError(f"recompute_logprobs must be auto, true or false, got {recompute_logprobs!r}.")


def has_fast_bf16(device_type: str) -> bool:
    """Whether `device_type` ("cuda" or "cpu") multiplies bf16 natively: a CUDA GPU that reports bf16 support, or a
    CPU with AMX tiles (torch's CPU capability probe; False where torch cannot tell)."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(probe and probe())
    return False


def resolve_mixed_precision(choice: str, device_type: str) -> str:
    """accelerate's `mixed_precision` for `--mixed_precision choice` on `device_type`: "no", "bf16" or "fp16"; `auto`
    is bf16 where `has_fast_bf16`, else no. Raises UserInputError for fp16 off CUDA (the CPU has no fp16 autocast
    with loss scaling)."""
    if choice == "auto":
        return "bf16" if has_fast_bf16(device_type) else "no"
    if choice == "fp16" and device_type != "cuda":
        raise UserInputError("--mixed_precision fp16 needs a CUDA GPU; on this machine use bf16 (or auto, or no).")
    return choice


SHARDED_LAUNCH = {"ACCELERATE_USE_FSDP": "FSDP", "ACCELERATE_USE_DEEPSPEED": "DeepSpeed"}  # what accelerate sets


def accelerator_kwargs(choice: str) -> dict:
    """`Accelerator` keyword arguments for `--mixed_precision choice` on this machine: the CPU when no CUDA GPU is
    present, and the resolved `mixed_precision` (`resolve_mixed_precision`). Raises UserInputError for a launch
    whose accelerate config asks for FSDP or DeepSpeed: PPO shards with its own --fsdp instead."""
    for variable, name in SHARDED_LAUNCH.items():
        if os.environ.get(variable, "").lower() in ("1", "true", "yes"):
            raise UserInputError(f"This launch asks for accelerate's {name} ({variable}), which rlhf-demo's PPO does "
                                 "not use; launch data parallel (`torchrun --nproc_per_node N` or `accelerate launch "
                                 "--multi_gpu`) and add --fsdp to shard the models with FSDP2 (docs/launch.md).")
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    return {"cpu": device_type == "cpu", "mixed_precision": resolve_mixed_precision(choice, device_type)}


def recompute_logprobs(choice: str, mixed_precision: str) -> bool:
    """Whether the rollout's log-probs come from a full forward pass of the policy (`--recompute_logprobs choice`:
    true, false, or auto: only under mixed precision, `mixed_precision` being the resolved one) instead of the
    sampler's logits, which in fp32 agree with the update's to ~1e-6 and cost no second pass."""
    return choice == "true" or (choice == "auto" and mixed_precision != "no")
