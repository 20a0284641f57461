"""The `star` command: the edge where arguments, environment, files and printing live."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

from star_al import __version__
from star_al.errors import StarError
from star_al.labeling.people import AwaitingLabels
from star_al.log import eta, log


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line instead of usage + error."""

    def error(self, message):
        command = self.prog.removeprefix("star").strip()
        raise StarError(f"{command}: {message}" if command else message)


def _add_model_options(parser):
    parser.add_argument("--model", default="smollm2-135m",
                        help="smollm2-135m (default), gemma3-270m, a .gguf file, a model directory or a hub id")
    _add_device_options(parser)


def _add_task_options(parser):
    parser.add_argument("--task", required=True, help="gsm8k, boolq, obqa, sst2 or a task YAML path")
    _add_data_options(parser)


def _add_data_options(parser):
    parser.add_argument("--data-root", default=None,
                        help="folder holding the built-in tasks' data (default: $STAR_DATA_ROOT, else ../shared/data)")
    parser.add_argument("--data", default=None, help="folder with this task's train/test JSONL")


def _add_device_options(parser):
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--dtype", default=None, help="float32 or bfloat16 (default: bf16 where fast)")
    parser.add_argument("--cache-dir", default=None, help="where de-quantized models are kept "
                        "(default: $STAR_CACHE or ~/.cache/star-al)")
    bits = parser.add_mutually_exclusive_group()
    bits.add_argument("--load-in-4bit", dest="quantization", action="store_const", const="4bit",
                      help="QLoRA: the frozen base in 4-bit NF4 (bitsandbytes, CUDA only)")
    bits.add_argument("--load-in-8bit", dest="quantization", action="store_const", const="8bit",
                      help="the frozen base in 8-bit (bitsandbytes, CUDA only)")


def _add_scale_options(parser):
    """How a run executes; none of these changes what it selects (to float rounding)."""
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="recompute activations in the backward pass: less memory, about a third more compute")
    parser.add_argument("--report-to", default=None, metavar="TRACKER",
                        help="also log training losses and round results to tensorboard, wandb, mlflow or trackio "
                             "(accelerate's trackers; files under RUN/trackers)")


def add_setting_options(parser, groups=("run", "lora", "train"), exclude=()) -> None:
    """Generate the options of a command from the config dataclasses (one declaration per setting:
    its default, help and flag live on the field; see config.setting). Every option defaults to
    None, meaning "not given": the preset, the task file and a --config file decide then."""
    from dataclasses import MISSING, fields

    from star_al.config import LoraSettings, RunConfig, TrainSettings

    classes = {"run": (RunConfig, ""), "lora": (LoraSettings, "lora."), "train": (TrainSettings, "train.")}
    for group in groups:
        cls, prefix = classes[group]
        for f in fields(cls):
            flags = f.metadata.get("flag")
            if not flags or prefix + f.name in exclude:
                continue
            flags = (flags,) if isinstance(flags, str) else tuple(flags)  # the first names it, the rest are aliases
            flag = flags[0]
            default = f.default if f.default is not MISSING else None
            dest = (prefix + f.name).replace(".", "__")
            text = f.metadata["help"] + (f" (default {','.join(default) if isinstance(default, tuple) else default})"
                                         if default is not None and f.type != "bool" else "")
            if f.type == "bool":
                parser.add_argument(*flags, dest=dest, action="store_const", const=not default, default=None,
                                    help=text)
                continue
            kind = int if f.type.startswith("int") else float if f.type.startswith("float") else str
            parser.add_argument(*flags, dest=dest, type=kind, default=None, help=text,
                                metavar=flag.lstrip("-").upper().replace("-", "_"), **f.metadata["argparse"])


def setting_overrides(args) -> dict:
    """The settings given on the command line (None where not given), nested as in RunConfig."""
    values: dict = {"lora": {}, "train": {}}
    for dest, value in vars(args).items():
        group, _, name = dest.rpartition("__")
        if group in ("lora", "train"):
            if name == "target_modules" and value is not None:
                value = [item.strip() for item in value.split(",") if item.strip()]
            values[group][name] = value
    from dataclasses import fields

    from star_al.config import RunConfig

    for f in fields(RunConfig):
        if f.metadata.get("flag") and f.name not in ("lora", "train") and hasattr(args, f.name):
            values[f.name] = getattr(args, f.name)
    return values


