"""A batch reaches Label Studio exactly once, whatever happened to the pushes before.

Against a small stand-in server over HTTP (tests/fake_label_studio.py): the real SDK talks
to it where label-studio-sdk is installed, a stand-in of the SDK's few calls elsewhere, so
every path below is ours either way. A push refused or cut short is noted in the run
directory and finished by `star resume` or `star label --from label-studio`; a missing
SDK, token or server is refused before the pool is scored.
"""

import json
import sys

import pytest

import star_al.runs
from star_al.cli import main
from fake_label_studio import FakeLabelStudio, SdkStandIn
from star_al.data.catalog import load_task
from star_al.data.tasks import Example
from star_al.errors import StarError
from star_al.labeling import label_studio
from star_al.labeling.label_studio import LabelStudioProject
from star_al.labeling.ledger import LabelLedger
from star_al.labeling.oracle import Batch
from test_people import human_args, resume, waiting_batch
from test_reliability import assert_one_line_error, star


SDK_LOOKUP = label_studio._sdk_client_class  # the real one: the SDK, or the refusal without it
LOAD_MODEL = star_al.runs.load_model


def _sdk_installed() -> bool:
    try:
        import label_studio_sdk  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def studio(monkeypatch):
    """A fake Label Studio, its token in the environment, and the SDK (or its stand-in) to reach it."""
    fake = FakeLabelStudio()
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", fake.token)
    if not _sdk_installed():
        monkeypatch.setattr(label_studio, "_sdk_client_class", lambda: SdkStandIn)
    yield fake
    fake.stop()


def small_batch(round_index=0, ids=(3, 7, 11, 19)) -> Batch:
    examples = [Example(i, f"Sentence {i}. The correct answer is", None, None, {"sentence": f"sentence {i}"})
                for i in ids]
    return Batch(round_index, examples, [0.5] * len(ids), ["positive"] * len(ids), [0.69] * len(ids))


def said(capsys, *args):
    """Run the CLI in this process: (exit code, what it printed on stdout)."""
    code = main([str(a) for a in args])
    return code, capsys.readouterr().out


def state(run_dir):
    return json.loads((run_dir / "label_studio.json").read_text())


# -- the tool alone -----------------------------------------------------------------------------

def test_a_push_cut_short_after_part_was_taken_imports_only_the_rest(studio, tmp_path):
    task, batch = load_task("sst2"), small_batch()
    project = LabelStudioProject.for_run(tmp_path, studio.url)
    project.check()
    studio.cut_imports_after = 2  # Label Studio keeps two tasks, then the connection drops
    with pytest.raises(StarError, match="sends it again") as refused:
        project.push(task, batch)
    assert "\n" not in str(refused.value)
    assert state(tmp_path)["batches"] == {"0": {"delivered": False}} and len(studio.tasks) == 2

    again = LabelStudioProject.for_run(tmp_path, None)  # the next command, from the run directory alone
    again.push(task, batch)
    assert sorted(t["data"]["id"] for t in studio.project_tasks(1)) == [3, 7, 11, 19]
    assert state(tmp_path)["batches"]["0"] == {"delivered": True, "project_id": 1, "tasks": 4, "imported": 2}
    imports = studio.imports
    LabelStudioProject.for_run(tmp_path, None).push(task, batch)  # delivered: nothing is sent
    assert studio.imports == imports and len(studio.tasks) == 4


def test_a_refused_push_is_noted_before_it_is_sent_and_the_project_kept(studio, tmp_path):
    task = load_task("sst2")
    project = LabelStudioProject.for_run(tmp_path, studio.url)
    studio.refuse_imports = 1
    with pytest.raises(StarError, match=r"round 0's batch: HTTP 500"):
        project.push(task, small_batch())
    assert state(tmp_path) == {"url": studio.url, "project_id": 1, "batches": {"0": {"delivered": False}},
                               "project_key": studio.projects[1]["description"].split("(key ")[1].rstrip(").")}
    assert "not yet delivered to Label Studio" in project.describe(0)
    LabelStudioProject.for_run(tmp_path, None).push(task, small_batch())
    assert len(studio.projects) == 1 and len(studio.project_tasks(1, 0)) == 4
    assert LabelStudioProject.for_run(tmp_path, None).describe(0) == "delivered to Label Studio project 1 (4 tasks)"


