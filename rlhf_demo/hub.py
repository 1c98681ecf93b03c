"""Hub push: `rlhf-demo push --model RUN_DIR --repo_id NAMESPACE/NAME`.

What goes up, in one commit (`HfApi.create_commit`): the aligned policy (safetensors weights, config, generation
config, tokenizer files), `value_model/`, `training_config.yaml`, `run_info.json`, `metrics.jsonl`, `eval/`
(results, report, plots, samples) when the run was evaluated, `checkpoints/` only with `--include_checkpoints`, and
`README.md`: the model card of `rlhf_demo.card`.

`--dry_run --output_dir DIR` writes exactly the folder that would be uploaded and touches no network.
The token (`--token`, else `HF_TOKEN`, else the huggingface_hub login) is never printed, logged, written or put in
an error message. Transient failures (connection errors, 429, 5xx) are retried with exponential backoff; a retry
re-runs the whole commit, and since the Hub reports the blob id of files it already holds, an identical re-upload
is a no-op, so a retry never half-uploads or duplicates. Errors come back as one-line `HubPushError`s.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from fnmatch import fnmatch
from typing import TypeVar

from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from rlhf_demo.card import build_model_card
from rlhf_demo.config import PushConfig
from rlhf_demo.eval.samples import SAMPLES_FILE

__all__ = ["HubPushError", "check_run_dir", "prepare_upload_folder", "push", "scrub_secrets", "select_upload_files"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Files of a run directory that belong in the model repo (top level, value_model/ and eval/). Everything else
# (optimizer and scheduler state, rng states, stray files) stays local; checkpoints/ goes up only when asked.
MODEL_FILE_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "config.json", "generation_config.json",
                       "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                       "vocab.json", "merges.txt", "vocab.txt", "*.model", "chat_template.jinja", "chat_template.json")
RUN_FILES = ("training_config.yaml", "run_info.json", "metrics.jsonl")
EVAL_FILE_PATTERNS = ("eval_results.json", "eval_report.md", "*.png", "*.svg", SAMPLES_FILE)


class HubPushError(Exception):
    """A push that cannot go on; the message is one line, says what to change, and never holds the token."""


# --------------------------------------------------------------------------------------------- run directory
def check_run_dir(run_dir: str) -> None:
    """Raise HubPushError unless `run_dir` holds a loadable model (weights and config)."""
    if not os.path.isdir(run_dir):
        raise HubPushError(f"Run directory {run_dir!r} does not exist; pass the --output_dir of `rlhf-demo train`.")
    if not any(os.path.isfile(os.path.join(run_dir, n)) for n in ("model.safetensors", "model.safetensors.index.json")):
        raise HubPushError(f"No model weights (model.safetensors) in {run_dir!r}; did `rlhf-demo train` finish? "
                           "(checkpoints/ hold resumable states, not the final model).")
    if not os.path.isfile(os.path.join(run_dir, "config.json")):
        raise HubPushError(f"No config.json in {run_dir!r}; the model cannot be loaded without it.")


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

    add("", MODEL_FILE_PATTERNS + RUN_FILES)
    add("value_model", MODEL_FILE_PATTERNS)
    add("eval", EVAL_FILE_PATTERNS)
    if include_checkpoints:
        add("checkpoints", (), recursive=True)
    files.pop("README.md", None)  # ours is the card
    return files


# --------------------------------------------------------------------------------------------- folder, push
def prepare_upload_folder(run_dir: str, dest: str, repo_id: str, include_checkpoints: bool = False,
                          license: str = "mit") -> list[str]:
    """Write to `dest` (new or empty) exactly what `push` uploads; return the paths in the repo, sorted.
    Raises HubPushError for a run folder without a model or a `dest` that is not empty."""
    check_run_dir(run_dir)
    if os.path.isdir(dest) and os.listdir(dest):
        raise HubPushError(f"Output directory {dest!r} is not empty; choose a new or empty directory for --dry_run.")
    files = select_upload_files(run_dir, include_checkpoints)
    for path_in_repo, src in files.items():
        target = os.path.join(dest, *path_in_repo.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(src, target)
    os.makedirs(dest, exist_ok=True)
    build_model_card(run_dir, repo_id, license).save(os.path.join(dest, "README.md"))
    return sorted([*files, "README.md"])


def _status(e: BaseException) -> int | None:
    response = getattr(e, "response", None)
    return getattr(response, "status_code", None) if response is not None else None


def _is_transient(e: BaseException) -> bool:
    """Connection problems, timeouts, 429 and 5xx are worth retrying; anything else (4xx, offline mode) is not."""
    if isinstance(e, OfflineModeIsEnabled):
        return False
    if isinstance(e, HfHubHTTPError):
        status = _status(e)
        return status is None or status == 429 or status >= 500
    try:
        import httpx2

        if isinstance(e, httpx2.TransportError):
            return True
    except ImportError:  # huggingface_hub on plain httpx
        pass
    try:
        import httpx

        if isinstance(e, httpx.TransportError):
            return True
    except ImportError:
        pass
    return isinstance(e, (ConnectionError, TimeoutError))


def _with_retries(fn: Callable[[], T], what: str, cfg: PushConfig) -> T:
    """Call `fn`, retrying transient failures max_retries times with waits base, 2*base, 4*base, ..."""
    for attempt in range(cfg.max_retries + 1):
        try:
            return fn()
        except Exception as e:
            if not _is_transient(e) or attempt == cfg.max_retries:
                raise
            wait = cfg.retry_base_wait * 2 ** attempt
            status = _status(e)
            logger.warning("%s failed (%s); retry %d/%d in %.1f s.", what,
                           f"HTTP {status}" if status else type(e).__name__, attempt + 1, cfg.max_retries, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _push_error(e: Exception, cfg: PushConfig, endpoint: str, secrets: list[str]) -> HubPushError:
    """A one-line, token-free HubPushError for a failed Hub call."""
    status = _status(e)
    where = f"{cfg.repo_id} (revision {cfg.revision})"
    if status == 401:
        msg = (f"Authentication failed (HTTP 401) for {cfg.repo_id}: the Hugging Face token is missing, invalid "
               "or expired. Set HF_TOKEN to a token with write access or run `hf auth login`.")
    elif status == 403:
        msg = (f"Permission denied (HTTP 403) for {cfg.repo_id}: the token cannot write to namespace "
               f"{cfg.repo_id.split('/')[0]!r}. Use a token with write access to it, or push to a namespace you own.")
    elif status == 404:
        msg = (f"Not found (HTTP 404): namespace {cfg.repo_id.split('/')[0]!r} or repository {where} does not exist "
               "or is not visible with this token. Check --repo_id and --revision.")
    elif status is not None:
        server = ""
        if isinstance(e, HfHubHTTPError) and getattr(e, "server_message", None):
            server = ": " + str(e.server_message)
        msg = (f"The Hub answered HTTP {status} for {where} after {cfg.max_retries + 1} attempt(s){server}. "
               "Nothing was committed; try again later.")
    elif _is_transient(e):
        msg = (f"Could not reach the Hub at {endpoint} after {cfg.max_retries + 1} attempt(s) ({type(e).__name__}). "
               "Nothing was committed; check the network (or HF_ENDPOINT) and try again.")
    else:
        msg = f"Push to {where} failed: {type(e).__name__}: {e}"
    return HubPushError(scrub_secrets(" ".join(msg.split()), secrets))  # one line, no token


def scrub_secrets(text: str, secrets: list[str]) -> str:
    """`text` with every non-empty string of `secrets` (tokens) replaced by `***`."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


