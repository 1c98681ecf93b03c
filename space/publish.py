"""The Space's Publish tab: the model card `rlhf-demo push` writes for one of the Space's own runs, and the push of
that run to the Hugging Face Hub under the visitor's own account.

Safe to leave public:

- runs are chosen by name from the Space's own run folders (`find_runs`), never typed as paths, so no answer tells
  which paths exist on the server;
- a push needs the visitor's Hugging Face login: `gr.LoginButton` and the handler's `gr.OAuthToken`, on a Hugging
  Face Space whose README sets `hf_oauth: true`. The Space's own token (HF_TOKEN) is never used: without a login the
  push is refused. Outside a Space there is no login (Gradio's local stand-in would sign everyone in with the
  machine's token), so there only the dry run works and `rlhf-demo push` is the way to publish;
- its endpoints are not in the public API (`api_visibility="private"`); the token is never shown, logged or kept;
- an error names no server path (`rlhf_demo.portable.portable_text`: a run's folder reads `NAME (local)`);
- a dry run writes into a temporary folder that is deleted as soon as its file list is read;
- the card preview's images (the run's `eval/*.png`, as the card links them) are copies in Gradio's cache, the one
  folder Gradio serves files from (`serve_card_images`), never the run's folder itself.

A Space without runs of its own (a Space deployed by `rlhf-demo push --space`: its aligned model is on the Hub already,
and no run folder is uploaded) shows what the tab is for and how to publish from a terminal, with no form and no
login button: it asks its visitors for no Hugging Face permission.
"""

from __future__ import annotations

import os
import re
import shutil

import gradio as gr

from rlhf_demo.card import build_model_card
from rlhf_demo.config import PushConfig
from rlhf_demo.hub import HubPushError, check_run_dir, push, scrub_secrets
from rlhf_demo.portable import portable_text
from rlhf_demo.space.shared import TempFolders, check_text

LOGIN_NEEDED = ("Log in with Hugging Face (the button above) to push: the push goes to your own account with your "
                "own login, never with the Space's token.")
NO_LOGIN_HERE = ("Pushing needs the visitor's Hugging Face login, which a Space on huggingface.co with `hf_oauth: "
                 "true` provides; here only the dry run works (from a terminal: `rlhf-demo push`).")


def _is_run(path: str) -> bool:
    try:
        check_run_dir(path)
    except HubPushError:
        return False
    return True


