"""The variance split (seed, training run, test sample) on inputs with known answers, the
training seed that it needs, and the minimum of training steps of the recipe it chose."""

import json

import numpy as np
import pytest

from star_al.analysis import variance
from star_al.analysis.report import find_runs, write_variance_report
from star_al.errors import StarError
from test_loop import run, smoke_config, sst2_data  # noqa: F401 (a fixture)
from test_report import SIZES


def test_split_of_a_two_by_two_design():
    # within seeds: var(1, 3) = var(5, 7) = 2 -> training 2; seed means 2 and 6: var 8, less 2 / 2 -> seed 7
    mean, seed, train, test = variance.decompose({0: {"a": 1.0, "b": 3.0}, 1: {"a": 5.0, "b": 7.0}})
    assert (mean, seed, train, test) == (4.0, 7.0, 2.0, None)


def test_seed_part_is_floored_at_zero_and_unbalanced_training_seeds_are_pooled():
    # seed means 2 and 2.5 (var 0.125) hold less than training / T leaves (about 0.67): seed part 0
    mean, seed, train, _ = variance.decompose({0: {"a": 1.0, "b": 3.0}, 1: {"a": 1.0, "b": 3.0, "c": 3.5}})
    assert seed == 0.0
    # pooled with weights 1 and 2: (2 * 1 + 1.75 * 2) / 3
    assert train == pytest.approx((2 + np.var([1, 3, 3.5], ddof=1) * 2) / 3)


def test_split_needs_two_seeds_each_with_two_training_seeds():
    with pytest.raises(StarError, match="2 training seeds"):
        variance.decompose({0: {"a": 1.0}, 1: {"a": 2.0, "b": 3.0}})
    with pytest.raises(StarError, match="2 seeds or more"):
        variance.decompose({0: {"a": 1.0, "b": 2.0}})


def test_test_sample_variance_of_a_round_and_of_the_auc():
    correct = np.array([[1, 0, 1, 0], [1, 1, 0, 0]], dtype=float)
    assert variance._test_variance(correct, np.array([0, 10]), 1) == pytest.approx(0.25 / 4)
    # the AUC of two points is their mean: per sentence 1, .5, .5, 0 -> variance .125, / 4 sentences
    assert variance._test_variance(correct, np.array([0, 10]), None) == pytest.approx(0.125 / 4)


def make_nested_run(root, seed, train_seed, accuracies, correct=None):
    run_dir = root / f"seed-{seed}-train-{train_seed}"
    run_dir.mkdir(parents=True)
    config = {"task": "sst2", "strategy": "random", "seed": seed, "train_seed": train_seed,
              "n_rounds": len(accuracies) - 1}
    (run_dir / "config.json").write_text(json.dumps(config))
    lines = [json.dumps({"round": i, "n_labeled": SIZES[i], "selected_ids": [], "accuracy": a})
             for i, a in enumerate(accuracies)]
    (run_dir / "rounds.jsonl").write_text("".join(line + "\n" for line in lines))
    if correct is not None:
        (run_dir / "predictions").mkdir()
        for i, row in enumerate(correct):
            (run_dir / "predictions" / f"round-{i:02d}.jsonl").write_text(
                "".join(json.dumps({"id": n, "correct": bool(c)}) + "\n" for n, c in enumerate(row)))
    return run_dir


def test_report_splits_every_round_and_the_auc(tmp_path):
    root = tmp_path / "runs"
    # flat curves: each round (and the AUC) is 0.5/0.7 (seed 0) and 0.6/0.8 (seed 1)
    for seed, base in ((0, 0.5), (1, 0.6)):
        for t, shift in ((100, 0.0), (101, 0.2)):
            make_nested_run(root, seed, t, [base + shift] * 3)
    tables = variance.variance_table(find_runs([root]))
    [(task, strategy, rows)] = tables
    assert (task, strategy) == ("sst2", "random") and [r.round for r in rows] == [0, 1, 2, None]
    # training: var(0.5, 0.7) = 0.02 -> sd 0.1414; seed: var(0.6, 0.7) = 0.005 less 0.02 / 2 -> 0
    for row in rows:
        assert row.train_sd == pytest.approx(np.sqrt(0.02)) and row.seed_sd == 0.0 and row.test_sd is None
    text = write_variance_report([root], tmp_path / "out")
    assert "| AUC |  | 65.00 | 0.00 | 14.14 | n/a | 14.14 |" in text
    assert (tmp_path / "out" / "variance.md").read_text() == text


