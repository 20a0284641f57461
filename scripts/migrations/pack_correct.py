"""Add each round's packed test correctness (`test_correct`) to finished runs made before the
loop recorded it, from their predictions/ files, so that a clean checkout can bootstrap them
over test sentences (`star report`). Usage: python scripts/migrations/pack_correct.py RUN_OR_FOLDER...

Derived from the run's own predictions, deterministically; runs without them, or not finished,
are left as they are.
"""

import json
import sys
from pathlib import Path

from star_al.analysis.report import find_runs
from star_al.files import write_text_atomic
from star_al.rounds import pack_correct


def pack(run) -> str:
    records, changed = [json.loads(line) for line in (run.path / "rounds.jsonl").read_text().splitlines()], 0
    for record in records:
        path = run.path / "predictions" / f"round-{record['round']:02d}.jsonl"
        if "test_correct" in record or not path.is_file():
            continue
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if len(lines) != record.get("n_test"):
            return f"{run.path}: round {record['round']} has {len(lines)} predictions for {record.get('n_test')} tests"
        record["test_correct"] = pack_correct([line["id"] for line in lines], [line["correct"] for line in lines])
        changed += 1
    if changed:
        write_text_atomic(run.path / "rounds.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    return f"{run.path}: {changed} round(s) packed"


if __name__ == "__main__":
    for run in find_runs([Path(p) for p in sys.argv[1:]]):
        print(pack(run) if run.finished else f"{run.path}: not finished, left alone")
