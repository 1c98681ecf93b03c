"""The evaluation suite: an aligned policy against its reference on the same held-out prompts.

`run_eval(EvalConfig(...))` samples responses from both models to the same IMDB *test* prompts with the
same seeds and sampling settings (so every comparison is paired), scores them, and writes to `output_dir`:

- `eval_results.json`: the numbers, schema below;
- `eval_report.md`: one table a person reads in ten seconds (see `report.py`);
- `score_distributions.png`: reward, judge and toxicity histograms, reference vs aligned;
- `reward_kl_frontier.png`: reward against KL for every checkpoint of a training run (only when `model`
  has `checkpoints/checkpoint-*/` folders holding causal LMs), as in the DPO paper's Fig. 2;
- `samples.jsonl`: one line per episode: prompt, both responses (text and token ids), their scores.

Measurements (sentiment judge, toxicity, distinct-n) are `evaluate` modules under `eval/measurements/`;
the reward model is the training reward (`rlhf_demo.rewards.ClassifierReward`); KL and perplexity need
both models' log-probs and are plain functions here.

`eval_results.json` schema (schema_version 1)::

    {"schema_version": 1,
     "settings": {"num_prompts", "samples_per_prompt", "max_new_tokens", "seed", "temperature", "top_p",
                  "dataset", "split", "stop_at_eos", "bootstrap_samples"},
     "models": {"reference": str, "aligned": str},
     "judges": {"reward_model": str, "sentiment_judge": str, "toxicity": str},
     "metrics": {"reference": M, "aligned": M},  where M has
         reward_mean            mean reward-model score (logit of reward_label) on query + response
         reward_positive_rate   share of episodes with P(reward_label) > 0.5
         judge_score_mean       mean judge score in [-1, 1] on query + response
         judge_positive_rate    share of episodes the judge calls positive
         toxicity_mean          mean toxicity probability of the response, in [0, 1]
         toxicity_rate          share of responses with toxicity > 0.5
         kl_to_reference_mean   mean over episodes of sum_t log pi(y_t|.) - log pi_ref(y_t|.), nats per sequence
                                (exactly 0 for the reference: its samples scored by itself)
         perplexity             exp(total NLL / total tokens) of the responses under the reference (temperature 1)
         distinct_1/2/3         distinct-n over all responses (lower-cased whitespace words), Li et al. 2016
         response_length_mean   mean response length in the model's own tokens
     "differences": {metric: {"diff", "ci_low", "ci_high"}},  aligned minus reference, paired bootstrap 95% CI
     "win_rate": {"reward_model": float, "judge": float},  share of prompts where aligned beats reference (ties 1/2)
     "reward_judge_agreement": float,  share of episodes (both models) where reward model and judge agree on positive
     "reward_hacking_flag": bool,      reward rose (CI above 0) while the judge did not (CI reaches 0 or below)
     "frontier": [{"checkpoint", "step", "reward_mean", "kl_to_reference_mean"}],  empty without checkpoints; else the
                 reference (step 0), each checkpoint by step, and the final model (step -1), all on the first
                 frontier_num_prompts prompts
     "versions": {package: version}}

Different tokenizers: the reference may use another tokenizer than the policy. Each model then samples from
its own tokenization of the prompt text, and the KL and perplexity score the *decoded* aligned response
retokenized by the reference tokenizer (log pi_ref of the text, prompt and response tokenized separately).
With the same tokenizer the exact token ids are used.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os

import numpy as np
import torch
from tqdm.auto import tqdm

from rlhf_demo.config import EvalConfig, prompt_options
from rlhf_demo.data import build_prompt_dataset
from rlhf_demo.eval.stats import MEAN_METRICS, METRICS, compute_differences, per_prompt, win_rate
from rlhf_demo.errors import MissingInputError, UserInputError
from rlhf_demo.models import (PRESET_REWARD_MODELS, check_model_path, context_exceeded, is_adapter_folder,
                              is_local_path, is_policy_config, load_causal_lm, loading_errors, pad_left,
                              resolve_model_path, response_logprobs)
from rlhf_demo.rewards import ClassifierReward
from rlhf_demo.runs import atomic_dir, check_output_dir, export_problem, list_checkpoints
from rlhf_demo.sampling import generate

MEASUREMENTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "measurements")
SCHEMA_VERSION = 1


# ---------------------------------------------------------------------------------------------- loading


def same_tokenizer(a, b) -> bool:
    """True when both tokenizers map every string to the same ids (same vocabulary and merges)."""
    if a.get_vocab() != b.get_vocab():
        return False
    probe = "Hello world! Don't   stop: 123 caf\u00e9 <br /> \u2014 the END."
    return a(probe, add_special_tokens=False)["input_ids"] == b(probe, add_special_tokens=False)["input_ids"]


def find_checkpoints(model_dir: str) -> list[tuple[int, str]]:
    """(step, path) of every checkpoint of a training run whose `policy/` (or the folder itself) holds a causal or
    encoder-decoder LM with its weights, or a LoRA adapter (loaded onto its base by `load_causal_lm`), by step."""
    from transformers import AutoConfig

    found = []
    for step, path in list_checkpoints(model_dir):
        if is_adapter_folder(os.path.join(path, "policy")):
            found.append((step, os.path.join(path, "policy")))
            continue
        if os.path.isfile(os.path.join(path, "policy", "config.json")):
            path = os.path.join(path, "policy")
        if os.path.isfile(os.path.join(path, "config.json")) and is_policy_config(AutoConfig.from_pretrained(path)):
            found.append((step, path))
    return found


@torch.inference_mode()
def sequence_logprobs(model, queries: list[list[int]], responses: list[list[int]], pad_token_id: int, batch_size: int,
                      temperature: float = 1.0) -> np.ndarray:
    """sum_t log pi(y_t | x, y_<t) per episode, in nats: (N,) for N (query, response) token-id lists.

    Logits are divided by `temperature` (the distribution that was sampled). Responses are right-padded
    with a response mask, queries left-padded (models.py conventions). For an encoder-decoder model the sum runs over
    the decoder's tokens (the response) given the encoded query.
    """
    totals = []
    for start in range(0, len(queries), batch_size):
        q_ids, q_mask = pad_left(queries[start : start + batch_size], pad_token_id)
        resp = responses[start : start + batch_size]
        width = max(1, max(len(r) for r in resp))
        r_ids = torch.full((len(resp), width), pad_token_id, dtype=torch.long)
        r_mask = torch.zeros((len(resp), width), dtype=torch.long)
        for j, r in enumerate(resp):
            r_ids[j, : len(r)] = torch.tensor(r, dtype=torch.long)
            r_mask[j, : len(r)] = 1
        limit = context_exceeded(model, q_ids.shape[1], width)
        if limit:
            raise UserInputError(f"A query + response of {q_ids.shape[1] + width} tokens exceeds the model's context "
                                 f"of {limit} tokens (a retokenized response can be longer than the sampled one); "
                                 "lower --max_new_tokens.")
        logprobs = response_logprobs(model, q_ids, q_mask, r_ids, r_mask, temperature)  # (B, T)
        totals.append(logprobs.sum(-1).double().numpy())
    return np.concatenate(totals)


def kl_per_sequence(policy_logprob_sums: np.ndarray, reference_logprob_sums: np.ndarray) -> np.ndarray:
    """KL(pi || pi_ref) estimate per sampled sequence y ~ pi: log pi(y|x) - log pi_ref(y|x), nats, (N,).

    The mean over samples is an unbiased estimate of the sequence-level KL (the "k1" estimator,
    Schulman 2020, "Approximating KL divergence"); single values may be negative.
    """
    return policy_logprob_sums - reference_logprob_sums


def perplexity(nll_sums: np.ndarray, token_counts: np.ndarray) -> float:
    """exp(sum NLL / sum tokens): corpus perplexity, NLL in nats. inf-free: 0 tokens gives nan."""
    total = float(np.sum(token_counts))
    return math.exp(float(np.sum(nll_sums)) / total) if total > 0 else float("nan")


# ---------------------------------------------------------------------------------------------- scoring


def load_measurement(name: str, config_name: str | None = None):
    """`evaluate.load` of a measurement module shipped under eval/measurements/ (works offline)."""
    import evaluate

    return evaluate.load(os.path.join(MEASUREMENTS_DIR, name), config_name)


def judge_config_name(name: str, offline_names: tuple[str, ...]) -> str:
    """Map the offline judge's name to the module's `default` config; keep a model id or path as is."""
    return "default" if name in offline_names else os.path.expanduser(name)


def load_judge(module: str, name: str, offline_names: tuple[str, ...], role: str, label: str, label_flag: str,
               upper: bool = False):
    """The measurement `module` for the judge `name`: its offline default, or a transformers text classifier (a local
    folder or a Hub id) that must have `label` (compared in upper case with `upper`). Raises MissingInputError /
    UserInputError naming `role` (its flag) or `label_flag`, before any sampling."""
    config = judge_config_name(name, offline_names)
    if config == "default":
        return load_measurement(module, config)
    offline = f"Pass {offline_names[0]} (offline, shipped), a local folder of a text classifier or a Hub id"
    if is_local_path(config):
        if not os.path.exists(config):
            raise MissingInputError(f"The {role} {name!r} does not exist. {offline}.")
        with loading_errors(config, role):
            judge = load_measurement(module, config)
    else:
        try:
            judge = load_measurement(module, config)
        except OSError:
            raise MissingInputError(f"Could not load the {role} {name!r}: it is not a local folder, and as a Hub id "
                                    f"it could not be downloaded (offline, or no such repository). {offline} that "
                                    "can be downloaded.") from None
    labels = [str(v) for v in judge.classifier.model.config.id2label.values()]
    if (label.upper() not in [v.upper() for v in labels]) if upper else (label not in labels):
        raise UserInputError(f"Label {label!r} is not a label of the {role} {name!r}; its labels are {sorted(labels)}. "
                             f"Pass one with {label_flag}.")
    return judge


class Scorers:
    """The reward model and the two judges, loaded once and applied to (queries, responses) text."""

    def __init__(self, cfg: EvalConfig):
        path = check_model_path(cfg.reward_model, "reward model (--reward_model)", PRESET_REWARD_MODELS)
        with loading_errors(path, "reward model (--reward_model)"):
            self.reward = ClassifierReward(path, label=cfg.reward_label, kind="logit", batch_size=cfg.batch_size,
                                          label_fix="Pass one with --reward_label.")
        self.judge = load_judge("sentiment_judge", cfg.sentiment_judge, ("vader", "default"),
                                "sentiment judge (--sentiment_judge)", cfg.judge_positive_label,
                                "--judge_positive_label", upper=True)
        self.toxicity = load_judge("toxicity", cfg.toxicity_judge, ("profanity-check", "default"),
                                   "toxicity judge (--toxicity_judge)", cfg.toxic_label, "--toxic_label")
        self.distinct = load_measurement("distinct_n")
        self.cfg = cfg
        self.names = {"reward_model": path, "sentiment_judge": cfg.sentiment_judge, "toxicity": cfg.toxicity_judge}

    def reward_scores(self, queries: list[str], responses: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Reward-model logit of reward_label (N,) and whether P(reward_label) > 0.5 (N,) on query + response."""
        logits, probabilities = self.reward.logit_and_probability(queries, responses)
        return np.asarray(logits), np.asarray(probabilities) > 0.5

    def score(self, queries: list[str], responses: list[str]) -> dict[str, np.ndarray]:
        """All per-episode text scores: reward, reward_positive, judge, judge_positive, toxicity, toxic; each (N,)."""
        reward, reward_positive = self.reward_scores(queries, responses)
        judged = self.judge.compute(data=[q + r for q, r in zip(queries, responses)],
                                    positive_label=self.cfg.judge_positive_label)
        tox = self.toxicity.compute(data=list(responses), toxic_label=self.cfg.toxic_label)
        toxicity = np.asarray(tox["toxicity"], dtype=float)
        return {"reward": reward, "reward_positive": reward_positive.astype(float),
                "judge": np.asarray(judged["scores"], dtype=float),
                "judge_positive": np.asarray(judged["positive"], dtype=float), "toxicity": toxicity,
                "toxic": (toxicity > 0.5).astype(float)}


