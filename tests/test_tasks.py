"""Task files: prompts, targets and gold answers on the real data, and errors a user can act on."""

import json
import os
import re
from pathlib import Path

import pytest

from star_al.data import tasks
from star_al.data.catalog import builtin_task_names, load_task
from star_al.data.tasks import load_examples, map_hf_record, resolve_data_dir
from star_al.errors import StarError

GSM8K_INSTRUCTION = "\nAnswer the above question. First, think step by step and then answer the final number.\n"
OBQA_LAYOUT = re.compile(
    r"[^\n]+\nAnswerA: [^\n]*\nAnswerB: [^\n]*\nAnswerC: [^\n]*\nAnswerD: [^\n]*\nThe correct answer is"
)


@pytest.fixture(scope="module")
def data_root() -> str:
    root = Path(os.environ.get("STAR_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))
    assert root.is_dir(), f"the benchmark data is expected at {root}"
    return str(root)


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


@pytest.fixture
def claim_task(tmp_path: Path) -> Path:
    """A user's task with its own field names and labels, data beside the YAML."""
    data = tmp_path / "claims"
    data.mkdir()
    write_jsonl(data / "train.jsonl", [
        {"text": "water is wet", "verdict": "Yes"},
        {"text": "fire is cold", "verdict": "no"},
    ])
    write_jsonl(data / "test.jsonl", [{"text": "ice is cold", "verdict": "yes"}])
    yaml_path = tmp_path / "claims.yaml"
    yaml_path.write_text(
        "name: claims\n"
        "data: claims\n"
        'prompt: "Claim: {text}\\nTrue?"\n'
        "answer: verdict\n"
        "answer_type: label\n"
        "labels: [yes, no]\n"
    )
    return yaml_path


def write_task(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "task.yaml"
    path.write_text(body)
    return path


# --- the built-ins on the real files ------------------------------------------------------------


def test_builtin_task_names_are_the_five_yaml_files():
    assert builtin_task_names() == ["boolq", "gsm8k", "obqa", "sst2", "trec"]


def test_boolq_prompt_target_and_gold_follow_the_paper_template(data_root):
    task = load_task("boolq")
    examples = load_examples(task, "test", data_root=data_root)
    assert len(examples) == 3270
    first = examples[0]
    assert first.prompt == (
        "Please answer the following question with true or false, question: "
        "does ethanol take more energy make that produces?\n\nAnswer format: true/false\nThe correct answer is"
    )
    assert (first.target, first.gold) == (" false", "false")
    assert {example.gold for example in examples} == {"true", "false"}
    assert task.labels == ("true", "false")
    assert task.label_target("true") == " true"
    assert [example.id for example in examples[:3]] == [0, 1, 2]


def test_obqa_train_and_test_normalise_to_the_same_layout(data_root):
    task = load_task("obqa")
    train = load_examples(task, "train", data_root=data_root)
    test = load_examples(task, "test", data_root=data_root)
    assert (len(train), len(test)) == (4957, 500)
    assert all(OBQA_LAYOUT.fullmatch(example.prompt) for example in train + test)
    assert train[0].prompt == (
        "The sun is responsible for\nAnswerA: puppies learning new tricks\n"
        "AnswerB: children growing up and getting old\nAnswerC: flowers wilting in a vase\n"
        "AnswerD: plants sprouting, blooming and wilting\nThe correct answer is"
    )
    assert (train[0].target, train[0].gold) == (" D", "D")
    assert task.label_target("C") == " C"


def test_gsm8k_solution_drops_annotations_and_rewrites_the_final_line(data_root):
    task = load_task("gsm8k")
    first = load_examples(task, "train", data_root=data_root)[0]
    assert first.prompt.endswith("in April and May?" + GSM8K_INSTRUCTION)
    assert first.target == (
        "Natalia sold 48/2 = 24 clips in May.\n"
        "Natalia sold 48+24 = 72 clips altogether in April and May.\nThe final answer is 72"
    )
    assert first.gold == "72"
    assert task.max_new_tokens == 256


def test_gsm8k_golds_are_plain_integers_even_when_written_with_commas(data_root):
    examples = load_examples(load_task("gsm8k"), "test", data_root=data_root)
    assert all(re.fullmatch(r"-?\d+", example.gold) for example in examples)
    assert "276000" in {example.gold for example in examples}  # written "#### 276,000"


def test_gsm8k_extraction_recovers_every_gold_from_its_target(data_root):
    task = load_task("gsm8k")
    examples = load_examples(task, "test", data_root=data_root)
    assert all(task.is_correct(task.extract_answer(example.target), example.gold) for example in examples)


def test_sst2_trains_on_train_and_evaluates_on_the_872_dev_sentences(data_root):
    task = load_task("sst2")
    test = load_examples(task, "test", data_root=data_root)
    assert len(test) == 872
    assert test[0].prompt == "one long string of cliches\nThe correct answer is"
    assert (test[0].target, test[0].gold) == (" negative", "negative")
    assert len(load_examples(task, "train", data_root=data_root)) == 6920


# --- answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("generated, expected", [
    ("So she pays 1,000 + 234.\nThe final answer is 1,234.", "1234"),
    ("3 apples and 5 pears make 8\n", "8"),
    ("Each costs $5.00 in total", "5"),
    ("The final answer is $72.0\n", "72"),
    ("The final answer is 3.50", "3.5"),
    ("The final answer is 15 gallons, so 120 pints.\nThe final answer is 120", "120"),
    ("she lost -4 points", "-4"),
    ("no digits at all", None),
])
def test_number_extraction(generated, expected):
    assert load_task("gsm8k").extract_answer(generated) == expected


def test_numbers_are_compared_by_value():
    task = load_task("gsm8k")
    assert task.is_correct("$5.00", "5")
    assert task.is_correct("1,234", "1234")
    assert not task.is_correct("5.5", "5")
    assert not task.is_correct(None, "5")
    assert not task.is_correct("five", "5")


@pytest.mark.parametrize("generated, complete", [
    ("48/2 = 24\nThe final answer is 72\n", True),
    ("The final answer is 72.\n", True),
    ("The final answer is 72 apples", True),
    ("The final answer is 1,234.5\n", True),
    ("The final answer is 7", False),
    ("The final answer is 72.", False),
    ("The final answer is 1,2", False),
    ("The final answer is ", False),
    ("48/2 = 24\n", False),
])
def test_gsm8k_answer_complete(generated, complete):
    assert load_task("gsm8k").answer_complete(generated) is complete


def test_label_tasks_never_stop_on_a_pattern():
    assert not load_task("boolq").answer_complete(" true\n")


@pytest.mark.parametrize("name, generated, expected", [
    ("boolq", " True, since it is", "true"),
    ("boolq", " false", "false"),
    ("boolq", " maybe", None),
    ("obqa", " D) a desert", "D"),
    ("obqa", " a bird, so B", "B"),
    ("sst2", " Positive!", "positive"),
])
def test_label_extraction_returns_the_first_allowed_label(name, generated, expected):
    assert load_task(name).extract_answer(generated) == expected


def test_labels_compare_case_insensitively():
    task = load_task("boolq")
    assert task.is_correct("TRUE", "true")
    assert not task.is_correct("false", "true")


def test_label_target_refuses_an_unknown_label():
    with pytest.raises(StarError, match="'maybe' is not one of its labels"):
        load_task("boolq").label_target("maybe")


# --- a user's own task -----------------------------------------------------------------------


def test_user_task_with_its_own_fields_and_labels(claim_task):
    task = load_task(str(claim_task))
    assert not task.builtin and task.source == str(claim_task)
    assert task.labels == ("yes", "no")  # YAML 1.2: only true/false are booleans
    train = load_examples(task, "train")
    assert [(e.prompt, e.target, e.gold) for e in train] == [
        ("Claim: water is wet\nTrue?", " yes", "yes"),
        ("Claim: fire is cold\nTrue?", " no", "no"),
    ]
    assert task.max_new_tokens == 256


def test_user_task_labels_written_as_yaml_booleans(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"q": "sky blue", "a": True}, {"q": "sky green", "a": False}])
    path = write_task(tmp_path, f"name: t\ndata: {tmp_path}\nprompt: '{{q}}'\nanswer: a\n"
                                "answer_type: label\nlabels: [true, false]\n")
    task = load_task(str(path))
    assert task.labels == ("true", "false")
    assert [e.gold for e in load_examples(task, "train")] == ["true", "false"]


