"""Prompt datasets, one builder for `train`, `eval` and the Space (`build_prompt_dataset`), of two kinds:

- review heads (the default): IMDB reviews cut to short queries, as in Ziegler et al. (2019) and TRL's gpt2-sentiment
  example. Every review is cleaned (`<br />` tags become spaces), reviews of at most `min_review_chars` characters are
  dropped, and each remaining review becomes one query: its first L tokens, with L drawn uniformly from
  [min_query_tokens, max_query_tokens] by a seeded generator, so the same seed always gives the same queries.
- prompt-only datasets (TRL's format: a `prompt` column; `--prompt_column`, or `--prompt_template` with `{column}`
  fields filled from each row): each row's prompt is used as is, tokenized with the tokenizer's special tokens (as
  TRL's trainers do; T5 appends `</s>`), and cut to `max_prompt_length` tokens from the left by default (the end of
  a prompt, where a template puts its instruction such as "Summary:", is kept; `truncation_side` right keeps the
  start).

The train split feeds PPO; the test split feeds evaluation, so evaluation prompts are never training prompts.
"""

from __future__ import annotations

import json
import os
import random
import string

import datasets
import numpy as np

from .errors import MissingInputError, UserInputError, one_line
from .names import is_local_path

DEFAULT_DATASET = "stanfordnlp/imdb"
ROW_COLUMN = "__row__"  # a prompt's row in its split, for error messages
DATA_FILE_BUILDERS = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json",
                      ".txt": "text"}


def clean_review(text: str) -> str:
    """Replace IMDB's HTML line breaks (`<br />`, `<br/>`, `<br>`) by spaces."""
    return text.replace("<br />", " ").replace("<br/>", " ").replace("<br>", " ")


def load_reviews(dataset_name_or_path: str = DEFAULT_DATASET, split: str = "train",
                 text_column: str = "text") -> datasets.Dataset:
    """Load one split of a review dataset from a Hub id, a local folder or a local file, and check it.

    Args:
        dataset_name_or_path: a Hub dataset id (`stanfordnlp/imdb`), a local folder that `datasets.load_dataset`
            reads (parquet, csv, json files named by split), or one local file (`.parquet`, `.csv`, `.tsv`, `.json`,
            `.jsonl`, `.txt`), which then serves as whichever split is asked for.
        split: `train` for training prompts, `test` for held-out evaluation prompts.
        text_column: the column that holds the review text.

    Raises:
        MissingInputError: the local path does not exist, or a Hub id cannot be downloaded.
        UserInputError: a data file that cannot be read (empty, not UTF-8, not Parquet, a line that is not JSON: the
            file is named), the split is missing, the text column is missing (the message lists the columns found),
            or the split is empty.
    """
    ds = load_split(dataset_name_or_path, split)
    if text_column not in ds.column_names:
        raise UserInputError(
            f"Dataset {dataset_name_or_path!r} split {split!r} has no {text_column!r} column; columns found: "
            f"{ds.column_names}. Pass --text_column with the name of the column holding the text.")
    return ds


def load_split(dataset_name_or_path: str, split: str) -> datasets.Dataset:
    """One split of a dataset (Hub id, local folder or local file, as `load_reviews`), checked to exist and to hold
    rows. Raises MissingInputError / UserInputError as `load_reviews` (all but the column check)."""
    name, path = dataset_name_or_path, os.path.expanduser(dataset_name_or_path)
    if is_local_path(name) and not os.path.exists(path):
        raise MissingInputError(
            f"Prompt dataset path {name!r} does not exist. Pass a data file, a folder that `datasets.load_dataset` "
            f"can read (e.g. one with train.parquet and test.parquet) or a Hub id such as {DEFAULT_DATASET!r}.")
    dsd = _load_dataset_dict(name, path, split)
    if split not in dsd:
        raise UserInputError(f"Dataset {name!r} has no split {split!r}; splits found: {sorted(dsd)}.")
    ds = dsd[split]
    if len(ds) == 0:
        problem = diagnose_data_files(path) if os.path.exists(path) else None
        raise UserInputError(f"Dataset {name!r} split {split!r} is empty: " + (problem or "it holds no reviews."))
    return ds


