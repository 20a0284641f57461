"""Fixed limits: a number of query rounds, or a number of labels."""

from __future__ import annotations

from star_al.rounds import RoundRecord
from star_al.stopping.base import StoppingCriterion


class RoundsLimit(StoppingCriterion):
    """Stop after the warm start and `n_rounds` query rounds."""

    def __init__(self, n_rounds: int):
        self.n_rounds = n_rounds

    def should_stop(self, history: list[RoundRecord]) -> str | None:
        if len(history) >= self.n_rounds + 1:
            return f"rounds: {self.n_rounds} query rounds done"
        return None


class LabelBudget(StoppingCriterion):
    """Stop once the labeled set has reached `budget` labels."""

    def __init__(self, budget: int):
        self.budget = budget

    def should_stop(self, history: list[RoundRecord]) -> str | None:
        if history and history[-1].n_labeled >= self.budget:
            return f"budget: {history[-1].n_labeled} of {self.budget} labels spent"
        return None