def test_blank_lines_are_skipped_and_ids_stay_contiguous(claim_task):
    data = claim_task.parent / "claims"
    write_jsonl(data / "train.jsonl", [{"text": "a", "verdict": "yes"}, "", {"text": "b", "verdict": "no"}])
    assert [e.id for e in load_examples(load_task(str(claim_task)), "train")] == [0, 1]


def test_malformed_json_line_reports_path_and_line(claim_task):
    path = write_jsonl(claim_task.parent / "claims" / "train.jsonl",
                       [{"text": "a", "verdict": "yes"}, "", '{"text": "b", "verdict": '])
    with pytest.raises(StarError, match=rf"^{re.escape(str(path))}:3: malformed JSON \("):
        load_examples(load_task(str(claim_task)), "train")


def test_missing_field_reports_path_and_line(claim_task):
    path = write_jsonl(claim_task.parent / "claims" / "train.jsonl",
                       [{"text": "a", "verdict": "yes"}, {"sentence": "b", "verdict": "no"}])
    with pytest.raises(StarError, match=rf"^{re.escape(str(path))}:2: missing field 'text' named by the task's prompt$"):
        load_examples(load_task(str(claim_task)), "train")


def test_gold_outside_the_labels_reports_path_and_line(claim_task):
    path = write_jsonl(claim_task.parent / "claims" / "train.jsonl", [{"text": "a", "verdict": "perhaps"}])
    with pytest.raises(StarError, match=rf"^{re.escape(str(path))}:1: answer 'perhaps' is not one of the labels"):
        load_examples(load_task(str(claim_task)), "train")


