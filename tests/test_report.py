import csv
import json

import pytest

from star_al.errors import StarError
from star_al.metrics import auc, ripl
from star_al.analysis.report import (calibration_table, find_runs, markdown_table, strategy_order,
                            summarise, write_report)

SIZES = [200, 400, 600]


def make_run(root, task, strategy, seed, accuracies, n_rounds=2):
    """A run directory as the AL loop writes it: config.json plus one line per round."""
    run_dir = root / task / f"{strategy}-seed{seed}"
    run_dir.mkdir(parents=True)
    config = {"task": task, "strategy": strategy, "seed": seed}
    if n_rounds is not None:
        config["n_rounds"] = n_rounds
    (run_dir / "config.json").write_text(json.dumps(config))
    lines = [json.dumps({"round": i, "n_labeled": SIZES[i], "selected_ids": [],
                         "selected_scores": [], "accuracy": accuracy, "ece": 0.1 * (i + 1),
                         "brier": 0.2, "wrong_confidence": 0.7, "timings": {"train_s": 1.0}})
             for i, accuracy in enumerate(accuracies)]
    (run_dir / "rounds.jsonl").write_text("".join(line + "\n" for line in lines))
    return run_dir


@pytest.fixture
def two_by_two(tmp_path):
    """Two strategies x two seeds on one task; curves are flat so AUC is the accuracy."""
    root = tmp_path / "runs"
    make_run(root, "boolq", "random", 0, [0.60] * 3)
    make_run(root, "boolq", "random", 1, [0.62] * 3)
    make_run(root, "boolq", "me+star", 0, [0.64] * 3)
    make_run(root, "boolq", "me+star", 1, [0.66] * 3)
    return root


def test_find_runs_finds_run_dirs_at_any_depth(two_by_two):
    runs = find_runs([two_by_two])
    assert len(runs) == 4
    assert {(run.strategy, run.seed) for run in runs} == {
        ("random", 0), ("random", 1), ("me+star", 0), ("me+star", 1)}
    assert all(run.finished and len(run.rounds) == 3 for run in runs)


def test_find_runs_accepts_a_run_dir_itself(two_by_two):
    runs = find_runs(two_by_two / "boolq" / "random-seed0")
    assert [run.seed for run in runs] == [0]


def test_find_runs_without_runs_raises_star_error_naming_the_path(tmp_path):
    with pytest.raises(StarError, match=str(tmp_path)):
        find_runs([tmp_path])


def test_run_with_fewer_lines_than_n_rounds_is_unfinished(tmp_path):
    make_run(tmp_path, "boolq", "random", 0, [0.6, 0.6], n_rounds=2)
    make_run(tmp_path, "boolq", "pe", 0, [0.6, 0.6, 0.6], n_rounds=None)
    assert [run.finished for run in find_runs([tmp_path])] == [False, False]


def test_torn_last_line_is_ignored(tmp_path):
    run_dir = make_run(tmp_path, "boolq", "random", 0, [0.6, 0.6], n_rounds=2)
    with open(run_dir / "rounds.jsonl", "a") as handle:
        handle.write('{"round": 2, "n_lab')
    assert len(find_runs([tmp_path])[0].rounds) == 2


def test_invalid_line_in_the_middle_raises_star_error(tmp_path):
    run_dir = make_run(tmp_path, "boolq", "random", 0, [0.6], n_rounds=2)
    (run_dir / "rounds.jsonl").write_text('{"round": 0,\n{"round": 1}\n')
    with pytest.raises(StarError, match="rounds.jsonl:1"):
        find_runs([tmp_path])


def test_summarise_averages_auc_and_ripl_over_seeds(two_by_two):
    rows = {row.strategy: row for row in summarise(find_runs([two_by_two]))}
    assert rows["random"].auc_mean == pytest.approx(61.0)
    assert rows["random"].is_baseline and rows["random"].ripl is None
    star = rows["me+star"]
    assert star.n_seeds == 2
    assert star.auc_mean == pytest.approx(65.0)
    assert star.auc_std == pytest.approx(100 * 0.02 / 2 ** 0.5)
    assert star.ripl == pytest.approx(100 * ripl(0.65, 0.61))


