"""The Python API: the same runs as the command line, a step-wise learner, selection on given scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import star_al
from star_al.errors import StarError
from test_reliability import run_args, star

TINY = dict(warm_start=4, query_size=3, n_rounds=2, pool_size=30, test_limit=6, lora={"rank": 4})
MACHINE = dict(device="cpu", dtype="float32")


def _rounds(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]


def test_api_run_selects_what_star_run_selects(tiny_model_dir, sst2_folder, tmp_path, capsys):
    code, _ = star(capsys, *run_args(tiny_model_dir, sst2_folder, tmp_path / "cli", strategy="me+star"))
    assert code == 0
    config = star_al.configure(task="sst2", strategy="me+star", preset="smoke", model=str(tiny_model_dir),
                               data=str(sst2_folder), **TINY)
    rounds = star_al.run(config, tmp_path / "api", machine=star_al.Machine(cache_dir=str(tmp_path / "cache"),
                                                                           **MACHINE))
    cli = _rounds(tmp_path / "cli")
    assert [r.selected_ids for r in rounds] == [r["selected_ids"] for r in cli]
    assert [r.accuracy for r in rounds] == [r["accuracy"] for r in cli]
    assert [r["selected_ids"] for r in _rounds(tmp_path / "api")] == [r["selected_ids"] for r in cli]


def test_learner_taught_the_gold_answers_picks_what_a_simulation_picks(tiny_backbone_factory, sst2_folder,
                                                                        tmp_path, capsys):
    """Query, teach the dataset's answers, fit: the same picks and accuracies as `star run` (gold labels)."""
    backbone = tiny_backbone_factory(0)
    model_dir = tmp_path / "model"
    backbone.model.save_pretrained(model_dir)
    backbone.tokenizer.save_pretrained(model_dir)
    code, _ = star(capsys, *run_args(model_dir, sst2_folder, tmp_path / "cli", strategy="me+dynamic"))
    assert code == 0
    records = [json.loads(line) for line in (sst2_folder / "train.jsonl").read_text().splitlines()]
    pool = [{"sentence": r["sentence"]} for r in records]
    test = [json.loads(line) for line in (sst2_folder / "dev.jsonl").read_text().splitlines()]
    learner = star_al.Learner(str(model_dir), "sst2", pool=pool, test=test, out=tmp_path / "learner",
                              strategy="me+dynamic", preset="smoke",
                              machine=star_al.Machine(cache_dir=str(tmp_path / "cache"), **MACHINE), **TINY)
    fitted = []
    while not learner.done:
        batch = learner.query()
        assert learner.query().ids == batch.ids  # asked again before fit: the same batch
        assert len(batch.model_answers) == len(batch.ids) and all(a in ("positive", "negative")
                                                                   for a in batch.model_answers)
        with pytest.raises(StarError, match="no label yet"):
            learner.fit()
        assert learner.teach({i: records[i]["label"] for i in batch.ids}) == 0
        fitted.append(learner.fit())
    cli = _rounds(tmp_path / "cli")
    assert [r.selected_ids for r in fitted] == [r["selected_ids"] for r in cli]
    assert [r.accuracy for r in fitted] == [r["accuracy"] for r in cli]
    assert learner.evaluate()["accuracy"] == pytest.approx(cli[-1]["accuracy"])
    code, lines = star(capsys, "status", tmp_path / "learner")
    assert code == 0


def test_teach_refuses_a_bad_set_whole_as_star_label_does(tiny_model_dir, sst2_folder, tmp_path):
    records = [json.loads(line) for line in (sst2_folder / "train.jsonl").read_text().splitlines()]
    learner = star_al.Learner(str(tiny_model_dir), "sst2", pool=[{"sentence": r["sentence"]} for r in records],
                              out=tmp_path / "learner", strategy="random", preset="smoke",
                              machine=star_al.Machine(cache_dir=str(tmp_path / "cache"), **MACHINE), **TINY)
    batch = learner.query()
    first, *rest = batch.ids
    outside = next(i for i in range(len(records)) if i not in batch.ids)
    with pytest.raises(StarError, match="nothing imported, 2 bad row"):
        learner.teach({first: "positive", outside: "negative", rest[0]: "maybe"})
    assert learner.teach([(first, "positive")]) == len(batch.ids) - 1
    record = learner.fit(partial=True)
    assert record.selected_ids == [first] and record.accuracy is None
    with pytest.raises(StarError, match="queries"):
        learner.query(k=99)


