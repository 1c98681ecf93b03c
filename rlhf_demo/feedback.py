"""Preference data: the JSONL file of human (or simulated) A/B choices that trains the next reward model.

One JSON object per line in TRL's preference format (the "explicit prompt" preference type of TRL's dataset
formats, https://huggingface.co/docs/trl/dataset_formats#preference): `prompt`, `chosen` and `rejected` strings
(the continuations, without the prompt), plus any extra columns (the Space's Feedback tab adds `tie`,
`chosen_model`, `rejected_model`, `seed`, `timestamp`, ...). The file loads with
`datasets.load_dataset("json", data_files=FILE)`; rows with `"tie": true` carry no preference, drop them before
training a Bradley-Terry reward model on it (e.g. with TRL's `RewardTrainer`).

Appends are durable: each row is one `write`, flushed and fsynced before `append` returns, so a crash loses no
earlier row. A line cut short by a crash is skipped when reading and closed before the next append, so the next
row stays whole.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
import threading

from .errors import MissingInputError, UserInputError
from .runs import read_jsonl

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")
PREFERENCE_FILE = "preferences.jsonl"  # the file of a preference folder (`append_preferences`)


def read_preferences(path: str) -> list[dict]:
    """The rows of a preference file, in order: objects with string `prompt`, `chosen` and `rejected` fields.

    A missing file reads as empty; blank lines, lines that are not JSON objects (a write cut short by a crash) and
    objects without the three fields are skipped.
    """
    return [row for row in read_jsonl(path) if all(isinstance(row.get(k), str) for k in PREFERENCE_COLUMNS)]


def append_line_durably(path: str, line: str) -> None:
    """Append `line` (no newline in it) plus a newline to `path` with one write, then flush and fsync.

    When the file's last line is unfinished (a write cut short by a crash), a newline closes it first, in the same
    write, so `line` is never glued to the torn one. A newly created file also gets its folder fsynced (POSIX), so
    the file itself survives a crash.
    """
    if "\n" in line:
        raise ValueError("append_line_durably writes one line; the text contains a newline.")
    created = not os.path.exists(path)
    with open(path, "a+b") as f:  # "a": every write goes to the end; "+": the last byte can be read
        data = line.encode("utf-8") + b"\n"
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                data = b"\n" + data
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if created and os.name == "posix":
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class PreferenceStore:
    """An append-only preference file (TRL format, see the module docstring) shared by the threads of one process.

    Args:
        path: the JSONL file (`~` expanded); its folder is created, the file itself on the first `append`.

    Raises:
        OSError: the folder cannot be created.
    """

    def __init__(self, path: str):
        self.path = os.path.abspath(os.path.expanduser(path))
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.lock = threading.Lock()

    def append(self, row: dict) -> int:
        """Append one preference durably (flushed and fsynced before returning); return the number of rows stored.

        Raises:
            ValueError: `row` lacks a string `prompt`, `chosen` or `rejected`, or cannot be written as JSON.
            OSError: the file cannot be written.
        """
        missing = [k for k in PREFERENCE_COLUMNS if not isinstance(row.get(k), str)]
        if missing:
            raise ValueError(f"A preference row needs string fields {', '.join(PREFERENCE_COLUMNS)}; "
                             f"missing or not a string: {', '.join(missing)}.")
        try:
            line = json.dumps(row, ensure_ascii=False)
        except TypeError as e:
            raise ValueError(f"A preference row must be JSON-serialisable: {e}") from e
        with self.lock:
            append_line_durably(self.path, line)
            return len(read_preferences(self.path))

    def rows(self) -> list[dict]:
        """The stored preferences (see `read_preferences`)."""
        with self.lock:
            return read_preferences(self.path)

    def snapshot(self) -> str:
        """Write the stored preferences, one JSON object per line and nothing else (a line torn by a crash left out),
        to a fresh temporary folder under the file's name; return that path (what a download serves).

        Raises:
            FileNotFoundError: nothing has been recorded yet.
        """
        with self.lock:
            rows = read_preferences(self.path)
        if not rows:
            raise FileNotFoundError("No preferences recorded yet: pick the better continuation of a pair first.")
        dest = os.path.join(tempfile.mkdtemp(prefix="rlhf-preferences-"), os.path.basename(self.path))
        with open(dest, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        return dest


# ------------------------------------------------------------------------------------------- reading for training
def to_explicit_prompt(row: dict) -> dict:
    """A preference row in TRL's explicit-prompt form: `prompt`, `chosen`, `rejected`. A row in the implicit form
    (`chosen` and `rejected` with the prompt inside both) gets its prompt split off as their longest common prefix,
    by TRL's `extract_prompt`; other columns are kept."""
    if "prompt" in row:
        return row
    from trl import extract_prompt

    return {**row, **extract_prompt({"chosen": row["chosen"], "rejected": row["rejected"]})}


