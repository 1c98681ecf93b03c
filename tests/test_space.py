"""Tests of the Gradio Space (space/app.py, installed as `rlhf_demo.space.app`) and of its preference file
(`rlhf_demo.feedback`): every event through gradio_client against the launched app, the limits, the durable
preference file, the CLI contract, and one real-browser run (playwright + Debian's Chromium).

Models are tiny random GPT-2s built here (reference and aligned differ), the reward model a tiny random
GPT2ForSequenceClassification with NEGATIVE/POSITIVE labels; nothing is downloaded.
"""

import contextlib
import importlib.util
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time

import pytest
from conftest import free_port
import torch

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel  # noqa: E402

from rlhf_demo.config import data_dir  # noqa: E402
from rlhf_demo.feedback import PreferenceStore, read_preferences  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from hub_server import FakeHub  # noqa: E402

from rlhf_demo.space import app  # noqa: E402  (the installed subpackage, as `rlhf-demo space` runs it)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPT2_TOKENIZER = os.path.join(data_dir(), "gpt2-tokenizer")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TOKEN = "hf_test_token_0123456789"  # a visitor's token (user test-user)
SERVER_TOKEN = "hf_space_owner_token_987654"  # the Space's own HF_TOKEN (user space-owner): never used to push
WORDS = ("the movie film was great terrible acting plot story loved hated boring wonderful actor scene director "
         "and but it i really").split()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Paths of a tiny reference, a different tiny aligned policy, a reward model and a tiny IMDB-like dataset."""
    if not os.path.isdir(GPT2_TOKENIZER):
        pytest.skip(f"GPT-2 tokenizer not found at {GPT2_TOKENIZER} (set RLHF_DEMO_DATA)")
    root = tmp_path_factory.mktemp("space_models")
    tok = AutoTokenizer.from_pretrained(GPT2_TOKENIZER)
    base = dict(n_layer=1, n_embd=32, n_head=2, n_positions=256, vocab_size=len(tok))
    paths = {}
    for name, seed, init in (("reference", 1, 0.02), ("aligned", 2, 0.3)):
        torch.manual_seed(seed)
        config = GPT2Config(**base, bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                            initializer_range=init)
        GPT2LMHeadModel(config).save_pretrained(root / name)
        tok.save_pretrained(root / name)
        paths[name] = str(root / name)
    torch.manual_seed(3)
    labels = {"id2label": {0: "NEGATIVE", 1: "POSITIVE"}, "label2id": {"NEGATIVE": 0, "POSITIVE": 1}}
    rm = GPT2ForSequenceClassification(GPT2Config(**base, **labels, num_labels=2, pad_token_id=tok.eos_token_id))
    rm.save_pretrained(root / "reward_model")
    tok.save_pretrained(root / "reward_model")
    paths["reward_model"] = str(root / "reward_model")

    import datasets

    rng = random.Random(0)
    (root / "data").mkdir()
    for split in ("train", "test"):
        texts = [" ".join(rng.choice(WORDS) for _ in range(60)).capitalize() + "." for _ in range(8)]
        ds = datasets.Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(8)]})
        ds.to_parquet(str(root / "data" / f"{split}.parquet"))
    paths["dataset"] = str(root / "data")
    paths["root"] = str(root)
    return paths


@pytest.fixture(scope="module")
def hub():
    with FakeHub(tokens={TOKEN: "test-user", SERVER_TOKEN: "space-owner"},
                 namespaces={"test-user": {"test-user"}, "space-owner": {"space-owner"}}) as h:
        yield h


@pytest.fixture(scope="module")
def served(models, hub, tmp_path_factory):
    """The Space launched in this process; yields (demo, client, preferences path, url)."""
    from gradio_client import Client

    prefs = str(tmp_path_factory.mktemp("space_prefs") / "preferences.jsonl")
    runs_dir = tmp_path_factory.mktemp("space_runs")
    shutil.copytree(models["aligned"], runs_dir / "run-a")  # a run of the Space's own
    (runs_dir / "not-a-run").mkdir()
    demo = app.build_demo(models["reference"], models["aligned"], models["reward_model"], prefs, models["dataset"],
                          max_eval_prompts=8, hub_endpoint=hub.url, runs_dir=str(runs_dir))
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        yield demo, client, prefs, demo.local_url
    finally:
        demo.close()


def app_error(client, match, *args, api_name):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as err:
        client.predict(*args, api_name=api_name)
    assert match in str(err.value), str(err.value)
    return str(err.value)


# ------------------------------------------------------------------------------------------------ Compare


def test_compare_pairs_seeds_and_scores_both_models(served, models):
    demo, client, _, _ = served
    prompt = "This movie was"
    ref, ali, ref_bars, ali_bars, table, status = client.predict(prompt, 12, 1.0, 1.0, 7, 2, api_name="/compare")
    assert "2 sample(s) per model with seed 7" in status
    assert ref.startswith("[1] " + prompt) and "[2] " + prompt in ref and ali.startswith("[1] " + prompt)
    assert ref != ali
    # Same seed, same settings: the same text again (what makes reference and aligned a paired comparison).
    again = client.predict(prompt, 12, 1.0, 1.0, 7, 2, api_name="/compare")
    assert again[0] == ref and again[1] == ali
    # The reference output is exactly what `sample` gives from torch seed 7 (the seed set before each model's call).
    from rlhf_demo.models import load_policy, load_tokenizer, pad_left
    from rlhf_demo.sampling import sample

    tok, model = load_tokenizer(models["reference"]), load_policy(models["reference"])
    ids, mask = pad_left([tok(prompt)["input_ids"]] * 2, tok.pad_token_id)
    torch.manual_seed(7)
    resp, resp_mask = sample(model, ids, mask, max_new_tokens=12, temperature=1.0, top_p=1.0,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    first = tok.decode(resp[0][resp_mask[0].bool()].tolist(), skip_special_tokens=True)
    assert ref.split("\n\n")[0] == "[1] " + prompt + first
    # Scores: labelled bars in [0, 1] for both models, and one table row per model and sample.
    for bars in (ref_bars, ali_bars):
        labels = {c["label"]: c["confidence"] for c in bars["confidences"]}
        assert set(labels) == {"positive, reward model", "positive, judge (VADER)", "toxicity"}
        assert all(0.0 <= v <= 1.0 for v in labels.values())
    rows = table["data"]
    assert [(r[0], r[1]) for r in rows] == [("reference", 1), ("reference", 2), ("aligned", 1), ("aligned", 2)]
    # The reward column is the reward model's POSITIVE logit on prompt + continuation, P(positive) its softmax.
    from rlhf_demo.rewards import ClassifierReward

    probability = ClassifierReward(models["reward_model"], kind="probability")
    assert rows[0][2] == pytest.approx(ClassifierReward(models["reward_model"])([prompt], [first])[0], abs=1e-3)
    assert rows[0][3] == pytest.approx(probability([prompt], [first])[0], abs=1e-3)


def test_compare_refuses_bad_inputs_with_clear_errors(served):
    _, client, _, _ = served
    app_error(client, "1,001 characters long; the limit is 1,000", "x" * 1001, 8, 1.0, 1.0, 0, 1, api_name="/compare")
    app_error(client, "prompt is empty", "   ", 8, 1.0, 1.0, 0, 1, api_name="/compare")
    app_error(client, "greater than maximum value 128", "Hi", 500, 1.0, 1.0, 0, 1, api_name="/compare")
    app_error(client, "greater than maximum value 4", "Hi", 8, 1.0, 1.0, 0, 9, api_name="/compare")
    app_error(client, "less than minimum value 0.1", "Hi", 8, 0.0, 1.0, 0, 1, api_name="/compare")
    # 200 prompt tokens + 128 new tokens exceed the 256-token context: refused before generating.
    msg = app_error(client, "exceeds the model's context of 256 tokens", "word " * 200, 128, 1.0, 1.0, 0, 1,
                    api_name="/compare")
    assert "The reference model cannot continue this prompt" in msg
    assert demo_queue_limit(served[0]) == 2


def demo_queue_limit(demo) -> int:
    return demo._queue.default_concurrency_limit


def test_generation_timeout_stops_with_a_gradio_error(served):
    import gradio as gr

    models = served[0].space_models
    old = models.generation_timeout
    models.generation_timeout = 0.0  # every forward call is past the deadline
    try:
        with pytest.raises(gr.Error, match="took longer than 0 s and was stopped"):
            models.generate(["reference", "aligned"], "Hello", 1, 0, 16, 1.0, 1.0)
    finally:
        models.generation_timeout = old
    # The hook lets normal requests through.
    assert models.generate(["reference"], "Hello", 1, 0, 4, 1.0, 1.0)["reference"]


@contextlib.contextmanager
def slow_tokens(models, seconds: float):
    """Each forward call of both policies (one per sampled token) takes `seconds` longer: a busy Space."""
    hooks = [m.register_forward_pre_hook(lambda module, args: time.sleep(seconds)) for m in models.models.values()]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def test_compare_streams_the_texts_as_they_grow_then_scores_them(served):
    """The Compare handler is a generator: partial texts (each a prefix of the final one, the status line counting
    the tokens) before the final texts, which are exactly the unstreamed `generate`'s, with their scores."""
    demo = served[0]
    models, prompt = demo.space_models, "The plot of this movie"
    with slow_tokens(models, 0.02):
        updates = list(app.compare(models, prompt, 40, 1.0, 1.0, 5, 1))
    *partial, final = updates
    expected = models.generate(["reference", "aligned"], prompt, 1, 5, 40, 1.0, 1.0)
    assert final[0] == prompt + expected["reference"][0] and final[1] == prompt + expected["aligned"][0]
    assert "1 sample(s) per model with seed 5" in final[5] and final[4] and final[2]["positive, reward model"] >= 0
    growing = [u[0] for u in partial if "Sampling the reference model" in u[5]]
    assert len(set(growing)) >= 3, [u[5] for u in updates]  # at 20 ms a token, an update every 0.15 s
    assert all(final[0].startswith(text) and text.startswith(prompt) for text in growing)
    assert all(u[2] is None and u[4] is None for u in partial)  # scores only once both models are done
    assert any("Sampling the aligned model" in u[5] and u[0] == final[0] for u in partial)


