"""A notebook-style session: query a batch, label it by hand, fit, evaluate, continue.

    python examples/label_by_hand.py [OUT]

The embedded SmolLM2-135M on sst2 sentences whose answers are taken out (the pool people
would label); "by hand" here is a dict of answers typed in for the queried ids, looked
up from the dataset so that the example runs unattended. The smoke preset: seconds.
"""

import json
import os
import sys
import tempfile
from pathlib import Path

import star_al

data = Path(os.environ.get("STAR_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data")) / "sst2"
records = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()[:60]]
pool = [{"sentence": r["sentence"]} for r in records]           # no answers: people give them
test = [json.loads(line) for line in (data / "dev.jsonl").read_text().splitlines()[:40]]
out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="star-learner-")

learner = star_al.Learner("smollm2-135m", "sst2", pool=pool, test=test, out=out,
                          strategy="me+star", preset="smoke", n_rounds=2)
while not learner.done:
    batch = learner.query()                                     # ids, the model's answers, its uncertainty
    for i, answer, entropy in zip(batch.ids, batch.model_answers, batch.uncertainty):
        print(f"  id {i:>2} model says {answer!r:<11} (entropy {entropy:.2f}): {pool[i]['sentence'][:60]}")
    typed = {i: records[i]["label"] for i in batch.ids}         # what a person would type
    left = learner.teach(typed)
    record = learner.fit()                                      # a fresh adapter on every label so far
    print(f"round {record.round}: {record.n_labeled} labels, test accuracy {100 * record.accuracy:.1f}% ({left} left)")

print("evaluate:", learner.evaluate())
print("rounds:", [r.selected_ids for r in learner.rounds])
