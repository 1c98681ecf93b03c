"""Every model built or run: policy, reference, value model, tokenizers, LoRA, and their forward passes
(`logits_and_values`, log-probabilities).

Inputs follow `padding.py`'s conventions (left-padded queries, masks with 1 = real token, positions from the mask);
loading a user's folder and its one-line errors are `loading.py`'s job, names and presets `names.py`'s.
Encoder-decoder policies (FLAN-T5) go through the same helpers; what differs for them lives in seq2seq.py.
"""

from __future__ import annotations

import copy
import json
import os

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from .errors import UserInputError
from .gguf_models import gguf_for_hub_id, hub_id_for
from .names import (PRESET_POLICIES, PRESET_REWARD_MODELS, PRESETS_DIR, display_name, is_gguf_name,  # noqa: F401
                    is_local_path, resolve_model_path)
from .padding import causal_inputs, pad_left, position_ids_from_mask  # noqa: F401
from .loading import (TOKENIZER_FILES, WEIGHT_FILES, check_model_path, check_model_type,  # noqa: F401
                      check_tokenizer_files, ensure_pad_token, expected_load_report, loading_errors, text_classifier)
from . import seq2seq
from .seq2seq import Seq2SeqValueModel, is_encoder_decoder

ADAPTER_CONFIG = "adapter_config.json"  # what marks a folder as a PEFT adapter (peft's save_pretrained)
VALUE_HEAD_INITS = ("auto", "zero", "reward_model")


def load_tokenizer(name_or_path: str, role: str = "tokenizer"):
    """Tokenizer with left padding; a tokenizer without a pad token (GPT-2) pads with EOS. An adapter folder without
    tokenizer files gives its base model's tokenizer.

    Raises MissingInputError / UserInputError (naming `role`) for a missing folder, one without tokenizer files, a
    corrupt tokenizer file, or a Hub id that cannot be downloaded; UserInputError for a tokenizer without EOS."""
    path = check_model_path(name_or_path, role)
    if is_adapter_folder(path) and not any(os.path.isfile(os.path.join(path, n)) for n in TOKENIZER_FILES):
        return load_tokenizer(adapter_base(path, role), role)
    check_tokenizer_files(path, role)
    with loading_errors(path, role):
        tokenizer = AutoTokenizer.from_pretrained(path)
    if len(tokenizer) == 0 or tokenizer.eos_token is None:
        raise UserInputError(f"The {role} {name_or_path!r} has an empty vocabulary or no EOS token; save the model's "
                             "own tokenizer into the folder.")
    tokenizer.padding_side = "left"
    return ensure_pad_token(tokenizer)


def context_length(model_or_config) -> int | None:
    """The longest sequence a model accepts, in tokens, or None when its config does not say (T5: relative positions).
    For a causal LM it bounds query + response; for an encoder-decoder model the query and the response each."""
    config = getattr(model_or_config, "config", model_or_config)
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


def context_exceeded(model, query_tokens: int, response_tokens: int) -> int | None:
    """The model's context (tokens) when a query of `query_tokens` and a response of `response_tokens` do not fit in it,
    else None: query + response for a causal LM, each alone for an encoder-decoder model (encoder and decoder)."""
    limit = context_length(model)
    if not limit:
        return None
    if is_encoder_decoder(model):
        return limit if max(query_tokens, response_tokens) > limit else None
    return limit if query_tokens + response_tokens > limit else None


def is_causal_lm_config(config) -> bool:
    """True when a model config's `architectures` name a causal LM (or name nothing, as a config built in code)."""
    archs = getattr(config, "architectures", None) or []
    return not is_encoder_decoder(config) and (not archs or any(a.endswith(("LMHeadModel", "ForCausalLM"))
                                                                for a in archs))


def is_seq2seq_lm_config(config) -> bool:
    """True when a model config is an encoder-decoder language model (T5, BART: `...ForConditionalGeneration`)."""
    archs = getattr(config, "architectures", None) or []
    return is_encoder_decoder(config) and (not archs or any(a.endswith("ForConditionalGeneration") for a in archs))


def is_policy_config(config) -> bool:
    """True when a model config holds a model that can be a policy: a causal or an encoder-decoder language model."""
    return is_causal_lm_config(config) or is_seq2seq_lm_config(config)


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


