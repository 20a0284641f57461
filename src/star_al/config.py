"""One frozen dataclass holds a run's whole configuration; presets fill it in.

The resolved config is written beside the results (`config.json`), so a run directory
says exactly what made it, and a resumed run can refuse a directory made otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path

import yaml

from star_al.acquisition import LAMBDA_SCHEDULES, StrategySpec
from star_al.errors import StarError
from star_al.training import LoraSettings, TrainSettings


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's selections and curve."""

    task: str
    strategy: str
    seed: int = 0
    preset: str = "cpu"
    model: str = "smollm2-135m"
    data_dir: str | None = None          # the task's resolved data folder (None: the hub)
    warm_start: int = 32
    query_size: int = 32
    n_rounds: int = 5                   # query rounds after the warm start
    pool_size: int | None = None        # draw a fixed random pool of this size from train
    pool_subsample: int | None = None   # score only a random subset of the pool each round
    test_limit: int | None = None       # evaluate on the first N test examples
    mc_passes: int = 3
    b_decay_strength: float = 0.5       # lora_B decay when the strategy has L2 on B
    lambda_schedule: str = "reference"
    pe_mode: str = "label-free"         # or "gold": scores the gold response (simulation only)
    score_batch_size: int = 32
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    finetune: str = "lora"              # or "full": every weight trained (the paper's Figure 1)

    @property
    def spec(self) -> StrategySpec:
        return StrategySpec.parse(self.strategy)

    @property
    def b_decay(self) -> float:
        """Weight decay on lora_B this run trains with: STAR's when L2 on B is on, else none."""
        return self.b_decay_strength if self.spec.l2_on_b else 0.0

    def validate(self) -> "RunConfig":
        self.spec  # parses the strategy name, raising on a bad one
        positive = {"warm_start": self.warm_start, "query_size": self.query_size,
                    "mc_passes": self.mc_passes, "score_batch_size": self.score_batch_size}
        for key, value in positive.items():
            if value < 1:
                raise StarError(f"{key} must be at least 1, got {value}")
        if self.n_rounds < 0:
            raise StarError(f"n_rounds must be at least 0, got {self.n_rounds}")
        if self.lambda_schedule not in LAMBDA_SCHEDULES:
            raise StarError(f"unknown lambda_schedule {self.lambda_schedule!r}; choose one of {LAMBDA_SCHEDULES}")
        if self.pe_mode not in ("label-free", "gold"):
            raise StarError(f"pe_mode must be 'label-free' or 'gold', got {self.pe_mode!r}")
        if self.spec.mc_dropout and self.lora.dropout <= 0:
            raise StarError("MC dropout needs lora dropout > 0")
        if self.finetune not in ("lora", "full"):
            raise StarError(f"unknown finetune {self.finetune!r}; choose 'lora' or 'full'")
        if self.finetune == "full" and (self.spec.mc_dropout or self.spec.l2_on_b):
            raise StarError(f"strategy {self.strategy!r} needs a LoRA adapter (MC dropout, L2 on B); "
                            "with --finetune full use random, me, pe or +dynamic")
        return self

    @property
    def budget(self) -> int:
        return self.warm_start + self.n_rounds * self.query_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        data = dict(data)
        data["lora"] = LoraSettings(**{**data.get("lora", {}),
                                       "target_modules": tuple(data.get("lora", {}).get("target_modules", ("all-linear",)))})
        data["train"] = TrainSettings(**data.get("train", {}))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# Paper protocol (METHOD.md 1 and 4), for GPUs; per-task sizes follow section 1.
# Training settings come from the task file's `training:` (the paper's per-task values).
PAPER_SIZES = {"gsm8k": (500, 500, 9), "boolq": (500, 500, 9), "obqa": (200, 200, 9)}

