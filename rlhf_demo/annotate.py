"""The simulated annotator and `rlhf-demo preferences`: pairs of continuations, labelled, appended to a preference file.

The annotator stands in for people (Ziegler et al. 2019's "mock" labeller, Gao et al. 2022's gold reward): it prefers
the continuation its reward function scores higher, with Bradley-Terry noise. `generate_pairs` samples two
continuations of each prompt; `collect_preferences` (the command, also one step of `rlhf-demo loop`) labels them and
appends them to a preference file in TRL's format (`feedback.append_preferences`). The file itself, its stores and
readers are `feedback.py`'s; this module sits above it (a command), and no library module imports it.
"""

from __future__ import annotations

import math
import os
import random

from .errors import UserInputError
from .feedback import PREFERENCE_FILE, append_preferences


# ------------------------------------------------------------------------------------------- simulated annotator
class SimulatedAnnotator:
    """A stand-in labeller: prefers the continuation its reward function scores higher, with Bradley-Terry noise.

    P(A preferred to B) = sigmoid((s_A - s_B) / temperature) (Bradley & Terry 1952), the model a Bradley-Terry reward
    model fits; temperature 0 always picks the higher score. |s_A - s_B| <= tie_margin is labelled a tie. Ziegler et
    al. (2019) measured their loop with such a "mock" labeller, as Gao et al. (2022) do with a gold reward model.

    Args:
        reward_fn: `(queries, responses) -> scores`, e.g. `rewards.build_reward(["sentiment=PATH@POSITIVE"])`.
        temperature: tau above, in the score's units (>= 0).
        tie_margin: score difference at or below which a pair is a tie (>= 0).
        seed: seeds the coin flips (labels are reproducible).
        name: how the annotator is recorded in the rows (default: the reward function's repr).
    """

    def __init__(self, reward_fn, temperature: float = 1.0, tie_margin: float = 0.0, seed: int = 0,
                 name: str | None = None):
        if temperature < 0 or tie_margin < 0:
            raise UserInputError(f"The annotator's temperature and tie margin must be >= 0, got {temperature} and "
                                 f"{tie_margin}.")
        self.reward_fn, self.temperature, self.tie_margin = reward_fn, temperature, tie_margin
        self.rng = random.Random(seed)
        self.name = name or repr(reward_fn)

    def label(self, prompts: list[str], responses_a: list[str], responses_b: list[str]) -> list[dict]:
        """One preference row per pair: `prompt`, `chosen`, `rejected`, `tie`, the annotator, its temperature and
        its noiseless scores of both continuations (`chosen_score`, `rejected_score`)."""
        from .rewards import check_scores

        n = len(prompts)
        s_a = check_scores(self.reward_fn(prompts, responses_a), n, self.reward_fn)
        s_b = check_scores(self.reward_fn(prompts, responses_b), n, self.reward_fn)
        rows = []
        for prompt, a, b, sa, sb in zip(prompts, responses_a, responses_b, s_a, s_b):
            a_wins = self.prefers_first(sa, sb)
            (chosen, cs), (rejected, rs) = ((a, sa), (b, sb)) if a_wins else ((b, sb), (a, sa))
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected,
                         "tie": abs(sa - sb) <= self.tie_margin, "annotator": self.name,
                         "annotator_temperature": self.temperature, "chosen_score": cs, "rejected_score": rs})
        return rows

    def prefers_first(self, s_a: float, s_b: float) -> bool:
        """One Bradley-Terry draw: True with probability sigmoid((s_a - s_b) / temperature)."""
        if self.temperature == 0:
            return s_a >= s_b
        z = (s_a - s_b) / self.temperature
        p = 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))
        return self.rng.random() < p


# ------------------------------------------------------------------------------------------- generating pairs
def generate_pairs(model, tokenizer, prompts: list[str], *, other=None, max_new_tokens: int = 24,
                   temperature: float = 1.0, seed: int = 0, batch_size: int = 64) -> tuple[list[str], list[str]]:
    """Two continuations of each prompt (text): A from `model`, B from `other` = (model, tokenizer) when given (e.g.
    the reference) or else a second, independent sample of `model` (another seed). Returns (A texts, B texts)."""
    from .sampling import generate

    kwargs = dict(max_new_tokens=max_new_tokens, temperature=temperature, batch_size=batch_size)
    a = generate(model, tokenizer, prompts, seed=seed, desc="sampling A", **kwargs).texts
    model_b, tokenizer_b = other if other is not None else (model, tokenizer)
    b = generate(model_b, tokenizer_b, prompts, seed=seed + 1_000_003, desc="sampling B", **kwargs).texts
    return a, b


