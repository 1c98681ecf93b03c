"""The evaluation suite (installed as `rlhf_demo.eval`): aligned policy vs reference."""
