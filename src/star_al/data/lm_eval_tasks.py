"""Any lm-evaluation-harness task as a star task: the pool and test set from lm-eval's own
task definition (its dataset, doc_to_text, doc_to_choice, doc_to_target, Jinja templates,
generation_kwargs and filters).

`--task lm-eval:NAME` takes a task lm-eval knows; `--task path/to/task.yaml` a task YAML in
lm-eval's format (recognised by its `task:` key). The pool is the task's training split
and the test set the split lm-eval evaluates on; prompts are lm-eval's zero-shot contexts
(the adapter learns the format from the labels). Three kinds of lm-eval task:
- multiple choice, the same choices for every example (sentiment, yes/no, NLI...): a label
  task, scored like lm-eval scores it (the log-likelihood of delimiter + choice);
- multiple choice whose choices differ per example (ARC, OpenBookQA, HellaSwag, MMLU...): a
  choice task; each Example carries its candidates, scored as engine/choices.py says;
- generate_until (GSM8K...): a generated-answer task; greedy generation stops at lm-eval's
  `until` strings or `max_gen_toks`, and lm-eval's own filters of the task's first filter
  pipeline (regex extraction, take_first...) read the answer, its metric (exact_match) on the
  document says if it is right.
Optional: `pip install 'star-al[lm-eval]'`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from star_al.data.tasks import CHOICE, Example, Task
from star_al.errors import StarError

DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's HFLM default when a task names none
_MAX_GEN_KEYS = ("max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens")  # lm-eval's order
_ACCURACY_METRICS = ("exact_match", "acc")


class _AnyTag(yaml.SafeLoader):
    """Reads lm-eval YAMLs (which use tags such as !function) just to find their keys."""


_AnyTag.add_multi_constructor("!", lambda loader, suffix, node: None)


def is_lm_eval_yaml(path: Path) -> bool:
    try:
        config = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_AnyTag)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    return isinstance(config, dict) and "task" in config and "name" not in config


@dataclass(frozen=True)
class LmEvalGenerationTask(Task):
    """A generate_until lm-eval task. A generation stops once it holds one of `until`, is cut
    at the first of them (as lm-eval cuts it), and `filters` (lm-eval's filter steps) turn the
    rest into the answer; `lm_task.process_results` on the example's document judges it."""

    until: tuple[str, ...] = ()
    filters: tuple = field(default=(), hash=False, compare=False, repr=False)
    lm_task: Any = field(default=None, hash=False, compare=False, repr=False)
    metric: str = "exact_match"

    def answer_complete(self, generated: str) -> bool:
        return any(stop in generated for stop in self.until)

    def extract_answer(self, generated: str) -> str | None:
        return self._filtered(generated, None)

    def prediction_for(self, example: Example, generated: str) -> str | None:
        return self._filtered(generated, _doc_of(example))

    def is_correct_for(self, example: Example, prediction: str | None) -> bool:
        doc = _doc_of(example)
        if doc is None or prediction is None:
            return super().is_correct_for(example, prediction)
        return float(self.lm_task.process_results(doc, [prediction])[self.metric]) > 0

    def _filtered(self, generated: str, doc: dict | None) -> str | None:
        for stop in self.until:
            generated = generated.split(stop)[0]
        responses = [[generated]]  # lm-eval's shape: per document, its list of responses
        for make_filter in self.filters:
            responses = list(make_filter().apply(responses, [doc]))  # some filters return iterators
        answer = responses[0]
        while isinstance(answer, (list, tuple)):  # a pipeline without take_first keeps the list
            answer = answer[0] if answer else None
        return None if answer is None else str(answer)


def _doc_of(example: Example) -> dict | None:
    return (example.record or {}).get("doc")


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
    if lm_task.OUTPUT_TYPE not in ("multiple_choice", "generate_until"):
        raise StarError(f"lm-eval task {name} is {lm_task.OUTPUT_TYPE}; star takes multiple_choice and "
                        "generate_until lm-eval tasks")
    if not lm_task.has_training_docs():
        raise StarError(f"lm-eval task {name} has no training split to draw a pool from")
    docs = {"train": list(lm_task.training_docs()), "test": list(lm_task.eval_docs)}
    if lm_task.OUTPUT_TYPE == "generate_until":
        return _generation_task(spec, name, lm_task, docs)
    if getattr(lm_task, "multiple_input", 0):
        raise StarError(f"lm-eval task {name} puts its choices in the context (one context per choice, as "
                        "Winogrande does); star takes multiple-choice tasks whose choices are continuations")
    choices = None
    for doc in docs["train"][:200] + docs["test"][:200]:
        these = list(lm_task.doc_to_choice(doc))
        if choices is None:
            choices = these
        elif these != choices:
            return _choice_task(spec, name, lm_task, docs)
    delimiter = lm_task.config.target_delimiter
    task = Task(name=name, answer_type="label", labels=tuple(choices), source=spec, prompt="{text}", answer="answer",
                target=delimiter + "{gold}", data=None, builtin=False)
    object.__setattr__(task, "loader", partial(_label_examples, task, lm_task, choices, docs))
    return task


def _context(lm_task, doc) -> str:
    """lm-eval's zero-shot context of a document: its description, then doc_to_text."""
    return lm_task.fewshot_context(doc, 0)


def _label_examples(task, lm_task, choices, docs, split: str, require_answer: bool = True):
    """One record per document: lm-eval's zero-shot context and the gold choice."""
    records = []
    for n, doc in enumerate(docs[split]):
        gold = lm_task.doc_to_target(doc)
        answer = choices[gold] if isinstance(gold, int) and 0 <= gold < len(choices) else gold
        records.append((f"lm-eval {lm_task.config.task} {split} doc {n}",
                        {"text": _context(lm_task, doc), "answer": answer, "doc": doc}))
    return task.build_examples(records, require_answer)


def _choice_task(spec: str, name: str, lm_task, docs) -> Task:
    task = Task(name=name, answer_type=CHOICE, labels=(), source=spec, prompt="{text}", answer="answer",
                target=lm_task.config.target_delimiter + "{gold}", data=None, builtin=False)
    object.__setattr__(task, "loader", partial(_choice_examples, task, lm_task, docs))
    return task


def _choice_examples(task, lm_task, docs, split: str, require_answer: bool = True) -> list[Example]:
    """One example per document: lm-eval's zero-shot context, its choices, the gold choice."""
    examples = []
    for n, doc in enumerate(docs[split]):
        where = f"lm-eval {lm_task.config.task} {split} doc {n}"
        choices = [str(choice) for choice in lm_task.doc_to_choice(doc)]
        if not choices:
            raise StarError(f"{where}: no choices")
        gold = lm_task.doc_to_target(doc)
        gold = gold[0] if isinstance(gold, list) and gold else gold  # several right answers: the first trains
        if isinstance(gold, int) and 0 <= gold < len(choices):
            gold = choices[gold]
        if gold not in choices:
            raise StarError(f"{where}: its target {gold!r} is not one of its choices ({' | '.join(choices)})")
        context = _context(lm_task, doc)
        examples.append(Example(id=n, prompt=context, target=task.target.format(gold=gold), gold=gold,
                                record={"text": context, "answer": gold, "choices": choices, "doc": doc},
                                choices=tuple(choices)))
    return examples


def _generation_task(spec: str, name: str, lm_task, docs) -> Task:
    """A generated-answer task from lm-eval's generation_kwargs, its first filter pipeline and metric."""
    kwargs = dict(lm_task.config.generation_kwargs or {})
    if kwargs.get("do_sample") or float(kwargs.get("temperature") or 0.0) > 0 or (lm_task.config.repeats or 1) > 1:
        raise StarError(f"lm-eval task {name} samples its answers (do_sample, temperature or repeats); "
                        "star generates greedily")
    until = kwargs.get("until") or []
    until = [until] if isinstance(until, str) else list(until)
    max_gen_toks = next((kwargs[key] for key in _MAX_GEN_KEYS if kwargs.get(key) is not None), DEFAULT_MAX_GEN_TOKS)
    metrics = list(lm_task.aggregation())
    metric = next((m for m in _ACCURACY_METRICS if m in metrics), None)
    if metric is None:
        raise StarError(f"lm-eval task {name} measures {', '.join(metrics)}; star measures accuracy and takes "
                        f"generate_until tasks with {' or '.join(_ACCURACY_METRICS)}")
    pipelines = getattr(lm_task, "_filters", None) or []
    task = LmEvalGenerationTask(
        name=name, answer_type="text", labels=(), source=spec, prompt="{text}", answer="answer",
        target=lm_task.config.target_delimiter + "{gold}", data=None, builtin=False,
        max_new_tokens=int(max_gen_toks), until=tuple(stop for stop in until if stop),
        filters=tuple(pipelines[0].filters) if pipelines else (), lm_task=lm_task, metric=metric)
    object.__setattr__(task, "loader", partial(_generation_examples, task, lm_task, docs))
    return task


def _generation_examples(task, lm_task, docs, split: str, require_answer: bool = True) -> list[Example]:
    """One example per document: lm-eval's zero-shot context and its target, which training teaches."""
    examples = []
    for n, doc in enumerate(docs[split]):
        gold = lm_task.doc_to_target(doc)
        if lm_task.config.doc_to_choice is not None and isinstance(gold, int):
            gold = lm_task.doc_to_choice(doc)[gold]
        gold = str(gold[0] if isinstance(gold, list) and gold else gold)  # several right answers: the first trains
        context = _context(lm_task, doc)
        examples.append(Example(id=n, prompt=context, target=task.target.format(gold=gold), gold=gold,
                                record={"text": context, "answer": gold, "doc": doc}))
    return examples