def test_learner_resumes_from_its_directory(tiny_model_dir, sst2_folder, tmp_path):
    records = [json.loads(line) for line in (sst2_folder / "train.jsonl").read_text().splitlines()]
    pool = [{"sentence": r["sentence"]} for r in records]
    machine = star_al.Machine(cache_dir=str(tmp_path / "cache"), **MACHINE)
    learner = star_al.Learner(str(tiny_model_dir), "sst2", pool=pool, out=tmp_path / "learner", strategy="me",
                              preset="smoke", machine=machine, **TINY)
    batch = learner.query()
    learner.teach({i: records[i]["label"] for i in batch.ids})
    learner.fit()
    waiting = learner.query()
    again = star_al.Learner.load(tmp_path / "learner", str(tiny_model_dir), pool, machine=machine)
    assert again.query().ids == waiting.ids
    assert [r.selected_ids for r in again.rounds] == [batch.ids]
    with pytest.raises(StarError, match="data"):
        star_al.Learner.load(tmp_path / "learner", str(tiny_model_dir), pool[:-1], machine=machine).query()


def test_select_mixes_base_and_tuned_scores_and_averages_passes():
    ids = np.arange(10, 20)
    tuned = np.array([np.linspace(0, 1, 10), np.linspace(0, 1, 10)[::-1] * 0.5])  # 2 passes
    base = np.linspace(1, 0, 10)
    late = star_al.select("me+dynamic+mc", k=3, ids=ids, scores={"me": tuned}, base_scores={"me": base},
                          query_index=4, n_rounds=5)
    early = star_al.select("me+dynamic+mc", k=3, ids=ids, scores={"me": tuned}, base_scores={"me": base},
                           query_index=0, n_rounds=5)
    assert late.info["lambda"] < early.info["lambda"]
    mean = tuned.mean(axis=0)
    assert late.ids == [int(i) for i in ids[np.argsort(-(late.info["lambda"] * base / base.max()
                                                         + (1 - late.info["lambda"]) * (mean - mean.min())
                                                         / (mean.max() - mean.min())))[:3]]]
    assert star_al.select("me", k=3, ids=ids, scores={"me": mean}).ids == [19, 18, 17]
    with pytest.raises(StarError, match=r"needs base_scores\['me'\]"):
        star_al.select("me+star", k=3, ids=ids, scores={"me": tuned})
    with pytest.raises(StarError, match="shape"):
        star_al.select("me", k=3, ids=ids, scores={"me": mean[:5]})


def test_a_strategy_registered_in_user_code_runs_in_select_and_recipes():
    class Smallest(star_al.ScoredStrategy):
        measure = "me"
        needs = star_al.Needs(tuned=frozenset({"me"}))

        def score(self, view):
            return -view.tuned("me").mean(axis=0)

    star_al.register_strategy("smallest-test", lambda config: Smallest(), ranks=True, help="lowest ME first")
    try:
        ids = np.arange(6)
        assert star_al.select("smallest-test", k=2, ids=ids, scores={"me": np.arange(6.0)}).ids == [0, 1]
        mixed = star_al.select("smallest-test+dynamic", k=2, ids=ids, scores={"me": np.arange(6.0)},
                               base_scores={"me": np.arange(6.0)}, query_index=0, n_rounds=2)
        assert "lambda" in mixed.info
        assert any(name == "smallest-test" for title, rows in star_al.registered() for name, _ in rows)
    finally:
        star_al.STRATEGIES.remove("smallest-test")


def test_make_task_builds_a_label_task_from_a_template():
    task = star_al.make_task("tickets", prompt="Ticket: {text}\nTeam:", labels=["billing", "bug"], answer="team")
    examples = task.build_examples([("row 1", {"text": "card charged twice", "team": "billing"})])
    assert examples[0].prompt == "Ticket: card charged twice\nTeam:" and examples[0].gold == "billing"
    with pytest.raises(StarError, match="prompt"):
        star_al.make_task("bad", prompt="{gold} leaks", labels=["a"], answer="answer")