def test_a_project_whose_create_answer_was_lost_is_found_not_made_twice(studio, tmp_path):
    task = load_task("sst2")
    for other in ("someone else's project", "another run"):
        studio.projects[len(studio.projects) + 1] = {"id": len(studio.projects) + 1, "title": other,
                                                     "label_config": "<View/>", "description": "star-al key 0"}
    studio.lose_create_answer = True  # Label Studio makes the project; its answer never arrives
    with pytest.raises(StarError, match="round 0's batch"):
        LabelStudioProject.for_run(tmp_path, studio.url).push(task, small_batch())
    assert len(studio.projects) == 3 and state(tmp_path)["project_id"] is None
    LabelStudioProject.for_run(tmp_path, None).push(task, small_batch())
    assert len(studio.projects) == 3 and state(tmp_path)["project_id"] == 3  # the one made before
    assert len(studio.project_tasks(3, 0)) == 4


def test_a_create_lost_before_label_studio_kept_it_makes_the_project_then(studio, tmp_path, monkeypatch):
    monkeypatch.setattr(label_studio.uuid, "uuid4", lambda: type("Key", (), {"hex": "c0ffee"})())
    studio.projects[1] = {"id": 1, "title": "notes on c0ffee", "label_config": "<View/>", "description": ""}
    studio.stop()
    with pytest.raises(StarError):
        LabelStudioProject.for_run(tmp_path, studio.url).push(load_task("sst2"), small_batch())
    studio.start()
    # It looks (the search finds a title with the key in it, not this run's project; the next page is a 404),
    # finds none, and makes the project.
    LabelStudioProject.for_run(tmp_path, None).push(load_task("sst2"), small_batch())
    assert len(studio.projects) == 2 and state(tmp_path)["project_id"] == 2


def test_a_long_run_path_makes_a_title_label_studio_takes(studio, tmp_path):
    run_dir = tmp_path / "an experiment with a rather long name" / "me+star-dora" / "seed-3-train-12"
    LabelStudioProject.for_run(run_dir, studio.url).push(load_task("sst2"), small_batch())
    assert studio.projects[1]["title"] == "star-al ... long name/me+star-dora/seed-3-train-12"  # 50 characters


def test_the_same_ids_in_a_later_round_are_a_new_batch(studio, tmp_path):
    """An example queued from one batch into the next (--partial) goes out again with the next."""
    task = load_task("sst2")
    project = LabelStudioProject.for_run(tmp_path, studio.url)
    project.push(task, small_batch(0, (3, 7)))
    project.push(task, small_batch(1, (7, 20)))
    assert [(t["data"]["star_round"], t["data"]["id"]) for t in studio.project_tasks(1)] == [(0, 3), (0, 7),
                                                                                             (1, 7), (1, 20)]


def test_the_pull_reads_the_latest_batch_only(studio, tmp_path):
    """Earlier batches' tasks stay in the project, labelled already; their answers are not offered again."""
    task = load_task("sst2")
    project = LabelStudioProject.for_run(tmp_path, studio.url)
    project.push(task, small_batch(0, (3, 7)))
    project.push(task, small_batch(1, (20, 21)))
    for item in studio.project_tasks(1):
        studio.annotate(item, "negative", cancelled=item["data"]["id"] == 21)
    assert [row[1:] for row in project.pull()] == [(20, "negative")]


