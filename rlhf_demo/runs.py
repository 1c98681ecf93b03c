"""The run folder of `rlhf-demo train --output_dir RUN`: its layout, atomic writes, logs, final export and machine facts
(the checkpoints' own files and how a resume reads them: checkpoints.py).

    RUN/
      config.json, model.safetensors, generation_config.json, tokenizer files   the aligned policy
      adapter/                     the LoRA adapter and tokenizer (with --use_peft; the top level holds the merged
                                   model, so every reader of a run folder, peft or not, loads a whole model)
      value_model/                 the PPO value model of the run
      training_config.yaml         the resolved PPOConfig
      run_info.json                base model, reward functions, episodes, wall time, machine, final metrics, and
                                   the list of exported files; written last, so it marks a complete export
      metrics.jsonl                one line of TRL-named metrics per logged PPO step
      training_curves.png          reward, KL, KL coefficient and value loss against episodes (curves.py), exported
      samples.jsonl                a few sampled completions every `sample_steps` steps
      checkpoints/checkpoint-<step>/   what a resume needs (checkpoints.py)
      eval/                        `rlhf-demo eval --output_dir RUN/eval`

Everything that writes a folder does it atomically (a temporary folder, then a rename), so a crash at any moment
leaves the previous checkpoint or model whole.
"""

from __future__ import annotations

import contextlib
import copy
import glob
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator

import torch

from .errors import UserInputError

CHECKPOINTS = "checkpoints"
METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
RUN_INFO_FILE = "run_info.json"
TRAINING_CONFIG_FILE = "training_config.yaml"
EXPORT_TMP = ".tmp-export"
_CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")


# ------------------------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_dir(path: str, replace: bool = True) -> Iterator[str]:
    """Yield a new empty folder beside `path` to write into. When the block ends, the folder is swapped in with
    renames (the previous `path` moved aside, then removed), so `path` is always whole: the old folder or the new one.
    An exception in the block removes the temporary folder and leaves `path` untouched.

    The temporary name is unique (`.tmp-NAME-PID-HEX`), so two processes writing one folder never share it: the last
    to finish wins, or with `replace=False` the first (a cache entry: a later one is dropped, the first is kept).
    A crash between the two renames leaves `.old-NAME-*` beside a missing `path`; the next call restores it first."""
    path = os.path.normpath(os.path.abspath(path))  # "dir/" would put the temporary folder inside the one it replaces
    parent, name = os.path.split(path)
    if not os.path.lexists(path):
        aside = glob.glob(os.path.join(glob.escape(parent), glob.escape(f".old-{name}-") + "*"))
        if aside:
            os.replace(max(aside, key=os.path.getmtime), path)
    tag = f"{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp, old = os.path.join(parent, f".tmp-{tag}"), os.path.join(parent, f".old-{tag}")
    os.makedirs(tmp)
    try:
        yield tmp
        if not replace or not os.path.lexists(path):
            try:
                os.rename(tmp, path)  # fails, atomically, when another process made a non-empty `path` meanwhile
            except OSError:
                if replace or not os.path.isdir(path):
                    raise
        else:
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # an error, or a folder dropped for the one already there


def atomic_save(save_fn: Callable[[str], None], path: str) -> None:
    """Call `save_fn(tmp_dir)` then swap the folder in at `path` (`atomic_dir`), so `path` is never half written."""
    with atomic_dir(path) as tmp:
        save_fn(tmp)


