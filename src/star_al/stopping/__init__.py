"""Stopping criteria by name; the run's own limits (rounds, budget) are criteria too."""

from star_al.registry import Registry
from star_al.stopping.base import AnyOf, StoppingCriterion
from star_al.stopping.limits import LabelBudget, RoundsLimit

STOPPING = Registry("stopping criterion")
STOPPING.add("rounds", RoundsLimit)
STOPPING.add("budget", LabelBudget)


def run_limits(config) -> StoppingCriterion:
    """What stops a run today: its number of query rounds, which is also its label budget."""
    return AnyOf([RoundsLimit(config.n_rounds), LabelBudget(config.budget)])


__all__ = ["AnyOf", "LabelBudget", "RoundsLimit", "STOPPING", "StoppingCriterion", "run_limits"]
