"""Batches as files: the `files` labelling tool, and the label files people send back.

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

from star_al.data.tasks import read_jsonl
from star_al.errors import StarError
from star_al.files import write_json_atomic, write_text_atomic
from star_al.labeling.oracle import Batch
from star_al.labeling.tool import AnswerRow, LabellingTool

FOLDER = "to_label"


class BatchFiles(LabellingTool):
    """Every batch as files in the run's to_label/ folder; people answer by `star label RUN FILE`."""

    name = "files"

    def __init__(self, run_path: Path):
        self.folder = Path(run_path) / FOLDER

    @classmethod
    def for_run(cls, run_path: Path, setting: str | None) -> "BatchFiles":
        return cls(run_path)  # every people-labelled run writes its batches as files

    def stem(self, round_index: int) -> Path:
        return self.folder / f"round_{round_index}"

    def is_out(self, round_index: int) -> bool:
        return Path(f"{self.stem(round_index)}.jsonl").is_file()

    def push(self, task, batch: Batch) -> None:
        if not self.is_out(batch.round):
            export_batch(task, batch, self.folder)

    def pull(self) -> list[AnswerRow]:
        """The answered rows of the latest batch's CSV, filled in place in a spreadsheet."""
        batches = sorted(self.folder.glob("round_*.csv"), key=lambda path: int(path.stem.split("_")[1]))
        if not batches:
            raise StarError(f"{self.folder}: no batch has been written as files yet")
        return [row for row in read_answers(batches[-1]) if row[2] not in (None, "")]


# -- out -------------------------------------------------------------------------------------------

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

def read_answers(path: Path) -> list[AnswerRow]:
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
        return [(where, row.get("id"), row.get("answer")) for where, row in read_jsonl(path)]
    if path.suffix == ".json":
        try:
            tasks = json.loads(text)
        except json.JSONDecodeError as error:
            raise StarError(f"{path}: not valid JSON ({error.msg})") from None
        return label_studio_answers(tasks, str(path))
    raise StarError(f"{path}: labels come as .jsonl, .csv or a Label Studio .json export")


def label_studio_answers(tasks, where: str) -> list[AnswerRow]:
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
