"""Model card and Hub push: `rlhf-demo push --model RUN_DIR --repo_id NAMESPACE/NAME`.

What goes up, in one commit (`HfApi.create_commit`): the aligned policy (safetensors weights, config,
generation config, tokenizer files), `value_model/`, `training_config.yaml`, `run_info.json`, `metrics.jsonl`,
`eval/` (results, report, plots, samples) when the run was evaluated, `checkpoints/` only with
`--include_checkpoints`, and `README.md`: the model card, built with `huggingface_hub.ModelCard` /
`ModelCardData` (model-index metrics from `eval/eval_results.json` when present).

`--dry_run --output_dir DIR` writes exactly the folder that would be uploaded and touches no network.
The token (`--token`, else `HF_TOKEN`, else the huggingface_hub login) is never printed, logged, written or put
in an error message. Transient failures (connection errors, 429, 5xx) are retried with exponential backoff; a
retry re-runs the whole commit, and since the Hub reports the blob id of files it already holds, an identical
re-upload is a no-op, so a retry never half-uploads or duplicates. Errors come back as one-line `HubPushError`s.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Any, Callable, TypeVar

import yaml
from huggingface_hub import CommitOperationAdd, EvalResult, HfApi, ModelCard, ModelCardData
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Files of a run directory that belong in the model repo (top level, value_model/ and eval/). Everything else
# (optimizer and scheduler state, rng states, stray files) stays local; checkpoints/ goes up only when asked.
MODEL_FILE_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "config.json", "generation_config.json", "tokenizer.json",
                       "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
                       "vocab.txt", "*.model", "chat_template.jinja", "chat_template.json")
RUN_FILES = ("training_config.yaml", "run_info.json", "metrics.jsonl")
EVAL_FILE_PATTERNS = ("eval_results.json", "eval_report.md", "*.png", "*.svg", "samples.jsonl")

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


class HubPushError(Exception):
    """A push that cannot go on; the message is one line, says what to change, and never holds the token."""


# --------------------------------------------------------------------------------------------- run directory
def _read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        if os.path.exists(path):
            logger.warning("Ignoring unreadable %s (%s).", path, type(e).__name__)
        return None


def _read_yaml(path: str) -> Any:
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        if os.path.exists(path):
            logger.warning("Ignoring unreadable %s (%s).", path, type(e).__name__)
        return None


def _read_jsonl(path: str) -> list[dict]:
    rows = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        row = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(row, dict):
                        rows.append(row)
    except OSError:
        pass
    return rows


def check_run_dir(run_dir: str) -> None:
    """Raise HubPushError unless `run_dir` holds a loadable model (weights and config)."""
    if not os.path.isdir(run_dir):
        raise HubPushError(f"Run directory {run_dir!r} does not exist; pass the --output_dir of `rlhf-demo train`.")
    has_weights = os.path.isfile(os.path.join(run_dir, "model.safetensors")) or os.path.isfile(os.path.join(run_dir, "model.safetensors.index.json"))
    if not has_weights:
        raise HubPushError(f"No model weights (model.safetensors) in {run_dir!r}; did `rlhf-demo train` finish? "
                           "(checkpoints/ hold resumable states, not the final model).")
    if not os.path.isfile(os.path.join(run_dir, "config.json")):
        raise HubPushError(f"No config.json in {run_dir!r}; the model cannot be loaded without it.")


def _walk(root: str) -> list[str]:
    """Files under `root`, as sorted POSIX paths relative to it (links to directories not followed)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith("."):
                out.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return sorted(out)


