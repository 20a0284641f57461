"""Any lm-evaluation-harness task as a star task: the pool and test set from lm-eval's own
task definition (its dataset, doc_to_text, doc_to_choice, doc_to_target, Jinja templates).

`--task lm-eval:NAME` takes a task lm-eval knows; `--task path/to/task.yaml` a task YAML in
lm-eval's format (recognised by its `task:` key). The pool is the task's training split
and the test set the split lm-eval evaluates on. Multiple-choice tasks whose choices are
the same for every example (sentiment, yes/no, NLI...) are supported: they become label
tasks, scored like lm-eval scores them (the log-likelihood of delimiter + choice).
Optional: `pip install 'star-al[lm-eval]'`.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import yaml

from star_al.data.tasks import Task
from star_al.errors import StarError


class _AnyTag(yaml.SafeLoader):
    """Reads lm-eval YAMLs (which use tags such as !function) just to find their keys."""


_AnyTag.add_multi_constructor("!", lambda loader, suffix, node: None)


def is_lm_eval_yaml(path: Path) -> bool:
    try:
        config = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_AnyTag)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    return isinstance(config, dict) and "task" in config and "name" not in config


def load_lm_eval_task(spec: str) -> Task:
    try:
        from lm_eval.tasks import TaskManager
    except ImportError as error:
        raise StarError(f"task {spec}: lm-eval tasks need lm-eval: pip install 'star-al[lm-eval]'") from error
    if spec.startswith("lm-eval:"):
        name, manager = spec.removeprefix("lm-eval:"), TaskManager()
    else:
        path = Path(spec).expanduser().resolve()
        name = yaml.load(path.read_text(encoding="utf-8"), Loader=_AnyTag)["task"]
        manager = TaskManager(include_path=str(path.parent), include_defaults=False)
    try:
        lm_task = manager.load(name)["tasks"][name]
    except Exception as error:  # unknown name, unreachable dataset, template errors: one line
        raise StarError(f"lm-eval task {spec}: {type(error).__name__}: {str(error).splitlines()[0][:300]}") from error
    if lm_task.OUTPUT_TYPE != "multiple_choice":
        raise StarError(f"lm-eval task {name} is {lm_task.OUTPUT_TYPE}; star takes multiple_choice lm-eval tasks")
    if not lm_task.has_training_docs():
        raise StarError(f"lm-eval task {name} has no training split to draw a pool from")
    train, test = list(lm_task.training_docs()), list(lm_task.eval_docs)
    choices = None
    for doc in train[:200] + test[:200]:
        these = list(lm_task.doc_to_choice(doc))
        if choices is None:
            choices = these
        elif these != choices:
            raise StarError(f"lm-eval task {name}: its choices differ between examples ({choices} vs {these}); "
                            "star takes tasks with one set of choices")
    delimiter = lm_task.config.target_delimiter
    task = Task(name=name, answer_type="label", labels=tuple(choices), source=spec, prompt="{text}", answer="answer",
                target=delimiter + "{gold}", data=None, builtin=False)
    docs = {"train": train, "test": test}
    object.__setattr__(task, "loader", partial(_examples, task, lm_task, choices, docs))
    return task


def _examples(task, lm_task, choices, docs, split: str, require_answer: bool = True):
    """One record per document: lm-eval's zero-shot context and the gold choice."""
    description = lm_task.config.description or ""
    records = []
    for n, doc in enumerate(docs[split]):
        gold = lm_task.doc_to_target(doc)
        answer = choices[gold] if isinstance(gold, int) and 0 <= gold < len(choices) else gold
        records.append((f"lm-eval {lm_task.config.task} {split} doc {n}",
                        {"text": description + lm_task.doc_to_text(doc), "answer": answer, "doc": doc}))
    return task.build_examples(records, require_answer)
