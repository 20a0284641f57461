"""Learning-curve, calibration and correlation metrics (docs/method.md sections 7 and 8).

Pure numpy functions on plain arrays: no files, no models. Accuracies, AUCs and
confidences are fractions in [0, 1]; the report turns them into percent.
"""

from __future__ import annotations

import numpy as np


def auc(n_labeled, accuracy) -> float:
    """Area under the learning curve, x rescaled to [0, 1] (docs/method.md section 7).

    AUC = sum_i (x_{i+1} - x_i) (a_i + a_{i+1}) / 2 with x = (n - n_0) / (n_last - n_0),
    so a flat curve at accuracy a has AUC a whatever the spacing of the points.
    A single point has no width: its AUC is its accuracy.
    """
    y = np.asarray(accuracy, dtype=float)
    weights = auc_weights(n_labeled)
    if y.shape != weights.shape:
        raise ValueError("auc needs two 1-D arrays of the same, non-zero length")
    return float(weights @ y)


def auc_weights(n_labeled) -> np.ndarray:
    """The weights w, one per point in the given order, with AUC = w . accuracy.

    The AUC is linear in the accuracies, so a resampling loop (the sentence bootstrap, the
    test-sample variance) can weigh per-sentence correctness once instead of recomputing
    the trapezoid for every replicate. Trapezoid weights: w_i = (x_{i+1} - x_{i-1}) / 2 on
    the sorted, rescaled x, the ends taking half their one neighbouring gap.
    """
    x = np.asarray(n_labeled, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("auc needs two 1-D arrays of the same, non-zero length")
    if x.size == 1:
        return np.ones(1)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    span = sorted_x[-1] - sorted_x[0]
    if span == 0:
        raise ValueError("auc needs at least two distinct labeled-set sizes")
    gaps = np.diff((sorted_x - sorted_x[0]) / span)
    sorted_weights = (np.concatenate([[0.0], gaps]) + np.concatenate([gaps, [0.0]])) / 2
    weights = np.empty_like(sorted_weights)
    weights[order] = sorted_weights
    return weights


def ripl(auc_strategy: float, auc_random: float) -> float:
    """Relative improvement over passive learning: (AUC_AL - AUC_RANDOM) / (1 - AUC_RANDOM).

    0 means no better than random sampling, 1 means perfect accuracy from the first step
    (docs/method.md section 7). Undefined (nan) when random is already perfect.
    """
    if auc_random == 1:
        return float("nan")
    return float((auc_strategy - auc_random) / (1 - auc_random))


def _predictions(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (confidence, correct) pair: same length, non-empty, confidence in [0, 1]."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    if confidence.ndim != 1 or confidence.shape != correct.shape or confidence.size == 0:
        raise ValueError("confidence and correct must be 1-D, of the same non-zero length")
    if np.any((confidence < 0) | (confidence > 1)):
        raise ValueError("confidence must lie in [0, 1]")
    return confidence, correct


def expected_calibration_error(confidence, correct, n_bins: int = 10) -> float:
    """ECE = sum_b (|b| / N) |acc(b) - conf(b)| over equal-width confidence bins.

    Bins split [0, 1] into n_bins right-closed intervals (e_{k-1}, e_k]; the first is
    [0, e_1], so a confidence of exactly 0 is counted. Empty bins contribute nothing.
    """
    confidence, correct = _predictions(confidence, correct)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges, right=True) - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    conf_sums = np.bincount(bins, weights=confidence, minlength=n_bins)
    correct_sums = np.bincount(bins, weights=correct, minlength=n_bins)
    # |sum(correct) - sum(conf)| / N per bin equals (|b| / N) |acc(b) - conf(b)|.
    return float(np.sum(np.abs(correct_sums - conf_sums)) / counts.sum())


def brier_score(confidence, correct) -> float:
    """Binary Brier score: mean (conf - correct)^2 with conf the predicted answer's confidence.

    This is the top-label form (one probability per example), not the multi-class sum
    over all answer options.
    """
    confidence, correct = _predictions(confidence, correct)
    return float(np.mean((confidence - correct) ** 2))


def mean_wrong_confidence(confidence, correct) -> float:
    """Mean confidence on the wrong predictions (docs/method.md section 8, fig. 2); nan if none wrong.

    High values mean the model is confidently wrong, the symptom STAR sets out to fix.
    """
    confidence, correct = _predictions(confidence, correct)
    wrong = correct == 0
    return float(confidence[wrong].mean()) if wrong.any() else float("nan")


def calibration_summary(confidence, correct) -> dict:
    """Accuracy, ECE, Brier and wrong-answer confidence of one evaluation, plus its size n."""
    confidence, correct = _predictions(confidence, correct)
    return {
        "accuracy": float(correct.mean()),
        "ece": expected_calibration_error(confidence, correct),
        "brier": brier_score(confidence, correct),
        "wrong_confidence": mean_wrong_confidence(confidence, correct),
        "n": int(confidence.size),
    }


def cohen_kappa(first, second) -> float:
    """Agreement of two labelings beyond chance, (p_o - p_e) / (1 - p_e) (Cohen 1960).

    NaN where it is undefined: both labelings one and the same constant leave no chance
    agreement to measure against (p_e = 1). Callers decide what that means for them.
    """
    first, second = np.asarray(first, dtype=object), np.asarray(second, dtype=object)
    if first.shape != second.shape or first.ndim != 1 or first.size == 0:
        raise ValueError("kappa needs two labelings of the same, non-zero length")
    observed = float(np.mean(first == second))
    labels = set(first.tolist()) | set(second.tolist())
    expected = sum(float(np.mean(first == c)) * float(np.mean(second == c)) for c in labels)
    if expected == 1.0:
        return float("nan")
    return (observed - expected) / (1.0 - expected)


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the average of the ranks they span."""
    uniques, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2
    return average_rank[inverse.reshape(values.shape)]


def correlation_matrix(rows, method: str = "pearson") -> np.ndarray:
    """Correlation between every pair of rows (e.g. AL rounds x pool examples, fig. 3a).

    Pearson: cov(r_i, r_j) / (sd(r_i) sd(r_j)); Spearman: Pearson on average-tie ranks.
    A constant row has no defined correlation: its entries are nan.
    """
    rows = np.asarray(rows, dtype=float)
    if rows.ndim != 2 or rows.shape[1] < 2:
        raise ValueError("correlation_matrix needs a 2-D array with at least two columns")
    if method == "spearman":
        rows = np.apply_along_axis(_ranks, 1, rows)
    elif method != "pearson":
        raise ValueError(f"unknown correlation method {method!r}: use 'pearson' or 'spearman'")
    defined = np.ptp(rows, axis=1) > 0  # exact test: rounding noise must not look like signal
    centred = rows - rows.mean(axis=1, keepdims=True)
    centred[~defined] = np.nan
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    matrix = np.clip(unit @ unit.T, -1.0, 1.0)
    matrix[np.diag_indices_from(matrix)] = np.where(defined, 1.0, np.nan)
    return matrix


def pearson(x, y) -> float:
    """Pearson correlation cov(x, y) / (sd(x) sd(y)); nan if either input is constant."""
    return float(correlation_matrix(np.vstack([x, y]))[0, 1])


def spearman(x, y) -> float:
    """Spearman rank correlation: Pearson on ranks, ties given their average rank."""
    return float(correlation_matrix(np.vstack([x, y]), method="spearman")[0, 1])