def _versions() -> str:
    """star-al and the versions of the libraries whose internals it uses (CI prints this line)."""
    import importlib.metadata

    def version(package):
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "absent"

    return f"star-al {__version__} (" + ", ".join(
        f"{p} {version(p)}" for p in ("torch", "transformers", "peft", "accelerate")) + ")"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="star", description="Active learning around LoRA fine-tuning (STAR).")
    parser.add_argument("--version", action="version", version=_versions())
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_true", help="say more (debug messages)")
    loudness.add_argument("-q", "--quiet", action="store_true", help="only warnings and results: no progress bars")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ev = commands.add_parser("eval", help="evaluate a model (optionally with an adapter) on a task's test set")
    _add_task_options(ev)
    _add_model_options(ev)
    ev.add_argument("--adapter", default=None, help="a LoRA adapter directory (PEFT format)")
    ev.add_argument("--limit", type=int, default=None, help="evaluate only the first N test examples")
    ev.add_argument("--batch-size", type=int, default=32)
    ev.add_argument("--out", default=None, help="output folder (default: out/eval-TASK)")
    ev.add_argument("--log-samples", action="store_true", help="also write samples_TASK.jsonl, one line per example")

    tr = commands.add_parser("train", help="fine-tune a LoRA adapter on N random train examples, then evaluate")
    _add_task_options(tr)
    _add_model_options(tr)
    add_setting_options(tr, ("lora", "train"))
    tr.add_argument("--peft", default="lora", help="the adapter method: lora (default), dora or ia3")
    tr.add_argument("--n-train", type=int, required=True)
    tr.add_argument("--out", required=True, help="output folder (adapter/, predictions.jsonl, summary.json)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--limit", type=int, default=None, help="evaluate on the first N test examples")
    tr.add_argument("--batch-size", type=int, default=32, help="evaluation batch size")
    tr.add_argument("--no-baseline", action="store_true", help="skip evaluating the untuned model first")

    rn = commands.add_parser("run", help="run one active-learning curve (resumes if --out holds this run)")
    _add_data_options(rn)
    _add_device_options(rn)
    _add_scale_options(rn)
    _add_run_options(rn)
    rn.add_argument("--out", default=None, help="run directory (default: runs/TASK/STRATEGY/seed-N)")

    rs = commands.add_parser("resume", help="continue a killed or paused run from its directory")
    rs.add_argument("run_dir")
    rs.add_argument("--partial", action="store_true",
                    help="train on the labels people gave so far; the rest of the batch stays queued")
    _add_model_options(rs)
    _add_scale_options(rs)
    rs.add_argument("--data-root", default=None)
    rs.add_argument("--data", default=None)

    sw = commands.add_parser("sweep", help="run a grid of tasks x strategies x seeds, skipping finished runs")
    sw.add_argument("--tasks", required=True, help="comma-separated tasks")
    sw.add_argument("--strategies", required=True, help="comma-separated strategies")
    sw.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    sw.add_argument("--out", default="runs", help="root folder of the run directories")
    sw.add_argument("--data-root", default=None)
    _add_device_options(sw)
    _add_scale_options(sw)
    _add_run_options(sw, exclude=("task", "strategy", "seed"))

    rp = commands.add_parser("report", help="AUC/RIPL table, learning curves and CSV over run directories")
    rp.add_argument("runs", nargs="+", help="run directories, or folders holding them")
    rp.add_argument("--out", default=None, help="where report.md, curves.png, points.csv go (default: first path)")
    rp.add_argument("--calibration", action="store_true", help="add per-round ECE, Brier, wrong-answer confidence")
    rp.add_argument("--include-unfinished", action="store_true")
    rp.add_argument("--stopping", nargs="?", const="stability:0.99,uncertainty:0.5,plateau:1", default=None,
                    metavar="CRITERIA", help="mark where each stopping criterion would have ended each curve "
                                             "(default stability:0.99,uncertainty:0.5,plateau:1)")
    rp.add_argument("--against", default="random,me", metavar="STRATEGIES",
                    help="the references of the paired comparisons: every strategy minus each of these "
                         "(default random,me)")
    rp.add_argument("--variance", action="store_true",
                    help="split each round's variance into seed, training run (--train-seed) and test sample; "
                         "writes variance.md")

    f1 = commands.add_parser("figure1", help="plot ME vs random under LoRA and full fine-tuning (paper Figure 1)")
    f1.add_argument("--lora", nargs="+", required=True, help="run directories (or folders) of LoRA runs")
    f1.add_argument("--full", nargs="+", required=True, help="run directories (or folders) of --finetune full runs")
    f1.add_argument("--strategies", default="random,me")
    f1.add_argument("--out", required=True)

    pr = commands.add_parser("probe", help="the paper's probe experiments (confidence of wrong answers, entropy gap)")
    probes = pr.add_subparsers(dest="probe", required=True, parser_class=_Parser)
    pc = probes.add_parser("confidence", help="wrong-answer confidence: LoRA-tuned vs in-context untuned (Figure 2)")
    _add_task_options(pc)
    _add_model_options(pc)
    add_setting_options(pc, ("lora", "train"), exclude=("train.b_decay",))
    pc.add_argument("--n-train", type=int, default=None,
                    help="examples to fine-tune on (default: the preset's warm start)")
    pc.add_argument("--preset", default="cpu", help="where --n-train, the LoRA and training settings and the test slice come from (default cpu)")
    pc.add_argument("--k-shot", type=int, default=4, help="in-context demonstrations (default 4)")
    pc.add_argument("--seed", type=int, default=0)
    pc.add_argument("--limit", type=int, default=None, help="first N test examples (default: the preset's test limit)")
    pc.add_argument("--batch-size", type=int, default=32)
    pc.add_argument("--out", default=None, help="default out/probe-confidence-TASK")
    pd = probes.add_parser("decay", help="per round, the picks L2 decay on B changed and how much it shrank B")
    pd.add_argument("run_dir")
    _add_data_options(pd)
    _add_device_options(pd)
    pd.add_argument("--out", default=None, help="default RUN_DIR/probe-decay")
    pe = probes.add_parser("entropy", help="correlation of pool uncertainty across AL rounds (Figure 3)")
    pe.add_argument("run_dir")
    pe.add_argument("--top", type=int, default=1000, help="examples most uncertain at the start (default 1000)")
    pe.add_argument("--method", default="pearson", choices=["pearson", "spearman"])
    pe.add_argument("--round", type=int, default=None, help="r for the scatter of round r vs r+1")
    pe.add_argument("--measure", default="me", choices=["me", "pe"])
    pe.add_argument("--out", default=None, help="default RUN_DIR/probe-entropy")

    lb = commands.add_parser("label", help="import people's labels for the batch a run is waiting on")
    lb.add_argument("run_dir")
    lb.add_argument("file", nargs="?", help="the batch's JSONL or CSV with answers, or a Label Studio JSON export")
    lb.add_argument("--from-label-studio", action="store_true",
                    help="pull the finished annotations from the run's Label Studio project")
    st = commands.add_parser("status", help="where a run stands: rounds done, the batch waiting, labels left")
    st.add_argument("run_dir")

    ex = commands.add_parser("export-adapter", help="a run's last adapter as a plain PEFT directory with a model card")
    ex.add_argument("run_dir")
    ex.add_argument("out")
    ex.add_argument("--base-model", default=None,
                    help="the base model's Hub id to record (default: the one the run knows, if any)")
    ph = commands.add_parser("push-adapter", help="upload an exported adapter directory to the Hugging Face Hub")
    ph.add_argument("adapter_dir")
    ph.add_argument("--repo", required=True, help="the Hub repository, e.g. me/sst2-star-adapter")
    ph.add_argument("--private", action="store_true")

    commands.add_parser("list", help="what is registered: strategies, components, schedules, stopping "
                                     "criteria, adapter methods, embedded backbones")

    bn = commands.add_parser("bench", help="scoring/training throughput against the machine's peak and the plain way")
    _add_model_options(bn)
    bn.add_argument("--task", default="boolq", help="pool task (default boolq)")
    bn.add_argument("--data-root", default=None)
    bn.add_argument("--data", default=None)
    bn.add_argument("--examples", type=int, default=96, help="pool examples to score (default 96)")
    bn.add_argument("--passes", type=int, default=3, help="MC-dropout passes (default 3)")
    bn.add_argument("--naive-examples", type=int, default=24)
    bn.add_argument("--train-steps", type=int, default=3)
    bn.add_argument("--train-batch", type=int, default=8)
    bn.add_argument("--gen-examples", type=int, default=8)
    bn.add_argument("--max-new-tokens", type=int, default=64)
    bn.add_argument("--repeats", type=int, default=5,
                    help="rounds in which the fast and plain paths take turns; each figure is the best (default 5)")
    bn.add_argument("--json", action="store_true", help="print one JSON object of all figures")
    bn.add_argument("--pool-memory", default=None, metavar="SIZES",
                    help="instead: the memory of one scoring pass over pools of these sizes (sst2 sentences, "
                         "e.g. 1000,10000) on a tiny 2-layer Llama, with and without releasing the heap")
    return parser


