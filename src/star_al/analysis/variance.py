"""Where a learning curve's noise comes from: the seed, the training run, the test sample.

A nested design: S seeds (each its own warm start, pool and queries), each trained with T
training seeds (`--train-seed`: adapter init, dropout, batch order; with `random` the
labels stay the same). For one curve point (or the AUC) with value y[s, t]:

- training: the pooled variance across training seeds within a seed (ddof 1);
- seed: the variance of the seed means less what training noise leaves in them,
  var(mean_t y[s, .]) - training / T (the one-way random-effects estimator, floored at 0);
- test sample: the variance of a run's accuracy over resamples of the test sentences,
  p (1 - p) / n from its saved predictions, averaged over runs (0 when predictions are
  gone). Every run shares the same test set, so this part never shows between runs; it
  is how far the figure would move on another test sample of that size.

One run's point then scatters by sqrt(seed + training) around the mean a user would get
with many seeds, and its standard error over n seeds is sqrt((seed + training) / n).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from star_al import metrics
from star_al.analysis.paired import read_correct
from star_al.errors import StarError


@dataclass
class Decomposition:
    """Standard deviations (fractions) of one curve point, or of the AUC (round None)."""

    round: int | None
    n_labeled: float | None
    mean: float
    seed_sd: float
    train_sd: float
    test_sd: float | None
    n_seeds: int
    n_train: int

    @property
    def run_sd(self) -> float:
        """How far one run's value falls from the many-seed mean (seed and training together)."""
        return float(np.sqrt(self.seed_sd ** 2 + self.train_sd ** 2))


def decompose(values: dict, test_variances: dict | None = None) -> tuple[float, float, float, float | None]:
    """(mean, seed variance, training variance, test variance) of {seed: {train_seed: value}}.

    `test_variances` holds the same keys with each run's test-sample variance (or is None).
    Every seed needs two training seeds or more, and two seeds or more are needed.
    """
    groups = [np.asarray(list(by_train.values()), dtype=float) for by_train in values.values()]
    if len(groups) < 2 or any(g.size < 2 for g in groups):
        raise StarError("a variance split needs 2 seeds or more, each with 2 training seeds or more "
                        f"(have {[g.size for g in groups]} training seeds over {len(groups)} seeds)")
    within = [g.var(ddof=1) for g in groups]
    train = float(np.average(within, weights=[g.size - 1 for g in groups]))
    means = np.array([g.mean() for g in groups])
    seed = max(0.0, float(means.var(ddof=1) - np.mean([train / g.size for g in groups])))
    test = None
    if test_variances is not None:
        test = float(np.mean([v for by_train in test_variances.values() for v in by_train.values()]))
    return float(np.mean(np.concatenate(groups))), seed, train, test


def variance_table(runs) -> list[tuple[str, str, list[Decomposition]]]:
    """Per (task, strategy): a decomposition of every round's accuracy and of the AUC."""
    groups = defaultdict(list)
    for run in runs:
        groups[(run.task, run.strategy)].append(run)
    tables = []
    for (task, strategy), group in sorted(groups.items()):
        cells: dict = defaultdict(dict)
        for run in group:
            train_seed = run.config.get("train_seed")
            key = run.seed if train_seed is None else train_seed
            if key in cells[run.seed]:
                raise StarError(f"two runs of {task}/{strategy} seed {run.seed} train seed {key}: "
                                f"{cells[run.seed][key].path} and {run.path}")
            cells[run.seed][key] = run
        n_rounds = min(len(run.rounds) for run in group)
        correct = {run.path: read_correct(run.path, run.rounds[:n_rounds]) for run in group}
        have_test = all(c is not None for c in correct.values())
        rows = []
        for index in [*range(n_rounds), None]:
            values, tests = {}, {}
            for seed, by_train in cells.items():
                values[seed], tests[seed] = {}, {}
                for key, run in by_train.items():
                    n, acc = run.curve()
                    n, acc = n[:n_rounds], acc[:n_rounds]
                    values[seed][key] = metrics.auc(n, acc) if index is None else acc[index]
                    if have_test:
                        tests[seed][key] = _test_variance(correct[run.path], n, index)
            mean, seed_var, train_var, test_var = decompose(values, tests if have_test else None)
            n_labeled = None if index is None else float(group[0].rounds[index]["n_labeled"])
            rows.append(Decomposition(index, n_labeled, mean, np.sqrt(seed_var), np.sqrt(train_var),
                                      None if test_var is None else float(np.sqrt(test_var)),
                                      len(cells), min(len(v) for v in cells.values())))
        tables.append((task, strategy, rows))
    return tables


def _test_variance(correct: np.ndarray, n_labeled: np.ndarray, index: int | None) -> float:
    """The variance of a round's accuracy (or of the AUC) over resamples of the test sentences.

    For one round it is p (1 - p) / n. The AUC is a fixed weighted sum of the rounds'
    accuracies, so its variance is w' C w / n with C the covariance of the rounds'
    per-sentence correctness (the same sentences are scored every round).
    """
    n_sentences = correct.shape[1]
    if index is not None:
        return float(correct[index].var() / n_sentences)
    weights = metrics.auc_weights(n_labeled)
    covariance = np.atleast_2d(np.cov(correct, bias=True))
    return float(weights @ covariance @ weights / n_sentences)


def markdown(tables) -> str:
    """The split as Markdown, in accuracy points (standard deviations)."""
    parts = []
    for task, strategy, rows in tables:
        first = rows[0]
        lines = [f"### {task} / {strategy}: {first.n_seeds} seeds x {first.n_train} training seeds",
                 "",
                 "| round | labels | mean | sd seed | sd training | sd test sample | sd one run |",
                 "|---|---|---|---|---|---|---|"]
        for row in rows:
            where = ("AUC", "") if row.round is None else (str(row.round), f"{row.n_labeled:.0f}")
            test = "n/a" if row.test_sd is None else f"{100 * row.test_sd:.2f}"
            lines.append(f"| {where[0]} | {where[1]} | {100 * row.mean:.2f} | {100 * row.seed_sd:.2f} | "
                         f"{100 * row.train_sd:.2f} | {test} | {100 * row.run_sd:.2f} |")
        parts.append("\n".join(lines))
    note = ("sd seed: warm start, pool and queries; sd training: adapter init, dropout and batch order "
            "with the same seed; sd test sample: how far the figure would move on another test sample "
            "of the same size (shared by every run, so it never shows between runs); sd one run: "
            "sqrt(seed^2 + training^2), one run's distance from the many-seed mean.")
    return "\n\n".join(parts + [note])