PRESETS = {
    "paper": {},
    # Chosen by measurement on the 2-core CPU with SmolLM2-135M: see docs/presets.md.
    "cpu": dict(warm_start=16, query_size=16, n_rounds=5, pool_size=400, pool_subsample=200, test_limit=500,
                lora=LoraSettings(rank=64, alpha=16, dropout=0.1),
                train=TrainSettings(epochs=3, batch_size=8, learning_rate=1e-3),
                full_train=TrainSettings(epochs=3, batch_size=8, learning_rate=1e-4)),
    "smoke": dict(warm_start=4, query_size=4, n_rounds=3, pool_size=24, test_limit=12,
                  mc_passes=2, lora=LoraSettings(rank=4, alpha=8, dropout=0.1),
                  train=TrainSettings(epochs=1, batch_size=4, learning_rate=1e-4),
                  full_train=TrainSettings(epochs=1, batch_size=4, learning_rate=1e-5)),
}

# Full fine-tuning moves every weight, so it wants a far smaller step than LoRA: a
# preset's `full_train` (else this learning rate on the LoRA schedule) replaces `train`
# under --finetune full, before the config file and the command line apply.
FULL_FINETUNE_LR = 1e-5


def preset_values(preset: str, task_name: str) -> dict:
    """The preset's field values for a task (the paper preset differs per task)."""
    if preset not in PRESETS:
        raise StarError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if preset != "paper":
        return dict(PRESETS[preset])
    warm, query, rounds = PAPER_SIZES.get(task_name, (500, 500, 9))
    return dict(warm_start=warm, query_size=query, n_rounds=rounds,
                lora=LoraSettings(rank=64, alpha=16, dropout=0.1), score_batch_size=16)


def load_config_file(path: str) -> dict:
    """A YAML file of RunConfig fields (nested `lora:` and `train:` allowed)."""
    file = Path(path)
    if not file.is_file():
        raise StarError(f"config file {path} not found")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as error:
        raise StarError(f"config file {path}: not valid YAML ({str(error).splitlines()[0]})") from error
    if not isinstance(data, dict):
        raise StarError(f"config file {path}: expected a mapping of settings")
    known = {f.name for f in fields(RunConfig)}
    for key in data:
        if key not in known:
            raise StarError(f"config file {path}: unknown key {key!r}")
    return data


def merge(values: dict, overrides: dict) -> dict:
    """Overlay overrides (None means unset); nested lora/train dicts merge field by field."""
    merged = dict(values)
    for key, value in overrides.items():
        if value is None:
            continue
        if key in ("lora", "train"):
            base = merged.get(key) or (LoraSettings() if key == "lora" else TrainSettings())
            value = asdict(value) if is_dataclass(value) else dict(value)
            nested = {k: v for k, v in value.items() if v is not None}
            if "target_modules" in nested:
                nested["target_modules"] = tuple(nested["target_modules"])
            try:
                merged[key] = replace(base, **nested)
            except TypeError as error:
                raise StarError(f"bad {key} setting: {error}") from error
        else:
            merged[key] = value
    return merged


def resolve_config(task: str, strategy: str, preset: str, seed: int, file_values: dict,
                   overrides: dict) -> RunConfig:
    """Preset, then config file, then command line: later wins."""
    from star_al.tasks import load_task

    task_spec = load_task(task)
    values = merge({"train": TrainSettings(**task_spec.training)}, preset_values(preset, task_spec.name))
    full_train = values.pop("full_train", None)
    if merge(merge(values, file_values), overrides).get("finetune") == "full":
        values["train"] = full_train or replace(values["train"], learning_rate=FULL_FINETUNE_LR)
    values = merge(values, file_values)
    values = merge(values, overrides)
    try:
        config = RunConfig(task=task, strategy=strategy, seed=seed, preset=preset, **values)
    except TypeError as error:
        raise StarError(f"bad setting: {error}") from error
    return config.validate()


def identity(config_dict: dict) -> dict:
    """The part of a config that decides results (all of it, today): used to refuse a mismatch."""
    return {k: v for k, v in config_dict.items() if k not in ("data_dir",)}