def find_runs(runs_dir: str | None, extra: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """name -> folder of the runs the Publish tab offers: the `extra` folders (e.g. the aligned model when it is a
    local run) and every subfolder of `runs_dir` that holds a model (weights and config.json), by folder name."""
    folders = [p for p in extra if p and os.path.isdir(p)]
    if runs_dir and os.path.isdir(runs_dir):
        folders += [os.path.join(runs_dir, n) for n in sorted(os.listdir(runs_dir)) if not n.startswith(".")]
    runs: dict[str, str] = {}
    for folder in folders:
        if not _is_run(folder) or os.path.abspath(folder) in map(os.path.abspath, runs.values()):
            continue
        name, i = os.path.basename(os.path.normpath(folder)), 2
        while name in runs:
            name, i = f"{os.path.basename(os.path.normpath(folder))} ({i})", i + 1
        runs[name] = folder
    return runs


def _run_dir(runs: dict[str, str], run_name) -> str:
    """The folder of run `run_name`; gr.Error for a name that is not one of the Space's runs."""
    if not isinstance(run_name, str) or run_name not in runs:
        raise gr.Error("Choose one of the Space's runs from the list.", print_exception=False)
    return runs[run_name]


# A Markdown image, `![alt](path)` or `![alt](path "title")`, as the card template writes its plots.
IMAGE_LINK = re.compile(r"(!\[[^\]]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
SERVED_IMAGES = (".png", ".jpg", ".jpeg", ".gif", ".webp")  # image types Gradio serves inline


def serve_card_images(text: str, run_dir: str, block: gr.components.Component) -> str:
    """`text` (a model card's Markdown) with each image link relative to `run_dir` (e.g.
    `eval/score_distributions.png`, which the Hub resolves in the model's repository) pointed at a copy of the file
    in `block`'s Gradio cache (`/gradio_api/file=...`), so the preview shows the images the Hub page will show. A link
    that is absolute, a URL, outside the run, missing or not a PNG, JPEG, GIF or WebP image is left as it is."""
    root = os.path.realpath(run_dir)

    def served(match: re.Match) -> str:
        link = match.group(2)
        path = os.path.realpath(os.path.join(root, link))
        if (os.path.isabs(link) or ":" in link or not path.startswith(root + os.sep)
                or not path.lower().endswith(SERVED_IMAGES) or not os.path.isfile(path)):
            return match.group(0)
        cached = block.move_resource_to_block_cache(path)
        return f"{match.group(1)}/gradio_api/file={cached}{match.group(3)}"

    return IMAGE_LINK.sub(served, text)


def preview_card(runs: dict[str, str], run_name, repo_id, license, block: gr.components.Component | None = None):
    """Publish tab: the model card `rlhf-demo push` would write for run `run_name` (rendered text, README.md); with
    `block` (the component that shows the rendered text), its images are served from `block`'s cache
    (`serve_card_images`)."""
    run_dir = _run_dir(runs, run_name)
    repo_id = check_text(repo_id, "repository id", max_chars=200)
    license = check_text(license, "license", max_chars=100)
    try:
        card = build_model_card(run_dir, repo_id, license=license)
    except (HubPushError, ValueError, OSError) as e:
        raise gr.Error(portable_text(f"The card could not be built: {e}"), print_exception=False) from None
    text = serve_card_images(card.text, run_dir, block) if block is not None else card.text
    return text, str(card)


def publish(runs: dict[str, str], hub_endpoint: str | None, temp: TempFolders, run_name, repo_id, license, dry_run,
            private, oauth_token: gr.OAuthToken | None) -> str:
    """Publish tab: a dry run (the file list) or the push of run `run_name` with the visitor's login `oauth_token`.

    Raises gr.Error for a run that is not the Space's, a push without a login, or a failed push (one line, the token
    scrubbed). The Space's own token is never used: the push passes the visitor's token explicitly.
    """
    run_dir = _run_dir(runs, run_name)
    repo_id = check_text(repo_id, "repository id", max_chars=200)
    license = check_text(license, "license", max_chars=100)
    token = getattr(oauth_token, "token", None) or ""
    if not dry_run and not token:
        raise gr.Error(LOGIN_NEEDED, print_exception=False)
    out_dir = temp.new("dry-run-") if dry_run else None
    try:
        # eval_num_prompts 0: a run is pushed as it is (its evaluation is part of `rlhf-demo train`), no CPU-heavy
        # evaluation on a shared Space.
        cfg = PushConfig(model=run_dir, repo_id=repo_id, dry_run=bool(dry_run), license=license, private=bool(private),
                         token=token or None, endpoint=hub_endpoint, eval_num_prompts=0,
                         output_dir=os.path.join(out_dir, "upload") if out_dir else None)
        result = push(cfg)
        if dry_run:
            files = sorted(os.path.relpath(os.path.join(d, n), result).replace(os.sep, "/")
                           for d, _, names in os.walk(result) for n in names)
    except (HubPushError, ValueError, OSError) as e:
        raise gr.Error(portable_text(scrub_secrets(str(e), [token])), print_exception=False) from None
    finally:
        if out_dir:
            shutil.rmtree(out_dir, ignore_errors=True)
    if dry_run:
        listing = "\n".join(f"- `{f}`" for f in files)
        return (f"**Dry run**: nothing was uploaded. These {len(files)} files would be pushed to `{repo_id}`:"
                f"\n\n{listing}")
    return scrub_secrets(f"Pushed to `{repo_id}`: {result}", [token])


def no_runs_text(aligned: str | None, runs_dir: str | None) -> str:
    """What the Publish tab of a Space without runs says: what the tab is for, why it is empty here, and how to
    publish a run instead."""
    where = f"`{aligned}`, " if aligned else ""
    return ("**Nothing to publish from this Space.** This tab builds the model card of `rlhf-demo push` for a training "
            "run saved on the Space's own disk and pushes it under your Hugging Face account. This Space has no such "
            f"run: its aligned model {where}is loaded by name (from the Hugging Face Hub, where it is already "
            f"published), and {f'`{os.path.basename(os.path.normpath(runs_dir))}/`' if runs_dir else 'no runs folder'} "
            "holds no finished run.\n\nTo publish a run of your own, from a terminal: `rlhf-demo push --model RUN "
            "--repo_id YOUR_NAME/MODEL` (add `--dry_run --output_dir FOLDER` to look first); or start a Space that "
            "offers your runs here: `rlhf-demo space --runs_dir FOLDER`.")


def build_publish_tab(runs: dict[str, str], hub_endpoint: str | None, temp: TempFolders, login: bool, *,
                      aligned: str | None = None, runs_dir: str | None = None) -> None:
    """The Publish tab: one of the Space's `runs`, its card preview, and its push to `hub_endpoint` (None: the Hub)
    with the visitor's login (`login`: a Hugging Face login button exists, i.e. the app runs on a Space with
    OAuth). Without runs, only `no_runs_text` (naming the `aligned` model and `runs_dir`): no form, no login."""
    with gr.Tab("Publish", id="publish"):
        if not runs:
            gr.Markdown(no_runs_text(aligned, runs_dir), elem_id="publish-no-runs")
            return
        gr.Markdown("Builds the model card of `rlhf-demo push` for one of this Space's training runs and pushes the "
                    "run to the Hugging Face Hub under **your** account. Dry run (the default) only lists the files "
                    "that would be uploaded. " + ("Log in first: the push uses your login, never the Space's token."
                                                  if login else NO_LOGIN_HERE))
        if login:
            gr.LoginButton()
        names = list(runs)
        with gr.Row():
            run = gr.Dropdown(names, value=names[0] if names else None, label="Run (this Space's runs)",
                              allow_custom_value=False, elem_id="publish-run")
            repo = gr.Textbox(label="Repository id", placeholder="your-name/gpt2-imdb-ppo", max_length=200,
                              elem_id="publish-repo")
        with gr.Row():
            license = gr.Textbox(label="License", value="mit", max_length=100)
            with gr.Column():
                dry = gr.Checkbox(value=True, label="Dry run (upload nothing)")
                private = gr.Checkbox(value=False, label="Private repository")
        with gr.Row():
            preview_button = gr.Button("Preview model card", elem_id="publish-preview")
            push_button = gr.Button("Push", variant="primary")
        status = gr.Markdown()
        with gr.Tabs():
            with gr.Tab("Card"):
                card = gr.Markdown(elem_id="publish-card")
            with gr.Tab("README.md"):
                raw = gr.Code(language="markdown", interactive=False)

        def preview_handler(run_name, repo_id, license_name):
            return preview_card(runs, run_name, repo_id, license_name, card)

        def push_handler(run_name, repo_id, license_name, dry_run, private_repo,
                         oauth_token: gr.OAuthToken | None) -> str:
            return publish(runs, hub_endpoint, temp, run_name, repo_id, license_name, dry_run, private_repo,
                           oauth_token)

        preview_button.click(preview_handler, [run, repo, license], [card, raw], api_visibility="private",
                             concurrency_id="publish", concurrency_limit=1)
        push_button.click(push_handler, [run, repo, license, dry, private], status, api_visibility="private",
                          concurrency_id="publish", concurrency_limit=1)

