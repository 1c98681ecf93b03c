"""Configs: one dataclass per command (pretrain, reward-model, train, generate, eval, push, preferences, loop, space),
with `--help` text on every field and `__post_init__` checks whose errors say what to change. Options that several
commands declare alike live once in `PromptOptions` and `SamplingOptions`, which those commands inherit; the checks
(the shared `check_numbers`, `check_prompt_options`, `check_sampling`, `check_repo_id`, and the long ones of train,
eval and push) live in `config_checks.py`, so this file reads as the declarations.

`parsing.py` reads a command line into these dataclasses (defaults < preset < --config YAML < environment variables
a config declares (the Space's) < flags, as TRL's `TrlParser`); `parse_config`, `load_yaml_config` and `preset_path`
are re-exported here, where callers import them.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import yaml

from .config_checks import (MAX_SEED, check_eval_config, check_numbers, check_ppo_config,  # noqa: F401
                            check_prompt_options, check_push_config, check_repo_id, check_sampling)
from .errors import UserInputError
from .names import PRESET_NAMES, PRESETS_DIR  # noqa: F401 (also imported from here)
from .parsing import SECTIONS, load_yaml_config, parse_config, preset_path  # noqa: F401 (imported from here)

DATA_DIR_ENV = "RLHF_DEMO_DATA"


def data_dir() -> str:
    """Where local copies of the real data live (IMDB as `imdb/`, GPT-2's tokenizer as `gpt2-tokenizer/`), for the
    tests, benchmarks and offline runs: the environment variable RLHF_DEMO_DATA, else `../shared/data` next to the
    repository root. The package itself never needs it: its defaults are Hub ids and the tiny preset's files."""
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.environ.get(DATA_DIR_ENV) or os.path.normpath(os.path.join(repo_root, "..", "shared", "data"))


def arg(default: Any = dataclasses.MISSING, help: str = "", aliases: tuple[str, ...] = (), **kwargs) -> Any:
    """A config field with its `--help` text and other flag names (what `HfArgumentParser` reads from
    `metadata["help"]` and `metadata["aliases"]`); a list or dict default is copied for each instance. Without
    `default` the flag is required (unless a YAML file gives it)."""
    metadata = {"help": help, **({"aliases": list(aliases)} if aliases else {})}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


@dataclass
class PromptOptions:
    """The options of a prompt-only dataset (TRL's format), declared alike by the commands that read prompts from one
    (train, eval: `PPOConfig` and `EvalConfig` inherit them); checked by `check_prompt_options`. The options of
    review-head prompts (dataset_name, text_column, min_review_chars, min/max_query_tokens) stay in each command:
    their help says what they mean there (train's queries, eval's held-out split, the preferences' prompts)."""

    prompt_column: str | None = arg(None, "Prompt-only dataset (TRL's format): the column whose text is each prompt, "
                                          "used as is (e.g. prompt). None: review heads of the text column.")
    prompt_template: str | None = arg(None, "Prompt-only dataset: build each prompt from this template, filling its "
                                            "{column} fields from the row, e.g. 'Summarize the following conversation."
                                            "\\n\\n{dialogue}\\n\\nSummary:' (write newlines in a YAML --config "
                                            "file).")
    max_prompt_length: int | None = arg(None, "Prompt-only dataset: cut longer prompts to this many tokens (special "
                                              "tokens included) on the --truncation_side. None: keep prompts whole "
                                              "(one beyond the model's context is then an error).")
    truncation_side: str = arg("left", "Which end of a prompt longer than --max_prompt_length is cut: left (keeps its "
                                       "end, where a template puts the instruction) or right.")


def prompt_options(cfg) -> dict:
    """The `PromptOptions` of a config, as keyword arguments of `data.build_prompt_dataset`."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(PromptOptions)}


@dataclass
class SamplingOptions:
    """The sampling options declared alike by the commands that only sample (generate, preferences inherit them).
    train's and eval's temperature, top_k and top_p say in their help what they do there (to PPO's ratio, to eval's
    KL), so those commands declare their own; `check_sampling` checks every command's."""

    temperature: float = arg(1.0, "Sampling temperature.")


def save_config(config, path: str) -> None:
    """Write a config dataclass as YAML (the resolved config of a run)."""
    with open(path, "w") as f:
        yaml.safe_dump(dataclasses.asdict(config), f, sort_keys=False)


@dataclass
class PretrainConfig:
    """`rlhf-demo pretrain`: a byte-level BPE tokenizer and a small GPT-2 trained from scratch on IMDB reviews."""

    output_dir: str = arg("runs/pretrain", "Where the tokenizer, checkpoints and final model go.")
    dataset_name: str = arg("stanfordnlp/imdb", "Hub id or local path of the review dataset (train split for training, "
                                                "test split for the held-out report).")
    vocab_size: int = arg(8192, "BPE vocabulary size, special tokens included.")
    n_layer: int = arg(4, "Transformer blocks.")
    n_embd: int = arg(256, "Hidden width.")
    n_head: int = arg(4, "Attention heads.")
    block_size: int = arg(256, "Training context in tokens (also the model's n_positions).")
    batch_size: int = arg(16, "Sequences per optimizer step.")
    learning_rate: float = arg(2e-3, "Peak AdamW learning rate (linear warmup, cosine decay to min_lr_ratio x peak).")
    min_lr_ratio: float = arg(0.1, "Final learning rate as a fraction of the peak.")
    warmup_steps: int = arg(100, "Linear warmup steps.")
    max_steps: int = arg(1000, "Optimizer steps.")
    weight_decay: float = arg(0.1, "AdamW weight decay on matrices.")
    dropout: float = arg(0.0, "Dropout on embeddings, attention and residuals (0 suits pretraining under one epoch, as "
                              "in nanoGPT); also applied on --resume.")
    eval_reviews: int = arg(1000, "Held-out test reviews for the loss / perplexity / bits-per-byte report.")
    save_steps: int = arg(100, "Write a resumable checkpoint every N steps.")
    resume: bool = arg(False, "Resume from output_dir/checkpoint if present. A larger --max_steps extends a finished "
                              "run: the cosine schedule is recomputed for the new length.")
    seed: int = arg(0, "Random seed.")

    def __post_init__(self):
        check_numbers(self)
        for name in ("vocab_size", "n_layer", "n_embd", "n_head", "block_size", "batch_size", "max_steps",
                     "save_steps", "eval_reviews"):
            if getattr(self, name) < 1:
                raise UserInputError(f"{name} must be positive, got {getattr(self, name)}.")
        if self.n_embd % self.n_head:
            raise UserInputError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}).")
        if not 0.0 <= self.dropout < 1.0:
            raise UserInputError(f"dropout must be in [0, 1), got {self.dropout}.")
        if self.learning_rate <= 0 or self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise UserInputError("learning_rate must be positive, warmup_steps >= 0 and min_lr_ratio in [0, 1]; got "
                                 f"{self.learning_rate}, {self.warmup_steps} and {self.min_lr_ratio}.")


