"""Sampling: the KV-cache sampler PPO rolls out with, and the one generate-texts helper everyone else uses.

`sample` works on left-padded token tensors (PPO's rollout); `generate` takes prompts as text or token-id lists,
batches, seeds and decodes, and is what the CLI's `generate`, the evaluation suite, the Space and the benchmarks call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import transformers
from packaging.version import Version
from tqdm.auto import tqdm

from .errors import UserInputError
from .models import context_exceeded, pad_left, position_ids_from_mask
from .seq2seq import decoder_start_token_id, is_encoder_decoder, right_align

# transformers 5.24 renamed the forward's `past_key_values` (and the output's) to `cache`; both are supported.
CACHE_ARG = "cache" if Version(transformers.__version__) >= Version("5.24.0.dev0") else "past_key_values"


def sample_categorical(probs: torch.Tensor) -> torch.Tensor:
    """One draw per row of `probs` (B, V) (rows sum to 1, up to rounding) by inverse-CDF sampling: (B,) token ids.

    The first token whose cumulative probability exceeds u ~ U[0, total) (Devroye 1986, ch. 3.1), computed in
    float64 so a zero-probability token (top-k / top-p) is never drawn. Same distribution as `torch.multinomial`,
    whose CPU kernel draws V exponentials per row: that was 6% of a PPO step with an 8k vocabulary.
    """
    cdf = probs.double().cumsum(-1)
    u = torch.rand(probs.shape[0], 1, dtype=torch.float64, device=probs.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=probs.shape[1] - 1)


def forward_with_cache(model, cache, **inputs):
    """`model(**inputs)` continuing the KV cache `cache` (None at the first call): (logits, the updated cache)."""
    out = model(use_cache=True, **inputs, **{CACHE_ARG: cache})
    return out.logits, (out.cache if CACHE_ARG == "cache" else out.past_key_values)


def causal_step_fn(model, query_ids: torch.Tensor, query_mask: torch.Tensor):
    """The sampler's step for a causal LM: returns `step(last_tokens)`, which feeds the left-padded queries (B, L) at
    the first call (`last_tokens` None), then the previous sampled tokens (B,), through the model with its KV cache
    and position ids from the mask, and returns the next-token logits (B, V)."""
    state = {"attention_mask": query_mask, "position_ids": position_ids_from_mask(query_mask), "past": None}

    def step(last_tokens: torch.Tensor | None) -> torch.Tensor:
        if last_tokens is None:
            input_ids = query_ids
        else:
            input_ids = last_tokens[:, None]
            mask = state["attention_mask"]
            state["attention_mask"] = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            state["position_ids"] = state["position_ids"][:, -1:] + 1
        logits, state["past"] = forward_with_cache(model, state["past"], input_ids=input_ids,
                                                   attention_mask=state["attention_mask"],
                                                   position_ids=state["position_ids"], logits_to_keep=1)
        return logits[:, -1]

    return step


def decoder_step_fn(model, query_ids: torch.Tensor, query_mask: torch.Tensor):
    """The sampler's step for an encoder-decoder model (seq2seq.py): runs the encoder once over the queries (B, L),
    their real tokens moved to the front, and returns `step(last_tokens)`, which feeds the previous sampled tokens (B,)
    (None at the first step: the decoder start token) through the decoder with its KV cache and returns the
    next-token logits (B, V)."""
    enc_ids, enc_mask = right_align(query_ids, query_mask)
    encoder_outputs = model.get_encoder()(input_ids=enc_ids, attention_mask=enc_mask)
    start = torch.full((query_ids.shape[0], 1), decoder_start_token_id(model), dtype=torch.long,
                       device=query_ids.device)
    state = {"cache": None}

    def step(last_tokens: torch.Tensor | None) -> torch.Tensor:
        dec_ids = start if last_tokens is None else last_tokens[:, None]
        logits, state["cache"] = forward_with_cache(model, state["cache"], encoder_outputs=encoder_outputs,
                                                    attention_mask=enc_mask, decoder_input_ids=dec_ids)
        return logits[:, -1]

    return step


def _all_finished(finished: torch.Tensor, sync_processes: bool) -> bool:
    """Whether every row of `finished` (B,) bool is done: on this process, or on all of them with `sync_processes`."""
    done = finished.all()
    if sync_processes:
        import torch.distributed as dist

        done = done.to(torch.int32)  # gloo's all-reduce takes no bool
        dist.all_reduce(done, op=dist.ReduceOp.MIN)
    return bool(done)


@torch.no_grad()  # PPO wraps it in inference_mode and copies the results out for its autograd graph
def sample(model, query_ids: torch.Tensor, query_mask: torch.Tensor, *, max_new_tokens: int, temperature: float = 1.0,
           top_k: int = 0, top_p: float = 1.0, eos_token_id: int | None = None, pad_token_id: int = 0,
           return_logits: bool = False, sync_processes: bool = False):
    """Sample `max_new_tokens` response tokens per left-padded query, one token at a time with the KV cache.

    Why not `model.generate`: with transformers 5.23, `eos_token_id=None` in a GenerationConfig means "unset", so
    generate falls back to the EOS of the model's saved generation config, stops there and pads. For a fixed-length
    rollout that silently turned "EOS, pad, pad, ..." into actions the policy never chose (about 3% of response
    tokens of the tiny policy): the recomputed log-probs of the pads were near -inf, per-batch KL went negative,
    and the mean NLL of the samples exceeded the entropy of the same logits by 0.2 nats/token. This loop uses only
    the arguments given (tested in tests/test_sampling.py). Top-k / top-p use transformers' logits warpers.
    An encoder-decoder model (FLAN-T5) encodes the queries once and samples with its decoder
    (`decoder_step_fn`).

    Args:
        query_ids, query_mask: (B, L) left-padded queries and their mask (1 = real token).
        eos_token_id: stop a response at this token (it is kept, everything after it is masked);
            None samples exactly `max_new_tokens` tokens (Ziegler et al. 2019's fixed length).

        return_logits: also return the logits each token was sampled from, divided by `temperature` and before
            top-k / top-p: (B, T, V), what `forward_response` computes for the same tokens (up to float rounding,
            the KV cache changes the order of the sums), so PPO need not run the policy over the rollout again.
        sync_processes: stop at EOS only once every process's rows have one (an all-reduce per token), for a model
            sharded across processes (sharding.py), each of whose forward passes all processes must run together.

    Returns:
        responses (B, T) and response_mask (B, T) with T <= max_new_tokens; 1 = real response token; then the
        logits (B, T, V) when `return_logits`.
        Uses the global torch RNG: seed it before the call for reproducible or paired samples.
    """
    from transformers import TopKLogitsWarper, TopPLogitsWarper

    if temperature <= 0:
        raise UserInputError(f"temperature must be positive for sampling, got {temperature}.")
    if max_new_tokens < 1:
        raise UserInputError(f"max_new_tokens must be at least 1, got {max_new_tokens}.")
    warpers = [TopKLogitsWarper(top_k)] if top_k and top_k > 0 else []
    warpers += [TopPLogitsWarper(top_p)] if top_p < 1.0 else []
    B = query_ids.shape[0]
    step = (decoder_step_fn if is_encoder_decoder(model) else causal_step_fn)(model, query_ids, query_mask)
    next_token, tokens, step_logits = None, [], []
    finished = torch.zeros(B, dtype=torch.bool, device=query_ids.device)
    for _ in range(max_new_tokens):
        logits = step(next_token).float()  # (B, V)
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
            if _all_finished(finished, sync_processes):
                break
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


@dataclass
class Generations:
    """What `generate` returns: for each prompt, the response token ids (padding after EOS removed, EOS kept) and
    the decoded response text (special tokens skipped), in prompt order."""

    ids: list[list[int]]
    texts: list[str]


def generate(model, tokenizer, prompts: Sequence[str | Sequence[int]], *, max_new_tokens: int, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, stop_at_eos: bool = False, seed: int | None = None,
             batch_size: int = 64,
             desc: str | None = None) -> Generations:
    """One sampled response per prompt, in batches of `batch_size`, decoded with `tokenizer`.

    Args:
        prompts: texts or token-id lists, one response each; repeat a prompt for several samples. Texts are tokenized
            without special tokens for a causal LM (a continuation), with them for an encoder-decoder model (its
            encoder's input is a whole text, e.g. T5's ends with `</s>`).
        stop_at_eos: stop a response at the tokenizer's EOS (kept, then masked); False samples exactly `max_new_tokens`.
        seed: batch i starts from torch seed `seed + i`, so two models given the same prompts and seed draw from the
            same random stream (paired samples) and any batch is reproducible alone; None leaves the RNG as it is.
        desc: show a tqdm progress bar over batches with this label.

    Raises:
        UserInputError: a prompt has no tokens, or a prompt plus `max_new_tokens` exceeds the model's context (the
            message gives both lengths; for an encoder-decoder model, the prompt or `max_new_tokens` alone).
    """
    special = is_encoder_decoder(model)
    queries = [tokenizer(p, add_special_tokens=special)["input_ids"] if isinstance(p, str) else list(p)
               for p in prompts]
    for q in queries:
        if not q:
            raise UserInputError("A prompt is empty (it has no tokens); give some text to continue.")
        limit = context_exceeded(model, len(q), max_new_tokens)
        if limit:
            raise UserInputError(f"A prompt of {len(q)} tokens plus {max_new_tokens} new tokens exceeds the model's "
                                 f"context of {limit} tokens; shorten the prompt or lower the number of new tokens "
                                 "(--max_new_tokens).")
    eos_id = tokenizer.eos_token_id if stop_at_eos else None
    ids: list[list[int]] = []
    starts = range(0, len(queries), batch_size)
    for i, start in enumerate(tqdm(starts, desc=desc, unit="batch", disable=desc is None)):
        query_ids, query_mask = pad_left(queries[start : start + batch_size], tokenizer.pad_token_id)
        device = next(model.parameters()).device
        if seed is not None:
            torch.manual_seed(seed + i)
        responses, response_mask = sample(model, query_ids.to(device), query_mask.to(device),
                                          max_new_tokens=max_new_tokens,
                                          temperature=temperature, top_k=top_k, top_p=top_p, eos_token_id=eos_id,
                                          pad_token_id=tokenizer.pad_token_id)
        ids.extend(r[m.bool()].tolist() for r, m in zip(responses.cpu(), response_mask.cpu()))
    return Generations(ids=ids, texts=tokenizer.batch_decode(ids, skip_special_tokens=True))
