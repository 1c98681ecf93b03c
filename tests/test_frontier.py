"""The method comparison (`benchmarks/frontier.py`): every method gives a point from one invocation, best-of-n's KL
follows its formula, the invocation resumes without retraining, and the Space's Methods tab reads what it wrote."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

FRONTIER = os.path.join(REPO, "benchmarks", "frontier.py")


def load_frontier_module():
    spec = importlib.util.spec_from_file_location("frontier", FRONTIER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("n", [1, 2, 4, 16])
def test_best_of_n_kl_matches_the_exact_kl_of_a_fine_categorical(n):
    # K equally likely outcomes with distinct rewards: best-of-n picks outcome i (i-th by reward) with probability
    # (i/K)^n - ((i-1)/K)^n; its KL to the base distribution tends to log n - (n-1)/n as K grows.
    K = 100_000
    F = np.arange(K + 1) / K
    p_bon = F[1:] ** n - F[:-1] ** n
    exact = float(np.sum(p_bon * np.log(p_bon * K, where=p_bon > 0, out=np.zeros(K))))
    assert load_frontier_module().best_of_n_kl(n) == pytest.approx(exact, abs=2e-3)
    assert load_frontier_module().best_of_n_kl(1) == 0.0


def test_reading_counts_half_way_checkpoints_and_the_space_falls_back_to_the_lowest_kl():
    f = load_frontier_module()
    points = [
        {"method": "rloo", "setting": "beta=0.1", "reward": "reward model", "gold": 2.0, "kl": 15.0, "wall_s": 100,
         "checkpoints": [{"step": 8, "gold": 1.2, "kl": 5.0}]},
        {"method": "rloo", "setting": "beta=0.2", "reward": "reward model", "gold": 1.4, "kl": 8.0, "wall_s": 90,
         "checkpoints": [{"step": 8, "gold": 1.1, "kl": 4.0}]},
        {"method": "rloo", "setting": "beta=0.1", "reward": "gold", "gold": 1.9, "kl": 5.0, "wall_s": 100,
         "checkpoints": []},  # the ceiling: never part of the reading
        {"method": "dpo", "setting": "beta=0.1", "reward": "comparisons", "gold": 1.5, "kl": 5.7, "wall_s": 110,
         "checkpoints": [{"step": 60, "gold": 1.3, "kl": 3.0}]},
    ]
    best = f.best_points(points)
    assert best["rloo"]["setting"] == "beta=0.1, half-way" and best["rloo"]["wall_s"] == 50
    assert best["dpo"]["setting"] == "beta=0.1" and best["dpo"]["gold"] == 1.5
    shown = f.shown_points(points)
    assert shown["rloo"]["setting"] == "beta=0.2" and shown["dpo"]["gold"] == 1.5  # no final RLOO model at KL <= 6


@pytest.mark.slow
def test_five_methods_in_one_ci_sized_invocation(tmp_path):
    work, out, space = tmp_path / "work", tmp_path / "results", tmp_path / "space"
    cmd = [sys.executable, FRONTIER, "--work_dir", str(work), "--output", str(out), "--space_dir", str(space),
           "--pairs", "32", "--rm_epochs", "1", "--episodes", "64", "--ppo_kl_coefs", "0.1", "--rloo_betas", "0.1",
           "--grpo_betas", "0.1", "--dpo_betas", "0.1", "--dpo_batch_size", "8", "--best_of_n", "1", "2", "4",
           "--eval_prompts", "8", "--ceiling_kl_coef", "0"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [results_file] = list(out.glob("*-frontier.json"))
    results = json.loads(results_file.read_text())
    points = results["points"]
    assert sorted({p["method"] for p in points}) == ["best_of_n", "dpo", "grpo", "ppo", "rloo"]
    bon = [p for p in points if p["method"] == "best_of_n"]
    assert [p["samples_per_prompt"] for p in bon] == [1, 2, 4]
    assert [p["kl"] for p in bon] == [pytest.approx(math.log(n) - (n - 1) / n) for n in (1, 2, 4)]
    for p in points:
        assert math.isfinite(p["gold"]) and 0 <= p["judge_positive_rate"] <= 1 and p["wall_s"] > 0
        if p["method"] != "best_of_n":  # a trained model, evaluated against the reference by the eval suite
            assert -0.5 < p["kl"] < 50 and os.path.isfile(os.path.join(p["run"], "eval", "eval_results.json"))
    assert (out / results_file.name.replace(".json", ".png")).stat().st_size > 0
    table = (out / results_file.name.replace(".json", ".md")).read_text()
    for label in ("PPO (rlhf-demo)", "DPO (TRL)", "RLOO (TRL)", "GRPO (TRL)", "best-of-n"):
        assert label in table

    # A second invocation resumes: nothing is trained or sampled again, the same points come back, and the wall
    # time counts both invocations.
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = json.loads(results_file.read_text())
    assert [(p["method"], p["wall_s"], p["gold"]) for p in rerun["points"]] == \
           [(p["method"], p["wall_s"], p["gold"]) for p in points]
    assert len(rerun["invocations_wall_s"]) == 2
    assert rerun["total_wall_s"] == pytest.approx(sum(rerun["invocations_wall_s"]), abs=0.2)

    # The Space's Methods tab reads the files frontier.py wrote for it.
    from rlhf_demo.space.methods import build_methods_tab, load_frontier, method_responses

    shown = load_frontier(str(space))
    assert shown is not None and "best-of-n" in shown["table"]
    rows = method_responses(shown["samples"], 3)
    assert rows and all(isinstance(r[-1], str) and r[-1] for r in rows)  # the response is the last column
    assert len(shown["samples"]["prompts"]) == 8
    import gradio as gr

    with gr.Blocks() as demo:
        build_methods_tab(str(space))
    assert any(getattr(b, "label", None) == "Held-out prompt" for b in demo.blocks.values())
