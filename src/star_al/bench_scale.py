"""`star bench --pool-scale`: what a pool's size costs a run whose pool is read from disk.

A synthetic pool of short sentences with a sentiment label (made here, seeded) is written as
JSONL at each size, the smaller files being the first lines of the largest; a tiny random
2-layer Llama (a 1,000-token BPE trained here on the sentences) is saved beside it. At each
size, each in fresh processes: the pool file is indexed (cold, then opened from its cached
index), and `star run --large-pool 0` makes a warm start and QUERY_ROUNDS query rounds of
me+star (MC_PASSES dropout passes; the dynamic mix over base scores computed for the candidates
a round scores) on a fixed random subset of SUBSET candidates a round (`--pool-subsample`),
scored in chunks of CHUNK. The figures: the peak resident memory of each process (its VmHWM,
read as it exits: ru_maxrss would also count what this process held when it forked the child),
the wall time of each round, and the CPU seconds of the whole run (on a shared machine the
wall times carry the other work's noise; the CPU seconds much less). On the largest pool the run is then killed
(SIGKILL) halfway through a chunk of round 2's scoring and resumed: the time lost is what the
kill threw away (the chunk it interrupted), and the resumed run's picks are compared with the
uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SUBSET, CHUNK, QUERY, QUERY_ROUNDS, MC_PASSES, TEST = 4000, 1000, 32, 2, 3, 200
TASK_YAML = """name: synthetic-sentiment
data: data
prompt: "Review: {text}\\nSentiment:"
answer: label
answer_type: label
labels: [positive, negative]
splits: {train: train.jsonl, test: test.jsonl}
"""
_SYLLABLES = ["ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "va", "ze", "bo", "du"]
_GOOD = ["bright", "kind", "great", "warm", "clever", "fresh", "lovely", "smooth"]
_BAD = ["dull", "cruel", "awful", "cold", "stale", "clumsy", "bland", "rough"]


def vocabulary() -> tuple[np.ndarray, np.ndarray]:
    """Words (144 made of two syllables, 8 good, 8 bad) and each one's sentiment (+1, -1, 0)."""
    neutral = [a + b for a in _SYLLABLES for b in _SYLLABLES]
    words = np.array(neutral + _GOOD + _BAD)
    return words, np.array([0] * len(neutral) + [1] * len(_GOOD) + [-1] * len(_BAD))


def synthetic_lines(n: int, seed: int) -> list[str]:
    """n JSONL lines {"text": 4-12 words, "label": positive if its good words outnumber its bad ones}."""
    words, sentiment = vocabulary()
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 13, n)
    picks = rng.integers(0, len(words), (n, 12))
    kept = np.arange(12)[None, :] < lengths[:, None]
    leaning = (sentiment[picks] * kept).sum(1) + rng.choice([-0.5, 0.5], n)
    labels = np.where(leaning > 0, "positive", "negative")
    return [json.dumps({"text": " ".join(words[picks[i, :lengths[i]]]), "label": labels[i]}) + "\n"
            for i in range(n)]


def prepare(work: Path, sizes: list[int], log) -> dict:
    """The pool files (one folder per size), the task file and the tiny model, under `work`."""
    from star_al.bench_memory import tiny_model

    started = time.perf_counter()
    lines = synthetic_lines(max(sizes), seed=0)
    test = synthetic_lines(TEST, seed=1)
    folders = {}
    for n in sizes:
        folder = work / f"pool-{n}"
        folder.mkdir(parents=True)
        (folder / "train.jsonl").write_text("".join(lines[:n]))
        (folder / "test.jsonl").write_text("".join(test))
        folders[n] = folder
    (work / "task.yaml").write_text(TASK_YAML)
    model, tokenizer = tiny_model([json.loads(line)["text"] for line in lines[:2000]], vocab=1000)
    model.save_pretrained(work / "model")
    tokenizer.save_pretrained(work / "model")
    log(f"pool files of {', '.join(f'{n:,}' for n in sizes)} lines "
        f"({(folders[max(sizes)] / 'train.jsonl').stat().st_size / 1e6:.0f} MB the largest) and the tiny model "
        f"written in {time.perf_counter() - started:.0f} s")
    return folders


