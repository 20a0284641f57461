"""The labelling-tool interface: a batch goes out to people (push), their answers come back (pull).

Members are registered in labeling/tools.py. Beyond push and pull a tool may say what its
setup lacks before any work (`check`), note a batch in the run directory before anything
is sent (`expect`), send again a batch whose push did not complete (`resend`), and say
where a batch stands (`describe`); the files tool needs none of these.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from star_al.labeling.oracle import Batch

# (where, id, answer) of one answered row, as a file or a tool gives it back (checked later), or
# (where, id, answer, annotator) where the row says who answered (None: it does not).
AnswerRow = tuple[str, object, object] | tuple[str, object, object, object]


class LabellingTool(ABC):
    """One way of putting a batch in front of people and reading their answers back."""

    name: str = ""

    @abstractmethod
    def push(self, task, batch: Batch) -> None:
        """Put the batch in front of people (idempotent: a batch already out is not sent again)."""

    @abstractmethod
    def pull(self) -> list[AnswerRow]:
        """Every answer given so far, as (where, id, answer) rows."""

    @classmethod
    def for_run(cls, run_path: Path, setting: str | None) -> "LabellingTool | None":
        """The run's tool of this kind: from its start-up setting (e.g. a URL) or its directory, else None."""
        return None

    def check(self) -> None:
        """Refuse now (a StarError), before the run does any work, what would make a push fail later."""

    def expect(self, round_index: int) -> None:
        """Note in the run directory, before any tool sends it, that round `round_index`'s batch goes out here."""

    def resend(self, round_index: int) -> str | None:
        """Send round `round_index`'s batch, from the run directory, if its push did not complete; what was sent."""
        return None

    def describe(self, round_index: int) -> str | None:
        """Where round `round_index`'s batch stands in this tool (for `star status`), or None if it never went here."""
        return None
