"""Speed benchmark: rlhf-demo PPO against TRL's online trainers on the same models, prompts and reward.

    python benchmarks/rlhf_speed.py --budget_s 600 --target_reward 2.0 --output benchmarks/results

Runs, one after another, each for the same wall-clock training budget:
    rlhf_demo_ppo  rlhf_demo.ppo.PPOTrainer, driven step by step
    trl_rloo       trl.RLOOTrainer (main venv)
    trl_grpo       trl.GRPOTrainer with beta > 0 (main venv)
    trl_ppo_1_12   trl.experimental.ppo.PPOTrainer from TRL 1.12, the last release with PPO, in its own
                   virtualenv (benchmarks/trl_ppo_1_12_runner.py; skipped with a reason when the venv is missing)
Each trainer runs in its own subprocess (fresh memory, so peak RSS is its own; model loading is not timed).
Shared settings: the policy and reward model (logit of POSITIVE on query + response), the IMDB train prompts,
fixed-length responses, temperature, KL coefficient beta, episodes per step, optimisation epochs per batch,
learning rate (constant). Every `eval_every_s` seconds of training time the training clock pauses and the
policy is evaluated on the same held-out IMDB test prompts: mean reward and KL(policy || reference) in nats
per response (k1 estimator, on responses sampled from the policy). Time to target = training time of the
first evaluation with mean reward >= target and KL <= max_kl.

Machine limit: the fp32 matmul rate torch reaches with the thread count the trainers use. Model FLOP
utilisation (MFU, as in nanoGPT / PaLM appendix B) with N = the policy's parameters without position
embeddings (the tied embedding counts once, as the LM head's matmul):
    rollout MFU = 2 N x generated tokens / rollout seconds / matmul rate
    update MFU  = 6 N x trained tokens (query + response, per optimisation epoch) / update seconds / matmul rate
Rollout seconds = sampling + the no-grad forward passes + scoring that prepare a batch; update seconds = the
rest of the training time. Only the policy's FLOPs are counted (not the reference, value or reward model).

Outputs `<output>/<date>-<machine>.json`, `.md` (a table) and `.png` (reward against training time).
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time

import torch

from rlhf_demo.config import data_dir

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PRESET_DIR = os.path.join(REPO, "rlhf_demo", "presets", "tiny")
TRAINERS = ("rlhf_demo_ppo", "trl_rloo", "trl_grpo", "trl_ppo_1_12")
LOCAL_IMDB = os.path.join(data_dir(), "imdb")
DEFAULT_IMDB = LOCAL_IMDB if os.path.isdir(LOCAL_IMDB) else "stanfordnlp/imdb"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--budget_s", type=float, default=600.0, help="Training wall-clock budget per trainer (evaluation "
                                                                 "pauses the clock).")
    p.add_argument("--target_reward", type=float, default=None, help="Held-out mean reward to reach (None: time to "
                                                                     "target is null for all).")
    p.add_argument("--max_kl", type=float, default=6.0, help="The target counts only at KL to the reference <= this "
                                                             "(nats per response).")
    p.add_argument("--output", default=os.path.join(HERE, "results"),
                   help="Folder for the .json, .md and .png results.")
    p.add_argument("--trainers", default=",".join(TRAINERS), help=f"Comma-separated subset of {', '.join(TRAINERS)}.")
    p.add_argument("--policy", default=os.path.join(PRESET_DIR, "policy"), help="Policy (and its tokenizer); its "
            "frozen copy is the reference.")
    p.add_argument("--reward_model", default=os.path.join(PRESET_DIR, "reward_model"), help="Sentiment classifier with "
            "a POSITIVE label; reward = its logit.")
    p.add_argument("--dataset", default=DEFAULT_IMDB, help="IMDB: train split for training prompts, test split for the "
                                                           "held-out prompts.")
    p.add_argument("--batch_size", type=int, default=64, help="Episodes (query + response) per rollout, every trainer.")
    p.add_argument("--num_ppo_epochs", type=int, default=4, help="Optimisation passes over each rollout (TRL: "
                                                                 "num_iterations).")
    p.add_argument("--num_mini_batches", type=int, default=1, help="Optimizer steps per pass over each rollout, "
                   "every trainer (PPO: num_mini_batches; RLOO/GRPO: steps_per_generation, per-device batch "
                   "batch_size / this).")
    p.add_argument("--num_generations", type=int, default=4, help="RLOO/GRPO: completions per prompt (batch_size / "
                                                                  "this prompts per rollout).")
    p.add_argument("--response_length", type=int, default=24, help="Response tokens, fixed (no stop at EOS).")
    p.add_argument("--temperature", type=float, default=1.0, help="Sampling temperature, training and evaluation.")
    p.add_argument("--kl_coef", type=float, default=0.05, help="KL coefficient beta, every trainer.")
    p.add_argument("--learning_rate", type=float, default=1e-5, help="Constant learning rate, every trainer.")
    p.add_argument("--value_head_init", choices=("auto", "zero", "reward_model"), default="auto",
                   help="rlhf_demo_ppo: start of its value head (PPOConfig.value_head_init; auto: the reward model's "
                        "margin W_pos - W_neg, as TRL 1.12's PPO gets here).")
    p.add_argument("--value_head_on_policy", type=lambda v: v.lower() in ("1", "true", "yes"), default=False,
                   help="rlhf_demo_ppo: the value head on the policy's trunk instead of a separate value model "
                        "(PPOConfig.value_head_on_policy; true/false).")
    p.add_argument("--train_reward_padding_side", choices=("right", "left"), default="right",
                   help="rlhf_demo_ppo: the padding side of its training reward's classifier. left: the "
                        "batch-dependent scores of rlhf-demo before its reward classifiers padded on the right (the "
                        "GPT-2 classifier gets no position ids), to measure what that fix buys; the evaluation always "
                        "pads right.")
    p.add_argument("--eval_every_s", type=float, default=60.0,
                   help="Evaluate every this many seconds of training time.")
    p.add_argument("--eval_prompts", type=int, default=256, help="Held-out test prompts for the evaluation.")
    p.add_argument("--threads", type=int, default=None, help="torch threads for the matmul probe and every trainer "
                                                             "(default: torch's).")
    p.add_argument("--trl112_python", default=os.path.join(HERE, ".venv-trl112", "bin", "python"), help="Python of the "
            "TRL 1.12 virtualenv.")
    p.add_argument("--trl112_reward_head", choices=("pos", "margin"), default="pos",
                   help="TRL 1.12 PPO's 1-label reward model: head W_pos (the POSITIVE logit, as the others) or W_pos "
                        "- W_neg.")
    p.add_argument("--work_dir", default=None, help="Scratch folder (trainer output dirs, logs); default: a new "
                                                    "temporary folder.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed_changes", default=None,
                   help="JSON list written by profile_ppo_step.py --record (our PPO before/after each speed change) to "
                        "include in the results.")
    p.add_argument("--notes", default=None, help="Markdown file with the analysis (what limits each goal) to include "
                                                 "in the results.")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_worker_out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.trainers = [t.strip() for t in args.trainers.split(",") if t.strip()]
    unknown = [t for t in args.trainers if t not in TRAINERS]
    if unknown:
        p.error(f"unknown trainer(s) {unknown}; choose from {', '.join(TRAINERS)}")
    if args.batch_size % args.num_generations:
        p.error(f"--batch_size ({args.batch_size}) must be divisible by --num_generations ({args.num_generations})")
    if args.threads is None:
        args.threads = torch.get_num_threads()
    return args


# ----------------------------------------------------------------------------------------------------------
# Shared by every worker (also imported by trl_ppo_1_12_runner.py in the TRL 1.12 venv: keep imports light)


def policy_flop_params(model) -> int:
    """N for the 2N / 6N FLOP estimates: all parameters except position embeddings (tied weights once)."""
    return sum(p.numel() for name, p in model.named_parameters() if "wpe" not in name and "position" not in name)


def config_subset(config, keys) -> dict:
    """The algorithm settings a trainer ran with (those of `keys` its config has), for the results file."""
    return {k: getattr(config, k) for k in keys if hasattr(config, k)}


ALGO_KEYS = ("batch_size", "per_device_train_batch_size", "num_generations", "num_iterations", "num_ppo_epochs",
             "num_mini_batches", "steps_per_generation",
             "learning_rate", "kl_coef", "beta", "kl_estimator", "cliprange", "epsilon", "cliprange_value", "vf_coef",
             "value_head_init", "value_head_on_policy", "gamma", "lam", "loss_type", "scale_rewards",
             "normalize_advantages", "whiten_rewards",
             "temperature",
             "response_length", "max_completion_length", "gradient_checkpointing", "bf16")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class HeldOutEval:
    """Mean reward and KL to the reference of a policy on fixed held-out prompts (IMDB test split).

    Responses are sampled with a fixed seed (the caller's RNG state is restored afterwards), so every trainer
    and every evaluation sees the same prompts and the same random stream.
    """

    def __init__(self, args, reward_fn=None):
        from rlhf_demo.data import build_prompt_dataset
        from rlhf_demo.models import load_policy, load_tokenizer, pad_left
        from rlhf_demo.rewards import ClassifierReward

        self.args = args
        self.tokenizer = load_tokenizer(args.policy)
        self.ref = load_policy(args.policy).requires_grad_(False)
        self.reward_fn = reward_fn or ClassifierReward(args.reward_model, label="POSITIVE", kind="logit")
        ds = build_prompt_dataset(self.tokenizer, args.dataset, "test", num_prompts=args.eval_prompts, seed=0)
        self.queries = list(ds["query"])
        self.query_ids, self.query_mask = pad_left(list(ds["input_ids"]), self.tokenizer.pad_token_id)

    @torch.no_grad()
    def __call__(self, policy, batch: int = 64) -> dict[str, float]:
        from rlhf_demo.models import response_logprobs
        from rlhf_demo.sampling import sample

        was_training = policy.training
        policy.eval()
        scores, kls = [], []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.args.seed + 12345)
            for i in range(0, len(self.queries), batch):
                q, m = self.query_ids[i : i + batch], self.query_mask[i : i + batch]
                resp, rmask = sample(policy, q, m, max_new_tokens=self.args.response_length,
                                     temperature=self.args.temperature,
                                     pad_token_id=self.tokenizer.pad_token_id)
                lp = response_logprobs(policy, q, m, resp, rmask, self.args.temperature)
                ref_lp = response_logprobs(self.ref, q, m, resp, rmask, self.args.temperature)
                kls.extend((lp - ref_lp).sum(1).tolist())
                texts = self.tokenizer.batch_decode(resp, skip_special_tokens=True)
                scores.extend(self.reward_fn(self.queries[i : i + batch], texts))
        policy.train(was_training)
        return {"reward": sum(scores) / len(scores), "kl": sum(kls) / len(kls)}


class Recorder:
    """The training clock (paused during evaluation), the throughput counters and the evaluation curve."""

    def __init__(self, args, evaluator: HeldOutEval):
        self.args, self.evaluator = args, evaluator
        self.train_s = 0.0
        self._t = None
        self.episodes = self.steps = 0
        self.rollout_s = 0.0
        self.rollout_tokens = 0  # generated response tokens
        self.update_tokens = 0  # (query + response) tokens, counted once per optimisation pass
        self.evals: list[dict] = []
        self.next_eval = 0.0
        self.n_params = None
        self.trainer_config: dict = {}

    def start(self):
        self._t = time.perf_counter()

    def now(self) -> float:
        return self.train_s + (time.perf_counter() - self._t if self._t is not None else 0.0)

    def done(self) -> bool:
        return self.now() >= self.args.budget_s

    def maybe_eval(self, policy, force: bool = False):
        """Evaluate when the clock has passed the next evaluation time (or `force`); the clock stops meanwhile."""
        t = self.now()
        if not force and t < self.next_eval:
            return
        self.train_s, self._t = t, None  # pause
        t0 = time.perf_counter()
        result = self.evaluator(policy)
        self.evals.append({"train_s": round(t, 3), "episodes": self.episodes, **result,
                           "eval_s": round(time.perf_counter() - t0, 2)})
        print(f"[eval] t={t:7.1f}s episodes={self.episodes:6d} reward={result['reward']:.3f} kl={result['kl']:.3f}",
              flush=True)
        while self.next_eval <= t:
            self.next_eval += self.args.eval_every_s
        self.start()

    def finish(self, policy) -> dict:
        if self._t is not None:
            self.train_s, self._t = self.now(), None
        if not self.evals or self.evals[-1]["episodes"] != self.episodes:  # the final policy, unless just evaluated
            self.maybe_eval(policy, force=True)
            self.train_s, self._t = self.now(), None
        train_s = max(self.train_s, 1e-9)
        update_s = max(train_s - self.rollout_s, 1e-9)
        return {
            "status": "ok",
            "train_s": round(train_s, 3),
            "steps": self.steps,
            "episodes": self.episodes,
            "episodes_per_s": self.episodes / train_s,
            "rollout_s": round(self.rollout_s, 3),
            "update_s": round(update_s, 3),
            "rollout_tokens": self.rollout_tokens,
            "update_tokens": self.update_tokens,
            "rollout_tokens_per_s": self.rollout_tokens / max(self.rollout_s, 1e-9),
            "update_tokens_per_s": self.update_tokens / update_s,
            "n_params": self.n_params,
            "trainer_config": self.trainer_config,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "threads": torch.get_num_threads(),
            "evals": self.evals,
        }


# ----------------------------------------------------------------------------------------------------------
# Workers (one subprocess each)


def train_prompts(args, tokenizer):
    from rlhf_demo.data import build_prompt_dataset

    return build_prompt_dataset(tokenizer, args.dataset, "train", seed=args.seed)


def build_rlhf_demo_ppo(args):
    """Our PPOTrainer with the benchmark's settings (also used by profile_ppo_step.py). Returns the trainer."""
    from rlhf_demo.config import PPOConfig
    from rlhf_demo.models import load_tokenizer
    from rlhf_demo.ppo import PPOTrainer
    from rlhf_demo.rewards import ClassifierReward

    reward_fn = ClassifierReward(args.reward_model, label="POSITIVE", kind="logit")
    reward_fn.tokenizer.padding_side = getattr(args, "train_reward_padding_side", "right")
    tokenizer = load_tokenizer(args.policy)
    cfg = PPOConfig(
        output_dir=os.path.join(args.work_dir, "rlhf_demo_ppo"), model_name_or_path=args.policy,
        # The spec of reward_fn: value_head_init auto finds the reward model's label in it (reward_fn scores).
        reward=[f"sentiment={args.reward_model}@POSITIVE"],
        value_model_name_or_path=args.reward_model,  # Ziegler et al.: the value model starts from the reward model
        dataset_name=args.dataset, response_length=args.response_length, temperature=args.temperature,
        kl_coef=args.kl_coef, batch_size=args.batch_size, num_mini_batches=args.num_mini_batches,
        num_ppo_epochs=args.num_ppo_epochs, value_head_init=args.value_head_init,
        value_head_on_policy=args.value_head_on_policy,
        learning_rate=args.learning_rate,
        total_episodes=10**9,  # lr decays over total_episodes: ~constant here
        save_steps=0, sample_steps=0, progress_bar=False, seed=args.seed, num_threads=args.threads,
    )
    return PPOTrainer(cfg, tokenizer=tokenizer, reward_fn=reward_fn, train_dataset=train_prompts(args, tokenizer))


def run_rlhf_demo_ppo(args) -> dict:
    trainer = build_rlhf_demo_ppo(args)
    cfg, reward_fn = trainer.config, trainer.reward_fn
    policy = trainer.accelerator.unwrap_model(trainer.policy)
    same_scorer = getattr(args, "train_reward_padding_side", "right") == "right"
    rec = Recorder(args, HeldOutEval(args, reward_fn if same_scorer else None))  # the evaluation pads right
    rec.n_params = policy_flop_params(policy)
    rec.trainer_config = config_subset(cfg, ALGO_KEYS)
    rec.start()
    rec.maybe_eval(policy)  # t = 0: the reference itself
    while not rec.done():
        m = trainer.step()
        r = trainer.last_rollout
        rec.steps += 1
        rec.episodes += args.batch_size
        rec.rollout_s += m["time/rollout_s"]
        rec.rollout_tokens += int(r.response_mask.sum())
        rec.update_tokens += int(r.response_mask.sum() + r.query_mask.sum()) * args.num_ppo_epochs
        rec.maybe_eval(policy)
    return rec.finish(policy)


def run_trl_online(args, kind: str) -> dict:
    """TRL RLOOTrainer or GRPOTrainer: one generation of batch_size completions, num_iterations=num_ppo_epochs
    passes over it in --num_mini_batches optimizer steps each, KL coefficient beta, constant learning rate."""
    from datasets import Dataset
    from transformers import TrainerCallback

    from rlhf_demo.models import load_tokenizer
    from rlhf_demo.rewards import ClassifierReward

    if kind == "rloo":
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer
    else:
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer

    sentiment = ClassifierReward(args.reward_model, label="POSITIVE", kind="logit")

    def positive_logit(prompts, completions, **kwargs):
        return sentiment(list(prompts), list(completions))

    tokenizer = load_tokenizer(args.policy)
    prompts = train_prompts(args, tokenizer)
    dataset = Dataset.from_dict({"prompt": list(prompts["query"])})
    config = Config(
        output_dir=os.path.join(args.work_dir, f"trl_{kind}"),
        per_device_train_batch_size=args.batch_size // args.num_mini_batches, gradient_accumulation_steps=1,
        steps_per_generation=args.num_mini_batches, num_generations=args.num_generations,
        num_iterations=args.num_ppo_epochs, max_completion_length=args.response_length, temperature=args.temperature,
        beta=args.kl_coef, learning_rate=args.learning_rate, lr_scheduler_type="constant", warmup_steps=0,
        max_steps=10**7, save_strategy="no", report_to="none", logging_steps=10**9, disable_tqdm=True,
        use_cpu=True, seed=args.seed, disable_dropout=True, model_init_kwargs={"dtype": torch.float32},
        gradient_checkpointing=False,  # TRL's default is True (memory for ~20% speed); rlhf-demo does not checkpoint
        bf16=False,  # TRL's default is True: bf16 autocast, many times slower than fp32 on a CPU without bf16 units
        # Fixed-length responses: EOS is suppressed until response_length tokens (our PPO samples without stopping).
        generation_kwargs={"min_new_tokens": args.response_length},
    )
    rec = Recorder(args, HeldOutEval(args, sentiment))

    class Budget(TrainerCallback):
        def on_train_begin(self, _args, state, control, model=None, **kw):
            rec.start()
            rec.maybe_eval(model)

        def on_step_end(self, _args, state, control, model=None, **kw):
            rec.steps += 1
            rec.maybe_eval(model)
            if rec.done():
                control.should_training_stop = True

    trainer = Trainer(model=args.policy, reward_funcs=positive_logit, args=config, train_dataset=dataset,
                      processing_class=tokenizer, callbacks=[Budget()])
    torch.set_num_threads(args.threads)
    rec.n_params = policy_flop_params(trainer.model)
    rec.trainer_config = config_subset(config, ALGO_KEYS)

    # Time the rollout (sampling, no-grad forward passes, scoring) and count tokens, by wrapping TRL's methods.
    generate_and_score = trainer._generate_and_score_completions
    training_step = trainer.training_step

    def timed_generate_and_score(inputs):
        t0 = time.perf_counter()
        out = generate_and_score(inputs)
        rec.rollout_s += time.perf_counter() - t0
        rec.episodes += out["completion_ids"].shape[0]
        rec.rollout_tokens += int(out["completion_mask"].sum())
        return out

    def counted_training_step(model, inputs, *a, **kw):
        loss = training_step(model, inputs, *a, **kw)
        batch = trainer._buffered_inputs[(trainer._step - 1) % config.steps_per_generation]
        rec.update_tokens += int(batch["prompt_mask"].sum() + batch["completion_mask"].sum())
        return loss

    trainer._generate_and_score_completions = timed_generate_and_score
    trainer.training_step = counted_training_step
    trainer.train()
    return rec.finish(trainer.model)


def worker_main(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args._worker == "rlhf_demo_ppo":
        result = run_rlhf_demo_ppo(args)
    elif args._worker in ("trl_rloo", "trl_grpo"):
        result = run_trl_online(args, args._worker[4:])
    else:
        raise ValueError(f"no in-process worker for {args._worker!r}")
    with open(args._worker_out, "w") as f:
        json.dump(result, f, indent=1)


# ----------------------------------------------------------------------------------------------------------
# The orchestrator


def matmul_rate(threads: int, sizes=(256, 512, 1024, 2048), seconds: float = 1.0) -> dict:
    """fp32 GFLOP/s of torch.matmul on square matrices with `threads` threads: the best over sizes is the limit."""
    torch.set_num_threads(threads)
    per_size = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.matmul(a, b)  # warm-up
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            torch.matmul(a, b)
            reps += 1
        per_size[str(n)] = round(2 * n**3 * reps / (time.perf_counter() - t0) / 1e9, 2)
    return {"gflops": max(per_size.values()), "per_size_gflops": per_size, "threads": threads, "dtype": "float32"}


def machine_facts(threads: int) -> dict:
    import transformers

    from rlhf_demo.runs import cpu_name

    cpu = cpu_name()
    try:
        import trl

        trl_version = trl.__version__
    except ImportError:
        trl_version = None
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "hostname": platform.node(),
            "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "trl": trl_version, "load_avg_at_start": list(os.getloadavg())}


def repo_relative(value):
    """A local path as it reads from the repository root (`rlhf_demo/presets/tiny/policy`, `../shared/data/imdb`);
    anything else unchanged."""
    return os.path.relpath(value, REPO) if isinstance(value, str) and os.path.exists(value) else value


def machine_slug(machine: dict) -> str:
    """`Intel(R) Xeon(R) Platinum 8488C` with 2 cores -> `intel-xeon-platinum-8488c-2c` (the results file name)."""
    cpu = re.sub(r"\((R|TM)\)|\bCPU\b|@.*$|\bprocessor\b", " ", machine["cpu"], flags=re.IGNORECASE)
    cpu = re.sub(r"[^a-z0-9]+", "-", cpu.lower()).strip("-")[:40].strip("-") or "machine"
    return f"{cpu}-{machine['cores']}c"


def worker_command(name: str, args, out_path: str) -> list[str] | str:
    """The subprocess command for trainer `name`, or a string saying why it cannot run."""
    forwarded = []
    for key in ("budget_s", "max_kl", "policy", "reward_model", "dataset", "batch_size", "num_ppo_epochs",
                "num_mini_batches", "num_generations",
                "response_length", "temperature", "kl_coef", "learning_rate", "eval_every_s", "eval_prompts", "threads",
                "work_dir", "seed", "trl112_reward_head", "value_head_init", "value_head_on_policy",
                "train_reward_padding_side"):
        forwarded += [f"--{key}", str(getattr(args, key))]
    if name == "trl_ppo_1_12":
        if not os.path.exists(args.trl112_python):
            where = os.path.relpath(args.trl112_python, REPO)  # as from the repository root: no machine path
            return (f"TRL 1.12 virtualenv not found ({where}); create it with `python -m venv "
                    "benchmarks/.venv-trl112` then `pip install torch==2.13.0 'trl==1.12.*' 'transformers==5.23.*'`")
        return [args.trl112_python, os.path.join(HERE, "trl_ppo_1_12_runner.py"), *forwarded, "--_worker_out", out_path]
    return [sys.executable, os.path.abspath(__file__), *forwarded, "--_worker", name, "--_worker_out", out_path]


def run_trainer(name: str, args) -> dict:
    out_path = os.path.join(args.work_dir, f"{name}.json")
    log_path = os.path.join(args.work_dir, f"{name}.log")
    cmd = worker_command(name, args, out_path)
    if isinstance(cmd, str):
        print(f"== {name}: skipped: {cmd}", flush=True)
        return {"status": "skipped", "reason": cmd}
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    print(f"== {name}: running (log: {log_path})", flush=True)
    t0 = time.perf_counter()
    # Generous limit: the budget, evaluations (~budget/eval_every of them) and model loading.
    limit = 3 * args.budget_s + 900
    with open(log_path, "w") as log:
        try:
            proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=limit, cwd=REPO)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    wall = round(time.perf_counter() - t0, 1)
    if rc == 0 and os.path.exists(out_path):
        with open(out_path) as f:
            result = json.load(f)
        result["process_wall_s"] = wall
        print(f"== {name}: {result['episodes']} episodes in {result['train_s']:.1f} s of training "
              f"({result['episodes_per_s']:.2f} episodes/s), process {wall} s", flush=True)
        return result
    with open(log_path) as f:
        tail = f.read()[-3000:]
    print(f"== {name}: FAILED (exit {rc}); log tail:\n{tail}", flush=True)
    return {"status": "failed", "reason": f"exit {rc}", "log_tail": tail, "log": log_path, "process_wall_s": wall}


def summarise(results: dict, args, matmul: dict) -> dict:
    peak = matmul["gflops"] * 1e9
    time_to_target, eps = {}, {}
    for name in TRAINERS:
        r = results.get(name)
        if not r or r.get("status") != "ok":
            time_to_target[name] = eps[name] = None
            continue
        eps[name] = r["episodes_per_s"]
        hit = None
        if args.target_reward is not None:
            hits = (e["train_s"] for e in r["evals"] if e["reward"] >= args.target_reward and e["kl"] <= args.max_kl)
            hit = next(hits, None)
        time_to_target[name] = hit
        n = r["n_params"]
        r["rollout_mfu"] = 2 * n * r["rollout_tokens_per_s"] / peak
        r["update_mfu"] = 6 * n * r["update_tokens_per_s"] / peak
        r["final_reward"], r["final_kl"] = r["evals"][-1]["reward"], r["evals"][-1]["kl"]
    ours = results.get("rlhf_demo_ppo") or {}
    trl_times = [t for name, t in time_to_target.items() if name.startswith("trl_") and t is not None]
    ours_t = time_to_target.get("rlhf_demo_ppo")
    goals = {  # the performance goals, with what was reached (None: not measurable in this run)
        "episodes_per_s >= 24": eps.get("rlhf_demo_ppo"),
        "time_to_target <= 0.5 x best TRL": ours_t / min(trl_times) if trl_times and ours_t is not None else None,
        "rollout MFU >= 0.5": ours.get("rollout_mfu"),
        "update MFU >= 0.4": ours.get("update_mfu"),
    }
    return {"time_to_target_s": time_to_target, "episodes_per_s": eps, "goals": goals}


def markdown_table(report: dict) -> str:
    s = report["settings"]
    lines = [
        f"# RLHF speed benchmark, {report['date']}",
        "",
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, {report['machine']['threads']} "
        "threads; "
        f"torch {report['machine']['torch']}, transformers {report['machine']['transformers']}, trl "
        f"{report['machine']['trl']}. "
        f"Matmul rate (fp32, {report['matmul']['threads']} threads): {report['matmul']['gflops']:.1f} GFLOP/s.",
        "",
        f"Budget {s['budget_s']:g} s of training per trainer; batch {s['batch_size']} episodes, {s['num_ppo_epochs']} "
        f"epochs of {s.get('num_mini_batches', 1)} minibatch(es), "
        f"{s['response_length']}-token responses, temperature {s['temperature']:g}, beta {s['kl_coef']:g}, lr "
        f"{s['learning_rate']:g}; "
        f"target: held-out reward >= {s['target_reward']} at KL <= {s['max_kl']:g} nats.",
        "",
        "| trainer | status | time to target (s) | episodes/s | rollout tok/s | update tok/s | rollout MFU | update "
        "MFU | peak RSS (MB) | final reward | final KL |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    for name in TRAINERS:
        r = report["trainers"].get(name)
        if r is None:
            continue
        if r.get("status") != "ok":
            reason = re.sub(r"\s+", " ", r.get("reason", ""))[:120].replace("|", "/")
            lines.append(f"| {name} | {r['status']}: {reason} | - | - | - | - | - | - | - | - | - |")
            continue
        lines.append(
            f"| {name} | ok | {f(report['time_to_target_s'][name], '.0f')} | {r['episodes_per_s']:.2f} | "
            f"{r['rollout_tokens_per_s']:.0f} | "
            f"{r['update_tokens_per_s']:.0f} | {r['rollout_mfu']:.1%} | {r['update_mfu']:.1%} | {r['peak_rss_mb']:.0f} "
            "| "
            f"{r['final_reward']:.3f} | {r['final_kl']:.2f} |")
    lines += ["", "MFU: 2N FLOPs per generated token (rollout), 6N per trained token (update), N = policy parameters "
              "without position embeddings; divided by the matmul rate above. Rollout = sampling + scoring + no-grad "
              "forward passes; update = the rest of the training time. Evaluation time is not counted."]
    lines += ["", "## Goals (rlhf_demo_ppo)", "", "| goal | reached |", "|---|---|"]
    lines += [f"| {goal} | {'-' if v is None else format(v, '.3g')} |" for goal, v in report["goals"].items()]
    if report.get("speed_changes"):
        base = report["speed_changes"][0]["episodes_per_s"]
        lines += ["", "## Our PPO step, change by change (`profile_ppo_step.py --record`, each row on an otherwise "
                      "idle CPU when it was recorded; not necessarily this run's machine)", "",
                  "| change | commit | episodes/s | x first row | step (s) | rollout (s) | update (s) |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {c['label']} | {c['commit']} | {c['episodes_per_s']:.2f} | {c['episodes_per_s'] / base:.2f} | "
                  f"{c['step_s']:.3f} | "
                  f"{c['rollout_s']:.3f} | {c['update_s']:.3f} |" for c in report["speed_changes"]]
    if report.get("notes"):
        lines += ["", report["notes"].strip()]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in report["trainers"].items():
        if r.get("status") == "ok":
            ax.plot([e["train_s"] for e in r["evals"]], [e["reward"] for e in r["evals"]], marker="o", label=name)
    if report["settings"]["target_reward"] is not None:
        ax.axhline(report["settings"]["target_reward"], color="grey", linestyle="--", label="target")
    ax.set_xlabel("training wall time (s)")
    ax.set_ylabel(f"held-out mean reward ({report['settings']['eval_prompts']} prompts)")
    ax.set_title(f"RLHF speed, {report['machine']['cpu'][:40]}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args._worker:
        return worker_main(args)
    if args.work_dir is None:
        args.work_dir = tempfile.mkdtemp(prefix="rlhf_speed_")
    # Workers run from the repository root: pass them absolute paths.
    args.work_dir, args.policy, args.reward_model = (os.path.abspath(p) for p in (args.work_dir, args.policy,
                                                                                  args.reward_model))
    if os.path.exists(args.dataset):
        args.dataset = os.path.abspath(args.dataset)
    os.makedirs(args.work_dir, exist_ok=True)
    os.makedirs(args.output, exist_ok=True)
    for path in (args.policy, args.reward_model):
        if not os.path.exists(path):
            sys.exit(f"Model folder {path!r} does not exist; pass --policy / --reward_model.")
    date = datetime.datetime.now().strftime("%Y-%m-%d")
    machine = machine_facts(args.threads)
    print(f"Machine: {machine['cpu']}, {machine['cores']} cores, {args.threads} threads; scratch in {args.work_dir}",
          flush=True)
    matmul = matmul_rate(args.threads)
    print(f"Matmul rate (fp32, {args.threads} threads): {matmul['gflops']:.1f} GFLOP/s {matmul['per_size_gflops']}",
          flush=True)
    results = {name: run_trainer(name, args) for name in args.trainers}
    settings = {k: getattr(args, k) for k in ("budget_s", "target_reward", "max_kl", "policy", "reward_model",
                                              "dataset", "batch_size",
                                              "num_ppo_epochs", "num_mini_batches", "num_generations",
                                              "response_length", "temperature",
                                              "kl_coef",
                                              "learning_rate", "eval_every_s", "eval_prompts", "threads", "seed",
                                              "trainers")}
    settings = {k: repo_relative(v) for k, v in settings.items()}  # no path of this machine in the results
    report = {"date": date, "machine": machine, "matmul": matmul, "settings": settings}
    report.update(summarise(results, args, matmul))
    report["trainers"] = results
    if args.speed_changes:
        with open(args.speed_changes) as f:
            report["speed_changes"] = json.load(f)
    if args.notes:
        with open(args.notes) as f:
            report["notes"] = f.read()
    slug = machine_slug(machine)
    stem = os.path.join(args.output, f"{date}-{slug}")
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=2)
    with open(stem + ".md", "w") as f:
        f.write(markdown_table(report))
    plot(report, stem + ".png")
    print(markdown_table(report))
    print(f"Wrote {stem}.json, .md and .png")


if __name__ == "__main__":
    main()
