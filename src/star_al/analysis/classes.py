"""The report's per-class view of a label task: each class's test accuracy after the last round,
and how many labels of each class a strategy asked for.

On an imbalanced task a strategy can gain overall accuracy while never asking about a rare
class; that class's accuracy and label count show it here. rounds.jsonl packs only which test
examples a round got right (`test_correct`), so each example's class comes from the run's
predictions files where they are on disk, else from the task's test split, read as the run read
it and checked against the run's data fingerprint (config.json `data_hash`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from star_al.analysis.paired import read_correct
from star_al.analysis.tables import markdown_grid
from star_al.config import RunConfig
from star_al.data.catalog import load_task
from star_al.data.tasks import fingerprint, load_examples
from star_al.errors import StarError
from star_al.labeling.ledger import LabelLedger

LEDGER_FILE = "labels.jsonl"
LARGE_POOL = RunConfig.large_pool  # the default; a run's config.json says its own


@dataclass(frozen=True)
class RunClasses:
    """One run's per-class figures: accuracy after its last round, and the labels by class."""

    seed: object
    labels: tuple[str, ...]
    test_counts: dict[str, int]           # test examples of each class
    accuracy: dict[str, float]            # fraction right after the last round; nan without test examples
    queried: dict[str, int] | None        # labels the strategy chose (rounds 1.., and round 0 if it chose it)
    warm_start: dict[str, int] | None     # round 0's labels where drawn at random, else None

    @property
    def balanced_accuracy(self) -> float:
        return balanced_accuracy(self.accuracy)


def class_accuracy(correct, golds, labels) -> dict[str, float]:
    """Per label, the fraction of its test examples that `correct` marks right (nan where none)."""
    correct, golds = np.asarray(correct, dtype=bool), np.asarray(golds, dtype=object)
    return {label: float(correct[golds == label].mean()) if (golds == label).any() else float("nan")
            for label in labels}


def balanced_accuracy(per_class: dict[str, float]) -> float:
    """The mean of the per-class accuracies over the classes the test set holds (nan: none)."""
    present = [value for value in per_class.values() if not np.isnan(value)]
    return float(np.mean(present)) if present else float("nan")


def label_counts(answers, labels) -> dict[str, int]:
    """How many of `answers` name each label (compared as the task does, case-insensitively)."""
    canonical = {label.lower(): label for label in labels}
    counts = dict.fromkeys(labels, 0)
    for answer in answers:
        label = canonical.get(str(answer).strip().lower())
        if label is not None:
            counts[label] += 1
    return counts


def test_golds(run_path: Path, config: dict, rounds: list[dict], task, data_cache: dict | None = None) -> list[str]:
    """Each test example's gold answer, in id order: from the last round's predictions file, else
    from the task's test split, read as the run read it (its data folder if still there, else the
    default data root; cut to its test_limit) and refused unless it is the data the run
    fingerprinted (a pool of `large_pool` examples or more was fingerprinted from its index: not checked)."""
    path = Path(run_path) / "predictions" / f"round-{rounds[-1]['round']:02d}.jsonl"
    if path.is_file():
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [line["gold"] for line in sorted(lines, key=lambda line: line["id"])]
    data_dir = config.get("data_dir")
    folder = data_dir if data_dir and Path(data_dir).is_dir() else None
    key = (task.name, folder, config.get("test_limit"), config.get("labels", "gold"), config.get("large_pool"))
    cache = data_cache if data_cache is not None else {}
    if key not in cache:
        test = load_examples(task, "test", data_dir=folder)
        test = test[:config["test_limit"]] if config.get("test_limit") else test
        pool = load_examples(task, "train", data_dir=folder, require_answer=key[3] == "gold")
        checkable = len(pool) < config.get("large_pool", LARGE_POOL)
        cache[key] = ([ex.gold for ex in test], fingerprint(pool, test) if checkable else None)
    golds, digest = cache[key]
    if digest is not None and config.get("data_hash") not in (None, digest):
        raise StarError(f"{run_path}: the {task.name} data found now ({folder or 'under the default data root'}) "
                        "is not the data the run was evaluated on (its data_hash differs)")
    return golds