def select_upload_files(run_dir: str, include_checkpoints: bool = False) -> dict[str, str]:
    """Map of path in the repo -> local file, for everything of `run_dir` that goes up (the card excluded)."""
    files: dict[str, str] = {}

    def add(sub: str, patterns: tuple[str, ...], recursive: bool = False):
        base = os.path.join(run_dir, sub) if sub else run_dir
        if not os.path.isdir(base):
            return
        names = _walk(base) if recursive else sorted(n for n in os.listdir(base) if os.path.isfile(os.path.join(base, n)) and not n.startswith("."))
        for rel in names:
            if recursive or any(fnmatch(rel, p) for p in patterns):
                files[f"{sub}/{rel}" if sub else rel] = os.path.join(base, rel)

    add("", MODEL_FILE_PATTERNS + RUN_FILES)
    add("value_model", MODEL_FILE_PATTERNS)
    add("eval", EVAL_FILE_PATTERNS)
    if include_checkpoints:
        add("checkpoints", (), recursive=True)
    files.pop("README.md", None)  # ours is the card
    return files


# --------------------------------------------------------------------------------------------- model card
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _hub_id(name: Any) -> str | None:
    """`name` if it reads as a Hub repo id (not a local path), else None."""
    if not isinstance(name, str) or not name or os.path.isabs(name) or name.startswith(".") or os.path.exists(name):
        return None
    return name if _HUB_ID.match(name) and "--" not in name and ".." not in name else None


def _short(name: Any) -> str:
    """A Hub id as is; a local path by its last component (cards must not carry a machine's paths)."""
    if name is None:
        return "unknown"
    s = str(name)
    if _hub_id(s):
        return s
    base = os.path.basename(s.rstrip("/\\")) or s
    reward_name, sep, path = s.partition("=")  # reward specs: "sentiment=PATH"
    if sep and path:
        return f"{reward_name}={_short(path)}"
    return f"{base} (local)"


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _fmt(x: Any) -> str:
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, (list, tuple)):
        return ", ".join(_fmt(v) for v in x)
    return str(x)


def _cell(x: Any) -> str:
    return _fmt(x).replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _text(x: Any) -> str | None:
    if isinstance(x, str):
        return x
    if isinstance(x, dict):
        for k in ("response", "completion", "text", "generated_text"):
            if isinstance(x.get(k), str):
                return x[k]
    return None


def _sample_pairs(rows: list[dict], n: int = 3) -> list[tuple[str, str, str]]:
    """(prompt, reference, aligned) triples from eval/samples.jsonl, in either layout: one row per prompt with
    `reference` and `aligned` fields, or one row per (model, prompt) with `model` and `response`."""
    pairs: list[tuple[str, str, str]] = []
    by_prompt: dict[str, dict[str, str]] = {}
    for row in rows:
        prompt = row.get("prompt") or row.get("query")
        if not isinstance(prompt, str):
            continue
        ref, ali = _text(row.get("reference")), _text(row.get("aligned"))
        if ref is not None and ali is not None:
            pairs.append((prompt, ref, ali))
        elif row.get("model") in ("reference", "aligned") and _text(row) is not None:
            by_prompt.setdefault(prompt, {}).setdefault(row["model"], _text(row))
    pairs += [(p, d["reference"], d["aligned"]) for p, d in by_prompt.items() if "reference" in d and "aligned" in d]
    return pairs[:n]


CITATIONS = """```bibtex
@article{ziegler2019finetuning,
  title   = {Fine-Tuning Language Models from Human Preferences},
  author  = {Ziegler, Daniel M. and Stiennon, Nisan and Wu, Jeffrey and Brown, Tom B. and Radford, Alec and Amodei, Dario and Christiano, Paul and Irving, Geoffrey},
  journal = {arXiv preprint arXiv:1909.08593},
  year    = {2019}
}
@article{schulman2017proximal,
  title   = {Proximal Policy Optimization Algorithms},
  author  = {Schulman, John and Wolski, Filip and Dhariwal, Prafulla and Radford, Alec and Klimov, Oleg},
  journal = {arXiv preprint arXiv:1707.06347},
  year    = {2017}
}
@inproceedings{maas2011learning,
  title     = {Learning Word Vectors for Sentiment Analysis},
  author    = {Maas, Andrew L. and Daly, Raymond E. and Pham, Peter T. and Huang, Dan and Ng, Andrew Y. and Potts, Christopher},
  booktitle = {Proceedings of the 49th Annual Meeting of the Association for Computational Linguistics},
  year      = {2011}
}
@article{huang2024n,
  title   = {The N+ Implementation Details of RLHF with PPO: A Case Study on TL;DR Summarization},
  author  = {Huang, Shengyi and Noukhovitch, Michael and Hosseini, Arian and Rasul, Kashif and Wang, Weixun and Tunstall, Lewis},
  journal = {arXiv preprint arXiv:2403.17031},
  year    = {2024}
}
```"""

