"""lm-eval tasks beyond one fixed set of choices: per-example choices (choice tasks) and generated
answers (generate_until), checked against lm-eval itself on local copies of OpenBookQA and GSM8K
that include lm-eval's own task definitions (only the dataset is swapped for local JSONL)."""

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from star_al.data.batching import encode_pair, encode_prompt
from star_al.data.tasks import CHOICE, Example, fingerprint, load_examples
from star_al.engine.choices import candidate_measures
from star_al.errors import StarError

pytestmark = pytest.mark.skipif(not importlib.util.find_spec("lm_eval"), reason="lm-eval extra not installed")

OBQA_LINE = re.compile(r"(.*)\nAnswerA:? (.*)\nAnswerB:? (.*)\nAnswerC:? (.*)\nAnswerD:? (.*)\n"
                       r"The correct answer is ", re.S)


def _obqa_docs(source: Path, count: int) -> list[dict]:
    """OpenBookQA lines of the shared data (choices written into the question, `AnswerA text` in train,
    `AnswerA: text` in test) as lm-eval's openbookqa reads the Hugging Face rows."""
    docs = []
    for n, line in enumerate(source.read_text().splitlines()[:count]):
        record = json.loads(line)
        stem, *choices = OBQA_LINE.fullmatch(record["question"]).groups()
        docs.append({"id": f"{source.stem}-{n}", "question_stem": stem,
                     "choices": {"text": choices, "label": list("ABCD")}, "answerKey": record["answer"]})
    return docs


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def local_tasks(data_root, tmp_path, monkeypatch):
    """lm-eval's openbookqa and gsm8k YAMLs, included whole, over local copies of the data (offline)."""
    import lm_eval

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    shipped = Path(lm_eval.__file__).parent / "tasks"
    data = Path(data_root)
    obqa = {split: _write_jsonl(tmp_path / f"obqa_{split}.jsonl", _obqa_docs(data / "obqa" / f"{split}.jsonl", count))
            for split, count in (("train", 40), ("test", 24))}
    gsm8k = {split: _write_jsonl(tmp_path / f"gsm8k_{split}.jsonl",
                                 [json.loads(line) for line in (data / "gsm8k" / f"{split}.jsonl").read_text()
                                  .splitlines()[:count]])
             for split, count in (("train", 40), ("test", 10))}
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "obqa_local.yaml").write_text(
        f"include: {shipped / 'openbookqa' / 'openbookqa.yaml'}\ntask: obqa_local\ndataset_path: json\n"
        f"dataset_name: null\ndataset_kwargs:\n  data_files: {{train: {obqa['train']}, validation: {obqa['test']}, "
        f"test: {obqa['test']}}}\n")
    (folder / "gsm8k_local.yaml").write_text(
        f"include: {shipped / 'gsm8k' / 'gsm8k.yaml'}\ntask: gsm8k_local\ndataset_path: json\n"
        f"dataset_name: null\ndataset_kwargs:\n  data_files: {{train: {gsm8k['train']}, test: {gsm8k['test']}}}\n")
    return {"obqa": folder / "obqa_local.yaml", "gsm8k": folder / "gsm8k_local.yaml", "folder": folder,
            "obqa_docs": _obqa_docs(data / "obqa" / "test.jsonl", 24)}


def _lm_eval_samples(model_dir, local_tasks, name, **options):
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    results = lm_eval.simple_evaluate(
        model=HFLM(pretrained=str(model_dir), device="cpu", dtype="float32", batch_size=8), tasks=[name],
        task_manager=TaskManager(include_path=str(local_tasks["folder"]), include_defaults=False), log_samples=True,
        **options)
    return results


def _star_samples(model_dir, yaml_path, out, name):
    from star_al.cli import main

    assert main(["eval", "--task", str(yaml_path), "--model", str(model_dir), "--device", "cpu", "--dtype",
                 "float32", "--log-samples", "--out", str(out)]) == 0
    return [json.loads(line) for line in (out / f"samples_{name}.jsonl").read_text().splitlines()]


# -- what the tasks become ---------------------------------------------------------------------

def test_a_multiple_choice_task_whose_choices_differ_becomes_a_choice_task_carrying_each_examples_choices(local_tasks):
    from star_al.data.catalog import load_task

    task = load_task(str(local_tasks["obqa"]))
    assert task.answer_type == CHOICE
    examples = load_examples(task, "test")
    assert len(examples) == 24
    for example, doc in zip(examples, local_tasks["obqa_docs"]):
        assert example.prompt == doc["question_stem"]
        assert example.choices == tuple(doc["choices"]["text"])
        assert example.gold == doc["choices"]["text"]["ABCD".index(doc["answerKey"])]
        assert example.target == " " + example.gold  # lm-eval's target delimiter, then the gold continuation


