"""Pool and test data as CSV, Parquet or a saved `datasets` dataset: the same examples, the same
run as their JSONL twin, and one line naming file and row for a bad one."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from star_al.cli import main
from star_al.data.catalog import load_task
from star_al.data.records import read_records
from star_al.data.tasks import load_examples
from star_al.errors import StarError
from star_al.learner import examples_of
from test_reliability import assert_one_line_error, rounds_of, run_args, star

datasets = pytest.importorskip("datasets")
parquet = pytest.importorskip("pyarrow.parquet")
import pyarrow  # noqa: E402  (after the skip: both come with the `parquet` and `hub` extras)

FORMATS = ("csv", "parquet", "datasets")


def read_jsonl_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_csv(rows: list[dict], path: Path, delimiter: str = ",") -> Path:
    """As Excel saves "CSV UTF-8": a byte-order mark and CRLF line ends."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for row in rows for k in row)),
                            delimiter=delimiter, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"))
    return path


def write_twin(jsonl: Path, data_format: str) -> Path:
    """The JSONL file's rows in another format beside it (train.jsonl -> train.csv, ...); the JSONL goes."""
    rows, stem = read_jsonl_rows(jsonl), jsonl.with_suffix("")
    if data_format == "csv":
        twin = write_csv(rows, stem.with_suffix(".csv"))
    elif data_format == "parquet":
        twin = stem.with_suffix(".parquet")
        parquet.write_table(pyarrow.Table.from_pylist(rows), twin)
    else:
        twin = stem
        datasets.Dataset.from_list(rows).save_to_disk(str(twin))
    jsonl.unlink()
    return twin


# --- the same examples as the JSONL twin -----------------------------------------------------------


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("task_name", ["sst2", "boolq", "obqa", "gsm8k"])
def test_each_format_gives_the_examples_of_its_jsonl_twin(task_name, data_format, data_root, tmp_path):
    """Multi-line GSM8K solutions, OBQA's trailing spaces and normalize rules, BoolQ's answer
    pattern: the twin's prompts, targets and golds are the JSONL's, in order."""
    task = load_task(task_name)
    split_file = task.splits["train"]
    (tmp_path / split_file).write_text("".join((Path(data_root) / task.data / split_file)
                                               .read_text(encoding="utf-8").splitlines(True)[:25]), encoding="utf-8")
    expected = task.load("train", tmp_path)
    write_twin(tmp_path / split_file, data_format)
    assert task.load("train", tmp_path) == expected  # found by the split's stem: train.jsonl as train.csv, ...


SUMS_TASK = "name: sums\ndata: d\nprompt: \"{a} plus {b} ({note}, {checked}) is\"\nanswer: total\nanswer_type: number\n"
SUMS_ROWS = [{"a": 2, "b": 3.5, "note": "one, two", "checked": True, "total": 5.5},
             {"a": 10, "b": -1.25, "note": "=SUM(A1)", "checked": False, "total": 8.75},
             {"a": 1000, "b": 0.5, "note": "", "checked": True, "total": 1000.5}]


@pytest.mark.parametrize("data_format", FORMATS)
def test_numbers_and_booleans_read_as_text_give_the_same_prompts_and_golds(data_format, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in SUMS_ROWS))
    (tmp_path / "sums.yaml").write_text(SUMS_TASK)
    task = load_task(str(tmp_path / "sums.yaml"))
    expected = task.load("train", tmp_path / "d")
    assert [ex.gold for ex in expected] == ["5.5", "8.75", "1000.5"]
    write_twin(tmp_path / "d" / "train.jsonl", data_format)
    assert task.load("train", tmp_path / "d") == expected


def test_a_semicolon_separated_csv_with_unnamed_index_column_and_blank_rows_reads_as_the_rows(tmp_path):
    path = tmp_path / "pool.csv"
    path.write_bytes(b'\xef\xbb\xbf;sentence;label\r\n0;"a; b";positive\r\n\r\n;;\r\n1;"two\nlines";\r\n')
    assert list(read_records(path)) == [(f"{path}:2", {"sentence": "a; b", "label": "positive"}),
                                        (f"{path}:5", {"sentence": "two\nlines", "label": ""})]


