"""Every strategy and recipe component by name; a recipe such as `me+star` is built from them.

Adding a strategy is one class (in its own module) and one `STRATEGIES.add` line; a
selection component is one wrapper class and one `COMPONENTS.add` line. `star list`
prints what is registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from star_al.errors import StarError
from star_al.registry import Registry
from star_al.strategies.base import ScoredStrategy, Strategy
from star_al.strategies.diversity import Badge, ClusterTopK, Coreset, CoresetShortlist, KMeansCentroids, TypiClust
from star_al.strategies.random import RandomStrategy
from star_al.strategies.subsample import Subsample
from star_al.strategies.uncertainty import Dynamic, MCDropout, Uncertainty


@dataclass(frozen=True)
class StrategyEntry:
    """How to build a strategy from the run's config; `ranks`: it scores candidates, so
    selection components (dynamic, mc) can wrap it."""

    build: Callable[[object], Strategy]
    ranks: bool
    help: str


@dataclass(frozen=True)
class Component:
    """A recipe switch: how it wraps selection, and what it asks of training."""

    help: str
    wrap: Callable[[ScoredStrategy, object], Strategy] | None = None
    decays: bool = False          # training decays the adapter's B side (L2 on B): a method with one
    needs_adapter: bool = False   # only meaningful with a PEFT adapter, refused with --finetune full
    needs_dropout: bool = False   # needs a method with dropout, and that dropout above 0
    diversity: bool = False       # picks the batch from the ranked scores (one at most, wraps last)


STRATEGIES: Registry[StrategyEntry] = Registry("strategy")
STRATEGIES.add("random", StrategyEntry(lambda config: RandomStrategy(), False, "uniform, the passive baseline"))
STRATEGIES.add("me", StrategyEntry(lambda config: Uncertainty("me"), True, "maximum entropy of the answer"))
STRATEGIES.add("pe", StrategyEntry(
    lambda config: Uncertainty("pe_gold" if config.pe_mode == "gold" else "pe"), True,
    "predictive entropy of the model's own answer (--pe-mode gold: of the gold answer)"))
STRATEGIES.add("kmeans", StrategyEntry(lambda config: KMeansCentroids(), False,
                                       "k-means on hidden states into k clusters, the point nearest each centre"))
STRATEGIES.add("coreset", StrategyEntry(lambda config: Coreset(), False,
                                        "greedy k-center on hidden states from the labeled set (Sener & Savarese 2018)"))
STRATEGIES.add("typiclust", StrategyEntry(lambda config: TypiClust(), False,
                                          "most typical point of the largest uncovered clusters (Hacohen et al. 2022)"))
STRATEGIES.add("badge", StrategyEntry(lambda config: Badge(), False,
                                      "k-means++ on gradient embeddings on the last layer's LoRA B "
                                      "(Ash et al. 2020); one-token answers"))

COMPONENTS: Registry[Component] = Registry("strategy component")
COMPONENTS.add("dynamic", Component("mix base and tuned model scores with a decreasing lambda",
                                    wrap=lambda inner, config: Dynamic(inner, config.lambda_schedule, config.n_rounds)))
COMPONENTS.add("mc", Component("mean over K passes with the LoRA dropout on (--mc-passes)",
                               wrap=lambda inner, config: MCDropout(inner, config.mc_passes),
                               needs_adapter=True, needs_dropout=True))
COMPONENTS.add("l2", Component("weight decay on LoRA B only (--b-decay-strength)", decays=True, needs_adapter=True))
# Diversity components come last in the registry: they wrap the finished ranker (and its mix).
COMPONENTS.add("kmeans", Component("k-means on hidden states into k clusters, the top-scoring candidate of each",
                                   wrap=lambda inner, config: ClusterTopK(inner), diversity=True))
COMPONENTS.add("coreset", Component("greedy k-center among the 10 k top-scoring candidates",
                                    wrap=lambda inner, config: CoresetShortlist(inner), diversity=True))

ALIASES = {"star": ("dynamic", "mc", "l2")}


@dataclass(frozen=True)
class Recipe:
    """A parsed strategy name: the strategy and the components switched on, in registry order."""

    strategy: str
    components: tuple[str, ...] = ()

    @classmethod
    def parse(cls, name) -> "Recipe":
        if not isinstance(name, str):
            raise StarError(f"strategy must be a name such as me+star, got {name!r}")
        parts = [part.strip().lower() for part in name.split("+")]
        if parts[0] not in STRATEGIES:
            raise StarError(f"{STRATEGIES.unknown(parts[0])} (recipes such as me+star, pe+dynamic+mc)")
        on: set[str] = set()
        for part in parts[1:]:
            if part in ALIASES:
                on.update(ALIASES[part])
            elif part in COMPONENTS:
                on.add(part)
            else:
                raise StarError(f"in strategy {name!r}: {COMPONENTS.unknown(part)} (or {', '.join(ALIASES)})")
        if on and not STRATEGIES.get(parts[0]).ranks:
            ranking = [n for n, entry in STRATEGIES.items() if entry.ranks]
            diverse = [n for n, entry in STRATEGIES.items() if not entry.ranks and n != "random"]
            raise StarError(f"strategy {name!r}: components combine with a strategy that ranks "
                            f"({', '.join(ranking)}), not {parts[0]}; for a diverse batch without "
                            f"scores use {', '.join(diverse)} alone")
        diversity = [c for c in COMPONENTS if c in on and COMPONENTS.get(c).diversity]
        if len(diversity) > 1:
            raise StarError(f"strategy {name!r}: one diversity component at most, not {' and '.join(diversity)}")
        return cls(parts[0], tuple(c for c in COMPONENTS if c in on))

    @property
    def name(self) -> str:
        """The canonical name: lower case, components in registry order, an alias where one fits."""
        for alias, members in ALIASES.items():
            if set(members) <= set(self.components):
                rest = [c for c in self.components if c not in members]
                return "+".join([self.strategy, alias, *rest])
        return "+".join([self.strategy, *self.components])

    def uses(self, component: str) -> bool:
        return component in self.components

    @property
    def decays(self) -> bool:
        return any(COMPONENTS.get(c).decays for c in self.components)

    def check(self, config) -> None:
        """Refuse combinations the run's settings cannot carry out, the adapter method's included."""
        from star_al.models.adapters import adapter_method

        method = adapter_method(config.finetune)
        for name in self.components:
            component = COMPONENTS.get(name)
            if component.needs_adapter and not method.is_adapter:
                raise StarError(f"strategy {self.name!r} needs a LoRA adapter ({name}); "
                                "with --finetune full use random, me, pe or +dynamic")
            if component.decays and method.decayed is None:
                raise StarError(f"{name} in strategy {self.name!r} decays the adapter's B matrix, which "
                                f"{method.name} does not have; leave {name} out (e.g. me+dynamic)")
            if component.needs_dropout and not method.has_dropout:
                raise StarError(f"{name} in strategy {self.name!r} needs the adapter's dropout, which "
                                f"{method.name} does not have; leave {name} out (e.g. me+dynamic)")
            if component.needs_dropout and config.lora.dropout <= 0:
                raise StarError(f"{name} in strategy {self.name!r} needs lora dropout > 0")

    def build(self, config) -> Strategy:
        """The strategy object, components wrapped around it, subsampling outermost."""
        strategy = STRATEGIES.get(self.strategy).build(config)
        for name in self.components:
            wrap = COMPONENTS.get(name).wrap
            if wrap is not None:
                strategy = wrap(strategy, config)
        if config.pool_subsample:
            strategy = Subsample(strategy, config.pool_subsample)
        return strategy


def recipe_of(config) -> Recipe:
    """The recipe a run's `strategy` names."""
    return Recipe.parse(config.strategy)


def b_decay_of(config) -> float:
    """The weight decay on the adapter's B side a run trains with: STAR's strength when its recipe
    has L2 on B, else none."""
    return config.b_decay_strength if recipe_of(config).decays else 0.0