sample_pairs = generate_pairs  # the old name, kept for one release (`eval.samples.sample_pairs` *reads* pairs)


# ------------------------------------------------------------------------------------------- the command
def collect_preferences(cfg, annotator_fn=None) -> dict:
    """`rlhf-demo preferences`: sample `cfg.num_pairs` pairs (a `PreferencesConfig`), label them with the simulated
    annotator and append them to `cfg.output`. `annotator_fn` overrides the annotator built from `cfg.annotator`.
    Returns a summary: pairs written, ties, rows now stored, the file written.

    Raises:
        UserInputError / MissingInputError: a model, dataset or annotator spec that cannot be used.
    """
    from .data import build_prompt_dataset
    from .models import display_name, load_causal_lm
    from .rewards import build_reward

    check_preference_output(cfg.output)  # before any sampling: a bad --output fails in a second
    model, tokenizer = load_causal_lm(cfg.model, "model (--model)")
    other = load_causal_lm(cfg.other_model, "other model (--other_model)") if cfg.other_model else None
    prompts = build_prompt_dataset(tokenizer, cfg.dataset_name, cfg.split, min_review_chars=cfg.min_review_chars,
                                   min_query_tokens=cfg.min_query_tokens, max_query_tokens=cfg.max_query_tokens,
                                   num_prompts=cfg.num_pairs, seed=cfg.seed)["query"]
    a, b = generate_pairs(model, tokenizer, prompts, other=other, max_new_tokens=cfg.max_new_tokens,
                          temperature=cfg.temperature, seed=cfg.seed, batch_size=cfg.batch_size)
    annotator = SimulatedAnnotator(annotator_fn or build_reward([cfg.annotator]), cfg.annotator_temperature,
                                   cfg.tie_margin, seed=cfg.seed, name=spec_name(cfg.annotator))
    rows = annotator.label(prompts, a, b)
    models = {"model_a": display_name(cfg.model), "model_b": display_name(cfg.other_model or cfg.model)}
    rows = [{**row, **models, "round": cfg.round, "seed": cfg.seed} for row in rows]
    stored = append_preferences(cfg.output, rows)
    summary = {"pairs": len(rows), "ties": sum(r["tie"] for r in rows), "stored": stored, "file": cfg.output}
    print(f"{summary['pairs']} pairs labelled by {annotator.name} (tau {cfg.annotator_temperature:g}, "
          f"{summary['ties']} ties) appended to {cfg.output}: {stored} rows in all")
    return summary


def spec_name(spec: str) -> str:
    """A reward spec as recorded in a row: its model named as `models.display_name` does (no machine path)."""
    from .models import display_name
    from .rewards import split_reward_spec

    s = split_reward_spec(spec)
    if s.kind in ("keyword", "python", "vader"):
        return spec
    return f"{s.kind}={display_name(s.target)}" + (f"@{s.label}" if s.label else "")


def check_preference_output(path: str, flag: str = "--output") -> None:
    """Raise UserInputError unless `path` is somewhere `append_preferences` can write: a `.jsonl` file (new or
    existing) in a writable folder, or a folder, existing or new; a new folder is a path without an extension, so
    `prefs.json` is refused rather than made a folder, and so is an existing file that is not `.jsonl`."""
    from .runs import check_output_dir

    target = os.path.abspath(os.path.expanduser(path))
    ext = os.path.splitext(target)[1]
    if path.endswith(".jsonl"):
        if os.path.isdir(target):
            raise UserInputError(f"{flag} {path!r} is a folder; pass a .jsonl file, or a folder path without the "
                                 ".jsonl ending.")
        check_output_dir(os.path.dirname(target), f"The folder of {flag} {path!r},")
        return
    if os.path.isfile(target):
        raise UserInputError(f"{flag} {path!r} is an existing file, not a JSON-lines file (.jsonl); pass a .jsonl "
                             "file to append to, or a folder (existing, or a new path without an extension) that gets "
                             f"{PREFERENCE_FILE} and a dataset card.")
    if not os.path.isdir(target) and ext:
        raise UserInputError(f"{flag} {path!r} ends in {ext!r}: a preference file must end in .jsonl, and a new "
                             f"folder is a path without an extension; pass {os.path.splitext(path)[0]}.jsonl, or a "
                             "folder.")
    check_output_dir(target, flag)
