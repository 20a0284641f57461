"""Pool scoring in chunks, each saved as it finishes, so a killed round resumes from its last finished chunk.

A scoring job (a round's tuned passes; the base model's scores of the examples a round is
the first to ask about) splits its ids, in their order, into chunks of `--score-chunk`
examples. Each chunk is scored and written atomically (an .npz of its ids and every array)
before the next begins; the same job run again reads its finished chunks back (their ids
checked) and scores from the first missing one, so a kill costs at most the chunk it
interrupted, and the log says where it resumed. Each chunk seeds torch's generator itself
(the MC-dropout masks), so a chunk scored after a resume draws what it drew the first
time. A job of one chunk writes nothing and is seeded and scored exactly as an unchunked
pass always was. Under a launcher every process scores its share of each chunk's batches
(gathered as before) and the main process reads and writes the files.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from star_al.engine.distributed import SINGLE, Processes
from star_al.engine.scoring import PASS_MEASURES
from star_al.errors import StarError
from star_al.files import load_npz, write_npz_atomic
from star_al.log import eta, log

PROBE_EXAMPLES = 64  # scored before a job of several chunks, to say how long it will take

# score(ids, chunk) -> arrays: measures [passes, n] or [n], anything else [n, ...]; chunk None: a probe,
# whose result is dropped.
ChunkScorer = Callable[[np.ndarray, int | None], dict[str, np.ndarray]]


def chunk_seed(seed: int, round_index: int, chunk: int) -> int:
    """Torch's seed for one chunk of a round's tuned scoring: chunk 0's is the seed an unchunked
    round always used; every other chunk's its own, drawn from (seed, round, chunk)."""
    if chunk == 0:
        return seed * 1000 + 500 + round_index
    return int(np.random.SeedSequence([seed, 500, round_index, chunk]).generate_state(1, np.uint64)[0] >> 1)


def job_name(kind: str, ids: np.ndarray, **details) -> str:
    """A job's folder name: what it scores and a digest of its ids and settings (same job, same name)."""
    digest = hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()
                            + json.dumps(details, sort_keys=True).encode()).hexdigest()[:12]
    return f"{kind}-{digest}"


def score_in_chunks(ids: np.ndarray, size: int, folder: Path, score: ChunkScorer, processes: Processes = SINGLE,
                    label: str = "score pool", keep_one: bool = False) -> dict[str, np.ndarray]:
    """score(ids) as chunks of `size`, each saved in `folder` as it finishes, its arrays joined back.
    A job of one chunk is scored without saving unless `keep_one` (a store that keeps every result)."""
    ids = np.asarray(ids, dtype=np.int64)
    chunks = [ids[start:start + size] for start in range(0, len(ids), size)]
    if len(chunks) == 1 and not keep_one:
        return score(ids, 0)
    parts, read_back, first, started = [], 0, None, 0.0
    for index, chunk_ids in enumerate(chunks):
        path = Path(folder) / f"chunk-{index:05d}.npz"
        arrays = processes.on_main(read_chunk, path, chunk_ids)
        if arrays is not None:
            read_back += 1
            parts.append(arrays)
            continue
        if first is None:
            first = index
            if read_back:
                log.info(f"{label}: resumed from chunk {index + 1} of {len(chunks)} ({read_back} finished "
                         f"chunk{'s' if read_back > 1 else ''} read back from {folder})")
            if len(chunks) - index > 1:
                _announce(chunks[index:], score, label)
            started = time.perf_counter()
        arrays = score(chunk_ids, index)
        processes.on_main(write_npz_atomic, path, ids=chunk_ids, **arrays)
        parts.append(arrays)
        done, left = index - first + 1, len(chunks) - index - 1
        spent = time.perf_counter() - started
        if len(chunks) > 1:
            log.info(f"{label}: chunk {index + 1}/{len(chunks)} saved"
                     + (f"; about {eta(spent / done * left)} for the {left} left" if left else ""))
    if first is None and len(chunks) > 1:
        log.info(f"{label}: all {len(chunks)} chunks read back from {folder}")
    return join_chunks(parts)


def _announce(chunks: list[np.ndarray], score: ChunkScorer, label: str) -> None:
    """Say, before the work starts, how long the chunks left will take here (a few examples timed)."""
    rest = sum(len(chunk) for chunk in chunks)
    probe = chunks[0][:PROBE_EXAMPLES]
    tick = time.perf_counter()
    score(probe, None)
    per_example = (time.perf_counter() - tick) / len(probe)
    log.info(f"{label}: {rest:,} examples in {len(chunks)} chunks of up to {len(chunks[0]):,}, each saved as it "
             f"finishes: about {eta(per_example * rest)} here ({1000 * per_example:.1f} ms an example, "
             f"measured on {len(probe)})")


def read_chunk(path: Path, ids: np.ndarray) -> dict[str, np.ndarray] | None:
    """A finished chunk's arrays if its file is whole and holds exactly these ids; else None."""
    if not Path(path).is_file():
        return None
    try:
        arrays = load_npz(path)
    except StarError as error:
        log.info(f"{error}: scoring that chunk again")
        return None
    if not np.array_equal(arrays.pop("ids", None), ids):
        log.info(f"{path}: holds other examples than this job's chunk: scoring it again")
        return None
    return arrays


def join_chunks(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One job's arrays from its chunks': measures along their example axis (the last of [passes, n]),
    everything else ([n, ...]) along the first."""
    joined = {}
    for key, value in parts[0].items():
        axis = 1 if key in PASS_MEASURES and value.ndim == 2 else 0
        joined[key] = np.concatenate([part[key] for part in parts], axis=axis)
    return joined
