"""A sweep says how long it will take before it starts, from this machine's rates, and corrects it."""

import json
from dataclasses import replace

import pytest

from star_al import estimates
from star_al.config import RunConfig, preset_values
from star_al.estimates import Rates, RunPlan, SweepClock, rates_from_rounds, round_counts, round_seconds, train_steps
from star_al.rounds import RoundRecord

from test_reliability import star


def cpu_config(strategy="me+star"):
    values = preset_values("cpu", "sst2")
    values.pop("full_train")
    return RunConfig(task="sst2", strategy=strategy, **values)


def test_a_round_costs_its_steps_test_examples_and_scored_passes():
    config = replace(cpu_config(), warm_start=16, query_size=16, n_rounds=2, pool_size=400, pool_subsample=200,
                     mc_passes=3)
    config = replace(config, train=replace(config.train, epochs=3, batch_size=8, min_steps=48))
    # 16 labels: 2 steps an epoch, 3 epochs = 6 < 48: 24 epochs; 48 labels: 6 an epoch, 8 epochs.
    assert [train_steps(config, n) for n in (16, 48)] == [48, 48]
    assert train_steps(config, 400) == 150
    counts = round_counts(config, pool_size=6000, n_test=500)
    assert [c["steps"] for c in counts] == [48, 48, 48]
    assert [c["eval"] for c in counts] == [500, 500, 500]
    assert counts[0]["scored"] == 0 and counts[1]["scored"] == counts[2]["scored"] == 200 * 3  # MC: 3 passes
    assert all(c["scored"] == 0 for c in round_counts(replace(config, strategy="random"), 6000, 500))
    rates = Rates(step=2.0, eval_example=0.01, score_example=0.005, source="test")
    assert round_seconds(counts[1], rates) == pytest.approx(48 * 2.0 + 500 * 0.01 + 600 * 0.005)


def test_rates_come_from_a_runs_timings_over_its_counts():
    config = replace(cpu_config(), warm_start=4, query_size=4, n_rounds=1, pool_size=0, pool_subsample=10,
                     mc_passes=2)
    records = [RoundRecord(round=0, n_labeled=4, selected_ids=[1, 2, 3, 4], train_steps=10, n_test=20,
                           timings={"train": 20.0, "eval": 2.0, "total": 22.0}),
               RoundRecord(round=1, n_labeled=8, selected_ids=[5, 6, 7, 8], train_steps=30, n_test=20,
                           timings={"score": 4.0, "train": 60.0, "eval": 2.0, "total": 66.0})]
    rates = rates_from_rounds(config, records, pool_size=100)
    assert rates.step == pytest.approx(80 / 40) and rates.eval_example == pytest.approx(4 / 40)
    assert rates.score_example == pytest.approx(4.0 / (10 * 2))
    random = rates_from_rounds(replace(config, strategy="random"), records[:1], pool_size=100)
    assert random.score_example == random.eval_example  # nothing scored: a forward pass as evaluation's


def test_the_clock_scales_what_is_left_by_what_the_rounds_took(caplog):
    rates = {"k": Rates(1.0, 0.1, 0.1, "test")}
    clock = SweepClock([RunPlan("k", [10.0, 20.0], 50), RunPlan("k", [10.0, 20.0], 50)], rates, base_seconds=0.0)
    assert clock.total() == 60.0
    with caplog.at_level("INFO", logger="star_al"):
        clock.round_done(0, 0, 20.0)  # twice as slow as estimated
    assert clock.left(0, 0) == pytest.approx(2 * 50.0)
    assert "the first round took 20 s against 10 s estimated" in caplog.text
    clock.round_done(0, 1, 20.0)  # as estimated: 40 s against 30 s so far
    assert clock.left(0) == pytest.approx(30.0 * 40 / 30)


def test_a_sweep_says_its_estimate_first_then_corrects_it_and_keeps_the_rates(tiny_model_dir, sst2_folder,
                                                                              tmp_path, capsys, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    sst2_folder.rename(root / "sst2")
    cache = tmp_path / "cache"

    def sweep(out):
        code, lines = star(capsys, "sweep", "--tasks", "sst2", "--strategies", "random,me+star", "--seeds", 0,
                           "--data-root", root, "--preset", "smoke", "--model", tiny_model_dir, "--device", "cpu",
                           "--dtype", "float32", "--warm-start", 4, "--query-size", 3, "--rounds", 1,
                           "--pool-size", 20, "--rank", 4, "--test-limit", 6, "--out", out, "--cache-dir", cache)
        assert code == 0, lines
        return lines

    lines = sweep(tmp_path / "first")
    announced = next(i for i, line in enumerate(lines) if "sweep: 2 runs, 4 rounds to go; about" in line)
    first_run = next(i for i, line in enumerate(lines) if "[1/2] sst2 random seed 0:" in line)
    assert announced < first_run and "measured here" in lines[announced]
    assert any("sweep: the first round took" in line for line in lines[first_run:])
    saved = json.loads((cache / estimates.RATES_FILE).read_text())
    assert len(saved) == 1 and next(iter(saved.values()))["step"] > 0

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured again although this machine's rates were kept")

    monkeypatch.setattr(estimates, "measure_rates", no_measuring)
    lines = sweep(tmp_path / "second")
    assert any("sweep: 2 runs" in line and "earlier run on this machine" in line for line in lines)
