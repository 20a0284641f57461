"""How long runs will take on this machine, said before they start and corrected as they go.

A round costs its training steps, one evaluation of the test set and (for an uncertainty
strategy) a scoring of the pool's candidates over the strategy's passes; the first run
that reads the base model's scores also pays one pass over the whole pool. So a run's
time is a count of steps, test examples and scored examples, each times this machine's
rate. The rates come from the last run of the same model, dtype and task on this machine
(kept in the cache, `rates.json`, keyed by the machine), or, the first time, from a few
steps measured on the loaded model (a few seconds to a minute).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from star_al.files import write_json_atomic
from star_al.log import eta, log
from star_al.models.hardware import device_name
from star_al.strategies.registry import recipe_of

RATES_FILE = "rates.json"


@dataclass(frozen=True)
class Rates:
    """Seconds this machine takes for one training step, one test example's evaluation and
    one pool example's scoring pass, and where the figures come from."""

    step: float
    eval_example: float
    score_example: float
    source: str


def machine_key(backbone, task_name: str) -> str:
    """The machine (device or CPU model, its kernels, threads), the model and dtype, and the task:
    the rates of one do not carry over to another."""
    device = backbone.placement.device
    parts = [device_name(device), device, torch.backends.cpu.get_cpu_capability(), str(torch.get_num_threads()),
             backbone.name, str(backbone.placement.dtype), task_name]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def train_steps(config, n_labeled: int) -> int:
    """Optimizer steps of a round on n_labeled examples (whole epochs, at least train.min_steps)."""
    per_epoch = math.ceil(n_labeled / config.train.batch_size)
    return max(config.train.epochs, math.ceil(config.train.min_steps / per_epoch)) * per_epoch


def _needs_and_candidates(config, pool_size: int):
    """What the run's strategy scores, and how many pool examples it may query (`pool_size` caps the pool)."""
    return recipe_of(config).build(config).needs, min(pool_size, config.pool_size) if config.pool_size else pool_size


def round_counts(config, pool_size: int, n_test: int) -> list[dict]:
    """Per round: training steps, test examples evaluated, pool examples scored x passes (with, for a
    large pool, its candidates' base scores: at most one more pass, computed as rounds ask)."""
    needs, candidates = _needs_and_candidates(config, pool_size)
    lazy_base = bool(needs.base) and pool_size >= config.large_pool
    counts = []
    for index in range(config.n_rounds + 1):
        n_labeled = config.warm_start + index * config.query_size
        unlabeled = candidates - n_labeled + config.query_size
        scored = 0
        if index > 0 and needs.any and needs.tuned:
            scored = min(unlabeled, config.pool_subsample) if config.pool_subsample else unlabeled
        counts.append({"steps": train_steps(config, n_labeled), "eval": n_test if config.evaluate else 0,
                       "scored": scored * (needs.passes + lazy_base)})
    return counts


def base_pass(config, pool_size: int) -> int:
    """Pool examples the base model scores once per run (cached across runs of the same pool); none
    for a large pool, whose base scores come with each round's candidates (round_counts)."""
    needs, candidates = _needs_and_candidates(config, pool_size)
    return candidates if needs.base and pool_size < config.large_pool else 0


@dataclass(frozen=True)
class RunPlan:
    """One run of a sweep as the clock sees it: whose rates, each round's estimated seconds
    (0 for rounds already done), and its pool's size."""

    key: str
    seconds: list[float]
    pool_size: int


def round_seconds(counts: dict, rates: Rates) -> float:
    return counts["steps"] * rates.step + counts["eval"] * rates.eval_example + counts["scored"] * rates.score_example


def rates_from_rounds(config, records, pool_size: int) -> Rates | None:
    """The rates a finished or partial run measured: its rounds' timings over their counts."""
    counts = round_counts(config, pool_size, 0)
    train = sum(r.timings.get("train", 0.0) for r in records)
    steps = sum(r.train_steps or 0 for r in records)
    evaluated = sum(r.n_test or 0 for r in records)
    scored = sum(counts[r.round]["scored"] for r in records if r.round < len(counts) and "score" in r.timings)
    if not steps or not evaluated:
        return None
    eval_example = sum(r.timings.get("eval", 0.0) for r in records) / evaluated
    # A run that scores nothing (random) leaves the scoring rate to an evaluation's: one forward pass each.
    return Rates(step=train / steps, eval_example=eval_example,
                 score_example=sum(r.timings.get("score", 0.0) for r in records) / scored if scored else eval_example,
                 source=f"{len(records)} rounds of an earlier run on this machine")