def measure_index(task_file: str, data_dir: str, cache: str) -> dict:
    """In this process: the pool file indexed cold, then opened again from the cache; time and memory."""
    from star_al.data.catalog import load_task
    from star_al.data.disk_pool import load_pool
    from star_al.engine.heap import resident_mb

    task = load_task(task_file)
    before = resident_mb()
    tick = time.perf_counter()
    pool = load_pool(task, "train", 0, Path(cache), data_dir=data_dir)
    cold = time.perf_counter() - tick
    tick = time.perf_counter()
    load_pool(task, "train", 0, Path(cache), data_dir=data_dir)
    warm = time.perf_counter() - tick
    return {"examples": len(pool), "index_seconds": cold, "open_cached_seconds": warm, "rss_before_mb": before,
            "rss_peak_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory since its program started (VmHWM; where there is no
    /proc, ru_maxrss, which also counts the parent's memory at the fork)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_args(work: Path, data_dir: Path, out: Path) -> list[str]:
    return ["run", "--task", str(work / "task.yaml"), "--data", str(data_dir), "--strategy", "me+star",
            "--preset", "paper", "--model", str(work / "model"), "--device", "cpu", "--dtype", "float32",
            "--cache-dir", str(work / "cache"), "--large-pool", "0", "--warm-start", str(QUERY),
            "--query-size", str(QUERY), "--rounds", str(QUERY_ROUNDS), "--pool-subsample", str(SUBSET),
            "--score-chunk", str(CHUNK), "--mc-passes", str(MC_PASSES), "--rank", "4", "--alpha", "8",
            "--epochs", "1", "--train-batch-size", "16", "--score-batch-size", "64", "--out", str(out)]


def star(args: list[str], log_path: Path, until=None) -> dict:
    """`star ARGS` in a fresh process (output to log_path): exit code, wall seconds, peak RSS (its own
    VmHWM as it exits) and CPU seconds (None for both when killed). `until(process)`, if given, is
    polled and may end it early."""
    peak = log_path.with_suffix(".peak")
    peak.unlink(missing_ok=True)
    code = ("import atexit, json, os, sys; from star_al.bench_scale import peak_rss_mb; "
            f"atexit.register(lambda: open({str(peak)!r}, 'w').write(json.dumps("
            "[peak_rss_mb(), sum(os.times()[:2])]))); "
            f"from star_al.cli import main; sys.exit(main({args!r}))")
    started = time.perf_counter()
    with open(log_path, "a") as output:
        process = subprocess.Popen([sys.executable, "-c", code], stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, "TQDM_DISABLE": "1"})
        while until is not None and process.poll() is None and not until(process):
            time.sleep(0.05)
        process.wait()
    peak_mb, cpu = json.loads(peak.read_text()) if peak.is_file() else (None, None)
    return {"returncode": process.returncode, "seconds": time.perf_counter() - started, "rss_peak_mb": peak_mb,
            "cpu_seconds": cpu}


def rounds_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines() if line.strip()]


