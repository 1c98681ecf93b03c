"""Moved to `rlhf_demo.eval.for_run` (the evaluation that completes a run); this alias goes in the next release."""
from .eval.for_run import (DEFAULT_EVAL_REWARD, EVAL_DIR, eval_config_for_run, eval_reward_model,  # noqa: F401
                           eval_summary, evaluate_run, read_training_config)
