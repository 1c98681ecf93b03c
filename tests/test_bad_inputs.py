"""Bad inputs as a user meets them: `rlhf-demo ...` in a subprocess must end with one line `error: ...` naming the
input (no traceback, non-zero exit), and must leave a run already written exactly as it was. docs/errors.md lists
the same cases with their messages. Also here: degenerate runs stop with their checkpoints intact, the final export
is atomic, and a resume reads past a torn last line of metrics.jsonl."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import datasets
import pytest
import torch
from conftest import WORDS, make_tiny_gpt2, make_word_tokenizer

from rlhf_demo import checkpoints, runs
from rlhf_demo.config import PPOConfig
from rlhf_demo.errors import TrainingDivergedError, UserInputError

REWARDS_MODULE = '''
calls = {"n": 0}


def huge(queries, responses):
    return [1e30] * len(responses)


def huge_after_two_steps(queries, responses):
    calls["n"] += 1
    return [1e30 if calls["n"] > 2 else 1.0] * len(responses)
'''


def save_policy(path):
    tok = make_word_tokenizer()
    model = make_tiny_gpt2(len(tok))
    model.config.pad_token_id, model.config.eos_token_id = tok.pad_token_id, tok.eos_token_id
    model.config.bos_token_id = tok.bos_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)


def train_args(w, output_dir, *extra):
    """`rlhf-demo train` on the tiny word-level policy: 2 PPO steps of 8 episodes, a checkpoint after each."""
    return ["train", "--model_name_or_path", w["policy"], "--reward", "keyword=good", "--dataset_name", w["data"],
            "--min_review_chars", "0", "--total_episodes", "16", "--batch_size", "8", "--num_mini_batches", "2",
            "--num_ppo_epochs", "1", "--response_length", "4", "--save_steps", "1", "--sample_steps", "0",
            "--progress_bar", "false", "--eval_num_prompts", "0", "--output_dir", str(output_dir), *extra]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny models, good and bad data and config files, and a finished training run, all in one tmp folder."""
    root = tmp_path_factory.mktemp("bad_inputs")
    w = {"root": str(root), "policy": str(root / "policy"), "data": str(root / "data")}
    save_policy(w["policy"])
    shutil.copytree(w["policy"], root / "policy_copy")
    shutil.copytree(w["policy"], root / "no_tokenizer", ignore=shutil.ignore_patterns("tokenizer*"))
    shutil.copytree(w["policy"], root / "truncated")
    weights = root / "truncated" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    os.makedirs(w["data"])
    texts = [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(12)) for i in range(40)]
    datasets.Dataset.from_dict({"text": texts}).to_csv(os.path.join(w["data"], "train.csv"))
    for name, filename, content in (("empty_csv", "train.csv", b""),
                                    ("latin1_csv", "train.csv", "text\n\"caf\xe9 tr\xe8s bon\"\n".encode("latin-1")),
                                    ("not_parquet", "train.parquet", bytes(range(256)) * 8),
                                    ("torn_jsonl", "train.jsonl", b'{"text": "good movie"}\n{"text": "bad mov'),
                                    ("empty_jsonl", "train.jsonl", b"")):
        os.makedirs(root / name)
        (root / name / filename).write_bytes(content)
    (root / "empty_prompt.jsonl").write_text('{"prompt": "a good film"}\n{"prompt": ""}\n')
    (root / "a_file").write_text("not a folder")
    (root / "syntax.yaml").write_text("kl_coef: [0.1\nbatch_size: 8\n")
    (root / "types.yaml").write_text("batch_size: [8, 16]\n")
    (root / "unknown.yaml").write_text("klcoef: 0.1\n")
    (root / "section.yaml").write_text("training:\n  batch_size: 8\n")  # a misspelt section: once silently ignored
    (root / "twice.yaml").write_text("batch_size: 8\nbatch_size: 16\n")
    (root / "huge_reward.py").write_text(REWARDS_MODULE)

    def jsonl(name, rows):
        (root / name).write_text("".join(json.dumps(row) + "\n" for row in rows))

    jsonl("text_int.jsonl", [{"text": 7}] * 4)  # data whose review column is not text
    jsonl("text_null.jsonl", [{"text": "a good film"}, {"text": None}])
    jsonl("text_object.jsonl", [{"text": {"body": "a good film"}}] * 4)
    jsonl("prompt_int.jsonl", [{"prompt": 7}] * 4)
    pair = {"prompt": "the film", "chosen": " was good", "rejected": " was bad"}  # preference files
    jsonl("prefs_prompt_int.jsonl", [{**pair, "prompt": 3}])
    jsonl("prefs_prompt_null.jsonl", [{**pair, "prompt": None}])
    jsonl("prefs_tie_string.jsonl", [{**pair, "tie": "false"}])
    jsonl("prefs_three.jsonl", [{**pair, "chosen": f" was good {i}"} for i in range(3)])
    (root / "prefs_array.json").write_text(json.dumps([pair] * 3, indent=2))
    for name, labels in (("labels3", [0, 1, 2]), ("labels_str", ["neg", "pos"])):  # classifier data
        os.makedirs(root / name)
        jsonl(f"{name}/train.jsonl", [{"text": "a good film", "label": label} for label in labels])
    for name, key, value in (("unknown_type", "model_type", "gpt7"), ("shape_mismatch", "n_embd", 64)):
        shutil.copytree(w["policy"], root / name)  # a config.json that does not fit transformers or the weights
        config = json.loads((root / name / "config.json").read_text())
        (root / name / "config.json").write_text(json.dumps({**config, key: value}))
    from transformers import GPT2Config, GPT2ForSequenceClassification

    tok = make_word_tokenizer()  # a classifier with three labels, none of them POSITIVE
    labels = {0: "NEG", 1: "NEUTRAL", 2: "POS"}
    GPT2ForSequenceClassification(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                                             id2label=labels, label2id={v: k for k, v in labels.items()},
                                             pad_token_id=tok.pad_token_id)).save_pretrained(root / "rm3")
    tok.save_pretrained(root / "rm3")

    from rlhf_demo.config import parse_config
    from rlhf_demo.ppo import PPOTrainer

    run = root / "run"  # the real producer writes the run the bad inputs must leave alone
    PPOTrainer(parse_config(PPOConfig, train_args(w, run)[1:])).train()
    assert sorted(n for n in os.listdir(run / "checkpoints")) == ["checkpoint-1", "checkpoint-2"]
    w["run"] = str(run)
    return w