def test_a_choice_label_must_be_one_of_the_examples_choices(local_tasks):
    from star_al.data.catalog import load_task

    task = load_task(str(local_tasks["obqa"]))
    example = load_examples(task, "train")[0]
    other = next(choice for choice in example.choices if choice != example.gold)
    labeled = task.with_label(example, other.upper() + " ")
    assert (labeled.gold, labeled.target, labeled.choices) == (other, " " + other, example.choices)
    with pytest.raises(StarError, match="is not one of its choices"):
        task.with_label(example, "none of these")


def test_people_answering_a_choice_task_name_one_of_the_examples_choices(local_tasks):
    """`star label` checks a choice task's answers against each example's own choices before
    any is kept (a bad one in the ledger would stop the run at training)."""
    from star_al.data.catalog import load_task
    from star_al.labeling.people import check_answers

    task = load_task(str(local_tasks["obqa"]))
    first, second = load_examples(task, "train")[:2]
    examples = {first.id: first, second.id: second}
    rows = [("f.csv:2", first.id, " " + first.choices[1].upper()), ("f.csv:3", second.id, second.choices[0])]
    checked = check_answers(task, rows, set(examples), {}, examples=examples)
    assert [(label.id, label.answer) for label in checked.labels] == [(first.id, first.choices[1]),
                                                                      (second.id, second.choices[0])]
    with pytest.raises(StarError, match=rf"f.csv:3: id {second.id}: answer 'none of these' is not one of its "
                                        r"choices \("):
        check_answers(task, [rows[0], ("f.csv:3", second.id, "none of these")], set(examples), {},
                      examples=examples)


def test_examples_without_choices_keep_their_fingerprint():
    examples = [Example(0, "a prompt", " yes", "yes"), Example(1, "another", None, None)]
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(json.dumps([ex.id, ex.prompt, ex.target, ex.gold]).encode())
    digest.update(b"\x00split\x00")
    assert fingerprint(examples) == digest.hexdigest()
    with_choices = [Example(0, "a prompt", " yes", "yes", choices=("yes", "no")), examples[1]]
    assert fingerprint(with_choices) != fingerprint(examples)


def test_a_generate_until_task_stops_cuts_and_filters_as_lm_eval_and_judges_by_its_metric(local_tasks):
    from lm_eval.tasks import TaskManager

    from star_al.data.catalog import load_task

    task = load_task(str(local_tasks["gsm8k"]))
    assert (task.answer_type, task.max_new_tokens) == ("text", 256)  # gsm8k names no max_gen_toks: HFLM's 256
    assert task.until == ("Question:", "</s>", "<|im_end|>")
    assert task.answer_complete("so #### 3\n\nQuestion:") and not task.answer_complete("so #### 3\n\nQuestion")
    examples = load_examples(task, "test")
    example = examples[0]
    assert example.prompt.startswith("Question: Janet") and example.prompt.endswith("\nAnswer:")
    assert example.target == " " + example.record["doc"]["answer"]
    lm_task = TaskManager(include_path=str(local_tasks["folder"]), include_defaults=False).load(
        "gsm8k_local")["tasks"]["gsm8k_local"]
    strict = lm_task._filters[0]
    assert strict.name == "strict-match"
    gold = example.record["doc"]["answer"].split("#### ")[-1]
    for text in (f"She makes #### {gold}.", f"#### {gold}\n\nQuestion: #### 1", f"#### 1,000 or #### {gold}",
                 f"Question: #### {gold}", "no number", f"#### -{gold}.5"):
        cut = text.split("Question:")[0]
        expected = strict.filters[1]().apply(strict.filters[0]().apply([[cut]], [None]), [None])
        expected = list(expected)[0]
        prediction = task.prediction_for(example, text)
        assert prediction == expected
        assert task.is_correct_for(example, prediction) == bool(
            lm_task.process_results(example.record["doc"], [expected])["exact_match"])
    assert task.is_correct_for(example, task.prediction_for(example, f"#### {gold}"))
    assert not task.is_correct_for(example, task.prediction_for(example, "Question: #### " + gold))


# -- scoring the candidates ---------------------------------------------------------------------