def test_a_saved_dataset_gives_classlabel_names_and_its_unlabeled_rows_no_answer(tmp_path):
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    saved = datasets.Dataset.from_dict({"sentence": ["dull", "great", "unseen"], "label": [0, 1, -1]},
                                       features=features)
    saved.save_to_disk(str(tmp_path / "train"))
    task = load_task("sst2")
    pool = task.load("train", tmp_path, require_answer=False)
    assert [(ex.gold, ex.target) for ex in pool] == [("negative", " negative"), ("positive", " positive"),
                                                      (None, None)]
    assert examples_of(task, saved, "pool", require_answer=False) == pool  # the Dataset object, as the Learner takes it


@pytest.mark.parametrize("data_format", FORMATS)
def test_the_learner_takes_a_path_in_each_format(data_format, sst2_folder):
    task = load_task("sst2")
    expected = examples_of(task, sst2_folder / "train.jsonl", "pool", require_answer=False)
    twin = write_twin(sst2_folder / "train.jsonl", data_format)
    assert examples_of(task, twin, "pool", require_answer=False) == expected
    assert examples_of(task, str(twin), "pool", require_answer=False) == expected


def test_a_format_key_names_the_default_split_files_and_reads_any_suffix(tmp_path):
    (tmp_path / "d").mkdir()
    write_csv([{"text": "water is wet", "verdict": "yes"}], tmp_path / "d" / "train.csv")
    write_csv([{"text": "ice is cold", "verdict": "no"}], tmp_path / "d" / "test.csv")
    body = "name: claims\ndata: d\nprompt: \"{text}\"\nanswer: verdict\nanswer_type: label\nlabels: [yes, no]\n"
    (tmp_path / "claims.yaml").write_text(body + "format: csv\n")
    task = load_task(str(tmp_path / "claims.yaml"))
    assert task.splits == {"train": "train.csv", "test": "test.csv"}
    assert [ex.gold for ex in load_examples(task, "test")] == ["no"]
    (tmp_path / "d" / "test.csv").rename(tmp_path / "d" / "test.txt")
    (tmp_path / "other.yaml").write_text(body + "format: csv\nsplits: {train: train.csv, test: test.txt}\n")
    assert [ex.gold for ex in load_examples(load_task(str(tmp_path / "other.yaml")), "test")] == ["no"]
    (tmp_path / "bad.yaml").write_text(body + "format: xlsx\n")
    with pytest.raises(StarError, match=r"bad.yaml: key 'format' is 'xlsx', expected one of jsonl, csv, parquet, "
                                         r"datasets$"):
        load_task(str(tmp_path / "bad.yaml"))


# --- one line naming file and row --------------------------------------------------------------------


def _sst2_error(folder: Path) -> str:
    with pytest.raises(StarError) as caught:
        load_task("sst2").load("train", folder)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_csv_row_without_the_answer_column_is_named_by_file_and_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"sentence,label\r\ngood,positive\r\n\"multi\nline\",negative\r\nshort row\r\n")
    assert _sst2_error(tmp_path) == f"{path}:5: missing field 'label' named by the task's answer"


@pytest.mark.parametrize("content, message", [
    (b"sentence,label\nfine,positive\ntoo,many,cells\n", ":3: 3 cells, but the header names 2 columns"),
    (b"sentence,label\n\"never closed,positive\n", ":2: malformed CSV (unexpected end of data)"),
    (b"sentence,label\ncaf\xe9,positive\n", ": not UTF-8 text ("),
    (b"", ": an empty CSV file; the first row names the columns"),
    (b"label,label\npositive,negative\n", ":1: the header repeats the column 'label'"),
    (b"sentence,label\nfine,maybe\n", ":2: answer 'maybe' is not one of the labels (positive, negative)"),
])
def test_bad_csv_files_end_in_one_line_with_file_and_row(content, message, tmp_path):
    (tmp_path / "train.csv").write_bytes(content)
    assert _sst2_error(tmp_path).startswith(f"{tmp_path / 'train.csv'}{message}")


def test_a_parquet_row_without_a_value_and_an_unreadable_parquet_file_are_named(tmp_path):
    path = tmp_path / "train.parquet"
    parquet.write_table(pyarrow.table({"sentence": ["good", "bad"], "label": ["positive", "meh"]}), path)
    assert _sst2_error(tmp_path) == f"{path} row 1: answer 'meh' is not one of the labels (positive, negative)"
    parquet.write_table(pyarrow.table({"text": ["good"], "label": ["positive"]}), path)
    assert _sst2_error(tmp_path) == f"{path} row 0: missing field 'sentence' named by the task's normalize"
    path.write_bytes(b"PAR1 not really")
    assert _sst2_error(tmp_path).startswith(f"{path}: not a readable Parquet file (")