HYPERPARAMETER_ORDER = ("model_name_or_path", "reward", "dataset_name", "kl_coef", "adaptive_kl", "target_kl", "gamma", "lam", "cliprange",
                        "cliprange_value", "vf_coef", "learning_rate", "batch_size", "num_mini_batches", "num_ppo_epochs",
                        "response_length", "temperature", "total_episodes", "seed")


def build_model_card(run_dir: str, repo_id: str, license: str = "mit") -> ModelCard:
    """The model card of the run in `run_dir`, to be pushed as `repo_id`.

    Reads `run_info.json`, `training_config.yaml`, `config.json`, `eval/eval_results.json` and
    `eval/samples.jsonl`, each optional: a missing one leaves its section short ("not evaluated yet"), and without
    evaluation results the metadata has no model-index. Local paths appear by their last component only.
    """
    info = _read_json(os.path.join(run_dir, "run_info.json")) or {}
    cfg = _read_yaml(os.path.join(run_dir, "training_config.yaml")) or {}
    model_cfg = _read_json(os.path.join(run_dir, "config.json")) or {}
    ev = _read_json(os.path.join(run_dir, "eval", "eval_results.json")) or {}
    info = info if isinstance(info, dict) else {}
    cfg = cfg if isinstance(cfg, dict) else {}
    ev = ev if isinstance(ev, dict) else {}
    name = repo_id.split("/")[-1]

    base_model = info.get("base_model") or cfg.get("model_name_or_path")
    dataset = info.get("dataset") or cfg.get("dataset_name")
    rewards = info.get("reward_functions") or cfg.get("reward") or []
    rewards = [rewards] if isinstance(rewards, str) else list(rewards)
    model_type = model_cfg.get("model_type")

    # ---- metadata
    settings = ev.get("settings") if isinstance(ev.get("settings"), dict) else {}
    aligned = (ev.get("metrics") or {}).get("aligned") or {}
    eval_dataset = settings.get("dataset") or dataset
    eval_dataset_type = _hub_id(eval_dataset) or (os.path.basename(str(eval_dataset).rstrip("/")) if eval_dataset else "prompts")
    eval_dataset_name = eval_dataset_type if eval_dataset_type.endswith("prompts") else f"{eval_dataset_type} prompts"
    eval_results = []
    for key, metric_type, metric_name in CARD_METRICS:
        if _finite(aligned.get(key)):
            eval_results.append(EvalResult(
                task_type="text-generation", task_name="Text generation (sentiment-steered continuation)",
                dataset_type=eval_dataset_type, dataset_name=eval_dataset_name,
                dataset_split=settings.get("split"), metric_type=metric_type, metric_name=metric_name,
                metric_value=float(aligned[key])))
    for judge, value in (ev.get("win_rate") or {}).items():
        if _finite(value):
            eval_results.append(EvalResult(
                task_type="text-generation", task_name="Text generation (sentiment-steered continuation)",
                dataset_type=eval_dataset_type, dataset_name=eval_dataset_name,
                dataset_split=settings.get("split"), metric_type="win_rate",
                metric_name=f"Win rate vs reference ({judge.replace('_', ' ')})", metric_value=float(value)))
    tags = ["rlhf", "ppo", "trl", "reinforcement-learning", "text-generation", "rlhf-demo"]
    if model_type and model_type not in tags:
        tags.insert(3, model_type)
    card_data = ModelCardData(
        model_name=name,
        base_model=_hub_id(base_model),
        datasets=[_hub_id(dataset)] if _hub_id(dataset) else None,
        license=license,
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=tags,
        eval_results=eval_results or None,
    )

    # ---- body
    b: list[str] = [f"# {name}", ""]
    reward_text = ", ".join(f"`{_short(r)}`" for r in rewards) or "its reward functions"
    b.append(f"A causal language model ({model_type or 'GPT-2 family'}) fine-tuned from `{_short(base_model)}` with "
             f"reinforcement learning from human feedback: PPO (Schulman et al., 2017) against {reward_text}, with a per-token "
             "KL penalty to the frozen starting model, as in Ziegler et al. (2019). Given the first few words of a movie "
             f"review, it writes a continuation the reward prefers. Trained with the `rlhf-demo` package "
             f"{info.get('rlhf_demo_version', '')}".rstrip() + ".")
    b += ["", "## How to use", "",
          "GPT-2 has no chat template: give it plain text to continue.", "",
          "```python", "from transformers import pipeline", "",
          f'generator = pipeline("text-generation", model="{repo_id}")',
          'print(generator("This movie was", max_new_tokens=40, do_sample=True, top_p=0.9)[0]["generated_text"])',
          "```", "", "or, with the model itself:", "",
          "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
          f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")',
          f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
          'inputs = tokenizer("I watched this film and", return_tensors="pt")',
          "out = model.generate(**inputs, max_new_tokens=40, do_sample=True, top_p=0.9, pad_token_id=tokenizer.eos_token_id)",
          "print(tokenizer.decode(out[0], skip_special_tokens=True))", "```", "",
          "`value_model/` holds the PPO value model (critic) of the same run, for resuming or inspecting training.", ""]

    # training
    b += ["## Training", ""]
    b.append(f"- **Algorithm:** PPO with a KL-shaped per-token reward r_t = -β·KL_t (+ the score on the last token), "
             f"GAE advantages, clipped policy and value losses (Huang et al., 2024 list the implementation details).")
    b.append(f"- **Base model (policy and reference):** `{_short(base_model)}`")
    b.append(f"- **Reward functions:** {reward_text}")
    b.append(f"- **Prompts:** `{_short(dataset)}` (first tokens of IMDB movie reviews, Maas et al., 2011)" if dataset else "- **Prompts:** unknown")
    if "kl_coef" in cfg:
        adaptive = cfg.get("adaptive_kl")
        kl = f"- **KL coefficient (β):** {_fmt(cfg['kl_coef'])}"
        if adaptive:
            kl += f", adaptive towards target KL {_fmt(cfg.get('target_kl'))} (Ziegler et al., 2019)"
        b.append(kl)
    for key, label in (("episodes", "Episodes"), ("steps", "PPO steps")):
        if key in info:
            b.append(f"- **{label}:** {_fmt(info[key])}")
    if _finite(info.get("wall_time_s")):
        b.append(f"- **Wall time:** {info['wall_time_s'] / 60:.1f} min")
    if info.get("machine"):
        b.append(f"- **Hardware:** {info['machine']}")
    if not info and not cfg:
        b.append("- No `run_info.json` or `training_config.yaml` was found in the run directory; training details are unknown.")
    if cfg:
        keys = [k for k in HYPERPARAMETER_ORDER if k in cfg] + [k for k in cfg if k not in HYPERPARAMETER_ORDER]
        rows = [[k, _short(v) if k in ("model_name_or_path", "dataset_name") else (", ".join(_short(x) for x in v) if k == "reward" and isinstance(v, list) else v)]
                for k, v in ((k, cfg[k]) for k in keys) if not isinstance(v, dict)]
        b += ["", "<details><summary>All hyperparameters (<code>training_config.yaml</code>)</summary>", "", _table(["hyperparameter", "value"], rows), "", "</details>"]
    final = info.get("final_metrics") or {}
    if isinstance(final, dict) and final:
        b += ["", "Training metrics at the last PPO step (full log in `metrics.jsonl`):", "",
              _table(["metric", "value"], [[k, v] for k, v in final.items()])]
    b.append("")

    # evaluation
    b += ["## Evaluation", ""]
    if not ev:
        b += ["Not evaluated yet. Run `rlhf-demo eval` with `--output_dir RUN_DIR/eval` and push again to add "
              "the comparison with the reference model.", ""]
    else:
        judges = ev.get("judges") or {}
        b.append(f"The aligned model against the reference (the starting model) on "
                 f"{_fmt(settings.get('num_prompts', '?'))} held-out prompts from `{_short(eval_dataset)}` "
                 f"(split `{settings.get('split', '?')}`), {_fmt(settings.get('samples_per_prompt', '?'))} samples per prompt, "
                 f"up to {_fmt(settings.get('max_new_tokens', '?'))} new tokens, temperature {_fmt(settings.get('temperature', '?'))}, "
                 f"top-p {_fmt(settings.get('top_p', '?'))}, seed {_fmt(settings.get('seed', '?'))}. "
                 f"Judges: reward model `{_short(judges.get('reward_model'))}`, independent sentiment judge "
                 f"`{_short(judges.get('sentiment_judge'))}`, toxicity `{_short(judges.get('toxicity'))}`. "
                 "Differences are aligned − reference with 95% bootstrap confidence intervals.")
        b.append("")
        metrics = ev.get("metrics") or {}
        ref = metrics.get("reference") or {}
        diffs = ev.get("differences") or {}
        names = [k for k in list(ref) + [k for k in aligned if k not in ref]]
        rows = []
        for k in names:
            d = diffs.get(k) or {}
            diff = f"{d['diff']:+.4g} [{d['ci_low']:.4g}, {d['ci_high']:.4g}]" if all(_finite(d.get(x)) for x in ("diff", "ci_low", "ci_high")) else ""
            rows.append([k, ref.get(k, ""), aligned.get(k, ""), diff])
        if rows:
            b += [_table(["metric", "reference", "aligned", "difference [95% CI]"], rows), ""]
        win = ev.get("win_rate") or {}
        if win:
            b.append("Win rate of the aligned model against the reference: " + ", ".join(f"{_fmt(v)} ({k.replace('_', ' ')})" for k, v in win.items()) + ".")
        if _finite(ev.get("reward_judge_agreement")):
            b.append(f"Agreement between the reward model and the independent judge: {_fmt(ev['reward_judge_agreement'])}.")
        if ev.get("reward_hacking_flag"):
            b += ["", "> **Warning: possible reward hacking.** The reward model's score rose much more than the independent "
                  "judge's; the policy may exploit the reward model rather than write more positive text."]
        b.append("")
        plots = sorted(n for n in (os.listdir(os.path.join(run_dir, "eval")) if os.path.isdir(os.path.join(run_dir, "eval")) else [])
                       if n.endswith((".png", ".svg")))
        for p in plots:
            b += [f"![{os.path.splitext(p)[0].replace('_', ' ')}](eval/{p})", ""]
        if os.path.isfile(os.path.join(run_dir, "eval", "eval_report.md")):
            b += ["The full report is in [`eval/eval_report.md`](eval/eval_report.md), the raw numbers in "
                  "[`eval/eval_results.json`](eval/eval_results.json).", ""]
        pairs = _sample_pairs(_read_jsonl(os.path.join(run_dir, "eval", "samples.jsonl")))
        if pairs:
            b += ["### Samples (reference vs aligned, same prompt)", "", _table(["prompt", "reference", "aligned"], [list(p) for p in pairs]), ""]

    # limitations, citation
    b += ["## Intended use and limitations", "",
          "A research and teaching artifact: it shows what RLHF with PPO does to a small language model. It is not meant "
          "for production text generation.", "",
          "- **Reward hacking.** PPO maximises what the reward functions measure, not what they were meant to measure: "
          "the policy may repeat phrases the reward model scores highly, drift into degenerate text, or game its "
          "tokenization. The KL penalty limits, not prevents, this; compare with the independent judge above and read samples.",
          "- **The reward model's biases** become the policy's: a sentiment classifier trained on IMDB reviews rewards "
          "what IMDB reviewers wrote, including its topical and demographic associations.",
          "- **The base model's limitations remain.** GPT-2-family models were trained on unfiltered web text and can "
          "produce offensive, biased or false content; alignment to sentiment does not remove it.",
          "- English movie-review continuations only; other domains and languages were not evaluated.", "",
          "## Citation", "",
          "Ziegler et al. (2019) for RLHF with a KL penalty, Schulman et al. (2017) for PPO, Maas et al. (2011) for the "
          "IMDB reviews the prompts (and the sentiment reward models) come from, Huang et al. (2024) for PPO details."]
    for r in rewards:
        path = str(r).partition("=")[2] or str(r)
        if _hub_id(path):
            b.append(f"Reward model: [`{path}`](https://huggingface.co/{path}).")
    b += ["", CITATIONS, ""]
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(b))


