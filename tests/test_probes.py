"""The paper's probes: wrong-answer confidence (fig. 2) on a tiny real Llama, entropy across rounds
(fig. 3) on run directories built by hand with known correlations."""

import csv
import json

import numpy as np
import pytest
import torch

from star_al.errors import StarError
from star_al.analysis.probes import confidence_probe, entropy_probe, gaussian_kde, in_context_examples
from star_al.data.catalog import load_task
from star_al.data.tasks import Example, load_examples
from star_al.config import LoraSettings, TrainSettings
from star_al.files import write_npz_atomic


# ---------------------------------------------------------------- figure 2

def test_in_context_examples_put_the_demonstrations_before_each_question():
    demos = [Example(7, "Q: a\nA:", " yes", "yes"), Example(8, "Q: b\nA:", " no", "no")]
    test = [Example(0, "Q: c\nA:", " yes", "yes")]
    prompted = in_context_examples(test, demos)
    assert prompted == [Example(0, "Q: a\nA: yes\n\nQ: b\nA: no\n\nQ: c\nA:", " yes", "yes")]
    assert in_context_examples(test, []) == test


def test_gaussian_kde_integrates_to_one_over_the_confidence_range():
    grid = np.linspace(0.5, 1.0, 2001)
    for values in ([0.5, 0.51, 0.52, 0.99], [0.75], np.random.default_rng(0).uniform(0.5, 1, 200)):
        density = gaussian_kde(values, grid, 0.5, 1.0)
        assert np.all(density >= 0)
        assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)


