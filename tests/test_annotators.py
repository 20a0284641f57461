"""Several annotators: who said what in the ledger, labels resolved by majority vote or
Dawid-Skene (a tie stays queued), agreement per round in `star status` and `star report`,
files imported again as they fill, old single-annotator ledgers, and the simulated
annotator who errs (--oracle-noise)."""

import csv
import hashlib
import json

import numpy as np
import pytest

import star_al
from star_al.data.tasks import Example
from star_al.errors import StarError
from star_al.labeling.batch_files import read_answers
from star_al.labeling.agreement import COHEN, KRIPPENDORFF, agreement, agreement_by_round
from star_al.labeling.ledger import LabelLedger
from star_al.labeling.oracle import Batch, GoldOracle, Label
from star_al.labeling.resolution import dawid_skene, majority_vote, resolve
from star_al.runs import default_run_dir
from test_label_files import star_out
from test_people import human_args, resume, waiting_batch
from test_reliability import assert_one_line_error, star

FLIP = {"positive": "negative", "negative": "positive", "pos": "neg", "neg": "pos"}


def entry(example_id, answer, annotator=None, round_index=0):
    given = {"id": example_id, "answer": answer, "target": None, "round": round_index, "source": "person"}
    return {**given, "annotator": annotator} if annotator else given


def write_csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


# -- resolution -----------------------------------------------------------------------------------

def test_majority_vote_waits_for_the_panel_resolves_a_strict_majority_early_and_queues_a_tie():
    entries = [entry(1, "pos", "a"), entry(1, "pos", "b"),            # two of two agree: resolved
               entry(2, "pos", "a"), entry(2, "neg", "b"),            # a tie: queued for one more
               entry(3, "pos", "a")]                                  # one of two: short
    two = resolve(entries, annotators=2)
    assert {i: e["answer"] for i, e in two.labels.items()} == {1: "pos"}
    assert two.ties == {2} and two.short == {3}
    assert two.labels[1]["annotators"] == {"a": "pos", "b": "pos"}
    three = resolve(entries + [entry(2, "pos", "c")], annotators=3)  # 2 of 3 is a strict majority of 3
    assert three.labels[1]["answer"] == "pos" and three.labels[2]["answer"] == "pos" and three.short == {3}
    assert resolve([entry(4, "x", "a"), entry(4, "y", "b"), entry(4, "z", "c")], annotators=3).ties == {4}
    assert majority_vote(["a", "b", "a"]) == "a" and majority_vote(["a", "b"]) is None


def test_dawid_skene_trusts_the_annotator_who_agrees_with_the_consensus():
    """Items 0-15 alternate pos and neg; ann is always right, bob wrong on items 0-3 and cy on 4-7
    (a quarter of the time each). On item 16 ann says pos and both others neg: majority vote says
    neg; Dawid-Skene, having estimated that bob and cy err about a quarter of the time and ann
    hardly ever, says pos (posterior about 0.82)."""
    truth = ["pos", "neg"] * 8
    votes = {i: {"ann": t, "bob": FLIP[t] if i < 4 else t, "cy": FLIP[t] if 4 <= i < 8 else t}
             for i, t in enumerate(truth)}
    votes[16] = {"ann": "pos", "bob": "neg", "cy": "neg"}
    posteriors, confusion, classes = dawid_skene(votes)
    assert classes == ["neg", "pos"]
    assert posteriors[16]["pos"] == pytest.approx(0.82, abs=0.01)
    assert majority_vote(list(votes[16].values())) == "neg"
    assert all(max(posteriors[i], key=posteriors[i].get) == t for i, t in enumerate(truth))
    assert np.diag(confusion["ann"]).min() > 0.95 and 0.6 < np.diag(confusion["bob"]).mean() < 0.8
    entries = [entry(i, answer, who) for i, given in votes.items() for who, answer in given.items()]
    assert resolve(entries, 3, "dawid-skene").labels[16]["answer"] == "pos"
    assert resolve(entries, 3, "majority").labels[16]["answer"] == "neg"


