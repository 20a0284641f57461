"""The label ledger: `labels.jsonl` in the run directory, every label the run was given.

One line per label (id, answer, target, round, source, and the annotator when one was
named) with a checksum of the line, so a damaged or hand-edited line is found when read.
Lines are only ever added: the file is rewritten atomically with the new lines after the
old ones, and a label once given is never replaced: a run that takes one label per
example refuses a second label for an id, one that takes several (`annotators` N > 1)
refuses a second label of the same annotator for an id. A line without an annotator is
the one anonymous annotator (every ledger written before annotators were named reads so).

Which examples count as labelled, and with which answer, is the resolution of these
labels (labeling/resolution.py): with one annotator, each label as given.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from star_al.errors import StarError
from star_al.labeling.oracle import Label
from star_al.labeling.resolution import Resolution, resolve

FIELDS = ("id", "answer", "target", "round", "source")
NAMED = ("annotator",)  # in a line, and in its checksum, only when given: older lines check as they were


def _checksum(entry: dict) -> str:
    keys = FIELDS + tuple(key for key in NAMED if key in entry)
    body = json.dumps({key: entry.get(key) for key in keys}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


class LabelLedger:
    """The run's labels; `annotators` and `resolve` are the run's settings of the same names."""

    def __init__(self, path: str | Path, annotators: int = 1, resolve: str = "majority"):
        self.path = Path(path)
        self.annotators, self.method = annotators, resolve

    def read(self) -> list[dict]:
        """Every entry, each checked against its checksum; one id at most once per annotator."""
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
            key = (entry["id"], entry.get("annotator"))
            if key in seen:
                by = f" by {key[1]}" if key[1] is not None else ""
                raise StarError(f"{self.path}:{number}: id {entry['id']} labeled twice{by}; {what_to_do}")
            seen.add(key)
            entries.append(entry)
        return entries

    def resolution(self, upto_round: int | None = None, entries: list[dict] | None = None) -> Resolution:
        """The labels resolved (and the ids tied or still short of annotators), from the entries of
        rounds up to `upto_round` when given."""
        return resolve(self.read() if entries is None else entries, self.annotators, self.method, upto_round)

    def labels(self, upto_round: int | None = None) -> dict[int, dict]:
        """The examples that count as labelled: id -> entry with the resolved answer."""
        return self.resolution(upto_round).labels

    def append(self, labels: list[Label], round_index: int, source: str) -> None:
        """Add one batch of labels after the existing ones (atomically); a label that would replace
        one (the same id, or with several annotators the same id and annotator) is refused."""
        from star_al.files import write_text_atomic

        existing = self.read()
        if self.annotators == 1:
            key, what = (lambda entry: entry["id"]), "labeled already"
        else:
            key, what = (lambda entry: (entry["id"], entry.get("annotator"))), "labeled already by the same annotator"
        taken = {key(entry) for entry in existing}
        wanted = [key({"id": label.id, "annotator": label.annotator}) for label in labels]
        twice = sorted({k for k in wanted if k in taken or wanted.count(k) > 1}, key=str)
        if twice:
            raise StarError(f"{self.path}: {twice[:5]} are {what}; a label is never replaced")
        lines = [self.path.read_text()] if existing else []
        for label in labels:
            entry = {"id": int(label.id), "answer": label.answer, "target": label.target,
                     "round": round_index, "source": source}
            if label.annotator is not None:
                entry["annotator"] = label.annotator
            lines.append(json.dumps({**entry, "check": _checksum(entry)}) + "\n")
        write_text_atomic(self.path, "".join(lines))
