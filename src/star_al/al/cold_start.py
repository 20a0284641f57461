"""Round 0's batch without labels: at random (the paper), or chosen from the frozen base model.

Before any label exists the base model has already scored the whole pool (al/base_scores.py,
computed once and cached), so a warm start can rank by its uncertainty and spread over its
hidden states (docs/method.md 9.1). `--warm-start-by` names a recipe run on those base
scores: a label-free ranker (me, pe) and/or a diversity strategy or component. The
default, random, is the paper's draw, unchanged.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from star_al.al.streams import WARM_STREAM, rng_for, warm_start
from star_al.engine.scoring import select_rows
from star_al.errors import StarError
from star_al.strategies.base import Needs, Query, ScoreView
from star_al.strategies.registry import Recipe

WARM_START_STRATEGIES = ("random", "me", "pe", "kmeans", "coreset", "typiclust")
WARM_START_COMPONENTS = ("kmeans", "coreset")


def warm_start_recipe(name) -> Recipe:
    """The recipe a --warm-start-by name stands for; anything that needs a tuned model is refused."""
    recipe = Recipe.parse(name)
    extra = [c for c in recipe.components if c not in WARM_START_COMPONENTS]
    if recipe.strategy not in WARM_START_STRATEGIES or extra:
        raise StarError(f"warm start {name!r}: round 0 has only the base model's scores; choose "
                        f"{', '.join(WARM_START_STRATEGIES)}, or me / pe with "
                        f"+{' or +'.join(WARM_START_COMPONENTS)} (e.g. me+kmeans)")
    return recipe


def warm_start_needs(config) -> Needs:
    """What the warm start reads of the base model (nothing for random)."""
    if config.warm_start_by == "random":
        return Needs()
    return _strategy(config).needs


def _strategy(config):
    # The whole pool (no subsample) and the label-free PE: a warm start never reads an answer.
    plain = replace(config, pool_subsample=None, pe_mode="label-free")
    return warm_start_recipe(config.warm_start_by).build(plain)


def warm_start_query(config, pool_ids: np.ndarray, base: dict[str, np.ndarray] | None) -> tuple[Query, ScoreView | None]:
    """Round 0's query, and the view it ranked (None for random, which scores nothing).

    The base model plays the "current" model: its scores are read from `base`, the
    pool-wide base scores (with their hidden states when the recipe reads them).
    """
    if config.warm_start_by == "random":
        return Query(warm_start(config, pool_ids), None), None
    strategy = _strategy(config)
    position = {int(i): n for n, i in enumerate(base["ids"])}

    def from_base(ids: np.ndarray, needs: Needs) -> dict[str, np.ndarray]:
        return select_rows(base, np.array([position[int(i)] for i in ids], dtype=np.int64), needs)

    seed = config.seed
    view = ScoreView(np.asarray(pool_ids), 0, strategy.needs, from_base, base,
                     lambda purpose: rng_for(seed, WARM_STREAM, purpose))
    return strategy.select(view, config.warm_start, rng_for(seed, WARM_STREAM)), view
