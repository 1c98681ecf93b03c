"""The `rlhf-demo` command line: one subcommand per job.

    rlhf-demo train --preset tiny --output_dir runs/tiny     # PPO, the main job
    rlhf-demo eval --model runs/tiny --reference tiny         # aligned vs reference
    rlhf-demo push --model runs/tiny --repo_id you/name       # model card + one Hub commit
Every subcommand takes `--preset tiny|gpt2|smollm2|flan-t5-detox`, `--config FILE.yaml` and explicit flags (flags
win); `--help` on a subcommand lists its options.
"""

from __future__ import annotations

import sys

COMMANDS = {
    "train": "Align a policy with PPO against reward functions and a frozen reference (the main job).",
    "eval": "Compare an aligned model with its reference: reward, judge sentiment, toxicity, KL, fluency, diversity.",
    "push": "Write the model card and upload a run folder to the Hugging Face Hub in one commit.",
    "generate": "Print sampled continuations of a prompt from a model, Hub id or preset.",
    "pretrain": "Train the tiny preset's tokenizer and GPT-2 policy from scratch on IMDB reviews.",
    "reward-model": "Train a reward model: Bradley-Terry on preference pairs (--preferences), or a classifier.",
    "preferences": "Sample pairs of continuations and label them with a simulated annotator (TRL preference format).",
    "loop": "Rounds of RLHF: label pairs of the current policy, retrain the reward model, run PPO, evaluate.",
    "space": "Launch the Gradio Space locally: reference vs aligned side by side, feedback, publishing.",
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: rlhf-demo COMMAND [--preset tiny|gpt2|smollm2|flan-t5-detox] [--config FILE.yaml] [options]", "",
             "Align GPT-2-family language models with RLHF (PPO with a KL penalty against a reference).", "",
             "commands:"]
    lines += [f"  {name.ljust(width)}  {text}" for name, text in COMMANDS.items()]
    lines += ["", "Run `rlhf-demo COMMAND --help` for a command's options.",
              "Quick start (offline): rlhf-demo train --preset tiny --output_dir runs/tiny"]
    return "\n".join(lines)


def cmd_train(argv):
    from .config import PPOConfig, parse_config
    from .ppo import PPOTrainer

    cfg = parse_config(PPOConfig, argv, section="train", prog="rlhf-demo train", description=COMMANDS["train"])
    no_eval = _no_eval_note(cfg)
    # The trainer's Accelerator is the first accelerate state of the process: one made before it (accelerate's
    # PartialState() without cpu=True) read a CPU-only torchrun launch as N separate single processes, each of which
    # then wrote the run folder as the main one.
    trainer = PPOTrainer(cfg)
    main = trainer.accelerator.is_main_process
    if no_eval and main:
        print(no_eval, file=sys.stderr)
    metrics = trainer.train()
    if trainer.world_size > 1:  # all processes leave together, once the main one has exported the run (a rank that
        import torch.distributed as dist  # exited first, its process group open, could abort the others)

        trainer.accelerator.wait_for_everyone()
        dist.destroy_process_group()
    if not main:  # the evaluation and the push run once
        return
    print(f"Aligned policy saved to {cfg.output_dir} (final score {metrics.get('objective/scores', float('nan')):.3f}, "
          f"KL {metrics.get('objective/kl', float('nan')):.3f} nats).")
    if no_eval:
        print(no_eval, file=sys.stderr)
    elif cfg.eval_num_prompts:  # the run is complete with its evaluation against the reference (RUN/eval)
        from .eval.for_run import eval_summary, evaluate_run

        results = evaluate_run(cfg.output_dir, cfg.eval_num_prompts, cfg.eval_reward_model)
        print(f"Evaluation in {cfg.output_dir}/eval: {eval_summary(results)}")
    if cfg.push_to_hub:
        from .config import PushConfig
        from .hub import HubPushError, push

        try:
            print(push(PushConfig(model=cfg.output_dir, repo_id=cfg.hub_model_id, private=cfg.hub_private_repo,
                                  eval_num_prompts=0)))
        except HubPushError as e:
            print(f"error: {e} The run is saved in {cfg.output_dir}: push it again with `rlhf-demo push --model "
                  f"{cfg.output_dir} --repo_id {cfg.hub_model_id}`.", file=sys.stderr)
            raise SystemExit(1) from None


