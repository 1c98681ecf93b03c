"""Reliability of the Gradio Space (space/app.py, space/shared.py) under load and abuse: one row per judged pair
however many votes arrive at once, no server path in a visitor's error, the public-preferences notice, option and
environment checks that end in one line, and the temporary folders deleted on SIGTERM.

The Space loads what it loads by default, the tiny preset shipped in rlhf_demo/presets/tiny; nothing is downloaded.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types

import pytest

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402

from rlhf_demo.feedback import PreferenceStore, read_preferences  # noqa: E402
from rlhf_demo.space import app, options  # noqa: E402
from rlhf_demo.space.shared import JudgedPairs, TempFolders, visitor_reason  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = types.SimpleNamespace(reference_name="tiny", aligned_name="aligned")  # what `vote` reads of SpaceModels
SPACE_ENV_VARIABLES = ("GENERATION_TIMEOUT", "EVAL_MAX_PROMPT_LENGTH", "GRADIO_SERVER_PORT", "SPACE_CONFIG")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def a_pair(i: int = 0, with_id: bool = True) -> dict:
    pair = {"prompt": f"The film {i}", "texts": [" was great.", " was dull."], "sources": ["aligned", "reference"],
            "mode": "reference vs aligned", "seed": i, "max_new_tokens": 4, "temperature": 1.0}
    return {"id": f"pair-{i}", **pair} if with_id else pair


def unwritable_store(tmp_path) -> tuple[PreferenceStore, str]:
    """A store whose file cannot be written, even by root: its folder was replaced by a regular file."""
    folder = tmp_path / "prefs"
    store = PreferenceStore(str(folder / "preferences.jsonl"))
    folder.rmdir()
    folder.write_text("not a folder")
    return store, str(folder)


@pytest.fixture
def clean_env(monkeypatch):
    for name in SPACE_ENV_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(options, "_SET_ASIDE_SERVER_PORT", None)
    return monkeypatch


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The Space on its defaults (the shipped tiny preset), launched in this process: (demo, client, prefs path)."""
    from gradio_client import Client

    root = tmp_path_factory.mktemp("space")
    prefs = str(root / "preferences.jsonl")
    handler = signal.getsignal(signal.SIGTERM)
    demo = app.build_demo(preferences_path=prefs, runs_dir=str(root / "runs"))
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    # Only main() handles SIGTERM: build_demo and launch (what tests, notebooks and other apps call) leave it alone.
    assert signal.getsignal(signal.SIGTERM) is handler
    try:
        yield demo, Client(demo.local_url, verbose=False), prefs
    finally:
        demo.close()
        demo.temp_folders.close()


def exit_message(call) -> str:
    """The one line a SystemExit of `call()` ends the program with (its status is not 0)."""
    with pytest.raises(SystemExit) as info:
        call()
    message = info.value.code
    assert isinstance(message, str) and message, message  # a str code: printed on stderr, exit status 1
    assert message.startswith("error: ") and "\n" not in message, message
    return message


# ------------------------------------------------------------------------------------------------ one row per pair


def test_simultaneous_votes_on_one_pair_record_it_once(tmp_path):
    """24 threads vote A, B or tie on the same pair at once (a session's 12 clicks, and other sessions replaying it):
    the first vote wins, the others are told the pair was judged, and exactly one row is written."""
    store, judged = PreferenceStore(str(tmp_path / "preferences.jsonl")), JudgedPairs()
    pair, start = a_pair(7), threading.Barrier(24)
    outcomes: list = [None] * 24

    def click(i):
        start.wait()
        try:
            outcomes[i] = app.vote(MODELS, store, ("A", "B", "tie")[i % 3], dict(pair), judged=judged)[-1]
        except gr.Error as e:
            outcomes[i] = e

    threads = [threading.Thread(target=click, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    saved = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, gr.Error)]
    assert len(saved) == 1 and saved[0].startswith("Saved") and "1 choice(s)" in saved[0], outcomes
    assert len(refused) == 23 and all("This pair was already judged" in str(e.message) for e in refused)
    rows = read_preferences(store.path)
    assert len(rows) == 1 and rows[0]["pair_id"] == "pair-7" and rows[0]["prompt"] == "The film 7"
    assert "pair-7" in judged and len(judged) == 1
    # Another pair is not affected; a pair built without an id (as tests and scripts do) is recognised by content.
    assert app.vote(MODELS, store, "B", a_pair(8), judged=judged)[-1].startswith("Saved")
    assert app.vote(MODELS, store, "A", a_pair(9, with_id=False), judged=judged)[-1].startswith("Saved")
    with pytest.raises(gr.Error, match="already judged"):
        app.vote(MODELS, store, "tie", a_pair(9, with_id=False), judged=judged)
    assert len(read_preferences(store.path)) == 3


