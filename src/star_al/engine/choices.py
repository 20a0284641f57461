"""Choice tasks: from each candidate answer's log-likelihood to the pick, its confidence and
the uncertainties over the candidates (pure array work; scoring.py's `candidate_stats` does
the model work).

A choice task is a multiple-choice lm-eval task whose candidates differ per example (ARC,
OpenBookQA, HellaSwag, ...). The pick is lm-eval's: the argmax of the candidates' summed
token log-likelihoods ll_j (`acc`), and of ll_j / len(candidate_j) in characters (`acc_norm`).
ME and PE (docs/method.md 2) read the candidates' distribution q_j = exp(ll_j) / sum_k exp(ll_k):
ME = H(q), PE = -log q of the pick (or of the gold).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CandidateMeasures:
    """What one scoring pass says about each example's candidates; [passes, n] arrays per pass."""

    choice: np.ndarray           # [n] the pick by summed log-likelihood (lm-eval's acc)
    choice_norm: np.ndarray      # [n] the pick by log-likelihood per character (lm-eval's acc_norm)
    logprobs: np.ndarray         # [n, k] log of the mean probability over passes, -inf past an example's candidates
    probs: np.ndarray            # [n, k] the candidates' distribution q (of the mean log-likelihoods), 0 past them
    me: np.ndarray               # [passes, n] H(q) per pass
    pe: np.ndarray               # [passes, n] -log q(pick) per pass
    pe_gold: np.ndarray | None   # [passes, n] -log q(gold) per pass; None where a gold is unknown

    @property
    def confidence(self) -> np.ndarray:
        """q of the pick: the probability among the candidates."""
        return self.probs[np.arange(len(self.choice)), self.choice]


def candidate_measures(logliks: np.ndarray, lengths: np.ndarray, gold_index: np.ndarray) -> CandidateMeasures:
    """Measures from `logliks` [passes, n, k] (summed token log-likelihoods, -inf where an example
    has fewer than k candidates), the candidates' `lengths` in characters [n, k] and the gold
    candidates' indices [n] (-1: unknown). With one pass the picks are lm-eval's exactly."""
    valid = np.isfinite(logliks[0])
    mean = logliks[0] if logliks.shape[0] == 1 else _log_mean_exp(logliks, valid)
    choice = mean.argmax(axis=1)
    choice_norm = (mean / np.maximum(lengths, 1)).argmax(axis=1)
    per_pass = _log_softmax(logliks, valid)
    rows = np.arange(logliks.shape[1])
    me = -np.where(valid, np.exp(per_pass) * np.where(valid, per_pass, 0.0), 0.0).sum(axis=-1)
    pe = -per_pass[:, rows, choice]
    known = gold_index >= 0
    pe_gold = -per_pass[:, rows, gold_index] if known.all() else None
    probs = np.where(valid, np.exp(_log_softmax(mean[None], valid)[0]), 0.0)
    return CandidateMeasures(choice, choice_norm, mean, probs, me, pe, pe_gold)


def _log_mean_exp(logliks: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """log of the mean over passes of exp(ll), per candidate, without underflow."""
    finite = np.where(valid, logliks, 0.0)
    top = finite.max(axis=0)
    mean = top + np.log(np.exp(finite - top).mean(axis=0))
    return np.where(valid, mean, -np.inf)


def _log_softmax(logliks: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """log q over each example's candidates (last axis), -inf past them."""
    finite = np.where(valid, logliks, -np.inf)
    top = finite.max(axis=-1, keepdims=True)
    shifted = np.where(valid, finite - top, -np.inf)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
