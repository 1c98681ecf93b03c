"""The checks that the config dataclasses of `config.py` run in their `__post_init__`: the ones several commands share
(`check_numbers`, `check_prompt_options`, `check_sampling`, `check_repo_id`) and the long ones of train, eval and push.
Each raises UserInputError (a ValueError) whose message names the option and what to change. Kept apart so that
config.py reads as the declarations of every command's options, as TRL's `*_config.py` files do.
"""

from __future__ import annotations

import dataclasses
import math
import os

from .errors import UserInputError


MAX_SEED = 2**32 - 1  # numpy's seeds lie in [0, 2**32 - 1]


def check_numbers(cfg, allow_inf: tuple[str, ...] = ()) -> None:
    """The checks every config runs first: each float option is a finite number (NaN passes every `x < 0` test and
    would fail steps later with a message blaming something else), except the options in `allow_inf`, for which
    inf means "off"; each `seed` option lies in [0, 2**32 - 1]. Raises UserInputError naming the option."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            if math.isnan(value) or f.name not in allow_inf:
                allowed = " (or inf, for off)" if f.name in allow_inf else ""
                raise UserInputError(f"{f.name} must be a finite number{allowed}, got {value}; pass a number such as "
                                     f"the default {f.default!r}.")
        if f.name == "seed" and isinstance(value, int) and not 0 <= value <= MAX_SEED:
            raise UserInputError(f"seed must be an integer in [0, {MAX_SEED}], got {value}.")


def check_prompt_options(cfg) -> None:
    """The checks of `PromptOptions` (train, eval); UserInputError naming the fix."""
    if cfg.prompt_column is not None and cfg.prompt_template is not None:
        raise UserInputError("Pass --prompt_column or --prompt_template, not both: a template names its columns "
                             "itself, as {column}.")
    if cfg.max_prompt_length is not None:
        if cfg.prompt_column is None and cfg.prompt_template is None:
            raise UserInputError("--max_prompt_length applies to prompt-only datasets; add --prompt_column or "
                                 "--prompt_template, or drop it (review heads are cut by --max_query_tokens).")
        if cfg.max_prompt_length < 1:
            raise UserInputError(f"max_prompt_length must be at least 1 (or unset to keep prompts whole), got "
                                 f"{cfg.max_prompt_length}.")
    if cfg.truncation_side not in ("left", "right"):
        raise UserInputError(f"truncation_side must be 'left' or 'right', got {cfg.truncation_side!r}.")


def check_sampling(cfg, stochastic: bool = False) -> None:
    """The one check of a config's sampler: temperature positive, top_k 0 (off) or positive, top_p in (0, 1] (a
    config without top_k / top_p, as preferences', has them off). `stochastic` (PPO's) also refuses top_k 1, which
    makes sampling greedy as top_p 0 would. Raises UserInputError naming the option."""
    if cfg.temperature <= 0:
        raise UserInputError(f"temperature must be positive, got {cfg.temperature}.")
    top_k, top_p = getattr(cfg, "top_k", 0), getattr(cfg, "top_p", 1.0)
    if stochastic and (top_k < 0 or top_k == 1 or not 0 < top_p <= 1):
        raise UserInputError(f"top_k must be 0 (off) or at least 2 and top_p in (0, 1], got top_k={top_k}, "
                             f"top_p={top_p}: PPO needs a stochastic policy, and top_k 1 or top_p 0 make sampling "
                             "greedy.")
    if top_k < 0 or not 0 < top_p <= 1:
        raise UserInputError(f"top_k must be 0 (off) or positive and top_p in (0, 1], got top_k={top_k}, "
                             f"top_p={top_p}.")


def check_repo_id(value: str | None, flag: str, namespace: bool = True, message: str | None = None) -> None:
    """The one check of a Hub repository id given by option `flag`: valid for `huggingface_hub` and, with
    `namespace`, of the form NAMESPACE/NAME (without, a bare NAME, which the Hub puts under the token's user, also
    passes). Raises UserInputError with `message`, in which {value!r} and {reason} are filled in (default: the flag,
    the value and the reason)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    reason = None
    try:
        validate_repo_id(value or "")
    except HFValidationError as e:
        reason = str(e)
    if reason is None and namespace and "/" not in value:
        reason = "it has no NAMESPACE/"
    if reason is not None:
        message = message or f"{flag} {{value!r}} is not a valid Hub repository id (NAMESPACE/NAME): {{reason}}"
        raise UserInputError(message.format(value=value, reason=reason))



