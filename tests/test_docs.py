"""The project's text promises only commands and flags that exist: every `rlhf-demo COMMAND --flag` written in the
README, the docs, the Space (page text and README) and the presets' READMEs is accepted by that command's parser."""

import contextlib
import io
import os
import re

import pytest

from rlhf_demo.cli import HANDLERS, main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCUMENTS = ["README.md", "space/README.md", "benchmarks/README.md", "docs/ppo_details.md", "docs/errors.md",
             "docs/launch.md",
             "rlhf_demo/presets/tiny/policy/README.md", "rlhf_demo/presets/tiny/reward_model/README.md",
             "rlhf_demo/reward_model.py",
             # the Space's pages, whichever of its modules writes them
             *sorted(os.path.join("space", name) for name in os.listdir(os.path.join(REPO, "space"))
                     if name.endswith(".py"))]
MENTION = re.compile(r"rlhf-demo ([a-z][a-z-]*)([^`\n|\"']*)")


def mentions():
    """(document, command, flags) for each `rlhf-demo COMMAND ...` in the project's text."""
    found = []
    for doc in DOCUMENTS:
        path = os.path.join(REPO, doc)
        if not os.path.isfile(path):
            continue
        text = open(path, encoding="utf-8").read()
        for m in MENTION.finditer(text):
            found.append((doc, m.group(1), sorted(set(re.findall(r"(?<![\w-])--([A-Za-z][\w-]*)", m.group(2))))))
    return found


@pytest.fixture(scope="module")
def accepted_flags():
    """command -> the flags its `--help` lists."""
    cache = {}

    def get(command):
        if command not in cache:
            out = io.StringIO()
            with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
                main([command, "--help"])
            cache[command] = set(re.findall(r"--([A-Za-z][\w-]*)", out.getvalue()))
        return cache[command]

    return get


def test_the_text_mentions_commands():
    assert len(mentions()) > 10  # the scan finds the README's commands (else this test would check nothing)


def test_every_mentioned_command_and_flag_exists(accepted_flags):
    wrong = []
    for doc, command, flags in mentions():
        if command not in HANDLERS:
            wrong.append(f"{doc}: `rlhf-demo {command}` is not a command")
            continue
        missing = [f for f in flags if f not in accepted_flags(command)]
        wrong += [f"{doc}: `rlhf-demo {command} --{f}` is not a flag" for f in missing]
    assert not wrong, "\n".join(wrong)
