"""The simulated annotator (Bradley-Terry noise), pair generation, `rlhf-demo preferences`' output check, and the
`preferences` and `reward-model` commands end to end on the tiny preset."""

import json
import math
import os
import subprocess
import sys

import pytest
from conftest import make_tiny_gpt2, make_word_tokenizer

from rlhf_demo import annotate
from rlhf_demo.annotate import SimulatedAnnotator, check_preference_output, generate_pairs
from rlhf_demo.errors import UserInputError
from rlhf_demo.rewards import build_reward


def count_good(queries, responses):
    return [float(r.split().count("good")) for r in responses]


# ------------------------------------------------------------------------------------------- annotator
def test_noiseless_annotator_prefers_the_higher_score_and_ties_within_the_margin():
    ann = SimulatedAnnotator(count_good, temperature=0, tie_margin=0.5)
    rows = ann.label(["p", "p"], ["good good", "bad"], ["good", "bad"])
    assert rows[0]["chosen"] == "good good" and rows[0]["chosen_score"] == 2.0 and not rows[0]["tie"]
    assert rows[1]["tie"] and rows[1]["chosen_score"] == rows[1]["rejected_score"] == 0.0


def test_annotator_noise_follows_bradley_terry():
    # P(A preferred) = sigmoid((s_A - s_B) / tau): with a score gap of 1 and tau 2, sigmoid(0.5) = 0.622.
    ann = SimulatedAnnotator(count_good, temperature=2.0, seed=1)
    n = 4000
    rows = ann.label(["p"] * n, ["good"] * n, ["bad"] * n)
    share = sum(r["chosen"] == "good" for r in rows) / n
    assert share == pytest.approx(1 / (1 + math.exp(-0.5)), abs=0.025)  # 3 standard errors


def test_generate_pairs_samples_two_continuations_per_prompt_and_keeps_its_old_name():
    tok = make_word_tokenizer()
    model = make_tiny_gpt2(len(tok), seed=0)
    model.config.pad_token_id, model.config.eos_token_id = tok.pad_token_id, tok.eos_token_id
    prompts = ["the movie", "a film was"]
    a, b = generate_pairs(model, tok, prompts, max_new_tokens=4, seed=3)
    assert len(a) == len(b) == 2 and all(isinstance(t, str) for t in a + b)
    assert generate_pairs(model, tok, prompts, max_new_tokens=4, seed=3) == (a, b)  # seeded
    assert annotate.sample_pairs is generate_pairs  # the old name, one release


# ------------------------------------------------------------------------------------------- the command
def test_preference_output_is_checked_before_sampling(tmp_path, monkeypatch):
    import errno
    import tempfile

    check_preference_output(str(tmp_path / "new" / "prefs.jsonl"))  # new file, new folder, existing folder: fine
    check_preference_output(str(tmp_path / "new_folder"))
    (tmp_path / "made.json").mkdir()  # an existing folder is a folder, whatever its name
    check_preference_output(str(tmp_path / "made.json"))
    with pytest.raises(UserInputError, match=r"ends in '.json': a preference file must end in .jsonl"):
        check_preference_output(str(tmp_path / "prefs.json"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserInputError, match="is an existing file, not a JSON-lines file"):
        check_preference_output(str(tmp_path / "notes.txt"))

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(UserInputError, match=r"The folder of --output .*prefs.jsonl', .* is not writable \(Read-only"):
        check_preference_output(str(tmp_path / "prefs.jsonl"))


@pytest.mark.slow
def test_preferences_and_reward_model_commands_on_the_tiny_preset(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "prefs"

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "rlhf_demo.cli", *args], capture_output=True, text=True, env=env,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    cli("preferences", "--preset", "tiny", "--output", str(out), "--num_pairs", "24", "--annotator_temperature", "0")
    rows = [json.loads(line) for line in open(out / "preferences.jsonl")]
    assert len(rows) == 24 and all(r["chosen_score"] >= r["rejected_score"] for r in rows)  # tau 0: noiseless
    assert rows[0]["annotator"].startswith("sentiment=tiny/reward_model") and "/work" not in rows[0]["annotator"]
    cli("preferences", "--preset", "tiny", "--output", str(out), "--num_pairs", "8", "--round", "1")  # appends
    assert sum(1 for _ in open(out / "preferences.jsonl")) == 32
    from rlhf_demo.config import PRESETS_DIR

    cli("reward-model", "--preferences", str(out / "preferences.jsonl"), "--output_dir", str(tmp_path / "rm"),
        "--model_name_or_path", os.path.join(PRESETS_DIR, "tiny", "policy"), "--batch_size", "8")
    report = json.load(open(tmp_path / "rm" / "reward_model_report.json"))
    assert report["pairs"]["read"] == 32 and report["eval_pairs"] == 3
    scores = build_reward([f"preference={tmp_path / 'rm'}"])(["This movie"] * 2, [" was great.", " was bad."])
    assert len(scores) == 2 and all(math.isfinite(s) for s in scores)