def load_policy(name_or_path: str, dtype: torch.dtype = torch.float32, role: str = "policy"):
    """A causal LM (`AutoModelForCausalLM`) or an encoder-decoder LM (`AutoModelForSeq2SeqLM`, e.g. FLAN-T5) in
    `dtype`, eval mode, with the fused GELU.

    An adapter folder (adapter_config.json, as `rlhf-demo train --use_peft` exports in RUN/adapter) is loaded onto
    its base model (`adapter_base`) and merged (peft's `merge_and_unload`): the same outputs, one model to run.

    Raises MissingInputError / UserInputError naming `role`: a missing folder or one without config.json, another
    kind of model, truncated or corrupt weights (the file named), or a Hub id that cannot be downloaded."""
    path = check_model_path(name_or_path, role)
    if is_adapter_folder(path):
        return load_adapter_model(path, dtype, role)
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "config.json")):
        raise UserInputError(f"The {role} {name_or_path!r} is not a saved model: it has no config.json. Pass a folder "
                             "written by save_pretrained or a Hub id.")
    with loading_errors(path, role):
        config = AutoConfig.from_pretrained(path)
        if not is_policy_config(config):
            raise UserInputError(f"The {role} {name_or_path!r} holds a {config.architectures[0]}, not a causal "
                                 "language model; pass a policy (e.g. a GPT2LMHeadModel).")
        auto = AutoModelForSeq2SeqLM if is_encoder_decoder(config) else AutoModelForCausalLM
        model = auto.from_pretrained(path, dtype=dtype)
    return use_fused_gelu(model.eval())


def is_adapter_folder(path: str) -> bool:
    """True when the local folder `path` holds a PEFT adapter (adapter_config.json) and no full model (config.json)."""
    return os.path.isfile(os.path.join(path, ADAPTER_CONFIG)) and not os.path.isfile(os.path.join(path, "config.json"))


def adapter_base(path: str, role: str = "adapter") -> str:
    """The base model of the adapter folder `path`, to load: its `base_model_name_or_path` when that is a local folder,
    else, for a Hub id, the `gguf:` model of an installed wheel that holds that model (offline), else the Hub id.

    Raises UserInputError when adapter_config.json is not valid JSON or names no base model."""
    try:
        with open(os.path.join(path, ADAPTER_CONFIG), encoding="utf-8") as f:
            base = json.load(f).get("base_model_name_or_path")
    except json.JSONDecodeError as e:
        raise UserInputError(f"The {role} {path!r} has a corrupt {ADAPTER_CONFIG} ({e}); save the adapter again with "
                             "save_pretrained.") from None
    if not base:
        raise UserInputError(f"The adapter of the {role} {path!r} names no base model (base_model_name_or_path in "
                             f"{ADAPTER_CONFIG}); set it to the model the adapter was trained on.")
    if is_local_path(base) or is_gguf_name(base):
        return base
    return gguf_for_hub_id(base) or base


def load_adapter_model(path: str, dtype: torch.dtype = torch.float32, role: str = "policy"):
    """The causal LM of a LoRA adapter folder: its base (`adapter_base`, loaded as `load_policy` does) with the adapter
    merged in, eval mode. Source: peft's `PeftModel.from_pretrained` and `merge_and_unload`.

    Raises the user errors of `load_policy` for the base (named as the base of `role`) and of `loading_errors` for
    the adapter's files."""
    from peft import PeftModel

    base = load_policy(adapter_base(path, role), dtype, role=f"base model of the {role}")
    with loading_errors(path, role):
        model = PeftModel.from_pretrained(base, path).merge_and_unload()
    return model.eval()


def apply_lora(model, cfg):
    """`model` with fresh LoRA adapters (peft `LoraConfig` + `get_peft_model`; B = 0, so the output is unchanged)
    from the TRL-named fields of `cfg`: lora_r, lora_alpha, lora_dropout, lora_target_modules (None: peft's default
    modules for the architecture, e.g. q_proj and v_proj for Llama, c_attn for GPT-2, q and v for T5).

    Any model peft supports: the task type follows the config (SEQ_2_SEQ_LM for an encoder-decoder, else CAUSAL_LM),
    and fan_in_fan_out is set where the targets are GPT-2's Conv1D layers (weights stored transposed). The adapter's
    `base_model_name_or_path` is the Hub id the base came from where there is one (`gguf_models.hub_id_for`), so an
    exported adapter names its real base. Only the adapter's parameters require grad."""
    from peft import LoraConfig, get_peft_model
    from transformers.pytorch_utils import Conv1D

    seq2seq = getattr(model.config, "is_encoder_decoder", False)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_target_modules, task_type="SEQ_2_SEQ_LM" if seq2seq else "CAUSAL_LM",
                      fan_in_fan_out=any(isinstance(m, Conv1D) for m in model.modules()))
    try:
        model = get_peft_model(model, lora)
    except ValueError as e:
        if "not found in the base model" not in str(e):  # peft's NoMatchingPeftModuleError
            raise
        layers = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules()
                         if isinstance(m, (torch.nn.Linear, Conv1D))})
        raise UserInputError(f"--lora_target_modules {' '.join(cfg.lora_target_modules or [])} matches no module of "
                             f"the policy {cfg.model_name_or_path!r}; its linear layers are {', '.join(layers)} (leave "
                             "the option unset for peft's default for the architecture).") from None
    hub_id = hub_id_for(resolve_model_path(cfg.model_name_or_path))  # a preset name (tiny) is no Hub id
    if hub_id:
        model.peft_config["default"].base_model_name_or_path = hub_id
    return model


