"""Every figure the README and docs/results/README.md cite about the committed sst2 runs, recomputed.

The write-ups keep those figures in generated blocks,

    <!-- figures:NAME -->
    ...
    <!-- /figures -->

which this script computes from the run directories under docs/results (config.json and
rounds.jsonl, read and compared by the functions `star report` uses: AUCs, paired t
intervals, Holm's adjustment, TOST, the paired bootstrap over test sentences, median run
times) and checks against the text. It exits 1 naming each block whose text no longer
matches, each block it does not know, finds twice or misses, and each verdict the prose
around the blocks rests on (an effect shown, one not shown, an equivalence) that the
figures no longer carry. --write rewrites the blocks in place; the verdicts are checked
either way, since a verdict that fails needs its prose rewritten, not its numbers.

    .venv/bin/python scripts/check_claims.py           # check (tests/test_claims.py runs it)
    .venv/bin/python scripts/check_claims.py --write   # rewrite the blocks after committing runs

Families (which comparisons one Holm adjustment covers) are stated where they are used: the
study's two main contrasts; all 18 comparisons of the study's paired report; STAR's three
parts over the dynamic mix (with TOST at ±0.5 points); the 7 comparisons of the beyond table.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from functools import cached_property
from pathlib import Path

import numpy as np

from star_al.analysis import paired
from star_al.analysis.report import find_runs, format_interval, format_p, median_times, paired_rows, summarise
from star_al.errors import StarError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_tables import sign_counts, study_stats, tables  # noqa: E402  (a script beside this one)

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "docs/results/README.md")
RESULTS = "docs/results"
MARGIN = 0.5  # AUC points: the equivalence margin, half of STAR's gain over random (chosen after the study)
BLOCK = re.compile(r"<!-- figures:(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /figures -->", re.S)

# The beyond table: (strategy, reference, what the row is called), one Holm family.
BEYOND_ROWS = (("me+star-warm:me+kmeans", "me+star", "cold start: `me+star --warm-start-by me+kmeans`"),
               ("me+star-warm:me+kmeans", "random", ""),
               ("me+star+kmeans", "me+star", "diversity switch: `me+star+kmeans`"),
               ("badge", "me+star", "BADGE on LoRA B: `badge`"),
               ("badge", "random", ""),
               ("me+star-dora", "me+star", "DoRA: `me+star --peft dora`"),
               ("me-ia3", "me", "IA3: `me --peft ia3` (lr 3e-2)"))
BEYOND_PATHS = ("cpu-sst2-beyond/cold-start", "cpu-sst2-beyond/diversity", "cpu-sst2-beyond/ia3",
                *(f"cpu-sst2-beyond/dora/sst2/me+star-dora/seed-{seed}" for seed in range(3)),  # seed 3 unfinished
                *(f"cpu-sst2-study/sst2/{strategy}/seed-{seed}" for strategy in ("random", "me", "me+star")
                  for seed in range(4)))
PARTS = ("me+dynamic+mc", "me+dynamic+l2", "me+star")
RERUN = "#star-on-sst2-again-and-its-components-cpu-v1-preset-the-code-of-commit-4ba7cce"  # the ablation's heading
ABLATION_AFFECTED = ("me+star", "me+dynamic", "me+dynamic+mc", "me+dynamic+l2")  # rank by base scores

# The trec study (the second testbed). Its families were fixed before its first run finished:
# the two main contrasts (Holm over the two), all six pairs of its four strategies (Holm over
# the six, as its report), and STAR's MC + L2 over the mix alone, tested for equivalence within
# ±MARGIN, sst2's margin.
TREC = "cpu-trec-study/trec"
TREC_STRATEGIES = ("random", "me", "me+dynamic", "me+star")
TREC_REFERENCES = ("random", "me", "me+dynamic")
TREC_MAIN = (("me+star", "random"), ("me+star", "me"))
TREC_PARTS = ("me+star", "me+dynamic")
TREC_SEEDS = 10  # planned
# The training schedules tried on trec before the study (scripts/measure.py trec-learnability --train-seeds):
# file under docs/results/trec-learnability/schedules, and what it changes from the cpu preset.
TREC_SCHEDULES = (("cpu.json", "`cpu` as it is (lr 5e-4, 3 epochs, at least 48 steps)"),
                  ("lr1e-3.json", "`cpu` with lr 1e-3"),
                  ("epochs8.json", "`cpu` with 8 epochs (`--epochs 8`)"))


# ---------------------------------------------------------------- formatting

def diff(stat) -> str:
    """'+0.91 [+0.11, +1.71]': the mean difference in points and its 95% t interval."""
    return f"{stat.mean:+.2f} {format_interval(stat.t_interval)}"


def ci(stat, which: str = "t_interval") -> str:
    return format_interval(getattr(stat, which))


def p(value) -> str:
    return format_p(value)


def minutes(value: float) -> str:
    return f"{value:.1f}"


def prose(*paragraphs: str) -> str:
    """Paragraphs and '- ' bullets wrapped at 90 columns, as the write-ups are."""
    out = []
    for text in paragraphs:
        bullet = text.startswith("- ")
        out.append(textwrap.fill(" ".join(text.split()), width=90, subsequent_indent="  " if bullet else "",
                                 break_on_hyphens=False, break_long_words=False))
    return "\n".join(out)


def finished(paths) -> list:
    return [run for run in find_runs([ROOT / RESULTS / path for path in paths]) if run.finished]


def by_pair(rows) -> dict:
    return {(strategy, reference): stat for _, strategy, reference, stat in rows}


def family(stats: dict, keys, margin: float | None = None) -> dict:
    """The comparisons `keys` of `stats`, Holm-adjusted (and TOST-tested within ±margin) among themselves."""
    return dict(zip(keys, paired.holm_family([stats[key] for key in keys], margin=margin)))


def excludes_zero(interval) -> bool:
    return interval is not None and (interval[0] > 0 or interval[1] < 0)


# ---------------------------------------------------------------- the figures

class Figures:
    """Every figure the blocks cite, computed once from the committed runs."""

    @cached_property
    def trec(self) -> "TrecFigures":
        return TrecFigures()

    @cached_property
    def study_runs(self):
        return finished(["cpu-sst2-study/sst2"])

    @cached_property
    def study(self) -> dict:
        """All 18 comparisons of the study's paired report, Holm over all of them."""
        return study_stats(self.study_runs)

    @cached_property
    def main(self) -> dict:
        """The study's two main contrasts (the ones its 10 seeds were chosen for), Holm over the two."""
        return family(self.study, [("me+star", "random"), ("me+star", "me")])

    @cached_property
    def parts(self) -> dict:
        """STAR's parts over the dynamic mix alone, Holm and TOST (±MARGIN) over the three."""
        return family(self.study, [(strategy, "me+dynamic") for strategy in PARTS], MARGIN)

    @cached_property
    def signs(self) -> dict:
        return sign_counts(self.study_runs, self.study)

    @cached_property
    def study_minutes(self) -> dict:
        return {strategy: times["total"] / 60 for (_, strategy), times in median_times(self.study_runs).items()}

    @cached_property
    def study_eval_seconds(self) -> float:
        """The median round's evaluation time over the study's runs (872 sentences)."""
        return float(np.median([record["timings"]["eval"] for run in self.study_runs for record in run.rounds]))

    @cached_property
    def main_job_avx2_minutes(self) -> dict:
        """The README's main job run on a 2-core AVX2-only CPU: each strategy's rounds, in minutes."""
        return {run.strategy: sum(r["timings"]["total"] for r in run.rounds) / 60
                for run in finished(["main-job-avx2"])}

    @cached_property
    def v1_random_minutes(self) -> float:
        """The median `random` run of the cpu-v1 variance study (500 sentences, 6-36 steps a round)."""
        runs = finished(["variance-cpu-recipe"])
        return float(np.median([sum(r["timings"]["total"] for r in run.rounds) / 60 for run in runs]))

    @cached_property
    def beyond_runs(self):
        return finished(BEYOND_PATHS)

    @cached_property
    def beyond(self) -> dict:
        rows = by_pair(paired_rows(self.beyond_runs, ("random", "me", "me+star")))
        return family(rows, [(strategy, reference) for strategy, reference, _ in BEYOND_ROWS], MARGIN)

    @cached_property
    def beyond_minutes(self) -> dict:
        return {strategy: times["total"] / 60 for (_, strategy), times in median_times(self.beyond_runs).items()}

    def beyond_seeds(self, strategy: str) -> list:
        return sorted(run.seed for run in self.beyond_runs if run.strategy == strategy)

    def curves(self, runs, strategy: str) -> dict:
        """seed -> accuracies in percent, round by round."""
        return {run.seed: [100 * r["accuracy"] for r in run.rounds] for run in sorted(runs, key=lambda r: r.seed)
                if run.strategy == strategy}

    @cached_property
    def full_runs(self):
        return finished(["figure1-full-cpu"])

    @cached_property
    def full(self) -> dict:
        return by_pair(paired_rows(self.full_runs, ("random",)))

    @cached_property
    def v1_runs(self):
        return finished(["cpu-sst2"])

    @cached_property
    def v1(self) -> dict:
        return by_pair(paired_rows(self.v1_runs))

    @cached_property
    def v1_full_runs(self):
        return finished(["figure1-full"])

    @cached_property
    def v1_full(self) -> dict:
        return by_pair(paired_rows(self.v1_full_runs, ("random",)))

    @cached_property
    def ablation_runs(self):
        return finished(["cpu-sst2-ablation"])

    @cached_property
    def ablation(self) -> dict:
        return by_pair(paired_rows(self.ablation_runs))

    @cached_property
    def ablation_12(self) -> dict:
        return by_pair(paired_rows([run for run in self.ablation_runs if run.seed in (1, 2)]))


