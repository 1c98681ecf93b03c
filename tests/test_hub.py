"""Model card, dry run and Hub push/download, over real HTTP against the test Hub in `tests/hub_server.py`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import yaml

from huggingface_hub import ModelCard

from rlhf_demo.hub import HubPushError, PushConfig, build_model_card, prepare_upload_folder, push, select_upload_files

sys.path.insert(0, os.path.dirname(__file__))
from hub_server import FakeHub  # noqa: E402

TOKENIZER = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "gpt2-tokenizer")
if not os.path.isdir(TOKENIZER):
    TOKENIZER = "/work/shared/data/gpt2-tokenizer"
TOKEN = "hf_test_token_0123456789"
REPO = "test-user/tiny-ppo"
CLIENT_ENV_DROP = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")

EVAL_RESULTS = {
    "schema_version": 1,
    "settings": {"num_prompts": 64, "samples_per_prompt": 2, "max_new_tokens": 24, "seed": 0, "temperature": 1.0,
                 "top_p": 1.0, "dataset": "stanfordnlp/imdb", "split": "test"},
    "models": {"reference": "ref", "aligned": "aligned"},
    "judges": {"reward_model": "lvwerra/distilbert-imdb", "sentiment_judge": "vader", "toxicity": "alt-profanity-check"},
    "metrics": {
        "reference": {"reward_mean": -0.1, "judge_score_mean": 0.05, "judge_positive_rate": 0.5, "toxicity_mean": 0.04,
                      "toxicity_rate": 0.01, "kl_to_reference_mean": 0.0, "perplexity": 40.0, "distinct_2": 0.8},
        "aligned": {"reward_mean": 2.1, "judge_score_mean": 0.4, "judge_positive_rate": 0.8, "toxicity_mean": 0.03,
                    "toxicity_rate": 0.0, "kl_to_reference_mean": 3.2, "perplexity": 45.0, "distinct_2": 0.7},
    },
    "differences": {"reward_mean": {"diff": 2.2, "ci_low": 1.9, "ci_high": 2.5}},
    "win_rate": {"reward_model": 0.9, "judge": 0.75}, "reward_judge_agreement": 0.8, "reward_hacking_flag": False,
    "frontier": [], "versions": {},
}


def make_run_dir(path, with_eval=True, with_info=True):
    """A run directory as `rlhf-demo train` leaves it: a tiny random GPT-2 policy, value model, config, logs, a checkpoint."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    config = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=16, n_layer=1, n_head=2)
    model = GPT2LMHeadModel(config)
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
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
            yaml.safe_dump({"model_name_or_path": "openai-community/gpt2", "reward": ["sentiment=lvwerra/distilbert-imdb"],
                            "kl_coef": 0.05, "adaptive_kl": True, "target_kl": 6.0, "gamma": 1.0, "lam": 0.95,
                            "cliprange": 0.2, "cliprange_value": 0.2, "vf_coef": 0.1, "learning_rate": 1.4e-5,
                            "batch_size": 64, "num_mini_batches": 4, "num_ppo_epochs": 4, "response_length": 24,
                            "temperature": 0.7, "total_episodes": 128, "seed": 0, "dataset_name": "stanfordnlp/imdb"}, f)
        with open(os.path.join(path, "run_info.json"), "w") as f:
            json.dump({"base_model": "openai-community/gpt2", "reward_functions": ["sentiment=lvwerra/distilbert-imdb"],
                       "dataset": "stanfordnlp/imdb", "episodes": 128, "steps": 2, "wall_time_s": 93.0, "machine": "2-core CPU",
                       "rlhf_demo_version": "0.1.0", "final_metrics": {"objective/scores": 1.5, "objective/kl": 2.0}}, f)
        with open(os.path.join(path, "metrics.jsonl"), "w") as f:
            f.write('{"step": 1, "objective/kl": 0.0}\n{"step": 2, "objective/kl": 2.0}\n')
    if with_eval:
        ev = os.path.join(path, "eval")
        os.makedirs(ev)
        with open(os.path.join(ev, "eval_results.json"), "w") as f:
            json.dump(EVAL_RESULTS, f)
        with open(os.path.join(ev, "eval_report.md"), "w") as f:
            f.write("# report\n")
        with open(os.path.join(ev, "reward_hist.png"), "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\nfake")
        with open(os.path.join(ev, "samples.jsonl"), "w") as f:
            f.write(json.dumps({"prompt": "This movie", "reference": "was dull | long.", "aligned": "was wonderful."}) + "\n")
    return path


