"""The model card tells the truth about the folder it describes: the shipped presets' aligned folders (the real
producer's output, as shipped) and small variations of them."""

import json
import os
import shutil

from huggingface_hub import ModelCard

from rlhf_demo.card import build_model_card

PRESETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "rlhf_demo", "presets")


def card_of(folder) -> tuple[str, dict]:
    text = str(build_model_card(str(folder), "you/model"))
    return text, ModelCard(text).data.to_dict()


def test_the_shipped_lora_adapter_card_is_a_peft_card():
    text, data = card_of(os.path.join(PRESETS, "smollm2", "aligned"))
    assert data["library_name"] == "peft" and data["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert {"peft", "lora"} <= set(data["tags"]) and "trl" not in data["tags"]
    assert "AutoPeftModelForCausalLM" in text and "GPT-2 has no chat template" not in text
    assert "`value_model/` holds" not in text  # not shipped, so not promised


def test_the_shipped_tiny_card_promises_only_what_is_there(tmp_path):
    shipped = os.path.join(PRESETS, "tiny", "aligned")
    text, data = card_of(shipped)
    assert data["library_name"] == "transformers" and "peft" not in data["tags"]
    assert "no chat template" in text and "`value_model/` holds" not in text
    # The same run folder with its value model, its curves and a chat template: each is then said.
    run = tmp_path / "run"
    shutil.copytree(shipped, run)
    os.makedirs(run / "value_model")
    (run / "value_model" / "config.json").write_text("{}")
    shutil.copyfile(os.path.join(PRESETS, "tiny", "aligned", "eval", "score_distributions.png"),
                    run / "training_curves.png")
    tok = json.loads((run / "tokenizer_config.json").read_text())
    (run / "tokenizer_config.json").write_text(json.dumps({**tok, "chat_template": "{{ messages }}"}))
    info = json.loads((run / "run_info.json").read_text())
    (run / "run_info.json").write_text(json.dumps({**info, "framework_versions": {"torch": "9.9"}}))
    text, _ = card_of(run)
    assert "`value_model/` holds the PPO value model" in text
    assert "](training_curves.png)" in text and "The tokenizer has a chat template" in text
    assert "### Framework versions" in text and "- torch 9.9" in text
