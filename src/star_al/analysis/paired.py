"""Paired comparisons of two strategies: runs with the same seed share the warm start, the
pool and the test set, so their difference is measured seed by seed (and sentence by
sentence), which removes most of the noise that an unpaired comparison keeps.

For each pair of strategies the report gives the mean per-seed AUC difference with
- a Student t interval over seeds (undefined for one seed),
- a paired bootstrap over seeds (resampling seeds, both strategies together; from 5 seeds on),
- where predictions are on disk, a paired bootstrap over test sentences (resampling the
  sentences each seed's two runs were evaluated on, together),
and the number of seeds a difference of that size would need for the t interval to
exclude zero, given the measured spread.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from star_al import metrics
from star_al.rounds import unpack_correct


MIN_BOOTSTRAP_PAIRS = 5


@dataclass
class PairedDifference:
    """AUC(a) - AUC(b) over paired seeds, in the units given (the report uses points)."""

    n: int
    mean: float
    sd: float | None
    t_interval: tuple[float, float] | None
    bootstrap_interval: tuple[float, float] | None
    seeds_needed: int | None          # None: the mean is 0 or the spread unknown
    sentence_interval: tuple[float, float] | None = None
    seeds_for_width: int | None = None  # seeds for a t interval of ±WIDTH; None: spread unknown


# The half-width a comparison is run until (the science study's target: ±1 AUC point).
WIDTH = 1.0


def _half_width(sd: float, n: int, level: float) -> float:
    """The t interval's half-width over n pairs of this sd: t_{n-1, (1+level)/2} sd / sqrt(n)."""
    return stats.t.ppf((1 + level) / 2, n - 1) * sd / math.sqrt(n)


def _smallest_n(fits, limit: int) -> int | None:
    """The smallest n >= 2 (a t interval needs two pairs) for which fits(n) holds, up to limit."""
    return next((n for n in range(2, limit + 1) if fits(n)), None)


def t_interval(differences, level: float = 0.95) -> tuple[float, float] | None:
    """mean ± t_{n-1, (1+level)/2} sd / sqrt(n); None with fewer than two pairs."""
    d = np.asarray(differences, dtype=float)
    if d.size < 2:
        return None
    half = _half_width(float(d.std(ddof=1)), d.size, level)
    return float(d.mean() - half), float(d.mean() + half)


def paired_bootstrap(differences, level: float = 0.95, n_boot: int = 10000, seed: int = 0) -> tuple[float, float] | None:
    """Percentile interval of the mean difference, resampling the pairs with replacement.

    None under MIN_BOOTSTRAP_PAIRS pairs: with 2 or 3 seeds the resamples take a handful of
    values and the interval is far too narrow (with no true difference, an unpaired version
    of it excluded 0 in a fifth of simulated 3-seed comparisons); read the t interval there.
    """
    d = np.asarray(differences, dtype=float)
    if d.size < MIN_BOOTSTRAP_PAIRS:
        return None
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def seeds_needed(mean: float, sd: float, level: float = 0.95, limit: int = 100000) -> int | None:
    """The smallest n whose t interval, mean ± t_{n-1} sd / sqrt(n), excludes zero."""
    if mean == 0 or not np.isfinite(sd):
        return None
    if sd == 0:
        return 2
    return _smallest_n(lambda n: _half_width(sd, n, level) < abs(mean), limit)


def seeds_for_width(sd: float, width: float = WIDTH, level: float = 0.95, limit: int = 100000) -> int | None:
    """The smallest n whose t interval is at most ±width: t_{n-1} sd / sqrt(n) <= width.
    Where to stop adding seeds, as far as the spread measured so far tells."""
    if not np.isfinite(sd) or width <= 0:
        return None
    return _smallest_n(lambda n: _half_width(sd, n, level) <= width, limit)


def compare(aucs_a: dict, aucs_b: dict, scale: float = 100.0, level: float = 0.95) -> PairedDifference | None:
    """Paired statistics of {seed: AUC} against {seed: AUC} over the seeds both have."""
    seeds = sorted(set(aucs_a) & set(aucs_b), key=str)
    if not seeds:
        return None
    d = scale * np.array([aucs_a[s] - aucs_b[s] for s in seeds])
    sd = float(d.std(ddof=1)) if d.size > 1 else None
    return PairedDifference(len(seeds), float(d.mean()), sd, t_interval(d, level), paired_bootstrap(d, level),
                            seeds_needed(float(d.mean()), sd, level) if sd is not None else None,
                            seeds_for_width=seeds_for_width(sd, WIDTH, level) if sd is not None else None)


def read_correct(run_path: Path, rounds: list[dict]) -> np.ndarray | None:
    """[rounds, test sentences] correctness from predictions/round-NN.jsonl, or else from the rounds'
    packed `test_correct` (rounds.pack_correct); None if a round has neither. `rounds` are
    rounds.jsonl's lines as read (analysis/report.py)."""
    rows = []
    for record in rounds:
        path = Path(run_path) / "predictions" / f"round-{record['round']:02d}.jsonl"
        if not path.is_file():
            if "test_correct" not in record or "n_test" not in record:
                return None
            rows.append(unpack_correct(record["test_correct"], record["n_test"]).tolist())
            continue
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        rows.append([bool(line["correct"]) for line in sorted(lines, key=lambda line: line["id"])])
    if len({len(row) for row in rows}) != 1:
        return None
    return np.array(rows, dtype=float)


def sentence_bootstrap(pairs, scale: float = 100.0, level: float = 0.95, n_boot: int = 2000,
                       seed: int = 0) -> tuple[float, float] | None:
    """Percentile interval of the mean AUC difference over seeds, resampling test sentences.

    `pairs` holds, per seed, (n_labeled, correct_a, correct_b) with correct_* of shape
    [rounds, sentences] over the same sentences; one resample of sentence indices is shared
    by both runs of a seed, so the comparison stays paired.
    """
    if not pairs:
        return None
    rng = np.random.default_rng(seed)
    replicates = np.zeros(n_boot)
    for n_labeled, correct_a, correct_b in pairs:
        n_sentences = correct_a.shape[1]
        for b in range(n_boot):
            rows = rng.integers(0, n_sentences, size=n_sentences)
            replicates[b] += metrics.auc(n_labeled, correct_a[:, rows].mean(axis=1)) - \
                metrics.auc(n_labeled, correct_b[:, rows].mean(axis=1))
    replicates *= scale / len(pairs)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(replicates, [tail, 100 - tail])
    return float(lo), float(hi)