def load_preference_pairs(paths: list[str]) -> tuple[list[dict], dict[str, int]]:
    """The preference pairs of one or more files, ready for a Bradley-Terry reward model, and what was dropped.

    Each file is JSON lines in TRL's preference format, explicit or implicit prompt (see `to_explicit_prompt`).
    Rows marked `"tie": true`, rows whose chosen and rejected texts are equal, and exact repeats of an earlier
    (prompt, chosen, rejected) are dropped and counted.

    Returns:
        (rows with string `prompt`, `chosen`, `rejected`, in file order; counts {"read", "ties", "same", "duplicates",
        "kept"}).

    Raises:
        MissingInputError: a file does not exist.
        UserInputError: a file is not UTF-8 text, holds a line that is not a JSON object, lacks `chosen`/`rejected`,
            is empty, or nothing is left after dropping ties and equal pairs (each message names the file).
    """
    rows, counts, seen = [], {"read": 0, "ties": 0, "same": 0, "duplicates": 0}, set()
    for path in paths:
        for row in _read_preference_file(path):
            counts["read"] += 1
            if row.get("tie"):
                counts["ties"] += 1
            elif row["chosen"] == row["rejected"]:
                counts["same"] += 1
            elif (key := (row["prompt"], row["chosen"], row["rejected"])) in seen:
                counts["duplicates"] += 1
            else:
                seen.add(key)
                rows.append(row)
    counts["kept"] = len(rows)
    if not rows:
        raise UserInputError(f"No usable preference pair in {', '.join(paths)}: {counts['read']} rows read, "
                             f"{counts['ties']} ties and {counts['same']} with chosen == rejected. Label some pairs.")
    return rows, counts


def _read_preference_file(path: str) -> list[dict]:
    """The rows of one preference file in explicit-prompt form, checked (errors as `load_preference_pairs`). A folder
    that holds `preferences.jsonl` (what `rlhf-demo preferences --output FOLDER` writes) reads as that file; a UTF-8
    byte order mark is skipped."""
    from .data import a_type

    if os.path.isdir(path):
        inner = os.path.join(path, PREFERENCE_FILE)
        if not os.path.isfile(inner):
            raise MissingInputError(f"Preference folder {path!r} holds no {PREFERENCE_FILE} (the file `rlhf-demo "
                                    "preferences --output FOLDER` writes); pass the preference file itself.")
        path = inner
    if not os.path.isfile(path):
        raise MissingInputError(f"Preference file {path!r} does not exist; write one with `rlhf-demo preferences` or "
                                "the Space's Feedback tab.")
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: a byte order mark (Windows editors) is not text
            text = f.read()
    except UnicodeDecodeError as e:
        raise UserInputError(f"Preference file {path!r} is not UTF-8 text ({e.reason} at byte {e.start}); save it as "
                             "UTF-8 JSON lines.") from None
    if text.lstrip().startswith("["):
        try:
            array = isinstance(json.loads(text), list)
        except ValueError:
            array = False
        if array:
            raise UserInputError(f"Preference file {path!r} is one JSON array, not JSON lines (one object per line); "
                                 f"convert it, e.g. with `jq -c '.[]' {path} > preferences.jsonl`, and pass that file.")
    lines = text.split("\n")  # not splitlines(): texts may hold U+2028, U+0085, ...
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            if i >= len(lines) - 1:  # a last line cut short by a crash: skipped, as read_preferences does
                continue
            raise UserInputError(f"Line {i} of preference file {path!r} is not JSON; each line must be one object "
                                 "with `prompt`, `chosen` and `rejected`.") from None
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("chosen", "rejected")):
            raise UserInputError(f"Line {i} of preference file {path!r} lacks string `chosen` and `rejected` fields "
                                 "(TRL's preference format: `prompt`, `chosen`, `rejected`).")
        if "prompt" in row and not isinstance(row["prompt"], str):
            raise UserInputError(f"Line {i} of preference file {path!r} has a `prompt` that is "
                                 f"{a_type(row['prompt'])}, not text; write the prompt as a string (or leave "
                                 "`prompt` out when `chosen` and `rejected` both start with it).")
        if row.get("tie") is not None and not isinstance(row["tie"], bool):
            raise UserInputError(f"Line {i} of preference file {path!r} has `tie` {json.dumps(row['tie'])}, "
                                 f"{a_type(row['tie'])}, not a JSON boolean; write true or false without quotes.")
        rows.append(to_explicit_prompt(row))
    if not rows:
        raise UserInputError(f"Preference file {path!r} is empty; it needs one JSON object per line with `prompt`, "
                             "`chosen` and `rejected`.")
    return rows


