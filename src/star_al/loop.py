"""The active-learning loop (METHOD.md Algorithm 1): it wires the pieces and writes state.

Round 0 labels a random warm start and fine-tunes on it; every later round scores the
unlabeled pool with the previous round's model, queries, labels, fine-tunes a fresh
adapter from the frozen base on the whole labeled set, and evaluates. Each round ends
with one atomic line in rounds.jsonl; all randomness is derived from (seed, round), so
a killed run resumed from its directory makes exactly the selections of an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from star_al.acquisition import Query, lambda_at, make_strategy
from star_al.config import RunConfig
from star_al.errors import StarError
from star_al.evaluation import evaluate, write_predictions
from star_al.fast_lora import use_fast_lora
from star_al.run_state import RunDir, load_npz, write_json_atomic, write_npz_atomic
from star_al.scoring import ScoringOptions, Scores, score_examples
from star_al.tasks import fingerprint
from star_al.training import (adapter_to_base_dtype, attach_fresh_adapter, check_target_modules, detach_adapter,
                              full_copy, train_adapter, train_full)


class AwaitingLabels(StarError):
    """The queried batch went out to people; the run resumes once their labels are back."""


class GoldOracle:
    """Simulation: the dataset's gold answer labels every queried example."""

    simulated = True

    def label(self, examples, round_index: int, run_dir: RunDir):
        return list(examples)


def rng_for(seed: int, *stream: int) -> np.random.Generator:
    """An independent, reproducible random stream per (seed, purpose, round)."""
    return np.random.default_rng([seed, *stream])


POOL_STREAM, WARM_STREAM, QUERY_STREAM, SUBSAMPLE_STREAM = 1, 2, 3, 4


def choose_pool(config: RunConfig, pool) -> np.ndarray:
    """The ids the run may query: all of train, or a fixed random subset of `pool_size`."""
    ids = np.array(sorted(ex.id for ex in pool))
    if config.pool_size is not None and config.pool_size < len(ids):
        ids = np.sort(rng_for(config.seed, POOL_STREAM).choice(ids, config.pool_size, replace=False))
    if config.budget > len(ids):
        raise StarError(f"label budget {config.budget} (warm start {config.warm_start} + "
                        f"{config.n_rounds} x {config.query_size}) is larger than the pool of {len(ids)} examples")
    return ids


def measure_scores(scores: Scores, measure: str, pe_mode: str) -> np.ndarray:
    """The [passes, n] uncertainty a strategy ranks by."""
    if measure == "me":
        return scores.me
    if pe_mode == "gold":
        if scores.pe_gold is None:
            raise ValueError("gold PE was not computed")
        return scores.pe_gold
    return scores.pe


# 2: entries written before a run released its adapter may hold tuned scores.
# 3: keyed by the pool examples' content and the weights' dtype, not the data folder's path.
BASE_SCORES_VERSION = 3
BASE_SCORE_KEYS = ("ids", "me", "pe", "pe_gold")


def base_cache_key(config: RunConfig, pool_examples, dtype) -> str:
    """Base scores depend on the model and its dtype, the pool's content and how prompts are cut."""
    key = json.dumps([BASE_SCORES_VERSION, config.model, str(dtype), config.task, config.train.max_prompt_tokens,
                      fingerprint(pool_examples)])
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def read_base_scores(path: Path, pool_ids: np.ndarray) -> dict[str, np.ndarray] | None:
    """Base scores from disk if the file is whole and covers exactly this pool; else None (and why)."""
    if not path.is_file():
        return None
    try:
        arrays = load_npz(path)
    except StarError as error:
        _log(f"{error}: dropped, computing the base scores again")
        return None
    whole = all(key in arrays and arrays[key].shape == pool_ids.shape for key in BASE_SCORE_KEYS)
    if not whole or not np.array_equal(arrays["ids"], pool_ids) or \
            not all(np.isfinite(arrays[key]).all() for key in BASE_SCORE_KEYS[1:]):
        _log(f"{path}: not this pool's base scores: dropped, computing them again")
        return None
    return arrays