def a_type(value) -> str:
    """'an int', 'a dict', ...: the type of a value as a message names it (None: 'null')."""
    if value is None:
        return "null"
    name = {"str": "string"}.get(type(value).__name__, type(value).__name__)
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def check_text_column(ds: datasets.Dataset, column: str, name: str, split: str, flag: str | None = "--text_column",
                      holds: str = "review texts", nulls: bool = True) -> None:
    """Raise UserInputError unless every value of `column` is text: a column of another type (numbers, objects,
    lists) and (with `nulls`) a null value are named with their row (counting from 0), before any map over the texts
    would fail on them with a traceback. The fix names `flag`, the option choosing the column that `holds` the texts
    (None: a command that always reads `column`).
    Reads the column's Arrow type and null count, not the rows themselves."""
    import pyarrow.compute as pc

    feature = ds.features[column]
    table = ds.with_format("arrow")[:][column] if ds._indices is not None else ds.data.column(column)
    if not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")):
        first = pc.index(pc.is_valid(table), True).as_py()
        value = ds[first][column] if first >= 0 else None
        what = a_type(value) if first >= 0 else "only nulls"
        where = f" in row {first} (from 0)" if first >= 0 else ""
        if isinstance(value, list):
            where += " (conversational prompts, lists of messages, are not supported: give the text)"
        fix = f"pass {flag} naming the column of {holds}" if flag else f"put the {holds} in column {column!r}"
        raise UserInputError(f"Dataset {name!r} split {split!r}: column {column!r} holds {what}{where}, not text; "
                             f"{fix} (columns found: {ds.column_names}).")
    if nulls and table.null_count:
        first = pc.index(pc.is_null(table), True).as_py()
        raise UserInputError(f"Dataset {name!r} split {split!r}: column {column!r} holds null in row {first} (from 0), "
                             f"not text ({table.null_count} of {len(ds)} rows are null); fill or drop those rows.")


def has_split(dataset_name_or_path: str, split: str) -> bool | None:
    """Whether the dataset (as `load_split` reads it: a single data file is its train split) has `split`; None when
    that cannot be told here (a dataset that does not load: the command's own loading then says why)."""
    name, path = dataset_name_or_path, os.path.expanduser(dataset_name_or_path)
    if os.path.isfile(path):
        return split == "train"
    try:
        return split in _load_dataset_dict(name, path, "train")
    except UserInputError:
        return None


def _load_dataset_dict(name: str, path: str, split: str) -> datasets.DatasetDict:
    """`datasets.load_dataset` of a local file (as split `split`), a local folder or a Hub id, with what it raises
    for unreadable data or an unreachable Hub turned into one-line user errors naming the file at fault."""
    from datasets.exceptions import DatasetGenerationError

    try:
        if os.path.isfile(path):
            ext = os.path.splitext(path)[1].lower()
            if ext not in DATA_FILE_BUILDERS:
                raise UserInputError(f"Data file {name!r} has an unknown format {ext or '(no extension)'!r}; use "
                                     f"one of {', '.join(DATA_FILE_BUILDERS)}.")
            return datasets.load_dataset(DATA_FILE_BUILDERS[ext], data_files={split: path})
        return datasets.load_dataset(path if os.path.exists(path) else name)
    except UserInputError:
        raise
    except StopIteration:  # datasets' JSON builder on a file with no line to infer the schema from
        problem = diagnose_data_files(path) if os.path.exists(path) else None
        raise UserInputError(f"Dataset {name!r} is empty: " + (problem or "its data files hold no rows; add rows (one "
                             "JSON object per line) or pass another --dataset_name.")) from None
    except (DatasetGenerationError, ValueError, OSError, ConnectionError) as e:
        if not os.path.exists(path):  # offline, or an unknown Hub id
            raise MissingInputError(
                f"Could not load the dataset {name!r}: it is not a local file or folder, and as a Hub id it could not "
                "be downloaded (offline, or no such dataset). Without internet, pass a local copy with "
                "--dataset_name PATH (e.g. the IMDB parquet files).") from None
        cause = e
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__
        cache = _cache_problem(e)
        if cache:
            raise UserInputError(f"Could not read the dataset {name!r}: {cache}") from None
        problem = diagnose_data_files(path)
        if problem is None and "corresponds to no data" in str(e):  # datasets' message for a split with no rows
            raise UserInputError(f"Dataset {name!r} is empty: a split holds no reviews ({one_line(e)}).") from None
        problem = problem or f"{type(cause).__name__}: {one_line(cause)}"
        raise UserInputError(f"Could not read the dataset {name!r}: {problem}") from None