def test_dawid_skene_confusion_of_a_perfect_panel_is_its_smoothed_count():
    """Three annotators agree on 4 pos and 4 neg items: the posteriors are one-hot, each confusion
    row is (4 + s) / (4 + 2 s) on the diagonal and s / (4 + 2 s) off it (s = 0.01), and an
    annotator who always answers the other label gets exactly the flipped matrix."""
    truth = ["pos"] * 4 + ["neg"] * 4
    votes = {i: {"ann": t, "bob": t, "contrarian": FLIP[t], "dee": t} for i, t in enumerate(truth)}
    posteriors, confusion, _ = dawid_skene(votes)
    assert all(posteriors[i][t] == pytest.approx(1.0, abs=1e-6) for i, t in enumerate(truth))
    assert confusion["ann"] == pytest.approx(np.array([[4.01, 0.01], [0.01, 4.01]]) / 4.02, abs=1e-6)
    assert confusion["contrarian"] == pytest.approx(np.array([[0.01, 4.01], [4.01, 0.01]]) / 4.02, abs=1e-6)


# -- agreement ------------------------------------------------------------------------------------

def test_cohen_kappa_and_krippendorff_alpha_equal_their_hand_computed_values():
    """Two annotators, ann = (p, n, p, n) and bob = (p, n, p, p): observed agreement 3/4; chance
    1/2 x 3/4 + 1/2 x 1/4 = 1/2; kappa = (3/4 - 1/2) / (1 - 1/2) = 0.5. Three annotators on four
    items, (0 0 0), (1 1), (0 1 1), (0 0): the coincidences o_00 = 3 + 2, o_11 = 2 + 1, o_01 = o_10
    = 1 (n = 10, n_0 = 6, n_1 = 4), so D_o = 2/10, D_e = 2 x 6 x 4 / (10 x 9) and alpha = 1 -
    0.2 / 0.5333 = 0.625."""
    two = [entry(i, a, "ann") for i, a in enumerate("pnpn")] + [entry(i, b, "bob") for i, b in enumerate("pnpp")]
    found = agreement(two)
    assert (found.measure, found.n_examples, found.disagreements) == (COHEN, 4, [3])
    assert found.value == pytest.approx(0.5)
    three = [entry(0, "0", "a"), entry(0, "0", "b"), entry(0, "0", "c"), entry(1, "1", "a"), entry(1, "1", "b"),
             entry(2, "0", "a"), entry(2, "1", "b"), entry(2, "1", "c"), entry(3, "0", "b"), entry(3, "0", "c")]
    found = agreement(three)
    assert found.measure == KRIPPENDORFF and found.value == pytest.approx(0.625) and found.disagreements == [2]
    assert agreement([entry(0, "p", "a"), entry(0, "p", "b")]).value is None  # one answer: undefined
    assert agreement([entry(0, "p", "a"), entry(1, "n", "b")]) is None        # nobody labelled twice
    # a tie broken by a third annotator in the next round counts in the round of the first label
    rounds = agreement_by_round(two + [entry(3, "p", "cy", round_index=1)])
    assert [r.round for r in rounds] == [0] and rounds[0].annotators == ["ann", "bob", "cy"]


# -- the ledger -----------------------------------------------------------------------------------