class TrecFigures:
    """The trec study's figures, over the seeds finished so far (each comparison over the seeds both sides have)."""

    @cached_property
    def runs(self):
        return finished([TREC]) if (ROOT / RESULTS / TREC).is_dir() else []

    @cached_property
    def seeds(self) -> dict:
        return {strategy: sorted(run.seed for run in self.runs if run.strategy == strategy)
                for strategy in TREC_STRATEGIES}

    @cached_property
    def paired(self) -> dict:
        """All six pairs, Holm over the six (what the study's report prints)."""
        return by_pair(paired_rows(self.runs, TREC_REFERENCES))

    def _family(self, keys, margin=None) -> dict:
        present = [key for key in keys if key in self.paired and self.paired[key].p is not None]
        return family(self.paired, present, margin) if present else {}

    @cached_property
    def main(self) -> dict:
        return self._family(TREC_MAIN)

    @cached_property
    def parts(self) -> dict:
        return self._family([TREC_PARTS], MARGIN)

    @cached_property
    def minutes(self) -> dict:
        return {strategy: times["total"] / 60 for (_, strategy), times in median_times(self.runs).items()}

    @cached_property
    def classes(self) -> dict:
        """strategy -> its runs' per-class views (analysis/classes.py, as the report's tables)."""
        from star_al.analysis.classes import strategy_classes
        from star_al.data.catalog import load_task

        views, missing = strategy_classes(load_task("trec"), sorted(self.runs, key=lambda run: run.seed))
        if missing:
            raise StarError("; ".join(missing))
        return views


def aucs(runs) -> dict:
    return {row.strategy: row for row in summarise(runs)}


def falls(curve, points: float = 10.0) -> list:
    """(round, accuracy, drop) for each round more than `points` below the one before."""
    return [(i, curve[i], curve[i - 1] - curve[i]) for i in range(1, len(curve)) if curve[i - 1] - curve[i] > points]


# ---------------------------------------------------------------- the blocks

