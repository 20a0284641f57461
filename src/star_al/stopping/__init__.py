"""Stopping criteria by name, combinable (`--stop budget:400,stability:0.99`); the run's own
limits (rounds, budget) are criteria too."""

from __future__ import annotations

from star_al.errors import StarError
from star_al.registry import Registry
from star_al.stopping.base import AnyOf, StoppingCriterion
from star_al.stopping.criteria import LowUncertainty, Plateau, Stability, WallTime, cohen_kappa
from star_al.stopping.limits import LabelBudget, RoundsLimit

STOPPING = Registry("stopping criterion")
STOPPING.add("rounds", RoundsLimit)
STOPPING.add("budget", LabelBudget)
STOPPING.add("time", WallTime)
STOPPING.add("stability", Stability)
STOPPING.add("uncertainty", LowUncertainty)
STOPPING.add("plateau", Plateau)


def parse_stop(spec: str | None) -> list[StoppingCriterion]:
    """`name:value[,name:value...]` -> criteria; a one-line StarError on a bad part."""
    if not spec:
        return []
    if not isinstance(spec, str):
        raise StarError(f"stop must be text such as stability:0.99, got {spec!r}")
    criteria = []
    for part in spec.split(","):
        name, _, value = part.strip().partition(":")
        cls = STOPPING.get(name.strip())
        try:
            number = float(value)
        except ValueError:
            raise StarError(f"--stop {part.strip()!r}: give a number after the colon, e.g. {name}:0.99") from None
        if number <= 0 or number != number:
            raise StarError(f"--stop {part.strip()!r}: the value must be above 0")
        criteria.append(cls(int(number)) if cls in (RoundsLimit, LabelBudget) else cls(number))
    return criteria


def run_limits(config) -> StoppingCriterion:
    """The run's rounds (its label budget) and, first, whatever --stop adds."""
    return AnyOf([*parse_stop(getattr(config, "stop", None)), RoundsLimit(config.n_rounds),
                  LabelBudget(config.budget)])


def needs_monitor(config) -> bool:
    return any(getattr(c, "needs_monitor", False) for c in parse_stop(getattr(config, "stop", None)))


__all__ = ["AnyOf", "LabelBudget", "LowUncertainty", "Plateau", "RoundsLimit", "STOPPING", "Stability",
           "StoppingCriterion", "WallTime", "cohen_kappa", "needs_monitor", "parse_stop", "run_limits"]