def test_an_old_single_annotator_ledger_reads_and_grows_as_before(tmp_path):
    def old_line(values):  # the ledger's line as written before annotators were named
        body = json.dumps({k: values[k] for k in ("id", "answer", "target", "round", "source")}, sort_keys=True)
        return json.dumps({**values, "check": hashlib.sha256(body.encode()).hexdigest()[:16]}) + "\n"

    path = tmp_path / "labels.jsonl"
    old = [{"id": 3, "answer": "positive", "target": " positive", "round": 0, "source": "gold"},
           {"id": 5, "answer": "negative", "target": None, "round": 0, "source": "person"}]
    path.write_text("".join(old_line(values) for values in old))
    ledger = LabelLedger(path)
    assert ledger.labels() == {3: {**old[0], "check": json.loads(path.read_text().splitlines()[0])["check"]},
                               5: {**old[1], "check": json.loads(path.read_text().splitlines()[1])["check"]}}
    ledger.append([Label(7, "positive")], 1, "person")  # anonymous: the line has no annotator, as before
    assert path.read_text().splitlines()[2] == old_line({"id": 7, "answer": "positive", "target": None, "round": 1,
                                                         "source": "person"}).strip()
    with pytest.raises(StarError, match="labeled already"):
        ledger.append([Label(7, "positive", annotator="bob")], 1, "person")  # one label per example
    several = LabelLedger(path, annotators=2)
    several.append([Label(7, "negative", annotator="bob")], 1, "person")
    assert several.resolution().ties == {7} and json.loads(path.read_text().splitlines()[3])["annotator"] == "bob"
    with pytest.raises(StarError, match="same annotator"):
        several.append([Label(7, "positive", annotator="bob")], 1, "person")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3] + [lines[3].replace('"bob"', '"eve"')]) + "\n")
    with pytest.raises(StarError, match="checksum"):  # the annotator is in the checksum where given
        LabelLedger(path).read()


# -- people: two annotators on one batch ------------------------------------------------------------

def test_two_annotators_with_one_disagreement_train_on_the_agreed_labels(tiny_model_dir, unlabeled_pool, tmp_path,
                                                                          capsys):
    data, answers = unlabeled_pool
    run_dir = tmp_path / "R"
    assert star(capsys, *human_args(tiny_model_dir, data, run_dir, "--annotators", 2))[0] == 0
    rows = waiting_batch(run_dir, 0)
    ids = [row["id"] for row in rows]
    ann = dict(zip(ids, ["positive", "negative", "positive", "negative"]))
    bob = dict(zip(ids, ["positive", "negative", "positive", "positive"]))  # they disagree on the last one
    csv_path = write_csv(tmp_path / "ann.csv", [{"id": i, "answer": a} for i, a in ann.items()])
    code, lines = star(capsys, "label", run_dir, csv_path)  # several annotators: who labelled must be said
    assert_one_line_error(code, lines, "this run takes 2 annotators per example")
    code, out, _ = star_out(capsys, "label", run_dir, csv_path, "--annotator", "ann")
    assert code == 0 and "imported 4 labels for round 0; 4 of 4 left" in out[0]
    # bob labels in Label Studio: its export names him on each annotation
    export = [{"id": 50 + n, "data": {"id": i}, "annotations": [
        {"id": n, "completed_by": {"id": 2, "email": "bob@lab"}, "updated_at": "2026-12-01T10:00:00Z",
         "result": [{"from_name": "answer", "to_name": "question", "type": "choices",
                     "value": {"choices": [bob[i]]}}]}]} for n, i in enumerate(ids)]
    (tmp_path / "bob.json").write_text(json.dumps(export))
    code, out, _ = star_out(capsys, "label", run_dir, tmp_path / "bob.json")
    assert code == 0 and "1 of 4 left (1 tied between annotators" in out[0]

    code, out, _ = star_out(capsys, "status", run_dir)
    assert code == 0
    assert f"tied between annotators, waiting for one more: id(s) {ids[3]}" in out
    assert (f"agreement, round 0: 2 annotators (ann, bob@lab), 4 examples labelled by two or more, "
            f"Cohen's kappa 0.50; they disagree on id(s) {ids[3]}") in out
    state = star_al.status(run_dir)
    assert state.agreement[0].value == pytest.approx(0.5) and state.tied == [ids[3]]

    # the tie holds nobody up: round 0 trains on the three agreed labels, the tie is queued
    assert resume(capsys, run_dir)[0] == 0
    record = star_al.status(run_dir).rounds[0]
    assert record.selected_ids == ids[:3] and record.queued_ids == [ids[3]] and record.n_labeled == 3
    resolved = LabelLedger(run_dir / "labels.jsonl", annotators=2).labels()
    assert {i: resolved[i]["answer"] for i in ids[:3]} == {i: ann[i] for i in ids[:3]} and ids[3] not in resolved

    # round 1: the tie comes back first; ann's refilled sheet skips what she said, bob may not change his mind
    batch = waiting_batch(run_dir, 1)
    assert batch[0]["id"] == ids[3] and len(batch) == 4
    new = {row["id"]: answers[row["id"]] for row in batch[1:]}
    refilled = write_csv(tmp_path / "ann1.csv", [{"id": ids[3], "answer": ann[ids[3]]}]
                         + [{"id": i, "answer": a} for i, a in new.items()])
    code, out, _ = star_out(capsys, "label", run_dir, refilled, "--annotator", "ann")
    assert code == 0 and "imported 3 labels for round 1; 1 row(s) already in the ledger, skipped" in out[0]
    changed = write_csv(tmp_path / "bob1.csv", [{"id": ids[3], "answer": ann[ids[3]]}])
    code, lines = star(capsys, "label", run_dir, changed, "--annotator", "bob@lab")
    assert_one_line_error(code, lines, f"id {ids[3]} by bob@lab was answered 'positive' already, not 'negative'")
    # a file with an annotator column: bob's round-1 answers and cy's vote on the tie
    both = write_csv(tmp_path / "more.csv", [{"id": i, "answer": a, "annotator": "bob@lab"} for i, a in new.items()]
                     + [{"id": ids[3], "answer": "negative", "annotator": "cy"}])
    code, out, _ = star_out(capsys, "label", run_dir, both)
    assert code == 0 and "imported 4 labels for round 1" in out[0] and "0 of 4 left" in out[0]
    assert resume(capsys, run_dir)[0] == 0
    record = star_al.status(run_dir).rounds[1]
    assert record.selected_ids == [row["id"] for row in batch] and record.n_labeled == 7
    assert LabelLedger(run_dir / "labels.jsonl", annotators=2).labels()[ids[3]]["answer"] == "negative"
    assert {e.get("annotator") for e in LabelLedger(run_dir / "labels.jsonl").read()} == {"ann", "bob@lab", "cy"}

    # star report: the agreement section
    code, out, _ = star_out(capsys, "report", run_dir, "--include-unfinished", "--out", tmp_path / "report")
    report = (tmp_path / "report" / "report.md").read_text()
    assert code == 0 and "## Annotators" in report
    assert f"| sst2 | me | 0 | 0 | ann, bob@lab, cy | 4 | Krippendorff's alpha |" in report