def test_candidate_measures_pick_as_lm_eval_and_read_me_pe_off_the_candidates_distribution():
    logliks = np.array([[[-1.0, -2.0, -0.5, -np.inf], [-3.0, -1.0, -2.0, -4.0]]])
    lengths = np.array([[1, 10, 1, 1], [30, 2, 3, 1]], dtype=float)
    measured = candidate_measures(logliks, lengths, np.array([2, 0]))
    assert measured.choice.tolist() == [2, 1]
    assert measured.choice_norm.tolist() == [1, 0]  # per character: -2/10 beats -0.5/1, -3/30 beats -1/2
    q = np.exp([-1.0, -2.0, -0.5]) / np.exp([-1.0, -2.0, -0.5]).sum()
    assert measured.me[0, 0] == pytest.approx(-(q * np.log(q)).sum())
    assert measured.pe[0, 0] == pytest.approx(-np.log(q[2]))
    assert measured.pe_gold[0, 1] == pytest.approx(-np.log(np.exp(-3.0) / np.exp([-3.0, -1.0, -2.0, -4.0]).sum()))
    assert measured.probs[0, 3] == 0 and measured.probs.sum(axis=1) == pytest.approx([1, 1])
    assert measured.confidence[0] == pytest.approx(q[2])
    two_passes = candidate_measures(np.stack([logliks[0], logliks[0] - 1]), lengths, np.array([-1, 0]))
    assert two_passes.pe_gold is None and two_passes.me.shape == (2, 2)
    assert two_passes.choice.tolist() == [2, 1]


def _prompts_and_candidates(tok, examples):
    prompts = [encode_prompt(tok, ex.prompt) for ex in examples]
    candidates = [[encode_pair(tok, ex.prompt, " " + choice).target_ids for choice in ex.choices] for ex in examples]
    return prompts, candidates


def _tokens_run(model):
    """Count the input tokens (padding included) of every forward pass, until the handle is removed."""
    counted = []
    handle = model.get_input_embeddings().register_forward_pre_hook(
        lambda module, args: counted.append(args[0].numel()))
    return counted, handle


@pytest.mark.parametrize("instruction", ["", "Pick the answer that completes the science fact best, please: "])
def test_candidates_scored_on_one_cached_prompt_equal_whole_sequences_and_cost_one_prompt(tiny_backbone, local_tasks,
                                                                                        instruction):
    from star_al.data.catalog import load_task
    from star_al.engine.scoring import candidate_stats, response_stats

    task = load_task(str(local_tasks["obqa"]))
    examples = [Example(ex.id, instruction + ex.prompt, ex.target, ex.gold, choices=ex.choices)
                for ex in load_examples(task, "test")[:10]]
    examples[3] = Example(3, examples[3].prompt, None, None, choices=("one", "two"))  # fewer candidates
    tok, model = tiny_backbone.tokenizer, tiny_backbone.model
    prompts, candidates = _prompts_and_candidates(tok, examples)
    hidden = np.zeros((len(examples), model.get_output_embeddings().in_features), dtype=np.float32)
    counted, handle = _tokens_run(model)
    try:
        logliks = candidate_stats(model, prompts, candidates, tok.pad_token_id, batch_size=12, embeddings=hidden)
    finally:
        handle.remove()
    assert logliks.shape == (1, 10, 4) and np.isneginf(logliks[0, 3, 2:]).all()
    with torch.inference_mode():
        for row, (prompt, these) in enumerate(zip(prompts, candidates)):
            for j, candidate in enumerate(these):
                nll, _ = response_stats(model, [prompt], [candidate], tok.pad_token_id, batch_size=1)
                assert logliks[0, row, j] == pytest.approx(-nll[0, 0], abs=1e-4)
            state = model(input_ids=torch.tensor([prompt], device=model.device), output_hidden_states=True)
            np.testing.assert_allclose(hidden[row], state.hidden_states[-1][0, -1].float().cpu().numpy(), atol=1e-4)
    one_prompt_each = sum(len(p) for p in prompts) + sum(len(c) for these in candidates for c in these)
    every_candidate_whole = sum(len(p) + len(c) for p, these in zip(prompts, candidates) for c in these)
    assert sum(counted) <= 1.5 * one_prompt_each < every_candidate_whole  # padding is the rest


def _noisy_adapter(model):
    """A LoRA adapter with dropout whose B is not zero (at zero, dropout on its branch changes nothing)."""
    from star_al.config import LoraSettings
    from star_al.models.adapters import LORA

    peft_model = LORA.attach(model, LoraSettings(rank=4, alpha=8, dropout=0.3), seed=0)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    return peft_model.eval()