def _no_eval_note(cfg) -> str | None:
    """The note that replaces the end-of-training evaluation when the prompt dataset has no test split (evaluating on
    training prompts would flatter the aligned model), or None when the evaluation runs (or is off)."""
    from .data import has_split

    if not cfg.eval_num_prompts or has_split(cfg.dataset_name, "test") is not False:
        return None
    return (f"note: the prompt dataset {cfg.dataset_name!r} has no test split, so the evaluation against the reference "
            "that ends training is skipped (its training prompts would flatter the aligned model). Evaluate on "
            f"held-out prompts with `rlhf-demo eval --model {cfg.output_dir} --dataset_name "
            "DATASET_WITH_A_TEST_SPLIT` (or --split NAME), or pass --eval_num_prompts 0 to drop this note.")


def cmd_eval(argv):
    from .config import EvalConfig, parse_config
    from .eval.suite import run_eval

    cfg = parse_config(EvalConfig, argv, section="eval", prog="rlhf-demo eval", description=COMMANDS["eval"])
    run_eval(cfg)


def cmd_push(argv):
    from .config import PushConfig, parse_config
    from .hub import HubPushError, push

    cfg = parse_config(PushConfig, argv, section="push", prog="rlhf-demo push", description=COMMANDS["push"])
    try:
        where = push(cfg)
        if cfg.dry_run:  # say what was written: the files a real push would upload, by kind
            import os

            files = [os.path.relpath(os.path.join(d, n), where) for d, _, names in os.walk(where) for n in names]
            kinds = {"model card": sum(f == "README.md" for f in files),
                     "evaluation": sum(f.startswith("eval" + os.sep) for f in files),
                     "value model": sum(f.startswith("value_model" + os.sep) for f in files),
                     "adapter": sum(f.startswith("adapter" + os.sep) for f in files),
                     "TensorBoard": sum(f.startswith("runs" + os.sep) for f in files)}
            parts = ", ".join(f"{n} {kind}" for kind, n in kinds.items() if n)
            print(f"Dry run: wrote the {len(files)} files a push to {cfg.repo_id} would upload ({parts} among them) "
                  "into:")
        print(where)
        if cfg.space:  # the Space that shows this model next to its reference, from the Hub
            from .space_deploy import push_space

            print(push_space(cfg))
    except HubPushError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None


def cmd_generate(argv):
    from .config import GenerateConfig, parse_config
    from .models import load_causal_lm
    from .sampling import generate

    cfg = parse_config(GenerateConfig, argv, section="generate", prog="rlhf-demo generate",
                       description=COMMANDS["generate"])
    model, tokenizer = load_causal_lm(cfg.model, "model (--model)")
    for p, prompt in enumerate(cfg.prompt):
        out = generate(model, tokenizer, [prompt] * cfg.num_samples, max_new_tokens=cfg.max_new_tokens,
                       temperature=cfg.temperature,
                       top_k=cfg.top_k, top_p=cfg.top_p, stop_at_eos=True, seed=cfg.seed + p)
        for i, text in enumerate(out.texts):  # a causal LM continues the prompt; an encoder-decoder LM answers it
            print(f"[{i + 1}] {text}" if model.config.is_encoder_decoder else f"[{i + 1}] {prompt}{text}")


def cmd_pretrain(argv):
    from .config import PretrainConfig, parse_config
    from .pretrain import pretrain

    pretrain(parse_config(PretrainConfig, argv, section="pretrain", prog="rlhf-demo pretrain",
                          description=COMMANDS["pretrain"]))


