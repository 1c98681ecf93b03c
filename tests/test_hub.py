"""Model card, dry run and Hub push/download, over real HTTP against the test Hub in `tests/hub_server.py`.

The run folder the tests push is built like a real one: a tiny GPT-2 policy and its training files, and an `eval/`
written by `rlhf_demo.eval.suite.run_eval` itself (tiny reference and reward classifier built here), so the card
reads the files the evaluation suite really writes.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import yaml
from huggingface_hub import ModelCard

from rlhf_demo.card import build_model_card
from rlhf_demo.config import EvalConfig, PushConfig, data_dir
from rlhf_demo.errors import UserInputError
from rlhf_demo.eval.samples import sample_row, write_samples
from rlhf_demo.hub import HubPushError, prepare_upload_folder, push, select_upload_files

sys.path.insert(0, os.path.dirname(__file__))
from hub_server import FakeHub  # noqa: E402

TOKENIZER = os.path.join(data_dir(), "gpt2-tokenizer")
TOKEN = "hf_test_token_0123456789"
REPO = "test-user/tiny-ppo"
CLIENT_ENV_DROP = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
SENTIMENT_REWARD = "sentiment=lvwerra/distilbert-imdb@POSITIVE"
WORDS = "the movie film was great terrible acting plot story loved hated boring wonderful actor scene and but".split()


def _tiny_gpt2(path, seed, init=0.02, n_embd=16):
    """A tiny random GPT-2 (GPT-2's real tokenizer) saved to `path`."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=n_embd, n_layer=1, n_head=2, initializer_range=init)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return model


def make_run_dir(path, with_info=True, reward=(SENTIMENT_REWARD,), dataset="stanfordnlp/imdb"):
    """A run directory as `rlhf-demo train` leaves it (not evaluated yet): a tiny random GPT-2 policy, value model,
    training config and logs with `reward` specs and prompts `dataset`, a checkpoint, a stray optimizer state."""
    model = _tiny_gpt2(path, seed=0)
    model.save_pretrained(os.path.join(path, "value_model"))
    ckpt = os.path.join(path, "checkpoints", "checkpoint-2")
    os.makedirs(ckpt)
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        with open(os.path.join(ckpt, name), "wb") as f:
            f.write(b"state")
    with open(os.path.join(ckpt, "trainer_state.json"), "w") as f:
        json.dump({"global_step": 2}, f)
    with open(os.path.join(path, "optimizer.pt"), "wb") as f:  # stray state at the top: must stay local
        f.write(b"state")
    if with_info:
        with open(os.path.join(path, "training_config.yaml"), "w") as f:
            yaml.safe_dump({"model_name_or_path": "openai-community/gpt2", "reward": list(reward),
                            "kl_coef": 0.05, "adaptive_kl": True, "target_kl": 6.0, "gamma": 1.0, "lam": 0.95,
                            "cliprange": 0.2, "cliprange_value": 0.2, "vf_coef": 0.1, "learning_rate": 1.4e-5,
                            "batch_size": 64, "num_mini_batches": 4, "num_ppo_epochs": 4, "response_length": 24,
                            "temperature": 0.7, "total_episodes": 128, "seed": 0, "dataset_name": dataset}, f)
        with open(os.path.join(path, "run_info.json"), "w") as f:
            json.dump({"base_model": "openai-community/gpt2", "reward_functions": ["ClassifierReward('x')"],
                       "dataset": dataset, "episodes": 128, "steps": 2, "wall_time_s": 93.0,
                       "machine": "2-core CPU", "rlhf_demo_version": "0.1.0",
                       "final_metrics": {"objective/scores": 1.5, "objective/kl": 2.0}}, f)
        with open(os.path.join(path, "metrics.jsonl"), "w") as f:
            f.write('{"step": 1, "objective/kl": 0.0}\n{"step": 2, "objective/kl": 2.0}\n')
    return path


def local_eval_models(root):
    """A tiny reference, a reward classifier (NEGATIVE/POSITIVE) and a local review dataset named `imdb` (test
    split), built under `root`; returns their paths."""
    import datasets
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

    rng = random.Random(0)
    data = os.path.join(root, "imdb")
    os.makedirs(data)
    texts = [" ".join(rng.choice(WORDS) for _ in range(40)).capitalize() + "." for _ in range(8)]
    datasets.Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(8)]}).to_parquet(
        os.path.join(data, "test.parquet"))
    reference = os.path.join(root, "reference")
    _tiny_gpt2(reference, seed=1, init=0.3)  # peaked distributions: samples differ from the policy's
    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    torch.manual_seed(5)
    rm = GPT2ForSequenceClassification(GPT2Config(
        n_layer=1, n_embd=16, n_head=2, n_positions=128, vocab_size=len(tok), num_labels=2,
        pad_token_id=tok.eos_token_id, id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1}))
    reward_model = os.path.join(root, "reward_model")
    rm.save_pretrained(reward_model)
    tok.save_pretrained(reward_model)
    return reference, reward_model, data


def evaluate(run, root):
    """`rlhf-demo eval --model RUN --output_dir RUN/eval` on the tiny models of `local_eval_models(root)`."""
    from rlhf_demo.eval.suite import run_eval

    reference, reward_model, data = local_eval_models(root)
    run_eval(EvalConfig(model=run, reference=reference, output_dir=os.path.join(run, "eval"), num_prompts=4,
                        samples_per_prompt=2, max_new_tokens=6, dataset_name=data, reward_model=reward_model,
                        batch_size=4, bootstrap_samples=100, frontier=False, num_report_samples=2))
    return run


