"""star-al: active learning around LoRA fine-tuning of large language models (STAR and baselines).

The Python API (docs/api.md); the `star` command is a shell over it:

- `configure(...)` -> RunConfig, `run(config, out)` -> the rounds of a whole curve,
  `resume(out)`, `sweep(configs, out)`, `status(out)`;
- `Learner(model, task, pool, out)`: `query()`, `teach(labels)`, `fit()`, `evaluate()`,
  `save(path)`, `Learner.load(out, ...)`, over your own model, task and pool;
- `select(strategy, k, ids, scores, ...)`: only the acquisition step, on your scores;
- `register_strategy`, `register_stopping` and the registries themselves.

Names are imported on first use, so `import star_al` stays light (torch loads when a
name that needs it is touched).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# name -> the module that defines it
_EXPORTS = {
    "RunConfig": "star_al.config", "LoraSettings": "star_al.config", "TrainSettings": "star_al.config",
    "PRESETS": "star_al.config",
    "configure": "star_al.runs", "run": "star_al.runs", "resume": "star_al.runs", "sweep": "star_al.runs",
    "status": "star_al.runs", "import_labels": "star_al.runs", "load_model": "star_al.runs",
    "Machine": "star_al.runs", "RunStatus": "star_al.runs",
    "Learner": "star_al.learner", "make_task": "star_al.learner",
    "select": "star_al.selection",
    "register_strategy": "star_al.registries", "register_stopping": "star_al.registries",
    "registered": "star_al.registries",
    "STRATEGIES": "star_al.strategies.registry", "COMPONENTS": "star_al.strategies.registry",
    "STOPPING": "star_al.stopping", "StoppingCriterion": "star_al.stopping",
    "ADAPTERS": "star_al.models.adapters", "LABELLING_TOOLS": "star_al.labeling.tools",
    "LabellingTool": "star_al.labeling.tool",
    "Strategy": "star_al.strategies.base", "ScoredStrategy": "star_al.strategies.base",
    "ScoreView": "star_al.strategies.base", "Needs": "star_al.strategies.base", "Query": "star_al.strategies.base",
    "Task": "star_al.data.tasks", "Example": "star_al.data.tasks", "load_task": "star_al.data.catalog",
    "Label": "star_al.labeling.oracle", "Batch": "star_al.labeling.oracle",
    "AwaitingLabels": "star_al.labeling.people", "RoundRecord": "star_al.rounds", "StarError": "star_al.errors",
    "Backbone": "star_al.models.backbones",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'star_al' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # what type checkers and editors see
    from star_al.config import PRESETS, LoraSettings, RunConfig, TrainSettings
    from star_al.data.catalog import load_task
    from star_al.data.tasks import Example, Task
    from star_al.errors import StarError
    from star_al.labeling.oracle import Batch, Label
    from star_al.labeling.people import AwaitingLabels
    from star_al.labeling.tool import LabellingTool
    from star_al.labeling.tools import LABELLING_TOOLS
    from star_al.learner import Learner, make_task
    from star_al.models.adapters import ADAPTERS
    from star_al.models.backbones import Backbone
    from star_al.registries import register_stopping, register_strategy, registered
    from star_al.rounds import RoundRecord
    from star_al.runs import (Machine, RunStatus, configure, import_labels, load_model, resume, run, status,
                              sweep)
    from star_al.selection import select
    from star_al.stopping import STOPPING, StoppingCriterion
    from star_al.strategies.base import Needs, Query, ScoredStrategy, ScoreView, Strategy
    from star_al.strategies.registry import COMPONENTS, STRATEGIES
