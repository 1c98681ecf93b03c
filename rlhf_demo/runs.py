"""The run folder of `rlhf-demo train --output_dir RUN`: its layout, checkpoints, logs, final export and machine facts.

    RUN/
      config.json, model.safetensors, generation_config.json, tokenizer files   the aligned policy
      adapter/                     the LoRA adapter (with --use_peft; the top level holds the merged model)
      value_model/                 the PPO value model of the run
      training_config.yaml         the resolved PPOConfig
      run_info.json                base model, reward functions, episodes, wall time, machine, final metrics
      metrics.jsonl                one line of TRL-named metrics per logged PPO step
      samples.jsonl                a few sampled completions every `sample_steps` steps
      checkpoints/checkpoint-<step>/
        policy/, value_model/      weights (policy/ holds the adapter only with LoRA)
        optimizer.pt, scheduler.pt, trainer_state.json, rng_state_<rank>.pth
      eval/                        `rlhf-demo eval --output_dir RUN/eval`

Everything that writes a folder does it atomically (a temporary folder, then a rename), so a crash at any moment
leaves the previous checkpoint or model whole.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import random
import re
import shutil
from collections.abc import Callable, Iterable

import numpy as np
import torch

CHECKPOINTS = "checkpoints"
METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
RUN_INFO_FILE = "run_info.json"
TRAINING_CONFIG_FILE = "training_config.yaml"
_CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")


# ------------------------------------------------------------------------------------------- atomic writes
def atomic_save(save_fn: Callable[[str], None], path: str) -> None:
    """Call `save_fn(tmp_dir)` then move the folder to `path` with a rename, so `path` is never half written."""
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_fn(tmp)
    old = path + ".old"
    if os.path.exists(path):
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def write_json(path: str, obj, indent: int = 2) -> None:
    """Write `obj` as JSON to `path` through a temporary file and a rename (never a half-written file)."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent)
    os.replace(tmp, path)


def save_half(model, tokenizer, path: str) -> None:
    """Save weights as fp16 safetensors (half the size) while the config still asks for fp32 on load."""
    model.to(torch.float16).save_pretrained(path)
    model.to(torch.float32)
    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["dtype"] = "float32"
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2)
    tokenizer.save_pretrained(path)


# ------------------------------------------------------------------------------------------- JSON lines logs
def append_jsonl(path: str, rows: Iterable[dict]) -> None:
    """Append one JSON object per line to `path` (created if missing)."""
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def read_jsonl(path: str) -> list[dict]:
    """The objects of a JSON-lines file, in order; blank lines and a line cut short by a crash are skipped.
    A missing file reads as empty."""
    rows = []
    if not os.path.isfile(path):
        return rows
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def truncate_logs(run_dir: str, step: int) -> None:
    """Drop the metrics and samples rows logged after PPO step `step` (a resumed run logs those steps again)."""
    for name in (METRICS_FILE, SAMPLES_FILE):
        path = os.path.join(run_dir, name)
        if os.path.exists(path):
            rows = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
            os.replace(tmp, path)


class RunLogger:
    """Writes a run's `metrics.jsonl` and `samples.jsonl` and mirrors metrics to TensorBoard or Trackio.

    Args:
        run_dir: the run folder (exists).
        report_to: `none`, `tensorboard` (event files under RUN/runs/) or `trackio`.
        config: the run's config dataclass, given to Trackio.
    """

    def __init__(self, run_dir: str, report_to: str = "none", config=None):
        self.run_dir, self.report_to, self.writer = run_dir, report_to, None
        if report_to == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(os.path.join(run_dir, "runs"))
        elif report_to == "trackio":
            import dataclasses

            import trackio

            trackio.init(project="rlhf-demo", config=dataclasses.asdict(config) if config is not None else None)
            self.writer = trackio

    def log(self, metrics: dict[str, float]) -> None:
        """Append one line of metrics (with its `episode` and `step`)."""
        append_jsonl(os.path.join(self.run_dir, METRICS_FILE), [metrics])
        if self.report_to == "tensorboard":
            for k, v in metrics.items():
                self.writer.add_scalar(k, v, int(metrics["episode"]))
        elif self.report_to == "trackio":
            self.writer.log(metrics, step=int(metrics["episode"]))

    def log_samples(self, step: int, queries: list[str], responses: list[str], scores: list[float],
                    n: int) -> list[dict]:
        """Append the first `n` (query, response, score) episodes of `step`; return the rows written."""
        rows = [{"step": step, "query": q, "response": r, "score": s} for q, r,
                s in zip(queries, responses, scores)][:n]
        append_jsonl(os.path.join(self.run_dir, SAMPLES_FILE), rows)
        return rows

    def close(self) -> None:
        if self.report_to == "tensorboard":
            self.writer.close()
        elif self.report_to == "trackio":
            self.writer.finish()


# ------------------------------------------------------------------------------------------- checkpoints
def list_checkpoints(run_dir: str) -> list[tuple[int, str]]:
    """(step, path) of every finished `RUN/checkpoints/checkpoint-<step>/`, by step (temporary folders skipped)."""
    root = os.path.join(run_dir, CHECKPOINTS)
    if not os.path.isdir(root):
        return []
    found = [(int(m.group(1)),
              os.path.join(root, name)) for name in os.listdir(root) if (m := _CHECKPOINT_NAME.fullmatch(name))]
    return sorted(found)


