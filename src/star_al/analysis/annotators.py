"""The report's annotator section: for each run labelled by several annotators, each round's
agreement (Cohen's kappa for two, Krippendorff's alpha for more; labeling/agreement.py), over
all rounds too, and the examples they disagree on."""

from __future__ import annotations

from star_al.analysis.tables import markdown_grid
from star_al.labeling.agreement import Agreement, agreement, agreement_by_round
from star_al.labeling.ledger import LabelLedger

LEDGER_FILE = "labels.jsonl"
SHOWN_IDS = 10


def agreement_table(runs) -> str:
    """One row per round (and one for all rounds) of every run where two annotators labelled one
    example; empty when none did."""
    body = []
    for run in runs:
        if (run.config.get("annotators") or 1) < 2:
            continue  # one label per example: nothing to agree on
        entries = LabelLedger(run.path / LEDGER_FILE).read()
        overall = agreement(entries)
        if overall is None:
            continue
        for found in agreement_by_round(entries) + [overall]:
            body.append([run.task, run.strategy, str(run.seed), "all" if found.round is None else str(found.round),
                         ", ".join(found.annotators), str(found.n_examples), found.measure, _value(found),
                         _ids(found.disagreements)])
    if not body:
        return ""
    caption = ("Agreement of the annotators, per round (an example counts in the round of its first label) and "
               "over all rounds: Cohen's kappa for two annotators, Krippendorff's alpha (nominal) for more, over "
               "the examples labelled by two or more; and the examples whose annotators gave different answers.")
    header = ["task", "method", "seed", "round", "annotators", "examples", "measure", "value", "disagree on"]
    return caption + "\n\n" + markdown_grid(header, body)


def _value(found: Agreement) -> str:
    return "n/a" if found.value is None else f"{found.value:.2f}"


def _ids(ids: list[int]) -> str:
    shown = ", ".join(map(str, ids[:SHOWN_IDS]))
    return (shown + f" (+{len(ids) - SHOWN_IDS})" if len(ids) > SHOWN_IDS else shown) or "none"
