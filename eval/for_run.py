"""What follows training: the evaluation that makes a run complete, before it is pushed to the Hub.

`rlhf-demo train` ends with `evaluate_run(OUTPUT_DIR, N)` (and `rlhf-demo push` calls it for a run without
`eval/`): the evaluation suite (`rlhf_demo.eval.suite.run_eval`) of the final policy against the run's reference on N
held-out prompts, into `OUTPUT_DIR/eval`. Its settings come from the run's own `training_config.yaml`
(`eval_config_for_run`):

- reference: the run's base model (`model_name_or_path`), the policy before PPO;
- prompts: the test split of the run's prompt dataset with its `min_review_chars` (the tiny preset: the shipped
  review heads, min_review_chars 0) or its prompt-only options (column or template, max_prompt_length), sampled
  as in training (response length, temperature, top-k, top-p, EOS);
- reward model: the run's first `sentiment=` classifier (with its label) or `preference=` Bradley-Terry model. A run
  without one (toxicity, keyword, vader, python rewards) is scored by a sentiment classifier instead, the tiny
  preset's for a tiny-preset policy, else `lvwerra/distilbert-imdb`; its card then says the evaluation's reward model
  is not the training reward. `eval_reward_model` (`--eval_reward_model PATH_OR_ID[@LABEL]`) overrides all this.

`run_eval` writes the evaluation to a temporary folder and swaps it into place (`runs.atomic_dir`), so a crash never
leaves a half-written `eval/` for `push` to upload. (Formerly `rlhf_demo.publish`, which re-exports it for one release.)
"""

from __future__ import annotations

import logging
import os

import yaml

from rlhf_demo.config import EvalConfig
from rlhf_demo.errors import MissingInputError, UserInputError

logger = logging.getLogger(__name__)

EVAL_DIR = "eval"
DEFAULT_EVAL_REWARD = ("lvwerra/distilbert-imdb", "POSITIVE")  # the gpt2 preset's reward, EvalConfig's default


def _reward_model_label(path: str) -> str:
    """The only label of a one-logit (Bradley-Terry) reward model, from its config ("LABEL_0" by default)."""
    try:
        from transformers import AutoConfig

        labels = list((AutoConfig.from_pretrained(path).id2label or {}).values())
    except (OSError, ValueError):
        labels = []
    return str(labels[0]) if len(labels) == 1 else "LABEL_0"


def eval_reward_model(specs: list[str] | str | None, base_model: str | None,
                      override: str | None = None) -> tuple[str, str]:
    """(reward model, label) that scores a run's evaluation: `override` (PATH_OR_ID[@LABEL]) when given, else the
    first sentiment classifier or Bradley-Terry model among the run's reward `specs`, else a sentiment classifier
    (the tiny preset's for a tiny-preset base model, else lvwerra/distilbert-imdb). Never loads a model but to read
    a one-logit model's label."""
    from rlhf_demo.models import PRESET_POLICIES, PRESET_REWARD_MODELS, resolve_model_path
    from rlhf_demo.rewards import split_reward_spec

    if override:
        path, _, label = override.rpartition("@") if "@" in override else (override, "", "")
        return resolve_model_path(path, PRESET_REWARD_MODELS), label or "POSITIVE"
    for spec in [specs] if isinstance(specs, str) else (specs or []):
        try:
            parsed = split_reward_spec(str(spec))
        except ValueError:
            continue
        if parsed.kind == "sentiment":
            return parsed.target, parsed.label or "POSITIVE"
        if parsed.kind == "preference":
            return parsed.target, _reward_model_label(parsed.target)
    tiny = os.path.normpath(PRESET_POLICIES["tiny"])
    if base_model and os.path.normpath(os.path.abspath(resolve_model_path(base_model))) == tiny:
        return PRESET_REWARD_MODELS["tiny"], "POSITIVE"
    return DEFAULT_EVAL_REWARD


