"""The Space's journey as a user makes it: `python -m rlhf_demo.space.app` on its defaults (the tiny preset and its
shipped aligned run, what `rlhf-demo space` serves), in a subprocess, driven through every tab in Chromium
(playwright + Debian's Chromium): Compare (the texts stream in, then both texts and their scores), Evaluate (the
smallest allowed run, until its results table shows), Feedback (a new pair, a vote, "Saved"), Publish (the card
preview of the shipped run, every image of it loaded) and Methods (the response table). No element may show
"Error", no request may fail and no response may be an HTTP error (the favicon aside).

test_space.py drives the events through gradio_client on tiny random models; this file is the page on what ships.
"""

import os
import subprocess
import sys

import pytest
from conftest import free_port, wait_until_serving
from test_space import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is missing "
                                 "(apt-get install chromium)")]

PROMPT = "The acting in this film"


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """The default Space in a subprocess, as `rlhf-demo space` starts it; yields its URL."""
    root = tmp_path_factory.mktemp("journey")
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("GRADIO_SERVER_PORT", None)
    log = open(root / "space.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "rlhf_demo.space.app", "--host", "127.0.0.1", "--port", str(port),
                             "--preferences", str(root / "preferences.jsonl"), "--runs_dir", str(root / "runs")],
                            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, proc, timeout=120, output=lambda: (log.seek(0), log.read())[1])
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.seek(0)
        output = log.read()
        log.close()
        assert "Traceback" not in output, output[-3000:]


def no_error_shown(page) -> None:
    """No toast, box or label on the page reads "Error" (Gradio's title of a failed event)."""
    shown = page.locator(":text-is('Error'), .toast-body.error").filter(visible=True)
    assert shown.count() == 0, shown.first.inner_text()


def test_every_tab_of_the_default_space_in_a_browser(space, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    failures = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            # Gradio's client aborts its own event stream (queue/data) once no event of the page is pending: not a
            # failed request. Every other failure counts.
            page.on("requestfailed", lambda r: None if r.failure == "net::ERR_ABORTED" and "/queue/data?" in r.url
                    else failures.append(f"{r.failure} {r.url}"))
            page.on("response", lambda r: failures.append(f"{r.status} {r.url}")
                    if r.status >= 400 and not r.url.endswith("favicon.ico") else None)
            page.on("pageerror", lambda e: failures.append(f"page error: {e}"))
            page.goto(space)
            expect(page.locator("#space-header")).to_contain_text("rlhf-demo: what RLHF changed", timeout=30_000)
            assert page.title() == "rlhf-demo: what RLHF changed"

            # Compare: the texts show while they are written (the status line counts tokens), then the scores.
            page.locator("#compare-status").wait_for(state="attached", timeout=30_000)
            page.evaluate("""() => {
                window.streamed = [];
                const status = document.querySelector('#compare-status');
                new MutationObserver(() => window.streamed.push([status.innerText,
                    document.querySelector('#compare-reference textarea').value]))
                    .observe(status, {subtree: true, childList: true, characterData: true});
            }""")
            page.locator("#compare-prompt textarea").fill(PROMPT)
            page.locator("#compare-tokens input[type=number]").fill("128")
            page.locator("#compare-tokens input[type=number]").press("Enter")
            page.locator("#compare-generate").click()
            expect(page.locator("#compare-status")).to_contain_text("with seed 0,", timeout=90_000)
            ref, ali = page.locator("#compare-reference textarea"), page.locator("#compare-aligned textarea")
            assert ref.input_value().startswith(PROMPT) and ali.input_value().startswith(PROMPT)
            assert len(ref.input_value()) > len(PROMPT) and len(ali.input_value()) > len(PROMPT)
            streamed = page.evaluate("window.streamed")
            partial = [text for status, text in streamed if "Sampling the reference model" in status]
            assert partial and any(PROMPT in t and t != ref.input_value() for t in partial), streamed[:5]
            for scores in ("#compare-reference-scores", "#compare-aligned-scores"):
                expect(page.locator(scores)).to_contain_text("positive, reward model")
            expect(page.locator("#compare-table")).to_contain_text("aligned")
            no_error_shown(page)
            page.screenshot(path=str(tmp_path / "1-compare.png"), full_page=True)

            # Evaluate: the smallest run the tab allows (1 prompt, 1 new token), until its results table shows.
            page.get_by_role("tab", name="Evaluate").click()
            for slider in ("#evaluate-prompts", "#evaluate-tokens"):
                page.locator(f"{slider} input[type=number]").fill("1")
                page.locator(f"{slider} input[type=number]").press("Enter")
            page.locator("#evaluate-run").click()
            expect(page.locator("#evaluate-results")).to_contain_text("Reward (reward-model logit)", timeout=120_000)
            expect(page.locator("#evaluate-results")).to_contain_text("KL to reference")
            no_error_shown(page)
            page.screenshot(path=str(tmp_path / "2-evaluate.png"), full_page=True)

            # Feedback: a pair for a random example prompt, a vote, and the saved line.
            page.get_by_role("tab", name="Feedback").click()
            page.locator("#feedback-new").click()
            expect(page.locator("#feedback-a textarea")).not_to_have_value("", timeout=60_000)
            expect(page.locator("#feedback-b textarea")).not_to_have_value("")
            page.locator("#feedback-pick-a").click()
            expect(page.locator("#feedback-status")).to_contain_text("Saved (A is better)", timeout=30_000)
            no_error_shown(page)
            page.screenshot(path=str(tmp_path / "3-feedback.png"), full_page=True)

            # Publish: the card of the shipped run, with its plots loaded (served by the Space).
            page.get_by_role("tab", name="Publish").click()
            page.locator("#publish-repo textarea").fill("your-name/tiny-rlhf")
            page.locator("#publish-preview").click()
            card = page.locator("#publish-card")
            expect(card).to_contain_text("your-name/tiny-rlhf", timeout=60_000)
            images = card.locator("img")
            expect(images.first).to_be_visible(timeout=10_000)
            assert images.count() >= 2  # the score distributions and the reward-KL frontier of eval/
            page.wait_for_function("() => [...document.querySelectorAll('#publish-card img')].every(i => i.complete)",
                                   timeout=30_000)
            widths = card.locator("img").evaluate_all("images => images.map(i => [i.naturalWidth, i.src])")
            assert all(width > 0 for width, _ in widths), widths
            no_error_shown(page)
            images.first.scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "4-publish.png"), full_page=True)

            # Methods: the shipped comparison, its table saying which model each row shows.
            page.get_by_role("tab", name="Methods").click()
            table = page.locator("#methods-responses")
            expect(table).to_be_visible(timeout=30_000)
            for label in ("PPO (rlhf-demo)", "DPO (TRL)", "RLOO (TRL)", "best-of-n", "lowest KL (none <= 6)"):
                expect(table).to_contain_text(label)
            expect(page.locator("#methods-plot img")).to_be_visible()
            no_error_shown(page)
            page.screenshot(path=str(tmp_path / "5-methods.png"), full_page=True)
            assert not failures, failures
        finally:
            browser.close()