def test_compare_stops_at_the_timeout_with_the_text_so_far(served):
    demo = served[0]
    models, prompt = demo.space_models, "The plot of this movie"
    old = models.generation_timeout
    models.generation_timeout = 0.4
    try:
        with slow_tokens(models, 0.02):  # 128 tokens would take 2.6 s per model
            *_, last = app.compare(models, prompt, 128, 1.0, 1.0, 5, 1)
    finally:
        models.generation_timeout = old
    reference, aligned, ref_bars, ali_bars, table, status = last
    assert status.startswith("**Stopped:** Generation took longer than 0.4 s and was stopped.")
    assert "what the models wrote until then (not scored)" in status
    assert reference.startswith(prompt) and len(reference) > len(prompt)  # some tokens, shown
    full = models.generate(["reference"], prompt, 1, 5, 128, 1.0, 1.0)["reference"][0]
    assert (prompt + full).startswith(reference) and len(reference) < len(prompt + full)
    assert aligned == prompt and ref_bars is None and ali_bars is None and table is None
    # The lock is free again and the next request runs in full.
    assert models.lock.acquire(timeout=5)
    models.lock.release()


# ------------------------------------------------------------------------------------------------ Evaluate


def test_evaluate_runs_the_suite_with_a_cap(served):
    _, client, _, _ = served
    table, report, plot, results = client.predict(4, 8, 0, api_name="/evaluate")
    metrics = [r[0] for r in table["data"]]
    for name in ("Reward (reward-model logit)", "KL to reference (nats/seq)", "Toxicity (mean prob.)"):
        assert name in metrics
    assert report.startswith("# Evaluation: aligned vs reference")
    assert os.path.getsize(plot) > 1000 and plot.endswith(".png")
    with open(results) as f:
        data = json.load(f)
    assert data["settings"]["num_prompts"] == 4 and data["settings"]["max_new_tokens"] == 8
    assert data["metrics"]["reference"]["kl_to_reference_mean"] == 0.0
    app_error(client, "greater than maximum value 8", 9, 8, 0, api_name="/evaluate")


