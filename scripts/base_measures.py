"""What the untuned base model's scores rank: its ME against its label-free PE, per run.

The dynamic mix (STAR's first part) starts from the base model's scores at lambda 0.9. On a
label task the untuned model may barely expect the label words at all; then its
label-free PE, -log p(y_hat), measures how foreign the answer format is to the sentence
rather than which answer is in doubt, and ranks the pool unlike its ME. This prints, for
each run directory's base_scores.npz (written by every run; not committed, so rerun the
runs first), the Spearman correlation of the base ME and PE over the pool, the median
probability of the likeliest label word, and each measure's top-40 picks' share of the
majority answer.

    .venv/bin/python scripts/base_measures.py RUN_DIR... [--data-root ../shared/data]
"""

import argparse
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from star_al.data.catalog import load_task

from star_al.data.tasks import load_examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories holding base_scores.npz")
    parser.add_argument("--data-root", default=os.environ.get("STAR_DATA_ROOT", "../shared/data"))
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()

    print(f"| run | pool | Spearman(base ME, base PE) | median p(likeliest label) "
          f"| top-{args.top} by ME: majority share | top-{args.top} by PE: majority share |")
    print("|---|---|---|---|---|---|")
    gold = {}
    for run in map(Path, args.runs):
        task = json.loads((run / "config.json").read_text())["task"]
        if task not in gold:
            gold[task] = {e.id: e.gold for e in load_examples(load_task(task), "train", data_root=args.data_root)}
        with np.load(run / "base_scores.npz") as scores:
            ids, me, pe = scores["ids"], scores["me"], scores["pe"]

        def majority(ranking):
            picked = [gold[task][int(i)] for i in ids[np.argsort(-ranking, kind="stable")[:args.top]]]
            return max(Counter(picked).values()) / len(picked)

        print(f"| {run} | {len(ids)} | {spearmanr(me, pe)[0]:+.2f} | {np.exp(-np.median(pe)):.1e} "
              f"| {majority(me):.2f} | {majority(pe):.2f} |")


if __name__ == "__main__":
    main()