def base_pool_scores(config, task, model, tokenizer, by_id, pool_ids, run_dir: RunDir,
                     cache_root: Path | None, dtype=None) -> dict[str, np.ndarray]:
    """The frozen base model's ME/PE over the whole pool: computed once, then read from disk.

    The shared cache (one entry per model, dtype and pool content) is filled atomically
    under a lock, so two runs starting at once compute it once and a kill mid-fill
    leaves no half entry; an entry that fails its check is dropped and recomputed.
    """
    arrays = read_base_scores(run_dir.base_scores_path, pool_ids)
    if arrays is not None:
        return arrays
    pool_examples = [by_id[int(i)] for i in pool_ids]
    shared = None
    if cache_root is not None:
        shared = cache_root / "base-scores" / f"{base_cache_key(config, pool_examples, dtype)}.npz"
        shared.parent.mkdir(parents=True, exist_ok=True)
    with (FileLock(f"{shared}.lock") if shared is not None else contextlib.nullcontext()):
        arrays = read_base_scores(shared, pool_ids) if shared is not None else None
        if arrays is None:
            options = ScoringOptions(batch_size=config.score_batch_size, passes=1, gold_pe=True,
                                     max_prompt_tokens=config.train.max_prompt_tokens)
            scores = score_examples(model, tokenizer, task, pool_examples, options,
                                    desc="score pool (base model)")
            arrays = {"ids": pool_ids, "me": scores.me[0], "pe": scores.pe[0], "pe_gold": scores.pe_gold[0]}
            if shared is not None:
                write_npz_atomic(shared, **arrays)
    write_npz_atomic(run_dir.base_scores_path, **arrays)
    return arrays


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ActiveLearningRun:
    """One run: a config, its data, a backbone and a run directory."""

    def __init__(self, config: RunConfig, task, pool, test, backbone, run_dir: RunDir,
                 oracle=None, cache_root: Path | None = None):
        # The data is part of the run's identity: resuming on edited or other data is refused.
        config = replace(config, data_hash=fingerprint(pool, test))
        self.config, self.task, self.test = config, task, test
        self.backbone, self.run_dir = backbone, run_dir
        self.oracle = oracle or GoldOracle()
        self.cache_root = cache_root
        self.by_id = {ex.id: ex for ex in pool}
        self.spec = config.spec
        if self.spec.measure == "pe" and config.pe_mode == "gold" and not self.oracle.simulated:
            raise StarError("pe_mode 'gold' scores gold answers, which only a simulation has; "
                            "use pe_mode 'label-free' when people label")
        self.pool_ids = choose_pool(config, pool)
        if config.finetune == "lora":
            check_target_modules(backbone.model, config.lora)
        self.strategy = make_strategy(self.spec, config.lambda_schedule, config.n_rounds)
        self.model = backbone.model  # the frozen base, or the base wrapped in the current adapter

    # -- the loop ----------------------------------------------------------------
    def run(self) -> list[dict]:
        with self.run_dir.locked():
            return self._run()

    def _run(self) -> list[dict]:
        self.run_dir.claim(self.config)
        rounds = self.run_dir.read_rounds()
        self._check_state(rounds)
        base = None
        if self.strategy.needs_scores and len(rounds) <= self.config.n_rounds:
            base = base_pool_scores(self.config, self.task, self.model, self.backbone.tokenizer,
                                    self.by_id, self.pool_ids, self.run_dir, self.cache_root,
                                    self.backbone.placement.dtype)
        try:
            if rounds and len(rounds) <= self.config.n_rounds:
                self._load_last_adapter(len(rounds) - 1, rounds)
            for round_index in range(len(rounds), self.config.n_rounds + 1):
                record = self.run_round(round_index, rounds, base)
                rounds.append(record)
                _log(f"round {round_index}/{self.config.n_rounds}: {record['n_labeled']} labeled, "
                     f"accuracy {100 * record['accuracy']:.2f}% "
                     f"({', '.join(f'{k} {v:.0f}s' for k, v in record['timings'].items())})")
        finally:
            self._release_adapter()
        return rounds

    def _check_state(self, rounds: list[dict]) -> None:
        """The finished rounds must fit this pool, and no later state may outrun them."""
        pool = set(int(i) for i in self.pool_ids)
        for record in rounds:
            outside = [i for i in record.get("selected_ids", []) if i not in pool]
            if outside:
                raise StarError(f"{self.run_dir.rounds_path}: round {record['round']} labeled ids outside "
                                f"this run's pool ({outside[:5]}); restore the file from a copy")
        adapter_round = _adapter_round(self.run_dir.adapter_path)
        if adapter_round is not None and adapter_round >= len(rounds):
            raise StarError(f"{self.run_dir.rounds_path} holds {len(rounds)} rounds but the saved adapter "
                            f"is round {adapter_round}'s: rounds were lost (truncated file?); "
                            "restore it from a copy, or start the run again in another directory")

    def run_round(self, round_index: int, rounds: list[dict], base) -> dict:
        started = time.perf_counter()
        timings: dict[str, float] = {}
        labeled_ids = [i for record in rounds for i in record["selected_ids"]]
        query, lam = self._query(round_index, labeled_ids, base, timings)
        labeled = [self.by_id[i] for i in labeled_ids]
        labeled += self.oracle.label([self.by_id[i] for i in query.ids], round_index, self.run_dir)
        tick = time.perf_counter()
        train_result = self._fine_tune(round_index, labeled)
        timings["train"] = time.perf_counter() - tick
        tick = time.perf_counter()
        scores, summary = evaluate(self.model, self.backbone.tokenizer, self.task, self.test,
                                   self.config.score_batch_size, desc=f"round {round_index}: evaluate")
        timings["eval"] = time.perf_counter() - tick
        timings["total"] = time.perf_counter() - started
        write_predictions(scores, self.run_dir.predictions_path(round_index))
        self._save_adapter(round_index)
        record = {"round": round_index, "n_labeled": len(labeled), "selected_ids": query.ids,
                  "selected_scores": query.scores, "lambda": lam,
                  "accuracy": summary["accuracy"], "ece": summary["ece"], "brier": summary["brier"],
                  "wrong_confidence": summary["wrong_confidence"], "n_test": summary["n"],
                  "train_steps": train_result.steps, "timings": timings}
        self.run_dir.append_round(record)
        self.run_dir.clear_pending()
        self._promote_adapter()
        return record

    # -- query ---------------------------------------------------------------------
    def _query(self, round_index, labeled_ids, base, timings) -> tuple[Query, float | None]:
        config = self.config
        if round_index == 0:
            warm = rng_for(config.seed, WARM_STREAM).choice(self.pool_ids, config.warm_start, replace=False)
            return Query(sorted(int(i) for i in warm), None), None
        pending = self.run_dir.read_pending()
        if pending is not None and pending["round"] == round_index:
            self._check_pending(pending, labeled_ids)
            return Query(pending["ids"], pending["scores"]), pending.get("lambda")
        taken = set(labeled_ids)
        unlabeled = np.array([i for i in self.pool_ids if i not in taken])
        if config.pool_subsample and config.pool_subsample < len(unlabeled):  # 0 or None: off
            subsample = rng_for(config.seed, SUBSAMPLE_STREAM, round_index)
            unlabeled = np.sort(subsample.choice(unlabeled, config.pool_subsample, replace=False))
        rng = rng_for(config.seed, QUERY_STREAM, round_index)
        lam = None
        if not self.strategy.needs_scores:
            query = self.strategy.query(unlabeled, config.query_size, rng)
        else:
            tick = time.perf_counter()
            tuned, base_part, arrays = self._score_pool(round_index, unlabeled, base)
            timings["score"] = time.perf_counter() - tick
            query = self.strategy.query(unlabeled, config.query_size, rng, tuned_per_pass=tuned,
                                        base_scores=base_part, t=round_index - 1)
            if self.spec.dynamic:
                lam = lambda_at(config.lambda_schedule, round_index - 1, config.n_rounds)
            combined = self.strategy.combine(tuned, base_part, round_index - 1)
            write_npz_atomic(self.run_dir.scores_path(round_index), combined=combined, **arrays)
        self.run_dir.write_pending({"round": round_index, "ids": query.ids, "scores": query.scores,
                                    "lambda": lam})
        return query, lam

    def _check_pending(self, pending: dict, labeled_ids: list[int]) -> None:
        """A queried batch read back must be new, distinct pool ids, one query's worth."""
        ids, path = pending["ids"], self.run_dir.pending_path
        what_to_do = "delete it and `star resume` queries that round again"
        problems = []
        if len(set(ids)) != len(ids):
            problems.append("an id twice")
        if set(ids) & set(labeled_ids):
            problems.append(f"ids already labeled ({sorted(set(ids) & set(labeled_ids))[:5]})")
        unknown = sorted(set(ids) - set(int(i) for i in self.pool_ids))
        if unknown:
            problems.append(f"ids outside the pool ({unknown[:5]})")
        if len(ids) != self.config.query_size:
            problems.append(f"{len(ids)} ids where a query has {self.config.query_size}")
        if problems:
            raise StarError(f"{path}: {'; '.join(problems)}; {what_to_do}")

    def _score_pool(self, round_index, unlabeled, base):
        """Score the unlabeled pool with the current model; K passes with LoRA dropout for MC."""
        config = self.config
        passes = config.mc_passes if self.spec.mc_dropout else 1
        options = ScoringOptions(batch_size=config.score_batch_size, passes=passes,
                                 gold_pe=self.spec.measure == "pe" and config.pe_mode == "gold",
                                 max_prompt_tokens=config.train.max_prompt_tokens)
        torch.manual_seed(config.seed * 1000 + 500 + round_index)
        scores = score_examples(self.model, self.backbone.tokenizer, self.task,
                                [self.by_id[i] for i in unlabeled], options,
                                desc=f"round {round_index}: score pool")
        tuned = measure_scores(scores, self.spec.measure, config.pe_mode)
        position = {int(i): n for n, i in enumerate(base["ids"])}
        rows = np.array([position[int(i)] for i in unlabeled])
        base_key = "me" if self.spec.measure == "me" else ("pe_gold" if config.pe_mode == "gold" else "pe")
        base_part = base[base_key][rows]
        arrays = {"ids": unlabeled, "me": scores.me, "pe": scores.pe, "base_me": base["me"][rows],
                  "base_pe": base["pe"][rows], "base_pe_gold": base["pe_gold"][rows]}
        if scores.pe_gold is not None:
            arrays["pe_gold"] = scores.pe_gold
        return tuned, base_part, arrays

    # -- train, adapters -------------------------------------------------------------
    def _fine_tune(self, round_index, labeled):
        """A fresh adapter on the frozen base, trained on the whole labeled set (no carry-over)."""
        config = self.config
        base = self.backbone.model
        if self.model is not base and config.finetune == "lora":
            detach_adapter(self.model)
        self.model = base
        seed = config.seed * 1000 + round_index
        desc = f"round {round_index}: train on {len(labeled)}"
        if config.finetune == "full":
            torch.manual_seed(seed)
            self.model = full_copy(base)
            return train_full(self.model, base.dtype, self.backbone.tokenizer, self.task, labeled,
                              config.train, seed, desc=desc)
        self.model = attach_fresh_adapter(base, config.lora, seed)
        settings = replace(config.train, b_decay=config.b_decay)
        return train_adapter(self.model, self.backbone.tokenizer, self.task, labeled, settings, seed,
                             desc=desc)

    def _release_adapter(self):
        """Take this run's LoRA adapter off the backbone (saved already, one per round).

        PEFT injects an adapter into the base model's modules in place: left there, the next
        run on the same backbone (a sweep) would score its "base" model through it.
        """
        if self.config.finetune == "lora" and self.model is not self.backbone.model:
            detach_adapter(self.model)
            self.model = self.backbone.model

    def _save_adapter(self, round_index):
        if self.config.finetune == "full":
            return  # a full model per round is too big to keep; resume trains it again
        staging = self.run_dir.path / "adapter.next"
        shutil.rmtree(staging, ignore_errors=True)
        self.model.save_pretrained(staging)
        write_json_atomic(staging / "star_round.json", {"round": round_index})

    def _promote_adapter(self):
        staging, final = self.run_dir.path / "adapter.next", self.run_dir.adapter_path
        if staging.is_dir():
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)

    def _load_last_adapter(self, round_index, rounds):
        """Resume: put back the adapter the last finished round trained.

        A run directory copied without its adapter (only config.json and rounds.jsonl are
        committed) is resumed by training that round's adapter again: same labeled set,
        same seed, so the same weights.
        """
        from peft import PeftModel

        for candidate in (self.run_dir.path / "adapter.next", self.run_dir.adapter_path):
            if _adapter_round(candidate) != round_index:
                continue
            try:
                self.model = use_fast_lora(PeftModel.from_pretrained(self.backbone.model, candidate))
            except Exception as error:  # a damaged adapter is retrained, as a missing one is
                _log(f"{candidate}: damaged adapter ({type(error).__name__}: {str(error).splitlines()[0][:200]}): "
                     "training it again")
                _drop_peft_wrapper(self.backbone.model)
                break
            self.model.eval()
            adapter_to_base_dtype(self.model)
            if candidate.name == "adapter.next":
                self._promote_adapter()
            return
        _log(f"no adapter of round {round_index} on disk: training it again from its labeled set")
        labeled_ids = [i for record in rounds[:round_index + 1] for i in record["selected_ids"]]
        self._fine_tune(round_index, [self.by_id[i] for i in labeled_ids])


def _adapter_round(adapter_dir: Path) -> int | None:
    """The round a saved adapter belongs to (its star_round.json), None when missing or damaged."""
    marker = Path(adapter_dir) / "star_round.json"
    try:
        value = json.loads(marker.read_text())["round"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _drop_peft_wrapper(base) -> None:
    """Remove LoRA layers a failed adapter load may have injected into the base's modules."""
    if any("lora_" in name for name, _ in base.named_modules()):
        from peft.tuners.tuners_utils import BaseTunerLayer

        for name, module in list(base.named_modules()):
            if isinstance(module, BaseTunerLayer):
                parent = base.get_submodule(name.rpartition(".")[0]) if "." in name else base
                setattr(parent, name.rpartition(".")[2], module.get_base_layer())
