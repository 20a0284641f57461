"""The study's two tables, laid out as the paper's Table 1 and Table 2, from its run directories.

Table 1 sets the strategies against random and plain ME; Table 2 adds STAR's parts to ME one
at a time, each against plain ME and against the dynamic mix alone. Every figure is one that
`star report` prints for the same runs (AUC mean ± sd over seeds, paired differences in
points with the 95% t interval over seeds and the paired bootstrap over test sentences, the
median run's minutes); this only picks and arranges them.

    .venv/bin/python scripts/study_tables.py docs/results/cpu-sst2-study/sst2/*/seed-*
"""

import argparse
import sys

from star_al.analysis.report import find_runs, format_interval, median_times, paired_rows, summarise
from star_al.analysis.tables import markdown_grid

TABLE_1 = ("random", "me", "pe", "me+star", "pe+star")
TABLE_2 = {"me": "me", "me+dynamic": "+ dynamic", "me+dynamic+mc": "+ dynamic + MC dropout",
           "me+dynamic+l2": "+ dynamic + L2 on B", "me+star": "STAR (all three)"}


def _interval(stat, which: str = "t_interval") -> str:
    """One of a comparison's intervals as the report writes it; blank where there is no comparison."""
    return "" if stat is None else format_interval(getattr(stat, which))


def _difference(stat) -> str:
    return "" if stat is None else f"{stat.mean:+.2f} {_interval(stat)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories (or folders holding them) of one task")
    args = parser.parse_args()

    found = find_runs(args.runs)
    runs = [run for run in found if run.finished]  # as star report: a run still going is left out
    if len(runs) < len(found):
        print(f"left out {len(found) - len(runs)} unfinished run(s)", file=sys.stderr)
    tasks = {run.task for run in runs}
    if len(tasks) != 1:
        raise SystemExit(f"error: the runs are of {len(tasks)} tasks ({', '.join(sorted(tasks))}); give one task's")
    rows = {row.strategy: row for row in summarise(runs)}
    stats = {(strategy, reference): stat
             for _, strategy, reference, stat in paired_rows(runs, ("random", "me", "me+dynamic"))}
    minutes = {strategy: times["total"] / 60 for (_, strategy), times in median_times(runs).items()}

    def auc(strategy):
        row = rows[strategy]
        return [str(row.n_seeds), f"{row.auc_mean:.2f} ± {row.auc_std:.2f}"]

    table_1 = [[s, *auc(s), _difference(stats.get((s, "random"))), _interval(stats.get((s, "random")), "sentence_interval"),
                _difference(stats.get((s, "me"))), _interval(stats.get((s, "me")), "sentence_interval"),
                f"{minutes[s]:.1f}"] for s in TABLE_1 if s in rows]
    print("**Table 1** (strategies):\n")
    print(markdown_grid(["strategy", "seeds", "AUC", "- random [t]", "sentence bootstrap", "- me [t]", "sentence bootstrap",
                 "run min"], table_1))
    table_2 = [[name, *auc(s), _difference(stats.get((s, "me"))), _difference(stats.get((s, "me+dynamic"))),
                _interval(stats.get((s, "me+dynamic")), "sentence_interval"), f"{minutes[s]:.1f}"]
               for s, name in TABLE_2.items() if s in rows]
    print("\n**Table 2** (STAR's parts on ME, each against plain ME and against the dynamic mix alone):\n")
    print(markdown_grid(["strategy", "seeds", "AUC", "- me [t]", "- me+dynamic [t]", "sentence bootstrap (- me+dynamic)",
                 "run min"], table_2))
    aucs = {}
    for run in runs:
        aucs.setdefault(run.strategy, {})[run.seed] = run.auc()
    print("\nOn how many seeds each difference of Table 1 has the sign of its mean:\n")
    for (strategy, reference), stat in stats.items():
        if strategy in TABLE_1 and reference in ("random", "me"):
            seeds = set(aucs[strategy]) & set(aucs[reference])
            same = sum((aucs[strategy][seed] - aucs[reference][seed]) * stat.mean > 0 for seed in seeds)
            print(f"- {strategy} - {reference}: {same} of {len(seeds)}")


if __name__ == "__main__":
    main()