def test_missing_readers_and_folders_that_are_no_dataset_say_what_to_do(tmp_path, monkeypatch):
    parquet.write_table(pyarrow.table({"sentence": ["good"], "label": ["positive"]}), tmp_path / "train.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as if pyarrow were not installed
    assert _sst2_error(tmp_path).endswith("reading Parquet needs pyarrow: pip install 'star-al[parquet]'")
    monkeypatch.undo()
    (tmp_path / "train.parquet").unlink()
    (tmp_path / "train").mkdir()
    assert _sst2_error(tmp_path).startswith(f"{tmp_path / 'train'}: not a dataset saved with save_to_disk (")
    (tmp_path / "train").rmdir()
    rows = datasets.Dataset.from_list([{"sentence": "good", "label": "positive"}])
    datasets.DatasetDict({"train": rows, "test": rows}).save_to_disk(str(tmp_path / "train"))
    assert _sst2_error(tmp_path) == (f"{tmp_path / 'train'} holds a DatasetDict (splits: train, test); "
                                     f"name one split's folder, e.g. {tmp_path / 'train' / 'train'}")
    write_csv([{"sentence": "good", "label": "positive"}], tmp_path / "train.csv")
    assert re.fullmatch(r".*train.jsonl not found, and 2 files could stand for it \(.*train.csv, .*train\); "
                        r"keep one, or name it in the task's splits", _sst2_error(tmp_path))
    (tmp_path / "train.csv").unlink()
    shutil.rmtree(tmp_path / "train")
    assert _sst2_error(tmp_path) == f"task sst2: split file {tmp_path / 'train.jsonl'} not found"


def test_star_run_on_a_bad_csv_row_stops_with_one_line(tiny_model_dir, sst2_folder, tmp_path, capsys):
    rows = [[row["sentence"], row["label"]] for row in read_jsonl_rows(sst2_folder / "train.jsonl")]
    rows[6] = rows[6][:1]  # a row that stops before the label column
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=";", lineterminator="\r\n").writerows([["sentence", "label"], *rows])
    (sst2_folder / "train.csv").write_text(buffer.getvalue(), encoding="utf-8")
    (sst2_folder / "train.jsonl").unlink()
    code, lines = star(capsys, *run_args(tiny_model_dir, sst2_folder, tmp_path / "run"))
    assert_one_line_error(code, lines, f"{sst2_folder / 'train.csv'}:8: missing field 'label'")
    assert not (tmp_path / "run").exists()


# --- the smoke preset picks the same examples ----------------------------------------------------------


@pytest.fixture(scope="module")
def jsonl_run(tiny_model_dir, data_root, tmp_path_factory) -> tuple[Path, Path]:
    """The reference: a short smoke-preset run on a 60-sentence JSONL pool (data folder, run folder)."""
    folder, out = tmp_path_factory.mktemp("jsonl-data"), tmp_path_factory.mktemp("jsonl-run") / "run"
    source = Path(data_root) / "sst2"
    for name, lines in (("train.jsonl", 60), ("dev.jsonl", 10)):
        (folder / name).write_text("".join((source / name).read_text().splitlines(True)[:lines]))
    assert main([str(arg) for arg in run_args(tiny_model_dir, folder, out, strategy="me+star")]) == 0
    return folder, out


@pytest.mark.parametrize("data_format", FORMATS)
def test_pool_files_in_each_format_run_the_smoke_preset_with_the_same_picks_as_jsonl(
        data_format, jsonl_run, tiny_model_dir, tmp_path, capsys):
    """The sst2 pool and dev set converted row for row, found by their stems through --data: the
    same picks, accuracies and losses, round by round, from a cache of their own."""
    jsonl_data, jsonl_out = jsonl_run
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("train.jsonl", "dev.jsonl"):
        (folder / name).write_text((jsonl_data / name).read_text())
        write_twin(folder / name, data_format)
    assert not list(folder.glob("*.jsonl"))
    code, lines = star(capsys, *run_args(tiny_model_dir, folder, tmp_path / "run", strategy="me+star"))
    assert code == 0, lines
    expected, got = rounds_of(jsonl_out), rounds_of(tmp_path / "run")
    assert len(got) == 3 and all(r["selected_ids"] for r in got)
    assert [r["selected_ids"] for r in got] == [r["selected_ids"] for r in expected]
    assert [r["accuracy"] for r in got] == [r["accuracy"] for r in expected]
    assert got == expected
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data_hash"] == json.loads((jsonl_out / "config.json").read_text())["data_hash"]
