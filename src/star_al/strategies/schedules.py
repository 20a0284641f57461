"""How fast the dynamic mix hands over from the base model to the tuned one: lambda(t).

t = 0 is the first query after the warm start; every schedule is clipped to [0, 1].
A new schedule is one function of (t, n_queries) and one line in SCHEDULES.
"""

from __future__ import annotations

import numpy as np

from star_al.registry import Registry


def reference_schedule(t: int, n_queries: int) -> float:
    """lambda(t) = 1 - 0.1 (t + 1), the authors' code."""
    return 1.0 - 0.1 * (t + 1)


def linear_schedule(t: int, n_queries: int) -> float:
    """1 - (t + 1) / n_queries: the reference shape stretched to the run's number of queries."""
    return 1.0 - (t + 1) / max(n_queries, 1)


def cosine_schedule(t: int, n_queries: int) -> float:
    """Half a cosine from 1 down to 0 over the run's queries, ending at 0 on the last one."""
    return 0.5 * (1.0 + np.cos(np.pi * (t + 1) / max(n_queries, 1)))


def exponential_schedule(t: int, n_queries: int) -> float:
    """0.5^(t + 1): hand over from the base model quickly."""
    return 0.5 ** (t + 1)


SCHEDULES = Registry("lambda schedule")
SCHEDULES.add("reference", reference_schedule)
SCHEDULES.add("linear", linear_schedule)
SCHEDULES.add("cosine", cosine_schedule)
SCHEDULES.add("exponential", exponential_schedule)


def lambda_at(schedule: str, t: int, n_queries: int) -> float:
    """The weight of the base model's uncertainty at query t, clipped to [0, 1]."""
    return float(np.clip(SCHEDULES.get(schedule)(t, n_queries), 0.0, 1.0))
