"""Uniform sampling without replacement from the unlabeled pool: the passive baseline."""

from __future__ import annotations

import numpy as np

from star_al.strategies.base import Query, ScoreView, Strategy


class RandomStrategy(Strategy):
    """Reads no score, so the loop runs no forward pass over the pool for it."""

    def select(self, view: ScoreView, k: int, rng: np.random.Generator) -> Query:
        chosen = rng.choice(view.ids, size=k, replace=False)
        return Query([int(i) for i in chosen], None)