def test_answer_not_matching_the_pattern_reports_path_and_line(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"question": "q", "answer": "the correct answer is true"},
                                           {"question": "q", "answer": "unsure"}])
    with pytest.raises(StarError, match=r"train.jsonl:2: answer 'unsure' does not match answer_pattern"):
        load_examples(load_task("boolq"), "train", data_dir=str(tmp_path))


def test_missing_split_file_names_the_path(claim_task):
    (claim_task.parent / "claims" / "test.jsonl").unlink()
    with pytest.raises(StarError, match=re.escape(str(claim_task.parent / "claims" / "test.jsonl"))):
        load_examples(load_task(str(claim_task)), "test")


# --- malformed task files --------------------------------------------------------------------

VALID_TASK = "name: t\ndata: d\nprompt: '{q}'\nanswer: a\nanswer_type: text\n"


@pytest.mark.parametrize("key", ["name", "prompt", "answer", "answer_type"])
def test_task_file_missing_a_key_names_the_key(tmp_path, key):
    body = "".join(line + "\n" for line in VALID_TASK.splitlines() if not line.startswith(key + ":"))
    path = write_task(tmp_path, body)
    with pytest.raises(StarError, match=rf"^{re.escape(str(path))}: missing required key '{key}'"):
        load_task(str(path))


@pytest.mark.parametrize("extra, message", [
    ("promt: '{q}'\n", r"unknown key 'promt'; did you mean 'prompt'\?"),
    ("max_new_tokens: many\n", r"key 'max_new_tokens' must be a positive integer"),
    ("answer_pattern: '(unclosed'\n", r"key 'answer_pattern' is not a valid regex"),
    ("target: ' {}'\n", r"key 'target' has a positional field"),
    ("labels: [x, y]\n", r"key 'labels' is only for answer_type label"),
    ("normalize: [{field: q, pattern: x, replce: y}]\n", r"unknown key 'normalize\[0\].replce'"),
    ("hf: {path: a/b, split: {test: validation}}\n", r"unknown key 'hf.split'; did you mean 'hf.splits'\?"),
    ("hf: {path: a/b, fields: {question: '{x}'}}\n", r"key 'hf.fields' lacks \['a', 'q'\]"),
])
def test_task_file_errors_name_the_key(tmp_path, extra, message):
    path = write_task(tmp_path, VALID_TASK + extra)
    with pytest.raises(StarError, match=message):
        load_task(str(path))


@pytest.mark.parametrize("body, message", [
    (VALID_TASK.replace("answer_type: text", "answer_type: choice"), r"key 'answer_type' is 'choice'"),
    (VALID_TASK.replace("answer_type: text", "answer_type: label"), r"missing required key 'labels'"),
    (VALID_TASK.replace("name: t", "name: [t]"), r"key 'name' must be a string"),
    (VALID_TASK.replace("prompt: '{q}'", "prompt: '{gold}'"), r"key 'prompt' names \{gold\}"),
    (VALID_TASK.replace("data: d\n", ""), r"missing required key 'data'"),
    ("name: [unclosed\n", r"not valid YAML"),
])
def test_malformed_task_files_are_reported(tmp_path, body, message):
    path = write_task(tmp_path, body)
    with pytest.raises(StarError, match=message) as caught:
        load_task(str(path))
    assert "\n" not in str(caught.value)


def test_unknown_task_name_lists_the_builtins():
    with pytest.raises(StarError, match=r"unknown task 'mmlu': built-ins are boolq, gsm8k, obqa, sst2, trec"):
        load_task("mmlu")


