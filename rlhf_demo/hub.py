"""Hub push: `rlhf-demo push --model RUN_DIR --repo_id NAMESPACE/NAME`: what a push uploads, and its commit.

What goes up, in one commit (`HfApi.create_commit`): the aligned policy (safetensors weights, config, generation
config, tokenizer files), `value_model/`, `training_config.yaml`, `run_info.json`, `metrics.jsonl`, `eval/`
(results, report, plots, samples), `checkpoints/` only with `--include_checkpoints`, and `README.md`: the model card
of `rlhf_demo.card`. A run without `eval/` is evaluated first (`rlhf_demo.eval.for_run.evaluate_run`, as at the end of
`rlhf-demo train`) unless `--eval_num_prompts 0`. `--eval_only` uploads `eval/` and the card alone.

Every uploaded text file is portable: absolute paths of this machine are rewritten by
`rlhf_demo.portable.portable_text` (the run folder's own files relative to it, the package's files relative to its
parent folder, anything else by name), so no card, config, run info or eval report carries a machine's paths.

`--dry_run --output_dir DIR` writes exactly the folder that would be uploaded and touches no network.
The token (`--token`, else `HF_TOKEN`, else the huggingface_hub login) is never printed, logged, written or put in
an error message. How each request is made (connect and read timeouts, the whole answer within `--timeout`, the
`--push_deadline` of the whole exchange, Retry-After, retries of transient failures, the failure messages) is the
request layer's job: `rlhf_demo.hub_http`, whose public names are re-exported here. A retry re-runs the whole
commit, and since the Hub reports the blob id of files it already holds, an identical re-upload is a no-op, so a
retry never half-uploads or duplicates. A push that fails says whether a commit landed (it looks at the branch's
head) and deletes the repository or branch it created when nothing landed in it. Errors come back as one-line
`HubPushError`s.
"""

from __future__ import annotations

import logging
import os
import shutil
from fnmatch import fnmatch

from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

from rlhf_demo.card import build_model_card
from rlhf_demo.config import PushConfig
from rlhf_demo.errors import UserInputError
from rlhf_demo.eval.samples import SAMPLES_FILE
# The request layer. Its constants are read there: patch `rlhf_demo.hub_http.RETRY_AFTER_CAP_S`, not this module's.
from rlhf_demo.hub_http import (DEADLINE_FLAG, DEFAULT_PUSH_DEADLINE_S, RETRY_AFTER_CAP_S, RETRYABLE_STATUSES,
                                AnswerTimeout, _failure, _push_deadline, _time_budget, _with_retries,
                                configure_timeouts, scrub_secrets)
from rlhf_demo.portable import portable_text

__all__ = ["DEADLINE_FLAG", "DEFAULT_PUSH_DEADLINE_S", "RETRYABLE_STATUSES", "RETRY_AFTER_CAP_S", "AnswerTimeout",
           "HubPushError", "check_run_dir", "commit_to_hub", "configure_timeouts", "prepare_upload_folder", "push",
           "scrub_secrets", "select_upload_files", "upload_contents", "write_folder"]

logger = logging.getLogger(__name__)

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




# --------------------------------------------------------------------------------------------- commit
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
        # Single requests that huggingface_hub does not retry: `_with_retries` is their one retry layer.
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
        # Our retry re-runs the whole commit; huggingface_hub's `http_backoff` retries transport errors of the
        # preupload and LFS requests inside it, and nothing else in a push (see `rlhf_demo.hub_http._with_retries`).
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

    A run without eval/ is evaluated first (`rlhf_demo.eval.for_run.evaluate_run`) unless `cfg.eval_num_prompts` is 0.
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
            from rlhf_demo.eval.for_run import evaluate_run

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
