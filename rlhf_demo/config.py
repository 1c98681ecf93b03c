"""Configs: one dataclass per command (pretrain, reward-model, train, generate, eval, push), parsed with
`transformers.HfArgumentParser`.

Values come, in increasing priority, from the dataclass defaults, a preset (`--preset tiny|gpt2`, a YAML file
in `rlhf_demo/presets/`), a YAML file of the user's (`--config FILE.yaml`) and command-line flags, so a flag
always overrides a preset value. Paths in a YAML file that start with `./` or `../` are relative to that file,
(also after `KIND=` in reward specs), which is how the `tiny` preset points at the models shipped beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import yaml
from transformers import HfArgumentParser

PRESETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "presets")
PRESET_NAMES = ("tiny", "gpt2")
DATA_DIR_ENV = "RLHF_DEMO_DATA"


def data_dir() -> str:
    """Where local copies of the real data live (IMDB as `imdb/`, GPT-2's tokenizer as `gpt2-tokenizer/`), for the
    tests, benchmarks and offline runs: the environment variable RLHF_DEMO_DATA, else `../shared/data` next to the
    repository root. The package itself never needs it: its defaults are Hub ids and the tiny preset's files."""
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.environ.get(DATA_DIR_ENV) or os.path.normpath(os.path.join(repo_root, "..", "shared", "data"))


def preset_path(name: str) -> str:
    """Path of the YAML file of preset `name`. Raises ValueError for an unknown preset."""
    if name not in PRESET_NAMES:
        raise ValueError(f"Unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}.")
    return os.path.join(PRESETS_DIR, f"{name}.yaml")


def load_yaml_config(path: str, section: str | None = None) -> dict[str, Any]:
    """Read a flat YAML mapping (or its `section` sub-mapping) and resolve `./`-relative paths.

    A preset file holds one section per command (`train`, `eval`, ...), each a mapping of field -> value;
    a user's file may be flat. Raises FileNotFoundError or ValueError with the offending file named.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Config file {path!r} does not exist.")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"Config file {path!r} must hold a mapping of option: value, not {type(data).__name__}.")
    if section is not None and isinstance(data.get(section), dict):
        data = data[section]
    elif section is not None and any(isinstance(v, dict) for v in data.values()):
        data = {}  # a sectioned file without this command's section
    base = os.path.dirname(os.path.abspath(path))

    def resolve(v):
        if isinstance(v, str) and v.startswith(("./", "../")):
            return os.path.normpath(os.path.join(base, v))
        if isinstance(v, str) and ("=./" in v or "=../" in v):  # reward specs: KIND=./path[@LABEL][:WEIGHT]
            kind, rel = v.split("=", 1)
            return f"{kind}={os.path.normpath(os.path.join(base, rel))}"
        if isinstance(v, list):
            return [resolve(x) for x in v]
        return v

    return {k: resolve(v) for k, v in data.items()}


def parse_config(dataclass_types, args: list[str] | None = None, section: str | None = None, prog: str | None = None, description: str | None = None):
    """Parse command-line `args` into instances of `dataclass_types` (a dataclass or a tuple of them).

    `--preset NAME` and `--config FILE.yaml` set defaults; explicit flags override them.
    Raises ValueError for a YAML key that no dataclass field accepts.
    """
    single = not isinstance(dataclass_types, (tuple, list))
    types = (dataclass_types,) if single else tuple(dataclass_types)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", choices=PRESET_NAMES, default=None)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(args)

    parser = HfArgumentParser(types, prog=prog, description=description)
    parser.add_argument("--preset", choices=PRESET_NAMES, default=None, help="Preset to start from: tiny (offline, shipped models) or gpt2 (Hub defaults).")
    parser.add_argument("--config", default=None, metavar="FILE.yaml", help="YAML file of option: value pairs; command-line flags override it.")
    defaults: dict[str, Any] = {}
    if known.preset:
        defaults.update(load_yaml_config(preset_path(known.preset), section))
    if known.config:
        defaults.update(load_yaml_config(known.config, section))
    accepted = {f.name for t in types for f in dataclasses.fields(t)}
    unknown = sorted(set(defaults) - accepted)
    if unknown:
        raise ValueError(f"Unknown option(s) in the config: {unknown}. Valid options: {sorted(accepted)}.")
    # As TRL's TrlParser: a value from a YAML file is the default of its flag, and a flag that argparse would require
    # (a dataclass field without default, e.g. push's --model) is no longer required once the file gives it.
    for action in parser._actions:
        if action.dest in defaults:
            action.default, action.required = defaults[action.dest], False
    outputs = parser.parse_args_into_dataclasses(args=args, return_remaining_strings=False)
    outputs = [o for o in outputs if dataclasses.is_dataclass(o)]
    return outputs[0] if single else tuple(outputs)


def save_config(config, path: str) -> None:
    """Write a config dataclass as YAML (the resolved config of a run)."""
    with open(path, "w") as f:
        yaml.safe_dump(dataclasses.asdict(config), f, sort_keys=False)


@dataclass
class PretrainConfig:
    """`rlhf-demo pretrain`: a byte-level BPE tokenizer and a small GPT-2 trained from scratch on IMDB reviews."""

    output_dir: str = field(default="runs/pretrain", metadata={"help": "Where the tokenizer, checkpoints and final model go."})
    dataset_name: str = field(default="stanfordnlp/imdb", metadata={"help": "Hub id or local path of the review dataset (train split for training, test split for the held-out report)."})
    vocab_size: int = field(default=8192, metadata={"help": "BPE vocabulary size, special tokens included."})
    n_layer: int = field(default=4, metadata={"help": "Transformer blocks."})
    n_embd: int = field(default=256, metadata={"help": "Hidden width."})
    n_head: int = field(default=4, metadata={"help": "Attention heads."})
    block_size: int = field(default=256, metadata={"help": "Training context in tokens (also the model's n_positions)."})
    batch_size: int = field(default=16, metadata={"help": "Sequences per optimizer step."})
    learning_rate: float = field(default=2e-3, metadata={"help": "Peak AdamW learning rate (linear warmup, cosine decay to min_lr_ratio x peak)."})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "Final learning rate as a fraction of the peak."})
    warmup_steps: int = field(default=100, metadata={"help": "Linear warmup steps."})
    max_steps: int = field(default=1000, metadata={"help": "Optimizer steps."})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay on matrices."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout on embeddings, attention and residuals (0 suits pretraining under one epoch, as in nanoGPT); also applied on --resume."})
    eval_reviews: int = field(default=1000, metadata={"help": "Held-out test reviews for the loss / perplexity / bits-per-byte report."})
    save_steps: int = field(default=100, metadata={"help": "Write a resumable checkpoint every N steps."})
    resume: bool = field(default=False, metadata={"help": "Resume from output_dir/checkpoint if present. A larger --max_steps extends a finished run: the cosine schedule is recomputed for the new length."})
    seed: int = field(default=0, metadata={"help": "Random seed."})

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}).")
        for name in ("vocab_size", "block_size", "batch_size", "max_steps", "save_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")


@dataclass
class RewardModelConfig:
    """`rlhf-demo reward-model`: a sentiment classifier initialised from a causal LM, trained on IMDB labels."""

    model_name_or_path: str = field(default="runs/pretrain", metadata={"help": "Causal LM (and its tokenizer) to start from, as Ziegler et al. initialise the reward model from the policy."})
    output_dir: str = field(default="runs/reward_model", metadata={"help": "Where the classifier goes."})
    dataset_name: str = field(default="stanfordnlp/imdb", metadata={"help": "Hub id or local path of a dataset with `text` and `label` (0=negative, 1=positive)."})
    max_length: int = field(default=256, metadata={"help": "Tokens kept per review (the last ones: reviews tend to conclude with the verdict)."})
    batch_size: int = field(default=32, metadata={"help": "Reviews per optimizer step."})
    learning_rate: float = field(default=3e-4, metadata={"help": "Peak AdamW learning rate (linear warmup then linear decay)."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Passes over the train split."})
    warmup_ratio: float = field(default=0.05, metadata={"help": "Fraction of steps used for warmup."})
    max_train_examples: int | None = field(default=None, metadata={"help": "Train on at most this many reviews (None: all 25,000)."})
    eval_examples: int | None = field(default=None, metadata={"help": "Test reviews for the accuracy report (None: the full 25,000)."})
    seed: int = field(default=0, metadata={"help": "Random seed."})


@dataclass
class PPOConfig:
    """`rlhf-demo train`: PPO with a per-token KL penalty against a frozen reference (Ziegler et al. 2019).

    Sizes: each PPO step samples `batch_size` episodes per process; the update runs `num_ppo_epochs` passes over
    them in `num_mini_batches` minibatches, each split into `gradient_accumulation_steps` micro-batches.
    The run lasts `total_episodes` episodes (all processes together), i.e. total_episodes / (batch_size x
    processes) PPO steps.
    """

    # --- models and data
    output_dir: str = field(default="runs/ppo", metadata={"help": "Run folder: the aligned policy, value model, checkpoints, metrics.jsonl."})
    model_name_or_path: str = field(default="openai-community/gpt2", metadata={"help": "Policy to align (Hub id or folder); its frozen copy is the reference."})
    reward: list[str] = field(default_factory=lambda: ["sentiment=lvwerra/distilbert-imdb@POSITIVE"], metadata={"help": "Reward function(s) as KIND=PATH_OR_ID[@LABEL][:WEIGHT], KIND in sentiment, toxicity, keyword; repeat the flag to sum several."})
    value_model_name_or_path: str | None = field(default=None, metadata={"help": "Backbone for the value model (needs the policy's tokenizer); None: the policy. Ziegler et al. start it from the reward model."})
    dataset_name: str = field(default="stanfordnlp/imdb", metadata={"help": "Prompt dataset: Hub id or local folder with a train split and a `text` column."})
    text_column: str = field(default="text", metadata={"help": "Column holding the review text."})
    min_review_chars: int = field(default=200, metadata={"help": "Keep reviews longer than this many characters."})
    min_query_tokens: int = field(default=2, metadata={"help": "Shortest query, in tokens."})
    max_query_tokens: int = field(default=8, metadata={"help": "Longest query, in tokens (length drawn uniformly)."})
    # --- rollout
    response_length: int = field(default=24, metadata={"help": "Response tokens to sample (the maximum when min_response_length is set)."})
    min_response_length: int | None = field(default=None, metadata={"help": "If set, each batch's response length is drawn uniformly from [min_response_length, response_length]."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature; log-probs are recomputed with logits / temperature."})
    top_k: int = field(default=0, metadata={"help": "Top-k sampling (0: off). Anything but 0 / top_p 1 makes PPO's ratio biased."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling (1.0: off)."})
    stop_at_eos: bool = field(default=False, metadata={"help": "Stop responses at EOS and mask what follows. Off by default: with it, policies learn to end early (Ziegler et al. used fixed lengths)."})
    # --- reward shaping
    kl_coef: float = field(default=0.05, metadata={"help": "Initial KL coefficient beta: per-token reward -beta * KL_t."})
    adaptive_kl: bool = field(default=False, metadata={"help": "Adapt beta toward target_kl (Ziegler et al. 2019, eq. 2)."})
    target_kl: float = field(default=6.0, metadata={"help": "Target KL per response in nats, for the adaptive controller."})
    kl_horizon: int = field(default=10000, metadata={"help": "Horizon of the adaptive KL controller, in episodes."})
    kl_estimator: str = field(default="k1", metadata={"help": "Per-token KL estimator: k1 (log p - log q) or k3 ((r - 1) - log r, r = q/p; Schulman 2020)."})
    missing_eos_penalty: float | None = field(default=None, metadata={"help": "Subtract this from the score of a response with no EOS (needs stop_at_eos)."})
    reward_clip: float | None = field(default=None, metadata={"help": "Clip scores to [-reward_clip, reward_clip]."})
    normalize_reward: bool = field(default=False, metadata={"help": "Standardise scores with running mean and std over all episodes so far."})
    # --- PPO
    total_episodes: int = field(default=10000, metadata={"help": "Episodes (query + response) to train on."})
    batch_size: int = field(default=64, metadata={"help": "Episodes per PPO step, per process."})
    num_mini_batches: int = field(default=1, metadata={"help": "Minibatches per PPO epoch."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per minibatch (memory only: same result)."})
    num_ppo_epochs: int = field(default=4, metadata={"help": "Passes over each batch of episodes."})
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate, decayed linearly to 0."})
    adam_eps: float = field(default=1e-5, metadata={"help": "AdamW epsilon (1e-5 as in PPO implementations, Huang et al. 2022)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Clip the global gradient norm."})
    gamma: float = field(default=1.0, metadata={"help": "Discount factor."})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda."})
    cliprange: float = field(default=0.2, metadata={"help": "PPO ratio clip epsilon."})
    cliprange_value: float = field(default=0.2, metadata={"help": "Value clip, around the rollout values."})
    vf_coef: float = field(default=0.1, metadata={"help": "Value loss coefficient."})
    ent_coef: float = field(default=0.0, metadata={"help": "Entropy bonus coefficient."})
    whiten_advantages: bool = field(default=True, metadata={"help": "Whiten advantages over the batch (masked)."})
    # --- LoRA
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters; the reference is the policy with adapters disabled (no second copy)."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout (0 keeps the first-minibatch ratio at exactly 1)."})
    lora_target_modules: list[str] = field(default_factory=lambda: ["c_attn", "c_proj", "c_fc"], metadata={"help": "Modules that get adapters (GPT-2 names)."})
    # --- logging and checkpoints
    logging_steps: int = field(default=1, metadata={"help": "Write metrics every N PPO steps."})
    sample_steps: int = field(default=10, metadata={"help": "Log a few sampled completions every N PPO steps (0: never)."})
    num_samples_logged: int = field(default=4, metadata={"help": "Completions logged each time."})
    report_to: str = field(default="none", metadata={"help": "Also log to: none, tensorboard or trackio."})
    save_steps: int = field(default=50, metadata={"help": "Checkpoint every N PPO steps (0: only at the end)."})
    save_total_limit: int = field(default=2, metadata={"help": "Keep only the last N checkpoints."})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "Resume from a checkpoint folder, or `latest` for the newest under output_dir/checkpoints."})
    seed: int = field(default=0, metadata={"help": "Random seed (data order, sampling, initialisation)."})
    num_threads: int | None = field(default=None, metadata={"help": "torch CPU threads (None: torch's default)."})
    progress_bar: bool = field(default=True, metadata={"help": "Show a tqdm progress bar over episodes."})

    def __post_init__(self):
        if self.batch_size % self.num_mini_batches:
            raise ValueError(f"batch_size ({self.batch_size}) must be divisible by num_mini_batches ({self.num_mini_batches}).")
        if (self.batch_size // self.num_mini_batches) % self.gradient_accumulation_steps:
            raise ValueError(
                f"The minibatch ({self.batch_size // self.num_mini_batches} episodes) must be divisible by "
                f"gradient_accumulation_steps ({self.gradient_accumulation_steps})."
            )
        if self.kl_estimator not in ("k1", "k3"):
            raise ValueError(f"kl_estimator must be 'k1' or 'k3', got {self.kl_estimator!r}.")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}.")
        if self.response_length < 1:
            raise ValueError(f"response_length must be at least 1, got {self.response_length}.")
        if self.min_response_length is not None and not 1 <= self.min_response_length <= self.response_length:
            raise ValueError(f"min_response_length must be in [1, response_length={self.response_length}], got {self.min_response_length}.")
        if self.missing_eos_penalty is not None and not self.stop_at_eos:
            raise ValueError("missing_eos_penalty needs stop_at_eos: without stopping at EOS no response contains one by design.")
        if self.report_to not in ("none", "tensorboard", "trackio"):
            raise ValueError(f"report_to must be none, tensorboard or trackio, got {self.report_to!r}.")
        for name in ("total_episodes", "batch_size", "num_mini_batches", "gradient_accumulation_steps", "num_ppo_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("cliprange", "cliprange_value", "learning_rate"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        if not 0 <= self.gamma <= 1 or not 0 <= self.lam <= 1:
            raise ValueError(f"gamma and lam must lie in [0, 1], got gamma={self.gamma}, lam={self.lam}.")
        if self.kl_coef < 0 or self.target_kl <= 0:
            raise ValueError(f"kl_coef must be >= 0 and target_kl > 0, got {self.kl_coef} and {self.target_kl}.")


@dataclass
class GenerateConfig:
    """`rlhf-demo generate`: sample continuations of a prompt from a causal LM."""

    model: str = field(default="tiny", metadata={"help": "Hub id, local folder, or preset name (tiny, gpt2)."})
    prompt: list[str] = field(default_factory=lambda: ["This movie"], metadata={"help": "Prompt(s) to continue; repeat the flag for several."})
    num_samples: int = field(default=3, metadata={"help": "Continuations per prompt."})
    max_new_tokens: int = field(default=24, metadata={"help": "Tokens to sample per continuation."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    top_k: int = field(default=0, metadata={"help": "Top-k (0: off)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold (1.0: off)."})
    seed: int = field(default=0, metadata={"help": "Random seed."})

    def __post_init__(self):
        if self.num_samples < 1 or self.max_new_tokens < 1:
            raise ValueError("num_samples and max_new_tokens must be at least 1.")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}.")


@dataclass
class EvalConfig:
    """`rlhf-demo eval`: compare an aligned policy with its reference on held-out prompts."""

    model: str = field(default=None, metadata={"help": "Aligned policy: a folder written by `rlhf-demo train` (its checkpoints/ give the reward-KL frontier), a Hub id or a preset name."})
    reference: str = field(default=None, metadata={"help": "Reference (the policy before alignment): folder, Hub id or preset (tiny, gpt2)."})
    output_dir: str = field(default="runs/eval", metadata={"help": "Where eval_results.json, eval_report.md, the plots and samples.jsonl go."})
    num_prompts: int = field(default=512, metadata={"help": "Held-out prompts (IMDB test split), the same for both models."})
    samples_per_prompt: int = field(default=1, metadata={"help": "Responses sampled per prompt and model."})
    max_new_tokens: int = field(default=24, metadata={"help": "Response length in tokens (the maximum when --stop_at_eos)."})
    stop_at_eos: bool = field(default=False, metadata={"help": "Stop responses at EOS; default samples exactly max_new_tokens tokens as in training (Ziegler et al. 2019)."})
    seed: int = field(default=0, metadata={"help": "Seeds the prompt choice and sampling; batch i of both models starts from seed + i (paired samples)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (KL is computed on logits divided by it, as sampled)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold (1.0: off)."})
    top_k: int = field(default=0, metadata={"help": "Top-k sampling (0: off)."})
    dataset_name: str = field(default="stanfordnlp/imdb", metadata={"help": "Hub id or local path of the review dataset."})
    split: str = field(default="test", metadata={"help": "Split the prompts come from: the held-out one, never the training prompts."})
    min_review_chars: int = field(default=200, metadata={"help": "Keep reviews longer than this many characters (0 for datasets of review heads, as the tiny preset ships)."})
    reward_model: str = field(default="lvwerra/distilbert-imdb", metadata={"help": "The training reward model (sequence classifier): folder, Hub id or preset (tiny, gpt2)."})
    reward_label: str = field(default="POSITIVE", metadata={"help": "Label of the reward model whose logit is the reward."})
    sentiment_judge: str = field(default="vader", metadata={"help": "Independent sentiment judge: `vader` (offline) or a transformers classifier, e.g. siebert/sentiment-roberta-large-english."})
    judge_positive_label: str = field(default="POSITIVE", metadata={"help": "Positive label of a transformers judge."})
    toxicity_judge: str = field(default="profanity-check", metadata={"help": "Toxicity judge: `profanity-check` (offline) or a transformers classifier, e.g. facebook/roberta-hate-speech-dynabench-r4-target."})
    toxic_label: str = field(default="hate", metadata={"help": "Toxic label of a transformers toxicity classifier."})
    batch_size: int = field(default=64, metadata={"help": "Prompts per generation / forward batch."})
    bootstrap_samples: int = field(default=1000, metadata={"help": "Paired bootstrap resamples for the 95%% confidence intervals (Efron & Tibshirani 1993)."})
    frontier: bool = field(default=True, metadata={"help": "Evaluate every checkpoints/checkpoint-*/ of --model for the reward-KL frontier."})
    frontier_num_prompts: int = field(default=128, metadata={"help": "The first N of the prompts score each checkpoint for the frontier (0: all); keeps a run with many checkpoints cheap."})
    num_report_samples: int = field(default=5, metadata={"help": "Sample pairs shown in eval_report.md."})

    def __post_init__(self):
        if not self.model:
            raise ValueError("--model is required: the aligned policy (a folder written by `rlhf-demo train` or a Hub id).")
        if not self.reference:
            raise ValueError("--reference is required: the policy before alignment (a folder, a Hub id, or a preset such as tiny).")
        if self.num_prompts < 1:
            raise ValueError(f"num_prompts must be at least 1, got {self.num_prompts}; the evaluation needs prompts to compare on.")
        for name in ("samples_per_prompt", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.bootstrap_samples < 100:
            raise ValueError(f"bootstrap_samples must be at least 100 for a 95% interval, got {self.bootstrap_samples}.")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}.")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        if self.frontier_num_prompts < 0:
            raise ValueError(f"frontier_num_prompts must be 0 (all prompts) or positive, got {self.frontier_num_prompts}.")
        if self.top_k < 0:
            raise ValueError(f"top_k must be 0 (off) or positive, got {self.top_k}.")


@dataclass
class PushConfig:
    """`rlhf-demo push`: upload a training run (policy, value model, card, evaluation) to the Hugging Face Hub."""

    model: str = field(metadata={"help": "Run directory written by `rlhf-demo train --output_dir` (the aligned policy at its top level)."})
    repo_id: str = field(metadata={"help": "Hub repository, NAMESPACE/NAME (created if missing)."})
    private: bool = field(default=False, metadata={"help": "Create the repository as private (an existing repository keeps its visibility)."})
    revision: str = field(default="main", metadata={"help": "Branch to commit to (created from main if missing)."})
    commit_message: str | None = field(default=None, metadata={"help": "Commit message (default: one naming the run)."})
    dry_run: bool = field(default=False, metadata={"help": "Write the folder that would be uploaded to --output_dir instead of pushing."})
    output_dir: str | None = field(default=None, metadata={"help": "Where --dry_run writes the folder (must be new or empty; default RUN_DIR_hub)."})
    include_checkpoints: bool = field(default=False, metadata={"help": "Also upload checkpoints/ (optimizer and scheduler state included)."})
    license: str = field(default="mit", metadata={"help": "License in the card metadata (GPT-2's is MIT)."})
    token: str | None = field(default=None, repr=False, metadata={"help": "Hub token with write access (default: HF_TOKEN, then the `hf auth login` token). Never printed."})
    endpoint: str | None = field(default=None, metadata={"help": "Hub URL (default: HF_ENDPOINT, else https://huggingface.co)."})
    max_retries: int = field(default=5, metadata={"help": "Retries of a request that failed with a connection error, 429 or 5xx."})
    retry_base_wait: float = field(default=1.0, metadata={"help": "Seconds before the first retry; doubled at each retry."})

    def __post_init__(self):
        if not self.model:
            raise ValueError("--model is required: the run directory written by `rlhf-demo train --output_dir`.")
        from huggingface_hub.errors import HFValidationError
        from huggingface_hub.utils import validate_repo_id

        try:
            validate_repo_id(self.repo_id)
        except HFValidationError as e:
            raise ValueError(f"--repo_id {self.repo_id!r} is not a valid Hub repository id (NAMESPACE/NAME): {e}") from None
        if not self.revision:
            raise ValueError("--revision must name a branch, e.g. main.")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}.")
        if self.retry_base_wait < 0:
            raise ValueError(f"retry_base_wait must be >= 0 seconds, got {self.retry_base_wait}.")
        if self.output_dir is not None and not self.dry_run:
            raise ValueError("--output_dir is only used with --dry_run; add --dry_run or drop --output_dir.")
        if self.dry_run and self.output_dir is None:
            self.output_dir = os.path.normpath(self.model) + "_hub"
