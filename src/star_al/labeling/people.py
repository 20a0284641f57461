"""People label: each queried batch goes out as files (and optionally to Label Studio), and
their answers come back through `star label`, checked whole before any is kept.

Out, per round k, in RUN_DIR/to_label/: `round_k.jsonl` and `round_k.csv` (the example id,
the record's own fields, the rendered question, the model's answer and uncertainty, the
acquisition score, an empty `answer`), `round_k.labelstudio.json` (Label Studio's task
import format, the model's answer as a prediction) and `labelstudio_config.xml` (the
labeling interface: Choices for label tasks, TextArea for number and text tasks).

In: the same JSONL or CSV with `answer` filled, or Label Studio's JSON export (only
submitted, non-cancelled annotations; the latest per task).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from xml.sax.saxutils import quoteattr

from star_al.errors import StarError
from star_al.labeling.oracle import Batch, Label, Oracle


class AwaitingLabels(StarError):
    """The queried batch is out with people; the run continues with `star resume` once labeled."""

    exit_code = 0


class HumanOracle(Oracle):
    """Writes the batch out for people and stops the run until their labels are in the ledger."""

    simulated = False
    source = "person"

    def __init__(self, run_dir, task, label_studio=None):
        self.run_dir, self.task, self.label_studio = run_dir, task, label_studio

    def label(self, batch: Batch) -> list[Label]:
        folder = self.run_dir.path / "to_label"
        stem = folder / f"round_{batch.round}"
        if not Path(f"{stem}.jsonl").is_file():
            export_batch(self.task, batch, folder)
            if self.label_studio is not None:
                self.label_studio.push(self.task, batch, self.run_dir)
        raise AwaitingLabels(f"round {batch.round}: {len(batch.examples)} examples to label in {stem}.jsonl "
                             f"(or .csv, .labelstudio.json)\n"
                             f"then: star label {self.run_dir.path} FILE && star resume {self.run_dir.path}")


# -- out ------------------------------------------------------------------------------------------

def label_studio_config(task) -> str:
    """The labeling interface: the question, and Choices (label tasks) or a TextArea."""
    if task.answer_type == "label":
        choices = "".join(f"\n    <Choice value={quoteattr(label)}/>" for label in task.labels)
        control = f'<Choices name="answer" toName="question" choice="single" showInline="true">{choices}\n  </Choices>'
    else:
        control = '<TextArea name="answer" toName="question" maxSubmissions="1" editable="true" rows="2"/>'
    return f'<View>\n  <Text name="question" value="$question"/>\n  {control}\n</View>\n'


def _prediction_result(task, answer: str) -> list[dict]:
    if task.answer_type == "label":
        return [{"from_name": "answer", "to_name": "question", "type": "choices", "value": {"choices": [answer]}}]
    return [{"from_name": "answer", "to_name": "question", "type": "textarea", "value": {"text": [answer]}}]


def batch_rows(batch: Batch) -> list[dict]:
    rows = []
    for n, ex in enumerate(batch.examples):
        fields = {k: v for k, v in (ex.record or {}).items() if k not in ("id", "question", "answer")}
        rows.append({"id": ex.id, **fields, "question": ex.prompt,
                     "model_answer": batch.model_answers[n] if batch.model_answers else None,
                     "uncertainty": batch.uncertainty[n] if batch.uncertainty else None,
                     "score": batch.scores[n] if batch.scores else None, "answer": ""})
    return rows


def label_studio_tasks(task, batch: Batch) -> list[dict]:
    """Label Studio's import format: `data` for the interface, the model's answer as a prediction."""
    tasks = []
    for row in batch_rows(batch):
        data = {k: v for k, v in row.items() if k not in ("answer", "model_answer", "uncertainty", "score")}
        item = {"data": {**data, "star_round": batch.round}}
        if row["model_answer"] is not None:
            item["predictions"] = [{"model_version": f"round-{batch.round}",
                                    "score": row["score"] if row["score"] is not None else row["uncertainty"],
                                    "result": _prediction_result(task, row["model_answer"])}]
        tasks.append(item)
    return tasks


def export_batch(task, batch: Batch, folder: Path) -> None:
    from star_al.al.run_dir import write_json_atomic, write_text_atomic

    rows = batch_rows(batch)
    stem = folder / f"round_{batch.round}"
    write_text_atomic(Path(f"{stem}.jsonl"), "".join(json.dumps(row) + "\n" for row in rows))
    buffer = io.StringIO(newline="")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in row.items()})
    write_text_atomic(Path(f"{stem}.csv"), buffer.getvalue())
    write_json_atomic(Path(f"{stem}.labelstudio.json"), label_studio_tasks(task, batch))
    write_text_atomic(folder / "labelstudio_config.xml", label_studio_config(task))


# -- in -------------------------------------------------------------------------------------------

def read_answers(path: Path) -> list[tuple[str, object, object]]:
    """(where, id, answer) for every labeled row of a JSONL, CSV or Label Studio JSON export."""
    path = Path(path)
    if not path.is_file():
        raise StarError(f"labels file {path} not found")
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        if rows and ("id" not in rows[0] or "answer" not in rows[0]):
            raise StarError(f"{path}: a labels CSV needs the columns id and answer")
        return [(f"{path}:{n + 2}", row.get("id"), row.get("answer")) for n, row in enumerate(rows)]
    if path.suffix == ".jsonl":
        from star_al.data.tasks import read_jsonl

        return [(where, row.get("id"), row.get("answer")) for where, row in read_jsonl(path)]
    if path.suffix == ".json":
        try:
            tasks = json.loads(text)
        except json.JSONDecodeError as error:
            raise StarError(f"{path}: not valid JSON ({error.msg})") from None
        return label_studio_answers(tasks, str(path))
    raise StarError(f"{path}: labels come as .jsonl, .csv or a Label Studio .json export")


def label_studio_answers(tasks, where: str) -> list[tuple[str, object, object]]:
    """From Label Studio's JSON export: each task's latest submitted, non-cancelled annotation."""
    if not isinstance(tasks, list):
        raise StarError(f"{where}: not a Label Studio export (expected a list of tasks)")
    found = []
    for n, item in enumerate(tasks):
        if not isinstance(item, dict) or not isinstance(item.get("data"), dict):
            raise StarError(f"{where}: task {n} has no data")
        submitted = [a for a in item.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")
                     and a.get("result")]
        if not submitted:
            continue  # not labeled yet: stays queued
        latest = max(submitted, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))
        answer = None
        for result in latest["result"]:
            value = result.get("value", {}) if isinstance(result, dict) else {}
            answer = (value.get("choices") or value.get("text") or [None])[0]
            if answer is not None:
                break
        found.append((f"{where}: task {item.get('id', n)}", item["data"].get("id"), answer))
    return found


def check_answers(task, rows, allowed_ids: set[int], labeled: set[int]) -> list[Label]:
    """The whole file's labels, or a StarError naming every bad row (nothing is kept then)."""
    from star_al.data.tasks import normalize_number

    problems, labels, seen = [], [], {}
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
            problems.append(f"{where}: id {example_id} has an empty answer")
        elif task.answer_type == "label" and task._match_label(answer) is None:
            problems.append(f"{where}: answer {answer!r} is not one of the labels ({', '.join(task.labels)})")
        elif task.answer_type == "number" and normalize_number(answer) is None:
            problems.append(f"{where}: answer {answer!r} is not a number")
        else:
            canonical = (task._match_label(answer) if task.answer_type == "label"
                         else normalize_number(answer) if task.answer_type == "number" else answer)
            labels.append(Label(example_id, canonical))
        seen.setdefault(example_id, where)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise StarError(f"nothing imported, {len(problems)} bad row(s): {shown}")
    if not labels:
        raise StarError("nothing imported: the file has no labeled rows")
    return labels