def _cache_problem(error: BaseException) -> str | None:
    """What is wrong with the datasets cache, when `error` (or an exception it was raised from) is an OSError of a
    cache that cannot be written (read-only, no permission, full) on a path under it: a sentence naming the cache and
    the variables that move it; else None (the dataset itself is at fault)."""
    import errno

    from datasets import config

    cache = os.path.realpath(os.path.expanduser(str(config.HF_DATASETS_CACHE)))
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC,
                                                          errno.EDQUOT) and error.filename:
            where = os.path.realpath(os.path.expanduser(str(error.filename)))
            if os.path.commonpath([where, cache]) == cache:
                full = error.errno in (errno.ENOSPC, errno.EDQUOT)
                fix = ("free space there, or set HF_DATASETS_CACHE (or HF_HOME) to a folder on another disk" if full
                       else "set HF_DATASETS_CACHE (or HF_HOME) to a folder you can write to")
                return (f"the datasets cache {cache!r} {'is full' if full else 'is not writable'} ({error.strerror}: "
                        f"{str(error.filename)!r}); {fix}.")
        error = error.__cause__ or error.__context__
    return None


def data_files(path: str) -> list[str]:
    """The data files under a local path: the file itself, or every file with a known extension in the folder and
    its sub-folders (hidden ones skipped), sorted."""
    if os.path.isfile(path):
        return [path]
    found = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, f) for f in sorted(files)
                  if not f.startswith(".") and os.path.splitext(f)[1].lower() in DATA_FILE_BUILDERS]
    return found


def diagnose_data_files(path: str) -> str | None:
    """What is wrong with the first bad data file under `path`, as a sentence naming the file and the fix, or None:
    an empty file, a Parquet file without its magic bytes, text that is not UTF-8, a JSON-lines line that is not
    JSON. Reads every text file once (called when loading failed or gave nothing)."""
    for f in data_files(path):
        ext = os.path.splitext(f)[1].lower()
        if os.path.getsize(f) == 0:
            return f"data file {f!r} is empty; fill it or remove it."
        if ext == ".parquet":
            with open(f, "rb") as fh:
                head = fh.read(4)
                fh.seek(-4, os.SEEK_END)
                if head != b"PAR1" or fh.read(4) != b"PAR1":
                    return f"data file {f!r} is not a Parquet file (truncated, or another format); write it again."
            continue
        try:
            with open(f, encoding="utf-8") as fh:
                text = fh.read()
        except UnicodeDecodeError as e:
            return (f"data file {f!r} is not UTF-8 text ({e.reason} at byte {e.start}); convert it to UTF-8 "
                    "(e.g. `iconv -f latin1 -t utf-8`).")
        if ext in (".json", ".jsonl"):
            problem = _json_lines_problem(text)
            if problem:
                return f"{problem} of data file {f!r} is not JSON; write one JSON object per line."
    return None


def _json_lines_problem(text: str) -> str | None:
    """'line N' of the first line of a JSON-lines text that does not parse (None when all do, or the whole text is
    one JSON document)."""
    try:
        json.loads(text)
        return None
    except ValueError:
        pass
    for i, line in enumerate(text.splitlines(), 1):
        try:
            if line.strip():
                json.loads(line)
        except ValueError:
            return f"line {i}"
    return None


class QueryOrder:
    """The order in which PPO reads its training queries: a seeded permutation of `dataset` (rows with `input_ids`
    and `query`) for each pass over it (numpy's `default_rng(seed + pass)`), so a resumed run reads exactly the
    queries an uninterrupted one would, and each process its own slice of every step's global batch."""

    def __init__(self, dataset: datasets.Dataset, seed: int):
        self.dataset, self.seed = dataset, seed
        self._pass, self._perm = None, None

    def batch(self, step: int, global_batch: int, process_index: int, batch_size: int) -> tuple[list[list[int]],
                                                                                                 list[str]]:
        """(query token lists, query texts) of PPO step `step` for process `process_index`: `batch_size` rows."""
        n = len(self.dataset)
        start = step * global_batch + process_index * batch_size
        idx = []
        for pos in range(start, start + batch_size):
            epoch, offset = divmod(pos, n)
            if self._pass != epoch:  # one permutation per pass, cached
                self._perm, self._pass = np.random.default_rng(self.seed + epoch).permutation(n), epoch
            idx.append(int(self._perm[offset]))
        rows = self.dataset.select(idx)
        return rows["input_ids"], rows["query"]