# ------------------------------------------------------------------------------------------------ Feedback


def test_feedback_appends_trl_preferences_durably(served):
    _, client, prefs, _ = served
    app_error(client, "click 'New pair' first", api_name="/prefer_a")
    app_error(client, "No preferences recorded yet", api_name="/download_preferences")
    # A line cut short by a crash must neither break the next append nor be lost data of a whole choice.
    with open(prefs, "w") as f:
        f.write('{"prompt": "cut sho')
    prompt, a, b, status = client.predict("I loved this film because", "reference vs aligned", 10, 1.0,
                                          api_name="/new_pair")
    assert prompt == "I loved this film because" and a and b and a != b and "Pick A, B or tie" in status
    _, _, status = client.predict(api_name="/prefer_a")
    assert "1 choice(s)" in status
    app_error(client, "click 'New pair' first", api_name="/prefer_b")  # one vote per pair
    prompt2, a2, b2, _ = client.predict("", "two aligned samples", 10, 1.0, api_name="/new_pair")
    assert prompt2 in app.EXAMPLE_PROMPTS  # an empty prompt gets a random IMDB prompt
    client.predict(api_name="/tie")
    prompt3, a3, b3, _ = client.predict("Worst movie", "reference vs aligned", 10, 1.0, api_name="/new_pair")
    client.predict(api_name="/prefer_b")

    rows = read_preferences(prefs)
    assert len(rows) == 3
    assert rows[0]["prompt"] == "I loved this film because" and not rows[0]["tie"]
    assert rows[0]["chosen"] == a and rows[0]["rejected"] == b
    assert {rows[0]["chosen_model"], rows[0]["rejected_model"]} == {"reference", "aligned"}
    assert rows[1]["tie"] and rows[1]["chosen_model"] == rows[1]["rejected_model"] == "aligned"
    assert {rows[1]["chosen"], rows[1]["rejected"]} == {a2, b2}
    assert rows[2]["chosen"] == b3 and rows[2]["rejected"] == a3
    with open(prefs) as f:
        lines = f.read().split("\n")
    assert lines[0] == '{"prompt": "cut sho' and lines[-1] == ""  # the partial line was closed, not extended

    # The download holds the readable rows only, so it loads as is with `datasets` in TRL's preference format.
    import datasets

    downloaded = client.predict(api_name="/download_preferences")
    ds = datasets.load_dataset("json", data_files=downloaded, split="train")
    assert {"prompt", "chosen", "rejected"} <= set(ds.column_names) and isinstance(ds[0]["chosen"], str)
    assert ds["chosen"] == [r["chosen"] for r in rows] and ds["rejected"] == [r["rejected"] for r in rows]


