"""The Space's Methods tab: PPO, DPO, RLOO, GRPO and best-of-n on the same feedback, one reward-KL frontier.

Shows what `benchmarks/frontier.py` wrote for the tiny preset (committed under `eval/results/frontier`, installed as
`rlhf_demo/eval/results/frontier`):
the plot of gold score against KL to the reference, the table of every point, and, for a prompt the visitor picks,
the response of each method's shown model to that held-out prompt: its final model with the highest gold score at KL
<= 6 nats, or, for a method with none that close to the reference, its final model with the lowest KL
(`benchmarks/frontier.py`'s `shown_points`); the table says which each row is. Nothing runs a model here (the
models of each method would exceed the tiny preset's size budget), so the tab is static and cheap.
"""

from __future__ import annotations

import json
import os

import gradio as gr

FRONTIER_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "eval", "results",
                            "frontier")
SHOWN_PROMPTS = 64
MAX_KL = 6.0  # nats: the KL budget `frontier.py` picks each method's shown model within


def load_frontier(folder: str = FRONTIER_DIR) -> dict | None:
    """The plot path, the table (Markdown) and the samples ({"prompts": [str], "methods": {label: {"setting",
    "gold", "kl", "responses": [str]}}}) written by `frontier.py --space_dir`; None when the folder lacks them."""
    paths = {name: os.path.join(folder, name) for name in ("frontier.png", "frontier.md", "samples.json")}
    if not all(os.path.isfile(p) for p in paths.values()):
        return None
    with open(paths["frontier.md"], encoding="utf-8") as f:
        table = f.read()
    with open(paths["samples.json"], encoding="utf-8") as f:
        samples = json.load(f)
    return {"plot": paths["frontier.png"], "table": table, "samples": samples}


def which_point(kl: float) -> str:
    """Which of its models a method shows, by the KL of that model (`frontier.py`'s `shown_points`)."""
    return f"best gold at KL <= {MAX_KL:g}" if kl <= MAX_KL else f"lowest KL (none <= {MAX_KL:g})"


def responses_heading(samples: dict) -> str:
    """The heading of the response table: what each row's model is, naming the methods shown above the KL budget."""
    over = [label for label, m in samples["methods"].items() if m["kl"] > MAX_KL]
    heading = (f"Each method's response to this prompt, by its final model with the highest gold score at KL <= "
               f"{MAX_KL:g} nats")
    if over:
        heading += f"; for {', '.join(over)}, with no final model that close, the one with the lowest KL"
    return heading


def method_responses(samples: dict, prompt_index: int) -> list[list]:
    """Rows [method, setting, shown model (`which_point`), gold score, KL (nats), response] of each method's shown
    model for prompt `prompt_index` (an index into samples["prompts"])."""
    return [[label, m["setting"], which_point(m["kl"]), round(m["gold"], 3), round(m["kl"], 2),
             m["responses"][prompt_index]] for label, m in samples["methods"].items()]


def build_methods_tab(folder: str = FRONTIER_DIR) -> None:
    """The Methods tab (see the module docstring); says how to produce the comparison when none is shipped."""
    frontier = load_frontier(folder)
    with gr.Tab("Methods", id="methods"):
        if frontier is None:
            gr.Markdown("No method comparison is shipped with this install. Produce one with "
                        "`python benchmarks/frontier.py --space_dir eval/results/frontier` in a checkout.")
            return
        gr.Markdown("Which alignment method? PPO, DPO, RLOO, GRPO and best-of-n, each trained from the tiny policy on "
                    "the same simulated feedback (a Bradley-Terry reward model or, for DPO, the comparisons), scored "
                    "by the annotator's own score (gold) on the same held-out prompts, against KL to the reference "
                    "(Rafailov et al. 2023, Figure 2).")
        gr.Image(frontier["plot"], label="Gold score against KL to the reference", type="filepath",
                 interactive=False, elem_id="methods-plot")
        prompts = frontier["samples"]["prompts"][:SHOWN_PROMPTS]
        choice = gr.Dropdown(choices=[(p, i) for i, p in enumerate(prompts)], value=0, label="Held-out prompt",
                             elem_id="methods-prompt")
        responses = gr.Dataframe(value=method_responses(frontier["samples"], 0),
                                 headers=["method", "setting", "shown model", "gold score", "KL (nats)", "response"],
                                 label=responses_heading(frontier["samples"]), interactive=False, wrap=True,
                                 elem_id="methods-responses")
        choice.change(lambda i: method_responses(frontier["samples"], int(i)), choice, responses,
                      api_name="method_responses")
        with gr.Accordion("Every point", open=False):
            gr.Markdown(frontier["table"])