def measure_rates(backbone, task, pool, test, config, execution=None) -> Rates:
    """A few of this run's own steps on the loaded model: two training steps, then one batch of
    test examples evaluated and one of pool examples scored, each after a small warm-up
    (first calls set up kernels and buffers: timed cold they read about three times slower)."""
    from star_al.engine.evaluation import evaluate
    from star_al.engine.scoring import ScoringOptions, score_examples
    from star_al.engine.training import train_round
    from star_al.models.adapters import ADAPTERS
    from star_al.strategies.registry import b_decay_of

    def timed(fn, examples) -> float:
        fn(examples[:4])
        tick = time.perf_counter()
        fn(examples[4:4 + config.score_batch_size])
        return (time.perf_counter() - tick) / max(len(examples[4:4 + config.score_batch_size]), 1)

    started = time.perf_counter()
    method = ADAPTERS.get(config.finetune)
    examples = [ex for ex in pool[:4 * config.train.batch_size] if ex.gold is not None][:2 * config.train.batch_size]
    model = method.attach(backbone.model, config.lora, config.seed)
    options = ScoringOptions(batch_size=config.score_batch_size)
    try:
        settings = replace(config.train, epochs=1, min_steps=0, warmup_ratio=0.0)
        kwargs = {} if execution is None else {"execution": execution}
        result = train_round(method, model, backbone.model, backbone.tokenizer, task, examples, settings,
                             b_decay_of(config), config.seed, desc=None, **kwargs)
        score = timed(lambda some: score_examples(model, backbone.tokenizer, task, some, options), pool)
        evaluation = timed(lambda some: evaluate(model, backbone.tokenizer, task, some, config.score_batch_size,
                                                 desc=None), test) if len(test) > 4 else score
    finally:
        method.detach(model)
    return Rates(step=result.seconds / max(result.steps, 1), eval_example=evaluation, score_example=score,
                 source=f"measured here in {time.perf_counter() - started:.0f} s")


def read_rates(cache_root: Path | None, key: str) -> Rates | None:
    if cache_root is None:
        return None
    try:
        saved = json.loads((Path(cache_root) / RATES_FILE).read_text()).get(key)
        return Rates(**saved) if saved else None
    except (OSError, ValueError, TypeError):
        return None  # a missing or damaged rates file only costs a measurement


def save_rates(cache_root: Path | None, key: str, rates: Rates) -> None:
    if cache_root is None:
        return
    path = Path(cache_root) / RATES_FILE
    try:
        saved = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        saved = {}
    saved[key] = asdict(rates)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, saved)


class SweepClock:
    """The sweep's estimate: said before the first run, scaled by what the finished rounds took
    against what they were estimated to take, and the rates each finished run measured kept
    for the next sweep on this machine."""

    def __init__(self, plans: list[RunPlan], rates: dict[str, Rates], base_seconds: float,
                 cache_root: Path | None = None):
        self.plans, self.rates, self.base_seconds, self.cache_root = plans, rates, base_seconds, cache_root
        self.estimated_done, self.actual_done = 0.0, 0.0
        self.corrected = False

    @property
    def scale(self) -> float:
        return self.actual_done / self.estimated_done if self.estimated_done else 1.0

    def total(self) -> float:
        return sum(sum(plan.seconds) for plan in self.plans) + self.base_seconds

    def announce(self) -> None:
        rounds = sum(1 for plan in self.plans for seconds in plan.seconds if seconds > 0)
        how = "; ".join(f"a training step {r.step:.2f} s, evaluation {1000 * r.eval_example:.0f} ms and a scoring "
                        f"pass {1000 * r.score_example:.0f} ms an example ({r.source})" for r in self.rates.values())
        log.info(f"sweep: {len(self.plans)} runs, {rounds} rounds to go; about {eta(self.total())} on this "
                 f"machine by its rates: {how}")

    def round_done(self, run_index: int, round_index: int, seconds: float) -> None:
        """A round finished: its time against its estimate corrects the rest (said at the first round)."""
        plan = self.plans[run_index].seconds
        if round_index >= len(plan) or plan[round_index] <= 0:
            return
        self.estimated_done += plan[round_index]
        self.actual_done += seconds
        if not self.corrected:
            self.corrected = True
            log.info(f"sweep: the first round took {seconds:.0f} s against {plan[round_index]:.0f} s estimated; "
                     f"about {eta(self.left(run_index, round_index))} left for the sweep")

    def run_done(self, run_index: int, config, records) -> None:
        """Keep the rates this run measured (its rounds run here) for the next sweep on this machine."""
        plan = self.plans[run_index]
        measured = rates_from_rounds(config, records, plan.pool_size) if records else None
        if measured is not None:
            save_rates(self.cache_root, plan.key, measured)

    def left(self, run_index: int, round_index: int | None = None) -> float:
        """Seconds left after round `round_index` of run `run_index` (after the whole run when None)."""
        plan = self.plans[run_index].seconds
        rest = (sum(plan[round_index + 1:]) if round_index is not None else 0.0) + sum(
            sum(later.seconds) for later in self.plans[run_index + 1:])
        return rest * self.scale
