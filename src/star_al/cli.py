"""The `star` command: the edge where arguments, environment, files and printing live."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

from star_al.errors import StarError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line instead of usage + error."""

    def error(self, message):
        raise StarError(f"{self.prog}: {message}")


def _add_model_options(parser):
    parser.add_argument("--model", default="smollm2-135m",
                        help="smollm2-135m (default), gemma3-270m, a .gguf file, a model directory or a hub id")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--dtype", default=None, help="float32 or bfloat16 (default: bf16 where fast)")
    parser.add_argument("--cache-dir", default=None, help="where de-quantized models are kept "
                        "(default: $STAR_CACHE or ~/.cache/star-al)")


def _add_task_options(parser):
    parser.add_argument("--task", required=True, help="gsm8k, boolq, obqa, sst2 or a task YAML path")
    parser.add_argument("--data-root", default=None,
                        help="folder holding the built-in tasks' data (default: $STAR_DATA_ROOT, else ../shared/data)")
    parser.add_argument("--data", default=None, help="folder with this task's train/test JSONL")


def _add_lora_options(parser):
    parser.add_argument("--rank", type=int, default=None, help="LoRA rank (default 64)")
    parser.add_argument("--alpha", type=int, default=None, help="LoRA alpha (default 16)")
    parser.add_argument("--lora-dropout", type=float, default=None, help="LoRA dropout (default 0.1)")
    parser.add_argument("--target-modules", default=None,
                        help="comma-separated module names (default: all-linear = every attention and MLP projection)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--train-batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None, help="learning rate")
    parser.add_argument("--b-decay", type=float, default=None, help="AdamW weight decay on lora_B only")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="star", description="Active learning around LoRA fine-tuning (STAR).")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ev = commands.add_parser("eval", help="evaluate a model (optionally with an adapter) on a task's test set")
    _add_task_options(ev)
    _add_model_options(ev)
    ev.add_argument("--adapter", default=None, help="a LoRA adapter directory (PEFT format)")
    ev.add_argument("--limit", type=int, default=None, help="evaluate only the first N test examples")
    ev.add_argument("--batch-size", type=int, default=32)
    ev.add_argument("--out", default=None, help="output folder (default: out/eval-TASK)")

    tr = commands.add_parser("train", help="fine-tune a LoRA adapter on N random train examples, then evaluate")
    _add_task_options(tr)
    _add_model_options(tr)
    _add_lora_options(tr)
    tr.add_argument("--n-train", type=int, required=True)
    tr.add_argument("--out", required=True, help="output folder (adapter/, predictions.jsonl, summary.json)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--limit", type=int, default=None, help="evaluate on the first N test examples")
    tr.add_argument("--batch-size", type=int, default=32, help="evaluation batch size")
    tr.add_argument("--no-baseline", action="store_true", help="skip evaluating the untuned model first")
    return parser


def data_root_from(args) -> str | None:
    """--data-root, else $STAR_DATA_ROOT, else ../shared/data when it exists."""
    if args.data_root:
        return args.data_root
    if os.environ.get("STAR_DATA_ROOT"):
        return os.environ["STAR_DATA_ROOT"]
    default = Path("..") / "shared" / "data"
    return str(default) if default.is_dir() else None


def _load_task_and_split(args, split, limit=None):
    from star_al.tasks import load_examples, load_task

    task = load_task(args.task)
    examples = load_examples(task, split, data_root=data_root_from(args), data_dir=args.data)
    if limit is not None:
        if limit <= 0:
            raise StarError(f"--limit must be positive, got {limit}")
        examples = examples[:limit]
    return task, examples


def _load_backbone(args):
    from star_al.backbones import load_backbone
    from star_al.hardware import choose_placement

    placement = choose_placement(args.device, args.dtype)
    cache = Path(args.cache_dir) if args.cache_dir else None
    print(f"model {args.model} on {placement.device}, {str(placement.dtype).removeprefix('torch.')} "
          f"({placement.reason})", file=sys.stderr)
    return load_backbone(args.model, placement, cache)


def _print_summary(label: str, summary: dict) -> None:
    print(f"{label}: accuracy {100 * summary['accuracy']:.2f}% on {summary['n']} examples "
          f"(ECE {summary['ece']:.3f}, Brier {summary['brier']:.3f})")


