"""Paired statistics on inputs with known answers, and the report that prints them."""

import json

import numpy as np
import pytest

from star_al.analysis import paired
from star_al.metrics import auc
from star_al.analysis.report import find_runs, paired_rows, write_report
from star_al.rounds import pack_correct, unpack_correct
from test_report import make_run


def test_t_interval_of_known_differences():
    # d = 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.302653 -> half-width 4.302653 / sqrt(3) = 2.484138
    lo, hi = paired.t_interval([1.0, 2.0, 3.0])
    assert (lo, hi) == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-5)
    assert paired.t_interval([5.0]) is None


def test_seeds_needed_is_the_first_n_whose_interval_excludes_zero():
    # sd 1, mean 2: n = 3 gives 4.303 / 1.732 = 2.48 > 2; n = 4 gives 3.182 / 2 = 1.59 < 2
    assert paired.seeds_needed(2.0, 1.0) == 4
    # mean 0.5, sd 1: t(n-1)/sqrt(n) < 0.5 first at n = 18 (2.110/4.243 = 0.497; n = 17: 2.120/4.123 = 0.514)
    assert paired.seeds_needed(0.5, 1.0) == 18
    assert paired.seeds_needed(0.0, 1.0) is None


def test_seeds_for_width_is_the_first_n_whose_interval_is_that_narrow():
    # sd 1: n = 6 gives 2.571 / 2.449 = 1.050 > 1; n = 7 gives 2.447 / 2.646 = 0.925
    assert paired.seeds_for_width(1.0) == 7
    # sd 2 is sd 1 against half the width: n = 17 gives 2.120 / 4.123 = 0.514 > 0.5; n = 18: 0.497
    assert paired.seeds_for_width(2.0) == 18 == paired.seeds_for_width(1.0, width=0.5)
    assert paired.seeds_for_width(0.0) == 2
    stat = paired.compare({s: 0.5 + 0.01 * s for s in range(4)}, {s: 0.5 for s in range(4)})
    # differences 0, 1, 2, 3 points: sd 1.291; n = 9: 2.306 * 1.291 / 3 = 0.992, n = 8: 2.365 * 1.291 / 2.828 = 1.079
    assert stat.seeds_for_width == 9


def test_paired_bootstrap_of_identical_differences_is_that_difference():
    assert paired.paired_bootstrap([1.5] * 5) == (1.5, 1.5)
    lo, hi = paired.paired_bootstrap([1.0, 2.0, 3.0, 2.0, 2.0], n_boot=20000)
    assert 1.0 <= lo < 2.0 < hi <= 3.0
    assert paired.paired_bootstrap([1.0, 2.0, 3.0]) is None  # too few seeds to resample


def test_pairing_removes_the_seed_to_seed_spread():
    """Seeds differ by a lot, the strategies by exactly 1 point each time: paired, that is certain."""
    a = {0: 0.60, 1: 0.70, 2: 0.80}
    b = {0: 0.59, 1: 0.69, 2: 0.79}
    stat = paired.compare(a, b)
    assert stat.mean == pytest.approx(1.0) and stat.sd == pytest.approx(0.0, abs=1e-9)
    assert stat.t_interval == pytest.approx((1.0, 1.0)) and stat.seeds_needed == 2


def test_sentence_bootstrap_of_a_strategy_against_itself_is_zero_and_of_a_better_one_positive():
    rng = np.random.default_rng(0)
    sizes = np.array([16, 32, 48])
    correct = (rng.random((3, 200)) < 0.7).astype(float)
    assert paired.sentence_bootstrap([(sizes, correct, correct)], n_boot=200) == (0.0, 0.0)
    better = correct.copy()
    better[:, :40] = 1.0
    lo, hi = paired.sentence_bootstrap([(sizes, better, correct)], n_boot=500)
    assert 0 < lo <= hi


