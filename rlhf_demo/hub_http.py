"""The request layer of every exchange with the Hub: how a request is made, retried and reported.

`rlhf_demo.hub` says what a push uploads and makes its commit; this module says how each of its requests goes:
- timeouts: `configure_timeouts` gives every request huggingface_hub makes in this process a connect and a read
  timeout (its default client waits forever), through `huggingface_hub.set_client_factory`;
- a per-push deadline: within `_time_budget`, every request of this context ends by the deadline and each answer must
  arrive in full within its budget (`_GuardedBackend` / `_GuardedStream`, a wrapped httpcore network backend), so a
  server that stops answering or trickles counts as a failed attempt, and a passed deadline ends the push at once;
- Retry-After: `_retry_after` reads the Hub's Retry-After (seconds or an HTTP date) and RateLimit headers; no wait
  of ours is longer than RETRY_AFTER_CAP_S, nor one of huggingface_hub's than the cap + 1 s (`_retryable_answer_hook`);
- our retry loop: `_with_retries` retries transient failures (connection errors, timeouts, 408, 429, 5xx) with
  exponential backoff, or after the Hub's Retry-After when longer, within the deadline;
- failure messages: `_failure` turns what went wrong into one sentence that says what to change, and
  `scrub_secrets` keeps tokens out of it.

Which layer retries which call, ours or huggingface_hub's own `http_backoff`, is told at `_with_retries`: our loop
is the only retry of the single requests (repo_info, create_repo, create_branch, the commit POST); within a push,
`http_backoff` retries no 408/429/5xx (our loop re-runs the whole commit) but still retries transport errors.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TypeVar

import httpcore2
import httpx2
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import hf_raise_for_status, parse_ratelimit_headers

from rlhf_demo.config import PushConfig

__all__ = ["DEADLINE_FLAG", "DEFAULT_PUSH_DEADLINE_S", "RETRYABLE_STATUSES", "RETRY_AFTER_CAP_S", "AnswerTimeout",
           "configure_timeouts", "scrub_secrets"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

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
    deadline of the `_time_budget` passed or the next wait would end past it.

    Which layer retries what (huggingface_hub 2.x): `repo_info`, `create_repo` and `create_branch` are single requests
    huggingface_hub does not retry, so this loop is their only retry. `create_commit` is several requests: its README
    check (`validate-yaml`) and its final commit POST are not retried by huggingface_hub either; its preupload, LFS
    and xet-token requests go through its `http_backoff`, which within a push retries no status (the 408/429/5xx
    raise at once in `_retryable_answer_hook`: this loop retries them, re-running the whole commit) but does retry a
    transport error (timeout, network or protocol error) up to 5 times, sleeping 1-8 s, before this loop sees it.
    Those are retried by both layers, on purpose: each of its attempts still ends by the push deadline (a passed one
    raises _PushDeadline, which it lets through), so the cost is more attempts than `max_retries` says and at most
    one of its sleeps (8 s) past the deadline, not a hung push; turning its retries off would mean hiding httpx's
    errors from it. An LFS upload it wraps in a RuntimeError, which this loop does not retry."""
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
