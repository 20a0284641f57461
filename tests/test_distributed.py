"""Many processes, one run: a 2-process CPU launch (gloo) selects, scores and trains as one process does.

The launched run uses MC dropout (me+star), scoring batches and training batches that
split unevenly between the processes (one training batch has a single row, so one process
runs a row weighted 0 to take part in the gradient all-reduce), and its own base-score cache, so
every shared path is exercised.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from star_al.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"


def _run_args(model_dir, data, out, cache):
    return ["run", "--task", "sst2", "--data", str(data), "--strategy", "me+star", "--preset", "smoke",
            "--model", str(model_dir), "--device", "cpu", "--dtype", "float32", "--cache-dir", str(cache),
            "--score-batch-size", "4", "--train-batch-size", "3", "--lr", "0.01", "--epochs", "2",
            "--out", str(out)]


LAUNCHERS = {
    "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
    "accelerate": [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"],
}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _adapter(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_processes_select_score_and_train_as_one(launcher, tiny_model_dir, sst2_folder, tmp_path):
    alone, launched = tmp_path / "alone", tmp_path / "launched"
    assert main(_run_args(tiny_model_dir, sst2_folder, alone, tmp_path / "cache-alone")) == 0

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    command = [*LAUNCHERS[launcher], "-m", "star_al.cli",
               *_run_args(tiny_model_dir, sst2_folder, launched, tmp_path / "cache-launched")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    ours, theirs = _lines(alone / "rounds.jsonl"), _lines(launched / "rounds.jsonl")
    # Exactly one copy of every line: one writer.
    assert [r["round"] for r in theirs] == [0, 1, 2, 3]
    assert len(_lines(launched / "labels.jsonl")) == len(_lines(alone / "labels.jsonl")) == 16
    assert len({entry["id"] for entry in _lines(launched / "labels.jsonl")}) == 16
    # The same picks, round by round, and the same curve.
    assert [r["selected_ids"] for r in theirs] == [r["selected_ids"] for r in ours]
    assert [r["train_steps"] for r in theirs] == [r["train_steps"] for r in ours]
    for a, b in zip(ours, theirs):
        assert b["accuracy"] == pytest.approx(a["accuracy"])
        assert b["train_loss"]["mean"] == pytest.approx(a["train_loss"]["mean"], rel=1e-4)
    # Pool scores, every MC pass, in the pool's order, to 2e-5 nats (the adapters differ by float
    # rounding: gradients are summed in another order; measured 6e-6); the base model's exactly.
    np.testing.assert_array_equal(np.load(launched / "base_scores.npz")["me"], np.load(alone / "base_scores.npz")["me"])
    for round_index in (1, 2, 3):
        mine = np.load(alone / "scores" / f"round-{round_index:02d}.npz")
        shared = np.load(launched / "scores" / f"round-{round_index:02d}.npz")
        np.testing.assert_array_equal(shared["ids"], mine["ids"])
        assert mine["me"].shape[0] == 2  # two MC-dropout passes
        for key in ("me", "pe", "base_me"):
            np.testing.assert_allclose(shared[key], mine[key], rtol=0, atol=2e-5, err_msg=key)
        # Other masks would show: the two passes' own masks move the scores far more than that
        # (measured: ME by 2e-4 to 1e-3 nats, PE by 0.06 to 0.27).
        assert np.abs(mine["me"][0] - mine["me"][1]).max() > 1e-4
        assert np.abs(mine["pe"][0] - mine["pe"][1]).max() > 1e-2
        np.testing.assert_allclose(shared["combined"], mine["combined"], rtol=0, atol=1e-3)
    # The adapter trained by two processes is the one trained alone (same global batch, same masks).
    alone_weights, launched_weights = _adapter(alone), _adapter(launched)
    assert alone_weights.keys() == launched_weights.keys()
    for name, weight in alone_weights.items():
        torch.testing.assert_close(launched_weights[name], weight, rtol=0, atol=1e-6, msg=name)  # measured 9e-8

    if launcher == "torchrun":  # a resume under a launcher ends where the uninterrupted run did
        rounds_file = launched / "rounds.jsonl"
        rounds_file.write_text("".join(rounds_file.read_text().splitlines(True)[:3]))
        shutil.rmtree(launched / "adapter")  # killed before round 2's adapter was saved: trained again
        resumed = subprocess.run([*LAUNCHERS[launcher], "-m", "star_al.cli", "resume", str(launched),
                                  "--device", "cpu", "--dtype", "float32", "--cache-dir", str(tmp_path / "cache-launched")],
                                 env=env, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        again = _lines(rounds_file)
        assert [r["selected_ids"] for r in again] == [r["selected_ids"] for r in ours]
        assert len(_lines(launched / "labels.jsonl")) == 16
        for name, weight in alone_weights.items():
            torch.testing.assert_close(_adapter(launched)[name], weight, rtol=0, atol=1e-6, msg=name)


def test_report_to_tensorboard_logs_every_training_step(tiny_model_dir, sst2_folder, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main([*_run_args(tiny_model_dir, sst2_folder, out, tmp_path / "cache"), "--report-to", "tensorboard"]) == 0
    rounds = _lines(out / "rounds.jsonl")
    events = EventAccumulator(str(next((out / "trackers").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert len(losses) == sum(r["train_steps"] for r in rounds)
    assert [e.step for e in losses] == list(range(len(losses)))
    # rounds.jsonl keeps each round's loss summary, the tracker every step of it.
    last = rounds[-1]["train_loss"]
    assert losses[-1].value == pytest.approx(last["last"], rel=1e-6)
    assert last["min"] <= last["mean"] <= max(last["first"], last["last"], last["mean"])
    assert len(events.Scalars("round/accuracy")) == len(rounds)


def test_missing_tracker_package_and_quantization_on_cpu_are_refused_in_one_line(tiny_model_dir, sst2_folder,
                                                                               tmp_path, capsys):
    import importlib.util

    args = _run_args(tiny_model_dir, sst2_folder, tmp_path / "run", tmp_path / "cache")
    if importlib.util.find_spec("wandb") is None:
        assert main([*args, "--report-to", "wandb"]) == 1
        assert "needs the wandb package" in capsys.readouterr().err
    assert main([*args, "--report-to", "nonsense"]) == 1
    assert "unknown --report-to" in capsys.readouterr().err
    assert main([*args, "--load-in-4bit"]) == 1
    error = capsys.readouterr().err
    assert [line for line in error.splitlines() if line.startswith("star: error:")] == [
        "star: error: --load-in-4bit needs a CUDA GPU (bitsandbytes); this run is on cpu"]
    assert not (tmp_path / "run").exists()


def test_an_fsdp_launch_is_refused_before_any_process_group_starts():
    from star_al.engine.distributed import Processes
    from star_al.errors import StarError

    with pytest.raises(StarError, match="FSDP shards"):
        Processes.from_environment({"WORLD_SIZE": "2", "ACCELERATE_USE_FSDP": "true"}, device="cpu")
    assert Processes.from_environment({"WORLD_SIZE": "1", "ACCELERATE_USE_FSDP": "true"}).world == 1
