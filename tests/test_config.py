"""Config parsing: presets, YAML files, flag precedence, and clear errors."""

import os

import pytest

from rlhf_demo.config import PRESETS_DIR, PPOConfig, parse_config


def test_tiny_preset_points_inside_the_package_and_flags_override():
    cfg = parse_config(PPOConfig, ["--preset", "tiny", "--batch_size", "8", "--output_dir", "x"], section="train")
    assert cfg.model_name_or_path == os.path.join(PRESETS_DIR, "tiny", "policy")
    assert cfg.reward == [f"sentiment={os.path.join(PRESETS_DIR, 'tiny', 'reward_model')}@POSITIVE"]
    assert cfg.batch_size == 8 and cfg.output_dir == "x"
    assert cfg.num_ppo_epochs == 2 and cfg.target_kl == 5.0 and not cfg.stop_at_eos  # from the preset / defaults


def test_gpt2_preset_uses_hub_defaults():
    cfg = parse_config(PPOConfig, ["--preset", "gpt2"], section="train")
    assert cfg.model_name_or_path == "openai-community/gpt2"
    assert cfg.reward == ["sentiment=lvwerra/distilbert-imdb@POSITIVE"]
    assert cfg.dataset_name == "stanfordnlp/imdb" and cfg.adaptive_kl and cfg.target_kl == 6.0