def run_classes(run, task, data_cache: dict | None = None) -> RunClasses:
    """`run` (analysis/report.py Run) by class; StarError says why where it cannot be shown."""
    correct = read_correct(run.path, run.rounds)
    if correct is None:
        raise StarError(f"{run.path}: no test predictions (predictions files or rounds.jsonl test_correct)")
    golds = test_golds(run.path, run.config, run.rounds, task, data_cache)
    if len(golds) != correct.shape[1]:
        raise StarError(f"{run.path}: {correct.shape[1]} test results but {len(golds)} test examples in the data")
    labels = task.labels
    queried = warm = None
    ledger_path = run.path / LEDGER_FILE
    if ledger_path.is_file():
        answers = {i: entry["answer"] for i, entry in LabelLedger(
            ledger_path, run.config.get("annotators") or 1, run.config.get("resolve") or "majority").labels().items()}
        chose_warm_start = (run.config.get("warm_start_by") or "random") != "random"
        chosen = [i for record in run.rounds[0 if chose_warm_start else 1:] for i in record["selected_ids"]]
        queried = label_counts([answers[i] for i in chosen if i in answers], labels)
        if not chose_warm_start:
            warm = label_counts([answers[i] for i in run.rounds[0]["selected_ids"] if i in answers], labels)
    return RunClasses(run.seed, labels, label_counts(golds, labels), class_accuracy(correct[-1], golds, labels),
                      queried, warm)


def class_tables(runs, order: Callable[[list[str]], list[str]] = sorted) -> str:
    """Per label task: a table of per-class accuracy after the last round and one of the labels
    queried per class, each strategy's mean over its seeds; empty when no run is of a label task.
    `order` puts a task's strategies in the report's order."""
    by_task: dict[str, list] = {}
    for run in runs:
        by_task.setdefault(run.task, []).append(run)
    sections, data_cache = [], {}
    for task_name in sorted(by_task):
        try:
            task = load_task(task_name)
        except StarError as error:
            sections.append(f"### {task_name}\n\nNot shown: {error}")
            continue
        if task.answer_type != "label":
            continue
        found, missing = strategy_classes(task, by_task[task_name], data_cache)
        if found:
            sections.append(f"### {task_name}\n\n" + classes_tables(found, order))
        if missing:
            sections.append(f"Left out of the {task_name} class tables: " + "; ".join(missing))
    return "\n\n".join(sections)


def strategy_classes(task, runs, data_cache: dict | None = None) -> tuple[dict[str, list[RunClasses]], list[str]]:
    """Each strategy's runs by class, and why each run that cannot be shown is left out."""
    found, missing = {}, []
    for run in runs:
        try:
            view = run_classes(run, task, data_cache)
        except StarError as error:
            missing.append(str(error))
            continue
        found.setdefault(run.strategy, []).append(view)
    return found, missing


def classes_tables(found: dict[str, list[RunClasses]], order: Callable[[list[str]], list[str]] = sorted) -> str:
    """The two class tables (no heading) over strategy -> its runs' views, all of one task."""
    labels = next(iter(found.values()))[0].labels
    return _accuracy_table(found, labels, order) + "\n\n" + _labels_table(found, labels, order)


def _accuracy_table(found: dict[str, list[RunClasses]], labels, order) -> str:
    test_counts = next(iter(found.values()))[0].test_counts
    body = []
    for strategy in order(list(found)):
        views = found[strategy]
        cells = [_mean_sd([view.accuracy[label] for view in views]) for label in labels]
        body.append([strategy, str(len(views)), *cells, _mean_sd([view.balanced_accuracy for view in views])])
    caption = ("Accuracy on each class's test examples after the last round, in percent: mean ± sd over seeds "
               "(a class a strategy never learned reads near 0), and the balanced accuracy, the mean over the "
               "classes.")
    header = ["method", "seeds", *(f"{label} ({test_counts[label]})" for label in labels), "balanced"]
    return caption + "\n\n" + markdown_grid(header, body)


def _labels_table(found: dict[str, list[RunClasses]], labels, order) -> str:
    body = []
    by_seed = {view.seed: view.warm_start for views in found.values() for view in views if view.warm_start is not None}
    warm = list(by_seed.values())  # a seed's random warm start is the same for every strategy
    if warm:
        body.append(["warm start (random)", str(len(warm)),
                     *(_count_cell([w[label] for w in warm]) for label in labels)])
    for strategy in order(list(found)):
        counts = [view.queried for view in found[strategy] if view.queried is not None]
        if counts:
            body.append([strategy, str(len(counts)), *(_count_cell([c[label] for c in counts]) for label in labels)])
    if not body:
        return "No label ledgers (labels.jsonl): the labels queried per class are not known."
    caption = ("Labels of each class a strategy queried after the warm start (with its warm start where it chose "
               "that too), as its labellers answered them: mean over seeds, and in how many seeds it queried none "
               "of the class; the random warm start's own labels on the first line, over the seeds that drew one.")
    return caption + "\n\n" + markdown_grid(["method", "seeds", *labels], body)


def _mean_sd(fractions) -> str:
    values = [100 * v for v in fractions if not np.isnan(v)]
    if not values:
        return "n/a"
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.1f} ± {sd:.1f}"


def _count_cell(counts) -> str:
    none = sum(count == 0 for count in counts)
    return f"{np.mean(counts):.1f}" + (f" (none in {none})" if none else "")
