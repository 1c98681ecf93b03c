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
from .data import clean_review, load_reviews

ID2LABEL = {0: "NEGATIVE", 1: "POSITIVE"}


def _tokenized(tokenizer, dataset_name: str, split: str, max_length: int, limit: int | None, seed: int):
    ds = load_reviews(dataset_name, split)
    if "label" not in ds.column_names:
        raise ValueError(f"Dataset {dataset_name!r} split {split!r} has no 'label' column (0=negative, 1=positive); "
                         f"columns: {ds.column_names}.")
    ds = ds.shuffle(seed=seed)
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return ds.map(lambda b: tokenizer([clean_review(t) for t in b["text"]], truncation=True, max_length=max_length),
                  batched=True, remove_columns=["text"])


def train_reward_model(cfg: RewardModelConfig) -> dict:
    """Fine-tune the classifier, save it to `cfg.output_dir` (fp16 weights, fp32 on load) and return the report
    (test accuracy, examples, wall time). Raises ValueError for a dataset without labels."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from .models import ensure_pad_token
    from .runs import machine_description, save_half

    start = time.time()
    tokenizer = ensure_pad_token(AutoTokenizer.from_pretrained(cfg.model_name_or_path))
    tokenizer.truncation_side = "left"  # keep the end of a review: that is where the verdict usually is
    tokenizer.padding_side = "right"
    model = AutoModelForSequenceClassification.from_pretrained(
        cfg.model_name_or_path, num_labels=2, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()},
        dtype=torch.float32,
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    train = _tokenized(tokenizer, cfg.dataset_name, "train", cfg.max_length, cfg.max_train_examples, cfg.seed)
    test = _tokenized(tokenizer, cfg.dataset_name, "test", cfg.max_length, cfg.eval_examples, cfg.seed)

    args = TrainingArguments(
        output_dir=os.path.join(cfg.output_dir, "trainer"), per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=2 * cfg.batch_size, learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
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
    save_half(model, tokenizer, cfg.output_dir)
    shutil.rmtree(args.output_dir, ignore_errors=True)  # the Trainer's resumable checkpoints, no longer needed
    with open(os.path.join(cfg.output_dir, "reward_model_report.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))
    return report
