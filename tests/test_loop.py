"""The AL loop on a tiny real Llama: rounds, resume after a kill, refusals."""

import json

import numpy as np
import pytest

from star_al.al.loop import ActiveLearningRun
from star_al.al.run_config import checked
from star_al.al.run_dir import RunDir
from star_al.config import LoraSettings, RunConfig, TrainSettings
from star_al.data.catalog import load_task
from star_al.data.tasks import load_examples
from star_al.errors import StarError
from star_al.files import load_npz
from star_al.labeling.oracle import GoldOracle


class Killed(Exception):
    pass


class KillingOracle(GoldOracle):
    """Labels like the gold oracle, but the process 'dies' when asked in round `at`."""

    def __init__(self, at):
        self.at = at

    def label(self, batch):
        if batch.round == self.at:
            raise Killed
        return super().label(batch)


@pytest.fixture
def sst2_data(data_root):
    task = load_task("sst2")
    return task, load_examples(task, "train", data_root=str(data_root))[:60], \
        load_examples(task, "test", data_root=str(data_root))[:10]


def smoke_config(strategy, **changes):
    values = dict(task="sst2", strategy=strategy, seed=3, preset="smoke", warm_start=4, query_size=3,
                  n_rounds=3, pool_size=30, mc_passes=2, lora=LoraSettings(rank=4, alpha=8, dropout=0.2),
                  train=TrainSettings(epochs=1, batch_size=4, learning_rate=1e-3))
    values.update(changes)
    return checked(RunConfig(**values))


def run(config, backbone, data, path, oracle=None):
    task, pool, test = data
    return ActiveLearningRun(config, task, pool, test, backbone, RunDir(path), oracle=oracle).run()


def without_timings(rounds):
    return [{k: v for k, v in r.to_dict().items() if k != "timings"} for r in rounds]


def test_run_writes_one_round_line_per_round_with_accuracy_and_selected_ids(tiny_backbone, sst2_data, tmp_path):
    rounds = run(smoke_config("me+star"), tiny_backbone, sst2_data, tmp_path / "r")
    lines = (tmp_path / "r" / "rounds.jsonl").read_text().splitlines()
    assert len(lines) == 4 and [json.loads(l)["round"] for l in lines] == [0, 1, 2, 3]
    assert [r.n_labeled for r in rounds] == [4, 7, 10, 13]
    selected = [i for r in rounds for i in r.selected_ids]
    assert len(selected) == len(set(selected)) == 13
    assert all(0 <= r.accuracy <= 1 and r.ece is not None and r.brier is not None for r in rounds)
    scores = load_npz(tmp_path / "r" / "scores" / "round-01.npz")
    assert scores["me"].shape[0] == 2  # MC passes kept apart
    assert scores["base_me"].shape == scores["combined"].shape == (26,)
    assert (tmp_path / "r" / "adapter" / "adapter_config.json").is_file()


@pytest.mark.parametrize("strategy", ["me+star", "random", "pe"])
def test_resume_after_kill_gives_identical_rounds(tiny_backbone_factory, sst2_data, tmp_path, strategy):
    config = smoke_config(strategy)
    whole = run(config, tiny_backbone_factory(0), sst2_data, tmp_path / "whole")
    with pytest.raises(Killed):
        run(config, tiny_backbone_factory(0), sst2_data, tmp_path / "killed", KillingOracle(at=2))
    assert len(RunDir(tmp_path / "killed").read_rounds()) == 2
    resumed = run(config, tiny_backbone_factory(0), sst2_data, tmp_path / "killed")
    assert without_timings(resumed) == without_timings(whole)
    assert without_timings(RunDir(tmp_path / "killed").read_rounds()) == without_timings(whole)


