"""PPO checkpoints of a run folder: `RUN/checkpoints/checkpoint-<step>/`, written atomically and read back so a
resumed run continues exactly as if never interrupted (the folder's layout is in runs.py).

    checkpoint-<step>/
      policy/, value_model/        weights (policy/ holds the adapter only with LoRA)
      optimizer.pt, scheduler.pt   optimizer and learning-rate schedule states (under --fsdp the optimizer's full state,
                                   keyed by parameter name: sharding.optimizer_state_dict)
      trainer_state.json           step, episode, wall time, KL coefficient, reward statistics, the settings a resume
                                   must share (`RESUME_FIELDS`), the number of processes and whether they sharded
      rng_state_<rank>.pth         every process's torch, Python and numpy RNG states

Nothing is ever run from a checkpoint: weights are safetensors and every other file is read with
`torch.load(weights_only=True)`. A checkpoint is written into `.tmp-checkpoint-<step>` and renamed into place, so a
crash leaves the previous checkpoints whole (`remove_leftover_checkpoints` clears what it left).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys

import numpy as np
import torch

from .errors import MissingInputError, UserInputError, one_line
from .names import is_local_path
from .runs import (CHECKPOINTS, check_new_run_dir, check_output_dir, clear_run_dir, list_checkpoints, save_policy,
                   truncate_logs, write_json)
from .sharding import (full_model, is_sharded, load_model_state_dict, load_optimizer_state_dict,
                       optimizer_state_dict)

RESUME_FIELDS = ("model_name_or_path", "value_model_name_or_path", "value_model_num_layers", "value_head_on_policy",
                 "use_peft", "batch_size", "seed")


def prepare_run_dir(run_dir: str, resumed: bool, overwrite: bool) -> None:
    """Create the run folder; for a new run with `overwrite` (--overwrite_output_dir) delete the earlier run's files
    (`runs.clear_run_dir`); remove the half-written checkpoints a crash left, saying so on stderr."""
    os.makedirs(run_dir, exist_ok=True)
    if not resumed and overwrite:
        clear_run_dir(run_dir)
    for name in remove_leftover_checkpoints(run_dir):
        print(f"Removed {name}, a checkpoint a crash left half written.", file=sys.stderr)


def remove_leftover_checkpoints(run_dir: str) -> list[str]:
    """Delete the `.tmp-checkpoint-*` folders a crash left (a full disk, a kill mid-save): never a finished
    checkpoint, only space. Returns the names removed."""
    root = os.path.join(run_dir, CHECKPOINTS)
    names = sorted(n for n in os.listdir(root) if n.startswith(".tmp-checkpoint-")) if os.path.isdir(root) else []
    for name in names:
        shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    return names


def check_run_start(config) -> str | None:
    """Before any work of a PPO run (`config`, a PPOConfig): its --output_dir must be writable, and then either the
    checkpoint of --resume_from_checkpoint exists and was written with the same `RESUME_FIELDS` (unless
    --resume_with_changed_config), or the folder holds no other run (unless --overwrite_output_dir). Returns the
    checkpoint folder to resume from, or None for a new run. Raises UserInputError / MissingInputError naming the
    fix."""
    check_output_dir(config.output_dir)
    if not config.resume_from_checkpoint:
        check_new_run_dir(config.output_dir, config.overwrite_output_dir)
        return None
    path = resolve_checkpoint(config.output_dir, config.resume_from_checkpoint)
    check_resume_config(path, config, config.resume_with_changed_config)
    return path


def resolve_checkpoint(run_dir: str, spec: str) -> str:
    """The checkpoint folder `spec` names: `latest` (the newest under RUN/checkpoints) or a checkpoint-<step> path.

    Raises MissingInputError when there is none or `spec` is not a checkpoint folder (no trainer_state.json).
    """
    if spec == "latest":
        found = list_checkpoints(run_dir)
        if not found:
            raise MissingInputError(f"No checkpoint under {os.path.join(run_dir, CHECKPOINTS)} to resume from; "
                                    "drop --resume_from_checkpoint to start fresh.")
        return found[-1][1]
    if not os.path.isfile(os.path.join(spec, "trainer_state.json")):
        raise MissingInputError(f"{spec!r} is not a checkpoint folder (no trainer_state.json); pass a checkpoint-N "
                                "folder or `latest`.")
    return spec


def resume_config(config) -> dict:
    """The settings of a PPO config a checkpoint must share with the run resuming it (`RESUME_FIELDS`: batch size,
    seed, models), model paths made absolute; saved in trainer_state.json under `config`."""
    def norm(v):
        return os.path.abspath(os.path.expanduser(v)) if isinstance(v, str) and is_local_path(v) else v

    return {name: norm(getattr(config, name)) for name in RESUME_FIELDS}


def check_resume_config(path: str, config, allow_changes: bool = False) -> None:
    """Raise UserInputError when checkpoint `path` was written with other `RESUME_FIELDS` than `config` (naming each
    field with both values), unless `allow_changes`. A checkpoint that saved no config is not checked."""
    saved = _read_json(os.path.join(path, "trainer_state.json")).get("config") or {}
    now = resume_config(config)
    changed = [name for name in RESUME_FIELDS if name in saved and saved[name] != now[name]]
    if changed and not allow_changes:
        diffs = "; ".join(f"{name}: {saved[name]!r} in the checkpoint, {now[name]!r} now" for name in changed)
        raise UserInputError(f"Checkpoint {path!r} was written with another config ({diffs}); resume with the same "
                             "values, or pass --resume_with_changed_config true to resume anyway.")


def checkpoint_paths(run_dir: str, step: int) -> tuple[str, str]:
    """(temporary, final) folders of the checkpoint of `step`: write into the first, then `commit_checkpoint`."""
    root = os.path.join(run_dir, CHECKPOINTS)
    return os.path.join(root, f".tmp-checkpoint-{step}"), os.path.join(root, f"checkpoint-{step}")


def begin_checkpoint(run_dir: str, step: int) -> str:
    """Create the empty temporary folder of the checkpoint of `step` (removing a leftover one) and return it."""
    tmp, _ = checkpoint_paths(run_dir, step)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    return tmp


def commit_checkpoint(run_dir: str, step: int, keep: int) -> str:
    """Rename the temporary checkpoint of `step` into place and delete all but the last `keep`; return its path."""
    tmp, final = checkpoint_paths(run_dir, step)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    done = list_checkpoints(run_dir)
    for _, old in done[: max(0, len(done) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_checkpoint(run_dir: str, keep: int, accelerator, policy, value_model, tokenizer, optimizer_state: dict,
                    scheduler, state: dict) -> str:
    """Write `RUN/checkpoints/checkpoint-<state["step"]>` atomically (a temporary folder, then a rename) and keep the
    last `keep`. Every process saves its RNG states; the main process the unwrapped `policy` (its adapter only, for a
    PEFT model) and `value_model` (unsharded: `sharding.full_model`), the tokenizer, `optimizer_state` (the
    optimizer's state dict, `sharding.optimizer_state_dict`), the scheduler's state and `state` (JSON-serialisable:
    step, episode, wall time, KL coefficient, reward statistics, whether the run is sharded) as trainer_state.json.
    Returns the path ("" off the main process)."""
    acc, step = accelerator, state["step"]
    acc.wait_for_everyone()
    if acc.is_main_process:
        begin_checkpoint(run_dir, step)
    acc.wait_for_everyone()
    tmp, _ = checkpoint_paths(run_dir, step)
    rng = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    _save_state(rng, os.path.join(tmp, f"rng_state_{acc.process_index}.pth"))
    if acc.is_main_process:
        save_policy(policy, os.path.join(tmp, "policy"))
        tokenizer.save_pretrained(os.path.join(tmp, "policy"))
        value_model.save_pretrained(os.path.join(tmp, "value_model"))
        _save_state(optimizer_state, os.path.join(tmp, "optimizer.pt"))
        _save_state(scheduler.state_dict(), os.path.join(tmp, "scheduler.pt"))
        write_json(os.path.join(tmp, "trainer_state.json"), {**state, "world_size": acc.num_processes})
    acc.wait_for_everyone()
    final = commit_checkpoint(run_dir, step, keep) if acc.is_main_process else ""
    acc.wait_for_everyone()
    return final


def _save_state(obj, path: str) -> None:
    """`torch.save(obj, path)`; torch reports a disk that fills up mid-write as a RuntimeError ("unexpected pos"),
    which becomes the OSError ENOSPC it is when the disk is (nearly) full, so the command says so in one line."""
    import errno

    try:
        torch.save(obj, path)
    except RuntimeError as e:
        if shutil.disk_usage(os.path.dirname(path)).free < 64 * 2**20:
            raise OSError(errno.ENOSPC, f"No space left on device while writing a checkpoint ({e})", path) from None
        raise


def load_checkpoint(path: str, accelerator, policy, value_model, optimizer, scheduler,
                    adapter_only: bool = False) -> dict:
    """Load a checkpoint of `save_checkpoint` into the given (unwrapped, or sharded: each process keeps its shards)
    models, optimizer and scheduler, restore this process's RNG states, and return trainer_state.json's dict.

    No code runs from a checkpoint: weights are safetensors, and optimizer.pt, scheduler.pt and rng_state_<rank>.pth
    are read with `torch.load(weights_only=True)` (tensors, numbers, strings and containers only; numpy's RNG array
    allowed as transformers' Trainer allows it), so a checkpoint downloaded from someone else cannot run its author's
    code (torch docs, "torch.load with weights_only").

    Raises UserInputError naming the file: a file that is not a safe checkpoint (a pickle with other objects), one
    that is truncated or corrupt, a missing one; or a checkpoint written by another number of processes (its RNG
    states and data positions would not match), or with --fsdp for a run without it or the reverse (the optimizer's
    state is keyed otherwise)."""
    state = _read_json(os.path.join(path, "trainer_state.json"))
    if state.get("world_size", 1) != accelerator.num_processes:
        raise UserInputError(f"Checkpoint {path} was written by {state['world_size']} processes; resume with the "
                             f"same number (now {accelerator.num_processes}).")
    if state.get("fsdp", False) != is_sharded(policy):
        raise UserInputError(f"Checkpoint {path} was written {'with' if state.get('fsdp') else 'without'} --fsdp; "
                             "resume it the same way.")
    if adapter_only:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(policy, _load_weights(os.path.join(path, "policy", "adapter_model.safetensors")))
    else:
        load_model_state_dict(policy, _load_weights(os.path.join(path, "policy", "model.safetensors")))
    load_model_state_dict(value_model, _load_weights(os.path.join(path, "value_model", "model.safetensors")))
    load_optimizer_state_dict(optimizer, (policy, value_model), _load_state(os.path.join(path, "optimizer.pt")))
    scheduler.load_state_dict(_load_state(os.path.join(path, "scheduler.pt")))
    rng = _load_state(os.path.join(path, f"rng_state_{accelerator.process_index}.pth"))
    try:
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UserInputError(f"The RNG states in {os.path.join(path, f'rng_state_{accelerator.process_index}.pth')!r} "
                             f"are not those of an rlhf-demo checkpoint ({type(e).__name__}: {e}); resume from "
                             "another checkpoint.") from None
    return state


_BAD_CHECKPOINT_FIX = ("resume from another checkpoint (pass its checkpoint-N folder to --resume_from_checkpoint), or "
                       "delete this one")


def _missing(path: str) -> MissingInputError:
    return MissingInputError(f"The checkpoint file {path!r} is missing; {_BAD_CHECKPOINT_FIX}.")


def _read_json(path: str) -> dict:
    """A checkpoint's JSON file as a dict; UserInputError naming the file when it is missing or not whole JSON."""
    if not os.path.isfile(path):
        raise _missing(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise UserInputError(f"The checkpoint file {path!r} is not valid JSON ({e}); {_BAD_CHECKPOINT_FIX}.") from None
    if not isinstance(data, dict):
        raise UserInputError(f"The checkpoint file {path!r} does not hold a JSON object; {_BAD_CHECKPOINT_FIX}.")
    return data


def _load_weights(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint's safetensors file; UserInputError naming the file when missing or corrupt."""
    from safetensors.torch import load_file

    if not os.path.isfile(path):
        raise _missing(path)
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own SafetensorError (and OSError) on a cut or foreign file
        raise UserInputError(f"The checkpoint weights {path!r} are truncated or corrupt ({type(e).__name__}: "
                             f"{one_line(e)}); {_BAD_CHECKPOINT_FIX}.") from None


def _load_state(path: str):
    """A checkpoint's optimizer, scheduler or RNG state, read with `torch.load(weights_only=True)`: nothing in the
    file is executed. UserInputError naming the file when it is missing, corrupt, or not a safe checkpoint file."""
    import pickle

    from transformers.trainer_pt_utils import safe_globals

    if not os.path.isfile(path):
        raise _missing(path)
    try:
        with safe_globals():  # numpy's RNG state array, as transformers' Trainer allows it; nothing else
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()
        detail = next((line for line in first if "GLOBAL" in line or "Unsupported" in line), first[0] if first else "")
        raise UserInputError(f"Refused to load {path!r}: it is not a safe checkpoint file (it asks to run code or "
                             f"build objects other than tensors and numbers: {detail.strip()[:200]}); nothing in it "
                             f"was run. Only resume from checkpoints you trust; {_BAD_CHECKPOINT_FIX}.") from None
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise UserInputError(f"The checkpoint file {path!r} is truncated or corrupt ({type(e).__name__}: "
                             f"{one_line(e)[:200]}); {_BAD_CHECKPOINT_FIX}.") from None


def apply_optimizer_settings(optimizer, scheduler, learning_rate: float, adam_eps: float,
                             weight_decay: float) -> list[str]:
    """After a checkpoint's optimizer and scheduler states are loaded, set this run's learning rate, AdamW eps and
    weight decay, and the learning rate the schedule gives at the checkpoint's step for this run's length
    (`learning_rate * lr_lambda(step)`, what LambdaLR computes, so an unchanged resume is exact). Returns the settings
    that changed, as `name old -> new` strings, for the caller to say. Without this, a resume kept the checkpoint's
    values silently, and a run extended with a larger --total_episodes trained its next step at the old schedule's
    final rate, 0."""
    group = optimizer.param_groups[0]
    now = {"learning_rate": learning_rate, "adam_eps": adam_eps, "weight_decay": weight_decay}
    before = {"learning_rate": scheduler.base_lrs[0], "adam_eps": group["eps"], "weight_decay": group["weight_decay"]}
    changed = [f"{name} {value:g} -> {now[name]:g}" for name, value in before.items()
               if not math.isclose(value, now[name], rel_tol=1e-9, abs_tol=1e-15)]
    scheduler.base_lrs = [learning_rate] * len(scheduler.base_lrs)
    for g in optimizer.param_groups:
        g.update(initial_lr=learning_rate, eps=adam_eps, weight_decay=weight_decay,
                 lr=learning_rate * scheduler.lr_lambdas[0](scheduler.last_epoch))
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]  # what get_last_lr() reports
    return changed


# ------------------------------------------------------------------------------------------- a PPOTrainer's state
def save_trainer(trainer) -> str:
    """`save_checkpoint` of a PPOTrainer: its unwrapped policy and value model, tokenizer, optimizer, scheduler, and
    as trainer_state.json its counters (`trainer.state`: step, episode, wall time), KL coefficient, reward statistics
    and `resume_config`. Returns the checkpoint's path ("" off the main process)."""
    acc, cfg, models = trainer.accelerator, trainer.config, (trainer.policy, trainer.value_model)
    state = {**trainer.state, "kl_coef": trainer.kl_ctl.value, "reward_stats": vars(trainer.reward_stats),
             "config": resume_config(cfg), "fsdp": trainer.sharded}
    policy, value_model = (full_model(acc, m) for m in models)  # under --fsdp: gathered (all processes take part)
    optimizer_state = optimizer_state_dict(trainer.optimizer, [acc.unwrap_model(m) for m in models])
    return save_checkpoint(cfg.output_dir, cfg.save_total_limit, acc, policy, value_model, trainer.tokenizer,
                           optimizer_state, trainer.scheduler, state)


def load_trainer(trainer, path: str) -> None:
    """Restore into a PPOTrainer what `save_trainer` wrote at `path` (`load_checkpoint`), then apply the run's own
    --learning_rate, --adam_eps and --weight_decay (`apply_optimizer_settings`; a changed one is said on stderr) and
    drop the metrics and samples logged after the checkpoint's step (`runs.truncate_logs`: they will run again)."""
    acc, cfg = trainer.accelerator, trainer.config
    state = load_checkpoint(path, acc, acc.unwrap_model(trainer.policy), acc.unwrap_model(trainer.value_model),
                            trainer.optimizer, trainer.scheduler, adapter_only=cfg.use_peft)
    changed = apply_optimizer_settings(trainer.optimizer, trainer.scheduler, cfg.learning_rate, cfg.adam_eps,
                                       cfg.weight_decay)
    if changed and acc.is_main_process:
        print(f"note: resuming from {path} with other optimizer settings than the checkpoint's: {', '.join(changed)} "
              "(applied from this step on).", file=sys.stderr)
    trainer.kl_ctl.value = state["kl_coef"]
    vars(trainer.reward_stats).update(state["reward_stats"])
    trainer.state = {k: state[k] for k in ("step", "episode", "wall_time_s")}
    if acc.is_main_process:
        truncate_logs(cfg.output_dir, trainer.state["step"])
