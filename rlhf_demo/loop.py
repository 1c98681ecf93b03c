"""`rlhf-demo loop`: the RLHF feedback loop, round after round, with a simulated annotator.

Each round (Ziegler et al. 2019, section 2; Ouyang et al. 2022, Figure 2):
    1. feedback:     sample pairs of continuations from the current policy; the annotator labels them
                     (Bradley-Terry noise), appended to OUTPUT/preferences.jsonl;
    2. reward model: a Bradley-Terry model on all pairs so far, warm-started from the last round's;
    3. PPO:          from the current policy against that reward model (KL to the round's starting policy);
    4. evaluation:   against the starting policy on held-out prompts (`rlhf_demo.eval`): KL, the independent judge,
                     the proxy (reward model) score; the gold score is the annotator's noiseless score of the same
                     samples; the reward model's accuracy on fresh pairs of the new policy (labelled noiselessly)
                     shows the distribution shift the next round's feedback corrects.
The annotator is the gold reward of Gao et al. (2022): PPO never sees it, so gold against proxy shows
over-optimisation. Results: OUTPUT/loop_results.json, loop_results.md and loop.png.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import yaml

from .annotate import SimulatedAnnotator, collect_preferences, generate_pairs, spec_name
from .config import (EvalConfig, LoopConfig, PPOConfig, PreferencesConfig, RewardModelConfig, load_yaml_config,
                     parse_config, save_config)
from .errors import UserInputError
from .models import display_name, load_causal_lm
from .rewards import PreferenceReward, build_reward
from .runs import RUN_INFO_FILE, check_output_dir, existing_run_files, list_checkpoints, write_json

PROMPT_KEYS = ("dataset_name", "min_review_chars", "min_query_tokens", "max_query_tokens")


ROUND_RESULTS = "round_results.json"  # RUN/round-N/round_results.json: written last, so it marks a finished round
LOOP_CONFIG = "loop_config.yaml"  # the loop's settings, compared on a rerun


def run_loop(cfg: LoopConfig) -> list[dict]:
    """Run `cfg.rounds` rounds (see the module docstring) and return one row of results per round.

    A rerun of the same command continues: finished rounds (their `round_results.json`) are kept, not run again; the
    first unfinished round keeps the pairs it had labelled in full (a partial round's pairs are dropped and labelled
    again), the reward model it had saved (saves are atomic), and its PPO run (resumed from its latest checkpoint).
    A larger --rounds extends a finished loop.

    Raises:
        UserInputError / MissingInputError: a model, annotator spec or PPO config that cannot be used (checked before
            round 1), an unwritable --output_dir, or a rerun with other settings than the loop in --output_dir.
    """
    from .eval.suite import run_eval
    from .ppo import PPOTrainer
    from .reward_model import train_preference_reward_model

    check_output_dir(cfg.output_dir)
    ppo_base, prompts = ppo_settings(cfg)  # the PPO config parsed and checked before any round's work
    check_same_loop(cfg)
    gold = build_reward([cfg.annotator])
    preferences = os.path.join(cfg.output_dir, "preferences.jsonl")
    policy, reward_model_init, rows = cfg.model_name_or_path, cfg.model_name_or_path, []
    for r in range(1, cfg.rounds + 1):
        out, seed = os.path.join(cfg.output_dir, f"round-{r}"), cfg.seed + r
        reward_model, policy_dir = os.path.join(out, "reward_model"), os.path.join(out, "policy")
        if os.path.isfile(os.path.join(out, ROUND_RESULTS)):  # finished by an earlier run of this loop: kept
            with open(os.path.join(out, ROUND_RESULTS), encoding="utf-8") as f:
                rows.append(json.load(f))
            policy, reward_model_init = policy_dir, reward_model
            print(f"round {r}/{cfg.rounds}: finished earlier, kept ({out})")
            continue
        print(f"round {r}/{cfg.rounds}: feedback, reward model, PPO, evaluation ({out})")
        # 1. Feedback on the current policy (a round killed while labelling labels its pairs again).
        if count_round_rows(preferences, r, drop_partial=cfg.pairs_per_round) < cfg.pairs_per_round:
            collect_preferences(PreferencesConfig(
                output=preferences, model=policy, annotator=cfg.annotator,
                annotator_temperature=cfg.annotator_temperature, num_pairs=cfg.pairs_per_round, round=r, seed=seed,
                **prompts), annotator_fn=gold)
        # 2. Bradley-Terry reward model on all pairs so far, warm-started (kept when this round saved it already).
        report_path = os.path.join(reward_model, "reward_model_report.json")
        if os.path.isfile(report_path):
            with open(report_path, encoding="utf-8") as f:
                rm_report = json.load(f)
        else:
            rm_report = train_preference_reward_model(RewardModelConfig(
                model_name_or_path=reward_model_init, output_dir=reward_model, preferences=[preferences],
                num_train_epochs=cfg.rm_epochs, learning_rate=cfg.rm_learning_rate, seed=seed))
        reward_model_init = reward_model
        # 3. PPO from the current policy against the reward model (value model from the reward model); an
        # interrupted round's PPO continues from its latest checkpoint.
        ppo_cfg = dataclasses.replace(ppo_base, model_name_or_path=policy, reward=[f"preference={reward_model}"],
                                      value_model_name_or_path=reward_model, output_dir=policy_dir,
                                      total_episodes=cfg.ppo_episodes, seed=seed, eval_num_prompts=0,
                                      push_to_hub=False, **ppo_resume_options(policy_dir))
        if ppo_cfg.resume_from_checkpoint or not os.path.isfile(os.path.join(policy_dir, RUN_INFO_FILE)):
            PPOTrainer(ppo_cfg).train()
        policy = policy_dir
        # 4. Evaluation against the starting policy; gold and fresh-pair accuracy.
        eval_dir = os.path.join(out, "eval")
        results = run_eval(EvalConfig(model=policy, reference=cfg.model_name_or_path, output_dir=eval_dir,
                                      num_prompts=cfg.eval_num_prompts, reward_model=reward_model, seed=cfg.seed,
                                      frontier=False, **{k: prompts[k] for k in PROMPT_KEYS[:2] if k in prompts}))
        gold_ref, gold_aligned = gold_scores(gold, eval_dir)
        row = {
            "round": r, "pairs_so_far": rm_report["pairs"]["kept"], "rm_heldout_accuracy": rm_report["eval_accuracy"],
            "rm_fresh_accuracy": fresh_pair_accuracy(policy, reward_model, gold, cfg, prompts, seed),
            "gold_reference": gold_ref, "gold_aligned": gold_aligned,
            "proxy_aligned": results["metrics"]["aligned"]["reward_mean"],
            "proxy_reference": results["metrics"]["reference"]["reward_mean"],
            "judge_positive_rate_reference": results["metrics"]["reference"]["judge_positive_rate"],
            "judge_positive_rate_aligned": results["metrics"]["aligned"]["judge_positive_rate"],
            "kl_to_start": results["metrics"]["aligned"]["kl_to_reference_mean"],
        }
        write_json(os.path.join(out, ROUND_RESULTS), row)
        rows.append(row)
        write_results(cfg.output_dir, rows, cfg)
        print(f"round {r}/{cfg.rounds} done: gold {gold_ref:.3f} -> {gold_aligned:.3f}, proxy "
              f"{row['proxy_aligned']:.3f}, KL to start {row['kl_to_start']:.2f} nats, reward-model accuracy on fresh "
              f"pairs {row['rm_fresh_accuracy']:.3f}")
    if rows:
        write_results(cfg.output_dir, rows, cfg)
    return rows


def ppo_settings(cfg: LoopConfig) -> tuple[PPOConfig, dict]:
    """(PPO's base config, the prompt options given): `cfg.ppo_config`'s `train` section parsed and checked as
    `rlhf-demo train --config FILE` would (types converted, unknown keys and bad values refused with one line), so a
    bad file fails before round 1's work, not after it."""
    if not cfg.ppo_config:
        return PPOConfig(), {}
    given = load_yaml_config(cfg.ppo_config, "train")
    base = parse_config(PPOConfig, ["--config", cfg.ppo_config], section="train", prog="rlhf-demo loop --ppo_config")
    return base, {k: getattr(base, k) for k in PROMPT_KEYS if k in given}


def check_same_loop(cfg: LoopConfig) -> None:
    """Record the loop's settings in OUTPUT/loop_config.yaml, or, on a rerun, refuse other settings than the recorded
    ones (its rounds would mix two experiments); only --rounds may change (more rounds extend the loop)."""
    path = os.path.join(cfg.output_dir, LOOP_CONFIG)
    now = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "rounds"}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            saved = yaml.safe_load(f) or {}
        changed = sorted(k for k in now if k in saved and saved[k] != now[k])
        if changed:
            diffs = "; ".join(f"{k}: {saved[k]!r} before, {now[k]!r} now" for k in changed)
            raise UserInputError(f"--output_dir {cfg.output_dir!r} holds a loop run with other settings ({diffs}); "
                                 "rerun with the same settings to continue it, or choose another --output_dir.")
        return
    os.makedirs(cfg.output_dir, exist_ok=True)
    save_config(cfg, path)