def _add_run_options(parser, exclude=()):
    parser.add_argument("--config", default=None,
                        help="YAML file of run settings, any of the options below by their config names "
                             "(task, strategy, warm_start, lora: {rank: ...}, ...); the command line wins")
    parser.add_argument("--budget", type=int, default=None,
                        help="total labels; sets the number of rounds from warm start and query size")
    parser.add_argument("--label-studio", default=None, metavar="URL",
                        help="also push each batch to this Label Studio (token: $LABEL_STUDIO_API_KEY)")
    add_setting_options(parser, exclude=(*exclude, "train.b_decay"))


def data_root_from(args) -> str | None:
    """--data-root, else the default (data.tasks.default_data_root)."""
    from star_al.data.tasks import default_data_root

    root = args.data_root or default_data_root()
    return str(root) if root is not None else None


def _load_task_and_split(args, split, limit=None):
    from star_al.data.tasks import load_examples, load_task

    task = load_task(args.task)
    return task, _first(load_examples(task, split, data_root=data_root_from(args), data_dir=args.data), limit)


def _first(examples, limit):
    """The first --limit examples (all of them without one)."""
    if limit is None:
        return examples
    if limit <= 0:
        raise StarError(f"--limit must be positive, got {limit}")
    return examples[:limit]


def _processes(args):
    """The launch this command runs in (accelerate launch, torchrun, or alone), made once per command.

    The main process speaks for all: the others keep to warnings, without progress bars.
    """
    from star_al.engine.distributed import Processes
    from star_al.log import configure

    if getattr(args, "processes", None) is None:
        args.processes = Processes.from_environment(os.environ, getattr(args, "device", None))
        if not args.processes.is_main:
            configure(-1)
    return args.processes


def _load_backbone(args, model: str | None = None):
    from dataclasses import replace as dc_replace

    from star_al.models.backbones import default_cache_root, load_backbone, resolve_model_dir
    from star_al.models.hardware import choose_placement

    model = model or args.model
    processes = _processes(args)
    # One decision for every process (bf16 speed is measured), each on its own GPU.
    placement = processes.on_main(choose_placement, args.device, args.dtype)
    if processes.device is not None:
        placement = dc_replace(placement, device=processes.device)
    cache = Path(args.cache_dir) if args.cache_dir else None
    processes.on_main(resolve_model_dir, model, cache or default_cache_root())  # de-quantized by main alone
    backbone = load_backbone(model, placement, cache, getattr(args, "quantization", None))
    log.info(f"model {model} on {placement.device}, {str(placement.dtype).removeprefix('torch.')} "
             f"({placement.reason})")
    return backbone


def _print_summary(label: str, summary: dict) -> None:
    print(f"{label}: accuracy {100 * summary['accuracy']:.2f}% on {summary['n']} examples "
          f"(ECE {summary['ece']:.3f}, Brier {summary['brier']:.3f})")


