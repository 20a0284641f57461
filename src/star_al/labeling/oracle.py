"""Who gives the labels: the Oracle interface, and the gold oracle of simulations.

An oracle answers for a batch of queried examples; the loop writes what it answers into
the run's label ledger, and training reads labels only from there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class Label:
    """One answer for one example: `answer` is what accuracy compares (e.g. "positive", "42");
    `target` the text training teaches after the prompt, when the labeler gave one (a
    worked solution), else the task renders it from the answer."""

    id: int
    answer: str
    target: str | None = None


class Oracle(ABC):
    """Labels queried examples. `simulated` oracles read the dataset's answers."""

    simulated: bool = False
    source: str = "oracle"

    @abstractmethod
    def label(self, examples, round_index: int) -> list[Label]:
        ...


class GoldOracle(Oracle):
    """Simulation: the dataset's gold answer (and its training target) labels every queried example."""

    simulated = True
    source = "gold"

    def label(self, examples, round_index: int) -> list[Label]:
        return [Label(ex.id, ex.gold, ex.target) for ex in examples]
