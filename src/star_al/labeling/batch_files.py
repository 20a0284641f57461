"""Batches as files: the `files` labelling tool, and the label files people send back.

Out, per round k, in RUN_DIR/to_label/: `round_k.jsonl` and `round_k.csv` (the example id,
the record's own fields, the rendered question, the model's answer and uncertainty, the
acquisition score, an empty `answer`), `round_k.labelstudio.json` (Label Studio's task
import format, the model's answer as a prediction) and `labelstudio_config.xml` (the
labeling interface: Choices for label tasks, TextArea for number and text tasks).

The CSV is made safe to open in a spreadsheet: a text cell that starts with = + - @, a tab
or a carriage return gets a leading `'` (OWASP's defence against CSV injection), which
reading takes off again.

In: the same JSONL or CSV with `answer` filled (as a spreadsheet saves it: UTF-8 with or
without a byte-order mark, `,` `;` or tab separators, CRLF or LF), the same table as
.xlsx, or Label Studio's JSON export (only submitted, non-cancelled annotations; each
annotator's latest per task, with who they are). A row whose answer is empty is not
labelled yet; a table or JSONL with an `annotator` column names who answered each row.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path
from xml.sax.saxutils import quoteattr

from star_al.data.records import read_csv, read_jsonl
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
        return read_answers(batches[-1])  # rows still empty are counted as not labelled yet


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
        writer.writerow({k: neutralise_formula(json.dumps(v) if isinstance(v, (dict, list)) else v)
                         for k, v in row.items()})
    write_text_atomic(Path(f"{stem}.csv"), buffer.getvalue())
    write_json_atomic(Path(f"{stem}.labelstudio.json"), label_studio_tasks(task, batch))
    write_text_atomic(folder / "labelstudio_config.xml", label_studio_config(task))


# -- in -------------------------------------------------------------------------------------------

def read_answers(path: Path) -> list[AnswerRow]:
    """(where, id, answer) for every row of a JSONL, CSV, .xlsx or Label Studio JSON export."""
    path = Path(path)
    if not path.is_file():
        raise StarError(f"labels file {path} not found")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):  # read as pool files are: a BOM or none, `,` `;` or tab, CRLF or LF
        return table_answers(path, read_csv(path))
    if suffix in (".xlsx", ".xlsm"):
        return table_answers(path, read_xlsx(path))
    if suffix == ".jsonl":
        return [answer_row(where, row.get("id"), row.get("answer"), row.get("annotator"))
                for where, row in read_jsonl(path)]
    if suffix == ".json":
        try:
            tasks = json.loads(path.read_text(encoding="utf-8-sig", errors="replace"))
        except json.JSONDecodeError as error:
            raise StarError(f"{path}: not valid JSON ({error.msg})") from None
        return label_studio_answers(tasks, str(path))
    raise StarError(f"{path}: labels come as .csv, .xlsx, .jsonl or a Label Studio .json export "
                    f"(save a spreadsheet as .xlsx or CSV UTF-8)")


# Cells a spreadsheet would run as a formula (OWASP, CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formula(cell):
    """Text a spreadsheet would run as a formula, with one `'` in front (also before `'`s that precede one)."""
    if isinstance(cell, str) and cell.lstrip("'").startswith(FORMULA_START):
        return "'" + cell
    return cell


def restore_formula(cell):
    """The text `neutralise_formula` was given: the one `'` it added taken off."""
    if isinstance(cell, str) and cell.startswith("'") and cell.lstrip("'").startswith(FORMULA_START):
        return cell[1:]
    return cell


def table_answers(path: Path, located) -> list[AnswerRow]:
    """(where, id, answer) of each row of a table (CSV, sheet), with the `'` export put before a formula off."""
    rows = list(located)
    columns = set().union(*(record for _, record in rows))
    if rows and not {"id", "answer"} <= columns:
        raise StarError(f"{path}: a labels table needs the columns id and answer (separated by , ; or a tab); "
                        f"its columns read as {sorted(columns)[:6]}")
    return [answer_row(where, restore_formula(record.get("id")), restore_formula(record.get("answer")),
                       restore_formula(record.get("annotator"))) for where, record in rows]


def answer_row(where: str, example_id, answer, annotator=None) -> AnswerRow:
    """(where, id, answer), with the annotator fourth where the row names one."""
    return (where, example_id, answer) if annotator is None or annotator == "" else \
        (where, example_id, answer, annotator)


def read_xlsx(path: Path) -> list[tuple[str, dict]]:
    """("path row N", record) per non-empty row of the first sheet whose first row names id and answer;
    N is the row number the spreadsheet shows, values of formulas as last computed."""
    try:
        from openpyxl import load_workbook
    except ImportError:
        raise StarError(f"{path}: reading .xlsx needs openpyxl: pip install openpyxl") from None
    try:
        with warnings.catch_warnings():  # openpyxl warns about styles and extensions it does not read
            warnings.simplefilter("ignore")
            book = load_workbook(path, data_only=True)
    except Exception as error:  # openpyxl raises zipfile, KeyError and its own errors for a damaged file
        raise StarError(f"{path}: not a readable .xlsx file ({type(error).__name__}: {error})") from None
    try:
        for sheet in book.worksheets:
            rows = list(sheet.iter_rows(values_only=True))
            columns = [str(name).strip() if name is not None else "" for name in (rows[0] if rows else [])]
            if "id" not in columns or "answer" not in columns:
                continue
            for name in ("id", "answer"):
                if columns.count(name) > 1:
                    raise StarError(f"{path}: sheet {sheet.title!r} has the column {name} {columns.count(name)} times")
            return [(f"{path} row {number}", {name: _cell_text(value) for name, value in zip(columns, values) if name})
                    for number, values in enumerate(rows[1:], start=2)
                    if any(value is not None and str(value).strip() for value in values)]
    finally:
        book.close()
    raise StarError(f"{path}: no sheet has the columns id and answer in its first row")


def _cell_text(value):
    """A sheet's cell as a CSV holds it: 73.0 is "73", an empty cell None."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def label_studio_answers(tasks, where: str) -> list[AnswerRow]:
    """From Label Studio's JSON export: each annotator's latest submitted, non-cancelled annotation
    of each task, as (where, id, answer, annotator) rows, a task's latest last.

    Its answer is the first result whose `value` holds `choices` or `text` (a list of strings);
    its annotator is `completed_by` (the user's email where the export holds the user, else
    "label-studio user N"), None where the export does not say.
    """
    if not isinstance(tasks, list):
        raise StarError(f"{where}: not a Label Studio export (expected a list of tasks)")
    found = []
    for n, item in enumerate(tasks):
        if not isinstance(item, dict) or not isinstance(item.get("data"), dict):
            raise StarError(f"{where}: task {n} has no data")
        task_where = f"{where}: task {item.get('id', n)}"
        annotations = item.get("annotations") or []
        if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
            raise StarError(f"{task_where}: annotations are not a list of objects")
        submitted = [a for a in annotations if not a.get("was_cancelled") and a.get("result")]
        latest: dict[str | None, dict] = {}
        for annotation in sorted(submitted, key=_annotation_time):  # not labeled yet (none): stays queued
            latest[_annotation_author(annotation, task_where)] = annotation
        for annotator, annotation in sorted(latest.items(), key=lambda item: _annotation_time(item[1])):
            found.append(answer_row(task_where, item["data"].get("id"), _annotation_answer(annotation, task_where),
                                    annotator))
    return found


