"""Wrong results that used to pass silently, races, and damaged state: each ends in the
right result or one line naming the problem, and no earlier result is touched."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from star_al.cli import main
from star_al.errors import StarError
from star_al.al.loop import ActiveLearningRun, dtype_change
from star_al.al.run_dir import RunDir
from star_al.data.catalog import load_task
from star_al.data.tasks import load_examples
from star_al.files import load_npz, write_text_atomic

from test_loop import Killed, KillingOracle, smoke_config, without_timings


def star(capsys, *args):
    """Run the CLI in this process: (exit code, stderr lines that are not progress bars)."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "it/s" not in line
             and "%|" not in line]
    assert "Traceback" not in err
    return code, lines


def assert_one_line_error(code, lines, needle=""):
    assert code == 1, lines
    assert lines and lines[-1].startswith("star: error: ") and needle in lines[-1], lines
    assert sum(line.startswith("star: error") for line in lines) == 1


def run_args(model_dir, data, out, *extra, strategy="me+dynamic", cache=None):
    return ["run", "--task", "sst2", "--data", data, "--strategy", strategy, "--preset", "smoke",
            "--model", model_dir, "--device", "cpu", "--dtype", "float32", "--warm-start", 4,
            "--query-size", 3, "--rounds", 2, "--pool-size", 30, "--rank", 4, "--test-limit", 6,
            "--out", out, "--cache-dir", cache or Path(out).parent / "cache", *extra]


