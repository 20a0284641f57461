"""Stopping criteria on known histories, and a run that stops by itself."""

import json

import pytest

from star_al.errors import StarError
from star_al.rounds import RoundRecord
from star_al.stopping import (LowUncertainty, Plateau, Stability, WallTime, cohen_kappa, parse_stop,
                              run_limits)


def test_cohen_kappa_on_known_labelings():
    # p_o = 3/4; p_e = 1/2 * 1/4 + 1/2 * 3/4 = 1/2 -> kappa = (0.75 - 0.5) / 0.5 = 0.5
    assert cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.5)
    assert cohen_kappa(["a", "b", "a"], ["a", "b", "a"]) == pytest.approx(1.0)
    assert cohen_kappa(["a", "a"], ["a", "a"]) == 1.0  # one constant labeling: no chance term left
    # perfect disagreement on a balanced binary labeling: p_o = 0, p_e = 0.5 -> -1
    assert cohen_kappa([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)


def rounds_of(**values):
    """One round per value of each field: rounds_of(kappa=[None, 0.9]) is two rounds."""
    count = len(next(iter(values.values())))
    return [RoundRecord(round=r, n_labeled=4 * (r + 1), **{key: column[r] for key, column in values.items()})
            for r in range(count)]


def test_stability_averages_the_last_window_of_kappas():
    history = rounds_of(kappa=[None, 0.9, 0.995, 0.99])
    assert Stability(0.99).should_stop(history) is None  # (0.9 + 0.995 + 0.99) / 3 < 0.99
    assert "stability" in Stability(0.99).should_stop(rounds_of(kappa=[None, 0.9, 0.995, 0.99, 1.0]))
    assert Stability(0.99, window=3).should_stop(history[:3]) is None  # too few pairs yet


def test_plateau_uncertainty_and_time_on_known_histories():
    rising = rounds_of(accuracy=[0.50, 0.60, 0.70, 0.75])
    assert Plateau(1).should_stop(rising) is None
    flat = rounds_of(accuracy=[0.50, 0.60, 0.70, 0.75, 0.755, 0.752])
    assert "plateau" in Plateau(1).should_stop(flat)
    assert "uncertainty" in LowUncertainty(0.5).should_stop(rounds_of(monitor_uncertainty=[0.4]))
    assert LowUncertainty(0.5).should_stop(rounds_of(monitor_uncertainty=[0.6])) is None
    assert "time" in WallTime(1).should_stop(rounds_of(timings=[{"total": 40.0}, {"total": 30.0}]))


@pytest.mark.parametrize("spec,message", [("stability", "give a number"), ("stabilty:0.9", "did you mean stability"),
                                          ("budget:-4", "above 0")])
def test_bad_stop_specs_are_one_line(spec, message):
    with pytest.raises(StarError, match=message):
        parse_stop(spec)


def test_criteria_combine_and_the_first_to_fire_names_itself():
    class Config:
        stop, n_rounds, budget = "budget:40,stability:0.99", 9, 100

    stop = run_limits(Config)
    assert "budget" in stop.should_stop([RoundRecord(round=0, n_labeled=40)])
    assert stop.should_stop([RoundRecord(round=0, n_labeled=32)]) is None


def test_a_run_stops_by_itself_and_says_where_and_why(tiny_model_dir, sst2_folder, tmp_path, capsys):
    from star_al.analysis.report import find_runs, write_report
    from star_al.cli import main

    args = ["run", "--task", "sst2", "--data", str(sst2_folder), "--strategy", "me", "--preset", "smoke",
            "--model", str(tiny_model_dir), "--device", "cpu", "--dtype", "float32", "--warm-start", "4",
            "--query-size", "3", "--rounds", "6", "--pool-size", "30", "--rank", "4", "--test-limit", "6",
            "--stop", "stability:0.5", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "R")]
    assert main(args) == 0
    rounds = [json.loads(line) for line in (tmp_path / "R" / "rounds.jsonl").read_text().splitlines()]
    assert len(rounds) < 7 and rounds[-1]["stopped"].startswith("stability")
    assert rounds[0]["kappa"] is None and all(r["kappa"] is not None for r in rounds[1:])
    assert "stopped after round" in (tmp_path / "R" / "run.log").read_text()
    assert find_runs([tmp_path / "R"])[0].finished
    assert main(args) == 0  # resuming a stopped run adds nothing
    assert len((tmp_path / "R" / "rounds.jsonl").read_text().splitlines()) == len(rounds)
    text = write_report([tmp_path / "R"], tmp_path / "out", stopping="stability:0.5,plateau:1")
    assert "Runs that stopped early" in text and f"after round {len(rounds) - 1}" in text