def copy_run(run, dest, **training_config):
    """A copy of `run` with `training_config` entries changed."""
    shutil.copytree(run, dest)
    path = os.path.join(dest, "training_config.yaml")
    with open(path) as f:
        cfg = yaml.safe_load(f)
    with open(path, "w") as f:
        yaml.safe_dump({**cfg, **training_config}, f)
    return str(dest)


def cell(text):
    """`text` as the card's tables show it."""
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


@pytest.fixture(autouse=True)
def online_to_the_fake_hub(monkeypatch):
    """The suite runs with HF_HUB_OFFLINE=1 (nothing may reach the real Hub); these tests talk to a loopback server."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """A trained and evaluated run folder (eval/ written by run_eval), shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("hub_run")
    return evaluate(make_run_dir(str(root / "run")), str(root))


@pytest.fixture(scope="session")
def eval_results(run_dir):
    with open(os.path.join(run_dir, "eval", "eval_results.json")) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def samples(run_dir):
    """The rows of the run's eval/samples.jsonl, read as plain JSON lines (not with the code under test)."""
    with open(os.path.join(run_dir, "eval", "samples.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_card_with_eval_has_metadata_and_model_index(run_dir, eval_results):
    card = build_model_card(run_dir, REPO)
    parsed = ModelCard(str(card))  # what ModelCard.load does with the saved file
    data = parsed.data.to_dict()
    assert data["base_model"] == "openai-community/gpt2"
    assert data["datasets"] == ["stanfordnlp/imdb"]
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-generation"
    assert {"rlhf", "ppo", "gpt2"} <= set(data["tags"]) and "trl" not in data["tags"]  # libraries used only
    assert "peft" not in data["tags"]  # no LoRA in this run
    results = {r.metric_type: r for r in parsed.data.eval_results}
    assert {"reward", "sentiment", "toxicity", "kl", "perplexity", "win_rate"} <= set(results)
    aligned = eval_results["metrics"]["aligned"]
    assert results["reward"].metric_value == pytest.approx(aligned["reward_mean"])
    assert results["kl"].metric_value == pytest.approx(aligned["kl_to_reference_mean"])
    # a local copy of IMDB is named by its Hub dataset
    assert results["reward"].dataset_type == "stanfordnlp/imdb" and results["reward"].dataset_split == "test"
    assert data["language"] == "en" and data["widget"][0] == {"text": "This movie was"}
    assert results["reward"].task_name == "Text generation (sentiment-steered continuation)"
    text = parsed.text
    assert f'pipeline("text-generation", model="{REPO}")' in text
    d = eval_results["differences"]["reward_mean"]
    assert f"{d['diff']:+.4g} [{d['ci_low']:.4g}, {d['ci_high']:.4g}]" in text  # difference with its CI
    assert "](eval/score_distributions.png)" in text and "](eval/eval_report.md)" in text  # by relative links
    assert "Ziegler" in text and "Schulman" in text and "lvwerra/distilbert-imdb" in text
    assert "0.05" in text and "93.0" not in text and "1.6 min" in text  # KL coefficient, wall time in minutes
    assert "not evaluated yet" not in text.lower()
    assert "movie review" in text and "labelled POSITIVE by the sentiment classifier `lvwerra/distilbert-imdb`" in text
    flagged = eval_results["reward_hacking_flag"]
    assert f"**Reward-hacking check: {'flagged' if flagged else 'not flagged'}.**" in text
    assert os.path.dirname(run_dir) not in text  # no machine paths: local folders by what they are


def test_card_shows_the_samples_run_eval_wrote(run_dir, samples):
    """The samples table holds the real texts of eval/samples.jsonl: prompt, reference and aligned response."""
    text = ModelCard(str(build_model_card(run_dir, REPO))).text
    assert "### Samples (reference vs aligned, same prompt)" in text
    table = text.split("### Samples")[1].split("## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| prompt")]
    assert len(rows) == 3
    for row, sample in zip(rows, samples):
        texts = [sample["prompt"], sample["reference_response"], sample["aligned_response"]]
        assert row == "| " + " | ".join(cell(t) for t in texts) + " |"


def test_card_escapes_sample_texts(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path / "run")
    scores = {"reward": 1.0, "judge": 0.0, "toxicity": 0.0, "kl": 0.0}
    write_samples(os.path.join(run, "eval", "samples.jsonl"), [
        sample_row(0, "This movie", [1], {"response": "was dull | long.", "response_ids": [2], **scores},
                   {"response": "was\nwonderful.", "response_ids": [3], **scores})])
    text = ModelCard(str(build_model_card(run, REPO))).text
    assert "| This movie | was dull \\| long. | was wonderful. |" in text


@pytest.mark.parametrize("reward, dataset, says", [
    ("toxicity=facebook/roberta-hate-speech-dynabench-r4-target", "allenai/real-toxicity-prompts",
     "less toxic text (a lower probability of label hate from the toxicity classifier "
     "`facebook/roberta-hate-speech-dynabench-r4-target`)"),
    ("keyword=excellent:0.5", "my-org/story-prompts", 'text that contains the word "excellent" (weight 0.5)'),
])
def test_card_task_comes_from_the_reward_specs(tmp_path, reward, dataset, says):
    """A toxicity or keyword run on other prompts says so, and reads nowhere as IMDB sentiment."""
    run = make_run_dir(str(tmp_path / "run"), reward=[reward], dataset=dataset)
    text = ModelCard(str(build_model_card(run, REPO))).text
    assert says in text and f"`{dataset}`" in text
    for word in ("imdb", "movie", "sentiment", "positive", "maas"):
        assert word not in text.lower(), word


def test_card_task_of_an_evaluated_toxicity_run(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path / "run", reward=["toxicity=./tox_model@toxic"])
    card = ModelCard(str(build_model_card(run, REPO)))
    assert {r.task_name for r in card.data.eval_results} == {"Text generation (detoxified continuation)"}
    assert "`toxicity=tox_model (local)@toxic`" in card.text and "sentiment classifier `" not in card.text


def test_card_degrades_without_eval_or_run_info(tmp_path):
    bare = make_run_dir(str(tmp_path / "bare"), with_info=False)
    card = ModelCard(str(build_model_card(bare, REPO)))
    data = card.data.to_dict()
    assert "model-index" not in data and "base_model" not in data
    assert "not evaluated yet" in card.text.lower()
    assert data["library_name"] == "transformers"


def test_dry_run_writes_exactly_the_upload(run_dir, tmp_path):
    out = str(tmp_path / "out")
    cfg = PushConfig(model=run_dir, repo_id=REPO, dry_run=True, output_dir=out)
    assert push(cfg) == out
    written = sorted(os.path.relpath(os.path.join(d, f), out).replace(os.sep, "/")
                     for d, _, fs in os.walk(out) for f in fs)
    assert written == sorted([*select_upload_files(run_dir), "README.md"])
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "README.md",
            "training_config.yaml", "value_model/model.safetensors", "eval/eval_results.json", "eval/samples.jsonl",
            "eval/score_distributions.png", "eval/eval_report.md"} <= set(written)
    assert not any(p.startswith("checkpoints/") or p.endswith((".pt", ".pth")) for p in written)
    card = ModelCard.load(os.path.join(out, "README.md"))
    assert any(r.metric_type == "reward" for r in card.data.eval_results)
    with pytest.raises(HubPushError, match="not empty"):
        push(cfg)
    with_ckpt = prepare_upload_folder(run_dir, str(tmp_path / "ck"), REPO, include_checkpoints=True)
    assert "checkpoints/checkpoint-2/optimizer.pt" in with_ckpt


