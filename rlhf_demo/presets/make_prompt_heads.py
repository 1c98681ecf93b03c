"""Rebuild `tiny/prompts/`: the first 100 characters of every IMDB review longer than 200 characters.

Queries are at most 8 tokens, so review heads are all the prompt pipeline needs; shipping them (about 3 MB)
lets the tiny preset train and evaluate with no network. Source: IMDB (Maas et al. 2011), `stanfordnlp/imdb`.
Usage: python -m rlhf_demo.presets.make_prompt_heads PATH_TO_IMDB
"""

import os
import sys

from rlhf_demo.data import clean_review, load_reviews

HEAD_CHARS, MIN_REVIEW_CHARS = 100, 200

if __name__ == "__main__":
    source = sys.argv[1] if len(sys.argv) > 1 else "stanfordnlp/imdb"
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny", "prompts")
    os.makedirs(out, exist_ok=True)
    for split in ("train", "test"):
        ds = load_reviews(source, split).map(lambda b: {"text": [clean_review(t) for t in b["text"]]}, batched=True)
        ds = ds.filter(lambda b: [len(t) > MIN_REVIEW_CHARS for t in b["text"]], batched=True)
        ds = ds.map(lambda b: {"text": [t[:HEAD_CHARS] for t in b["text"]]}, batched=True)
        ds.to_parquet(os.path.join(out, f"{split}.parquet"))
        print(split, len(ds))
