"""The Gradio Space of rlhf-demo, installed as `rlhf_demo.space` (`rlhf-demo space` runs `rlhf_demo.space.app.main`).

The same folder deploys as a Hugging Face Space, where `python app.py` runs the app (see README.md there).
"""
