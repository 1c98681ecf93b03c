"""The picture of a training run: `training_curves.png`, drawn from its `metrics.jsonl`.

Four panels against episodes: the reward (`objective/scores`, the reward functions' raw output, and
`objective/rlhf_reward`, the score minus the KL penalty), the KL to the reference (`objective/kl`, nats per response),
the KL coefficient beta (`objective/kl_coef`) and the value loss (`loss/value_avg`). Drawn with matplotlib's object
API (`matplotlib.figure.Figure` and its Agg canvas), which touches no global backend state (matplotlib docs, "Embedding
in a web application server").
"""

from __future__ import annotations

import math

CURVES_FILE = "training_curves.png"
PANELS = (  # (title, y label, metric names drawn in the panel)
    ("Reward", "score", ("objective/scores", "objective/rlhf_reward")),
    ("KL to the reference", "nats per response", ("objective/kl",)),
    ("KL coefficient", "beta", ("objective/kl_coef",)),
    ("Value loss", "loss", ("loss/value_avg",)),
)


def new_figure(figsize: tuple[float, float]):
    """A matplotlib `Figure` with its own Agg canvas: drawing and `savefig` touch no global backend state (unlike
    pyplot and `matplotlib.use`), so library code can draw in any process, a Gradio server's included."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def plot_training_curves(rows: list[dict], path: str) -> bool:
    """Write the four panels of `PANELS` for the metric rows `rows` (one dict per logged PPO step, with `episode`) to
    the PNG file `path`. Returns False, writing nothing, when no row has an episode and a finite value to draw."""
    def series(name):
        points = [(r["episode"], r[name]) for r in rows if isinstance(r.get(name), (int, float))
                  and isinstance(r.get("episode"), (int, float)) and math.isfinite(r[name])]
        return [p[0] for p in points], [p[1] for p in points]

    if not any(series(name)[0] for _, _, names in PANELS for name in names):
        return False
    fig = new_figure((12, 3.2))
    for i, (title, ylabel, names) in enumerate(PANELS):
        ax = fig.add_subplot(1, len(PANELS), i + 1)
        for name in names:
            x, y = series(name)
            if x:
                ax.plot(x, y, lw=1.4, label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("episodes", fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if len(names) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True
