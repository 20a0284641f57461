"""Stopping rules beyond a fixed budget: what tells a team to stop paying annotators.

Each reads the run's history (rounds.RoundRecord, a rounds.jsonl line each). Stability and uncertainty read a
fixed sample of the pool that the loop scores after every round (the stopping set,
`needs_monitor`): its predictions and its mean maximum entropy.
"""

from __future__ import annotations

import numpy as np

from star_al import metrics
from star_al.stopping.base import StoppingCriterion


def cohen_kappa(first, second) -> float:
    """Cohen's kappa of two rounds' predictions, 1 where both are one constant: predictions
    that did not change are stable, even where kappa itself is undefined."""
    value = metrics.cohen_kappa(first, second)
    return 1.0 if np.isnan(value) else value


class WallTime(StoppingCriterion):
    """Stop once the rounds have taken `minutes` of compute (their recorded total times)."""

    def __init__(self, minutes: float):
        self.minutes = minutes

    def should_stop(self, history):
        spent = sum(r.timings.get("total", 0.0) for r in history) / 60
        return f"time: {spent:.1f} of {self.minutes:g} minutes spent" if spent >= self.minutes else None


class Stability(StoppingCriterion):
    """Stop when the predictions on the stopping set stop changing: the mean Cohen's kappa of the
    last `window` pairs of consecutive rounds reaches `threshold` (Bloodgood & Vijay-Shanker 2009;
    small-text's KappaAverage)."""

    needs_monitor = True

    def __init__(self, threshold: float, window: int = 3):
        self.threshold, self.window = threshold, window

    def should_stop(self, history):
        kappas = [r.kappa for r in history if r.kappa is not None]
        if len(kappas) < self.window:
            return None
        mean = float(np.mean(kappas[-self.window:]))
        return f"stability: kappa {mean:.3f} >= {self.threshold:g} over the last {self.window} rounds" \
            if mean >= self.threshold else None


class LowUncertainty(StoppingCriterion):
    """Stop when the mean maximum entropy of the stopping set falls below `threshold` nats."""

    needs_monitor = True

    def __init__(self, threshold: float):
        self.threshold = threshold

    def should_stop(self, history):
        value = history[-1].monitor_uncertainty if history else None
        return f"uncertainty: {value:.3f} < {self.threshold:g} nats" \
            if value is not None and value < self.threshold else None


class Plateau(StoppingCriterion):
    """Stop when test accuracy has gained less than `points` over the last `window` rounds."""

    def __init__(self, points: float, window: int = 2):
        self.points, self.window = points, window

    def should_stop(self, history):
        accuracies = [r.accuracy for r in history]
        if len(accuracies) <= self.window or any(a is None for a in accuracies[-self.window - 1:]):
            return None
        gain = 100 * (accuracies[-1] - max(accuracies[:-self.window]))
        return f"plateau: {gain:+.1f} points in {self.window} rounds < {self.points:g}" \
            if gain < self.points else None
