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


@dataclass
class Batch:
    """One round's examples to label, with what the model thinks of them (for people; a
    simulated oracle gets none of it, so a simulation costs no extra pass)."""

    round: int
    examples: list
    scores: list[float | None] | None = None        # the acquisition score of each (None: warm start, queued)
    model_answers: list[str | None] | None = None
    uncertainty: list[float] | None = None          # the model's maximum entropy on each

    @property
    def ids(self) -> list[int]:
        return [ex.id for ex in self.examples]


class Oracle(ABC):
    """Labels queried examples. `simulated` oracles read the dataset's answers."""

    simulated: bool = False
    source: str = "oracle"

    @abstractmethod
    def label(self, batch: Batch) -> list[Label]:
        """Labels for the batch's examples, or raise (people: AwaitingLabels) until they exist."""


class GoldOracle(Oracle):
    """Simulation: the dataset's gold answer (and its training target) labels every queried example."""

    simulated = True
    source = "gold"

    def label(self, batch: Batch) -> list[Label]:
        missing = [ex.id for ex in batch.examples if ex.gold is None]
        if missing:
            from star_al.errors import StarError

            raise StarError(f"the pool has no answers for ids {missing[:5]}: run with --labels human")
        return [Label(ex.id, ex.gold, ex.target) for ex in batch.examples]
