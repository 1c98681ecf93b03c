"""Tests of the Gradio Space (space/app.py): every event through gradio_client against the launched app, the
limits, the durable preference file, the CLI contract, and one real-browser run (playwright + Debian's Chromium).

Models are tiny random GPT-2s built here (reference and aligned differ), the reward model a tiny random
GPT2ForSequenceClassification with NEGATIVE/POSITIVE labels; nothing is downloaded.
"""

import importlib.util
import json
import os
import random
import shutil
import socket
import sys

import pytest
import torch

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from hub_server import FakeHub  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP_PATH = os.path.join(ROOT, "space", "app.py")
GPT2_TOKENIZER = os.path.join(ROOT, "..", "shared", "data", "gpt2-tokenizer")
if not os.path.isdir(GPT2_TOKENIZER):
    GPT2_TOKENIZER = "/work/shared/data/gpt2-tokenizer"
CHROMIUM = "/usr/bin/chromium"
TOKEN = "hf_test_token_0123456789"  # the token FakeHub accepts
WORDS = "the movie film was great terrible acting plot story loved hated boring wonderful actor scene director and but it i really".split()


def load_app():
    spec = importlib.util.spec_from_file_location("space_app", APP_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


app = load_app()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Paths of a tiny reference, a different tiny aligned policy, a reward model and a tiny IMDB-like dataset."""
    root = tmp_path_factory.mktemp("space_models")
    tok = AutoTokenizer.from_pretrained(GPT2_TOKENIZER)
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=256, vocab_size=len(tok), bos_token_id=tok.eos_token_id,
                        eos_token_id=tok.eos_token_id)
    paths = {}
    for name, seed, init in (("reference", 1, 0.02), ("aligned", 2, 0.3)):
        torch.manual_seed(seed)
        GPT2LMHeadModel(GPT2Config(**{**config.to_dict(), "initializer_range": init})).save_pretrained(root / name)
        tok.save_pretrained(root / name)
        paths[name] = str(root / name)
    torch.manual_seed(3)
    rm = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=256, vocab_size=len(tok), num_labels=2,
                                                  id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1},
                                                  pad_token_id=tok.eos_token_id))
    rm.save_pretrained(root / "reward_model")
    tok.save_pretrained(root / "reward_model")
    paths["reward_model"] = str(root / "reward_model")

    import datasets

    rng = random.Random(0)
    (root / "data").mkdir()
    for split in ("train", "test"):
        texts = [" ".join(rng.choice(WORDS) for _ in range(60)).capitalize() + "." for _ in range(8)]
        datasets.Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(8)]}).to_parquet(str(root / "data" / f"{split}.parquet"))
    paths["dataset"] = str(root / "data")
    paths["root"] = str(root)
    return paths


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as h:
        yield h


@pytest.fixture(scope="module")
def served(models, hub, tmp_path_factory):
    """The Space launched in this process; yields (demo, client, preferences path, url)."""
    from gradio_client import Client

    prefs = str(tmp_path_factory.mktemp("space_prefs") / "preferences.jsonl")
    demo = app.build_demo(models["reference"], models["aligned"], models["reward_model"], prefs, models["dataset"],
                          max_eval_prompts=8, hub_endpoint=hub.url)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        yield demo, client, prefs, demo.local_url
    finally:
        demo.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    resp, resp_mask = sample(model, ids, mask, max_new_tokens=12, temperature=1.0, top_p=1.0, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
    first = tok.decode(resp[0][resp_mask[0].bool()].tolist(), skip_special_tokens=True)
    assert ref.split("\n\n")[0] == "[1] " + prompt + first
    # Scores: labelled bars in [0, 1] for both models, and one table row per model and sample.
    for bars in (ref_bars, ali_bars):
        labels = {c["label"]: c["confidence"] for c in bars["confidences"]}
        assert set(labels) == {"positive, reward model", "positive, judge (VADER)", "toxicity"}
        assert all(0.0 <= v <= 1.0 for v in labels.values())
    rows = table["data"]
    assert [(r[0], r[1]) for r in rows] == [("reference", 1), ("reference", 2), ("aligned", 1), ("aligned", 2)]
    # The reward column is the reward model's POSITIVE logit on prompt + continuation.
    from rlhf_demo.rewards import SentimentReward

    expected = SentimentReward(models["reward_model"])([prompt], [first])[0]
    assert rows[0][2] == pytest.approx(expected, abs=1e-3)


def test_compare_refuses_bad_inputs_with_clear_errors(served):
    _, client, _, _ = served
    app_error(client, "1,001 characters long; the limit is 1,000", "x" * 1001, 8, 1.0, 1.0, 0, 1, api_name="/compare")
    app_error(client, "prompt is empty", "   ", 8, 1.0, 1.0, 0, 1, api_name="/compare")
    app_error(client, "greater than maximum value 128", "Hi", 500, 1.0, 1.0, 0, 1, api_name="/compare")
    app_error(client, "greater than maximum value 4", "Hi", 8, 1.0, 1.0, 0, 9, api_name="/compare")
    app_error(client, "less than minimum value 0.1", "Hi", 8, 0.0, 1.0, 0, 1, api_name="/compare")
    # 200 prompt tokens + 128 new tokens exceed the 256-token context: refused before generating.
    app_error(client, "exceeds the reference model's context of 256 tokens", "word " * 200, 128, 1.0, 1.0, 0, 1, api_name="/compare")
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
    assert models.generate(["reference"], "Hello", 1, 0, 4, 1.0, 1.0)["reference"]  # the hook lets normal requests through


# ------------------------------------------------------------------------------------------------ Evaluate


def test_evaluate_runs_the_suite_with_a_cap(served):
    _, client, _, _ = served
    table, report, plot, results = client.predict(4, 8, 0, api_name="/evaluate")
    metrics = [r[0] for r in table["data"]]
    assert "Reward (reward-model logit)" in metrics and "KL to reference (nats/seq)" in metrics and "Toxicity (mean prob.)" in metrics
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
    # A line cut short by a crash must neither break the next append nor be lost data of a whole choice.
    with open(prefs, "w") as f:
        f.write('{"prompt": "cut sho')
    prompt, a, b, status = client.predict("I loved this film because", "reference vs aligned", 10, 1.0, api_name="/new_pair")
    assert prompt == "I loved this film because" and a and b and a != b and "Pick A, B or tie" in status
    _, _, status = client.predict(api_name="/prefer_a")
    assert "1 choice(s)" in status
    app_error(client, "click 'New pair' first", api_name="/prefer_b")  # one vote per pair
    prompt2, a2, b2, _ = client.predict("", "two aligned samples", 10, 1.0, api_name="/new_pair")
    assert prompt2 in app.EXAMPLE_PROMPTS  # an empty prompt gets a random IMDB prompt
    client.predict(api_name="/tie")
    prompt3, a3, b3, _ = client.predict("Worst movie", "reference vs aligned", 10, 1.0, api_name="/new_pair")
    client.predict(api_name="/prefer_b")

    rows = app.read_preferences(prefs)
    assert len(rows) == 3
    assert rows[0]["prompt"] == "I loved this film because" and rows[0]["chosen"] == a and rows[0]["rejected"] == b and not rows[0]["tie"]
    assert {rows[0]["chosen_model"], rows[0]["rejected_model"]} == {"reference", "aligned"}
    assert rows[1]["tie"] and rows[1]["chosen_model"] == rows[1]["rejected_model"] == "aligned" and {rows[1]["chosen"], rows[1]["rejected"]} == {a2, b2}
    assert rows[2]["chosen"] == b3 and rows[2]["rejected"] == a3
    with open(prefs) as f:
        lines = f.read().split("\n")
    assert lines[0] == '{"prompt": "cut sho' and lines[-1] == ""  # the partial line was closed, not extended

    # TRL's preference format: loadable by `datasets` (the partial line removed) with string prompt/chosen/rejected.
    import datasets

    clean = os.path.join(os.path.dirname(prefs), "clean.jsonl")
    with open(clean, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    ds = datasets.load_dataset("json", data_files=clean, split="train")
    assert {"prompt", "chosen", "rejected"} <= set(ds.column_names) and isinstance(ds[0]["chosen"], str)

    downloaded = client.predict(api_name="/download_preferences")
    with open(downloaded) as f, open(prefs) as g:
        assert f.read() == g.read()


# ------------------------------------------------------------------------------------------------ Publish


def test_publish_previews_card_dry_runs_and_pushes_without_leaking_the_token(served, models, hub, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the fake Hub is local; other tests set offline mode
    demo, client, _, _ = served
    assert demo.run_history is False  # the browser's run history would keep the token field's value
    card_text, raw = client.predict(models["aligned"], "test-user/tiny-ppo", "mit", api_name="/preview_card")
    assert raw.startswith("---\n") and "license: mit" in raw and "tiny-ppo" in card_text
    from rlhf_demo.hub import build_model_card

    assert raw.strip() == str(build_model_card(models["aligned"], "test-user/tiny-ppo", license="mit")).strip()  # the card of `rlhf-demo push`
    app_error(client, "does not exist", str(tmp_path / "nope"), "test-user/x", "mit", api_name="/preview_card")

    status = client.predict(models["aligned"], "test-user/tiny-ppo", TOKEN, "mit", True, False, api_name="/push")
    assert "Dry run" in status and "`README.md`" in status and "`model.safetensors`" in status and TOKEN not in status
    assert hub.repos == {}

    msg = app_error(client, "HTTP 401", models["aligned"], "test-user/tiny-ppo", "hf_wrong_secret_value", "mit", False, False, api_name="/push")
    assert "hf_wrong_secret_value" not in msg
    app_error(client, "needs a Hugging Face token", models["aligned"], "test-user/tiny-ppo", "", "mit", False, False, api_name="/push")
    app_error(client, "1,001 characters", models["aligned"], "a" * 1001, TOKEN, "mit", True, False, api_name="/push")

    status = client.predict(models["aligned"], "test-user/tiny-ppo", TOKEN, "mit", False, False, api_name="/push")
    assert "Pushed to `test-user/tiny-ppo`" in status and TOKEN not in status
    files = hub.repos["test-user/tiny-ppo"].commits[hub.repos["test-user/tiny-ppo"].branches["main"]]
    assert "README.md" in files and "model.safetensors" in files
    assert not any(TOKEN.encode() in body for body in hub.bodies)


# ------------------------------------------------------------------------------------------------ startup and CLI


def test_missing_model_folder_is_a_clear_startup_error(models, tmp_path):
    missing = str(tmp_path / "no_such_model")
    with pytest.raises(FileNotFoundError, match="aligned model folder .*no_such_model.* does not exist. Pass --aligned"):
        app.build_demo(models["reference"], missing, models["reward_model"], str(tmp_path / "p.jsonl"))
    # `rlhf-demo space` runs the app with runpy and its flags; a missing folder ends with one line, no traceback.
    from rlhf_demo.cli import main as cli_main

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["space", "--reference", missing, "--aligned", models["aligned"], "--reward_model", models["reward_model"]])
    assert "error: The reference model folder" in str(exit_info.value.code) and "REFERENCE_MODEL" in str(exit_info.value.code)


def test_space_readme_front_matter():
    import yaml

    with open(os.path.join(ROOT, "space", "README.md")) as f:
        text = f.read()
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and meta["sdk_version"] == "6.31.0"
    assert "stanfordnlp/imdb" in meta["datasets"] and meta["license"] and meta["models"]
    assert "screenshot_compare.png" in text


# ------------------------------------------------------------------------------------------------ browser


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (apt-get install chromium)")
def test_browser_compare_and_feedback(served, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    _, _, prefs, url = served
    before = len(app.read_preferences(prefs))
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(url)
            page.locator("#compare-prompt textarea").fill("The acting in this film")
            differ = False
            for seed in (0, 1, 2):
                page.locator("#compare-seed input").fill(str(seed))
                page.locator("#compare-generate").click()
                expect(page.locator("#compare-status")).to_contain_text(f"with seed {seed},", timeout=90_000)
                ref, ali = page.locator("#compare-reference textarea"), page.locator("#compare-aligned textarea")
                expect(ref).not_to_have_value("", timeout=10_000)
                expect(ali).not_to_have_value("", timeout=10_000)
                ref_text, ali_text = ref.input_value(), ali.input_value()
                assert ref_text.startswith("The acting in this film") and ali_text.startswith("The acting in this film")
                if ref_text != ali_text:
                    differ = True
                    break
            assert differ, "reference and aligned gave the same text on every seed"
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
        finally:
            browser.close()
    rows = app.read_preferences(prefs)
    assert len(rows) == before + 1
    assert rows[-1]["prompt"] == "I really wanted to like" and rows[-1]["chosen"] == a_text and not rows[-1]["tie"]
    assert os.path.getsize(tmp_path / "compare.png") > 10_000