# ------------------------------------------------------------------------------------------- simulated annotator
class SimulatedAnnotator:
    """A stand-in labeller: prefers the continuation its reward function scores higher, with Bradley-Terry noise.

    P(A preferred to B) = sigmoid((s_A - s_B) / temperature) (Bradley & Terry 1952), the model a Bradley-Terry reward
    model fits; temperature 0 always picks the higher score. |s_A - s_B| <= tie_margin is labelled a tie. Ziegler et
    al. (2019) measured their loop with such a "mock" labeller, as Gao et al. (2022) do with a gold reward model.

    Args:
        reward_fn: `(queries, responses) -> scores`, e.g. `rewards.build_reward(["sentiment=PATH@POSITIVE"])`.
        temperature: tau above, in the score's units (>= 0).
        tie_margin: score difference at or below which a pair is a tie (>= 0).
        seed: seeds the coin flips (labels are reproducible).
        name: how the annotator is recorded in the rows (default: the reward function's repr).
    """

    def __init__(self, reward_fn, temperature: float = 1.0, tie_margin: float = 0.0, seed: int = 0,
                 name: str | None = None):
        if temperature < 0 or tie_margin < 0:
            raise UserInputError(f"The annotator's temperature and tie margin must be >= 0, got {temperature} and "
                                 f"{tie_margin}.")
        self.reward_fn, self.temperature, self.tie_margin = reward_fn, temperature, tie_margin
        self.rng = random.Random(seed)
        self.name = name or repr(reward_fn)

    def label(self, prompts: list[str], responses_a: list[str], responses_b: list[str]) -> list[dict]:
        """One preference row per pair: `prompt`, `chosen`, `rejected`, `tie`, the annotator, its temperature and
        its noiseless scores of both continuations (`chosen_score`, `rejected_score`)."""
        from .rewards import check_scores

        n = len(prompts)
        s_a = check_scores(self.reward_fn(prompts, responses_a), n, self.reward_fn)
        s_b = check_scores(self.reward_fn(prompts, responses_b), n, self.reward_fn)
        rows = []
        for prompt, a, b, sa, sb in zip(prompts, responses_a, responses_b, s_a, s_b):
            a_wins = self.prefers_first(sa, sb)
            (chosen, cs), (rejected, rs) = ((a, sa), (b, sb)) if a_wins else ((b, sb), (a, sa))
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected,
                         "tie": abs(sa - sb) <= self.tie_margin, "annotator": self.name,
                         "annotator_temperature": self.temperature, "chosen_score": cs, "rejected_score": rs})
        return rows

    def prefers_first(self, s_a: float, s_b: float) -> bool:
        """One Bradley-Terry draw: True with probability sigmoid((s_a - s_b) / temperature)."""
        if self.temperature == 0:
            return s_a >= s_b
        z = (s_a - s_b) / self.temperature
        p = 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))
        return self.rng.random() < p


# ------------------------------------------------------------------------------------------- sampling pairs
def sample_pairs(model, tokenizer, prompts: list[str], *, other=None, max_new_tokens: int = 24,
                 temperature: float = 1.0, seed: int = 0, batch_size: int = 64) -> tuple[list[str], list[str]]:
    """Two continuations of each prompt (text): A from `model`, B from `other` = (model, tokenizer) when given (e.g.
    the reference) or else a second, independent sample of `model` (another seed). Returns (A texts, B texts)."""
    from .sampling import generate

    kwargs = dict(max_new_tokens=max_new_tokens, temperature=temperature, batch_size=batch_size)
    a = generate(model, tokenizer, prompts, seed=seed, desc="sampling A", **kwargs).texts
    model_b, tokenizer_b = other if other is not None else (model, tokenizer)
    b = generate(model_b, tokenizer_b, prompts, seed=seed + 1_000_003, desc="sampling B", **kwargs).texts
    return a, b


