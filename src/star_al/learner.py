"""Active learning step by step over your own model, task and pool.

    learner = star_al.Learner("smollm2-135m", "sst2", pool=[{"sentence": ...}, ...], out="runs/mine")
    batch = learner.query()            # ids, examples, the model's answers, its uncertainty
    learner.teach({batch.ids[0]: "positive", ...})
    record = learner.fit()             # a fresh adapter on every label so far; the round's record
    learner.evaluate(test)             # accuracy, ECE, Brier of the current adapter

It is the same loop as `star run --labels human`: every step is written to its run
directory atomically (labels into the append-only ledger, validated exactly as `star
label` validates), so a learner reopened with `Learner.load` (or the directory continued
with `star resume`) ends where an uninterrupted one would.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from star_al.al.loop import ActiveLearningRun
from star_al.al.run_dir import RunDir
from star_al.data.catalog import load_task
from star_al.data.records import dataset_records, read_records
from star_al.data.tasks import Example, Task, task_from_config
from star_al.engine.evaluation import evaluate
from star_al.errors import StarError
from star_al.labeling.oracle import Batch, Label, Oracle
from star_al.labeling.people import AwaitingLabels
from star_al.rounds import RoundRecord
from star_al.runs import Machine, configure_task, import_labels, load_model

LABEL_SOURCE = "python"


def make_task(name: str, prompt: str, labels: list[str] | None = None, *, answer: str = "label",
              answer_type: str | None = None, target: str | None = None, **options) -> Task:
    """A task built in Python, as a task YAML would declare it.

    `prompt` is a template over the record's fields (`"Review: {sentence}\\nSentiment:"`);
    `labels` the allowed answers (a label task), else `answer_type` "number" or "text";
    `answer` the record field holding the answer; `target` the text training teaches
    (default " {gold}"). Further keys (answer_pattern, normalize, training, ...) as in YAML.
    """
    spec = {"name": name, "prompt": prompt, "answer": answer,
            "answer_type": answer_type or ("label" if labels else "text"), **options}
    if labels is not None:
        spec["labels"] = list(labels)
    if target is not None:
        spec["target"] = target
    return task_from_config(spec, Path(f"<task {name}>"), builtin=True)


def as_task(task) -> Task:
    """A Task as given, or the built-in task or task YAML a name or path stands for."""
    return task if isinstance(task, Task) else load_task(str(task))


def examples_of(task: Task, data, what: str, require_answer: bool) -> list[Example]:
    """Examples from a list of dicts (or of Examples), a `datasets.Dataset`, or a data file: JSONL,
    CSV, Parquet (by its suffix) or a folder a `datasets` dataset was saved to."""
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.exists():
            raise StarError(f"{what} file {path} not found")
        return task.build_examples(read_records(path), require_answer)
    if "datasets" in sys.modules and isinstance(data, sys.modules["datasets"].Dataset):
        return task.build_examples(dataset_records(data, what), require_answer)
    rows = list(data)
    if rows and all(isinstance(row, Example) for row in rows):
        return rows
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            raise StarError(f"{what}[{n}]: a record must be a dict of fields, got {type(row).__name__}")
    return task.build_examples(((f"{what}[{n}]", dict(row)) for n, row in enumerate(rows)), require_answer)


class _WaitForTeach(Oracle):
    """The learner's labeler: answers come only through teach(); asking before them stops the step."""

    simulated = False
    source = LABEL_SOURCE

    def label(self, batch: Batch) -> list[Label]:
        raise AwaitingLabels(f"round {batch.round}: {len(batch.examples)} of the batch have no label yet; "
                             "teach() them, or fit(partial=True) to train on what is there")


