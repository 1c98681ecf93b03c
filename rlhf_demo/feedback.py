"""Preference data: the JSONL file of human (or simulated) A/B choices that trains the next reward model.

One JSON object per line in TRL's preference format (the "explicit prompt" preference type of TRL's dataset
formats, https://huggingface.co/docs/trl/dataset_formats#preference): `prompt`, `chosen` and `rejected` strings
(the continuations, without the prompt), plus any extra columns (the Space's Feedback tab adds `tie`,
`chosen_model`, `rejected_model`, `seed`, `timestamp`, ...). The file loads with
`datasets.load_dataset("json", data_files=FILE)`; rows with `"tie": true` carry no preference, drop them before
training a Bradley-Terry reward model on it (e.g. with TRL's `RewardTrainer`).

Appends are durable: each row is one `write`, flushed and fsynced before `append` returns, so a crash loses no
earlier row. A line cut short by a crash is skipped when reading and closed before the next append, so the next
row stays whole (`runs.append_jsonl(..., durable=True)`). Two readers share one parsing path: the strict one of
`load_preference_pairs` (training) refuses a bad line with a message naming it; the tolerant `read_preferences` (a
store, a download) skips it. The simulated annotator and the `rlhf-demo preferences` command are in `annotate.py`.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading

from .errors import MissingInputError, UserInputError
from .runs import append_jsonl

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")
PREFERENCE_FILE = "preferences.jsonl"  # the file of a preference folder (`append_preferences`)


def read_preferences(path: str, problems: list[str] | None = None) -> list[dict]:
    """The rows of a preference file, in order: objects with string `prompt`, `chosen` and `rejected` fields.

    The tolerant reader (what a store reads back, what a download serves): the lines the strict reader of
    `load_preference_pairs` refuses are skipped instead, each with the same message appended to `problems` when given,
    and so are rows without a `prompt` (a store writes TRL's explicit-prompt form). A missing file reads as empty;
    blank lines and a last line cut short by a crash are skipped silently; text that is not UTF-8 is read with
    replacement characters.
    """
    if not os.path.isfile(path):
        return []
    problems = [] if problems is None else problems
    rows = []
    for i, row in _parse_preference_lines(_preference_text(path, problems), path, problems):
        if isinstance(row.get("prompt"), str):
            rows.append(row)
        else:
            problems.append(f"Line {i} of preference file {path!r} has no `prompt`; a preference store keeps TRL's "
                            "explicit-prompt form (`prompt`, `chosen`, `rejected`).")
    return rows


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
        with self.lock:
            try:
                append_jsonl(self.path, [row], durable=True, ensure_ascii=False)
            except TypeError as e:  # raised before anything is written
                raise ValueError(f"A preference row must be JSON-serialisable: {e}") from e
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
    if os.path.isdir(path):
        inner = os.path.join(path, PREFERENCE_FILE)
        if not os.path.isfile(inner):
            raise MissingInputError(f"Preference folder {path!r} holds no {PREFERENCE_FILE} (the file `rlhf-demo "
                                    "preferences --output FOLDER` writes); pass the preference file itself.")
        path = inner
    if not os.path.isfile(path):
        raise MissingInputError(f"Preference file {path!r} does not exist; write one with `rlhf-demo preferences` or "
                                "the Space's Feedback tab.")
    rows = [to_explicit_prompt(row) for _, row in _parse_preference_lines(_preference_text(path), path)]
    if not rows:
        raise UserInputError(f"Preference file {path!r} is empty; it needs one JSON object per line with `prompt`, "
                             "`chosen` and `rejected`.")
    return rows


def _preference_text(path: str, problems: list[str] | None = None) -> str:
    """The text of a preference file; a UTF-8 byte order mark (Windows editors) is not text. Text that is not UTF-8
    raises UserInputError, or with `problems` given is read with replacement characters and the message appended."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return f.read()
    except UnicodeDecodeError as e:
        message = (f"Preference file {path!r} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8 JSON "
                   "lines.")
        if problems is None:
            raise UserInputError(message) from None
        problems.append(message)
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        return f.read()


def _parse_preference_lines(text: str, path: str, problems: list[str] | None = None) -> list[tuple[int, dict]]:
    """The one parsing path of a preference file's text: (1-based line number, row) for each line that is one JSON
    object with string `chosen` and `rejected`, a string `prompt` if any and a JSON boolean `tie` if any. Blank lines
    and a last line that is not JSON (a write cut short by a crash) are skipped. Anything else raises UserInputError
    with one line naming the file, or with `problems` given is skipped and its message appended."""
    def refuse(message: str) -> None:
        if problems is None:
            raise UserInputError(message)
        problems.append(message)

    if text.lstrip().startswith("["):
        try:
            array = isinstance(json.loads(text), list)
        except ValueError:
            array = False
        if array:
            refuse(f"Preference file {path!r} is one JSON array, not JSON lines (one object per line); convert it, "
                   f"e.g. with `jq -c '.[]' {path} > preferences.jsonl`, and pass that file.")
            return []
    lines = text.split("\n")  # not splitlines(): texts may hold U+2028, U+0085, ...
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row, not_json = json.loads(line), False
        except ValueError:
            row, not_json = None, True
        if not_json:
            if i < len(lines) - 1:  # else a last line cut short by a crash: skipped
                refuse(f"Line {i} of preference file {path!r} is not JSON; each line must be one object with "
                       "`prompt`, `chosen` and `rejected`.")
            continue
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("chosen", "rejected")):
            refuse(f"Line {i} of preference file {path!r} lacks string `chosen` and `rejected` fields (TRL's "
                   "preference format: `prompt`, `chosen`, `rejected`).")
        elif "prompt" in row and not isinstance(row["prompt"], str):
            from .data import a_type

            refuse(f"Line {i} of preference file {path!r} has a `prompt` that is {a_type(row['prompt'])}, not text; "
                   "write the prompt as a string (or leave `prompt` out when `chosen` and `rejected` both start with "
                   "it).")
        elif row.get("tie") is not None and not isinstance(row["tie"], bool):
            from .data import a_type

            refuse(f"Line {i} of preference file {path!r} has `tie` {json.dumps(row['tie'])}, {a_type(row['tie'])}, "
                   "not a JSON boolean; write true or false without quotes.")
        else:
            rows.append((i, row))
    return rows


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
    """Write `folder/README.md`, the dataset card of a preference folder (`dataset_card`), unless one exists."""
    path = os.path.join(folder, "README.md")
    if os.path.exists(path):
        return
    with open(path, "w", encoding="utf-8") as f:
        f.write(str(dataset_card()))


def dataset_card():
    """The Hugging Face dataset card (`huggingface_hub.DatasetCard`: YAML metadata + text) of a preference folder:
    `preferences.jsonl` in TRL's format as the default config, tagged rlhf / preference / trl."""
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(configs=[{"config_name": "default", "data_files": PREFERENCE_FILE}],
                           tags=["rlhf", "preference", "trl"])
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{DATASET_CARD_TEXT}")


DATASET_CARD_TEXT = """# Preference pairs (rlhf-demo)

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
