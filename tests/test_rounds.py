"""The round record: every committed rounds.jsonl reads back as written, and a new run's line
has exactly the keys, in the order, the loop always wrote."""

import json
from pathlib import Path

import pytest

from star_al.al.run_dir import RunDir
from star_al.rounds import RoundRecord

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
COMMITTED = sorted(RESULTS.rglob("rounds.jsonl"))


def test_every_committed_round_line_reads_back_as_written():
    assert COMMITTED, f"no rounds.jsonl under {RESULTS}"
    for path in COMMITTED:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        records = RunDir(path.parent).read_rounds()
        assert [record.to_dict() for record in records] == lines, path
        assert [record.round for record in records] == list(range(len(lines)))


def test_a_line_of_a_run_with_a_test_set_keeps_the_loops_keys_and_order():
    record = RoundRecord(round=1, n_labeled=7, selected_ids=[3, 5, 9], selected_scores=[0.9, 0.8, 0.7],
                         lambda_=0.9, accuracy=0.6, ece=0.1, brier=0.2, wrong_confidence=0.7, n_test=10,
                         test_correct="ffc0", train_steps=2, train_loss={"first": 0.7, "last": 0.5},
                         timings={"score": 1.0, "train": 2.0, "eval": 1.0, "total": 4.0}, device="cpu",
                         dtype="float32")
    line = json.loads(json.dumps(record.to_dict()))
    assert list(line) == ["round", "n_labeled", "selected_ids", "selected_scores", "lambda", "accuracy", "ece",
                          "brier", "wrong_confidence", "n_test", "test_correct", "train_steps", "train_loss",
                          "timings", "device", "dtype"]
    assert RoundRecord.from_dict(line) == record


def test_a_line_without_a_test_set_has_the_stopping_sets_figures_and_nulls_where_the_loop_wrote_them():
    record = RoundRecord(round=0, n_labeled=4, selected_ids=[1, 2, 3, 4], pool_uncertainty=0.6, agreement=None,
                         n_monitor=30, monitor_uncertainty=0.6, monitor_predictions=["yes", "no"], kappa=None,
                         train_steps=1, train_loss={"first": 0.7}, timings={"total": 3.0}, queued_ids=[8],
                         stopped="budget: 4 of 4 labels spent")
    line = record.to_dict()
    assert list(line) == ["round", "n_labeled", "selected_ids", "selected_scores", "lambda", "accuracy",
                          "pool_uncertainty", "agreement", "n_monitor", "monitor_uncertainty", "monitor_predictions",
                          "kappa", "train_steps", "train_loss", "timings", "queued_ids", "stopped"]
    assert line["accuracy"] is None and line["agreement"] is None and line["kappa"] is None


def test_an_old_line_reads_with_defaults_and_keeps_keys_it_does_not_know():
    old = {"round": 0, "n_labeled": 4, "selected_ids": [1, 2], "accuracy": 0.5, "lambda": None, "note": "x"}
    record = RoundRecord.from_dict(old)
    assert (record.lambda_, record.timings, record.queued_ids, record.kappa) == (None, {}, [], None)
    assert record.extra == {"note": "x"} and record.to_dict()["note"] == "x"


def test_a_round_without_its_size_is_refused_in_one_line(tmp_path):
    from star_al.errors import StarError

    (tmp_path / "rounds.jsonl").write_text(json.dumps({"round": 0, "selected_ids": [1]}) + "\n")
    with pytest.raises(StarError, match="without n_labeled"):
        RunDir(tmp_path).read_rounds()
