"""One frozen dataclass holds a run's whole configuration; presets fill it in.

The resolved config is written beside the results (`config.json`), so a run directory
says exactly what made it, and a resumed run can refuse a directory made otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path

import yaml

from star_al.strategies.registry import Recipe
from star_al.strategies.schedules import SCHEDULES
from star_al.errors import StarError

ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class LoraSettings:
    """The adapter: the paper's defaults (r 64, alpha 16, dropout 0.1, all projections; docs/method.md 6)."""

    rank: int = 64
    alpha: int = 16
    dropout: float = 0.1
    target_modules: tuple[str, ...] = (ALL_LINEAR,)


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation: AdamW with a linear schedule; `b_decay` is the weight decay on lora_B."""

    epochs: int = 3
    batch_size: int = 8
    learning_rate: float = 1.5e-4
    b_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_prompt_tokens: int = 1024


# Every numeric setting's kind and range, checked once where a config is built (flags,
# YAML and presets alike): (kind, low, high, low allowed, high allowed, None allowed).
NUMERIC_RULES = {
    "seed": (int, 0, None, True, None, False),
    "warm_start": (int, 1, None, True, None, False),
    "query_size": (int, 1, None, True, None, False),
    "n_rounds": (int, 0, None, True, None, False),
    "pool_size": (int, 1, None, True, None, True),
    "pool_subsample": (int, 0, None, True, None, True),      # 0 or None: score the whole pool
    "test_limit": (int, 1, None, True, None, True),          # None: the whole test set
    "mc_passes": (int, 1, None, True, None, False),
    "b_decay_strength": (float, 0.0, None, True, None, False),
    "score_batch_size": (int, 1, None, True, None, False),
    "lora.rank": (int, 1, None, True, None, False),
    "lora.alpha": (float, 0.0, None, False, None, False),
    "lora.dropout": (float, 0.0, 1.0, True, False, False),   # 1 would drop the whole branch
    "train.epochs": (int, 1, None, True, None, False),
    "train.batch_size": (int, 1, None, True, None, False),
    "train.learning_rate": (float, 0.0, None, False, None, False),
    "train.b_decay": (float, 0.0, None, True, None, False),
    "train.warmup_ratio": (float, 0.0, 1.0, True, False, False),
    "train.max_prompt_tokens": (int, 1, None, True, None, False),
}


def check_number(name: str, value, rule) -> None:
    """Raise a one-line StarError unless value is of the rule's kind and inside its range."""
    kind, low, high, low_ok, high_ok, none_ok = rule
    if value is None and none_ok:
        return
    allowed = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed) or value != value:
        raise StarError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    too_low = low is not None and (value < low or (value == low and not low_ok))
    too_high = high is not None and (value > high or (value == high and not high_ok))
    if too_low or too_high:
        bounds = f"{'at least' if low_ok else 'above'} {low}"
        if high is not None:
            bounds += f" and {'at most' if high_ok else 'below'} {high}"
        raise StarError(f"{name} must be {bounds}, got {value!r}")


