"""A value head on the policy's trunk: one network for policy and value (the `value_head_on_policy` option).

The default value model is a separate network started from the reward model (Stiennon et al. 2020; TRL's PPO).
This option instead puts a linear head on the policy's last hidden state, as Ziegler et al. 2019's code (a
zero-initialised head) and TRL's former `AutoModelForCausalLMWithValueHead` did: one forward and one backward
pass of the trunk give both the policy's logits and V(s_t), which halves the update's compute when the separate
value model would be as large as the policy. What it costs: the value loss (times vf_coef) also moves the
policy's trunk, and the head starts at zero (the reward model's scoring direction lives in another network's
hidden space). Causal LMs only, full fine-tuning,
one process. Measured against the separate value model in benchmarks/results (the performance notes).
"""

from __future__ import annotations

import json
import os

import torch

from .errors import UserInputError
from .padding import causal_inputs

CONFIG = {"architectures": ["PolicyValueHead"], "model_type": "rlhf_demo_value_head"}


class PolicyValueHead(torch.nn.Module):
    """V(s_t) = w . h_t + b on the policy's last hidden state h_t (B, L, d) -> (B, L); w and b start at zero.

    `save_pretrained(folder)` writes config.json (the hidden size) and model.safetensors (`score.weight` (1, d),
    `score.bias` (1,)), the files a checkpoint resume and `from_pretrained` read back.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.score = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.score.weight)
        torch.nn.init.zeros_(self.score.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.score(hidden)[..., 0]

    def save_pretrained(self, folder: str, **_) -> None:
        from safetensors.torch import save_model

        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump({**CONFIG, "hidden_size": self.hidden_size}, f, indent=2)
        save_model(self, os.path.join(folder, "model.safetensors"))

    @classmethod
    def from_pretrained(cls, folder: str) -> PolicyValueHead:
        from safetensors.torch import load_model

        with open(os.path.join(folder, "config.json")) as f:
            head = cls(json.load(f)["hidden_size"])
        load_model(head, os.path.join(folder, "model.safetensors"))
        return head


def build_policy_value_head(policy) -> PolicyValueHead:
    """A zero value head sized for `policy`'s hidden state.

    Raises:
        UserInputError: `policy` is an encoder-decoder model or a PEFT (LoRA) model, which this option does not cover.
    """
    from peft import PeftModel

    from .seq2seq import is_encoder_decoder

    if is_encoder_decoder(policy) or isinstance(policy, PeftModel):
        raise UserInputError("value_head_on_policy needs a causal LM trained in full (no --use_peft, no "
                             "encoder-decoder policy); drop --value_head_on_policy to use a separate value model.")
    return PolicyValueHead(policy.config.hidden_size)


def policy_value_forward(policy, head: PolicyValueHead, query_ids, query_mask, responses, response_mask,
                         temperature: float = 1.0, with_logits: bool = True):
    """One pass of the policy's trunk over query + response: (logits (B, T, V) / temperature, or None without
    `with_logits`; values (B, T)), both at the positions that predict each response token, as
    `models.forward_response` and `models.value_forward` give them (V(s_t), s_t = query + response_<t).
    The logits are the policy's output embeddings applied to its last hidden state, as its own forward computes
    them (checked against `models.forward_response` in tests/test_value_head.py)."""
    hidden = policy.base_model(**causal_inputs(query_ids, query_mask, responses, response_mask)).last_hidden_state
    h = hidden[:, query_ids.shape[1] - 1 : -1]  # position L - 1 + t predicts response token t
    values = head(h)
    if not with_logits:
        return None, values
    logits = policy.get_output_embeddings()(h)
    return (logits / temperature if temperature != 1.0 else logits), values