def test_config_parses_from_the_command_line(tmp_path):
    from rlhf_demo.config import parse_config

    cfg = parse_config(PushConfig, ["--model", "runs/x", "--repo_id", REPO, "--private", "--dry_run",
                                    "--output_dir", str(tmp_path)])
    assert (cfg.model, cfg.repo_id, cfg.private, cfg.dry_run, cfg.revision, cfg.token) == (
        "runs/x", REPO, True, True, "main", None)
    assert parse_config(PushConfig, ["--model", "runs/x", "--repo_id", REPO, "--dry_run"]).output_dir == "runs/x_hub"


def test_config_and_run_dir_errors(tmp_path):
    cfg = PushConfig(model=str(tmp_path / "missing"), repo_id=REPO, token=TOKEN)
    assert TOKEN not in repr(cfg)
    with pytest.raises(HubPushError, match="does not exist"):
        push(cfg)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HubPushError, match="No model weights"):
        push(PushConfig(model=str(tmp_path / "empty"), repo_id=REPO))
    with pytest.raises(ValueError, match="repo_id"):
        PushConfig(model="x", repo_id="a/b/c")
    with pytest.raises(ValueError, match="dry_run"):
        PushConfig(model="x", repo_id=REPO, output_dir="y")


def _cfg(run_dir, hub_url, **kw):
    deadline = kw.pop("push_deadline", None)
    cfg = PushConfig(model=run_dir, repo_id=kw.pop("repo_id", REPO), endpoint=hub_url,
                     max_retries=kw.pop("max_retries", 2), retry_base_wait=0.0, **kw)
    if deadline is not None:  # seconds; set after construction, so it works before config.py declares the field
        cfg.push_deadline = deadline
    return cfg


def test_clear_errors_for_401_403_404(run_dir):
    with FakeHub() as hub:
        for token, repo_id, expected in (("hf_wrong_token_value", REPO, "HTTP 401"), (None, REPO, "HTTP 401"),
                                         (TOKEN, "other-user/x", "HTTP 403"), (TOKEN, "no-such-org/x", "HTTP 404")):
            with pytest.raises(HubPushError) as err:
                push(_cfg(run_dir, hub.url, token=token or False, repo_id=repo_id))  # False: no token at all
            msg = str(err.value)
            assert expected in msg and "\n" not in msg and (token is None or token not in msg)
        assert hub.repos == {}


def test_connection_refused_is_retried_then_reported(run_dir):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(HubPushError, match="Could not reach the Hub .* after 3 attempt"):
        push(_cfg(run_dir, f"http://127.0.0.1:{port}", token=TOKEN))