@pytest.mark.parametrize("fault, message", [
    ("closed port", "does not answer"),
    ("unhealthy", "its /health answers HTTP 503"),
    ("wrong token", "the token check: HTTP 401 (Invalid token.); check LABEL_STUDIO_API_KEY"),
    ("no token", "set LABEL_STUDIO_API_KEY"),
    ("no SDK", "Label Studio needs its SDK: pip install 'star-al[label-studio]'"),
    ("not a URL", "give the server's address"),
])
def test_the_check_refuses_in_one_line(fault, message, studio, tmp_path, monkeypatch):
    url = {"not a URL": "localhost:8080"}.get(fault, studio.url)
    if fault == "closed port":
        studio.stop()
    studio.health_status = 503 if fault == "unhealthy" else 200
    if fault == "wrong token":
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", "not-the-token")
    if fault == "no token":
        monkeypatch.delenv("LABEL_STUDIO_API_KEY")
    if fault == "no SDK":
        monkeypatch.setattr(label_studio, "_sdk_client_class", SDK_LOOKUP)
        monkeypatch.setitem(sys.modules, "label_studio_sdk", None)  # as if not installed
    with pytest.raises(StarError) as refused:
        LabelStudioProject.for_run(tmp_path, url).check()
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert not (tmp_path / "label_studio.json").exists()


# -- whole runs -----------------------------------------------------------------------------------

def test_a_run_whose_first_push_failed_delivers_it_on_resume_once(tiny_model_dir, unlabeled_pool, studio, tmp_path,
                                                                   capsys):
    data, answers = unlabeled_pool
    run_dir = tmp_path / "R"
    studio.refuse_imports = 1  # the server answers at the start, then refuses the import
    code, lines = star(capsys, *human_args(tiny_model_dir, data, run_dir, "--label-studio", studio.url))
    assert_one_line_error(code, lines, "round 0's batch: HTTP 500")
    assert "star resume" in lines[-1] and len(waiting_batch(run_dir, 0)) == 4 and not studio.tasks
    assert state(run_dir)["batches"] == {"0": {"delivered": False}}
    code, out = said(capsys, "status", run_dir)
    assert code == 0 and "round 0: files written (round_0.*); not yet delivered to Label Studio" in out

    # the batch goes to Label Studio now, and the run waits for it
    code, out = said(capsys, "resume", run_dir, "--device", "cpu", "--dtype", "float32",
                     "--cache-dir", tmp_path / "cache")
    assert code == 0 and "delivered to Label Studio project 1 (4 tasks)" in out and "--from label-studio" in out
    batch = waiting_batch(run_dir, 0)
    assert sorted(t["data"]["id"] for t in studio.tasks) == sorted(row["id"] for row in batch)
    assert resume(capsys, run_dir)[0] == 0 and len(studio.tasks) == 4 and studio.imports == 2  # not again

    for item in studio.tasks:
        studio.annotate(item, answers[item["data"]["id"]])
    assert star(capsys, "label", run_dir, "--from", "label-studio")[0] == 0
    assert sorted(e["id"] for e in LabelLedger(run_dir / "labels.jsonl").read()) == sorted(r["id"] for r in batch)
    code, out = said(capsys, "status", run_dir)
    assert code == 0 and ("round 0: files written (round_0.*); delivered to Label Studio project 1 (4 tasks); "
                          "4 of 4 labels in (source: label-studio)") in out

    # round 1 goes out as a new batch of the same project; its pull leaves round 0's tasks alone
    assert resume(capsys, run_dir)[0] == 0
    round_1 = studio.project_tasks(1, 1)
    assert sorted(t["data"]["id"] for t in round_1) == sorted(row["id"] for row in waiting_batch(run_dir, 1))
    for item in round_1:
        studio.annotate(item, answers[item["data"]["id"]])
    assert star(capsys, "label", run_dir, "--from-label-studio")[0] == 0
    assert len(LabelLedger(run_dir / "labels.jsonl").read()) == 7