def check_ppo_config(cfg) -> None:
    """The checks of a `PPOConfig` (train), in its `__post_init__`: UserInputError naming the option and the fix."""
    check_numbers(cfg, allow_inf=("cliprange", "cliprange_value", "max_grad_norm"))
    _check_ppo_sizes(cfg)
    _check_ppo_sampling(cfg)
    check_prompt_options(cfg)
    if cfg.value_head_init not in ("auto", "zero", "reward_model"):
        raise UserInputError(f"value_head_init must be auto, zero or reward_model, got {cfg.value_head_init!r}.")
    if cfg.value_head_on_policy and (cfg.use_peft or cfg.value_head_init == "reward_model"):
        raise UserInputError("value_head_on_policy needs full fine-tuning (no --use_peft) and a head that starts "
                             "at 0 (value_head_init auto or zero); drop one of the options.")
    if cfg.fsdp and cfg.use_peft:
        raise UserInputError("--fsdp with --use_peft is not supported (LoRA's adapters are not sharded here): LoRA "
                             "trains a small share of the weights, so launch data parallel without --fsdp, or train "
                             "the whole policy with --fsdp.")
    from .devices import check_choices

    check_choices(cfg.mixed_precision, cfg.recompute_logprobs)
    if cfg.kl_estimator not in ("k1", "k3"):
        raise UserInputError(f"kl_estimator must be 'k1' or 'k3', got {cfg.kl_estimator!r}.")
    if cfg.missing_eos_penalty is not None and not cfg.stop_at_eos:
        raise UserInputError("missing_eos_penalty needs stop_at_eos: without stopping at EOS no response contains "
                             "one by design.")
    from .tracking import parse_report_to

    parse_report_to(cfg.report_to)  # the names only: a missing package is refused by PPOTrainer, before training
    for name in ("cliprange", "cliprange_value", "learning_rate", "adam_eps", "max_grad_norm"):
        if not getattr(cfg, name) > 0:  # max_grad_norm <= 0 would zero (or flip) every gradient
            raise UserInputError(f"{name} must be positive, got {getattr(cfg, name)}.")
    for name in ("vf_coef", "ent_coef", "weight_decay"):
        if getattr(cfg, name) < 0:
            raise UserInputError(f"{name} must be >= 0, got {getattr(cfg, name)}.")
    if cfg.reward_clip is not None and cfg.reward_clip <= 0:
        raise UserInputError(f"reward_clip must be positive (or unset), got {cfg.reward_clip}.")
    if not 0 <= cfg.gamma <= 1 or not 0 <= cfg.lam <= 1:
        raise UserInputError(f"gamma and lam must lie in [0, 1], got gamma={cfg.gamma}, lam={cfg.lam}.")
    if cfg.kl_coef < 0 or cfg.target_kl <= 0:
        raise UserInputError(f"kl_coef must be >= 0 and target_kl > 0, got {cfg.kl_coef} and "
                             f"{cfg.target_kl}.")
    if cfg.use_peft and (cfg.lora_r < 1 or cfg.lora_alpha <= 0):
        raise UserInputError(f"LoRA needs lora_r >= 1 and lora_alpha > 0; got {cfg.lora_r} and "
                             f"{cfg.lora_alpha}.")
    if cfg.lora_dropout != 0:
        raise UserInputError(f"lora_dropout must be 0, got {cfg.lora_dropout}: PPO runs the policy in eval mode "
                             "(no dropout, so old and new log-probs agree), where LoRA dropout would do nothing.")
    if cfg.value_model_num_layers is not None and cfg.value_model_num_layers < 1:
        raise UserInputError(f"value_model_num_layers must be at least 1 (or unset for all), got "
                             f"{cfg.value_model_num_layers}.")
    if cfg.eval_num_prompts < 0:
        raise UserInputError(f"eval_num_prompts must be 0 (no evaluation) or positive, got "
                             f"{cfg.eval_num_prompts}.")
    if cfg.push_to_hub:
        check_repo_id(cfg.hub_model_id, "--hub_model_id", message="--push_to_hub needs --hub_model_id "
                      "NAMESPACE/NAME (a valid Hub repository id), got {value!r}.")


