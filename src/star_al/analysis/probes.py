"""The paper's two probes (docs/method.md section 8): why plain uncertainty sampling fails.

Figure 2, `confidence_probe`: a LoRA-tuned model is confidently wrong, an untuned model
prompted with in-context demonstrations much less so. Figure 3, `entropy_probe`: from a
finished AL run, the base model's uncertainties barely correlate with round 1's (the
"uncertainty gap") while consecutive tuned rounds agree.

Each probe reads its inputs, computes with the plain functions below and writes a CSV, PNG
figures and a Markdown summary into an output folder, and returns the summary as a dict.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np

from star_al.analysis.tables import format_number, markdown_grid
from star_al.config import LoraSettings, TrainSettings
from star_al.data.tasks import Example
from star_al.engine.evaluation import evaluate
from star_al.engine.training import train_adapter
from star_al.errors import StarError
from star_al.files import load_npz, write_figure_atomic, write_text_atomic
from star_al.metrics import correlation_matrix
from star_al.models.adapters import LORA

TUNED, IN_CONTEXT = "tuned", "in-context"
CONFIDENCE_COLUMNS = ("model", "id", "gold", "prediction", "correct", "confidence")
MEASURES = ("me", "pe")


# ---------------------------------------------------------------- figure 2: confidence of wrong answers

def in_context_examples(examples, demonstrations) -> list[Example]:
    """Each example's prompt preceded by the demonstrations, `prompt + target` each, blank-line separated.

    Scoring truncates prompts from the left, so an over-long context loses its first
    demonstrations, never the question.
    """
    context = "".join(demo.prompt + demo.target + "\n\n" for demo in demonstrations)
    return [replace(ex, prompt=context + ex.prompt) for ex in examples]


def gaussian_kde(values, grid, low: float, high: float) -> np.ndarray:
    """Density of `values` on `grid`, Gaussian kernels with Scott's bandwidth sd * n^(-1/5).

    Values live in [low, high] (a top-label confidence lies in [1/n_labels, 1]), so the
    kernels are reflected at both bounds and the density integrates to 1 over the range.
    A bandwidth floor of 2% of the range keeps a handful of equal values from a spike.
    """
    values = np.asarray(values, dtype=float)
    grid = np.asarray(grid, dtype=float)
    if values.size == 0:
        return np.zeros_like(grid)
    span = high - low
    bandwidth = max(values.std() * values.size ** (-1 / 5), 0.02 * span)
    centres = np.concatenate([values, 2 * low - values, 2 * high - values])
    z = (grid[:, None] - centres[None, :]) / bandwidth
    return np.exp(-0.5 * z ** 2).sum(axis=1) / (values.size * bandwidth * np.sqrt(2 * np.pi))


def wrong_answer_summary(scores, calibration: dict) -> dict:
    """The calibration summary plus the median and count of the wrong answers' confidences."""
    wrong = scores.confidence[~scores.correct]
    return {**calibration, "median_wrong_confidence": float(np.median(wrong)) if wrong.size else float("nan"),
            "n_wrong": int(wrong.size)}


def confidence_probe(backbone, task, train_examples, test_examples, lora: LoraSettings, train: TrainSettings,
                     n_train: int, k_shot: int, seed: int, out_dir: Path, batch_size: int = 32) -> dict:
    """Figure 2: wrong-answer confidences of a LoRA-tuned model and of the untuned model with k demonstrations.

    The adapter is fine-tuned on `n_train` train examples and the `k_shot` demonstrations
    are drawn from all of train, both with `random.Random(seed)`; the adapter is removed
    afterwards, leaving `backbone.model` as it was. Writes confidence.csv,
    confidence.png and summary.md into `out_dir`; returns the summary.
    """
    if task.answer_type != "label":
        raise StarError(f"the confidence probe needs a label task (confidence among the answer options); "
                        f"task {task.name} answers with a {task.answer_type}")
    if not 0 < n_train <= len(train_examples):
        raise StarError(f"n_train {n_train} must be between 1 and the {len(train_examples)} train examples")
    if not 0 <= k_shot <= len(train_examples):
        raise StarError(f"k_shot {k_shot} must be between 0 and the {len(train_examples)} train examples")
    if not test_examples:
        raise StarError("the confidence probe needs test examples")
    rng = random.Random(seed)
    labeled = [train_examples[i] for i in rng.sample(range(len(train_examples)), n_train)]
    demonstrations = [train_examples[i] for i in rng.sample(range(len(train_examples)), k_shot)]

    model, tokenizer = backbone.model, backbone.tokenizer
    results = {IN_CONTEXT: evaluate(model, tokenizer, task, in_context_examples(test_examples, demonstrations),
                                    batch_size, desc=f"evaluate untuned, {k_shot}-shot")}
    peft_model = LORA.attach(model, lora, seed)
    try:
        train_adapter(peft_model, tokenizer, task, labeled, train, seed, desc=f"train on {n_train}", method=LORA)
        results[TUNED] = evaluate(peft_model, tokenizer, task, test_examples, batch_size, desc="evaluate tuned")
    finally:
        LORA.detach(peft_model)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {TUNED: f"LoRA-tuned on {n_train}", IN_CONTEXT: f"untuned, {k_shot}-shot"}
    summary = {"task": task.name, "n_train": n_train, "k_shot": k_shot, "seed": seed,
               "n_test": len(test_examples), "train_ids": [ex.id for ex in labeled],
               "demonstration_ids": [ex.id for ex in demonstrations],
               "models": {model_key: {"name": names[model_key], **wrong_answer_summary(*results[model_key])}
                          for model_key in (TUNED, IN_CONTEXT)}}
    _write_confidence_csv({key: scores for key, (scores, _) in results.items()}, out_dir / "confidence.csv")
    _write_confidence_png(summary, {key: scores for key, (scores, _) in results.items()}, len(task.labels),
                          out_dir / "confidence.png")
    write_text_atomic(out_dir / "summary.md", _confidence_markdown(summary))
    return summary