def test_preference_store_appends_durably_and_skips_a_torn_line(tmp_path):
    path = str(tmp_path / "sub" / "prefs.jsonl")
    store = PreferenceStore(path)  # creates the folder, not the file
    assert os.path.isdir(tmp_path / "sub") and read_preferences(path) == [] and store.rows() == []
    with pytest.raises(FileNotFoundError, match="No preferences recorded yet"):
        store.snapshot()
    first = {"prompt": "The film", "chosen": " was great.", "rejected": " was bad, ünïcode", "tie": False}
    assert store.append(first) == 1
    assert read_preferences(path) == [first]
    # A crash in the middle of a write leaves a torn last line: reading skips it, the next append closes it first.
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"prompt": "cut')
    assert read_preferences(path) == [first]
    second = {"prompt": "A", "chosen": "b", "rejected": "c"}
    assert store.append(second) == 2
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert lines[1] == '{"prompt": "cut' and json.loads(lines[2]) == second and lines[-1] == ""
    assert read_preferences(path) == [first, second] == store.rows()
    # Rows that are not preferences (a missing or non-string field) are refused, and skipped when read.
    with pytest.raises(ValueError, match="missing or not a string: rejected"):
        store.append({"prompt": "A", "chosen": "b"})
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"prompt": "A", "chosen": "b", "rejected": None}) + "\n[1, 2]\n\n")
    assert store.append(second) == 3
    snapshot = store.snapshot()
    assert snapshot != path and read_preferences(snapshot) == [first, second, second]
    with open(snapshot, encoding="utf-8") as f:
        assert [json.loads(line) for line in f] == [first, second, second]  # nothing but whole rows
    shutil.rmtree(os.path.dirname(snapshot))


# ------------------------------------------------------------------------------------------------ Publish


def _fn_index(demo, name: str) -> int:
    return next(i for i, fn in demo.fns.items() if name in (fn.name, fn.api_name))


