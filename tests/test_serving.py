"""Serving an aligned run, as the README shows: `transformers serve FOLDER` and the OpenAI client's completions
endpoint (the tiny preset has no chat template, so completions, not chat)."""

import os
import subprocess
import sys

import pytest
from conftest import free_port, wait_until_serving

from rlhf_demo.runs import RUN_INFO_FILE

ALIGNED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "rlhf_demo", "presets", "tiny",
                       "aligned")


@pytest.mark.slow
def test_transformers_serve_answers_completions_for_the_shipped_aligned_model():
    openai = pytest.importorskip("openai")
    pytest.importorskip("fastapi")
    assert os.path.isfile(os.path.join(ALIGNED, RUN_INFO_FILE))
    port = free_port()
    serve = os.path.join(os.path.dirname(sys.executable), "transformers")
    proc = subprocess.Popen([serve, "serve", ALIGNED, "--port", str(port), "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/health", proc, timeout=120, output=lambda: proc.stdout.read())
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="not-needed")
        out = client.completions.create(model=ALIGNED, prompt="This movie was", max_tokens=12, temperature=1.0)
        text = out.choices[0].text
        assert isinstance(text, str) and text.strip(), out
    finally:
        proc.terminate()
        proc.wait(timeout=30)
