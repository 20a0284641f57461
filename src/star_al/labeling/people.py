"""People label: each queried batch goes out to the run's labelling tools (labeling/tools.py),
and their answers come back through `star label` (or Learner.teach), checked whole before
any is kept.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import NamedTuple

from star_al.data.tasks import CHOICE, normalize_number
from star_al.errors import StarError
from star_al.labeling.batch_files import BatchFiles
from star_al.labeling.oracle import Batch, Label, Oracle


class AwaitingLabels(StarError):
    """The queried batch is out with people; the run continues with `star resume` once labeled."""


class HumanOracle(Oracle):
    """Sends the batch to every labelling tool of the run and stops it until the labels are in the ledger."""

    simulated = False
    source = "person"

    def __init__(self, run_path: Path, task, tools: list):
        self.run_path, self.task, self.tools = Path(run_path), task, list(tools)

    def label(self, batch: Batch) -> list[Label]:
        for tool in self.tools:  # the run directory says where the batch goes before it goes anywhere
            tool.expect(batch.round)
        for tool in self.tools:  # each sends what it has not sent: asking again reminds, or finishes a failed push
            tool.push(self.task, batch)
        stem = BatchFiles(self.run_path).stem(batch.round)
        run = shlex.quote(str(self.run_path))
        elsewhere = [place for tool in self.tools if tool.name != "files" and (place := tool.describe(batch.round))]
        pulls = "".join(f" (or --from {tool.name})" for tool in self.tools if tool.name != "files")
        raise AwaitingLabels(f"round {batch.round}: {len(batch.examples)} examples to label in "
                             f"{shlex.quote(f'{stem}.jsonl')} (or .csv, .labelstudio.json)"
                             + "".join(f"; {place}" for place in elsewhere) + "\n"
                             f"then: star label {run} FILE{pulls} && star resume {run}")


class CheckedAnswers(NamedTuple):
    """A file's labels to keep, its rows left empty (not labelled yet), and its rows the ledger
    holds already (the same id, annotator and answer: skipped, so a file is imported again as
    it fills)."""

    labels: list[Label]
    empty: int
    same: int


def _choice_named(task, example, answer: str) -> str | None:
    """The choice of `example` that `answer` names, or None (no such choice, or no example to ask)."""
    if example is None or not answer:
        return None
    try:
        return task.match_choice(example, answer)
    except StarError:
        return None


def check_answers(task, rows, allowed_ids: set[int], given: dict[tuple[int, str | None], str],
                  annotator: str | None = None, one_per_example: bool = True,
                  examples: dict | None = None) -> CheckedAnswers:
    """The whole file's new labels, or a StarError naming every bad row (nothing is kept then).

    `rows` are (where, id, answer) or (where, id, answer, annotator); a row without its own
    annotator is `annotator`'s (None: the anonymous one). `given` is the ledger's answers by
    (id, annotator). A label never replaces one: an annotator's other answer for an id they
    labelled is refused, and so, when the run takes one label per example, is any second
    label for an id. Where one place answers an id several times (a Label Studio task
    annotated by several people) and the run takes one label per example, the last answers.
    A choice task's answer must name one of its example's choices (`examples` by id).
    """
    rows = [tuple(row) for row in rows]
    if one_per_example:
        last = {(row[0], str(row[1])): n for n, row in enumerate(rows)}
        rows = [row for n, row in enumerate(rows) if last[(row[0], str(row[1]))] == n]
    labeled_by = {example_id: who for example_id, who in given}
    problems, labels, seen, n_empty, n_same = [], [], {}, 0, 0
    for where, raw_id, raw_answer, *named in rows:
        try:
            example_id = int(raw_id)
            if str(raw_id).strip() != str(example_id):
                raise ValueError
        except (TypeError, ValueError):
            problems.append(f"{where}: id {raw_id!r} is not an example id")
            continue
        who = str(named[0]).strip() if named and named[0] is not None and str(named[0]).strip() else annotator
        by = f" by {who}" if who is not None else ""
        answer = "" if raw_answer is None else str(raw_answer).strip()
        canonical = (task._match_label(answer) if task.answer_type == "label"
                     else normalize_number(answer) if task.answer_type == "number"
                     else _choice_named(task, (examples or {}).get(example_id), answer) if task.answer_type == CHOICE
                     else answer)
        if (example_id, who) in seen:
            problems.append(f"{where}: id {example_id}{by} appears twice (also {seen[example_id, who]})")
        elif example_id not in allowed_ids:
            problems.append(f"{where}: id {example_id} is labeled already (a label is never replaced)"
                            if example_id in labeled_by else f"{where}: id {example_id} is not in the batch "
                                                             "waiting for labels")
        elif not answer:
            n_empty += 1  # not labelled yet: stays in the batch
        elif task.answer_type == "label" and canonical is None:
            problems.append(f"{where}: id {example_id}: answer {answer!r} is not one of the labels "
                            f"({', '.join(task.labels)})")
        elif task.answer_type == "number" and canonical is None:
            problems.append(f"{where}: id {example_id}: answer {answer!r} is not a number")
        elif task.answer_type == CHOICE and canonical is None:
            choices = (examples or {}).get(example_id)
            problems.append(f"{where}: id {example_id}: answer {answer!r} is not one of its choices"
                            + (f" ({' | '.join(choices.choices or ())})" if choices is not None else ""))
        elif (example_id, who) in given:
            if given[example_id, who] == canonical:
                n_same += 1  # in the ledger already, as given
            else:
                problems.append(f"{where}: id {example_id}{by} was answered {given[example_id, who]!r} already, "
                                f"not {canonical!r} (a label is never replaced)")
        elif one_per_example and example_id in labeled_by:
            first = labeled_by[example_id]
            problems.append(f"{where}: id {example_id} is labeled already" + (f" by {first}" if first else "")
                            + " (this run takes one label per example: --annotators N for more)")
        else:
            labels.append(Label(example_id, canonical, annotator=who))
        seen.setdefault((example_id, who), where)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise StarError(f"nothing imported, {len(problems)} bad row(s): {shown}")
    if not labels and not n_same:
        raise StarError("nothing imported: the file has no labeled rows"
                        + (f" ({n_empty} with an empty answer)" if n_empty else ""))
    return CheckedAnswers(labels, n_empty, n_same)