def test_confidence_probe_writes_csv_figure_and_summary_and_leaves_the_backbone_untuned(
        tiny_backbone, data_root, tmp_path):
    task = load_task("sst2")
    train = load_examples(task, "train", data_root=str(data_root))[:40]
    test = load_examples(task, "test", data_root=str(data_root))[:10]
    base_model = tiny_backbone.model
    before = {name: p.detach().clone() for name, p in base_model.named_parameters()}

    summary = confidence_probe(tiny_backbone, task, train, test, LoraSettings(rank=4, alpha=8, dropout=0.1),
                               TrainSettings(epochs=1, batch_size=4, learning_rate=1e-3),
                               n_train=8, k_shot=2, seed=1, out_dir=tmp_path / "probe")

    for name in ("confidence.csv", "confidence.png", "summary.md"):
        assert (tmp_path / "probe" / name).stat().st_size > 0
    assert set(summary["models"]) == {"tuned", "in-context"}
    for stats in summary["models"].values():
        assert 0 <= stats["accuracy"] <= 1 and stats["n"] == 10
        assert stats["n_wrong"] == round(10 * (1 - stats["accuracy"]))
    assert len(summary["train_ids"]) == 8 and len(summary["demonstration_ids"]) == 2
    with open(tmp_path / "probe" / "confidence.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 20 and {row["model"] for row in rows} == {"tuned", "in-context"}
    assert all(0.5 - 1e-6 <= float(row["confidence"]) <= 1 for row in rows)  # top of two labels
    assert "| LoRA-tuned on 8 |" in (tmp_path / "probe" / "summary.md").read_text()

    assert tiny_backbone.model is base_model
    assert not any("lora_" in name for name, _ in base_model.named_parameters())
    assert all(torch.equal(p, before[name]) for name, p in base_model.named_parameters())


def test_confidence_probe_refuses_a_task_without_answer_labels(tmp_path):
    gsm8k = load_task("gsm8k")
    example = Example(0, "q", " 1", "1")
    with pytest.raises(StarError, match="label task"):
        confidence_probe(None, gsm8k, [example], [example], LoraSettings(), TrainSettings(),
                         n_train=1, k_shot=0, seed=0, out_dir=tmp_path)


# ---------------------------------------------------------------- figure 3

def write_run(path, tuned_scores, base_ids, base_me, pool_subsample=None):
    """A run directory as the loop leaves it: base_scores.npz and scores/round-NN.npz (2 MC passes)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"task": "sst2", "strategy": "me",
                                                  "pool_subsample": pool_subsample}))
    base_me = np.asarray(base_me, dtype=float)
    write_npz_atomic(path / "base_scores.npz", ids=np.asarray(base_ids), me=base_me, pe=base_me + 1,
                     pe_gold=base_me + 2)
    for round_index, (ids, me) in tuned_scores.items():
        me = np.asarray(me, dtype=float)
        spread = np.linspace(-0.1, 0.1, me.size)
        per_pass = np.stack([me + spread, me - spread])  # the mean over passes is `me`
        write_npz_atomic(path / "scores" / f"round-{round_index:02d}.npz", ids=np.asarray(ids), me=per_pass,
                         pe=per_pass + 1, base_me=np.zeros(me.size), base_pe=np.zeros(me.size),
                         combined=me)


@pytest.fixture
def known_run(tmp_path):
    """Base ME over ids 0..29; round 1 = -base (r = -1) over ids 0..24; round 2 = 2 round 1 + 1
    over 0..27 (r = 1); round 3 = round 2 cubed (Spearman 1). 25 ids are in every round."""
    rng = np.random.default_rng(0)
    base_ids = np.arange(30)
    base = rng.permutation(30).astype(float) + rng.uniform(0, 0.5, 30)
    round1 = -base[:25]
    round2 = 2 * (-base[:28]) + 1
    round3 = round2 ** 3
    write_run(tmp_path / "run", {1: (base_ids[:25], round1), 2: (base_ids[:28], round2),
                                 3: (base_ids[:28][::-1], round3[::-1])}, base_ids, base)
    return tmp_path / "run", base


def test_entropy_probe_correlates_rounds_over_the_most_uncertain_common_examples(known_run, tmp_path):
    run_dir, base = known_run
    summary = entropy_probe(run_dir, tmp_path / "out", top=10, method="spearman")

    assert summary["rounds"] == [0, 1, 2, 3]
    assert summary["n_common"] == 25 and summary["n_examples"] == 10
    assert summary["ids"] == sorted(range(25), key=lambda i: -base[i])[:10]
    assert summary["base_vs_first_tuned"] == pytest.approx(-1)
    assert summary["consecutive"] == pytest.approx({"1-2": 1.0, "2-3": 1.0})
    assert summary["consecutive_mean"] == pytest.approx(1.0)
    assert summary["scatter_pair"] == (2, 3)
    for name in ("correlation.csv", "entropy_heatmap.png", "scatter_base_vs_round1.png",
                 "scatter_round2_vs_round3.png", "summary.md"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    with open(tmp_path / "out" / "correlation.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["round", "round 0", "round 1", "round 2", "round 3"]
    assert float(rows[1][2]) == pytest.approx(-1) and float(rows[2][3]) == pytest.approx(1)
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "10 most uncertain" in text and "of the 25 scored in every round" in text
    assert "round 1: -1.000" in text and "mean: 1.000" in text


def test_entropy_probe_pearson_sees_linear_but_not_cubic_agreement(known_run, tmp_path):
    summary = entropy_probe(known_run[0], tmp_path / "out", top=1000, method="pearson", round_pair=1)
    assert summary["n_examples"] == 25
    assert summary["consecutive"]["1-2"] == pytest.approx(1.0)
    assert summary["consecutive"]["2-3"] < 0.999
    assert (tmp_path / "out" / "scatter_round1_vs_round2.png").is_file()


def test_entropy_probe_default_scatter_is_the_middle_tuned_round(tmp_path):
    ids = np.arange(12)
    base = np.arange(12.0)
    tuned = {r: (ids, np.sin(base * r)) for r in range(1, 6)}
    write_run(tmp_path / "run", tuned, ids, base)
    assert entropy_probe(tmp_path / "run", tmp_path / "out")["scatter_pair"] == (3, 4)
    with pytest.raises(StarError, match="rounds 5 and 6"):
        entropy_probe(tmp_path / "run", tmp_path / "out", round_pair=5)


def test_entropy_probe_refuses_a_run_without_round_scores(tmp_path):
    write_run(tmp_path / "random", {}, np.arange(5), np.arange(5.0))
    with pytest.raises(StarError, match="run a me/pe strategy"):
        entropy_probe(tmp_path / "random", tmp_path / "out")


def test_entropy_probe_refuses_a_run_without_base_scores(known_run, tmp_path):
    (known_run[0] / "base_scores.npz").unlink()
    with pytest.raises(StarError, match="base_scores.npz"):
        entropy_probe(known_run[0], tmp_path / "out")


def test_entropy_probe_explains_a_tiny_intersection_from_pool_subsampling(tmp_path):
    ids = np.arange(20)
    write_run(tmp_path / "run", {1: (ids[:10], np.arange(10.0)), 2: (ids[8:], np.arange(12.0))}, ids,
              np.arange(20.0), pool_subsample=10)
    with pytest.raises(StarError, match="only 2 examples.*random subset of 10"):
        entropy_probe(tmp_path / "run", tmp_path / "out")


def test_entropy_probe_reads_round_0_from_the_base_scores_even_after_a_cold_start(known_run, tmp_path):
    """A cold start (--warm-start-by kmeans) leaves scores/round-00.npz without ME: the probe ignores it."""
    from star_al.analysis.probes import read_round_scores

    path, base = known_run
    write_npz_atomic(path / "scores" / "round-00.npz", ids=np.arange(3), combined=np.zeros(3))
    by_round = read_round_scores(path)
    assert sorted(by_round) == [0, 1, 2, 3]
    np.testing.assert_array_equal(by_round[0][1], base)