def write_json(path: str, obj, indent: int = 2) -> None:
    """Write `obj` as JSON to `path` through a temporary file and a rename (never a half-written file)."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent)
    os.replace(tmp, path)


def check_output_dir(path: str, flag: str = "--output_dir") -> None:
    """Raise UserInputError unless `path` is (or can become) a folder this process can write into: not a file, not
    under a file, writable. Tried by creating and removing a temporary folder in it (or in its nearest existing
    parent), so nothing is left behind; called before any work, so a bad folder fails in a second, not at the end."""
    target = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(target) and not os.path.isdir(target):
        raise UserInputError(f"{flag} {path!r} is a file, not a folder; pass a folder path.")
    parent = target
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UserInputError(f"{flag} {path!r} cannot be created: {parent!r} is a file; pass another folder path.")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-test-", dir=parent))
    except OSError as e:
        raise UserInputError(f"{flag} {path!r} is not writable ({e.strerror} in {parent!r}); pass a folder you can "
                             "write to.") from None


# What a training run writes into its folder besides the policy's own files (which its export replaces).
RUN_FILES = (RUN_INFO_FILE, TRAINING_CONFIG_FILE, METRICS_FILE, SAMPLES_FILE, CHECKPOINTS, EXPORT_TMP, "value_model",
             "adapter", "eval", "runs", "training_curves.png")


def existing_run_files(run_dir: str) -> list[str]:
    """The names of `RUN_FILES` present in `run_dir` (an empty `checkpoints/` does not count): what a new run
    started there would overwrite or mix with its own."""
    def present(name):
        path = os.path.join(run_dir, name)
        return bool(os.listdir(path)) if name == CHECKPOINTS and os.path.isdir(path) else os.path.exists(path)

    return [name for name in RUN_FILES if present(name)]


def check_new_run_dir(run_dir: str, overwrite: bool) -> None:
    """Refuse to start a run in a folder that holds another run, finished or interrupted (its model, logs and
    checkpoints would be overwritten or mixed with the new run's), unless `overwrite` (`--overwrite_output_dir`,
    as in transformers), after which `clear_run_dir` deletes the old run's files. Raises UserInputError."""
    found = existing_run_files(run_dir)
    if found and not overwrite:
        raise UserInputError(f"--output_dir {run_dir!r} already holds a training run ({', '.join(found[:4])}); resume "
                             "it with --resume_from_checkpoint latest, pass --overwrite_output_dir true to delete it "
                             "and start clean, or choose another --output_dir.")


def clear_run_dir(run_dir: str) -> None:
    """Delete the files of an earlier run in `run_dir` (`RUN_FILES`); the policy's files are replaced by the export."""
    for name in existing_run_files(run_dir):
        path = os.path.join(run_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)


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
def append_jsonl(path: str, rows: Iterable[dict], durable: bool = False, ensure_ascii: bool = True) -> None:
    """Append one JSON object per line to `path` (created if missing), all rows in one write. After a last line cut
    short by a crash, a newline closes it first, in the same write, so the first row starts on a line of its own (the
    torn line stays unreadable instead of spoiling the new row).

    Args:
        durable: flush and fsync before returning, and fsync the folder of a newly created file (POSIX), so a crash
            loses no row appended before it (what a file of human choices needs; logs do without).
        ensure_ascii: as `json.dumps`; False writes non-ASCII text as UTF-8 (U+2028 and U+0085 raw, which is why
            readers must split lines on "\\n" only).

    Raises:
        TypeError / ValueError: a row cannot be written as JSON (nothing is written then).
        OSError: the file cannot be written.
    """
    data = "".join(json.dumps(row, ensure_ascii=ensure_ascii) + "\n" for row in rows).encode("utf-8")
    created = not os.path.exists(path)
    with open(path, "a+b") as f:  # "a": every write goes to the end; "+": the last byte can be read
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                data = b"\n" + data
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    if durable and created and os.name == "posix":
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_jsonl(path: str, skipped: list[int] | None = None) -> list[dict]:
    """The objects of a JSON-lines file, in order; blank lines and a line cut short by a crash are skipped (their
    1-based numbers appended to `skipped` when given). A missing file reads as empty."""
    rows = []
    if not os.path.isfile(path):
        return rows
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f, 1):
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if isinstance(row, dict):
                rows.append(row)
            elif line.strip() and skipped is not None:
                skipped.append(i)
    return rows


def truncate_logs(run_dir: str, step: int) -> None:
    """Drop the metrics and samples rows logged after PPO step `step` (a resumed run logs those steps again), and any
    line that is not whole JSON (a crash cut it short), saying so on stderr with the file named."""
    for name in (METRICS_FILE, SAMPLES_FILE):
        path = os.path.join(run_dir, name)
        if os.path.exists(path):
            skipped: list[int] = []
            rows = [r for r in read_jsonl(path, skipped) if r.get("step", 0) <= step]
            if skipped:
                print(f"warning: {path}: dropped line(s) {', '.join(map(str, skipped))}, not whole JSON (cut short by "
                      "a crash); resuming from the last whole line.", file=sys.stderr)
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
            os.replace(tmp, path)