def count_round_rows(path: str, round_: int, drop_partial: int) -> int:
    """Rows of round `round_` in the preference file `path`. When there are fewer than `drop_partial` (a round
    killed while appending), they are removed from the file (rewritten through a rename) and 0 is returned, so the
    round labels its pairs again instead of keeping a partial, duplicated set."""
    if not os.path.isfile(path):
        return 0
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.readlines()

    def of_round(line: str) -> bool:
        try:
            row = json.loads(line)
        except ValueError:
            return False
        return isinstance(row, dict) and row.get("round") == round_

    n = sum(map(of_round, lines))
    if 0 < n < drop_partial:
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(line if line.endswith("\n") else line + "\n" for line in lines
                         if not of_round(line) and line.strip())
        os.replace(tmp, path)
        print(f"round {round_}: dropped its {n} of {drop_partial} pairs labelled before an interruption; labelling "
              "them again.")
        return 0
    return n


def ppo_resume_options(policy_dir: str) -> dict:
    """How round PPO continues in `policy_dir`: from its latest checkpoint, afresh over what an interruption before
    the first checkpoint left (`overwrite_output_dir`), or afresh in an empty folder."""
    if list_checkpoints(policy_dir):
        return {"resume_from_checkpoint": "latest", "overwrite_output_dir": False}
    return {"resume_from_checkpoint": None, "overwrite_output_dir": bool(existing_run_files(policy_dir))}