def test_summarise_uses_the_curve_auc(tmp_path):
    make_run(tmp_path, "obqa", "random", 0, [0.2, 0.4, 0.8])
    (row,) = summarise(find_runs([tmp_path]))
    assert row.auc_mean == pytest.approx(100 * auc(SIZES, [0.2, 0.4, 0.8]))


def test_ripl_is_na_without_a_random_baseline(tmp_path):
    make_run(tmp_path, "gsm8k", "pe", 0, [0.3] * 3)
    table = markdown_table(summarise(find_runs([tmp_path])))
    assert "30.00 ± 0.00 / n/a" in table


def test_duplicate_seed_raises_star_error(tmp_path):
    make_run(tmp_path / "a", "boolq", "random", 0, [0.6] * 3)
    make_run(tmp_path / "b", "boolq", "random", 0, [0.6] * 3)
    with pytest.raises(StarError, match="seed 0"):
        summarise(find_runs([tmp_path]))


def test_strategy_order_puts_random_first_and_variants_after_their_base():
    names = ["pe+star", "me+dynamic", "random", "pe", "me", "me+dynamic+mc"]
    assert strategy_order(names) == ["random", "me", "me+dynamic", "me+dynamic+mc",
                                     "pe", "pe+star"]


def test_markdown_table_has_one_row_per_strategy_and_one_column_per_task(two_by_two):
    make_run(two_by_two, "obqa", "random", 0, [0.5] * 3)
    table = markdown_table(summarise(find_runs([two_by_two])))
    lines = [line for line in table.splitlines() if line.startswith("|")]
    assert lines[0] == "| method | boolq | obqa |"
    assert lines[2].startswith("| random | 61.00 ± 1.41 / - | 50.00 ± 0.00 / - |")
    assert lines[3].startswith("| me+star | 65.00 ± 1.41 / 10.26 ± 3.63 |")
    assert lines[3].endswith(" |  |")


def test_calibration_table_averages_each_round_over_seeds(two_by_two):
    table = calibration_table(find_runs([two_by_two]))
    assert "### boolq" in table
    assert "| random | 2 | 600 | 0.300 | 0.200 | 0.700 | 2 |" in table


def test_write_report_writes_table_curves_and_points(two_by_two, tmp_path):
    out_dir = tmp_path / "report"
    text = write_report([two_by_two], out_dir, calibration=True)
    assert (out_dir / "report.md").read_text() == text
    assert "| random | 61.00 ± 1.41 / - |" in text
    assert "| me+star | 65.00 ± 1.41 / 10.26" in text
    assert "ECE" in text
    assert (out_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out_dir / "points.csv") as handle:
        points = list(csv.DictReader(handle))
    assert len(points) == 2 * 2 * 3
    assert points[0].keys() >= {"task", "strategy", "seed", "round", "n_labeled", "accuracy",
                                "ece", "brier", "wrong_confidence"}


def test_write_report_skips_unfinished_runs_and_says_so(two_by_two, tmp_path):
    make_run(two_by_two, "boolq", "pe", 0, [0.9], n_rounds=2)
    text = write_report([two_by_two], tmp_path / "report")
    assert "Skipped 1 unfinished run(s)" in text
    assert "| pe |" not in text
    text = write_report([two_by_two], tmp_path / "report", include_unfinished=True)
    assert "| pe | 90.00 ± 0.00 / " in text and " *" in text


def test_write_report_without_runs_raises_star_error(tmp_path):
    with pytest.raises(StarError, match="no AL runs"):
        write_report([tmp_path], tmp_path / "report")