def test_same_seed_same_selections_other_seed_other_selections(tiny_backbone_factory, sst2_data, tmp_path):
    first = run(smoke_config("random", n_rounds=1), tiny_backbone_factory(0), sst2_data, tmp_path / "a")
    second = run(smoke_config("random", n_rounds=1), tiny_backbone_factory(0), sst2_data, tmp_path / "b")
    other = run(smoke_config("random", n_rounds=1, seed=4), tiny_backbone_factory(0), sst2_data, tmp_path / "c")
    assert without_timings(first) == without_timings(second)
    assert first[0].selected_ids != other[0].selected_ids


def test_uncertainty_query_takes_the_top_scores_of_the_round_file(tiny_backbone, sst2_data, tmp_path):
    rounds = run(smoke_config("me", n_rounds=1), tiny_backbone, sst2_data, tmp_path / "r")
    scores = load_npz(tmp_path / "r" / "scores" / "round-01.npz")
    top = scores["ids"][np.argsort(-scores["combined"], kind="stable")[:3]]
    assert sorted(rounds[1].selected_ids) == sorted(int(i) for i in top)
    np.testing.assert_allclose(scores["combined"], scores["me"].mean(axis=0))


def test_run_directory_of_another_config_is_refused(tiny_backbone, sst2_data, tmp_path):
    run(smoke_config("random", n_rounds=0), tiny_backbone, sst2_data, tmp_path / "r")
    before = (tmp_path / "r" / "rounds.jsonl").read_text()
    with pytest.raises(StarError, match="another config"):
        run(smoke_config("me", n_rounds=0), tiny_backbone, sst2_data, tmp_path / "r")
    assert (tmp_path / "r" / "rounds.jsonl").read_text() == before


def test_budget_larger_than_the_pool_is_refused(tiny_backbone, sst2_data, tmp_path):
    with pytest.raises(StarError, match="larger than the pool"):
        run(smoke_config("random", pool_size=10, n_rounds=5), tiny_backbone, sst2_data, tmp_path / "r")


def test_gold_pe_is_refused_when_people_label(tiny_backbone, sst2_data, tmp_path):
    class People(GoldOracle):
        simulated = False

    with pytest.raises(StarError, match="label-free"):
        run(smoke_config("pe", pe_mode="gold"), tiny_backbone, sst2_data, tmp_path / "r", People())


def test_resume_without_the_adapter_retrains_it_and_ends_identically(tiny_backbone_factory, sst2_data, tmp_path):
    """Only config.json and rounds.jsonl travel in git; resuming from them alone still matches."""
    import shutil

    config = smoke_config("me+star")
    whole = run(config, tiny_backbone_factory(0), sst2_data, tmp_path / "whole")
    with pytest.raises(Killed):
        run(config, tiny_backbone_factory(0), sst2_data, tmp_path / "killed", KillingOracle(at=2))
    for leftover in ("adapter", "adapter.next", "scores", "predictions", "base_scores.npz", "pending.json"):
        path = tmp_path / "killed" / leftover
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    resumed = run(config, tiny_backbone_factory(0), sst2_data, tmp_path / "killed")
    assert without_timings(resumed) == without_timings(whole)


def test_full_finetuning_trains_every_weight_and_leaves_the_base_untouched(tiny_backbone, sst2_data, tmp_path,
                                                                          monkeypatch):
    import torch

    from star_al.engine import training as training_module

    trained = []
    real_train = training_module.train_full
    monkeypatch.setattr(training_module, "train_full",
                        lambda model, *a, **k: trained.append(model) or real_train(model, *a, **k))
    before = {n: p.clone() for n, p in tiny_backbone.model.named_parameters()}
    config = smoke_config("me", finetune="full", n_rounds=1)
    al_run = ActiveLearningRun(config, sst2_data[0], sst2_data[1], sst2_data[2], tiny_backbone,
                               RunDir(tmp_path / "r"))
    rounds = al_run.run()
    assert len(rounds) == 2 and all(0 <= r.accuracy <= 1 for r in rounds)
    tuned = dict(trained[-1].named_parameters())
    assert trained[-1] is not tiny_backbone.model and al_run.model is tiny_backbone.model  # the copy is dropped
    assert any(not torch.equal(tuned[n], before[n]) for n in before if "layers.0.mlp" in n)
    for name, param in tiny_backbone.model.named_parameters():
        torch.testing.assert_close(param, before[name])