def _check_ppo_sizes(cfg) -> None:
    """Counts and sizes: each at least 1 (or 0 where 0 means off), and batches that divide evenly."""
    for name in ("total_episodes", "batch_size", "num_mini_batches", "gradient_accumulation_steps",
                 "num_ppo_epochs", "logging_steps", "kl_horizon", "save_total_limit", "min_query_tokens"):
        if getattr(cfg, name) < 1:
            raise UserInputError(f"{name} must be at least 1, got {getattr(cfg, name)}.")
    for name in ("sample_steps", "save_steps", "num_samples_logged", "min_review_chars"):
        if getattr(cfg, name) < 0:
            raise UserInputError(f"{name} must be 0 or more, got {getattr(cfg, name)}.")
    if cfg.num_threads is not None and cfg.num_threads < 1:
        raise UserInputError(f"num_threads must be at least 1 (or unset for torch's default), got "
                             f"{cfg.num_threads}.")
    if cfg.max_query_tokens < cfg.min_query_tokens:
        raise UserInputError(f"max_query_tokens ({cfg.max_query_tokens}) must be at least min_query_tokens "
                             f"({cfg.min_query_tokens}).")
    if cfg.batch_size % cfg.num_mini_batches:
        raise UserInputError(f"batch_size ({cfg.batch_size}) must be divisible by num_mini_batches "
                             f"({cfg.num_mini_batches}).")
    if (cfg.batch_size // cfg.num_mini_batches) % cfg.gradient_accumulation_steps:
        raise UserInputError(f"The minibatch ({cfg.batch_size // cfg.num_mini_batches} episodes) must be "
                             f"divisible by gradient_accumulation_steps ({cfg.gradient_accumulation_steps}).")

def _check_ppo_sampling(cfg) -> None:
    """Response lengths and a sampler PPO can train with: stochastic (top_k 1 or top_p 0 would be greedy)."""
    if cfg.response_length < 1:
        raise UserInputError(f"response_length must be at least 1, got {cfg.response_length}.")
    if cfg.min_response_length is not None and not 1 <= cfg.min_response_length <= cfg.response_length:
        raise UserInputError(f"min_response_length must be in [1, response_length={cfg.response_length}], got "
                             f"{cfg.min_response_length}.")
    check_sampling(cfg, stochastic=True)


def check_eval_config(cfg) -> None:
    """The checks of an `EvalConfig` (eval), in its `__post_init__`: UserInputError naming the option."""
    check_numbers(cfg)
    if not cfg.model:
        raise UserInputError("--model is required: the aligned policy (a folder written by `rlhf-demo train` or a "
                             "Hub id).")
    if not cfg.reference:
        raise UserInputError("--reference is required: the policy before alignment (a folder, a Hub id, or a "
                             "preset such as tiny).")
    if cfg.num_prompts < 1:
        raise UserInputError(f"num_prompts must be at least 1, got {cfg.num_prompts}; the evaluation needs "
                             "prompts to compare on.")
    for name in ("samples_per_prompt", "max_new_tokens", "batch_size"):
        if getattr(cfg, name) < 1:
            raise UserInputError(f"{name} must be at least 1, got {getattr(cfg, name)}.")
    if cfg.bootstrap_samples < 100:
        raise UserInputError(f"bootstrap_samples must be at least 100 for a 95% interval,"
                             f" got {cfg.bootstrap_samples}.")
    check_sampling(cfg)
    if cfg.frontier_num_prompts < 0:
        raise UserInputError("frontier_num_prompts must be 0 (all prompts) or positive, got "
                             f"{cfg.frontier_num_prompts}.")
    if cfg.num_report_samples < 0:
        raise UserInputError(f"num_report_samples must be 0 (no samples in the report) or more, got "
                             f"{cfg.num_report_samples}.")
    check_prompt_options(cfg)


def check_push_config(cfg) -> None:
    """The checks of a `PushConfig` (push), in its `__post_init__`: ValueError / UserInputError naming the option.
    Also fills in the default --output_dir of a --dry_run, RUN_DIR_hub."""
    check_numbers(cfg)
    if not cfg.model:
        raise ValueError("--model is required: the run directory written by `rlhf-demo train --output_dir`.")
    check_repo_id(cfg.repo_id, "--repo_id", namespace=False)
    if not cfg.revision:
        raise ValueError("--revision must name a branch, e.g. main.")
    if cfg.max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, got {cfg.max_retries}.")
    if not 0 <= cfg.retry_base_wait <= 600:
        raise ValueError(f"retry_base_wait must be 0 to 600 seconds, got {cfg.retry_base_wait}.")
    if cfg.output_dir is not None and not cfg.dry_run:
        raise ValueError("--output_dir is only used with --dry_run; add --dry_run or drop --output_dir.")
    if cfg.dry_run and cfg.output_dir is None:
        cfg.output_dir = os.path.normpath(cfg.model) + "_hub"
    if cfg.push_deadline <= 0:
        raise UserInputError(f"push_deadline must be positive seconds, got {cfg.push_deadline}.")
    if cfg.connect_timeout <= 0 or cfg.timeout <= 0:
        raise UserInputError(f"connect_timeout and timeout must be positive seconds, got {cfg.connect_timeout} "
                             f"and {cfg.timeout}.")
    if cfg.eval_num_prompts < 0:
        raise UserInputError(f"eval_num_prompts must be 0 (push without evaluating) or positive, got "
                             f"{cfg.eval_num_prompts}.")
    if cfg.space is not None:
        check_repo_id(cfg.space, "--space", message="--space {value!r} is not a Space id NAMESPACE/NAME.")
    if cfg.eval_only and (cfg.space or cfg.include_checkpoints):
        raise UserInputError("--eval_only uploads eval/ and the card only; drop --space and --include_checkpoints.")
