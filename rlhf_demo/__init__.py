"""rlhf-demo: align GPT-2-family language models with PPO from human (or model) feedback."""

__version__ = "0.1.0"
