"""People in the loop: a pool nobody labeled, batches out as files, answers back through
`star label` (JSONL, CSV, a Label Studio export), refused files, partial batches, kills."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from star_al.labeling.ledger import LabelLedger
from test_reliability import assert_one_line_error, star


def human_args(model_dir, data, out, *extra):
    return ["run", "--task", "sst2", "--data", data, "--strategy", "me", "--preset", "smoke", "--labels", "human",
            "--model", model_dir, "--device", "cpu", "--dtype", "float32", "--warm-start", 4, "--query-size", 3,
            "--rounds", 2, "--pool-size", 30, "--rank", 4, "--test-limit", 6, "--out", out,
            "--cache-dir", Path(out).parent / "cache", *extra]


def resume(capsys, run_dir, *extra):
    return star(capsys, "resume", run_dir, "--device", "cpu", "--dtype", "float32",
                "--cache-dir", Path(run_dir).parent / "cache", *extra)


def waiting_batch(run_dir, round_index):
    return [json.loads(line) for line in (run_dir / "to_label" / f"round_{round_index}.jsonl").read_text().splitlines()]


def fill_jsonl(rows, answers, path):
    path.write_text("".join(json.dumps({**row, "answer": answers[row["id"]]}) + "\n" for row in rows))
    return path


def fill_csv(rows, answer_of, path):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "sentence", "question", "answer"])
        writer.writeheader()
        for row in rows:
            writer.writerow({"id": row["id"], "sentence": row["sentence"], "question": row["question"],
                             "answer": answer_of(row)})
    return path


def annotation(answer, cancelled=False, updated="2026-11-28T10:00:00Z", number=1):
    return {"id": number, "was_cancelled": cancelled, "updated_at": updated,
            "result": [{"from_name": "answer", "to_name": "question", "type": "choices",
                        "value": {"choices": [answer]}}]}


def test_two_rounds_labeled_by_people_end_to_end(tiny_model_dir, unlabeled_pool, tmp_path, capsys):
    data, answers = unlabeled_pool
    run_dir = tmp_path / "R"

    # round 0: the warm start goes out; nothing is trained before people answer
    code, _ = star(capsys, *human_args(tiny_model_dir, data, run_dir))
    assert code == 0 and not (run_dir / "rounds.jsonl").exists()
    rows = waiting_batch(run_dir, 0)
    assert len(rows) == 4 and all(row["answer"] == "" and row["question"].endswith("The correct answer is")
                                  and row["model_answer"] in ("positive", "negative") for row in rows)
    studio = json.loads((run_dir / "to_label" / "round_0.labelstudio.json").read_text())
    assert [t["data"]["id"] for t in studio] == [row["id"] for row in rows]
    assert studio[0]["predictions"][0]["model_version"] == "round-0"
    assert studio[0]["predictions"][0]["result"][0]["value"]["choices"][0] in ("positive", "negative")
    assert '<Choice value="positive"/>' in (run_dir / "to_label" / "labelstudio_config.xml").read_text()
    assert (run_dir / "to_label" / "round_0.csv").read_text().startswith("id,sentence,question,model_answer")

    assert star(capsys, "label", run_dir, fill_jsonl(rows, answers, tmp_path / "round0.jsonl"))[0] == 0
    assert resume(capsys, run_dir)[0] == 0  # trains round 0, queries round 1, waits again
    rounds = [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]
    assert len(rounds) == 1 and rounds[0]["selected_ids"] == sorted(row["id"] for row in rows)

    # round 1: a refused file imports nothing; then a partial batch; then the rest later
    batch = waiting_batch(run_dir, 1)
    assert len(batch) == 3 and all(row["score"] is not None for row in batch)
    bad = fill_csv(batch + [batch[0], {"id": 999, "sentence": "", "question": ""},
                            {"id": rows[0]["id"], "sentence": "", "question": ""}],
                   lambda row: {batch[1]["id"]: "", batch[2]["id"]: "neutral"}.get(row["id"], "positive"),
                   tmp_path / "bad.csv")
    code, lines = star(capsys, "label", run_dir, bad)
    assert_one_line_error(code, lines, "nothing imported, 4 bad row(s)")  # the empty answer is not labelled yet
    for needle in ("'neutral' is not one of the labels", "appears twice",
                   "id 999 is not in the batch", "is labeled already"):
        assert needle in lines[-1]
    assert len(LabelLedger(run_dir / "labels.jsonl").read()) == 4

    partial = fill_csv(batch[:2], lambda row: answers[row["id"]], tmp_path / "partial.csv")
    assert star(capsys, "label", run_dir, partial)[0] == 0
    capsys.readouterr()
    star(capsys, "status", run_dir)
    code, _ = resume(capsys, run_dir)  # waits for the third label
    assert code == 0 and len((run_dir / "rounds.jsonl").read_text().splitlines()) == 1
    assert resume(capsys, run_dir, "--partial")[0] == 0  # trains on two; the third stays queued
    rounds = [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]
    assert rounds[1]["selected_ids"] == [r["id"] for r in batch[:2]] and rounds[1]["queued_ids"] == [batch[2]["id"]]
    assert rounds[1]["n_labeled"] == 6

    # round 2: the queued example and three new ones, labeled in Label Studio and exported by hand
    batch2 = waiting_batch(run_dir, 2)
    assert len(batch2) == 4 and batch2[0]["id"] == batch[2]["id"]
    flip = {"positive": "negative", "negative": "positive"}
    export = [{"id": 100 + n, "data": {"id": row["id"], "question": row["question"]},
               "annotations": [annotation(answers[row["id"]])]} for n, row in enumerate(batch2)]
    export[1]["annotations"] = [annotation(flip[answers[batch2[1]["id"]]], number=1),
                                annotation(answers[batch2[1]["id"]], updated="2026-11-28T11:00:00Z", number=2)]
    export[2]["annotations"] = [annotation(answers[batch2[2]["id"]], cancelled=True)]
    (tmp_path / "export.json").write_text(json.dumps(export))
    assert star(capsys, "label", run_dir, tmp_path / "export.json")[0] == 0
    export[2]["annotations"] = [annotation(answers[batch2[2]["id"]])]
    (tmp_path / "export.json").write_text(json.dumps([export[2]]))
    assert star(capsys, "label", run_dir, tmp_path / "export.json")[0] == 0
    assert resume(capsys, run_dir)[0] == 0
    rounds = [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]
    assert len(rounds) == 3 and rounds[2]["n_labeled"] == 10 and all(r["accuracy"] is not None for r in rounds)

    # the ledger holds exactly what was imported, once each, and training used those answers
    entries = LabelLedger(run_dir / "labels.jsonl").read()
    imported = [r["id"] for r in rows] + [r["id"] for r in batch[:2]] + \
        [batch2[0]["id"], batch2[1]["id"], batch2[3]["id"], batch2[2]["id"]]
    assert [e["id"] for e in entries] == imported
    assert all(e["answer"] == answers[e["id"]] for e in entries)
    assert {e["source"] for e in entries} == {"person"}


def test_a_pool_without_answers_is_refused_for_a_simulation(tiny_model_dir, unlabeled_pool, tmp_path, capsys):
    data, _ = unlabeled_pool
    args = human_args(tiny_model_dir, data, tmp_path / "R")
    args[args.index("human")] = "gold"
    assert_one_line_error(*star(capsys, *args), "missing field 'label'")


def test_gold_pe_is_refused_when_people_label(tiny_model_dir, unlabeled_pool, tmp_path, capsys):
    data, _ = unlabeled_pool
    args = human_args(tiny_model_dir, data, tmp_path / "R", "--pe-mode", "gold")
    args[args.index("me")] = "pe"
    assert_one_line_error(*star(capsys, *args), "only a simulation has")


def test_without_a_test_set_rounds_report_pool_uncertainty_and_agreement(tiny_model_dir, unlabeled_pool, tmp_path,
                                                                         capsys):
    data, answers = unlabeled_pool
    (data / "dev.jsonl").unlink()
    run_dir = tmp_path / "R"
    assert star(capsys, *human_args(tiny_model_dir, data, run_dir, "--no-eval", "--rounds", 1))[0] == 0
    for round_index in (0, 1):
        rows = waiting_batch(run_dir, round_index)
        assert star(capsys, "label", run_dir, fill_jsonl(rows, answers, tmp_path / "a.jsonl"))[0] == 0
        assert resume(capsys, run_dir)[0] == 0
    rounds = [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]
    assert [r["accuracy"] for r in rounds] == [None, None]
    assert rounds[0]["agreement"] is None and 0 <= rounds[1]["agreement"] <= 1
    assert all(r["pool_uncertainty"] > 0 and r["n_monitor"] == 30 for r in rounds)


@pytest.fixture
def waiting_run(tiny_model_dir, unlabeled_pool, tmp_path, capsys):
    data, answers = unlabeled_pool
    run_dir = tmp_path / "R"
    assert star(capsys, *human_args(tiny_model_dir, data, run_dir))[0] == 0
    return run_dir, answers


def cli(*args):
    return subprocess.Popen([sys.executable, "-m", "star_al.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("delay", [0.2, 0.6, 1.2, 3.0])
def test_sigkill_during_star_label_keeps_every_label_once(waiting_run, tmp_path, capsys, delay):
    run_dir, answers = waiting_run
    labels = fill_jsonl(waiting_batch(run_dir, 0), answers, tmp_path / "a.jsonl")
    process = cli("label", run_dir, labels)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    ids = [e["id"] for e in LabelLedger(run_dir / "labels.jsonl").read()]
    assert ids in ([], [row["id"] for row in waiting_batch(run_dir, 0)])
    code, lines = star(capsys, "label", run_dir, labels)  # imported again: what the ledger holds is skipped
    assert code == 0
    assert [e["id"] for e in LabelLedger(run_dir / "labels.jsonl").read()] == [row["id"] for row in waiting_batch(run_dir, 0)]


def test_sigkill_during_the_training_after_labels_then_resume(waiting_run, tmp_path, capsys):
    run_dir, answers = waiting_run
    rows = waiting_batch(run_dir, 0)
    assert star(capsys, "label", run_dir, fill_jsonl(rows, answers, tmp_path / "a.jsonl"))[0] == 0
    before = (run_dir / "labels.jsonl").read_text()
    process = cli("resume", run_dir, "--device", "cpu", "--dtype", "float32", "--cache-dir", tmp_path / "cache")
    deadline = time.time() + 120
    while not (run_dir / ".lock.pid").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # inside the round: training, evaluating or writing
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (run_dir / "labels.jsonl").read_text() == before
    assert resume(capsys, run_dir)[0] == 0
    assert [e["id"] for e in LabelLedger(run_dir / "labels.jsonl").read()] == [r["id"] for r in rows]
    assert len((run_dir / "rounds.jsonl").read_text().splitlines()) == 1


def test_a_second_writer_is_refused_while_labels_are_imported(waiting_run, tmp_path, capsys):
    from star_al.al.run_dir import RunDir

    run_dir, answers = waiting_run
    with RunDir(run_dir).locked():
        holder = subprocess.run([sys.executable, "-m", "star_al.cli", "label", str(run_dir),
                                 str(fill_jsonl(waiting_batch(run_dir, 0), answers, tmp_path / "a.jsonl"))],
                                capture_output=True, text=True)
    assert holder.returncode == 1 and f"pid {os.getpid()}" in holder.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("name,damage", [
    ("rounds.jsonl", lambda text: text[: len(text) // 2]),
    ("labels.jsonl", lambda text: text[: len(text) - 20]),
    ("pending.json", lambda text: text[:10]),
    ("config.json", lambda text: text[:30]),
])
def test_each_truncated_state_file_is_refused_by_name(name, damage, waiting_run, tmp_path, capsys):
    run_dir, answers = waiting_run
    assert star(capsys, "label", run_dir, fill_jsonl(waiting_batch(run_dir, 0), answers, tmp_path / "a.jsonl"))[0] == 0
    assert resume(capsys, run_dir)[0] == 0  # round 0 trained, round 1 waiting
    path = run_dir / name
    path.write_text(damage(path.read_text()))
    code, lines = resume(capsys, run_dir)
    assert_one_line_error(code, lines, name)
