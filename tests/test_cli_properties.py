"""Property: whatever task file, data lines and settings a user gives, `star run` ends in a
result or in one line with exit 1, never a traceback, and never changes an existing run.

Hypothesis generates the inputs (mostly near-valid ones with one thing wrong, as users
write them); the runs use the tiny Llama saved as a model directory, so a valid input
trains for real in a second or two. STAR_PROPERTY_EXAMPLES sets how many (CI: the default).
"""

import json
import os
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from star_al.cli import main

EXAMPLES = int(os.environ.get("STAR_PROPERTY_EXAMPLES", "200"))

junk = st.one_of(st.none(), st.booleans(), st.integers(-3, 5), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=12), st.lists(st.integers(-2, 3), max_size=3),
                 st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))

VALID_TASK = {"name": "reviews", "data": "data", "answer_type": "label", "labels": ["positive", "negative"],
              "answer": "label", "prompt": "{sentence}\nThe correct answer is", "target": " {gold}",
              "splits": {"train": "train.jsonl", "test": "test.jsonl"}}
TASK_VALUES = {
    "name": st.one_of(st.just("reviews"), junk),
    "data": st.one_of(st.just("data"), st.just("missing-folder"), junk),
    "answer_type": st.sampled_from(["label", "number", "text", "choice", 3]),
    "labels": st.one_of(st.just(["positive", "negative"]), st.just([]), st.just(["positive", "positive"]), junk),
    "answer": st.sampled_from(["label", "sentence", "nosuchfield", ""]),
    "prompt": st.sampled_from(["{sentence}\nThe correct answer is", "{nosuchfield}", "{gold} {sentence}",
                               "{sentence", "no fields at all", "{0}", ""]),
    "target": st.sampled_from([" {gold}", "{sentence}", "{", " {gold} and {label}"]),
    "splits": st.one_of(st.just({"train": "train.jsonl", "test": "test.jsonl"}),
                        st.just({"train": "train.jsonl"}), st.just({"train": "nofile.jsonl", "test": "test.jsonl"}),
                        junk),
    "answer_pattern": st.sampled_from(["(positive|negative)", "([", "x"]),
    "normalize": st.one_of(st.just([{"field": "sentence", "pattern": "\\s+$", "replace": ""}]),
                           st.just([{"field": "sentence", "pattern": "(["}]), junk),
    "training": st.one_of(st.just({"epochs": 1}), st.just({"epochs": -1}), st.just({"speed": 2}), junk),
    "max_new_tokens": junk,
    "surprise": junk,
}