def test_publish_endpoints_are_private_and_refuse_an_anonymous_push(served, hub, monkeypatch):
    """An anonymous visitor cannot push, not even with a client that calls the push by its index while the Space has
    a valid token of its own (HF_TOKEN); the endpoints are not in the API."""
    import httpx
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", SERVER_TOKEN)
    demo, client, _, url = served
    assert set(demo.runs) == {"aligned", "run-a"}  # the Space's runs by name: "not-a-run" holds no model
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert "/compare" in named and not {"/push", "/preview_card"} & set(named)
    # A raw queue call by fn_index, as a hostile client would make it, bypassing the API listing.
    session = "anonymous-session"
    push_fn = _fn_index(demo, "push_handler")
    data = ["run-a", "space-owner/stolen", "mit", False, False]
    with httpx.Client(base_url=url, timeout=60) as http:
        joined = http.post("/gradio_api/queue/join", json={"data": data, "fn_index": push_fn,
                                                           "session_hash": session, "event_data": None})
        stream = http.get("/gradio_api/queue/data", params={"session_hash": session}).text
    assert joined.status_code == 200, joined.text
    assert "Log in with Hugging Face" in stream and "process_completed" in stream
    assert hub.repos == {}  # nothing was created, under the Space owner's name or any other


def test_publish_pushes_with_the_visitors_login_never_the_spaces_token(served, hub, monkeypatch):
    import gradio as gr
    import huggingface_hub.constants

    from rlhf_demo.space.publish import publish

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", SERVER_TOKEN)  # the Space's own token: it could write to space-owner/
    demo = served[0]
    runs, temp = demo.runs, demo.temp_folders

    def call(run, repo, dry, token):
        oauth = gr.OAuthToken(token=token, scope="write-repos", expires_at=0) if token else None
        return publish(runs, hub.url, temp, run, repo, "mit", dry, False, oauth)

    # Without a login: refused, and the Space's token is not used instead.
    with pytest.raises(gr.Error, match="Log in with Hugging Face"):
        call("run-a", "space-owner/x", False, None)
    assert hub.repos == {}
    # A run is chosen by name; anything else (a path) is refused without saying what exists on the server.
    for name in ("/etc", "../run-a", served[2]):
        with pytest.raises(gr.Error) as err:
            call(name, "test-user/x", True, None)
        assert str(err.value.message) == "Choose one of the Space's runs from the list."
    # A dry run needs no login, lists the files, and leaves no folder behind.
    before = temp.folders()
    listing = call("run-a", "test-user/tiny-ppo", True, None)
    assert "Dry run" in listing and "`README.md`" in listing and "`model.safetensors`" in listing
    assert temp.folders() == before and hub.repos == {}
    # With the visitor's login: pushed under the visitor's account with the visitor's token.
    with pytest.raises(gr.Error, match="HTTP 403"):  # the visitor cannot write to the Space owner's namespace
        call("run-a", "space-owner/x", False, TOKEN)
    status = call("run-a", "test-user/tiny-ppo", False, TOKEN)
    assert "Pushed to `test-user/tiny-ppo`" in status and TOKEN not in status
    assert "README.md" in hub.files("test-user/tiny-ppo") and "space-owner/x" not in hub.repos
    assert not any(TOKEN.encode() in body or SERVER_TOKEN.encode() in body for body in hub.bodies)


def test_card_preview_of_a_run(served):
    from rlhf_demo.card import build_model_card
    from rlhf_demo.space.publish import preview_card

    demo = served[0]
    text, raw = preview_card(demo.runs, "run-a", "test-user/tiny-ppo", "mit")
    assert raw.strip() == str(build_model_card(demo.runs["run-a"], "test-user/tiny-ppo", license="mit")).strip()
    assert "tiny-ppo" in text and tempfile.gettempdir() not in raw


def test_card_preview_images_are_served_by_the_space(served, tmp_path):
    """The card links its plots relative to the repository (`eval/x.png`), which the page would resolve against the
    Space (404): the preview points them at copies in Gradio's cache, which the Space serves; other links stay."""
    import gradio as gr
    import httpx

    from rlhf_demo.space.publish import serve_card_images

    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    (run / "eval" / "plot.png").write_bytes(png)
    (tmp_path / "secret.png").write_bytes(png)
    (run / "eval" / "notes.txt").write_text("x")
    text = ("![Plot](eval/plot.png)\n![Outside](../secret.png)\n![Web](https://example.com/a.png)\n"
            "![Missing](eval/none.png)\n![Text](eval/notes.txt)\n![Titled](eval/plot.png \"t\")")
    lines = serve_card_images(text, str(run), gr.Markdown()).splitlines()
    assert lines[1:5] == text.splitlines()[1:5]  # outside the run, a URL, missing, not an image: as they were
    assert lines[0].startswith("![Plot](/gradio_api/file=") and lines[0].endswith("plot.png)")
    assert lines[5].startswith("![Titled](/gradio_api/file=") and lines[5].endswith(' "t")')
    url = served[3].rstrip("/") + lines[0][len("![Plot]("):-1]
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200 and response.content == png
    assert response.headers["content-type"] == "image/png"
    assert httpx.get(served[3].rstrip("/") + "/gradio_api/file=" + str(tmp_path / "secret.png")).status_code == 403


