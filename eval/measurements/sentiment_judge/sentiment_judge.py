"""Sentiment judge: an independent sentiment score for texts, not the reward model PPO optimised.

Offline default (config name `default` or `vader`): VADER's compound score (Hutto & Gilbert 2014), in [-1, 1];
a text is positive when compound >= 0.05 (VADER's own threshold).
Any other config name is a `transformers` text-classification model (e.g. `siebert/sentiment-roberta-large-english`,
the DPO paper's judge, Rafailov et al. 2023): score = 2 * P(positive label) - 1, in [-1, 1]; positive when
P(positive label) > 0.5.

    judge = evaluate.load("/path/to/eval/measurements/sentiment_judge")            # VADER
    judge = evaluate.load("/path/to/eval/measurements/sentiment_judge", "siebert/sentiment-roberta-large-english")
    judge.compute(data=["What a great film."])
    # {"scores": [0.6249], "positive": [True], "mean": 0.6249, "positive_rate": 1.0}
"""

import datasets
import evaluate

_CITATION = """\
@inproceedings{hutto2014vader,
  title={VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social Media Text},
  author={Hutto, C.J. and Gilbert, Eric}, booktitle={ICWSM}, year={2014}}
"""

_DESCRIPTION = (
    "Sentiment of each text in [-1, 1] by VADER (offline) or a transformers classifier, with the positive rate."
)

_KWARGS_DESCRIPTION = """
Args:
    data (list of str): texts to judge.
    positive_label (str): label of the classifier that means positive (transformers judges only; default POSITIVE).
    batch_size (int): texts per forward pass (transformers judges only).
Returns:
    scores (list of float): per text, in [-1, 1].
    positive (list of bool): per text, judged positive.
    mean (float): mean score.  positive_rate (float): share of texts judged positive.
"""

VADER_NAMES = ("default", "vader")
VADER_POSITIVE_THRESHOLD = 0.05


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SentimentJudge(evaluate.Measurement):
    def _info(self):
        return evaluate.MeasurementInfo(
            module_type="measurement",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"data": datasets.Value("string", id="sequence")}),
            reference_urls=["https://github.com/cjhutto/vaderSentiment"],
        )

    def _download_and_prepare(self, dl_manager):
        if self.config_name in VADER_NAMES:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            self.analyzer = SentimentIntensityAnalyzer()
            self.classifier = None
        else:
            from rlhf_demo.models import text_classifier

            self.classifier = text_classifier(self.config_name)

    def _compute(self, data, positive_label="POSITIVE", batch_size=32):
        if self.classifier is None:
            scores = [self.analyzer.polarity_scores(t)["compound"] for t in data]
            positive = [s >= VADER_POSITIVE_THRESHOLD for s in scores]
        else:
            outputs = self.classifier(list(data), batch_size=batch_size, truncation=True)
            probs = []
            for out in outputs:
                by_label = {o["label"].upper(): o["score"] for o in out}
                if positive_label.upper() not in by_label:
                    raise ValueError(f"The judge {self.config_name!r} has no label {positive_label!r}; its labels are "
                                     f"{sorted(by_label)}. Pass positive_label=...")
                probs.append(by_label[positive_label.upper()])
            scores = [2.0 * p - 1.0 for p in probs]
            positive = [p > 0.5 for p in probs]
        n = max(len(scores), 1)
        return {"scores": scores, "positive": positive, "mean": sum(scores) / n, "positive_rate": sum(positive) / n}
