"""What an acquisition strategy is: `select(view, k, rng)` over the unlabeled pool.

A strategy declares the scores it needs (`Needs`); the loop hands it a `ScoreView` of
the unlabeled candidates that computes those scores the first time they are asked for,
so a strategy that needs none (random) costs no forward pass, and a wrapper that keeps
only some candidates (subsampling) scores only those. Strategies are pure array work.
Diversity strategies also read the candidates' hidden states (`Needs.embeddings`), which
the same scoring pass returns; those that measure distance to the labeled set
(`labeled_embeddings`) have the labeled examples scored in that pass too.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from star_al.errors import StarError

# The measures a view can give: maximum entropy, predictive entropy of the model's own
# answer (label-free), and predictive entropy of the gold answer (simulations only).
MEASURES = ("me", "pe", "pe_gold")
GOLD_MEASURES = ("pe_gold",)


@dataclass(frozen=True)
class Needs:
    """The scores a strategy reads: measures of the current model (over `passes` stochastic
    passes) and of the frozen base model."""

    tuned: frozenset[str] = frozenset()
    base: frozenset[str] = frozenset()
    passes: int = 1
    embeddings: bool = False          # the candidates' answer-position hidden states
    labeled_embeddings: bool = False  # the labeled set's too (scored in the same pass)
    answer_probs: bool = False        # the allowed answers' probabilities (tasks with fixed answers)
    gradients: bool = False           # BADGE's gradient embedding on the adapter (engine/gradients.py)

    def __or__(self, other: "Needs") -> "Needs":
        return Needs(self.tuned | other.tuned, self.base | other.base, max(self.passes, other.passes),
                     self.embeddings or other.embeddings, self.labeled_embeddings or other.labeled_embeddings,
                     self.answer_probs or other.answer_probs, self.gradients or other.gradients)

    @property
    def any(self) -> bool:
        return bool(self.tuned or self.base)

    @property
    def reads_gold(self) -> bool:
        return bool((self.tuned | self.base) & set(GOLD_MEASURES))


@dataclass(frozen=True)
class Query:
    """What a strategy asks to label, with the score each id was ranked by (None for random).

    `candidate_scores` holds the ranked score of every candidate the view scored (saved
    per round for analysis); `info` what the strategy wants recorded (e.g. its lambda).
    """

    ids: list[int]
    scores: list[float] | None
    candidate_scores: np.ndarray | None = None
    info: dict = field(default_factory=dict)


# `scorer(ids, needs)`: each measure [passes, n]; with needs.embeddings also "embeddings" [n, hidden];
# with needs.answer_probs "label_probs" [n, n_labels] on tasks with fixed answers; with needs.gradients
# "gradient_g" [n, hidden] and "gradient_a" [n, r], the factors of the gradient embedding
# (engine/scoring.py `measures` is the loop's).
Scorer = Callable[[np.ndarray, Needs], dict[str, np.ndarray]]


class ScoreView:
    """The candidates of one query, and their scores computed on first request.

    `scorer(ids, needs)` returns every measure it computed, each [passes, n]; `base` holds
    the frozen base model's scores over the whole pool (ids and one array per measure), or
    computes them when first asked (`base_at`);
    `stream(purpose)` gives this query's random stream for a purpose; `labeled_ids` are
    the labeled set, embedded with the candidates when a strategy needs it.
    """

    def __init__(self, ids: np.ndarray, query_index: int, needs: Needs, scorer: Scorer | None,
                 base: dict[str, np.ndarray] | None, stream: Callable[[int], np.random.Generator],
                 labeled_ids: np.ndarray | None = None, _record: dict | None = None):
        self.ids = np.asarray(ids)
        self.query_index = query_index  # t = 0 for the first query after the warm start
        self.needs, self._scorer, self._base, self.stream = needs, scorer, base, stream
        self.labeled_ids = np.asarray(labeled_ids if labeled_ids is not None else [], dtype=np.int64)
        self._record = _record if _record is not None else {}

    def subset(self, ids: np.ndarray) -> "ScoreView":
        """A view of some of these candidates (nothing scored yet), sharing the record of what was scored."""
        return ScoreView(ids, self.query_index, self.needs, self._scorer, self._base, self.stream,
                         self.labeled_ids, self._record)

    def _scores(self) -> dict:
        """Score the candidates (and the labeled set, when its embeddings are needed) once."""
        if self._record.get("ids") is not self.ids:
            n = len(self.ids)
            ids = np.concatenate([self.ids, self.labeled_ids]) if self.needs.labeled_embeddings else self.ids
            computed = self._scorer(ids, self.needs)
            self._record.clear()
            self._record.update(ids=self.ids, scores={m: a[:, :n] for m, a in computed.items() if m in MEASURES},
                                features={k: a for k, a in computed.items() if k not in MEASURES}, n=n)
        return self._record

    def tuned(self, measure: str) -> np.ndarray:
        """[passes, n]: the current model's `measure` of every candidate, one row per pass."""
        if measure not in self.needs.tuned:
            raise ValueError(f"the strategy did not declare the tuned measure {measure!r} it reads")
        return self._scores()["scores"][measure]

    def embeddings(self) -> np.ndarray:
        """[n, hidden]: each candidate's last hidden state at the answer position (same pass as the scores)."""
        if not self.needs.embeddings:
            raise ValueError("the strategy did not declare that it reads embeddings")
        record = self._scores()
        return record["features"]["embeddings"][:record["n"]]

    def labeled_embeddings(self) -> np.ndarray:
        """[labeled, hidden]: the labeled examples' hidden states under the same model."""
        if not self.needs.labeled_embeddings:
            raise ValueError("the strategy did not declare that it reads the labeled set's embeddings")
        record = self._scores()
        return record["features"]["embeddings"][record["n"]:]

    def gradient_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """(g [n, hidden], a [n, r]): each candidate's loss gradient on the last layer's LoRA B is g a^T."""
        if not self.needs.gradients:
            raise ValueError("the strategy did not declare that it reads gradient embeddings")
        record = self._scores()
        return record["features"]["gradient_g"][:record["n"]], record["features"]["gradient_a"][:record["n"]]

    def answer_probs(self) -> np.ndarray:
        """[n, n_labels]: the current model's probabilities of the allowed answers (mean over passes)."""
        if not self.needs.answer_probs:
            raise ValueError("the strategy did not declare that it reads answer probabilities")
        record = self._scores()
        if "label_probs" not in record["features"]:
            raise StarError("this strategy needs a task with a fixed set of answers (labels), not free text")
        return record["features"]["label_probs"][:record["n"]]

    def base(self, measure: str) -> np.ndarray:
        """[n]: the frozen base model's `measure` of every candidate."""
        if measure not in self.needs.base:
            raise ValueError(f"the strategy did not declare the base measure {measure!r} it reads")
        return base_at(self._base, self.ids)[measure]

    @property
    def scored(self) -> dict[str, np.ndarray] | None:
        """What the scorer computed for the candidates last scored (None when nothing was)."""
        return self._record.get("scores")

    @property
    def scored_ids(self) -> np.ndarray | None:
        return self._record.get("ids")


