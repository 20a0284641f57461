"""One frozen dataclass holds a run's whole configuration; presets fill it in.

The resolved config is written beside the results (`config.json`), so a run directory
says exactly what made it, and a resumed run can refuse a directory made otherwise.
This module knows the settings, their kinds and ranges, and the presets; what the names
in them stand for (strategies, schedules, adapter methods, stopping rules) is checked
where those live, by al/run_config.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path

import yaml

from star_al.errors import StarError

ALL_LINEAR = "all-linear"


def setting(default=None, help: str = "", flag: str | tuple[str, ...] | None = None, factory=None,
            **argparse_options):
    """A config field declared once: its default, its help text and its command-line flag (or flags).

    The CLI generates its options from these (cli.add_setting_options), a YAML config file
    takes the same names, and validation (NUMERIC_RULES) checks them whichever way they came.
    """
    metadata = {"help": help, "flag": flag, "argparse": argparse_options}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class LoraSettings:
    """The adapter: the paper's defaults (r 64, alpha 16, dropout 0.1, all projections; docs/method.md 6)."""

    rank: int = setting(64, "LoRA rank", "--rank")
    alpha: int = setting(16, "LoRA alpha", "--alpha")
    dropout: float = setting(0.1, "LoRA dropout (MC passes switch it on)", "--lora-dropout")
    target_modules: tuple[str, ...] = setting((ALL_LINEAR,), "comma-separated module names (all-linear: every "
                                              "attention and MLP projection)", "--target-modules")


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation: AdamW with a linear schedule; `b_decay` is the weight decay on the adapter's B side."""

    epochs: int = setting(3, "training epochs per round", "--epochs")
    min_steps: int = setting(0, "at least N optimizer steps a round: whole epochs are added until reached "
                             "(small labeled sets otherwise train for a handful of steps)", "--min-steps")
    batch_size: int = setting(8, "training batch size", "--train-batch-size")
    learning_rate: float = setting(1.5e-4, "peak learning rate", "--lr")
    b_decay: float = setting(0.0, "AdamW weight decay on LoRA's B only (runs set it from --b-decay-strength)",
                             "--b-decay")
    warmup_ratio: float = setting(0.0, "fraction of the steps spent warming the learning rate up", "--warmup-ratio")
    max_prompt_tokens: int = setting(1024, "prompts are cut to their last N tokens", "--max-prompt-tokens")