def test_votes_through_the_space_record_a_pair_once(served):
    """Twelve /prefer_a, /prefer_b and /tie calls at once in one session on one pair, as the review sent them: one
    answer is "Saved", the others refusals, one row. The handlers share one JudgedPairs across requests."""
    from gradio_client.exceptions import AppError

    demo, client, prefs = served
    before = len(read_preferences(prefs))
    client.predict("The acting in this film", "reference vs aligned", 6, 1.0, api_name="/new_pair")
    jobs = [client.submit(api_name=("/prefer_a", "/prefer_b", "/tie")[i % 3]) for i in range(12)]
    saved, refused = [], []
    for job in jobs:
        try:
            saved.append(job.result(timeout=120)[-1])
        except AppError as e:
            refused.append(str(e))
    assert len(saved) == 1 and saved[0].startswith("Saved"), (saved, refused)
    assert len(refused) == 11 and all("already judged" in r or "no pair to judge" in r for r in refused), refused
    rows = read_preferences(prefs)
    assert len(rows) == before + 1 and rows[-1]["prompt"] == "The acting in this film"
    assert len(rows[-1]["pair_id"]) == 32  # new_pair's uuid4


# ------------------------------------------------------------------------------------------------ no server paths


def test_a_vote_that_cannot_be_saved_names_no_server_path(tmp_path, capsys):
    store, folder = unwritable_store(tmp_path)
    judged = JudgedPairs()
    with pytest.raises(gr.Error) as err:
        app.vote(MODELS, store, "A", a_pair(1), judged=judged)
    message = str(err.value.message)
    assert message.startswith("The choice could not be saved (Not a directory)"), message
    assert "/" not in message and "preferences.jsonl" not in message and str(tmp_path) not in message
    log = capsys.readouterr().err
    assert store.path in log and "NotADirectoryError" in log  # the detail is in the server's log
    assert read_preferences(store.path) == [] and "pair-1" not in judged  # not saved, so not judged
    # Once the file can be written again, the same pair can be judged.
    os.remove(folder)
    os.mkdir(folder)
    assert app.vote(MODELS, store, "A", a_pair(1), judged=judged)[-1].startswith("Saved")
    assert len(read_preferences(store.path)) == 1


def test_a_failed_vote_through_the_space_names_no_server_path(served, tmp_path):
    from gradio_client.exceptions import AppError

    demo, client, _ = served
    store = demo.preference_store
    good = store.path
    (tmp_path / "file").write_text("a regular file")
    store.path = str(tmp_path / "file" / "preferences.jsonl")  # its parent is a file: no write succeeds
    try:
        client.predict("I watched it twice", "reference vs aligned", 4, 1.0, api_name="/new_pair")
        with pytest.raises(AppError) as err:
            client.predict(api_name="/prefer_a")
    finally:
        store.path = good
    message = str(err.value)
    assert "The choice could not be saved" in message and "Not a directory" in message
    assert str(tmp_path) not in message and tempfile.gettempdir() not in message and "/file" not in message