def readme_study(f: Figures) -> str:
    s, m, parts = f.study, f.main, f.parts
    over_random, over_me = s[("me+star", "random")], s[("me+star", "me")]
    me = s[("me", "random")]
    full = f.full[("me", "random")]
    return prose(
        "**What a user can conclude about STAR on this testbed** (`sst2`, SmolLM2-135M, the `cpu` preset), from "
        "the study on it (docs/results: `random`, `me` and `me+star` paired over 10 seeds, the other five strategies "
        "over 6; differences in AUC points with their 95% t interval over seeds; Holm's adjustment wherever several "
        "comparisons are read together):",
        f"- `me+star` labels buy {diff(over_random)} AUC points more than random ones (above random on "
        f"{f.signs[('me+star', 'random')][0]} of {f.signs[('me+star', 'random')][1]} seeds) and {diff(over_me)} more "
        f"than plain ME (above it on {f.signs[('me+star', 'me')][0]} of {f.signs[('me+star', 'me')][1]}). These are "
        f"the two contrasts the study was sized for, and Holm over the two keeps both (adjusted p "
        f"{p(m[('me+star', 'random')].p_holm)} and {p(m[('me+star', 'me')].p_holm)}). Counted among all "
        f"{len(s)} comparisons of the study's report, Holm keeps the gain over ME (adjusted p {p(over_me.p_holm)}) "
        f"but not the one over random ({p(over_random.p_holm)}): the gain over random is the answer to the one "
        "question the study was set up for, at the 5% level, not a figure that survives every reading.",
        f"- Plain ME's mean AUC is below random's ({diff(me)}, raw p {p(me.p)}, below it on "
        f"{f.signs[('me', 'random')][0]} of {f.signs[('me', 'random')][1]} seeds), but not after Holm over the "
        f"{len(s)} (adjusted p {p(me.p_holm)}): weak evidence that ME alone picks worse labels than chance under "
        f"LoRA, not a finding. Label-free PE is not separable from random ({diff(s[('pe', 'random')])}).",
        f"- The dynamic mix of the base model's scores alone, `me+dynamic`, is {diff(s[('me+dynamic', 'random')])} "
        f"above random (Holm over the {len(s)}: p {p(s[('me+dynamic', 'random')].p_holm)}). Over it, MC dropout "
        f"adds {diff(s[('me+dynamic+mc', 'me+dynamic')])}, L2 on B {diff(s[('me+dynamic+l2', 'me+dynamic')])} and "
        f"the three parts together {diff(s[('me+star', 'me+dynamic')])}. Tested for equivalence within ±{MARGIN:g} "
        f"points (two one-sided t tests, Holm over these three; the margin, half of STAR's gain over random, was "
        f"chosen after the study), only `me+star` against `me+dynamic` is within it (adjusted TOST p "
        f"{p(parts[('me+star', 'me+dynamic')].tost_p_holm)}); that MC or L2 alone adds nothing is not shown "
        f"(adjusted TOST p {p(parts[('me+dynamic+mc', 'me+dynamic')].tost_p_holm)} and "
        f"{p(parts[('me+dynamic+l2', 'me+dynamic')].tost_p_holm)}). So `me+dynamic` gives `me+star`'s AUC within "
        f"±{MARGIN:g} points without the MC passes' cost ({minutes(f.study_minutes['me+dynamic'])} against "
        f"{minutes(f.study_minutes['me+star'])} minutes, the median runs).",
        f"- `pe+star`'s mean is below random's ({diff(s[('pe+star', 'random')])}); only the paired bootstrap over "
        f"test sentences, {ci(s[('pe+star', 'random')], 'sentence_interval')}, which holds each seed's warm start "
        "fixed, excludes 0: not shown.",
        f"- Figure 1 redone on this preset: under LoRA, ME's difference from random is the {me.mean:+.2f} above (weak "
        f"evidence); under full fine-tuning it is {diff(full)} over {full.n} seeds. Neither side is settled, nor "
        "the contrast between them.")


def readme_beyond(f: Figures) -> str:
    b = f.beyond
    cold, cold_random = b[("me+star-warm:me+kmeans", "me+star")], b[("me+star-warm:me+kmeans", "random")]
    dora = b[("me+star-dora", "me+star")]
    ia3_falls = [falls(curve) for curve in f.curves(f.beyond_runs, "me-ia3").values()]
    drops = [drop for run_falls in ia3_falls for *_, drop in run_falls]
    return prose(
        f"Beyond the paper (docs/results; each addition paired with the study's runs of the same seeds, "
        f"{len(f.beyond_seeds('me+star-warm:me+kmeans'))} seeds, DoRA {len(f.beyond_seeds('me+star-dora'))}; Holm "
        f"over the {len(b)} comparisons read): no addition is shown to help or to hurt. A cold start from the base "
        f"model's own scores is {diff(cold)} AUC points above `me+star` and {diff(cold_random)} above random (raw; "
        f"Holm p {p(cold_random.p_holm)}); its paired bootstraps over test sentences exclude 0, but they hold each "
        "seed's warm start fixed, and the warm start is the largest source of noise at 16 labels. The diversity "
        f"switches separate from neither reference (`+kmeans` {diff(b[('me+star+kmeans', 'me+star')])} and BADGE "
        f"{diff(b[('badge', 'me+star')])} against `me+star`, BADGE {diff(b[('badge', 'random')])} against random). "
        f"DoRA is {diff(dora)} from LoRA (within ±{MARGIN:g} not shown: adjusted TOST p {p(dora.tost_p_holm)}) at "
        f"{f.beyond_minutes['me+star-dora'] / f.beyond_minutes['me+star']:.1f} times the time; IA3 (lr 3e-2) is the "
        f"cheapest ({minutes(f.beyond_minutes['me-ia3'])} minutes a run against LoRA `me`'s "
        f"{minutes(f.beyond_minutes['me'])}) and the least steady: {sum(map(bool, ia3_falls))} of its "
        f"{len(ia3_falls)} runs have a round {min(drops):.0f}-{max(drops):.0f} points below the one before.")


def readme_main_job(f: Figures) -> str:
    """The README's first screen: what the main job costs on both CPU classes and what one seed shows."""
    over_random = f.study[("me+star", "random")]
    fast = f.study_minutes["random"] + f.study_minutes["me+star"]
    slow = sum(f.main_job_avx2_minutes.values())
    return prose(
        f"Its rounds take about {fast:.0f} minutes on 2 CPU cores where bf16 is fast (AVX512-BF16 or AMX: the "
        f"study's median `random` and `me+star` runs, {minutes(f.study_minutes['random'])} and "
        f"{minutes(f.study_minutes['me+star'])}) and about {slow:.0f} where bf16 is emulated (AVX2 only, as on "
        f"many laptops and desktops: {minutes(f.main_job_avx2_minutes['random'])} and "
        f"{minutes(f.main_job_avx2_minutes['me+star'])} in docs/results/main-job-avx2); `star sweep` says its "
        "estimate for your machine before the first run. One seed shows the curves and the table, not which "
        f"strategy is better: `me+star`'s AUC minus random's varies by {over_random.sd:.1f} points from seed to "
        f"seed, more than its mean of {over_random.mean:+.2f} over the {over_random.n} paired seeds of the study "
        "(see [Results](#results)).")


def readme_cost(f: Figures) -> str:
    return prose(
        f"What it costs: the study's median `random` run took {minutes(f.study_minutes['random'])} minutes, "
        f"{f.study_minutes['random'] / f.v1_random_minutes:.1f} times the {minutes(f.v1_random_minutes)} of the "
        "`cpu-v1` variance study's (each round trains at least 48 steps and evaluates 872 sentences, not 500).")


def readme_preset_times(f: Figures) -> str:
    return prose(
        f"The study's median `random` run took {minutes(f.study_minutes['random'])} minutes and its median "
        f"`me+star` run {minutes(f.study_minutes['me+star'])} on the 2-core machine (round times are in each run's "
        "`rounds.jsonl`); training dominates, then MC-dropout scoring, then evaluation on all 872 dev sentences "
        f"({f.study_eval_seconds:.1f} s a round, the median).")


def study_tables(f: Figures) -> str:
    return tables(f.study_runs, f.study)


