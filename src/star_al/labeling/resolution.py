"""Several annotators' labels become one: majority vote, or Dawid-Skene's reliability-weighted vote.

A run asks for `annotators` labels per example (N). An example is resolved once it has N
labels, or earlier when one answer already holds a strict majority of N (more than N/2
votes, which no later label of the N can overturn). Then majority vote takes the most
frequent answer, and Dawid-Skene the answer of highest posterior under every
annotator's estimated confusion matrix. Where the top answers tie the example is not
resolved: it stays queued for one more annotator. With N = 1 every label resolves its
example as given.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

METHODS = ("majority", "dawid-skene")
DS_SMOOTHING = 0.01        # pseudo-count in each confusion cell: no answer is ever impossible
DS_MAX_ITERATIONS = 100
DS_TOLERANCE = 1e-8
TIE_TOLERANCE = 1e-9       # posteriors this close are a tie


@dataclass(frozen=True)
class Resolution:
    """What the ledger's labels say: `labels` the resolved ones (id -> entry: answer, target,
    round, source, and `annotators` where several gave one), `ties` the ids with N labels or
    more and no single answer (queued for one more annotator), `short` the ids with fewer than
    N labels and no strict majority yet (waiting for the panel)."""

    labels: dict[int, dict]
    ties: set[int] = field(default_factory=set)
    short: set[int] = field(default_factory=set)


def needs_more(counts: list[int], annotators: int) -> bool:
    """Whether votes `counts` (one per answer) still wait for the panel: fewer than N labels and
    no answer with a strict majority of N."""
    return sum(counts) < annotators and max(counts, default=0) * 2 <= annotators


def majority_vote(answers: list[str]) -> str | None:
    """The most frequent answer, None on a tie at the top."""
    ranked = Counter(answers).most_common()
    if not ranked or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]


def dawid_skene(votes: dict[int, dict[str, str]]) -> tuple[dict[int, dict[str, float]], dict[str, np.ndarray],
                                                             list[str]]:
    """Dawid and Skene (1979): each annotator j has a confusion matrix pi_j[k, l] = P(says l | truth
    k), the truths have priors p_k; EM from the majority vote alternates

        M: p_k = mean_i T_ik,  pi_j[k, l] ∝ s + sum_i T_ik [j says l on i]
        E: T_ik ∝ p_k prod_j pi_j[k, answer_ij]

    until T moves less than DS_TOLERANCE. `votes` maps an item to {annotator: answer}; returns each
    item's posterior over the answers seen, each annotator's confusion matrix (rows: truth) and
    the answers in matrix order.
    """
    items = sorted(votes)
    classes = sorted({answer for given in votes.values() for answer in given.values()})
    annotators = sorted({who for given in votes.values() for who in given})
    column = {answer: n for n, answer in enumerate(classes)}
    said = np.zeros((len(items), len(annotators), len(classes)))  # said[i, j, l]: j answered l on item i
    for i, item in enumerate(items):
        for j, who in enumerate(annotators):
            if who in votes[item]:
                said[i, j, column[votes[item][who]]] = 1.0
    truth = said.sum(axis=1)
    truth = truth / truth.sum(axis=1, keepdims=True)          # soft majority vote
    for _ in range(DS_MAX_ITERATIONS):
        priors = truth.mean(axis=0)
        confusion = np.einsum("ik,ijl->jkl", truth, said) + DS_SMOOTHING
        confusion /= confusion.sum(axis=2, keepdims=True)
        log_posterior = np.log(priors)[None, :] + np.einsum("ijl,jkl->ik", said, np.log(confusion))
        updated = np.exp(log_posterior - log_posterior.max(axis=1, keepdims=True))
        updated /= updated.sum(axis=1, keepdims=True)
        converged = np.abs(updated - truth).max() < DS_TOLERANCE
        truth = updated
        if converged:
            break
    posteriors = {item: dict(zip(classes, map(float, truth[i]))) for i, item in enumerate(items)}
    return posteriors, {who: confusion[j] for j, who in enumerate(annotators)}, classes


def resolve(entries: list[dict], annotators: int = 1, method: str = "majority",
            upto_round: int | None = None) -> Resolution:
    """The ledger's `entries` (one per id and annotator) resolved as the run's settings say; only
    entries of rounds up to `upto_round` are read, when given (a round's labels are what was given
    by its end)."""
    if upto_round is not None:
        entries = [entry for entry in entries if entry["round"] <= upto_round]
    by_id: dict[int, list[dict]] = defaultdict(list)
    for entry in entries:
        by_id[entry["id"]].append(entry)
    if annotators == 1 and all(len(given) == 1 for given in by_id.values()):
        return Resolution({i: given[0] for i, given in by_id.items()})  # one label each: as given
    ready = {i: given for i, given in by_id.items()
             if not needs_more(list(Counter(e["answer"] for e in given).values()), annotators)}
    if method == "dawid-skene" and ready:
        votes = {i: {annotator_name(e): e["answer"] for e in given} for i, given in by_id.items()}
        posteriors, _, _ = dawid_skene(votes)
        answers = {i: _top(posteriors[i]) for i in ready}
    else:
        answers = {i: majority_vote([e["answer"] for e in given]) for i, given in ready.items()}
    labels = {i: _resolved_entry(ready[i], answer) for i, answer in answers.items() if answer is not None}
    return Resolution(labels, {i for i in ready if i not in labels}, set(by_id) - set(ready))


def annotator_name(entry: dict) -> str:
    """Who gave a ledger entry; "anonymous" where nobody was named."""
    return entry.get("annotator") or "anonymous"


def _top(posterior: dict[str, float]) -> str | None:
    ranked = sorted(posterior.items(), key=lambda item: -item[1])
    if len(ranked) > 1 and ranked[0][1] - ranked[1][1] <= TIE_TOLERANCE:
        return None
    return ranked[0][0]


def _resolved_entry(given: list[dict], answer: str) -> dict:
    """One entry for an example several annotators labelled: the resolved answer, the first target
    given with it, the round its last label came in, and who said what."""
    if len(given) == 1:
        return given[0]
    agreeing = [entry for entry in given if entry["answer"] == answer]
    return {"id": given[0]["id"], "answer": answer,
            "target": next((e["target"] for e in agreeing if e.get("target") is not None), None),
            "round": max(entry["round"] for entry in given),
            "source": ",".join(sorted({entry["source"] for entry in given})),
            "annotators": {annotator_name(entry): entry["answer"] for entry in given}}
