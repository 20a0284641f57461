"""Only the acquisition step: pick a batch from scores you computed with your own model.

    query = star_al.select("me+dynamic+mc", k=16, ids=pool_ids,
                           scores={"me": tuned_me},          # [n], or [passes, n] for MC dropout
                           base_scores={"me": base_me},      # the untuned model's, for the dynamic mix
                           query_index=2, n_rounds=5)
    query.ids, query.scores, query.info["lambda"]

The strategies are the ones runs use (the registry's, user-registered ones included),
handed a view of the given arrays instead of a model; randomness comes from (seed,
query_index) as in a run, so the same call picks the same ids.
"""

from __future__ import annotations

import numpy as np

from star_al.al.streams import QUERY_STREAM, rng_for
from star_al.config import RunConfig
from star_al.errors import StarError
from star_al.strategies.base import MEASURES, Needs, Query, ScoreView
from star_al.strategies.registry import Recipe


def _per_pass(name: str, values, n: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != n:
        raise StarError(f"scores[{name!r}] must be [n] or [passes, n] with n = {n} ids, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise StarError(f"scores[{name!r}] holds NaN or infinite values")
    return array


def select(strategy: str, k: int, ids, scores: dict | None = None, *, base_scores: dict | None = None,
           embeddings=None, labeled_ids=None, labeled_embeddings=None, answer_probs=None,
           query_index: int = 0, n_rounds: int = 5, seed: int = 0, lambda_schedule: str = "reference",
           pool_subsample: int | None = None) -> Query:
    """The k ids `strategy` (a name or recipe such as "me+star") picks among `ids`.

    `scores` maps a measure ("me", "pe") to the current model's values, [n] or [passes, n]
    (several passes: MC dropout's mean); `base_scores` the untuned model's, [n], for the
    dynamic mix; `embeddings` [n, hidden] (and `labeled_embeddings`) for diversity;
    `answer_probs` [n, labels]. `query_index` is t, 0 for the first query after the warm
    start, and `n_rounds` the number of queries the lambda schedule spans.
    """
    ids = np.asarray(ids)
    n = len(ids)
    if len(set(ids.tolist())) != n:
        raise StarError("ids must be distinct")
    if not 0 < k <= n:
        raise StarError(f"k must be between 1 and the {n} candidates, got {k}")
    tuned = {name: _per_pass(name, values, n) for name, values in (scores or {}).items()}
    unknown = set(tuned) - set(MEASURES)
    if unknown:
        raise StarError(f"unknown measure(s) {sorted(unknown)}; scores take {', '.join(MEASURES)}")
    passes = {array.shape[0] for array in tuned.values()} or {1}
    if len(passes) > 1:
        raise StarError(f"every measure needs the same number of passes, got {sorted(passes)}")
    config = RunConfig(task="-", strategy=strategy, n_rounds=n_rounds, lambda_schedule=lambda_schedule,
                       mc_passes=passes.pop(), pool_subsample=pool_subsample, seed=seed)
    built = Recipe.parse(strategy).build(config)
    needs: Needs = built.needs
    features = {"embeddings": embeddings, "label_probs": answer_probs}
    _check_given(strategy, needs, tuned, base_scores, features, labeled_embeddings)
    labeled = np.asarray(labeled_ids if labeled_ids is not None else [], dtype=np.int64)
    position = {int(i): row for row, i in enumerate(ids)}
    if labeled_embeddings is not None:
        position.update({int(i): n + row for row, i in enumerate(labeled)})
        features["embeddings"] = np.concatenate([np.asarray(embeddings), np.asarray(labeled_embeddings)])

    def scorer(asked: np.ndarray, asked_needs: Needs) -> dict[str, np.ndarray]:
        rows = np.array([position[int(i)] for i in asked], dtype=np.int64)
        found = {name: array[:, rows[rows < n]] for name, array in tuned.items()}
        found.update({name: np.asarray(value)[rows] for name, value in features.items() if value is not None})
        return found

    base = None
    if base_scores is not None:
        base = {"ids": ids, **{name: _per_pass(f"base {name}", values, n)[0] for name, values in base_scores.items()}}
    view = ScoreView(ids, query_index, needs, scorer, base, lambda purpose: rng_for(seed, purpose, query_index + 1),
                     labeled)
    return built.select(view, k, rng_for(seed, QUERY_STREAM, query_index + 1))


def _check_given(strategy, needs: Needs, tuned, base_scores, features, labeled_embeddings) -> None:
    """Refuse in one line a strategy whose inputs were not given."""
    lacking = [f"scores[{m!r}]" for m in sorted(needs.tuned) if m not in tuned]
    lacking += [f"base_scores[{m!r}]" for m in sorted(needs.base) if m not in (base_scores or {})]
    if needs.embeddings and features["embeddings"] is None:
        lacking.append("embeddings")
    if needs.labeled_embeddings and labeled_embeddings is None:
        lacking.append("labeled_embeddings (with labeled_ids)")
    if needs.answer_probs and features["label_probs"] is None:
        lacking.append("answer_probs")
    if needs.gradients:
        raise StarError(f"strategy {strategy!r} reads gradient embeddings of a star-al adapter; "
                        "it runs only inside a run")
    if lacking:
        raise StarError(f"strategy {strategy!r} needs {', '.join(lacking)}")