def study_findings(f: Figures) -> str:
    s, m, parts, signs = f.study, f.main, f.parts, f.signs
    over_random, over_me = s[("me+star", "random")], s[("me+star", "me")]
    me = s[("me", "random")]

    def tost(key):
        return p(parts[key].tost_p_holm)
    return prose(
        f"- **STAR beats both random and ME in the study's two main contrasts.** `me+star` is {diff(over_random)} "
        f"above random (above it on {signs[('me+star', 'random')][0]} of {signs[('me+star', 'random')][1]} seeds; "
        f"sentence bootstrap {ci(over_random, 'sentence_interval')}) and {diff(over_me)} above plain ME (above it on "
        f"{signs[('me+star', 'me')][0]} of {signs[('me+star', 'me')][1]}); both t intervals are narrower than ±1 "
        f"point. Holm over these two, the contrasts the study ran 10 seeds for, keeps both (adjusted p "
        f"{p(m[('me+star', 'random')].p_holm)} and {p(m[('me+star', 'me')].p_holm)}; Holm intervals "
        f"{ci(m[('me+star', 'random')], 'holm_interval')} and {ci(m[('me+star', 'me')], 'holm_interval')}). Read "
        f"as one of all {len(s)} comparisons of the paired report, the gain over random does not survive Holm "
        f"(adjusted p {p(over_random.p_holm)}, Holm interval {ci(over_random, 'holm_interval')}); the gain over ME "
        f"does ({p(over_me.p_holm)}).",
        f"- **Plain ME below random: weak evidence, not a finding.** ME's mean is {diff(me)} (raw p {p(me.p)}, "
        f"below random on {signs[('me', 'random')][0]} of {signs[('me', 'random')][1]} seeds; sentence bootstrap "
        f"{ci(me, 'sentence_interval')}), but after Holm over the report's {len(s)} comparisons its p is "
        f"{p(me.p_holm)} and its Holm interval {ci(me, 'holm_interval')}. Label-free PE is not separable from "
        f"random either ({diff(s[('pe', 'random')])}, 6 seeds). The means order STAR above random above ME (the "
        "paper's Figure 1 observation under LoRA, with STAR repairing it); of that order, STAR above both is shown "
        "in the main contrasts, random above ME is not.",
        "- **The gain over random is the dynamic mix's; MC dropout and L2 on B are not shown to matter.** ME with "
        "the base model's scores mixed in (lambda 0.9 down to 0.5) is "
        f"{diff(s[('me+dynamic', 'me')])} above ME and {diff(s[('me+dynamic', 'random')])} above random (6 seeds; "
        f"Holm p over the {len(s)}: {p(s[('me+dynamic', 'me')].p_holm)} and "
        f"{p(s[('me+dynamic', 'random')].p_holm)}). Over the mix alone, MC dropout adds "
        f"{diff(s[('me+dynamic+mc', 'me+dynamic')])}, L2 on B {diff(s[('me+dynamic+l2', 'me+dynamic')])}, and all "
        f"three together {diff(s[('me+star', 'me+dynamic')])}. Tested for equivalence within ±{MARGIN:g} points "
        f"(TOST, Holm over these three; the margin is half of STAR's gain over random, chosen after the study, not "
        f"before), only all three together are within it of the mix alone (adjusted TOST p "
        f"{tost(('me+star', 'me+dynamic'))}); MC's ({tost(('me+dynamic+mc', 'me+dynamic'))}) and L2's "
        f"({tost(('me+dynamic+l2', 'me+dynamic'))}) are not, and MC's interval reaches "
        f"{s[('me+dynamic+mc', 'me+dynamic')].t_interval[0]:+.2f}, close to STAR's whole gain over random. The "
        "paper's Table 2 has every part helping; here only the first shows an effect that survives Holm, and that "
        "against random.",
        f"- **PE + STAR: below random and below the ME mix in the mean, neither shown.** `pe+star` is "
        f"{diff(s[('pe+star', 'random')])} against random, where only the paired bootstrap over test sentences "
        f"({ci(s[('pe+star', 'random')], 'sentence_interval')}), which holds each seed's warm start fixed, excludes "
        f"0; and {diff(s[('pe+star', 'me+dynamic')])} against `me+dynamic`, whose raw interval excludes 0 but not "
        f"after Holm over the {len(s)} (p {p(s[('pe+star', 'me+dynamic')].p_holm)}).",
        f"- **What it costs:** the dynamic mix is free (the base model's scores are computed once per pool and "
        f"cached): `me+dynamic`'s median run took {minutes(f.study_minutes['me+dynamic'])} minutes against `me`'s "
        f"{minutes(f.study_minutes['me'])}; the three MC passes add about "
        f"{(f.study_minutes['me+star'] - f.study_minutes['me+dynamic']) * 60:.0f} s a run "
        f"({minutes(f.study_minutes['me+dynamic+mc'])}-{minutes(f.study_minutes['me+star'])} minutes); random takes "
        f"{minutes(f.study_minutes['random'])}. On this testbed, take `me+dynamic` (or `me+star`, within "
        f"±{MARGIN:g} of it) over `me`, and expect about one AUC point over random labelling between 16 and 96 "
        "labels, with the uncertainty above.")


def beyond_table(f: Figures) -> str:
    b = f.beyond
    lines = ["| addition | against | seeds | mean | t interval | Holm p | sentence bootstrap | run time (min) |",
             "|---|---|---|---|---|---|---|---|"]
    for strategy, reference, name in BEYOND_ROWS:
        stat = b[(strategy, reference)]
        time = (f"{minutes(f.beyond_minutes[strategy])} ({minutes(f.beyond_minutes[reference])})" if name
                else f"({minutes(f.beyond_minutes[reference])})")
        against = f"`{reference}`" + (" (LoRA)" if strategy.endswith(("-dora", "-ia3")) else "")
        lines.append(f"| {name} | {against} | {stat.n} | {stat.mean:+.2f} | {ci(stat)} | {p(stat.p_holm)} | "
                     f"{ci(stat, 'sentence_interval')} | {time} |")
    return "\n".join(lines)