# --------------------------------------------------------------------------------------------- folder, push
def prepare_upload_folder(run_dir: str, dest: str, repo_id: str, include_checkpoints: bool = False, license: str = "mit") -> list[str]:
    """Write to `dest` (new or empty) exactly what `push` uploads; return the paths in the repo, sorted."""
    check_run_dir(run_dir)
    if os.path.isdir(dest) and os.listdir(dest):
        raise HubPushError(f"Output directory {dest!r} is not empty; choose a new or empty directory for --dry_run.")
    files = select_upload_files(run_dir, include_checkpoints)
    for path_in_repo, src in files.items():
        target = os.path.join(dest, *path_in_repo.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(src, target)
    os.makedirs(dest, exist_ok=True)
    build_model_card(run_dir, repo_id, license).save(os.path.join(dest, "README.md"))
    return sorted([*files, "README.md"])


def _status(e: BaseException) -> int | None:
    response = getattr(e, "response", None)
    return getattr(response, "status_code", None) if response is not None else None


def _is_transient(e: BaseException) -> bool:
    """Connection problems, timeouts, 429 and 5xx are worth retrying; anything else (4xx, offline mode) is not."""
    if isinstance(e, OfflineModeIsEnabled):
        return False
    if isinstance(e, HfHubHTTPError):
        status = _status(e)
        return status is None or status == 429 or status >= 500
    try:
        import httpx2

        if isinstance(e, httpx2.TransportError):
            return True
    except ImportError:  # huggingface_hub on plain httpx
        pass
    try:
        import httpx

        if isinstance(e, httpx.TransportError):
            return True
    except ImportError:
        pass
    return isinstance(e, (ConnectionError, TimeoutError))


def _with_retries(fn: Callable[[], T], what: str, cfg: PushConfig) -> T:
    """Call `fn`, retrying transient failures max_retries times with waits base, 2*base, 4*base, ..."""
    for attempt in range(cfg.max_retries + 1):
        try:
            return fn()
        except Exception as e:
            if not _is_transient(e) or attempt == cfg.max_retries:
                raise
            wait = cfg.retry_base_wait * 2 ** attempt
            status = _status(e)
            logger.warning("%s failed (%s); retry %d/%d in %.1f s.", what, f"HTTP {status}" if status else type(e).__name__,
                           attempt + 1, cfg.max_retries, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _push_error(e: Exception, cfg: PushConfig, endpoint: str, secrets: list[str]) -> HubPushError:
    """A one-line, token-free HubPushError for a failed Hub call."""
    status = _status(e)
    where = f"{cfg.repo_id} (revision {cfg.revision})"
    if status == 401:
        msg = (f"Authentication failed (HTTP 401) for {cfg.repo_id}: the Hugging Face token is missing, invalid or expired. "
               "Set HF_TOKEN to a token with write access or run `hf auth login`.")
    elif status == 403:
        msg = (f"Permission denied (HTTP 403) for {cfg.repo_id}: the token cannot write to namespace "
               f"{cfg.repo_id.split('/')[0]!r}. Use a token with write access to it, or push to a namespace you own.")
    elif status == 404:
        msg = (f"Not found (HTTP 404): namespace {cfg.repo_id.split('/')[0]!r} or repository {where} does not exist "
               "or is not visible with this token. Check --repo_id and --revision.")
    elif status is not None:
        server = ""
        if isinstance(e, HfHubHTTPError) and getattr(e, "server_message", None):
            server = ": " + str(e.server_message)
        msg = f"The Hub answered HTTP {status} for {where} after {cfg.max_retries + 1} attempt(s){server}. Nothing was committed; try again later."
    elif _is_transient(e):
        msg = (f"Could not reach the Hub at {endpoint} after {cfg.max_retries + 1} attempt(s) ({type(e).__name__}). "
               "Nothing was committed; check the network (or HF_ENDPOINT) and try again.")
    else:
        msg = f"Push to {where} failed: {type(e).__name__}: {e}"
    return HubPushError(scrub_secrets(" ".join(msg.split()), secrets))  # one line, no token


def scrub_secrets(text: str, secrets: list[str]) -> str:
    """`text` with every non-empty string of `secrets` (tokens) replaced by `***`."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


def push(cfg: PushConfig) -> str:
    """Push the run `cfg.model` to `cfg.repo_id` in one commit; return the commit URL (the folder on --dry_run).

    Raises HubPushError (one line, no token) for a missing run directory or weights, bad credentials (401/403),
    an unknown namespace or repository (404), or a failure that outlasted the retries.
    """
    check_run_dir(cfg.model)
    if cfg.dry_run:
        files = prepare_upload_folder(cfg.model, cfg.output_dir, cfg.repo_id, cfg.include_checkpoints, cfg.license)
        logger.info("Dry run: wrote the %d files that would be pushed to %s into %s.", len(files), cfg.repo_id, cfg.output_dir)
        return cfg.output_dir

    files = select_upload_files(cfg.model, cfg.include_checkpoints)
    card = str(build_model_card(cfg.model, cfg.repo_id, cfg.license)).encode()
    api = HfApi(endpoint=cfg.endpoint, token=cfg.token)
    endpoint = api.endpoint
    secrets = [cfg.token or "", os.environ.get("HF_TOKEN", ""), os.environ.get("HUGGING_FACE_HUB_TOKEN", "")]
    message = cfg.commit_message or f"Upload PPO (RLHF) model trained with rlhf-demo from {os.path.basename(os.path.normpath(cfg.model))}"
    size = sum(os.path.getsize(p) for p in files.values()) + len(card)
    logger.info("Pushing %d files (%.1f MB) to %s@%s in one commit.", len(files) + 1, size / 1e6, cfg.repo_id, cfg.revision)

    def commit():
        # Fresh operations each attempt: a CommitOperationAdd cannot be reused once committed.
        ops = [CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card)]
        ops += [CommitOperationAdd(path_in_repo=p, path_or_fileobj=src) for p, src in sorted(files.items())]
        return api.create_commit(repo_id=cfg.repo_id, operations=ops, commit_message=message, revision=cfg.revision)

    try:
        _with_retries(lambda: api.create_repo(cfg.repo_id, private=cfg.private, exist_ok=True), "create_repo", cfg)
        if cfg.revision != "main":
            _with_retries(lambda: api.create_branch(cfg.repo_id, branch=cfg.revision, exist_ok=True), "create_branch", cfg)
        info = _with_retries(commit, "commit", cfg)
    except HubPushError:
        raise
    except Exception as e:
        raise _push_error(e, cfg, endpoint, secrets) from None
    logger.info("Pushed %s: %s", cfg.repo_id, info.commit_url)
    return info.commit_url
