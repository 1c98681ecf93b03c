"""A small Hugging Face Hub-compatible HTTP server for tests (standard library only).

The real Hub cannot be reached here, so the push/download tests point `huggingface_hub` and `transformers` at this
server (`HF_ENDPOINT=http://127.0.0.1:PORT`). It implements just what the real clients (huggingface_hub 2.4,
transformers 5.23, gradio's CommitScheduler users, pip for a wheel URL) call for `create_repo` / `delete_repo`,
`create_commit` / `upload_folder` (regular, non-LFS uploads), branches, `repo_info`, `list_repo_tree`,
`hf_hub_download` / `snapshot_download` and `from_pretrained`, for model, Space and dataset repositories
(TYPE below: `models`, `spaces` or `datasets`):

    POST   /api/repos/create                        409 + `url` for an existing repo; type model, space, dataset
    DELETE /api/repos/delete                        JSON {name, organization, type}
    POST   /api/validate-yaml                       JSON body {content, repoType}
    POST   /api/TYPE/{repo}/preupload/{rev}         uploadMode "regular", shouldIgnore, oid (git-blob sha1)
    POST   /api/TYPE/{repo}/commit/{rev}            NDJSON: header, file (base64), deletedFile, deletedFolder
    POST   /api/TYPE/{repo}/branch/{branch}         create a branch from the default branch
    DELETE /api/TYPE/{repo}/branch/{branch}         delete a branch
    GET    /api/TYPE/{repo}[/revision/{rev}]        id, sha, siblings
    GET    /api/TYPE/{repo}/tree/{rev}[/{path}]     files and folders
    HEAD/GET [/spaces|/datasets]/{repo}/resolve/{rev}/{path}   X-Repo-Commit, quoted ETag, Content-Length

Typed client errors come from the `X-Error-Code` header (RepoNotFound, RevisionNotFound, EntryNotFound).
Revisions arrive URL-quoted (`refs%2Fpr%2F1`), so routing splits the raw path before unquoting each segment.

Test hooks: `hub.fail_next(method, path_regex, status, times, headers)` injects transient failures (with extra
headers, e.g. `{"Retry-After": "3600"}`); `hub.stall_next(method, path_regex, seconds, times)` handles a request and
then waits before answering (a lost answer, as after a read timeout); `hub.trickle_next(method, path_regex, interval,
times, headers_too)` handles a request and then sends its answer one byte every `interval` seconds, forever (no read
ever times out); `hub.requests` logs (method, path, status) of every request and `hub.request_times` the
`time.monotonic()` of each; `hub.bodies` keeps raw request bodies (to check no secret was uploaded). `hub.repos`,
`hub.spaces` and `hub.datasets` hold the repositories by id. Use as a context manager: the server thread stops when
the block ends.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob: sha1(b"blob {len}\\0" + data), what the Hub reports as a regular file's oid."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    repo_id: str
    private: bool = False
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> {path: content}
    branches: dict[str, str] = field(default_factory=dict)  # branch -> sha
    messages: dict[str, str] = field(default_factory=dict)  # sha -> commit summary

    def resolve(self, rev: str) -> str | None:
        if rev in self.branches:
            return self.branches[rev]
        return rev if rev in self.commits else None


class HubError(Exception):
    def __init__(self, status: int, message: str, error_code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.error_code = status, message, error_code


class FakeHub:
    """The in-memory Hub state plus the HTTP server that serves it."""

    def __init__(self, tokens: dict[str, str] | None = None, namespaces: dict[str, set[str]] | None = None):
        # token -> user name; user -> namespaces it may write to. Other namespaces exist but are not writable (403);
        # namespaces nobody owns answer 404.
        self.tokens = tokens if tokens is not None else {"hf_test_token_0123456789": "test-user"}
        self.namespaces = namespaces if namespaces is not None else {"test-user": {"test-user", "test-org"},
                                                                     "other-user": {"other-user"}}
        self.repos: dict[str, Repo] = {}  # model repositories
        self.spaces: dict[str, Repo] = {}
        self.datasets: dict[str, Repo] = {}
        self.by_type = {"model": self.repos, "space": self.spaces, "dataset": self.datasets}
        self._stalls: list[list] = []  # [method, compiled regex, seconds, remaining]
        self._trickles: list[list] = []  # [method, compiled regex, (interval, headers_too), remaining]
        self._stopping = threading.Event()  # ends the trickling answers when the server stops
        self.requests: list[tuple[str, str, int]] = []
        self.request_times: list[float] = []  # time.monotonic() of each entry of `requests`
        self.bodies: list[bytes] = []
        self._failures: list[list] = []  # [method, compiled regex, (status, headers), remaining]
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._commit_counter = 0

    # ----------------------------------------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # port 0: a random free port
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----------------------------------------------------------------------------------------------- test hooks
    def fail_next(self, method: str, path_regex: str, status: int = 503, times: int = 1,
                  headers: dict[str, str] | None = None) -> None:
        """Answer the next `times` requests matching (method, path_regex) with `status` and extra `headers` (e.g.
        `{"Retry-After": "3600"}`), without handling them."""
        with self._lock:
            self._failures.append([method.upper(), re.compile(path_regex), (status, headers or {}), times])

    def stall_next(self, method: str, path_regex: str, seconds: float, times: int = 1) -> None:
        """Handle the next `times` requests matching (method, path_regex), then wait `seconds` before answering."""
        with self._lock:
            self._stalls.append([method.upper(), re.compile(path_regex), seconds, times])

    def trickle_next(self, method: str, path_regex: str, interval: float = 0.2, times: int = 1,
                     headers_too: bool = False) -> None:
        """Handle the next `times` requests matching (method, path_regex), then send the answer one byte every
        `interval` seconds until the client hangs up or the server stops: after its headers (a body announced as 1 MB
        that never ends), or from the first byte of the status line on (`headers_too`)."""
        with self._lock:
            self._trickles.append([method.upper(), re.compile(path_regex), (interval, headers_too), times])

    def files(self, repo_id: str, rev: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        repo = self.by_type[repo_type][repo_id]
        return dict(repo.commits[repo.resolve(rev)])

    def commit_count(self, repo_id: str, repo_type: str = "model") -> int:
        return len(self.by_type[repo_type][repo_id].commits)

    def _take(self, hooks: list[list], method: str, path: str):
        """The value of the first hook of `hooks` matching (method, path) with uses left (one use taken), else None."""
        with self._lock:
            for f in hooks:
                if f[0] == method and f[1].search(path) and f[3] > 0:
                    f[3] -= 1
                    return f[2]
        return None

    def _stall(self, method: str, path: str) -> float:
        return self._take(self._stalls, method, path) or 0.0

    def _injected_failure(self, method: str, path: str) -> tuple[int, dict[str, str]] | None:
        return self._take(self._failures, method, path)

    # ----------------------------------------------------------------------------------------------- state helpers
    def user_for(self, auth_header: str | None) -> str | None:
        """The user of a `Bearer` token; raises 401 for a token that is present but unknown."""
        if not auth_header:
            return None
        token = auth_header.split(" ", 1)[-1].strip()
        if token not in self.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.tokens[token]

    def _new_commit(self, repo: Repo, parent_files: dict[str, bytes], files: dict[str, bytes], summary: str) -> str:
        with self._lock:
            self._commit_counter += 1
            counter = self._commit_counter
        sha = hashlib.sha1(f"{repo.repo_id}:{counter}:{summary}:{time.time_ns()}".encode()).hexdigest()
        repo.commits[sha] = files
        repo.messages[sha] = summary
        return sha

    def get_repo(self, repo_id: str, user: str | None, write: bool = False, repo_type: str = "model") -> Repo:
        repo = self.by_type[repo_type].get(repo_id)
        namespace = repo_id.split("/")[0]
        can_write = user is not None and namespace in self.namespaces.get(user, set())
        if repo is None or (repo.private and not can_write):
            raise HubError(404, "Repository not found", "RepoNotFound")
        if write and not can_write:
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    def get_rev(self, repo: Repo, rev: str) -> str:
        sha = repo.resolve(rev)
        if sha is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return sha


TYPES = {"models": "model", "spaces": "space", "datasets": "dataset"}


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"
    repo_type = "model"  # of the request being handled (set by the router)

    def log_message(self, format, *args):  # keep test output quiet
        pass

    # ----------------------------------------------------------------------------------------------- plumbing
    def _send(self, status: int, body: bytes | dict | list | None = None, headers: dict[str, str] | None = None,
              head: bool = False):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        body = body or b""
        self.hub.requests.append((self.command, self.path, status))  # before answering: the client may look right after
        self.hub.request_times.append(time.monotonic())
        delay = self.hub._stall(self.command, urlsplit(self.path).path)
        if delay:
            time.sleep(delay)
        trickle = self.hub._take(self.hub._trickles, self.command, urlsplit(self.path).path)
        if trickle is not None:
            return self._trickle(status, *trickle)
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _trickle(self, status: int, interval: float, headers_too: bool) -> None:
        """Send an answer of `status` one byte every `interval` seconds, forever (see `FakeHub.trickle_next`)."""
        self.close_connection = True
        head = (f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\nContent-Type: application/json\r\n"
                "Content-Length: 1000000\r\n\r\n").encode()
        pending = head if headers_too else b""
        if not headers_too:
            self.wfile.write(head)
        sent = 0
        while not self.hub._stopping.is_set():
            try:
                self.wfile.write(pending[sent:sent + 1] if sent < len(pending) else b" ")  # JSON whitespace
            except OSError:  # the client hung up
                return
            sent += 1
            self.hub._stopping.wait(interval)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n) if n else b""
        self.hub.bodies.append(data)
        return data

    def _dispatch(self, head: bool = False):
        self.repo_type = "model"  # a keep-alive connection serves several requests with one handler
        raw_path = urlsplit(self.path).path
        query = parse_qs(urlsplit(self.path).query)
        body = self._body() if self.command in ("POST", "DELETE") else b""
        failure = self.hub._injected_failure(self.command, raw_path)
        if failure is not None:
            status, headers = failure
            return self._send(status, {"error": "Injected failure"}, headers, head=head)
        try:
            user = self.hub.user_for(self.headers.get("Authorization"))
            segments = [unquote(s) for s in raw_path.strip("/").split("/")]
            status, payload, headers = self._route(segments, query, body, user, head)
        except HubError as e:
            headers = {"X-Error-Message": e.message}
            if e.error_code:
                headers["X-Error-Code"] = e.error_code
            return self._send(e.status, {"error": e.message}, headers, head=head)
        return self._send(status, payload, headers, head=head)

    def do_GET(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch(head=True)

    def do_POST(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    # ----------------------------------------------------------------------------------------------- routes
    def _route(self, seg: list[str], query, body: bytes, user: str | None, head: bool):
        if seg[:1] == ["api"]:
            if seg[1:3] == ["repos", "create"] and self.command == "POST":
                return self._create_repo(json.loads(body or b"{}"), user)
            if seg[1:3] == ["repos", "delete"] and self.command == "DELETE":
                return self._delete_repo(json.loads(body or b"{}"), user)
            if seg[1:] == ["validate-yaml"] and self.command == "POST":
                return self._validate_yaml(json.loads(body or b"{}"))
            if seg[1:2] == ["whoami-v2"]:
                if user is None:
                    raise HubError(401, "Unauthorized")
                return 200, {"type": "user", "name": user, "orgs": []}, None
            if seg[1:2] and seg[1] in TYPES and len(seg) >= 4:
                self.repo_type = TYPES[seg[1]]
                repo_id = "/".join(seg[2:4])
                rest = seg[4:]
                if not rest and self.command in ("GET", "HEAD"):
                    return self._model_info(repo_id, "main", user)
                if rest[:1] == ["revision"] and len(rest) >= 2:
                    return self._model_info(repo_id, "/".join(rest[1:]), user)
                if rest[:1] == ["tree"] and len(rest) >= 2:
                    return self._tree(repo_id, rest[1], "/".join(rest[2:]), query, user)
                if rest[:1] == ["preupload"] and self.command == "POST":
                    return self._preupload(repo_id, "/".join(rest[1:]), json.loads(body), user)
                if rest[:1] == ["commit"] and self.command == "POST":
                    return self._commit(repo_id, "/".join(rest[1:]), body, user)
                if rest[:1] == ["branch"] and self.command == "POST":
                    return self._create_branch(repo_id, "/".join(rest[1:]), json.loads(body or b"{}"), user)
                if rest[:1] == ["branch"] and self.command == "DELETE":
                    return self._delete_branch(repo_id, "/".join(rest[1:]), user)
            raise HubError(404, f"Not implemented by the test Hub: {self.command} {self.path}")
        # [/spaces|/datasets]/{namespace}/{name}/resolve/{rev}/{path...}
        if seg[:1] in (["spaces"], ["datasets"]):
            self.repo_type, seg = TYPES[seg[0]], seg[1:]
        if len(seg) >= 5 and seg[2] == "resolve":
            return self._resolve("/".join(seg[:2]), seg[3], "/".join(seg[4:]), user, head)
        raise HubError(404, f"Not found: {self.path}")

    def _create_repo(self, payload: dict, user: str | None):
        hub = self.hub
        if user is None:
            raise HubError(401, "You must be authenticated to create a repo")
        namespace = payload.get("organization") or user
        repo_id = f"{namespace}/{payload['name']}"
        repo_type = payload.get("type") or "model"
        if repo_type not in hub.by_type:
            raise HubError(400, f"Unknown repository type {repo_type!r}")
        if repo_type == "space" and not payload.get("sdk"):
            raise HubError(400, "A Space needs an sdk (gradio, docker, static)")
        known = set().union(*hub.namespaces.values())
        if namespace not in known:
            raise HubError(404, f"Namespace {namespace} not found")
        if namespace not in hub.namespaces.get(user, set()):
            raise HubError(403, f"You don't have the rights to create a model under the namespace \"{namespace}\"")
        prefix = {"model": "", "space": "spaces/", "dataset": "datasets/"}[repo_type]
        url = f"{hub.url}/{prefix}{repo_id}"
        if repo_id in hub.by_type[repo_type]:
            return 409, {"error": f"You already created this {repo_type} repo", "url": url}, None
        repo = Repo(repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")))
        sha = hub._new_commit(repo, {}, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
                              "initial commit")
        repo.branches["main"] = sha
        hub.by_type[repo_type][repo_id] = repo
        return 200, {"url": url, "name": repo_id, "id": repo_id}, None

    def _delete_repo(self, payload: dict, user: str | None):
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or user}/{payload['name']}"
        self.hub.get_repo(repo_id, user, write=True, repo_type=repo_type)
        del self.hub.by_type[repo_type][repo_id]
        return 200, {}, None

    def _delete_branch(self, repo_id: str, branch: str, user: str | None):
        repo = self.hub.get_repo(repo_id, user, write=True, repo_type=self.repo_type)
        if branch not in repo.branches or branch == "main":
            raise HubError(404 if branch != "main" else 403, f"Cannot delete branch {branch}", "RevisionNotFound")
        del repo.branches[branch]
        return 200, {}, None

    def _validate_yaml(self, payload: dict):
        import yaml

        content = payload.get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.S)
        if not match:
            return 200, {"warnings": [{"message": "Empty or missing yaml metadata in repo card"}]}, None
        try:
            meta = yaml.safe_load(match.group(1))
        except yaml.YAMLError as e:
            raise HubError(400, f"Invalid YAML metadata: {e}") from None
        if not isinstance(meta, dict):
            raise HubError(400, "YAML metadata must be a mapping")
        return 200, {"warnings": []}, None

    def _model_info(self, repo_id: str, rev: str, user: str | None):
        hub = self.hub
        repo = hub.get_repo(repo_id, user, repo_type=self.repo_type)
        sha = hub.get_rev(repo, rev)
        files = repo.commits[sha]
        info = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0],
            "sha": sha,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "library_name": "transformers",
            "pipeline_tag": "text-generation",
            "siblings": [{"rfilename": p} for p in sorted(files)],
            "createdAt": "2026-01-01T00:00:00.000Z",
            "lastModified": "2026-01-01T00:00:00.000Z",
        }
        return 200, info, None

    def _tree(self, repo_id: str, rev: str, path: str, query, user: str | None):
        hub = self.hub
        repo = hub.get_repo(repo_id, user, repo_type=self.repo_type)
        files = repo.commits[hub.get_rev(repo, rev)]
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in files):
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        entries, folders = [], set()
        for p in sorted(files):
            if not p.startswith(prefix):
                continue
            rel = p[len(prefix):]
            parts = rel.split("/")
            for i in range(1, len(parts)):  # every folder on the way
                folder = prefix + "/".join(parts[:i])
                if (recursive or i == 1) and folder not in folders:
                    folders.add(folder)
                    entries.append({"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0,
                                    "path": folder})
            if recursive or len(parts) == 1:
                entries.append({"type": "file", "oid": git_blob_sha1(files[p]), "size": len(files[p]), "path": p})
        return 200, entries, None

    def _preupload(self, repo_id: str, rev: str, payload: dict, user: str | None):
        hub = self.hub
        repo = hub.get_repo(repo_id, user, write=True, repo_type=self.repo_type)
        sha = repo.resolve(rev)
        current = repo.commits[sha] if sha else {}
        out = []
        for f in payload.get("files", []):
            existing = current.get(f["path"])
            out.append({
                "path": f["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": git_blob_sha1(existing) if existing is not None else None,
            })
        return 200, {"files": out, "commitOid": sha}, None

    def _commit(self, repo_id: str, rev: str, body: bytes, user: str | None):
        hub = self.hub
        repo = hub.get_repo(repo_id, user, write=True, repo_type=self.repo_type)
        parent_sha = hub.get_rev(repo, rev)
        files = dict(repo.commits[parent_sha])
        summary = ""
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                summary = value.get("summary", "")
                parent = value.get("parentCommit")
                if parent and parent != parent_sha:
                    raise HubError(412, "A commit has happened since. Please refresh and try again.")
            elif key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, "Only base64 file content is supported")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                del files[value["path"]]
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                for p in [p for p in files if p.startswith(prefix)]:
                    del files[p]
            else:  # lfsFile, copies, ... : never requested since preupload answers "regular"
                raise HubError(400, f"Unsupported commit operation {key!r} in the test Hub")
        if not summary:
            raise HubError(400, "Missing commit summary")
        sha = hub._new_commit(repo, repo.commits[parent_sha], files, summary)
        if rev in repo.branches or rev not in repo.commits:
            repo.branches[rev] = sha
        return 200, {"success": True, "commitOid": sha, "commitUrl": f"{hub.url}/{repo_id}/commit/{sha}",
                     "hookOutput": ""}, None

    def _create_branch(self, repo_id: str, branch: str, payload: dict, user: str | None):
        hub = self.hub
        repo = hub.get_repo(repo_id, user, write=True, repo_type=self.repo_type)
        if branch in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        start = payload.get("startingPoint") or "main"
        repo.branches[branch] = hub.get_rev(repo, start)
        return 200, {}, None

    def _resolve(self, repo_id: str, rev: str, path: str, user: str | None, head: bool):
        hub = self.hub
        repo = hub.get_repo(repo_id, user, repo_type=self.repo_type)
        sha = hub.get_rev(repo, rev)
        files = repo.commits[sha]
        if path not in files:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        data = files[path]
        headers = {
            "X-Repo-Commit": sha,
            "ETag": f'"{git_blob_sha1(data)}"',
            "Content-Length": str(len(data)),
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        }
        rng = self.headers.get("Range")
        if rng and not head:
            m = re.match(r"bytes=(\d+)-(\d*)", rng)
            if m:
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else len(data) - 1
                chunk = data[start:end + 1]
                headers.update({"Content-Length": str(len(chunk)), "Content-Range": f"bytes {start}-{end}/{len(data)}"})
                return 206, chunk, headers
        return 200, data, headers