def test_503_on_commit_is_retried_once_and_commits_once(run_dir):
    with FakeHub() as hub:
        hub.fail_next("POST", r"/commit/", 503, times=1)
        url = push(_cfg(run_dir, hub.url, token=TOKEN))
        commits = [r for r in hub.requests if "/commit/" in r[1]]
        assert [c[2] for c in commits] == [503, 200]
        assert hub.commit_count(REPO) == 2  # the repo's initial commit + ours
        assert url.startswith(f"{hub.url}/{REPO}/commit/")
        # an identical re-push commits nothing new (the server reports the blob ids it holds)
        push(_cfg(run_dir, hub.url, token=TOKEN))
        assert hub.commit_count(REPO) == 2
        # another branch is created from main and committed to; main is left alone
        main_sha = hub.repos[REPO].branches["main"]
        push(_cfg(run_dir, hub.url, token=TOKEN, revision="dev", commit_message="card on dev", license="apache-2.0"))
        repo = hub.repos[REPO]
        assert repo.branches["main"] == main_sha and repo.branches["dev"] != main_sha
        assert repo.messages[repo.branches["dev"]] == "card on dev" and hub.commit_count(REPO) == 3
        assert b"license: apache-2.0" in hub.files(REPO, "dev")["README.md"]
        assert b"license: mit" in hub.files(REPO)["README.md"]


CLIENT = textwrap.dedent("""
    import logging, os, sys
    import torch
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    from huggingface_hub.utils import logging as hf_logging
    hf_logging.set_verbosity_debug()
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
    from rlhf_demo.config import PushConfig
    from rlhf_demo.hub import push

    run_dir, repo_id = sys.argv[1], sys.argv[2]
    url = push(PushConfig(model=run_dir, repo_id=repo_id, retry_base_wait=0.0))
    print("COMMIT", url)
    local = AutoModelForCausalLM.from_pretrained(run_dir).eval()
    remote = AutoModelForCausalLM.from_pretrained(repo_id).eval()  # empty HF_HOME: downloaded from the test Hub
    a, b = local.state_dict(), remote.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "weights differ"
    tok = AutoTokenizer.from_pretrained(repo_id)
    ids = tok("This movie was", return_tensors="pt")
    g1 = local.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.eos_token_id)
    g2 = remote.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.eos_token_id)
    assert torch.equal(g1, g2), "greedy generations differ"
    gen = pipeline("text-generation", model=repo_id, device="cpu")
    out = gen("This movie was", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    assert out == tok.decode(g2[0], skip_special_tokens=True), (out, tok.decode(g2[0]))
    print("ROUNDTRIP OK")
""")