def base_at(base, ids: np.ndarray) -> dict[str, np.ndarray]:
    """The frozen base model's scores of `ids`, each measure [n]: read from whole-pool base scores (a
    dict of "ids" and one array per measure), or asked of a store that computes the ones it lacks
    when first asked (anything with `at(ids)`: a large pool's, al/base_scores.py)."""
    if hasattr(base, "at"):
        return base.at(ids)
    position = {int(i): n for n, i in enumerate(base["ids"])}
    rows = np.array([position[int(i)] for i in ids], dtype=np.int64)
    return {measure: base[measure][rows] for measure in MEASURES if measure in base}


class Strategy(ABC):
    """Picks k unlabeled ids from a view; deterministic given the view and rng."""

    needs: Needs = Needs()

    @property
    def label_free(self) -> bool:
        """True when the strategy reads no gold answer (so it can run while people label)."""
        return not self.needs.reads_gold

    @abstractmethod
    def select(self, view: ScoreView, k: int, rng: np.random.Generator) -> Query:
        ...


class ScoredStrategy(Strategy):
    """A strategy that ranks by one score per candidate: the k highest are queried."""

    measure: str  # the uncertainty measure it ranks by (dynamic mixes the base model's same measure)

    @abstractmethod
    def score(self, view: ScoreView) -> np.ndarray:
        ...

    def select(self, view: ScoreView, k: int, rng: np.random.Generator) -> Query:
        scores = self.score(view)
        ids, top = top_k(view.ids, scores, k)
        return Query(ids, top, scores, self.info(view))

    def info(self, view: ScoreView) -> dict:
        return {}


def top_k(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """The k highest-scoring ids; ties go to the smaller id, so selections are reproducible."""
    if k > len(ids):
        raise ValueError(f"cannot query {k} of {len(ids)} candidates")
    order = np.lexsort((np.asarray(ids), -np.asarray(scores)))[:k]
    return [int(ids[i]) for i in order], [float(scores[i]) for i in order]


def min_max(scores: np.ndarray) -> np.ndarray:
    """Rescale to [0, 1] over the scored candidates (a constant array maps to zeros)."""
    scores = np.asarray(scores, dtype=np.float64)
    span = scores.max() - scores.min()
    return np.zeros_like(scores) if span == 0 else (scores - scores.min()) / span
