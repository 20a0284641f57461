"""Acquisition: from per-example scores to the ids to label next. Pure array work, no model.

A strategy is a measure (random, ME or PE) plus STAR's switches: the dynamic mix of
base and tuned uncertainty (METHOD.md 3.1), MC dropout (3.2: the mean of K per-pass
scores) and L2 decay on lora_B (3.3, a training setting the strategy only carries).
Named recipes cover every row of the paper's Tables 1 and 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from star_al.errors import StarError

MEASURES = ("random", "me", "pe")
SWITCHES = {"dynamic": ("dynamic",), "mc": ("mc",), "l2": ("l2",), "star": ("dynamic", "mc", "l2")}
RECIPES = ("random", "me", "pe", "me+star", "pe+star", "me+dynamic", "me+dynamic+mc", "me+dynamic+l2",
           "pe+dynamic", "pe+dynamic+mc", "pe+dynamic+l2")


def reference_schedule(t: int) -> float:
    """lambda(t) = 1 - 0.1 (t + 1), the authors' code (t = 0 for the first query)."""
    return 1.0 - 0.1 * (t + 1)


def cosine_schedule(t: int, n_queries: int) -> float:
    """Half a cosine from 1 down to 0 over the run's queries, ending at 0 on the last one."""
    return 0.5 * (1.0 + np.cos(np.pi * (t + 1) / max(n_queries, 1)))


def linear_schedule(t: int, n_queries: int) -> float:
    """1 - (t + 1) / n_queries: the reference shape stretched to the run's number of queries."""
    return 1.0 - (t + 1) / max(n_queries, 1)


def exponential_schedule(t: int) -> float:
    """0.5^(t + 1): hand over from the base model quickly."""
    return 0.5 ** (t + 1)


LAMBDA_SCHEDULES = ("reference", "linear", "cosine", "exponential")


def lambda_at(schedule: str, t: int, n_queries: int) -> float:
    """The weight of the base model's uncertainty at query t, clipped to [0, 1]."""
    if schedule == "reference":
        value = reference_schedule(t)
    elif schedule == "linear":
        value = linear_schedule(t, n_queries)
    elif schedule == "cosine":
        value = cosine_schedule(t, n_queries)
    elif schedule == "exponential":
        value = exponential_schedule(t)
    else:
        raise StarError(f"unknown lambda schedule {schedule!r}; choose one of {LAMBDA_SCHEDULES}")
    return float(np.clip(value, 0.0, 1.0))


def min_max(scores: np.ndarray) -> np.ndarray:
    """Rescale to [0, 1] over the scored pool (a constant array maps to zeros)."""
    scores = np.asarray(scores, dtype=np.float64)
    span = scores.max() - scores.min()
    return np.zeros_like(scores) if span == 0 else (scores - scores.min()) / span


def mc_reduce(per_pass_scores: np.ndarray) -> np.ndarray:
    """MC dropout (eq. 7): the mean of the K per-pass uncertainties, axis 0 being the pass."""
    return np.asarray(per_pass_scores, dtype=np.float64).mean(axis=0)


def dynamic_mix(base_scores: np.ndarray, tuned_scores: np.ndarray, lam: float) -> np.ndarray:
    """Eq. 5: lambda * minmax(mu_base) + (1 - lambda) * minmax(mu_full)."""
    return lam * min_max(base_scores) + (1.0 - lam) * min_max(tuned_scores)


def top_k(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """The k highest-scoring ids; ties go to the smaller id, so selections are reproducible."""
    order = np.lexsort((np.asarray(ids), -np.asarray(scores)))[:k]
    return [int(ids[i]) for i in order], [float(scores[i]) for i in order]


@dataclass(frozen=True)
class StrategySpec:
    """A parsed strategy name: the measure and which STAR components are on."""

    measure: str
    dynamic: bool = False
    mc_dropout: bool = False
    l2_on_b: bool = False

    @classmethod
    def parse(cls, name: str) -> "StrategySpec":
        if not isinstance(name, str):
            raise StarError(f"strategy must be a name such as me+star, got {name!r}")
        parts = [part.strip().lower() for part in name.split("+")]
        measure, switches = parts[0], parts[1:]
        if measure not in MEASURES:
            raise StarError(f"unknown strategy {name!r}: starts with one of {MEASURES}; "
                            f"recipes: {', '.join(RECIPES)}")
        if measure == "random" and switches:
            raise StarError(f"strategy {name!r}: STAR components combine with me or pe, not random")
        on: set[str] = set()
        for switch in switches:
            if switch not in SWITCHES:
                raise StarError(f"unknown component {switch!r} in strategy {name!r}; "
                                f"choose from {sorted(SWITCHES)}")
            on.update(SWITCHES[switch])
        return cls(measure, "dynamic" in on, "mc" in on, "l2" in on)

    @property
    def name(self) -> str:
        """The canonical recipe name: lower case, components in one order, all three as +star."""
        on = [switch for switch, flag in (("dynamic", self.dynamic), ("mc", self.mc_dropout),
                                          ("l2", self.l2_on_b)) if flag]
        return "+".join([self.measure, *(["star"] if len(on) == 3 else on)])

    def __str__(self) -> str:
        if self.measure == "random":
            return "random"
        parts = [self.measure.upper()]
        parts += [label for flag, label in ((self.dynamic, "Dynamic"), (self.mc_dropout, "MC dropout"),
                                            (self.l2_on_b, "L2 on B")) if flag]
        return " +".join(parts) if len(parts) < 4 else f"{self.measure.upper()} + STAR"


@dataclass(frozen=True)
class Query:
    """What a strategy asks to label, with the score each id was ranked by (None for random)."""

    ids: list[int]
    scores: list[float] | None


class RandomStrategy:
    """Uniform sampling without replacement from the unlabeled pool (the baseline)."""

    needs_scores = False
    needs_base = False

    def __str__(self) -> str:
        return "random"

    def query(self, pool_ids: np.ndarray, k: int, rng: np.random.Generator, **_) -> Query:
        chosen = rng.choice(np.asarray(pool_ids), size=k, replace=False)
        return Query([int(i) for i in chosen], None)


class UncertaintyStrategy:
    """Top-k by ME or PE, optionally mixed with the base model's scores (dynamic)."""

    needs_scores = True

    def __init__(self, spec: StrategySpec, schedule: str = "reference", n_queries: int = 10):
        self.spec, self.schedule, self.n_queries = spec, schedule, n_queries
        self.needs_base = spec.dynamic

    def __str__(self) -> str:
        return str(self.spec)

    def combine(self, tuned_per_pass: np.ndarray, base_scores: np.ndarray | None, t: int) -> np.ndarray:
        """One score per example: MC mean over passes, then the dynamic mix at query t."""
        tuned = mc_reduce(tuned_per_pass)
        if not self.spec.dynamic:
            return tuned
        if base_scores is None:
            raise ValueError("dynamic uncertainty needs the base model's scores")
        return dynamic_mix(base_scores, tuned, lambda_at(self.schedule, t, self.n_queries))

    def query(self, pool_ids: np.ndarray, k: int, rng: np.random.Generator, *, tuned_per_pass,
              base_scores=None, t: int = 0) -> Query:
        ids, scores = top_k(np.asarray(pool_ids), self.combine(tuned_per_pass, base_scores, t), k)
        return Query(ids, scores)


def make_strategy(spec: StrategySpec, schedule: str = "reference", n_queries: int = 10):
    return RandomStrategy() if spec.measure == "random" else UncertaintyStrategy(spec, schedule, n_queries)