def test_dawid_skene_runs_resolve_a_disagreement_by_reliability(tiny_model_dir, unlabeled_pool, tmp_path, capsys):
    data, _ = unlabeled_pool
    run_dir = tmp_path / "R"
    args = human_args(tiny_model_dir, data, run_dir, "--annotators", 2, "--resolve", "dawid-skene")
    assert star(capsys, *args)[0] == 0
    ids = [row["id"] for row in waiting_batch(run_dir, 0)]
    ann = ["positive", "negative", "positive", "negative"]
    bob = ["positive", "negative", "positive", "positive"]
    for who, given in (("ann", ann), ("bob", bob)):
        star_al.import_labels(run_dir, [(f"row {n}", i, a) for n, (i, a) in enumerate(zip(ids, given))], "person",
                              annotator=who)
    entries = LabelLedger(run_dir / "labels.jsonl").read()
    expected = resolve(entries, 2, "dawid-skene").labels
    assert len(expected) == 4  # the posteriors differ: nothing is tied
    assert resume(capsys, run_dir)[0] == 0
    assert star_al.status(run_dir).rounds[0].selected_ids == ids


def test_a_file_imported_again_as_it_fills_adds_only_its_new_rows(tiny_model_dir, unlabeled_pool, tmp_path, capsys):
    data, answers = unlabeled_pool
    run_dir = tmp_path / "R"
    assert star(capsys, *human_args(tiny_model_dir, data, run_dir))[0] == 0
    ids = [row["id"] for row in waiting_batch(run_dir, 0)]
    rows = [{"id": i, "answer": answers[i] if n < 2 else ""} for n, i in enumerate(ids)]
    path = write_csv(tmp_path / "sheet.csv", rows)
    done = star_al.import_labels(run_dir, read_answers(path), "person")
    assert (done.imported, done.left, done.empty, done.same) == (2, 2, 2, 0)
    rows[2]["answer"] = answers[ids[2]]
    write_csv(path, rows)
    done = star_al.import_labels(run_dir, read_answers(path), "person")
    assert (done.imported, done.left, done.empty, done.same) == (1, 1, 1, 2)
    rows[0]["answer"] = FLIP[answers[ids[0]]]  # the same annotator (anonymous) changing an answer
    write_csv(path, rows)
    code, lines = star(capsys, "label", run_dir, path)
    assert_one_line_error(code, lines, f"id {ids[0]} was answered {answers[ids[0]]!r} already")
    code, lines = star(capsys, "label", run_dir, write_csv(tmp_path / "b.csv", [{"id": ids[1], "answer": "positive"}]),
                       "--annotator", "bob")
    assert_one_line_error(code, lines, "labeled already (this run takes one label per example")
    entries = LabelLedger(run_dir / "labels.jsonl").read()
    assert [e["id"] for e in entries] == ids[:3] and all("annotator" not in e for e in entries)


