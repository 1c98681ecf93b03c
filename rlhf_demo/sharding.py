"""Sharded training with PyTorch FSDP2 (`--fsdp`): the policy, the value model and the reference split across the
processes of a `torchrun` / `accelerate launch`, each process holding 1/N of their parameters, gradients and AdamW
state (Zhao et al. 2023, "PyTorch FSDP"; torch docs, `torch.distributed.fsdp.fully_shard`).

What is sharded:
    policy, value model   `fully_shard` on every transformer block (the model's `_no_split_modules`, the blocks
                          transformers and accelerate wrap), then on the model: a forward all-gathers one block at a
                          time and frees it after; the backward reduce-scatters its gradients. Parameters, gradients
                          and the optimizer's state are DTensors, one shard per process.
    reference             sharded the same way (forward only): it is as large as the policy.
    reward model          unsharded, a copy per process: a reward is any Python callable on text, and the shipped
                          classifiers are small next to the policy.

PyTorch's API is used directly rather than accelerate's FSDP plugin, which does not engage on the CPU (with
`cpu=True` it falls back to DDP), so the same code runs under gloo on the CPU (CI) and NCCL on GPUs. Every forward of
a sharded model is a collective: every process must run the same number of them, which the sampler keeps when
responses stop at EOS (`sampling.sample(sync_processes=True)`).

Checkpoints and the export hold ordinary, unsharded files: the full state dicts are gathered to the main process
(`full_model`, `optimizer_state_dict`), so a sharded run's folder loads with `from_pretrained` like any other and a
resume loads every process's shard back from them (`load_model_state_dict`, `load_optimizer_state_dict`).
"""

from __future__ import annotations

import contextlib

import torch

from .errors import UserInputError


def is_sharded(model) -> bool:
    """Whether `model` was sharded by `shard_model` (an FSDP2 module)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def shard_models(accelerator, fsdp: bool, policy, value_model, ref_policy, value_on_policy: bool):
    """(policy, value model, reference) for this launch: as they are (the reference, None with LoRA, moved to the
    accelerator's device; accelerate's `prepare` moves the other two), or with `fsdp` each sharded (`shard_model`).

    Raises UserInputError, naming the fix, for what a launch of several processes does not support: the value head
    on the policy's trunk (its trunk pass bypasses the gradient averaging); and for what `--fsdp` does not: a single
    process (nothing to shard across), fp16 (its loss scaler does not take sharded gradients; bf16 needs none) and an
    encoder-decoder policy (its sampler calls the encoder alone, outside the model's forward that gathers its
    parameters). LoRA with FSDP is refused by the config's checks (`config_checks`)."""
    if value_on_policy and accelerator.num_processes > 1:
        raise UserInputError("value_head_on_policy runs on one process; launch without accelerate's processes or "
                             "drop --value_head_on_policy.")
    if not fsdp:
        return policy, value_model, None if ref_policy is None else ref_policy.to(accelerator.device)
    if accelerator.num_processes < 2:
        raise UserInputError("--fsdp shards the models across processes, and this launch has one: start it with "
                             "`torchrun --nproc_per_node N -m rlhf_demo.cli train ...` (N >= 2), or drop --fsdp.")
    if accelerator.mixed_precision == "fp16":
        raise UserInputError("--fsdp trains in fp32 or bf16: use --mixed_precision bf16 (or auto, or no) with it.")
    if getattr(policy.config, "is_encoder_decoder", False):
        raise UserInputError("--fsdp shards causal LMs only; train an encoder-decoder policy without --fsdp.")
    return tuple(shard_model(m) if m is not None else None for m in (policy, value_model, ref_policy))


def shard_model(model):
    """Shard `model` in place across the processes of the default process group (FSDP2): each transformer block
    (`model._no_split_modules`), then the model itself (its embeddings, final norm and heads). Returns the model,
    whose class is now also an `FSDPModule`. Parameters stay in their dtype (fp32 master weights); mixed precision
    is the trainer's autocast."""
    from torch.distributed.fsdp import fully_shard

    blocks = set(getattr(model, "_no_split_modules", None) or ())
    for module in model.modules():
        if module is not model and type(module).__name__ in blocks:
            fully_shard(module)
    fully_shard(model)
    return model