def test_choice_scores_match_the_candidates_and_mc_passes_keep_a_pass_axis(tiny_backbone, local_tasks):
    from star_al.data.catalog import load_task
    from star_al.engine.scoring import ScoringOptions, candidate_stats, score_examples

    task = load_task(str(local_tasks["obqa"]))
    examples = load_examples(task, "test")[:8]
    tok, model = tiny_backbone.tokenizer, tiny_backbone.model
    scores = score_examples(model, tok, task, examples, ScoringOptions(batch_size=8, gold_pe=True))
    prompts, candidates = _prompts_and_candidates(tok, examples)
    logliks = candidate_stats(model, prompts, candidates, tok.pad_token_id, batch_size=8)[0]
    picks = logliks.argmax(axis=1)
    assert scores.predictions == [ex.choices[p] for ex, p in zip(examples, picks)]
    assert scores.correct.tolist() == [ex.choices[p] == ex.gold for ex, p in zip(examples, picks)]
    lengths = np.array([[len(c) for c in ex.choices] for ex in examples])
    assert scores.correct_norm.tolist() == [ex.choices[p] == ex.gold for ex, p in
                                            zip(examples, (logliks / lengths).argmax(axis=1))]
    assert scores.label_probs.shape == (8, 4) and scores.pe_gold.shape == (1, 8)
    np.testing.assert_allclose(np.stack(scores.candidate_logprobs), logliks, atol=1e-5)
    peft_model = _noisy_adapter(model)
    torch.manual_seed(0)
    mc = score_examples(peft_model, tok, task, examples, ScoringOptions(batch_size=4, passes=3))
    assert mc.me.shape == (3, 8) and mc.pe.shape == (3, 8)
    assert not np.allclose(mc.me[0], mc.me[1])  # each pass draws its own dropout
    torch.manual_seed(0)
    np.testing.assert_array_equal(score_examples(peft_model, tok, task, examples,
                                                 ScoringOptions(batch_size=4, passes=3)).me, mc.me)


def test_processes_sharing_the_batches_draw_the_dropout_masks_one_process_draws(tiny_backbone, local_tasks):
    """Two processes run one after the other here: each steps past the masks of the batches (a prompt
    pass and a candidates pass each) that the other computes, so together they give one process's scores."""
    from star_al.data.catalog import load_task
    from star_al.engine.distributed import SINGLE, Processes
    from star_al.engine.scoring import candidate_stats, mc_dropout_active

    class OneOfTwo(Processes):
        def __init__(self, rank, computed):
            super().__init__()
            self.rank, self.world, self.computed = rank, 2, computed

        def gather(self, mine, n):
            self.computed.update(mine)
            return [self.computed.get(i, ([], [], None)) for i in range(n)]

    task = load_task(str(local_tasks["obqa"]))
    examples = [Example(ex.id, "Pick the answer that completes the science fact best, please: " + ex.prompt,
                        ex.target, ex.gold, choices=ex.choices) for ex in load_examples(task, "test")[:10]]
    tok = tiny_backbone.tokenizer
    prompts, candidates = _prompts_and_candidates(tok, examples)
    peft_model, computed, logliks = _noisy_adapter(tiny_backbone.model), {}, []
    for processes in (SINGLE, OneOfTwo(1, computed), OneOfTwo(0, computed)):
        torch.manual_seed(0)
        with mc_dropout_active(peft_model):
            logliks.append(candidate_stats(peft_model, prompts, candidates, tok.pad_token_id, batch_size=8, passes=2,
                                           processes=processes))
    assert len(computed) == 5  # batches of two questions
    np.testing.assert_array_equal(logliks[2], logliks[0])
    assert not np.array_equal(logliks[0][0], logliks[0][1])


def test_training_on_a_choice_task_teaches_the_gold_continuation(tiny_backbone, local_tasks):
    from star_al.config import LoraSettings, TrainSettings
    from star_al.data.catalog import load_task
    from star_al.engine.scoring import candidate_stats
    from star_al.engine.training import train_adapter
    from star_al.models.adapters import LORA

    task = load_task(str(local_tasks["obqa"]))
    examples = load_examples(task, "train")[:8]
    tok = tiny_backbone.tokenizer
    prompts, candidates = _prompts_and_candidates(tok, examples)
    gold_at = [ex.choices.index(ex.gold) for ex in examples]

    def gold_margin(model):
        logliks = candidate_stats(model, prompts, candidates, tok.pad_token_id, batch_size=8)[0]
        return np.mean([logliks[row, g] - np.delete(logliks[row], g).max() for row, g in enumerate(gold_at)])

    before = gold_margin(tiny_backbone.model)
    peft_model = LORA.attach(tiny_backbone.model, LoraSettings(rank=4, alpha=8, dropout=0.0), seed=0)
    train_adapter(peft_model, tok, task, examples, TrainSettings(epochs=6, batch_size=4, learning_rate=3e-2), 0,
                  desc=None)
    assert gold_margin(peft_model) > before + 1.0