def read_training_config(run_dir: str) -> dict:
    """The run's `training_config.yaml` as a dict. Raises MissingInputError when it is missing (the run's reference
    is then unknown), UserInputError when it is not a YAML mapping."""
    path = os.path.join(run_dir, "training_config.yaml")
    if not os.path.isfile(path):
        eval_dir = os.path.join(run_dir, EVAL_DIR)
        raise MissingInputError(
            f"{run_dir!r} has no training_config.yaml, so its reference model is unknown: evaluate it with "
            f"`rlhf-demo eval --model {run_dir} --reference BASE_MODEL --output_dir {eval_dir}`, "
            "or push it unevaluated with --eval_num_prompts 0.")
    try:
        with open(path, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise UserInputError(f"{path!r} is not readable YAML ({type(e).__name__}); restore it from the run.") from None
    if not isinstance(cfg, dict) or not cfg.get("model_name_or_path"):
        raise UserInputError(f"{path!r} names no model_name_or_path (the reference); restore it from the run.")
    return cfg


def eval_config_for_run(run_dir: str, train_cfg: dict, num_prompts: int, reward_model: str | None = None,
                        output_dir: str | None = None) -> EvalConfig:
    """The EvalConfig of the evaluation of the run in `run_dir` trained with `train_cfg` (its training_config.yaml
    as a dict): see the module docstring. `output_dir` defaults to RUN/eval. Raises UserInputError for
    num_prompts < 1."""
    rm, label = eval_reward_model(train_cfg.get("reward"), train_cfg.get("model_name_or_path"),
                                  reward_model or train_cfg.get("eval_reward_model"))
    same = {k: train_cfg[k] for k in ("temperature", "top_p", "top_k", "stop_at_eos", "seed", "min_review_chars",
                                      "prompt_column", "prompt_template", "max_prompt_length", "truncation_side")
            if train_cfg.get(k) is not None}
    if num_prompts < 1:
        raise UserInputError(f"The evaluation needs at least 1 prompt, got {num_prompts}.")
    return EvalConfig(model=os.path.abspath(run_dir), reference=train_cfg["model_name_or_path"],
                      output_dir=output_dir or os.path.join(run_dir, EVAL_DIR), num_prompts=num_prompts,
                      max_new_tokens=int(train_cfg.get("response_length") or 24),
                      dataset_name=train_cfg.get("dataset_name") or "stanfordnlp/imdb", split="test",
                      reward_model=rm, reward_label=label, **same)


def evaluate_run(run_dir: str, num_prompts: int = 256, reward_model: str | None = None) -> dict:
    """Evaluate the final policy of the run in `run_dir` against its reference on `num_prompts` held-out prompts,
    into RUN/eval (written to a temporary folder, then swapped in: `runs.atomic_dir`); return eval_results.json's dict.
    Progress bars show the sampling. Raises MissingInputError without training_config.yaml, and what
    `rlhf_demo.eval.suite.run_eval` raises (a missing model or dataset, no prompts)."""
    from rlhf_demo.eval.suite import run_eval

    cfg = eval_config_for_run(run_dir, read_training_config(run_dir), num_prompts, reward_model)
    logger.info("Evaluating %s against its reference %s on %d held-out prompts of %s into %s.", run_dir,
                cfg.reference, num_prompts, cfg.dataset_name, cfg.output_dir)
    print(f"Evaluating the final policy against the reference on {num_prompts} held-out prompts -> {cfg.output_dir}",
          flush=True)
    return run_eval(cfg)  # which writes RUN/eval whole or not at all (`runs.atomic_dir`)


def eval_summary(results: dict) -> str:
    """One line of an evaluation's headline numbers: reward, judge and KL of the aligned model vs the reference."""
    ref, ali = results["metrics"]["reference"], results["metrics"]["aligned"]
    diff = results["differences"]["reward_mean"]
    return (f"reward {ref['reward_mean']:.3f} -> {ali['reward_mean']:.3f} (difference {diff['diff']:+.3f}, 95% CI "
            f"[{diff['ci_low']:.3f}, {diff['ci_high']:.3f}]), judge positive rate {ref['judge_positive_rate']:.1%} -> "
            f"{ali['judge_positive_rate']:.1%}, KL {ali['kl_to_reference_mean']:.2f} nats, reward hacking flag "
            f"{'raised' if results['reward_hacking_flag'] else 'not raised'}.")

