"""`rlhf-demo pretrain`: a byte-level BPE tokenizer and a small GPT-2 trained from scratch on IMDB reviews.

This builds the `tiny` preset's policy, so the whole pipeline runs offline. The held-out report gives loss
(nats per token), perplexity and bits per byte, the last being comparable across tokenizers:
bpb = (sum of token losses in nats) / ln 2 / (UTF-8 bytes of the text scored).
"""

from __future__ import annotations

import json
import math
import os
import time

import torch
from tqdm.auto import tqdm
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from . import runs
from .config import PretrainConfig
from .data import clean_review, load_reviews
from .errors import UserInputError
from .runs import atomic_save, machine_description, save_half

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"


def train_tokenizer(texts, vocab_size: int = 8192) -> PreTrainedTokenizerFast:
    """Train a GPT-2-style byte-level BPE tokenizer with `<|endoftext|>` (BOS/EOS) and a separate `<|pad|>`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=True,
    )
    tok.train_from_iterator(texts, trainer, length=len(texts))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS_TOKEN, eos_token=EOS_TOKEN, unk_token=EOS_TOKEN, pad_token=PAD_TOKEN,
        padding_side="left", model_max_length=1024,
    )


@torch.no_grad()
def heldout_report(model, tokenizer, texts: list[str], block_size: int, batch_size: int = 16) -> dict[str, float]:
    """Loss (nats/token), perplexity and bits per byte of `model` on `texts`.

    Each text is scored as `<|endoftext|>` followed by its tokens, cut into non-overlapping windows of
    `block_size` predicted tokens; every token is predicted exactly once (a window's context starts at its
    own first token, which makes the numbers slightly pessimistic for long texts).
    """
    model.eval()
    windows = []
    n_bytes = 0
    for t in texts:
        ids = [tokenizer.eos_token_id] + tokenizer(t, add_special_tokens=False)["input_ids"]
        n_bytes += len(t.encode("utf-8"))
        for i in range(0, len(ids) - 1, block_size):
            windows.append(ids[i : i + block_size + 1])
    total_nats, total_tokens = 0.0, 0
    for i in range(0, len(windows), batch_size):
        chunk = windows[i : i + batch_size]
        width = max(len(w) for w in chunk)
        x = torch.full((len(chunk), width), tokenizer.pad_token_id)
        for j, w in enumerate(chunk):
            x[j, : len(w)] = torch.tensor(w)
        mask = torch.zeros_like(x)
        for j, w in enumerate(chunk):
            mask[j, : len(w)] = 1
        logits = model(input_ids=x[:, :-1], attention_mask=mask[:, :-1]).logits
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
        total_nats += (nll * mask[:, 1:]).sum().item()
        total_tokens += mask[:, 1:].sum().item()
    loss = total_nats / total_tokens
    return {"loss": loss, "perplexity": math.exp(loss), "bits_per_byte": total_nats / math.log(2) / n_bytes,
            "tokens": total_tokens, "bytes": n_bytes, "reviews": len(texts)}


def lr_at(cfg: PretrainConfig, step: int) -> float:
    """Learning rate of optimizer step `step`: linear warmup, then cosine decay to min_lr_ratio x peak (as nanoGPT)."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.learning_rate * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


def build_model(cfg: PretrainConfig, tokenizer, checkpoint_dir: str | None = None):
    """(model, optimizer, step, elapsed seconds): a fresh GPT-2 for `tokenizer`, or the one in `checkpoint_dir` with
    its optimizer state. AdamW (betas 0.9, 0.95) with weight decay on matrices only."""
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
    )
    model = GPT2LMHeadModel(config)
    step, elapsed = 0, 0.0
    if checkpoint_dir is not None:
        model = GPT2LMHeadModel.from_pretrained(checkpoint_dir, dtype=torch.float32, resid_pdrop=cfg.dropout,
                                                embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout)
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": cfg.weight_decay},
         {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}],
        lr=cfg.learning_rate, betas=(0.9, 0.95),
    )
    if checkpoint_dir is not None:
        state = torch.load(os.path.join(checkpoint_dir, "state.pt"))
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed = state["step"], state["elapsed_s"]
        print(f"resumed from {checkpoint_dir} at step {step}")
    return model, optimizer, step, elapsed


