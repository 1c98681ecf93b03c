"""`rlhf-demo reward-model`: a sentiment reward model initialised from a causal LM.

As Ziegler et al. (2019) initialise the reward model from the language model, the classifier is
`AutoModelForSequenceClassification` loaded from the LM's folder (its LM head dropped, a 2-way head added,
`id2label` {0: NEGATIVE, 1: POSITIVE} as in `lvwerra/distilbert-imdb`) and fine-tuned on IMDB's train labels
with `transformers.Trainer`. Accuracy is reported on the test split (all 25,000 reviews by default).
"""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import torch

from .config import RewardModelConfig
from .errors import UserInputError
from .data import clean_review, load_reviews

ID2LABEL = {0: "NEGATIVE", 1: "POSITIVE"}


def _labelled(dataset_name: str, split: str, limit: int | None, seed: int):
    """One split of the classifier's data (shuffled by `seed`, its first `limit` rows), checked before any model
    loads: a `text` column of text and a `label` column of the integers 0 (negative) and 1 (positive). Raises
    UserInputError naming the column and the first bad row (counting from 0)."""
    import pyarrow.compute as pc
    from datasets import ClassLabel, Value

    from .data import a_type, check_text_column

    ds = load_reviews(dataset_name, split)
    if "label" not in ds.column_names:
        raise UserInputError(f"Dataset {dataset_name!r} split {split!r} has no 'label' column "
                             "(0=negative, 1=positive); "
                             f"columns: {ds.column_names}.")
    check_text_column(ds, "text", dataset_name, split, flag=None)
    feature, labels = ds.features["label"], ds.data.column("label")
    where = f"Dataset {dataset_name!r} split {split!r}: column 'label'"
    fix = "the classifier takes the labels 0 (negative) and 1 (positive) only; map the labels to them"
    if isinstance(feature, ClassLabel):
        if feature.num_classes != 2:
            raise UserInputError(f"{where} has {feature.num_classes} classes {feature.names}; {fix}.")
    elif not (isinstance(feature, Value) and feature.dtype.startswith(("int", "uint"))):
        first = max(pc.index(pc.is_valid(labels), True).as_py(), 0)
        raise UserInputError(f"{where} holds {a_type(ds[first]['label'])} ({ds[first]['label']!r}) in row {first} "
                             f"(from 0), not an integer; {fix}.")
    bad = pc.invert(pc.fill_null(pc.is_in(labels, value_set=pc.cast([0, 1], labels.type)), False))
    if pc.any(bad).as_py():
        first = pc.index(bad, True).as_py()
        values = sorted(v for v in pc.unique(labels).to_pylist() if v is not None)
        raise UserInputError(f"{where} holds {ds[first]['label']!r} in row {first} (from 0) (labels found: "
                             f"{values[:10]}{' ...' if len(values) > 10 else ''}{', null' if labels.null_count else ''}"
                             f"); {fix}, or drop the other rows.")
    ds = ds.shuffle(seed=seed)
    return ds.select(range(min(limit, len(ds)))) if limit is not None else ds


def _tokenized(tokenizer, ds, max_length: int):
    return ds.map(lambda b: tokenizer([clean_review(t) for t in b["text"]], truncation=True, max_length=max_length),
                  batched=True, remove_columns=["text"])