def test_report_reads_the_test_sample_from_saved_predictions(tmp_path):
    root = tmp_path / "runs"
    correct = [[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0]]
    for seed in (0, 1):
        for t in (100, 101):
            make_nested_run(root, seed, t, [0.5, 0.75, 0.75], correct)
    rows = variance.variance_table(find_runs([root]))[0][2]
    assert rows[0].test_sd == pytest.approx(np.sqrt(0.25 / 4))
    assert rows[1].test_sd == pytest.approx(np.sqrt(0.1875 / 4))


def test_two_runs_of_one_seed_and_training_seed_are_refused(tmp_path):
    make_nested_run(tmp_path / "a", 0, 100, [0.5] * 3)
    make_nested_run(tmp_path / "b", 0, 100, [0.6] * 3)
    with pytest.raises(StarError, match="two runs of sst2/random seed 0 train seed 100"):
        variance.variance_table(find_runs([tmp_path]))


def test_training_seed_changes_training_and_nothing_the_seed_chooses(tiny_backbone_factory, sst2_data, tmp_path):
    """With random, another training seed keeps the labels and changes the adapter (so the accuracy may move)."""
    a = run(smoke_config("random", train_seed=7), tiny_backbone_factory(0), sst2_data, tmp_path / "a")
    b = run(smoke_config("random", train_seed=8), tiny_backbone_factory(0), sst2_data, tmp_path / "b")
    default = run(smoke_config("random"), tiny_backbone_factory(0), sst2_data, tmp_path / "c")
    assert [r.selected_ids for r in a] == [r.selected_ids for r in b] == [r.selected_ids for r in default]
    weights = [json.loads((tmp_path / d / "adapter" / "adapter_config.json").read_text()) for d in "ab"]
    assert weights[0] == weights[1]  # same adapter shape; the weights themselves differ:
    from safetensors.torch import load_file

    wa, wb = (load_file(tmp_path / d / "adapter" / "adapter_model.safetensors") for d in "ab")
    assert any(not np.allclose(wa[k].float().numpy(), wb[k].float().numpy()) for k in wa)
    # the seed's own training seed is the default one
    same = run(smoke_config("random", train_seed=3), tiny_backbone_factory(0), sst2_data, tmp_path / "d")
    assert [r.accuracy for r in same] == [r.accuracy for r in default]


def test_min_steps_adds_whole_epochs(tiny_backbone_factory, sst2_data, tmp_path):
    from star_al.config import TrainSettings

    rounds = run(smoke_config("random", train=TrainSettings(epochs=1, batch_size=4, learning_rate=1e-3,
                                                              min_steps=5)),
                 tiny_backbone_factory(0), sst2_data, tmp_path / "r")
    # 4, 7, 10, 13 labels in batches of 4: 1, 2, 3, 4 steps an epoch -> 5, 6, 6, 8 steps
    assert [r.train_steps for r in rounds] == [5, 6, 6, 8]


def test_negative_training_seed_and_min_steps_are_refused():
    from star_al.config import TrainSettings

    with pytest.raises(StarError, match="train_seed must be at least 0"):
        smoke_config("random", train_seed=-1)
    with pytest.raises(StarError, match="train.min_steps must be at least 0"):
        smoke_config("random", train=TrainSettings(min_steps=-2))


def test_a_run_written_before_the_new_settings_existed_still_resumes(tiny_backbone_factory, sst2_data, tmp_path):
    """config.json from before --train-seed and --min-steps: their defaults stand in, top level and in `train`."""
    first = run(smoke_config("random"), tiny_backbone_factory(0), sst2_data, tmp_path / "r")
    path = tmp_path / "r" / "config.json"
    stored = json.loads(path.read_text())
    del stored["train_seed"], stored["train"]["min_steps"]
    path.write_text(json.dumps(stored))
    again = run(smoke_config("random"), tiny_backbone_factory(0), sst2_data, tmp_path / "r")
    assert [r.accuracy for r in again] == [r.accuracy for r in first]
    with pytest.raises(StarError, match="differs in: train"):
        run(smoke_config("random", train=smoke_config("random").train.__class__(min_steps=5)),
            tiny_backbone_factory(0), sst2_data, tmp_path / "r")