def load_causal_lm(name_or_path: str, role: str):
    """(model, tokenizer) of a policy for `role` (named in errors), a causal or an encoder-decoder LM: `load_policy`
    and `load_tokenizer`, with their
    user errors (MissingInputError for a missing folder or an id that cannot be loaded, UserInputError otherwise)."""
    return load_policy(name_or_path, role=role), load_tokenizer(name_or_path, role=role)


def check_context_length(model, query_tokens: int, response_tokens: int, flag: str,
                         query_flag: str = "--max_query_tokens") -> None:
    """Raise UserInputError when the longest query (`query_tokens`, bounded by `query_flag`) and response
    (`response_tokens`) do not fit the context of `model` (given by `flag`), before a forward pass would fail with an
    index error deep inside the model. A causal LM reads query + response; an encoder-decoder model each alone."""
    limit = context_exceeded(model, query_tokens, response_tokens)
    if limit is None:
        return
    if not is_encoder_decoder(model):
        raise UserInputError(f"Queries plus responses of up to {query_tokens + response_tokens} tokens ({query_flag} + "
                             f"--response_length) exceed the context of {limit} tokens of the model of {flag}; lower "
                             "them.")
    what, size, option = (("Queries", query_tokens, query_flag) if query_tokens > limit
                          else ("Responses", response_tokens, "--response_length"))
    raise UserInputError(f"{what} of up to {size} tokens ({option}) exceed the context of {limit} tokens of the "
                         f"encoder-decoder model of {flag}; lower {option}.")


def build_ppo_models(cfg, policy=None, ref_policy=None, value_model=None, reward_label: str | None = None):
    """(policy, reference, value model) for PPO with `cfg` (a PPOConfig), each loaded from the config where not given:
    dropout off and fused GELU everywhere; with `cfg.use_peft` the policy gets LoRA adapters and the reference is None
    (the policy with its adapter disabled), else the reference is a frozen copy of the policy. With
    `cfg.value_head_on_policy` the value model is a `value_head.PolicyValueHead` on the policy's trunk.
    `reward_label`: the label the reward scores with the value model's backbone (`rewards.reward_label_of`), which
    `value_head_init` starts the value head from; None when the backbone is no reward model."""
    policy = policy if policy is not None else load_policy(cfg.model_name_or_path, role="policy (--model_name_or_path)")
    disable_dropout(policy)
    use_fused_gelu(policy)
    if cfg.use_peft:
        policy = apply_lora(policy, cfg)
        ref_policy = None
    else:
        ref_policy = use_fused_gelu(ref_policy) if ref_policy is not None else copy.deepcopy(policy)
        ref_policy.eval().requires_grad_(False)
    if value_model is None and cfg.value_head_on_policy:
        from .value_head import build_policy_value_head

        return policy, ref_policy, build_policy_value_head(policy)
    if value_model is None:
        backbone = cfg.value_model_name_or_path or cfg.model_name_or_path
        value_model = build_value_model(backbone, cfg.value_head_init, reward_label,
                                        num_layers=cfg.value_model_num_layers)
    disable_dropout(value_model)
    use_fused_gelu(value_model)
    return policy, ref_policy, value_model


