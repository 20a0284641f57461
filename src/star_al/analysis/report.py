"""Read AL run directories and write the paper-style report (docs/method.md section 7).

A run directory holds `config.json` (at least "task", "strategy", "seed"; "n_rounds",
the number of query rounds, once known) and `rounds.jsonl`, one JSON object per
evaluated round (round 0 is the warm start). Accuracies in it are fractions; the
report shows percent. Only finished runs are reported unless asked otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from star_al import metrics
from star_al.al.run_dir import check_round_sequence, run_finished
from star_al.analysis import paired
from star_al.analysis.tables import format_number, markdown_grid
from star_al.errors import StarError
from star_al.files import write_figure_atomic, write_text_atomic
from star_al.rounds import RoundRecord

CONFIG_FILE = "config.json"
ROUNDS_FILE = "rounds.jsonl"
ROUND_KEYS = ("round", "n_labeled", "accuracy")
CALIBRATION_KEYS = ("ece", "brier", "wrong_confidence")
POINT_COLUMNS = ("task", "strategy", "seed", "round", "finished", "n_labeled", "accuracy",
                 *CALIBRATION_KEYS)


@dataclass
class Run:
    """One AL run as written on disk: its config and its evaluated rounds, in round order."""

    path: Path
    config: dict
    rounds: list[dict]

    @property
    def task(self) -> str:
        return str(self.config["task"])

    @property
    def strategy(self) -> str:
        """The recipe, with the adapter method where it is not LoRA (me+star-dora) and the warm
        start where it is not random (me+star-warm:me+kmeans), and the simulated annotator's error
        rate where it errs (me+star-noise:0.2), so one report can set them side by side; full
        fine-tuning keeps the plain name, which `star figure1` pairs with the LoRA runs'."""
        method = self.config.get("finetune", "lora")
        warm = self.config.get("warm_start_by", "random")
        noise = self.config.get("oracle_noise") or 0
        return (str(self.config["strategy"]) + ("" if method in ("lora", "full") else f"-{method}")
                + ("" if warm == "random" else f"-warm:{warm}") + (f"-noise:{noise:g}" if noise else ""))

    @property
    def seed(self):
        return self.config["seed"]

    @property
    def finished(self) -> bool:
        """True once rounds.jsonl holds round 0 plus all n_rounds query rounds."""
        return run_finished(self.config, self.rounds)

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """The learning curve: labeled-set sizes and accuracies (fractions), round by round."""
        n_labeled = np.array([r["n_labeled"] for r in self.rounds], dtype=float)
        accuracy = np.array([r["accuracy"] for r in self.rounds], dtype=float)
        return n_labeled, accuracy

    def auc(self) -> float:
        return metrics.auc(*self.curve())


@dataclass
class Row:
    """One (task, strategy) cell of Table 1, in percent; RIPL is None for the baseline
    itself and for tasks without a baseline run."""

    task: str
    strategy: str
    n_seeds: int
    n_unfinished: int
    auc_mean: float
    auc_std: float
    is_baseline: bool = False
    ripl: float | None = None
    ripl_std: float | None = None


# ---------------------------------------------------------------- reading runs

def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise StarError(f"cannot read {path}: {error}") from None
    missing = [key for key in ("task", "strategy", "seed") if key not in config]
    if missing:
        raise StarError(f"{path} lacks the key(s) {', '.join(missing)}")
    return config


def _read_rounds(path: Path) -> list[dict]:
    """Parse rounds.jsonl; a torn last line (run killed mid-append) is ignored."""
    text = path.read_text()
    lines = text.splitlines()
    rounds = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rounds.append(json.loads(line))
        except json.JSONDecodeError as error:
            torn_tail = number == len(lines) and not text.endswith("\n")
            if torn_tail:
                break
            raise StarError(f"{path}:{number} is not valid JSON: {error}") from None
        missing = [key for key in ROUND_KEYS if key not in rounds[-1]]
        if missing:
            raise StarError(f"{path}:{number} lacks the key(s) {', '.join(missing)}")
    check_round_sequence(rounds, path)
    return rounds