def test_a_learner_teaches_with_annotators(tiny_backbone, tmp_path):
    from star_al.learner import Learner, make_task

    task = make_task("mood", "{text}\nMood:", ["happy", "sad"])
    pool = [{"text": f"day {n}"} for n in range(12)]
    learner = Learner(tiny_backbone.model, task, pool, tmp_path / "L", tokenizer=tiny_backbone.tokenizer,
                      strategy="random", preset="smoke", warm_start=2, query_size=2, n_rounds=1, annotators=2)
    ids = learner.query().ids
    with pytest.raises(StarError, match="2 annotators per example"):
        learner.teach({i: "happy" for i in ids})
    assert learner.teach({i: "happy" for i in ids}, annotator="ann") == 2
    assert learner.teach({ids[0]: "happy", ids[1]: "sad"}, annotator="bob") == 1
    record = learner.fit()
    assert record.selected_ids == [ids[0]] and record.queued_ids == [ids[1]]


def test_settings_that_do_not_go_together_are_refused_in_one_line(tiny_model_dir, unlabeled_pool, tmp_path, capsys):
    data, _ = unlabeled_pool
    for extra, needle in ((("--annotators", 2, "--labels", "gold"), "--annotators counts people"),
                          (("--resolve", "dawid-skene"), "it needs --annotators 2 or more"),
                          (("--oracle-noise", 0.1), "--oracle-noise makes the simulated annotator err"),
                          (("--oracle-noise", 1.5, "--labels", "gold"), "oracle_noise must be at least 0.0 and at"),
                          (("--annotators", 0), "annotators must be at least 1")):
        code, lines = star(capsys, *human_args(tiny_model_dir, data, tmp_path / "x", *extra))
        assert_one_line_error(code, lines, needle)


# -- the simulated annotator who errs -----------------------------------------------------------------

def test_oracle_noise_errs_at_its_rate_the_same_way_for_an_example_whatever_its_batch():
    labels = ("positive", "negative", "neutral")
    examples = [Example(i, f"text {i}", f" {labels[i % 3]}", labels[i % 3]) for i in range(4000)]
    noisy = GoldOracle(0.3, seed=7, labels=labels)
    given = noisy.label(Batch(0, examples))
    wrong = [label for label, ex in zip(given, examples) if label.answer != ex.gold]
    assert abs(len(wrong) / len(examples) - 0.3) < 0.03  # 4 standard errors of a binomial at n = 4000
    assert all(label.answer in labels and label.target is None for label in wrong)
    counts = np.bincount([labels.index(label.answer) for label in wrong], minlength=3)
    assert counts.min() > 0.25 * len(wrong)  # another label, uniformly
    assert noisy.label(Batch(3, examples[::-1][:50])) == given[::-1][:50]  # per example, not per batch
    assert GoldOracle(0.3, seed=8, labels=labels).label(Batch(0, examples)) != given
    assert GoldOracle(0.0, seed=7, labels=labels).label(Batch(0, examples)) == GoldOracle().label(Batch(0, examples))
    choice = Example(1, "q", " b", "b", choices=("a", "b", "c"))
    assert GoldOracle(1.0, labels=()).label(Batch(0, [choice]))[0].answer in ("a", "c")
    assert noisy.source == "noisy-gold" and GoldOracle().source == "gold"