def disable_dropout(model: torch.nn.Module) -> None:
    """Set every dropout probability to 0 so old and new log-probs agree exactly (ratio 1 at the first minibatch)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def reward_head_direction(name_or_path: str, label: str | None) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The direction in the last hidden state along which the classifier `name_or_path` scores: the weight (d,)
    and bias of its one logit for a Bradley-Terry reward model (`num_labels=1`), or the row W_label (bias b_label)
    for a two-label classifier whose reward is the logit of `label`; None when the folder
    is not a sequence classifier with a linear head, has more than two labels, or `label` is None or not one of
    them. Used to start a value head at the reward model's score (TRL's PPO examples start the value model from
    the reward model, head included; Stiennon et al. 2020 start the value function from the reward model). With a
    last-token-pooling, bias-free classifier such as GPT-2's, a head equal to this direction makes V(s_t) exactly
    the reward model's score of the prefix s_t at the start of training."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(name_or_path)
    if not any(a.endswith("ForSequenceClassification") for a in (config.architectures or [])):
        return None
    labels = {v.upper(): int(k) for k, v in config.id2label.items()}
    if config.num_labels == 2 and (label or "").upper() not in labels or config.num_labels > 2 or label is None:
        return None
    model = AutoModelForSequenceClassification.from_pretrained(name_or_path, dtype=torch.float32)
    head = getattr(model, "score", None) or getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Linear):
        return None  # e.g. BERT-style heads with a hidden layer: no single direction
    w = head.weight.detach()
    b = head.bias.detach() if head.bias is not None else None
    if config.num_labels == 1:
        return w[0].clone(), None if b is None else b[0].clone()
    pos = labels[label.upper()]  # the reward is this label's logit, so its own row (not the margin to the other)
    return w[pos].clone(), None if b is None else b[pos].clone()


def build_value_model(name_or_path: str, head_init: str = "zero", reward_label: str | None = None,
                      num_layers: int | None = None):
    """A scalar-per-token value model: the backbone of `name_or_path` (its first `num_layers` blocks when given) with a
    linear head.

    Loaded as `AutoModelForTokenClassification(num_labels=1)`: its logits (B, L, 1) are V(s_t) for each prefix.
    A separate network, as in Stiennon et al. 2020 and TRL's PPO (Ziegler et al. 2019's code puts a zero-initialised
    head on the policy's own trunk instead: `value_head_on_policy`).

    `head_init`: `zero` (the head starts at 0), `reward_model` (the head starts at the reward model's scoring
    direction, `reward_head_direction(name_or_path, reward_label)`: the rewarded label's row W_label of a two-label
    classifier, the head of a one-logit Bradley-Terry model, so V(s_t) starts as the reward model's score of the
    prefix s_t), or `auto` (`reward_model` where it applies, else `zero`); see docs/ppo_details.md for its measured
    effect.

    Raises:
        UserInputError: `head_init` is unknown, or `reward_model` where `name_or_path` is not the sequence
            classifier of a `sentiment=` / `preference=` reward with a linear head of one or two labels.
    """
    from transformers import AutoModelForTokenClassification

    if head_init not in VALUE_HEAD_INITS:
        raise UserInputError(f"value_head_init must be one of {', '.join(VALUE_HEAD_INITS)}, got {head_init!r}.")
    path = check_model_path(name_or_path, "value model backbone")
    with loading_errors(path, "value model backbone"):
        config = AutoConfig.from_pretrained(path)
        if is_encoder_decoder(config):  # a head on the decoder's hidden states
            return Seq2SeqValueModel.from_backbone(path)
        blocks = getattr(config, "num_hidden_layers", None)
        if num_layers and blocks and num_layers > blocks:  # transformers would add random blocks past the last
            raise UserInputError(f"--value_model_num_layers {num_layers} is more than the value model backbone "
                                 f"{name_or_path!r} has: the backbone has {blocks} block{'s' * (blocks != 1)}; pass "
                                 f"at most {blocks}, or leave it unset for all.")
        depth = {"num_hidden_layers": num_layers} if num_layers else {}  # blocks past it are not loaded
        with expected_load_report():  # a new scalar head on a classifier's or LM's backbone: its report is noise
            model = AutoModelForTokenClassification.from_pretrained(path, num_labels=1, dtype=torch.float32,
                                                                    ignore_mismatched_sizes=True, **depth)
        applies = head_init != "zero" and reward_label is not None and not num_layers  # a whole reward model
        direction = reward_head_direction(path, reward_label) if applies else None
    if head_init == "reward_model" and direction is None:
        raise UserInputError(
            f"value_head_init reward_model needs the value model backbone {name_or_path!r} to be the reward model of "
            "a sentiment=PATH@LABEL or preference=PATH reward (a sequence classifier with a linear head of one or "
            "two labels); use value_head_init zero or auto.")
    # A scalar head is a regression head: a classifier's saved "single_label_classification" with one label would make
    # the saved value model (RUN/value_model) fail transformers' config check when loaded again.
    model.config.problem_type = "regression"
    head = getattr(model, "classifier", None) or model.score  # the head's name varies by architecture
    with torch.no_grad():
        head.weight.zero_()
        if getattr(head, "bias", None) is not None:
            head.bias.zero_()
        if direction is not None:
            head.weight[0].copy_(direction[0])
            if direction[1] is not None and getattr(head, "bias", None) is not None:
                head.bias[0].copy_(direction[1])
    return model


def value_forward(value_model, query_ids, query_mask, responses, response_mask) -> torch.Tensor:
    """V(s_t) for each response token t, where s_t = query + response_<t: (B, T). Inputs as `forward_response`; an
    encoder-decoder value model reads the query with its encoder and the response with its decoder (seq2seq.py)."""
    if is_encoder_decoder(value_model):
        return seq2seq.value_forward(value_model, query_ids, query_mask, responses, response_mask)
    out = value_model(**causal_inputs(query_ids, query_mask, responses, response_mask))
    return out.logits[:, query_ids.shape[1] - 1 : -1, 0]


def is_trunk_value_head(value_model) -> bool:
    """Whether `value_model` (or the module a DDP wrapper holds) is a value head on the policy's own trunk
    (`value_head.PolicyValueHead`) rather than a network of its own."""
    from .value_head import PolicyValueHead

    return isinstance(getattr(value_model, "module", value_model), PolicyValueHead)


def logits_and_values(policy, value_model, query_ids, query_mask, responses, response_mask, temperature: float = 1.0,
                      with_logits: bool = True):
    """(the policy's response logits (B, T, V) / `temperature`, or None without `with_logits`; V(s_t) (B, T)) for
    queries (B, L, left-padded) and responses (B, T), whatever the kind of value model: one pass of the policy's
    trunk when the value head sits on it (value_head.py), else the policy's and the value model's own passes
    (causal or encoder-decoder, `forward_response` and `value_forward`). The PPO trainer calls only this."""
    if is_trunk_value_head(value_model):
        from .value_head import policy_value_forward

        return policy_value_forward(policy, value_model, query_ids, query_mask, responses, response_mask, temperature,
                                    with_logits)
    logits = (forward_response(policy, query_ids, query_mask, responses, response_mask, temperature)
              if with_logits else None)
    return logits, value_forward(value_model, query_ids, query_mask, responses, response_mask)


def forward_response(model, query_ids, query_mask, responses, response_mask, temperature: float = 1.0):
    """One forward pass over query+response; returns the response logits (B, T, V) divided by `temperature`.

    Logits are divided by the sampling temperature so the log-probs match the distribution that was
    sampled (Huang et al. 2024; TRL issue #466). Only the last T + 1 positions go through the LM head
    (`logits_to_keep`): the logits of the other query positions are never used.
    An encoder-decoder model reads the query (B, L) with its encoder and `[decoder_start] + response[:-1]` with its
    decoder (`seq2seq.forward_response`): the same (B, T, V) logits, one per response token.
    """
    if is_encoder_decoder(model):
        return seq2seq.forward_response(model, query_ids, query_mask, responses, response_mask, temperature)
    T = responses.shape[1]
    out = model(**causal_inputs(query_ids, query_mask, responses, response_mask), logits_to_keep=T + 1)
    # The logit at position t predicts token t+1: response token j is predicted at L - 1 + j, so drop the last.
    logits = out.logits[:, :-1]
    return logits / temperature if temperature != 1.0 else logits


def reference_logits(policy, ref_policy, query_ids, query_mask, responses, response_mask, temperature: float = 1.0):
    """The reference's response logits (B, T, V) divided by `temperature` (`forward_response`): `ref_policy`'s, or,
    when it is None (LoRA), the policy's own with its adapter disabled (peft's `disable_adapter`), so the reference
    is the base model without a second copy in memory."""
    if ref_policy is not None:
        return forward_response(ref_policy, query_ids, query_mask, responses, response_mask, temperature)
    with policy.disable_adapter():
        return forward_response(policy, query_ids, query_mask, responses, response_mask, temperature)


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] = logit[token] - logsumexp(logits): (B, T, V), (B, T) -> (B, T) in nats.

    Written with logsumexp so no (B, T, V) log-softmax is kept for the backward pass (as TRL's
    `selective_log_softmax`).
    """
    logits = logits.float()  # fp32 under mixed precision too (a no-op for fp32 logits)
    return logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


def response_logprobs(model, query_ids, query_mask, responses, response_mask, temperature: float = 1.0) -> torch.Tensor:
    """log pi(response_t | query, response_<t) for each response token: (B, T) nats, 0 where response_mask is 0."""
    logits = forward_response(model, query_ids, query_mask, responses, response_mask, temperature)
    return logprobs_from_logits(logits, responses) * response_mask
