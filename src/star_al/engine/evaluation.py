"""Test-set evaluation: accuracy, calibration, and per-example predictions on disk."""

from __future__ import annotations

import json
from pathlib import Path

from star_al.data.tasks import CHOICE
from star_al.engine.distributed import SINGLE, Processes
from star_al.engine.scoring import Scores, ScoringOptions, score_examples
from star_al.files import write_text_atomic
from star_al.metrics import calibration_summary


def evaluate(model, tokenizer, task, examples, batch_size: int = 32, desc: str | None = "evaluate",
             processes: Processes = SINGLE):
    """Score the test examples deterministically; returns (Scores, calibration summary dict)."""
    scores = score_examples(model, tokenizer, task, examples, ScoringOptions(batch_size=batch_size,
                                                                             processes=processes), desc=desc)
    return scores, calibration_summary(scores.confidence, scores.correct)


def write_predictions(scores: Scores, path: Path) -> None:
    """One JSON line per example: id, prediction, gold, correct, confidence (+ generated response)."""
    responses = scores.responses or [None] * len(scores.ids)
    lines = [json.dumps({"id": i, "prediction": p, "gold": g, "correct": bool(c), "confidence": float(f),
                         **({"response": r} if r is not None else {})})
             for i, p, g, c, f, r in zip(scores.ids, scores.predictions, scores.golds, scores.correct,
                                         scores.confidence, responses)]
    write_text_atomic(path, "\n".join(lines) + "\n")


def lm_eval_results(task, scores: Scores, summary: dict, config: dict, n_original: int) -> dict:
    """The results in lm-evaluation-harness's layout, which dashboards and comparison scripts read:
    `results[task]` with acc and its standard error (also under lm-eval 0.4's "acc,none" keys; and
    acc_norm for choice tasks), the run's `config`, `versions` and sample counts."""
    import importlib.metadata
    import math
    import time

    n = len(scores.correct)
    acc = float(summary["accuracy"])
    stderr = math.sqrt(acc * (1 - acc) / (n - 1)) if n > 1 else float("nan")  # sample std / sqrt(n)
    metrics = {"acc": acc, "acc_stderr": stderr, "acc,none": acc, "acc_stderr,none": stderr,
               "ece": summary["ece"], "brier": summary["brier"], "alias": task.name}
    if scores.correct_norm is not None:
        norm = float(scores.correct_norm.mean())
        norm_stderr = math.sqrt(norm * (1 - norm) / (n - 1)) if n > 1 else float("nan")
        metrics.update({"acc_norm": norm, "acc_norm_stderr": norm_stderr, "acc_norm,none": norm,
                        "acc_norm_stderr,none": norm_stderr})

    def version(package):
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {"results": {task.name: metrics},
            "configs": {task.name: {"task": task.name, "output_type": "multiple_choice"
                                    if task.answer_type in ("label", CHOICE) else "generate_until",
                                    "source": task.source}},
            "versions": {task.name: 1.0},
            "n-samples": {task.name: {"original": n_original, "effective": n}},
            "config": config,
            "star_al_version": version("star-al"),
            "package_versions": {p: version(p) for p in ("torch", "transformers", "peft", "accelerate")},
            "date": time.time()}


def write_samples(task, examples, scores: Scores, path: Path) -> None:
    """Per-example output, lm-eval's --log_samples fields: doc_id, the prompt, target, response, acc
    (choice tasks: resps are the candidates' log-likelihoods, and acc_norm)."""
    responses = scores.responses or [None] * len(scores.ids)
    if scores.candidate_logprobs is not None:
        responses = [[float(value) for value in logprobs] for logprobs in scores.candidate_logprobs]
    norms = ([{"acc_norm": float(c)} for c in scores.correct_norm] if scores.correct_norm is not None
             else [{}] * len(scores.ids))
    lines = [json.dumps({"doc_id": ex.id, "doc": ex.record, "arguments": ex.prompt, "target": ex.gold,
                         "resps": r if r is not None else p, "filtered_resps": p, "acc": float(c), **norm,
                         "confidence": float(f)})
             for ex, p, r, c, f, norm in zip(examples, scores.predictions, responses, scores.correct,
                                             scores.confidence, norms)]
    write_text_atomic(path, "\n".join(lines) + "\n")
