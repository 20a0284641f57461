"""A run's config, resolved from its sources and checked against what is registered.

config.py knows the settings and their ranges; the names in them stand for things
registered elsewhere (strategies and their components, lambda schedules, adapter
methods, stopping rules, warm starts), so they are resolved and checked here, where all
of those can be read: `resolve_config` layers preset, task file, config file and command
line; `checked` gives each name its canonical spelling and refuses what does not exist or
does not go together, in one line a user can act on.
"""

from __future__ import annotations

from dataclasses import replace

from star_al.al.cold_start import warm_start_recipe
from star_al.config import RunConfig, TrainSettings, merge, preset_values
from star_al.data.catalog import load_task
from star_al.errors import StarError
from star_al.models.adapters import ADAPTERS, adapter_method
from star_al.stopping import Plateau, parse_stop
from star_al.strategies.registry import Recipe
from star_al.strategies.schedules import SCHEDULES


def resolve_config(task, strategy: str, preset: str, seed: int, file_values: dict,
                   overrides: dict) -> RunConfig:
    """Preset, then the task file's training, the config file and the command line: later wins.

    `task` is a task name or path, or a Task object (its own name goes into the config).
    Under a method with a learning rate of its own (ia3, full) the preset trains at that
    rate (or, for full fine-tuning, on the preset's `full_train`) before the config file
    and the command line apply. Returns a checked config.
    """
    task_spec = load_task(task) if isinstance(task, str) else task
    values = merge({"train": TrainSettings(**task_spec.training)}, preset_values(preset, task_spec.name))
    full_train = values.pop("full_train", None)
    name = merge(merge(values, file_values), overrides).get("finetune", RunConfig.finetune)
    method = ADAPTERS.get(name) if isinstance(name, str) and name in ADAPTERS else None  # else `checked` refuses it
    if method is not None and not method.is_adapter and full_train is not None:
        values["train"] = full_train
    elif method is not None and method.default_learning_rate is not None:
        values["train"] = replace(values["train"], learning_rate=method.default_learning_rate)
    values = merge(values, file_values)
    values = merge(values, overrides)
    try:
        config = RunConfig(task=task if isinstance(task, str) else task_spec.name, strategy=strategy, seed=seed,
                           preset=preset, **values)
    except TypeError as error:
        raise StarError(f"bad setting: {error}") from error
    return checked(config)


def checked(config: RunConfig) -> RunConfig:
    """The config with canonical names ("ME", "me + dynamic+mc+l2" and "me+star" are one recipe),
    after every check: kinds and ranges (RunConfig.validate), then that each name is registered
    and that the strategy, the adapter method and the stopping rules go together."""
    config.validate()
    config = replace(config, strategy=Recipe.parse(config.strategy).name,
                     warm_start_by=warm_start_recipe(config.warm_start_by).name)
    if config.lambda_schedule not in SCHEDULES:
        raise StarError(SCHEDULES.unknown(config.lambda_schedule))
    adapter_method(config.finetune)  # a known method, else a one-line refusal
    Recipe.parse(config.strategy).check(config)
    if any(isinstance(c, Plateau) for c in parse_stop(config.stop)) and not config.evaluate:
        raise StarError("--stop plateau needs a test set; without one (--no-eval) use stability or uncertainty")
    return config
