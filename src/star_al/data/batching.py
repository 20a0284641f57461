"""Token encoding and left-padded, length-bucketed batches.

Left padding puts every sequence's last token at the same position, so the logits we
need (the next-token distribution after the prompt, or the answer positions) are the
last few columns of every row: the model then computes logits only there
(`logits_to_keep`). Explicit position ids make a padded row give the same logits as
the row alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Encoded:
    """Token ids of a prompt and of the continuation (answer) that follows it."""

    prompt_ids: list[int]
    target_ids: list[int]


def encode_prompt(tokenizer, prompt: str, max_prompt_tokens: int | None = None) -> list[int]:
    """Prompt ids with the tokenizer's special tokens; truncated from the left if too long."""
    ids = tokenizer(prompt).input_ids
    if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
        ids = ids[len(ids) - max_prompt_tokens:]
    return ids


def encode_pair(tokenizer, prompt: str, target: str, add_eos: bool = False,
                max_prompt_tokens: int | None = None) -> Encoded:
    """Split prompt+target into ids the way lm-evaluation-harness does.

    The continuation's ids are those of the whole text past the prompt's, so merges
    across the boundary tokenize as in the joint text; if the prompt's ids are not a
    prefix of the whole, the target is encoded on its own.
    """
    prompt_ids = tokenizer(prompt).input_ids
    whole = tokenizer(prompt + target).input_ids
    if whole[: len(prompt_ids)] == prompt_ids and len(whole) > len(prompt_ids):
        target_ids = whole[len(prompt_ids):]
    else:
        target_ids = tokenizer(target, add_special_tokens=False).input_ids
    if add_eos and tokenizer.eos_token_id is not None:
        target_ids = target_ids + [tokenizer.eos_token_id]
    if max_prompt_tokens is not None and len(prompt_ids) > max_prompt_tokens:
        prompt_ids = prompt_ids[len(prompt_ids) - max_prompt_tokens:]
    return Encoded(prompt_ids, target_ids)


def length_buckets(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, so little compute goes to padding."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def left_pad(sequences: list[list[int]], pad_id: int, device: str | torch.device = "cpu"):
    """Left-pad id lists into (input_ids, attention_mask, position_ids) tensors."""
    width = max(len(seq) for seq in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            input_ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            attention_mask[row, width - len(seq):] = 1
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    return input_ids.to(device), attention_mask.to(device), position_ids.to(device)