@pytest.mark.slow
def test_push_download_roundtrip_and_token_never_leaks(run_dir, tmp_path):
    hf_home = tmp_path / "hf_home"
    with FakeHub() as hub:
        hub.fail_next("POST", r"/commit/", 503, times=1)  # the client's create_commit does not retry this: we must
        env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV_DROP}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(hf_home), HF_TOKEN=TOKEN, HF_HUB_DISABLE_XET="1",
                   HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
                   PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                               env.get("PYTHONPATH", "")]))
        proc = subprocess.run([sys.executable, "-c", CLIENT, run_dir, REPO], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        assert "ROUNDTRIP OK" in proc.stdout
        assert [r[2] for r in hub.requests if "/commit/" in r[1]] == [503, 200]
        assert hub.commit_count(REPO) == 2
        uploaded = hub.files(REPO)
        assert "README.md" in uploaded and "model.safetensors" in uploaded
        assert not any(p.startswith("checkpoints/") or p.endswith(".pt") for p in uploaded)
        assert ModelCard(uploaded["README.md"].decode()).data.eval_results
        # the token: nowhere in stdout, stderr (DEBUG logs of huggingface_hub included), uploads or request bodies
        assert "DEBUG" in proc.stderr  # the logs were on, at their most verbose
        assert TOKEN not in proc.stdout and TOKEN not in proc.stderr
        assert not any(TOKEN.encode() in data for data in uploaded.values())
        assert not any(TOKEN.encode() in body for body in hub.bodies)
        for d, _, fs in os.walk(hf_home):  # cache files (no token file: the token came from HF_TOKEN)
            for f in fs:
                with open(os.path.join(d, f), "rb") as fh:
                    assert TOKEN.encode() not in fh.read(), f


def test_make_aligned_ships_a_half_size_copy_with_relative_paths(run_dir, tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from rlhf_demo.presets import make_aligned

    run = copy_run(run_dir, tmp_path / "run")
    info_path = os.path.join(run, "run_info.json")
    with open(info_path) as f:
        info = json.load(f)
    info["base_model"] = os.path.join(make_aligned.REPO_ROOT, "rlhf_demo", "presets", "tiny", "policy")
    with open(info_path, "w") as f:
        json.dump(info, f)
    dest, eval_dest = str(tmp_path / "aligned"), str(tmp_path / "eval_results")
    make_aligned.build(run, dest, eval_dest)

    with safe_open(os.path.join(dest, "model.safetensors"), "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.float16"}
    # fp16 storage, loaded as fp32 per its config
    assert str(AutoModelForCausalLM.from_pretrained(dest).dtype) == "torch.float32"
    with open(os.path.join(dest, "run_info.json")) as f:
        assert json.load(f)["base_model"] == os.path.join("rlhf_demo", "presets", "tiny", "policy")
    assert "samples.jsonl" not in os.listdir(os.path.join(dest, "eval"))
    assert "samples.jsonl" in os.listdir(eval_dest)
    card = ModelCard.load(os.path.join(dest, "README.md"))
    assert card.data.model_name == "tiny-imdb-positive" and make_aligned.REPO_ROOT not in card.text


# ------------------------------------------------------------------------------------------------ wording
@pytest.mark.parametrize("reward, says, never", [
    ("preference=my-org/imdb-preference-rm", "a learned reward model scores highly: `my-org/imdb-preference-rm`, a "
     "Bradley-Terry model trained on human (or simulated) preferences between pairs of continuations",
     ("sentiment classifier", "labelled POSITIVE")),
    ("vader", "text the VADER sentiment lexicon (Hutto & Gilbert, 2014) scores as positive", ("classifier",)),
    ("python=my_rewards:length_bonus", "text its reward function `python=my_rewards:length_bonus` scores highly",
     ("sentiment", "classifier")),
])
def test_card_words_preference_vader_and_unknown_rewards(tmp_path, reward, says, never):
    run = make_run_dir(str(tmp_path / "run"), reward=[reward], dataset="my-org/story-prompts")
    text = ModelCard(str(build_model_card(run, REPO))).text
    assert says in text, text[:1500]
    for word in never:
        assert word not in text, word
    if reward.startswith("preference"):
        assert "Text generation (preference-steered continuation)" in text
        assert "A learned reward model is only as good as its preference data" in text


def test_card_names_a_local_base_and_reward_model_by_what_they_are(tmp_path):
    from rlhf_demo.models import PRESET_POLICIES, PRESET_REWARD_MODELS

    run = make_run_dir(str(tmp_path / "run"), reward=[f"sentiment={PRESET_REWARD_MODELS['tiny']}@POSITIVE"])
    copy_run(run, tmp_path / "tiny", model_name_or_path=PRESET_POLICIES["tiny"])
    info_path = tmp_path / "tiny" / "run_info.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "base_model": PRESET_POLICIES["tiny"]}))
    card = ModelCard(str(build_model_card(str(tmp_path / "tiny"), REPO)))
    assert "fine-tuned from the tiny preset's policy of rlhf-demo 0.1.0 (a 5.3M-parameter GPT-2, trained on " \
           "stanfordnlp/imdb)" in card.text
    assert "the tiny preset's reward model of rlhf-demo 0.1.0 (a 5.3M-parameter GPT-2 classifier of " \
           "NEGATIVE/POSITIVE" in card.text
    assert "policy (local)" not in card.text and not ABSOLUTE.search(card.text)
    assert "base_model" not in card.data.to_dict()  # not a Hub id


# ------------------------------------------------------------------------------------------------ portability
ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:tmp|home|root|work|Users|var|private)/")


def text_files(folder):
    for d, _, names in os.walk(folder):
        for n in names:
            if n.endswith((".md", ".json", ".jsonl", ".yaml", ".txt")):
                with open(os.path.join(d, n), encoding="utf-8") as f:
                    yield os.path.relpath(os.path.join(d, n), folder), f.read()


def test_uploaded_text_files_hold_no_machine_path(run_dir, tmp_path):
    """The run's files record absolute paths (eval_results.json's models and judges, a local base model and reward
    model); every uploaded text file has them rewritten, and the originals are left alone."""
    from rlhf_demo.models import PRESET_POLICIES, PRESET_REWARD_MODELS

    run = copy_run(run_dir, tmp_path / "run", model_name_or_path=PRESET_POLICIES["tiny"], output_dir=str(tmp_path),
                   reward=[f"sentiment={PRESET_REWARD_MODELS['tiny']}@POSITIVE", f"toxicity={tmp_path}/tox:-0.5"])
    results_path = os.path.join(run, "eval", "eval_results.json")
    with open(results_path) as f:
        original = f.read().replace(run_dir, run)  # as if evaluated where it is
    with open(results_path, "w") as f:
        f.write(original)
    assert ABSOLUTE.search(original)  # the producer writes absolute paths: the upload must rewrite them
    out = str(tmp_path / "out")
    push(PushConfig(model=run, repo_id=REPO, dry_run=True, output_dir=out, include_checkpoints=True))
    texts = dict(text_files(out))
    assert {"README.md", "training_config.yaml", "eval/eval_results.json", "eval/eval_report.md"} <= set(texts)
    for name, text in texts.items():
        assert not ABSOLUTE.search(text), (name, ABSOLUTE.search(text).group(0))
    results = json.loads(texts["eval/eval_results.json"])
    assert results["models"]["aligned"] == REPO  # the run folder is the repository it is pushed as
    assert results["models"]["reference"] == "reference (local)"
    uploaded_cfg = yaml.safe_load(texts["training_config.yaml"])
    assert uploaded_cfg["model_name_or_path"] == "rlhf_demo/presets/tiny/policy"
    assert uploaded_cfg["reward"] == ["sentiment=rlhf_demo/presets/tiny/reward_model@POSITIVE",
                                      "toxicity=tox (local):-0.5"]
    with open(os.path.join(run, "eval", "eval_results.json")) as f:
        assert f.read() == original
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):  # the model's files go up as saved
        with open(os.path.join(run, name), "rb") as a, open(os.path.join(out, name), "rb") as b:
            assert a.read() == b.read(), name


