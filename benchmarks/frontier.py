"""Which alignment method? PPO, DPO, RLOO, GRPO and best-of-n on the same feedback: one reward-KL frontier.

    python benchmarks/frontier.py --work_dir runs/frontier --output benchmarks/results
    python benchmarks/frontier.py --help          # every setting (methods, KL coefficients, betas, n, sizes)

The protocol of Rafailov et al. (2023, DPO, section 6.1 and Figure 2) on the tiny preset, with the simulated
annotator of Ziegler et al. (2019) and Gao et al. (2022) as the gold reward:
    1. feedback:     `--pairs` comparisons of two continuations of the tiny policy, labelled by the gold (the tiny
                     preset's IMDB sentiment classifier, POSITIVE logit) with Bradley-Terry noise, tau 1;
    2. reward model: a Bradley-Terry model on them (`rlhf-demo reward-model --preferences`), from the policy;
    3. methods, each from the tiny policy (its frozen copy is the reference):
         ppo       rlhf-demo's PPO against the reward model, fixed KL coefficient (`--ppo_kl_coefs`);
         dpo       TRL's DPOTrainer on the comparisons themselves (`--dpo_betas`);
         rloo      TRL's RLOOTrainer against the reward model (`--rloo_betas`);
         grpo      TRL's GRPOTrainer against the reward model (`--grpo_betas`);
         best_of_n n samples of the reference per prompt, the reward model's favourite kept (`--best_of_n`); its KL
                   to the reference is log n - (n - 1) / n nats (Stiennon et al. 2020, appendix; Hilton 2022);
       and PPO, RLOO and GRPO against the gold directly at `--ceiling_kl_coef` (the ceiling: no learned proxy);
    4. evaluation of every trained model, its half-way checkpoint too, by the package's eval suite on the same
       `--eval_prompts` held-out prompts with the same sampling (seed, temperature, 24 tokens): gold score, the
       independent judge (VADER positive rate), KL to the reference (nats per response).
The RL methods share the tiny preset's batch (64 episodes), minibatches (4), optimisation passes (4), learning rate
and response length; each runs `--episodes` episodes. Wall time is the training call alone (model loading and
evaluation not counted); best-of-n's is the sampling and scoring of its n responses for the evaluation prompts.

Writes WORK_DIR (every run, evaluation and log; an interrupted invocation resumes at the first unfinished point) and
OUTPUT/<date>-frontier.{json,md,png}; `--space_dir` also receives the plot, the table and the samples of each
method's best point for the Space's Methods tab.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import sys
import time
from functools import partial

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = ("ppo", "dpo", "rloo", "grpo", "best_of_n")
LABELS = {"ppo": "PPO (rlhf-demo)", "dpo": "DPO (TRL)", "rloo": "RLOO (TRL)", "grpo": "GRPO (TRL)",
          "best_of_n": "best-of-n"}
COLOURS = {"ppo": "tab:blue", "dpo": "tab:orange", "rloo": "tab:green", "grpo": "tab:red", "best_of_n": "tab:purple"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--work_dir", default="runs/frontier", help="Runs, evaluations and logs (resumable).")
    p.add_argument("--output", default=os.path.join(HERE, "results"), help="Folder for the .json, .md and .png.")
    p.add_argument("--space_dir", default=None, help="Also copy the plot, the table and each method's samples here "
                                                     "(the Space's Methods tab reads eval/results/frontier, installed "
                                                     "as rlhf_demo/eval/results/frontier).")
    p.add_argument("--methods", default=",".join(METHODS), help=f"Comma-separated subset of {', '.join(METHODS)}.")
    p.add_argument("--preset", default="tiny", choices=("tiny", "gpt2"), help="Preset giving the policy, the gold "
                   "(its reward classifier), the prompts and PPO's settings (both train every weight, as TRL's "
                   "trainers do here).")
    p.add_argument("--pairs", type=int, default=2000, help="Simulated comparisons (one prompt each).")
    p.add_argument("--annotator_temperature", type=float, default=1.0, help="tau of the Bradley-Terry annotator.")
    p.add_argument("--rm_epochs", type=float, default=2.0, help="Reward model: passes over the comparisons.")
    p.add_argument("--rm_learning_rate", type=float, default=2e-4)
    p.add_argument("--episodes", type=int, default=1536, help="Episodes per PPO, RLOO and GRPO run.")
    p.add_argument("--learning_rate", type=float, default=None, help="PPO, RLOO and GRPO (default: the preset's).")
    p.add_argument("--ppo_kl_coefs", type=float, nargs="+", default=[0.05, 0.1, 0.2], help="PPO: fixed beta each.")
    p.add_argument("--rloo_betas", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    p.add_argument("--grpo_betas", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    p.add_argument("--dpo_betas", type=float, nargs="+", default=[0.05, 0.1, 0.3, 1.0])
    p.add_argument("--dpo_epochs", type=float, default=1.0, help="DPO: passes over the comparisons.")
    p.add_argument("--dpo_learning_rate", type=float, default=5e-5)
    p.add_argument("--dpo_batch_size", type=int, default=16)
    p.add_argument("--num_generations", type=int, default=4, help="RLOO/GRPO: completions per prompt.")
    p.add_argument("--ceiling_kl_coef", type=float, default=0.1, help="PPO/RLOO/GRPO against the gold at this beta "
                                                                      "(0: no ceiling runs).")
    p.add_argument("--best_of_n", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--eval_prompts", type=int, default=256, help="Held-out prompts (test split) scoring each point.")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if unknown := sorted(set(args.methods) - set(METHODS)):
        p.error(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    if min(args.best_of_n) < 1:
        p.error("--best_of_n values must be at least 1")
    return args


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || reference) in nats: log n - (n - 1) / n, exact when the n samples' rewards are distinct
    (Stiennon et al. 2020, appendix G.3; Beirami et al. 2024 show it is an upper bound otherwise)."""
    return math.log(n) - (n - 1) / n


