"""The Space deploys from the Hub: `rlhf-demo push --space` against the loopback Hub, then the Space as a Hugging
Face Space would run it: its files downloaded from the Hub, the package installed by pip from the wheel URL in its
requirements.txt (into a folder of its own, not this checkout), `python app.py` loading the reference, aligned and
reward models by Hub id, and two generations compared in Chromium.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import free_port, wait_until_serving

from rlhf_demo.config import PushConfig, data_dir

sys.path.insert(0, os.path.dirname(__file__))
from hub_server import FakeHub  # noqa: E402

GPT2_TOKENIZER = os.path.join(data_dir(), "gpt2-tokenizer")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TOKEN = "hf_test_token_0123456789"
HUB_IDS = {"aligned": "test-user/tiny-aligned", "reference": "test-user/tiny-reference", "reward": "test-user/tiny-rm"}


def build_models(root):
    """A tiny reference and a different tiny aligned GPT-2 (GPT-2's real tokenizer), and a reward classifier."""
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(GPT2_TOKENIZER)
    base = dict(n_layer=1, n_embd=32, n_head=2, n_positions=128, vocab_size=len(tok))
    paths = {}
    for name, seed, init in (("reference", 1, 0.02), ("aligned", 2, 0.3)):
        torch.manual_seed(seed)
        GPT2LMHeadModel(GPT2Config(**base, bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                                   initializer_range=init)).save_pretrained(os.path.join(root, name))
        tok.save_pretrained(os.path.join(root, name))
        paths[name] = os.path.join(root, name)
    torch.manual_seed(3)
    labels = {"id2label": {0: "NEGATIVE", 1: "POSITIVE"}, "label2id": {"NEGATIVE": 0, "POSITIVE": 1}}
    GPT2ForSequenceClassification(GPT2Config(**base, **labels, num_labels=2, pad_token_id=tok.eos_token_id)
                                  ).save_pretrained(os.path.join(root, "reward"))
    tok.save_pretrained(os.path.join(root, "reward"))
    paths["reward"] = os.path.join(root, "reward")
    with open(os.path.join(paths["aligned"], "training_config.yaml"), "w") as f:  # the aligned model is a run
        yaml.safe_dump({"model_name_or_path": paths["reference"], "reward": [f"sentiment={paths['reward']}@POSITIVE"],
                        "dataset_name": os.path.join(root, "prompts"), "response_length": 8}, f)
    with open(os.path.join(paths["aligned"], "run_info.json"), "w") as f:  # a finished export names its files
        json.dump({"base_model": paths["reference"], "export_files": ["model.safetensors", "config.json"]}, f)
    return paths


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is missing (apt-get install chromium)")
def test_space_pushed_to_the_hub_runs_from_it_and_compares_in_chromium(tmp_path, monkeypatch):
    import huggingface_hub.constants
    from huggingface_hub import HfApi, snapshot_download
    from playwright.sync_api import expect, sync_playwright

    from rlhf_demo.hub import push
    from rlhf_demo.space_deploy import push_space

    if not os.path.isdir(GPT2_TOKENIZER):
        pytest.skip(f"GPT-2 tokenizer not found at {GPT2_TOKENIZER} (set RLHF_DEMO_DATA)")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))  # not the user's
    paths = build_models(str(tmp_path))
    with FakeHub() as hub:
        # 1. The reference and the reward model are on the Hub; the run goes up with its Space.
        api = HfApi(endpoint=hub.url, token=TOKEN)
        for role in ("reference", "reward"):
            api.create_repo(HUB_IDS[role])
            api.upload_folder(folder_path=paths[role], repo_id=HUB_IDS[role])
        cfg = PushConfig(model=paths["aligned"], repo_id=HUB_IDS["aligned"], token=TOKEN, endpoint=hub.url,
                         eval_num_prompts=0, retry_base_wait=0.0, space="test-user/tiny-space",
                         space_reference=HUB_IDS["reference"], space_reward_model=f"{HUB_IDS['reward']}@POSITIVE")
        push(cfg)
        push_space(cfg)
        # 2. The Space's files, as the Space builder gets them.
        space = snapshot_download("test-user/tiny-space", repo_type="space", endpoint=hub.url, token=TOKEN,
                                  local_dir=str(tmp_path / "space"))
        meta = yaml.safe_load(open(os.path.join(space, "README.md"), encoding="utf-8").read().split("---")[1])
        # No run to publish on a deployed Space, so no OAuth: visitors are asked for no scope at all.
        assert meta["sdk"] == "gradio" and "hf_oauth" not in meta and "hf_oauth_scopes" not in meta
        assert meta["models"] == meta["preload_from_hub"] == [HUB_IDS["aligned"], HUB_IDS["reference"],
                                                              HUB_IDS["reward"]]
        requirements = open(os.path.join(space, "requirements.txt"), encoding="utf-8").read()
        assert "--extra-index-url https://download.pytorch.org/whl/cpu" in requirements
        assert re.search(r"^torch==[\d.]+\+cpu$", requirements, re.M)
        wheel_url = re.search(r"^rlhf-demo @ (\S+#sha256=[0-9a-f]{64})$", requirements, re.M).group(1)
        assert wheel_url.startswith(f"{hub.url}/spaces/test-user/tiny-space/resolve/main/")
        # 3. pip installs the package from that URL (the sha256 checked), into a folder of its own.
        site = str(tmp_path / "site")
        pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                              site, f"rlhf-demo @ {wheel_url}"], capture_output=True, text=True, timeout=300)
        assert pip.returncode == 0, pip.stderr[-3000:]
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "PYTHONPATH", "HF_HUB_OFFLINE")}
        env.update(PYTHONPATH=site, HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_XET="1",
                   GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(free_port()),
                   GRADIO_ANALYTICS_ENABLED="False", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
        where = subprocess.run([sys.executable, "-c", "import rlhf_demo.space.app as a; print(a.__file__)"], env=env,
                               cwd=space, capture_output=True, text=True, timeout=120)
        assert where.stdout.strip().startswith(site), where.stdout + where.stderr[-2000:]
        # 4. `python app.py`, as the Space runs it: the models come from the Hub by id.
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=space, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        url = f"http://127.0.0.1:{env['GRADIO_SERVER_PORT']}/"
        try:
            wait_until_serving(url, proc, output=lambda: proc.stdout.read())
            downloaded = {p.split("/resolve/")[0] for m, p, s in hub.requests if "/resolve/" in p and s == 200}
            assert {f"/{repo}" for repo in HUB_IDS.values()} <= downloaded, downloaded
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1280, "height": 1200})
                    page.goto(url)
                    page.locator("#compare-prompt textarea").fill("The acting in this film")
                    page.locator("#compare-generate").click()
                    expect(page.locator("#compare-status")).to_contain_text("with seed 0,", timeout=120_000)
                    ref, ali = page.locator("#compare-reference textarea"), page.locator("#compare-aligned textarea")
                    expect(ref).not_to_have_value("", timeout=10_000)
                    ref_text, ali_text = ref.input_value(), ali.input_value()
                    page.screenshot(path=str(tmp_path / "space.png"), full_page=True)
                finally:
                    browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert ref_text.startswith("The acting in this film") and ali_text.startswith("The acting in this film")
    assert ref_text != ali_text  # two different models, by Hub id