def build_prompt_dataset(
    tokenizer,
    dataset_name_or_path: str = DEFAULT_DATASET,
    split: str = "train",
    *,
    text_column: str = "text",
    min_review_chars: int = 200,
    min_query_tokens: int = 2,
    max_query_tokens: int = 8,
    num_prompts: int | None = None,
    seed: int = 0,
    prompt_column: str | None = None,
    prompt_template: str | None = None,
    max_prompt_length: int | None = None,
    truncation_side: str = "left",
) -> datasets.Dataset:
    """Build the query dataset: the first L tokens of each long-enough review, L ~ U[min, max]; or, when
    `prompt_column` or `prompt_template` is given, the prompts of a prompt-only dataset (`build_prompt_only_dataset`,
    which takes the last four arguments).

    Args:
        tokenizer: the policy's tokenizer (any `PreTrainedTokenizerBase`; a pad token is not needed).
        num_prompts: keep only the first `num_prompts` queries after a seeded shuffle (None: all).
        seed: seeds both the shuffle and the query lengths.

    Returns:
        A `datasets.Dataset` with columns `input_ids` (list[int], length L in [min, max]) and `query`
        (the decoded query text).

    Raises:
        UserInputError: bad lengths, or no review is longer than `min_review_chars` (plus the errors of
            `load_reviews`).
    """
    if prompt_column is not None or prompt_template is not None:
        return build_prompt_only_dataset(tokenizer, dataset_name_or_path, split, prompt_column=prompt_column,
                                         prompt_template=prompt_template, max_prompt_length=max_prompt_length,
                                         truncation_side=truncation_side, num_prompts=num_prompts, seed=seed)
    if not 1 <= min_query_tokens <= max_query_tokens:
        raise UserInputError(
            f"Query lengths must satisfy 1 <= min_query_tokens <= max_query_tokens; got {min_query_tokens} and "
            f"{max_query_tokens}."
        )
    ds = load_reviews(dataset_name_or_path, split, text_column)
    check_text_column(ds, text_column, dataset_name_or_path, split)
    ds = ds.map(lambda b: {"text": [clean_review(t) for t in b[text_column]]}, batched=True,
                remove_columns=ds.column_names)
    ds = ds.filter(lambda b: [len(t) > min_review_chars for t in b["text"]], batched=True)
    if len(ds) == 0:
        raise UserInputError(
            f"No review in {dataset_name_or_path!r} split {split!r} is longer than {min_review_chars} characters; "
            "lower --min_review_chars or use another dataset."
        )
    ds = ds.shuffle(seed=seed)
    if num_prompts is not None:
        if num_prompts < 1:
            raise UserInputError(f"num_prompts must be at least 1, got {num_prompts}.")
        ds = ds.select(range(min(num_prompts, len(ds))))
    rng = random.Random(seed)
    lengths = [rng.randint(min_query_tokens, max_query_tokens) for _ in range(len(ds))]

    def tokenize(batch, indices):
        # Only the head of each review is needed; 4 characters per token is a generous bound.
        heads = [t[: 16 * max_query_tokens] for t in batch["text"]]
        ids = tokenizer(heads, add_special_tokens=False)["input_ids"]
        ids = [x[: lengths[i]] for x, i in zip(ids, indices)]
        return {"input_ids": ids, "query": tokenizer.batch_decode(ids)}

    return ds.map(tokenize, batched=True, with_indices=True, remove_columns=["text"])