def collect_preferences(cfg, annotator_fn=None) -> dict:
    """`rlhf-demo preferences`: sample `cfg.num_pairs` pairs (a `PreferencesConfig`), label them with the simulated
    annotator and append them to `cfg.output`. `annotator_fn` overrides the annotator built from `cfg.annotator`.
    Returns a summary: pairs written, ties, rows now stored, the file written.

    Raises:
        UserInputError / MissingInputError: a model, dataset or annotator spec that cannot be used.
    """
    from .data import build_prompt_dataset
    from .models import display_name, load_causal_lm
    from .rewards import build_reward

    check_preference_output(cfg.output)  # before any sampling: a bad --output fails in a second
    model, tokenizer = load_causal_lm(cfg.model, "model (--model)")
    other = load_causal_lm(cfg.other_model, "other model (--other_model)") if cfg.other_model else None
    prompts = build_prompt_dataset(tokenizer, cfg.dataset_name, cfg.split, min_review_chars=cfg.min_review_chars,
                                   min_query_tokens=cfg.min_query_tokens, max_query_tokens=cfg.max_query_tokens,
                                   num_prompts=cfg.num_pairs, seed=cfg.seed)["query"]
    a, b = sample_pairs(model, tokenizer, prompts, other=other, max_new_tokens=cfg.max_new_tokens,
                        temperature=cfg.temperature, seed=cfg.seed, batch_size=cfg.batch_size)
    annotator = SimulatedAnnotator(annotator_fn or build_reward([cfg.annotator]), cfg.annotator_temperature,
                                   cfg.tie_margin, seed=cfg.seed, name=spec_name(cfg.annotator))
    rows = annotator.label(prompts, a, b)
    models = {"model_a": display_name(cfg.model), "model_b": display_name(cfg.other_model or cfg.model)}
    rows = [{**row, **models, "round": cfg.round, "seed": cfg.seed} for row in rows]
    stored = append_preferences(cfg.output, rows)
    summary = {"pairs": len(rows), "ties": sum(r["tie"] for r in rows), "stored": stored, "file": cfg.output}
    print(f"{summary['pairs']} pairs labelled by {annotator.name} (tau {cfg.annotator_temperature:g}, "
          f"{summary['ties']} ties) appended to {cfg.output}: {stored} rows in all")
    return summary


def spec_name(spec: str) -> str:
    """A reward spec as recorded in a row: its model named as `models.display_name` does (no machine path)."""
    from .models import display_name
    from .rewards import split_reward_spec

    s = split_reward_spec(spec)
    if s.kind in ("keyword", "python", "vader"):
        return spec
    return f"{s.kind}={display_name(s.target)}" + (f"@{s.label}" if s.label else "")


def summarize_preferences(rows: list[dict]) -> str:
    """One line on a preference file's rows: how many, ties, and which models wrote the chosen continuations."""
    if not rows:
        return "No preferences yet."
    ties = sum(bool(r.get("tie")) for r in rows)
    chosen = {}
    for r in rows:
        if not r.get("tie"):
            name = r.get("chosen_model") or r.get("model_a") or "unknown"
            chosen[name] = chosen.get(name, 0) + 1
    by_model = ", ".join(f"{name} {n}" for name, n in sorted(chosen.items(), key=lambda kv: -kv[1]))
    return f"{len(rows)} pair(s), {ties} tie(s); chosen continuations by model: {by_model or 'none yet'}."


# ------------------------------------------------------------------------------------------- writing
def check_preference_output(path: str, flag: str = "--output") -> None:
    """Raise UserInputError unless `path` is somewhere `append_preferences` can write: a `.jsonl` file (new or
    existing) in a writable folder, or a folder, existing or new; a new folder is a path without an extension, so
    `prefs.json` is refused rather than made a folder, and so is an existing file that is not `.jsonl`."""
    from .runs import check_output_dir

    target = os.path.abspath(os.path.expanduser(path))
    ext = os.path.splitext(target)[1]
    if path.endswith(".jsonl"):
        if os.path.isdir(target):
            raise UserInputError(f"{flag} {path!r} is a folder; pass a .jsonl file, or a folder path without the "
                                 ".jsonl ending.")
        check_output_dir(os.path.dirname(target), f"The folder of {flag} {path!r},")
        return
    if os.path.isfile(target):
        raise UserInputError(f"{flag} {path!r} is an existing file, not a JSON-lines file (.jsonl); pass a .jsonl "
                             "file to append to, or a folder (existing, or a new path without an extension) that gets "
                             f"{PREFERENCE_FILE} and a dataset card.")
    if not os.path.isdir(target) and ext:
        raise UserInputError(f"{flag} {path!r} ends in {ext!r}: a preference file must end in .jsonl, and a new "
                             f"folder is a path without an extension; pass {os.path.splitext(path)[0]}.jsonl, or a "
                             "folder.")
    check_output_dir(target, flag)