def test_push_evaluates_a_run_without_eval_first(tmp_path):
    """`rlhf-demo push` of a run that was not evaluated runs the evaluation suite into RUN/eval first (settings from
    its training_config.yaml), so the card has its model-index and samples."""
    root = str(tmp_path)
    reference, reward_model, data = local_eval_models(root)
    run = make_run_dir(str(tmp_path / "run"), reward=[f"sentiment={reward_model}@POSITIVE"], dataset=data)
    copy_run(run, tmp_path / "run2", model_name_or_path=reference, response_length=6, min_review_chars=0)
    out = str(tmp_path / "out")
    push(PushConfig(model=str(tmp_path / "run2"), repo_id=REPO, dry_run=True, output_dir=out, eval_num_prompts=4))
    with open(os.path.join(tmp_path, "run2", "eval", "eval_results.json")) as f:
        results = json.load(f)
    assert results["settings"]["num_prompts"] == 4 and results["settings"]["max_new_tokens"] == 6
    assert results["judges"]["reward_model"] == reward_model
    card = ModelCard.load(os.path.join(out, "README.md"))
    assert {"reward", "sentiment", "toxicity", "kl", "perplexity"} <= {r.metric_type for r in card.data.eval_results}
    assert "### Samples" in card.text and not os.path.exists(os.path.join(tmp_path, "run2", ".eval-tmp"))
    # Without a training_config.yaml the reference is unknown: one clear line, with the command to run.
    bare = make_run_dir(str(tmp_path / "bare"), with_info=False)
    with pytest.raises(UserInputError, match="no training_config.yaml.*`rlhf-demo eval --model"):
        push(PushConfig(model=bare, repo_id=REPO, dry_run=True, output_dir=str(tmp_path / "o2")))
    push(PushConfig(model=bare, repo_id=REPO, dry_run=True, output_dir=str(tmp_path / "o3"), eval_num_prompts=0))


# ------------------------------------------------------------------------------------------------ timeouts, failures
@pytest.fixture
def silent_server():
    """A server that accepts connections and never answers (an unresponsive Hub); yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    for c in held:
        c.close()
    sock.close()


def test_a_push_to_an_unresponsive_hub_ends_after_the_retries(run_dir, silent_server):
    cfg = _cfg(run_dir, silent_server, token=TOKEN, max_retries=1, timeout=0.5, connect_timeout=0.5)
    start = time.monotonic()
    with pytest.raises(HubPushError) as err:
        push(cfg)
    took = time.monotonic() - start
    msg = str(err.value)
    assert "did not answer within the timeouts" in msg and "after 2 attempt(s)" in msg and "\n" not in msg
    assert "Nothing was committed." in msg and TOKEN not in msg
    assert took < 20, took


def test_a_commit_whose_answer_is_lost_is_reported_as_landed(run_dir):
    with FakeHub() as hub:
        hub.stall_next("POST", r"/commit/", seconds=2.0, times=1)  # the commit lands; its answer comes too late
        with pytest.raises(HubPushError) as err:
            push(_cfg(run_dir, hub.url, token=TOKEN, max_retries=0, timeout=0.5))
        assert "A commit did land on test-user/tiny-ppo@main" in str(err.value)
        assert hub.commit_count(REPO) == 2 and "README.md" in hub.files(REPO)  # kept: it holds the upload
        # With retries, the next attempt finds the files there and succeeds without a second commit.
        hub.stall_next("POST", r"/commit/", seconds=2.0, times=1)
        push(_cfg(run_dir, hub.url, token=TOKEN, max_retries=2, timeout=0.5))
        assert hub.commit_count(REPO) == 2


def test_a_failed_push_removes_the_repository_or_branch_it_created(run_dir):
    with FakeHub() as hub:
        hub.fail_next("POST", r"/commit/", 500, times=3)
        with pytest.raises(HubPushError) as err:
            push(_cfg(run_dir, hub.url, token=TOKEN, max_retries=2))
        msg = str(err.value)
        assert "HTTP 500" in msg and "Nothing was committed." in msg and "created was deleted again" in msg
        assert hub.repos == {}  # no empty repository left behind
        push(_cfg(run_dir, hub.url, token=TOKEN))
        hub.fail_next("POST", r"/commit/", 500, times=3)
        with pytest.raises(HubPushError, match="The branch dev this push created was deleted again"):
            push(_cfg(run_dir, hub.url, token=TOKEN, revision="dev", max_retries=2, license="apache-2.0"))
        assert set(hub.repos[REPO].branches) == {"main"}
        # A repository that existed before is never deleted.
        hub.fail_next("POST", r"/commit/", 500, times=3)
        with pytest.raises(HubPushError, match="Nothing was committed.$"):
            push(_cfg(run_dir, hub.url, token=TOKEN, max_retries=2, license="cc-by-4.0"))
        assert REPO in hub.repos


def test_eval_only_updates_the_card_without_uploading_weights(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path / "run")
    with FakeHub() as hub:
        with pytest.raises(HubPushError, match="does not exist on the Hub"):
            push(_cfg(run, hub.url, token=TOKEN, eval_only=True))
        push(_cfg(run, hub.url, token=TOKEN))
        before = hub.files(REPO)
        path = os.path.join(run, "eval", "eval_results.json")
        with open(path) as f:
            results = json.load(f)
        results["metrics"]["aligned"]["reward_mean"] = 42.5
        with open(path, "w") as f:
            json.dump(results, f)
        first = len(hub.bodies)
        push(_cfg(run, hub.url, token=TOKEN, eval_only=True))
        after = hub.files(REPO)
        sent = set()  # the files the eval-only push sent: commit lines and preupload lists
        for body in hub.bodies[first:]:
            for line in body.splitlines():
                item = json.loads(line) if line.strip().startswith(b"{") else {}
                sent |= {f["path"] for f in item.get("files", [])}
                if item.get("key") == "file":
                    sent.add(item["value"]["path"])
        assert sent and all(p == "README.md" or p.startswith("eval/") for p in sent), sent  # no weights again
        assert after["model.safetensors"] == before["model.safetensors"]
        changed = {p for p in after if after[p] != before.get(p)}
        assert changed == {"README.md", "eval/eval_results.json"}
        card = ModelCard(after["README.md"].decode())
        assert {r.metric_type: r.metric_value for r in card.data.eval_results}["reward"] == 42.5


def test_push_refuses_an_incomplete_export_and_a_bad_output_folder(tmp_path):
    run = make_run_dir(str(tmp_path / "run"))
    info_path = os.path.join(run, "run_info.json")
    with open(info_path) as f:
        info = json.load(f)
    with open(info_path, "w") as f:
        json.dump({**info, "export_files": ["model.safetensors", "value_model/model.safetensors", "tokenizer.json"]}, f)
    os.remove(os.path.join(run, "value_model", "model.safetensors"))  # a kill during the final export
    with pytest.raises(HubPushError, match="lacks value_model/model.safetensors"):
        push(PushConfig(model=run, repo_id=REPO, dry_run=True, output_dir=str(tmp_path / "out"), eval_num_prompts=0))
    assert not os.path.exists(tmp_path / "out")
    bare = make_run_dir(str(tmp_path / "bare"), with_info=False)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UserInputError, match="is a file, not a folder"):
        push(PushConfig(model=bare, repo_id=REPO, dry_run=True, output_dir=str(tmp_path / "a-file"),
                        eval_num_prompts=0))


# ---------------------------------------------------------------------------------------------- deadlines, Retry-After
@pytest.fixture
def hf_logs(caplog):
    """caplog, also catching huggingface_hub's records (its loggers do not propagate unless told to)."""
    hf_logger = logging.getLogger("huggingface_hub")
    extra = not hf_logger.propagate
    if extra:
        hf_logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO)
    yield caplog
    if extra:
        hf_logger.removeHandler(caplog.handler)


