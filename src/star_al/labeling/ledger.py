"""The label ledger: `labels.jsonl` in the run directory, every label the run was given.

One line per label (id, answer, target, round, source) with a checksum of the line, so
a damaged or hand-edited line is found when read. Lines are only ever added: the file is
rewritten atomically with the new lines after the old ones, and an id that already has a
label is refused, so no later command can rewrite or drop a label a person gave.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from star_al.errors import StarError
from star_al.labeling.oracle import Label

FIELDS = ("id", "answer", "target", "round", "source")


def _checksum(entry: dict) -> str:
    body = json.dumps({key: entry.get(key) for key in FIELDS}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


class LabelLedger:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self) -> list[dict]:
        """Every entry, each checked against its checksum; one id at most once."""
        if not self.path.is_file():
            return []
        entries, seen = [], set()
        what_to_do = "restore labels.jsonl from a copy; labels are never dropped silently"
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as error:
                raise StarError(f"{self.path}:{number}: damaged line ({error.msg}); {what_to_do}") from error
            if not isinstance(entry, dict) or entry.get("check") != _checksum(entry):
                raise StarError(f"{self.path}:{number}: checksum does not match (damaged or edited); {what_to_do}")
            if entry["id"] in seen:
                raise StarError(f"{self.path}:{number}: id {entry['id']} labeled twice; {what_to_do}")
            seen.add(entry["id"])
            entries.append(entry)
        return entries

    def labels(self) -> dict[int, dict]:
        return {entry["id"]: entry for entry in self.read()}

    def append(self, labels: list[Label], round_index: int, source: str) -> None:
        """Add one batch of labels after the existing ones (atomically); an id labeled already is refused."""
        from star_al.files import write_text_atomic

        existing = self.read()
        taken = {entry["id"] for entry in existing}
        twice = sorted({label.id for label in labels} & taken) or \
            sorted({i for i in (label.id for label in labels) if [l.id for l in labels].count(i) > 1})
        if twice:
            raise StarError(f"{self.path}: ids {twice[:5]} are labeled already; a label is never replaced")
        lines = [self.path.read_text()] if existing else []
        for label in labels:
            entry = {"id": int(label.id), "answer": label.answer, "target": label.target,
                     "round": round_index, "source": source}
            lines.append(json.dumps({**entry, "check": _checksum(entry)}) + "\n")
        write_text_atomic(self.path, "".join(lines))
