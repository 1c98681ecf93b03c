"""Hub push: `rlhf-demo push --model RUN_DIR --repo_id NAMESPACE/NAME`.

What goes up, in one commit (`HfApi.create_commit`): the aligned policy (safetensors weights, config, generation
config, tokenizer files), `value_model/`, `training_config.yaml`, `run_info.json`, `metrics.jsonl`, `eval/`
(results, report, plots, samples), `checkpoints/` only with `--include_checkpoints`, and `README.md`: the model card
of `rlhf_demo.card`. A run without `eval/` is evaluated first (`rlhf_demo.publish.evaluate_run`, as at the end of
`rlhf-demo train`) unless `--eval_num_prompts 0`. `--eval_only` uploads `eval/` and the card alone.

Every uploaded text file is portable: absolute paths of this machine are rewritten by
`rlhf_demo.portable.portable_text` (the run folder's own files relative to it, the package's files relative to its
parent folder, anything else by name), so no card, config, run info or eval report carries a machine's paths.

`--dry_run --output_dir DIR` writes exactly the folder that would be uploaded and touches no network.
The token (`--token`, else `HF_TOKEN`, else the huggingface_hub login) is never printed, logged, written or put in
an error message. Every request has a connect and a read timeout (`--connect_timeout`, `--timeout`), and each answer
must arrive in full within `--timeout` seconds, so a server that stops answering or trickles counts as a failed
attempt; transient failures (connection errors, timeouts, 408, 429, 5xx) are retried with exponential backoff, or
after the Hub's Retry-After when longer (capped at RETRY_AFTER_CAP_S). The whole exchange with the Hub ends within
`--push_deadline` seconds, waits included (huggingface_hub's own retries do not sleep a Retry-After in a push). A
retry re-runs the whole commit, and since the Hub reports the blob id of files it already holds, an identical
re-upload is a no-op, so a retry never half-uploads or duplicates. A push that fails says whether a commit landed (it
looks at the branch's head) and deletes the repository or branch it created when nothing landed in it. Errors come
back as one-line `HubPushError`s.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from fnmatch import fnmatch
from typing import TypeVar

import httpcore2
import httpx2
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import hf_raise_for_status, parse_ratelimit_headers

from rlhf_demo.card import build_model_card
from rlhf_demo.config import PushConfig
from rlhf_demo.errors import UserInputError
from rlhf_demo.eval.samples import SAMPLES_FILE
from rlhf_demo.portable import portable_text

__all__ = ["HubPushError", "check_run_dir", "commit_to_hub", "configure_timeouts", "prepare_upload_folder", "push",
           "scrub_secrets", "select_upload_files", "upload_contents", "write_folder"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Files of a run directory that belong in the model repo (top level, value_model/ and eval/). Everything else
# (optimizer and scheduler state, rng states, stray files) stays local; checkpoints/ goes up only when asked.
MODEL_FILE_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "config.json", "generation_config.json",
                       "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                       "vocab.json", "merges.txt", "vocab.txt", "*.model", "chat_template.jinja", "chat_template.json")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")  # peft's save_pretrained
RUN_FILES = ("training_config.yaml", "run_info.json", "metrics.jsonl", "training_curves.png")
EVAL_FILE_PATTERNS = ("eval_results.json", "eval_report.md", "*.png", "*.svg", SAMPLES_FILE)
TEXT_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml", ".md", ".txt", ".csv")
Contents = dict[str, "str | bytes"]  # path in the repo -> local file, or the bytes to upload


class HubPushError(UserInputError):
    """A push that cannot go on; the message is one line, says what to change and what happened on the Hub, and
    never holds the token."""


# --------------------------------------------------------------------------------------------- run directory
def check_run_dir(run_dir: str) -> None:
    """Raise HubPushError unless `run_dir` holds a loadable model (weights and config) and, for a training run, every
    part of its final export (`rlhf_demo.runs.export_problem` names what is missing)."""
    if not os.path.isdir(run_dir):
        raise HubPushError(f"Run directory {run_dir!r} does not exist; pass the --output_dir of `rlhf-demo train`.")
    adapter = all(os.path.isfile(os.path.join(run_dir, n)) for n in ADAPTER_FILES)  # a LoRA adapter folder (peft)
    if not adapter and not any(os.path.isfile(os.path.join(run_dir, n)) for n in ("model.safetensors",
                                                                                   "model.safetensors.index.json")):
        raise HubPushError(f"No model weights (model.safetensors) in {run_dir!r}; did `rlhf-demo train` finish? "
                           "(checkpoints/ hold resumable states, not the final model).")
    if not adapter and not os.path.isfile(os.path.join(run_dir, "config.json")):
        raise HubPushError(f"No config.json in {run_dir!r}; the model cannot be loaded without it.")
    from rlhf_demo.runs import export_problem

    problem = export_problem(run_dir)
    if problem:
        raise HubPushError(problem)


def _walk(root: str) -> list[str]:
    """Files under `root`, as sorted POSIX paths relative to it (links to directories not followed)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith("."):
                out.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return sorted(out)


