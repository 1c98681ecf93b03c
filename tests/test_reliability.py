"""Nothing runs from a checkpoint, nothing finished is overwritten, and a broken checkpoint file is named in one
line: the run folder's guarantees, on tiny runs built in the test."""

import json
import os
import shutil

import pytest
import torch
from conftest import count_word
from test_ppo_trainer import make_trainer, read_metrics

from rlhf_demo import runs
from rlhf_demo.errors import UserInputError

PRESETS = os.path.join(os.path.dirname(runs.__file__), "presets")


@pytest.fixture
def finished_run(word_policy_dir, tmp_path):
    """A finished 3-step run with a checkpoint after every step (the last 2 kept)."""
    out = tmp_path / "run"
    make_trainer(word_policy_dir, out, count_word("good"), total_episodes=48, save_steps=1).train()
    return word_policy_dir, out


class Payload:
    """A pickle that, when loaded with weights_only=False, creates a marker file: what a crafted checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_crafted_pickle_in_a_checkpoint_never_runs(finished_run, tmp_path):
    policy_dir, out = finished_run
    latest = runs.list_checkpoints(str(out))[-1][1]
    marker = tmp_path / "code-ran"
    torch.save({"state": Payload(marker)}, os.path.join(latest, "scheduler.pt"))
    trainer = make_trainer(policy_dir, out, count_word("good"), total_episodes=64, save_steps=1,
                           resume_from_checkpoint="latest")
    with pytest.raises(UserInputError, match=r"scheduler\.pt.*not a safe checkpoint file.*nothing in it was run"):
        trainer.train()
    assert not marker.exists()


@pytest.mark.parametrize("name,match", [("optimizer.pt", "truncated or corrupt"), ("rng_state_0.pth", "truncated"),
                                        ("trainer_state.json", "not valid JSON"),
                                        ("policy/model.safetensors", "truncated or corrupt")])
def test_a_truncated_checkpoint_file_is_named_in_one_line(finished_run, name, match):
    policy_dir, out = finished_run
    latest = runs.list_checkpoints(str(out))[-1][1]
    path = os.path.join(latest, name)
    with open(path, "rb") as f:
        head = f.read(40)
    with open(path, "wb") as f:
        f.write(head)
    with pytest.raises(UserInputError, match=match) as e:
        make_trainer(policy_dir, out, count_word("good"), total_episodes=64, save_steps=1,
                     resume_from_checkpoint="latest").train()
    assert name.split("/")[-1] in str(e.value) and "\n" not in str(e.value)


def test_a_missing_optimizer_state_is_named(finished_run):
    policy_dir, out = finished_run
    latest = runs.list_checkpoints(str(out))[-1][1]
    os.remove(os.path.join(latest, "optimizer.pt"))
    with pytest.raises(UserInputError, match="optimizer.pt' is missing"):
        make_trainer(policy_dir, out, count_word("good"), total_episodes=64, resume_from_checkpoint="latest").train()


def test_training_twice_into_one_folder_is_refused_then_overwrites_cleanly(finished_run):
    policy_dir, out = finished_run
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(UserInputError, match="already holds a training run.*--overwrite_output_dir"):
        make_trainer(policy_dir, out, count_word("good"), total_episodes=32)
    assert (out / "model.safetensors").read_bytes() == before  # nothing touched
    make_trainer(policy_dir, out, count_word("good"), total_episodes=32, seed=5, overwrite_output_dir=True).train()
    assert [m["step"] for m in read_metrics(out)] == [1, 2]  # the new run's steps only, not [1, 2, 3, 1, 2]
    assert [step for step, _ in runs.list_checkpoints(str(out))] == [2]  # no checkpoint of the old run is left
    assert runs.export_problem(str(out)) is None


def test_a_checkpoint_left_half_written_is_removed_on_resume(finished_run):
    policy_dir, out = finished_run
    leftover = out / "checkpoints" / ".tmp-checkpoint-4"
    leftover.mkdir()
    (leftover / "optimizer.pt").write_bytes(b"\0" * 1000)
    make_trainer(policy_dir, out, count_word("good"), total_episodes=64, save_steps=1,
                 resume_from_checkpoint="latest").train()
    assert not leftover.exists() and [m["step"] for m in read_metrics(out)] == [1, 2, 3, 4]


@pytest.mark.parametrize("preset", ["tiny", "smollm2"])
def test_shipped_aligned_folders_are_complete_as_shipped(preset, tmp_path):
    shipped = os.path.join(PRESETS, preset, "aligned")
    assert runs.export_problem(shipped) is None
    assert "value_model/model.safetensors" in runs.shipped_without(shipped)
    copy = tmp_path / "copy"
    shutil.copytree(shipped, copy)
    os.remove(copy / "training_config.yaml")  # not a run folder any more: not checked
    assert runs.export_problem(str(copy)) is None
    shutil.copytree(shipped, tmp_path / "broken")
    lost = "model.safetensors" if preset == "tiny" else "adapter_model.safetensors"
    info = json.loads((tmp_path / "broken" / "run_info.json").read_text())
    info["export_files"].append(lost)  # the smollm2 copy lists the run's names; make the loss visible either way
    (tmp_path / "broken" / "run_info.json").write_text(json.dumps(info))
    os.remove(tmp_path / "broken" / lost)
    assert "shipped copy" in runs.export_problem(str(tmp_path / "broken"))


def test_an_interrupted_export_is_still_refused(finished_run):
    _, out = finished_run
    shutil.rmtree(out / "value_model")
    assert "interrupted run" in runs.export_problem(str(out))


def test_a_failed_reward_model_save_leaves_the_old_model_whole(tmp_path, monkeypatch):
    folder = tmp_path / "rm"
    folder.mkdir()
    (folder / "tokenizer.json").write_text('{"old": true}')

    def half_save(tmp):
        with open(os.path.join(tmp, "tokenizer.json"), "w") as f:
            f.write("")  # a kill here, in place, once left a 0-byte tokenizer.json
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runs.atomic_save(half_save, str(folder) + "/")
    assert json.loads((folder / "tokenizer.json").read_text()) == {"old": True}


def test_reward_models_are_saved_through_atomic_save(word_policy_dir, tmp_path, monkeypatch):
    from rlhf_demo import reward_model

    calls = []
    real = runs.atomic_save
    monkeypatch.setattr(runs, "atomic_save", lambda fn, path: (calls.append(path), real(fn, path)))
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text("".join(json.dumps({"prompt": "the movie", "chosen": f" good {i}", "rejected": f" bad {i}"}) + "\n"
                             for i in range(8)))
    from rlhf_demo.config import RewardModelConfig

    reward_model.train_preference_reward_model(RewardModelConfig(
        model_name_or_path=word_policy_dir, output_dir=str(tmp_path / "rm"), preferences=[str(prefs)], batch_size=4,
        max_length=16, eval_fraction=0.25))
    assert calls == [str(tmp_path / "rm")] and (tmp_path / "rm" / "reward_model_report.json").is_file()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith((".tmp-rm-", ".old-rm-"))]  # no leftovers


def test_a_causal_lm_is_refused_as_a_reward_model(word_policy_dir):
    from rlhf_demo.rewards import ClassifierReward

    with pytest.raises(UserInputError, match="not a trained sequence classifier"):
        ClassifierReward(word_policy_dir, label="LABEL_1")


def test_a_prompt_dataset_without_test_split_trains_and_says_how_to_evaluate(word_policy_dir, tmp_path):
    import subprocess
    import sys

    data = tmp_path / "prompts"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in
                                              ["the movie was", "a film", "this plot is", "the actor"] * 4))
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "rlhf_demo.cli", "train", "--model_name_or_path", word_policy_dir, "--reward",
         "keyword=good", "--dataset_name", str(data), "--prompt_column", "prompt", "--total_episodes", "16",
         "--batch_size", "8", "--num_mini_batches", "2", "--response_length", "4", "--eval_num_prompts", "8",
         "--progress_bar", "false", "--output_dir", str(out)],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]  # so `rlhf-demo train && rlhf-demo push` goes on
    assert "has no test split, so the evaluation against the reference that ends training is skipped" in proc.stderr
    assert "rlhf-demo eval --model" in proc.stderr and runs.export_problem(str(out)) is None
    assert not (out / "eval").exists()


def test_a_resume_with_another_learning_rate_applies_it_and_says_so(finished_run, capsys):
    policy_dir, out = finished_run  # 3 steps of 16 episodes at lr 1e-3, decayed linearly to 0
    make_trainer(policy_dir, out, count_word("good"), total_episodes=96, save_steps=1, learning_rate=0.5,
                 resume_from_checkpoint="latest").train()
    assert "learning_rate 0.001 -> 0.5 (applied from this step on)" in capsys.readouterr().err
    # Steps 4-6 of a 6-step schedule at the new rate (the old code trained step 4 at the old schedule's end, 0).
    assert [m["lr"] for m in read_metrics(out)][3:] == pytest.approx([0.5 * 3 / 6, 0.5 * 2 / 6, 0.5 * 1 / 6])