def resolve_checkpoint(run_dir: str, spec: str) -> str:
    """The checkpoint folder `spec` names: `latest` (the newest under RUN/checkpoints) or a checkpoint-<step> path.

    Raises FileNotFoundError when there is none or `spec` is not a checkpoint folder (no trainer_state.json).
    """
    if spec == "latest":
        found = list_checkpoints(run_dir)
        if not found:
            raise FileNotFoundError(f"No checkpoint under {os.path.join(run_dir, CHECKPOINTS)} to resume from; "
                                    "drop --resume_from_checkpoint to start fresh.")
        return found[-1][1]
    if not os.path.isfile(os.path.join(spec, "trainer_state.json")):
        raise FileNotFoundError(f"{spec!r} is not a checkpoint folder (no trainer_state.json); pass a checkpoint-N "
                                "folder or `latest`.")
    return spec


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


def save_checkpoint(run_dir: str, keep: int, accelerator, policy, value_model, tokenizer, optimizer, scheduler,
                    state: dict) -> str:
    """Write `RUN/checkpoints/checkpoint-<state["step"]>` atomically (a temporary folder, then a rename) and keep the
    last `keep`. Every process saves its RNG states; the main process the unwrapped `policy` (its adapter only, for a
    PEFT model) and `value_model`, the tokenizer, optimizer and scheduler states and `state` (JSON-serialisable: step,
    episode, wall time, KL coefficient, reward statistics) as trainer_state.json. Returns the path ("" off the main
    process)."""
    acc, step = accelerator, state["step"]
    acc.wait_for_everyone()
    if acc.is_main_process:
        begin_checkpoint(run_dir, step)
    acc.wait_for_everyone()
    tmp, _ = checkpoint_paths(run_dir, step)
    rng = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    torch.save(rng, os.path.join(tmp, f"rng_state_{acc.process_index}.pth"))
    if acc.is_main_process:
        policy.save_pretrained(os.path.join(tmp, "policy"))
        tokenizer.save_pretrained(os.path.join(tmp, "policy"))
        value_model.save_pretrained(os.path.join(tmp, "value_model"))
        torch.save(optimizer.state_dict(), os.path.join(tmp, "optimizer.pt"))
        torch.save(scheduler.state_dict(), os.path.join(tmp, "scheduler.pt"))
        write_json(os.path.join(tmp, "trainer_state.json"), {**state, "world_size": acc.num_processes})
    acc.wait_for_everyone()
    final = commit_checkpoint(run_dir, step, keep) if acc.is_main_process else ""
    acc.wait_for_everyone()
    return final


def load_checkpoint(path: str, accelerator, policy, value_model, optimizer, scheduler,
                    adapter_only: bool = False) -> dict:
    """Load a checkpoint of `save_checkpoint` into the given (unwrapped) models, optimizer and scheduler, restore this
    process's RNG states, and return trainer_state.json's dict.

    Raises ValueError when the checkpoint was written by another number of processes (its RNG states and data
    positions would not match)."""
    from safetensors.torch import load_file

    with open(os.path.join(path, "trainer_state.json")) as f:
        state = json.load(f)
    if state.get("world_size", 1) != accelerator.num_processes:
        raise ValueError(f"Checkpoint {path} was written by {state['world_size']} processes; resume with the same "
                         f"number (now {accelerator.num_processes}).")
    if adapter_only:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(policy, load_file(os.path.join(path, "policy", "adapter_model.safetensors")))
    else:
        policy.load_state_dict(load_file(os.path.join(path, "policy", "model.safetensors")), strict=False)
    value_model.load_state_dict(load_file(os.path.join(path, "value_model", "model.safetensors")), strict=False)
    optimizer.load_state_dict(torch.load(os.path.join(path, "optimizer.pt"), weights_only=False))
    scheduler.load_state_dict(torch.load(os.path.join(path, "scheduler.pt"), weights_only=False))
    rng = torch.load(os.path.join(path, f"rng_state_{accelerator.process_index}.pth"), weights_only=False)
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    return state


# ------------------------------------------------------------------------------------------- final export
def export_model(run_dir: str, policy, tokenizer, value_model, sampling: dict, run_info: dict,
                 merge_adapter: bool = False) -> None:
    """Write the run's final model: the policy at the top level (merged into its base when `merge_adapter`, the
    adapter itself in `adapter/`), loadable with `AutoModelForCausalLM.from_pretrained(run_dir)` and sampling as in
    training (`sampling`: top_k, top_p, temperature, max_new_tokens, written to generation_config.json), its
    tokenizer, `value_model/` and `run_info.json`."""
    if merge_adapter:
        policy.save_pretrained(os.path.join(run_dir, "adapter"))
        policy = copy.deepcopy(policy).merge_and_unload()
    gen = policy.generation_config
    gen.do_sample = True
    for k, v in sampling.items():
        setattr(gen, k, v)
    gen.pad_token_id, gen.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    policy.save_pretrained(run_dir)
    tokenizer.save_pretrained(run_dir)
    value_model.save_pretrained(os.path.join(run_dir, "value_model"))
    write_json(os.path.join(run_dir, RUN_INFO_FILE), run_info)


# ------------------------------------------------------------------------------------------- machine facts
def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else `platform`)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> str:
    """CPU model, core count and torch version, for model cards, reports and benchmark files."""
    return f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