def test_full_finetuning_refuses_lora_only_components():
    with pytest.raises(StarError, match="needs a LoRA adapter"):
        smoke_config("me+star", finetune="full")


def test_runs_in_one_process_leave_the_shared_base_untouched(tiny_backbone_factory, sst2_data, tmp_path):
    """A sweep runs many configs on one backbone: the next run's base scores are the base's."""
    backbone = tiny_backbone_factory(0)
    run(smoke_config("random"), backbone, sst2_data, tmp_path / "first")
    assert not any("lora_" in name for name, _ in backbone.model.named_parameters())
    after_a_run = run(smoke_config("me+star"), backbone, sst2_data, tmp_path / "second")
    alone = run(smoke_config("me+star"), tiny_backbone_factory(0), sst2_data, tmp_path / "alone")
    np.testing.assert_allclose(load_npz(tmp_path / "second" / "base_scores.npz")["me"],
                               load_npz(tmp_path / "alone" / "base_scores.npz")["me"], rtol=1e-5)
    assert without_timings(after_a_run) == without_timings(alone)


def test_training_reads_labels_only_from_the_ledger(tiny_backbone, sst2_data, tmp_path):
    """The gold oracle fills labels.jsonl; every trained example is answered there, once."""
    from star_al.labeling.ledger import LabelLedger

    rounds = run(smoke_config("me+star"), tiny_backbone, sst2_data, tmp_path / "r")
    entries = LabelLedger(tmp_path / "r" / "labels.jsonl").read()
    by_id = {ex.id: ex for ex in sst2_data[1]}
    assert [e["id"] for e in entries] == [i for r in rounds for i in r.selected_ids]
    assert all(e["answer"] == by_id[e["id"]].gold and e["source"] == "gold" for e in entries)
    assert [e["round"] for e in entries] == [r.round for r in rounds for _ in r.selected_ids]


def test_a_label_in_the_ledger_is_what_training_uses(tiny_backbone, sst2_data, tmp_path, monkeypatch):
    """A person's label (here: the opposite of the file's) is what training gets, not the file's answer."""
    from star_al.engine import training as training_module
    from star_al.labeling.oracle import Label, Oracle

    class Contrarian(Oracle):
        source = "person"

        def label(self, batch):
            return [Label(ex.id, "negative" if ex.gold == "positive" else "positive") for ex in batch.examples]

    task, pool, test = sst2_data
    seen = []
    real_train = training_module.train_adapter
    monkeypatch.setattr(training_module, "train_adapter",
                        lambda model, tok, task, examples, *a, **k: seen.append(list(examples)) or real_train(
                            model, tok, task, examples, *a, **k))
    run(smoke_config("random", n_rounds=1), tiny_backbone, sst2_data, tmp_path / "r", Contrarian())
    by_id = {ex.id: ex for ex in pool}
    assert len(seen) == 2 and all(ex.gold != by_id[ex.id].gold for ex in seen[-1])
    assert all(ex.target == task.label_target(ex.gold) for ex in seen[-1])
    assert {e["source"] for e in json_lines(tmp_path / "r" / "labels.jsonl")} == {"person"}


def json_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_ledger_refuses_a_second_label_and_a_damaged_line(tmp_path):
    from star_al.labeling.ledger import LabelLedger
    from star_al.labeling.oracle import Label

    ledger = LabelLedger(tmp_path / "labels.jsonl")
    ledger.append([Label(1, "positive"), Label(2, "negative")], 0, "person")
    with pytest.raises(StarError, match="labeled already"):
        ledger.append([Label(2, "positive")], 1, "person")
    assert [e["answer"] for e in ledger.read()] == ["positive", "negative"]
    text = (tmp_path / "labels.jsonl").read_text()
    (tmp_path / "labels.jsonl").write_text(text.replace('"negative"', '"positive"'))
    with pytest.raises(StarError, match="labels.jsonl:2: checksum"):
        ledger.read()


