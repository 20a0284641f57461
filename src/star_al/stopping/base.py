"""When a run stops: `should_stop(history)` gives the reason, or None to go on.

`history` is the list of finished rounds (round 0 the warm start), rounds.RoundRecord each,
as the loop records them in rounds.jsonl. A new criterion is one class and one line in `STOPPING`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from star_al.rounds import RoundRecord


class StoppingCriterion(ABC):
    @abstractmethod
    def should_stop(self, history: list[RoundRecord]) -> str | None:
        ...


class AnyOf(StoppingCriterion):
    """Stops at the first of its criteria that fires, with that one's reason."""

    def __init__(self, criteria: list[StoppingCriterion]):
        self.criteria = criteria

    def should_stop(self, history: list[RoundRecord]) -> str | None:
        for criterion in self.criteria:
            reason = criterion.should_stop(history)
            if reason is not None:
                return reason
        return None
