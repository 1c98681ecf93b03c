"""Tests of the evaluation suite (eval/): every measurement, the statistics, and run_eval on tiny models built here.

The numbers run_eval writes are recomputed by hand from samples.jsonl (reward mean, KL, distinct-n, perplexity,
judge, toxicity); a model evaluated against itself must show zero KL and zero differences (paired sampling).
"""

import json
import math
import os
import random

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import (  # noqa: E402
    AutoTokenizer,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

from rlhf_demo.config import EvalConfig, data_dir  # noqa: E402
from rlhf_demo.eval import stats, suite  # noqa: E402
from rlhf_demo.eval.samples import SamplePair, read_samples, sample_pairs, sample_row, write_samples  # noqa: E402
from rlhf_demo.eval.suite import run_eval  # noqa: E402

GPT2_TOKENIZER = os.path.join(data_dir(), "gpt2-tokenizer")
COMMITTED_SAMPLES = os.path.join(os.path.dirname(suite.__file__), "results", "tiny", "samples.jsonl")

WORDS = ("the movie film was great terrible acting plot story loved hated boring wonderful actor scene director and "
         "but it i really").split()


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Tiny dataset, two tiny policies (same GPT-2 tokenizer), a run folder with checkpoints, a reward model,
    a reference with a different tokenizer, and a folder holding a classifier (not a causal LM)."""
    root = tmp_path_factory.mktemp("evalsuite")
    torch.manual_seed(0)
    rng = random.Random(0)

    import datasets

    data = root / "data"
    data.mkdir()
    for split, n in (("train", 6), ("test", 12)):
        texts = [" ".join(rng.choice(WORDS) for _ in range(60)).capitalize() + "." for _ in range(n)]
        labels = [i % 2 for i in range(n)]
        datasets.Dataset.from_dict({"text": texts, "label": labels}).to_parquet(str(data / f"{split}.parquet"))
    short = root / "short_data"
    short.mkdir()
    datasets.Dataset.from_dict({"text": ["Too short."] * 3, "label": [0, 1, 0]}).to_parquet(str(short / "test.parquet"))

    tok = AutoTokenizer.from_pretrained(GPT2_TOKENIZER)
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=64, vocab_size=len(tok),
                        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)

    def save_lm(path, seed, init=0.02):
        torch.manual_seed(seed)
        GPT2LMHeadModel(GPT2Config(**{**config.to_dict(), "initializer_range": init})).save_pretrained(path)
        tok.save_pretrained(path)
        return str(path)

    reference = save_lm(root / "reference", 1)
    # Larger initial weights give peaked next-token distributions, so the policy's samples differ from the reference's.
    policy = save_lm(root / "policy", 2, init=0.3)
    save_lm(root / "policy" / "checkpoints" / "checkpoint-10", 3, init=0.1)
    save_lm(root / "policy" / "checkpoints" / "checkpoint-20", 4, init=0.2)
    (root / "policy" / "checkpoints" / "checkpoint-notastep").mkdir()

    torch.manual_seed(5)
    rm_config = GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=128, vocab_size=len(tok), num_labels=2,
                           id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1},
                           pad_token_id=tok.eos_token_id)
    rm = GPT2ForSequenceClassification(rm_config)
    rm.save_pretrained(root / "reward_model")
    tok.save_pretrained(root / "reward_model")

    # A reference with its own, much smaller tokenizer (byte-level BPE trained on the reviews).
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    small = Tokenizer(models.BPE())
    small.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    small.decoder = decoders.ByteLevel()
    small.train_from_iterator([" ".join(WORDS)] * 20, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    small_tok = PreTrainedTokenizerFast(tokenizer_object=small, eos_token="<|endoftext|>")
    other = root / "other_reference"
    torch.manual_seed(6)
    other_config = GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=256, vocab_size=len(small_tok),
                              bos_token_id=small_tok.eos_token_id, eos_token_id=small_tok.eos_token_id)
    GPT2LMHeadModel(other_config).save_pretrained(other)
    small_tok.save_pretrained(other)
    return {"root": root, "data": str(data), "short_data": str(short), "reference": reference, "policy": policy,
            "reward_model": str(root / "reward_model"), "other_reference": str(other)}


def make_config(w, out, **kw):
    args = dict(model=w["policy"], reference=w["reference"], output_dir=str(out), num_prompts=6, samples_per_prompt=2,
                max_new_tokens=6, seed=0, dataset_name=w["data"], reward_model=w["reward_model"], batch_size=4,
                bootstrap_samples=200)
    args.update(kw)
    return EvalConfig(**args)


@pytest.fixture(scope="module")
def main_run(workdir):
    cfg = make_config(workdir, workdir["root"] / "out")
    results = run_eval(cfg)
    samples = [json.loads(line) for line in open(os.path.join(cfg.output_dir, "samples.jsonl"))]
    return cfg, results, samples


def full_logprob_sum(model_dir, query_ids, response_ids, temperature=1.0):
    """log p(response | query) summed, by one unpadded forward pass (the naive reference implementation)."""
    model = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    ids = torch.tensor([query_ids + response_ids])
    with torch.no_grad():
        logprobs = (model(ids).logits[0, :-1] / temperature).log_softmax(-1)
    targets = ids[0, 1:]
    per_token = logprobs[torch.arange(len(targets)), targets]
    return per_token[len(query_ids) - 1 :].sum().item()


def naive_distinct(texts, n):
    grams = []
    for t in texts:
        w = t.lower().split()
        grams += [tuple(w[i : i + n]) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


# ---------------------------------------------------------------------------------------------- measurements


def test_distinct_n_module():
    m = suite.load_measurement("distinct_n")
    out = m.compute(data=["the cat sat", "the cat ran"], max_n=3)
    assert out["distinct_1"] == pytest.approx(4 / 6) and out["distinct_2"] == pytest.approx(3 / 4)
    assert out["distinct_3"] == pytest.approx(1.0)
    assert m.compute(data=["a", ""], max_n=2)["distinct_2"] == 0.0  # no bigram at all


def test_sentiment_judge_module_vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    texts = ["What a wonderful, great film.", "Terrible, boring and awful.", "A film."]
    out = suite.load_measurement("sentiment_judge", "default").compute(data=texts)
    expected = [SentimentIntensityAnalyzer().polarity_scores(t)["compound"] for t in texts]
    assert out["scores"] == pytest.approx(expected)
    assert out["positive"] == [True, False, False] and out["positive_rate"] == pytest.approx(1 / 3)


def test_sentiment_judge_module_transformers(workdir):
    """A transformers judge: score = 2 P(POSITIVE) - 1, checked against the classifier run by hand."""
    texts = ["great movie", "bad movie and boring"]
    out = suite.load_measurement("sentiment_judge", workdir["reward_model"]).compute(data=texts)
    model = GPT2ForSequenceClassification.from_pretrained(workdir["reward_model"]).eval()
    tok = AutoTokenizer.from_pretrained(workdir["reward_model"])
    with torch.no_grad():
        p = [model(**tok(t, return_tensors="pt")).logits.softmax(-1)[0, 1].item() for t in texts]
    assert out["scores"] == pytest.approx([2 * x - 1 for x in p], abs=1e-5)
    with pytest.raises(ValueError, match="no label"):
        suite.load_measurement("sentiment_judge", workdir["reward_model"]).compute(data=texts, positive_label="HAPPY")


def test_toxicity_module(workdir):
    from profanity_check import predict_prob

    texts = ["you are a damn idiot", "hello there, nice film"]
    out = suite.load_measurement("toxicity").compute(data=texts)
    assert out["toxicity"] == pytest.approx(list(predict_prob(texts)))
    assert out["rate"] == pytest.approx(np.mean(predict_prob(texts) > 0.5))
    hf = suite.load_measurement("toxicity", workdir["reward_model"]).compute(data=texts, toxic_label="NEGATIVE")
    assert all(0 <= s <= 1 for s in hf["toxicity"])


def test_kl_and_perplexity_functions():
    assert suite.kl_per_sequence(np.array([-1.0, -2.0]), np.array([-1.5, -1.0])) == pytest.approx([0.5, -1.0])
    assert suite.perplexity(np.array([2.0, 4.0]), np.array([2, 4])) == pytest.approx(math.e)


def test_sequence_logprobs_matches_unpadded(workdir):
    """Batched, left-padded log-probs equal one unpadded forward per sequence (padding invariance)."""
    model = GPT2LMHeadModel.from_pretrained(workdir["reference"]).eval()
    queries, responses = [[10, 11, 12], [5]], [[1, 2, 3, 4], [7, 8]]
    got = suite.sequence_logprobs(model, queries, responses, pad_token_id=0, batch_size=2, temperature=0.7)
    expected = [full_logprob_sum(workdir["reference"], q, r, 0.7) for q, r in zip(queries, responses)]
    assert got == pytest.approx(expected, abs=1e-4)


# ---------------------------------------------------------------------------------------------- statistics


def test_distinct_bootstrap_matches_naive():
    texts = ["a b c", "a b d", "e f", "a", "b c d e", "c c c"]
    idx = np.array([[0, 1, 2], [2, 2, 1], [1, 0, 0]])  # 3 prompts x 2 samples each
    got = stats.distinct_bootstrap(texts, 2, 2, idx)
    for row, g in zip(idx, got):
        assert g == pytest.approx(naive_distinct([t for p in row for t in texts[2 * p : 2 * p + 2]], 2))


def test_paired_bootstrap_and_win_rate():
    rng = np.random.default_rng(0)
    diffs = rng.normal(1.0, 1.0, size=400)
    idx = stats.bootstrap_indices(400, 1000, seed=0)
    ci = stats.paired_bootstrap(diffs.mean(), diffs[idx].mean(1))
    assert ci["ci_low"] < diffs.mean() < ci["ci_high"]
    assert ci["ci_high"] - ci["ci_low"] == pytest.approx(2 * 1.96 * diffs.std() / 20, rel=0.15)  # normal theory
    assert stats.win_rate(np.array([1.0, 2.0, 3.0, 0.0]), np.array([0.0, 2.0, 4.0, -1.0])) == pytest.approx(2.5 / 4)


# ---------------------------------------------------------------------------------------------- run_eval


def test_outputs_written(main_run):
    cfg, results, samples = main_run
    for name in ("eval_results.json", "eval_report.md", "score_distributions.png", "reward_kl_frontier.png",
                 "samples.jsonl"):
        assert os.path.getsize(os.path.join(cfg.output_dir, name)) > 0, name
    on_disk = json.load(open(os.path.join(cfg.output_dir, "eval_results.json")))
    assert set(on_disk) == {"schema_version", "settings", "models", "judges", "metrics", "differences", "win_rate",
                            "reward_judge_agreement", "reward_hacking_flag", "frontier", "versions"}
    assert set(on_disk["metrics"]["aligned"]) == set(stats.METRICS) == set(on_disk["differences"])
    for d in on_disk["differences"].values():
        assert d["ci_low"] <= d["diff"] + 1e-9 or math.isnan(d["diff"])
    assert len(samples) == cfg.num_prompts * cfg.samples_per_prompt
    assert [p["step"] for p in results["frontier"]] == [0, 10, 20, -1]
    # frontier_num_prompts (128) covers all 6 prompts: the final point is the full metrics
    final = results["frontier"][-1]
    assert final["reward_mean"] == pytest.approx(results["metrics"]["aligned"]["reward_mean"])
    assert final["kl_to_reference_mean"] == pytest.approx(results["metrics"]["aligned"]["kl_to_reference_mean"])
    assert "Aligned - reference" in open(os.path.join(cfg.output_dir, "eval_report.md")).read()


def test_reward_mean_recomputed_by_hand(main_run, workdir):
    from rlhf_demo.rewards import ClassifierReward

    _, results, samples = main_run
    reward = ClassifierReward(workdir["reward_model"])
    for name in ("reference", "aligned"):
        scores = reward([s["prompt"] for s in samples], [s[f"{name}_response"] for s in samples])
        assert results["metrics"][name]["reward_mean"] == pytest.approx(np.mean(scores), abs=1e-5)
    per_prompt = {m: np.reshape([s[f"{m}_reward"] for s in samples], (-1, 2)).mean(1) for m in ("aligned", "reference")}
    wins = np.mean([(a > r) + 0.5 * (a == r) for a, r in zip(per_prompt["aligned"], per_prompt["reference"])])
    assert results["win_rate"]["reward_model"] == pytest.approx(wins)


def test_kl_and_perplexity_recomputed_by_hand(main_run, workdir):
    _, results, samples = main_run
    kl = [full_logprob_sum(workdir["policy"], s["query_ids"], s["aligned_response_ids"])
          - full_logprob_sum(workdir["reference"], s["query_ids"], s["aligned_response_ids"]) for s in samples]
    assert results["metrics"]["aligned"]["kl_to_reference_mean"] == pytest.approx(np.mean(kl), abs=1e-4)
    assert results["metrics"]["reference"]["kl_to_reference_mean"] == 0.0
    nll = [-full_logprob_sum(workdir["reference"], s["query_ids"], s["reference_response_ids"]) for s in samples]
    tokens = sum(len(s["reference_response_ids"]) for s in samples)
    assert results["metrics"]["reference"]["perplexity"] == pytest.approx(math.exp(sum(nll) / tokens), rel=1e-4)


def test_text_metrics_recomputed_by_hand(main_run):
    from profanity_check import predict_prob
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    _, results, samples = main_run
    vader = SentimentIntensityAnalyzer()
    for name in ("reference", "aligned"):
        texts = [s[f"{name}_response"] for s in samples]
        m = results["metrics"][name]
        for n in (1, 2, 3):
            assert m[f"distinct_{n}"] == pytest.approx(naive_distinct(texts, n))
        judged = [vader.polarity_scores(s["prompt"] + t)["compound"] for s, t in zip(samples, texts)]
        assert m["judge_score_mean"] == pytest.approx(np.mean(judged))
        assert m["toxicity_mean"] == pytest.approx(np.mean(predict_prob(texts)))
        assert m["response_length_mean"] == pytest.approx(np.mean([len(s[f"{name}_response_ids"]) for s in samples]))


def test_model_against_itself_is_exactly_paired(workdir, tmp_path):
    """Same model as aligned and reference: identical paired samples, KL exactly 0, every difference 0."""
    results = run_eval(make_config(workdir, tmp_path, model=workdir["reference"], samples_per_prompt=1,
                                   bootstrap_samples=100, stop_at_eos=True))
    assert results["metrics"]["aligned"]["kl_to_reference_mean"] == 0.0
    for key, d in results["differences"].items():
        assert d["diff"] == pytest.approx(0.0, abs=1e-9) and d["ci_low"] == pytest.approx(0.0, abs=1e-9), key
    assert results["win_rate"] == {"reward_model": 0.5, "judge": 0.5}
    assert results["frontier"] == [] and not results["reward_hacking_flag"]
    assert not os.path.exists(tmp_path / "reward_kl_frontier.png")


def test_reference_with_other_tokenizer(workdir, tmp_path):
    """A reference with another tokenizer: KL scores the retokenized text, and is recomputed here the same way."""
    results = run_eval(make_config(workdir, tmp_path, reference=workdir["other_reference"], samples_per_prompt=1,
                                   bootstrap_samples=100, frontier=False))
    assert results["settings"]["same_tokenizer"] is False
    samples = [json.loads(line) for line in open(tmp_path / "samples.jsonl")]
    other = AutoTokenizer.from_pretrained(workdir["other_reference"])
    kl = []
    for s in samples:
        ref_q = other(s["prompt"], add_special_tokens=False)["input_ids"]
        ref_r = other(s["aligned_response"], add_special_tokens=False)["input_ids"]
        kl.append(full_logprob_sum(workdir["policy"], s["query_ids"], s["aligned_response_ids"])
                  - full_logprob_sum(workdir["other_reference"], ref_q, ref_r))
    assert results["metrics"]["aligned"]["kl_to_reference_mean"] == pytest.approx(np.mean(kl), abs=1e-4)


# ---------------------------------------------------------------------------------------------- samples schema


def test_samples_written_are_the_samples_read(main_run):
    """run_eval writes samples.jsonl with `samples.py`'s writer; its reader gives back every episode, and the
    report shows the first pairs it reads."""
    cfg, _, samples = main_run
    path = os.path.join(cfg.output_dir, "samples.jsonl")
    assert read_samples(path) == samples
    assert set(samples[0]) == {"prompt_index", "prompt", "query_ids"} | {
        f"{m}_{k}" for m in ("reference", "aligned")
        for k in ("response", "response_ids", "reward", "judge", "toxicity", "kl")}
    pairs = sample_pairs(path)
    assert [(p.prompt, p.reference, p.aligned) for p in pairs] == [
        (s["prompt"], s["reference_response"], s["aligned_response"]) for s in samples]
    assert pairs[0].reference_reward == pytest.approx(samples[0]["reference_reward"])
    assert sample_pairs(samples, 2) == pairs[:2]
    report = open(os.path.join(cfg.output_dir, "eval_report.md")).read()
    esc = lambda t: t.replace("|", "\\|").replace("\r", " ").replace("\n", " ")  # noqa: E731
    for p in pairs[: cfg.num_report_samples]:
        assert f"| {esc(p.prompt)} | {esc(p.reference)} ({p.reference_reward:.2f}) |" in report


def test_committed_samples_are_read():
    """The committed tiny results (written by an earlier run_eval) still read: the schema kept its keys."""
    pairs, rows = sample_pairs(COMMITTED_SAMPLES), read_samples(COMMITTED_SAMPLES)
    assert len(pairs) == len(rows) == 512
    assert pairs[0].prompt == "Yumiko (Wakana S"  # the first held-out prompt: fixed by the eval's seed, not the model
    assert [(p.reference, p.aligned) for p in pairs] == [(r["reference_response"], r["aligned_response"]) for r in rows]
    assert all(p.aligned for p in pairs)
    assert all(isinstance(p.reference_reward, float) and isinstance(p.aligned_reward, float) for p in pairs)
    assert sample_pairs(COMMITTED_SAMPLES, 3) == pairs[:3]


def test_sample_row_roundtrip_and_tolerant_reader(tmp_path):
    scores = {"reward": 1.5, "judge": 0.25, "toxicity": 0.0, "kl": 0.5}
    ref = {"response": " a", "response_ids": np.array([1, 2]), **{k: np.float32(v) for k, v in scores.items()}}
    row = sample_row(np.int64(3), "Prompt", [7], ref, {**ref, "response": " b", "reward": float("nan")})
    path = str(tmp_path / "samples.jsonl")
    write_samples(path, [row, {"prompt": "no responses"}])
    with open(path, "a") as f:
        f.write('{"prompt": "cut sho')  # a line cut short by a crash
    assert read_samples(path) == [json.loads(json.dumps(row)), {"prompt": "no responses"}]
    assert row["reference_response_ids"] == [1, 2] and row["prompt_index"] == 3
    assert sample_pairs(path) == [SamplePair("Prompt", " a", " b", 1.5, None)]  # NaN reward reads as None
    assert sample_pairs(path, 0) == [] and sample_pairs(str(tmp_path / "missing.jsonl")) == []
    with pytest.raises(KeyError):
        sample_row(0, "p", [1], {"response": "x"}, ref)


# ---------------------------------------------------------------------------------------------- errors


def test_model_dir_not_a_causal_lm(workdir, tmp_path):
    with pytest.raises(ValueError, match="not a causal language model"):
        run_eval(make_config(workdir, tmp_path, model=workdir["reward_model"]))
    with pytest.raises(ValueError, match="config.json"):
        run_eval(make_config(workdir, tmp_path, reference=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_eval(make_config(workdir, tmp_path, model=str(tmp_path / "missing")))
    # looks like a Hub id, but nothing can be downloaded offline
    with pytest.raises(FileNotFoundError, match="Could not load"):
        run_eval(make_config(workdir, tmp_path, model="no-such-user/no-such-model"))


def test_zero_prompts(workdir, tmp_path):
    with pytest.raises(ValueError, match="num_prompts"):
        make_config(workdir, tmp_path, num_prompts=0)
    with pytest.raises(ValueError, match="longer than"):  # a split with no usable review gives no prompts
        run_eval(make_config(workdir, tmp_path, dataset_name=workdir["short_data"]))


def test_config_validation(workdir, tmp_path):
    with pytest.raises(ValueError, match="--model is required"):
        EvalConfig(reference="tiny")
    with pytest.raises(ValueError, match="top_p"):
        make_config(workdir, tmp_path, top_p=0.0)
    with pytest.raises(ValueError, match="bootstrap_samples"):
        make_config(workdir, tmp_path, bootstrap_samples=5)


def test_cli_parsing_and_help(capsys):
    """EvalConfig parses with HfArgumentParser (as `rlhf-demo eval` does) and its --help renders."""
    from rlhf_demo.config import parse_config

    args = ["--model", "runs/x", "--reference", "tiny", "--num_prompts", "8", "--frontier", "false"]
    cfg = parse_config(EvalConfig, args, section="eval")
    assert (cfg.num_prompts, cfg.frontier, cfg.reference) == (8, False, "tiny")
    with pytest.raises(SystemExit):
        parse_config(EvalConfig, ["--help"], section="eval", prog="rlhf-demo eval")
    assert "--reward_model" in capsys.readouterr().out