def test_sentence_bootstrap_resamples_sentences_as_the_plain_loop_does():
    """The shares shortcut gives the interval of recomputing both AUCs for every resample."""
    rng = np.random.default_rng(1)
    sizes = np.array([16, 48, 32])
    pairs = [(sizes, (rng.random((3, 60)) < p).astype(float), (rng.random((3, 60)) < 0.6).astype(float))
             for p in (0.7, 0.5)]
    draws = np.random.default_rng(3)
    replicates = np.zeros(300)
    for n_labeled, a, b in pairs:
        for i in range(300):
            rows = draws.integers(0, 60, size=60)
            replicates[i] += auc(n_labeled, a[:, rows].mean(axis=1)) - auc(n_labeled, b[:, rows].mean(axis=1))
    expected = np.percentile(100 * replicates / len(pairs), [2.5, 97.5])
    assert paired.sentence_bootstrap(pairs, n_boot=300, seed=3) == pytest.approx(tuple(expected))


def test_report_prints_paired_intervals_against_random_and_me(tmp_path):
    root = tmp_path / "runs"
    for seed, base in enumerate([0.60, 0.70, 0.80]):
        make_run(root, "sst2", "random", seed, [base] * 3)
        make_run(root, "sst2", "me", seed, [base + 0.01] * 3)
        make_run(root, "sst2", "me+star", seed, [base + 0.02 + 0.01 * (seed == 1)] * 3)
    rows = {(s, r): stat for _, s, r, stat in paired_rows(find_runs([root]))}
    assert set(rows) == {("me", "random"), ("me+star", "random"), ("me+star", "me")}
    assert rows[("me", "random")].mean == pytest.approx(1.0)
    star_vs_me = rows[("me+star", "me")]
    assert star_vs_me.mean == pytest.approx(4 / 3) and star_vs_me.sd == pytest.approx(np.std([1, 2, 1], ddof=1))
    text = write_report([root], tmp_path / "out")
    assert "## Paired comparisons" in text and "me+star - me" in text and "me+star - random" in text


def test_a_cold_start_or_another_method_is_its_own_row_and_pairs_against_any_reference(tmp_path):
    root = tmp_path / "runs"
    for seed, base in enumerate([0.60, 0.70, 0.80]):
        make_run(root, "sst2", "random", seed, [base] * 3)
        make_run(root, "sst2", "me+star", seed, [base + 0.02] * 3)
        cold = make_run(root / "cold", "sst2", "me+star", seed, [base + 0.03 + 0.01 * seed] * 3)
        dora = make_run(root / "dora", "sst2", "me+star", seed, [base + 0.01] * 3)
        for run_dir, change in ((cold, {"warm_start_by": "me+kmeans"}), (dora, {"finetune": "dora"})):
            config = json.loads((run_dir / "config.json").read_text())
            (run_dir / "config.json").write_text(json.dumps({**config, **change}))
    rows = {(s, r): stat for _, s, r, stat in paired_rows(find_runs([root]), ("random", "me+star"))}
    assert set(rows) == {("me+star", "random"), ("me+star-dora", "random"), ("me+star-warm:me+kmeans", "random"),
                         ("me+star-dora", "me+star"), ("me+star-warm:me+kmeans", "me+star")}
    assert rows[("me+star-warm:me+kmeans", "me+star")].mean == pytest.approx(2.0)
    assert rows[("me+star-dora", "me+star")].mean == pytest.approx(-1.0)
    text = write_report([root], tmp_path / "out", against=["random", "me+star"])
    assert "me+star-warm:me+kmeans - me+star" in text and "me+star-dora - random" in text


def test_report_uses_saved_predictions_for_the_sentence_bootstrap(tmp_path):
    root = tmp_path / "runs"
    for strategy, flips in (("random", 0), ("me", 3)):
        run_dir = make_run(root, "sst2", strategy, 0, [0.5, 0.5, 0.5])
        (run_dir / "predictions").mkdir()
        for r in range(3):
            lines = [json.dumps({"id": i, "correct": i < 5 + flips}) for i in range(10)]
            (run_dir / "predictions" / f"round-{r:02d}.jsonl").write_text("\n".join(lines) + "\n")
    ((_, _, _, stat),) = paired_rows(find_runs([root]))
    assert stat.sentence_interval is not None and stat.sentence_interval[1] > 0


