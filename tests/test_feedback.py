"""Human feedback: preference files (explicit and implicit prompt, bad files, the strict and the tolerant reader, the
durable appender, the dataset card), a Bradley-Terry reward model that learns a known reward (and its card), and the
Space's file as its input. The simulated annotator and `rlhf-demo preferences` are tested in test_annotate.py."""

import json
import os
import random
import types

import pytest
import torch
from conftest import WORDS, make_tiny_gpt2, make_word_tokenizer

from rlhf_demo import runs
from rlhf_demo.annotate import SimulatedAnnotator
from rlhf_demo.config import RewardModelConfig
from rlhf_demo.errors import MissingInputError, UserInputError
from rlhf_demo.feedback import (PreferenceStore, append_preferences, dataset_card, load_preference_pairs,
                                read_preferences, to_explicit_prompt)
from rlhf_demo.rewards import PreferenceReward, build_reward, split_reward_spec


def count_good(queries, responses):
    return [float(r.split().count("good")) for r in responses]


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return str(path)


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


GOOD = {"prompt": "p", "chosen": "a", "rejected": "b"}


@pytest.mark.parametrize("bad", [
    b"not json",
    b'{"prompt": "p", "chosen": "a"}',
    b"[1, 2]",
    b'{"prompt": 3, "chosen": "a", "rejected": "b"}',
    b'{"prompt": "p", "chosen": "a", "rejected": "b", "tie": "false"}',
])
def test_the_tolerant_reader_skips_what_the_strict_one_refuses_with_its_message(tmp_path, bad):
    path = tmp_path / "p.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + bad + b"\n" + json.dumps(GOOD).encode() + b"\n")
    with pytest.raises(UserInputError, match="Line 2 ") as e:
        load_preference_pairs([str(path)])
    problems = []
    assert read_preferences(str(path), problems) == [GOOD, GOOD] and problems == [str(e.value)]


def test_the_tolerant_reader_on_whole_file_problems_and_rows_without_a_prompt(tmp_path):
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"prompt": "p", "chosen": "café", "rejected": "b"}\n'.encode("latin-1"))
    array = tmp_path / "array.jsonl"
    array.write_text(json.dumps([GOOD], indent=2))
    for path, rows in ((latin, [{"prompt": "p", "chosen": "caf\ufffd", "rejected": "b"}]), (array, [])):
        with pytest.raises(UserInputError) as e:
            load_preference_pairs([str(path)])
        problems = []
        assert read_preferences(str(path), problems) == rows and problems == [str(e.value)]
    implicit = write_jsonl(tmp_path / "implicit.jsonl", [{"chosen": "q x", "rejected": "q y"}, GOOD])
    problems = []
    assert read_preferences(implicit, problems) == [GOOD] and "Line 1 " in problems[0] and "no `prompt`" in problems[0]
    assert load_preference_pairs([implicit])[1]["kept"] == 2  # the strict reader splits the prompt off instead


def test_the_durable_appender(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    path = str(tmp_path / "rows.jsonl")
    runs.append_jsonl(path, [{"t": "café"}], durable=True, ensure_ascii=False)
    assert len(synced) == (2 if os.name == "posix" else 1)  # the file, and the folder of a new file
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"t": "cut')  # a crash in the middle of a write
    runs.append_jsonl(path, [{"t": "x"}, {"t": "é"}])  # not durable (logs): no fsync, ASCII as before
    assert len(synced) == (2 if os.name == "posix" else 1)
    assert open(path, "rb").read() == '{"t": "café"}\n{"t": "cut\n{"t": "x"}\n{"t": "\\u00e9"}\n'.encode()
    with pytest.raises(TypeError):
        runs.append_jsonl(path, [{"t": "y"}, {"t": object()}], durable=True)
    assert runs.read_jsonl(path) == [{"t": "café"}, {"t": "x"}, {"t": "é"}]  # nothing written
    store = PreferenceStore(str(tmp_path / "prefs.jsonl"))
    store.append(GOOD)
    with pytest.raises(ValueError, match="must be JSON-serialisable"):
        store.append({**GOOD, "seed": object()})
    assert store.rows() == [GOOD]


def test_the_cards_parse_back_with_their_metadata(tmp_path):
    from huggingface_hub import DatasetCard, ModelCard

    from rlhf_demo.reward_model import _preference_card

    append_preferences(str(tmp_path / "prefs"), [GOOD])
    text = (tmp_path / "prefs" / "README.md").read_text(encoding="utf-8")
    assert text == str(dataset_card())
    data = DatasetCard(text).data
    assert data.configs == [{"config_name": "default", "data_files": "preferences.jsonl"}]
    assert data.tags == ["rlhf", "preference", "trl"] and "# Preference pairs (rlhf-demo)" in DatasetCard(text).text
    report = {"eval_accuracy": 0.9, "eval_pairs": 40, "preference_files": ["a.jsonl"], "train_pairs": 360,
              "pairs": {"read": 400, "ties": 1, "same": 2, "duplicates": 3}, "initialised_from": "tiny",
              "epochs": 3, "max_length": 32, "train_s": 12.3, "machine": "a CPU"}
    card = ModelCard(_preference_card(report))
    assert card.data.library_name == "transformers"
    assert card.data.tags == ["rlhf", "reward-model", "bradley-terry", "rlhf-demo"]
    assert "Held-out pairwise accuracy: 0.900 on 40 held-out pairs." in card.text and "400 read" in card.text
    assert "Held-out pairwise accuracy: not measured." in _preference_card({**report, "eval_accuracy": None})


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
