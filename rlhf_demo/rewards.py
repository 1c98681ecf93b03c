"""Reward functions: anything callable as `(queries: list[str], responses: list[str]) -> list[float]`.

Rewards score decoded text, never the policy's token ids, so a reward model may use its own tokenizer
(TRL issue #2778). Provided, with their `--reward` spec:

- `ClassifierReward` (`sentiment=PATH@LABEL`): a sequence classifier's logit (or probability) of one label, e.g.
  POSITIVE as in Ziegler et al. (2019) and TRL's gpt2-sentiment example with `lvwerra/distilbert-imdb`.
- `PreferenceReward` (`preference=PATH`): a Bradley-Terry reward model's one logit, trained on preference pairs.
- `ToxicityReward` (`toxicity=PATH`): minus a toxicity classifier's probability of its toxic label.
- `KeywordReward` (`keyword=WORD`): 1.0 when the response contains a word, else 0.0 (the simplest example).
- `VaderReward` (`vader`): VADER's compound sentiment, offline; `PythonReward` (`python=module:function`).
- `WeightedSum`: a weighted sum of any of the above, or of plain Python callables.

`split_reward_spec` reads a `KIND=TARGET[@LABEL][:WEIGHT]` spec; `build_reward` turns specs into one function.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .errors import UserInputError

RewardFn = Callable[[list[str], list[str]], list[float]]


class ClassifierReward:
    """Score of one label of an `AutoModelForSequenceClassification`, on `query + response` text.

    A model with a single output (a Bradley-Terry reward model, `num_labels=1`) is scored on
    `query + response + EOS`, as TRL's `RewardTrainer` trains it, its logit being the reward and its sigmoid the
    probability; `label` is then ignored.

    Args:
        model_name_or_path: Hub id or local folder of the classifier (loaded with its own tokenizer).
        label: the label to reward, by name as in the model's `config.id2label` (case-insensitive).
        kind: `"logit"` (raw logit of the label, the Ziegler et al. / TRL reward) or `"probability"` (softmax).
        batch_size: texts per forward pass.
        max_length: at most this many tokens per text; the window is also capped by the model's context
            (`context_window`). A longer text loses its start (the query), never the response's end: the
            tokenizer truncates on the left here, whatever side it was saved with.
        score_query: score `query + response` (default, as in TRL's gpt2-sentiment) or the response alone.
        label_fix: how the caller's user names another label (the end of the message for a label the model lacks).

    Raises:
        ValueError: the label is not one of the model's labels (the message lists them) or `kind` is unknown.
    """

    def __init__(self, model_name_or_path: str, label: str | None = "POSITIVE", kind: str = "logit",
                 batch_size: int = 64, max_length: int = 512, score_query: bool = True,
                 device: str | torch.device = "cpu", label_fix: str = "Name one after @ in the reward spec."):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from .models import PRESET_REWARD_MODELS, check_model_path, ensure_pad_token, loading_errors, use_fused_gelu

        if kind not in ("logit", "probability"):
            raise UserInputError(f"kind must be 'logit' or 'probability', got {kind!r}.")
        self.name = model_name_or_path
        path = check_model_path(model_name_or_path, "reward model (--reward)", PRESET_REWARD_MODELS)
        with loading_errors(path, "reward model (--reward)"):
            self.tokenizer = ensure_pad_token(AutoTokenizer.from_pretrained(path))
            model, info = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32,
                                                                             output_loading_info=True)
        if info.get("missing_keys"):  # e.g. a causal LM: transformers gives it a new, random classification head
            missing = sorted(info["missing_keys"])
            raise UserInputError(f"The reward model {model_name_or_path!r} is not a trained sequence classifier: its "
                                 f"weights lack {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}, which "
                                 "would start random. Pass a classifier or a reward model trained with `rlhf-demo "
                                 "reward-model`.")
        if self.tokenizer.pad_token_id is None:
            raise UserInputError(f"The tokenizer of the reward model {model_name_or_path!r} has neither a pad nor an "
                                 "EOS token, so batches cannot be padded; add a pad token to it (tokenizer."
                                 "add_special_tokens({'pad_token': ...}) and save it), or pass another reward model.")
        self.model = use_fused_gelu(model).to(device).eval()
        # Queries may be long (prompt-only datasets): the response must always be seen, so texts are cut from the
        # LEFT (the query's start) to the model's own context, whatever side the tokenizer was saved with.
        self.window = context_window(self.model, self.tokenizer, max_length)
        self.tokenizer.truncation_side = "left"
        # Padded on the RIGHT whatever side the tokenizer was saved with: the classifier gets no position ids, so left
        # padding shifted a text's positions by its batch's longest text and its score with them (a short text
        # scored -2.28 alone, -0.10 beside a long one); right padding leaves every real token at its own position.
        self.tokenizer.padding_side = "right"
        self.truncated: list[bool] = []  # per text of the last call: cut to the window
        self._warned = False
        if getattr(self.model.config, "pad_token_id", None) is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.bradley_terry = self.model.config.num_labels == 1
        labels = {v.upper(): int(k) for k, v in self.model.config.id2label.items()}
        if self.bradley_terry:
            self.label, self.label_id = None, 0
        elif label is None:
            raise UserInputError(f"{model_name_or_path!r} has {len(labels)} outputs {sorted(labels)}, not the one "
                                 "logit of a Bradley-Terry reward model; name the label: sentiment=PATH@LABEL.")
        elif label.upper() not in labels:
            raise UserInputError(f"Label {label!r} is not a label of {model_name_or_path!r}; its labels are "
                                 f"{sorted(labels)}. {label_fix}")
        else:
            self.label, self.label_id = label.upper(), labels[label.upper()]
        self.kind = kind
        self.batch_size, self.max_length, self.score_query, self.device = batch_size, max_length, score_query, device

    @torch.inference_mode()
    def logit_and_probability(self, queries: list[str], responses: list[str]) -> tuple[list[float], list[float]]:
        """The label's logit and its probability (softmax; sigmoid for a one-output model) for each text, from one
        forward pass: two lists of N floats."""
        texts = [q + r for q, r in zip(queries, responses)] if self.score_query else list(responses)
        if self.bradley_terry:  # as RewardTrainer saw its training texts
            texts = [t + (self.tokenizer.eos_token or "") for t in texts]
        logits_out: list[float] = []
        probs_out: list[float] = []
        lengths = [len(ids) for ids in self.tokenizer(texts)["input_ids"]]
        self.truncated = [n > self.window for n in lengths]
        if any(self.truncated) and not self._warned:
            self._warned = True
            print(f"warning: {sum(self.truncated)} of {len(texts)} texts exceed the {self.window}-token window of the "
                  f"reward model {self.name!r}; their start (the query's) is cut so the response is scored whole "
                  "(counted in objective/reward_truncated_frac). Shorten prompts with --max_prompt_length.",
                  file=sys.stderr)
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[i : i + self.batch_size], padding=True, truncation=True,
                                 max_length=self.window, return_tensors="pt").to(self.device)
            logits = self.model(**enc).logits.float()
            probs = logits.sigmoid() if self.bradley_terry else logits.softmax(-1)
            logits_out.extend(logits[:, self.label_id].tolist())
            probs_out.extend(probs[:, self.label_id].tolist())
        return logits_out, probs_out

    def __call__(self, queries: list[str], responses: list[str]) -> list[float]:
        logits, probs = self.logit_and_probability(queries, responses)
        return probs if self.kind == "probability" else logits

    def __repr__(self) -> str:
        return f"ClassifierReward({self.name!r}, label={self.label!r}, kind={self.kind!r})"


def context_window(model, tokenizer, max_length: int | None = None) -> int:
    """Tokens a model can read at once: its position embeddings (`max_position_embeddings` or `n_positions`, less
    RoBERTa's padding offset), the tokenizer's `model_length` when it is set to a real length, and `max_length`,
    whichever is smallest (at least 1)."""
    cfg = model.config
    bounds = [b for b in (getattr(cfg, "n_positions", None), getattr(cfg, "max_position_embeddings", None)) if b]
    if bounds and getattr(cfg, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        bounds = [b - 2 for b in bounds]  # positions start after the padding index (pad_token_id + 1)
    if 0 < getattr(tokenizer, "model_max_length", 0) < 1_000_000:
        bounds.append(tokenizer.model_max_length)
    if max_length:
        bounds.append(max_length)
    return max(1, min(bounds)) if bounds else 512


def truncated_count(reward_fn) -> int | None:
    """Texts of the last call that some model of the reward function cut to its window (a text cut by two parts of a
    WeightedSum counts once), or None for a reward without models."""
    parts = reward_fn.reward_fns if isinstance(reward_fn, WeightedSum) else [reward_fn]
    flags = [part.truncated for part in parts if isinstance(part, ClassifierReward)]
    return sum(map(any, zip(*flags))) if flags else None


SentimentReward = ClassifierReward  # its former name (the IMDB sentiment reward), kept one release


class ToxicityReward(ClassifierReward):
    """Minus the probability of a toxicity classifier's toxic label (default label `hate`, as in
    `facebook/roberta-hate-speech-dynabench-r4-target`), scored on the response alone. Reward in [-1, 0]."""

    def __init__(self, model_name_or_path: str = "facebook/roberta-hate-speech-dynabench-r4-target",
                 label: str = "hate", **kwargs):
        kwargs.setdefault("kind", "probability")
        kwargs.setdefault("score_query", False)
        super().__init__(model_name_or_path, label=label, **kwargs)

    def __call__(self, queries: list[str], responses: list[str]) -> list[float]:
        return [-s for s in super().__call__(queries, responses)]

    def __repr__(self) -> str:
        return f"ToxicityReward({self.name!r}, label={self.label!r})"


class KeywordReward:
    """1.0 if the response contains `keyword` as a whole word (case-insensitive), else 0.0."""

    def __init__(self, keyword: str = "good"):
        import re

        self.keyword = keyword
        self._pattern = re.compile(rf"\b{re.escape(keyword)}\b", re.IGNORECASE)

    def __call__(self, queries: list[str], responses: list[str]) -> list[float]:
        return [1.0 if self._pattern.search(r) else 0.0 for r in responses]

    def __repr__(self) -> str:
        return f"KeywordReward({self.keyword!r})"


class PreferenceReward(ClassifierReward):
    """The one logit of a Bradley-Terry reward model (`rlhf-demo reward-model --preferences`), on
    `query + response + EOS`: the text as TRL's `RewardTrainer` saw it in training (it appends EOS), so PPO scores
    what the model was fit on. Any 1-logit `AutoModelForSequenceClassification` works.

    Raises:
        UserInputError: the model has more than one output (a classifier: use `sentiment=PATH@LABEL`).
    """

    def __init__(self, model_name_or_path: str, **kwargs):
        super().__init__(model_name_or_path, label=None, **kwargs)

    def __repr__(self) -> str:
        return f"PreferenceReward({self.name!r})"


class VaderReward:
    """VADER's compound sentiment score in [-1, 1] of `query + response` (Hutto & Gilbert 2014), the evaluation's
    independent judge, as a reward or a simulated annotator (offline, no model)."""

    def __init__(self):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()

    def __call__(self, queries: list[str], responses: list[str]) -> list[float]:
        return [self.analyzer.polarity_scores(q + r)["compound"] for q, r in zip(queries, responses)]

    def __repr__(self) -> str:
        return "VaderReward()"


class PythonReward:
    """Any Python function `(queries, responses) -> scores`, named as `module:function` (the module importable)."""

    def __init__(self, target: str):
        import importlib

        module, sep, name = target.partition(":")
        if not sep or not module or not name:
            raise UserInputError(f"A python reward is named module:function, got {target!r}.")
        try:
            self.fn = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise UserInputError(f"Cannot load the reward function {target!r}: {e}. Check the module is importable "
                                 "(e.g. on PYTHONPATH) and defines the function.") from None
        self.target = target

    def __call__(self, queries: list[str], responses: list[str]) -> list[float]:
        return self.fn(queries, responses)

    def __repr__(self) -> str:
        return f"PythonReward({self.target!r})"


class WeightedSum:
    """sum_i w_i * f_i(queries, responses) over reward functions f_i with weights w_i."""

    def __init__(self, reward_fns: Sequence[RewardFn], weights: Sequence[float] | None = None):
        if not reward_fns:
            raise UserInputError("WeightedSum needs at least one reward function.")
        self.reward_fns = list(reward_fns)
        self.weights = list(weights) if weights is not None else [1.0] * len(self.reward_fns)
        if len(self.weights) != len(self.reward_fns):
            raise UserInputError(f"Got {len(self.reward_fns)} reward functions but {len(self.weights)} weights.")

    def __call__(self, queries: list[str], responses: list[str]) -> list[float]:
        total = [0.0] * len(responses)
        for fn, w in zip(self.reward_fns, self.weights):
            for i, s in enumerate(check_scores(fn(queries, responses), len(responses), fn)):
                total[i] += w * s
        return total

    def __repr__(self) -> str:
        return " + ".join(f"{w:g} * {fn!r}" for fn, w in zip(self.reward_fns, self.weights))


def check_scores(scores, n: int, fn=None) -> list[float]:
    """Validate a reward function's output: `n` finite numbers. Raises ValueError naming the function."""
    name = repr(fn) if fn is not None else "reward function"
    try:
        scores = [float(s) for s in scores]
    except (TypeError, ValueError) as e:
        raise UserInputError(f"{name} must return a list of numbers, one per response; got {type(scores).__name__} "
                             f"({e}).") from e
    if len(scores) != n:
        raise UserInputError(f"{name} returned {len(scores)} scores for {n} responses; it must return exactly one "
                             "score per response.")
    bad = [i for i, s in enumerate(scores) if not math.isfinite(s)]
    if bad:
        raise UserInputError(f"{name} returned non-finite scores (NaN or inf) at positions {bad[:10]}; fix the reward "
                             "function.")
    return scores


REWARD_KINDS = {"sentiment": ClassifierReward, "toxicity": ToxicityReward, "keyword": KeywordReward,
                "preference": PreferenceReward, "vader": VaderReward, "python": PythonReward}
NO_TARGET_KINDS = ("vader",)  # kinds written without `=TARGET`


@dataclass(frozen=True)
class RewardSpec:
    """One `--reward KIND=TARGET[@LABEL][:WEIGHT]`, parsed without loading anything (`split_reward_spec`)."""

    kind: str  # a key of REWARD_KINDS: sentiment, toxicity, keyword, preference, vader or python
    target: str  # the classifier (Hub id or path), or the keyword
    label: str | None  # the classifier's label (None: the reward class's default)
    weight: float


def split_reward_spec(spec: str) -> RewardSpec:
    """Parse `KIND=ARG[:WEIGHT]` (e.g. `sentiment=lvwerra/distilbert-imdb`, `toxicity=PATH:0.5`, `keyword=good`);
    a classifier's ARG may carry a label: `sentiment=PATH@POSITIVE`. Loads nothing.

    Raises ValueError for an unknown kind or a spec without `=` or without a target.
    """
    head, _, tail = spec.partition(":")
    if head in NO_TARGET_KINDS:  # e.g. `vader` or `vader:0.5`
        return RewardSpec(head, "", None, float(tail) if tail else 1.0)
    if "=" not in spec:
        raise UserInputError(f"Reward spec {spec!r} must look like KIND=PATH_OR_ID[:WEIGHT] with KIND in "
                             f"{sorted(REWARD_KINDS)}.")
    kind, arg = spec.split("=", 1)
    if kind not in REWARD_KINDS:
        raise UserInputError(f"Unknown reward kind {kind!r} in {spec!r}; choose one of {sorted(REWARD_KINDS)}.")
    weight = 1.0
    head, sep, tail = arg.rpartition(":")
    if sep:
        try:
            weight = float(tail)
            arg = head
        except ValueError:
            pass  # a colon that is not a weight (e.g. a Windows path)
    label = None
    if kind not in ("keyword", "python") and "@" in arg:
        arg, label = arg.rsplit("@", 1)
    if not arg:
        raise UserInputError(f"Reward spec {spec!r} names no model or keyword after '='.")
    return RewardSpec(kind, arg, label, weight)


def parse_reward_spec(spec: str, device: str | torch.device = "cpu") -> tuple[RewardFn, float]:
    """The reward function and weight of a `--reward` spec (see `split_reward_spec`), its classifier loaded on
    `device` (the trainer's: the GPU when there is one).

    Raises ValueError for a malformed spec or a label the classifier does not have.
    """
    s = split_reward_spec(spec)
    if s.kind == "vader":
        return VaderReward(), s.weight
    if s.kind in ("keyword", "python"):
        return REWARD_KINDS[s.kind](s.target), s.weight
    target = os.path.expanduser(s.target) if os.path.exists(os.path.expanduser(s.target)) else s.target
    return REWARD_KINDS[s.kind](target, device=device, **({"label": s.label} if s.label else {})), s.weight


def build_reward(specs: Sequence[str], device: str | torch.device = "cpu") -> RewardFn:
    """One reward function from CLI specs: the function itself for one unweighted spec, else a WeightedSum; its
    classifiers on `device`."""
    if not specs:
        raise UserInputError("No reward function given: pass --reward KIND=PATH_OR_ID (e.g. "
                             "sentiment=lvwerra/distilbert-imdb).")
    parsed = [parse_reward_spec(s, device) for s in specs]
    if len(parsed) == 1 and parsed[0][1] == 1.0:
        return parsed[0][0]
    return WeightedSum([f for f, _ in parsed], [w for _, w in parsed])


def reward_label_of(model_name_or_path: str, reward_specs: list[str]) -> str | None:
    """The label rewarded by the `sentiment=` or `preference=` spec in `reward_specs` whose model is
    `model_name_or_path` (compared as resolved paths): the label after `@`, `""` for a spec without one (a
    Bradley-Terry model's single logit), None when no spec scores with that model."""
    from .names import PRESET_REWARD_MODELS, is_local_path, resolve_model_path

    def same(a: str, b: str) -> bool:
        a, b = resolve_model_path(a, PRESET_REWARD_MODELS), resolve_model_path(b, PRESET_REWARD_MODELS)
        return os.path.realpath(a) == os.path.realpath(b) if is_local_path(a) and is_local_path(b) else a == b

    for spec in reward_specs:
        parsed = split_reward_spec(spec)
        if parsed.kind in ("sentiment", "preference") and same(parsed.target, model_name_or_path):
            return parsed.label or ""
    return None