@pytest.mark.parametrize("headers", [{"Retry-After": "3600"}, {"RateLimit": '"api";r=0;t=3600'}])
def test_an_hour_long_retry_after_on_preupload_ends_the_push_at_once(run_dir, hf_logs, headers):
    """h07: huggingface_hub would sleep 3601 s, up to 5 times; in a push the 429 reaches our retries, whose wait
    (capped at 60 s) would end past the deadline: one line at once, and the empty repository is deleted again."""
    with FakeHub() as hub:
        hub.fail_next("POST", r"/preupload/", 429, times=10, headers=headers)
        start = time.monotonic()
        with pytest.raises(HubPushError) as err:
            push(_cfg(run_dir, hub.url, token=TOKEN, max_retries=3, push_deadline=5))
        took = time.monotonic() - start
        msg = str(err.value)
        assert "did not finish within 5 s (--push_deadline)" in msg and "preupload" in msg, msg
        assert "the Hub asked for 3600 s, capped at 60 s" in msg and "try again later" in msg, msg
        assert msg.endswith("Nothing was committed. The repository test-user/tiny-ppo this push created was deleted "
                            "again.") and "\n" not in msg and TOKEN not in msg
        assert took < 5, took
        assert [r[2] for r in hub.requests if "/preupload/" in r[1]] == [429]  # huggingface_hub did not retry it
        assert hub.repos == {}
    assert not any("Rate limited" in r.getMessage() for r in hf_logs.records)


def test_retry_after_on_commit_is_honoured_capped_and_408_retried(run_dir, hf_logs, monkeypatch):
    """h05: our retries wait what the Hub's Retry-After asks (1 s here, where the backoff says 0 s), at most
    RETRY_AFTER_CAP_S (1.5 s here, for an asked hour), and the log says so; a 408 is retried too."""
    import rlhf_demo.hub_http

    monkeypatch.setattr(rlhf_demo.hub_http, "RETRY_AFTER_CAP_S", 1.5)  # read there, by the request layer
    with FakeHub() as hub:
        hub.fail_next("POST", r"/commit/", 429, headers={"Retry-After": "1"})
        hub.fail_next("POST", r"/commit/", 503, headers={"Retry-After": "3600"})
        hub.fail_next("POST", r"/commit/", 408)
        push(_cfg(run_dir, hub.url, token=TOKEN, max_retries=3, push_deadline=10))
        commits = [(r[2], t) for r, t in zip(hub.requests, hub.request_times) if "/commit/" in r[1]]
        assert [status for status, _ in commits] == [429, 503, 408, 200]
        gaps = [b[1] - a[1] for a, b in zip(commits, commits[1:])]
        # Lower bounds are the waits; the upper ones leave room for a busy CI machine's commit attempt itself.
        assert 1.0 <= gaps[0] < 3.0 and 1.5 <= gaps[1] < 4.0 and gaps[2] < gaps[0], gaps
        assert hub.commit_count(REPO) == 2
    warnings = [r.getMessage() for r in hf_logs.records  # our retries log in the request layer
                if r.name == "rlhf_demo.hub_http" and r.levelno == logging.WARNING]
    assert "retry 1/3 in 1.0 s (the Hub asked for 1 s)." in warnings[0], warnings
    assert "HTTP 503 on POST /api/models/test-user/tiny-ppo/commit/main); retry 2/3 in 1.5 s (the Hub asked for " \
           "3600 s; capped at 1.5 s)." in warnings[1], warnings
    assert "commit failed (HTTP 408" in warnings[2], warnings
    assert not any("Rate limited" in r.getMessage() for r in hf_logs.records)


