"""The active-learning loop (docs/method.md section 4, Algorithm 1): it wires the pieces and writes state.

Round 0 labels a random warm start and fine-tunes on it; every later round lets the
strategy query the unlabeled pool (scored by the previous round's model), has the
oracle label the batch into the run's label ledger, fine-tunes a fresh adapter from the
frozen base on every label in the ledger, and evaluates, until a stopping criterion
fires. Each round ends with one atomic line in rounds.jsonl; all randomness is derived
from (seed, round), so a killed run resumed from its directory makes exactly the
selections of an uninterrupted one. What is strategy-, measure- or method-specific
lives behind the strategy, the oracle and the adapter method.

Under a launcher (accelerate launch, torchrun) every process runs this same loop: model
work is shared out (engine.distributed), and every write to the run directory, the
oracle and the tracker happen on the main process, whose result every process takes.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from star_al.al.base_scores import LazyBaseScores, base_pool_scores
from star_al.al.chunks import chunk_seed, job_name, score_in_chunks
from star_al.al.cold_start import warm_start_needs, warm_start_query
from star_al.al.run_config import checked
from star_al.al.run_dir import RunDir
from star_al.al.streams import QUERY_STREAM, choose_pool, monitor_ids, rng_for
from star_al.config import RunConfig
from star_al.data.tasks import fingerprint
from star_al.engine.distributed import Execution
from star_al.engine.evaluation import evaluate, write_predictions
from star_al.engine.gradients import check_gradient_embedding
from star_al.engine.scoring import measures, one_pass, one_token_answers, run_scoring_options, score_examples
from star_al.engine.training import train_round
from star_al.errors import StarError
from star_al.files import write_json_atomic, write_npz_atomic
from star_al.log import eta, log, run_log
from star_al.labeling.ledger import LabelLedger
from star_al.labeling.oracle import Batch, GoldOracle, Oracle
from star_al.labeling.people import AwaitingLabels  # noqa: F401 (raised through here)
from star_al.models.adapters import ADAPTERS
from star_al.rounds import RoundRecord, pack_correct
from star_al.stopping import AnyOf, cohen_kappa, needs_monitor, parse_stop, run_limits
from star_al.strategies.base import Needs, Query, ScoreView, base_at
from star_al.strategies.registry import b_decay_of, recipe_of
from star_al.trackers import loss_summary


def _log(message: str) -> None:
    log.info(message)


class ActiveLearningRun:
    """One run: a config, its data, a backbone, an oracle and a run directory."""

    def __init__(self, config: RunConfig, task, pool, test, backbone, run_dir: RunDir,
                 oracle: Oracle | None = None, cache_root: Path | None = None, partial: bool = False,
                 execution: Execution = Execution(), tracker=None, on_round=None):
        # The data is part of the run's identity: resuming on edited or other data is refused.
        self.config = config = checked(replace(config, data_hash=fingerprint(pool, test)))
        self.task, self.test, self.backbone, self.run_dir = task, test, backbone, run_dir
        self.oracle = oracle or GoldOracle(config.oracle_noise, config.seed, task.labels or ())
        self.cache_root, self.partial = cache_root, partial
        self.execution, self.processes = execution, execution.processes
        self.tracker = tracker  # a trackers.Tracker (--report-to), or None
        self.on_round = on_round  # called with each round's record once it is committed (a sweep's clock)
        # A pool read from disk (data/disk_pool.py) is its own lookup by id; a list becomes a dict.
        self.by_id = pool if hasattr(pool, "take") else {ex.id: ex for ex in pool}
        # A large pool's base scores are computed for what rounds ask about, not the whole pool.
        self.lazy_base = len(pool) >= config.large_pool
        self.pool_answered = getattr(pool, "all_answered", None)
        if self.pool_answered is None and self.lazy_base:
            self.pool_answered = all(ex.gold is not None for ex in pool)
        self.strategy = recipe_of(config).build(config)
        self.stop = run_limits(config)
        self.early_stop = AnyOf(parse_stop(config.stop))  # --stop's criteria alone, to mark a run they end
        self.adapter = ADAPTERS.get(config.finetune)  # a LoRA adapter, or every weight (full)
        self.ledger = LabelLedger(run_dir.labels_path, config.annotators, config.resolve)
        if config.oracle_noise and task.answer_type not in ("label", "choice"):
            raise StarError(f"--oracle-noise needs answers to err to: a task with labels or per-example choices, "
                            f"not {task.name} ({task.answer_type} answers)")
        if not self.strategy.label_free and not self.oracle.simulated:
            raise StarError(f"strategy {config.strategy!r} reads gold answers (pe_mode 'gold'), which only a "
                            "simulation has; use pe_mode 'label-free' when people label")
        if (self.strategy.needs.answer_probs or self.strategy.needs.gradients) and task.answer_type != "label":
            raise StarError(f"strategy {config.strategy!r} needs a task with a fixed set of answers, not {task.name}")
        if self.strategy.needs.gradients:
            check_gradient_embedding(backbone.model, self.adapter, config.lora.target_modules)
            if pool and not one_token_answers(backbone.tokenizer, task, pool[0].prompt):
                raise StarError(f"strategy {config.strategy!r} needs answers of one token each; "
                                f"{task.name}'s labels take more under this tokenizer")
        self.pool_ids = choose_pool(config, pool)
        self.adapter.check_targets(backbone.model, config.lora)
        self.model = backbone.model  # the frozen base, or the base wrapped in the current adapter
        self.rounds: list[RoundRecord] = []
        self.base = None  # the frozen base model's scores over the pool, when anything reads them
        self._opened = False

    # -- the loop: Algorithm 1 -------------------------------------------------------------
    def run(self) -> list[RoundRecord]:
        with self.session():
            try:
                while not self.finished:
                    self.next_round()
            finally:
                self._release_adapter()
        return self.rounds

    @contextmanager
    def session(self):
        """Hold the run directory (its lock and log) and have its state open: the claimed config,
        the finished rounds, the base scores and the last round's model. The state is opened
        once and kept; a step-wise user (Learner) holds one session a step."""
        main_holds = self.processes.main_holds
        with main_holds(self.run_dir.locked), main_holds(lambda: run_log(self.run_dir.path)):
            try:
                self._open()
                yield self
            finally:
                if self.tracker is not None:
                    self.tracker.end()

    def _open(self) -> None:
        if self._opened:
            return
        self.processes.on_main(self.run_dir.claim, self.config)
        if self.tracker is not None:
            self.tracker.start(self.run_dir.path, self.config.to_dict())
        rounds = self.run_dir.read_rounds()
        self._check_state(rounds)
        finished = self.stop.should_stop(rounds) is not None
        warm_needs = warm_start_needs(self.config)
        warm_reads_base = warm_needs.any or warm_needs.embeddings
        if self.lazy_base and (self.strategy.needs.base or warm_reads_base) and not finished:
            self.base = LazyBaseScores(self.run_dir.base_store_path, self._base_scorer, self.config.score_chunk,
                                       self.processes)
        elif not self.lazy_base and (self.strategy.needs.any or warm_reads_base) and not finished:
            self.base = base_pool_scores(self.config, self.task, self.model, self.backbone.tokenizer, self.by_id,
                                         self.pool_ids, self.run_dir, self.cache_root,
                                         self.backbone.placement.dtype,
                                         embeddings=warm_needs.embeddings and not rounds, processes=self.processes)
        if rounds and not finished:
            self._restore_model(rounds)
        self.rounds, self._opened = rounds, True

    @property
    def finished(self) -> bool:
        """Whether the run's rounds (or a stopping criterion) have ended it (in a session)."""
        return self.stop.should_stop(self.rounds) is not None

    def next_round(self) -> RoundRecord:
        """Query (or take the waiting batch), label, train, evaluate and commit one round (in a session)."""
        record = self.run_round(len(self.rounds), self.rounds, self.base)
        self.rounds.append(record)
        self._log_round(record)
        if self.on_round is not None:
            self.on_round(record)
        return record

    def next_batch_size(self) -> int:
        """How many examples the next round queries: the warm start, then the query size."""
        return self.config.warm_start if not self.rounds else self.config.query_size

    def query_next(self) -> Batch:
        """The next round's batch as people see it (ids, examples, the model's answers), without
        labelling or training: the waiting batch if one is (in a session)."""
        round_index = len(self.rounds)
        query = self._query(round_index, self.rounds, self.base, {})
        return self._batch(query, query.ids, round_index)

    def _log_round(self, record: RoundRecord) -> None:
        """One line a round: labels, accuracy (or the stopping set's), times, and the time left."""
        measured = (f"accuracy {100 * record.accuracy:.2f}%" if record.accuracy is not None else
                    f"pool uncertainty {record.pool_uncertainty:.3f}, agreement "
                    + ("-" if record.agreement is None else f"{100 * record.agreement:.1f}%"))
        left = self.config.n_rounds - record.round
        # Rounds grow with the labeled set: the last round's time is a floor for each one left.
        estimate = f"; about {eta(left * record.timings['total'])} for the {left} left" if left > 0 else ""
        _log(f"round {record.round}/{self.config.n_rounds}: {record.n_labeled} labeled, {measured} "
             f"({', '.join(f'{k} {v:.0f}s' for k, v in record.timings.items())}){estimate}")

    def run_round(self, round_index: int, rounds: list[RoundRecord], base) -> RoundRecord:
        started = time.perf_counter()
        timings: dict[str, float] = {}
        query = self._query(round_index, rounds, base, timings)
        answered = self._label(query, round_index)
        selected = [i for i in query.ids if i in answered]
        labeled = self._labeled_set([(record.round, record.selected_ids) for record in rounds]
                                    + [(round_index, selected)])
        tick = time.perf_counter()
        train_result = self._fine_tune(round_index, labeled)
        timings["train"] = time.perf_counter() - tick
        tick = time.perf_counter()
        summary = self._measure(round_index, rounds)
        timings["eval"] = time.perf_counter() - tick
        timings["total"] = time.perf_counter() - started
        self.processes.on_main(self._save_adapter, round_index)
        scores = query.scores and [s for i, s in zip(query.ids, query.scores) if i in answered]
        record = RoundRecord(round=round_index, n_labeled=len(labeled), selected_ids=selected, selected_scores=scores,
                             lambda_=query.info.get("lambda"), **summary, train_steps=train_result.steps,
                             train_loss=loss_summary(train_result.losses), timings=timings,
                             device=self.backbone.placement.device, dtype=self.backbone.placement.dtype_name,
                             # a partly labeled batch (--partial): the rest stays queued for the next round
                             queued_ids=[i for i in query.ids if i not in answered])
        # The main process's record (its timings) is the round's, for every process.
        return self.processes.on_main(self._commit_round, record, rounds, train_result.losses)

    def _commit_round(self, record: RoundRecord, rounds: list[RoundRecord], losses: list[float]) -> RoundRecord:
        """Mark an early stop, append the round, promote its adapter, and report it to the tracker."""
        reason = self.early_stop.should_stop(rounds + [record])
        if reason is not None:
            record.stopped = reason
            _log(f"stopped after round {record.round}: {reason}")
        self.run_dir.append_round(record)
        self.run_dir.clear_pending()
        self._promote_adapter()
        if self.tracker is not None:
            first_step = sum(r.train_steps or 0 for r in rounds)
            for step, loss in enumerate(losses, first_step):
                self.tracker.log({"train/loss": loss}, step=step)
            measured = {"accuracy": record.accuracy, "ece": record.ece, "brier": record.brier,
                        "pool_uncertainty": record.pool_uncertainty, "lambda": record.lambda_}
            self.tracker.log({"round/n_labeled": record.n_labeled, "round/index": record.round,
                              **{f"round/{k}": v for k, v in measured.items() if isinstance(v, (int, float))}},
                             step=first_step + len(losses))
        return record

    # -- query ------------------------------------------------------------------------------
    def _query(self, round_index, rounds, base, timings) -> Query:
        labeled_ids = [i for record in rounds for i in record.selected_ids]
        queued = rounds[-1].queued_ids if rounds else []
        pending = self.run_dir.read_pending()
        if pending is not None and pending["round"] == round_index:
            self._check_pending(pending, labeled_ids, len(queued))
            return Query(pending["ids"], pending["scores"], info={"lambda": pending.get("lambda")})
        if round_index == 0:
            if isinstance(base, LazyBaseScores) and self.config.warm_start_by != "random":
                # The warm start ranks the whole pool by the base model: scored now, in saved chunks.
                base = base.at(self.pool_ids, 0, embeddings=warm_start_needs(self.config).embeddings)
            query, view = warm_start_query(self.config, self.pool_ids, base)
            if view is not None:
                self.processes.on_main(self._save_scores, 0, view, query, base)
            self.processes.on_main(self.run_dir.write_pending, {"round": 0, "ids": query.ids,
                                                                "scores": query.scores, "lambda": None})
            return query
        taken = set(labeled_ids) | set(queued)
        unlabeled = self.pool_ids[~np.isin(self.pool_ids, np.array(sorted(taken), dtype=np.int64))]
        if isinstance(base, LazyBaseScores):  # computed for this round's candidates when the strategy reads it
            base = base.for_round(round_index) if self.strategy.needs.base else None
        seed = self.config.seed
        view = ScoreView(unlabeled, round_index - 1, self.strategy.needs, partial(self._score_pool, round_index),
                         base, lambda purpose: rng_for(seed, purpose, round_index), np.array(labeled_ids))
        tick = time.perf_counter()
        query = self.strategy.select(view, self.config.query_size, rng_for(seed, QUERY_STREAM, round_index))
        if view.scored is not None:
            timings["score"] = time.perf_counter() - tick
            self.processes.on_main(self._save_scores, round_index, view, query, base)
        if queued:
            query = Query(queued + query.ids, query.scores and [None] * len(queued) + query.scores,
                          query.candidate_scores, query.info)
        self.processes.on_main(self.run_dir.write_pending, {"round": round_index, "ids": query.ids,
                                                            "scores": query.scores, "lambda": query.info.get("lambda")})
        # The round's scoring chunks served their purpose: the batch is decided and written.
        self.processes.on_main(shutil.rmtree, self.run_dir.scoring_path(round_index), ignore_errors=True)
        return query

    def _score_pool(self, round_index: int, ids: np.ndarray, needs: Needs) -> dict[str, np.ndarray]:
        """Every measure of the current model over `ids`, [passes, n] each (passes > 1: MC dropout),
        scored in chunks of --score-chunk, each saved as it finishes (al/chunks.py)."""
        config = self.config
        options = run_scoring_options(config, needs.passes, gold_pe="pe_gold" in needs.tuned,
                                      embeddings=needs.embeddings, processes=self.processes,
                                      gradients=needs.gradients)

        def score(chunk_ids: np.ndarray, chunk: int | None) -> dict[str, np.ndarray]:
            if chunk is not None:
                torch.manual_seed(chunk_seed(config.seed, round_index, chunk))
            scores = score_examples(self.model, self.backbone.tokenizer, self.task, self._examples(chunk_ids),
                                    options, desc=f"round {round_index}: score pool")
            return measures(scores, needs)

        what = {key: sorted(value) if isinstance(value, frozenset) else value for key, value in asdict(needs).items()}
        folder = self.run_dir.scoring_path(round_index) / job_name(f"tuned-k{needs.passes}", ids, needs=what)
        return score_in_chunks(ids, config.score_chunk, folder, score, self.processes,
                               label=f"round {round_index}: score pool")

    def _base_scorer(self, embeddings: bool):
        """The frozen base model's measures (and hidden states) of some pool ids: a large pool's lazy base
        scores (al/base_scores.py LazyBaseScores) are computed with it, at any round."""
        options = run_scoring_options(self.config, gold_pe=self.pool_answered, embeddings=embeddings,
                                      processes=self.processes)

        def score(ids: np.ndarray, chunk: int | None) -> dict[str, np.ndarray]:
            with self._frozen_base() as model:
                scores = score_examples(model, self.backbone.tokenizer, self.task, self._examples(ids), options,
                                        desc="base model scores")
            return one_pass(measures(scores, Needs(embeddings=embeddings)))

        return score

    @contextmanager
    def _frozen_base(self):
        """The frozen base model, with the round's adapter switched off where one is attached to it
        (PEFT injects its layers into the base's modules; full fine-tuning trains a copy)."""
        base = self.backbone.model
        if self.model is base or not hasattr(self.model, "disable_adapter"):
            yield base
            return
        with self.model.disable_adapter():
            yield base

    def _examples(self, ids) -> list:
        """The pool examples of `ids`, in order (a pool on disk reads them in one go)."""
        if hasattr(self.by_id, "take"):
            return self.by_id.take(ids)
        return [self.by_id[i] for i in ids]

    def _save_scores(self, round_index: int, view: ScoreView, query: Query, base) -> None:
        """The round's scores for analysis: every pass of the tuned measures, the base's, the ranked one,
        and what a diversity strategy records per candidate (its clusters)."""
        ids = view.scored_ids
        arrays = {"ids": ids, **view.scored}
        if base is not None:
            at = base_at(base, ids)
            arrays.update({f"base_{key}": at[key] for key in ("me", "pe", "pe_gold") if key in at})
        arrays.update({key: value for key, value in query.info.items() if isinstance(value, np.ndarray)})
        write_npz_atomic(self.run_dir.scores_path(round_index), combined=query.candidate_scores, **arrays)

    def _check_pending(self, pending: dict, labeled_ids: list[int], n_queued: int = 0) -> None:
        """A queried batch read back must be new, distinct pool ids, one query's worth."""
        ids, path = pending["ids"], self.run_dir.pending_path
        problems = []
        if len(set(ids)) != len(ids):
            problems.append("an id twice")
        if set(ids) & set(labeled_ids):
            problems.append(f"ids already labeled ({sorted(set(ids) & set(labeled_ids))[:5]})")
        unknown = sorted(set(int(i) for i in np.asarray(ids, dtype=np.int64)[~np.isin(ids, self.pool_ids)]))
        if unknown:
            problems.append(f"ids outside the pool ({unknown[:5]})")
        size = (self.config.warm_start if pending["round"] == 0 else self.config.query_size) + n_queued
        if len(ids) != size:
            problems.append(f"{len(ids)} ids where this batch has {size}")
        if problems:
            raise StarError(f"{path}: {'; '.join(problems)}; delete it and "
                            f"`star resume {shlex.quote(str(self.run_dir.path))}` queries that round again")

    # -- label: the ledger is the only source of answers for training ------------------------
    def _label(self, query: Query, round_index: int) -> set[int]:
        """Ask the oracle for the queried ids the ledger has no label for yet, and record its answers.

        Returns the ids that have a label (with several annotators: a resolved one). People
        may have labeled only part of the batch: the run waits for the rest, unless asked to
        go on with what is there (--partial). Examples whose annotators tie wait for nobody:
        once the rest is labelled they stay queued, for one more annotator in the next batch.
        """
        resolution = self.ledger.resolution(round_index)
        missing = [i for i in query.ids if i not in resolution.labels]
        waiting = [i for i in missing if i not in resolution.ties]
        if missing and not (len(missing) < len(query.ids) and (self.partial or not waiting)):
            batch = self._batch(query, missing, round_index)
            self.processes.on_main(self._ask_oracle, batch, missing, round_index)
            resolution = self.ledger.resolution(round_index)
        return {i for i in query.ids if i in resolution.labels}

    def _ask_oracle(self, batch: Batch, missing: list[int], round_index: int) -> None:
        labels = self.oracle.label(batch)
        if sorted(label.id for label in labels) != sorted(missing):
            raise StarError(f"the {self.oracle.source} oracle answered for other ids than were asked")
        self.ledger.append(labels, round_index, self.oracle.source)

    def _batch(self, query: Query, ids: list[int], round_index: int) -> Batch:
        """The batch for the oracle; people also see the current model's answer and uncertainty."""
        examples = [self.by_id[i] for i in ids]
        if self.oracle.simulated:
            return Batch(round_index, examples)
        position = {i: n for n, i in enumerate(query.ids)}
        scores = score_examples(self.model, self.backbone.tokenizer, self.task, examples,
                                run_scoring_options(self.config, processes=self.processes),
                                desc=f"round {round_index}: the model's answers")
        return Batch(round_index, examples, [query.scores[position[i]] for i in ids] if query.scores else None,
                     list(scores.predictions), [float(u) for u in scores.me[0]])

    def _labeled_set(self, batches: list[tuple[int, list[int]]]):
        """The examples of each (round, ids) batch with the answer their labels resolved to by the end
        of that round: a label, once trained on, stays what it was."""
        entries, labeled, lacking = self.ledger.read(), [], []
        for round_index, ids in batches:
            resolved = self.ledger.resolution(round_index, entries).labels
            lacking += [i for i in ids if i not in resolved]
            labeled += [self.task.with_label(self.by_id[i], resolved[i]["answer"], resolved[i]["target"])
                        for i in ids if i in resolved]
        if lacking:
            run = shlex.quote(str(self.run_dir.path))
            raise StarError(f"{self.ledger.path} has no label for ids {lacking[:5]}; label them "
                            f"(star label {run} FILE), then star resume {run}")
        return labeled

    # -- measure -------------------------------------------------------------------------------
    def _measure(self, round_index: int, rounds: list[RoundRecord]) -> dict:
        """Accuracy and calibration on the test set; and, without one (--no-eval) or for a stopping
        rule that needs it, the stopping set: a fixed sample of the pool, its mean uncertainty and
        how its predictions agree with the last round's (fraction and Cohen's kappa). Returns
        RoundRecord fields."""
        config, path = self.config, self.run_dir.predictions_path(round_index)
        result = {}
        if config.evaluate:
            scores, summary = evaluate(self.model, self.backbone.tokenizer, self.task, self.test,
                                       config.score_batch_size, desc=f"round {round_index}: evaluate",
                                       processes=self.processes)
            self.processes.on_main(write_predictions, scores, path)
            result = {"accuracy": summary["accuracy"], "ece": summary["ece"], "brier": summary["brier"],
                      "wrong_confidence": summary["wrong_confidence"], "n_test": summary["n"],
                      "test_correct": pack_correct(scores.ids, scores.correct)}
        if config.evaluate and not needs_monitor(config):
            return result
        ids = monitor_ids(config, self.pool_ids)
        scores = score_examples(self.model, self.backbone.tokenizer, self.task, [self.by_id[i] for i in ids],
                                run_scoring_options(config, processes=self.processes),
                                desc=f"round {round_index}: score the stopping set")
        predictions = list(scores.predictions)
        previous = rounds[-1].monitor_predictions if rounds else None
        agreement = float(np.mean([a == b for a, b in zip(previous, predictions)])) if previous else None
        uncertainty = float(scores.me[0].mean())
        if not config.evaluate:
            self.processes.on_main(write_predictions, scores, path)
            result = {"accuracy": None, "pool_uncertainty": uncertainty, "agreement": agreement, "n_monitor": len(ids)}
        return {**result, "monitor_uncertainty": uncertainty, "monitor_predictions": predictions,
                "kappa": cohen_kappa(previous, predictions) if previous else None}

    # -- train, adapters ----------------------------------------------------------------------
    def _fine_tune(self, round_index, labeled):
        """A fresh adapter on the frozen base, trained on the whole labeled set (no carry-over)."""
        base = self.backbone.model
        if self.model is not base:
            self.adapter.detach(self.model)
        train_seed = self.config.seed if self.config.train_seed is None else self.config.train_seed
        seed = train_seed * 1000 + round_index
        self.model = self.adapter.attach(base, self.config.lora, seed)
        return train_round(self.adapter, self.model, base, self.backbone.tokenizer, self.task, labeled,
                           self.config.train, b_decay_of(self.config), seed,
                           desc=f"round {round_index}: train on {len(labeled)}", execution=self.execution)

    def _release_adapter(self):
        """Take this run's adapter off the backbone (saved already, one per round).

        PEFT injects an adapter into the base model's modules in place: left there, the next
        run on the same backbone (a sweep) would score its "base" model through it.
        """
        if self.model is not self.backbone.model:
            self.adapter.detach(self.model)
            self.model = self.backbone.model

    def _save_adapter(self, round_index):
        staging = self.run_dir.path / "adapter.next"
        shutil.rmtree(staging, ignore_errors=True)
        if self.adapter.save(self.model, staging, self.backbone.hub_id):
            write_json_atomic(staging / "star_round.json", {"round": round_index})

    def _promote_adapter(self):
        staging, final = self.run_dir.path / "adapter.next", self.run_dir.adapter_path
        if staging.is_dir():
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)

    def _restore_model(self, rounds):
        """Resume: put back the model the last finished round trained.

        Labels the ledger lacks (a run directory from before the ledger existed) are asked of
        the oracle again with their rounds. A missing or damaged adapter (only config.json and
        rounds.jsonl are committed) is trained again: same labels, same seed, same weights.
        """
        for record in rounds:
            self._label(Query(record.selected_ids, None), record.round)
        round_index = len(rounds) - 1
        for candidate in (self.run_dir.path / "adapter.next", self.run_dir.adapter_path):
            if _adapter_round(candidate) != round_index:
                continue
            try:
                self.model = self.adapter.load(self.backbone.model, candidate)
            except StarError as error:
                _log(f"{error}: training it again")
                break
            if candidate.name == "adapter.next":
                self.processes.on_main(self._promote_adapter)
            return
        _log(f"no adapter of round {round_index} on disk: training it again from its labeled set")
        self._fine_tune(round_index, self._labeled_set([(r.round, r.selected_ids) for r in rounds]))

    def _check_state(self, rounds: list[RoundRecord]) -> None:
        """The finished rounds must fit this pool and this dtype, and no later state may outrun them."""
        changed = dtype_change(rounds, self.backbone.placement, self.run_dir.rounds_path)
        if changed:
            _log(changed)
        for record in rounds:
            selected = np.asarray(record.selected_ids, dtype=np.int64)
            outside = [int(i) for i in selected[~np.isin(selected, self.pool_ids)]]
            if outside:
                raise StarError(f"{self.run_dir.rounds_path}: round {record.round} labeled ids outside "
                                f"this run's pool ({outside[:5]}); restore the file from a copy")
        adapter_round = _adapter_round(self.run_dir.adapter_path)
        if adapter_round is not None and adapter_round >= len(rounds):
            raise StarError(f"{self.run_dir.rounds_path} holds {len(rounds)} rounds but the saved adapter "
                            f"is round {adapter_round}'s: rounds were lost (truncated file?); "
                            "restore it from a copy, or start the run again in another directory")


def dtype_change(rounds: list[RoundRecord], placement, where) -> str | None:
    """Rounds that ran in one dtype continue in it: another dtype trains and scores differently, so
    the run would not end where an uninterrupted one does. A machine's own choice of another dtype
    (a resume on a CPU with fast bf16, say) is refused; one asked for is said, then taken."""
    ran = sorted({record.dtype for record in rounds if record.dtype is not None})
    now = placement.dtype_name
    if not ran or ran == [now]:
        return None
    if placement.automatic:
        raise StarError(f"{where}: its rounds ran in {', '.join(ran)} but this machine would take {now} "
                        f"({placement.reason}); pass --dtype {ran[-1]} to continue it as it ran, "
                        f"or --dtype {now} to change it knowingly")
    return f"rounds so far ran in {', '.join(ran)}; this resume runs in {now}, as asked"


def _adapter_round(adapter_dir: Path) -> int | None:
    """The round a saved adapter belongs to (its star_round.json), None when missing or damaged."""
    try:
        value = json.loads((Path(adapter_dir) / "star_round.json").read_text())["round"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
