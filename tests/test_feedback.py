"""Human feedback: the simulated annotator, preference files (explicit and implicit prompt, bad files), a
Bradley-Terry reward model that learns a known reward, the Space's file as its input, and the CLI end to end."""

import json
import math
import os
import random
import subprocess
import sys
import types

import pytest
import torch
from conftest import WORDS, make_tiny_gpt2, make_word_tokenizer

from rlhf_demo.config import RewardModelConfig
from rlhf_demo.errors import MissingInputError, UserInputError
from rlhf_demo.feedback import (PreferenceStore, SimulatedAnnotator, append_preferences, load_preference_pairs,
                                to_explicit_prompt)
from rlhf_demo.rewards import PreferenceReward, build_reward, split_reward_spec


def count_good(queries, responses):
    return [float(r.split().count("good")) for r in responses]


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return str(path)


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


def test_reward_specs_without_a_model():
    assert split_reward_spec("vader").kind == "vader" and split_reward_spec("vader:0.5").weight == 0.5
    vader = build_reward(["vader"])
    good, bad = vader(["The film"] * 2, [" was wonderful and moving.", " was awful and boring."])
    assert good > 0.3 and bad < -0.3
    python = build_reward(["python=conftest:count_word_good"])
    assert python(["x"], ["good good bad"]) == [2.0]
    with pytest.raises(UserInputError, match="module:function"):
        build_reward(["python=conftest"])


# ------------------------------------------------------------------------------------------- files
def test_implicit_prompt_rows_are_split_like_trl():
    row = to_explicit_prompt({"chosen": "The movie was great", "rejected": "The movie was bad", "tie": False})
    assert row["prompt"] == "The movie was" and row["chosen"] == " great" and row["rejected"] == " bad"
    assert row["tie"] is False  # other columns kept


def test_ties_equal_pairs_and_repeats_are_dropped_and_counted(tmp_path):
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "a", "rejected": "b"},
            {"prompt": "p", "chosen": "c", "rejected": "d", "tie": True},
            {"prompt": "p", "chosen": "e", "rejected": "e"}, {"chosen": "q x", "rejected": "q y"}]
    pairs, counts = load_preference_pairs([write_jsonl(tmp_path / "p.jsonl", rows)])
    assert counts == {"read": 5, "ties": 1, "same": 1, "duplicates": 1, "kept": 2}
    assert [p["prompt"] for p in pairs] == ["p", "q"]


@pytest.mark.parametrize("content,match", [
    (b"", "is empty"),
    (b'{"prompt": "p", "chosen": "a"}\n', "lacks string `chosen` and `rejected`"),
    (b'not json\n{"prompt": "p", "chosen": "a", "rejected": "b"}\n', "Line 1 .* is not JSON"),
    ('{"prompt": "p", "chosen": "caf\u00e9", "rejected": "b"}\n'.encode("latin-1"), "not UTF-8"),
    (b'{"prompt": "p", "chosen": "a", "rejected": "b", "tie": true}\n', "No usable preference pair"),
    (b'{"prompt": "p", "chosen": "a", "rejected": "a"}\n', "No usable preference pair"),
    (b'{"prompt": 3, "chosen": "a", "rejected": "b"}\n', "Line 1 .* `prompt` that is an int, not text"),
    (b'{"prompt": null, "chosen": "a", "rejected": "b"}\n', "Line 1 .* `prompt` that is null, not text"),
    (b'{"prompt": "p", "chosen": "a", "rejected": "b", "tie": "false"}\n', 'Line 1 .* `tie` "false", a string, not '
                                                                         "a JSON boolean"),
    (b'[\n  {"prompt": "p", "chosen": "a", "rejected": "b"}\n]\n', "one JSON array, not JSON lines .*jq -c"),
])
def test_bad_preference_files_get_one_clear_line(tmp_path, content, match):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserInputError, match=match) as e:
        load_preference_pairs([str(path)])
    assert "\n" not in str(e.value) and ("bad.jsonl" in str(e.value))


def test_texts_with_unicode_line_separators_stay_one_row(tmp_path):
    # json.dumps(ensure_ascii=False) writes U+2028 and U+0085 raw; str.splitlines() would cut the row there.
    store = PreferenceStore(str(tmp_path / "p.jsonl"))
    store.append({"prompt": "p", "chosen": "a\u2028b\x85c", "rejected": "d"})
    pairs, counts = load_preference_pairs([store.path])
    assert counts["kept"] == 1 and pairs[0]["chosen"] == "a\u2028b\x85c"


def test_a_byte_order_mark_and_a_preference_folder_are_read(tmp_path):
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b"}]  # one row: it must not pass for a torn last line
    bom = tmp_path / "bom.jsonl"
    bom.write_text("\ufeff" + json.dumps(rows[0]) + "\n", encoding="utf-8")
    assert load_preference_pairs([str(bom)])[1]["kept"] == 1
    folder = tmp_path / "prefs"  # what `rlhf-demo preferences --output FOLDER` writes
    append_preferences(str(folder), rows)
    pairs, counts = load_preference_pairs([str(folder)])
    assert counts["kept"] == 1 and pairs[0]["chosen"] == "a"
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(MissingInputError, match="holds no preferences.jsonl"):
        load_preference_pairs([str(tmp_path / "empty_folder")])