class RunLogger:
    """Writes a run's `metrics.jsonl` and `samples.jsonl` (the resumable logs: `truncate_logs`); experiment trackers
    (`--report_to`) are the trainer's Accelerator's (`tracking.py`)."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir

    def log(self, metrics: dict[str, float]) -> None:
        """Append one line of metrics (with its `episode` and `step`)."""
        append_jsonl(os.path.join(self.run_dir, METRICS_FILE), [metrics])

    def log_samples(self, step: int, queries: list[str], responses: list[str], scores: list[float], n: int,
                    show: Callable[[str], None] | None = None) -> list[dict]:
        """Append the first `n` (query, response, score) episodes of `step`; `show` (e.g. the progress bar's
        `write`) gets the first two as lines. Returns the rows written."""
        rows = [{"step": step, "query": q, "response": r, "score": s} for q, r,
                s in zip(queries, responses, scores)][:n]
        append_jsonl(os.path.join(self.run_dir, SAMPLES_FILE), rows)
        for row in rows[:2] if show else []:
            show(f"[step {step}] {row['query']!r} -> {row['response']!r} (score {row['score']:.2f})")
        return rows


# ------------------------------------------------------------------------------------------- checkpoints
def list_checkpoints(run_dir: str) -> list[tuple[int, str]]:
    """(step, path) of every finished `RUN/checkpoints/checkpoint-<step>/`, by step (temporary folders skipped)."""
    root = os.path.join(run_dir, CHECKPOINTS)
    if not os.path.isdir(root):
        return []
    found = [(int(m.group(1)),
              os.path.join(root, name)) for name in os.listdir(root) if (m := _CHECKPOINT_NAME.fullmatch(name))]
    return sorted(found)


def save_policy(policy, path: str) -> None:
    """`policy.save_pretrained(path)`; a peft model writes its adapter only (adapter_config.json,
    adapter_model.safetensors), without the base's embedding matrices: PPO never resizes the vocabulary, and peft's
    default ("auto") would look the base up on the Hub to compare vocabulary sizes (peft docs, `save_pretrained`)."""
    from peft import PeftModel

    if isinstance(policy, PeftModel):
        policy.save_pretrained(path, save_embedding_layers=False)
    else:
        policy.save_pretrained(path)


# ------------------------------------------------------------------------------------------- final export
def export_run(run_dir: str, config, policy, tokenizer, value_model, reward_fn, state: dict, processes: int,
               final_metrics: dict | None = None) -> None:
    """`export_model` of a finished PPO run (`config`, a PPOConfig; `state`: its step, episode and wall time), with
    the sampling settings of training and a run_info.json that says what the run was: base model, reward functions,
    dataset, episodes, steps, wall time, machine, processes, version and the last step's metrics."""
    from . import __version__

    cfg = config
    run_info = {
        "base_model": cfg.model_name_or_path, "reward_functions": [repr(reward_fn)], "dataset": cfg.dataset_name,
        "episodes": state["episode"], "steps": state["step"], "wall_time_s": state["wall_time_s"],
        "machine": machine_description(), "processes": processes, "rlhf_demo_version": __version__,
        "final_metrics": final_metrics or {},
    }
    sampling = {"top_k": cfg.top_k, "top_p": cfg.top_p, "temperature": cfg.temperature,
                "max_new_tokens": cfg.response_length}
    export_model(run_dir, policy, tokenizer, value_model, sampling, run_info, merge_adapter=cfg.use_peft, config=cfg)


def export_model(run_dir: str, policy, tokenizer, value_model, sampling: dict, run_info: dict,
                 merge_adapter: bool = False, config=None) -> None:
    """Write the run's final model: the policy at the top level (merged into its base when `merge_adapter`, the
    adapter itself in `adapter/`), loadable with `AutoModelForCausalLM.from_pretrained(run_dir)` and sampling as in
    training (`sampling`: top_k, top_p, temperature, max_new_tokens, written to generation_config.json), its
    tokenizer, `value_model/`, the run's `config` as training_config.yaml (when given) and `run_info.json`.

    Atomic for a reader that checks run_info.json: everything is written to RUN/.tmp-export first, then
    `commit_export` moves it into place with run_info.json (listing every exported file under `export_files`)
    last, so a run folder holding run_info.json holds the whole export, and a kill at any moment leaves either the
    previous export whole or no run_info.json at all."""
    tmp = os.path.join(run_dir, EXPORT_TMP)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    if merge_adapter:  # adapter_config.json names the base by its Hub id where there is one (models.apply_lora)
        save_policy(policy, os.path.join(tmp, "adapter"))
        tokenizer.save_pretrained(os.path.join(tmp, "adapter"))
        policy = copy.deepcopy(policy).merge_and_unload()
    gen = policy.generation_config
    gen.do_sample = True
    for k, v in sampling.items():
        setattr(gen, k, v)
    gen.pad_token_id, gen.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    policy.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    value_model.save_pretrained(os.path.join(tmp, "value_model"))
    if config is not None:
        from .config import save_config

        save_config(config, os.path.join(tmp, TRAINING_CONFIG_FILE))
    from .curves import CURVES_FILE, plot_training_curves

    plot_training_curves(read_jsonl(os.path.join(run_dir, METRICS_FILE)), os.path.join(tmp, CURVES_FILE))
    files = sorted(os.path.relpath(os.path.join(root, f), tmp).replace(os.sep, "/") for root, _, names in os.walk(tmp)
                   for f in names)
    write_json(os.path.join(tmp, RUN_INFO_FILE), {**run_info, "framework_versions": framework_versions(),
                                                  "export_files": files + [RUN_INFO_FILE]})
    commit_export(run_dir)