def test_publish_tab_without_runs_explains_itself_and_asks_for_no_login():
    """A Space whose aligned model is a Hub id and whose runs folder is empty (every Space `push --space` deploys):
    the tab says what it is for and how to publish instead; no form, no login button (so no OAuth scope)."""
    import gradio as gr

    from rlhf_demo.space.publish import build_publish_tab
    from rlhf_demo.space.shared import TempFolders

    temp = TempFolders()
    try:
        with gr.Blocks() as demo:
            build_publish_tab({}, None, temp, login=True, aligned="me/tiny-rlhf", runs_dir="runs")
    finally:
        temp.close()
    kinds = {type(b).__name__ for b in demo.blocks.values()}
    assert "LoginButton" not in kinds and "Button" not in kinds and "Dropdown" not in kinds
    (note,) = [b.value for b in demo.blocks.values() if isinstance(b, gr.Markdown)]
    assert note.startswith("**Nothing to publish from this Space.**")
    assert "`me/tiny-rlhf`" in note and "`runs/`" in note and "rlhf-demo push --model RUN" in note
    assert not demo.fns  # no event a client could call


def test_twenty_concurrent_compare_requests_are_served_in_order(served):
    """20 visitors at once: every request completes, one model-bound request runs at a time."""
    demo, client, _, _ = served
    fn = demo.fns[_fn_index(demo, "compare")]
    assert fn.concurrency_limit == 1 and fn.concurrency_id == demo.fns[_fn_index(demo, "evaluate")].concurrency_id
    assert demo._queue.max_size >= 20
    jobs = [client.submit("The plot", 6, 1.0, 1.0, seed, 1, api_name="/compare") for seed in range(20)]
    results = [job.result(timeout=300) for job in jobs]
    assert [r[5].split(" with seed ")[1].split(",")[0] for r in results] == [str(seed) for seed in range(20)]
    assert all(r[0].startswith("The plot") and r[1].startswith("The plot") for r in results)


def test_temporary_folders_are_deleted(served, models):
    """Evaluation outputs, preference downloads and dry runs go to folders of `TempFolders`, deleted by age and at
    the end; the preference snapshot's own folder does not stay in the system's temp folder."""
    from rlhf_demo.space.shared import TempFolders

    demo, client, _, _ = served
    before = {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("rlhf-preferences-")}
    client.predict(api_name="/new_pair", prompt="A", mode="reference vs aligned", max_new_tokens=4, temperature=1.0)
    client.predict(api_name="/tie")
    with open(client.predict(api_name="/download_preferences"), encoding="utf-8") as f:
        assert models["root"] not in f.read()  # the rows name the models without the server's paths
    _, _, _, results = client.predict(2, 4, 0, api_name="/evaluate")
    with open(results, encoding="utf-8") as f:
        text = f.read()
    assert models["root"] not in text and "(local)" in text  # the served results name no server path
    assert {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("rlhf-preferences-")} == before
    temp = demo.temp_folders
    assert len(temp.folders()) >= 2  # the evaluation's and the download's, until they are old
    assert temp.sweep(max_age=0) >= 2 and temp.folders() == []
    short = TempFolders(max_age=0)
    first = short.new("eval-")
    second = short.new("eval-")  # sweeps the first
    assert not os.path.exists(first) and os.path.isdir(second)
    short.close()
    assert not os.path.exists(short.root)


def test_preferences_survive_a_restart_through_a_hub_dataset(hub, tmp_path, monkeypatch):
    import huggingface_hub.constants

    from rlhf_demo.feedback import HubPreferenceStore

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))  # not the user's
    rows = [{"prompt": "The film", "chosen": " was great.", "rejected": " was bad.", "tie": False},
            {"prompt": "A", "chosen": "b", "rejected": "c", "tie": True}]
    first = HubPreferenceStore(str(tmp_path / "space1"), "test-user/prefs", token=TOKEN, endpoint=hub.url,
                               every_minutes=60)
    for row in rows:
        first.append(row)
    first.close()  # uploads, as the scheduler does every few minutes and at exit
    uploaded = hub.files("test-user/prefs", repo_type="dataset")
    assert [json.loads(line) for line in uploaded["preferences.jsonl"].decode().splitlines()] == rows
    assert b"data_files: preferences.jsonl" in uploaded["README.md"]  # a dataset card that loads the file
    assert hub.datasets["test-user/prefs"].private
    # The Space restarts on a fresh disk: the rows come back from the dataset, and new ones extend them.
    second = HubPreferenceStore(str(tmp_path / "space2"), "test-user/prefs", token=TOKEN, endpoint=hub.url,
                                every_minutes=60)
    assert second.rows() == rows
    assert second.append({"prompt": "C", "chosen": "d", "rejected": "e"}) == 3
    second.close()
    assert len(hub.files("test-user/prefs", repo_type="dataset")["preferences.jsonl"].splitlines()) == 3