def test_mc_picks_changed_counts_the_picks_one_pass_would_not_have_made(tmp_path):
    from star_al.analysis.components import mc_picks_changed
    from star_al.config import RunConfig
    from star_al.files import write_npz_atomic

    config = RunConfig(task="sst2", strategy="me+dynamic+mc", warm_start=2, query_size=2, n_rounds=1,
                       mc_passes=2).validate().to_dict()
    ids = np.array([10, 11, 12, 13])
    # the mean of the two passes ranks 12, 13 first; the first pass alone ranks 11, 13 first
    me = np.array([[0.0, 3.0, 1.0, 4.0], [0.0, 0.0, 6.0, 4.0]])
    base = np.array([0.0, 0.0, 0.0, 0.0])  # constant: the mix is the tuned part alone
    write_npz_atomic(tmp_path / "scores" / "round-01.npz", ids=ids, me=me, pe=me, base_me=base, base_pe=base,
                     base_pe_gold=base, combined=me.mean(axis=0))
    rounds = [{"round": 0, "selected_ids": [1, 2]}, {"round": 1, "selected_ids": [13, 12]}]
    assert mc_picks_changed(tmp_path, config, rounds) == [1]
    assert mc_picks_changed(tmp_path, {**config, "strategy": "me+dynamic"}, rounds) is None


def test_decay_probe_counts_changed_picks_and_shrinks_b(tiny_backbone_factory, data_root, tmp_path):
    from star_al.al.loop import ActiveLearningRun
    from star_al.al.run_dir import RunDir
    from star_al.analysis.components import decay_effect
    from star_al.config import RunConfig, TrainSettings
    from star_al.data.catalog import load_task
    from star_al.data.tasks import load_examples
    from test_loop import smoke_config

    task = load_task("sst2")
    pool = load_examples(task, "train", data_root=str(data_root))[:60]
    test = load_examples(task, "test", data_root=str(data_root))[:10]
    config = smoke_config("me+star", n_rounds=2, b_decay_strength=5.0,
                          train=TrainSettings(epochs=2, batch_size=4, learning_rate=1e-2))
    backbone = tiny_backbone_factory(0)
    rounds = ActiveLearningRun(config, task, pool, test, backbone, RunDir(tmp_path / "r")).run()
    effects = decay_effect(config, task, pool, test, backbone, rounds)
    assert [e["round"] for e in effects] == [1, 2]
    assert all(0 <= e["picks_changed"] <= e["of"] == 3 for e in effects)
    assert all(0 < e["b_shrink"] < 1 for e in effects)
    assert all(e["matches_run"] for e in effects)  # the decay twin redoes the run's own queries
    assert decay_effect(config, task, pool, test, backbone, rounds) == effects
    assert not any("lora_" in n for n, _ in backbone.model.named_parameters())


def test_packed_correctness_reads_back_as_the_predictions_and_stands_in_for_them(tmp_path):
    correct = np.array([True, False, True, True, False, False, True, False, True, True, False])
    ids = np.array([3, 0, 1, 2, 4, 5, 6, 7, 8, 9, 10])  # out of order: packed in id order
    by_id = correct[np.argsort(ids)]
    packed = pack_correct(ids, correct)
    assert len(packed) == 4 and unpack_correct(packed, 11).tolist() == by_id.tolist()
    run_dir = make_run(tmp_path / "runs", "sst2", "me", 0, [0.5, 0.6, 0.7])
    rounds = [{**json.loads(line), "n_test": 11, "test_correct": packed}
              for line in (run_dir / "rounds.jsonl").read_text().splitlines()]
    assert paired.read_correct(run_dir, rounds).tolist() == [by_id.tolist()] * 3  # no predictions files
    assert paired.read_correct(run_dir, [{k: v for k, v in r.items() if k != "test_correct"} for r in rounds]) is None


def test_a_run_records_each_rounds_correct_sentences(tiny_backbone, data_root, tmp_path):
    from star_al.data.catalog import load_task
    from star_al.data.tasks import load_examples
    from test_loop import run, smoke_config

    task = load_task("sst2")
    data = (task, load_examples(task, "train", data_root=str(data_root))[:40],
            load_examples(task, "test", data_root=str(data_root))[:10])
    rounds = run(smoke_config("random", n_rounds=1), tiny_backbone, data, tmp_path / "r")
    assert np.array_equal(paired.read_correct(tmp_path / "r", [r.to_dict() for r in rounds]),
                          np.array([unpack_correct(r.test_correct, 10) for r in rounds]))
    assert [float(unpack_correct(r.test_correct, 10).mean()) for r in rounds] == \
        [pytest.approx(r.accuracy) for r in rounds]


