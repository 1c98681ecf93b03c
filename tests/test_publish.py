"""`rlhf-demo train` ends with the evaluation of the run (and, with --push_to_hub, its push); `rlhf-demo push` then
publishes a complete, portable model. The evaluation's settings come from the run's own config
(`rlhf_demo.eval.for_run`). The end-to-end test runs the CLI as a user would, on the tiny preset, against the loopback
Hub.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from huggingface_hub import ModelCard

from rlhf_demo.config import PPOConfig, PushConfig, parse_config, save_config
from rlhf_demo.errors import UserInputError
from rlhf_demo.eval.for_run import DEFAULT_EVAL_REWARD, eval_config_for_run, eval_reward_model
from rlhf_demo.models import PRESET_POLICIES, PRESET_REWARD_MODELS

sys.path.insert(0, os.path.dirname(__file__))
from hub_server import FakeHub  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "hf_test_token_0123456789"
ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:tmp|home|root|work|Users|var|private)/")


def saved_config(tmp_path, argv):
    """The training_config.yaml `rlhf-demo train ARGV` writes (through the real parser and `save_config`)."""
    cfg = parse_config(PPOConfig, argv, section="train")
    path = tmp_path / "training_config.yaml"
    save_config(cfg, str(path))
    return yaml.safe_load(path.read_text())


def test_eval_of_a_tiny_preset_run_uses_its_prompts_reward_model_and_sampling(tmp_path):
    train = saved_config(tmp_path, ["--preset", "tiny", "--output_dir", str(tmp_path / "run"), "--seed", "3"])
    cfg = eval_config_for_run(str(tmp_path / "run"), train, 256)
    assert cfg.reference == PRESET_POLICIES["tiny"] and cfg.output_dir == str(tmp_path / "run" / "eval")
    assert cfg.dataset_name.endswith(os.path.join("presets", "tiny", "prompts")) and cfg.split == "test"
    assert cfg.min_review_chars == 0  # the shipped review heads are short: keep them all (tiny.yaml's eval section)
    assert (cfg.reward_model, cfg.reward_label) == (PRESET_REWARD_MODELS["tiny"], "POSITIVE")
    assert (cfg.num_prompts, cfg.max_new_tokens, cfg.temperature, cfg.seed) == (256, 24, 1.0, 3)


@pytest.mark.parametrize("specs, base, expected", [
    (["keyword=great", "sentiment=my-org/rm@LABEL_1:0.5"], "gpt2", ("my-org/rm", "LABEL_1")),
    (["preference=my-org/bt-rm"], "gpt2", ("my-org/bt-rm", "LABEL_0")),  # one logit: its only label
    (["toxicity=facebook/roberta-hate-speech-dynabench-r4-target"], "openai-community/gpt2", DEFAULT_EVAL_REWARD),
    (["keyword=great"], "tiny", (PRESET_REWARD_MODELS["tiny"], "POSITIVE")),
    (["vader"], PRESET_POLICIES["tiny"], (PRESET_REWARD_MODELS["tiny"], "POSITIVE")),
])
def test_eval_reward_model_follows_the_reward_specs(specs, base, expected):
    assert eval_reward_model(specs, base) == expected


def test_eval_reward_model_override():
    assert eval_reward_model(["keyword=x"], "gpt2", "tiny@NEGATIVE") == (PRESET_REWARD_MODELS["tiny"], "NEGATIVE")
    assert eval_reward_model(["keyword=x"], "gpt2", "my-org/clf") == ("my-org/clf", "POSITIVE")


def test_publishing_options_are_checked_before_training():
    with pytest.raises(UserInputError, match="--push_to_hub needs --hub_model_id"):
        PPOConfig(push_to_hub=True)
    with pytest.raises(UserInputError, match="hub_model_id"):
        PPOConfig(push_to_hub=True, hub_model_id="no-namespace")
    with pytest.raises(UserInputError, match="eval_num_prompts"):
        PPOConfig(eval_num_prompts=-1)
    assert PPOConfig(eval_num_prompts=0, push_to_hub=True, hub_model_id="me/x").hub_model_id == "me/x"
    with pytest.raises(UserInputError, match="--space"):
        PushConfig(model="x", repo_id="me/x", space="just-a-name")
    with pytest.raises(UserInputError, match="timeout"):
        PushConfig(model="x", repo_id="me/x", timeout=0)
    with pytest.raises(UserInputError, match="--eval_only"):
        PushConfig(model="x", repo_id="me/x", eval_only=True, space="me/s")


def cli(args, env, cwd):
    return subprocess.run([sys.executable, "-m", "rlhf_demo.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_train_evaluates_pushes_and_push_dry_run_is_complete_and_portable(tmp_path, monkeypatch):
    """`rlhf-demo train --preset tiny ... --push_to_hub && rlhf-demo push --dry_run`: the run ends with its
    evaluation in RUN/eval, goes to the (loopback) Hub, and the dry-run folder's card has the reward, judge, KL,
    toxicity and perplexity metrics, a samples table, and no absolute path in any text file."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with FakeHub() as hub:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_ENDPOINT", "HUGGING_FACE_HUB_TOKEN")}
        env.update(HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf"),
                   HF_HUB_DISABLE_XET="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join([ROOT, env.get("PYTHONPATH", "")]))
        train = cli(["train", "--preset", "tiny", "--output_dir", "runs/x", "--total_episodes", "64", "--batch_size",
                     "32", "--eval_num_prompts", "24", "--num_threads", "1", "--progress_bar", "false",
                     "--push_to_hub", "--hub_model_id", "test-user/x"], env, tmp_path)
        assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-4000:]
        assert "Evaluating the final policy against the reference on 24 held-out prompts" in train.stdout
        assert "Evaluation in runs/x/eval: reward" in train.stdout
        assert f"{hub.url}/test-user/x/commit/" in train.stdout
        pushed = hub.files("test-user/x")
        assert "eval/eval_results.json" in pushed and "model.safetensors" in pushed
        push = cli(["push", "--model", "runs/x", "--repo_id", "me/x", "--dry_run", "--output_dir", "up/"], env,
                   tmp_path)
        assert push.returncode == 0, push.stderr[-3000:]
    up = tmp_path / "up"
    card = ModelCard.load(str(up / "README.md"))
    types = {r.metric_type for r in card.data.eval_results}
    assert {"reward", "sentiment", "kl", "toxicity", "perplexity"} <= types, types
    table = card.text.split("### Samples")[1].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| prompt")]
    assert len(rows) == 3 and all(len(r.split(" | ")) == 3 for r in rows)
    assert card.data.datasets == ["stanfordnlp/imdb"] and card.data.language == "en" and card.data.widget
    assert "the tiny preset's policy of rlhf-demo" in card.text and "policy (local)" not in card.text
    assert "Reward-hacking check:" in card.text
    for d, _, names in os.walk(up):
        for n in names:
            if n.endswith((".md", ".json", ".jsonl", ".yaml", ".txt")):
                text = open(os.path.join(d, n), encoding="utf-8").read()
                found = ABSOLUTE.search(text)
                assert not found and str(tmp_path) not in text and ROOT not in text, (n, found and found.group(0))
    results = json.loads((up / "eval" / "eval_results.json").read_text())
    assert results["settings"]["num_prompts"] == 24 and results["models"]["aligned"] == "me/x"
