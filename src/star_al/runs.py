"""Whole runs from Python: a config from its sources, the data and model it names, and the curve.

`star run`, `star resume` and `star sweep` are these functions behind argument parsing:

    config = star_al.configure(task="sst2", strategy="me+star", preset="smoke")
    rounds = star_al.run(config, out="runs/sst2-star")

A config is resolved from, later winning: the preset, the task file's `training:`, a YAML
config file, then the keyword settings. The run directory keeps everything (runs resume
where they stopped: `run(config, out=...)` again, or `resume(out)`).
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from star_al.al.loop import ActiveLearningRun
from star_al.al.run_config import resolve_config
from star_al.al.run_dir import RunDir
from star_al.al.streams import choose_pool
from star_al.config import RunConfig, load_config_file
from star_al.data.catalog import load_task
from star_al.data.disk_pool import load_pool
from star_al.data.tasks import CHOICE, default_data_root, load_examples, resolve_data_dir
from star_al.engine.distributed import Execution, Processes
from star_al.errors import StarError
from star_al.estimates import SweepClock
from star_al.labeling.agreement import Agreement, agreement_by_round
from star_al.labeling.batch_files import read_answers
from star_al.labeling.ledger import LabelLedger
from star_al.labeling.people import AwaitingLabels, HumanOracle, check_answers
from star_al.labeling.tool import AnswerRow
from star_al.labeling.tools import batch_places, labelling_tool, labelling_tools_for
from star_al.log import configure as configure_log, eta, log
from star_al.models.backbones import Backbone, default_cache_root, load_backbone, prepare, resolve_model_dir
from star_al.models.hardware import Placement, choose_placement
from star_al.rounds import RoundRecord


def configure(task: str | None = None, strategy: str | None = None, preset: str | None = None,
              seed: int | None = None, config_file: str | Path | None = None, budget: int | None = None,
              data_root: str | None = None, data: str | None = None, **settings) -> RunConfig:
    """A checked RunConfig: preset, task file's training, `config_file` (YAML), then `settings`.

    `settings` take RunConfig's field names (`n_rounds=3`, `lora={"rank": 8}`,
    `train={"epochs": 1}`); `budget` sets the rounds from the warm start and query size.
    The data folder is resolved now and kept in the config (`data` wins over `data_root`).
    """
    file_values = load_config_file(str(config_file)) if config_file else {}
    file_values.pop("out", None)
    named = {}
    for key, given in (("task", task), ("strategy", strategy), ("seed", seed), ("preset", preset)):
        from_file = file_values.pop(key, None)
        named[key] = given if given is not None else from_file
    for key in ("task", "strategy"):
        if named[key] is None:
            raise StarError(f"no {key}: give --{key} or `{key}:` in the --config file")
    config = resolve_config(named["task"], named["strategy"], named["preset"] or "cpu",
                            0 if named["seed"] is None else named["seed"], file_values, _overrides(settings))
    if budget is not None:
        extra = budget - config.warm_start
        if extra < 0 or extra % config.query_size:
            raise StarError(f"--budget {budget} must be the warm start {config.warm_start} "
                            f"plus a multiple of the query size {config.query_size}")
        config = replace(config, n_rounds=extra // config.query_size)
    data_dir = resolve_data_dir(load_task(config.task), data_root or _default_root(), data)
    return replace(config, data_dir=str(Path(data_dir).resolve()) if data_dir else None)


def configure_task(task, strategy: str, preset: str = "cpu", seed: int = 0, **settings) -> RunConfig:
    """A checked RunConfig for a Task object (one built in Python has no file to be named by)."""
    return resolve_config(task, strategy, preset, seed, {}, _overrides(settings))


def _overrides(settings: dict) -> dict:
    """Keyword settings as resolve_config's overrides (the lora and train groups always present)."""
    return {**settings, "lora": dict(settings.get("lora") or {}), "train": dict(settings.get("train") or {})}


def config_file_out(config_file: str | Path | None) -> str | None:
    """The run directory a --config file names (its `out:` key), if any."""
    if not config_file:
        return None
    out = load_config_file(str(config_file)).get("out")
    return None if out is None else str(out)


def _default_root() -> str | None:
    root = default_data_root()
    return str(root) if root is not None else None


