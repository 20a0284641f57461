"""The study's two tables, laid out as the paper's Table 1 and Table 2, from its run directories.

Table 1 sets the strategies against random and plain ME; Table 2 adds STAR's parts to ME one
at a time, each against plain ME and against the dynamic mix alone. Every figure is one that
`star report --against random,me,me+dynamic` prints for the same runs (AUC mean ± sd over
seeds, paired differences in points with the 95% t interval over seeds, Holm's adjusted p over
all the comparisons that report prints, the paired bootstrap over test sentences, the median
run's minutes); this only picks and arranges them. scripts/check_claims.py writes its output
into docs/results/README.md.

    .venv/bin/python scripts/study_tables.py docs/results/cpu-sst2-study/sst2/*/seed-*
"""

import argparse
import sys

from star_al.analysis.report import find_runs, format_interval, format_p, median_times, paired_rows, summarise
from star_al.analysis.tables import markdown_grid

TABLE_1 = ("random", "me", "pe", "me+star", "pe+star")
TABLE_2 = {"me": "me", "me+dynamic": "+ dynamic", "me+dynamic+mc": "+ dynamic + MC dropout",
           "me+dynamic+l2": "+ dynamic + L2 on B", "me+star": "STAR (all three)"}
REFERENCES = ("random", "me", "me+dynamic")


def _interval(stat, which: str = "t_interval") -> str:
    """One of a comparison's intervals as the report writes it; blank where there is no comparison."""
    return "" if stat is None else format_interval(getattr(stat, which))


def _difference(stat) -> str:
    return "" if stat is None else f"{stat.mean:+.2f} {_interval(stat)}"


def _holm(stat) -> str:
    return "" if stat is None else format_p(stat.p_holm)


def study_stats(runs) -> dict:
    """(strategy, reference) -> the paired comparison, Holm-adjusted over all of them, as the report's."""
    return {(strategy, reference): stat for _, strategy, reference, stat in paired_rows(runs, REFERENCES)}


def sign_counts(runs, stats) -> dict:
    """(strategy, reference) -> (seeds on which the difference has its mean's sign, seeds), for Table 1's."""
    aucs = {}
    for run in runs:
        aucs.setdefault(run.strategy, {})[run.seed] = run.auc()
    counts = {}
    for (strategy, reference), stat in stats.items():
        if strategy in TABLE_1 and reference in ("random", "me"):
            seeds = set(aucs[strategy]) & set(aucs[reference])
            same = sum((aucs[strategy][seed] - aucs[reference][seed]) * stat.mean > 0 for seed in seeds)
            counts[(strategy, reference)] = (same, len(seeds))
    return counts


def tables(runs, stats=None) -> str:
    """Table 1, Table 2 and the sign counts, in Markdown."""
    stats = study_stats(runs) if stats is None else stats
    rows = {row.strategy: row for row in summarise(runs)}
    minutes = {strategy: times["total"] / 60 for (_, strategy), times in median_times(runs).items()}

    def auc(strategy):
        row = rows[strategy]
        return [str(row.n_seeds), f"{row.auc_mean:.2f} ± {row.auc_std:.2f}"]

    def against(strategy, reference, sentences=True):
        stat = stats.get((strategy, reference))
        return [_difference(stat), _holm(stat)] + ([_interval(stat, "sentence_interval")] if sentences else [])

    table_1 = [[s, *auc(s), *against(s, "random"), *against(s, "me"), f"{minutes[s]:.1f}"] for s in TABLE_1 if s in rows]
    table_2 = [[name, *auc(s), *against(s, "me", sentences=False), *against(s, "me+dynamic"), f"{minutes[s]:.1f}"]
               for s, name in TABLE_2.items() if s in rows]
    counts = sign_counts(runs, stats)
    return "\n".join([
        "**Table 1** (strategies):\n",
        markdown_grid(["strategy", "seeds", "AUC", "- random [t]", "Holm p", "sentence bootstrap", "- me [t]", "Holm p",
                       "sentence bootstrap", "run min"], table_1),
        "\n**Table 2** (STAR's parts on ME, each against plain ME and against the dynamic mix alone):\n",
        markdown_grid(["strategy", "seeds", "AUC", "- me [t]", "Holm p", "- me+dynamic [t]", "Holm p",
                       "sentence bootstrap (- me+dynamic)", "run min"], table_2),
        "\nOn how many seeds each difference of Table 1 has the sign of its mean:\n",
        *(f"- {strategy} - {reference}: {same} of {seeds}" for (strategy, reference), (same, seeds) in counts.items())])


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
    print(tables(runs))


if __name__ == "__main__":
    main()
