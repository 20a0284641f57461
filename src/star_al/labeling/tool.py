"""The labelling-tool interface: a batch goes out to people (push), their answers come back (pull).

Members are registered in labeling/tools.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from star_al.labeling.oracle import Batch

# (where, id, answer) of one answered row, as a file or a tool gives it back (checked later).
AnswerRow = tuple[str, object, object]


class LabellingTool(ABC):
    """One way of putting a batch in front of people and reading their answers back."""

    name: str = ""

    @abstractmethod
    def push(self, task, batch: Batch) -> None:
        """Put the batch in front of people (idempotent for a batch already out)."""

    @abstractmethod
    def pull(self) -> list[AnswerRow]:
        """Every answer given so far, as (where, id, answer) rows."""

    @classmethod
    def for_run(cls, run_path: Path, setting: str | None) -> "LabellingTool | None":
        """The run's tool of this kind: from its start-up setting (e.g. a URL) or its directory, else None."""
        return None


