"""Label files as people save them: spreadsheets' CSVs (a byte-order mark, CRLF, `;` or tab
separators), .xlsx, half-filled batches, formula-leading text, paths with spaces, and a
malformed Label Studio export refused in one line."""

import csv
import json
import shlex
import sys

import pytest
from hypothesis import given, strategies as st

import star_al
from star_al.data.tasks import Example
from star_al.errors import StarError
from star_al.labeling.batch_files import (FORMULA_START, export_batch, neutralise_formula, read_answers,
                                          restore_formula)
from star_al.labeling.ledger import LabelLedger
from star_al.labeling.oracle import Batch
from star_al.learner import make_task
from test_people import human_args, waiting_batch
from test_reliability import assert_one_line_error
from star_al.cli import main


def star_out(capsys, *args):
    """Run the CLI in this process: (exit code, stdout lines, stderr lines)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out.splitlines(), [line for line in captured.err.splitlines() if line.startswith("star:")]


@pytest.fixture
def waiting_run(tiny_model_dir, unlabeled_pool, tmp_path, capsys):
    """A people-labelled run in a directory whose name has a space and a non-ASCII letter,
    waiting on its warm start (4 examples); (run dir, answers by id, what `star run` printed)."""
    data, answers = unlabeled_pool
    run_dir = tmp_path / "my run ü"
    code, out, _ = star_out(capsys, *human_args(tiny_model_dir, data, run_dir))
    assert code == 0
    return run_dir, answers, out


def exported_rows(run_dir):
    """The round-0 CSV as the run wrote it: header, rows (dicts)."""
    with open(run_dir / "to_label" / "round_0.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return list(rows[0]), rows


def save_like_a_spreadsheet(path, header, rows, *, delimiter=",", bom=False, line_end="\n"):
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, delimiter=delimiter, lineterminator=line_end)
        writer.writeheader()
        writer.writerows(rows)
    return path


def ledger_answers(run_dir):
    return {entry["id"]: entry["answer"] for entry in LabelLedger(run_dir / "labels.jsonl").read()}


@pytest.mark.parametrize("saved_as", ["bom-crlf", "semicolon", "tab", "xlsx"])
def test_a_batch_filled_in_a_spreadsheet_imports_as_it_was_saved(waiting_run, tmp_path, capsys, saved_as):
    run_dir, answers, _ = waiting_run
    header, rows = exported_rows(run_dir)
    filled = [{**row, "answer": answers[int(row["id"])]} for row in rows]
    if saved_as == "xlsx":
        openpyxl = pytest.importorskip("openpyxl")
        book = openpyxl.Workbook()
        sheet = book.active
        sheet.append(header)
        for row in filled:  # ids as numbers, as a spreadsheet holds them
            sheet.append([int(row["id"]) if key == "id" else row[key] for key in header])
        sheet.append([None] * len(header))  # a blank row a spreadsheet leaves at the end
        path = tmp_path / "filled.xlsx"
        book.save(path)
    else:
        path = save_like_a_spreadsheet(tmp_path / "filled.csv", header, filled,
                                       delimiter={"bom-crlf": ",", "semicolon": ";", "tab": "\t"}[saved_as],
                                       bom=saved_as == "bom-crlf", line_end="\r\n" if saved_as == "bom-crlf" else "\n")
        if saved_as == "bom-crlf":
            raw = path.read_bytes()
            assert raw.startswith(b"\xef\xbb\xbfid,") and raw.count(b"\r\n") >= len(rows) + 1
    code, out, err = star_out(capsys, "label", run_dir, path)
    assert code == 0, err
    assert out[0] == "imported 4 labels for round 0; 0 of 4 left"
    assert ledger_answers(run_dir) == {int(row["id"]): answers[int(row["id"])] for row in rows}


def test_a_half_filled_batch_imports_the_filled_rows_and_counts_the_empty_ones(waiting_run, tmp_path, capsys):
    run_dir, answers, _ = waiting_run
    header, rows = exported_rows(run_dir)
    ids = [int(row["id"]) for row in rows]
    half = [{**row, "answer": answers[i] if n < 2 else "  "} for n, (i, row) in enumerate(zip(ids, rows))]
    code, out, err = star_out(capsys, "label", run_dir,
                              save_like_a_spreadsheet(tmp_path / "half.csv", header, half))
    assert code == 0, err
    assert out[0] == "imported 2 labels for round 0; 2 row(s) with an empty answer, not labelled yet; 2 of 4 left"
    assert out[1] == f"next: star resume {shlex.quote(str(run_dir))} (or --partial to train on what is there)"
    assert ledger_answers(run_dir) == {i: answers[i] for i in ids[:2]}

    # through the API: one more answer, one row still empty; the result says both
    rest = [{**row, "answer": answers[ids[2]] if n == 0 else ""} for n, row in enumerate(rows[2:])]
    done = star_al.import_labels(run_dir, read_answers(save_like_a_spreadsheet(tmp_path / "rest.csv", header, rest)),
                                 "person")
    assert (done.imported, done.left, done.empty) == (1, 1, 1)

    # every other fault of a row still refuses the whole file, naming the row
    bad = [{**rows[3], "answer": "neutral"}, {**rows[3], "id": "999", "answer": ""}]
    code, _, err = star_out(capsys, "label", run_dir, save_like_a_spreadsheet(tmp_path / "bad.csv", header, bad))
    assert_one_line_error(code, err, "nothing imported, 2 bad row(s)")
    assert f"bad.csv:2: id {ids[3]}: answer 'neutral' is not one of the labels" in err[-1]
    assert "id 999 is not in the batch" in err[-1]
    code, _, err = star_out(capsys, "label", run_dir, save_like_a_spreadsheet(
        tmp_path / "empty.csv", header, [{**rows[3], "answer": ""}]))
    assert_one_line_error(code, err, "the file has no labeled rows (1 with an empty answer)")
    assert len(ledger_answers(run_dir)) == 3


def test_every_hint_quotes_a_run_dir_with_a_space_for_the_shell(waiting_run, tmp_path, capsys):
    run_dir, answers, printed = waiting_run
    then = next(line for line in printed if line.startswith("then: "))
    words = shlex.split(then)
    assert words[1:5] == ["star", "label", str(run_dir), "FILE"] and words[-1] == str(run_dir)
    to_label = next(line for line in printed if "examples to label in" in line)
    assert shlex.split(to_label.split(" in ", 1)[1])[0] == str(run_dir / "to_label" / "round_0.jsonl")

    code, out, _ = star_out(capsys, "status", run_dir)
    assert code == 0 and shlex.split(out[-1].split("files in ")[1].rstrip(")"))[0] == str(run_dir / "to_label")

    rows = waiting_batch(run_dir, 0)
    labels = tmp_path / "a.jsonl"
    labels.write_text("".join(json.dumps({"id": r["id"], "answer": answers[r["id"]]}) + "\n" for r in rows))
    code, out, _ = star_out(capsys, "label", run_dir, labels)
    assert code == 0 and shlex.split(out[1]) == ["next:", "star", "resume", str(run_dir)]


# -- formulas: exported neutralised, read back as they were -------------------------------------------

FORMULAS = ["=HYPERLINK(\"http://x\",\"click\")", "+1+2", "-2+3+cmd|' /C calc'!A0", "@SUM(A1)", "\tlead",
            "\rlead", "'=already quoted once", "plain text", "it's fine", "'quoted but harmless"]


def test_formula_leading_text_is_neutralised_in_the_csv_and_read_back_unchanged(tmp_path):
    task = make_task("notes", prompt="Note: {text}\nAnswer:", answer_type="text")
    examples = [Example(n, f"Note: {text}\nAnswer:", None, None, {"text": text}) for n, text in enumerate(FORMULAS)]
    export_batch(task, Batch(0, examples, [-0.5] * len(examples), ["=1+1"] * len(examples),
                             [0.25] * len(examples)), tmp_path)

    with open(tmp_path / "round_0.csv", newline="", encoding="utf-8") as handle:
        exported = list(csv.DictReader(handle))
    for row, text in zip(exported, FORMULAS):
        assert not row["text"].startswith(FORMULA_START) and not row["model_answer"].startswith(FORMULA_START)
        assert restore_formula(row["text"]) == text and restore_formula(row["model_answer"]) == "=1+1"
        assert row["score"] == "-0.5"  # numbers stay numbers
    assert [json.loads(line)["text"] for line in (tmp_path / "round_0.jsonl").read_text().splitlines()] == FORMULAS

    # formula-leading answers, quoted as the export quotes, read back as the original text (an answer
    # that starts with a line break is no answer: CSV readers may turn a CR in a cell into LF)
    typed = [text for text in FORMULAS if not text.startswith("\r")]
    for row, text in zip(exported, typed):
        row["answer"] = neutralise_formula(text)
    path = save_like_a_spreadsheet(tmp_path / "filled.csv", list(exported[0]), exported[:len(typed)],
                                   line_end="\r\n")
    assert [answer for _, _, answer in read_answers(path)] == typed
    assert [int(i) for _, i, _ in read_answers(path)] == list(range(len(typed)))


@given(st.text(max_size=12))
def test_neutralise_then_restore_is_the_identity(text):
    assert restore_formula(neutralise_formula(text)) == text
    assert not neutralise_formula(text).startswith(FORMULA_START)


# -- reading: what is refused, in one line ---------------------------------------------------------------

def test_a_csv_without_the_columns_or_not_in_utf8_is_refused_in_one_line(tmp_path, capsys):
    path = tmp_path / "x.csv"
    path.write_text("id|answer\n1|positive\n")
    code, _, err = star_out(capsys, "label", tmp_path / "no-run", path)
    assert_one_line_error(code, err, "x.csv: a labels table needs the columns id and answer")
    assert "['id|answer']" in err[-1]
    path.write_bytes("id;sentence;answer\r\n3;caf\xe9 cr\xe8me;positive\r\n".encode("cp1252"))
    code, _, err = star_out(capsys, "label", tmp_path / "no-run", path)
    assert_one_line_error(code, err, "x.csv: not UTF-8 text")
    assert err[-1].endswith("save it as CSV UTF-8")


def test_an_xlsx_without_openpyxl_asks_for_it_in_one_line(tmp_path, monkeypatch):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.active.append(["id", "answer"])
    book.save(tmp_path / "a.xlsx")
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # as if it were not installed
    with pytest.raises(StarError, match=r"needs openpyxl: pip install openpyxl$"):
        read_answers(tmp_path / "a.xlsx")


def test_a_damaged_xlsx_or_an_old_xls_is_refused_in_one_line(tmp_path):
    (tmp_path / "a.xlsx").write_text("id,answer\n1,positive\n")
    with pytest.raises(StarError, match=r"a.xlsx: not a readable .xlsx file"):
        read_answers(tmp_path / "a.xlsx")
    (tmp_path / "a.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(StarError, match=r"save a spreadsheet as .xlsx or CSV UTF-8"):
        read_answers(tmp_path / "a.xls")


def studio_export(result):
    return [{"id": 7, "data": {"id": 3, "question": "q"},
             "annotations": [{"id": 1, "was_cancelled": False, "updated_at": "2026-11-28T10:00:00Z",
                              "result": result}]}]


@pytest.mark.parametrize("result,needle", [
    ([{"from_name": "answer", "type": "choices", "value": "positive"}], "result 0: value is str 'positive'"),
    ([{"from_name": "answer", "type": "choices", "value": {"choices": "positive"}}], "choices is 'positive'"),
    (["positive"], "result 0 is str, not an object"),
    ({"value": {"choices": ["positive"]}}, "result is not a list"),
])
def test_a_label_studio_export_of_the_wrong_shape_is_refused_in_one_line(tmp_path, capsys, result, needle):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(studio_export(result)))
    code, _, err = star_out(capsys, "label", tmp_path / "no-run", path)
    assert_one_line_error(code, err, f"export.json: task 7: annotation 1")
    assert needle in err[-1]


def test_a_label_studio_result_without_a_value_answers_nothing(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(studio_export([{"type": "relation", "from_id": "a", "to_id": "b"},
                                              {"type": "choices", "value": {"choices": ["negative"]}}])),
                    encoding="utf-8-sig")  # a byte-order mark, as some tools save JSON
    assert read_answers(path) == [(f"{path}: task 7", 3, "negative")]