# ---------------------------------------------------------------- multiplicity and equivalence

def test_t_test_p_of_known_differences():
    # d = 1, 2, 3: t = 2 / (1 / sqrt 3) = sqrt 12 on 2 df, whose two-sided p is 1 - t / sqrt(t^2 + 2) = 1 - sqrt(12/14)
    assert paired.t_test_p(3, 2.0, 1.0) == pytest.approx(1 - (12 / 14) ** 0.5)
    assert paired.compare({s: 0.5 + 0.01 * s for s in (1, 2, 3)}, {s: 0.5 for s in (1, 2, 3)}).p == \
        pytest.approx(1 - (12 / 14) ** 0.5)
    assert paired.t_test_p(3, 1.0, 0.0) == 0.0 and paired.t_test_p(3, 0.0, 0.0) == 1.0
    assert paired.t_test_p(1, 2.0, 0.0) is None


def test_holm_multiplies_the_jth_smallest_p_by_m_minus_j_plus_1_and_keeps_the_order():
    # sorted 0.01, 0.03, 0.04: 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, 1 x 0.04 = 0.04 raised to the 0.06 before it
    assert paired.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert paired.holm([0.5, 0.2]) == pytest.approx([0.5, 0.4])  # 2 x 0.2 = 0.4, then 0.5
    assert paired.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert paired.holm([0.02]) == pytest.approx([0.02])           # one test: nothing to adjust


def test_holm_levels_follow_the_step_down_and_stop_where_it_stops():
    # 0.01 < 0.05/3 is rejected at level 1 - 0.05/3; 0.03 >= 0.05/2 is not, and from there every level is 1 - 0.05/2
    assert paired.holm_levels([0.01, 0.04, 0.03]) == pytest.approx([1 - 0.05 / 3, 0.975, 0.975])
    # the smallest p already fails (0.03 >= 0.05/3): every level stays 1 - 0.05/3, though 0.045 < 0.05 alone
    assert paired.holm_levels([0.03, 0.04, 0.045]) == pytest.approx([1 - 0.05 / 3] * 3)
    assert paired.holm_levels([0.02, 0.024]) == pytest.approx([0.975, 0.95])  # both rejected


def test_tost_of_known_differences():
    # d = 1, 2, 3 (mean 2, se 1/sqrt 3) on 2 df, where F(t) = 1/2 + t / (2 sqrt(t^2 + 2)):
    # margin 4: max(P(T >= 6 sqrt 3), P(T <= -2 sqrt 3)) = 1/2 - sqrt(12/14)/2 = 0.0371 (90% interval [0.31, 3.69])
    assert paired.tost_p(3, 2.0, 1.0, 4.0) == pytest.approx(0.5 - (12 / 14) ** 0.5 / 2)
    # margin 3.5: P(T <= -1.5 sqrt 3) = 1/2 - sqrt(6.75/8.75)/2 = 0.0608: the 90% interval reaches past 3.5
    assert paired.tost_p(3, 2.0, 1.0, 3.5) == pytest.approx(0.5 - (6.75 / 8.75) ** 0.5 / 2)
    assert paired.tost_p(3, 1.0, 0.0, 2.0) == 0.0 and paired.tost_p(3, 3.0, 0.0, 2.0) == 1.0
    assert paired.tost_p(1, 0.0, 0.0, 2.0) is None


def test_holm_family_intervals_exclude_zero_exactly_where_holm_rejects():
    rng = np.random.default_rng(0)
    for _ in range(50):
        family = [paired.compare({s: 0.01 * x for s, x in enumerate(rng.normal(shift, 1.0, 4))}, dict.fromkeys(range(4), 0.0))
                  for shift in rng.normal(0, 1.5, 6)]
        for stat in paired.holm_family(family):
            lo, hi = stat.holm_interval
            assert (lo > 0 or hi < 0) == (stat.p_holm < paired.ALPHA)
            assert stat.p_holm >= stat.p and stat.holm_level >= 0.95
            assert lo <= stat.t_interval[0] and stat.t_interval[1] <= hi