@dataclass
class RewardModelConfig:
    """`rlhf-demo reward-model`: a reward model initialised from a causal LM (or an earlier reward model). With
    `--preferences FILE [FILE ...]`, a Bradley-Terry model (one logit) trained on preference pairs with TRL's
    RewardTrainer; without, a sentiment classifier (POSITIVE/NEGATIVE) trained on IMDB labels."""

    preferences: list[str] | None = arg(None, "Preference files (JSON lines in TRL's format: prompt, chosen, "
                                              "rejected) to train a Bradley-Terry reward model on.")
    eval_fraction: float = arg(0.1, "With --preferences: share of the pairs held out for the accuracy report.")

    model_name_or_path: str = arg("runs/pretrain", "Causal LM (and its tokenizer) to start from, as Ziegler et al. "
                                                   "initialise the reward model from the policy.")
    output_dir: str = arg("runs/reward_model", "Where the classifier goes.")
    dataset_name: str = arg("stanfordnlp/imdb", "Hub id or local path of a dataset with `text` and `label` "
                                                "(0=negative, 1=positive).")
    max_length: int = arg(256, "Tokens kept per review (the last ones: reviews tend to conclude with the verdict).")
    batch_size: int = arg(32, "Reviews per optimizer step.")
    learning_rate: float = arg(3e-4, "Peak AdamW learning rate (linear warmup then linear decay).")
    num_train_epochs: float = arg(1.0, "Passes over the train split.")
    warmup_ratio: float = arg(0.05, "Fraction of steps used for warmup.")
    max_train_examples: int | None = arg(None, "Train on at most this many reviews (None: all 25,000).")
    eval_examples: int | None = arg(None, "Test reviews for the accuracy report (None: the full 25,000).")
    seed: int = arg(0, "Random seed.")

    def __post_init__(self):
        check_numbers(self)
        if not 0 <= self.eval_fraction < 1:
            raise UserInputError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}.")
        for name in ("num_train_epochs", "learning_rate", "max_length", "batch_size"):
            if getattr(self, name) <= 0:
                raise UserInputError(f"{name} must be positive, got {getattr(self, name)}.")
        for name in ("max_train_examples", "eval_examples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserInputError(f"{name} must be at least 1 (or unset for all), got {getattr(self, name)}.")
        if not 0 <= self.warmup_ratio < 1:
            raise UserInputError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")


@dataclass
class PPOConfig(PromptOptions):
    """`rlhf-demo train`: PPO with a per-token KL penalty against a frozen reference (Ziegler et al. 2019).

    Sizes: each PPO step samples `batch_size` episodes per process; the update runs `num_ppo_epochs` passes over
    them in `num_mini_batches` minibatches, each split into `gradient_accumulation_steps` micro-batches.
    The run lasts `total_episodes` episodes (all processes together), i.e. total_episodes / (batch_size x
    processes) PPO steps.
    """

    # --- models and data
    output_dir: str = arg("runs/ppo", "Run folder: the aligned policy, value model, checkpoints, metrics.jsonl.")
    model_name_or_path: str = arg("openai-community/gpt2", "Policy to align (Hub id or folder); its frozen copy is the "
                                                           "reference.")
    reward: list[str] = arg(["sentiment=lvwerra/distilbert-imdb@POSITIVE"], "Reward function(s) as "
            "KIND=TARGET[@LABEL][:WEIGHT]: sentiment=CLASSIFIER@LABEL, toxicity=CLASSIFIER, keyword=WORD, "
            "preference=REWARD_MODEL, python=MODULE:FUNCTION, or vader; repeat the flag to sum several.")
    value_model_name_or_path: str | None = arg(None, "Backbone for the value model (needs the policy's tokenizer); "
                                                     "None: the policy. Stiennon et al. 2020 and TRL start it "
                                                     "from the reward model.")
    value_head_init: str = arg("auto", "Start of the value head: reward_model (the reward model's score: the "
                                       "rewarded label's row of a two-label classifier, the head of a one-logit one, "
                                       "so V(s_t) starts as the reward model's score of the prefix; needs the value "
                                       "model to be a --reward model), zero, or auto (reward_model where it applies, "
                                       "else zero).")
    value_model_num_layers: int | None = arg(None, "Keep only the first N transformer blocks of the value model's "
                                                   "backbone (None: all): a small value model for a large policy.")
    value_head_on_policy: bool = arg(False, "Put the value head on the policy's trunk instead of a separate value "
                                            "model (TRL's former AutoModelForCausalLMWithValueHead): one trunk pass "
                                            "per update instead of two; the value loss then also trains the trunk and "
                                            "the head starts at 0. Causal LMs trained in full, one process; the other "
                                            "value_* options are then unused.")
    dataset_name: str = arg("stanfordnlp/imdb", "Prompt dataset: Hub id, local folder or data file with a train split: "
                                                "reviews in a `text` column (cut to their first tokens), or a "
                                                "prompt-only dataset (--prompt_column or --prompt_template).")
    text_column: str = arg("text", "Column holding the review text.")
    min_review_chars: int = arg(200, "Keep reviews longer than this many characters.")
    min_query_tokens: int = arg(2, "Shortest query, in tokens.")
    max_query_tokens: int = arg(8, "Longest query, in tokens (length drawn uniformly).")
    # --- rollout
    response_length: int = arg(24, "Response tokens to sample (the maximum when min_response_length is set).")
    min_response_length: int | None = arg(None, "If set, each batch's response length is drawn uniformly from "
                                                "[min_response_length, response_length].")
    temperature: float = arg(1.0, "Sampling temperature; log-probs are recomputed with logits / temperature.")
    top_k: int = arg(0, "Top-k sampling (0: off). Anything but 0 / top_p 1 makes PPO's ratio biased.")
    top_p: float = arg(1.0, "Nucleus sampling (1.0: off).")
    stop_at_eos: bool = arg(False, "Stop responses at EOS and mask what follows. Off by default: with it, policies "
                                   "learn to end early (Ziegler et al. used fixed lengths).")
    # --- reward shaping
    kl_coef: float = arg(0.05, "Initial KL coefficient beta: per-token reward -beta * KL_t.")
    adaptive_kl: bool = arg(False, "Adapt beta toward target_kl (Ziegler et al. 2019, eq. 2).")
    target_kl: float = arg(6.0, "Target KL per response in nats, for the adaptive controller.")
    kl_horizon: int = arg(10000, "Horizon of the adaptive KL controller, in episodes.")
    kl_estimator: str = arg("k1", "Per-token KL estimator: k1 (log p - log q) or k3 ((r - 1) - log r, r = q/p; "
                                  "Schulman 2020).")
    missing_eos_penalty: float | None = arg(None, "Subtract this from the score of a response with no EOS (needs "
                                                  "stop_at_eos).")
    reward_clip: float | None = arg(None, "Clip scores to [-reward_clip, reward_clip].")
    normalize_reward: bool = arg(False, "Standardise scores with running mean and std over all episodes so far.")
    # --- PPO
    total_episodes: int = arg(10000, "Episodes (query + response) to train on.")
    batch_size: int = arg(64, "Episodes per PPO step, per process.")
    num_mini_batches: int = arg(1, "Minibatches per PPO epoch.")
    gradient_accumulation_steps: int = arg(1, "Micro-batches per minibatch (memory only: the same gradient, every "
                                              "token weighted by 1 / the minibatch's real tokens, for any response "
                                              "lengths).")
    num_ppo_epochs: int = arg(4, "Passes over each batch of episodes.")
    learning_rate: float = arg(1e-5, "AdamW learning rate, decayed linearly to 0.")
    adam_eps: float = arg(1e-5, "AdamW epsilon (1e-5 as in PPO implementations, Huang et al. 2022).")
    weight_decay: float = arg(0.0, "AdamW weight decay.")
    max_grad_norm: float = arg(1.0, "Clip the gradient norm of the policy and of the value model, each on its own "
                                    "(inf: no clipping); the pre-clip norms are logged as policy/grad_norm and "
                                    "val/grad_norm.")
    gamma: float = arg(1.0, "Discount factor.")
    lam: float = arg(0.95, "GAE lambda.")
    cliprange: float = arg(0.2, "PPO ratio clip epsilon.")
    cliprange_value: float = arg(0.2, "Value clip, around the rollout values.")
    vf_coef: float = arg(0.1, "Value loss coefficient.")
    ent_coef: float = arg(0.0, "Entropy bonus coefficient.")
    whiten_advantages: bool = arg(True, "Whiten advantages over the batch (masked).")
    # --- LoRA
    use_peft: bool = arg(False, "Train LoRA adapters (peft) instead of the whole policy; the reference is the policy "
                                "with its adapter disabled (no second copy). Names as TRL's ModelConfig.")
    lora_r: int = arg(16, "LoRA rank.")
    lora_alpha: int = arg(32, "LoRA alpha (the update is scaled by lora_alpha / lora_r).")
    lora_dropout: float = arg(0.0, "LoRA dropout; only 0: PPO runs the policy in eval mode (dropout off, so the ratio "
                                   "is exactly 1 at the first minibatch), where any other value would do nothing.")
    lora_target_modules: list[str] | None = arg(None, "Modules that get adapters, e.g. q_proj v_proj (None: peft's "
                                                      "default for the architecture: c_attn for GPT-2, q_proj v_proj "
                                                      "for Llama, q v for T5).")
    # --- evaluation and publishing
    eval_num_prompts: int = arg(256, "Held-out prompts (the test split of dataset_name) of the evaluation against the "
                                     "reference that ends training, into OUTPUT_DIR/eval (0: skip it).")
    eval_reward_model: str | None = arg(None, "Sequence classifier scoring that evaluation, PATH_OR_ID[@LABEL] (None: "
                                              "the run's sentiment or preference reward model, else the tiny preset's "
                                              "or lvwerra/distilbert-imdb sentiment classifier).")
    push_to_hub: bool = arg(False, "Push the run (model, value model, card, evaluation) to the Hub after training "
                                   "and evaluation, as `rlhf-demo push` does.")
    hub_model_id: str | None = arg(None, "Hub repository of --push_to_hub, NAMESPACE/NAME.")
    hub_private_repo: bool = arg(False, "Create the --push_to_hub repository as private.")
    # --- logging and checkpoints
    logging_steps: int = arg(1, "Write metrics every N PPO steps.")
    sample_steps: int = arg(10, "Log a few sampled completions every N PPO steps (0: never).")
    num_samples_logged: int = arg(4, "Completions logged each time.")
    report_to: str = arg("none", "Also log metrics to these trackers (accelerate's): none, all (every one installed), "
                                 "or one or a comma-separated list of tensorboard (event files under "
                                 "output_dir/runs/), wandb, mlflow, comet_ml, aim, clearml, dvclive, swanlab, "
                                 "trackio.")
    save_steps: int = arg(50, "Checkpoint every N PPO steps (0: only at the end).")
    save_total_limit: int = arg(2, "Keep only the last N checkpoints.")
    resume_from_checkpoint: str | None = arg(None, "Resume from a checkpoint folder, or `latest` for the newest under "
                                                   "output_dir/checkpoints.")
    overwrite_output_dir: bool = arg(False, "Start afresh in an --output_dir that holds another run, deleting its "
                                            "model, logs and checkpoints (as transformers' TrainingArguments); "
                                            "without it such a folder is refused, unless resumed.")
    resume_with_changed_config: bool = arg(False, "Resume even when the checkpoint was written with another "
                                                  "batch_size, seed or model (the run then differs from an "
                                                  "uninterrupted one); without it such a resume is refused.")
    seed: int = arg(0, "Random seed (data order, sampling, initialisation).")
    num_threads: int | None = arg(None, "torch CPU threads (None: torch's default).")
    mixed_precision: str = arg("no", "Autocast the models' forward and backward passes (accelerate's option): no "
                                     "(fp32), bf16, fp16 (CUDA only), or auto (bf16 where the device multiplies it "
                                     "natively: a CUDA GPU with bf16, a CPU with AMX; else no). Weights, optimizer "
                                     "state, log-softmax, KL, GAE and the losses stay fp32.")
    fsdp: bool = arg(False, "Shard the policy, value model and reference across the processes of a torchrun / "
                            "accelerate launch with PyTorch FSDP2 (each holds 1/N of their weights, gradients and "
                            "optimizer state); checkpoints and the export stay ordinary unsharded folders. Needs "
                            "N >= 2 processes and full fine-tuning (no --use_peft); see docs/launch.md.")
    recompute_logprobs: str = arg("auto", "Take the rollout's log-probs from a full forward pass (the update's) "
                                          "instead of the sampler's logits: true, false, or auto (only under mixed "
                                          "precision, where the two round differently and the first ratio would "
                                          "move off 1).")
    progress_bar: bool = arg(True, "Show a tqdm progress bar over episodes.")

    def __post_init__(self):
        check_ppo_config(self)

    def check_given_options(self, given: set[str]) -> None:
        """Checks of what the user chose, by flag or in their --config file (`parse_config` calls it with those
        option names): value_head_on_policy leaves the separate value model's options unused, so giving one with it
        is refused. A preset's value_model_name_or_path (tiny's) is its default for the separate value model, and
        stays unused."""
        if self.value_head_on_policy:
            unused = [f"--{name}" for name in ("value_model_name_or_path", "value_model_num_layers")
                      if name in given and getattr(self, name) is not None]
            if unused:
                raise UserInputError(f"--value_head_on_policy puts the value head on the policy's trunk, so "
                                     f"{' and '.join(unused)} (the separate value model) would be unused; drop "
                                     f"{'them' if len(unused) > 1 else 'it'} or --value_head_on_policy.")

@dataclass
class GenerateConfig(SamplingOptions):
    """`rlhf-demo generate`: sample continuations of a prompt from a causal LM."""

    model: str = arg("tiny", "Hub id, local folder, or preset name (tiny, gpt2, smollm2).")
    prompt: list[str] = arg(["This movie"], "Prompt(s) to continue; repeat the flag for several.")
    num_samples: int = arg(3, "Continuations per prompt.")
    max_new_tokens: int = arg(24, "Tokens to sample per continuation.")
    temperature: float = arg(1.0, "Sampling temperature.")
    top_k: int = arg(0, "Top-k (0: off).")
    top_p: float = arg(1.0, "Nucleus sampling threshold (1.0: off).")
    seed: int = arg(0, "Random seed.")

    def __post_init__(self):
        check_numbers(self)
        if self.num_samples < 1 or self.max_new_tokens < 1:
            raise UserInputError(f"num_samples and max_new_tokens must be at least 1, got {self.num_samples} and "
                                 f"{self.max_new_tokens}.")
        check_sampling(self)


@dataclass
class EvalConfig(PromptOptions):
    """`rlhf-demo eval`: compare an aligned policy with its reference on held-out prompts."""

    model: str = arg(None, "Aligned policy: a folder written by `rlhf-demo train` (its checkpoints/ give the reward-KL "
                           "frontier), a Hub id or a preset name.")
    reference: str = arg(None, "Reference (the policy before alignment): folder, Hub id or preset (tiny, gpt2, "
                               "smollm2).")
    output_dir: str = arg("runs/eval", "Where eval_results.json, eval_report.md, the plots and samples.jsonl go.")
    num_prompts: int = arg(512, "Held-out prompts (IMDB test split), the same for both models.")
    samples_per_prompt: int = arg(1, "Responses sampled per prompt and model.")
    max_new_tokens: int = arg(24, "Response length in tokens (the maximum when --stop_at_eos).")
    stop_at_eos: bool = arg(False, "Stop responses at EOS; default samples exactly max_new_tokens tokens as in "
                                   "training (Ziegler et al. 2019).")
    seed: int = arg(0, "Seeds the prompt choice and sampling; batch i of both models starts from seed + i (paired "
                       "samples).")
    temperature: float = arg(1.0, "Sampling temperature (KL is computed on logits divided by it, as sampled).")
    top_p: float = arg(1.0, "Nucleus sampling threshold (1.0: off).")
    top_k: int = arg(0, "Top-k sampling (0: off).")
    dataset_name: str = arg("stanfordnlp/imdb", "Hub id or local path of the review dataset, or of a prompt-only "
                                                "dataset (--prompt_column or --prompt_template).")
    split: str = arg("test", "Split the prompts come from: the held-out one, never the training prompts.")
    min_review_chars: int = arg(200, "Keep reviews longer than this many characters (0 for datasets of review heads, "
                                     "as the tiny preset ships).")
    reward_model: str = arg("lvwerra/distilbert-imdb", "The training reward model (sequence classifier): folder, Hub "
                                                       "id or preset (tiny, gpt2, smollm2).")
    reward_label: str = arg("POSITIVE", "Label of the reward model whose logit is the reward.")
    sentiment_judge: str = arg("vader", "Independent sentiment judge: `vader` (offline) or a transformers classifier, "
                                        "e.g. siebert/sentiment-roberta-large-english.")
    judge_positive_label: str = arg("POSITIVE", "Positive label of a transformers judge.")
    toxicity_judge: str = arg("profanity-check", "Toxicity judge: `profanity-check` (offline) or a transformers "
                                                 "classifier, e.g. facebook/roberta-hate-speech-dynabench-r4-target.")
    toxic_label: str = arg("hate", "Toxic label of a transformers toxicity classifier.")
    batch_size: int = arg(64, "Prompts per generation / forward batch.")
    bootstrap_samples: int = arg(1000, "Paired bootstrap resamples for the 95%% confidence intervals (Efron & "
                                       "Tibshirani 1993).")
    frontier: bool = arg(True, "Evaluate every checkpoints/checkpoint-*/ of --model for the reward-KL frontier.")
    frontier_num_prompts: int = arg(128, "The first N of the prompts score each checkpoint for the frontier (0: all); "
                                         "keeps a run with many checkpoints cheap.")
    num_report_samples: int = arg(5, "Sample pairs shown in eval_report.md.")

    def __post_init__(self):
        check_eval_config(self)


@dataclass
class PushConfig:
    """`rlhf-demo push`: upload a training run (policy, value model, card, evaluation) to the Hugging Face Hub."""

    model: str = arg(help="Run directory written by `rlhf-demo train --output_dir` (the aligned policy at its top "
                          "level).")
    repo_id: str = arg(help="Hub repository, NAMESPACE/NAME (created if missing).")
    private: bool = arg(False, "Create the repository as private (an existing repository keeps its visibility).")
    revision: str = arg("main", "Branch to commit to (created from main if missing).")
    commit_message: str | None = arg(None, "Commit message (default: one naming the run).")
    dry_run: bool = arg(False, "Write the folder that would be uploaded to --output_dir instead of pushing.")
    output_dir: str | None = arg(None, "Where --dry_run writes the folder (must be new or empty; default RUN_DIR_hub).")
    include_checkpoints: bool = arg(False, "Also upload checkpoints/ (optimizer and scheduler state included).")
    license: str = arg("mit", "License in the card metadata (GPT-2's is MIT).")
    token: str | None = arg(None, "Hub token with write access (default: HF_TOKEN, then the `hf auth login` token). "
                                  "Never printed.", repr=False)
    endpoint: str | None = arg(None, "Hub URL (default: HF_ENDPOINT, else https://huggingface.co).")
    max_retries: int = arg(5, "Retries of a request that failed with a connection error, 429 or 5xx.")
    retry_base_wait: float = arg(1.0, "Seconds before the first retry; doubled at each retry.")
    connect_timeout: float = arg(10.0, "Seconds to wait for a connection to the Hub before retrying.")
    timeout: float = arg(60.0, "Seconds to wait for each read of a Hub answer before retrying (a stalled upload or "
                               "answer counts as a failed attempt).")
    push_deadline: float = arg(1800.0, "Seconds the Hub part of a push may take in total (every request, retry and "
                                       "wait; a --space push gets its own); past it the push stops with one line "
                                       "that says whether a commit landed.")
    eval_num_prompts: int = arg(256, "A run without eval/ is evaluated first on this many held-out prompts, as at the "
                                     "end of `rlhf-demo train` (0: push it without an evaluation).")
    eval_only: bool = arg(False, "Upload only eval/ and the updated model card (its metadata: model-index) to an "
                                 "existing repository; the weights are not uploaded again.")
    space: str | None = arg(None, "Also push a Gradio Space, NAMESPACE/NAME, that compares this model with its "
                                  "reference (loads both and the reward model by Hub id).")
    space_reference: str | None = arg(None, "Reference model of the Space: Hub id or preset (None: the run's base "
                                            "model when it is a Hub id or the tiny preset).")
    space_reward_model: str | None = arg(None, "Reward model of the Space, HUB_ID_OR_PRESET[@LABEL] (None: the run's "
                                               "sentiment or preference reward when a Hub id or the tiny preset).")
    space_wheel: str | None = arg(None, "rlhf-demo wheel to upload with the Space (None: built from this checkout).")

    def __post_init__(self):
        check_push_config(self)


@dataclass
class PreferencesConfig(SamplingOptions):
    """`rlhf-demo preferences`: sample two continuations per prompt and label which is better with a simulated
    annotator (a reward function with Bradley-Terry noise), appending pairs in TRL's preference format."""

    output: str = arg("runs/preferences.jsonl", "Preference file to append to (`.jsonl`), or a folder that gets "
                                                "preferences.jsonl and a dataset card.")
    model: str = arg("openai-community/gpt2", "Policy writing the continuations: preset, folder or Hub id.")
    other_model: str | None = arg(None, "If set, the second continuation comes from this model (e.g. the reference) "
                                        "instead of a second sample of --model.")
    annotator: str = arg("sentiment=lvwerra/distilbert-imdb@POSITIVE", "Simulated annotator: a reward spec as in "
                         "`train --reward` (sentiment=PATH@LABEL, preference=PATH, vader, python=module:function).")
    annotator_temperature: float = arg(1.0, "tau of P(A preferred) = sigmoid((s_A - s_B) / tau); 0 always prefers "
                                            "the higher score.")
    tie_margin: float = arg(0.0, "Label a pair a tie when its noiseless scores differ by at most this.")
    num_pairs: int = arg(1000, "Pairs to sample (one per prompt).")
    dataset_name: str = arg("stanfordnlp/imdb", "Prompt dataset (as `train --dataset_name`).")
    split: str = arg("train", "Split the prompts come from.")
    min_review_chars: int = arg(200, "Keep reviews longer than this many characters.")
    min_query_tokens: int = arg(2, "Shortest prompt, in tokens.")
    max_query_tokens: int = arg(8, "Longest prompt, in tokens.")
    max_new_tokens: int = arg(24, "Tokens per continuation.")
    temperature: float = arg(1.0, "Sampling temperature.")
    batch_size: int = arg(64, "Prompts per generation batch.")
    round: int = arg(0, "Round of the feedback loop, recorded in each row.")
    seed: int = arg(0, "Seeds the prompts, the samples and the annotator's coin flips.")

    def __post_init__(self):
        check_numbers(self)
        for name in ("num_pairs", "max_new_tokens", "batch_size", "max_query_tokens"):
            if getattr(self, name) < 1:
                raise UserInputError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.annotator_temperature < 0 or self.tie_margin < 0:
            raise UserInputError("annotator_temperature and tie_margin must be >= 0, got "
                                 f"{self.annotator_temperature} and {self.tie_margin}.")
        check_sampling(self)


@dataclass
class LoopConfig:
    """`rlhf-demo loop`: rounds of RLHF with a simulated annotator. Each round samples pairs from the current policy,
    labels them, retrains the Bradley-Terry reward model on all pairs so far (warm start), runs PPO against it from
    the current policy, and evaluates: reward-model accuracy on fresh pairs, the annotator's (gold) score, the
    independent judge, KL to the starting policy. PPO settings come from the preset's `train` section."""

    output_dir: str = arg("runs/loop", "Run folder: preferences.jsonl, round-N/ (reward model, policy, eval), "
                                       "loop_results.json / .md and loop.png.")
    model_name_or_path: str = arg("openai-community/gpt2", "Starting policy (and the reference of every round).")
    annotator: str = arg("sentiment=lvwerra/distilbert-imdb@POSITIVE", "Simulated annotator (gold): a reward spec.")
    annotator_temperature: float = arg(1.0, "Bradley-Terry noise tau of the annotator (0: noiseless).")
    ppo_config: str | None = arg(None, "YAML file whose `train` section gives PPO's options and the prompts (e.g. a "
                                       "preset file); the loop sets the model, reward, episodes and output itself.")
    rounds: int = arg(2, "Rounds of feedback, reward model and PPO.")
    pairs_per_round: int = arg(500, "New pairs labelled each round.")
    fresh_pairs: int = arg(256, "Pairs from the new policy, labelled noiselessly, to measure the reward model each "
                                "round (distribution shift).")
    ppo_episodes: int = arg(2560, "PPO episodes per round.")
    rm_epochs: float = arg(1.0, "Reward-model epochs per round over all pairs so far.")
    rm_learning_rate: float = arg(2e-4, "Reward-model learning rate (2e-4: the setting measured on the tiny preset).")
    eval_num_prompts: int = arg(256, "Held-out prompts of each round's evaluation.")
    seed: int = arg(0, "Random seed (each round adds its number).")

    def __post_init__(self):
        check_numbers(self)
        for name in ("rounds", "pairs_per_round", "fresh_pairs", "ppo_episodes", "eval_num_prompts"):
            if getattr(self, name) < 1:
                raise UserInputError(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("rm_epochs", "rm_learning_rate"):  # checked here, not after round 1's sampling and labelling
            if getattr(self, name) <= 0:
                raise UserInputError(f"{name} must be positive, got {getattr(self, name)}.")
        if self.annotator_temperature < 0:
            raise UserInputError(f"annotator_temperature must be >= 0, got {self.annotator_temperature}.")


TINY_PROMPTS = os.path.join(PRESETS_DIR, "tiny", "prompts")  # heads of IMDB reviews shipped with the tiny preset


@dataclass
class SpaceConfig:
    """`rlhf-demo space`: the Gradio Space (reference vs aligned side by side, evaluation, human feedback,
    publishing). A hosted Space sets its options as environment variables (each named in its help), which override a
    `--config` file (env SPACE_CONFIG; what `rlhf-demo push --space` writes) and a preset's `space:` section; flags
    override them all. The page's wording (title ... score_label) defaults to the tiny preset's."""

    reference: str = arg("tiny", "Policy before PPO: preset (tiny, gpt2, smollm2), folder or Hub id (env "
                                 "REFERENCE_MODEL).", aliases=("--reference_model",))
    aligned: str = arg(os.path.join(PRESETS_DIR, "tiny", "aligned"), "Aligned policy: folder or Hub id (env "
                       "ALIGNED_MODEL; default the tiny preset's committed PPO run).", aliases=("--aligned_model",))
    reward_model: str = arg("tiny", "Reward model PPO optimised: preset (tiny, gpt2, smollm2), folder or Hub id (env "
                                    "REWARD_MODEL).")
    reward_label: str = arg("POSITIVE", "Label of the reward model whose logit is the reward (env REWARD_LABEL).")
    preferences: str = arg("preferences.jsonl", "JSONL file the Feedback tab appends to (env PREFERENCES_FILE).")
    preferences_dataset: str | None = arg(None, "Hub dataset NAMESPACE/NAME that keeps the preferences across "
                                                "restarts, uploaded every 5 minutes with the Space's HF_TOKEN (env "
                                                "PREFERENCES_DATASET; default: the local file only).")
    eval_dataset: str = arg(TINY_PROMPTS if os.path.isdir(TINY_PROMPTS) else "stanfordnlp/imdb", "Prompts of the "
                            "Evaluate tab: Hub id or local folder with a test split (env EVAL_DATASET; default the "
                            "tiny preset's shipped IMDB review heads when present, else stanfordnlp/imdb).")
    eval_prompt_column: str | None = arg(None, "A prompt-only --eval_dataset: the column whose text is each prompt "
                                               "(env EVAL_PROMPT_COLUMN).")
    eval_prompt_template: str | None = arg(None, "A prompt-only --eval_dataset: template with {column} fields that "
                                                 "builds each prompt (env EVAL_PROMPT_TEMPLATE).")
    eval_max_prompt_length: int | None = arg(None, "A prompt-only --eval_dataset: cut longer prompts to this many "
                                                   "tokens, from the left (env EVAL_MAX_PROMPT_LENGTH).")
    runs_dir: str = arg("runs", "Folder of training runs the Publish tab offers (env RUNS_DIR).")
    generation_timeout: float = arg(60.0, "Seconds before a generation request is stopped (env GENERATION_TIMEOUT).")
    concurrency_limit: int = arg(2, "Requests of each kind that run at once (at least 1).")
    host: str | None = arg(None, "Address to serve on (default: GRADIO_SERVER_NAME, else 127.0.0.1).")
    port: int | None = arg(None, "Port, 1-65535 (default: GRADIO_SERVER_PORT, else 7860 or the next free one).")
    share: bool = arg(False, "Also serve through a public gradio.live link.")
    # What the page says (a preset's `space:` section; unset: the tiny preset's wording).
    title: str | None = arg(None, "The page's heading and the browser tab's title.")
    description: str | None = arg(None, "The task, one or two sentences under the heading.")
    prompt_placeholder: str | None = arg(None, "Placeholder of the Compare tab's prompt box.")
    examples_label: str | None = arg(None, "Label of the Compare tab's example prompts.")
    example_prompts: list[str] | None = arg(None, "Example prompts of the Compare tab.")
    score_label: str | None = arg(None, "What a higher reward means, on the score bars and in the table (unset: "
                                        "from --reward_label, e.g. positive for POSITIVE).")

    ENV_VARIABLES: ClassVar[dict[str, str]] = {
        "reference": "REFERENCE_MODEL", "aligned": "ALIGNED_MODEL", "reward_model": "REWARD_MODEL",
        "reward_label": "REWARD_LABEL", "preferences": "PREFERENCES_FILE", "preferences_dataset": "PREFERENCES_DATASET",
        "eval_dataset": "EVAL_DATASET", "eval_prompt_column": "EVAL_PROMPT_COLUMN",
        "eval_prompt_template": "EVAL_PROMPT_TEMPLATE", "eval_max_prompt_length": "EVAL_MAX_PROMPT_LENGTH",
        "runs_dir": "RUNS_DIR", "generation_timeout": "GENERATION_TIMEOUT"}
    # option -> (check, what a value must be): `parse_config` names the flag, variable or file of a value out of range.
    RANGES: ClassVar[dict[str, tuple]] = {
        "eval_max_prompt_length": (lambda n: n >= 1, "a whole number of tokens, at least 1"),
        "generation_timeout": (lambda t: 0 < t < math.inf, "a number of seconds greater than 0"),
        "concurrency_limit": (lambda n: n >= 1, "at least 1"),
        "port": (lambda n: 1 <= n <= 65535, "a port number in 1-65535")}

    def __post_init__(self):
        for name, (check, what) in self.RANGES.items():
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not check(value)):
                raise UserInputError(f"{name} must be {what}, got {value!r}.")

    def check_given_options(self, given: set[str]) -> None:
        """A --score_label written for another reward label is forgotten when the user picks the label (by flag,
        variable or --config file) without a score label of their own: the new label's is derived from it."""
        if "reward_label" in given and "score_label" not in given:
            self.score_label = None