def cmd_eval(args) -> None:
    from star_al.al.run_dir import write_text_atomic
    from star_al.engine.evaluation import evaluate, lm_eval_results, write_predictions, write_samples

    _check_positive(args, "batch_size")
    task, examples = _load_task_and_split(args, "test")
    n_original = len(examples)
    examples = _first(examples, args.limit)
    out = Path(args.out or f"out/eval-{task.name}")
    check_writable_dir(out)
    if args.adapter:
        check_adapter_dir(args.adapter)
    backbone = _load_backbone(args)
    model = backbone.model
    if args.adapter:
        model = load_adapter(model, args.adapter)
    scores, summary = evaluate(model, backbone.tokenizer, task, examples, args.batch_size)
    write_predictions(scores, out / "predictions.jsonl")
    write_text_atomic(out / "summary.json", json.dumps(
        {"task": task.name, "model": args.model, "adapter": args.adapter, **summary}, indent=2) + "\n")
    config = {"model": args.model, "model_hub_id": backbone.hub_id, "adapter": args.adapter, "limit": args.limit,
              "batch_size": args.batch_size, "device": backbone.placement.device,
              "dtype": str(backbone.placement.dtype).removeprefix("torch.")}
    write_text_atomic(out / "results.json", json.dumps(
        lm_eval_results(task, scores, summary, config, n_original), indent=2) + "\n")
    if args.log_samples:
        write_samples(task, examples, scores, out / f"samples_{task.name}.jsonl")
    _print_summary(task.name, summary)
    print(f"predictions: {out / 'predictions.jsonl'}; lm-eval-shaped results: {out / 'results.json'}")