def test_missing_task_file_names_the_path(tmp_path):
    with pytest.raises(StarError, match=r"task file .*nope.yaml not found"):
        load_task(str(tmp_path / "nope.yaml"))


# --- where the data comes from ---------------------------------------------------------------


def test_resolve_data_dir_prefers_data_then_data_root(tmp_path, data_root, claim_task):
    boolq = load_task("boolq")
    assert resolve_data_dir(boolq, data_root=data_root) == Path(data_root) / "boolq"
    assert resolve_data_dir(boolq, data_root=data_root, data_dir=str(tmp_path)) == tmp_path
    assert resolve_data_dir(boolq, data_root=str(tmp_path)) is None
    assert resolve_data_dir(load_task(str(claim_task))) == claim_task.parent / "claims"
    with pytest.raises(StarError, match="does not exist"):
        resolve_data_dir(boolq, data_dir=str(tmp_path / "absent"))


def test_without_local_files_the_hub_rows_are_used(tmp_path, monkeypatch):
    rows = [{"question": "is the sky blue", "answer": True, "passage": "..."}]
    monkeypatch.setattr(tasks, "_hf_rows", lambda hf_cfg, split: rows if split == "validation" else [])
    [example] = load_examples(load_task("boolq"), "test", data_root=str(tmp_path))
    assert example.prompt == (
        "Please answer the following question with true or false, question: is the sky blue?"
        "\n\nAnswer format: true/false\nThe correct answer is"
    )
    assert example.gold == "true"


def test_offline_without_local_files_says_which_folder_to_provide(tmp_path, monkeypatch):
    def offline(hf_cfg, split):
        raise ConnectionError("Couldn't reach\n'google/boolq' on the Hub")

    monkeypatch.setattr(tasks, "_hf_rows", offline)
    with pytest.raises(StarError) as caught:
        load_examples(load_task("boolq"), "test", data_root=str(tmp_path))
    message = str(caught.value)
    assert message.startswith(f"no local data for task boolq: put train.jsonl/test.jsonl in {tmp_path / 'boolq'}")
    assert "Hugging Face google/boolq unreachable: Couldn't reach 'google/boolq'" in message
    assert "\n" not in message


def test_map_hf_record_rebuilds_the_boolq_layout():
    hf_cfg = load_task("boolq").hf
    mapped = map_hf_record(hf_cfg, {"question": "is it", "answer": False, "passage": "p"})
    assert mapped == {
        "question": "Please answer the following question with true or false, question: is it?\n\nAnswer format: true/false",
        "answer": "the correct answer is false",
    }


def test_map_hf_record_gives_obqa_the_local_layout(data_root):
    task = load_task("obqa")
    row = {
        "id": "7-980",
        "question_stem": "The sun is responsible for",
        "choices": {"text": ["puppies learning new tricks", "children growing up and getting old",
                             "flowers wilting in a vase", "plants sprouting, blooming and wilting"],
                    "label": ["A", "B", "C", "D"]},
        "answerKey": "D",
    }
    [from_hub] = task.build_examples([("row 0", map_hf_record(task.hf, row))])
    local = load_examples(task, "train", data_root=data_root)[0]
    assert (from_hub.prompt, from_hub.target, from_hub.gold) == (local.prompt, local.target, local.gold)


def test_map_hf_record_maps_sst2_integer_labels():
    task = load_task("sst2")
    rows = [{"idx": 0, "sentence": "a gem ", "label": 1}, {"idx": 1, "sentence": "a dud ", "label": 0}]
    examples = task.build_examples((f"row {i}", map_hf_record(task.hf, row)) for i, row in enumerate(rows))
    assert [(e.prompt, e.gold) for e in examples] == [
        ("a gem\nThe correct answer is", "positive"),
        ("a dud\nThe correct answer is", "negative"),
    ]


def test_map_hf_record_reports_a_template_the_row_does_not_fit():
    with pytest.raises(StarError, match=r"hf.fields.question does not fit a row with columns \['text'\]"):
        map_hf_record({"path": "x/y", "fields": {"question": "{question_stem}"}}, {"text": "t"})


def test_task_training_defaults_are_read_and_checked(tmp_path):
    assert load_task("sst2").training == {"epochs": 3, "batch_size": 8, "learning_rate": 1e-3}
    bad = tmp_path / "t.yaml"
    bad.write_text("name: t\ndata: d\nprompt: '{q}'\nanswer: a\nanswer_type: text\ntraining: {epochs: -1}\n")
    with pytest.raises(StarError, match="training.epochs"):
        load_task(str(bad))