# Every numeric setting's kind and range, checked once where a config is built (flags,
# YAML and presets alike): (kind, low, high, low allowed, high allowed, None allowed).
NUMERIC_RULES = {
    "seed": (int, 0, None, True, None, False),
    "train_seed": (int, 0, None, True, None, True),
    "warm_start": (int, 1, None, True, None, False),
    "query_size": (int, 1, None, True, None, False),
    "n_rounds": (int, 0, None, True, None, False),
    "pool_size": (int, 1, None, True, None, True),
    "pool_subsample": (int, 0, None, True, None, True),      # 0 or None: score the whole pool
    "large_pool": (int, 0, None, True, None, False),
    "score_chunk": (int, 1, None, True, None, False),
    "test_limit": (int, 1, None, True, None, True),          # None: the whole test set
    "mc_passes": (int, 1, None, True, None, False),
    "b_decay_strength": (float, 0.0, None, True, None, False),
    "score_batch_size": (int, 1, None, True, None, False),
    "annotators": (int, 1, None, True, None, False),
    "oracle_noise": (float, 0.0, 1.0, True, True, False),
    "lora.rank": (int, 1, None, True, None, False),
    "lora.alpha": (float, 0.0, None, False, None, False),
    "lora.dropout": (float, 0.0, 1.0, True, False, False),   # 1 would drop the whole branch
    "train.epochs": (int, 1, None, True, None, False),
    "train.min_steps": (int, 0, None, True, None, False),
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

    task: str = setting(None, "gsm8k, boolq, obqa, sst2, or a task YAML path", "--task")
    strategy: str = setting(None, "random, me, pe, kmeans, coreset, typiclust, badge, or a recipe such as me+star "
                            "(star list)", "--strategy")
    seed: int = setting(0, "the run's seed (warm start, pool, queries, training)", "--seed")
    train_seed: int | None = setting(None, "seed of the training runs alone (adapter init, dropout, batch "
                                     "order); default: --seed. Same labels, other training luck", "--train-seed")
    preset: str = setting("cpu", "paper, cpu, cpu-v1 or smoke: sizes and training for the hardware at hand",
                          "--preset")
    model: str = setting("smollm2-135m", "smollm2-135m, gemma3-270m, a .gguf file, a model directory or a hub id",
                         "--model")
    data_dir: str | None = None          # the task's resolved data folder (None: the hub)
    warm_start: int = setting(32, "labels of round 0 (drawn as --warm-start-by says)", "--warm-start")
    warm_start_by: str = setting("random", "how round 0 is chosen before any label: random, or from the base "
                                 "model: me, pe, kmeans, coreset, typiclust, me+kmeans, ... (star list)",
                                 "--warm-start-by")
    query_size: int = setting(32, "labels queried per round", "--query-size")
    n_rounds: int = setting(5, "query rounds after the warm start", "--rounds")
    pool_size: int | None = setting(None, "draw a fixed random pool of N train examples (default: all)",
                                    "--pool-size")
    pool_subsample: int | None = setting(None, "score only N random pool examples a round (0: the whole pool)",
                                         "--pool-subsample")
    test_limit: int | None = setting(None, "evaluate on the first N test examples (default: all)", "--test-limit")
    large_pool: int = setting(100_000, "a pool of N examples or more is read from its file as needed (JSONL, Parquet, "
                              "a saved dataset; indexed once, cached by content) and the base model scores only "
                              "what a round scores, when it first needs it (0: every pool)", "--large-pool")
    score_chunk: int = setting(10_000, "pool scoring is saved every N examples: a killed round resumes from its "
                               "last finished chunk (a round scoring N or fewer is one unsaved pass, as always)",
                               "--score-chunk")
    mc_passes: int = setting(3, "K passes for MC dropout", "--mc-passes")
    b_decay_strength: float = setting(0.5, "weight decay on LoRA's B when the strategy has L2 on B",
                                      "--b-decay-strength")
    lambda_schedule: str = setting("reference", "how the dynamic mix hands over (star list)", "--lambda-schedule")
    pe_mode: str = setting("label-free", "label-free, or gold: PE of the gold answer (simulation only)",
                           "--pe-mode", choices=["label-free", "gold"])
    score_batch_size: int = setting(32, "scoring and evaluation batch size", "--score-batch-size")
    lora: LoraSettings = setting(help="the adapter", factory=LoraSettings)
    train: TrainSettings = setting(help="optimisation", factory=TrainSettings)
    finetune: str = setting("lora", "the adapter method (PEFT's): lora (with a fused forward), dora or ia3; or full: "
                            "train every weight (the paper's Figure 1)", ("--finetune", "--peft"))
    labels: str = setting("gold", "who labels: gold (the data's answers, a simulation) or human (people, through "
                          "`star label`; the train file may lack answers)", "--labels", choices=["gold", "human"])
    evaluate: bool = setting(True, "no labelled test set (with --labels human): rounds report the pool's mean "
                             "uncertainty and the agreement of consecutive rounds' predictions", "--no-eval")
    stop: str | None = setting(None, "stop early: name:value[,...] of budget, rounds, time (minutes), "
                               "stability (kappa), uncertainty (nats), plateau (points); star list", "--stop")
    annotators: int = setting(1, "labels each example needs, from different people, before it counts as labelled "
                              "(--labels human); a tie stays queued for one more annotator", "--annotators")
    resolve: str = setting("majority", "how several annotators' labels become one: majority (vote), or "
                           "dawid-skene (each annotator weighed by their estimated reliability)", "--resolve",
                           choices=["majority", "dawid-skene"])
    oracle_noise: float = setting(0.0, "simulation: the gold oracle answers wrong (another of the example's "
                                  "answers, uniformly) with probability P, drawn per example from the seed",
                                  "--oracle-noise")
    data_hash: str | None = None        # fingerprint of the train and test examples the run reads

    def validate(self) -> "RunConfig":
        """Check every setting's kind and range; raises a one-line StarError on the first bad one.

        Whether a name (strategy, schedule, adapter method, stopping rule) is registered, and
        whether they go together, is checked where they are registered: al/run_config.py `checked`.
        """
        if not isinstance(self.strategy, str):
            raise StarError(f"strategy must be a name such as me+star, got {self.strategy!r}")
        for name, rule in NUMERIC_RULES.items():
            if "." not in name:
                check_number(name, getattr(self, name), rule)
        check_settings(self.lora, self.train)
        for name in ("task", "model", "lambda_schedule", "pe_mode", "finetune", "preset", "warm_start_by"):
            if not isinstance(getattr(self, name), str):
                raise StarError(f"{name} must be a string, got {getattr(self, name)!r}")
        if self.pe_mode not in ("label-free", "gold"):
            raise StarError(f"pe_mode must be 'label-free' or 'gold', got {self.pe_mode!r}")
        if self.labels not in ("gold", "human"):
            raise StarError(f"labels must be 'gold' or 'human', got {self.labels!r}")
        if not isinstance(self.evaluate, bool):
            raise StarError(f"evaluate must be true or false, got {self.evaluate!r}")
        if not self.evaluate and self.labels == "gold":
            raise StarError("--no-eval is for runs that people label (--labels human); a simulation has a test set")
        if self.resolve not in ("majority", "dawid-skene"):
            raise StarError(f"resolve must be 'majority' or 'dawid-skene', got {self.resolve!r}")
        if self.annotators > 1 and self.labels != "human":
            raise StarError("--annotators counts people: it needs --labels human (a simulation's annotator errs "
                            "with --oracle-noise)")
        if self.resolve == "dawid-skene" and self.annotators < 2:
            raise StarError("--resolve dawid-skene weighs several annotators: it needs --annotators 2 or more")
        if self.oracle_noise and self.labels != "gold":
            raise StarError("--oracle-noise makes the simulated annotator err: it needs --labels gold")
        if self.pool_subsample and self.pool_subsample < self.query_size:
            raise StarError(f"pool_subsample {self.pool_subsample} is smaller than the query size {self.query_size}")
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


# Paper protocol (docs/method.md sections 1 and 6), for GPUs; per-task sizes follow section 1.
# Training settings come from the task file's `training:` (the paper's per-task values).
PAPER_SIZES = {"gsm8k": (500, 500, 9), "boolq": (500, 500, 9), "obqa": (200, 200, 9)}

# The cpu preset's schedule: at least 48 steps a round, warmed up, at half cpu-v1's rate.
CPU_TRAIN = TrainSettings(epochs=3, batch_size=8, learning_rate=5e-4, warmup_ratio=0.1, min_steps=48)

# A preset's `full_train` is its training under full fine-tuning, which moves every weight
# and so wants a far smaller step than an adapter: it replaces `train` under --finetune full
# before the config file and the command line apply (al/run_config.py; a preset without one
# trains at the method's default_learning_rate, models/adapters.py).
PRESETS = {
    "paper": {},
    # Chosen by measurement on the 2-core CPU with SmolLM2-135M: see docs/method.md section 6.
    # At least 48 steps a round, warmed up, at half cpu-v1's rate: the training run's own
    # luck falls to about a point from 48 labels on (docs/results/variance-candidates).
    "cpu": dict(warm_start=16, query_size=16, n_rounds=5, pool_size=400, pool_subsample=200, test_limit=None,
                lora=LoraSettings(rank=64, alpha=16, dropout=0.1),
                train=CPU_TRAIN,
                # Full fine-tuning on the same schedule at a tenth of the rate (scripts/measure.py
                # full-ft-lr --schedule cpu: 5e-5 as good as 1e-4 on 16 and 64 labels, 2e-5 far below).
                full_train=replace(CPU_TRAIN, learning_rate=5e-5)),
    # The cpu preset until the variance study: the results in docs/results made before it.
    "cpu-v1": dict(warm_start=16, query_size=16, n_rounds=5, pool_size=400, pool_subsample=200, test_limit=500,
                   lora=LoraSettings(rank=64, alpha=16, dropout=0.1),
                   train=TrainSettings(epochs=3, batch_size=8, learning_rate=1e-3),
                   full_train=TrainSettings(epochs=3, batch_size=8, learning_rate=1e-4)),
    "smoke": dict(warm_start=4, query_size=4, n_rounds=3, pool_size=24, test_limit=12,
                  mc_passes=2, lora=LoraSettings(rank=4, alpha=8, dropout=0.1),
                  train=TrainSettings(epochs=1, batch_size=4, learning_rate=1e-4),
                  full_train=TrainSettings(epochs=1, batch_size=4, learning_rate=1e-5)),
}


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
    known = ({f.name for f in fields(RunConfig)} - set(COMMAND_LINE_ONLY)) | {"out"}  # out: the run directory
    for key, value in data.items():
        if key in COMMAND_LINE_ONLY:
            raise StarError(f"config file {path}: {key!r} is derived from the data, not a setting")
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


# Settings derived from the data, never given.
COMMAND_LINE_ONLY = ("data_dir", "data_hash")


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


def identity(config_dict: dict, other: dict) -> dict:
    """The part of a config that decides results, to compare with `other` (another run's).

    The data is compared by content (`data_hash`), so a run directory can move between
    machines whose data folders differ in path; only a config written before fingerprints
    existed is compared by its data folder instead.
    """
    fingerprinted = config_dict.get("data_hash") is not None and other.get("data_hash") is not None
    left_out = ("data_dir",) if fingerprinted else ("data_hash",)
    return {k: v for k, v in config_dict.items() if k not in left_out}

