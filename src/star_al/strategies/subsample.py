"""Score only a random subset of the unlabeled pool each query (a cost cap for big pools)."""

from __future__ import annotations

import numpy as np

from star_al.strategies.base import Query, ScoreView, Strategy

SUBSAMPLE_STREAM = 4  # the random stream of the subset, apart from the query's own


class Subsample(Strategy):
    """Hands the inner strategy `size` random candidates (sorted), drawn from this query's stream."""

    def __init__(self, inner: Strategy, size: int):
        self.inner, self.size = inner, size
        self.needs = inner.needs

    def select(self, view: ScoreView, k: int, rng: np.random.Generator) -> Query:
        if self.size >= len(view.ids):
            return self.inner.select(view, k, rng)
        subset = np.sort(view.stream(SUBSAMPLE_STREAM).choice(view.ids, self.size, replace=False))
        return self.inner.select(view.subset(subset), k, rng)
