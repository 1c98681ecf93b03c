"""Loading models and tokenizers, sampling responses and scoring their log-probabilities.

Padding conventions (design.md): queries are left-padded, masks use 1 = real token, and padding is never
inferred from token ids (GPT-2 has no pad token, so we pad with EOS and let the masks say what is real).
Position ids always come from the attention mask, so left padding does not shift positions
(Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO", detail on padding).
"""

from __future__ import annotations

import os

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from .config import PRESETS_DIR

PRESET_POLICIES = {"tiny": os.path.join(PRESETS_DIR, "tiny", "policy"), "gpt2": "openai-community/gpt2"}
PRESET_REWARD_MODELS = {"tiny": os.path.join(PRESETS_DIR, "tiny", "reward_model"), "gpt2": "lvwerra/distilbert-imdb"}


def resolve_model_path(name_or_path: str) -> str:
    """`tiny` -> the shipped tiny policy folder, `gpt2` -> `openai-community/gpt2`, anything else unchanged."""
    return PRESET_POLICIES.get(name_or_path, os.path.expanduser(name_or_path))


def load_tokenizer(name_or_path: str):
    """Tokenizer with left padding; a tokenizer without a pad token (GPT-2) pads with EOS."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name_or_path))
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def use_fused_gelu(model: torch.nn.Module) -> torch.nn.Module:
    """Swap transformers' `NewGELUActivation` (GPT-2's "gelu_new", eight elementwise ops in Python) for `GELUTanh`
    (torch's fused `gelu(approximate="tanh")`) in place, and return `model`.

    The same function (the tanh approximation of GELU, Hendrycks & Gimpel 2016, eq. in section 2), equal up to float
    rounding, in one pass over memory; transformers ships it as activation "gelu_pytorch_tanh". The model's config
    is untouched, so what `save_pretrained` writes is unchanged.
    """
    from transformers.activations import GELUTanh, NewGELUActivation

    for module in list(model.modules()):
        for name, child in module.named_children():
            if type(child) is NewGELUActivation:
                setattr(module, name, GELUTanh())
    return model


def load_policy(name_or_path: str, dtype: torch.dtype = torch.float32):
    """A causal LM in `dtype`, eval mode. Raises ValueError when `name_or_path` holds another kind of model."""
    path = resolve_model_path(name_or_path)
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "config.json")):
        raise ValueError(f"{path!r} is not a saved model: it has no config.json. Pass a folder written by save_pretrained or a Hub id.")
    config = AutoConfig.from_pretrained(path)
    archs = getattr(config, "architectures", None) or []
    if archs and not any(a.endswith(("LMHeadModel", "ForCausalLM")) for a in archs):
        raise ValueError(f"{path!r} holds a {archs[0]}, not a causal language model; pass a policy (e.g. a GPT2LMHeadModel).")
    return use_fused_gelu(AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval())


def pad_left(seqs: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists. Returns input_ids (B, L) and attention_mask (B, L), 1 = real token."""
    if not seqs:
        raise ValueError("pad_left got no sequences.")
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
    return ids, mask


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) positions counting real tokens only: 0 at the first real token, pads clamped to 0."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def sample_categorical(probs: torch.Tensor) -> torch.Tensor:
    """One draw per row of `probs` (B, V) (rows sum to 1, up to rounding) by inverse-CDF sampling: (B,) token ids.

    The first token whose cumulative probability exceeds u ~ U[0, total) (Devroye 1986, ch. 3.1), computed in
    float64 so a zero-probability token (top-k / top-p) is never drawn. Same distribution as `torch.multinomial`,
    whose CPU kernel draws V exponentials per row: that was 6% of a PPO step with an 8k vocabulary.
    """
    cdf = probs.double().cumsum(-1)
    u = torch.rand(probs.shape[0], 1, dtype=torch.float64, device=probs.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=probs.shape[1] - 1)


