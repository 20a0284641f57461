"""The `star` command: arguments in, the Python API (star_al.runs, jobs, analysis) called, results printed.

Nothing here builds runs or writes results: it parses, prints and chooses exit codes.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

from star_al import __version__
from star_al.cli_parser import build_parser, setting_overrides
from star_al.errors import StarError
from star_al.labeling.people import AwaitingLabels


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


def _root(args) -> str | None:
    return getattr(args, "data_root", None)


def _machine(args):
    from star_al.runs import Machine

    return Machine(getattr(args, "device", None), getattr(args, "dtype", None), getattr(args, "cache_dir", None),
                   getattr(args, "quantization", None), getattr(args, "gradient_checkpointing", False))


def _processes(args):
    """The launch this command runs in, made once per command."""
    from star_al.runs import launch

    if getattr(args, "processes", None) is None:
        args.processes = launch(getattr(args, "device", None))
    return args.processes


def _positive(args, *names) -> None:
    for name in names:
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise StarError(f"--{name.replace('_', '-')} must be {'positive' if name == 'limit' else 'at least 1'}, "
                            f"got {getattr(args, name)}")


def _split(args, what: str) -> list[str]:
    items = [item.strip() for item in getattr(args, what).split(",") if item.strip()]
    if not items:
        raise StarError(f"--{what} is empty")
    return items


def _print_summary(label: str, summary: dict) -> None:
    print(f"{label}: accuracy {100 * summary['accuracy']:.2f}% on {summary['n']} examples "
          f"(ECE {summary['ece']:.3f}, Brier {summary['brier']:.3f})")


def _split_of(args, split, limit=None):
    from star_al.data.catalog import load_task
    from star_al.data.tasks import load_examples

    task = load_task(args.task)
    examples = load_examples(task, split, data_root=_root(args), data_dir=args.data)
    return task, examples, examples if limit is None else examples[:limit]


def _settings(args, group: str, base):
    from star_al.config import merge

    return merge({group: base}, {group: setting_overrides(args)[group]})[group]


def cmd_eval(args) -> None:
    from star_al.jobs import check_adapter_dir, check_writable_dir, evaluate_model
    from star_al.runs import load_model

    _positive(args, "batch_size", "limit")
    task, everything, examples = _split_of(args, "test", args.limit)
    out = Path(args.out or f"out/eval-{task.name}")
    check_writable_dir(out)
    if args.adapter:
        check_adapter_dir(args.adapter)
    summary = evaluate_model(load_model(args.model, _machine(args)), task, examples, out, adapter=args.adapter,
                             batch_size=args.batch_size, model_name=args.model, limit=args.limit,
                             n_original=len(everything), log_samples=args.log_samples)
    _print_summary(task.name, summary)
    print(f"predictions: {out / 'predictions.jsonl'}; lm-eval-shaped results: {out / 'results.json'}")


def cmd_train(args) -> None:
    from star_al.config import LoraSettings, TrainSettings
    from star_al.jobs import train_once
    from star_al.runs import load_model

    _positive(args, "batch_size", "limit")
    task, _, test = _split_of(args, "test", args.limit)
    _, pool, _ = _split_of(args, "train")
    train_once(lambda: load_model(args.model, _machine(args)), task, pool, test, Path(args.out),
               n_train=args.n_train, lora=_settings(args, "lora", LoraSettings()),
               train=_settings(args, "train", TrainSettings(**task.training)), peft=args.peft, seed=args.seed,
               batch_size=args.batch_size, baseline=not args.no_baseline, report=_print_summary)
    print(f"adapter: {Path(args.out) / 'adapter'}")


def _configure(args, task=None, strategy=None, seed=None):
    from star_al.runs import configure

    overrides = setting_overrides(args)
    named = {key: overrides.pop(key, None) for key in ("task", "strategy", "seed", "preset")}
    return configure(task or named["task"], strategy or named["strategy"], named["preset"],
                     named["seed"] if seed is None else seed, config_file=args.config, budget=args.budget,
                     data_root=_root(args), data=getattr(args, "data", None), **overrides)


def _print_curve(rounds) -> None:
    from star_al.metrics import auc

    if any(r.accuracy is None for r in rounds):  # no test set (--no-eval)
        print("rounds (labeled:pool uncertainty:agreement) " + " ".join(
            f"{r.n_labeled}:{r.pool_uncertainty:.3f}:" + ("-" if r.agreement is None else f"{100 * r.agreement:.0f}%")
            for r in rounds))
        return
    print("curve (labeled:accuracy%) " + " ".join(f"{r.n_labeled}:{100 * r.accuracy:.1f}" for r in rounds))
    print(f"AUC {100 * auc([r.n_labeled for r in rounds], [r.accuracy for r in rounds]):.2f}")


def cmd_run(args) -> None:
    from star_al.runs import config_file_out, default_run_dir, run

    config = _configure(args)
    out = args.out or config_file_out(args.config) or default_run_dir("runs", config)
    rounds = run(config, out, machine=_machine(args), data_root=_root(args), data=args.data,
                 label_studio=args.label_studio, report_to=args.report_to, processes=_processes(args))
    if _processes(args).is_main:
        _print_curve(rounds)


def cmd_resume(args) -> None:
    from star_al.runs import resume

    rounds = resume(args.run_dir, model=None if args.model == "smollm2-135m" else args.model,
                    machine=_machine(args), data_root=_root(args), data=args.data, partial=args.partial,
                    report_to=args.report_to, processes=_processes(args))
    if _processes(args).is_main:
        _print_curve(rounds)


def cmd_sweep(args) -> None:
    from star_al.analysis.report import write_report
    from star_al.runs import sweep

    try:
        seeds = [int(s) for s in _split(args, "seeds")]
    except ValueError as error:
        raise StarError(f"--seeds must be integers: {args.seeds}") from error
    # Seed-major order: a sweep cut short still holds every strategy at the first seeds.
    configs = [_configure(args, t, s, seed) for seed in seeds for t in _split(args, "tasks")
               for s in _split(args, "strategies")]
    sweep(configs, args.out, machine=_machine(args), data_root=_root(args), report_to=args.report_to,
          processes=_processes(args), label_studio=args.label_studio)
    if _processes(args).is_main:  # over every run under --out: a sweep continued seed by seed keeps one report
        print(write_report([args.out], Path(args.out)))
        print(f"wrote {Path(args.out) / 'report.md'}, curves.png, points.csv", file=sys.stderr)


def cmd_report(args) -> None:
    from star_al.analysis.report import write_report, write_variance_report

    out = Path(args.out or args.runs[0])
    if args.variance:
        print(write_variance_report(args.runs, out))
        print(f"wrote {out / 'variance.md'}", file=sys.stderr)
        return
    print(write_report(args.runs, out, calibration=args.calibration, include_unfinished=args.include_unfinished,
                       stopping=args.stopping, against=_split(args, "against"),
                       equivalence_margin=args.equivalence_margin))
    print(f"wrote {out / 'report.md'}, {out / 'curves.png'}, {out / 'points.csv'}", file=sys.stderr)


def cmd_bench(args) -> None:
    from star_al.bench import bench

    log = (lambda message: print(message, file=sys.stderr)) if args.json else print
    figures = bench(args, _machine(args), log)
    if args.json:
        print(json.dumps(figures))


def cmd_figure1(args) -> None:
    from star_al.analysis.report import write_figure1

    print(write_figure1(args.lora, args.full, args.out, tuple(_split(args, "strategies"))))
    print(f"wrote {Path(args.out) / 'figure1.png'}, figure1.md", file=sys.stderr)


def cmd_probe(args) -> None:
    from star_al.jobs import probe_confidence, probe_decay
    from star_al.analysis.probes import entropy_probe

    if args.probe == "decay":
        print(probe_decay(args.run_dir, args.out, _machine(args), _root(args), args.data))
    elif args.probe == "entropy":
        out = Path(args.out or Path(args.run_dir) / "probe-entropy")
        summary = entropy_probe(Path(args.run_dir), out, top=args.top, method=args.method,
                                round_pair=args.round, measure=args.measure)
        print((out / "summary.md").read_text())
        print(f"wrote {out}: correlation.csv, entropy_heatmap.png, scatter PNGs, summary.md "
              f"({summary['n_examples']} examples)", file=sys.stderr)
    else:
        out = Path(args.out or f"out/probe-confidence-{args.task}")
        print(probe_confidence(args, _machine(args), out, lambda group, base: _settings(args, group, base)))
        print(f"wrote {out}: confidence.csv, confidence.png, summary.md", file=sys.stderr)


def cmd_label(args) -> None:
    from star_al.runs import import_labels, labels_from

    done = import_labels(args.run_dir, labels_from(args.run_dir, args.file, args.tool),
                         "label-studio" if args.tool == "label-studio" else "person", annotator=args.annotator)
    from star_al.runs import status

    waiting = status(args.run_dir)
    empty = f"; {done.empty} row(s) with an empty answer, not labelled yet" if done.empty else ""
    same = f"; {done.same} row(s) already in the ledger, skipped" if done.same else ""
    tied = f" ({done.tied} tied between annotators: one more annotator decides)" if done.tied else ""
    print(f"imported {done.imported} labels for round {waiting.waiting_round}{empty}{same}; "
          f"{done.left} of {len(waiting.waiting_ids)} left{tied}")
    print(f"next: star resume {shlex.quote(str(args.run_dir))}" + (" (or --partial to train on what is there)"
                                                                    if done.left else ""))


def cmd_status(args) -> None:
    from star_al.runs import status

    state = status(args.run_dir)
    config, rounds = state.config, state.rounds
    print(f"{args.run_dir}: {config.task}, {config.strategy}, labels by {config.labels}; "
          f"{len(rounds)} of {config.n_rounds + 1} rounds done, {state.n_labels} labels")
    if rounds and rounds[-1].accuracy is not None:
        print(f"last round: {rounds[-1].n_labeled} labeled, accuracy {100 * rounds[-1].accuracy:.2f}%")
    for batch in state.batches:  # where each batch went, and its labels
        print(f"round {batch.round}: " + "; ".join(batch.places) + f"; {batch.labeled} of {batch.size} labels in"
              + (f" (source: {', '.join(batch.sources)})" if batch.sources else ""))
    if state.waiting_round is not None:
        left = len(state.waiting_ids) - state.waiting_labeled
        files = f" (files in {shlex.quote(str(Path(args.run_dir) / 'to_label'))})" if config.labels == "human" else ""
        print(f"round {state.waiting_round} batch: {state.waiting_labeled} of {len(state.waiting_ids)} labeled, "
              f"{left} left" + files)
        if state.tied:
            print(f"tied between annotators, waiting for one more: id(s) {', '.join(map(str, state.tied))}")
    elif state.finished:
        print("finished")
    for agreed in state.agreement:  # with several annotators: how far they agree, and where they do not
        print(f"agreement, round {agreed.round}: {agreed.describe()}")


def cmd_export_adapter(args) -> None:
    from star_al.jobs import export_adapter

    base = export_adapter(args.run_dir, args.out, args.base_model)
    print(f"wrote {args.out}: adapter_model.safetensors, adapter_config.json (base {base}), README.md")


def cmd_push_adapter(args) -> None:
    from star_al.jobs import push_adapter

    print(f"pushed {args.adapter_dir} to {push_adapter(args.adapter_dir, args.repo, args.private)}")


def cmd_list(args) -> None:
    from star_al.registries import registered

    for title, rows in registered():
        print(f"{title}:")
        for name, text in rows:
            print(f"  {name:<14} {text}")


COMMANDS = {"list": cmd_list, "export-adapter": cmd_export_adapter, "push-adapter": cmd_push_adapter,
            "label": cmd_label, "status": cmd_status, "bench": cmd_bench, "probe": cmd_probe, "figure1": cmd_figure1,
            "eval": cmd_eval, "train": cmd_train, "run": cmd_run, "resume": cmd_resume, "sweep": cmd_sweep,
            "report": cmd_report}
LAUNCHABLE = ("run", "resume", "sweep")  # the commands that share their work among launched processes


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser(_versions()).parse_args(argv)
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