def gold_scores(gold, eval_dir: str) -> tuple[float, float]:
    """Mean gold (annotator, noiseless) score of the reference's and the aligned model's evaluation samples."""
    from .eval.samples import read_samples

    samples = read_samples(os.path.join(eval_dir, "samples.jsonl"))
    prompts = [s["prompt"] for s in samples]
    ref = gold(prompts, [s["reference_response"] for s in samples])
    aligned = gold(prompts, [s["aligned_response"] for s in samples])
    return float(np.mean(ref)), float(np.mean(aligned))


def fresh_pair_accuracy(policy: str, reward_model: str, gold, cfg: LoopConfig, prompts: dict, seed: int) -> float:
    """Share of `cfg.fresh_pairs` new pairs from `policy` on which the reward model prefers what the gold
    (noiseless) prefers; pairs the gold scores equal are left out."""
    from .data import build_prompt_dataset

    model, tokenizer = load_causal_lm(policy, "policy")
    texts = build_prompt_dataset(tokenizer, prompts.get("dataset_name", "stanfordnlp/imdb"), "test",
                                 min_review_chars=prompts.get("min_review_chars", 200),
                                 num_prompts=cfg.fresh_pairs, seed=seed + 7)["query"]
    a, b = generate_pairs(model, tokenizer, texts, seed=seed + 11)
    labels = SimulatedAnnotator(gold, temperature=0).label(texts, a, b)
    decided = [row for row in labels if row["chosen_score"] != row["rejected_score"]]
    if not decided:
        return float("nan")
    from .reward_model import pairwise_accuracy

    return pairwise_accuracy(PreferenceReward(reward_model), [row["prompt"] for row in decided],
                             [row["chosen"] for row in decided], [row["rejected"] for row in decided])


COLUMNS = (("round", "round"), ("pairs_so_far", "pairs so far"), ("rm_heldout_accuracy", "RM acc. (held out)"),
           ("rm_fresh_accuracy", "RM acc. (fresh pairs)"), ("gold_reference", "gold, start"),
           ("gold_aligned", "gold, aligned"), ("proxy_aligned", "proxy, aligned"),
           ("judge_positive_rate_aligned", "judge positive, aligned"), ("kl_to_start", "KL to start (nats)"))


def write_results(output_dir: str, rows: list[dict], cfg: LoopConfig) -> None:
    """loop_results.json (rows and settings), loop_results.md (one table) and loop.png (gold, proxy and fresh-pair
    accuracy by round)."""
    settings = {k: getattr(cfg, k) for k in ("annotator_temperature", "rounds", "pairs_per_round", "ppo_episodes",
                                             "fresh_pairs", "eval_num_prompts", "seed")}
    settings.update(annotator=spec_name(cfg.annotator), model=display_name(cfg.model_name_or_path))
    write_json(os.path.join(output_dir, "loop_results.json"), {"settings": settings, "rounds": rows})
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(label for _, label in COLUMNS) + " |", "|" + "---:|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(row.get(k)) for k, _ in COLUMNS) + " |" for row in rows]
    with open(os.path.join(output_dir, "loop_results.md"), "w", encoding="utf-8") as f:
        f.write(f"# RLHF loop: {len(rows)} round(s)\n\nSettings: `{json.dumps(settings)}`\n\n")
        f.write("\n".join(lines) + "\n")
    from .curves import new_figure

    fig = new_figure((10, 3.8))
    ax1, ax2 = fig.subplots(1, 2)
    x = [row["round"] for row in rows]
    ax1.plot(x, [row["gold_aligned"] for row in rows], "o-", label="gold (annotator), aligned")
    ax1.plot(x, [row["proxy_aligned"] for row in rows], "s--", label="proxy (reward model), aligned")
    ax1.axhline(rows[0]["gold_reference"], color="grey", lw=0.8, label="gold, starting policy")
    ax1.set_xlabel("round"), ax1.set_ylabel("score"), ax1.legend(fontsize=8)
    ax2.plot(x, [row["rm_fresh_accuracy"] for row in rows], "o-", label="fresh pairs of the new policy")
    ax2.plot(x, [row["rm_heldout_accuracy"] for row in rows], "s--", label="held-out pairs")
    ax2.set_xlabel("round"), ax2.set_ylabel("reward-model accuracy"), ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(output_dir, "loop.png"), dpi=120)