def snapshot(folder: Path) -> dict:
    """Every file of a directory and its bytes (the writer lock's own files aside)."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".lock")}


def rounds_of(path: Path) -> list[dict]:
    return without_timings(RunDir(path).read_rounds())


# -- 1. the base-score cache follows the data's content ------------------------------------------

def test_data_edited_in_place_is_scored_again_not_served_from_the_cache(tiny_model_dir, sst2_folder, tmp_path,
                                                                       capsys):
    cache = tmp_path / "cache"
    assert star(capsys, *run_args(tiny_model_dir, sst2_folder, tmp_path / "before", cache=cache))[0] == 0
    pool_ids = load_npz(tmp_path / "before" / "base_scores.npz")["ids"]
    lines = (sst2_folder / "train.jsonl").read_text().splitlines(True)
    for i in pool_ids[:10]:  # same file, same line count, other sentences
        lines[i] = json.dumps({"sentence": f"an entirely different review number {i} , dull", "label": "negative"}) + "\n"
    (sst2_folder / "train.jsonl").write_text("".join(lines))

    assert star(capsys, *run_args(tiny_model_dir, sst2_folder, tmp_path / "after", cache=cache))[0] == 0
    assert star(capsys, *run_args(tiny_model_dir, sst2_folder, tmp_path / "fresh",
                                  cache=tmp_path / "empty-cache"))[0] == 0
    before, after, fresh = (load_npz(tmp_path / name / "base_scores.npz")["me"] for name in ("before", "after", "fresh"))
    np.testing.assert_array_equal(after, fresh)
    assert not np.allclose(after[:10], before[:10])
    assert rounds_of(tmp_path / "after") == rounds_of(tmp_path / "fresh")


def test_a_damaged_shared_cache_entry_is_dropped_and_computed_again(tiny_model_dir, sst2_folder, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert star(capsys, *run_args(tiny_model_dir, sst2_folder, tmp_path / "first", cache=cache))[0] == 0
    (entry,) = (cache / "base-scores").glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:100])
    code, lines = star(capsys, *run_args(tiny_model_dir, sst2_folder, tmp_path / "second", cache=cache))
    assert code == 0 and any(str(entry) in line and "dropped" in line for line in lines)
    np.testing.assert_array_equal(load_npz(tmp_path / "first" / "base_scores.npz")["me"],
                                  load_npz(tmp_path / "second" / "base_scores.npz")["me"])
    assert load_npz(entry)["me"].shape == (30,)  # the entry is whole again
    assert rounds_of(tmp_path / "first") == rounds_of(tmp_path / "second")


# -- 2. a run is continued only on the data it started with --------------------------------------

def unfinish(run_dir: Path) -> None:
    """Make a finished run directory look killed after its second-to-last round."""
    lines = (run_dir / "rounds.jsonl").read_text().splitlines(True)
    (run_dir / "rounds.jsonl").write_text("".join(lines[:-1]))
    shutil.rmtree(run_dir / "adapter")


def test_continuing_a_run_on_other_data_is_refused_and_leaves_it_intact(tiny_model_dir, sst2_folder, tmp_path,
                                                                       capsys):
    run_dir = tmp_path / "R"
    assert star(capsys, *run_args(tiny_model_dir, sst2_folder, run_dir))[0] == 0
    finished = rounds_of(run_dir)
    unfinish(run_dir)
    other = tmp_path / "other-data"
    shutil.copytree(sst2_folder, other)
    lines = (other / "train.jsonl").read_text().splitlines(True)
    (other / "train.jsonl").write_text("".join(lines[30:] + lines[:30]))  # same sentences, other order
    before = snapshot(run_dir)

    assert_one_line_error(*star(capsys, *run_args(tiny_model_dir, other, run_dir)), "other data")
    assert_one_line_error(*star(capsys, "resume", run_dir, "--data", other, "--device", "cpu",
                                "--dtype", "float32", "--cache-dir", tmp_path / "cache"), "other data")
    assert snapshot(run_dir) == before
    assert star(capsys, "resume", run_dir, "--device", "cpu", "--dtype", "float32",
                "--cache-dir", tmp_path / "cache")[0] == 0
    assert rounds_of(run_dir) == finished


# -- 3. one writer; duplicated rounds are refused --------------------------------------------------

def test_a_second_writer_is_refused_with_the_holders_pid(tiny_model_dir, sst2_folder, tmp_path, capsys):
    run_dir = tmp_path / "R"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom star_al.al.run_dir import RunDir\n"
         f"with RunDir({str(run_dir)!r}).locked():\n    print('held', flush=True)\n    time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert_one_line_error(*star(capsys, *run_args(tiny_model_dir, sst2_folder, run_dir)), f"pid {holder.pid}")
        assert not (run_dir / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    assert star(capsys, *run_args(tiny_model_dir, sst2_folder, run_dir))[0] == 0  # the lock went with it


def test_resume_and_report_refuse_a_rounds_file_with_duplicated_rounds(tiny_model_dir, sst2_folder, tmp_path,
                                                                      capsys):
    run_dir = tmp_path / "R"
    assert star(capsys, *run_args(tiny_model_dir, sst2_folder, run_dir, "--rounds", 1))[0] == 0
    lines = (run_dir / "rounds.jsonl").read_text().splitlines(True)
    (run_dir / "rounds.jsonl").write_text(lines[0] + lines[0] + lines[1] + lines[1])  # two writers' output
    before = snapshot(run_dir)
    assert_one_line_error(*star(capsys, "resume", run_dir, "--device", "cpu", "--dtype", "float32"), "duplicated")
    assert_one_line_error(*star(capsys, "report", run_dir, "--out", tmp_path / "report"), "duplicated")
    assert snapshot(run_dir) == before


# -- 4 and 6. every numeric setting is checked before anything is written --------------------------

@pytest.mark.parametrize("flags,needle", [
    (["--test-limit", "-1"], "test_limit must be at least 1"),
    (["--test-limit", "0"], "test_limit must be at least 1"),
    (["--epochs", "0"], "train.epochs must be at least 1"),
    (["--b-decay-strength", "-1"], "b_decay_strength must be at least 0"),
    (["--device", "tpu"], "unknown --device 'tpu'"),
    (["--seed", "-1"], "seed must be at least 0"),
    (["--pool-size", "-1"], "pool_size must be at least 1"),
    (["--pool-subsample", "-5"], "pool_subsample must be at least 0"),
    (["--lr", "-1"], "train.learning_rate must be above 0"),
    (["--rank", "0"], "lora.rank must be at least 1"),
    (["--train-batch-size", "0"], "train.batch_size must be at least 1"),
    (["--lora-dropout", "1.5"], "lora.dropout must be at least 0.0 and below 1.0"),
    (["--target-modules", "nosuchmodule"], "nosuchmodule not in the model"),
    (["--mc-passes", "0"], "mc_passes must be at least 1"),
])
def test_bad_setting_is_one_line_and_writes_nothing(flags, needle, tiny_model_dir, sst2_folder, tmp_path, capsys):
    run_dir = tmp_path / "R"
    assert_one_line_error(*star(capsys, *run_args(tiny_model_dir, sst2_folder, run_dir), *flags), needle)
    assert not (run_dir / "config.json").exists()


@pytest.mark.parametrize("body,needle", [
    ("warm_start: abc\n", "warm_start must be an integer, got 'abc'"),
    ("lora: {rank: x}\n", "lora.rank must be an integer, got 'x'"),
    ("n_rounds: 1.5\n", "n_rounds must be an integer, got 1.5"),
    ("lora: x\n", "'lora' must be a mapping"),
    ("train: {epochs: 2, speed: 3}\n", "unknown key train.'speed'"),
    ("data_hash: abc\n", "'data_hash' is derived from the data"),
    ("- a list\n", "expected a mapping"),
])
def test_bad_config_file_value_is_one_line_and_writes_nothing(body, needle, tiny_model_dir, sst2_folder, tmp_path,
                                                              capsys):
    config = tmp_path / "run.yaml"
    config.write_text(body)
    args = run_args(tiny_model_dir, sst2_folder, tmp_path / "R")
    assert_one_line_error(*star(capsys, *args[:args.index("--warm-start")], "--config", config, "--out",
                                tmp_path / "R"), needle)
    assert not (tmp_path / "R").exists() or not any((tmp_path / "R").iterdir())


def test_eval_refuses_bad_batch_size_adapter_and_out_before_any_work(tiny_model_dir, sst2_folder, tmp_path, capsys):
    base = ["eval", "--task", "sst2", "--data", sst2_folder, "--model", tiny_model_dir, "--device", "cpu",
            "--dtype", "float32"]
    assert_one_line_error(*star(capsys, *base, "--batch-size", "0"), "--batch-size must be at least 1")
    (tmp_path / "file").write_text("x")
    assert_one_line_error(*star(capsys, *base, "--out", tmp_path / "file"), "is a file")
    empty = tmp_path / "adapter-empty"
    empty.mkdir()
    (empty / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    assert_one_line_error(*star(capsys, *base, "--adapter", empty, "--out", tmp_path / "E"),
                          "no adapter_model.safetensors")
    (empty / "adapter_config.json").write_text('{"peft_type": "LO')
    assert_one_line_error(*star(capsys, *base, "--adapter", empty, "--out", tmp_path / "E"), "not valid JSON")
    assert not (tmp_path / "E" / "summary.json").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_run_into_a_read_only_folder_is_one_line(tiny_model_dir, sst2_folder, tmp_path, capsys):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    assert_one_line_error(*star(capsys, *run_args(tiny_model_dir, sst2_folder, locked / "R")), str(locked))


def test_a_read_only_out_is_one_line_before_any_work(tiny_model_dir, sst2_folder, tmp_path, capsys, monkeypatch):
    """A full or read-only disk: the probe write fails before the model is even loaded."""
    import tempfile

    def full_disk(*_, **__):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", full_disk)
    assert_one_line_error(*star(capsys, "eval", "--task", "sst2", "--data", sst2_folder, "--model", "/nowhere",
                                "--out", tmp_path / "E"), "No space left on device")


# -- 5 and 7. damaged state is retrained, recomputed or refused by name ---------------------------

@pytest.fixture
def sst2_data(data_root):
    task = load_task("sst2")
    return task, load_examples(task, "train", data_root=str(data_root))[:60], \
        load_examples(task, "test", data_root=str(data_root))[:10]


def killed_run(backbone, data, path, config):
    task, pool, test = data
    with pytest.raises(Killed):
        ActiveLearningRun(config, task, pool, test, backbone, RunDir(path), oracle=KillingOracle(at=2)).run()


def finish(backbone, data, path, config):
    task, pool, test = data
    return without_timings(ActiveLearningRun(config, task, pool, test, backbone, RunDir(path)).run())


def damage_safetensors(run_dir):
    weights = run_dir / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def damage_adapter_config(run_dir):
    (run_dir / "adapter" / "adapter_config.json").write_text('{"peft_type": "LORA", "r": ')


def damage_round_marker(run_dir):
    (run_dir / "adapter" / "star_round.json").write_text("{")


def damage_base_scores(run_dir):
    path = run_dir / "base_scores.npz"
    path.write_bytes(path.read_bytes()[:50])


@pytest.mark.parametrize("damage", [damage_safetensors, damage_adapter_config, damage_round_marker,
                                    damage_base_scores])
def test_damaged_adapter_or_base_scores_are_rebuilt_and_the_run_ends_as_an_undamaged_one(
        damage, tiny_backbone_factory, sst2_data, tmp_path):
    config = smoke_config("me+star")
    whole = finish(tiny_backbone_factory(0), sst2_data, tmp_path / "whole", config)
    killed_run(tiny_backbone_factory(0), sst2_data, tmp_path / "killed", config)
    damage(tmp_path / "killed")
    backbone = tiny_backbone_factory(0)
    assert finish(backbone, sst2_data, tmp_path / "killed", config) == whole
    assert not any("lora_" in name for name, _ in backbone.model.named_parameters())


@pytest.mark.parametrize("pending,needle", [
    ("{\"round\": 2, \"ids\": [1, 2", "damaged"),
    ({"round": 2, "ids": "1,2,3", "scores": None}, "not a queried batch"),
    ({"round": 2, "ids": [5, 5, 5], "scores": None, "lambda": None}, "an id twice"),
    ({"round": 2, "ids": [9999, 9998, 9997], "scores": None, "lambda": None}, "outside the pool"),
    ({"round": 2, "ids": [1, 2], "scores": None, "lambda": None}, "2 ids where this batch has 3"),
])
def test_a_damaged_or_untrustworthy_pending_batch_is_refused_by_name(pending, needle, tiny_backbone_factory,
                                                                    sst2_data, tmp_path):
    config = smoke_config("random")
    killed_run(tiny_backbone_factory(0), sst2_data, tmp_path / "R", config)
    path = tmp_path / "R" / "pending.json"
    path.write_text(pending if isinstance(pending, str) else json.dumps(pending))
    rounds = (tmp_path / "R" / "rounds.jsonl").read_text()
    with pytest.raises(StarError, match=needle) as caught:
        finish(tiny_backbone_factory(0), sst2_data, tmp_path / "R", config)
    assert "pending.json" in str(caught.value) and "\n" not in str(caught.value)
    assert (tmp_path / "R" / "rounds.jsonl").read_text() == rounds


def test_an_already_labeled_id_in_the_pending_batch_is_refused(tiny_backbone_factory, sst2_data, tmp_path):
    config = smoke_config("random")
    killed_run(tiny_backbone_factory(0), sst2_data, tmp_path / "R", config)
    labeled = RunDir(tmp_path / "R").read_rounds()[0].selected_ids
    (tmp_path / "R" / "pending.json").write_text(json.dumps({"round": 2, "ids": labeled[:3], "scores": None}))
    with pytest.raises(StarError, match="already labeled"):
        finish(tiny_backbone_factory(0), sst2_data, tmp_path / "R", config)


def test_rounds_lost_behind_the_saved_adapter_are_refused(tiny_backbone_factory, sst2_data, tmp_path):
    config = smoke_config("random")
    finish(tiny_backbone_factory(0), sst2_data, tmp_path / "R", config)
    lines = (tmp_path / "R" / "rounds.jsonl").read_text().splitlines(True)
    (tmp_path / "R" / "rounds.jsonl").write_text("".join(lines[:2]))
    with pytest.raises(StarError, match="rounds were lost"):
        finish(tiny_backbone_factory(0), sst2_data, tmp_path / "R", config)


def test_a_resume_keeps_the_dtype_its_rounds_ran_in(tiny_backbone_factory, sst2_data, tmp_path):
    config = smoke_config("random")
    killed_run(tiny_backbone_factory(0), sst2_data, tmp_path / "R", config)
    ran = RunDir(tmp_path / "R").read_rounds()
    assert ran and all((r.device, r.dtype) == ("cpu", "float32") for r in ran)
    rounds = (tmp_path / "R" / "rounds.jsonl").read_text()
    # a machine that would choose bf16 by itself is refused before any work; asked for, it is said and taken
    chosen = replace(tiny_backbone_factory(0).placement, dtype=torch.bfloat16, automatic=True)
    with pytest.raises(StarError, match=r"ran in float32 but this machine would take bfloat16.*--dtype float32"):
        dtype_change(ran, chosen, "R/rounds.jsonl")
    backbone = tiny_backbone_factory(0)
    backbone.placement = chosen
    with pytest.raises(StarError, match="--dtype float32 to continue it as it ran"):
        finish(backbone, sst2_data, tmp_path / "R", config)
    assert (tmp_path / "R" / "rounds.jsonl").read_text() == rounds
    asked = replace(chosen, automatic=False)
    assert "this resume runs in bfloat16, as asked" in dtype_change(ran, asked, "R/rounds.jsonl")
    assert dtype_change(ran, tiny_backbone_factory(0).placement, "R/rounds.jsonl") is None
    assert dtype_change([replace(r, dtype=None) for r in ran], chosen, "R/rounds.jsonl") is None  # older runs


def test_damaged_config_is_refused_by_name(tmp_path):
    (tmp_path / "config.json").write_text('{"task": "sst2", "strat')
    with pytest.raises(StarError, match="config.json: damaged"):
        RunDir(tmp_path).read_config()


# -- 8 and 9. files others can read; one name per strategy -----------------------------------------

def test_atomic_files_get_the_umasks_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "shared.json", "{}")
        os.umask(0o027)
        write_text_atomic(tmp_path / "group.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "group.json").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("given,canonical", [("ME", "me"), ("me+dynamic+mc+l2", "me+star"),
                                             ("PE + L2 + dynamic", "pe+dynamic+l2"), ("Random", "random")])
def test_strategy_names_are_recorded_in_one_canonical_form(given, canonical):
    assert smoke_config(given).strategy == canonical


def test_one_yaml_describes_a_whole_run_and_the_command_line_wins(tiny_model_dir, sst2_folder, tmp_path, capsys,
                                                                  monkeypatch):
    import yaml

    monkeypatch.setenv("STAR_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    whole = {"task": "sst2", "strategy": "me+dynamic", "seed": 2, "preset": "smoke", "model": str(tiny_model_dir),
             "warm_start": 4, "query_size": 3, "n_rounds": 1, "pool_size": 30, "test_limit": 6,
             "lora": {"rank": 4, "dropout": 0.2}, "train": {"epochs": 1, "learning_rate": 1e-3}, "out": "from-file"}
    (tmp_path / "whole_run.yaml").write_text(yaml.safe_dump(whole))
    assert star(capsys, "run", "--config", "whole_run.yaml")[0] == 0
    saved = json.loads((tmp_path / "from-file" / "config.json").read_text())
    assert (saved["task"], saved["strategy"], saved["seed"], saved["n_rounds"], saved["lora"]["rank"]) == \
        ("sst2", "me+dynamic", 2, 1, 4)
    assert star(capsys, "run", "--config", "whole_run.yaml", "--rank", "2", "--seed", "3", "--out", "flags")[0] == 0
    saved = json.loads((tmp_path / "flags" / "config.json").read_text())
    assert (saved["seed"], saved["lora"]["rank"], saved["lora"]["dropout"]) == (3, 2, 0.2)


def test_a_sweep_continued_seed_by_seed_keeps_one_report_over_all_its_runs(tiny_model_dir, sst2_folder, tmp_path,
                                                                          capsys):
    root = tmp_path / "data"
    root.mkdir()
    sst2_folder.rename(root / "sst2")
    out = tmp_path / "sweep"
    for seed in (0, 1):
        code, lines = star(capsys, "sweep", "--tasks", "sst2", "--strategies", "random", "--seeds", seed,
                           "--data-root", root, "--preset", "smoke", "--model", tiny_model_dir, "--device", "cpu",
                           "--dtype", "float32", "--warm-start", 4, "--query-size", 3, "--rounds", 1,
                           "--pool-size", 20, "--rank", 4, "--test-limit", 6, "--out", out,
                           "--cache-dir", tmp_path / "cache")
        assert code == 0, lines
    report = (out / "report.md").read_text()
    assert "(2 per cell)" in report  # the second sweep's report covers the first's seed too
