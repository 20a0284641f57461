"""Pools of millions: read from disk through an index, base scores computed for what rounds ask
about, pool scoring saved in chunks that a killed round resumes from. Small pools stay as they were."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

import star_al.al.loop as loop_module
from star_al.al.base_scores import base_pool_scores
from star_al.al.loop import ActiveLearningRun
from star_al.al.run_dir import RunDir
from star_al.data.catalog import load_task
from star_al.data.disk_pool import DiskPool, load_pool, open_pool
from star_al.data.tasks import fingerprint, load_examples
from star_al.errors import StarError
from star_al.files import load_npz
from test_loop import Killed, smoke_config, without_timings

datasets = pytest.importorskip("datasets")
parquet = pytest.importorskip("pyarrow.parquet")
import pyarrow  # noqa: E402  (after the skip: both come with the `parquet` and `hub` extras)


@pytest.fixture
def sst2_files(data_root, tmp_path) -> Path:
    """60 sst2 train lines (with a blank line among them) and 10 test lines, in a folder."""
    folder = tmp_path / "sst2-data"
    folder.mkdir()
    source = Path(data_root) / "sst2"
    lines = (source / "train.jsonl").read_text().splitlines(True)[:60]
    (folder / "train.jsonl").write_text("".join(lines[:7] + ["\n"] + lines[7:]))
    (folder / "dev.jsonl").write_text("".join((source / "dev.jsonl").read_text().splitlines(True)[:10]))
    return folder


def disk_pool(task, folder: Path, cache: Path) -> DiskPool:
    pool = load_pool(task, "train", 0, cache, data_dir=str(folder))
    assert isinstance(pool, DiskPool)
    return pool


def as_other_format(folder: Path, data_format: str) -> Path:
    rows = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines() if line.strip()]
    if data_format == "parquet":
        parquet.write_table(pyarrow.Table.from_pylist(rows), folder / "train.parquet", row_group_size=16)
    elif data_format == "datasets":
        datasets.Dataset.from_list(rows).save_to_disk(str(folder / "train"))
    if data_format != "jsonl":
        (folder / "train.jsonl").unlink()
    return folder


# -- the pool from disk -----------------------------------------------------------------------

@pytest.mark.parametrize("data_format", ["jsonl", "parquet", "datasets"])
def test_a_pool_on_disk_holds_the_examples_load_examples_reads(data_format, sst2_files, tmp_path, caplog):
    task = load_task("sst2")
    expected = load_examples(task, "train", data_dir=str(sst2_files))
    as_other_format(sst2_files, data_format)
    caplog.set_level(logging.INFO, logger="star_al")
    pool = disk_pool(task, sst2_files, tmp_path / "cache")
    assert len(pool) == len(expected) == 60 and np.array_equal(pool.ids, np.arange(60))
    assert list(pool) == expected and [ex.record for ex in pool] == [ex.record for ex in expected]
    order = [41, 3, 59, 0, 17, 3]
    assert pool.take(order) == [expected[i] for i in order] and pool[5:9] == expected[5:9] and pool[-1] == expected[-1]
    assert pool.content_digest and pool.all_answered
    assert "indexing the pool file" in caplog.text
    caplog.clear()
    again = disk_pool(task, sst2_files, tmp_path / "cache")  # the cached index: the file is not read again
    assert "indexing" not in caplog.text and list(again) == expected
    assert fingerprint(again, []) == fingerprint(pool, []) != fingerprint(expected, [])
    with pytest.raises(IndexError):
        pool[60]


def test_a_pool_edited_in_place_is_indexed_again_and_gets_another_fingerprint(sst2_files, tmp_path):
    task = load_task("sst2")
    before = disk_pool(task, sst2_files, tmp_path / "cache")
    path = sst2_files / "train.jsonl"
    path.write_text(path.read_text().replace("positive", "negative", 1))
    after = disk_pool(task, sst2_files, tmp_path / "cache")
    assert after.content_digest != before.content_digest and list(after) == load_examples(
        task, "train", data_dir=str(sst2_files))


def test_a_bad_record_is_refused_at_indexing_naming_file_and_line(sst2_files, tmp_path):
    path = sst2_files / "train.jsonl"
    lines = path.read_text().splitlines(True)
    path.write_text("".join(lines[:30] + ['{"sentence": "no label here"}\n'] + lines[30:]))
    with pytest.raises(StarError, match=r"train\.jsonl:31: missing field 'label'") as caught:
        disk_pool(load_task("sst2"), sst2_files, tmp_path / "cache")
    assert "\n" not in str(caught.value)
    path.write_text("".join(lines[:3] + ["{not json\n"] + lines[3:]))
    with pytest.raises(StarError, match=r"train\.jsonl:4: malformed JSON"):
        disk_pool(load_task("sst2"), sst2_files, tmp_path / "cache")


def test_a_pool_file_changed_under_a_running_pool_is_refused_not_misread(sst2_files, tmp_path):
    pool = disk_pool(load_task("sst2"), sst2_files, tmp_path / "cache")
    path = sst2_files / "train.jsonl"
    path.write_text(path.read_text()[40:])
    with pytest.raises(StarError, match="changed since it was indexed"):
        pool.take([3])


def test_only_a_pool_of_large_pool_examples_or_more_is_read_from_disk(sst2_files, tmp_path):
    task = load_task("sst2")
    assert isinstance(load_pool(task, "train", 62, tmp_path / "cache", data_dir=str(sst2_files)), list)
    assert not (tmp_path / "cache").exists()  # a file of fewer lines is not even indexed
    assert isinstance(load_pool(task, "train", 61, tmp_path / "cache", data_dir=str(sst2_files)), list)
    assert isinstance(load_pool(task, "train", 60, tmp_path / "cache", data_dir=str(sst2_files)), DiskPool)
    assert isinstance(load_pool(task, "train", 60, None, data_dir=str(sst2_files)), list)  # no cache: in memory


# -- the loop on a pool from disk ---------------------------------------------------------------

@pytest.fixture
def sst2_runs(sst2_files, tmp_path):
    """The same 60 examples as a list (read whole) and from disk, with the test set."""
    task = load_task("sst2")
    listed = load_examples(task, "train", data_dir=str(sst2_files))
    test = load_examples(task, "test", data_dir=str(sst2_files))
    return task, listed, disk_pool(task, sst2_files, tmp_path / "cache"), test


def run(config, backbone, task, pool, test, path, oracle=None):
    return ActiveLearningRun(config, task, pool, test, backbone, RunDir(path), oracle=oracle).run()


def picks_and_accuracies(rounds):
    return [(r.selected_ids, r.accuracy) for r in rounds]


def test_a_pool_on_disk_picks_what_the_same_pool_in_memory_picks(tiny_backbone_factory, sst2_runs, tmp_path):
    task, listed, on_disk, test = sst2_runs
    in_memory = run(smoke_config("me+star"), tiny_backbone_factory(0), task, listed, test, tmp_path / "memory")
    streamed = run(smoke_config("me+star", large_pool=0), tiny_backbone_factory(0), task, on_disk, test,
                   tmp_path / "disk")
    assert picks_and_accuracies(streamed) == picks_and_accuracies(in_memory)
    # The in-memory run scored the whole pool with the base model once; the large pool only what it asked.
    assert (tmp_path / "memory" / "base_scores.npz").is_file() and not (tmp_path / "disk" / "base_scores.npz").exists()
    for round_index in (1, 2, 3):
        memory = load_npz(tmp_path / "memory" / "scores" / f"round-{round_index:02d}.npz")
        disk = load_npz(tmp_path / "disk" / "scores" / f"round-{round_index:02d}.npz")
        assert np.array_equal(memory["ids"], disk["ids"])
        np.testing.assert_allclose(disk["base_me"], memory["base_me"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(disk["me"], memory["me"], rtol=1e-5, atol=1e-6)


def test_lazy_base_scores_are_the_frozen_models_and_only_of_what_rounds_scored(tiny_backbone_factory, sst2_runs,
                                                                           tmp_path):
    task, listed, on_disk, test = sst2_runs
    config = smoke_config("me+star", large_pool=0, pool_subsample=8, pool_size=None)
    rounds = run(config, tiny_backbone_factory(0), task, on_disk, test, tmp_path / "disk")
    scored = np.unique(np.concatenate([load_npz(tmp_path / "disk" / "scores" / f"round-{r.round:02d}.npz")["ids"]
                                       for r in rounds[1:]]))
    kept = np.concatenate([load_npz(path)["ids"] for path in (tmp_path / "disk" / "base-scores").rglob("*.npz")])
    assert len(kept) == len(set(kept.tolist())) and set(kept.tolist()) == set(scored.tolist())
    assert len(scored) < len(listed) - config.warm_start
    # The same examples scored by the frozen model over the whole pool (before any adapter):
    backbone = tiny_backbone_factory(0)
    whole = base_pool_scores(config, task, backbone.model, backbone.tokenizer, {ex.id: ex for ex in listed},
                             np.arange(60), RunDir(tmp_path / "whole"), None)
    for r in rounds[1:]:
        saved = load_npz(tmp_path / "disk" / "scores" / f"round-{r.round:02d}.npz")
        np.testing.assert_allclose(saved["base_me"], whole["me"][saved["ids"]], rtol=1e-5, atol=1e-6)


class KillingScorer:
    """score_examples as the loop calls it, but the process 'dies' at the `at`-th call whose progress
    label starts with `desc` (the chunks before it were saved)."""

    def __init__(self, desc: str, at: int):
        self.desc, self.at, self.calls = desc, at, 0
        self.plain = loop_module.score_examples

    def __call__(self, *args, desc=None, **kwargs):
        if desc is not None and desc.startswith(self.desc):
            self.calls += 1
            if self.calls == self.at:
                raise Killed
        return self.plain(*args, desc=desc, **kwargs)


# Round 1 scores its 26 candidates (6 chunks of 5), round 2 its 23 (5 chunks); the first call of a
# job of several chunks times a few examples to say how long they will take. The kill comes at the
# 4th call: two chunks were saved, the third dies. Round 1 asks the base model about all its 26
# candidates (round 2's are among them, so it asks about none).
@pytest.mark.parametrize("desc,rounds_done,said", [
    ("round 2: score pool", 2, "round 2: score pool: resumed from chunk 3 of 5 (2 finished chunks read back"),
    ("base model scores", 1, "round 1: base model scores: resumed from chunk 3 of 6 (2 finished chunks read back"),
])
def test_a_kill_during_pool_scoring_resumes_from_the_last_finished_chunk_with_identical_picks(
        desc, rounds_done, said, tiny_backbone_factory, sst2_runs, tmp_path, monkeypatch, caplog):
    task, _, on_disk, test = sst2_runs
    config = smoke_config("me+star", large_pool=0, score_chunk=5)
    whole = run(config, tiny_backbone_factory(0), task, on_disk, test, tmp_path / "whole")
    monkeypatch.setattr(loop_module, "score_examples", KillingScorer(desc, at=4))
    with pytest.raises(Killed):
        run(config, tiny_backbone_factory(0), task, on_disk, test, tmp_path / "killed")
    monkeypatch.undo()
    assert len(RunDir(tmp_path / "killed").read_rounds()) == rounds_done
    caplog.set_level(logging.INFO, logger="star_al")
    resumed = run(config, tiny_backbone_factory(0), task, on_disk, test, tmp_path / "killed")
    assert without_timings(resumed) == without_timings(whole)
    for round_index in (1, 2, 3):
        saved = [load_npz(path / "scores" / f"round-{round_index:02d}.npz") for path in (tmp_path / "whole",
                                                                                        tmp_path / "killed")]
        assert saved[0].keys() == saved[1].keys() and all(np.array_equal(saved[0][k], saved[1][k]) for k in saved[0])
    assert said in caplog.text
    assert not list((tmp_path / "killed" / "scoring").rglob("*.npz"))  # done with once each batch was written


def test_a_round_of_several_chunks_says_before_it_starts_how_long_they_will_take(tiny_backbone_factory, sst2_runs,
                                                                               tmp_path, caplog):
    task, _, on_disk, test = sst2_runs
    caplog.set_level(logging.INFO, logger="star_al")
    run(smoke_config("me+star", large_pool=0, score_chunk=10, warm_start_by="me"), tiny_backbone_factory(0),
        task, on_disk, test, tmp_path / "r")
    # The warm start ranks the whole pool of 30 by the base model: three chunks, announced first.
    lines = caplog.text.splitlines()
    announced = next(n for n, line in enumerate(lines) if "round 0: base model scores: 30 examples in 3 chunks" in line)
    saved = next(n for n, line in enumerate(lines) if "round 0: base model scores: chunk 1/3 saved" in line)
    assert announced < saved and "ms an example" in lines[announced]


def test_a_small_pool_scored_in_one_chunk_writes_no_chunks_and_no_lazy_scores(tiny_backbone_factory, sst2_runs,
                                                                          tmp_path):
    task, listed, _, test = sst2_runs
    run(smoke_config("me+star"), tiny_backbone_factory(0), task, listed, test, tmp_path / "r")
    assert not (tmp_path / "r" / "base-scores").exists() and not list((tmp_path / "r").rglob("chunk-*.npz"))


def test_a_run_killed_during_scoring_resumes_under_a_launcher_from_its_last_chunk(tiny_model_dir, sst2_folder,
                                                                                  tmp_path, monkeypatch):
    """Alone, killed in round 2's scoring; resumed by two processes (torchrun): the finished chunks are
    read back, and the picks are the uninterrupted run's."""
    import os
    import subprocess

    from star_al.cli import main
    from test_distributed import LAUNCHERS, SRC, _lines, _run_args

    chunked = ["--large-pool", "0", "--score-chunk", "5"]
    assert main([*_run_args(tiny_model_dir, sst2_folder, tmp_path / "whole", tmp_path / "cache"), *chunked]) == 0
    monkeypatch.setattr(loop_module, "score_examples", KillingScorer("round 2: score pool", at=4))
    with pytest.raises(Killed):
        main([*_run_args(tiny_model_dir, sst2_folder, tmp_path / "killed", tmp_path / "cache"), *chunked])
    monkeypatch.undo()
    assert len(list((tmp_path / "killed" / "scoring" / "round-02").rglob("chunk-*.npz"))) == 2
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    resumed = subprocess.run([*LAUNCHERS["torchrun"], "-m", "star_al.cli", "resume", str(tmp_path / "killed"),
                              "--device", "cpu", "--dtype", "float32", "--cache-dir", str(tmp_path / "cache-launched")],
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "round 2: score pool: resumed from chunk 3 of 4" in (tmp_path / "killed" / "run.log").read_text()
    whole, killed = _lines(tmp_path / "whole" / "rounds.jsonl"), _lines(tmp_path / "killed" / "rounds.jsonl")
    assert [r["selected_ids"] for r in killed] == [r["selected_ids"] for r in whole]
    for round_index in (2, 3):
        mine = np.load(tmp_path / "whole" / "scores" / f"round-{round_index:02d}.npz")
        shared = np.load(tmp_path / "killed" / "scores" / f"round-{round_index:02d}.npz")
        np.testing.assert_array_equal(shared["ids"], mine["ids"])
        for key in ("me", "pe", "base_me"):
            np.testing.assert_allclose(shared[key], mine[key], rtol=0, atol=2e-5, err_msg=key)


def test_the_scale_benchs_pool_is_seeded_and_its_sizes_are_checked_in_one_line(capsys):
    from star_al.bench_scale import synthetic_lines
    from test_reliability import assert_one_line_error, star

    lines = synthetic_lines(2000, seed=0)
    assert lines == synthetic_lines(2000, seed=0) != synthetic_lines(2000, seed=1)
    rows = [json.loads(line) for line in lines]
    assert all(4 <= len(row["text"].split()) <= 12 for row in rows)
    assert 0.3 < np.mean([row["label"] == "positive" for row in rows]) < 0.7
    assert_one_line_error(*star(capsys, "bench", "--pool-scale", "0"), "--pool-scale sizes must be at least 1")
    assert_one_line_error(*star(capsys, "bench", "--pool-scale", "10k"), "--pool-scale takes sizes")
