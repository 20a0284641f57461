"""Fitting the ecosystem: adapters that plain PEFT loads anywhere, lm-eval-shaped results,
versions on record."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HUB_ID = "star-test/tiny-llama"


@pytest.fixture
def fake_hub(tiny_model_dir, tmp_path):
    """A Hugging Face cache holding the tiny Llama under a Hub id, for offline `from_pretrained(id)`."""
    home = tmp_path / "hf"
    repo = home / "hub" / f"models--{HUB_ID.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_model_dir, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    return {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run_star(env, *args):
    result = subprocess.run([sys.executable, "-m", "star_al.cli", *map(str, args)], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


LOGITS = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import PeftModel
folder = sys.argv[1]
base_id = json.load(open(folder + "/adapter_config.json"))["base_model_name_or_path"]
tokenizer = AutoTokenizer.from_pretrained(base_id)
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_id), folder).eval()
ids = tokenizer("a moving film\\nThe correct answer is", return_tensors="pt").input_ids
with torch.no_grad():
    print(json.dumps(model(ids).logits[0, -1, :8].tolist()))
"""


def test_a_trained_adapter_loads_with_plain_peft_on_a_machine_without_the_star_cache(fake_hub, sst2_folder, tmp_path):
    run_star({**fake_hub, "STAR_CACHE": str(tmp_path / "star-cache")}, "train", "--task", "sst2", "--data",
             sst2_folder, "--model", HUB_ID, "--device", "cpu", "--dtype", "float32", "--n-train", 8, "--epochs", 1,
             "--rank", 4, "--limit", 4, "--no-baseline", "--out", tmp_path / "T")
    config = json.loads((tmp_path / "T" / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == HUB_ID
    elsewhere = tmp_path / "elsewhere" / "adapter"
    shutil.copytree(tmp_path / "T" / "adapter", elsewhere)
    clean = {**fake_hub, "STAR_CACHE": str(tmp_path / "empty-cache")}
    plain = json.loads(subprocess.run([sys.executable, "-c", LOGITS, str(elsewhere)], env=clean, capture_output=True,
                                      text=True, check=True, cwd=tmp_path).stdout)
    untuned = json.loads(subprocess.run([sys.executable, "-c", LOGITS.replace(
        "PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_id), folder)",
        "AutoModelForCausalLM.from_pretrained(base_id)"), str(elsewhere)], env=clean, capture_output=True, text=True,
        check=True, cwd=tmp_path).stdout)
    assert not (tmp_path / "empty-cache").exists()
    assert plain != pytest.approx(untuned)  # the adapter's weights arrived

    # star's own loading of the copy gives the same logits
    import torch

    from star_al.models.adapters import load_adapter
    from transformers import AutoModelForCausalLM, AutoTokenizer

    snapshot = Path(fake_hub["HF_HOME"]) / "hub" / f"models--{HUB_ID.replace('/', '--')}" / "snapshots" / ("0" * 40)
    tokenizer = AutoTokenizer.from_pretrained(snapshot)
    model = load_adapter(AutoModelForCausalLM.from_pretrained(snapshot), elsewhere)
    ids = tokenizer("a moving film\nThe correct answer is", return_tensors="pt").input_ids
    with torch.no_grad():
        ours = model(ids).logits[0, -1, :8].tolist()
    assert ours == pytest.approx(plain, abs=1e-5)


def test_export_adapter_writes_a_plain_peft_directory_with_a_model_card(fake_hub, sst2_folder, tmp_path):
    env = {**fake_hub, "STAR_CACHE": str(tmp_path / "star-cache")}
    run_star(env, "run", "--task", "sst2", "--data", sst2_folder, "--strategy", "random", "--preset", "smoke",
             "--model", HUB_ID, "--device", "cpu", "--dtype", "float32", "--warm-start", 4, "--query-size", 3,
             "--rounds", 1, "--pool-size", 20, "--rank", 4, "--test-limit", 4, "--out", tmp_path / "R")
    run_star(env, "export-adapter", tmp_path / "R", tmp_path / "X")
    assert sorted(p.name for p in (tmp_path / "X").iterdir()) == ["README.md", "adapter_config.json",
                                                                   "adapter_model.safetensors"]
    assert json.loads((tmp_path / "X" / "adapter_config.json").read_text())["base_model_name_or_path"] == HUB_ID
    assert f"base_model: {HUB_ID}" in (tmp_path / "X" / "README.md").read_text()


def test_push_adapter_uploads_the_folder_to_the_named_repo(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    from star_al.cli import main

    calls = []

    class FakeApi:
        def create_repo(self, repo, private, exist_ok):
            calls.append(("create", repo, private))

        def upload_folder(self, folder_path, repo_id, commit_message):
            calls.append(("upload", folder_path, repo_id))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    folder = tmp_path / "X"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    (folder / "adapter_model.safetensors").write_bytes(b"0")
    assert main(["push-adapter", str(folder), "--repo", "me/adapter"]) == 0
    assert calls == [("create", "me/adapter", False), ("upload", str(folder), "me/adapter")]


def test_eval_writes_lm_eval_shaped_results_and_samples(tiny_model_dir, sst2_folder, tmp_path, capsys):
    from star_al.cli import main

    assert main(["eval", "--task", "sst2", "--data", str(sst2_folder), "--model", str(tiny_model_dir), "--device",
                 "cpu", "--dtype", "float32", "--limit", "8", "--log-samples", "--out", str(tmp_path / "E")]) == 0
    results = json.loads((tmp_path / "E" / "results.json").read_text())
    metrics = results["results"]["sst2"]
    samples = [json.loads(line) for line in (tmp_path / "E" / "samples_sst2.jsonl").read_text().splitlines()]
    acc = sum(s["acc"] for s in samples) / len(samples)
    assert len(samples) == 8 and metrics["acc"] == pytest.approx(acc) == metrics["acc,none"]
    assert metrics["acc_stderr"] == pytest.approx((acc * (1 - acc) / 7) ** 0.5)
    assert results["n-samples"]["sst2"] == {"original": 10, "effective": 8}
    assert results["config"]["limit"] == 8 and results["package_versions"]["peft"]
    assert all(s["target"] in ("positive", "negative") and s["filtered_resps"] in ("positive", "negative")
               for s in samples)


def test_a_run_keeps_a_log_with_eta_and_quiet_says_only_results(tiny_model_dir, sst2_folder, tmp_path, capsys):
    from star_al.cli import main

    args = ["run", "--task", "sst2", "--data", str(sst2_folder), "--strategy", "me", "--preset", "smoke", "--model",
            str(tiny_model_dir), "--device", "cpu", "--dtype", "float32", "--warm-start", "4", "--query-size", "3",
            "--rounds", "1", "--pool-size", "20", "--rank", "4", "--test-limit", "4",
            "--cache-dir", str(tmp_path / "cache")]
    assert main(args + ["--out", str(tmp_path / "R")]) == 0
    loud = capsys.readouterr()
    log = (tmp_path / "R" / "run.log").read_text()
    assert "round 0/1: 4 labeled" in log and "for the 1 left" in log and "round 1/1: 7 labeled" in log
    assert "round 0/1" in loud.err
    assert main(["-q"] + args + ["--out", str(tmp_path / "Q")]) == 0
    quiet = capsys.readouterr()
    assert "round 0/1" not in quiet.err and "AUC" in quiet.out
    assert "round 0/1" in (tmp_path / "Q" / "run.log").read_text()  # the log file keeps everything


def test_cache_keys_follow_what_changes_the_content(tmp_path):
    import torch

    from star_al.al.base_scores import base_cache_key
    from star_al.config import RunConfig
    from star_al.data.tasks import Example

    config = RunConfig(task="sst2", strategy="me").validate()
    pool = [Example(0, "a\nThe correct answer is", " positive", "positive")]
    edited = [Example(0, "b\nThe correct answer is", " positive", "positive")]
    keys = {base_cache_key(config, pool, torch.float32), base_cache_key(config, pool, torch.bfloat16),
            base_cache_key(config, edited, torch.float32)}
    assert len(keys) == 3


def test_an_embedded_backbone_knows_its_hub_id():
    from star_al.models.backbones import EMBEDDED, hub_id_of

    assert hub_id_of("smollm2-135m", "/cache/models/x") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_id_of("org/model", "org/model") == "org/model" and hub_id_of("/local/dir", "/local/dir") is None
    assert set(EMBEDDED) == {"smollm2-135m", "gemma3-270m"}


def test_version_line_names_the_tested_libraries(capsys):
    from star_al.cli import main

    with pytest.raises(SystemExit):
        main(["--version"])
    line = capsys.readouterr().out
    assert all(name in line for name in ("torch", "transformers", "peft", "accelerate"))
    pinned = dict(line.split("==") for line in Path(__file__).parents[1].joinpath("constraints.txt").read_text()
                  .splitlines() if "==" in line)
    import importlib.metadata

    for package, version in pinned.items():
        assert importlib.metadata.version(package).split("+")[0] == version, package


LM_EVAL_SST2 = """task: sst2_local
dataset_path: json
dataset_kwargs:
  data_files:
    train: {train}
    validation: {dev}
output_type: multiple_choice
training_split: train
validation_split: validation
doc_to_text: "{{{{sentence}}}}\\nQuestion: Is this sentence positive or negative?\\nAnswer:"
doc_to_target: label
doc_to_choice: ["negative", "positive"]
metric_list:
  - metric: acc
"""


@pytest.mark.skipif(not __import__("importlib").util.find_spec("lm_eval"), reason="lm-eval extra not installed")
def test_an_lm_eval_task_yaml_gives_the_same_accuracy_in_star_eval_as_in_lm_eval(tiny_model_dir, data_root, tmp_path,
                                                                                 monkeypatch, capsys):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    source = Path(data_root) / "sst2"
    (tmp_path / "train.jsonl").write_text("".join((source / "train.jsonl").read_text().splitlines(True)[:50]))
    (tmp_path / "dev.jsonl").write_text("".join((source / "dev.jsonl").read_text().splitlines(True)[:60]))
    yaml_path = tmp_path / "tasks" / "sst2_local.yaml"
    yaml_path.parent.mkdir()
    yaml_path.write_text(LM_EVAL_SST2.format(train=tmp_path / "train.jsonl", dev=tmp_path / "dev.jsonl"))

    from star_al.cli import main

    assert main(["eval", "--task", str(yaml_path), "--model", str(tiny_model_dir), "--device", "cpu", "--dtype",
                 "float32", "--log-samples", "--out", str(tmp_path / "E")]) == 0
    ours = [json.loads(line) for line in (tmp_path / "E" / "samples_sst2_local.jsonl").read_text().splitlines()]

    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    results = lm_eval.simple_evaluate(model=HFLM(pretrained=str(tiny_model_dir), device="cpu", dtype="float32",
                                                 batch_size=8),
                                      tasks=["sst2_local"], task_manager=TaskManager(include_path=str(yaml_path.parent),
                                                                                     include_defaults=False),
                                      log_samples=True)
    theirs = sorted(results["samples"]["sst2_local"], key=lambda s: s["doc_id"])
    assert len(ours) == len(theirs) == 60
    assert [s["acc"] for s in ours] == [s["acc"] for s in theirs]
    assert json.loads((tmp_path / "E" / "results.json").read_text())["results"]["sst2_local"]["acc"] == \
        pytest.approx(results["results"]["sst2_local"]["acc,none"])
    # and it is a task like any other for active learning
    assert main(["run", "--task", str(yaml_path), "--strategy", "me+dynamic", "--preset", "smoke", "--model",
                 str(tiny_model_dir), "--device", "cpu", "--dtype", "float32", "--warm-start", "4", "--query-size",
                 "3", "--rounds", "1", "--pool-size", "30", "--rank", "4", "--test-limit", "10",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "R")]) == 0
    assert len((tmp_path / "R" / "rounds.jsonl").read_text().splitlines()) == 2


def test_quiet_silences_the_libraries_bars_in_a_fresh_process(tiny_model_dir, sst2_folder, tmp_path):
    """transformers reads its verbosity when first imported: only a new process shows what -q does
    (the real SmolLM2's "Loading weights" bar, checked by hand; the tiny model shows none)."""
    import subprocess
    import sys

    args = [sys.executable, "-m", "star_al.cli", "eval", "--task", "sst2", "--data", str(sst2_folder), "--model",
            str(tiny_model_dir), "--device", "cpu", "--dtype", "float32", "--limit", "4"]
    loud = subprocess.run(args + ["--out", str(tmp_path / "L")], capture_output=True, text=True, check=True)
    assert "evaluate" in loud.stderr and "model " in loud.stderr
    quiet = subprocess.run(args[:3] + ["-q"] + args[3:] + ["--out", str(tmp_path / "Q")],
                           capture_output=True, text=True, check=True)
    assert quiet.stderr.strip() == "" and "accuracy" in quiet.stdout
