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

A report tests many differences at once, so each also gets its paired t test's p, Holm's
step-down adjustment of it over the comparisons printed together (holm_family), and, given
an equivalence margin, two one-sided tests (TOST) of whether the difference lies within it:
"no effect" is a claim that needs its own test, not an interval that happens to be narrow.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
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
    p: float | None = None             # two-sided paired t test of a zero mean; None under two pairs
    # Set by holm_family over the comparisons reported together (None outside a family or under two pairs):
    p_holm: float | None = None
    holm_level: float | None = None
    holm_interval: tuple[float, float] | None = None
    margin: float | None = None        # the equivalence margin tested, in the differences' units
    tost_p: float | None = None
    tost_p_holm: float | None = None
    equivalent: bool | None = None     # Holm-adjusted TOST p below alpha


# The report's error rate: 95% intervals, tests at 0.05.
ALPHA = 0.05


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
    return interval_of(d.size, float(d.mean()), float(d.std(ddof=1)), level)


def interval_of(n: int, mean: float, sd: float | None, level: float) -> tuple[float, float] | None:
    """The t interval at `level` from a comparison's n, mean and sd; None under two pairs."""
    if n < 2 or sd is None:
        return None
    half = _half_width(sd, n, level)
    return float(mean - half), float(mean + half)


def _standard_error(n: int, sd: float) -> float:
    return sd / math.sqrt(n)


def t_test_p(n: int, mean: float, sd: float) -> float | None:
    """Two-sided p of the paired t test of a zero mean: 2 P(T_{n-1} >= |mean| / (sd / sqrt n)).
    None under two pairs; with sd 0 the test is exact: 0 for a non-zero mean, 1 for zero."""
    if n < 2:
        return None
    se = _standard_error(n, sd)
    if se == 0:
        return 0.0 if mean != 0 else 1.0
    return float(2 * stats.t.sf(abs(mean) / se, n - 1))


def tost_p(n: int, mean: float, sd: float, margin: float) -> float | None:
    """p of two one-sided paired t tests (Schuirmann 1987) that the mean lies within ±margin:
    the larger of P(T_{n-1} >= (mean + margin) / se) (H0: mean <= -margin) and
    P(T_{n-1} <= (mean - margin) / se) (H0: mean >= +margin). Below alpha exactly when both
    reject, i.e. when the 1 - 2 alpha t interval lies inside (-margin, +margin)."""
    if n < 2:
        return None
    se = _standard_error(n, sd)
    if se == 0:
        return 0.0 if abs(mean) < margin else 1.0
    lower = stats.t.sf((mean + margin) / se, n - 1)
    upper = stats.t.cdf((mean - margin) / se, n - 1)
    return float(max(lower, upper))


def holm(p_values) -> list[float]:
    """Holm's (1979) step-down adjusted p: with the m p sorted ascending, the j-th (from 1)
    becomes max over i <= j of min(1, (m - i + 1) p_(i)). Rejecting where the adjusted p is
    below alpha keeps the chance of any false rejection among the m at most alpha."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (p.size - np.arange(p.size)) * p[order])
    adjusted = np.empty(p.size)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()


def holm_levels(p_values, alpha: float = ALPHA) -> list[float]:
    """The confidence level of each comparison's Holm interval: 1 - alpha / (m - j + 1), j its
    rank by raw p (smallest first), where Holm's step-down compares it; from the first
    comparison Holm does not reject on, every later one keeps that comparison's level. So a
    two-sided t interval at this level excludes 0 exactly where holm() is below alpha. The
    intervals are not simultaneous (Bonferroni's 1 - alpha / m would be); they are Holm's
    decisions with the effect sizes they allow."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    levels = np.empty(p.size)
    divisor = None  # set at the first comparison Holm does not reject
    for rank, index in enumerate(order):
        here = p.size - rank
        if divisor is None and p[index] >= alpha / here:
            divisor = here
        levels[index] = 1 - alpha / (divisor if divisor is not None else here)
    return levels.tolist()


def holm_family(differences, alpha: float = ALPHA, margin: float | None = None) -> list[PairedDifference]:
    """The differences with Holm's adjusted p and interval over all of them that have a t test,
    and, given a margin, each one's TOST p, Holm-adjusted over the same ones, and the verdict
    `equivalent` (adjusted TOST p below alpha). Differences under two pairs stay outside the
    family, their fields None."""
    differences = list(differences)
    tested = [i for i, d in enumerate(differences) if d.p is not None]
    result = [replace(d, margin=margin) for d in differences]
    if not tested:
        return result
    p_values = [differences[i].p for i in tested]
    for i, p_holm, level in zip(tested, holm(p_values), holm_levels(p_values, alpha)):
        d = result[i]
        result[i] = replace(d, p_holm=p_holm, holm_level=level, holm_interval=interval_of(d.n, d.mean, d.sd, level))
    if margin is not None:
        tost = [tost_p(result[i].n, result[i].mean, result[i].sd, margin) for i in tested]
        for i, p_value, p_holm in zip(tested, tost, holm(tost)):
            result[i] = replace(result[i], tost_p=p_value, tost_p_holm=p_holm, equivalent=p_holm < alpha)
    return result


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
                            seeds_for_width=seeds_for_width(sd, WIDTH, level) if sd is not None else None,
                            p=t_test_p(len(seeds), float(d.mean()), sd) if sd is not None else None)


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
        # The AUC is linear in the rounds' accuracies, so each sentence contributes a fixed
        # share of the AUC difference and a replicate is the mean share of its resample.
        shares = metrics.auc_weights(n_labeled) @ (np.asarray(correct_a, dtype=float) - correct_b)
        n_sentences = shares.size
        rows = rng.integers(0, n_sentences, size=(n_boot, n_sentences))
        replicates += shares[rows].mean(axis=1)
    replicates *= scale / len(pairs)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(replicates, [tail, 100 - tail])
    return float(lo), float(hi)