class Learner:
    """A step-wise active learner: query, teach, fit, evaluate; its directory is a run directory."""

    def __init__(self, model, task, pool, out: str | Path, *, test=None, strategy: str = "me+star",
                 preset: str = "cpu", seed: int = 0, tokenizer=None, machine: Machine = Machine(), **settings):
        self.task = as_task(task)
        self.backbone = load_model(model, machine, tokenizer=tokenizer)
        named_model = isinstance(model, (str, Path))
        settings.setdefault("model", str(model) if named_model else self.backbone.name)
        config = configure_task(self.task, strategy, preset, seed, labels="human", evaluate=test is not None,
                                **settings)
        self._open(config, pool, test, out, machine, named_model)

    def _open(self, config, pool, test, out, machine: Machine, shared_cache: bool) -> None:
        self.pool = examples_of(self.task, pool, "pool", require_answer=False)
        self.test = examples_of(self.task, test, "test", require_answer=True) if test is not None else []
        if config.test_limit:  # as a run cuts its test set (the smoke preset evaluates 12)
            self.test = self.test[:config.test_limit]
        self.run_dir = RunDir(out)
        # A model object has no name the shared base-score cache could key on: its scores stay in the run.
        self._run = ActiveLearningRun(config, self.task, self.pool, self.test, self.backbone, self.run_dir,
                                      oracle=_WaitForTeach(), cache_root=machine.cache_root if shared_cache else None,
                                      partial=False)

    @classmethod
    def load(cls, out: str | Path, model, pool, *, test=None, task=None, tokenizer=None,
             machine: Machine = Machine()) -> "Learner":
        """Reopen a learner's directory with the same model, pool (and test set); a task built in
        Python must be given again, a named one is read from the directory."""
        config = RunDir(out).read_config()
        learner = cls.__new__(cls)
        learner.task = as_task(task if task is not None else config.task)
        learner.backbone = load_model(model, machine, tokenizer=tokenizer)
        learner._open(config, pool, test, out, machine, isinstance(model, (str, Path)))
        return learner

    @property
    def config(self):
        return self._run.config

    @property
    def rounds(self) -> list[RoundRecord]:
        """The finished rounds, as the run directory holds them."""
        return self.run_dir.read_rounds()

    @property
    def done(self) -> bool:
        """Whether the run's rounds (or a stopping criterion) have ended it."""
        with self._run.session():
            return self._run.finished

    def query(self, k: int | None = None) -> Batch:
        """The next batch to label: its ids, examples, the current model's answers and uncertainty.

        Round 0 is the warm start (`warm_start` examples), each later round `query_size`;
        `k`, when given, must be that size (both are fixed when the learner is made). A batch
        asked for again before fit() is the same batch.
        """
        with self._run.session():
            expected = self._run.next_batch_size()
            if k is not None and k != expected:
                raise StarError(f"this learner's round {len(self._run.rounds)} queries {expected} examples, not {k}; "
                                "the sizes are fixed when it is made (warm_start=..., query_size=...)")
            return self._run.query_next()

    def teach(self, labels, annotator: str | None = None) -> int:
        """Add answers for the waiting batch: {id: answer}, [(id, answer), ...] or [{"id":, "answer":}, ...],
        given by `annotator` (a learner made with annotators=N > 1 needs one each time).

        Checked whole as `star label` checks a file; nothing is kept from a refused call. An
        empty answer ("" or None) is not a label yet; an answer the ledger holds already is
        skipped. Returns how many of the batch are still without a label (those with an empty
        answer, and with several annotators those not yet resolved, among them).
        """
        if isinstance(labels, dict):
            rows = [(f"teach[{key!r}]", key, value) for key, value in labels.items()]
        else:
            rows = []
            for n, item in enumerate(labels):
                if isinstance(item, dict):
                    rows.append((f"teach[{n}]", item.get("id"), item.get("answer")))
                elif isinstance(item, (tuple, list)) and len(item) == 2:
                    rows.append((f"teach[{n}]", item[0], item[1]))
                else:
                    raise StarError(f"teach[{n}]: give (id, answer) pairs or dicts with id and answer")
        return import_labels(self.run_dir.path, rows, LABEL_SOURCE, task=self.task, annotator=annotator).left

    def fit(self, partial: bool = False) -> RoundRecord:
        """Train a fresh adapter on every label so far, evaluate it (with a test set), and finish the round.

        With labels missing from the batch this refuses, unless `partial`: then it trains on
        what is there and the rest stays queued into the next batch.
        """
        with self._run.session():
            if self._run.finished:
                raise StarError(f"{self.run_dir.path}: the run is finished ({len(self._run.rounds)} rounds)")
            self._run.partial = partial
            try:
                return self._run.next_round()
            finally:
                self._run.partial = False

    def evaluate(self, data=None, batch_size: int | None = None) -> dict:
        """Accuracy, ECE and Brier of the current model on `data` (default: the learner's test set)."""
        examples = self.test if data is None else examples_of(self.task, data, "data", require_answer=True)
        if not examples:
            raise StarError("nothing to evaluate on: give data, or make the learner with a test set")
        with self._run.session():
            _, summary = evaluate(self._run.model, self.backbone.tokenizer, self.task, examples,
                                  batch_size or self.config.score_batch_size)
        return summary

    def save(self, path: str | Path) -> Path:
        """A copy of the learner's directory at `path` (every step is already on disk in its own)."""
        target = Path(path)
        if target.exists():
            raise StarError(f"{target} exists; save into a new folder")
        with self._run.session():
            shutil.copytree(self.run_dir.path, target, ignore=shutil.ignore_patterns(".lock", ".lock.pid"))
        return target
