"""Acquisition is array work: schedules, the dynamic mix, MC reduction, ranking, recipes."""

import numpy as np
import pytest

from star_al.acquisition import (RECIPES, RandomStrategy, StrategySpec, UncertaintyStrategy, dynamic_mix,
                                 lambda_at, mc_reduce, min_max, top_k)
from star_al.errors import StarError


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


def test_dynamic_mix_uses_base_scores_in_round_zero():
    base, tuned = np.array([1.0, 0.0, 0.5]), np.array([0.0, 1.0, 0.2])
    strategy = UncertaintyStrategy(StrategySpec.parse("me+dynamic"))
    mixed = strategy.combine(tuned[None], base, t=0)
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
    pool = np.arange(100)
    first = RandomStrategy().query(pool, 10, np.random.default_rng(1)).ids
    assert first == RandomStrategy().query(pool, 10, np.random.default_rng(1)).ids
    assert len(set(first)) == 10


@pytest.mark.parametrize("name", RECIPES)
def test_every_paper_recipe_parses(name):
    spec = StrategySpec.parse(name)
    assert spec.measure in ("random", "me", "pe")


def test_star_turns_on_all_three_components():
    assert StrategySpec.parse("pe+star") == StrategySpec("pe", True, True, True)
    assert StrategySpec.parse("me+dynamic+l2") == StrategySpec("me", True, False, True)
    assert str(StrategySpec.parse("me+dynamic+mc")) == "ME +Dynamic +MC dropout"


@pytest.mark.parametrize("bad", ["entropy", "me+fast", "random+star"])
def test_unknown_strategies_are_refused(bad):
    with pytest.raises(StarError):
        StrategySpec.parse(bad)


def test_presets_resolve_with_file_and_command_line_overrides():
    from star_al.config import resolve_config

    config = resolve_config("sst2", "me+star", "cpu", 1, {"query_size": 8, "lora": {"rank": 8}},
                            {"n_rounds": 2, "lora": {"alpha": 4, "dropout": None}, "train": {"epochs": 1}})
    assert (config.query_size, config.n_rounds, config.lora.rank, config.lora.alpha) == (8, 2, 8, 4)
    assert config.train.epochs == 1 and config.train.learning_rate == 1e-3  # task file / preset value kept
    assert config.b_decay == 0.5
    paper = resolve_config("obqa", "random", "paper", 0, {}, {})
    assert (paper.warm_start, paper.query_size, paper.train.epochs, paper.train.learning_rate) == (200, 200, 15, 3e-5)


def test_full_finetuning_takes_its_own_learning_rate_unless_one_is_given():
    from star_al.config import FULL_FINETUNE_LR, resolve_config

    cpu = resolve_config("sst2", "me", "cpu", 0, {}, {"finetune": "full"})
    assert cpu.train.learning_rate == 1e-4 and cpu.train.epochs == 3
    paper = resolve_config("boolq", "me", "paper", 0, {}, {"finetune": "full"})
    assert paper.train.learning_rate == FULL_FINETUNE_LR and paper.train.epochs == 15
    from_file = resolve_config("sst2", "me", "cpu", 0, {"finetune": "full"}, {})
    assert from_file.train.learning_rate == 1e-4
    given = resolve_config("sst2", "me", "cpu", 0, {}, {"finetune": "full", "train": {"learning_rate": 5e-5}})
    assert given.train.learning_rate == 5e-5
    assert resolve_config("sst2", "me", "cpu", 0, {}, {}).train.learning_rate == 1e-3
