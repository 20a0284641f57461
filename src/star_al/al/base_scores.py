"""The frozen base model's uncertainty over the pool: computed once per run, shared across runs.

Dynamic uncertainty mixes these with the tuned model's (docs/method.md 3.1). They depend
only on the model, its dtype, the pool's content and how prompts are cut, so a shared
cache entry keyed by exactly those serves every run (and seed) with the same pool. A
warm start chosen by diversity (al/cold_start.py) also reads the base model's hidden
states; they are added to the entry the first time a run asks for them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import numpy as np
from filelock import FileLock

from star_al.al.chunks import job_name, score_in_chunks
from star_al.al.run_dir import RunDir
from star_al.data.tasks import fingerprint
from star_al.engine.distributed import SINGLE, Processes
from star_al.engine.scoring import PASS_MEASURES, measures, one_pass, run_scoring_options, score_examples
from star_al.errors import StarError
from star_al.files import load_npz, write_json_atomic, write_npz_atomic
from star_al.log import log
from star_al.strategies.base import Needs


def _log(message: str) -> None:
    log.info(message)


# 2: entries written before a run released its adapter may hold tuned scores.
# 3: keyed by the pool examples' content and the weights' dtype, not the data folder's path.
BASE_SCORES_VERSION = 3
BASE_SCORE_KEYS = ("ids", "me", "pe")  # and pe_gold when every pool example has its answer (a simulation)


def base_cache_key(config, pool_examples, dtype) -> str:
    """Base scores depend on the model and its dtype, the pool's content and how prompts are cut."""
    key = json.dumps([BASE_SCORES_VERSION, config.model, str(dtype), config.task, config.train.max_prompt_tokens,
                      fingerprint(pool_examples)])
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def read_base_scores(path: Path, pool_ids: np.ndarray, embeddings: bool = False) -> dict[str, np.ndarray] | None:
    """Base scores from disk if the file is whole and covers exactly this pool (and has the hidden
    states, when asked); else None (and why)."""
    if not path.is_file():
        return None
    try:
        arrays = load_npz(path)
    except StarError as error:
        _log(f"{error}: dropped, computing the base scores again")
        return None
    whole = all(key in arrays and arrays[key].shape == pool_ids.shape for key in BASE_SCORE_KEYS)
    if embeddings and ("embeddings" not in arrays or len(arrays["embeddings"]) != len(pool_ids)):
        _log(f"{path}: no hidden states for the warm start: computing the base scores again with them")
        return None
    if not whole or not np.array_equal(arrays["ids"], pool_ids) or \
            not all(np.isfinite(arrays[key]).all() for key in set(arrays) - {"ids"}):
        _log(f"{path}: not this pool's base scores: dropped, computing them again")
        return None
    return arrays


def base_pool_scores(config, task, model, tokenizer, by_id, pool_ids, run_dir: RunDir,
                     cache_root: Path | None, dtype=None, embeddings: bool = False,
                     processes: Processes = SINGLE) -> dict[str, np.ndarray]:
    """The frozen base model's ME/PE (and, if asked, answer-position hidden states) over the whole
    pool: computed once, then read from disk.

    The shared cache (one entry per model, dtype and pool content) is filled atomically
    under a lock, so two runs starting at once compute it once and a kill mid-fill
    leaves no half entry; an entry that fails its check is dropped and recomputed.
    Under a launcher the main process reads and writes, and every process scores its share.
    """
    arrays = processes.on_main(read_base_scores, run_dir.base_scores_path, pool_ids, embeddings)
    if arrays is not None:
        return arrays
    arrays, source = _shared_or_computed(config, task, model, tokenizer, by_id, pool_ids, cache_root, dtype,
                                         embeddings, processes)
    processes.on_main(_write_run_copy, run_dir, arrays, source, dtype)
    return arrays


def _write_run_copy(run_dir: RunDir, arrays: dict, source: str, dtype) -> None:
    write_npz_atomic(run_dir.base_scores_path, **arrays)
    # A small record that travels with the run (committed with config.json and rounds.jsonl):
    # a run whose "base" scores came from a tuned model shows it here (mean ME near 0).
    write_json_atomic(run_dir.path / "base_scores.json", {
        "source": source, "n": int(len(arrays["ids"])), "dtype": str(dtype),
        **{f"{key}_{stat}": float(getattr(np, stat)(arrays[key])) for key in ("me", "pe") for stat in ("mean", "std")}})