def beyond_findings(f: Figures) -> str:
    b = f.beyond
    cold, cold_random = b[("me+star-warm:me+kmeans", "me+star")], b[("me+star-warm:me+kmeans", "random")]
    kmeans, badge, badge_random = b[("me+star+kmeans", "me+star")], b[("badge", "me+star")], b[("badge", "random")]
    dora, ia3 = b[("me+star-dora", "me+star")], b[("me-ia3", "me")]
    seeds = f.beyond_seeds("me+star-warm:me+kmeans")
    first = {strategy: " / ".join(f"{curve[0]:.1f}" for curve in f.curves(f.beyond_runs, strategy).values())
             for strategy in ("me+star", "me+star-warm:me+kmeans")}
    ia3_falls = {seed: falls(curve) for seed, curve in f.curves(f.beyond_runs, "me-ia3").items()}
    n_rounds = len(next(iter(f.curves(f.beyond_runs, "me-ia3").values())))
    fell = [(seed, i, acc) for seed, run_falls in ia3_falls.items() for i, acc, _ in run_falls]
    last = [seed for seed, i, _ in fell if i == n_rounds - 1]
    sizes = {seed: [r["n_labeled"] for r in run.rounds] for seed, run in
             ((run.seed, run) for run in f.beyond_runs if run.strategy == "me-ia3")}
    return prose(
        f"- **Cold start: a larger mean, not shown.** Choosing the 16 warm-start labels from the base model's own "
        f"scores (the most uncertain candidate of each of 16 k-means clusters of its hidden states) instead of at "
        f"random moved the first round from {first['me+star']}% to {first['me+star-warm:me+kmeans']}% (seeds "
        f"{seeds[0]}-{seeds[-1]}) and the whole curve by {diff(cold)} over `me+star` and {diff(cold_random)} over "
        f"`random`. The sentence bootstraps exclude 0 ({ci(cold, 'sentence_interval')}, "
        f"{ci(cold_random, 'sentence_interval')}), but they hold each seed's warm start fixed, and the warm start is "
        "the largest source of noise at 16 labels; the seed interval over `random` excludes 0 raw, not after Holm "
        f"over the table's {len(b)} (p {p(cold_random.p_holm)}). It costs nothing in labels and a few seconds of "
        "k-means on scores the base model computes anyway.",
        f"- **The diversity switches: no difference shown.** Top-scoring candidate per k-means cluster (`+kmeans`) "
        f"on `me+star` is {diff(kmeans)} against plain `me+star`; BADGE (with its gradient embedding on the last "
        f"layer's LoRA B, from the scoring pass) is {diff(badge)} against `me+star` and {diff(badge_random)} against "
        "random. Their sentence bootstraps against `me+star` exclude 0; their seed intervals do not.",
        f"- **DoRA: no difference shown, about twice the time.** `me+star` with DoRA is {diff(dora)} from it "
        f"with LoRA over {dora.n} seeds (its seed 3 is not finished); equivalence within ±{MARGIN:g} is not shown "
        f"(TOST p {p(dora.tost_p)} raw, {p(dora.tost_p_holm)} after Holm over the table's {len(b)}). It takes "
        f"{f.beyond_minutes['me+star-dora'] / f.beyond_minutes['me+star']:.1f} times as long (PEFT's DoRA forward "
        "and its weight norm, against star's fused LoRA path).",
        f"- **IA3: the cheapest and the least steady.** At lr 3e-2 (LoRA's rates barely move it) it trains fastest, "
        f"but {len({seed for seed, *_ in fell})} of {len(ia3_falls)} runs have a round more than 10 points below "
        "the one before ("
        + ", ".join(f"{acc:.1f}% at {sizes[seed][i]} labels on seed {seed}" for seed, i, acc in fell)
        + "), "
        + (f"seed {', '.join(map(str, last))}'s in its last round, so that curve ends there; " if last else "")
        + f"over the curve it is {diff(ia3)} against LoRA `me` (sentence bootstrap {ci(ia3, 'sentence_interval')}). "
        "A lower rate may steady it; not measured.")


def figure1_cpu(f: Figures) -> str:
    lora, full = f.study[("me", "random")], f.full[("me", "random")]
    lora_rows, full_rows = aucs([run for run in f.study_runs if run.strategy in ("random", "me")]), aucs(f.full_runs)
    lines = ["| fine-tuning | seeds | random AUC | me AUC | me - random, paired by seed [95% t interval] | raw p | "
             "sentence bootstrap | seeds for ±1 |", "|---|---|---|---|---|---|---|---|"]
    for name, stat, rows in (("LoRA", lora, lora_rows), ("full", full, full_rows)):
        lines.append(f"| {name} | {stat.n} | {rows['random'].auc_mean:.2f} ± {rows['random'].auc_std:.2f} | "
                     f"{rows['me'].auc_mean:.2f} ± {rows['me'].auc_std:.2f} | {diff(stat)} | {p(stat.p)} | "
                     f"{ci(stat, 'sentence_interval')} | {stat.seeds_for_width} |")
    full_seeds = {run.seed for run in f.full_runs}

    def lora_aucs(strategy):
        return {run.seed: run.auc() for run in f.study_runs if run.strategy == strategy and run.seed in full_seeds}
    first = paired.compare(lora_aucs("me"), lora_aucs("random"))
    signs = f.signs[("me", "random")]
    return "\n".join(lines) + "\n\n" + prose(
        f"Under LoRA, ME's mean is below random's over {lora.n} seeds (below it on {signs[0]} of {signs[1]}); the t "
        f"interval just excludes zero (p {p(lora.p)}), the sentence bootstrap clearly, but the same difference is one "
        f"of the {len(f.study)} comparisons of the study's report, after Holm over which its p is {p(lora.p_holm)}: "
        "weak evidence for the paper's motivating observation on this testbed, not a confirmation. Whether full "
        f"fine-tuning turns it around is not settled: over its {full.n} seeds ME is {full.mean:+.2f} points from "
        f"random with an interval of ±{(full.t_interval[1] - full.t_interval[0]) / 2:.1f} (on the same {full.n} "
        f"seeds LoRA's difference was {diff(first)}, so the two sides are not distinguishable from each other). The "
        "full side wants the study's 10 seeds too (about 50 minutes more of this machine, the sweep line above with "
        "`--seeds 0,...,9`).")


