"""Test-set evaluation: accuracy, calibration, and per-example predictions on disk."""

from __future__ import annotations

import json
from pathlib import Path

from star_al.analysis.metrics import calibration_summary
from star_al.al.run_dir import write_text_atomic
from star_al.engine.scoring import Scores, ScoringOptions, score_examples


def evaluate(model, tokenizer, task, examples, batch_size: int = 32, desc: str | None = "evaluate"):
    """Score the test examples deterministically; returns (Scores, calibration summary dict)."""
    scores = score_examples(model, tokenizer, task, examples, ScoringOptions(batch_size=batch_size),
                            desc=desc)
    return scores, calibration_summary(scores.confidence, scores.correct)


def write_predictions(scores: Scores, path: Path) -> None:
    """One JSON line per example: id, prediction, gold, correct, confidence (+ generated response)."""
    responses = scores.responses or [None] * len(scores.ids)
    lines = [json.dumps({"id": i, "prediction": p, "gold": g, "correct": bool(c), "confidence": float(f),
                         **({"response": r} if r is not None else {})})
             for i, p, g, c, f, r in zip(scores.ids, scores.predictions, scores.golds, scores.correct,
                                         scores.confidence, responses)]
    write_text_atomic(path, "\n".join(lines) + "\n")
