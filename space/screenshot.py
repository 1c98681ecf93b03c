"""Take `space/screenshot_compare.png`: the Compare tab after one Generate, in headless Chromium (playwright).

The sample shown is picked by a rule, not by hand: for the fixed prompt `--prompt` (the first of the Space's example
prompts, the head of a negative IMDB review), among the seeds 0 .. `--num_seeds` - 1 (default 8) with the shown
settings (`--num_samples` samples of up to `--max_new_tokens` tokens, temperature 1, top-p 1), the seed whose mean
reward-model logit of the aligned continuations minus that of the reference continuations is largest (the first
such seed on a tie): the clearest example among a fixed few of what PPO changed, and said to be one. The script
prints every seed's difference and the one it picked; `--seed N` skips the search.

    python space/screenshot.py                      # the tiny preset and its committed aligned run
    python space/screenshot.py --random_models      # tiny random models built on the fly (before the preset exists)
    python space/screenshot.py --reference tiny --aligned runs/tiny --reward_model tiny --output /tmp/shot.png

Needs Debian's Chromium at /usr/bin/chromium (`apt-get install chromium`) or `--chromium PATH`. `--random_models`
uses GPT-2's tokenizer from `rlhf_demo.config.data_dir()` (RLHF_DEMO_DATA, else ../shared/data) unless
`--tokenizer` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile

from rlhf_demo.config import data_dir

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

HERE = os.path.dirname(os.path.abspath(__file__))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def random_models(root: str, tokenizer: str) -> dict[str, str]:
    """Tiny random GPT-2 reference and aligned policies and a NEGATIVE/POSITIVE reward model under `root`."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(tokenizer)
    base = dict(n_layer=1, n_embd=32, n_head=2, n_positions=256, vocab_size=len(tok), bos_token_id=tok.eos_token_id,
                eos_token_id=tok.eos_token_id)
    paths = {}
    for name, seed, init in (("reference", 1, 0.02), ("aligned", 2, 0.3)):
        torch.manual_seed(seed)
        GPT2LMHeadModel(GPT2Config(**base, initializer_range=init)).save_pretrained(os.path.join(root, name))
        tok.save_pretrained(os.path.join(root, name))
        paths[name] = os.path.join(root, name)
    torch.manual_seed(3)
    GPT2ForSequenceClassification(GPT2Config(**base, num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"},
                                             label2id={"NEGATIVE": 0, "POSITIVE": 1}, pad_token_id=tok.eos_token_id)
                                  ).save_pretrained(os.path.join(root, "reward_model"))
    tok.save_pretrained(os.path.join(root, "reward_model"))
    paths["reward_model"] = os.path.join(root, "reward_model")
    return paths


def pick_seed(models, prompt: str, num_seeds: int, num_samples: int, max_new_tokens: int) -> tuple[int, list[float]]:
    """The seed in 0 .. num_seeds - 1 whose aligned continuations of `prompt` out-score the reference ones by the
    most (mean reward-model logit, aligned minus reference; the lowest such seed on a tie), and every seed's
    difference, sampled as the Compare tab samples (`SpaceModels.generate`, temperature 1, top-p 1)."""
    differences = []
    for seed in range(num_seeds):
        out = models.generate(["reference", "aligned"], prompt, num_samples, seed, max_new_tokens, 1.0, 1.0)
        mean = {role: sum(s["reward"] for s in models.score(prompt, texts)) / len(texts) for role, texts in out.items()}
        differences.append(mean["aligned"] - mean["reference"])
    return max(range(num_seeds), key=lambda i: (differences[i], -i)), differences


def main() -> None:
    from rlhf_demo.space import app

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reference", default=os.environ.get("REFERENCE_MODEL", app.DEFAULT_REFERENCE))
    p.add_argument("--aligned", default=os.environ.get("ALIGNED_MODEL", app.DEFAULT_ALIGNED))
    p.add_argument("--reward_model", default=os.environ.get("REWARD_MODEL", app.DEFAULT_REWARD_MODEL))
    p.add_argument("--random_models", action="store_true",
                   help="Use tiny random models instead (the flags above are ignored).")
    p.add_argument("--tokenizer", default=os.path.join(data_dir(), "gpt2-tokenizer"),
                   help="Tokenizer of --random_models (default: gpt2-tokenizer/ in the data folder, RLHF_DEMO_DATA).")
    p.add_argument("--prompt", default=app.EXAMPLE_PROMPTS[0])
    p.add_argument("--num_seeds", type=int, default=8, help="Seeds 0 .. N-1 the shown sample is picked from.")
    p.add_argument("--seed", type=int, default=None, help="Show this seed instead of picking one.")
    p.add_argument("--max_new_tokens", type=int, default=32)
    p.add_argument("--num_samples", type=int, default=1)
    p.add_argument("--output", default=os.path.join(HERE, "screenshot_compare.png"))
    p.add_argument("--chromium", default="/usr/bin/chromium")
    args = p.parse_args()

    work = tempfile.mkdtemp(prefix="rlhf-space-shot-")
    if args.random_models:
        m = random_models(work, args.tokenizer)
        args.reference, args.aligned, args.reward_model = m["reference"], m["aligned"], m["reward_model"]
    demo = app.build_demo(args.reference, args.aligned, args.reward_model, os.path.join(work, "preferences.jsonl"))
    if args.seed is None:
        args.seed, differences = pick_seed(demo.space_models, args.prompt, args.num_seeds, args.num_samples,
                                           args.max_new_tokens)
        print("aligned - reference reward by seed: " + ", ".join(f"{i}: {d:+.2f}" for i, d in enumerate(differences))
              + f"; showing seed {args.seed}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        from playwright.sync_api import expect, sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
                page.goto(demo.local_url)
                page.locator("#compare-prompt textarea").fill(args.prompt)
                page.locator("#compare-seed input").fill(str(args.seed))
                page.locator("#compare-tokens input[type=number]").fill(str(args.max_new_tokens))
                page.locator("#compare-samples input[type=number]").fill(str(args.num_samples))
                page.locator("#compare-samples input[type=number]").press("Enter")
                page.locator("#compare-generate").click()
                expect(page.locator("#compare-status")).to_contain_text(f"with seed {args.seed},", timeout=120_000)
                page.wait_for_timeout(500)  # let the bars finish their transition
                page.screenshot(path=args.output, full_page=True)
            finally:
                browser.close()
    finally:
        demo.close()
    print(f"Saved {args.output}")


if __name__ == "__main__":
    main()