def cmd_eval(args) -> None:
    from star_al.evaluation import evaluate, write_predictions, write_text_atomic

    task, examples = _load_task_and_split(args, "test", args.limit)
    backbone = _load_backbone(args)
    model = backbone.model
    if args.adapter:
        model = load_adapter(model, args.adapter)
    scores, summary = evaluate(model, backbone.tokenizer, task, examples, args.batch_size)
    out = Path(args.out or f"out/eval-{task.name}")
    write_predictions(scores, out / "predictions.jsonl")
    write_text_atomic(out / "summary.json", json.dumps(
        {"task": task.name, "model": args.model, "adapter": args.adapter, **summary}, indent=2) + "\n")
    _print_summary(task.name, summary)
    print(f"predictions: {out / 'predictions.jsonl'}")


def load_adapter(model, adapter_dir: str):
    """Attach a saved PEFT adapter to the base model, for evaluation."""
    from peft import PeftModel

    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise StarError(f"adapter {adapter_dir}: no adapter_config.json there")
    peft_model = PeftModel.from_pretrained(model, adapter_dir)
    peft_model.eval()
    return peft_model


def lora_settings_from(args, base=None):
    from dataclasses import replace

    from star_al.training import LoraSettings

    settings = base or LoraSettings()
    changes = {key: value for key, value in {
        "rank": args.rank, "alpha": args.alpha, "dropout": args.lora_dropout,
        "target_modules": tuple(args.target_modules.split(",")) if args.target_modules else None,
    }.items() if value is not None}
    return replace(settings, **changes)


def train_settings_from(args, base=None):
    from dataclasses import replace

    from star_al.training import TrainSettings

    settings = base or TrainSettings()
    changes = {key: value for key, value in {
        "epochs": args.epochs, "batch_size": args.train_batch_size, "learning_rate": args.lr,
        "b_decay": args.b_decay}.items() if value is not None}
    return replace(settings, **changes)


def cmd_train(args) -> None:
    from dataclasses import asdict

    from star_al.evaluation import evaluate, write_predictions, write_text_atomic
    from star_al.training import attach_fresh_adapter, train_adapter

    task, test = _load_task_and_split(args, "test", args.limit)
    _, pool = _load_task_and_split(args, "train")
    if not 0 < args.n_train <= len(pool):
        raise StarError(f"--n-train {args.n_train} must be between 1 and the {len(pool)} train examples")
    chosen = random.Random(args.seed).sample(range(len(pool)), args.n_train)
    labeled = [pool[i] for i in chosen]
    lora, train = lora_settings_from(args), train_settings_from(args)
    backbone = _load_backbone(args)
    out = Path(args.out)
    summary = {"task": task.name, "model": args.model, "n_train": args.n_train, "seed": args.seed,
               "lora": asdict(lora), "train": asdict(train)}
    if not args.no_baseline:
        _, base_summary = evaluate(backbone.model, backbone.tokenizer, task, test, args.batch_size,
                                   desc="evaluate untuned")
        _print_summary("untuned", base_summary)
        summary["untuned"] = base_summary
    peft_model = attach_fresh_adapter(backbone.model, lora, args.seed)
    started = time.perf_counter()
    result = train_adapter(peft_model, backbone.tokenizer, task, labeled, train, args.seed)
    print(f"trained {result.steps} steps on {args.n_train} examples in {time.perf_counter() - started:.1f}s "
          f"(final loss {result.losses[-1]:.3f})", file=sys.stderr)
    peft_model.save_pretrained(out / "adapter")
    scores, tuned_summary = evaluate(peft_model, backbone.tokenizer, task, test, args.batch_size,
                                     desc="evaluate tuned")
    write_predictions(scores, out / "predictions.jsonl")
    summary.update(tuned=tuned_summary, train_ids=[ex.id for ex in labeled], seconds=result.seconds)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    _print_summary("tuned", tuned_summary)
    print(f"adapter: {out / 'adapter'}")


COMMANDS = {"eval": cmd_eval, "train": cmd_train}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        COMMANDS[args.command](args)
    except StarError as error:
        print(f"star: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("star: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