class Setup:
    """What every method shares: the preset's training settings, its policy, gold reward, prompts and work folders."""

    def __init__(self, args):
        from rlhf_demo.config import load_yaml_config, preset_path
        from rlhf_demo.loop import PROMPT_KEYS
        from rlhf_demo.rewards import split_reward_spec

        self.args = args
        self.train = load_yaml_config(preset_path(args.preset), "train")
        self.policy = self.train["model_name_or_path"]
        self.gold_spec = self.train["reward"][0]
        gold = split_reward_spec(self.gold_spec)
        self.gold_model, self.gold_label = gold.target, gold.label or "POSITIVE"
        self.prompts = {k: self.train[k] for k in PROMPT_KEYS if k in self.train}  # as `rlhf-demo loop` reads them
        self.lr = args.learning_rate or self.train["learning_rate"]
        self.batch_size, self.num_mini_batches = self.train["batch_size"], self.train["num_mini_batches"]
        self.num_ppo_epochs, self.response_length = self.train["num_ppo_epochs"], self.train["response_length"]
        self.steps = max(1, args.episodes // self.batch_size)  # rollouts per RL run
        w = args.work_dir
        self.preferences = os.path.join(w, "preferences", "preferences.jsonl")
        self.reward_model = os.path.join(w, "reward_model")


# ---------------------------------------------------------------------------------------------- 1-2. feedback, RM


def feedback_and_reward_model(s: Setup) -> dict:
    """Sample and label the comparisons, then fit the Bradley-Terry reward model (each skipped when done)."""
    from rlhf_demo.config import PreferencesConfig, RewardModelConfig
    from rlhf_demo.annotate import collect_preferences
    from rlhf_demo.reward_model import train_preference_reward_model

    a = s.args
    if not os.path.exists(s.preferences):  # written under another name first: an interrupted file is not kept
        partial = s.preferences.replace(".jsonl", ".partial.jsonl")  # a .jsonl name: a file, not a folder
        if os.path.exists(partial):
            os.remove(partial)
        collect_preferences(PreferencesConfig(output=partial, model=s.policy, annotator=s.gold_spec,
                                              annotator_temperature=a.annotator_temperature, num_pairs=a.pairs,
                                              seed=a.seed, **s.prompts))
        os.replace(partial, s.preferences)
    report = os.path.join(s.reward_model, "reward_model_report.json")
    if not os.path.exists(report):
        train_preference_reward_model(RewardModelConfig(
            model_name_or_path=s.policy, output_dir=s.reward_model, preferences=[s.preferences],
            num_train_epochs=a.rm_epochs, learning_rate=a.rm_learning_rate, batch_size=32, max_length=64, seed=a.seed))
    with open(report) as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------- 3. the methods


def train_ppo(s: Setup, out: str, kl_coef: float, reward_spec: str) -> float:
    """rlhf-demo's PPO with the preset's settings, a fixed KL coefficient and `reward_spec`; checkpoint half-way.
    Returns the wall time of `train()` in seconds."""
    from rlhf_demo.config import PPOConfig
    from rlhf_demo.ppo import PPOTrainer

    value_model = s.reward_model if reward_spec.startswith("preference=") else s.train["value_model_name_or_path"]
    cfg = PPOConfig(**{**s.train, "model_name_or_path": s.policy, "reward": [reward_spec],
                       "value_model_name_or_path": value_model, "output_dir": out, "kl_coef": kl_coef,
                       "adaptive_kl": False, "learning_rate": s.lr, "total_episodes": s.steps * s.batch_size,
                       "save_steps": max(1, s.steps // 2), "save_total_limit": 2, "eval_num_prompts": 0,
                       "sample_steps": 0, "seed": s.args.seed, "resume_from_checkpoint": None})
    trainer = PPOTrainer(cfg)
    t0 = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t0


def trl_common(s: Setup, out: str, max_steps: int) -> dict:
    """TrainingArguments every TRL trainer here shares: CPU, fp32, no gradient checkpointing, dropout off, constant
    learning rate, a checkpoint half-way under OUT/checkpoints, no logging services."""
    import torch

    return dict(output_dir=os.path.join(out, "checkpoints"), max_steps=max_steps, save_steps=max(1, max_steps // 2),
                save_strategy="steps", save_only_model=True, report_to="none", logging_steps=10, disable_tqdm=False,
                use_cpu=True, bf16=False, gradient_checkpointing=False, disable_dropout=True, seed=s.args.seed,
                lr_scheduler_type="constant", warmup_steps=0, model_init_kwargs={"dtype": torch.float32})


def train_trl_online(s: Setup, out: str, kind: str, beta: float, reward_fn) -> float:
    """TRL's RLOOTrainer or GRPOTrainer with PPO's batch shape: one generation of `batch_size` completions
    (`num_generations` per prompt) split into `num_mini_batches` minibatches, `num_ppo_epochs` passes over it
    (TRL: steps_per_generation, num_iterations), fixed-length responses. Returns the wall time of `train()`."""
    from datasets import Dataset

    from rlhf_demo.data import build_prompt_dataset
    from rlhf_demo.models import load_tokenizer

    if kind == "rloo":
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer
    else:
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer

    def reward(prompts, completions, **kwargs):
        return reward_fn(list(prompts), list(completions))

    reward.__name__ = "reward"
    tokenizer = load_tokenizer(s.policy)
    prompts = build_prompt_dataset(tokenizer, s.prompts["dataset_name"], "train", seed=s.args.seed,
                                   **{k: v for k, v in s.prompts.items() if k != "dataset_name"})
    minibatch = s.batch_size // s.num_mini_batches
    config = Config(**trl_common(s, out, s.steps * s.num_mini_batches * s.num_ppo_epochs),
                    per_device_train_batch_size=minibatch, gradient_accumulation_steps=1,
                    steps_per_generation=s.num_mini_batches, num_iterations=s.num_ppo_epochs,
                    num_generations=s.args.num_generations, max_completion_length=s.response_length,
                    temperature=s.train.get("temperature", 1.0), beta=beta, learning_rate=s.lr,
                    generation_kwargs={"min_new_tokens": s.response_length})
    trainer = Trainer(model=s.policy, reward_funcs=reward, args=config, processing_class=tokenizer,
                      train_dataset=Dataset.from_dict({"prompt": list(prompts["query"])}))
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    trainer.save_model(out)
    return seconds


def train_dpo(s: Setup, out: str, beta: float) -> float:
    """TRL's DPOTrainer (sigmoid loss, Rafailov et al. 2023 eq. 7) on the comparisons, ties and repeats dropped;
    the reference is the frozen starting policy. Returns the wall time of `train()`."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from rlhf_demo.feedback import load_preference_pairs
    from rlhf_demo.models import load_tokenizer

    rows, _ = load_preference_pairs([s.preferences])
    data = Dataset.from_dict({k: [r[k] for r in rows] for k in ("prompt", "chosen", "rejected")})
    a = s.args
    max_steps = max(1, int(len(rows) * a.dpo_epochs) // a.dpo_batch_size)
    config = DPOConfig(**trl_common(s, out, max_steps), per_device_train_batch_size=a.dpo_batch_size, beta=beta,
                       learning_rate=a.dpo_learning_rate, max_length=64)
    trainer = DPOTrainer(model=s.policy, args=config, train_dataset=data, processing_class=load_tokenizer(s.policy))
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    trainer.save_model(out)
    return seconds


# ---------------------------------------------------------------------------------------------- 4. evaluation


def evaluate(s: Setup, model: str) -> dict:
    """The eval suite on `model` against the reference (the preset's policy), the gold as its reward column, every
    checkpoint on the same prompts too. Returns {gold, judge_positive_rate, kl, checkpoints: [(step, gold, kl)]}."""
    from rlhf_demo.config import EvalConfig
    from rlhf_demo.eval.suite import run_eval

    out = os.path.join(model, "eval")
    path = os.path.join(out, "eval_results.json")
    if not os.path.exists(path):
        run_eval(EvalConfig(model=model, reference=s.policy, output_dir=out, num_prompts=s.args.eval_prompts,
                            reward_model=s.gold_model, reward_label=s.gold_label, seed=s.args.seed,
                            max_new_tokens=s.response_length, frontier_num_prompts=0,
                            **{k: s.prompts[k] for k in ("dataset_name", "min_review_chars") if k in s.prompts}))
    with open(path) as f:
        r = json.load(f)
    aligned, reference = r["metrics"]["aligned"], r["metrics"]["reference"]
    return {"gold": aligned["reward_mean"], "judge_positive_rate": aligned["judge_positive_rate"],
            "kl": aligned["kl_to_reference_mean"], "reference_gold": reference["reward_mean"],
            "reference_judge_positive_rate": reference["judge_positive_rate"],
            "checkpoints": [{"step": p["step"], "gold": p["reward_mean"], "kl": p["kl_to_reference_mean"]}
                            for p in r["frontier"] if p["step"] > 0]}


def best_of_n_points(s: Setup, ns: list[int], proxy) -> list[dict]:
    """Best-of-n for each n: max(ns) reference samples per evaluation prompt (the eval suite's prompts, seed and
    sampling), the proxy's favourite among the first n kept, scored by the gold and the judge. Kept in
    WORK_DIR/best_of_n.json: a resumed invocation with the same n reads it back."""
    cache = os.path.join(s.args.work_dir, "best_of_n.json")
    if os.path.exists(cache):
        with open(cache) as f:
            points = json.load(f)
        if [p["samples_per_prompt"] for p in points] == sorted(ns):
            return points
    points = sample_best_of_n(s, ns, proxy)
    with open(cache, "w") as f:
        json.dump(points, f)
    return points


def sample_best_of_n(s: Setup, ns: list[int], proxy) -> list[dict]:
    """The points of `best_of_n_points`, computed."""
    from rlhf_demo.data import build_prompt_dataset
    from rlhf_demo.eval.suite import load_measurement
    from rlhf_demo.models import load_causal_lm
    from rlhf_demo.rewards import ClassifierReward
    from rlhf_demo.sampling import generate

    model, tok = load_causal_lm(s.policy, "policy")
    prompts = build_prompt_dataset(tok, s.prompts["dataset_name"], split="test", num_prompts=s.args.eval_prompts,
                                   seed=s.args.seed, min_review_chars=s.prompts.get("min_review_chars", 200))
    n_max, P = max(ns), len(prompts)
    queries = [q for q in prompts["query"] for _ in range(n_max)]  # prompt-major: sample j of prompt p at p*n_max+j
    t0 = time.perf_counter()
    texts = generate(model, tok, [list(q) for q in prompts["input_ids"] for _ in range(n_max)],
                     max_new_tokens=s.response_length, temperature=s.train.get("temperature", 1.0), seed=s.args.seed,
                     desc=f"best-of-{n_max} samples").texts
    proxy_scores = np.asarray(proxy(queries, texts), dtype=float).reshape(P, n_max)
    seconds = time.perf_counter() - t0
    gold_fn = ClassifierReward(s.gold_model, label=s.gold_label, kind="logit")
    gold = np.asarray(gold_fn(queries, texts)).reshape(P, n_max)
    judge = load_measurement("sentiment_judge", "default")
    positive = np.asarray(judge.compute(data=[q + t for q, t in zip(queries, texts)])["positive"],
                          dtype=float).reshape(P, n_max)
    points, rows = [], np.arange(P)
    for n in sorted(ns):
        pick = proxy_scores[:, :n].argmax(1)
        points.append({"method": "best_of_n", "setting": f"n={n}", "reward": "reward model",
                       "gold": float(gold[rows, pick].mean()),
                       "judge_positive_rate": float(positive[rows, pick].mean()),
                       "kl": best_of_n_kl(n), "wall_s": seconds * n / n_max, "samples_per_prompt": n,
                       "responses": [texts[p * n_max + j] for p, j in enumerate(pick)]})
    points[0]["prompts"] = list(prompts["query"])
    return points


# ---------------------------------------------------------------------------------------------- the invocation


def run_point(s: Setup, method: str, setting: str, reward: str, used: dict, train_fn) -> dict:
    """Train into the point's folder (unless its point.json records it done; then only the half-way checkpoint is
    kept, the last one being the final model), evaluate, and return the point's row."""
    from rlhf_demo.runs import list_checkpoints

    source = "gold" if reward == "gold" else "feedback"
    out = os.path.join(s.args.work_dir, f"{method}-{setting.replace('=', '')}-{source}")
    marker = os.path.join(out, "point.json")
    if not os.path.exists(marker):
        shutil.rmtree(out, ignore_errors=True)  # an interrupted run starts again
        os.makedirs(out)
        seconds = train_fn(out)
        for _, path in list_checkpoints(out)[1:]:
            shutil.rmtree(path)
        with open(marker, "w") as f:
            json.dump({"wall_s": seconds}, f)
    with open(marker) as f:
        seconds = json.load(f)["wall_s"]
    result = evaluate(s, out)
    print(f"[{method} {setting}, {reward}] gold {result['gold']:.3f}, judge positive "
          f"{result['judge_positive_rate']:.3f}, KL {result['kl']:.2f} nats, {seconds:.0f} s", flush=True)
    return {"method": method, "setting": setting, "reward": reward, "wall_s": seconds, "run": out, **used, **result}


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    from rlhf_demo.rewards import PreferenceReward, build_reward
    from rlhf_demo.runs import machine_description

    os.makedirs(args.work_dir, exist_ok=True)
    torch.manual_seed(args.seed)
    started = time.time()
    s = Setup(args)
    rm_report = feedback_and_reward_model(s)
    rm_spec = f"preference={s.reward_model}"
    proxy, gold = PreferenceReward(s.reward_model), build_reward([s.gold_spec])
    episodes = {"episodes": s.steps * s.batch_size}
    points = []
    for method in args.methods:
        if method == "best_of_n":
            points.extend(best_of_n_points(s, args.best_of_n, proxy))
        elif method == "dpo":
            for beta in args.dpo_betas:
                pairs = {"pairs": rm_report["pairs"]["kept"]}
                fn = partial(train_dpo, s, beta=beta)
                points.append(run_point(s, "dpo", f"beta={beta:g}", "comparisons", pairs, fn))
        else:  # PPO, RLOO, GRPO: against the reward model at each beta, then against the gold (the ceiling)
            betas = args.ppo_kl_coefs if method == "ppo" else getattr(args, f"{method}_betas")
            runs = [(b, "reward model") for b in betas] + ([(args.ceiling_kl_coef, "gold")] if args.ceiling_kl_coef
                                                           else [])
            for beta, reward in runs:
                if method == "ppo":
                    fn = partial(train_ppo, s, kl_coef=beta, reward_spec=rm_spec if reward != "gold" else s.gold_spec)
                else:
                    fn = partial(train_trl_online, s, kind=method, beta=beta,
                                 reward_fn=proxy if reward != "gold" else gold)
                name = "kl_coef" if method == "ppo" else "beta"
                points.append(run_point(s, method, f"{name}={beta:g}", reward, episodes, fn))
    ledger = os.path.join(args.work_dir, "wall_time.json")  # seconds of every invocation, resumed ones too
    invocations = []
    if os.path.exists(ledger):
        with open(ledger) as f:
            invocations = json.load(f)
    invocations.append(round(time.time() - started, 1))
    with open(ledger, "w") as f:
        json.dump(invocations, f)
    results = {
        "date": datetime.date.today().isoformat(), "machine": machine_description(), "command": " ".join(sys.argv),
        "settings": {k: v for k, v in vars(args).items()}, "total_wall_s": round(sum(invocations), 1),
        "invocations_wall_s": invocations,
        "reward_model": {"pairs": rm_report["pairs"], "heldout_accuracy": rm_report["eval_accuracy"]},
        "points": points,
    }
    write_results(results, args.output, args.space_dir)
    return results


def invocation_note(seconds: list[float]) -> str:
    """How the wall time splits over invocations: `one invocation`, or the first and the resumed ones."""
    if len(seconds) == 1:
        return "one invocation"
    return (f"the first invocation {seconds[0] / 60:.1f} min, then {len(seconds) - 1} resumed one(s) of "
            f"{sum(seconds[1:]) / 60:.1f} min that skipped the points already done")


def candidates(points: list[dict]) -> list[dict]:
    """Every point trained on the learned feedback (the reward model or, for DPO, the comparisons), with the
    half-way checkpoints of each run as points of their own (their wall time: half the run's)."""
    out = []
    for p in points:
        if p["reward"] == "gold":
            continue
        out.append(p)
        for c in p.get("checkpoints", []):
            out.append({"method": p["method"], "setting": f"{p['setting']}, half-way", "gold": c["gold"],
                        "kl": c["kl"], "wall_s": p["wall_s"] / 2})
    return out


def best_points(points: list[dict], max_kl: float = 6.0) -> dict[str, dict]:
    """Per method, its point (a half-way checkpoint included) with the highest gold score at KL <= max_kl among
    those trained on the learned feedback: the frontier's reading."""
    best = {}
    for p in candidates(points):
        if p["kl"] <= max_kl and p["gold"] > best.get(p["method"], {"gold": -1e9})["gold"]:
            best[p["method"]] = p
    return best


def shown_points(points: list[dict], max_kl: float = 6.0) -> dict[str, dict]:
    """Per method, the final model whose responses the Space shows: the highest gold at KL <= max_kl, else the
    lowest KL (final models only: the evaluation keeps no samples of checkpoints)."""
    def rank(p: dict) -> tuple[bool, float]:
        return (p["kl"] <= max_kl, p["gold"] if p["kl"] <= max_kl else -p["kl"])

    shown = {}
    for p in points:
        if p["reward"] != "gold" and (p["method"] not in shown or rank(p) > rank(shown[p["method"]])):
            shown[p["method"]] = p
    return shown


def write_results(results: dict, output: str, space_dir: str | None) -> None:
    """OUTPUT/<date>-frontier.json, .md (the table) and .png (the plot); SPACE_DIR gets frontier.png, frontier.md
    and samples.json (each method's best point at KL <= 6: its responses to the evaluation prompts)."""
    os.makedirs(output, exist_ok=True)
    stem = os.path.join(output, f"{results['date']}-frontier")
    slim = {**results, "points": [{k: v for k, v in p.items() if k not in ("responses", "prompts")}
                                  for p in results["points"]]}
    with open(stem + ".json", "w") as f:
        json.dump(slim, f, indent=1)
    table = markdown_table(results)
    with open(stem + ".md", "w", encoding="utf-8") as f:
        f.write(table)
    plot(results["points"], stem + ".png")
    if space_dir:
        os.makedirs(space_dir, exist_ok=True)
        shutil.copy(stem + ".png", os.path.join(space_dir, "frontier.png"))
        with open(os.path.join(space_dir, "frontier.md"), "w", encoding="utf-8") as f:
            f.write(table)
        prompts = next((p["prompts"] for p in results["points"] if "prompts" in p), None)
        samples = {"prompts": prompts, "methods": {}}
        for method, p in shown_points(results["points"]).items():
            responses = p.get("responses") or samples_of(p["run"])
            samples["prompts"] = samples["prompts"] or samples_of(p["run"], "prompt")
            samples["methods"][LABELS[method]] = {"setting": p["setting"], "gold": p["gold"], "kl": p["kl"],
                                                  "responses": responses}
        with open(os.path.join(space_dir, "samples.json"), "w", encoding="utf-8") as f:
            json.dump(samples, f, indent=1)


def samples_of(run: str, key: str = "aligned_response") -> list[str]:
    """One column of a point's evaluation samples (eval/samples.jsonl), in prompt order."""
    from rlhf_demo.eval.samples import read_samples

    return [row[key] for row in read_samples(os.path.join(run, "eval", "samples.jsonl"))]


def markdown_table(results: dict) -> str:
    """The results table: one row per point (final models; half-way checkpoints are in the JSON and the plot)."""
    pts = results["points"]
    ref = next((p for p in pts if "reference_gold" in p), None)
    lines = [f"# Reward-KL frontier of five alignment methods ({results['date']})", "",
             f"Machine: {results['machine']}. Wall time: {results['total_wall_s'] / 60:.1f} min in all "
             f"({invocation_note(results['invocations_wall_s'])}).", "", f"Command: `{results['command']}`", "",
             f"Feedback: {results['reward_model']['pairs']['kept']} comparisons; reward model held-out accuracy "
             f"{results['reward_model']['heldout_accuracy']:.3f} (noisy labels).", ""]
    if ref:
        lines += [f"Reference (the preset's policy): gold {ref['reference_gold']:.3f}, judge positive rate "
                  f"{ref['reference_judge_positive_rate']:.3f}.", ""]
    lines += ["| method | setting | optimised against | gold score | judge positive rate | KL (nats) | wall time (s) |"
              " episodes / pairs / samples per prompt |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for p in pts:
        used = (f"{p['episodes']} episodes" if p.get("episodes") else f"{p['pairs']} pairs" if p.get("pairs")
                else f"{p['samples_per_prompt']} per prompt")
        lines.append(f"| {LABELS[p['method']]} | {p['setting']} | {p['reward']} | {p['gold']:.3f} | "
                     f"{p['judge_positive_rate']:.3f} | {p['kl']:.2f} | {p['wall_s']:.0f} | {used} |")
    best = best_points(pts)
    if best:
        top = max(best.values(), key=lambda p: p["gold"])
        lines += ["", "Each method's best point at KL <= 6 nats on the learned feedback (half-way checkpoints count; "
                      "their wall time is half the run's):", ""]
        lines += [f"- {LABELS[m]}: {p['setting']}, gold {p['gold']:.3f} at {p['kl']:.2f} nats, {p['wall_s']:.0f} s"
                  for m, p in sorted(best.items(), key=lambda kv: -kv[1]["gold"])]
        missing = [LABELS[m] for m in dict.fromkeys(p["method"] for p in pts) if m not in best]
        lines += [f"- no point at KL <= 6: {', '.join(missing)}"] if missing else []
        lines += ["", f"Highest gold score at KL <= 6 nats: {LABELS[top['method']]} ({top['setting']}, "
                      f"{top['gold']:.3f} at {top['kl']:.2f} nats)."]
        trained = [p for p in best.values() if p["method"] != "best_of_n"]
        if trained:
            fast = min(trained, key=lambda p: p["wall_s"])
            lines[-1] += (f" Fastest training to its best point at KL <= 6: {LABELS[fast['method']]} "
                          f"({fast['setting']}, {fast['wall_s']:.0f} s).")
        if "best_of_n" in best:
            b = best["best_of_n"]
            lines[-1] += (f" Best-of-n trains nothing but samples {b['samples_per_prompt']} responses per prompt at "
                          f"every use ({b['setting']}: {b['gold']:.3f} at {b['kl']:.2f} nats).")
    return "\n".join(lines) + "\n"


def plot(points: list[dict], path: str) -> None:
    """Gold score against KL to the reference (Rafailov et al. 2023, Figure 2 layout): filled markers for final
    models trained on the learned feedback, small ones for their half-way checkpoints, hollow ones for the runs on
    the gold itself (the ceiling), a line for best-of-n."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in METHODS:
        pts = [p for p in points if p["method"] == method]
        if not pts:
            continue
        c = COLOURS[method]
        if method == "best_of_n":
            ax.plot([p["kl"] for p in pts], [p["gold"] for p in pts], "-D", color=c, ms=4, label=LABELS[method])
            continue
        learned = [p for p in pts if p["reward"] != "gold"]
        ax.scatter([p["kl"] for p in learned], [p["gold"] for p in learned], color=c, s=36, label=LABELS[method])
        mids = [q for p in learned for q in p["checkpoints"]]
        ax.scatter([q["kl"] for q in mids], [q["gold"] for q in mids], color=c, s=10, alpha=0.6)
        ceiling = [p for p in pts if p["reward"] == "gold"]
        if ceiling:
            ax.scatter([p["kl"] for p in ceiling], [p["gold"] for p in ceiling], facecolors="none", edgecolors=c,
                       s=60, label=f"{LABELS[method]}, on the gold")
    ax.axvline(6, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("KL(policy || reference), nats per response")
    ax.set_ylabel("gold score (annotator's logit)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
