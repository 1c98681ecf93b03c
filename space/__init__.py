"""The Gradio Space of rlhf-demo, installed as `rlhf_demo.space` (`rlhf-demo space` runs `rlhf_demo.space.app.main`).

`rlhf-demo push --space NAMESPACE/NAME` deploys it as a Hugging Face Space (`rlhf_demo.space_deploy`).
"""