def run_cli(args, env_extra=None, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "TOKENIZERS_PARALLELISM": "false", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "rlhf_demo.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def snapshot(folder):
    """{relative path: sha256} of every file under `folder`."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def cases(w):
    """(name, CLI args, substrings the one error line must hold): the table of docs/errors.md."""
    r, run = w["root"], w["run"]
    new = os.path.join(r, "new_run")
    resume = ("--resume_from_checkpoint", "latest")
    return [
        ("missing model", ["generate", "--model", f"{r}/missing"], [f"{r}/missing", "does not exist"]),
        ("missing policy", train_args(w, new, "--model_name_or_path", f"{r}/missing"), [f"{r}/missing"]),
        ("missing reward model", train_args(w, new, "--reward", f"sentiment={r}/missing@POSITIVE"),
         [f"{r}/missing", "--reward", "does not exist"]),
        ("no tokenizer files", ["generate", "--model", f"{r}/no_tokenizer"], ["no_tokenizer", "no tokenizer files"]),
        ("truncated weights", ["generate", "--model", f"{r}/truncated"],
         [f"{r}/truncated/model.safetensors", "truncated or corrupt"]),
        ("prompt beyond context", ["generate", "--model", w["policy"], "--max_new_tokens", "100"],
         ["--max_new_tokens", "context of 64 tokens"]),
        ("response beyond context", train_args(w, new, "--response_length", "100"),
         ["--response_length", "context of 64 tokens"]),
        ("empty data file", train_args(w, new, "--dataset_name", f"{r}/empty_csv"), ["empty_csv/train.csv", "empty"]),
        ("latin-1 data file", train_args(w, new, "--dataset_name", f"{r}/latin1_csv"),
         ["latin1_csv/train.csv", "not UTF-8"]),
        ("binary parquet", train_args(w, new, "--dataset_name", f"{r}/not_parquet"),
         ["not_parquet/train.parquet", "not a Parquet file"]),
        ("torn jsonl", train_args(w, new, "--dataset_name", f"{r}/torn_jsonl"), ["line 2", "torn_jsonl/train.jsonl"]),
        ("dataset offline", train_args(w, new, "--dataset_name", "no-such-user/no-such-data"),
         ["no-such-user/no-such-data", "--dataset_name"]),
        ("prompt column missing", train_args(w, new, "--prompt_column", "prompt"),
         ["no column 'prompt'", "--prompt_column", "['text']"]),
        ("empty prompt", train_args(w, new, "--dataset_name", f"{r}/empty_prompt.jsonl", "--prompt_column", "prompt"),
         ["row 1", "empty"]),
        ("prompt dataset beyond context", train_args(w, new, "--prompt_column", "text", "--response_length", "60"),
         ["--max_prompt_length", "context of 64 tokens"]),
        ("output is a file", train_args(w, f"{r}/a_file"), ["--output_dir", "a_file", "is a file"]),
        ("output under a file", train_args(w, f"{r}/a_file/run"), ["--output_dir", "a_file", "is a file"]),
        ("eval output is a file", ["eval", "--model", w["policy"], "--reference", w["policy"], "--output_dir",
                                   f"{r}/a_file"], ["--output_dir", "a_file", "is a file"]),
        ("yaml syntax", ["train", "--config", f"{r}/syntax.yaml"], ["syntax.yaml", "line 2"]),
        ("yaml type", ["train", "--config", f"{r}/types.yaml"], ["types.yaml", "batch_size", "integer"]),
        ("yaml unknown key", ["train", "--config", f"{r}/unknown.yaml"], ["unknown.yaml", "klcoef"]),
        ("yaml misspelt section", ["train", "--config", f"{r}/section.yaml"], ["'training'", "did you mean train"]),
        ("yaml key twice", ["train", "--config", f"{r}/twice.yaml"], ["'batch_size' twice", "lines 1 and 2"]),
        ("loop: reward-model epochs 0", ["loop", "--rm_epochs", "0"], ["rm_epochs"]),
        *[(f"{flag} 0", train_args(w, run, f"--{flag}", "0"), [flag]) for flag in
          ("num_mini_batches", "gradient_accumulation_steps", "num_threads", "logging_steps", "kl_horizon",
           "max_grad_norm")],
        ("value head without a reward head", train_args(w, new, "--value_head_init", "reward_model"),
         ["value_head_init reward_model", "zero or auto"]),
        ("reward-model epochs 0", ["reward-model", "--num_train_epochs", "0"], ["num_train_epochs"]),
        ("greedy top_k", train_args(w, run, "--top_k", "1"), ["top_k", "greedy"]),
        ("greedy top_p", train_args(w, run, "--top_p", "0"), ["top_p", "greedy"]),
        ("resume: other batch size and seed", train_args(w, run, *resume, "--batch_size", "4", "--seed", "3"),
         ["batch_size", "seed", "--resume_with_changed_config"]),
        ("resume: other model", train_args(w, run, *resume, "--model_name_or_path", f"{r}/policy_copy"),
         ["model_name_or_path", "policy_copy"]),
        ("resume: no checkpoint", train_args(w, new, *resume), ["No checkpoint", "new_run"]),
        ("train again into a finished run", train_args(w, run), ["already holds a training run",
                                                                  "--overwrite_output_dir"]),
        ("NaN KL coefficient", train_args(w, new, "--kl_coef", "nan"), ["kl_coef", "finite"]),
        ("infinite temperature", train_args(w, new, "--temperature", "inf"), ["temperature", "finite"]),
        ("seed out of range", train_args(w, new, "--seed", "-1"), ["seed", "4294967295"]),
        ("empty prompt file", train_args(w, new, "--dataset_name", f"{r}/empty_jsonl", "--prompt_column", "prompt"),
         ["empty_jsonl/train.jsonl", "empty"]),
        ("causal LM as reward model", train_args(w, new, "--reward", f"sentiment={w['policy']}@LABEL_1"),
         ["not a trained sequence classifier", "score.weight"]),
        ("review text of ints", train_args(w, new, "--dataset_name", f"{r}/text_int.jsonl"),
         ["column 'text' holds an int in row 0", "--text_column"]),
        ("null review text", train_args(w, new, "--dataset_name", f"{r}/text_null.jsonl"),
         ["column 'text' holds null in row 1"]),
        ("review text of objects", train_args(w, new, "--dataset_name", f"{r}/text_object.jsonl"),
         ["column 'text' holds a dict in row 0"]),
        ("prompt column of ints", train_args(w, new, "--dataset_name", f"{r}/prompt_int.jsonl", "--prompt_column",
                                             "prompt"), ["column 'prompt' holds an int in row 0", "--prompt_column"]),
        ("LoRA target module missing", train_args(w, new, "--use_peft", "true", "--lora_target_modules", "nope"),
         ["--lora_target_modules nope", "c_attn"]),
        ("value model deeper than its backbone", train_args(w, new, "--value_model_num_layers", "3"),
         ["--value_model_num_layers 3", "has 1 block"]),
        ("value head on the policy and a value model", train_args(w, new, "--value_head_on_policy", "true",
                                                                  "--value_model_name_or_path", w["policy"]),
         ["--value_model_name_or_path", "unused"]),
        ("unknown model_type", ["generate", "--model", f"{r}/unknown_type"], ["'gpt7'", "model_type"]),
        ("config and weights of other shapes", ["generate", "--model", f"{r}/shape_mismatch"],
         ["shape_mismatch/model.safetensors", "config.json"]),
        ("eval: reward label missing", ["eval", "--model", w["policy"], "--reference", w["policy"], "--reward_model",
                                        f"{r}/rm3", "--output_dir", f"{r}/eval_out"], ["'POSITIVE'", "--reward_label"]),
        ("eval: Hub judge offline", ["eval", "--model", w["policy"], "--reference", w["policy"], "--reward_model",
                                     f"{r}/rm3", "--reward_label", "POS", "--sentiment_judge", "nobody/no-judge",
                                     "--output_dir", f"{r}/eval_out"], ["--sentiment_judge", "nobody/no-judge"]),
        ("eval: negative report samples", ["eval", "--model", w["policy"], "--reference", w["policy"],
                                           "--num_report_samples", "-2"], ["num_report_samples", "-2"]),
        ("preferences: output .json", ["preferences", "--model", w["policy"], "--output", f"{r}/prefs.json"],
         ["prefs.json", ".jsonl"]),
        ("preferences: output an existing file", ["preferences", "--model", w["policy"], "--output", f"{r}/a_file"],
         ["a_file", "existing file"]),
        *[(f"preference file: {name}", ["reward-model", "--model_name_or_path", w["policy"], "--output_dir",
                                        f"{r}/rm_out", "--preferences", f"{r}/{file}", *extra], expected)
          for name, file, extra, expected in (
              ("prompt an int", "prefs_prompt_int.jsonl", (), ["Line 1", "`prompt`", "an int"]),
              ("prompt null", "prefs_prompt_null.jsonl", (), ["Line 1", "`prompt`", "null"]),
              ("tie a string", "prefs_tie_string.jsonl", (), ["Line 1", "`tie` \"false\"", "JSON boolean"]),
              ("a JSON array", "prefs_array.json", (), ["prefs_array.json", "JSON array", "jq"]),
              ("all pairs held out", "prefs_three.jsonl", ("--eval_fraction", "0.9"),
               ["--eval_fraction", "3 of the 3"]),
          )],
        *[(f"classifier labels: {name}", ["reward-model", "--model_name_or_path", w["policy"], "--output_dir",
                                          f"{r}/rm_out", "--dataset_name", f"{r}/{folder}"], expected)
          for name, folder, expected in (("three", "labels3", ["column 'label' holds 2 in row 2", "0 (negative)"]),
                                         ("strings", "labels_str", ["column 'label' holds a string", "0 (negative)"]))],
        ("rewards of 1e30", train_args(w, run, *resume, "--total_episodes", "32", "--reward",
                                       "python=huge_reward:huge"), ["NaN or infinite", "checkpoints", "--reward_clip"]),
    ]


def documented_errors():
    """{bad input: message} from the table of docs/errors.md, where W stands for the folder of the inputs."""
    rows = {}
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "errors.md")) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            if len(cells) == 3 and cells[2].startswith("`` error:"):
                rows[cells[0]] = cells[2].strip("` ")
    return rows


@pytest.mark.slow  # about 60 CLI processes: 4 to 7 minutes on 2 busy cores
def test_every_bad_input_is_one_line_and_the_run_is_unchanged(world):
    before = snapshot(world["run"])
    table = cases(world)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda c: run_cli(c[1], {"PYTHONPATH": world["root"]}), table))
    for (name, _, expected), out in zip(table, results):
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert out.returncode != 0, (name, out.stderr[-2000:])
        assert "Traceback" not in out.stderr, (name, out.stderr[-3000:])
        errors = [line for line in lines if line.startswith("error:")]
        assert len(errors) == 1 and lines[-1] == errors[0], (name, lines[-5:])
        for text in expected:
            assert text in errors[0], (name, text, errors[0])
    assert snapshot(world["run"]) == before  # nothing already done is lost
    assert not os.path.exists(os.path.join(world["root"], "new_run", runs.RUN_INFO_FILE))
    documented = documented_errors()  # docs/errors.md shows each message exactly, so users can search it
    got = {name: [line for line in out.stderr.splitlines() if line.startswith("error:")][0].replace(world["root"], "W")
           for (name, _, _), out in zip(table, results)}
    wrong = {name: message for name, message in got.items() if documented.get(name) != message}
    assert not wrong, "docs/errors.md differs:\n" + "\n".join(f"| {k} | ... | `` {v} `` |" for k, v in wrong.items())


def test_a_real_bug_keeps_its_traceback(world, tmp_path):
    (tmp_path / "buggy.py").write_text("def reward(queries, responses):\n    return 1 / 0\n")
    out = run_cli(train_args(world, tmp_path / "run", "--reward", "python=buggy:reward"),
                  {"PYTHONPATH": str(tmp_path)})
    assert out.returncode != 0 and "Traceback" in out.stderr and "ZeroDivisionError" in out.stderr


def test_degenerate_run_stops_and_keeps_its_last_checkpoint(world, tmp_path):
    sys.path.insert(0, world["root"])
    try:
        import huge_reward
    finally:
        sys.path.remove(world["root"])
    from rlhf_demo.config import parse_config
    from rlhf_demo.ppo import PPOTrainer

    huge_reward.calls["n"] = 0
    out = tmp_path / "run"
    cfg = parse_config(PPOConfig, train_args(world, out, "--total_episodes", "40")[1:])
    trainer = PPOTrainer(cfg, reward_fn=huge_reward.huge_after_two_steps)
    with pytest.raises(TrainingDivergedError, match="PPO step 3: .*NaN or infinite"):
        trainer.train()
    assert [s for s, _ in runs.list_checkpoints(str(out))] == [1, 2]  # the good ones, whole
    assert json.load(open(out / "checkpoints" / "checkpoint-2" / "trainer_state.json"))["step"] == 2
    assert [m["step"] for m in runs.read_jsonl(str(out / runs.METRICS_FILE))] == [1, 2]  # no NaN row logged
    assert not (out / runs.RUN_INFO_FILE).exists()  # and no export passes as a finished run


def test_nan_in_a_rollout_stops_before_the_update(world, tmp_path):
    from rlhf_demo.config import parse_config
    from rlhf_demo.ppo import PPOTrainer

    trainer = PPOTrainer(parse_config(PPOConfig, train_args(world, tmp_path / "run")[1:]))
    head = trainer.value_model.score if hasattr(trainer.value_model, "score") else trainer.value_model.classifier
    with torch.no_grad():
        head.bias.fill_(float("nan"))  # a value model gone bad: every V(s_t) is NaN
        weights = [p.clone() for p in trainer.policy.parameters()]
    with pytest.raises(TrainingDivergedError, match="PPO step 1: the values, advantages, returns turned NaN"):
        trainer.step()
    assert all(torch.equal(a, b) for a, b in zip(weights, trainer.policy.parameters()))  # no update ran


def test_resume_reads_past_a_torn_metrics_line(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    whole = runs.read_jsonl(str(run / runs.METRICS_FILE))
    with open(run / runs.METRICS_FILE, "a") as f:
        f.write('{"episode": 24, "step": 3, "objective/sco')  # a kill in the middle of a write
    out = run_cli(train_args(world, run, "--resume_from_checkpoint", "latest"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"warning: {run / runs.METRICS_FILE}: dropped line(s) 3" in out.stderr
    assert runs.read_jsonl(str(run / runs.METRICS_FILE)) == whole
    assert open(run / runs.METRICS_FILE).read().endswith("}\n")


def test_resume_with_changed_config_needs_the_flag(world):
    from rlhf_demo.config import parse_config

    checkpoint = os.path.join(world["run"], "checkpoints", "checkpoint-2")
    same = parse_config(PPOConfig, train_args(world, world["run"], "--total_episodes", "64")[1:])
    checkpoints.check_resume_config(checkpoint, same)  # a longer run is fine
    other = parse_config(PPOConfig, train_args(world, world["run"], "--batch_size", "4")[1:])
    with pytest.raises(UserInputError, match="batch_size: 8 in the checkpoint, 4 now"):
        checkpoints.check_resume_config(checkpoint, other)
    checkpoints.check_resume_config(checkpoint, other, allow_changes=True)


class Killed(Exception):
    """Stands for a kill -9 at one point of the export."""


@pytest.mark.parametrize("kill_at", ["writing", "moving"])
def test_final_export_is_atomic(world, tmp_path, monkeypatch, kill_at):
    from transformers import AutoModelForTokenClassification

    from rlhf_demo.models import load_policy, load_tokenizer

    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    before = snapshot(run)
    policy, tok = load_policy(str(run)), load_tokenizer(str(run))
    value_model = AutoModelForTokenClassification.from_pretrained(str(run / "value_model"))
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(1.0)  # a different model, so a half-written export would show
    if kill_at == "writing":
        monkeypatch.setattr(value_model, "save_pretrained", lambda *a, **k: (_ for _ in ()).throw(Killed()))
    else:
        real_replace = os.replace

        def replace(src, dst):  # killed after the weights moved in, before the tokenizer did
            if os.path.basename(dst) == "tokenizer.json" and runs.EXPORT_TMP in src:
                raise Killed()
            return real_replace(src, dst)

        monkeypatch.setattr(runs.os, "replace", replace)
    with pytest.raises(Killed):
        runs.export_model(str(run), policy, tok, value_model, {"temperature": 1.0}, {"steps": 99})
    after = snapshot(run)
    if kill_at == "writing":  # the previous export is whole and still the one run_info.json describes
        assert {k: v for k, v in after.items() if not k.startswith(runs.EXPORT_TMP)} == before
    else:  # half moved: no run_info.json, so nothing reads it as a finished run
        assert runs.RUN_INFO_FILE not in after and after["model.safetensors"] != before["model.safetensors"]
        assert "export did not finish" in runs.export_problem(str(run))
    monkeypatch.undo()
    runs.export_model(str(run), policy, tok, value_model, {"temperature": 1.0}, {"steps": 99})  # a retry completes
    info = json.load(open(run / runs.RUN_INFO_FILE))
    assert info["steps"] == 99 and all((run / f).is_file() for f in info["export_files"])
    assert not (run / runs.EXPORT_TMP).exists() and runs.export_problem(str(run)) is None
    (run / "tokenizer.json").unlink()
    assert "lacks tokenizer.json" in runs.export_problem(str(run))


def test_yaml_values_are_converted_to_the_field_types(tmp_path):
    from rlhf_demo.config import parse_config

    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1e-5\ntotal_episodes: '128'\nreward: keyword=good\nnum_threads: null\n")
    cfg = parse_config(PPOConfig, ["--config", str(path)])  # PyYAML reads 1e-5 as a string
    assert (cfg.learning_rate, cfg.total_episodes, cfg.reward, cfg.num_threads) == (1e-5, 128, ["keyword=good"], None)
    path.write_text("stop_at_eos: maybe\n")
    with pytest.raises(UserInputError, match=r"c.yaml': option 'stop_at_eos' must be true or false"):
        parse_config(PPOConfig, ["--config", str(path)])