def _is_run_dir(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() and (path / ROUNDS_FILE).is_file()


def _as_paths(paths) -> list[Path]:
    """Accept one path or several."""
    return [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]


def find_runs(paths) -> list[Run]:
    """All run directories among `paths` and below them, at any depth, in path order.

    Raises StarError if a path does not exist or nothing under the paths is a run.
    """
    paths = _as_paths(paths)
    run_dirs: set[Path] = set()
    for path in paths:
        if not path.exists():
            raise StarError(f"no such file or directory: {path}")
        candidates = [path] + [config.parent for config in path.rglob(CONFIG_FILE)]
        run_dirs.update(c.resolve() for c in candidates if _is_run_dir(c))
    if not run_dirs:
        names = ", ".join(str(p) for p in paths) or "(no paths given)"
        raise StarError(f"no AL runs (folders with {CONFIG_FILE} and {ROUNDS_FILE}) under {names}")
    return [Run(d, _read_config(d / CONFIG_FILE), _read_rounds(d / ROUNDS_FILE))
            for d in sorted(run_dirs)]


# ---------------------------------------------------------------- summarising

def strategy_order(strategies, baseline: str = "random") -> list[str]:
    """The baseline first, then the others grouped by family so that variants follow
    their base (e.g. me, me+dynamic, me+dynamic+mc, ..., pe, pe+star)."""
    def key(name: str):
        return (name != baseline, re.split(r"[^0-9a-z]+", name.lower()), name)
    return sorted(set(strategies), key=key)


def _group(runs) -> dict[tuple[str, str], list[Run]]:
    """Runs keyed by (task, strategy); two runs of the same seed would double-count it."""
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        group = groups[(run.task, run.strategy)]
        twin = next((other for other in group if other.seed == run.seed), None)
        if twin is not None:
            raise StarError(f"two runs of {run.task}/{run.strategy} seed {run.seed}: "
                            f"{twin.path} and {run.path}; report on one of them")
        group.append(run)
    return groups


def _std(values) -> float:
    """Sample standard deviation over seeds (ddof=1); 0 for a single seed."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarise(runs, baseline: str = "random") -> list[Row]:
    """One Row per (task, strategy): AUC mean and std over seeds, and RIPL against the
    task's baseline, all in percent.

    RIPL is that of the mean AUC against the mean baseline AUC (the paper's number); its
    spread is the std over seeds of each seed's RIPL against that same baseline mean.
    Intervals are paired, seed by seed: see paired_table.
    """
    groups = _group(runs)
    aucs = {key: [run.auc() for run in group] for key, group in groups.items()}
    rows = []
    for task in sorted({task for task, _ in groups}):
        baseline_aucs = aucs.get((task, baseline))
        strategies = [s for t, s in groups if t == task]
        for strategy in strategy_order(strategies, baseline):
            group_aucs = aucs[(task, strategy)]
            row = Row(task=task, strategy=strategy, n_seeds=len(group_aucs),
                      n_unfinished=sum(not run.finished for run in groups[(task, strategy)]),
                      auc_mean=100 * float(np.mean(group_aucs)),
                      auc_std=100 * _std(group_aucs), is_baseline=strategy == baseline)
            if baseline_aucs and not row.is_baseline:
                random_mean = float(np.mean(baseline_aucs))
                row.ripl = 100 * metrics.ripl(float(np.mean(group_aucs)), random_mean)
                row.ripl_std = 100 * _std([metrics.ripl(a, random_mean) for a in group_aucs])
            rows.append(row)
    return rows


# ---------------------------------------------------------------- Markdown

def _cell(row: Row) -> str:
    """'AUC ± std / RIPL ± std [CI]', '-' for the baseline's RIPL, 'n/a' without a baseline;
    '*' marks cells that include unfinished runs."""
    auc_text = f"{row.auc_mean:.2f} ± {row.auc_std:.2f}"
    if row.is_baseline:
        ripl_text = "-"
    elif row.ripl is None:
        ripl_text = "n/a"
    else:
        ripl_text = f"{row.ripl:.2f} ± {row.ripl_std:.2f}"
    return f"{auc_text} / {ripl_text}" + (" *" if row.n_unfinished else "")


def markdown_table(rows, baseline: str = "random") -> str:
    """Table 1 layout: one row per strategy (baseline first), one column per task,
    cells 'AUC / RIPL' in percent, mean ± std over seeds."""
    tasks = sorted({row.task for row in rows})
    by_key = {(row.task, row.strategy): row for row in rows}
    body = []
    for strategy in strategy_order((row.strategy for row in rows), baseline):
        body.append([strategy] + [_cell(by_key[(task, strategy)]) if (task, strategy) in by_key
                                  else "" for task in tasks])
    seeds = sorted({row.n_seeds for row in rows})
    seed_text = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    caption = (f"AUC / RIPL in percent, mean ± std over seeds ({seed_text} per cell), "
               f"RIPL against {baseline}'s mean AUC; intervals in the paired comparisons below.")
    if any(row.n_unfinished for row in rows):
        caption += " * includes unfinished runs."
    return caption + "\n\n" + markdown_grid(["method"] + tasks, body)


def paired_rows(runs, references=("random", "me"),
                margin: float | None = None) -> list[tuple[str, str, str, paired.PairedDifference]]:
    """(task, strategy, reference, statistics) for every strategy against each reference present,
    Holm-adjusted over all of them (and tested for equivalence within ±margin points, if given):
    the family is what one report prints."""
    groups = _group(runs)
    result = []
    for task in sorted({task for task, _ in groups}):
        strategies = strategy_order([s for t, s in groups if t == task])
        for reference in references:
            if (task, reference) not in groups:
                continue
            ref_runs = {run.seed: run for run in groups[(task, reference)]}
            for strategy in strategies:
                if strategy == reference or strategy in references[:references.index(reference)]:
                    continue  # each pair once: me - random, not also random - me
                ours = {run.seed: run for run in groups[(task, strategy)]}
                stat = paired.compare({s: r.auc() for s, r in ours.items()}, {s: r.auc() for s, r in ref_runs.items()})
                if stat is None:
                    continue
                pairs = []
                for seed in set(ours) & set(ref_runs):
                    a, b = ours[seed], ref_runs[seed]
                    correct_a, correct_b = paired.read_correct(a.path, a.rounds), paired.read_correct(b.path, b.rounds)
                    if correct_a is None or correct_b is None or correct_a.shape != correct_b.shape or \
                            a.curve()[0].tolist() != b.curve()[0].tolist():
                        pairs = None
                        break
                    pairs.append((a.curve()[0], correct_a, correct_b))
                stat.sentence_interval = paired.sentence_bootstrap(pairs) if pairs else None
                result.append((task, strategy, reference, stat))
    adjusted = paired.holm_family([stat for *_, stat in result], margin=margin)
    return [(task, strategy, reference, stat) for (task, strategy, reference, _), stat in zip(result, adjusted)]


def format_interval(interval) -> str:
    """'[low, high]' in signed points, 'n/a' where there is none."""
    return "n/a" if interval is None else f"[{interval[0]:+.2f}, {interval[1]:+.2f}]"


def format_p(p: float | None) -> str:
    """A p value for a table: three decimals, '<0.001' below that, 'n/a' where there is no test."""
    if p is None:
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _family_size(rows) -> int:
    return sum(stat.p is not None for *_, stat in rows)


def paired_table(runs, references=("random", "me"), margin: float | None = None) -> str:
    """The paired comparisons: AUC differences in points, per seed, with three intervals, the t
    test's raw and Holm-adjusted p and the Holm interval, of every strategy against each of
    `references` present; given a margin, a second table tests each for equivalence (TOST)."""
    rows = paired_rows(runs, tuple(references), margin)
    if not rows:
        return ""
    alpha = paired.ALPHA
    body = [[task, f"{strategy} - {reference}", str(stat.n), f"{stat.mean:+.2f}",
             "n/a" if stat.sd is None else f"{stat.sd:.2f}", format_interval(stat.t_interval), format_p(stat.p),
             format_p(stat.p_holm), format_interval(stat.holm_interval),
             format_interval(stat.bootstrap_interval), format_interval(stat.sentence_interval),
             "n/a" if stat.seeds_needed is None else str(stat.seeds_needed),
             "n/a" if stat.seeds_for_width is None else str(stat.seeds_for_width)]
            for task, strategy, reference, stat in rows]
    m = _family_size(rows)
    caption = ("AUC difference in points, paired by seed (same pool and test set, and the same warm start "
               "unless a run chooses its own): mean and "
               f"sd over seeds, {1 - alpha:.0%} t interval and the two-sided p of the paired t test (raw, for this "
               f"comparison alone); Holm's step-down adjustment over the m = {m} comparisons of this table that have "
               f"a t test: the adjusted p, and the Holm interval, the t interval at level 1 - {alpha:g}/(m - j + 1) "
               "for the comparison of rank j by raw p (smallest first), every comparison from the first one Holm "
               f"does not reject on keeping that one's level, so that it excludes 0 exactly where the Holm p is "
               f"below {alpha:g} (Holm's decisions with the effect sizes they allow; not simultaneous intervals, "
               f"which Bonferroni's level 1 - {alpha:g}/m would give); {1 - alpha:.0%} paired bootstrap over seeds, "
               f"{1 - alpha:.0%} paired bootstrap over test sentences (where predictions are on disk; neither is "
               "adjusted), the seeds a difference of this size "
               f"needs for the t interval to exclude 0, and the seeds for a t interval of ±{paired.WIDTH:g} "
               "point at the measured sd.")
    table = caption + "\n\n" + markdown_grid(
        ["task", "comparison", "seeds", "mean", "sd", "t interval", "p", "Holm p", "Holm interval",
         "seed bootstrap", "sentence bootstrap", "seeds needed", f"seeds for ±{paired.WIDTH:g}"], body)
    if margin is None:
        return table
    return table + "\n\n" + equivalence_table(rows, margin)


def equivalence_table(rows, margin: float) -> str:
    """Each comparison of paired_rows(..., margin) tested for equivalence within ±margin points (TOST)."""
    alpha = paired.ALPHA
    level = 1 - 2 * alpha
    body = []
    for task, strategy, reference, stat in rows:
        verdict = "n/a" if stat.equivalent is None else f"within ±{margin:g}" if stat.equivalent else "not shown"
        body.append([task, f"{strategy} - {reference}", str(stat.n), f"{stat.mean:+.2f}",
                     format_interval(paired.interval_of(stat.n, stat.mean, stat.sd, level)),
                     format_p(stat.tost_p), format_p(stat.tost_p_holm), verdict])
    caption = (f"Equivalence within ±{margin:g} AUC points, by two one-sided paired t tests (TOST, Schuirmann 1987): "
               f"H0 mean <= -{margin:g} and H0 mean >= +{margin:g}, each one-sided at {alpha:g}; the TOST p is the "
               f"larger of the two, below {alpha:g} exactly when the {level:.0%} t interval lies inside ±{margin:g}. "
               f"Holm's adjustment of the TOST p over the same m = {_family_size(rows)} comparisons; \"within "
               f"±{margin:g}\" only where the adjusted TOST p is below {alpha:g}, \"not shown\" elsewhere (which is no "
               "evidence of a difference either).")
    return caption + "\n\n" + markdown_grid(
        ["task", "comparison", "seeds", "mean", f"{level:.0%} t interval", "TOST p", "Holm TOST p",
         f"equivalent (±{margin:g})"], body)


DEFAULT_STOPPING = "stability:0.99,uncertainty:0.5,plateau:1"


def stopping_table(runs, spec: str = DEFAULT_STOPPING) -> str:
    """Where each stopping criterion would have ended each finished curve, and what that
    would have cost (accuracy against the run's last round) or saved (labels)."""
    from star_al.stopping import parse_stop

    criteria = list(zip([part.strip() for part in spec.split(",")], parse_stop(spec)))
    body = []
    for run in sorted(runs, key=lambda r: (r.task, r.strategy, str(r.seed))):
        final = run.rounds[-1]
        history = [RoundRecord.from_dict(record) for record in run.rounds]  # what the criteria read
        for name, criterion in criteria:
            has_data = not getattr(criterion, "needs_monitor", False) or any("kappa" in r for r in run.rounds)
            stop_at = next((r for r in range(len(history)) if criterion.should_stop(history[:r + 1])), None)
            if not has_data:
                where = saved = cost = "no stopping-set data"
            elif stop_at is None:
                where, saved, cost = "never", "0", "0"
            else:
                record = run.rounds[stop_at]
                where = f"round {stop_at} ({record['n_labeled']} labels)"
                saved = str(final["n_labeled"] - record["n_labeled"])
                cost = ("n/a" if record.get("accuracy") is None or final.get("accuracy") is None
                        else f"{100 * (final['accuracy'] - record['accuracy']):+.1f}")
            body.append([run.task, run.strategy, str(run.seed), name, where, saved, cost])
    caption = (f"Where each criterion ({spec}) would have stopped each curve: the labels it would have "
               "saved, and the test accuracy the run gained after it (points; what stopping there would "
               "have cost). Stability and uncertainty need a run made with a --stop criterion that reads "
               "the stopping set.")
    return caption + "\n\n" + markdown_grid(["task", "strategy", "seed", "criterion", "stops at", "labels saved",
                                               "accuracy gained after"], body)


TIME_PARTS = ("score", "train", "eval")


def median_times(runs) -> dict[tuple[str, str], dict[str, float]]:
    """(task, strategy) -> the median over its runs of each part's seconds summed over the
    rounds ('score', 'train', 'eval', 'total'), and 'runs', how many (wall clock, from
    rounds.jsonl's timings)."""
    result = {}
    for key, group in _group(runs).items():
        totals = [{part: sum(r.get("timings", {}).get(part, 0.0) for r in run.rounds)
                   for part in (*TIME_PARTS, "total")} for run in group]
        result[key] = {part: float(np.median([t[part] for t in totals])) for part in (*TIME_PARTS, "total")}
        result[key]["runs"] = len(totals)
    return result


def time_table(runs) -> str:
    """What each strategy costs: the median run's seconds per part and minutes in all."""
    medians = median_times(runs)
    body = []
    for task in sorted({task for task, _ in medians}):
        for strategy in strategy_order([s for t, s in medians if t == task]):
            median = medians[(task, strategy)]
            body.append([task, strategy, str(median["runs"]), *(f"{median[p]:.0f}" for p in TIME_PARTS),
                         f"{median['total'] / 60:.1f}"])
    caption = ("Wall-clock time per run, the median over its seeds: seconds spent scoring the pool, "
               "training and evaluating, summed over the rounds, and the whole run in minutes (model "
               "loading and the base model's pool scores, computed once per pool and cached, not included).")
    return caption + "\n\n" + markdown_grid(["task", "strategy", "runs", "score s", "train s", "eval s",
                                              "run min"], body)


def _round_means(group, keys) -> list[dict]:
    """Per round index: seeds present, mean n_labeled, and for each key the mean and std
    over the seeds that report it (missing or nan values are left out)."""
    by_round: dict[int, list[dict]] = defaultdict(list)
    for run in group:
        for record in run.rounds:
            by_round[record["round"]].append(record)
    means = []
    for round_index in sorted(by_round):
        records = by_round[round_index]
        point = {"round": round_index, "n_seeds": len(records),
                 "n_labeled": float(np.mean([r["n_labeled"] for r in records]))}
        for key in keys:
            values = [float(r[key]) for r in records if r.get(key) is not None]
            values = [v for v in values if not np.isnan(v)]
            point[key] = float(np.mean(values)) if values else np.nan
            point[key + "_std"] = _std(values) if values else np.nan
        means.append(point)
    return means


def calibration_table(runs, baseline: str = "random") -> str:
    """Per task, per strategy and round: seed means of ECE, Brier score and the mean
    confidence on wrong answers (fractions), the paper's 'confidently wrong' probe."""
    groups = _group(runs)
    sections = []
    for task in sorted({task for task, _ in groups}):
        body = []
        for strategy in strategy_order([s for t, s in groups if t == task], baseline):
            for point in _round_means(groups[(task, strategy)], CALIBRATION_KEYS):
                body.append([strategy, str(point["round"]), f"{point['n_labeled']:.0f}",
                             *(format_number(point[key]) for key in CALIBRATION_KEYS),
                             str(point["n_seeds"])])
        header = ["method", "round", "labeled", "ECE", "Brier", "wrong-answer conf.", "seeds"]
        sections.append(f"### {task}\n\n" + markdown_grid(header, body))
    return "\n\n".join(sections)


# ---------------------------------------------------------------- files

def write_curves_png(runs, path, baseline: str = "random") -> None:
    """Learning curves like the paper's Figure 5: one panel per task, accuracy (%) against
    labeled examples, seed mean with a ±std band, one colour per strategy in every panel."""
    tasks = sorted({run.task for run in runs})
    _write_panels([(task, [run for run in runs if run.task == task]) for task in tasks], path, baseline)


def write_figure1_png(adapter_runs, full_runs, path, baseline: str = "random") -> None:
    """The paper's Figure 1: the same strategies under LoRA and under full fine-tuning."""
    _write_panels([("LoRA fine-tuning", adapter_runs), ("full fine-tuning", full_runs)], path, baseline)


def _write_panels(panels, path, baseline: str) -> None:
    from matplotlib.figure import Figure  # Figure renders with Agg; no pyplot state

    strategies = strategy_order([run.strategy for _, runs in panels for run in runs], baseline)
    colours = {strategy: f"C{i % 10}" for i, strategy in enumerate(strategies)}
    figure = Figure(figsize=(4.5 * len(panels), 3.6), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (title, runs) in zip(axes, panels):
        groups = _group(runs)
        for (task, strategy), group in sorted(groups.items(), key=lambda kv: strategies.index(kv[0][1])):
            points = _round_means(group, ["accuracy"])
            x = np.array([p["n_labeled"] for p in points])
            mean = 100 * np.array([p["accuracy"] for p in points])
            spread = 100 * np.array([p["accuracy_std"] for p in points])
            label = strategy if len({t for t, _ in groups}) == 1 else f"{task} {strategy}"
            axis.plot(x, mean, marker="o", markersize=3, color=colours[strategy], label=label)
            axis.fill_between(x, mean - spread, mean + spread, color=colours[strategy], alpha=0.2)
        axis.set_title(title)
        axis.set_xlabel("labeled examples")
        axis.set_ylabel("accuracy (%)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    write_figure_atomic(figure, path)


def write_points_csv(runs, path) -> None:
    """Every evaluated point: one row per (task, strategy, seed, round), fractions as stored."""
    handle = io.StringIO(newline="")
    writer = csv.DictWriter(handle, fieldnames=POINT_COLUMNS)
    writer.writeheader()
    for run in sorted(runs, key=lambda r: (r.task, r.strategy, str(r.seed))):
        for record in run.rounds:
            writer.writerow({"task": run.task, "strategy": run.strategy, "seed": run.seed, "finished": run.finished,
                             **{key: record.get(key) for key in POINT_COLUMNS[3:] if key != "finished"}})
    write_text_atomic(path, handle.getvalue())


def write_report(paths, out_dir, calibration: bool = False, include_unfinished: bool = False,
                 baseline: str = "random", stopping: str | None = None, against=("random", "me"),
                 equivalence_margin: float | None = None) -> str:
    """Find the runs under `paths`, write report.md, curves.png and points.csv into
    `out_dir`, and return the report's Markdown for the caller to print. The paired
    comparisons set every strategy against each of `against`, Holm-adjusted over all of
    them; given `equivalence_margin` (AUC points), each is also tested for equivalence (TOST).

    Unfinished runs are left out of the table, curves and calibration unless
    include_unfinished; points.csv always lists every run, with a 'finished' column.
    """
    paths = _as_paths(paths)
    if equivalence_margin is not None and not (np.isfinite(equivalence_margin) and equivalence_margin > 0):
        raise StarError(f"the equivalence margin must be a positive number of AUC points, not {equivalence_margin}")
    all_runs = find_runs(paths)
    reported = [bool(run.rounds) and (include_unfinished or run.finished) for run in all_runs]
    runs = [run for run, keep in zip(all_runs, reported) if keep]
    skipped = [run for run, keep in zip(all_runs, reported) if not keep]
    if not runs:
        raise StarError(f"none of the {len(all_runs)} run(s) under "
                        f"{', '.join(str(p) for p in paths)} has finished; "
                        "include unfinished runs to report them anyway")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_curves_png(runs, out_dir / "curves.png", baseline)
    write_points_csv(all_runs, out_dir / "points.csv")

    parts = ["# Active learning report", markdown_table(summarise(runs, baseline), baseline)]
    comparisons = paired_table(runs, against, equivalence_margin)
    if comparisons:
        parts.append("## Paired comparisons\n\n" + comparisons)
    from star_al.analysis.classes import class_tables

    by_class = class_tables(runs, lambda strategies: strategy_order(strategies, baseline))
    if by_class:
        parts.append("## Per class\n\n" + by_class)
    parts.append("## Time\n\n" + time_table(runs))
    from star_al.analysis.annotators import agreement_table

    agreed = agreement_table(runs)
    if agreed:
        parts.append("## Annotators\n\n" + agreed)
    if skipped:
        parts.append(f"Skipped {len(skipped)} unfinished run(s): "
                     + ", ".join(str(run.path) for run in skipped))
    parts.append("![learning curves](curves.png)")
    from star_al.analysis.components import components_table

    at_work = components_table(runs)
    if at_work:
        parts.append("## STAR's parts at work\n\n" + at_work)
    if stopping:
        parts.append("## Stopping\n\n" + stopping_table(runs, stopping))
        stopped = [run for run in runs if run.rounds[-1].get("stopped")]
        if stopped:
            parts.append("Runs that stopped early: " + "; ".join(
                f"{run.path} after round {run.rounds[-1]['round']} ({run.rounds[-1]['stopped']})" for run in stopped))
    if calibration:
        parts.append("## Calibration per round\n\n" + calibration_table(runs, baseline))
    text = "\n\n".join(parts) + "\n"
    write_text_atomic(out_dir / "report.md", text)
    return text


def write_variance_report(paths, out_dir) -> str:
    """variance.md: each round's variance split into seed, training run and test sample
    (analysis/variance.py), over the finished runs under `paths`."""
    from star_al.analysis.variance import markdown, variance_table

    runs = [run for run in find_runs(_as_paths(paths)) if run.finished]
    if not runs:
        raise StarError(f"no finished runs under {', '.join(str(p) for p in _as_paths(paths))}")
    text = "# Where the noise comes from\n\n" + markdown(variance_table(runs)) + "\n"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "variance.md", text)
    return text


def write_figure1(adapter_paths, full_paths, out_dir, strategies=("random", "me"), baseline: str = "random") -> str:
    """Figure 1 from finished runs: figure1.png and figure1.md (AUC/RIPL under each fine-tuning)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sets = []
    for label, paths in (("LoRA", adapter_paths), ("full", full_paths)):
        runs = [run for run in find_runs(paths) if run.finished and run.strategy in strategies]
        if not runs:
            raise StarError(f"no finished {'/'.join(strategies)} runs under {', '.join(map(str, _as_paths(paths)))}")
        sets.append((label, runs))
    write_figure1_png(sets[0][1], sets[1][1], out_dir / "figure1.png", baseline)
    parts = ["# Uncertainty sampling under LoRA and full fine-tuning (the paper's Figure 1)"]
    for label, runs in sets:
        parts.append(f"## {label} fine-tuning\n\n" + markdown_table(summarise(runs, baseline), baseline))
        comparisons = paired_table(runs)
        if comparisons:
            parts.append(comparisons)
    parts.append("![figure 1](figure1.png)")
    text = "\n\n".join(parts) + "\n"
    write_text_atomic(out_dir / "figure1.md", text)
    return text
