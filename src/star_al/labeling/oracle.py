"""Who gives the labels: the Oracle interface, and the gold oracle of simulations.

An oracle answers for a batch of queried examples; the loop writes what it answers into
the run's label ledger, and training reads labels only from there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

# The random stream of the simulated annotator's errors (al/streams.py numbers the run's others).
NOISE_STREAM = 6


@dataclass(frozen=True)
class Label:
    """One answer for one example: `answer` is what accuracy compares (e.g. "positive", "42");
    `target` the text training teaches after the prompt, when the labeler gave one (a
    worked solution), else the task renders it from the answer; `annotator` who gave it, when
    named (None: the one anonymous annotator, and every simulated one)."""

    id: int
    answer: str
    target: str | None = None
    annotator: str | None = None


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
    """Simulation: the dataset's gold answer (and its training target) labels every queried example.

    With `noise` P > 0 it is an annotator who errs: each example's label is, with probability
    P, another of its possible answers (the task's other labels, or a choice task's other
    candidates), chosen uniformly; the draw depends only on the run's `seed` and the example's
    id, so a resumed run, and every strategy of a seed, sees the same annotator.
    """

    simulated = True
    source = "gold"
    noise, seed, labels = 0.0, 0, ()

    def __init__(self, noise: float = 0.0, seed: int = 0, labels: tuple[str, ...] = ()):
        self.noise, self.seed, self.labels = noise, seed, tuple(labels)
        if noise:
            self.source = "noisy-gold"

    def label(self, batch: Batch) -> list[Label]:
        from star_al.errors import StarError

        missing = [ex.id for ex in batch.examples if ex.gold is None]
        if missing:
            raise StarError(f"the pool has no answers for ids {missing[:5]}: run with --labels human")
        if not self.noise:
            return [Label(ex.id, ex.gold, ex.target) for ex in batch.examples]
        return [self._noisy(ex) for ex in batch.examples]

    def _noisy(self, example) -> Label:
        rng = np.random.default_rng([self.seed, NOISE_STREAM, int(example.id)])
        if rng.random() >= self.noise:
            return Label(example.id, example.gold, example.target)
        others = [answer for answer in (example.choices or self.labels) if answer != example.gold]
        if not others:
            from star_al.errors import StarError

            raise StarError(f"oracle noise needs answers to err to: example {example.id} has none but its gold "
                            "answer (a task with labels or per-example choices)")
        return Label(example.id, others[int(rng.integers(len(others)))])  # the task renders its target