def run_data(config: RunConfig, data_root: str | None = None, data: str | None = None,
             cache_root: Path | None = None):
    """A run's task, pool and test set.

    `data` given now wins (the run's data may have moved); the run's fingerprint check
    refuses it if its content is not what the run started with. A pool file of
    `config.large_pool` examples or more is read from disk as it is needed, through an
    index kept in `cache_root` (data/disk_pool.py).
    """
    task = load_task(config.task)
    data_dir = data or (config.data_dir if config.data_dir and Path(config.data_dir).is_dir() else None)
    root = data_root or _default_root()
    pool = load_pool(task, "train", config.large_pool, cache_root or default_cache_root(), data_root=root,
                     data_dir=data_dir, require_answer=config.labels == "gold")
    test = load_examples(task, "test", data_root=root, data_dir=data_dir) if config.evaluate else []
    return task, pool, test[:config.test_limit] if config.test_limit else test


@dataclass(frozen=True)
class Machine:
    """Where and how runs execute; none of it changes what a run selects (to float rounding)."""

    device: str | None = None
    dtype: str | None = None
    cache_dir: str | None = None
    quantization: str | None = None      # "4bit" or "8bit": the frozen base through bitsandbytes (CUDA)
    gradient_checkpointing: bool = False

    @property
    def cache_root(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else default_cache_root()


def launch(device: str | None = None) -> Processes:
    """The launch this process runs in (accelerate launch, torchrun, or alone).

    The main process speaks for all: the others keep to warnings, without progress bars.
    """
    processes = Processes.from_environment(os.environ, device)
    if not processes.is_main:
        configure_log(-1)
    return processes


def load_model(model, machine: Machine = Machine(), processes: Processes | None = None,
               tokenizer=None, name: str | None = None) -> Backbone:
    """A frozen backbone from an embedded name, a .gguf file, a model directory, a hub id, or an
    already loaded transformers model (give its `tokenizer`); a Backbone is passed through."""
    if isinstance(model, Backbone):
        return model
    if not isinstance(model, (str, Path)):
        if tokenizer is None:
            raise StarError("a loaded model needs its tokenizer: load_model(model, tokenizer=...)")
        parameter = next(model.parameters())
        placement = Placement(str(parameter.device), parameter.dtype, "the model as given")
        label = name or getattr(getattr(model, "config", None), "_name_or_path", None) or type(model).__name__
        return prepare(str(label), "memory", model, tokenizer, placement)
    processes = processes or launch(machine.device)
    # One decision for every process (bf16 speed is measured), each on its own GPU.
    placement = processes.on_main(choose_placement, machine.device, machine.dtype)
    if processes.device is not None:
        placement = replace(placement, device=processes.device)
    processes.on_main(resolve_model_dir, str(model), machine.cache_root)  # de-quantized by main alone
    backbone = load_backbone(str(model), placement, Path(machine.cache_dir) if machine.cache_dir else None,
                             machine.quantization)
    log.info(f"model {model} on {placement.device}, {placement.dtype_name} "
             f"({placement.reason})")
    return backbone


def default_run_dir(root: str | Path, config: RunConfig) -> Path:
    """runs/TASK/STRATEGY[-METHOD][-noiseP]/seed-N[-train-M]: where `star run` and `star sweep` put a run."""
    task = Path(config.task).stem if config.task.endswith((".yaml", ".yml")) else config.task
    strategy = (config.strategy + ("" if config.finetune == "lora" else f"-{config.finetune}")
                + (f"-noise{config.oracle_noise:g}" if config.oracle_noise else ""))
    train = "" if config.train_seed is None else f"-train-{config.train_seed}"
    return Path(root) / task / strategy / f"seed-{config.seed}{train}"


def run(config: RunConfig, out: str | Path | None = None, *, model=None, machine: Machine = Machine(),
        data_root: str | None = None, data: str | None = None, label_studio: str | None = None,
        partial: bool = False, report_to: str | None = None, processes: Processes | None = None) -> list[RoundRecord]:
    """Run (or continue) one active-learning curve in `out` and return its rounds.

    `model` may be a Backbone already loaded (a sweep keeps one for all its runs); by
    default the config's model is loaded. People-labelled runs (`labels="human"`) stop
    with AwaitingLabels when a batch is out; `label_studio` also pushes it there.
    """
    rounds, _ = _run(config, out, model=model, machine=machine, data_root=data_root, data=data,
                     label_studio=label_studio, partial=partial, report_to=report_to, processes=processes)
    return rounds


def _run(config, out, *, model=None, machine=Machine(), data_root=None, data=None, label_studio=None,
         partial=False, report_to=None, processes=None, on_round=None) -> tuple[list[RoundRecord], Backbone]:
    if label_studio and config.labels != "human":
        raise StarError("--label-studio sends the batches to people: it needs --labels human")
    run_dir = RunDir(out if out is not None else default_run_dir("runs", config))
    task, pool, test = run_data(config, data_root, data, machine.cache_root)
    choose_pool(config, pool)  # a budget larger than the pool fails before the model loads
    tools = labelling_tools_for(run_dir.path, label_studio) if config.labels == "human" else []
    for tool in tools:  # a missing SDK, token or server is refused before the model loads or the pool is scored
        tool.check()
    processes = processes or launch(machine.device)
    tracker = None
    if report_to:
        import torch

        from star_al.trackers import Tracker

        tracker = Tracker(report_to, on_cpu=machine.device == "cpu" or not torch.cuda.is_available())
    backbone = model if isinstance(model, Backbone) else load_model(model or config.model, machine, processes)
    oracle = None
    if config.labels == "human":
        oracle = HumanOracle(run_dir.path, task, tools)
    execution = Execution(processes, machine.gradient_checkpointing)
    log.info(f"run directory: {run_dir.path}")
    active = ActiveLearningRun(config, task, pool, test, backbone, run_dir, oracle=oracle,
                               cache_root=machine.cache_root, partial=partial, execution=execution, tracker=tracker,
                               on_round=on_round)
    return active.run(), backbone


def resume(out: str | Path, *, model=None, machine: Machine = Machine(), data_root: str | None = None,
           data: str | None = None, partial: bool = False, report_to: str | None = None,
           processes: Processes | None = None) -> list[RoundRecord]:
    """Continue a killed or waiting run from its directory alone (its config says the rest)."""
    config = RunDir(out).read_config()
    if isinstance(model, (str, Path)) and str(model) != config.model:
        raise StarError(f"{out} was run with --model {config.model}, not {model}")
    return run(config, out, model=None if isinstance(model, (str, Path)) else model, machine=machine,
               data_root=data_root, data=data, partial=partial, report_to=report_to, processes=processes)


def sweep(configs: list[RunConfig], out: str | Path, *, machine: Machine = Machine(), data_root: str | None = None,
          report_to: str | None = None, processes: Processes | None = None,
          label_studio: str | None = None) -> list[Path]:
    """Every config's run under `out` (seed-major as given), skipping finished ones and continuing
    unfinished ones; the model is loaded once for all. Says before the first run how long the
    sweep will take here, and corrects it from the first round. Returns the run directories."""
    run_dirs = [default_run_dir(out, config) for config in configs]
    processes = processes or launch(machine.device)
    todo = [number for number, run_dir in enumerate(run_dirs) if not RunDir(run_dir).is_finished()]
    backbone = load_model(configs[todo[0]].model, machine, processes) if todo else None
    clock = _sweep_clock([configs[n] for n in todo], [run_dirs[n] for n in todo], backbone, machine, data_root,
                         processes) if todo else None
    for number, (config, run_dir) in enumerate(zip(configs, run_dirs), 1):
        label = f"[{number}/{len(configs)}] {config.task} {config.strategy} seed {config.seed}"
        if number - 1 not in todo:
            log.info(f"{label}: finished, skipped")
            continue
        log.info(f"{label}: {run_dir}")
        if backbone is not None and backbone.name != config.model:
            backbone = None
        at = todo.index(number - 1)
        records: list[RoundRecord] = []

        def on_round(record, at=at, records=records):
            records.append(record)
            if clock is not None:
                clock.round_done(at, record.round, record.timings.get("total", 0.0))

        rounds, backbone = _run(config, run_dir, model=backbone, machine=machine, data_root=data_root,
                                report_to=report_to, processes=processes, on_round=on_round,
                                label_studio=label_studio)
        if clock is not None:
            clock.run_done(at, config, records)
        left = len(todo) - at - 1
        estimate = f"; about {eta(clock.left(at))} for the {left} runs left" if left and clock else ""
        log.info(f"{label}: done, {len(rounds)} points{estimate}")
    return run_dirs


def _sweep_clock(configs, run_dirs, backbone, machine, data_root, processes) -> SweepClock | None:
    """The sweep's estimate from this machine's rates for each task (kept from earlier runs, or
    measured now on a few steps), said before the first run."""
    from star_al.estimates import (RunPlan, base_pass, machine_key, measure_rates, read_rates, round_counts,
                                  round_seconds)

    if backbone is None or any(config.model != backbone.name for config in configs):
        return None  # rates belong to one model: a sweep over several says nothing ahead
    if any(config.labels == "human" for config in configs):
        return None  # people set the pace
    rates, plans, base_seconds, bases, data = {}, [], 0.0, set(), {}
    for config, run_dir in zip(configs, run_dirs):
        # A sweep's runs mostly share their data: each set is read once (seeds and strategies do not change it).
        which = (config.task, config.data_dir, config.large_pool, config.labels, config.evaluate, config.test_limit)
        if which not in data:
            data[which] = run_data(config, data_root, None, machine.cache_root)
        task, pool, test = data[which]
        key = machine_key(backbone, task.name)
        if key not in rates:
            rates[key] = read_rates(machine.cache_root, key) or processes.on_main(
                measure_rates, backbone, task, pool, test, config)
        done = len(RunDir(run_dir).read_rounds()) if RunDir(run_dir).rounds_path.is_file() else 0
        counts = round_counts(config, len(pool), min(len(test), config.test_limit or len(test)))
        plans.append(RunPlan(key, [round_seconds(c, rates[key]) if index >= done else 0.0
                                   for index, c in enumerate(counts)], len(pool)))
        if base_pass(config, len(pool)) and (task.name, len(pool)) not in bases:
            bases.add((task.name, len(pool)))
            base_seconds += base_pass(config, len(pool)) * rates[key].score_example
    clock = SweepClock(plans, rates, base_seconds, machine.cache_root)
    clock.announce()
    return clock


@dataclass(frozen=True)
class LabelsImported:
    """What `import_labels` kept: `imported` labels, `left` ids of the batch still without a
    (resolved) label, `empty` rows of the file whose answer was empty (not labelled yet; counted
    in `left`), `same` rows the ledger held already (skipped), and of the `left`, `tied` ones
    whose annotators disagree with no answer ahead (they wait for one more annotator)."""

    imported: int
    left: int
    empty: int
    same: int = 0
    tied: int = 0


def import_labels(out: str | Path, rows, source: str, task=None, annotator: str | None = None) -> LabelsImported:
    """Add people's answers for the batch the run at `out` waits on, into its label ledger.

    `rows` are (where, id, answer) rows, or (where, id, answer, annotator): a labels file
    read by `read_answers`, a tool's pull, or Learner.teach's; `annotator` names who gave
    the rows that do not say (a run that takes several annotators per example needs one).
    A row with an empty answer is not labelled yet: skipped and counted; a row the ledger
    holds already (same id, annotator and answer) is skipped, so a file is imported again
    as it fills. The rest is checked whole first (unknown ids, ids of another batch,
    duplicates, answers outside the task's labels, numbers that do not parse, a second
    answer of one annotator, each named by row) and nothing is kept from a refused set.
    """
    rows = list(rows)
    run_dir = RunDir(out)
    with run_dir.locked():
        config = run_dir.read_config()
        pending = run_dir.read_pending()
        if pending is None:
            raise StarError(f"{run_dir.path}: no batch is waiting for labels "
                            f"(star status {shlex.quote(str(run_dir.path))})")
        if annotator is not None and not (isinstance(annotator, str) and annotator.strip()):
            raise StarError(f"annotator {annotator!r}: give a name")
        annotator = annotator.strip() if annotator is not None else None
        unnamed = [row[0] for row in rows if annotator is None and not (len(row) > 3 and row[3])]
        if config.annotators > 1 and unnamed:
            raise StarError(f"{unnamed[0]}: this run takes {config.annotators} annotators per example: say who "
                            "labelled (star label RUN FILE --annotator NAME, or an annotator column)")
        ledger = LabelLedger(run_dir.labels_path, config.annotators, config.resolve)
        given = {(entry["id"], entry.get("annotator")): entry["answer"] for entry in ledger.read()}
        task = task or load_task(config.task)
        examples = None
        if task.answer_type == CHOICE:  # an answer names one of its example's own choices
            waiting = set(pending["ids"])
            examples = {ex.id: ex for ex in run_data(config)[1] if ex.id in waiting}
        checked = check_answers(task, rows, set(pending["ids"]), given, annotator,
                                one_per_example=config.annotators == 1, examples=examples)
        if checked.labels:
            ledger.append(checked.labels, pending["round"], source)
        resolution = ledger.resolution()
    left = [i for i in pending["ids"] if i not in resolution.labels]
    return LabelsImported(len(checked.labels), len(left), checked.empty, checked.same,
                          len([i for i in left if i in resolution.ties]))


def labels_from(out: str | Path, file: str | Path | None = None, tool: str | None = None) -> list[AnswerRow]:
    """The answer rows of a labels file, or pulled from one of the run's labelling tools."""
    if (file is None) == (tool is None):
        raise StarError("label: give a labels FILE or --from TOOL (one of them)")
    if file is not None:
        return read_answers(Path(file))
    found = labelling_tool(Path(out), tool)
    if found is None:
        raise StarError(f"{out} has no {tool} labelling tool (start the run with --label-studio URL)")
    run_dir = RunDir(out)
    with run_dir.locked():  # a resume pushing the same batch would be a second sender
        pending = run_dir.read_pending()
        sent = found.resend(pending["round"]) if pending is not None else None
    if sent:
        log.info(sent)
    rows = found.pull()
    if sent and not rows:  # delivered just now: nobody has answered yet
        run = shlex.quote(str(out))
        raise AwaitingLabels(f"{sent}\nlabel it there, then: star label {run} --from {tool} && star resume {run}")
    return rows


@dataclass(frozen=True)
class BatchStatus:
    """One batch that went out to people: where it stands in each of the run's labelling tools
    (`places`: "files written (round_0.*)", "delivered to Label Studio project 3 (32 tasks)", "not
    yet delivered ..."), how many of its `size` examples have a label, and where those came from."""

    round: int
    size: int
    labeled: int
    places: list[str]
    sources: list[str]


@dataclass(frozen=True)
class RunStatus:
    """Where a run stands: its config, finished rounds, labels in, the batch waiting (if any), and
    every batch that went out to people."""

    config: RunConfig
    rounds: list[RoundRecord]
    n_labels: int
    waiting_round: int | None
    waiting_ids: list[int]
    waiting_labeled: int
    finished: bool
    batches: list[BatchStatus]
    agreement: list[Agreement] = field(default_factory=list)  # per round, where two annotators labelled one example
    tied: list[int] = field(default_factory=list)             # waiting ids whose annotators tie: one more needed


def status(out: str | Path) -> RunStatus:
    run_dir = RunDir(out)
    config = run_dir.read_config()
    pending = run_dir.read_pending()
    ledger = LabelLedger(run_dir.labels_path, config.annotators, config.resolve)
    entries = ledger.read()
    resolution = ledger.resolution(entries=entries)
    labeled = resolution.labels
    rounds = run_dir.read_rounds()
    ids = list(pending["ids"]) if pending is not None else []
    return RunStatus(config, rounds, len(labeled), pending["round"] if pending is not None else None,
                     ids, len([i for i in ids if i in labeled]), run_dir.is_finished(),
                     _batches(run_dir, rounds, pending, labeled) if config.labels == "human" else [],
                     agreement_by_round(entries), [i for i in ids if i in resolution.ties])


def _batches(run_dir: RunDir, rounds: list[RoundRecord], pending: dict | None, labeled: dict) -> list[BatchStatus]:
    """Each round's batch (its answered and queued ids, or the waiting one) that a labelling tool holds."""
    batch_ids = {record.round: record.selected_ids + record.queued_ids for record in rounds}
    if pending is not None:
        batch_ids[pending["round"]] = list(pending["ids"])
    batches = []
    for round_index, ids in sorted(batch_ids.items()):
        places = batch_places(run_dir.path, round_index)
        if places:
            got = [labeled[i] for i in ids if i in labeled and labeled[i]["round"] == round_index]
            batches.append(BatchStatus(round_index, len(ids), len(got), places,
                                       sorted({entry["source"] for entry in got})))
    return batches