def _annotation_time(annotation: dict) -> tuple:
    return (str(annotation.get("updated_at") or annotation.get("created_at") or ""),
            annotation["id"] if isinstance(annotation.get("id"), int) else -1)


def _annotation_author(annotation: dict, where: str) -> str | None:
    """Who made an annotation: `completed_by`, a user id or (in some exports) the user object."""
    author = annotation.get("completed_by")
    if isinstance(author, dict):
        author = author.get("email") or author.get("username") or author.get("id")
        if isinstance(author, str) and author.strip():
            return author.strip()
    if author is None:
        return None
    if isinstance(author, bool) or not isinstance(author, int):
        raise StarError(f"{where}: annotation {annotation.get('id')}: completed_by is {str(author)[:40]!r}, "
                        "not a user id")
    return f"label-studio user {author}"


def _annotation_answer(annotation: dict, where: str):
    """The answer of one annotation: the first `choices` or `text` value among its results."""
    results = annotation["result"]
    if not isinstance(results, list):
        raise StarError(f"{where}: annotation {annotation.get('id')}: result is not a list")
    for n, result in enumerate(results):
        place = f"{where}: annotation {annotation.get('id')}, result {n}"
        if not isinstance(result, dict):
            raise StarError(f"{place} is {type(result).__name__}, not an object")
        if "value" not in result:
            continue  # a result without a value (a relation) answers nothing
        value = result["value"]
        if not isinstance(value, dict):
            raise StarError(f"{place}: value is {type(value).__name__} {str(value)[:40]!r}, "
                            f"not an object like {{\"choices\": [...]}}")
        for key in ("choices", "text"):
            given = value.get(key)
            if given is None or given == []:
                continue
            if not isinstance(given, list) or not isinstance(given[0], str):
                raise StarError(f"{place}: {key} is {str(given)[:40]!r}, not a list of strings")
            return given[0]
    return None