# -- the same answers as lm-eval, and a round of active learning ------------------------------

def test_star_eval_answers_openbookqa_per_example_as_lm_eval_does(tiny_model_dir, local_tasks, tmp_path):
    ours = _star_samples(tiny_model_dir, local_tasks["obqa"], tmp_path / "E", "obqa_local")
    results = _lm_eval_samples(tiny_model_dir, local_tasks, "obqa_local")
    theirs = sorted(results["samples"]["obqa_local"], key=lambda s: s["doc_id"])
    assert len(ours) == len(theirs) == 24
    for mine, their in zip(ours, theirs):
        their_logliks = [float(pair[0]) for pair in their["filtered_resps"]]
        assert mine["resps"] == pytest.approx(their_logliks, abs=1e-3)
        assert mine["doc"]["choices"].index(mine["filtered_resps"]) == int(np.argmax(their_logliks))
    assert [s["acc"] for s in ours] == [s["acc"] for s in theirs]
    assert [s["acc_norm"] for s in ours] == [s["acc_norm"] for s in theirs]
    summary = json.loads((tmp_path / "E" / "results.json").read_text())["results"]["obqa_local"]
    assert summary["acc_norm"] == pytest.approx(results["results"]["obqa_local"]["acc_norm,none"])


GSM8K_SHORT = """include: gsm8k_local.yaml
task: gsm8k_short
generation_kwargs: {until: ["Question:", " by"], do_sample: false, max_gen_toks: 32}
filter_list:
  - name: flexible-extract
    filter:
      - {function: regex, group_select: -1, regex_pattern: "(-?[$0-9.,]{2,})|(-?[0-9]+)"}
      - {function: take_first}
"""


@pytest.mark.parametrize("name", ["gsm8k_local", "gsm8k_short"])
def test_star_eval_answers_gsm8k_per_example_as_lm_eval_does(tiny_model_dir, local_tasks, tmp_path, name):
    """lm-eval's gsm8k as it is (its random-weights answers fail strict-match's regex: "[invalid]"), and with
    a stop string the tiny model writes, 32 new tokens at most and the flexible-extract filter first."""
    (local_tasks["folder"] / "gsm8k_short.yaml").write_text(GSM8K_SHORT)
    ours = _star_samples(tiny_model_dir, local_tasks["folder"] / f"{name}.yaml", tmp_path / "E", name)
    # star prompts zero-shot (the adapter learns the format): lm-eval with --num_fewshot 0
    results = _lm_eval_samples(tiny_model_dir, local_tasks, name, num_fewshot=0)
    first_filter = "strict-match" if name == "gsm8k_local" else "flexible-extract"
    theirs = sorted((s for s in results["samples"][name] if s["filter"] == first_filter), key=lambda s: s["doc_id"])
    assert len(ours) == len(theirs) == 10
    stops = ("Question:",) if name == "gsm8k_local" else ("Question:", " by")
    for mine, their in zip(ours, theirs):
        assert mine["arguments"] == their["arguments"][0][0]
        assert re.split("|".join(map(re.escape, stops)), mine["resps"])[0] == their["resps"][0][0]
        assert mine["filtered_resps"] == their["filtered_resps"][0]
        assert mine["acc"] == their["exact_match"]
    if name == "gsm8k_short":  # the stop string and the regex did their part
        assert any(" by" in s["resps"] for s in ours)
        assert any(s["filtered_resps"] != "[invalid]" for s in ours)


@pytest.mark.parametrize("which", ["obqa", "gsm8k"])
def test_an_active_learning_round_runs_on_each_kind(tiny_model_dir, local_tasks, tmp_path, which):
    from star_al.cli import main

    assert main(["run", "--task", str(local_tasks[which]), "--strategy", "me+dynamic", "--preset", "smoke", "--model",
                 str(tiny_model_dir), "--device", "cpu", "--dtype", "float32", "--warm-start", "4", "--query-size",
                 "3", "--rounds", "1", "--pool-size", "20", "--rank", "4", "--test-limit", "6",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "R")]) == 0
    rounds = [json.loads(line) for line in (tmp_path / "R" / "rounds.jsonl").read_text().splitlines()]
    assert len(rounds) == 2 and rounds[-1]["n_labeled"] == 7
