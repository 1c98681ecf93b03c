"""Encoder-decoder policies (`AutoModelForSeq2SeqLM`, e.g. FLAN-T5): what differs from a causal LM, behind the helpers
of models.py and sampling.py, so the PPO step runs one code path for both.

A causal LM reads query + response as one sequence; an encoder-decoder model reads the query with its encoder and
writes the response with its decoder, which starts from `decoder_start_token_id`. So, for B episodes with L query
tokens and T response tokens:

- the encoder gets the query, its real tokens moved to the front (`right_align`): an encoder is bidirectional, needs no
  left padding, and models with absolute positions (BART) then see positions 0..n-1 as in pretraining;
- the decoder gets `[decoder_start] + response[:-1]` (T tokens), so its logit at position t predicts response token t
  and its hidden state at position t is the state s_t = (query, response_<t) of the value function;
- KL, log-probs, entropy, values and perplexity are all per *decoder* token (the query is never scored);
- the value model is an encoder-decoder backbone without LM head plus a scalar head on the decoder's last hidden
  states (`Seq2SeqValueModel`), the encoder-decoder form of TRL's old `AutoModelForSeq2SeqLMWithValueHead` as a
  separate network (Ziegler et al. 2019; docs/ppo_details.md).
"""

from __future__ import annotations

import os

import torch
from transformers.modeling_outputs import TokenClassifierOutput

from .errors import UserInputError


def is_encoder_decoder(model_or_config) -> bool:
    """True for an encoder-decoder model (or its config, or a PEFT model wrapping one): `config.is_encoder_decoder`."""
    config = getattr(model_or_config, "config", model_or_config)
    return bool(getattr(config, "is_encoder_decoder", False))


def decoder_start_token_id(model) -> int:
    """The token the decoder starts from: the config's `decoder_start_token_id`, else the generation config's, else the
    pad token (T5's convention). Raises UserInputError when the model names none of them."""
    for source in (model.config, getattr(model, "generation_config", None)):
        token = getattr(source, "decoder_start_token_id", None) if source is not None else None
        if token is not None:
            return int(token)
    if getattr(model.config, "pad_token_id", None) is not None:
        return int(model.config.pad_token_id)
    raise UserInputError("The encoder-decoder model has no decoder_start_token_id (nor a pad token) in its config; "
                         "set config.decoder_start_token_id and save it again.")


def right_align(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each row's real tokens (mask 1) to the front, keeping their order: (B, L), (B, L) -> (B, L), (B, L).

    Turns the rollout's left-padded queries into the right-padded encoder input that encoder-decoder models are
    trained on; the padding is then at the end, where the attention mask hides it."""
    order = torch.argsort(1 - mask, dim=1, stable=True)  # real tokens first, each group in its original order
    return ids.gather(1, order), mask.gather(1, order)


def decoder_inputs(model, responses: torch.Tensor, response_mask: torch.Tensor):
    """Decoder input ids `[decoder_start] + responses[:, :-1]` and their mask, each (B, T): the decoder's position t
    sees the response tokens before t (teacher forcing), so its logit at t predicts response token t."""
    start = torch.full_like(responses[:, :1], decoder_start_token_id(model))
    ids = torch.cat([start, responses[:, :-1]], 1)
    mask = torch.cat([torch.ones_like(response_mask[:, :1]), response_mask[:, :-1]], 1)
    return ids, mask


def forward_response(model, query_ids, query_mask, responses, response_mask, temperature: float = 1.0) -> torch.Tensor:
    """Response logits (B, T, V) of an encoder-decoder model, divided by `temperature`: the encoder reads the query
    (B, L) (right-aligned), the decoder `[decoder_start] + response[:-1]` (B, T). The counterpart of
    `models.forward_response` for causal LMs, which it is called from."""
    enc_ids, enc_mask = right_align(query_ids, query_mask)
    dec_ids, dec_mask = decoder_inputs(model, responses, response_mask)
    out = model(input_ids=enc_ids, attention_mask=enc_mask, decoder_input_ids=dec_ids, decoder_attention_mask=dec_mask,
                use_cache=False)
    return out.logits / temperature if temperature != 1.0 else out.logits


class Seq2SeqValueModel(torch.nn.Module):
    """A value model for encoder-decoder policies: an encoder-decoder backbone (`AutoModel`, no LM head) and a scalar
    head on the decoder's last hidden states, zero-initialised (as `models.build_value_model` does for causal LMs).

    `forward(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask)` returns a `TokenClassifierOutput`
    whose logits (B, T, 1) are V(s_t), s_t = (query, response_<t). `save_pretrained(folder)` writes the backbone's
    config.json and model.safetensors holding every weight (head included, keys `backbone.*` and `score.*`), which
    `from_pretrained` and a checkpoint resume read back.
    """

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.config = backbone.config
        self.score = torch.nn.Linear(backbone.config.hidden_size, 1)
        torch.nn.init.zeros_(self.score.weight)
        torch.nn.init.zeros_(self.score.bias)

    @classmethod
    def from_backbone(cls, name_or_path: str, dtype: torch.dtype = torch.float32) -> Seq2SeqValueModel:
        """The backbone of the encoder-decoder model `name_or_path` (its LM head dropped) with a fresh zero head."""
        from transformers import AutoModel

        return cls(AutoModel.from_pretrained(name_or_path, dtype=dtype))

    @classmethod
    def from_pretrained(cls, folder: str) -> Seq2SeqValueModel:
        """A value model written by `save_pretrained`."""
        from safetensors.torch import load_model
        from transformers import AutoConfig, AutoModel

        model = cls(AutoModel.from_config(AutoConfig.from_pretrained(folder)))
        load_model(model, os.path.join(folder, "model.safetensors"))
        return model.eval()

    def save_pretrained(self, folder: str, **_) -> None:
        """Write config.json and model.safetensors (all weights; tied embeddings stored once)."""
        from safetensors.torch import save_model

        os.makedirs(folder, exist_ok=True)
        self.config.save_pretrained(folder)
        save_model(self, os.path.join(folder, "model.safetensors"))

    def forward(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask=None):
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                            decoder_attention_mask=decoder_attention_mask, use_cache=False)
        return TokenClassifierOutput(logits=self.score(out.last_hidden_state))


def value_forward(value_model, query_ids, query_mask, responses, response_mask) -> torch.Tensor:
    """V(s_t) for each response token t of an encoder-decoder value model: (B, T). Inputs as `forward_response`."""
    enc_ids, enc_mask = right_align(query_ids, query_mask)
    dec_ids, dec_mask = decoder_inputs(value_model, responses, response_mask)
    return value_model(enc_ids, enc_mask, dec_ids, dec_mask).logits[..., 0]