def test_a_download_that_cannot_be_prepared_names_no_server_path(tmp_path, capsys):
    store = PreferenceStore(str(tmp_path / "preferences.jsonl"))
    store.append({"prompt": "A", "chosen": "b", "rejected": "c"})
    temp = TempFolders()
    try:
        os.rmdir(temp.root)
        with open(temp.root, "w") as f:  # the temp root is a file now: no folder can be made under it
            f.write("x")
        with pytest.raises(gr.Error) as err:
            app.download_preferences(store, temp)
        message = str(err.value.message)
        assert message.startswith("The download could not be prepared (") and "/" not in message, message
        assert temp.root in capsys.readouterr().err
    finally:
        os.remove(temp.root)
        temp.close()
    # Other errors keep their message, with this machine's paths rewritten.
    assert visitor_reason(PermissionError(13, "Permission denied", "/etc/shadow")) == "Permission denied"
    reason = visitor_reason(ValueError(f"bad row in {tmp_path}/x.jsonl"))
    assert "bad row in x.jsonl (local)" == reason and str(tmp_path) not in reason


# ------------------------------------------------------------------------------------------------ public notice


def test_the_feedback_tab_says_the_preferences_are_public(served):
    config = served[0].config
    components = {c["id"]: c for c in config["components"]}

    def subtree(node):
        yield node["id"]
        for child in node.get("children", []):
            yield from subtree(child)

    def find(node, predicate):
        if predicate(node):
            return node
        for child in node.get("children", []):
            if (found := find(child, predicate)) is not None:
                return found
        return None

    def markdowns(ids):
        found = [components.get(i, {}) for i in ids]
        return [c["props"].get("value") or "" for c in found if c.get("type") == "markdown"]

    tab = find(config["layout"], lambda n: components.get(n["id"], {}).get("props", {}).get("label") == "Feedback")
    texts = markdowns(subtree(tab))
    assert any("what you type here is saved and downloadable by every visitor" in t for t in texts), texts
    # Next to the download button: in the same block as the button itself.
    button = next(c["id"] for c in config["components"] if c["props"].get("value") == "Download preferences (JSONL)")
    block = find(tab, lambda n: any(c["id"] == button for c in n.get("children", [])))
    beside = markdowns(c["id"] for c in block["children"])
    assert any("downloadable by every visitor" in t and "every visitor's prompts" in t for t in beside), beside


# ------------------------------------------------------------------------------------------------ options


def test_concurrency_limit_below_one_is_refused(clean_env, tmp_path):
    from rlhf_demo.cli import main as cli_main

    for value in ("0", "-3"):
        message = exit_message(lambda v=value: app.parse_args(["--concurrency_limit", v]))
        assert message == f"error: --concurrency_limit must be at least 1, got {int(value)}."
    message = exit_message(lambda: cli_main(["space", "--concurrency_limit", "0"]))  # as `rlhf-demo space` runs it
    assert "--concurrency_limit must be at least 1" in message
    assert app.parse_args([]).concurrency_limit == 2
    assert app.parse_args(["--concurrency_limit", "3"]).concurrency_limit == 3
    for value in (0, -1, 1.5, True):  # refused before any model is loaded
        with pytest.raises(ValueError, match="concurrency_limit must be an integer of at least 1"):
            app.build_demo(preferences_path=str(tmp_path / "p.jsonl"), concurrency_limit=value)


def test_bad_environment_variables_end_in_one_line_naming_them(clean_env, tmp_path):
    cases = {
        ("GENERATION_TIMEOUT", "soon"): "error: the environment variable GENERATION_TIMEOUT must be a number of "
                                        "seconds greater than 0, got 'soon'.",
        ("GENERATION_TIMEOUT", "0"): "GENERATION_TIMEOUT must be a number of seconds greater than 0, got '0'.",
        ("GENERATION_TIMEOUT", "nan"): "GENERATION_TIMEOUT must be a number of seconds greater than 0",
        ("EVAL_MAX_PROMPT_LENGTH", "abc"): "error: the environment variable EVAL_MAX_PROMPT_LENGTH must be a whole "
                                           "number of tokens, at least 1, got 'abc'.",
        ("EVAL_MAX_PROMPT_LENGTH", "2.5"): "EVAL_MAX_PROMPT_LENGTH must be a whole number of tokens",
        ("GRADIO_SERVER_PORT", "99999"): "error: the environment variable GRADIO_SERVER_PORT must be a port number "
                                         "in 1-65535 (or unset it), got '99999'.",
    }
    for (name, value), expected in cases.items():
        clean_env.setenv(name, value)
        message = exit_message(lambda: app.parse_args([]))
        assert expected in message and "--" not in message.split(", got")[0], message
        clean_env.delenv(name)
    # Good values are read; a flag overrides its variable.
    clean_env.setenv("GENERATION_TIMEOUT", "12.5")
    clean_env.setenv("EVAL_MAX_PROMPT_LENGTH", "64")
    args = app.parse_args([])
    assert (args.generation_timeout, args.eval_max_prompt_length) == (12.5, 64)
    assert app.parse_args(["--generation_timeout", "5"]).generation_timeout == 5.0
    # Flags and config entries out of range are named as such.
    assert exit_message(lambda: app.parse_args(["--generation_timeout", "-1"])) == (
        "error: --generation_timeout must be a number of seconds greater than 0, got -1.0.")
    clean_env.delenv("GENERATION_TIMEOUT")
    config = tmp_path / "space_config.yaml"
    config.write_text("generation_timeout: soon\n")
    message = exit_message(lambda: app.parse_args(["--config", str(config)]))
    assert message == (f"error: Config file {str(config)!r}: option 'generation_timeout' must be a number of seconds "
                       "greater than 0, got 'soon' (str); fix its value in the file.")


