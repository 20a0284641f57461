"""The per-token uncertainty measures of docs/method.md section 2, on logits.

ME and PE of a response are sums over its tokens of these per-position quantities;
`scoring.py` does the model work and the summing over a response's positions.
"""

from __future__ import annotations

import torch


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(p(. | s_<i, x)) = -sum_v p(v) log p(v) over the whole vocabulary (docs/method.md 2, ME)."""
    return logprob_entropy(torch.log_softmax(logits.float(), dim=-1))


def logprob_entropy(logprobs: torch.Tensor) -> torch.Tensor:
    """The same entropy from log-probabilities already at hand (saves a vocabulary-wide softmax)."""
    return -(logprobs.exp() * logprobs).sum(dim=-1)


def token_nll(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """-log p(z_i | s_<i, x) of the given tokens (docs/method.md 2, PE's summand)."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    return -logprobs.gather(-1, token_ids.unsqueeze(-1)).squeeze(-1)