def check_settings(lora: LoraSettings, train: TrainSettings) -> None:
    """Check the adapter and optimisation settings (every command that trains uses these)."""
    for name, rule in NUMERIC_RULES.items():
        holder, _, key = name.partition(".")
        if key:
            check_number(name, getattr(lora if holder == "lora" else train, key), rule)
    targets = lora.target_modules
    if not targets or not all(isinstance(t, str) and t.strip() for t in targets):
        raise StarError(f"lora.target_modules must be a list of module names, got {list(targets)!r}")


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
    labels: str = "gold"                # who labels: "gold" (the dataset's answers: a simulation) or "human"
    evaluate: bool = True               # False (--no-eval): no labelled test set; rounds report the pool instead
    data_hash: str | None = None        # fingerprint of the train and test examples the run reads

    def __post_init__(self):
        # One name per strategy: "ME", "me + dynamic+mc+l2" and "me+star" are one recipe.
        if isinstance(self.strategy, str):
            object.__setattr__(self, "strategy", Recipe.parse(self.strategy).name)

    @property
    def recipe(self) -> Recipe:
        return Recipe.parse(self.strategy)

    @property
    def b_decay(self) -> float:
        """Weight decay on lora_B this run trains with: STAR's when L2 on B is on, else none."""
        return self.b_decay_strength if self.recipe.decays else 0.0

    def validate(self) -> "RunConfig":
        """Check every setting's kind and range; raises a one-line StarError on the first bad one."""
        if not isinstance(self.strategy, str):
            raise StarError(f"strategy must be a name such as me+star, got {self.strategy!r}")
        for name, rule in NUMERIC_RULES.items():
            if "." not in name:
                check_number(name, getattr(self, name), rule)
        check_settings(self.lora, self.train)
        for name in ("task", "model", "lambda_schedule", "pe_mode", "finetune", "preset"):
            if not isinstance(getattr(self, name), str):
                raise StarError(f"{name} must be a string, got {getattr(self, name)!r}")
        if self.lambda_schedule not in SCHEDULES:
            raise StarError(SCHEDULES.unknown(self.lambda_schedule))
        if self.pe_mode not in ("label-free", "gold"):
            raise StarError(f"pe_mode must be 'label-free' or 'gold', got {self.pe_mode!r}")
        if self.finetune not in ("lora", "full"):
            raise StarError(f"unknown finetune {self.finetune!r}; choose 'lora' or 'full'")
        if self.labels not in ("gold", "human"):
            raise StarError(f"labels must be 'gold' or 'human', got {self.labels!r}")
        if not isinstance(self.evaluate, bool):
            raise StarError(f"evaluate must be true or false, got {self.evaluate!r}")
        if not self.evaluate and self.labels == "gold":
            raise StarError("--no-eval is for runs that people label (--labels human); a simulation has a test set")
        if self.pool_subsample and self.pool_subsample < self.query_size:
            raise StarError(f"pool_subsample {self.pool_subsample} is smaller than the query size {self.query_size}")
        self.recipe.check(self)
        return self

    @property
    def budget(self) -> int:
        return self.warm_start + self.n_rounds * self.query_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        data = dict(data)
        lora = data.get("lora") or {}
        data["lora"] = LoraSettings(**{**lora, "target_modules": tuple(lora.get("target_modules", (ALL_LINEAR,)))})
        data["train"] = TrainSettings(**(data.get("train") or {}))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known}).validate()


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
    known = {f.name for f in fields(RunConfig)} - set(COMMAND_LINE_ONLY)
    for key, value in data.items():
        if key in COMMAND_LINE_ONLY:
            raise StarError(f"config file {path}: {key!r} is given on the command line, not in the file")
        if key not in known:
            raise StarError(f"config file {path}: unknown key {key!r}")
        if key in ("lora", "train"):
            settings = {f.name for f in fields(LoraSettings if key == "lora" else TrainSettings)}
            if not isinstance(value, dict):
                raise StarError(f"config file {path}: {key!r} must be a mapping of {', '.join(sorted(settings))}")
            for inner in value:
                if inner not in settings:
                    raise StarError(f"config file {path}: unknown key {key}.{inner!r}")
            if "target_modules" in value and not isinstance(value["target_modules"], (list, str)):
                raise StarError(f"config file {path}: lora.target_modules must be a list of module names")
            if isinstance(value.get("target_modules"), str):
                value["target_modules"] = [value["target_modules"]]
    return data


# Settings that name the run itself (or are derived from the data) come from the command line.
COMMAND_LINE_ONLY = ("task", "strategy", "seed", "preset", "data_dir", "data_hash")


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
    from star_al.data.tasks import load_task

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


def identity(config_dict: dict, other: dict) -> dict:
    """The part of a config that decides results, to compare with `other` (another run's).

    The data is compared by content (`data_hash`), so a run directory can move between
    machines whose data folders differ in path; only a config written before fingerprints
    existed is compared by its data folder instead.
    """
    fingerprinted = config_dict.get("data_hash") is not None and other.get("data_hash") is not None
    left_out = ("data_dir",) if fingerprinted else ("data_hash",)
    return {k: v for k, v in config_dict.items() if k not in left_out}