def test_concurrent_votes_and_uploads_keep_whole_lines(hub, tmp_path, monkeypatch):
    import huggingface_hub.constants

    from rlhf_demo.feedback import HubPreferenceStore

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))  # not the user's
    store = HubPreferenceStore(str(tmp_path / "space"), "test-user/votes", token=TOKEN, endpoint=hub.url,
                               every_minutes=60)
    threads = [threading.Thread(target=lambda i=i: [store.append({"prompt": f"p{i}", "chosen": "x" * 2000,
                                                                  "rejected": "y"}) for _ in range(10)])
               for i in range(4)]
    for t in threads:
        t.start()
    for _ in range(3):
        store.sync()  # uploads while votes are appended
    for t in threads:
        t.join()
    store.close()
    for files in hub.datasets["test-user/votes"].commits.values():
        if "preferences.jsonl" in files:
            text = files["preferences.jsonl"].decode()
            assert text == "" or text.endswith("\n"), "an upload took half a line"
    assert len(read_preferences(store.path)) == 40


# ------------------------------------------------------------------------------------------------ startup and CLI


def test_missing_model_folder_is_a_clear_startup_error(models, tmp_path):
    missing = str(tmp_path / "no_such_model")
    match = "aligned model folder .*no_such_model.* does not exist. Pass --aligned"
    with pytest.raises(FileNotFoundError, match=match):
        app.build_demo(models["reference"], missing, models["reward_model"], str(tmp_path / "p.jsonl"))
    # `rlhf-demo space` calls rlhf_demo.space.app.main; a missing folder ends with one line, no traceback.
    from rlhf_demo.cli import main as cli_main

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["space", "--reference", missing, "--aligned", models["aligned"],
                  "--reward_model", models["reward_model"]])
    message = str(exit_info.value.code)
    assert "error: The reference model folder" in message and "REFERENCE_MODEL" in message


