"""Acquisition strategies: one interface (`Strategy.select`), composable wrappers, a registry."""

from star_al.strategies.base import MEASURES, Needs, Query, ScoredStrategy, ScoreView, Strategy, min_max, top_k
from star_al.strategies.registry import ALIASES, COMPONENTS, STRATEGIES, Component, Recipe, StrategyEntry
from star_al.strategies.schedules import SCHEDULES, lambda_at
from star_al.strategies.uncertainty import dynamic_mix, mc_reduce

__all__ = ["ALIASES", "COMPONENTS", "Component", "MEASURES", "Needs", "Query", "Recipe", "SCHEDULES",
           "STRATEGIES", "ScoreView", "ScoredStrategy", "Strategy", "StrategyEntry", "dynamic_mix", "lambda_at",
           "mc_reduce", "min_max", "top_k"]
