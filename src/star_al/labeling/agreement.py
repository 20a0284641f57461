"""How far a run's annotators agree, round by round, and the examples they disagree on.

Two annotators: Cohen's kappa over the examples both labelled. Three or
more: Krippendorff's alpha for nominal data (the `krippendorff` package), which takes
examples that only some annotators labelled. An example belongs to the round of its first
label, and every label it gets later (a tie broken in the next batch) counts there. Either
measure is None where it is undefined: fewer than two examples labelled twice, or one
answer for everything (no chance agreement to measure against).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from star_al.labeling.resolution import annotator_name
from star_al.metrics import cohen_kappa

COHEN, KRIPPENDORFF = "Cohen's kappa", "Krippendorff's alpha"


@dataclass(frozen=True)
class Agreement:
    """The agreement of the annotators of `round` (None: all rounds): who, on how many examples
    labelled by two or more (`n_examples`), `measure` and its `value`, and the ids whose
    annotators gave different answers."""

    round: int | None
    annotators: list[str]
    n_examples: int
    measure: str
    value: float | None
    disagreements: list[int]

    def describe(self) -> str:
        """One line: "2 annotators (ann, bob), 4 examples labelled by two or more, Cohen's kappa 0.50;
        they disagree on ids 7"."""
        value = "undefined (one answer for everything)" if self.value is None else f"{self.value:.2f}"
        disagree = (f"; they disagree on id(s) {', '.join(map(str, self.disagreements[:20]))}"
                    + (f" and {len(self.disagreements) - 20} more" if len(self.disagreements) > 20 else "")
                    if self.disagreements else "; no disagreement")
        return (f"{len(self.annotators)} annotators ({', '.join(self.annotators)}), {self.n_examples} examples "
                f"labelled by two or more, {self.measure} {value}{disagree}")


def agreement(entries: list[dict], round_index: int | None = None) -> Agreement | None:
    """The agreement over `entries` (ledger entries), None unless two annotators labelled one example."""
    votes: dict[int, dict[str, str]] = defaultdict(dict)
    for entry in entries:
        votes[entry["id"]][annotator_name(entry)] = entry["answer"]
    shared = {i: given for i, given in votes.items() if len(given) > 1}
    if not shared:
        return None
    annotators = sorted({who for given in shared.values() for who in given})
    disagreements = sorted(i for i, given in shared.items() if len(set(given.values())) > 1)
    if len(annotators) == 2:
        return Agreement(round_index, annotators, len(shared), COHEN, _cohen(shared, annotators), disagreements)
    return Agreement(round_index, annotators, len(shared), KRIPPENDORFF, _alpha(shared, annotators), disagreements)


def agreement_by_round(entries: list[dict]) -> list[Agreement]:
    """The agreement of each round where two annotators labelled one example, in round order."""
    first_round: dict[int, int] = {}
    for entry in entries:
        first_round[entry["id"]] = min(first_round.get(entry["id"], entry["round"]), entry["round"])
    by_round: dict[int, list[dict]] = defaultdict(list)
    for entry in entries:
        by_round[first_round[entry["id"]]].append(entry)
    found = [agreement(given, round_index) for round_index, given in sorted(by_round.items())]
    return [each for each in found if each is not None]


def _cohen(shared: dict[int, dict[str, str]], annotators: list[str]) -> float | None:
    first, second = zip(*[(given[annotators[0]], given[annotators[1]]) for given in shared.values()])
    if len(first) < 2:
        return None
    value = cohen_kappa(first, second)
    return None if np.isnan(value) else value


def _alpha(shared: dict[int, dict[str, str]], annotators: list[str]) -> float | None:
    import krippendorff

    answers = sorted({answer for given in shared.values() for answer in given.values()})
    if len(shared) < 2 or len(answers) < 2:
        return None
    code = {answer: n for n, answer in enumerate(answers)}
    data = np.full((len(annotators), len(shared)), np.nan)
    for column, given in enumerate(shared.values()):
        for row, who in enumerate(annotators):
            if who in given:
                data[row, column] = code[given[who]]
    value = float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    return None if np.isnan(value) else value