def gold_args(model_dir, data, out, *extra):
    return ["run", "--task", "sst2", "--data", data, "--strategy", "me", "--preset", "smoke", "--model", model_dir,
            "--device", "cpu", "--dtype", "float32", "--warm-start", 4, "--query-size", 3, "--rounds", 1,
            "--pool-size", 30, "--rank", 4, "--test-limit", 6, "--out", out, "--cache-dir", out.parent / "cache",
            *extra]


def test_a_noiseless_oracle_is_the_gold_run_and_a_noisy_one_errs_as_drawn(tiny_model_dir, sst2_folder, tmp_path,
                                                                           capsys):
    runs = {name: tmp_path / name for name in ("gold", "zero", "noisy")}
    assert star(capsys, *gold_args(tiny_model_dir, sst2_folder, runs["gold"]))[0] == 0
    assert star(capsys, *gold_args(tiny_model_dir, sst2_folder, runs["zero"], "--oracle-noise", 0))[0] == 0
    assert star(capsys, *gold_args(tiny_model_dir, sst2_folder, runs["noisy"], "--oracle-noise", 0.5))[0] == 0
    assert (runs["zero"] / "labels.jsonl").read_bytes() == (runs["gold"] / "labels.jsonl").read_bytes()
    same = ("selected_ids", "n_labeled", "accuracy", "train_loss")
    rounds = {name: [json.loads(line) for line in (path / "rounds.jsonl").read_text().splitlines()]
              for name, path in runs.items()}
    assert [{k: r[k] for k in same} for r in rounds["zero"]] == [{k: r[k] for k in same} for r in rounds["gold"]]
    assert (runs["zero"] / "adapter" / "adapter_model.safetensors").read_bytes() == \
        (runs["gold"] / "adapter" / "adapter_model.safetensors").read_bytes()

    gold = {e["id"]: e["answer"] for e in LabelLedger(runs["gold"] / "labels.jsonl").read()}
    noisy = LabelLedger(runs["noisy"] / "labels.jsonl").read()
    assert [e["id"] for e in noisy] == list(gold) and {e["source"] for e in noisy} == {"noisy-gold"}
    drawn = GoldOracle(0.5, seed=0, labels=("positive", "negative"))
    expected = {label.id: label.answer for label in drawn.label(
        Batch(0, [Example(i, "", None, gold[i]) for i in gold]))}
    assert {e["id"]: e["answer"] for e in noisy} == expected
    assert 0 < sum(expected[i] != gold[i] for i in gold) < len(gold)
    assert rounds["noisy"][0]["selected_ids"] == rounds["gold"][0]["selected_ids"]  # the warm start is the same

    # a run directory written before these settings existed is still resumed (they read as their defaults)
    config = json.loads((runs["gold"] / "config.json").read_text())
    for key in ("annotators", "resolve", "oracle_noise"):
        config.pop(key)
    (runs["gold"] / "config.json").write_text(json.dumps(config))
    assert star(capsys, *gold_args(tiny_model_dir, sst2_folder, runs["gold"]))[0] == 0
    # a noisy run's own default directory and its own line in the report
    noisy_config = star_al.status(runs["noisy"]).config
    assert default_run_dir("runs", noisy_config).parts[-2] == "me-noise0.5"
    star_out(capsys, "report", runs["gold"], runs["noisy"], "--out", tmp_path / "report")
    assert "me-noise:0.5" in (tmp_path / "report" / "report.md").read_text()