def train_steps(cfg: PretrainConfig, model, optimizer, stream: torch.Tensor, step: int,
                elapsed_before: float) -> tuple[int, float]:
    """Train from `step` to cfg.max_steps on random windows of the token `stream`, checkpointing every save_steps
    (atomically) to output_dir/checkpoint. Returns the last step and the training seconds in all (earlier runs
    included)."""
    ckpt_dir = os.path.join(cfg.output_dir, "checkpoint")
    model.train()
    t0 = time.time()
    bar = tqdm(total=cfg.max_steps, initial=step, desc="pretrain", unit="step")
    while step < cfg.max_steps:
        # Batch `step` depends only on (seed, step), so a resumed run sees the same data.
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        starts = torch.randint(0, len(stream) - cfg.block_size - 1, (cfg.batch_size,), generator=g)
        x = torch.stack([stream[s : s + cfg.block_size] for s in starts])
        y = torch.stack([stream[s + 1 : s + cfg.block_size + 1] for s in starts])
        for group in optimizer.param_groups:
            group["lr"] = lr_at(cfg, step)
        logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr_at(cfg, step - 1):.1e}")
        if step % cfg.save_steps == 0 or step == cfg.max_steps:
            state = {"step": step, "elapsed_s": elapsed_before + time.time() - t0}

            def save(tmp, state=state):
                model.save_pretrained(tmp)
                torch.save({"optimizer": optimizer.state_dict(), **state}, os.path.join(tmp, "state.pt"))

            atomic_save(save, ckpt_dir)
    bar.close()
    return step, elapsed_before + time.time() - t0


def pretrain(cfg: PretrainConfig) -> dict:
    """Train tokenizer + GPT-2 on the train split, report on `eval_reviews` test reviews. Returns the report."""
    runs.check_output_dir(cfg.output_dir)  # before the minutes of tokenizer training
    torch.manual_seed(cfg.seed)
    os.makedirs(cfg.output_dir, exist_ok=True)
    start = time.time()
    train_texts = [clean_review(t) for t in load_reviews(cfg.dataset_name, "train")["text"]]
    test = load_reviews(cfg.dataset_name, "test").shuffle(seed=cfg.seed)
    eval_texts = [clean_review(t) for t in test.select(range(min(cfg.eval_reviews, len(test))))["text"]]

    tok_dir = os.path.join(cfg.output_dir, "tokenizer")
    if os.path.exists(os.path.join(tok_dir, "tokenizer.json")):
        tokenizer = PreTrainedTokenizerFast.from_pretrained(tok_dir)
    else:
        tokenizer = train_tokenizer(train_texts, cfg.vocab_size)
        atomic_save(tokenizer.save_pretrained, tok_dir)

    # One long stream: <eos> review <eos> review ... ; batches are random windows of it.
    ids = tokenizer([EOS_TOKEN + t for t in train_texts], add_special_tokens=False)["input_ids"]
    stream = torch.tensor([i for doc in ids for i in doc], dtype=torch.long)
    if len(stream) < cfg.block_size + 2:
        raise UserInputError(f"The train split of {cfg.dataset_name!r} holds {len(stream)} tokens, fewer than one "
                             f"training window of --block_size {cfg.block_size} + 1; lower --block_size or add text.")
    print(f"train stream: {len(stream):,} tokens from {len(train_texts):,} reviews "
          f"({sum(len(t.encode()) for t in train_texts) / len(stream):.2f} bytes/token)")

    ckpt_dir = os.path.join(cfg.output_dir, "checkpoint")
    resume = cfg.resume and os.path.exists(os.path.join(ckpt_dir, "state.pt"))
    model, optimizer, step, elapsed = build_model(cfg, tokenizer, ckpt_dir if resume else None)
    step, train_s = train_steps(cfg, model, optimizer, stream, step, elapsed)

    report = heldout_report(model, tokenizer, eval_texts, cfg.block_size)
    report.update({"train_s": train_s, "total_s": time.time() - start, "steps": step,
                   "train_tokens": step * cfg.batch_size * cfg.block_size,
                   "parameters": sum(p.numel() for p in model.parameters()), "machine": machine_description()})
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id

    def save_final(tmp):  # the model and its report together, in one rename
        save_half(model, tokenizer, tmp)
        runs.write_json(os.path.join(tmp, "pretrain_report.json"), report)

    atomic_save(save_final, os.path.join(cfg.output_dir, "final"))
    print(json.dumps(report, indent=2))
    return report
