"""Shared fixtures: tiny models built in code, the real GPT-2 tokenizer and IMDB from the data folder
(`rlhf_demo.config.data_dir()`: RLHF_DEMO_DATA, default ../shared/data)."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from rlhf_demo.config import data_dir  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = data_dir()
IMDB = os.path.join(SHARED_DATA, "imdb")
GPT2_TOKENIZER = os.path.join(SHARED_DATA, "gpt2-tokenizer")

WORDS = ["good", "bad", "movie", "film", "the", "a", "was", "is", "great", "awful", "plot", "actor", "and", "it",
         "this", "very"]


@pytest.fixture(scope="session")
def imdb_path():
    if not os.path.isdir(IMDB):
        pytest.skip(f"IMDB data not found at {IMDB}")
    return IMDB


@pytest.fixture(scope="session")
def gpt2_tokenizer_path():
    if not os.path.isdir(GPT2_TOKENIZER):
        pytest.skip(f"GPT-2 tokenizer not found at {GPT2_TOKENIZER}")
    return GPT2_TOKENIZER


def make_word_tokenizer():
    """A 18-token word-level tokenizer (16 words, EOS, pad): small enough that a random policy hits every word."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "<|pad|>": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", pad_token="<|pad|>", padding_side="left")


def make_tiny_gpt2(vocab_size, seed=0, n_positions=64):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=32, n_layer=1,
                                      n_head=2)).eval()


def save_with_word_tokenizer(model, path) -> str:
    """Save `model` (a causal LM over the word-level vocabulary, its pad and EOS ids set to the tokenizer's) and the
    word-level tokenizer into `path`; returns the path."""
    tok = make_word_tokenizer()
    model.config.pad_token_id, model.config.eos_token_id = tok.pad_token_id, tok.eos_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture
def word_policy_dir(tmp_path):
    """A saved 1-layer GPT-2 on the word-level tokenizer."""
    return save_with_word_tokenizer(make_tiny_gpt2(len(make_word_tokenizer())), tmp_path / "word_policy")


def word_prompts(tok, n=64, seed=0):
    """In-memory query dataset of 2-4 words, in the `build_prompt_dataset` format."""
    import random

    import datasets

    rng = random.Random(seed)
    queries = [" ".join(rng.choice(WORDS[2:]) for _ in range(rng.randint(2, 4))) for _ in range(n)]
    ids = [tok(q, add_special_tokens=False)["input_ids"] for q in queries]
    return datasets.Dataset.from_dict({"input_ids": ids, "query": queries})


def count_word(word):
    def reward(queries, responses):
        return [float(r.split().count(word)) for r in responses]

    reward.__name__ = f"count_{word}"
    return reward


def crashing_on_call(n, reward_fn):
    """`reward_fn`, except that its n-th call raises RuntimeError("reward server went away"): a crash mid-run."""
    calls = {"n": 0}

    def reward(queries, responses):
        calls["n"] += 1
        if calls["n"] == n:
            raise RuntimeError("reward server went away")
        return reward_fn(queries, responses)

    return reward


def count_word_good(queries, responses):
    """A reward named as `python=conftest:count_word_good` in tests: the number of "good" in each response."""
    return [float(r.split().count("good")) for r in responses]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a test starts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, proc, timeout: float = 240, output=None) -> None:
    """Wait until `url` answers HTTP 200, polling every half second; AssertionError when the server process `proc`
    exits first (with `output()`, its log, when given) or after `timeout` seconds."""
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited ({proc.returncode}):\n{(output() if output else '')[-5000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout:g} s")

