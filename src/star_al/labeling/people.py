"""People label: each queried batch goes out to the run's labelling tools (labeling/tools.py),
and their answers come back through `star label` (or Learner.teach), checked whole before
any is kept.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from star_al.data.tasks import normalize_number
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


def check_answers(task, rows, allowed_ids: set[int], labeled: set[int]) -> tuple[list[Label], int]:
    """The whole file's labels and how many of its rows are left empty (not labelled yet), or a
    StarError naming every bad row (nothing is kept then)."""
    problems, labels, seen, n_empty = [], [], {}, 0
    for where, raw_id, raw_answer in rows:
        try:
            example_id = int(raw_id)
            if str(raw_id).strip() != str(example_id):
                raise ValueError
        except (TypeError, ValueError):
            problems.append(f"{where}: id {raw_id!r} is not an example id")
            continue
        answer = "" if raw_answer is None else str(raw_answer).strip()
        if example_id in seen:
            problems.append(f"{where}: id {example_id} appears twice (also {seen[example_id]})")
        elif example_id in labeled:
            problems.append(f"{where}: id {example_id} is labeled already (a label is never replaced)")
        elif example_id not in allowed_ids:
            problems.append(f"{where}: id {example_id} is not in the batch waiting for labels")
        elif not answer:
            n_empty += 1  # not labelled yet: stays in the batch
        elif task.answer_type == "label" and task._match_label(answer) is None:
            problems.append(f"{where}: id {example_id}: answer {answer!r} is not one of the labels "
                            f"({', '.join(task.labels)})")
        elif task.answer_type == "number" and normalize_number(answer) is None:
            problems.append(f"{where}: id {example_id}: answer {answer!r} is not a number")
        else:
            canonical = (task._match_label(answer) if task.answer_type == "label"
                         else normalize_number(answer) if task.answer_type == "number" else answer)
            labels.append(Label(example_id, canonical))
        seen.setdefault(example_id, where)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise StarError(f"nothing imported, {len(problems)} bad row(s): {shown}")
    if not labels:
        raise StarError("nothing imported: the file has no labeled rows"
                        + (f" ({n_empty} with an empty answer)" if n_empty else ""))
    return labels, n_empty