@torch.no_grad()  # PPO wraps it in inference_mode and copies the results out for its autograd graph
def sample(model, query_ids: torch.Tensor, query_mask: torch.Tensor, *, max_new_tokens: int, temperature: float = 1.0,
           top_k: int = 0, top_p: float = 1.0, eos_token_id: int | None = None, pad_token_id: int = 0,
           return_logits: bool = False):
    """Sample `max_new_tokens` response tokens per left-padded query, one token at a time with the KV cache.

    Why not `model.generate`: with transformers 5.23, `eos_token_id=None` in a GenerationConfig means "unset", so
    generate falls back to the EOS of the model's saved generation config, stops there and pads. For a fixed-length
    rollout that silently turned "EOS, pad, pad, ..." into actions the policy never chose (about 3% of response
    tokens of the tiny policy): the recomputed log-probs of the pads were near -inf, per-batch KL went negative,
    and the mean NLL of the samples exceeded the entropy of the same logits by 0.2 nats/token. This loop uses only
    the arguments given (tested in tests/test_sampling.py). Top-k / top-p use transformers' logits warpers.

    Args:
        query_ids, query_mask: (B, L) left-padded queries and their mask (1 = real token).
        eos_token_id: stop a response at this token (it is kept, everything after it is masked);
            None samples exactly `max_new_tokens` tokens (Ziegler et al. 2019's fixed length).

        return_logits: also return the logits each token was sampled from, divided by `temperature` and before
            top-k / top-p: (B, T, V), what `forward_response` computes for the same tokens (up to float rounding,
            the KV cache changes the order of the sums), so PPO need not run the policy over the rollout again.

    Returns:
        responses (B, T) and response_mask (B, T) with T <= max_new_tokens; 1 = real response token; then the
        logits (B, T, V) when `return_logits`.
        Uses the global torch RNG: seed it before the call for reproducible or paired samples.
    """
    from transformers import TopKLogitsWarper, TopPLogitsWarper

    if temperature <= 0:
        raise ValueError(f"temperature must be positive for sampling, got {temperature}.")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}.")
    warpers = ([TopKLogitsWarper(top_k)] if top_k and top_k > 0 else []) + ([TopPLogitsWarper(top_p)] if top_p < 1.0 else [])
    B = query_ids.shape[0]
    attention_mask = query_mask
    position_ids = position_ids_from_mask(query_mask)
    input_ids, past = query_ids, None
    tokens, step_logits, finished = [], [], torch.zeros(B, dtype=torch.bool, device=query_ids.device)
    for _ in range(max_new_tokens):
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, past_key_values=past,
                    use_cache=True, logits_to_keep=1)
        past = out.past_key_values
        logits = out.logits[:, -1].float()  # (B, V)
        if temperature != 1.0:
            logits = logits / temperature
        if return_logits:
            step_logits.append(logits)
        for warp in warpers:
            logits = warp(None, logits)
        next_token = sample_categorical(logits.softmax(-1))  # (B,)
        tokens.append(next_token)
        if eos_token_id is not None:  # what follows an EOS is masked below; stop once every row has one
            finished |= next_token == eos_token_id
            if finished.all():
                break
        input_ids = next_token[:, None]
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], 1)
        position_ids = position_ids[:, -1:] + 1
    responses = torch.stack(tokens, 1)
    response_mask = torch.ones_like(responses)
    if eos_token_id is not None:
        # Mask everything after the first EOS (the EOS itself is a real, rewarded token).
        is_eos = responses == eos_token_id
        after_eos = (is_eos.cumsum(-1) - is_eos.long()) > 0
        response_mask = (~after_eos).long()
        responses = responses.masked_fill(after_eos, pad_token_id)
    if return_logits:
        return responses, response_mask, torch.stack(step_logits, 1)
    return responses, response_mask


def forward_response(model, query_ids, query_mask, responses, response_mask, temperature: float = 1.0):
    """One forward pass over query+response; returns the response logits (B, T, V) divided by `temperature`.

    Logits are divided by the sampling temperature so the log-probs match the distribution that was
    sampled (Huang et al. 2024; TRL issue #466). Only the last T + 1 positions go through the LM head
    (`logits_to_keep`): the logits of the other query positions are never used.
    """
    input_ids = torch.cat([query_ids, responses], 1)
    attention_mask = torch.cat([query_mask, response_mask], 1)
    T = responses.shape[1]
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids_from_mask(attention_mask),
                logits_to_keep=T + 1)
    # The logit at position t predicts token t+1: response token j is predicted at L - 1 + j, so drop the last.
    logits = out.logits[:, :-1]
    return logits / temperature if temperature != 1.0 else logits


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] = logit[token] - logsumexp(logits): (B, T, V), (B, T) -> (B, T) in nats.

    Written with logsumexp so no (B, T, V) log-softmax is kept for the backward pass (as TRL's
    `selective_log_softmax`).
    """
    return logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


def response_logprobs(model, query_ids, query_mask, responses, response_mask, temperature: float = 1.0) -> torch.Tensor:
    """log pi(response_t | query, response_<t) for each response token: (B, T) nats, 0 where response_mask is 0."""
    logits = forward_response(model, query_ids, query_mask, responses, response_mask, temperature)
    return logprobs_from_logits(logits, responses) * response_mask
