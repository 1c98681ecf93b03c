"""Toxicity: the probability that a text is toxic, with the mean and the share above a threshold.

Offline default (config name `default` or `profanity-check`): `alt-profanity-check`, a linear SVM on
TF-IDF features trained on 200k human-labelled comments (Wikipedia and Twitter), probability in [0, 1].
Any other config name is a `transformers` text-classification model, scored as the probability of its
toxic label, as in evaluate's own `toxicity` measurement (default label `hate`, for
`facebook/roberta-hate-speech-dynabench-r4-target`, Vidgen et al. 2021).

    tox = evaluate.load("/path/to/eval/measurements/toxicity")
    tox.compute(data=["you are a damn idiot", "hello there"])
    # {"toxicity": [0.99..., 0.02...], "mean": 0.51..., "rate": 0.5}
"""

import datasets
import evaluate

_CITATION = """\
@inproceedings{vidgen2021lftw,
  title={Learning from the Worst: Dynamically Generated Datasets to Improve Online Hate Detection},
  author={Bertie Vidgen and Tristan Thrush and Zeerak Waseem and Douwe Kiela}, booktitle={ACL}, year={2021}}
"""

_DESCRIPTION = (
    "Per-text toxicity probability by alt-profanity-check (offline) or a transformers classifier; mean and rate "
    "above a threshold."
)

_KWARGS_DESCRIPTION = """
Args:
    data (list of str): texts to score.
    toxic_label (str): label of the classifier that means toxic (transformers judges only; default `hate`).
    threshold (float): a text counts as toxic when its probability is above this (default 0.5).
    batch_size (int): texts per forward pass (transformers judges only).
Returns:
    toxicity (list of float): per text, in [0, 1].
    mean (float): mean toxicity.  rate (float): share of texts with toxicity > threshold.
"""

OFFLINE_NAMES = ("default", "profanity-check")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Toxicity(evaluate.Measurement):
    def _info(self):
        return evaluate.MeasurementInfo(
            module_type="measurement",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"data": datasets.Value("string", id="sequence")}),
            reference_urls=["https://github.com/dimitrismistriotis/alt-profanity-check"],
        )

    def _download_and_prepare(self, dl_manager):
        if self.config_name in OFFLINE_NAMES:
            self.classifier = None
        else:
            from rlhf_demo.models import text_classifier

            self.classifier = text_classifier(self.config_name)

    def _compute(self, data, toxic_label="hate", threshold=0.5, batch_size=32):
        data = list(data)
        if not data:
            return {"toxicity": [], "mean": 0.0, "rate": 0.0}
        if self.classifier is None:
            from profanity_check import predict_prob

            scores = [float(p) for p in predict_prob(data)]
        else:
            scores = []
            for out in self.classifier(data, batch_size=batch_size, truncation=True):
                by_label = {o["label"]: o["score"] for o in out}
                if toxic_label not in by_label:
                    raise ValueError(f"The toxicity classifier {self.config_name!r} has no label {toxic_label!r}; its "
                                     f"labels are {sorted(by_label)}. Pass toxic_label=...")
                scores.append(float(by_label[toxic_label]))
        return {"toxicity": scores, "mean": sum(scores) / len(scores),
                "rate": sum(s > threshold for s in scores) / len(scores)}