def push(cfg: PushConfig) -> str:
    """Push the run `cfg.model` to `cfg.repo_id` in one commit; return the commit URL (the folder on --dry_run).

    Raises HubPushError (one line, no token) for a missing run directory or weights, bad credentials (401/403),
    an unknown namespace or repository (404), or a failure that outlasted the retries.
    """
    check_run_dir(cfg.model)
    if cfg.dry_run:
        files = prepare_upload_folder(cfg.model, cfg.output_dir, cfg.repo_id, cfg.include_checkpoints, cfg.license)
        logger.info("Dry run: wrote the %d files that would be pushed to %s into %s.", len(files), cfg.repo_id,
                    cfg.output_dir)
        return cfg.output_dir

    files = select_upload_files(cfg.model, cfg.include_checkpoints)
    card = str(build_model_card(cfg.model, cfg.repo_id, cfg.license)).encode()
    api = HfApi(endpoint=cfg.endpoint, token=cfg.token)
    endpoint = api.endpoint
    secrets = [cfg.token or "", os.environ.get("HF_TOKEN", ""), os.environ.get("HUGGING_FACE_HUB_TOKEN", "")]
    run_name = os.path.basename(os.path.normpath(cfg.model))
    message = cfg.commit_message or f"Upload PPO (RLHF) model trained with rlhf-demo from {run_name}"
    size = sum(os.path.getsize(p) for p in files.values()) + len(card)
    logger.info("Pushing %d files (%.1f MB) to %s@%s in one commit.", len(files) + 1, size / 1e6, cfg.repo_id,
                cfg.revision)

    def commit():
        # Fresh operations each attempt: a CommitOperationAdd cannot be reused once committed.
        ops = [CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card)]
        ops += [CommitOperationAdd(path_in_repo=p, path_or_fileobj=src) for p, src in sorted(files.items())]
        return api.create_commit(repo_id=cfg.repo_id, operations=ops, commit_message=message, revision=cfg.revision)

    try:
        _with_retries(lambda: api.create_repo(cfg.repo_id, private=cfg.private, exist_ok=True), "create_repo", cfg)
        if cfg.revision != "main":
            _with_retries(lambda: api.create_branch(cfg.repo_id, branch=cfg.revision, exist_ok=True), "create_branch",
                          cfg)
        info = _with_retries(commit, "commit", cfg)
    except HubPushError:
        raise
    except Exception as e:
        raise _push_error(e, cfg, endpoint, secrets) from None
    logger.info("Pushed %s: %s", cfg.repo_id, info.commit_url)
    return info.commit_url
