"""Padding: left-padded queries, masks with 1 = real token, positions counted over real tokens only.

Padding is never inferred from token ids (GPT-2 has no pad token: we pad with EOS and let the masks say what is
real), and position ids come from the attention mask, so left padding does not shift positions (Huang et al. 2024,
"The N+ Implementation Details of RLHF with PPO", the padding detail). Shapes: B sequences, L query tokens, T
response tokens.
"""

from __future__ import annotations

import torch


def pad_left(seqs: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists. Returns input_ids (B, L) and attention_mask (B, L), 1 = real token."""
    if not seqs:
        raise ValueError("pad_left got no sequences.")
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
    return ids, mask


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) positions counting real tokens only: 0 at the first real token, pads clamped to 0."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def causal_inputs(query_ids, query_mask, responses, response_mask) -> dict[str, torch.Tensor]:
    """A causal model's inputs for query (B, L, left-padded) + response (B, T): `input_ids`, `attention_mask` and
    `position_ids` (positions count real tokens only, so left padding does not shift them), each (B, L + T)."""
    attention_mask = torch.cat([query_mask, response_mask], 1)
    return {"input_ids": torch.cat([query_ids, responses], 1), "attention_mask": attention_mask,
            "position_ids": position_ids_from_mask(attention_mask)}
