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
import os
import tempfile
import threading

from .runs import read_jsonl

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")


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