def test_label_from_label_studio_delivers_a_batch_whose_push_failed(tiny_model_dir, unlabeled_pool, studio, tmp_path,
                                                                    capsys):
    data, answers = unlabeled_pool
    run_dir = tmp_path / "R"
    studio.cut_imports_after = 1
    assert star(capsys, *human_args(tiny_model_dir, data, run_dir, "--label-studio", studio.url))[0] == 1
    code, out = said(capsys, "label", run_dir, "--from-label-studio")  # delivers the rest; nobody answered yet
    assert code == 0 and "now in Label Studio project 1 (4 tasks, 3 imported now)" in out and "label it there" in out
    assert len(studio.tasks) == 4 and state(run_dir)["batches"]["0"]["delivered"]
    assert resume(capsys, run_dir)[0] == 0 and studio.imports == 2  # waits; sends nothing again
    for item in studio.tasks:
        studio.annotate(item, answers[item["data"]["id"]])
    assert star(capsys, "label", run_dir, "--from-label-studio")[0] == 0
    assert len(LabelLedger(run_dir / "labels.jsonl").read()) == 4


@pytest.mark.parametrize("fault", ["closed port", "no token", "no SDK", "labels gold"])
def test_label_studio_trouble_is_refused_before_the_model_loads(fault, tiny_model_dir, unlabeled_pool, studio,
                                                                 tmp_path, capsys, monkeypatch):
    data, _ = unlabeled_pool
    run_dir = tmp_path / "R"
    if fault == "closed port":
        studio.stop()
    if fault == "no token":
        monkeypatch.delenv("LABEL_STUDIO_API_KEY")
    if fault == "no SDK":
        monkeypatch.setattr(label_studio, "_sdk_client_class", SDK_LOOKUP)
        monkeypatch.setitem(sys.modules, "label_studio_sdk", None)  # as if not installed
    monkeypatch.setattr(star_al.runs, "load_model", _not_now)
    args = human_args(tiny_model_dir, data, run_dir, "--label-studio", studio.url)
    if fault == "labels gold":
        args[args.index("human")] = "gold"
    code, lines = star(capsys, *args)
    needle = {"closed port": "does not answer", "no token": "set LABEL_STUDIO_API_KEY",
              "no SDK": "needs its SDK", "labels gold": "it needs --labels human"}[fault]
    assert_one_line_error(code, lines, needle)
    assert not (run_dir / "to_label").exists() and not (run_dir / "label_studio.json").exists()


def _not_now(*args, **kwargs):
    raise AssertionError("the model was loaded before Label Studio was checked")


def test_a_resume_checks_label_studio_before_any_work(tiny_model_dir, unlabeled_pool, studio, tmp_path, capsys,
                                                      monkeypatch):
    data, _ = unlabeled_pool
    run_dir = tmp_path / "R"
    assert star(capsys, *human_args(tiny_model_dir, data, run_dir, "--label-studio", studio.url))[0] == 0
    studio.stop()
    monkeypatch.setattr(star_al.runs, "load_model", _not_now)
    code, lines = resume(capsys, run_dir)
    assert_one_line_error(code, lines, f"Label Studio at {studio.url} does not answer")
    assert f"go on without it by moving {run_dir / 'label_studio.json'} away" in lines[-1]
    code, lines = star(capsys, *human_args(tiny_model_dir, data, run_dir, "--label-studio", "http://elsewhere:8080"))
    assert_one_line_error(code, lines, f"labels in Label Studio at {studio.url}, not http://elsewhere:8080")
    assert state(run_dir)["batches"] == {"0": {"delivered": True, "project_id": 1, "tasks": 4, "imported": 4}}

    (run_dir / "label_studio.json").rename(tmp_path / "label_studio.json")  # as the refusal says: files only now
    monkeypatch.setattr(star_al.runs, "load_model", LOAD_MODEL)
    code, out = said(capsys, "resume", run_dir, "--device", "cpu", "--dtype", "float32", "--cache-dir",
                     tmp_path / "cache")
    assert code == 0 and "round 0: 4 examples to label" in out and "Label Studio project" not in out