@st.composite
def task_files(draw):
    """Usually the valid task with a few keys changed or dropped; sometimes not YAML at all."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from(["", "name: [unclosed", "- just\n- a list\n", "\t\x00", "42"]))
    task = dict(VALID_TASK)
    if draw(st.integers(0, 2)) == 0:  # a third of the task files have something changed or missing
        for key in draw(st.lists(st.sampled_from(sorted(TASK_VALUES)), min_size=1, max_size=2, unique=True)):
            task[key] = draw(TASK_VALUES[key])
        for key in draw(st.lists(st.sampled_from(sorted(VALID_TASK)), max_size=1)):
            task.pop(key, None)
    return yaml.safe_dump(task)


def valid_line(draw):
    sentence = draw(st.sampled_from(["a fine film", "dull and long", "moving , funny", "i hated it", "ok"]))
    return json.dumps({"sentence": sentence, "label": draw(st.sampled_from(["positive", "negative", "Positive"]))})


BAD_LINES = [json.dumps({"sentence": "no label"}), json.dumps({"sentence": "meh", "label": "neutral"}),
             json.dumps({"sentence": 7, "label": "positive"}), json.dumps(["a list", "positive"]),
             '{"sentence": "cut off', "not json at all", json.dumps({"sentence": None, "label": None}),
             json.dumps({"sentence": "x", "label": ["positive"]}), "\x00\x01"]


@st.composite
def jsonl_files(draw, min_lines, max_lines):
    """Valid records, and in a third of the files one bad line somewhere."""
    lines = [valid_line(draw) for _ in range(draw(st.integers(min_lines, max_lines)))]
    if draw(st.integers(0, 2)) == 0:
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(BAD_LINES)))
    return "".join(line + "\n" for line in lines)


RUN_SETTINGS = {
    "warm_start": st.one_of(st.integers(-1, 4), junk), "query_size": st.one_of(st.integers(-1, 3), junk),
    "n_rounds": st.one_of(st.integers(-1, 2), junk), "pool_size": st.one_of(st.integers(-1, 16), junk),
    "pool_subsample": st.one_of(st.integers(-2, 8), junk), "test_limit": st.one_of(st.integers(-1, 4), junk),
    "mc_passes": st.one_of(st.integers(-1, 3), junk), "b_decay_strength": junk,
    "lambda_schedule": st.sampled_from(["reference", "cosine", "sideways", 1]),
    "pe_mode": st.sampled_from(["label-free", "gold", "psychic"]), "finetune": st.sampled_from(["lora", "full", 0]),
    "warm_start_by": st.sampled_from(["random", "me+kmeans", "typiclust", "badge", "me+star", 3]),
    "score_batch_size": st.one_of(st.integers(-1, 8), junk),
    "lora": st.one_of(st.fixed_dictionaries({}, optional={"rank": st.one_of(st.integers(-1, 4), junk),
                                                          "dropout": st.one_of(st.floats(-1, 2), junk),
                                                          "target_modules": st.sampled_from([["q_proj"], ["nope"],
                                                                                             [], "q_proj", 5])}),
                      junk),
    "train": st.one_of(st.fixed_dictionaries({}, optional={"epochs": st.one_of(st.integers(-1, 1), junk),
                                                           "batch_size": st.one_of(st.integers(-1, 4), junk),
                                                           "learning_rate": st.one_of(st.floats(-1, 1), junk),
                                                           "warmup_ratio": junk}),
                       junk),
    "seed": junk, "colour": junk,
    "stop": st.sampled_from(["stability:0.5", "budget:6", "time:0.001", "uncertainty:9", "plateau:1", "stabilty:1",
                             "budget:x", "", 3]),
    "labels": st.sampled_from(["gold", "human", "robots"]), "evaluate": st.sampled_from([True, False, "no"]),
    "task": st.sampled_from(["sst2", "nosuchtask"]), "strategy": st.sampled_from(["me", "me+star", "bogus"]),
    "out": st.sampled_from(["elsewhere", 5]),
}


@st.composite
def config_files(draw):
    keys = draw(st.lists(st.sampled_from(sorted(RUN_SETTINGS)), max_size=2, unique=True))
    values = {"warm_start": 2, "query_size": 2, "n_rounds": 1, "pool_size": 6, "test_limit": 3,
              "lora": {"rank": 2}, "train": {"epochs": 1, "batch_size": 4}}
    for key in keys:
        values[key] = draw(RUN_SETTINGS[key])
    return yaml.safe_dump(values)


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".lock")}


@pytest.fixture(scope="module")
def existing_run(tiny_model_dir, tmp_path_factory, data_root):
    """A finished run directory that no generated command may change."""
    run_dir = tmp_path_factory.mktemp("existing") / "R"
    code = main(["run", "--task", "sst2", "--strategy", "me", "--preset", "smoke", "--model", str(tiny_model_dir),
                 "--device", "cpu", "--dtype", "float32", "--warm-start", "2", "--query-size", "2", "--rounds", "1",
                 "--pool-size", "6", "--test-limit", "3", "--rank", "2", "--data-root", str(data_root),
                 "--out", str(run_dir), "--cache-dir", str(run_dir.parent / "cache")])
    assert code == 0
    return run_dir, snapshot(run_dir)


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(task=task_files(), train=jsonl_files(6, 12), test=jsonl_files(1, 4), config=config_files(),
       strategy=st.sampled_from(["random", "me", "pe+star", "ME+dynamic", "me+magic", "", "random+mc"]),
       into_existing=st.integers(0, 5), give_data=st.booleans())
def test_any_input_ends_in_a_result_or_one_line_and_never_touches_an_existing_run(
        task, train, test, config, strategy, into_existing, give_data, tiny_model_dir, existing_run, capsys):
    run_dir, before = existing_run
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (scratch / "data").mkdir()
        (scratch / "data" / "train.jsonl").write_text(train)
        (scratch / "data" / "test.jsonl").write_text(test)
        (scratch / "task.yaml").write_text(task)
        (scratch / "run.yaml").write_text(config)
        out = run_dir if into_existing == 0 else scratch / "out"
        args = ["run", "--task", scratch / "task.yaml", "--strategy", strategy, "--preset", "smoke",
                "--config", scratch / "run.yaml", "--model", tiny_model_dir, "--device", "cpu", "--dtype", "float32",
                "--out", out, "--cache-dir", scratch / "cache"]
        if give_data:
            args += ["--data", scratch / "data"]
        code = main([str(a) for a in args])
        err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("star:")]
    event("result" if code == 0 else re.sub(r"/tmp/\S+/", "", errors[0])[12:50] if errors else "?")
    assert code in (0, 1), err
    if code == 1:
        assert len(errors) == 1 and errors[0].startswith("star: error: "), err
        assert err.rstrip().endswith(errors[0]), err
    assert snapshot(run_dir) == before