def _write_confidence_csv(scores_by_model: dict, path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CONFIDENCE_COLUMNS)
    for model_key, scores in scores_by_model.items():
        for row in zip(scores.ids, scores.golds, scores.predictions, scores.correct, scores.confidence):
            example_id, gold, prediction, correct, confidence = row
            writer.writerow([model_key, example_id, gold, prediction, bool(correct), f"{confidence:.6f}"])
    write_text_atomic(path, buffer.getvalue())


def _write_confidence_png(summary: dict, scores_by_model: dict, n_labels: int, path: Path) -> None:
    """Figure 2's layout: the wrong answers' confidence densities of both models, overlaid."""
    from matplotlib.figure import Figure  # Figure renders with Agg; no pyplot state

    low, high = 1 / n_labels, 1.0
    grid = np.linspace(low, high, 400)
    figure = Figure(figsize=(5.5, 3.6), layout="constrained")
    axis = figure.subplots()
    for colour, (model_key, scores) in zip(("C0", "C1"), scores_by_model.items()):
        stats = summary["models"][model_key]
        wrong = scores.confidence[~scores.correct]
        label = f"{stats['name']}: accuracy {100 * stats['accuracy']:.1f}%, {stats['n_wrong']} wrong"
        if wrong.size == 0:
            axis.plot([], [], color=colour, label=label + " (none to plot)")
            continue
        density = gaussian_kde(wrong, grid, low, high)
        axis.plot(grid, density, color=colour, label=label)
        axis.fill_between(grid, density, color=colour, alpha=0.25)
        axis.axvline(wrong.mean(), color=colour, linestyle="--", linewidth=1)
    axis.set_xlim(low, high)
    axis.set_ylim(bottom=0)
    axis.set_xlabel("confidence of the wrong answer (dashed: mean)")
    axis.set_ylabel("density")
    axis.set_title(f"{summary['task']}: confidence when wrong")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    write_figure_atomic(figure, path)


def _confidence_markdown(summary: dict) -> str:
    header = ["model", "accuracy", "mean wrong-answer conf.", "median wrong-answer conf.", "ECE", "Brier",
              "wrong", "n"]
    body = [[stats["name"], format_number(stats["accuracy"]), format_number(stats["wrong_confidence"]),
             format_number(stats["median_wrong_confidence"]), format_number(stats["ece"]), format_number(stats["brier"]),
             str(stats["n_wrong"]), str(stats["n"])] for stats in summary["models"].values()]
    return (f"# Confidence of wrong answers: {summary['task']}\n\n"
            f"LoRA fine-tuned on {summary['n_train']} train examples against the untuned model prompted with "
            f"{summary['k_shot']} demonstrations (seed {summary['seed']}); fractions. Confidence is the "
            "predicted answer's probability among the task's answers.\n\n"
            + markdown_grid(header, body) + "\n\n![wrong-answer confidence](confidence.png)\n")


# ---------------------------------------------------------------- figure 3: entropy across rounds

