"""Strategies: schedules, the dynamic mix, MC reduction, ranking, recipes, and one contract
that every registered strategy and recipe meets (as PEFT's common tester and
small-text's strategy mixin run one set of checks over every implementation)."""

import numpy as np
import pytest

from star_al.al.run_config import checked, resolve_config
from star_al.config import RunConfig
from star_al.errors import StarError
from star_al.strategies import (COMPONENTS, STRATEGIES, Needs, Recipe, ScoreView, dynamic_mix, lambda_at, mc_reduce,
                                min_max, top_k)
from star_al.models.adapters import ADAPTERS
from star_al.strategies.random import RandomStrategy
from star_al.strategies.registry import b_decay_of, recipe_of
from star_al.strategies.uncertainty import Dynamic, Uncertainty

RECIPES = ("random", "me", "pe", "me+star", "pe+star", "me+dynamic", "me+dynamic+mc", "me+dynamic+l2",
           "pe+dynamic", "pe+dynamic+mc", "pe+dynamic+l2")


def test_reference_schedule_is_one_minus_a_tenth_per_round():
    assert [round(lambda_at("reference", t, 10), 6) for t in range(4)] == [0.9, 0.8, 0.7, 0.6]
    assert lambda_at("reference", 12, 10) == 0.0


@pytest.mark.parametrize("schedule", ["reference", "linear", "cosine", "exponential"])
def test_every_schedule_is_monotone_decreasing_within_unit_interval(schedule):
    values = [lambda_at(schedule, t, 8) for t in range(8)]
    assert all(0 <= v <= 1 for v in values)
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_min_max_maps_to_unit_interval_and_constant_to_zero():
    np.testing.assert_allclose(min_max([2.0, 4.0, 3.0]), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(min_max([5.0, 5.0]), [0.0, 0.0])


def view_of(ids, tuned=None, base=None, t=0, needs=Needs(), seed=0):
    """A view over fixed arrays: `tuned` maps a measure to [passes, n], `base` to [n]."""
    ids = np.asarray(ids)
    base_arrays = {"ids": ids, **(base or {})}
    return ScoreView(ids, t, needs, lambda scored_ids, _: {m: a[:, np.searchsorted(ids, scored_ids)]
                                                          for m, a in (tuned or {}).items()},
                     base_arrays, lambda purpose: np.random.default_rng([seed, purpose]))


def test_dynamic_mix_uses_base_scores_in_round_zero():
    base, tuned = np.array([1.0, 0.0, 0.5]), np.array([0.0, 1.0, 0.2])
    strategy = Dynamic(Uncertainty("me"), "reference", 10)
    mixed = strategy.score(view_of([0, 1, 2], {"me": tuned[None]}, {"me": base}, needs=strategy.needs))
    np.testing.assert_allclose(mixed, 0.9 * base + 0.1 * tuned)
    assert np.argmax(mixed) == 0  # the base model's most uncertain wins early


def test_dynamic_mix_is_all_tuned_once_lambda_reaches_zero():
    base, tuned = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    np.testing.assert_allclose(dynamic_mix(base, tuned, 0.0), tuned)


def test_mc_reduction_is_the_mean_of_per_pass_scores():
    np.testing.assert_allclose(mc_reduce(np.array([[1.0, 2.0], [3.0, 6.0]])), [2.0, 4.0])


def test_top_k_breaks_ties_by_smaller_id():
    ids, scores = top_k(np.array([7, 3, 5, 1]), np.array([0.5, 0.9, 0.9, 0.1]), 2)
    assert ids == [3, 5] and scores == [0.9, 0.9]


def test_random_strategy_is_reproducible_and_without_replacement():
    view = view_of(np.arange(100))
    first = RandomStrategy().select(view, 10, np.random.default_rng(1)).ids
    assert first == RandomStrategy().select(view, 10, np.random.default_rng(1)).ids
    assert len(set(first)) == 10


@pytest.mark.parametrize("name", RECIPES)
def test_every_paper_recipe_parses_to_a_registered_strategy(name):
    assert Recipe.parse(name).strategy in STRATEGIES


def test_star_turns_on_all_three_components():
    assert Recipe.parse("pe+star") == Recipe("pe", ("dynamic", "mc", "l2"))
    assert Recipe.parse("me+l2+dynamic") == Recipe("me", ("dynamic", "l2"))
    assert Recipe.parse("ME + dynamic + MC + l2").name == "me+star"
    assert Recipe.parse("me+kmeans+l2+mc+dynamic").name == "me+star+kmeans"  # the alias first, then the rest


@pytest.mark.parametrize("bad,message", [("entropy", "unknown strategy"), ("me+fast", "unknown strategy component"),
                                         ("random+star", "combine with a strategy that ranks"),
                                         ("random+kmeans", "for a diverse batch without scores use kmeans"),
                                         ("badge+kmeans", "combine with a strategy that ranks"),
                                         ("me+kmeans+coreset", "one diversity component at most"),
                                         ("rnadom", "did you mean random")])
def test_unknown_strategies_are_refused(bad, message):
    with pytest.raises(StarError, match=message):
        Recipe.parse(bad)


# -- the contract every registered strategy and recipe meets ------------------------------

def every_recipe():
    names = list(STRATEGIES)
    names += [f"{s}+{c}" for s, entry in STRATEGIES.items() if entry.ranks for c in COMPONENTS]
    return names + ["me+star", "pe+star", "me+star+kmeans", "pe+dynamic+coreset"]


def contract_view(strategy, n=40, gold_raises=True, seed=0):
    """A pool of n candidates with distinct scores; asking for a gold measure raises when
    `gold_raises` (a label-free strategy must never ask)."""
    ids = np.arange(100, 100 + n)
    rng = np.random.default_rng(7)
    tuned = {m: rng.random((strategy.needs.passes, n)) for m in ("me", "pe", "pe_gold")}
    base = {m: rng.random(n) for m in ("me", "pe", "pe_gold")}

    labeled_ids = np.arange(5)  # the labeled set, embedded with the candidates when a strategy asks
    every_id = np.concatenate([labeled_ids, ids])
    embeddings, answers = rng.normal(size=(len(every_id), 6)), rng.dirichlet(np.ones(2), size=len(every_id))

    def scorer(scored_ids, needs):
        if gold_raises and "pe_gold" in needs.tuned:
            raise AssertionError("a label-free strategy asked for a gold-answer score")
        scored = {m: a[:, np.searchsorted(ids, scored_ids)] for m, a in tuned.items()}
        if needs.embeddings:
            rows = np.searchsorted(every_id, scored_ids)
            scored.update(embeddings=embeddings[rows], label_probs=answers[rows])
        if needs.gradients:
            rows = np.searchsorted(every_id, scored_ids)
            scored.update(gradient_g=embeddings[rows], gradient_a=answers[rows])
        return scored

    return ScoreView(ids, 1, strategy.needs, scorer, {"ids": ids, **base}, lambda p: np.random.default_rng([seed, p]),
                     labeled_ids)


def contract_config(name, **changes):
    return checked(RunConfig(task="sst2", strategy=name, n_rounds=5, query_size=8, **changes))


@pytest.mark.parametrize("pool_subsample", [None, 25])
@pytest.mark.parametrize("name", every_recipe())
def test_every_registered_strategy_meets_the_contract(name, pool_subsample):
    for pe_mode in ("label-free", "gold"):
        config = contract_config(name, pe_mode=pe_mode, pool_subsample=pool_subsample)
        strategy = recipe_of(config).build(config)
        view = contract_view(strategy, gold_raises=strategy.label_free)
        query = strategy.select(view, 8, np.random.default_rng(3))
        # k unique unlabeled ids from the view
        assert len(query.ids) == len(set(query.ids)) == 8
        assert set(query.ids) <= set(int(i) for i in view.ids)
        # same seed, same ids
        again = strategy.select(contract_view(strategy, gold_raises=strategy.label_free), 8, np.random.default_rng(3))
        assert again.ids == query.ids
        # a ranked strategy queries its k highest candidate scores (a diverse batch need not)
        if query.candidate_scores is not None and not (strategy.needs.embeddings or strategy.needs.gradients):
            assert sorted(query.scores, reverse=True) == query.scores
            assert min(query.scores) >= np.sort(query.candidate_scores)[-8]
        # k larger than the candidates is refused
        with pytest.raises(ValueError):
            small = contract_view(strategy, n=30, gold_raises=strategy.label_free)
            strategy.select(small.subset(small.ids[:5]) if pool_subsample is None else small, 31, np.random.default_rng(3))
    assert recipe_of(contract_config(name)).build(contract_config(name)).label_free  # label-free by default


def test_a_checked_config_names_its_strategy_and_warm_start_canonically():
    config = checked(RunConfig(task="sst2", strategy="ME + dynamic+mc+l2", warm_start_by="ME+KMeans"))
    assert (config.strategy, config.warm_start_by) == ("me+star", "me+kmeans")
    assert checked(config) == config


def test_presets_resolve_with_file_and_command_line_overrides():
    config = resolve_config("sst2", "me+star", "cpu", 1, {"query_size": 8, "lora": {"rank": 8}},
                            {"n_rounds": 2, "lora": {"alpha": 4, "dropout": None}, "train": {"epochs": 1}})
    assert (config.query_size, config.n_rounds, config.lora.rank, config.lora.alpha) == (8, 2, 8, 4)
    assert config.train.epochs == 1 and config.train.learning_rate == 5e-4  # preset values kept
    assert (config.train.min_steps, config.train.warmup_ratio, config.test_limit) == (48, 0.1, None)
    first = resolve_config("sst2", "me+star", "cpu-v1", 1, {}, {})
    assert (first.train.learning_rate, first.train.min_steps, first.test_limit) == (1e-3, 0, 500)
    assert b_decay_of(config) == 0.5
    paper = resolve_config("obqa", "random", "paper", 0, {}, {})
    assert (paper.warm_start, paper.query_size, paper.train.epochs, paper.train.learning_rate) == (200, 200, 15, 3e-5)


def test_full_finetuning_takes_its_own_learning_rate_unless_one_is_given():
    full_finetune_lr = ADAPTERS.get("full").default_learning_rate
    cpu = resolve_config("sst2", "me", "cpu", 0, {}, {"finetune": "full"})
    assert (cpu.train.learning_rate, cpu.train.min_steps, cpu.train.warmup_ratio) == (5e-5, 48, 0.1)
    assert resolve_config("sst2", "me", "cpu-v1", 0, {}, {"finetune": "full"}).train.learning_rate == 1e-4
    paper = resolve_config("boolq", "me", "paper", 0, {}, {"finetune": "full"})
    assert paper.train.learning_rate == full_finetune_lr == 1e-5 and paper.train.epochs == 15
    from_file = resolve_config("sst2", "me", "cpu", 0, {"finetune": "full"}, {})
    assert from_file.train.learning_rate == 5e-5
    given = resolve_config("sst2", "me", "cpu", 0, {}, {"finetune": "full", "train": {"learning_rate": 2e-5}})
    assert given.train.learning_rate == 2e-5
    assert resolve_config("sst2", "me", "cpu", 0, {}, {}).train.learning_rate == 5e-4


def test_ia3_takes_its_own_learning_rate_on_the_presets_schedule_unless_one_is_given():
    ia3_lr = ADAPTERS.get("ia3").default_learning_rate
    cpu = resolve_config("sst2", "me", "cpu", 0, {}, {"finetune": "ia3"})
    assert (cpu.train.learning_rate, cpu.train.min_steps, cpu.train.warmup_ratio) == (ia3_lr, 48, 0.1)
    paper = resolve_config("boolq", "me", "paper", 0, {}, {"finetune": "ia3"})
    assert (paper.train.learning_rate, paper.train.epochs) == (ia3_lr, 15)
    given = resolve_config("sst2", "me", "cpu", 0, {}, {"finetune": "ia3", "train": {"learning_rate": 1e-2}})
    assert given.train.learning_rate == 1e-2