def cmd_reward_model(argv):
    from .config import RewardModelConfig, parse_config
    from .reward_model import train_preference_reward_model, train_reward_model

    cfg = parse_config(RewardModelConfig, argv, section="reward-model", prog="rlhf-demo reward-model",
                       description=COMMANDS["reward-model"])
    (train_preference_reward_model if cfg.preferences else train_reward_model)(cfg)


def cmd_preferences(argv):
    from .config import PreferencesConfig, parse_config
    from .annotate import collect_preferences

    collect_preferences(parse_config(PreferencesConfig, argv, section="preferences", prog="rlhf-demo preferences",
                                     description=COMMANDS["preferences"]))


def cmd_loop(argv):
    from .config import LoopConfig, parse_config
    from .loop import run_loop

    run_loop(parse_config(LoopConfig, argv, section="loop", prog="rlhf-demo loop", description=COMMANDS["loop"]))


def cmd_space(argv):
    from .space.app import main as space_main  # the Space ships inside the package as rlhf_demo.space

    space_main(argv)


HANDLERS = {"train": cmd_train, "eval": cmd_eval, "push": cmd_push, "generate": cmd_generate, "pretrain": cmd_pretrain,
            "reward-model": cmd_reward_model, "preferences": cmd_preferences, "loop": cmd_loop, "space": cmd_space}


def main(argv: list[str] | None = None) -> None:
    """Run `rlhf-demo COMMAND ...`. A user error (`errors.UserInputError`: a bad option, file or model) prints one
    line `error: ...` to stderr and exits with status 2; argparse's own errors exit 2 with its usage; any other
    exception is a bug and keeps its traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"rlhf-demo {__version__}")
        return
    command, rest = argv[0], argv[1:]
    if command not in HANDLERS:
        raise SystemExit(f"error: unknown command {command!r}.\n\n{_usage()}")
    from .errors import UserInputError, one_line

    quiet_library_bars()
    try:
        HANDLERS[command](rest)
    except UserInputError as e:  # the user's to fix: one clear line, no traceback; any other exception is a bug
        print(f"error: {one_line(e)}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as e:  # noqa: BLE001 - only the machine's own faults (by errno) become one line; others re-raise
        message = environment_error(e, command)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def quiet_library_bars() -> None:
    """Turn off the libraries' own per-file progress bars (transformers' "Loading weights" / "Writing model shards",
    datasets' "Map" / "Filter" over a few rows), which read as noise beside the commands' own bars (PPO episodes,
    sampling, evaluation); `RLHF_DEMO_VERBOSE=1` keeps them. Downloads keep huggingface_hub's bars, and warnings
    are untouched."""
    import os

    if os.environ.get("RLHF_DEMO_VERBOSE"):
        return
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()


def environment_error(error: BaseException, command: str) -> str | None:
    """One line for a fault of the machine rather than of the package: a full disk (ENOSPC, EDQUOT), a read-only file
    system (EROFS), or a file the user may not read or write (EACCES, EPERM, with the file named), raised as an
    OSError or as safetensors' error with its `(os error N)`; None for anything else (a bug keeps its traceback)."""
    import errno
    import re

    code, path = None, None
    if isinstance(error, OSError):
        code, path = error.errno, error.filename
    elif type(error).__name__ == "SafetensorError" and (m := re.search(r"\(os error (\d+)\)", str(error))):
        code = int(m.group(1))
    where = f" ({path!r})" if path else ""
    again = (" A training run continues from its last checkpoint with --resume_from_checkpoint latest."
             if command == "train" else "")
    if code in (errno.ENOSPC, errno.EDQUOT):
        return (f"No space left on the device{where}; free space on that disk, or write to another one (--output_dir), "
                f"then run the same command again.{again}")
    if code == errno.EROFS:
        return f"A file system is read-only{where}; pass a path on a disk you can write to.{again}"
    if code in (errno.EACCES, errno.EPERM) and path:
        return (f"Permission denied on {path!r}; give yourself access to it (chmod / chown), or pass another path."
                f"{again}")
    return None


if __name__ == "__main__":
    main()
