"""One finished round of a run, as the loop records it: a line of rounds.jsonl.

The loop builds a RoundRecord each round, the run directory appends it as one JSON line
and reads the lines back as records, and the stopping criteria read its fields. Lines
written before a field existed read it as None (or empty); keys this version does not
know are kept in `extra`, so nothing read is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np


@dataclass
class RoundRecord:
    """A round's labels, what it measured, and its training and time.

    Round 0 is the warm start. With a test set the record holds accuracy and calibration
    (`n_test` and on); without one (--no-eval) `accuracy` is None and the stopping set's
    `pool_uncertainty`, `agreement` and `n_monitor` stand in; the stopping set's
    predictions, mean uncertainty and kappa are kept when a stopping rule reads them.
    """

    round: int
    n_labeled: int
    selected_ids: list[int] = field(default_factory=list)
    selected_scores: list | None = None       # the score each id was ranked by (None: random)
    lambda_: float | None = None              # the dynamic mix's lambda ("lambda" in JSON)
    accuracy: float | None = None
    ece: float | None = None
    brier: float | None = None
    wrong_confidence: float | None = None
    n_test: int | None = None
    test_correct: str | None = None           # which test examples it got right (pack_correct)
    pool_uncertainty: float | None = None
    agreement: float | None = None
    n_monitor: int | None = None
    monitor_uncertainty: float | None = None
    monitor_predictions: list | None = None
    kappa: float | None = None
    train_steps: int | None = None
    train_loss: dict | None = None
    timings: dict[str, float] = field(default_factory=dict)
    device: str | None = None                 # where the round's model ran ("cpu", "cuda:0")
    dtype: str | None = None                  # the frozen base's dtype: a resume must keep it
    queued_ids: list[int] = field(default_factory=list)  # a partly labeled batch's rest (--partial)
    stopped: str | None = None                # the reason a stopping criterion ended the run here
    extra: dict = field(default_factory=dict)  # keys read that this version does not know

    def to_dict(self) -> dict:
        """The JSON line: a group of keys is written only where the round has it, as the loop always wrote it."""
        line = {"round": self.round, "n_labeled": self.n_labeled, "selected_ids": self.selected_ids,
                "selected_scores": self.selected_scores, "lambda": self.lambda_, "accuracy": self.accuracy}
        for key in ("ece", "brier", "wrong_confidence", "n_test", "test_correct"):
            if getattr(self, key) is not None:
                line[key] = getattr(self, key)
        if self.n_monitor is not None:  # no test set: the stopping set's figures stand in
            line.update(pool_uncertainty=self.pool_uncertainty, agreement=self.agreement, n_monitor=self.n_monitor)
        if self.monitor_predictions is not None:
            line.update(monitor_uncertainty=self.monitor_uncertainty, monitor_predictions=self.monitor_predictions,
                        kappa=self.kappa)
        for key in ("train_steps", "train_loss"):
            if getattr(self, key) is not None:
                line[key] = getattr(self, key)
        line["timings"] = self.timings
        for key in ("device", "dtype"):
            if getattr(self, key) is not None:
                line[key] = getattr(self, key)
        if self.queued_ids:
            line["queued_ids"] = self.queued_ids
        if self.stopped is not None:
            line["stopped"] = self.stopped
        return {**line, **self.extra}

    @classmethod
    def from_dict(cls, line: dict) -> "RoundRecord":
        """A record from a JSON line of any version: missing keys take their defaults, unknown ones go to `extra`."""
        known = {f.name for f in fields(cls)} - {"lambda_", "extra"}
        values = {key: value for key, value in line.items() if key in known}
        extra = {key: value for key, value in line.items() if key not in known and key != "lambda"}
        return cls(**values, lambda_=line.get("lambda"), extra=extra)


def pack_correct(ids, correct) -> str:
    """Which test examples a round got right, in id order, as hex of the packed bits: 872
    sentences take 218 characters, so rounds.jsonl keeps them and a committed run can be
    bootstrapped over sentences without its predictions files."""
    order = np.argsort(np.asarray(ids), kind="stable")
    return np.packbits(np.asarray(correct, dtype=bool)[order]).tobytes().hex()


def unpack_correct(packed: str, n: int) -> np.ndarray:
    """The `n` correctness flags of `pack_correct`'s string, in id order."""
    return np.unpackbits(np.frombuffer(bytes.fromhex(packed), dtype=np.uint8))[:n].astype(bool)