def load_start(model_name_or_path: str, **kwargs):
    """(tokenizer, sequence classifier) to start a reward model from: a causal LM's folder (its LM head dropped, a
    fresh head added) or an earlier reward model; the tokenizer pads on the right (with EOS when it has no pad token).
    `kwargs` go to `AutoModelForSequenceClassification.from_pretrained`. Raises MissingInputError / UserInputError
    for a missing or unreadable model (one line naming --model_name_or_path)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .models import check_model_path, ensure_pad_token, expected_load_report, loading_errors

    role = "starting model (--model_name_or_path)"
    path = check_model_path(model_name_or_path, role)
    with loading_errors(path, role), expected_load_report():  # a causal LM's new score head: reported as MISSING
        tokenizer = ensure_pad_token(AutoTokenizer.from_pretrained(path))
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32, **kwargs)
    tokenizer.padding_side = "right"
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def train_reward_model(cfg: RewardModelConfig) -> dict:
    """Fine-tune the classifier, save it to `cfg.output_dir` (fp16 weights, fp32 on load) and return the report
    (test accuracy, examples, wall time). Raises UserInputError for a dataset without labels."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from .runs import atomic_save, check_output_dir, machine_description, save_half, write_json

    check_output_dir(cfg.output_dir)  # before any training: a file or read-only folder fails in a second
    start = time.time()
    train = _labelled(cfg.dataset_name, "train", cfg.max_train_examples, cfg.seed)  # data first: bad labels fail fast
    test = _labelled(cfg.dataset_name, "test", cfg.eval_examples, cfg.seed)
    tokenizer, model = load_start(cfg.model_name_or_path, num_labels=2, id2label=ID2LABEL,
                                  label2id={v: k for k, v in ID2LABEL.items()})
    tokenizer.truncation_side = "left"  # keep the end of a review: that is where the verdict usually is
    train = _tokenized(tokenizer, train, cfg.max_length)
    test = _tokenized(tokenizer, test, cfg.max_length)

    args = TrainingArguments(
        output_dir=os.path.join(cfg.output_dir, "trainer"), per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=2 * cfg.batch_size, learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        # transformers 5: a float in [0, 1) as warmup_steps is a share of the steps (warmup_ratio is deprecated).
        warmup_steps=cfg.warmup_ratio, lr_scheduler_type="linear", weight_decay=0.01, logging_steps=50,
        save_strategy="steps",
        save_steps=200, save_total_limit=1, report_to="none", seed=cfg.seed, use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer))
    last = None
    if os.path.isdir(args.output_dir):
        ckpts = [d for d in os.listdir(args.output_dir) if d.startswith("checkpoint-")]
        last = os.path.join(args.output_dir, max(ckpts, key=lambda d: int(d.split("-")[1]))) if ckpts else None
    trainer.train(resume_from_checkpoint=last)
    train_s = time.time() - start

    preds = trainer.predict(test)
    accuracy = float((np.argmax(preds.predictions, -1) == np.array(test["label"])).mean())
    report = {"test_accuracy": accuracy, "test_examples": len(test), "max_length": cfg.max_length,
              "train_examples": len(train), "epochs": cfg.num_train_epochs, "train_s": train_s,
              "total_s": time.time() - start, "machine": machine_description()}
    tokenizer.padding_side = "left"
    shutil.rmtree(args.output_dir, ignore_errors=True)  # the Trainer's resumable checkpoints, no longer needed

    def save(folder: str) -> None:  # into a new folder that atomic_save swaps in: a kill never leaves a half model
        save_half(model, tokenizer, folder)
        write_json(os.path.join(folder, "reward_model_report.json"), report)

    atomic_save(save, cfg.output_dir)
    print(json.dumps(report, indent=2))
    return report


