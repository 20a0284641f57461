"""How lopsided each strategy's picks are: the majority answer's share of every query batch.

Uncertainty sampling on a two-class task can fill a batch with one class (the model is
unsure about one kind of sentence); a lopsided batch teaches the next round a skewed
prior. This reads the committed runs (rounds.jsonl's selected ids) and the task's training
split, and prints per strategy the mean majority share of a query batch (0.5: balanced,
1.0: one class), how many batches were at least 75% one class, and the majority share of
the whole labeled set at the end.

    .venv/bin/python scripts/pick_balance.py docs/results/cpu-sst2-study [--data-root ../shared/data]
"""

import argparse
import os
from collections import Counter, defaultdict

import numpy as np

from star_al.analysis.report import find_runs, strategy_order
from star_al.data.tasks import load_examples, load_task


def majority_share(answers) -> float:
    return max(Counter(answers).values()) / len(answers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="run directories or folders of runs")
    parser.add_argument("--data-root", default=os.environ.get("STAR_DATA_ROOT", "../shared/data"))
    args = parser.parse_args()

    runs = [run for run in find_runs(args.paths) if run.finished]
    gold = {}
    by_strategy = defaultdict(lambda: {"batches": [], "final": [], "seeds": 0})
    for run in runs:
        if run.task not in gold:
            examples = load_examples(load_task(run.task), "train", data_root=args.data_root)
            gold[run.task] = {example.id: example.gold for example in examples}
        answers = gold[run.task]
        stats = by_strategy[(run.task, run.strategy)]
        stats["seeds"] += 1
        labeled = []
        for record in run.rounds:
            picked = [answers[i] for i in record["selected_ids"]]
            if record["round"] > 0:
                stats["batches"].append(majority_share(picked))
            labeled += picked
        stats["final"].append(majority_share(labeled))

    print("| task | strategy | seeds | query batches | mean majority share | batches >= 75% one class "
          "| labeled set at the end |")
    print("|---|---|---|---|---|---|---|")
    for task in sorted({task for task, _ in by_strategy}):
        for strategy in strategy_order([s for t, s in by_strategy if t == task]):
            stats = by_strategy[(task, strategy)]
            batches = np.array(stats["batches"])
            print(f"| {task} | {strategy} | {stats['seeds']} | {batches.size} | {batches.mean():.2f} "
                  f"| {int((batches >= 0.75).sum())} | {np.mean(stats['final']):.2f} |")


if __name__ == "__main__":
    main()
