"""Uncertainty sampling and STAR's selection components, as strategies that compose.

`Uncertainty(measure)` ranks by maximum or predictive entropy (docs/method.md 2);
`MCDropout` asks for K stochastic passes of the LoRA branch, whose per-pass scores the
ranked score averages (3.2, eq. 7); `Dynamic` mixes the frozen base model's scores with
the tuned model's under a decreasing lambda (3.1, eq. 5). L2 on LoRA B (3.3) changes
training, not selection: it is a recipe component without a wrapper.
"""

from __future__ import annotations

import numpy as np

from star_al.strategies.base import Needs, ScoredStrategy, ScoreView, min_max
from star_al.strategies.schedules import lambda_at


def mc_reduce(per_pass_scores: np.ndarray) -> np.ndarray:
    """MC dropout (eq. 7): the mean of the K per-pass uncertainties, axis 0 being the pass."""
    return np.asarray(per_pass_scores, dtype=np.float64).mean(axis=0)


def dynamic_mix(base_scores: np.ndarray, tuned_scores: np.ndarray, lam: float) -> np.ndarray:
    """Eq. 5: lambda * minmax(mu_base) + (1 - lambda) * minmax(mu_full)."""
    return lam * min_max(base_scores) + (1.0 - lam) * min_max(tuned_scores)


class Uncertainty(ScoredStrategy):
    """Top-k by one uncertainty measure of the current model (mean over its passes)."""

    def __init__(self, measure: str):
        self.measure = measure
        self.needs = Needs(tuned=frozenset({measure}))

    def score(self, view: ScoreView) -> np.ndarray:
        return mc_reduce(view.tuned(self.measure))


class MCDropout(ScoredStrategy):
    """The inner strategy's scores over K passes with the LoRA dropout on (their mean is ranked)."""

    def __init__(self, inner: ScoredStrategy, passes: int):
        self.inner, self.measure = inner, inner.measure
        self.needs = inner.needs | Needs(passes=passes)

    def score(self, view: ScoreView) -> np.ndarray:
        return self.inner.score(view)

    def info(self, view: ScoreView) -> dict:
        return self.inner.info(view)


class Dynamic(ScoredStrategy):
    """lambda(t) of the base model's min-max-normalised scores plus 1 - lambda(t) of the inner's."""

    def __init__(self, inner: ScoredStrategy, schedule: str, n_queries: int):
        self.inner, self.measure = inner, inner.measure
        self.schedule, self.n_queries = schedule, n_queries
        self.needs = inner.needs | Needs(base=frozenset({inner.measure}))

    def lam(self, view: ScoreView) -> float:
        return lambda_at(self.schedule, view.query_index, self.n_queries)

    def score(self, view: ScoreView) -> np.ndarray:
        return dynamic_mix(view.base(self.measure), self.inner.score(view), self.lam(view))

    def info(self, view: ScoreView) -> dict:
        return {**self.inner.info(view), "lambda": self.lam(view)}