# ------------------------------------------------------------------------------------------- from preferences
def train_preference_reward_model(cfg: RewardModelConfig) -> dict:
    """A Bradley-Terry reward model on the preference pairs of `cfg.preferences`: one logit r(x, y), trained with
    TRL's `RewardTrainer` on the loss -log sigmoid(r(x, y_chosen) - r(x, y_rejected)) (Bradley & Terry 1952;
    Ouyang et al. 2022, eq. 1). Initialised from `cfg.model_name_or_path`: the policy's causal LM (a fresh head, as
    Ziegler et al. 2019) or an earlier reward model (its head kept, to continue).

    Ties, equal pairs and exact repeats are dropped (counts printed). A seeded `eval_fraction` of the pairs is held
    out; its pairwise accuracy (share of pairs where r(chosen) > r(rejected), scored as `rewards.PreferenceReward`
    scores PPO's episodes) goes in the report. Saves the model (fp16 weights, fp32 on load), its tokenizer,
    `reward_model_report.json` and a model card `README.md` to `cfg.output_dir`; returns the report.

    Raises:
        UserInputError / MissingInputError: a bad or missing preference file (see feedback.load_preference_pairs).
    """
    import datasets
    from trl import RewardConfig, RewardTrainer

    from .feedback import load_preference_pairs
    from .models import display_name
    from .rewards import PreferenceReward
    from .runs import atomic_save, check_output_dir, machine_description, save_half, write_json

    check_output_dir(cfg.output_dir)  # before any training: a file or read-only folder fails in a second
    start = time.time()
    rows, counts = load_preference_pairs(cfg.preferences)
    print(f"preference pairs: {counts['read']} read, {counts['ties']} ties, {counts['same']} with chosen == rejected "
          f"and {counts['duplicates']} repeats dropped, {counts['kept']} kept")
    pairs = datasets.Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    n_eval = int(round(cfg.eval_fraction * len(pairs))) if len(pairs) > 1 else 0
    if n_eval >= len(pairs):
        raise UserInputError(f"--eval_fraction {cfg.eval_fraction:g} holds out {n_eval} of the {len(pairs)} usable "
                             "pairs, leaving none to train on; lower --eval_fraction (0 holds none out) or label more "
                             "pairs.")
    split = pairs.train_test_split(test_size=n_eval, seed=cfg.seed) if n_eval else {"train": pairs, "test": None}

    tokenizer, model = load_start(cfg.model_name_or_path, num_labels=1, ignore_mismatched_sizes=True)
    args = RewardConfig(
        output_dir=os.path.join(cfg.output_dir, "trainer"), per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, num_train_epochs=cfg.num_train_epochs,
        warmup_steps=cfg.warmup_ratio,  # a share of the steps (transformers 5: a float in [0, 1))
        lr_scheduler_type="linear", max_length=cfg.max_length, logging_steps=25, save_strategy="no",
        report_to="none", seed=cfg.seed, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
        # TRL's defaults are bf16 autocast (many times slower than fp32 on a CPU without bf16 units) and gradient
        # checkpointing (a second forward pass): neither pays off for models of this size.
        bf16=False, activation_checkpointing=False,
    )
    trainer = RewardTrainer(model=model, args=args, train_dataset=split["train"], processing_class=tokenizer)
    trainer.train()
    train_s = time.time() - start

    tokenizer.padding_side = "left"
    shutil.rmtree(args.output_dir, ignore_errors=True)
    report = {}

    def save(folder: str) -> None:  # everything into a new folder; atomic_save swaps it in (never a half model)
        save_half(trainer.model, tokenizer, folder)
        accuracy = None
        if split["test"] is not None:
            held_out = split["test"]
            reward = PreferenceReward(folder, batch_size=2 * cfg.batch_size)
            accuracy = pairwise_accuracy(reward, held_out["prompt"], held_out["chosen"], held_out["rejected"])
        report.update({
            "kind": "bradley-terry", "pairs": counts, "train_pairs": len(split["train"]), "eval_pairs": n_eval,
            "eval_accuracy": accuracy, "initialised_from": display_name(cfg.model_name_or_path),
            "epochs": cfg.num_train_epochs, "max_length": cfg.max_length, "train_s": train_s,
            "total_s": time.time() - start, "machine": machine_description(),
            "preference_files": [os.path.basename(p) for p in cfg.preferences]})
        write_json(os.path.join(folder, "reward_model_report.json"), report)
        with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as f:
            f.write(_preference_card(report))

    atomic_save(save, cfg.output_dir)
    print(json.dumps(report, indent=2))
    return report


def pairwise_accuracy(reward_fn, prompts: list[str], chosen: list[str], rejected: list[str]) -> float:
    """Share of pairs on which `reward_fn` (e.g. a `PreferenceReward`) scores the chosen continuation strictly higher
    than the rejected one: the Bradley-Terry model's agreement with the labels, in [0, 1]."""
    return float(np.mean(np.asarray(reward_fn(prompts, chosen)) > np.asarray(reward_fn(prompts, rejected))))


def _preference_card(report: dict) -> str:
    """The model card of a Bradley-Terry reward model: `huggingface_hub.ModelCard` text, YAML metadata (library
    transformers, tags) and Markdown."""
    from huggingface_hub import ModelCard, ModelCardData

    acc = report["eval_accuracy"]
    accuracy = f"{acc:.3f} on {report['eval_pairs']} held-out pairs" if acc is not None else "not measured"
    files = " ".join(report["preference_files"])
    data = ModelCardData(library_name="transformers", tags=["rlhf", "reward-model", "bradley-terry", "rlhf-demo"])
    text = f"""# Bradley-Terry reward model (rlhf-demo)

One logit r(prompt + response + EOS), trained on preference pairs with TRL's `RewardTrainer` (loss
-log sigmoid(r_chosen - r_rejected), Bradley & Terry 1952). Use it as a PPO reward with
`rlhf-demo train --reward preference=PATH`.

- Pairs: {report['pairs']['read']} read, {report['pairs']['ties']} ties, {report['pairs']['same']} with chosen ==
  rejected, {report['pairs']['duplicates']} repeats; {report['train_pairs']} for training.
- Held-out pairwise accuracy: {accuracy}.
- Initialised from: `{report['initialised_from']}`; {report['epochs']} epoch(s),
  max length {report['max_length']} tokens.
- Wall time: {report['train_s']:.0f} s of training on {report['machine']}.
- Command: `rlhf-demo reward-model --preferences {files} --model_name_or_path ... --output_dir ...`
"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{text}"))