def commit_export(run_dir: str) -> None:
    """Move the finished export in RUN/.tmp-export into the run folder: first delete run_info.json (from then on the
    folder reads as incomplete), replace each file and folder with one rename, and move run_info.json in last."""
    tmp, marker = os.path.join(run_dir, EXPORT_TMP), os.path.join(run_dir, RUN_INFO_FILE)
    if os.path.isfile(marker):
        os.remove(marker)
    for name in sorted(set(os.listdir(tmp)) - {RUN_INFO_FILE}):
        src, dst = os.path.join(tmp, name), os.path.join(run_dir, name)
        if os.path.isdir(dst) and not os.path.islink(dst):
            shutil.rmtree(dst + ".old", ignore_errors=True)
            os.replace(dst, dst + ".old")
            os.replace(src, dst)
            shutil.rmtree(dst + ".old", ignore_errors=True)
        else:
            os.replace(src, dst)
    os.replace(os.path.join(tmp, RUN_INFO_FILE), marker)
    os.rmdir(tmp)


SHIPPED_KEY = "shipped_without"  # run_info.json of a copy made to ship (a preset's aligned/): what it leaves out


def mark_shipped_copy(copy_dir: str, note: str) -> list[str]:
    """Record in `copy_dir/run_info.json` (a copy of a finished run made to ship, e.g. a preset's aligned model
    without its value model) which of the run's exported files the copy leaves out on purpose, and why (`note`), so
    `export_problem` reads it as complete rather than as an interrupted export. Returns the files left out."""
    path = os.path.join(copy_dir, RUN_INFO_FILE)
    with open(path, encoding="utf-8") as f:
        info = json.load(f)
    left_out = [name for name in info.get("export_files", []) if not os.path.isfile(os.path.join(copy_dir, name))]
    info[SHIPPED_KEY] = {"files": left_out, "note": note}
    write_json(path, info)
    return left_out


def shipped_without(run_dir: str) -> list[str]:
    """The files of its run that a shipped copy (`mark_shipped_copy`) leaves out on purpose; [] for a run folder."""
    try:
        with open(os.path.join(run_dir, RUN_INFO_FILE), encoding="utf-8") as f:
            return list((json.load(f).get(SHIPPED_KEY) or {}).get("files") or [])
    except (OSError, ValueError, AttributeError):
        return []


def export_problem(run_dir: str) -> str | None:
    """What makes the final export of training run `run_dir` incomplete, as one sentence naming the missing part and
    the fix, or None when run_info.json and every file it lists (`export_files`) exist. A folder without
    training_config.yaml is not a training run and is not checked; files a shipped copy leaves out on purpose
    (`mark_shipped_copy`: a preset's aligned model without its value model) are not missing."""
    info_path = os.path.join(run_dir, RUN_INFO_FILE)
    if not os.path.isfile(os.path.join(run_dir, TRAINING_CONFIG_FILE)):
        return None
    finish = "run the same rlhf-demo train command with --resume_from_checkpoint latest to finish the export"
    if not os.path.isfile(info_path):
        return f"The run {run_dir!r} has no {RUN_INFO_FILE}: its final export did not finish; {finish}."
    try:
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
        listed = info.get("export_files") or []
        shipped = info.get(SHIPPED_KEY)
    except (ValueError, AttributeError):
        return f"{info_path!r} is not valid JSON; {finish}."
    missing = [name for name in listed if not os.path.isfile(os.path.join(run_dir, name))]
    if isinstance(shipped, dict):  # a copy made to ship: what it leaves out is meant; anything else was lost since
        missing = [name for name in missing if name not in (shipped.get("files") or [])]
        if missing:
            return (f"The shipped copy {run_dir!r} lacks {', '.join(missing[:5])}, files it was shipped with; "
                    "reinstall the package (or restore the folder from the repository).")
        return None
    if missing:
        return (f"The run {run_dir!r} lacks {', '.join(missing[:5])} of its final export (an interrupted run); "
                f"{finish}.")
    return None


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


def framework_versions() -> dict[str, str]:
    """Versions of the libraries a run used (for run_info.json and the model card's framework-versions section)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("rlhf-demo", "torch", "transformers", "accelerate", "peft", "datasets", "tokenizers"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def machine_description() -> str:
    """CPU model, core count and torch version, for model cards, reports and benchmark files."""
    return f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