def figure1_cpu_v1(f: Figures) -> str:
    lora, full = f.v1[("me", "random")], f.v1_full[("me", "random")]
    lora_rows = aucs([run for run in f.v1_runs if run.strategy in ("random", "me")])
    full_rows = aucs(f.v1_full_runs)
    rerun = f.ablation[("me", "random")]
    lines = ["| fine-tuning | random AUC | me AUC | me - random, paired by seed [95% t interval] | seeds needed |",
             "|---|---|---|---|---|"]
    for name, stat, rows in (("LoRA", lora, lora_rows), ("full", full, full_rows)):
        lines.append(f"| {name} | {rows['random'].auc_mean:.2f} ± {rows['random'].auc_std:.2f} | "
                     f"{rows['me'].auc_mean:.2f} ± {rows['me'].auc_std:.2f} | {diff(stat)} | {stat.seeds_needed} |")
    gains = [100 * (a.auc() - b.auc()) for a in f.v1_runs for b in f.v1_runs
             if a.strategy == "me" and b.strategy == "random" and a.seed == b.seed]

    def mean_at(runs, strategy, round_index):
        return np.mean([100 * run.rounds[round_index]["accuracy"] for run in runs if run.strategy == strategy])
    at = {i: (mean_at(f.v1_full_runs, "me", i), mean_at(f.v1_full_runs, "random", i)) for i in (1, 3)}
    labels = {i: f.v1_full_runs[0].rounds[i]["n_labeled"] for i in (1, 3)}
    return "\n".join(lines) + "\n\n" + prose(
        "Paired by seed, the picture reads the other way round from the unpaired intervals this section first gave "
        f"(LoRA \"+6.1 RIPL [-1.5, 13.1]\", full \"+11.7 [7.3, 15.9]\"): under LoRA, ME's gain over random was "
        f"{min(gains):+.1f} to {max(gains):+.1f} points on the {lora.n} seeds, so its interval excluded 0; but "
        f"[the rerun of the same preset and seeds]({RERUN}) (whose `random` and `me` runs use no base scores) "
        f"gives {diff(rerun)}: the margin did not repeat, and "
        "neither sweep shows ME beating random. Under full fine-tuning the mean gain is larger but varies more "
        f"between seeds (gains at {labels[1]} labels, {at[1][0]:.1f}% against {at[1][1]:.1f}%, and at {labels[3]}, "
        f"{at[3][0]:.1f}% against {at[3][1]:.1f}%), and {full.n} seeds do not establish it. Neither half of the "
        "paper's picture is shown here. (The LoRA runs predate the cheaper dropout masks of a later commit, which "
        "draw a different random stream with the same distribution: a rerun reproduces them statistically, not bit "
        "for bit.)")


def cpu_v1_first(f: Figures) -> str:
    v1 = f.v1
    curves = f.curves(f.v1_runs, "random")
    start = [curve[0] for curve in curves.values()]
    end = [curve[-1] for curve in curves.values()]
    pe_star = next(iter(f.curves(f.v1_runs, "pe+star").values()))
    sizes = [r["n_labeled"] for r in f.v1_runs[0].rounds]
    dips = [(sizes[i], acc) for i, acc, _ in falls(pe_star) if i >= 2]
    rerun = f.ablation[("me", "random")]
    return prose(
        f"- The curve rises: random goes from {min(start):.0f}-{max(start):.0f}% at {sizes[0]} labels to about "
        f"{np.mean(end):.0f}% at {sizes[-1]}, so strategies can differ here. With {sizes[0]} or {sizes[1]} labels "
        "the adapter often collapses to one answer for every sentence, whatever the strategy.",
        f"- `me - random` is {diff(v1[('me', 'random')])} over {v1[('me', 'random')].n} seeds here (raw; Holm over "
        f"this report's comparisons: p {p(v1[('me', 'random')].p_holm)}), and the rerun of the same preset and seeds "
        f"([below]({RERUN})) gives "
        f"{diff(rerun)}: no gain of plain uncertainty sampling is shown on this preset. `pe - random` is "
        f"{diff(v1[('pe', 'random')])}: not separable.",
        f"- One seed of `me+star` ({v1[('me+star', 'random')].mean:+.2f} against random) and of `pe+star` "
        f"({v1[('pe+star', 'random')].mean:+.2f}, with "
        + ", ".join(f"a dip to {acc:.1f}% at {n} labels" for n, acc in dips)
        + ") say nothing about STAR on their own.",
        "- Calibration per round (`star report --calibration`; every run's rounds in `points.csv`): the collapsed "
        "and nearly collapsed rounds are the high-ECE ones. (An earlier version gave 0.14 as the bound outside "
        "collapsed rounds; it is exceeded in `points.csv`, so no bound is claimed.)")


def ablation_table(f: Figures) -> str:
    lines = ["| comparison | seeds | mean | 95% t interval | seeds needed | base scores |", "|---|---|---|---|---|---|"]
    for (strategy, reference), stats in (*(((s, r), f.ablation) for s, r in
                                           (("me", "random"), ("me+star", "random"), ("me+star", "me"))),
                                         *(((s, "me"), f.ablation_12) for s in
                                           ("me+dynamic", "me+dynamic+mc", "me+dynamic+l2", "me+star"))):
        stat = stats[(strategy, reference)]
        seeds = sorted({run.seed for run in f.ablation_runs if run.strategy == strategy} &
                       {run.seed for run in f.ablation_runs if run.strategy == reference} &
                       ({1, 2} if stats is f.ablation_12 else {0, 1, 2}))
        mark = "predates the fix, unrecorded" if strategy in ABLATION_AFFECTED else "not used"
        lines.append(f"| {strategy} - {reference} | {seeds[0]}-{seeds[-1]} | {stat.mean:+.2f} | {ci(stat)} | "
                     f"{stat.seeds_needed} | {mark} |")
    last = [100 * run.rounds[-1]["accuracy"] for run in f.ablation_runs]
    later = [100 * r["accuracy"] for run in f.ablation_runs for r in run.rounds[2:]]
    needed = [f.ablation[key].seeds_needed for key in (("me", "random"), ("me+star", "random"), ("me+star", "me"))]
    return "\n".join(lines) + "\n\n" + prose(
        f"- No adapter collapsed: every run of every strategy ends between {min(last):.1f}% and {max(last):.1f}%, "
        f"and after 32 labels no round falls below {np.floor(min(later)):.0f}%.",
        f"- No difference between `random`, `me` and `me+star` is separable from seed noise on 3 seeds (at the "
        f"measured spread they would need {min(needed)}-{max(needed)} seeds), and the components' rows rest on "
        "runs whose base scores are not known to be clean. This preset and these runs cannot tell whether STAR "
        "helps; the study on the `cpu` preset above is what answers it.")


def schedule_stats(name: str) -> dict:
    """One schedule's runs on the same 96 labels: accuracies (percent), their mean and sd, mean last loss."""
    import json

    trained = json.loads((ROOT / RESULTS / "trec-learnability" / "schedules" / name).read_text())["trained"]
    accuracy = [100 * run["accuracy"] for run in trained]
    return {"steps": trained[0]["train_steps"], "accuracy": accuracy, "mean": float(np.mean(accuracy)),
            "sd": float(np.std(accuracy, ddof=1)), "loss": float(np.mean([run["loss_last"] for run in trained])),
            "balanced": 100 * float(np.mean([run["balanced_accuracy"] for run in trained]))}