@pytest.mark.parametrize("headers_too", [False, True])
def test_a_trickling_answer_ends_the_attempt_at_the_timeout(run_dir, headers_too):
    """h09: a Hub that sends a byte every 0.1 s (after its headers, or from the status line on) never trips the
    read timeout; each answer must be complete within --timeout seconds, so every attempt ends after 1 s."""
    with FakeHub() as hub:
        hub.trickle_next("GET", r"^/api/models/", interval=0.1, times=10, headers_too=headers_too)
        start = time.monotonic()
        with pytest.raises(HubPushError) as err:
            push(_cfg(run_dir, hub.url, token=TOKEN, max_retries=1, timeout=1, connect_timeout=1))
        took = time.monotonic() - start
    msg = str(err.value)
    assert "sent its answer too slowly: not complete within 1 s" in msg and "after 2 attempt(s)" in msg, msg
    assert msg.endswith("Nothing was committed.") and "\n" not in msg
    assert 2 <= took < 6, took


def test_a_trickling_hub_ends_the_push_at_its_deadline(run_dir):
    """The answer budget is --timeout (60 s by default) per attempt; --push_deadline bounds the whole push."""
    with FakeHub() as hub:
        hub.trickle_next("GET", r"^/api/models/", interval=0.1, times=10)
        start = time.monotonic()
        with pytest.raises(HubPushError) as err:
            push(_cfg(run_dir, hub.url, token=TOKEN, max_retries=5, timeout=30, push_deadline=2))
        took = time.monotonic() - start
    msg = str(err.value)
    assert msg.startswith("The push to test-user/tiny-ppo (revision main) did not finish within 2 s (--push_deadline):"
                          " it passed while repo_info was waiting for the Hub's answer"), msg
    assert "raise --push_deadline" in msg and "check the network" in msg and msg.endswith("Nothing was committed.")
    assert 2 <= took < 5, took


def test_a_commit_whose_answer_trickles_is_reported_as_landed(run_dir):
    with FakeHub() as hub:
        hub.trickle_next("POST", r"/commit/", interval=0.1)  # the commit lands; its answer never ends
        with pytest.raises(HubPushError) as err:
            push(_cfg(run_dir, hub.url, token=TOKEN, max_retries=0, timeout=1))
        assert "sent its answer too slowly" in str(err.value)
        assert str(err.value).endswith("A commit did land on test-user/tiny-ppo@main: check it on the Hub before "
                                       "pushing again.")
        assert hub.commit_count(REPO) == 2
    with FakeHub() as hub:  # with a retry, the next attempt finds the files there: no second commit
        hub.trickle_next("POST", r"/commit/", interval=0.1)
        url = push(_cfg(run_dir, hub.url, token=TOKEN, max_retries=1, timeout=1))
        assert hub.commit_count(REPO) == 2 and url.endswith(hub.repos[REPO].branches["main"])


def test_huggingface_hub_never_sleeps_a_long_retry_after_outside_a_push(hf_logs):
    """Every request of the process (the Space's preference uploads too): huggingface_hub's `http_backoff` still
    sleeps a short Retry-After itself, but one above RETRY_AFTER_CAP_S fails at once, and the log says why."""
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import http_backoff

    from rlhf_demo.hub import configure_timeouts

    configure_timeouts(2.0, 2.0)
    payload = {"content": "", "repoType": "model"}
    with FakeHub() as hub:
        url = f"{hub.url}/api/validate-yaml"
        hub.fail_next("POST", r"/api/validate-yaml", 429, headers={"Retry-After": "0"})
        assert http_backoff("POST", url, json=payload, base_wait_time=0.1).status_code == 200
        hub.fail_next("POST", r"/api/validate-yaml", 429, times=2, headers={"Retry-After": "3600"})
        start = time.monotonic()
        with pytest.raises(HfHubHTTPError) as err:
            http_backoff("POST", url, json=payload)
        assert err.value.response.status_code == 429 and time.monotonic() - start < 2
        assert [r[2] for r in hub.requests] == [429, 200, 429]
    messages = [r.getMessage() for r in hf_logs.records]
    assert any("asked to wait 3600 s before a retry; not waiting longer than 60 s" in m for m in messages), messages
    assert [m for m in messages if "Rate limited" in m] == ["Rate limited. Waiting 1.0s before retry [Retry 1/5]."]