def test_yaml_config_file_then_flags(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("kl_coef: 0.3\nmodel_name_or_path: ./models/policy\nreward: ['keyword=good']\n")
    cfg = parse_config(PPOConfig, ["--config", str(path), "--kl_coef", "0.1"])
    assert cfg.kl_coef == 0.1  # the flag wins
    assert cfg.model_name_or_path == str(tmp_path / "models" / "policy")  # relative to the YAML file
    assert cfg.reward == ["keyword=good"]


def test_unknown_yaml_key_is_an_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("klcoef: 0.3\n")
    with pytest.raises(ValueError, match=r"Unknown option\(s\) in the config: \['klcoef'\]"):
        parse_config(PPOConfig, ["--config", str(path)])


def test_validation_happens_at_parse_time():
    with pytest.raises(ValueError, match="temperature must be positive"):
        parse_config(PPOConfig, ["--temperature", "0"])


def test_pretrain_dropout_flag_and_its_range():
    from rlhf_demo.config import PretrainConfig

    assert parse_config(PretrainConfig, ["--dropout", "0.1"]).dropout == 0.1
    assert PretrainConfig().dropout == 0.0
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        parse_config(PretrainConfig, ["--dropout", "1.5"])


def test_required_push_fields_come_from_the_yaml_file(tmp_path):
    # `model` and `repo_id` have no default (argparse would require the flags); a YAML file may give them.
    from rlhf_demo.config import PushConfig

    path = tmp_path / "push.yaml"
    path.write_text("model: ./runs/tiny\nrepo_id: someone/tiny-rlhf\nprivate: true\n")
    cfg = parse_config(PushConfig, ["--config", str(path)], section="push")
    assert cfg.model == str(tmp_path / "runs" / "tiny") and cfg.repo_id == "someone/tiny-rlhf" and cfg.private
    assert parse_config(PushConfig, ["--config", str(path), "--repo_id", "other/name"],
                        section="push").repo_id == "other/name"
    with pytest.raises(SystemExit):  # still required when nothing gives it
        parse_config(PushConfig, ["--model", "x"], section="push")


def test_data_dir_setting(monkeypatch, tmp_path):
    from rlhf_demo.config import data_dir

    monkeypatch.setenv("RLHF_DEMO_DATA", str(tmp_path))
    assert data_dir() == str(tmp_path)
    monkeypatch.delenv("RLHF_DEMO_DATA")
    assert data_dir().endswith(os.path.join("shared", "data"))


def test_value_head_on_policy_refuses_the_value_model_options_the_user_gave(tmp_path):
    from rlhf_demo.config import EvalConfig
    from rlhf_demo.errors import UserInputError

    cfg = parse_config(PPOConfig, ["--preset", "tiny", "--value_head_on_policy", "true"], section="train")
    assert cfg.value_head_on_policy and cfg.value_model_name_or_path  # the preset's own value model: unused, fine
    with pytest.raises(UserInputError, match="--value_model_name_or_path .* would be unused"):
        parse_config(PPOConfig, ["--value_head_on_policy", "true", "--value_model_name_or_path", "x"])
    path = tmp_path / "c.yaml"
    path.write_text("value_head_on_policy: true\nvalue_model_num_layers: 2\n")
    with pytest.raises(UserInputError, match="--value_model_num_layers .* would be unused"):
        parse_config(PPOConfig, ["--config", str(path)])
    with pytest.raises(UserInputError, match="num_report_samples must be 0"):
        EvalConfig(model="a", reference="b", num_report_samples=-2)


def test_flat_file_with_an_env_block_sets_the_variables_and_keeps_its_options(tmp_path, monkeypatch):
    # TRL's documented `env:` block; it once made the file look sectioned, and its options were dropped (10,000
    # episodes trained instead of the file's 64).
    monkeypatch.setenv("RLHF_DEMO_TEST_VAR", "before")  # restored (removed) after the test
    path = tmp_path / "flat.yaml"
    path.write_text("total_episodes: 64\nbatch_size: 8\nenv:\n  RLHF_DEMO_TEST_VAR: 1\n")
    cfg = parse_config(PPOConfig, ["--config", str(path), "--batch_size", "4"], section="train")
    assert cfg.total_episodes == 64 and cfg.batch_size == 4  # the file's value, and the flag over the file
    assert os.environ["RLHF_DEMO_TEST_VAR"] == "1"


def test_sectioned_file_and_a_file_mixing_sections_with_options(tmp_path, monkeypatch):
    from rlhf_demo.config import EvalConfig
    from rlhf_demo.errors import UserInputError

    monkeypatch.setenv("RLHF_DEMO_TEST_VAR", "before")
    path = tmp_path / "sections.yaml"
    path.write_text("env:\n  RLHF_DEMO_TEST_VAR: x\ntrain:\n  total_episodes: 64\neval:\n  model: a\n  reference: b\n")
    assert parse_config(PPOConfig, ["--config", str(path)], section="train").total_episodes == 64
    assert parse_config(EvalConfig, ["--config", str(path)], section="eval").reference == "b"
    assert os.environ["RLHF_DEMO_TEST_VAR"] == "x"
    path.write_text("total_episodes: 64\ntrain:\n  batch_size: 8\n")
    with pytest.raises(UserInputError, match=r"mixes command sections \(train\) with top-level options "
                                             r"\(total_episodes\)") as e:
        parse_config(PPOConfig, ["--config", str(path)], section="train")
    assert "\n" not in str(e.value)
    path.write_text("env: [A]\ntotal_episodes: 64\n")
    with pytest.raises(UserInputError, match="'env' must map environment variable names to values"):
        parse_config(PPOConfig, ["--config", str(path)], section="train")


def test_the_parser_lives_in_parsing_and_the_shared_option_groups():
    from rlhf_demo import config, parsing
    from rlhf_demo.errors import UserInputError

    assert config.parse_config is parsing.parse_config and config.load_yaml_config is parsing.load_yaml_config
    assert issubclass(config.PPOConfig, config.PromptOptions) and issubclass(config.EvalConfig, config.PromptOptions)
    assert issubclass(config.GenerateConfig, config.SamplingOptions)
    assert issubclass(config.PreferencesConfig, config.SamplingOptions)
    with pytest.raises(UserInputError, match=r"top_k must be 0 \(off\) or positive and top_p in \(0, 1\]"):
        config.EvalConfig(model="a", reference="b", top_p=0.0)
    with pytest.raises(UserInputError, match="temperature must be positive"):
        config.PreferencesConfig(temperature=0.0)
    config.check_repo_id("me/x", "--repo_id")
    config.check_repo_id("x", "--repo_id", namespace=False)  # the Hub puts a bare name under the token's user
    with pytest.raises(UserInputError, match=r"--repo_id 'a/b/c' is not a valid Hub repository id"):
        config.check_repo_id("a/b/c", "--repo_id", namespace=False)


def test_the_space_is_parsed_like_every_command(tmp_path, monkeypatch):
    """SpaceConfig through parse_config: defaults < the preset's space: section < --config < its environment
    variables (a hosted Space's, or a file's env: block) < flags; a value out of range names where it came from."""
    from rlhf_demo.config import SpaceConfig
    from rlhf_demo.errors import UserInputError

    for name in SpaceConfig.ENV_VARIABLES.values():  # absent now, and again after the test (the env: block sets one)
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    assert parse_config(SpaceConfig, [], section="space") == SpaceConfig()
    detox = parse_config(SpaceConfig, ["--preset", "flan-t5-detox"], section="space")
    assert detox.reward_label == "nothate" and detox.eval_max_prompt_length == 512
    path = tmp_path / "space.yaml"
    path.write_text("generation_timeout: 30\nruns_dir: ./runs\nenv:\n  REWARD_LABEL: LABEL_1\n")
    cfg = parse_config(SpaceConfig, ["--preset", "flan-t5-detox", "--config", str(path)], section="space")
    assert cfg.generation_timeout == 30.0 and cfg.runs_dir == str(tmp_path / "runs")  # the file over the preset
    assert cfg.reward_label == "LABEL_1" and cfg.score_label is None  # its env: block; the preset's label dropped
    monkeypatch.setenv("GENERATION_TIMEOUT", "12.5")
    assert parse_config(SpaceConfig, ["--config", str(path)], section="space").generation_timeout == 12.5
    assert parse_config(SpaceConfig, ["--config", str(path), "--generation_timeout", "5"],
                        section="space").generation_timeout == 5.0  # the flag over its variable
    monkeypatch.setenv("GENERATION_TIMEOUT", "0")
    with pytest.raises(UserInputError, match=r"^the environment variable GENERATION_TIMEOUT must be a number of "
                                             r"seconds greater than 0, got '0'\.$"):
        parse_config(SpaceConfig, [], section="space")
    monkeypatch.delenv("GENERATION_TIMEOUT")
    with pytest.raises(UserInputError, match=r"^--port must be a port number in 1-65535, got 0\.$"):
        parse_config(SpaceConfig, ["--port", "0"], section="space")
    with pytest.raises(UserInputError, match="port must be a port number in 1-65535"):
        SpaceConfig(port=70000)  # built in code: the same check


def test_the_loops_ppo_config_applies_its_env_block(tmp_path, monkeypatch):
    from rlhf_demo.config import LoopConfig
    from rlhf_demo.loop import ppo_settings

    monkeypatch.setenv("RLHF_DEMO_TEST_VAR", "before")
    path = tmp_path / "ppo.yaml"
    path.write_text("env:\n  RLHF_DEMO_TEST_VAR: from-the-file\ntrain:\n  total_episodes: 64\n")
    base, _ = ppo_settings(LoopConfig(ppo_config=str(path)))
    assert base.total_episodes == 64 and os.environ["RLHF_DEMO_TEST_VAR"] == "from-the-file"