@pytest.fixture(autouse=True)
def online_to_the_fake_hub(monkeypatch):
    """The suite runs with HF_HUB_OFFLINE=1 (nothing may reach the real Hub); these tests talk to a loopback server."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run_dir(str(tmp_path_factory.mktemp("run") / "run"))


def test_card_with_eval_has_metadata_and_model_index(run_dir):
    card = build_model_card(run_dir, REPO)
    parsed = ModelCard(str(card))  # what ModelCard.load does with the saved file
    data = parsed.data.to_dict()
    assert data["base_model"] == "openai-community/gpt2"
    assert data["datasets"] == ["stanfordnlp/imdb"]
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-generation"
    assert {"rlhf", "ppo", "trl", "gpt2"} <= set(data["tags"])
    results = {r.metric_type: r for r in parsed.data.eval_results}
    assert {"reward", "sentiment", "toxicity", "kl", "perplexity", "win_rate"} <= set(results)
    assert results["reward"].metric_value == 2.1 and results["kl"].metric_value == 3.2
    assert results["reward"].dataset_type == "stanfordnlp/imdb" and results["reward"].dataset_split == "test"
    text = parsed.text
    assert f'pipeline("text-generation", model="{REPO}")' in text
    assert "+2.2 [1.9, 2.5]" in text  # difference with its CI
    assert "](eval/reward_hist.png)" in text  # plot by relative link
    assert "was wonderful." in text and "was dull \\| long." in text  # sample pair, table-escaped
    assert "Ziegler" in text and "Schulman" in text and "lvwerra/distilbert-imdb" in text
    assert "0.05" in text and "93.0" not in text and "1.6 min" in text  # KL coefficient, wall time in minutes
    assert "not evaluated yet" not in text.lower()


def test_card_degrades_without_eval_or_run_info(tmp_path):
    bare = make_run_dir(str(tmp_path / "bare"), with_eval=False, with_info=False)
    card = ModelCard(str(build_model_card(bare, REPO)))
    data = card.data.to_dict()
    assert "model-index" not in data and "base_model" not in data
    assert "not evaluated yet" in card.text.lower()
    assert data["library_name"] == "transformers"


def test_dry_run_writes_exactly_the_upload(run_dir, tmp_path):
    out = str(tmp_path / "out")
    cfg = PushConfig(model=run_dir, repo_id=REPO, dry_run=True, output_dir=out)
    assert push(cfg) == out
    written = sorted(os.path.relpath(os.path.join(d, f), out).replace(os.sep, "/") for d, _, fs in os.walk(out) for f in fs)
    assert written == sorted([*select_upload_files(run_dir), "README.md"])
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "README.md", "training_config.yaml",
            "value_model/model.safetensors", "eval/eval_results.json", "eval/reward_hist.png"} <= set(written)
    assert not any(p.startswith("checkpoints/") or p.endswith((".pt", ".pth")) for p in written)
    card = ModelCard.load(os.path.join(out, "README.md"))
    assert any(r.metric_type == "reward" for r in card.data.eval_results)
    with pytest.raises(HubPushError, match="not empty"):
        push(cfg)
    with_ckpt = prepare_upload_folder(run_dir, str(tmp_path / "ck"), REPO, include_checkpoints=True)
    assert "checkpoints/checkpoint-2/optimizer.pt" in with_ckpt


def test_config_parses_from_the_command_line(tmp_path):
    from rlhf_demo.config import parse_config

    cfg = parse_config(PushConfig, ["--model", "runs/x", "--repo_id", REPO, "--private", "--dry_run", "--output_dir", str(tmp_path)])
    assert (cfg.model, cfg.repo_id, cfg.private, cfg.dry_run, cfg.revision, cfg.token) == ("runs/x", REPO, True, True, "main", None)
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
    return PushConfig(model=run_dir, repo_id=kw.pop("repo_id", REPO), endpoint=hub_url, max_retries=kw.pop("max_retries", 2),
                      retry_base_wait=0.0, **kw)


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
        assert b"license: apache-2.0" in hub.files(REPO, "dev")["README.md"] and b"license: mit" in hub.files(REPO)["README.md"]


CLIENT = textwrap.dedent("""
    import logging, os, sys
    import torch
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    from huggingface_hub.utils import logging as hf_logging
    hf_logging.set_verbosity_debug()
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
    from rlhf_demo.hub import PushConfig, push

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
                   PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env.get("PYTHONPATH", "")]))
        proc = subprocess.run([sys.executable, "-c", CLIENT, run_dir, REPO], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        assert "ROUNDTRIP OK" in proc.stdout
        assert [r[2] for r in hub.requests if "/commit/" in r[1]] == [503, 200]
        assert hub.commit_count(REPO) == 2
        uploaded = hub.files(REPO)
        assert "README.md" in uploaded and "model.safetensors" in uploaded
        assert not any(p.startswith("checkpoints/") or p.endswith(".pt") for p in uploaded)
        assert ModelCard(uploaded["README.md"].decode()).data.eval_results
        # the token: nowhere in stdout, stderr (DEBUG logs of huggingface_hub included), uploaded files or request bodies
        assert "DEBUG" in proc.stderr  # the logs were on, at their most verbose
        assert TOKEN not in proc.stdout and TOKEN not in proc.stderr
        assert not any(TOKEN.encode() in data for data in uploaded.values())
        assert not any(TOKEN.encode() in body for body in hub.bodies)
        for d, _, fs in os.walk(hf_home):  # cache files (no token file: the token came from HF_TOKEN)
            for f in fs:
                with open(os.path.join(d, f), "rb") as fh:
                    assert TOKEN.encode() not in fh.read(), f


def test_make_aligned_ships_a_half_size_copy_with_relative_paths(tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from rlhf_demo.presets import make_aligned

    run = make_run_dir(str(tmp_path / "run"))
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
    assert str(AutoModelForCausalLM.from_pretrained(dest).dtype) == "torch.float32"  # fp16 storage, loaded as fp32 per its config
    with open(os.path.join(dest, "run_info.json")) as f:
        assert json.load(f)["base_model"] == os.path.join("rlhf_demo", "presets", "tiny", "policy")
    assert "samples.jsonl" not in os.listdir(os.path.join(dest, "eval"))
    assert "samples.jsonl" in os.listdir(eval_dest)
    card = ModelCard.load(os.path.join(dest, "README.md"))
    assert card.data.model_name == "tiny-imdb-positive" and make_aligned.REPO_ROOT not in card.text
