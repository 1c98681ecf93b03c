"""Rollout sampling draws from exactly the distribution whose log-probs PPO recomputes."""

import json

import torch
from conftest import make_tiny_gpt2, make_word_tokenizer

from rlhf_demo.models import forward_response, logprobs_from_logits, pad_left
from rlhf_demo.ppo_math import entropy_from_logits
from rlhf_demo.sampling import sample


def test_samples_match_the_recomputed_distribution():
    tok = make_word_tokenizer()
    model = make_tiny_gpt2(len(tok), seed=3)
    with torch.no_grad():  # a peaked, uneven distribution, where a biased sampler shows
        model.lm_head.weight.mul_(8)
    queries = [tok("the movie was", add_special_tokens=False)["input_ids"],
               tok("good", add_special_tokens=False)["input_ids"]] * 1000
    ids, mask = pad_left(queries, tok.pad_token_id)
    with torch.no_grad():  # make EOS as likely as the most likely token, so stopping there would show
        likely = model(input_ids=ids[:1], attention_mask=mask[:1]).logits[0, -1].argmax().item()
        model.lm_head.weight[tok.eos_token_id] = model.lm_head.weight[likely]
    # A saved generation config with an in-vocabulary EOS, as every real checkpoint has: `model.generate` used to
    # stop there and pad, even when asked for fixed-length samples, so "actions" included pad tokens.
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    torch.manual_seed(0)
    responses, rmask = sample(model, ids, mask, max_new_tokens=6, pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        logits = forward_response(model, ids, mask, responses, rmask)
    # E[-log p(x)] = H(p) for x ~ p, position by position, whatever the prefix and the padding.
    gap = -logprobs_from_logits(logits, responses) - entropy_from_logits(logits)
    se = gap.std() / gap.numel() ** 0.5
    assert gap.mean().abs() < 4 * se + 1e-4, (gap.mean().item(), se.item())
    # Fixed-length sampling continues after EOS: an EOS is followed by sampled tokens, not by a run of padding.
    rows = [row for row in responses.tolist() if tok.eos_token_id in row[:-1]]
    after_eos = [row[row.index(tok.eos_token_id) + 1:] for row in rows]
    assert after_eos and sum(all(t == tok.pad_token_id for t in rest) for rest in after_eos) < len(after_eos) / 2
    # And the first token's empirical frequencies match its probabilities.
    p = logits[0::2, 0].softmax(-1)[0]
    freq = torch.bincount(responses[0::2, 0], minlength=p.numel()).float() / 1000
    assert (freq - p).abs().max() < 0.05


def test_top_k_restricts_the_support():
    tok = make_word_tokenizer()
    model = make_tiny_gpt2(len(tok), seed=4)
    ids, mask = pad_left([tok("the", add_special_tokens=False)["input_ids"]] * 200, tok.pad_token_id)
    torch.manual_seed(0)
    responses, _ = sample(model, ids, mask, max_new_tokens=1, top_k=2, pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        top2 = model(input_ids=ids[:1]).logits[0, -1].topk(2).indices
    assert set(responses[:, 0].tolist()) <= set(top2.tolist())


def test_sampling_logits_are_the_forward_pass_logits():
    """PPO takes the rollout's log-probs from the logits the tokens were sampled from (no second forward pass):
    they must be the full forward pass's logits, for every row and position, with left padding, top-k and EOS stops."""
    tok = make_word_tokenizer()
    model = make_tiny_gpt2(len(tok), seed=5)
    words = ["the movie was", "good", "bad film and the end"]
    ids, mask = pad_left([tok(w, add_special_tokens=False)["input_ids"] for w in words] * 4, tok.pad_token_id)
    for kw in ({}, {"top_k": 3, "temperature": 0.7}, {"eos_token_id": tok.eos_token_id}):
        torch.manual_seed(0)
        responses, rmask, logits = sample(model, ids, mask, max_new_tokens=7, pad_token_id=tok.pad_token_id,
                                          return_logits=True, **kw)
        with torch.no_grad():
            full = forward_response(model, ids, mask, responses, rmask, kw.get("temperature", 1.0))
        assert logits.shape == full.shape == (*responses.shape, len(tok))
        real = rmask.bool()
        torch.testing.assert_close(logits[real], full[real], atol=1e-5, rtol=1e-5)
        lp = logprobs_from_logits(logits, responses) * rmask
        torch.testing.assert_close(lp, logprobs_from_logits(full, responses) * rmask, atol=1e-5, rtol=1e-5)


def test_fused_gelu_swap_is_the_same_function(tmp_path):
    from transformers.activations import GELUTanh, NewGELUActivation

    from rlhf_demo.models import use_fused_gelu

    tok = make_word_tokenizer()
    model = make_tiny_gpt2(len(tok), seed=6)
    ids, mask = pad_left([tok("the movie was good", add_special_tokens=False)["input_ids"]] * 2, tok.pad_token_id)
    with torch.no_grad():
        before = model(input_ids=ids).logits
        use_fused_gelu(model)
        after = model(input_ids=ids).logits
    assert not any(isinstance(m, NewGELUActivation) for m in model.modules())
    assert any(isinstance(m, GELUTanh) for m in model.modules())
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path)  # what is saved still says gelu_new
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["activation_function"] == "gelu_new"


def test_sample_categorical_draws_from_probs_and_never_a_zero():
    from rlhf_demo.sampling import sample_categorical

    probs = torch.tensor([0.0, 0.5, 0.0, 0.3, 0.2, 0.0])
    torch.manual_seed(0)
    draws = sample_categorical(probs.expand(40000, -1))
    freq = torch.bincount(draws, minlength=6).float() / len(draws)
    assert freq[probs == 0].sum() == 0
    torch.testing.assert_close(freq, probs, atol=0.01, rtol=0)
