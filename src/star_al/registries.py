"""Every registry in one place: what `star list` prints, and where user code adds its own.

    @star_al.register_strategy("least-confident", ranks=True, help="1 - p(answer)")
    def least_confident(config):
        return MyStrategy()

A name registered here is usable everywhere a built-in one is: `run`, `Learner`,
`select`, `star run` in a process that imported it.
"""

from __future__ import annotations

from typing import Callable

from star_al.al.cold_start import WARM_START_COMPONENTS, WARM_START_STRATEGIES
from star_al.labeling.tools import LABELLING_TOOLS
from star_al.models.adapters import ADAPTERS
from star_al.models.backbones import EMBEDDED
from star_al.stopping import STOPPING
from star_al.strategies.registry import ALIASES, COMPONENTS, STRATEGIES, StrategyEntry
from star_al.strategies.schedules import SCHEDULES


def register_strategy(name: str, build: Callable | None = None, *, ranks: bool = False, help: str = ""):
    """Register `build(config) -> Strategy` under `name` (usable as a decorator).

    `ranks`: the strategy scores candidates (a ScoredStrategy), so STAR's components
    (dynamic, mc) and the diversity components can wrap it (`name+dynamic`).
    """
    def add(factory: Callable) -> Callable:
        STRATEGIES.add(name, StrategyEntry(factory, ranks, help or (factory.__doc__ or name).strip().splitlines()[0]))
        return factory

    return add(build) if build is not None else add


def register_stopping(name: str, criterion: type | None = None):
    """Register a StoppingCriterion class, built as `criterion(value)` from `--stop name:value`
    (usable as a class decorator)."""
    def add(cls: type) -> type:
        STOPPING.add(name, cls)
        return cls

    return add(criterion) if criterion is not None else add


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def registered() -> list[tuple[str, list[tuple[str, str]]]]:
    """(title, [(name, one line of help), ...]) for every registry, as `star list` prints them."""
    return [
        ("strategies (--strategy NAME[+component...])", [(n, e.help) for n, e in STRATEGIES.items()]),
        ("strategy components", [(n, c.help) for n, c in COMPONENTS.items()]
         + [(alias, "= " + " + ".join(members)) for alias, members in ALIASES.items()]),
        ("warm starts (--warm-start-by NAME[+component])",
         [("random", "the paper's: warm-start ids at random")]
         + [(n, "by the base model: " + STRATEGIES.get(n).help.split(" (--pe-mode")[0])
            for n in WARM_START_STRATEGIES if n != "random"]
         + [(f"+{c}", f"on me or pe: {COMPONENTS.get(c).help}") for c in WARM_START_COMPONENTS]),
        ("lambda schedules (--lambda-schedule)", [(n, _first_line(f.__doc__)) for n, f in SCHEDULES.items()]),
        ("stopping criteria", [(n, _first_line(c.__doc__)) for n, c in STOPPING.items()]),
        ("adapter methods", [(n, _first_line(type(m).__doc__)) for n, m in ADAPTERS.items()]),
        ("labelling tools (--labels human)", [(n, _first_line(t.__doc__)) for n, t in LABELLING_TOOLS.items()]),
        ("embedded backbones (--model)", [(n, f"{b.help} ({b.hub_id})") for n, b in EMBEDDED.items()]),
    ]
