"""Against a real Label Studio: push a round, annotate through its API as an annotator
would (one annotation cancelled), pull, and train on exactly the submitted ones; and a
push that fails because the server went down is delivered, once, after it restarts.

Needs a running server: `scripts/label_studio_roundtrip.sh` starts one (SQLite, a temporary
home) and runs this file; without STAR_LABEL_STUDIO_URL it is skipped. The restart needs
the script's control (STAR_LABEL_STUDIO_CONTROL: `SCRIPT stop`, `SCRIPT start`).
"""

import json
import os
import subprocess

import pytest

import star_al.runs
from star_al.labeling.ledger import LabelLedger
from test_people import human_args, resume, waiting_batch
from test_reliability import assert_one_line_error, star

URL = os.environ.get("STAR_LABEL_STUDIO_URL")
CONTROL = os.environ.get("STAR_LABEL_STUDIO_CONTROL")
pytestmark = [pytest.mark.label_studio,
              pytest.mark.skipif(not URL, reason="no Label Studio server (scripts/label_studio_roundtrip.sh)")]


def server(action: str) -> None:
    """Stop the server, or start it again on the same data and port (waits until it answers)."""
    subprocess.run(["bash", CONTROL, action], check=True, timeout=900)


def test_push_annotate_cancel_pull_and_train_on_the_submitted(tiny_model_dir, unlabeled_pool, tmp_path, capsys):
    from label_studio_sdk import LabelStudio

    data, answers = unlabeled_pool
    run_dir = tmp_path / "R"
    code, lines = star(capsys, *human_args(tiny_model_dir, data, run_dir, "--label-studio", URL))
    assert code == 0, lines[-1]
    project_id = json.loads((run_dir / "label_studio.json").read_text())["project_id"]
    client = LabelStudio(base_url=URL, api_key=os.environ["LABEL_STUDIO_API_KEY"])
    tasks = list(client.tasks.list(project=project_id, fields="all"))
    assert sorted(t.data["id"] for t in tasks) == sorted(row["id"] for row in waiting_batch(run_dir, 0))
    assert all(t.predictions for t in tasks)  # the model's answer came along as a prediction

    cancelled = tasks[0]
    for task in tasks:
        result = [{"from_name": "answer", "to_name": "question", "type": "choices",
                   "value": {"choices": [answers[task.data["id"]]]}}]
        client.annotations.create(id=task.id, result=result, was_cancelled=task.id == cancelled.id)

    code, _ = star(capsys, "label", run_dir, "--from-label-studio")
    assert code == 0
    submitted = sorted(t.data["id"] for t in tasks if t.id != cancelled.id)
    assert sorted(e["id"] for e in LabelLedger(run_dir / "labels.jsonl").read()) == submitted
    assert resume(capsys, run_dir, "--partial")[0] == 0
    first = json.loads((run_dir / "rounds.jsonl").read_text().splitlines()[0])
    assert sorted(first["selected_ids"]) == submitted and first["queued_ids"] == [cancelled.data["id"]]
    assert all(e["answer"] == answers[e["id"]] and e["source"] == "label-studio"
               for e in LabelLedger(run_dir / "labels.jsonl").read())


@pytest.mark.skipif(not CONTROL, reason="the server's stop and start come from scripts/label_studio_roundtrip.sh")
def test_a_push_failed_while_the_server_was_down_is_delivered_once_after_its_restart(
        tiny_model_dir, unlabeled_pool, tmp_path, capsys, monkeypatch):
    from label_studio_sdk import LabelStudio

    data, answers = unlabeled_pool
    run_dir = tmp_path / "R"
    load_model = star_al.runs.load_model

    def server_goes_down_while_the_model_loads(*args, **kwargs):
        server("stop")  # after the start-up check, before the push
        return load_model(*args, **kwargs)

    monkeypatch.setattr(star_al.runs, "load_model", server_goes_down_while_the_model_loads)
    code, lines = star(capsys, *human_args(tiny_model_dir, data, run_dir, "--label-studio", URL))
    assert_one_line_error(code, lines, "round 0's batch")
    assert "sends it again" in lines[-1] and len(waiting_batch(run_dir, 0)) == 4
    saved = json.loads((run_dir / "label_studio.json").read_text())
    assert saved["url"] == URL and saved["batches"] == {"0": {"delivered": False}}

    monkeypatch.setattr(star_al.runs, "load_model", load_model)
    server("start")
    code, lines = resume(capsys, run_dir)
    assert code == 0, lines[-1]
    code, lines = resume(capsys, run_dir)  # delivered already: nothing is sent twice
    assert code == 0, lines[-1]
    saved = json.loads((run_dir / "label_studio.json").read_text())
    assert saved["batches"]["0"]["delivered"] and saved["batches"]["0"]["tasks"] == 4
    client = LabelStudio(base_url=URL, api_key=os.environ["LABEL_STUDIO_API_KEY"])
    tasks = list(client.tasks.list(project=saved["project_id"], fields="all"))
    assert sorted(t.data["id"] for t in tasks) == sorted(row["id"] for row in waiting_batch(run_dir, 0))

    for task in tasks:
        result = [{"from_name": "answer", "to_name": "question", "type": "choices",
                   "value": {"choices": [answers[task.data["id"]]]}}]
        client.annotations.create(id=task.id, result=result)
    assert star(capsys, "label", run_dir, "--from-label-studio")[0] == 0
    assert sorted(e["id"] for e in LabelLedger(run_dir / "labels.jsonl").read()) == sorted(t.data["id"] for t in tasks)