def read_round_scores(run_dir: Path, measure: str = "me") -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{round: (ids, score)}: round 0 is the frozen base model, round r the model trained after round r-1.

    Tuned rounds' scores are the mean over MC passes, as acquisition reduces them.
    """
    run_dir = Path(run_dir)
    if measure not in MEASURES:
        raise StarError(f"unknown measure {measure!r}: use one of {', '.join(MEASURES)}")
    base_path = run_dir / "base_scores.npz"
    # round-00.npz, written by a cold start (--warm-start-by), holds base scores: round 0 is base_scores.npz
    round_paths = [path for path in sorted((run_dir / "scores").glob("round-*.npz")) if path.stem != "round-00"]
    if not round_paths:
        raise StarError(f"{run_dir} has no per-round pool scores (scores/round-NN.npz): only runs of an "
                        "uncertainty strategy write them, a random run does not; run a me/pe strategy")
    if not base_path.is_file():
        raise StarError(f"{run_dir} has no base_scores.npz (the base model's pool scores, round 0)")
    base = load_npz(base_path)
    by_round = {0: (base["ids"], base[measure])}
    for path in round_paths:
        arrays = load_npz(path)
        by_round[int(path.stem.split("-")[1])] = (arrays["ids"], np.atleast_2d(arrays[measure]).mean(axis=0))
    return by_round


def common_top_matrix(by_round: dict[int, tuple[np.ndarray, np.ndarray]], top: int):
    """Rounds x examples over the ids every round scored, the `top` most uncertain under round 0.

    Returns (rounds, ids, rows, n_common); ties in round 0 keep the smaller id first.
    """
    rounds = sorted(by_round)
    common = set(by_round[rounds[0]][0].tolist())
    for round_index in rounds[1:]:
        common &= set(by_round[round_index][0].tolist())
    common_ids = np.array(sorted(common), dtype=np.int64)
    lookups = {r: dict(zip(ids.tolist(), scores.tolist())) for r, (ids, scores) in by_round.items()}
    base_scores = np.array([lookups[0][i] for i in common_ids.tolist()])
    order = np.argsort(-base_scores, kind="stable")[:top]
    ids = common_ids[order]
    rows = np.array([[lookups[r][i] for i in ids.tolist()] for r in rounds])
    return rounds, ids, rows, len(common_ids)


def entropy_probe(run_dir: Path, out_dir: Path, top: int = 1000, method: str = "pearson",
                  round_pair: int | None = None, measure: str = "me") -> dict:
    """Figure 3: correlation of the pool's uncertainties between AL rounds of a finished run.

    Writes correlation.csv, entropy_heatmap.png (a), scatter_base_vs_round1.png (b),
    scatter_round{r}_vs_round{r+1}.png (c; r = `round_pair`, by default the middle tuned
    round) and summary.md into `out_dir`; returns the summary.
    """
    if top < 3:
        raise StarError(f"top {top} is too small: correlations need at least 3 examples")
    if method not in ("pearson", "spearman"):
        raise StarError(f"unknown correlation method {method!r}: use pearson or spearman")
    run_dir = Path(run_dir)
    by_round = read_round_scores(run_dir, measure)
    rounds, ids, rows, n_common = common_top_matrix(by_round, top)
    subsample = _pool_subsample(run_dir)
    subsample_note = (f"the run scored a random subset of {subsample} unlabeled examples each round, "
                      "so few examples were scored in every round" if subsample else "")
    if len(ids) < 3:
        raise StarError(f"only {len(ids)} examples were scored in all {len(rounds)} rounds of {run_dir}; "
                        "correlations need at least 3" + (f" ({subsample_note})" if subsample_note else ""))
    tuned = rounds[1:]
    pairs = [(a, b) for a, b in zip(tuned, tuned[1:]) if b == a + 1]
    if round_pair is None:
        pair = pairs[len(pairs) // 2] if pairs else None  # tuned 1..9: 5 vs 6, as the paper
    elif round_pair in dict(pairs):
        pair = (round_pair, round_pair + 1)
    else:
        raise StarError(f"no scores for rounds {round_pair} and {round_pair + 1} in {run_dir}; "
                        f"tuned rounds scored: {', '.join(map(str, tuned))}")

    matrix = correlation_matrix(rows, method)
    index = {r: n for n, r in enumerate(rounds)}
    consecutive = {f"{a}-{b}": float(matrix[index[a], index[b]]) for a, b in pairs}
    first = tuned[0]
    summary = {"run_dir": str(run_dir), "measure": measure, "method": method, "rounds": rounds,
               "n_common": n_common, "n_examples": len(ids), "top": top, "pool_subsample": subsample,
               "ids": ids.tolist(), "matrix": matrix.tolist(),
               "base_vs_first_tuned": float(matrix[0, index[first]]), "first_tuned_round": first,
               "consecutive": consecutive,
               "consecutive_mean": float(np.nanmean(list(consecutive.values()))) if consecutive else float("nan"),
               "scatter_pair": pair, "note": subsample_note}

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = [f"round {r}" for r in rounds]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["round", *labels])
    for label, values in zip(labels, matrix):
        writer.writerow([label, *(f"{v:.6f}" for v in values)])
    write_text_atomic(out_dir / "correlation.csv", buffer.getvalue())
    _write_heatmap(matrix, rounds, summary, out_dir / "entropy_heatmap.png")
    files = ["correlation.csv", "entropy_heatmap.png", f"scatter_base_vs_round{first}.png"]
    _write_scatter(rows[0], rows[index[first]], 0, first, summary, out_dir / files[-1])
    if pair is not None:
        files.append(f"scatter_round{pair[0]}_vs_round{pair[1]}.png")
        _write_scatter(rows[index[pair[0]]], rows[index[pair[1]]], *pair, summary, out_dir / files[-1])
    summary["files"] = files
    write_text_atomic(out_dir / "summary.md", _entropy_markdown(summary, labels))
    return summary


def _pool_subsample(run_dir: Path) -> int | None:
    """The run's pool_subsample from config.json, if the directory has one."""
    path = run_dir / "config.json"
    try:
        return json.loads(path.read_text()).get("pool_subsample") if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def _round_name(round_index: int) -> str:
    return "round 0 (base model)" if round_index == 0 else f"round {round_index}"