def trec_schedules(f) -> str:
    """What each schedule tried reaches on the same 96 random labels, over its training seeds."""
    lines = ["| schedule | steps | accuracy per training seed | mean | sd (training luck) | balanced | last loss |",
             "|---|---|---|---|---|---|---|"]
    for name, what in TREC_SCHEDULES:
        x = schedule_stats(name)
        lines.append(f"| {what} | {x['steps']} | " + ", ".join(f"{a:.1f}" for a in x["accuracy"])
                     + f" | {x['mean']:.1f} | {x['sd']:.1f} | {x['balanced']:.1f} | {x['loss']:.2f} |")
    return "\n".join(lines)


def trec_status(t: TrecFigures) -> str:
    done = [len(t.seeds[strategy]) for strategy in TREC_STRATEGIES]
    if min(done) >= TREC_SEEDS:
        return f"All four strategies on {TREC_SEEDS} paired seeds."
    return ("Still running: finished seeds so far " + ", ".join(
        f"`{strategy}` {len(t.seeds[strategy])}" for strategy in TREC_STRATEGIES) + f" of the {TREC_SEEDS} planned "
        "(the sweep line above continues where it stopped); every figure below is over the seeds finished, "
        "each comparison over the seeds both sides have, and will move as the rest come in.")


def holm_verdict(stat) -> str:
    """What one comparison shows, in words its Holm-adjusted p carries."""
    if stat is None or stat.p_holm is None:
        return "not testable yet (fewer than two paired seeds)"
    if stat.p_holm < paired.ALPHA:
        return f"shown ({'above' if stat.mean > 0 else 'below'}; Holm p {p(stat.p_holm)})"
    return f"not shown (Holm p {p(stat.p_holm)})"


def trec_table(t: TrecFigures) -> str:
    if not t.runs:
        return trec_status(t)
    rows = aucs(t.runs)
    lines = ["| strategy | seeds | AUC | - random [t] | Holm p (6) | sentence bootstrap | - me [t] | Holm p (6) | "
             "run min |", "|---|---|---|---|---|---|---|---|---|"]
    for strategy in TREC_STRATEGIES:
        if strategy not in rows:
            continue
        vs_random, vs_me = t.paired.get((strategy, "random")), t.paired.get((strategy, "me"))
        cells = ((["", "", ""] if vs_random is None else
                  [diff(vs_random), p(vs_random.p_holm), ci(vs_random, "sentence_interval")])
                 + (["", ""] if vs_me is None else [diff(vs_me), p(vs_me.p_holm)]))
        lines.append(f"| {strategy} | {rows[strategy].n_seeds} | {rows[strategy].auc_mean:.2f} ± "
                     f"{rows[strategy].auc_std:.2f} | " + " | ".join(cells) + f" | {minutes(t.minutes[strategy])} |")
    from star_al.analysis.classes import classes_tables
    from star_al.analysis.report import strategy_order

    by_class = classes_tables(t.classes, lambda strategies: strategy_order(strategies, "random"))
    return "\n".join([prose(trec_status(t)), "", *lines, "", by_class])


def trec_findings(t: TrecFigures) -> str:
    if not t.runs:
        return trec_status(t)
    sp = t.paired
    main = [(key, t.main.get(key)) for key in TREC_MAIN]
    pair = t.parts.get(TREC_PARTS)

    def abbr(strategy) -> str:
        views = t.classes.get(strategy, [])
        accuracy = np.mean([100 * view.accuracy["abbreviation"] for view in views])
        asked = [view.queried["abbreviation"] for view in views if view.queried is not None]
        never = sum(count == 0 for count in asked)
        return (f"`{strategy}` {accuracy:.1f}%" + (f", {np.mean(asked):.1f} queried a run, none in {never} of "
                                                   f"{len(asked)} runs" if asked else ""))
    lines = [f"- `{a}` - `{b}`: {diff(stat)} over {stat.n} seeds; Holm over the two main contrasts: "
             f"{holm_verdict(stat)}; over all six: {holm_verdict(sp[(a, b)])}." if stat is not None else
             f"- `{a}` - `{b}`: {holm_verdict(None)}." for (a, b), stat in main]
    for key in (("me+dynamic", "random"), ("me+dynamic", "me"), ("me", "random")):
        stat = sp.get(key)
        if stat is not None:
            lines.append(f"- `{key[0]}` - `{key[1]}`: {diff(stat)} over {stat.n} seeds; over all six: "
                         f"{holm_verdict(stat)}.")
    if pair is not None and pair.tost_p is not None:
        equivalent = ("within it" if pair.equivalent else "not shown within it")
        lines.append(f"- MC dropout and L2 on B over the mix alone (`me+star` - `me+dynamic`): {diff(pair)}; "
                     f"equivalence within ±{MARGIN:g} points (TOST): {equivalent} (p {p(pair.tost_p)}).")
    lines.append("- The rare class, abbreviation (9 of the 500 test questions, about 1.6% of the pool): mean "
                 "accuracy on it after the last round, and how many abbreviation questions a strategy queried "
                 "after the warm start: " + "; ".join(abbr(s) for s in TREC_STRATEGIES if s in t.classes) + ".")
    lines.append("- Cost: median run " + ", ".join(
        f"`{s}` {minutes(t.minutes[s])}" for s in TREC_STRATEGIES if s in t.minutes) + " minutes.")
    return prose(trec_status(t)) + "\n\n" + prose(*lines)


def readme_trec(t: TrecFigures) -> str:
    if not t.runs:
        return prose("A second testbed, TREC question classification (six classes, imbalanced): " + trec_status(t))
    said = [f"`{a}` - `{b}` {diff(stat)} over {stat.n} seeds, {holm_verdict(stat)}"
            for (a, b), stat in ((key, t.main.get(key)) for key in TREC_MAIN) if stat is not None]
    return prose(
        "A second testbed, TREC question classification (`trec`: six classes, imbalanced; SmolLM2-135M, the `cpu` "
        "preset with 8 epochs; docs/results): " + ("; ".join(said) + " (Holm over the same two main contrasts as sst2's). "
                                      if said else "no paired comparison yet. ") + trec_status(t))


BLOCKS = {"readme-main-job": readme_main_job, "readme-study": readme_study, "readme-beyond": readme_beyond, "readme-cost": readme_cost,
          "readme-preset-times": readme_preset_times, "study-tables": study_tables, "study-findings": study_findings,
          "beyond-table": beyond_table, "beyond-findings": beyond_findings, "figure1-cpu": figure1_cpu,
          "figure1-cpu-v1": figure1_cpu_v1, "cpu-v1-first": cpu_v1_first, "ablation-table": ablation_table,
          "trec-table": lambda f: trec_table(f.trec), "trec-findings": lambda f: trec_findings(f.trec),
          "readme-trec": lambda f: readme_trec(f.trec), "trec-schedules": trec_schedules}