def template_fields(template: str) -> list[str]:
    """The `{column}` fields of a prompt template, in order. Raises UserInputError for a template `str.format` cannot
    fill from columns (unbalanced braces, positional `{}` or `{0}` fields)."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise UserInputError(f"--prompt_template {template!r} is not a valid template ({e}); write fields as "
                             "{column} and literal braces as {{ and }}.") from None
    if not fields or any(not f or f.isdigit() for f in fields):
        raise UserInputError(f"--prompt_template {template!r} must name the dataset's columns as {{column}} fields, "
                             "e.g. 'Summarize:\n\n{dialogue}\n\nSummary:'.")
    return list(dict.fromkeys(f.split(".")[0].split("[")[0] for f in fields))


def build_prompt_only_dataset(
    tokenizer,
    dataset_name_or_path: str,
    split: str = "train",
    *,
    prompt_column: str | None = "prompt",
    prompt_template: str | None = None,
    max_prompt_length: int | None = None,
    truncation_side: str = "left",
    num_prompts: int | None = None,
    seed: int = 0,
) -> datasets.Dataset:
    """The queries of a prompt-only dataset (TRL's format): each row's prompt, used as is.

    Args:
        tokenizer: the policy's tokenizer. Prompts are tokenized with its special tokens (as TRL's trainers do: T5
            appends `</s>` to its encoder input, GPT-2 adds nothing).
        prompt_column: the column holding the prompt text (TRL: `prompt`); ignored when `prompt_template` is given.
        prompt_template: builds each prompt with `str.format` from the row's columns, e.g.
            "Summarize the following conversation.\n\n{dialogue}\n\nSummary:".
        max_prompt_length: cut longer prompts to this many tokens (special tokens included); None keeps them whole.
        truncation_side: `left` drops a long prompt's first tokens (keeps its end, where templates put the
            instruction), `right` its last tokens.
        num_prompts: keep only the first `num_prompts` prompts after a shuffle seeded by `seed` (None: all).

    Returns:
        A `datasets.Dataset` with columns `input_ids` (list[int]) and `query` (the prompt text; for a truncated
        prompt, the decoded kept tokens).

    Raises:
        UserInputError: the prompt column, or a column the template names, is missing (the columns found are listed);
            a prompt is empty or not text (the row is named); a bad template, max_prompt_length or truncation_side;
            plus the errors of `load_split` (missing path, unreadable data, missing split, empty split).
    """
    if max_prompt_length is not None and max_prompt_length < 1:
        raise UserInputError(f"max_prompt_length must be at least 1 (or unset to keep prompts whole), got "
                             f"{max_prompt_length}.")
    if truncation_side not in ("left", "right"):
        raise UserInputError(f"truncation_side must be 'left' or 'right', got {truncation_side!r}.")
    name = dataset_name_or_path
    columns = template_fields(prompt_template) if prompt_template is not None else [prompt_column]
    ds = load_split(name, split)
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        flag = "--prompt_template names" if prompt_template is not None else "--prompt_column is"
        raise UserInputError(f"Dataset {name!r} split {split!r} has no column {', '.join(map(repr, missing))} "
                             f"({flag} it); columns found: {ds.column_names}. Pass the column holding the prompts.")
    if prompt_template is None:  # a column of numbers or objects: named at its first row (nulls: by prompt_of)
        check_text_column(ds, prompt_column, name, split, "--prompt_column", "prompts", nulls=False)
    ds = ds.select_columns(columns).add_column(ROW_COLUMN, range(len(ds))).shuffle(seed=seed)
    if num_prompts is not None:
        if num_prompts < 1:
            raise UserInputError(f"num_prompts must be at least 1, got {num_prompts}.")
        ds = ds.select(range(min(num_prompts, len(ds))))

    def prompt_of(row: dict, index: int) -> str:
        for c in columns:
            if not isinstance(row[c], str):
                what = "missing" if row[c] is None else f"{a_type(row[c])}, not text"
                hint = (" (conversational prompts, lists of messages, are not supported: give the text)"
                        if isinstance(row[c], list) else "")
                raise UserInputError(f"Dataset {name!r} split {split!r}: column {c!r} of row {index} (from 0) is "
                                     f"{what}{hint}; fix or drop that row.")
        text = prompt_template.format(**row) if prompt_template is not None else row[prompt_column]
        if not text.strip():
            raise UserInputError(f"Dataset {name!r} split {split!r}: the prompt of row {index} (from 0) is empty; fill "
                                 "it or drop that row.")
        return text

    def tokenize(batch):
        rows = [{c: batch[c][i] for c in columns} for i in range(len(batch[ROW_COLUMN]))]
        texts = [prompt_of(row, i) for row, i in zip(rows, batch[ROW_COLUMN])]
        kwargs = {"truncation": True, "max_length": max_prompt_length} if max_prompt_length else {}
        side, tokenizer.truncation_side = tokenizer.truncation_side, truncation_side
        try:
            ids = tokenizer(texts, **kwargs)["input_ids"]
            full = [len(x) for x in tokenizer(texts)["input_ids"]] if max_prompt_length else [len(x) for x in ids]
        finally:
            tokenizer.truncation_side = side
        queries = [t if len(x) == n else tokenizer.decode(x, skip_special_tokens=True)
                   for t, x, n in zip(texts, ids, full)]
        return {"input_ids": ids, "query": queries}

    return ds.map(tokenize, batched=True, remove_columns=[*columns, ROW_COLUMN])