def test_preference_output_is_checked_before_sampling(tmp_path, monkeypatch):
    import errno
    import tempfile

    from rlhf_demo.feedback import check_preference_output

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


def test_missing_preference_file(tmp_path):
    with pytest.raises(MissingInputError, match="does not exist"):
        load_preference_pairs([str(tmp_path / "nope.jsonl")])


def test_a_preference_folder_gets_a_dataset_card_and_loads_with_datasets(tmp_path):
    import datasets

    folder = tmp_path / "prefs"
    n = append_preferences(str(folder), [{"prompt": "p", "chosen": "a", "rejected": "b", "tie": False}])
    assert n == 1 and (folder / "README.md").read_text().startswith("---\nconfigs:")
    ds = datasets.load_dataset("json", data_files=str(folder / "preferences.jsonl"), split="train")
    assert ds[0]["chosen"] == "a"


# ------------------------------------------------------------------------------------------- Bradley-Terry
@pytest.fixture(scope="module")
def word_lm_dir(tmp_path_factory):
    tok = make_word_tokenizer()
    model = make_tiny_gpt2(len(tok), seed=0)
    model.config.pad_token_id, model.config.eos_token_id = tok.pad_token_id, tok.eos_token_id
    path = tmp_path_factory.mktemp("lm") / "word_lm"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def toy_pairs(n, seed):
    """Pairs of random word sequences labelled noiselessly by their count of "good" (the known true reward)."""
    rng = random.Random(seed)
    words = [w for w in WORDS if w != "good"]
    ann = SimulatedAnnotator(count_good, temperature=0)
    a, b, prompts = [], [], []
    while len(a) < n:
        x = [rng.choice(words) for _ in range(6)]
        y = list(x)
        for seq in (x, y):
            for _ in range(rng.randint(0, 3)):
                seq[rng.randrange(6)] = "good"
        if x.count("good") != y.count("good"):
            prompts.append(" ".join(rng.choice(words) for _ in range(2)))
            a.append(" " + " ".join(x))
            b.append(" " + " ".join(y))
    return ann.label(prompts, a, b)


def test_bradley_terry_reward_model_learns_a_known_reward(word_lm_dir, tmp_path):
    from rlhf_demo.reward_model import train_preference_reward_model

    prefs = write_jsonl(tmp_path / "train.jsonl", toy_pairs(400, seed=0))
    report = train_preference_reward_model(RewardModelConfig(
        model_name_or_path=word_lm_dir, output_dir=str(tmp_path / "rm"), preferences=[prefs], batch_size=16,
        learning_rate=3e-3, num_train_epochs=3, max_length=32, eval_fraction=0.1))
    assert report["pairs"]["kept"] == 400 and report["eval_pairs"] == 40
    fresh = toy_pairs(200, seed=1)
    rm = PreferenceReward(str(tmp_path / "rm"))
    chosen = torch.tensor(rm([r["prompt"] for r in fresh], [r["chosen"] for r in fresh]))
    rejected = torch.tensor(rm([r["prompt"] for r in fresh], [r["rejected"] for r in fresh]))
    assert (chosen > rejected).float().mean().item() > 0.9  # held-out pairs of the known reward
    assert report["eval_accuracy"] > 0.85
    card = (tmp_path / "rm" / "README.md").read_text()
    assert "Held-out pairwise accuracy" in card and "400 read" in card
    with pytest.raises(UserInputError, match="not the one logit"):  # a classifier is not a Bradley-Terry model
        from transformers import GPT2ForSequenceClassification

        clf = GPT2ForSequenceClassification.from_pretrained(word_lm_dir, num_labels=2)
        clf.save_pretrained(tmp_path / "clf")
        make_word_tokenizer().save_pretrained(tmp_path / "clf")
        PreferenceReward(str(tmp_path / "clf"))


def test_the_spaces_preference_file_trains_a_reward_model(word_lm_dir, tmp_path):
    pytest.importorskip("gradio")
    from rlhf_demo.reward_model import train_preference_reward_model
    from rlhf_demo.space.app import vote

    store = PreferenceStore(str(tmp_path / "space" / "preferences.jsonl"))
    models = types.SimpleNamespace(reference_name="tiny", aligned_name="aligned")
    for i, choice in enumerate(["A", "B", "tie", "A", "B", "A"]):
        pair = {"prompt": f"the movie {i}", "texts": [" was good", " was bad"], "sources": ["aligned", "reference"],
                "mode": "reference vs aligned", "seed": i, "max_new_tokens": 4, "temperature": 1.0}
        status = vote(models, store, choice, pair)[-1]
    assert "6 pair(s), 1 tie(s); chosen continuations by model: aligned 3, reference 2." in status
    report = train_preference_reward_model(RewardModelConfig(
        model_name_or_path=word_lm_dir, output_dir=str(tmp_path / "rm"), preferences=[store.path], batch_size=4,
        max_length=16, eval_fraction=0.0))
    assert report["pairs"] == {"read": 6, "ties": 1, "same": 0, "duplicates": 0, "kept": 5}
    assert os.path.isfile(tmp_path / "rm" / "model.safetensors")


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