def test_a_toy_strategy_is_one_class_and_one_registry_line(tiny_backbone, sst2_data, tmp_path):
    """Adding a strategy touches nothing but its own code and the registry: the loop runs it as is."""
    from star_al.strategies import STRATEGIES, Needs, ScoredStrategy, StrategyEntry

    class LowestEntropy(ScoredStrategy):
        """Queries the candidates the model is surest about (the opposite of ME)."""

        measure = "me"
        needs = Needs(tuned=frozenset({"me"}))

        def score(self, view):
            return -view.tuned("me").mean(axis=0)

    STRATEGIES.add("toy", StrategyEntry(lambda config: LowestEntropy(), True, "a test's strategy"))
    try:
        rounds = run(smoke_config("toy+dynamic", n_rounds=1), tiny_backbone, sst2_data, tmp_path / "r")
        scores = load_npz(tmp_path / "r" / "scores" / "round-01.npz")
        top = scores["ids"][np.argsort(-scores["combined"], kind="stable")[:3]]
        assert sorted(rounds[1].selected_ids) == sorted(int(i) for i in top)
        assert rounds[1].lambda_ == pytest.approx(0.9)
    finally:
        STRATEGIES.remove("toy")


def test_picks_at_lambda_0_9_follow_the_clean_base_scores_when_they_come_from_the_shared_cache(
        tiny_backbone_factory, sst2_data, tmp_path):
    """The guard against a contaminated base-score cache: a run served from the cache (after
    another run on the same backbone filled it) must rank, at lambda 0.9, mostly by the
    frozen base model's own uncertainty, computed here independently."""
    from star_al.engine.scoring import ScoringOptions, score_examples

    task, pool, test = sst2_data
    backbone = tiny_backbone_factory(0)
    config = smoke_config("me+dynamic", n_rounds=1, query_size=6)
    cache = tmp_path / "cache"
    # another pool first (its adapter must not leak into the next run's base scores), then a
    # run that fills the cache for this pool, then one served from the cache
    strong = TrainSettings(epochs=4, batch_size=4, learning_rate=5e-2)  # an adapter that moves the scores
    ActiveLearningRun(smoke_config("me+star", n_rounds=1, query_size=6, seed=5, train=strong), task, pool, test,
                      backbone, RunDir(tmp_path / "other-pool"), cache_root=cache).run()
    ActiveLearningRun(config, task, pool, test, backbone, RunDir(tmp_path / "first"), cache_root=cache).run()
    rounds = ActiveLearningRun(config, task, pool, test, backbone, RunDir(tmp_path / "second"),
                               cache_root=cache).run()
    assert json.loads((tmp_path / "first" / "base_scores.json").read_text())["source"] == "computed"
    assert json.loads((tmp_path / "second" / "base_scores.json").read_text())["source"] == "shared cache"
    assert rounds[1].lambda_ == pytest.approx(0.9)
    candidates = load_npz(tmp_path / "second" / "scores" / "round-01.npz")["ids"]
    by_id = {ex.id: ex for ex in pool}
    clean = score_examples(tiny_backbone_factory(0).model, backbone.tokenizer, task, [by_id[int(i)] for i in candidates],
                           ScoringOptions(batch_size=8)).me[0]
    base_top = {int(i) for i in candidates[np.argsort(-clean, kind="stable")[:6]]}
    assert len(base_top & set(rounds[1].selected_ids)) >= 4
    np.testing.assert_allclose(load_npz(tmp_path / "second" / "scores" / "round-01.npz")["base_me"], clean, rtol=1e-5)