def select_upload_files(run_dir: str, include_checkpoints: bool = False) -> dict[str, str]:
    """Map of path in the repo -> local file, for everything of `run_dir` that goes up (the card excluded)."""
    files: dict[str, str] = {}

    def add(sub: str, patterns: tuple[str, ...], recursive: bool = False):
        base = os.path.join(run_dir, sub) if sub else run_dir
        if not os.path.isdir(base):
            return
        names = _walk(base) if recursive else sorted(
            n for n in os.listdir(base) if os.path.isfile(os.path.join(base, n)) and not n.startswith("."))
        for rel in names:
            if recursive or any(fnmatch(rel, p) for p in patterns):
                files[f"{sub}/{rel}" if sub else rel] = os.path.join(base, rel)

    add("", MODEL_FILE_PATTERNS + ADAPTER_FILES + RUN_FILES)
    add("value_model", MODEL_FILE_PATTERNS)
    add("adapter", MODEL_FILE_PATTERNS + ADAPTER_FILES + ("README.md",))  # a LoRA run's adapter, peft's own card
    add("runs", (), recursive=True)  # TensorBoard event files (--report_to tensorboard): the Hub's metrics tab
    add("eval", EVAL_FILE_PATTERNS)
    if include_checkpoints:
        add("checkpoints", (), recursive=True)
    files.pop("README.md", None)  # ours is the card
    return files


def upload_contents(run_dir: str, repo_id: str, include_checkpoints: bool = False, license: str = "mit",
                    eval_only: bool = False) -> Contents:
    """What a push of `run_dir` as `repo_id` uploads: path in the repo -> local file (binary files) or bytes (text
    files with their paths made portable by `rlhf_demo.portable.portable_text`, and the card as README.md).
    `eval_only`: eval/ and the card alone."""
    files = select_upload_files(run_dir, include_checkpoints)
    if eval_only:
        files = {p: src for p, src in files.items() if p.startswith("eval/")}
    contents: Contents = {}
    for path_in_repo, src in files.items():
        name = path_in_repo.rsplit("/", 1)[-1]
        # The run's own records (configs, logs, eval) name paths; the model's files (config, tokenizer) stay as saved.
        if path_in_repo.endswith(TEXT_SUFFIXES) and not any(fnmatch(name, p) for p in MODEL_FILE_PATTERNS):
            with open(src, encoding="utf-8", errors="surrogateescape") as f:
                text = portable_text(f.read(), run_dir, repo_id)
            contents[path_in_repo] = text.encode("utf-8", errors="surrogateescape")
        else:
            contents[path_in_repo] = src
    contents["README.md"] = str(build_model_card(run_dir, repo_id, license)).encode("utf-8")
    return dict(sorted(contents.items()))