def in_child(call: str) -> dict:
    done = subprocess.run([sys.executable, "-c", f"import json; from star_al.bench_scale import *; "
                                                 f"print(json.dumps({call}))"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pool-scale child failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_size(work: Path, folder: Path, n: int, log) -> dict:
    index = in_child(f"measure_index({str(work / 'task.yaml')!r}, {str(folder)!r}, {str(work / 'cache')!r})")
    log(f"pool {n:>9,}: indexed in {index['index_seconds']:.1f} s (from the cache: "
        f"{index['open_cached_seconds']:.2f} s), peak RSS {index['rss_peak_mb']:.0f} MB")
    out = work / "runs" / str(n)
    run = star(run_args(work, folder, out), work / f"run-{n}.log")
    if run["returncode"] != 0:
        raise RuntimeError(f"star run on the pool of {n} failed: see {work / f'run-{n}.log'}")
    rounds = rounds_of(out)
    query_rounds = [r["timings"] for r in rounds[1:]]
    log(f"pool {n:>9,}: run {run['seconds']:.0f} s ({run['cpu_seconds']:.0f} s of CPU), peak RSS "
        f"{run['rss_peak_mb']:.0f} MB; query rounds "
        + "; ".join(f"{t['total']:.1f} s (score {t.get('score', 0):.1f}, train {t['train']:.1f}, "
                    f"eval {t['eval']:.1f})" for t in query_rounds))
    return {"pool": n, "index_seconds": index["index_seconds"], "index_open_cached_seconds": index["open_cached_seconds"],
            "index_rss_peak_mb": index["rss_peak_mb"], "run_seconds": run["seconds"], "run_cpu_seconds": run["cpu_seconds"],
            "run_rss_peak_mb": run["rss_peak_mb"],
            "round_seconds": [r["timings"] for r in rounds], "selected_ids": [r["selected_ids"] for r in rounds]}


def measure_kill(work: Path, folder: Path, n: int, uninterrupted: dict, log) -> dict:
    """Kill the run halfway through a chunk of round 2's scoring, resume it: the time lost, the picks."""
    out = work / "runs" / f"{n}-killed"
    chunks = out / "scoring" / "round-02"
    seen: dict = {}

    def halfway_through_the_third_chunk(process) -> bool:
        saved = sorted(chunks.glob("tuned-*/chunk-*.npz")) if chunks.is_dir() else []
        if len(saved) < 2:
            return False
        if "kill_at" not in seen:
            first, second = (path.stat().st_mtime for path in saved[:2])
            seen.update(chunk_seconds=second - first, saved_at=second, kill_at=second + (second - first) / 2)
        if time.time() < seen["kill_at"]:
            return False
        os.kill(process.pid, signal.SIGKILL)
        seen["killed_at"] = time.time()
        return True

    killed = star(run_args(work, folder, out), work / f"run-{n}-killed.log", until=halfway_through_the_third_chunk)
    if "killed_at" not in seen:
        raise RuntimeError(f"the run on the pool of {n} ended before it could be killed mid-scoring")
    resumed = star(["resume", str(out), "--device", "cpu", "--dtype", "float32", "--cache-dir", str(work / "cache")],
                   work / f"run-{n}-killed.log")
    if resumed["returncode"] != 0:
        raise RuntimeError(f"star resume failed: see {work / f'run-{n}-killed.log'}")
    said = [line.split(" ", 2)[2] for line in (out / "run.log").read_text().splitlines() if "resumed from chunk" in line]
    picks = [r["selected_ids"] for r in rounds_of(out)]
    result = {"killed_after_seconds": killed["seconds"], "chunk_seconds": seen["chunk_seconds"],
              "lost_seconds": seen["killed_at"] - seen["saved_at"], "resume_seconds": resumed["seconds"],
              "log": said, "same_picks": picks == uninterrupted["selected_ids"]}
    log(f"pool {n:>9,}: killed halfway through round 2's third scoring chunk (chunks take "
        f"{result['chunk_seconds']:.1f} s): {result['lost_seconds']:.1f} s of scoring lost; the resume said "
        f"\"{said[0] if said else 'nothing'}\"; picks {'identical to' if result['same_picks'] else 'NOT those of'} "
        "the uninterrupted run's")
    return result


def run_pool_scale_bench(sizes: list[int], log=print) -> dict:
    """Every size in turn, then the kill on the largest; the work folder is removed afterwards."""
    import shutil

    import torch

    from star_al.models.hardware import device_name

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="star-pool-scale-"))
    try:
        folders = prepare(work, sizes, log)
        rows = [measure_size(work, folders[n], n, log) for n in sizes]
        kill = measure_kill(work, folders[max(sizes)], max(sizes), rows[-1], log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"machine": f"{device_name('cpu')}, {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores",
            "subset": SUBSET, "chunk": CHUNK, "query_size": QUERY, "query_rounds": QUERY_ROUNDS,
            "mc_passes": MC_PASSES, "sizes": [{k: v for k, v in row.items() if k != "selected_ids"} for row in rows],
            "kill": kill, "bench_seconds": time.perf_counter() - started}
