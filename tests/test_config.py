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