def write_folder(contents: Contents, dest: str) -> list[str]:
    """Write `contents` (see `upload_contents`) under `dest`, which must be new or empty; return the paths, sorted.
    Raises HubPushError for a `dest` that is not empty."""
    if os.path.isdir(dest) and os.listdir(dest):
        raise HubPushError(f"Output directory {dest!r} is not empty; choose a new or empty directory for --dry_run.")
    os.makedirs(dest, exist_ok=True)
    for path_in_repo, data in contents.items():
        target = os.path.join(dest, *path_in_repo.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if isinstance(data, bytes):
            with open(target, "wb") as f:
                f.write(data)
        else:
            shutil.copyfile(data, target)
    return sorted(contents)


def prepare_upload_folder(run_dir: str, dest: str, repo_id: str, include_checkpoints: bool = False,
                          license: str = "mit", eval_only: bool = False) -> list[str]:
    """Write to `dest` (new or empty) exactly what `push` uploads; return the paths in the repo, sorted.
    Raises HubPushError for a run folder without a model or a `dest` that is not empty."""
    check_run_dir(run_dir)
    if os.path.isdir(dest) and os.listdir(dest):
        raise HubPushError(f"Output directory {dest!r} is not empty; choose a new or empty directory for --dry_run.")
    return write_folder(upload_contents(run_dir, repo_id, include_checkpoints, license, eval_only), dest)


# --------------------------------------------------------------------------------------------- requests
RETRYABLE_STATUSES = (408, 429, 500, 502, 503, 504)  # what huggingface_hub's `http_backoff` retries, and we do
RETRY_AFTER_CAP_S = 60.0  # the longest wait, in seconds, that a Hub's Retry-After (or RateLimit reset) gets
DEFAULT_PUSH_DEADLINE_S = 1800.0  # seconds the Hub part of a push may take when PushConfig has no push_deadline
DEADLINE_FLAG = "--push_deadline"
_TIMEOUTS: tuple[float, float] | None = None


class _PushDeadline(Exception):
    """The wall-clock deadline of a push passed, during `doing` (or its next retry would wait past it: `last` is then
    the failure retried, `wait` the wait in seconds, `asked` the Hub's Retry-After in seconds). Not an httpx error on
    purpose: huggingface_hub's own retries (`http_backoff`) let it through, so it ends the push at once."""

    def __init__(self, doing: str, what: str = "", last: BaseException | None = None, wait: float | None = None,
                 asked: float | None = None):
        super().__init__(f"push deadline passed while {doing}")
        self.doing, self.what, self.last, self.wait, self.asked = doing, what, last, wait, asked


class AnswerTimeout(httpx2.ReadTimeout):
    """An answer that kept arriving (a byte now and then, so no read timed out) for longer than its budget. A
    ReadTimeout, so huggingface_hub's retries and ours treat it as one."""


@dataclass(frozen=True)
class _Budget:
    """Time limits of the requests made in one context (a push): `deadline` (a `time.monotonic()` time) for
    everything, `seconds` its length (for messages), and `answer_s` seconds for each answer, from the first read
    after its request was sent to its last byte."""

    deadline: float
    seconds: float
    answer_s: float


_BUDGET: ContextVar[_Budget | None] = ContextVar("rlhf_demo_hub_budget", default=None)


@contextmanager
def _time_budget(seconds: float, answer_s: float):
    """Within the block, every Hub request of this thread (this context) ends by `seconds` from now, each answer within
    `answer_s` seconds, and 408/429/5xx answers raise at once (huggingface_hub does not retry or sleep on them):
    `_with_retries` decides, knowing the deadline. Requests in threads huggingface_hub starts itself (parallel LFS
    uploads) keep their per-read timeouts only, and the xet uploader (Rust) is outside httpx."""
    token = _BUDGET.set(_Budget(time.monotonic() + seconds, seconds, answer_s))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _time_left() -> float | None:
    """Seconds left before this context's deadline (None: no deadline)."""
    budget = _BUDGET.get()
    return None if budget is None else budget.deadline - time.monotonic()


def _bounded(timeout: float | None, doing: str) -> float | None:
    """`timeout` (seconds, None: none) cut to the time left before the deadline; raises _PushDeadline when none is
    left."""
    left = _time_left()
    if left is None:
        return timeout
    if left <= 0:
        raise _PushDeadline(doing)
    return left if timeout is None else min(timeout, left)


class _GuardedStream(httpcore2.NetworkStream):
    """A connection whose every read and write ends by the deadline of the request's context, and whose answer to a
    request must arrive in full within the budget's `answer_s` (httpx's read timeout applies to each read, so a server
    that trickles a byte a second would never time out)."""

    def __init__(self, stream: httpcore2.NetworkStream):
        self._stream = stream
        self._answer_since: float | None = None  # monotonic time of the first read of the current answer
        self._answer_bytes = 0  # of the current answer, received so far

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        budget = _BUDGET.get()
        if budget is None:
            return self._stream.read(max_bytes, timeout)
        now = time.monotonic()
        if self._answer_since is None:
            self._answer_since = now
        answer_end = self._answer_since + budget.answer_s
        end = min(budget.deadline, answer_end)
        if end <= now:
            raise self._expired(budget, answer_end)
        try:
            data = self._stream.read(max_bytes, end - now if timeout is None else min(timeout, end - now))
        except httpcore2.ReadTimeout:
            if time.monotonic() >= end and (budget.deadline <= answer_end or self._answer_bytes):
                raise self._expired(budget, answer_end) from None
            raise  # nothing came at all: a plain read timeout
        self._answer_bytes += len(data)
        return data

    def _expired(self, budget: _Budget, answer_end: float) -> Exception:
        if budget.deadline <= answer_end:
            return _PushDeadline("waiting for the Hub's answer")
        return AnswerTimeout(f"the Hub's answer did not arrive in full within {budget.answer_s:g} s "
                             f"({self._answer_bytes} bytes came)")

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._answer_since, self._answer_bytes = None, 0  # a request goes out: its answer starts at the next read
        try:
            self._stream.write(buffer, _bounded(timeout, "sending a request"))
        except httpcore2.WriteTimeout:
            _bounded(None, "sending a request")  # raises _PushDeadline when it was the deadline
            raise

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore2.NetworkStream:
        return _GuardedStream(self._stream.start_tls(ssl_context, server_hostname, _bounded(timeout, "connecting")))

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


class _GuardedBackend(httpcore2.NetworkBackend):
    """httpcore's network backend with `_GuardedStream` connections, whose connect ends by the deadline."""

    def __init__(self, backend: httpcore2.NetworkBackend):
        self._backend = backend

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            stream = self._backend.connect_tcp(host, port, _bounded(timeout, "connecting"), local_address,
                                               socket_options)
        except httpcore2.ConnectTimeout:
            _bounded(None, "connecting")
            raise
        return _GuardedStream(stream)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        try:
            stream = self._backend.connect_unix_socket(path, _bounded(timeout, "connecting"), socket_options)
        except httpcore2.ConnectTimeout:
            _bounded(None, "connecting")
            raise
        return _GuardedStream(stream)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _retry_after(headers, status: int | None = None) -> float | None:
    """Seconds the Hub asks to wait before a retry: its `Retry-After` header (seconds or an HTTP date) or, on a 429,
    the reset of an exhausted `RateLimit` header (huggingface_hub sleeps either), the longer of the two; None when it
    says nothing usable."""
    asked = []
    value = (headers.get("retry-after") or "").strip()
    if value:
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds()
            except (TypeError, ValueError, OverflowError):
                seconds = math.nan
        if math.isfinite(seconds):
            asked.append(max(seconds, 0.0))
    if status == 429:
        info = parse_ratelimit_headers(headers)
        if info is not None and info.remaining == 0:
            asked.append(float(info.reset_in_seconds))
    return max(asked) if asked else None


def _retryable_answer_hook(response: httpx2.Response) -> None:
    """httpx response hook: within a `_time_budget` (a push), a 408/429/5xx answer raises its HfHubHTTPError at once,
    so huggingface_hub's `http_backoff` neither retries it nor sleeps its Retry-After (it would sleep a Retry-After of
    3600 s in full, up to 5 times): `_with_retries` does, capped and within the deadline. Elsewhere only an answer
    asking for a wait above RETRY_AFTER_CAP_S raises, and the log says so."""
    if response.status_code not in RETRYABLE_STATUSES:
        return
    if _BUDGET.get() is None:
        asked = _retry_after(response.headers, response.status_code)
        if asked is None or asked <= RETRY_AFTER_CAP_S:
            return  # huggingface_hub may retry it: its wait is at most the cap + 1 s
        logger.warning("The Hub answered HTTP %d to %s %s and asked to wait %g s before a retry; not waiting longer "
                       "than %g s, so this request fails now.", response.status_code, response.request.method,
                       response.request.url.path, asked, RETRY_AFTER_CAP_S)
    response.read()  # the error message is in the body (a `_time_budget` bounds the read)
    hf_raise_for_status(response)


def configure_timeouts(connect: float, read: float) -> None:
    """Give every request huggingface_hub makes in this process a connect timeout of `connect` and a read (and write)
    timeout of `read` seconds (its default client waits forever), through `huggingface_hub.set_client_factory`.

    Its connections also obey the `_time_budget` of the code that makes the request (a push: a total deadline and a
    budget for each answer), and huggingface_hub never sleeps a Retry-After longer than RETRY_AFTER_CAP_S seconds
    (`_retryable_answer_hook`). Does nothing when these timeouts are already set (a new factory closes the shared
    client)."""
    global _TIMEOUTS
    if _TIMEOUTS == (connect, read):
        return
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils._http import default_client_factory

    def factory():
        client = default_client_factory()
        client.timeout = httpx2.Timeout(read, connect=connect)
        client.event_hooks = {**client.event_hooks,
                              "response": [*client.event_hooks.get("response", []), _retryable_answer_hook]}
        # The transports (the default one and any proxy's) connect through `_GuardedBackend`. httpx does not pass a
        # network backend through to httpcore, so it is set on each transport's connection pool.
        for transport in [client._transport, *client._mounts.values()]:
            pool = getattr(transport, "_pool", None)
            backend = getattr(pool, "_network_backend", None)
            if backend is not None and not isinstance(backend, _GuardedBackend):
                pool._network_backend = _GuardedBackend(backend)
        return client

    set_client_factory(factory)
    _TIMEOUTS = (connect, read)


def _status(e: BaseException) -> int | None:
    response = getattr(e, "response", None)
    return getattr(response, "status_code", None) if response is not None else None


def _is_timeout(e: BaseException) -> bool:
    return isinstance(e, TimeoutError) or type(e).__name__.endswith("Timeout")


def _is_transient(e: BaseException) -> bool:
    """Connection problems, timeouts, 408, 429 and 5xx are worth retrying; anything else (4xx, offline mode, a passed
    deadline) is not."""
    if isinstance(e, (OfflineModeIsEnabled, _PushDeadline)):
        return False
    if isinstance(e, HfHubHTTPError):
        status = _status(e)
        return status is None or status in RETRYABLE_STATUSES or status >= 500
    for module in ("httpx2", "httpx"):  # huggingface_hub 2 runs on httpx2; older ones on httpx
        try:
            transport_error = __import__(module).TransportError
        except (ImportError, AttributeError):
            continue
        if isinstance(e, transport_error):
            return True
    return isinstance(e, (ConnectionError, TimeoutError))


def _deadline_in(e: BaseException) -> _PushDeadline | None:
    """The _PushDeadline `e` is or wraps (huggingface_hub wraps LFS upload errors in a RuntimeError), else None."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, _PushDeadline):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _describe(e: BaseException) -> str:
    """What failed, briefly: `HTTP 429 on POST /api/models/NAMESPACE/NAME/preupload/main`, else the error's type."""
    status = _status(e)
    if not status:
        return type(e).__name__
    try:
        request = e.response.request
        return f"HTTP {status} on {request.method} {request.url.path}"
    except (AttributeError, RuntimeError):  # an httpx response without its request
        return f"HTTP {status}"


def _retry_wait(e: BaseException, cfg: PushConfig, attempt: int) -> tuple[float, float | None]:
    """Seconds to wait before retry `attempt + 1` after `e`: the backoff `retry_base_wait * 2**attempt`, or the Hub's
    Retry-After when longer, capped at RETRY_AFTER_CAP_S; and the Retry-After in seconds (None: none)."""
    backoff = cfg.retry_base_wait * 2 ** attempt
    response = getattr(e, "response", None)
    asked = _retry_after(response.headers, _status(e)) if response is not None else None
    return (backoff if asked is None else max(backoff, min(asked, RETRY_AFTER_CAP_S))), asked


def _with_retries(fn: Callable[[], T], what: str, cfg: PushConfig) -> T:
    """Call `fn`, retrying transient failures (connection errors, timeouts, 408, 429, 5xx) `cfg.max_retries` times.

    The waits are `retry_base_wait` seconds, doubled at each retry, or the Hub's Retry-After when longer, capped at
    RETRY_AFTER_CAP_S (the log says the wait and that it was capped). Raises _PushDeadline, without retrying, when the
    deadline of the `_time_budget` passed or the next wait would end past it."""
    for attempt in range(cfg.max_retries + 1):
        try:
            _bounded(None, f"starting attempt {attempt + 1}")
            return fn()
        except Exception as e:
            late = _deadline_in(e)
            if late is not None:
                late.what = late.what or what
                raise late from None
            if not _is_transient(e) or attempt == cfg.max_retries:
                raise
            wait, asked = _retry_wait(e, cfg, attempt)
            left = _time_left()
            if left is not None and wait >= left:
                raise _PushDeadline(f"waiting {wait:.1f} s to retry", what, e, wait, asked) from e
            note = ""
            if asked is not None:
                note = (f" (the Hub asked for {asked:g} s; capped at {RETRY_AFTER_CAP_S:g} s)"
                        if asked > RETRY_AFTER_CAP_S else f" (the Hub asked for {asked:g} s)")
            logger.warning("%s failed (%s); retry %d/%d in %.1f s%s.", what, _describe(e), attempt + 1, cfg.max_retries,
                           wait, note)
            time.sleep(wait)
    raise AssertionError("unreachable")


def scrub_secrets(text: str, secrets: list[str]) -> str:
    """`text` with every non-empty string of `secrets` (tokens) replaced by `***`."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


# --------------------------------------------------------------------------------------------- commit
def _push_deadline(cfg: PushConfig) -> float:
    """Seconds the Hub part of a push may take: `cfg.push_deadline` (DEFAULT_PUSH_DEADLINE_S without one)."""
    seconds = getattr(cfg, "push_deadline", None)
    return DEFAULT_PUSH_DEADLINE_S if seconds is None else float(seconds)


def _deadline_failure(e: _PushDeadline, cfg: PushConfig, where: str, endpoint: str) -> str:
    """The sentence for a push that ran out of time: the deadline, what was going on, what to change."""
    what = e.what or "a request"
    if e.last is not None:
        asked = ""
        if e.asked is not None:
            capped = f", capped at {RETRY_AFTER_CAP_S:g} s" if e.asked > RETRY_AFTER_CAP_S else ""
            asked = f" (the Hub asked for {e.asked:g} s{capped})"
        detail = (f"{what} failed ({_describe(e.last)}) and its retry would wait {e.wait:.1f} s{asked}, past the "
                  "deadline")
    else:
        detail = f"it passed while {what} was {e.doing} (the Hub at {endpoint})"
    advice = ("try again later or raise " + DEADLINE_FLAG if e.asked is not None else
              f"raise {DEADLINE_FLAG} for a slow link or check the network (or HF_ENDPOINT), and try again")
    return f"The push to {where} did not finish within {_push_deadline(cfg):g} s ({DEADLINE_FLAG}): {detail}; {advice}."


def _failure(e: Exception, cfg: PushConfig, repo_id: str, endpoint: str) -> str:
    """What went wrong, in one sentence that says what to change."""
    status, where = _status(e), f"{repo_id} (revision {cfg.revision})"
    namespace = repo_id.split("/")[0]
    if isinstance(e, _PushDeadline):
        return _deadline_failure(e, cfg, where, endpoint)
    if status == 401:
        return (f"Authentication failed (HTTP 401) for {repo_id}: the Hugging Face token is missing, invalid or "
                "expired. Set HF_TOKEN to a token with write access or run `hf auth login`.")
    if status == 403:
        return (f"Permission denied (HTTP 403) for {repo_id}: the token cannot write to namespace {namespace!r}. Use "
                "a token with write access to it, or push to a namespace you own.")
    if status == 404:
        return (f"Not found (HTTP 404): namespace {namespace!r} or repository {where} does not exist or is not "
                "visible with this token. Check --repo_id and --revision.")
    if status is not None:
        server = f": {e.server_message}" if isinstance(e, HfHubHTTPError) and getattr(e, "server_message", None) else ""
        return f"The Hub answered HTTP {status} for {where} after {cfg.max_retries + 1} attempt(s){server}."
    if isinstance(e, AnswerTimeout):
        return (f"The Hub at {endpoint} sent its answer too slowly: not complete within {cfg.timeout:g} s (--timeout "
                f"bounds each read and each whole answer) after {cfg.max_retries + 1} attempt(s); check the network "
                "(or HF_ENDPOINT), raise --timeout for a slow link, and try again.")
    if _is_timeout(e):
        return (f"The Hub at {endpoint} did not answer within the timeouts (connect {cfg.connect_timeout:g} s, read "
                f"{cfg.timeout:g} s; {type(e).__name__}) after {cfg.max_retries + 1} attempt(s); check the network "
                "(or HF_ENDPOINT), raise --timeout for a slow link, and try again.")
    if _is_transient(e):
        return (f"Could not reach the Hub at {endpoint} after {cfg.max_retries + 1} attempt(s) ({type(e).__name__}); "
                "check the network (or HF_ENDPOINT) and try again.")
    return f"Push to {where} failed: {type(e).__name__}: {e}"


class _Commit:
    """One push of `contents` to `repo_id`: the repository and branch it creates, the branch head before the commit
    (to tell afterwards whether a commit landed), and the cleanup of what it created when nothing landed."""

    def __init__(self, api: HfApi, cfg: PushConfig, repo_id: str, repo_type: str, space_sdk: str | None = None):
        self.api, self.cfg, self.repo_id, self.repo_type, self.space_sdk = api, cfg, repo_id, repo_type, space_sdk
        self.created_repo = self.created_branch = self.committing = False
        self.head: str | None = None

    def _head(self) -> str | None:
        """The commit the branch points to (None when the repository or branch does not exist)."""
        try:
            return self.api.repo_info(self.repo_id, repo_type=self.repo_type, revision=self.cfg.revision,
                                      timeout=self.cfg.timeout).sha
        except (RepositoryNotFoundError, RevisionNotFoundError):
            return None

    def prepare(self, must_exist: bool = False) -> None:
        """Create the repository and branch when missing (remembering that this push created them)."""
        cfg, api = self.cfg, self.api
        exists = _with_retries(lambda: self._exists(), "repo_info", cfg)
        if not exists:
            if must_exist:
                raise HubPushError(f"{self.repo_id} does not exist on the Hub (or this token cannot see it); "
                                   "--eval_only updates a pushed model: push it first without --eval_only.")
            _with_retries(lambda: api.create_repo(self.repo_id, private=cfg.private, repo_type=self.repo_type,
                                                  exist_ok=True, space_sdk=self.space_sdk), "create_repo", cfg)
            self.created_repo = True
        if cfg.revision != "main" and _with_retries(self._head, "repo_info", cfg) is None:
            _with_retries(lambda: api.create_branch(self.repo_id, branch=cfg.revision, repo_type=self.repo_type,
                                                    exist_ok=True), "create_branch", cfg)
            self.created_branch = True
        self.head = _with_retries(self._head, "repo_info", cfg)

    def _exists(self) -> bool:
        try:
            self.api.repo_info(self.repo_id, repo_type=self.repo_type, timeout=self.cfg.timeout)
            return True
        except RepositoryNotFoundError:
            return False

    def commit(self, contents: Contents, message: str):
        def attempt():
            # Fresh operations each attempt: a CommitOperationAdd cannot be reused once committed.
            ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=data) for p, data in contents.items()]
            return self.api.create_commit(repo_id=self.repo_id, operations=ops, commit_message=message,
                                          revision=self.cfg.revision, repo_type=self.repo_type)

        self.committing = True
        return _with_retries(attempt, "commit", self.cfg)

    def outcome(self) -> str:
        """After a failure: whether a commit landed, and what was done with a repository or branch this push created
        and left without a commit."""
        where = f"{self.repo_id}@{self.cfg.revision}"
        if not self.committing:
            landed = False
        else:
            try:
                landed = self._head() not in (None, self.head)
            except Exception:
                return (f"Whether a commit landed on {where} could not be checked: look at the repository's history "
                        "before pushing again.")
        if landed:
            return f"A commit did land on {where}: check it on the Hub before pushing again."
        return "Nothing was committed." + self._remove_created()

    def _remove_created(self) -> str:
        kind = {"model": "repository", "space": "Space", "dataset": "dataset"}.get(self.repo_type, "repository")
        try:
            if self.created_repo:
                self.api.delete_repo(self.repo_id, repo_type=self.repo_type)
                return f" The {kind} {self.repo_id} this push created was deleted again."
            if self.created_branch:
                self.api.delete_branch(self.repo_id, branch=self.cfg.revision, repo_type=self.repo_type)
                return f" The branch {self.cfg.revision} this push created was deleted again."
        except Exception as e:
            what = f"{kind} {self.repo_id}" if self.created_repo else f"branch {self.cfg.revision}"
            return f" The {what} this push created is empty and could not be deleted ({type(e).__name__}): delete it."
        return ""


def commit_to_hub(cfg: PushConfig, contents: Contents, message: str, repo_id: str, repo_type: str = "model",
                  space_sdk: str | None = None, must_exist: bool = False) -> str:
    """Upload `contents` to `repo_id` (of `repo_type`) on branch `cfg.revision` in one commit; return its URL.

    Creates the repository (with `space_sdk` for a Space) and the branch when missing (unless `must_exist`). All of
    it, requests, retries and waits, ends within `cfg.push_deadline` seconds (see `_time_budget`), and each answer of
    the Hub must arrive in full within `cfg.timeout` seconds. Raises HubPushError (one line, no token) for bad
    credentials (401/403), an unknown namespace or repository (404), a failure that outlasted the retries, or a push
    past its deadline; the message says whether a commit landed, and a repository or branch this push created is
    deleted again when nothing landed in it.
    """
    configure_timeouts(cfg.connect_timeout, cfg.timeout)
    api = HfApi(endpoint=cfg.endpoint, token=cfg.token)
    secrets = [cfg.token or "", os.environ.get("HF_TOKEN", ""), os.environ.get("HUGGING_FACE_HUB_TOKEN", "")]
    size = sum(len(d) if isinstance(d, bytes) else os.path.getsize(d) for d in contents.values())
    logger.info("Pushing %d files (%.1f MB) to %s@%s in one commit.", len(contents), size / 1e6, repo_id, cfg.revision)
    push = _Commit(api, cfg, repo_id, repo_type, space_sdk)
    try:
        with _time_budget(_push_deadline(cfg), cfg.timeout):
            push.prepare(must_exist)
            info = push.commit(contents, message)
    except HubPushError:
        raise
    except Exception as e:
        # Whether a commit landed, and the cleanup, get their own short budget: the push's may be spent.
        with _time_budget(cfg.connect_timeout + 2 * cfg.timeout, cfg.timeout):
            outcome = push.outcome()
        msg = f"{_failure(e, cfg, repo_id, api.endpoint)} {outcome}"
        raise HubPushError(scrub_secrets(" ".join(msg.split()), secrets)) from None  # one line, no token
    logger.info("Pushed %s: %s", repo_id, info.commit_url)
    return info.commit_url


# --------------------------------------------------------------------------------------------- push
def push(cfg: PushConfig) -> str:
    """Push the run `cfg.model` to `cfg.repo_id` in one commit; return the commit URL (the folder on --dry_run).

    A run without eval/ is evaluated first (`rlhf_demo.publish.evaluate_run`) unless `cfg.eval_num_prompts` is 0.
    Raises HubPushError (one line, no token) for a missing run directory or weights, bad credentials (401/403),
    an unknown namespace or repository (404), or a failure that outlasted the retries (see `commit_to_hub`);
    UserInputError when the run must be evaluated but cannot be (no training_config.yaml).
    """
    check_run_dir(cfg.model)
    if cfg.dry_run:
        from rlhf_demo.runs import check_output_dir

        check_output_dir(cfg.output_dir)  # before any work: not a file, writable
    if not os.path.isfile(os.path.join(cfg.model, "eval", "eval_results.json")):
        if cfg.eval_only:
            raise HubPushError(f"--eval_only: {cfg.model!r} has no eval/eval_results.json to upload; evaluate it "
                               f"first (`rlhf-demo eval --output_dir {os.path.join(cfg.model, 'eval')}`).")
        if cfg.eval_num_prompts:
            from rlhf_demo.publish import evaluate_run

            evaluate_run(cfg.model, cfg.eval_num_prompts)
        else:
            logger.warning("%s has no eval/: the card will say it was not evaluated.", cfg.model)
    contents = upload_contents(cfg.model, cfg.repo_id, cfg.include_checkpoints, cfg.license, cfg.eval_only)
    if cfg.dry_run:
        files = write_folder(contents, cfg.output_dir)
        logger.info("Dry run: wrote the %d files that would be pushed to %s into %s.", len(files), cfg.repo_id,
                    cfg.output_dir)
        return cfg.output_dir
    run_name = os.path.basename(os.path.normpath(cfg.model))
    default = (f"Update the evaluation of {run_name} (rlhf-demo)" if cfg.eval_only else
               f"Upload PPO (RLHF) model trained with rlhf-demo from {run_name}")
    return commit_to_hub(cfg, contents, cfg.commit_message or default, cfg.repo_id, must_exist=cfg.eval_only)
