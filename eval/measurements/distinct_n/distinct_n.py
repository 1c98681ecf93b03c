"""Distinct-n (Li et al. 2016): distinct n-grams / total n-grams over all texts together (a corpus statistic).

Texts are split into tokens by `tokenizer` (any callable str -> list; default: lower-cased whitespace words,
so models with different tokenizers are compared on the same units). A text shorter than n has no n-grams.
A corpus with no n-gram at all has distinct-n 0.

    distinct = evaluate.load("/path/to/eval/measurements/distinct_n")
    distinct.compute(data=["the cat sat", "the cat ran"], max_n=2)
    # {"distinct_1": 0.667, "distinct_2": 0.75, "total_1": 6, "unique_1": 4, "total_2": 4, "unique_2": 3}
"""

import datasets
import evaluate

_CITATION = """\
@inproceedings{li2016diversity,
  title={A Diversity-Promoting Objective Function for Neural Conversation Models},
  author={Li, Jiwei and Galley, Michel and Brockett, Chris and Gao, Jianfeng and Dolan, Bill},
  booktitle={NAACL}, year={2016}}
"""

_DESCRIPTION = (
    "Distinct-n for n = 1..max_n: the number of distinct n-grams divided by the total number of n-grams in all texts."
)

_KWARGS_DESCRIPTION = """
Args:
    data (list of str): texts (e.g. sampled responses).
    max_n (int): largest n (default 3).
    tokenizer (callable str -> list, optional): default lower-cased whitespace split.
Returns:
    distinct_{n} (float), unique_{n} (int), total_{n} (int) for n = 1..max_n.
"""


def ngrams(tokens, n):
    """All contiguous n-grams of a token list, as tuples."""
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def whitespace_tokenize(text):
    return text.lower().split()


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class DistinctN(evaluate.Measurement):
    def _info(self):
        return evaluate.MeasurementInfo(
            module_type="measurement",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"data": datasets.Value("string", id="sequence")}),
            reference_urls=["https://aclanthology.org/N16-1014/"],
        )

    def _compute(self, data, max_n=3, tokenizer=None):
        if max_n < 1:
            raise ValueError(f"max_n must be at least 1, got {max_n}.")
        tokenize = tokenizer or whitespace_tokenize
        tokenized = [list(tokenize(t)) for t in data]
        results = {}
        for n in range(1, max_n + 1):
            grams = [g for toks in tokenized for g in ngrams(toks, n)]
            unique = len(set(grams))
            results[f"distinct_{n}"] = unique / len(grams) if grams else 0.0
            results[f"unique_{n}"] = unique
            results[f"total_{n}"] = len(grams)
        return results