def make_family(root):
    """sst2 on 3 seeds, flat curves: me - random = 1, 2, 3 points; me+star - random = 1, 1, 1; me+star - me = 0, -1, -2."""
    for seed, base in enumerate([0.60, 0.70, 0.80]):
        make_run(root, "sst2", "random", seed, [base] * 3)
        make_run(root, "sst2", "me", seed, [base + 0.01 * (seed + 1)] * 3)
        make_run(root, "sst2", "me+star", seed, [base + 0.01] * 3)


def test_the_report_adjusts_its_comparisons_by_holm_and_tests_equivalence_by_tost(tmp_path):
    root = tmp_path / "runs"
    make_family(root)
    rows = {(s, r): stat for _, s, r, stat in paired_rows(find_runs([root]), margin=3.0)}
    # raw p: me - random 1 - sqrt(12/14) = 0.0742; me+star - random 0 (no spread); me+star - me (t = sqrt 3)
    # 1 - sqrt(3/5) = 0.2254. Holm: 3 x 0 = 0, 2 x 0.0742 = 0.1484, 1 x 0.2254 = 0.2254.
    assert rows[("me", "random")].p_holm == pytest.approx(2 * (1 - (12 / 14) ** 0.5))
    assert rows[("me+star", "me")].p_holm == pytest.approx(1 - 0.6 ** 0.5)
    assert rows[("me+star", "random")].p_holm == pytest.approx(0.0, abs=1e-9)
    # me - random is Holm's first non-rejection (rank 2): it and rank 3 take level 1 - 0.05/2, whose t on 2 df is
    # a sqrt(2 / (1 - a^2)) with a = 0.975: 6.2053, times se 1/sqrt 3 = 3.5827
    half = 0.975 * (2 / (1 - 0.975 ** 2)) ** 0.5 / 3 ** 0.5
    assert rows[("me", "random")].holm_interval == pytest.approx((2 - half, 2 + half))
    assert rows[("me+star", "me")].holm_interval == pytest.approx((-1 - half, -1 + half))
    # TOST at ±3: me - random max(P(T >= 5 sqrt 3), P(T <= -sqrt 3)) = 1/2 - sqrt(3/5)/2 = 0.1127;
    # me+star - me: P(T >= 2 sqrt 3) = 1/2 - sqrt(12/14)/2 = 0.0371 alone, but Holm makes it 2 x 0.0371 = 0.0742
    assert rows[("me", "random")].tost_p == pytest.approx(0.5 - 0.6 ** 0.5 / 2)
    assert rows[("me+star", "me")].tost_p == pytest.approx(0.5 - (12 / 14) ** 0.5 / 2)
    assert rows[("me+star", "me")].tost_p_holm == pytest.approx(1 - (12 / 14) ** 0.5)
    assert [rows[key].equivalent for key in (("me", "random"), ("me+star", "random"), ("me+star", "me"))] == \
        [False, True, False]
    text = write_report([root], tmp_path / "out", equivalence_margin=3.0)
    assert "m = 3 comparisons" in text and "1 - 0.05/(m - j + 1)" in text
    assert f"| sst2 | me - random | 3 | +2.00 | 1.00 | [-0.48, +4.48] | 0.074 | 0.148 | [{2 - half:+.2f}, {2 + half:+.2f}] |" \
        in text
    assert "| sst2 | me+star - random | 3 | +1.00 | [+1.00, +1.00] | <0.001 | <0.001 | within ±3 |" in text
    assert "| sst2 | me+star - me | 3 | -1.00 | [-2.69, +0.69] | 0.037 | 0.074 | not shown |" in text
    assert "Equivalence within ±3" not in write_report([root], tmp_path / "out")


def test_star_report_takes_an_equivalence_margin_and_refuses_a_bad_one(tmp_path, capsys):
    from star_al.cli import main

    root = tmp_path / "runs"
    make_family(root)
    assert main(["report", str(root), "--equivalence-margin", "3", "--out", str(tmp_path / "out")]) == 0
    assert "Equivalence within ±3 AUC points" in (tmp_path / "out" / "report.md").read_text()
    capsys.readouterr()
    assert main(["report", str(root), "--equivalence-margin", "0", "--out", str(tmp_path / "out")]) == 1
    assert "equivalence margin must be a positive" in capsys.readouterr().err
