"""Every random draw of a run comes from its own stream of (seed, purpose, round).

So a resumed run draws exactly what an uninterrupted one drew, and changing one
purpose's draws (say, the subsample) leaves the others alone.
"""

from __future__ import annotations

import numpy as np

from star_al.errors import StarError
from star_al.strategies.subsample import SUBSAMPLE_STREAM

POOL_STREAM, WARM_STREAM, QUERY_STREAM, MONITOR_STREAM = 1, 2, 3, 5
assert SUBSAMPLE_STREAM not in (POOL_STREAM, WARM_STREAM, QUERY_STREAM, MONITOR_STREAM)
MONITOR_SIZE = 200


def rng_for(seed: int, *stream: int) -> np.random.Generator:
    """An independent, reproducible random stream per (seed, purpose, round)."""
    return np.random.default_rng([seed, *stream])


def choose_pool(config, pool) -> np.ndarray:
    """The ids the run may query: all of train, or a fixed random subset of `pool_size`.

    A pool read from disk (data/disk_pool.py) gives its ids without reading its examples."""
    ids = pool.ids if hasattr(pool, "ids") else np.array(sorted(ex.id for ex in pool))
    if config.pool_size is not None and config.pool_size < len(ids):
        ids = np.sort(rng_for(config.seed, POOL_STREAM).choice(ids, config.pool_size, replace=False))
    if config.budget > len(ids):
        raise StarError(f"label budget {config.budget} (warm start {config.warm_start} + "
                        f"{config.n_rounds} x {config.query_size}) is larger than the pool of {len(ids)} examples")
    return ids


def warm_start(config, pool_ids: np.ndarray) -> list[int]:
    """Round 0's batch: `warm_start` pool ids at random (the paper's cold start)."""
    chosen = rng_for(config.seed, WARM_STREAM).choice(pool_ids, config.warm_start, replace=False)
    return sorted(int(i) for i in chosen)


def monitor_ids(config, pool_ids: np.ndarray) -> list[int]:
    """A fixed random sample of the pool that runs without a test set watch round after round."""
    size = min(MONITOR_SIZE, len(pool_ids))
    return sorted(int(i) for i in rng_for(config.seed, MONITOR_STREAM).choice(pool_ids, size, replace=False))