def test_figure1_writes_plot_and_tables_for_lora_and_full(tmp_path):
    import json as _json

    from star_al.analysis.report import write_figure1

    for finetune in ("lora", "full"):
        for strategy, accuracies in (("random", [0.5, 0.6, 0.7]), ("me", [0.5, 0.55, 0.6])):
            run = tmp_path / finetune / strategy / "seed-0"
            run.mkdir(parents=True)
            (run / "config.json").write_text(_json.dumps({"task": "sst2", "strategy": strategy, "seed": 0,
                                                          "n_rounds": 2, "finetune": finetune}))
            (run / "rounds.jsonl").write_text("".join(
                _json.dumps({"round": i, "n_labeled": 10 * (i + 1), "accuracy": a}) + "\n"
                for i, a in enumerate(accuracies)))
    text = write_figure1([tmp_path / "lora"], [tmp_path / "full"], tmp_path / "out")
    assert (tmp_path / "out" / "figure1.png").stat().st_size > 0
    assert "LoRA fine-tuning" in text and "full fine-tuning" in text and "60.00" in text


def test_the_time_table_gives_each_strategys_median_run(tmp_path):
    from star_al.analysis.report import time_table

    root = tmp_path / "runs"
    for seed, seconds in enumerate([10.0, 30.0, 20.0]):
        for strategy, scale in (("random", 1.0), ("me", 2.0)):
            run_dir = make_run(root, "sst2", strategy, seed, [0.5, 0.6, 0.7])
            lines = [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]
            for line in lines:  # per round: train `seconds`, eval 3 s, scoring 5 s after round 0
                line["timings"] = {"score": 5.0 * (line["round"] > 0) * scale, "train": seconds * scale,
                                   "eval": 3.0, "total": seconds * scale + 3.0 + 5.0 * (line["round"] > 0) * scale}
            (run_dir / "rounds.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    rows = {line.split("|")[2].strip(): [cell.strip() for cell in line.split("|")[3:-1]]
            for line in time_table(find_runs([root])).splitlines() if line.startswith("| sst2")}
    # median run: train 20 s x 3 rounds; score 5 s x 2 query rounds; eval 3 x 3; total 60 + 10 + 9 = 79 s
    assert rows["random"] == ["3", "10", "60", "9", "1.3"]
    assert rows["me"] == ["3", "20", "120", "9", "2.5"]  # 120 + 20 + 9 = 149 s
    assert "## Time" in write_report([root], tmp_path / "out")


def test_the_study_tables_arrange_the_reports_paired_figures(tmp_path, capsys, monkeypatch):
    import runpy
    from pathlib import Path
    import sys

    root = tmp_path / "runs"
    # flat curves (AUC = accuracy); per seed, me = random + 1 point, me+dynamic = random + 2,
    # me+star = random + 3: every paired difference is exact, its t interval a point
    for seed, base in enumerate([0.60, 0.62, 0.64]):
        for strategy, gain in (("random", 0.0), ("me", 0.01), ("me+dynamic", 0.02), ("me+star", 0.03)):
            make_run(root, "sst2", strategy, seed, [base + gain] * 3)
    make_run(root, "sst2", "me+star", 3, [0.10])  # still running: left out, as by star report
    monkeypatch.setattr(sys, "argv", ["study_tables.py", str(root)])
    runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "study_tables.py"), run_name="__main__")
    out = capsys.readouterr().out
    lines = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
             for line in out.splitlines() if line.startswith("| ") and "---" not in line}
    assert "- me+star - random: 3 of 3" in out and "- me - random: 3 of 3" in out
    assert lines["random"][:3] == ["3", "62.00 ± 2.00", ""]
    # every difference is exact, so every p (raw and Holm's) is 0
    assert lines["me+star"][:6] == ["3", "65.00 ± 2.00", "+3.00 [+3.00, +3.00]", "<0.001", "n/a", "+2.00 [+2.00, +2.00]"]
    assert lines["+ dynamic"][:5] == ["3", "64.00 ± 2.00", "+1.00 [+1.00, +1.00]", "<0.001", ""]
    assert lines["STAR (all three)"][:6] == ["3", "65.00 ± 2.00", "+2.00 [+2.00, +2.00]", "<0.001",
                                             "+1.00 [+1.00, +1.00]", "<0.001"]