def test_space_is_installed_with_the_package_and_run_by_the_cli(capsys):
    # The Space is the subpackage rlhf_demo.space (as eval/ is rlhf_demo.eval), so a pip install has it; one module.
    spec = importlib.util.find_spec("rlhf_demo.space.app")
    assert spec is not None and os.path.samefile(spec.origin, os.path.join(ROOT, "space", "app.py"))
    assert sys.modules["rlhf_demo.space.app"] is app
    from rlhf_demo.cli import main as cli_main

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["space", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: rlhf-demo space") and "--reward_model" in out and "PREFERENCES_FILE" in out


def test_methods_tab_serves_each_methods_response_to_a_chosen_prompt(served):
    from rlhf_demo.space.methods import load_frontier, method_responses

    _, client, _, _ = served
    shipped = load_frontier()  # committed by `benchmarks/frontier.py --space_dir eval/results/frontier`
    assert shipped is not None and len(shipped["samples"]["methods"]) >= 4
    rows = client.predict(5, api_name="/method_responses")["data"]
    expected = method_responses(shipped["samples"], 5)
    assert [r[0] for r in rows] == [r[0] for r in expected] and [r[-1] for r in rows] == [r[-1] for r in expected]
    assert len({r[-1] for r in rows}) > 1  # different methods, different responses to the same prompt
    assert rows[0][-1] == shipped["samples"]["methods"][rows[0][0]]["responses"][5]


def test_methods_table_says_which_model_each_row_shows():
    """Each method's shown model is its best at KL <= 6 nats, or its lowest-KL one when none is that close (RLOO in
    the shipped comparison, at 8.5 nats): the rows and the heading say which."""
    from rlhf_demo.space.methods import load_frontier, method_responses, responses_heading

    samples = load_frontier()["samples"]
    rows = {r[0]: r for r in method_responses(samples, 0)}
    for label, m in samples["methods"].items():
        assert rows[label][2] == ("best gold at KL <= 6" if m["kl"] <= 6 else "lowest KL (none <= 6)")
        assert rows[label][4] == round(m["kl"], 2)
    assert rows["RLOO (TRL)"][4] > 6 and rows["PPO (rlhf-demo)"][2] == "best gold at KL <= 6"
    heading = responses_heading(samples)
    assert "for RLOO (TRL), with no final model that close, the one with the lowest KL" in heading
    assert "PPO" not in heading


def test_space_texts_name_no_machine_path_and_say_how_to_load_the_preferences():
    texts = {}
    modules = sorted(n for n in os.listdir(os.path.join(ROOT, "space")) if n.endswith(".py"))  # every module
    assert {"app.py", "compare.py", "feedback_tab.py", "options.py", "shared.py"} <= set(modules)
    for name in (*modules, "README.md", "requirements.txt"):
        with open(os.path.join(ROOT, "space", name), encoding="utf-8") as f:
            texts[name] = f.read()
    for name, text in texts.items():
        # No path of this machine (the checkout's own); commands and flags are checked in test_docs.py.
        assert ROOT not in text and "shared/data/gpt2" not in text.replace("\\", "/"), name
    assert "datasets.load_dataset" in texts["app.py"] and "datasets.load_dataset" in texts["README.md"]


def test_space_readme_front_matter():
    import yaml

    with open(os.path.join(ROOT, "space", "README.md")) as f:
        text = f.read()
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and meta["sdk_version"] == "6.31.0"
    assert "stanfordnlp/imdb" in meta["datasets"] and meta["license"] and meta["models"]
    assert "screenshot_compare.png" in text


# ------------------------------------------------------------------------------------------------ browser


def compare_until_they_differ(page, prompt: str, timeout_ms: int = 90_000) -> tuple[str, str]:
    """In the Compare tab, generate for `prompt` with seeds 0, 1, 2 until reference and aligned texts differ; each
    must continue the prompt. Returns the (reference, aligned) texts that differed."""
    from playwright.sync_api import expect

    page.locator("#compare-prompt textarea").fill(prompt)
    for seed in (0, 1, 2):
        page.locator("#compare-seed input").fill(str(seed))
        page.locator("#compare-generate").click()
        expect(page.locator("#compare-status")).to_contain_text(f"with seed {seed},", timeout=timeout_ms)
        ref, ali = page.locator("#compare-reference textarea"), page.locator("#compare-aligned textarea")
        expect(ref).not_to_have_value("", timeout=10_000)
        expect(ali).not_to_have_value("", timeout=10_000)
        ref_text, ali_text = ref.input_value(), ali.input_value()
        assert ref_text.startswith(prompt) and ali_text.startswith(prompt)
        if ref_text != ali_text:
            return ref_text, ali_text
    raise AssertionError("reference and aligned gave the same text on every seed")


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is missing (apt-get install chromium)")
def test_browser_compare_and_feedback(served, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    _, _, prefs, url = served
    before = len(read_preferences(prefs))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(url)
            compare_until_they_differ(page, "The acting in this film")
            page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)

            page.get_by_role("tab", name="Feedback").click()
            page.locator("#feedback-prompt textarea").fill("I really wanted to like")
            page.locator("#feedback-new").click()
            a = page.locator("#feedback-a textarea")
            expect(a).not_to_have_value("", timeout=60_000)
            a_text = a.input_value()
            page.locator("#feedback-pick-a").click()
            expect(page.locator("#feedback-status")).to_contain_text("choice(s)", timeout=30_000)
            page.screenshot(path=str(tmp_path / "feedback.png"), full_page=True)

            page.get_by_role("tab", name="Methods").click()  # the shipped comparison: plot and each method's response
            expect(page.locator("#methods-plot img")).to_be_visible(timeout=30_000)
            for label in ("PPO (rlhf-demo)", "DPO (TRL)", "best-of-n"):
                expect(page.locator("#methods-responses")).to_contain_text(label, timeout=10_000)
        finally:
            browser.close()
    rows = read_preferences(prefs)
    assert len(rows) == before + 1
    assert rows[-1]["prompt"] == "I really wanted to like" and rows[-1]["chosen"] == a_text and not rows[-1]["tie"]
    assert os.path.getsize(tmp_path / "compare.png") > 10_000