def append_preferences(path: str, rows: list[dict]) -> int:
    """Append `rows` to the preference file `path` (a `.jsonl` file, or a folder that gets `preferences.jsonl` and a
    dataset card `README.md`); return the number of rows now stored."""
    if not path.endswith(".jsonl"):
        os.makedirs(path, exist_ok=True)
        write_dataset_card(path)
        path = os.path.join(path, PREFERENCE_FILE)
    store = PreferenceStore(path)
    n = 0
    for row in rows:
        n = store.append(row)
    return n


def write_dataset_card(folder: str) -> None:
    """Write `folder/README.md`, a Hugging Face dataset card (YAML front matter + text) describing a preference
    folder (`preferences.jsonl` in TRL's format), unless one exists."""
    path = os.path.join(folder, "README.md")
    if os.path.exists(path):
        return
    with open(path, "w", encoding="utf-8") as f:
        f.write(DATASET_CARD)


DATASET_CARD = """---
configs:
- config_name: default
  data_files: preferences.jsonl
tags:
- rlhf
- preference
- trl
---

# Preference pairs (rlhf-demo)

Pairs of continuations of the same prompt and which one was preferred, one JSON object per line in TRL's preference
format: `prompt`, `chosen`, `rejected` (continuations without the prompt), plus `tie`, `annotator` (a person, or the
simulated annotator's reward function), its noiseless scores, `round`, `seed` and the models that wrote them.

```python
from datasets import load_dataset

pairs = load_dataset("json", data_files="preferences.jsonl", split="train").filter(lambda r: not r["tie"])
```

Written by `rlhf-demo preferences` and the Space's Feedback tab; trains a Bradley-Terry reward model with
`rlhf-demo reward-model --preferences preferences.jsonl`.
"""


# ------------------------------------------------------------------------------------------- kept on the Hub
class HubPreferenceStore(PreferenceStore):
    """A `PreferenceStore` whose file is also kept in a Hub dataset repository, so the preferences a Space collects
    survive its restarts (a Space's disk does not, without persistent storage).

    `folder` holds `preferences.jsonl` and a dataset card `README.md` (`write_dataset_card`); a
    `huggingface_hub.CommitScheduler` uploads both every `every_minutes` minutes when they changed, and at exit
    (`sync()` uploads now). When `folder` has no preference file yet, the dataset's file is downloaded first, so the
    appends after a restart extend what was collected before it. An append holds the scheduler's lock, so an upload
    never takes half a line (the scheduler uploads a file up to its size when it listed it).

    Args:
        folder: the local copy of the dataset (created); use it for this store only.
        repo_id: the dataset repository, NAMESPACE/NAME (created when missing, private unless `private` is False).
        token: a token with write access to it (default: HF_TOKEN, then the `hf auth login` token).
        endpoint: the Hub URL (default: HF_ENDPOINT, else https://huggingface.co).
        every_minutes: minutes between uploads.

    Raises:
        huggingface_hub's errors when the repository cannot be read or created (a bad token, no network).
    """

    FILE = "preferences.jsonl"

    def __init__(self, folder: str, repo_id: str, token: str | None = None, endpoint: str | None = None,
                 every_minutes: float = 5.0, private: bool = True):
        from huggingface_hub import CommitScheduler, HfApi

        api = HfApi(endpoint=endpoint, token=token)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, self.FILE)
        if not os.path.exists(path):
            _restore_preferences(api, repo_id, path)
        super().__init__(path)
        write_dataset_card(folder)
        self.repo_id = repo_id
        self.scheduler = CommitScheduler(repo_id=repo_id, repo_type="dataset", folder_path=folder, every=every_minutes,
                                         private=private, allow_patterns=[self.FILE, "README.md"], hf_api=api)

    def append(self, row: dict) -> int:
        """`PreferenceStore.append`, holding the scheduler's lock (see the class docstring)."""
        with self.scheduler.lock:
            return super().append(row)

    def sync(self) -> None:
        """Upload what changed now and wait for the commit; raises what the upload raised."""
        self.scheduler.trigger().result()

    def close(self) -> None:
        """Upload what changed, then stop the scheduler."""
        try:
            self.sync()
        finally:
            self.scheduler.stop()


def _restore_preferences(api, repo_id: str, path: str) -> None:
    """Copy the dataset's preference file to `path`, when the dataset and the file exist."""
    import shutil

    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        local = api.hf_hub_download(repo_id, HubPreferenceStore.FILE, repo_type="dataset")
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError):
        return
    shutil.copyfile(local, path)
