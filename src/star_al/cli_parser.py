"""The `star` command's arguments: every subcommand and its options.

Run settings are not declared here: their options are generated from the config
dataclasses (each field declares its flag, default and help once, config.setting).
"""

from __future__ import annotations

import argparse

from star_al.errors import StarError


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
    parser.add_argument("--data", default=None,
                        help="folder with this task's train/test files (JSONL, CSV, Parquet, saved datasets)")


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


def build_parser(version: str) -> argparse.ArgumentParser:
    parser = _Parser(prog="star", description="Active learning around LoRA fine-tuning (STAR).")
    parser.add_argument("--version", action="version", version=version)
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
    rp.add_argument("--equivalence-margin", type=float, default=None, metavar="POINTS",
                    help="also test each paired comparison for equivalence within ±POINTS AUC points "
                         "(two one-sided t tests, Holm-adjusted over the comparisons)")
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
    lb.add_argument("--from", dest="tool", default=None, metavar="TOOL",
                    help="pull the answers from one of the run's labelling tools: label-studio (its project), "
                         "files (the latest batch's CSV, filled in place)")
    lb.add_argument("--from-label-studio", dest="tool", action="store_const", const="label-studio",
                    help="the same as --from label-studio")
    lb.add_argument("--annotator", default=None, metavar="NAME",
                    help="who gave these labels (kept in the ledger; a run with --annotators N > 1 needs it). "
                         "Rows of an `annotator` column, and Label Studio's annotations, name their own")
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
    bn.add_argument("--quick", action="store_true",
                    help="the headline figures only (peak, scoring, MC cost, our training step against the plain "
                         "one, generation), in about 2 minutes on 2 CPU cores; the default takes about 5")
    bn.add_argument("--examples", type=int, default=None, help="pool examples to score (default 96; quick 32)")
    bn.add_argument("--passes", type=int, default=None, help="MC-dropout passes (default 3)")
    bn.add_argument("--naive-examples", type=int, default=None,
                    help="examples for the naive reference (default 24; quick leaves it out)")
    bn.add_argument("--train-steps", type=int, default=None, help="training steps a turn (default 3; quick 1)")
    bn.add_argument("--train-batch", type=int, default=None, help="training batch (default 8)")
    bn.add_argument("--gen-examples", type=int, default=None, help="generation prompts (default 8; quick 4)")
    bn.add_argument("--max-new-tokens", type=int, default=None, help="generation cap (default 64; quick 32)")
    bn.add_argument("--repeats", type=int, default=None,
                    help="at most this many turns in which the fast and plain paths alternate, while the "
                         "stage's time lasts; each figure is the best (default 5; quick 3)")
    bn.add_argument("--json", action="store_true", help="print one JSON object of all figures")
    bn.add_argument("--pool-memory", default=None, metavar="SIZES",
                    help="instead: the memory of one scoring pass over pools of these sizes (sst2 sentences, "
                         "e.g. 1000,10000) on a tiny 2-layer Llama, with and without releasing the heap")
    bn.add_argument("--pool-scale", nargs="?", const="10000,100000,1000000", default=None, metavar="SIZES",
                    help="instead: star run on synthetic pool files of these sizes (default 10000,100000,1000000) "
                         "read from disk, a tiny random Llama, a fixed scored subset: index time, peak memory, "
                         "time per round, and the time a kill during scoring loses (a few minutes on 2 cores)")
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