# ---------------------------------------------------------------- the verdicts the prose states

def verdicts(f: Figures) -> list[tuple[str, bool]]:
    """(what the prose says, whether the figures still carry it)."""
    s, b = f.study, f.beyond
    half_widths = [(s[key].t_interval[1] - s[key].t_interval[0]) / 2
                   for key in (("me+star", "random"), ("me+star", "me"))]
    return [
        ("me+star above random and above me, Holm over the two main contrasts",
         all(stat.p_holm < paired.ALPHA for stat in f.main.values())),
        ("both main t intervals narrower than ±1 point", max(half_widths) < 1),
        ("over the 18, Holm keeps me+star - me and not me+star - random",
         s[("me+star", "me")].p_holm < paired.ALPHA <= s[("me+star", "random")].p_holm),
        ("plain ME below random: raw t interval excludes 0, Holm over the 18 does not",
         s[("me", "random")].t_interval[1] < 0 and s[("me", "random")].p_holm >= paired.ALPHA),
        ("pe - random not separable", not excludes_zero(s[("pe", "random")].t_interval)),
        ("me+dynamic above random after Holm over the 18", s[("me+dynamic", "random")].p_holm < paired.ALPHA),
        ("of STAR's parts over the mix, only me+star is within ±0.5 (TOST, Holm over three)",
         [f.parts[(x, "me+dynamic")].equivalent for x in PARTS] == [False, False, True]),
        ("pe+star - random: seed interval includes 0, sentence bootstrap excludes it",
         not excludes_zero(s[("pe+star", "random")].t_interval)
         and excludes_zero(s[("pe+star", "random")].sentence_interval)),
        ("figure 1, full fine-tuning: not settled", not excludes_zero(f.full[("me", "random")].t_interval)),
        ("beyond: no addition shown to help or hurt after Holm over the table",
         all(stat.p_holm >= paired.ALPHA for stat in b.values())),
        ("beyond: cold start over me+star, seed interval includes 0",
         not excludes_zero(b[("me+star-warm:me+kmeans", "me+star")].t_interval)),
        ("beyond: diversity switches' seed intervals include 0",
         not any(excludes_zero(b[key].t_interval) for key in
                 (("me+star+kmeans", "me+star"), ("badge", "me+star"), ("badge", "random")))),
        ("beyond: DoRA not shown within ±0.5", not b[("me+star-dora", "me+star")].equivalent),
        ("cpu-v1: the rerun's me - random includes 0", not excludes_zero(f.ablation[("me", "random")].t_interval)),
        ("cpu-v1: the first sweep's me - random not kept by Holm over its report",
         f.v1[("me", "random")].p_holm >= paired.ALPHA),
        ("pe+star - me+dynamic: raw interval excludes 0, Holm over the 18 does not",
         excludes_zero(s[("pe+star", "me+dynamic")].t_interval)
         and s[("pe+star", "me+dynamic")].p_holm >= paired.ALPHA),
        ("beyond: the diversity switches' sentence bootstraps against me+star exclude 0",
         all(excludes_zero(b[key].sentence_interval) for key in (("me+star+kmeans", "me+star"), ("badge", "me+star")))),
        ("beyond: cold start's sentence bootstraps exclude 0", all(excludes_zero(b[("me+star-warm:me+kmeans", r)]
                                                                  .sentence_interval) for r in ("me+star", "random"))),
        ("beyond: DoRA takes about twice LoRA's time",
         1.75 <= f.beyond_minutes["me+star-dora"] / f.beyond_minutes["me+star"] < 2.25),
        ("beyond: IA3 the cheapest run", min(f.beyond_minutes, key=f.beyond_minutes.get) == "me-ia3"),
        *trec_schedule_verdicts(),
    ]


def trec_schedule_verdicts() -> list[tuple[str, bool]]:
    cpu, fast, long = (schedule_stats(name) for name, _ in TREC_SCHEDULES)
    return [("trec: the cpu preset's training luck at 96 labels is several times one point", cpu["sd"] >= 3),
            ("trec: the cpu preset's runs do not fit their labels (last loss above half a nat)", cpu["loss"] > 0.5),
            ("trec: lr 1e-3 raises the mean but not the spread", fast["mean"] > cpu["mean"] and fast["sd"] >= cpu["sd"]),
            ("trec: 8 epochs fits the labels and brings the spread down",
             long["loss"] < 0.2 and long["sd"] < cpu["sd"] and long["mean"] > max(cpu["mean"], fast["mean"]))]


# ---------------------------------------------------------------- checking and writing

def block_body(content: str) -> str:
    return "\n" + content.rstrip("\n") + "\n\n"


def check_document(text: str, computed: dict, where: str) -> tuple[str, list[str]]:
    """The text with every block rewritten from `computed`, and what differed or is wrong, named."""
    problems = []
    seen = set()

    def rewrite(match):
        name = match.group("name")
        if name not in computed:
            problems.append(f"{where}: block {name!r} is not one this script computes")
            return match.group(0)
        if name in seen:
            problems.append(f"{where}: block {name!r} appears twice")
        seen.add(name)
        body = block_body(computed[name])
        if match.group("body") != body:
            problems.append(f"{where}: block {name!r} no longer matches the committed runs")
        return f"<!-- figures:{name} -->\n{body}<!-- /figures -->"
    return BLOCK.sub(rewrite, text), problems


def run(root: Path = ROOT, documents=DOCUMENTS, write: bool = False, blocks=None, figures=None) -> list[str]:
    """Check (or rewrite) the blocks of `documents` under `root`; the problems found, empty when all holds."""
    blocks = BLOCKS if blocks is None else blocks
    figures = Figures() if figures is None else figures
    computed = {name: make(figures) for name, make in blocks.items()}
    problems, found = [], set()
    for document in documents:
        path = Path(root) / document
        text = path.read_text()
        found |= {match.group("name") for match in BLOCK.finditer(text)}
        new_text, document_problems = check_document(text, computed, document)
        if write and new_text != text:
            path.write_text(new_text)
            document_problems = [problem for problem in document_problems if "no longer matches" not in problem]
        problems += document_problems
    problems += [f"block {name!r} is in none of {', '.join(documents)}" for name in computed if name not in found]
    if blocks is BLOCKS:
        problems += [f"verdict no longer carried by the figures: {claim}" for claim, holds in verdicts(figures)
                     if not holds]
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="rewrite the blocks from the committed runs")
    args = parser.parse_args()
    problems = run(write=args.write)
    for problem in problems:
        print(f"check_claims: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_claims: every block of {', '.join(DOCUMENTS)} {'written from' if args.write else 'matches'} "
              "the committed runs, and every verdict holds")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