def _write_heatmap(matrix, rounds, summary: dict, path: Path) -> None:
    """Figure 3a: the rounds x rounds correlation matrix, values written in the cells."""
    from matplotlib.figure import Figure  # Figure renders with Agg; no pyplot state

    size = 1.2 + 0.45 * len(rounds)
    figure = Figure(figsize=(size + 1.2, size), layout="constrained")
    axis = figure.subplots()
    image = axis.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r")
    axis.set_xticks(range(len(rounds)), [str(r) for r in rounds])
    axis.set_yticks(range(len(rounds)), [str(r) for r in rounds])
    axis.set_xlabel("round (0: base model)")
    axis.set_ylabel("round (0: base model)")
    if len(rounds) <= 12:
        for (row, column), value in np.ndenumerate(matrix):
            axis.text(column, row, "" if np.isnan(value) else f"{value:.2f}", ha="center", va="center",
                      fontsize="x-small", color="white" if abs(value) > 0.6 else "black")
    figure.colorbar(image, ax=axis, label=f"{summary['method']} correlation")
    axis.set_title(f"{summary['measure'].upper()} across rounds, {summary['n_examples']} examples")
    write_figure_atomic(figure, path)


def _write_scatter(x, y, round_x: int, round_y: int, summary: dict, path: Path) -> None:
    """Figures 3b and 3c: one round's uncertainty against another's, per example."""
    from matplotlib.figure import Figure  # Figure renders with Agg; no pyplot state

    correlation = summary["matrix"][summary["rounds"].index(round_x)][summary["rounds"].index(round_y)]
    measure = summary["measure"].upper()
    figure = Figure(figsize=(4.2, 4.0), layout="constrained")
    axis = figure.subplots()
    axis.scatter(x, y, s=6, alpha=0.5, linewidths=0)
    axis.set_xlabel(f"{measure}, {_round_name(round_x)}")
    axis.set_ylabel(f"{measure}, {_round_name(round_y)}")
    axis.set_title(f"{summary['method']} r = {format_number(correlation, 2)} ({len(x)} examples)")
    axis.grid(alpha=0.3)
    write_figure_atomic(figure, path)


def _entropy_markdown(summary: dict, labels: list[str]) -> str:
    measure, method = summary["measure"].upper(), summary["method"]
    consecutive = ", ".join(f"{pair}: {format_number(value, 2)}" for pair, value in summary["consecutive"].items())
    lines = [
        f"# {measure} across AL rounds: {summary['run_dir']}",
        "",
        f"- examples: {summary['n_examples']} most uncertain under the base model, of the "
        f"{summary['n_common']} scored in every round (rounds {', '.join(map(str, summary['rounds']))})"
        + (f"; {summary['note']}" if summary["note"] else ""),
        f"- correlation: {method}",
        f"- uncertainty gap, base model (round 0) against round {summary['first_tuned_round']}: "
        f"{format_number(summary['base_vs_first_tuned'], 3)}",
        f"- consecutive tuned rounds, mean: {format_number(summary['consecutive_mean'], 3)}"
        + (f" ({consecutive})" if consecutive else " (fewer than two consecutive tuned rounds)"),
        "",
        markdown_grid(["", *labels], [[label, *(format_number(v, 2) for v in row)]
                                  for label, row in zip(labels, summary["matrix"])]),
        "",
        *(f"![{name}]({name})" for name in summary["files"][1:]),
        "",
    ]
    return "\n".join(lines)