# ---------------------------------------------------------------------------------------------- the run


def evaluate_model(name: str, model, tokenizer, queries_ids: list[list[int]], cfg: EvalConfig):
    """Sample from one model on its own tokenization of the prompts; batch i from seed cfg.seed + i, so both models
    draw from the same random stream (paired samples). Returns (response ids, response texts)."""
    out = generate(model, tokenizer, queries_ids, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                   top_k=cfg.top_k,
                   top_p=cfg.top_p, stop_at_eos=cfg.stop_at_eos, seed=cfg.seed, batch_size=cfg.batch_size,
                   desc=f"sampling {name}")
    return out.ids, out.texts


def tokenize_for(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text with `tokenizer`, no special tokens."""
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts] if texts else []


def corpus_metrics(per_episode: dict[str, np.ndarray], texts: list[str], nll: np.ndarray, ref_tokens: np.ndarray,
                   distinct) -> dict[str, float]:
    """The metrics dict of one model from its per-episode arrays (see the module docstring for the keys)."""
    metrics = {key: float(np.mean(per_episode[col])) for key, col in MEAN_METRICS.items()}
    metrics["perplexity"] = perplexity(nll, ref_tokens)
    d = distinct.compute(data=texts, max_n=3)
    metrics.update({f"distinct_{n}": float(d[f"distinct_{n}"]) for n in (1, 2, 3)})
    return {k: metrics[k] for k in METRICS}


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the numbers."""
    versions = {}
    for pkg in ("rlhf-demo", "torch", "transformers", "tokenizers", "evaluate", "datasets", "numpy", "vaderSentiment",
                "alt-profanity-check", "scikit-learn"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return versions


def evaluate_frontier(cfg: EvalConfig, scorers: Scorers, ref_model, ref_tok, queries_text,
                      ref_queries_ids) -> list[dict]:
    """Reward mean and KL to the reference of every checkpoint under cfg.model/checkpoints/, same prompts and seeds."""
    points = []
    for step, path in tqdm(find_checkpoints(resolve_model_path(cfg.model)), desc="checkpoints", unit="ckpt"):
        model, tok = load_causal_lm(path, "checkpoint")
        same_tok = same_tokenizer(tok, ref_tok)
        ids = ref_queries_ids if same_tok else tokenize_for(tok, queries_text)
        responses, texts = evaluate_model(os.path.basename(path), model, tok, ids, cfg)
        logp = sequence_logprobs(model, ids, responses, tok.pad_token_id, cfg.batch_size, cfg.temperature)
        ref_resp = responses if same_tok else tokenize_for(ref_tok, texts)
        logp_ref = sequence_logprobs(ref_model, ref_queries_ids, ref_resp, ref_tok.pad_token_id, cfg.batch_size,
                                     cfg.temperature)
        reward, _ = scorers.reward_scores(queries_text, texts)
        points.append({"checkpoint": path, "step": step, "reward_mean": float(np.mean(reward)),
                       "kl_to_reference_mean": float(np.mean(kl_per_sequence(logp, logp_ref)))})
    return points


def check_inputs(cfg: EvalConfig) -> None:
    """Checks before any work: the output folder can be written, the models exist, and a training run given as a
    model has a complete final export. Raises MissingInputError / UserInputError naming the flag."""
    check_output_dir(cfg.output_dir)
    check_eval_dir(cfg.output_dir)
    for name, role in ((cfg.model, "model (--model)"), (cfg.reference, "reference (--reference)")):
        problem = export_problem(check_model_path(name, role))  # a run folder whose final export did not finish
        if problem:
            raise UserInputError(problem)
    check_model_path(cfg.reward_model, "reward model (--reward_model)", PRESET_REWARD_MODELS)


def run_eval(cfg: EvalConfig) -> dict:
    """Evaluate cfg.model against cfg.reference; write the outputs to cfg.output_dir and return the dict of
    eval_results.json.

    Raises:
        MissingInputError: a model path does not exist.
        UserInputError: the output folder is a file or not writable (checked before any work), a model is not a
            causal LM or cannot be loaded, or there are no prompts.
    """
    check_inputs(cfg)
    scorers = Scorers(cfg)  # first: a reward label or judge that cannot be used fails before any model or sampling
    # 1. Models and prompts: prompts in the policy's tokenization; the reference re-tokenizes the text if it must.
    policy, policy_tok = load_causal_lm(cfg.model, "model (--model)")
    reference, ref_tok = load_causal_lm(cfg.reference, "reference (--reference)")
    same_tok = same_tokenizer(policy_tok, ref_tok)
    prompts = build_prompt_dataset(policy_tok, cfg.dataset_name, split=cfg.split, num_prompts=cfg.num_prompts,
                                   seed=cfg.seed, min_review_chars=cfg.min_review_chars, **prompt_options(cfg))
    if len(prompts) == 0:
        raise UserInputError(f"No prompts: {cfg.dataset_name!r} split {cfg.split!r} gave 0 queries. Use a dataset "
                             "with reviews in that split.")
    S = cfg.samples_per_prompt
    queries_text = [q for q in prompts["query"] for _ in range(S)]  # prompt-major: episode e = p * S + s
    queries_ids = [list(q) for q in prompts["input_ids"] for _ in range(S)]
    ref_queries_ids = queries_ids if same_tok else tokenize_for(ref_tok, queries_text)

    # 2-4. Both models sample (paired), log-probs give KL and perplexity, then the text scores.
    ref, pol = sample_and_score(cfg, scorers, (policy, policy_tok, queries_ids), (reference, ref_tok, ref_queries_ids),
                                queries_text, same_tok)

    # 5. Paired statistics over prompts; the reward-KL frontier of the run's checkpoints.
    differences = compute_differences(ref, pol, cfg, len(prompts))
    agreement = float(np.mean(np.concatenate([ref["reward_positive"] == ref["judge_positive"],
                                              pol["reward_positive"] == pol["judge_positive"]])))
    frontier = []
    if cfg.frontier and find_checkpoints(resolve_model_path(cfg.model)):
        # Checkpoints are scored on the first frontier_num_prompts prompts; the reference and final points too.
        k = S * (cfg.frontier_num_prompts or len(prompts))
        frontier = [{"checkpoint": "reference", "step": 0, "reward_mean": float(np.mean(ref["reward"][:k])),
                     "kl_to_reference_mean": 0.0}]
        frontier += evaluate_frontier(cfg, scorers, reference, ref_tok, queries_text[:k], ref_queries_ids[:k])
        frontier.append({"checkpoint": resolve_model_path(cfg.model), "step": -1,
                         "reward_mean": float(np.mean(pol["reward"][:k])),
                         "kl_to_reference_mean": float(np.mean(pol["kl"][:k]))})

    output = {
        "schema_version": SCHEMA_VERSION,
        "settings": {"num_prompts": len(prompts), "samples_per_prompt": S, "max_new_tokens": cfg.max_new_tokens,
                     "seed": cfg.seed, "temperature": cfg.temperature, "top_p": cfg.top_p, "top_k": cfg.top_k,
                     "dataset": cfg.dataset_name, "split": cfg.split, "stop_at_eos": cfg.stop_at_eos,
                     "bootstrap_samples": cfg.bootstrap_samples, "same_tokenizer": same_tok},
        "models": {"reference": resolve_model_path(cfg.reference), "aligned": resolve_model_path(cfg.model)},
        "judges": scorers.names,
        "metrics": {"reference": ref["metrics"], "aligned": pol["metrics"]},
        "differences": differences,
        "win_rate": {"reward_model": win_rate(per_prompt(pol["reward"], S), per_prompt(ref["reward"], S)),
                     "judge": win_rate(per_prompt(pol["judge"], S), per_prompt(ref["judge"], S))},
        "reward_judge_agreement": agreement,
        "reward_hacking_flag": bool(differences["reward_mean"]["ci_low"] > 0
                                    and differences["judge_score_mean"]["ci_low"] <= 0),
        "frontier": frontier,
        "versions": package_versions(),
    }
    write_outputs(cfg, output, queries_text, queries_ids, ref, pol)
    return output


def sample_and_score(cfg: EvalConfig, scorers: Scorers, aligned: tuple, reference: tuple, queries_text: list[str],
                     same_tok: bool) -> tuple[dict, dict]:
    """Steps 2-4 of `run_eval` for (model, tokenizer, query ids) `aligned` and `reference`: paired samples, KL of the
    aligned samples to the reference and perplexity of both under it, text scores. Returns (reference, aligned)
    dicts of per-episode arrays (the `MEAN_METRICS` columns, "nll", "ref_tokens"), "texts", "ids" and "metrics"."""
    policy, policy_tok, queries_ids = aligned
    ref_model, ref_tok, ref_queries_ids = reference
    ref_resp, ref_texts = evaluate_model("reference", ref_model, ref_tok, ref_queries_ids, cfg)
    pol_resp, pol_texts = evaluate_model("aligned", policy, policy_tok, queries_ids, cfg)

    def ref_logprobs(responses, temperature=1.0):
        return sequence_logprobs(ref_model, ref_queries_ids, responses, ref_tok.pad_token_id, cfg.batch_size,
                                 temperature)

    # KL(pi || pi_ref) on the aligned samples (logits / temperature, as sampled); perplexity under the reference (T=1).
    logp_pi = sequence_logprobs(policy, queries_ids, pol_resp, policy_tok.pad_token_id, cfg.batch_size, cfg.temperature)
    pol_resp_ref = pol_resp if same_tok else tokenize_for(ref_tok, pol_texts)
    logp_ref = ref_logprobs(pol_resp_ref, cfg.temperature)
    nll_pol = -(logp_ref if cfg.temperature == 1.0 else ref_logprobs(pol_resp_ref))
    nll_ref = -ref_logprobs(ref_resp)
    results = {}
    for name, texts, resp, kl, nll, ref_tokens in (
        ("reference", ref_texts, ref_resp, np.zeros(len(ref_resp)), nll_ref, [len(r) for r in ref_resp]),
        ("aligned", pol_texts, pol_resp, kl_per_sequence(logp_pi, logp_ref), nll_pol, [len(r) for r in pol_resp_ref]),
    ):
        d = scorers.score(queries_text, texts)
        d.update(kl=kl, length=np.asarray([len(r) for r in resp], dtype=float), nll=nll,
                 ref_tokens=np.asarray(ref_tokens, dtype=float), texts=texts, ids=resp)
        d["metrics"] = corpus_metrics(d, texts, nll, d["ref_tokens"], scorers.distinct)
        results[name] = d
    return results["reference"], results["aligned"]


EVAL_FILES = ("eval_results.json", "samples.jsonl", "eval_report.md", "score_distributions.png",
              "reward_kl_frontier.png")  # what `write_outputs` writes: all an output folder may hold before it


def check_eval_dir(path: str) -> None:
    """Raise UserInputError when the output folder `path` holds files that are not an earlier evaluation's
    (`EVAL_FILES`): the new evaluation replaces the whole folder (`write_outputs`), which would delete them."""
    foreign = sorted(n for n in os.listdir(path) if n not in EVAL_FILES and not n.startswith(".")) \
        if os.path.isdir(path) else []
    if foreign:
        raise UserInputError(f"--output_dir {path!r} holds files that are not an evaluation's "
                             f"({', '.join(foreign[:4])}), which the evaluation would replace; pass a new folder, "
                             f"e.g. {os.path.join(path, 'eval')!r}.")


def write_outputs(cfg: EvalConfig, output: dict, queries_text, queries_ids, ref: dict, pol: dict) -> None:
    """eval_results.json, samples.jsonl (schema: `samples.py`), eval_report.md and the plots into cfg.output_dir.

    Written to a temporary folder beside it, then swapped in whole (`runs.atomic_dir`): the folder holds either the
    earlier evaluation or this one, never a mix (a plot the new one does not draw included)."""
    from .report import plot_frontier, plot_score_distributions, write_report
    from .samples import SAMPLES_FILE, sample_rows, write_samples

    with atomic_dir(cfg.output_dir) as tmp:
        samples = sample_rows(queries_text, queries_ids, cfg.samples_per_prompt, ref, pol)
        write_samples(os.path.join(tmp, SAMPLES_FILE), samples)
        write_report(os.path.join(tmp, "eval_report.md"), output, samples[: cfg.num_report_samples])
        plot_score_distributions(os.path.join(tmp, "score_distributions.png"), ref, pol)
        if output["frontier"]:
            plot_frontier(os.path.join(tmp, "reward_kl_frontier.png"), output["frontier"])
        with open(os.path.join(tmp, "eval_results.json"), "w") as f:
            json.dump(output, f, indent=2, allow_nan=True)