def _shared_or_computed(config, task, model, tokenizer, by_id, pool_ids, cache_root, dtype, embeddings=False,
                        processes=SINGLE):
    pool_examples = [by_id[int(i)] for i in pool_ids]
    shared = None
    if cache_root is not None:
        shared = cache_root / "base-scores" / f"{base_cache_key(config, pool_examples, dtype)}.npz"
        processes.on_main(shared.parent.mkdir, parents=True, exist_ok=True)
    lock = (lambda: FileLock(f"{shared}.lock")) if shared is not None else contextlib.nullcontext
    with processes.main_holds(lock):
        arrays = processes.on_main(read_base_scores, shared, pool_ids, embeddings) if shared is not None else None
        source = "shared cache" if arrays is not None else "computed"
        if arrays is None:
            answered = all(ex.gold is not None for ex in pool_examples)
            scores = score_examples(model, tokenizer, task, pool_examples,
                                    run_scoring_options(config, gold_pe=answered, embeddings=embeddings,
                                                        processes=processes),
                                    desc="score pool (base model)")
            arrays = {"ids": pool_ids, **one_pass(measures(scores, Needs(embeddings=embeddings)))}
            if shared is not None:
                processes.on_main(write_npz_atomic, shared, **arrays)
    return arrays, source




class LazyBaseScores:
    """The frozen base model's scores of the examples rounds ask about: computed when first asked,
    kept by id in the run directory (`base-scores/`), never for the whole pool unless asked for it.

    A large pool (`--large-pool`) has no whole-pool pass before round 1: a round's strategy asks
    for the base scores of its candidates (with `--pool-subsample`, a few thousand of a million)
    and only those not known yet are scored. Each asking is one job (named by its round and the
    ids asked for) of saved chunks (al/chunks.py), so a kill during it resumes from its last
    finished chunk. Which examples a job scores depends only on the jobs of earlier rounds, so a
    resumed run scores each example in the same company, to the same bits, as an
    uninterrupted one.
    """

    def __init__(self, folder: Path, scorer, chunk: int, processes: Processes = SINGLE):
        # scorer(embeddings) -> ChunkScorer: the base model's measures (and hidden states) of some ids
        self.folder, self._scorer, self.chunk, self.processes = Path(folder), scorer, chunk, processes
        self.parts: dict[str, dict[str, np.ndarray]] = processes.on_main(read_store, self.folder)
        self._embeddings: dict[str, np.ndarray] = {}
        self._asked: set[str] = set()

    def for_round(self, round_index: int) -> "RoundBaseScores":
        return RoundBaseScores(self, round_index)

    def at(self, ids: np.ndarray, round_index: int, embeddings: bool = False) -> dict[str, np.ndarray]:
        """"ids" and each measure [n] of `ids` (and their hidden states, when asked), scoring what is not known."""
        ids = np.asarray(ids, dtype=np.int64)
        job = job_name(f"round-{round_index:02d}", ids, embeddings=embeddings)
        if job not in self._asked:
            known = self._merged(before_round=round_index)["ids"]
            new = ids if embeddings else ids[~np.isin(ids, known)]
            if len(new):
                computed = score_in_chunks(new, self.chunk, self.folder / job, self._scorer(embeddings),
                                           self.processes, label=f"round {round_index}: base model scores",
                                           keep_one=True)
                if embeddings:
                    self._embeddings[job] = computed.pop("embeddings")
                self.parts[job] = {"ids": new, **computed}
            self._asked.add(job)
        merged = self._merged()
        rows = np.searchsorted(merged["ids"], ids)
        if len(ids) and (rows.max() >= len(merged["ids"]) or not np.array_equal(merged["ids"][rows], ids)):
            raise RuntimeError("lazy base scores lack some of the ids asked for")
        scores = {"ids": ids, **{key: value[rows] for key, value in merged.items() if key != "ids"}}
        if embeddings:
            scores["embeddings"] = self._embeddings[job]
        return scores

    def _merged(self, before_round: int | None = None) -> dict[str, np.ndarray]:
        """The jobs' scores (of the rounds before `before_round`, when given) by id, sorted; an id two
        jobs hold keeps the one of the earlier round (of one round: the job first by name)."""
        order = sorted(self.parts, key=lambda name: (_round_of(name), name))
        parts = [self.parts[name] for name in order if before_round is None or _round_of(name) < before_round]
        if not parts:
            return {"ids": np.zeros(0, dtype=np.int64)}
        ids, first = np.unique(np.concatenate([part["ids"] for part in parts]), return_index=True)
        return {"ids": ids, **{key: np.concatenate([part[key] for part in parts])[first]
                               for key in parts[0] if key != "ids"}}


class RoundBaseScores:
    """One round's view of the lazy base scores (strategies/base.py `base_at` asks it `at(ids)`)."""

    def __init__(self, store: LazyBaseScores, round_index: int):
        self.store, self.round_index = store, round_index

    def at(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        return self.store.at(ids, self.round_index)


def _round_of(job: str) -> int:
    return int(job.split("-")[1])


def read_store(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """The lazy base scores a run has kept: per job, the ids and measures of its finished chunks."""
    parts = {}
    for job in sorted(p for p in Path(folder).glob("round-*") if p.is_dir()):
        chunks = []
        for path in sorted(job.glob("chunk-*.npz")):
            try:
                arrays = load_npz(path)
            except StarError as error:
                _log(f"{error}: dropped, those base scores are computed again when asked for")
                continue
            chunks.append({key: arrays[key] for key in ("ids", *PASS_MEASURES) if key in arrays})
        if chunks:
            parts[job.name] = {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}
    return parts