def test_a_malformed_gradio_server_port_is_one_line_not_an_import_traceback(tmp_path):
    """Gradio parses GRADIO_SERVER_PORT as it is imported; the app sets a malformed value aside and refuses it."""
    env = {**os.environ, "GRADIO_SERVER_PORT": "abc", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.run([sys.executable, "-m", "rlhf_demo.space.app"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == ("error: the environment variable GRADIO_SERVER_PORT must be a "
                                                     "port number in 1-65535 (or unset it), got 'abc'.")


def test_a_port_out_of_range_or_in_use_is_one_line(clean_env, served, tmp_path):
    for port in ("99999", "0", "-1"):
        assert exit_message(lambda p=port: app.main(["--port", p])) == (
            f"error: --port must be a port number in 1-65535, got {int(port)}.")
    # A port in use (the served Space's): the models load, then the Space says which port and what to do.
    clean_env.setattr(tempfile, "tempdir", str(tmp_path))  # where this Space's temporary root goes
    handler = signal.getsignal(signal.SIGTERM)
    port = served[0].server_port
    message = exit_message(lambda: app.main(["--port", str(port), "--host", "127.0.0.1", "--preferences",
                                             str(tmp_path / "p.jsonl"), "--runs_dir", str(tmp_path / "runs")]))
    assert message == (f"error: cannot serve on port {port} of 127.0.0.1: the port is in use (or the address cannot "
                       "be bound); pass --port with a free port, or stop the program that serves on it.")
    assert not [n for n in os.listdir(tmp_path) if n.startswith("rlhf-space-")]  # its temporary root is gone
    assert signal.getsignal(signal.SIGTERM) is handler  # main() restored the SIGTERM handler it replaced


# ------------------------------------------------------------------------------------------------ SIGTERM


def test_sigterm_deletes_the_temporary_folders(tmp_path):
    """`python -m rlhf_demo.space.app` on its defaults, stopped with SIGTERM once it serves (as `docker stop` or a
    Space restart does): its `rlhf-space-*` root is gone and it exits with 143, no traceback."""
    import httpx

    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    port = free_port()
    env = {**os.environ, "TMPDIR": str(temp_dir), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("GRADIO_SERVER_PORT", None)
    proc = subprocess.Popen([sys.executable, "-m", "rlhf_demo.space.app", "--host", "127.0.0.1", "--port", str(port),
                             "--preferences", str(tmp_path / "p.jsonl"), "--runs_dir", str(tmp_path / "runs")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "the Space did not start serving"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        roots = [temp_dir / n for n in os.listdir(temp_dir) if n.startswith("rlhf-space-")]
        assert len(roots) == 1 and roots[0].is_dir(), os.listdir(temp_dir)
        (roots[0] / "eval-request").mkdir()  # a request's folder, not yet old enough to be swept
        (roots[0] / "eval-request" / "eval_report.md").write_text("# report")
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, output[-3000:]
    assert not roots[0].exists(), "SIGTERM left the temporary root behind"
    assert "Traceback" not in output, output[-3000:]