def prepare(accelerator, policy, value_model, optimizer, sharded: bool):
    """(policy, value model, optimizer) ready to train: accelerate's `prepare` (DDP across processes) or, for sharded
    models, as they are (FSDP2 synchronises their gradients itself)."""
    if sharded:
        return policy, value_model, optimizer
    return accelerator.prepare(policy, value_model, optimizer)


def no_sync(accelerator, model):
    """A context in which `model`'s backward accumulates gradients without synchronising them across processes
    (all but the last micro-batch of a minibatch): accelerate's `no_sync` (DDP), or FSDP2's
    `set_requires_gradient_sync(False)` for a sharded model."""
    if not is_sharded(model):
        return accelerator.no_sync(model)

    @contextlib.contextmanager
    def unsynced():
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)

    return unsynced()


def clip_grad_norm_(accelerator, params: list, max_norm: float) -> torch.Tensor:
    """Clip the gradients of `params` to a total L2 norm of `max_norm` and return the norm before clipping, a plain
    0-d tensor on every process: accelerate's `clip_grad_norm_`, or torch's on sharded gradients (DTensors: the norm
    of the full gradient, reduced across the shards)."""
    from torch.distributed.tensor import DTensor

    if not any(isinstance(p, DTensor) for p in params):
        return accelerator.clip_grad_norm_(params, max_norm)
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return norm.full_tensor() if isinstance(norm, DTensor) else norm


def _full_options(**kwargs):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


def full_model(accelerator, model):
    """The unsharded model, for `save_pretrained` on the main process: the model itself (unwrapped from DDP) when it
    is not sharded; else a copy of its class built on the CPU and loaded with the full state dict gathered from every
    shard (a collective: every process calls it), and None off the main process."""
    if not is_sharded(model):
        return accelerator.unwrap_model(model)
    import copy

    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    from torch.distributed.fsdp import FSDPModule

    state = get_model_state_dict(model, options=_full_options(cpu_offload=True))  # only rank 0 receives it
    if not accelerator.is_main_process:
        return None
    cls = next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule))  # the class before fully_shard
    plain = cls(model.config)  # the same config object (a copy would be validated anew, and a value model's fails)
    plain.load_state_dict(state)
    if getattr(model, "generation_config", None) is not None:
        plain.generation_config = copy.deepcopy(model.generation_config)
    return plain.eval()


def load_model_state_dict(model, state: dict, strict: bool = False) -> None:
    """Load the full (unsharded) `state` into `model`: `load_state_dict`, or, for a sharded model, each process
    keeping its own shard of every tensor (every process calls it with the same `state`)."""
    if not is_sharded(model):
        model.load_state_dict(state, strict=strict)
        return
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(model, state, options=_full_options(strict=strict))


def optimizer_state_dict(optimizer, models) -> dict:
    """The optimizer's state dict for a checkpoint: `optimizer.state_dict()`, or, when `models` (the modules whose
    parameters it steps, in the order they were given to it) are sharded, the full state gathered on the main
    process, keyed by parameter name (`0.transformer...` for the first model): a collective, {} off the main
    process."""
    if not any(is_sharded(m) for m in models):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(torch.nn.ModuleList(models), optimizer, options=_full_options(cpu_offload=True))


def load_optimizer_state_dict(optimizer, models, state: dict) -> None:
    """Load a state of `optimizer_state_dict` into `optimizer` (every process calls it with the same `state`; each
    keeps the shards of its own parameters when `models` are sharded)."""
    if not any(is_sharded(m) for m in models):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(torch.nn.ModuleList(models), optimizer, state, options=_full_options())


def local_share(model) -> float:
    """The share of `model`'s parameters held by this process: about 1/N for a model sharded across N processes,
    1.0 for an unsharded one. Read it before a forward pass or after a backward one: in between, FSDP2 registers the
    gathered parameters of a model's outermost unit (its embeddings and heads) in place of their shards."""
    from torch.distributed.tensor import DTensor

    local = sum((p.to_local() if isinstance(p, DTensor) else p).numel() for p in model.parameters())
    return local / sum(p.numel() for p in model.parameters())