def _check_positive(args, *names) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise StarError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def check_writable_dir(path: Path) -> None:
    """Fail before any work when the output folder cannot be written (a file, read-only, full)."""
    import tempfile

    if path.exists() and not path.is_dir():
        raise StarError(f"--out {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path) as probe:
            probe.write(b"0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise StarError(f"--out {path} cannot be written: {error.strerror or error}") from error


def check_adapter_dir(adapter_dir: str) -> None:
    """An adapter directory must hold a readable adapter_config.json and the weights beside it."""
    folder = Path(adapter_dir)
    config = folder / "adapter_config.json"
    if not config.is_file():
        raise StarError(f"adapter {adapter_dir}: no adapter_config.json there")
    try:
        value = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StarError(f"adapter {config}: not valid JSON ({getattr(error, 'msg', error)})") from error
    if not isinstance(value, dict) or "peft_type" not in value:
        raise StarError(f"adapter {config}: not a PEFT adapter config (no peft_type)")
    if not (folder / "adapter_model.safetensors").is_file():
        raise StarError(f"adapter {adapter_dir}: no adapter_model.safetensors there "
                        "(adapters load from safetensors only, never pickles)")


def load_adapter(model, adapter_dir: str):
    """Attach a saved adapter to the base model, for evaluation (the loop loads its own the same way)."""
    from star_al.models.adapters import load_adapter as load

    check_adapter_dir(adapter_dir)
    return load(model, adapter_dir)


def lora_settings_from(args, base=None):
    from star_al.config import LoraSettings, merge

    return merge({"lora": base or LoraSettings()}, {"lora": setting_overrides(args)["lora"]})["lora"]


def train_settings_from(args, base=None):
    from star_al.config import TrainSettings, merge

    return merge({"train": base or TrainSettings()}, {"train": setting_overrides(args)["train"]})["train"]


def cmd_train(args) -> None:
    from dataclasses import asdict

    from star_al.al.run_dir import write_text_atomic
    from star_al.config import TrainSettings, check_settings
    from star_al.engine.evaluation import evaluate, write_predictions
    from star_al.engine.training import train_adapter
    from star_al.models.adapters import adapter_method

    _check_positive(args, "batch_size")
    method = adapter_method(args.peft)
    if not method.is_adapter:
        raise StarError(f"star train trains an adapter; --peft {args.peft} is not one (use star run --finetune full)")
    if args.seed < 0:
        raise StarError(f"--seed must be at least 0, got {args.seed}")
    task, test = _load_task_and_split(args, "test", args.limit)
    _, pool = _load_task_and_split(args, "train")
    if not 0 < args.n_train <= len(pool):
        raise StarError(f"--n-train {args.n_train} must be between 1 and the {len(pool)} train examples")
    chosen = random.Random(args.seed).sample(range(len(pool)), args.n_train)
    labeled = [pool[i] for i in chosen]
    lora = lora_settings_from(args)
    train = train_settings_from(args, TrainSettings(**task.training))
    check_settings(lora, train)
    out = Path(args.out)
    check_writable_dir(out)
    backbone = _load_backbone(args)
    method.check_targets(backbone.model, lora)
    summary = {"task": task.name, "model": args.model, "n_train": args.n_train, "seed": args.seed,
               "peft": method.name, "lora": asdict(lora), "train": asdict(train)}
    if not args.no_baseline:
        _, base_summary = evaluate(backbone.model, backbone.tokenizer, task, test, args.batch_size,
                                   desc="evaluate untuned")
        _print_summary("untuned", base_summary)
        summary["untuned"] = base_summary
    peft_model = method.attach(backbone.model, lora, args.seed)
    started = time.perf_counter()
    result = train_adapter(peft_model, backbone.tokenizer, task, labeled, train, args.seed)
    print(f"trained {result.steps} steps on {args.n_train} examples in {time.perf_counter() - started:.1f}s "
          f"(final loss {result.losses[-1]:.3f})", file=sys.stderr)
    method.save(peft_model, out / "adapter", backbone.hub_id)
    scores, tuned_summary = evaluate(peft_model, backbone.tokenizer, task, test, args.batch_size,
                                     desc="evaluate tuned")
    write_predictions(scores, out / "predictions.jsonl")
    summary.update(tuned=tuned_summary, train_ids=[ex.id for ex in labeled], seconds=result.seconds)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    _print_summary("tuned", tuned_summary)
    print(f"adapter: {out / 'adapter'}")


def _resolve_run_config(args, task: str | None = None, strategy: str | None = None, seed: int | None = None):
    """Preset, task file, --config file, command line: later wins. A sweep passes its grid's
    task, strategy and seed; `star run` takes them from the command line or the file."""
    from dataclasses import replace

    from star_al.config import load_config_file, resolve_config
    from star_al.data.tasks import load_task, resolve_data_dir

    file_values = load_config_file(args.config) if args.config else {}
    out = file_values.pop("out", None)
    if out is not None and getattr(args, "out", None) is None:
        args.out = str(out)
    overrides = setting_overrides(args)
    named = {}
    for key, given in (("task", task), ("strategy", strategy), ("seed", seed), ("preset", None)):
        value = given if given is not None else overrides.pop(key, None)
        overrides.pop(key, None)
        value = value if value is not None else file_values.pop(key, None)
        file_values.pop(key, None)
        named[key] = value
    for key in ("task", "strategy"):
        if named[key] is None:
            raise StarError(f"no {key}: give --{key} or `{key}:` in the --config file")
    config = resolve_config(named["task"], named["strategy"], named["preset"] or "cpu",
                            0 if named["seed"] is None else named["seed"], file_values, overrides)
    if args.budget is not None:
        extra = args.budget - config.warm_start
        if extra < 0 or extra % config.query_size:
            raise StarError(f"--budget {args.budget} must be the warm start {config.warm_start} "
                            f"plus a multiple of the query size {config.query_size}")
        config = replace(config, n_rounds=extra // config.query_size)
    data_dir = resolve_data_dir(load_task(config.task), data_root_from(args), getattr(args, "data", None))
    return replace(config, data_dir=str(Path(data_dir).resolve()) if data_dir else None)


def _run_data(config, args):
    """A run's task, pool and test set.

    --data given now wins (the run's data may have moved); the run's fingerprint check
    refuses it if its content is not what the run started with.
    """
    from star_al.data.tasks import load_examples, load_task

    task = load_task(config.task)
    data_dir = getattr(args, "data", None) or (config.data_dir if config.data_dir and Path(config.data_dir).is_dir()
                                               else None)
    root = data_root_from(args)
    pool = load_examples(task, "train", data_root=root, data_dir=data_dir, require_answer=config.labels == "gold")
    test = load_examples(task, "test", data_root=root, data_dir=data_dir) if config.evaluate else []
    return task, pool, test[:config.test_limit] if config.test_limit else test


def _cache_root(args) -> Path:
    from star_al.models.backbones import default_cache_root

    return Path(args.cache_dir) if args.cache_dir else default_cache_root()


def _execute_run(config, run_dir, args, backbone=None):
    """Load data and model for a config and run (or resume) it in run_dir."""
    from star_al.al.loop import ActiveLearningRun
    from star_al.al.run_dir import RunDir
    from star_al.al.streams import choose_pool

    from star_al.engine.distributed import Execution

    task, pool, test = _run_data(config, args)
    choose_pool(config, pool)  # a budget larger than the pool fails before the model loads
    processes = _processes(args)
    tracker = None
    if getattr(args, "report_to", None):
        from star_al.trackers import Tracker

        tracker = Tracker(args.report_to, on_cpu=args.device == "cpu" or not _cuda_available())
    backbone = backbone or _load_backbone(args, config.model)
    cache = _cache_root(args)
    run_dir = RunDir(run_dir)
    oracle = None
    if config.labels == "human":
        from star_al.labeling.label_studio import LabelStudioProject
        from star_al.labeling.people import HumanOracle

        studio = LabelStudioProject.for_run(run_dir, getattr(args, "label_studio", None))
        oracle = HumanOracle(run_dir, task, studio)
    execution = Execution(processes, getattr(args, "gradient_checkpointing", False))
    run = ActiveLearningRun(config, task, pool, test, backbone, run_dir, oracle=oracle, cache_root=cache,
                            partial=getattr(args, "partial", False), execution=execution, tracker=tracker)
    rounds = run.run()
    return backbone, rounds


def _default_run_dir(root, config) -> Path:
    task = Path(config.task).stem if config.task.endswith((".yaml", ".yml")) else config.task
    strategy = config.strategy + ("" if config.finetune == "lora" else f"-{config.finetune}")
    train = "" if config.train_seed is None else f"-train-{config.train_seed}"
    return Path(root) / task / strategy / f"seed-{config.seed}{train}"


def cmd_run(args) -> None:
    config = _resolve_run_config(args)
    run_dir = Path(args.out) if args.out else _default_run_dir("runs", config)
    log.info(f"run directory: {run_dir}")
    _, rounds = _execute_run(config, run_dir, args)
    if _processes(args).is_main:
        _print_curve(rounds)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _print_curve(rounds) -> None:
    from star_al.analysis.metrics import auc

    if any(r["accuracy"] is None for r in rounds):  # no test set (--no-eval)
        def point(r):
            agreement = "-" if r["agreement"] is None else f"{100 * r['agreement']:.0f}%"
            return f"{r['n_labeled']}:{r['pool_uncertainty']:.3f}:{agreement}"

        print("rounds (labeled:pool uncertainty:agreement) " + " ".join(point(r) for r in rounds))
        return
    curve = " ".join(f"{r['n_labeled']}:{100 * r['accuracy']:.1f}" for r in rounds)
    area = auc([r["n_labeled"] for r in rounds], [r["accuracy"] for r in rounds])
    print(f"curve (labeled:accuracy%) {curve}")
    print(f"AUC {100 * area:.2f}")


def cmd_resume(args) -> None:
    from star_al.al.run_dir import RunDir

    config = RunDir(args.run_dir).read_config()
    if args.model != config.model and args.model != "smollm2-135m":
        raise StarError(f"{args.run_dir} was run with --model {config.model}, not {args.model}")
    args.model = config.model
    _, rounds = _execute_run(config, Path(args.run_dir), args)
    if _processes(args).is_main:
        _print_curve(rounds)


def _split_list(text: str, what: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise StarError(f"--{what} is empty")
    return items


def cmd_sweep(args) -> None:
    from star_al.al.run_dir import RunDir

    tasks, strategies = _split_list(args.tasks, "tasks"), _split_list(args.strategies, "strategies")
    try:
        seeds = [int(s) for s in _split_list(args.seeds, "seeds")]
    except ValueError as error:
        raise StarError(f"--seeds must be integers: {args.seeds}") from error
    # Seed-major order: a sweep cut short still holds every strategy at the first seeds.
    configs = [_resolve_run_config(args, t, s, seed) for seed in seeds for t in tasks for s in strategies]
    run_dirs = [_default_run_dir(args.out, config) for config in configs]
    backbone, spent, ran = None, 0.0, 0
    for number, (config, run_dir) in enumerate(zip(configs, run_dirs), 1):
        label = f"[{number}/{len(configs)}] {config.task} {config.strategy} seed {config.seed}"
        if RunDir(run_dir).is_finished():
            log.info(f"{label}: finished, skipped")
            continue
        log.info(f"{label}: {run_dir}")
        started = time.perf_counter()
        backbone, rounds = _execute_run(config, run_dir, args, backbone)
        spent, ran = spent + time.perf_counter() - started, ran + 1
        left = len([d for d in run_dirs[number:] if not RunDir(d).is_finished()])
        estimate = f"; about {eta(left * spent / ran)} for the {left} runs left" if left else ""
        log.info(f"{label}: done, {len(rounds)} points{estimate}")
    from star_al.analysis.report import write_report

    if _processes(args).is_main:  # over every run under --out: a sweep continued seed by seed keeps one report
        print(write_report([args.out], Path(args.out)))
        print(f"wrote {Path(args.out) / 'report.md'}, curves.png, points.csv", file=sys.stderr)


def cmd_report(args) -> None:
    from star_al.analysis.report import write_report

    out = Path(args.out or args.runs[0])
    if args.variance:
        from star_al.analysis.report import write_variance_report

        print(write_variance_report(args.runs, out))
        print(f"wrote {out / 'variance.md'}", file=sys.stderr)
        return
    against = [name.strip() for name in args.against.split(",") if name.strip()]
    text = write_report(args.runs, out, calibration=args.calibration, include_unfinished=args.include_unfinished,
                        stopping=args.stopping, against=against)
    print(text)
    print(f"wrote {out / 'report.md'}, {out / 'curves.png'}, {out / 'points.csv'}", file=sys.stderr)


def cmd_bench(args) -> None:
    from dataclasses import replace as dc_replace

    import torch

    from star_al.models.backbones import load_backbone
    from star_al.bench import run_bench
    from star_al.models.hardware import choose_placement
    from star_al.data.tasks import load_examples, load_task

    if args.pool_memory is not None:
        from star_al.bench_memory import run_pool_memory_bench

        try:
            sizes = [int(n) for n in _split_list(args.pool_memory, "pool-memory")]
        except ValueError as error:
            raise StarError(f"--pool-memory takes sizes such as 1000,10000, got {args.pool_memory}") from error
        if min(sizes) < 1:
            raise StarError(f"--pool-memory sizes must be at least 1, got {args.pool_memory}")
        log = (lambda message: print(message, file=sys.stderr)) if args.json else print
        rows = run_pool_memory_bench(sizes, data_root_from(args), log)
        if args.json:
            print(json.dumps(rows))
        return
    for flag in ("examples", "passes", "train_steps", "train_batch", "repeats"):
        if getattr(args, flag) < 1:
            raise StarError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    root = data_root_from(args)
    task = load_task(args.task)
    examples = load_examples(task, "train", data_root=root, data_dir=args.data)[:args.examples]
    gen_task = load_task("gsm8k")
    gen_examples = load_examples(gen_task, "test", data_root=root)[:args.gen_examples]
    backbone = _load_backbone(args)
    cache = Path(args.cache_dir) if args.cache_dir else None
    fp32_placement = dc_replace(choose_placement(args.device, "float32"), reason="plain reference")
    fp32 = backbone if backbone.placement.dtype == torch.float32 else load_backbone(args.model, fp32_placement, cache)
    log = (lambda message: print(message, file=sys.stderr)) if args.json else print
    figures = run_bench(backbone, fp32, task, examples, gen_task, gen_examples, passes=args.passes,
                        train_steps=args.train_steps, train_batch=args.train_batch,
                        naive_examples=args.naive_examples, max_new_tokens=args.max_new_tokens,
                        repeats=args.repeats, log=log)
    figures.update(model=args.model, task=task.name)
    if args.json:
        print(json.dumps(figures))


def cmd_figure1(args) -> None:
    from star_al.analysis.report import write_figure1

    print(write_figure1(args.lora, args.full, args.out, tuple(_split_list(args.strategies, "strategies"))))
    print(f"wrote {Path(args.out) / 'figure1.png'}, figure1.md", file=sys.stderr)


def _probe_decay(args) -> None:
    from star_al.al.run_dir import RunDir, write_json_atomic, write_text_atomic
    from star_al.analysis.components import decay_effect

    run_dir = RunDir(args.run_dir)
    config = run_dir.read_config()
    if not config.recipe.decays:
        raise StarError(f"{args.run_dir} runs {config.strategy}, which has no L2 decay on B")
    rounds = run_dir.read_rounds()
    task, pool, test = _run_data(config, args)
    backbone = _load_backbone(args, config.model)
    effects = decay_effect(config, task, pool, test, backbone, rounds, _cache_root(args))
    out = Path(args.out or run_dir.path / "probe-decay")
    write_json_atomic(out / "decay.json", effects)
    lines = ["| query round | picks changed by L2 on B | B norm shrunk by | decay twin = the run's picks |",
             "|---|---|---|---|"]
    lines += [f"| {e['round']} | {e['picks_changed']} of {e['of']} | {100 * e['b_shrink']:.2f}% | "
              f"{'yes' if e['matches_run'] else 'no'} |" for e in effects]
    text = f"# L2 decay on B in {args.run_dir}\n\n" + "\n".join(lines) + "\n"
    write_text_atomic(out / "summary.md", text)
    print(text)


def cmd_probe(args) -> None:
    from star_al.analysis.probes import confidence_probe, entropy_probe

    if args.probe == "decay":
        _probe_decay(args)
        return
    if args.probe == "entropy":
        out = Path(args.out or Path(args.run_dir) / "probe-entropy")
        summary = entropy_probe(Path(args.run_dir), out, top=args.top, method=args.method,
                                round_pair=args.round, measure=args.measure)
        print((out / "summary.md").read_text())
        print(f"wrote {out}: correlation.csv, entropy_heatmap.png, scatter PNGs, summary.md "
              f"({summary['n_examples']} examples)", file=sys.stderr)
        return
    from star_al.config import merge, preset_values
    from star_al.data.tasks import load_task
    from star_al.engine.training import TrainSettings

    # The tuned side is a run's warm-start round: the preset's size, LoRA and training
    # settings (over the task's own), on the preset's test slice, unless flags say otherwise.
    task = load_task(args.task)
    preset = merge({"train": TrainSettings(**task.training)}, preset_values(args.preset, task.name))
    task, test = _load_task_and_split(args, "test", args.limit or preset.get("test_limit"))
    _, train_pool = _load_task_and_split(args, "train")
    n_train = args.n_train or preset["warm_start"]
    backbone = _load_backbone(args)
    out = Path(args.out or f"out/probe-confidence-{task.name}")
    summary = confidence_probe(backbone, task, train_pool, test, lora_settings_from(args, preset.get("lora")),
                               train_settings_from(args, preset["train"]), n_train,
                               args.k_shot, args.seed, out, batch_size=args.batch_size)
    print((out / "summary.md").read_text())
    print(f"wrote {out}: confidence.csv, confidence.png, summary.md", file=sys.stderr)


def cmd_label(args) -> None:
    from star_al.al.run_dir import RunDir
    from star_al.labeling.ledger import LabelLedger
    from star_al.labeling.people import check_answers, read_answers

    run_dir = RunDir(args.run_dir)
    if bool(args.file) == bool(args.from_label_studio):
        raise StarError("label: give a labels FILE or --from-label-studio (one of them)")
    with run_dir.locked():
        config = run_dir.read_config()
        pending = run_dir.read_pending()
        if pending is None:
            raise StarError(f"{run_dir.path}: no batch is waiting for labels (star status {run_dir.path})")
        task = _task_of(config)
        ledger = LabelLedger(run_dir.labels_path)
        labeled = set(ledger.labels())
        if args.from_label_studio:
            from star_al.labeling.label_studio import LabelStudioProject

            studio = LabelStudioProject.for_run(run_dir, None)
            if studio is None:
                raise StarError(f"{run_dir.path} has no Label Studio project (start the run with --label-studio URL)")
            rows, source = studio.pull(), "label-studio"
        else:
            rows, source = read_answers(Path(args.file)), "person"
        labels = check_answers(task, rows, set(pending["ids"]), labeled)
        ledger.append(labels, pending["round"], source)
    left = len([i for i in pending["ids"] if i not in labeled | {label.id for label in labels}])
    print(f"imported {len(labels)} labels for round {pending['round']}; {left} of {len(pending['ids'])} left")
    print(f"next: star resume {run_dir.path}" + (" (or --partial to train on what is there)" if left else ""))


def _task_of(config):
    from star_al.data.tasks import load_task

    return load_task(config.task)


def cmd_status(args) -> None:
    from star_al.al.run_dir import RunDir
    from star_al.labeling.ledger import LabelLedger

    run_dir = RunDir(args.run_dir)
    config = run_dir.read_config()
    rounds = run_dir.read_rounds()
    pending = run_dir.read_pending()
    labeled = LabelLedger(run_dir.labels_path).labels()
    print(f"{run_dir.path}: {config.task}, {config.strategy}, labels by {config.labels}; "
          f"{len(rounds)} of {config.n_rounds + 1} rounds done, {len(labeled)} labels")
    if rounds and rounds[-1].get("accuracy") is not None:
        print(f"last round: {rounds[-1]['n_labeled']} labeled, accuracy {100 * rounds[-1]['accuracy']:.2f}%")
    if pending is not None:
        left = [i for i in pending["ids"] if i not in labeled]
        print(f"round {pending['round']} batch: {len(pending['ids']) - len(left)} of {len(pending['ids'])} labeled, "
              f"{len(left)} left" + (f" (files in {run_dir.path / 'to_label'})" if config.labels == "human" else ""))
    elif run_dir.is_finished():
        print("finished")


def cmd_export_adapter(args) -> None:
    import shutil

    from star_al.al.run_dir import RunDir, write_json_atomic, write_text_atomic
    from star_al.models.adapters import saved_method

    run_dir = RunDir(args.run_dir)
    config = run_dir.read_config()
    source = run_dir.adapter_path
    check_adapter_dir(str(source))
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise StarError(f"{out} exists and is not empty; choose another folder")
    adapter_config = json.loads((source / "adapter_config.json").read_text())
    base = args.base_model or adapter_config.get("base_model_name_or_path")
    if not base or Path(str(base)).is_absolute():
        raise StarError(f"the run does not know its base model's Hub id ({base}); give --base-model ORG/NAME")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "adapter_model.safetensors", out / "adapter_model.safetensors")
    write_json_atomic(out / "adapter_config.json", {**adapter_config, "base_model_name_or_path": base})
    rounds = run_dir.read_rounds()
    last = rounds[-1] if rounds else {}
    accuracy = "-" if last.get("accuracy") is None else f"{100 * last['accuracy']:.2f}%"
    method = saved_method(source)
    write_text_atomic(out / "README.md", (
        f"---\nbase_model: {base}\nlibrary_name: peft\ntags: [{method.name}, active-learning, star-al]\n---\n\n"
        f"# {config.task} adapter from active learning ({config.strategy})\n\n"
        f"A {method.title} adapter for `{base}`, trained by star-al on {last.get('n_labeled', '?')} labels chosen by "
        f"`{config.strategy}` (seed {config.seed}, preset {config.preset}); test accuracy {accuracy}.\n\n"
        f"```python\nfrom peft import AutoPeftModelForCausalLM\n"
        f"model = AutoPeftModelForCausalLM.from_pretrained(\"path/or/repo\")\n```\n"))
    print(f"wrote {out}: adapter_model.safetensors, adapter_config.json (base {base}), README.md")


def cmd_push_adapter(args) -> None:
    check_adapter_dir(args.adapter_dir)
    try:
        from huggingface_hub import HfApi
    except ImportError as error:
        raise StarError("pushing needs huggingface_hub (installed with transformers)") from error
    api = HfApi()
    try:
        api.create_repo(args.repo, private=args.private, exist_ok=True)
        api.upload_folder(folder_path=args.adapter_dir, repo_id=args.repo,
                          commit_message="star-al adapter")
    except Exception as error:  # network, auth, permissions: one line
        raise StarError(f"push to {args.repo} failed: {type(error).__name__}: "
                        f"{str(error).splitlines()[0][:200]}") from error
    print(f"pushed {args.adapter_dir} to https://huggingface.co/{args.repo}")


def cmd_list(args) -> None:
    from star_al.models.adapters import ADAPTERS
    from star_al.models.backbones import EMBEDDED
    from star_al.stopping import STOPPING
    from star_al.al.cold_start import WARM_START_COMPONENTS, WARM_START_STRATEGIES
    from star_al.strategies import ALIASES, COMPONENTS, SCHEDULES, STRATEGIES

    sections = [
        ("strategies (--strategy NAME[+component...])", [(n, e.help) for n, e in STRATEGIES.items()]),
        ("strategy components", [(n, c.help) for n, c in COMPONENTS.items()]
         + [(alias, "= " + " + ".join(members)) for alias, members in ALIASES.items()]),
        ("warm starts (--warm-start-by NAME[+component])",
         [("random", "the paper's: warm-start ids at random")]
         + [(n, "by the base model: " + STRATEGIES.get(n).help.split(" (--pe-mode")[0])
            for n in WARM_START_STRATEGIES if n != "random"]
         + [(f"+{c}", f"on me or pe: {COMPONENTS.get(c).help}") for c in WARM_START_COMPONENTS]),
        ("lambda schedules (--lambda-schedule)", [(n, (f.__doc__ or "").strip().splitlines()[0])
                                                  for n, f in SCHEDULES.items()]),
        ("stopping criteria", [(n, (c.__doc__ or "").strip().splitlines()[0]) for n, c in STOPPING.items()]),
        ("adapter methods", [(n, (type(m).__doc__ or "").strip().splitlines()[0]) for n, m in ADAPTERS.items()]),
        ("embedded backbones (--model)", [(n, f"{b.help} ({b.hub_id})") for n, b in EMBEDDED.items()]),
    ]
    for title, rows in sections:
        print(f"{title}:")
        for name, text in rows:
            print(f"  {name:<14} {text}")


COMMANDS = {"list": cmd_list, "export-adapter": cmd_export_adapter, "push-adapter": cmd_push_adapter, "label": cmd_label, "status": cmd_status, "bench": cmd_bench, "probe": cmd_probe, "figure1": cmd_figure1, "eval": cmd_eval, "train": cmd_train, "run": cmd_run, "resume": cmd_resume,
            "sweep": cmd_sweep, "report": cmd_report}


LAUNCHABLE = ("run", "resume", "sweep")  # the commands that share their work among launched processes


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        from star_al.log import configure

        configure(1 if args.verbose else -1 if args.quiet else 0)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and args.command not in LAUNCHABLE:
            raise StarError(f"star {args.command} runs in one process; under a launcher (accelerate launch, "
                            "torchrun) use star run, resume or sweep")
        COMMANDS[args.command](args)
    except AwaitingLabels as waiting:  # a clean stop: the batch is out with people
        print(str(waiting))
        return 0
    except StarError as error:
        print(f"star: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("star: interrupted", file=sys.stderr)
        return 130
    except OSError as error:  # disk full, read-only folder, permissions: the file and the reason
        where = f"{error.filename}: " if error.filename else ""
        print(f"star: error: {where}{error.strerror or error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
