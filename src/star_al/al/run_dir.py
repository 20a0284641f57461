"""The run directory: the only place the loop writes, always atomically.

Layout:
    config.json            resolved RunConfig (+ n_rounds, so reports know when it is done)
    rounds.jsonl           one line per finished round: the run's whole state
    labels.jsonl           the label ledger: every label given, checksummed, append-only
    run.log                every message of the commands that wrote the run, with times
    pending.json           a queried batch waiting for labels (between "query" and "label")
    scores/round-NN.npz    every round's pool scores, tuned and base parts kept apart
    base_scores.npz        the frozen base model's scores over the pool, computed once
    base-scores/           a large pool's base scores, computed for the examples rounds ask about
                           (one folder of chunks per asking: al/base_scores.py LazyBaseScores)
    scoring/round-NN/      the chunks of a round's pool scoring while it runs (al/chunks.py)
    predictions/round-NN.jsonl   test predictions after each round's fine-tune
    adapter/               the last round's LoRA adapter (PEFT format)

The labeled set is the union of the rounds' selected ids, each answered in the ledger,
so nothing else needs saving for a resume: a killed run restarts the round it was in.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from star_al.config import RunConfig, identity
from star_al.errors import StarError
from star_al.files import read_json, write_json_atomic, write_text_atomic
from star_al.rounds import RoundRecord

LOCK_FILE, LOCK_OWNER_FILE = ".lock", ".lock.pid"


class RunDir:
    """Read and write one run's directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # config ---------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    def read_config(self) -> RunConfig:
        if not self.config_path.is_file():
            raise StarError(f"{self.path} is not a run directory (no config.json)")
        try:
            return RunConfig.from_dict(self._read_config_json())
        except (TypeError, AttributeError, ValueError) as error:
            raise StarError(f"{self.config_path}: unreadable run config ({error}); "
                            "restore it from a copy, or start the run again in another directory") from error

    def _read_config_json(self) -> dict:
        config = read_json(self.config_path, "restore it from a copy, or start the run again in another directory")
        if not isinstance(config, dict):
            raise StarError(f"{self.config_path}: not a run config (expected a JSON object)")
        return config

    def claim(self, config: RunConfig) -> None:
        """Write the config into a new directory, or check an existing one has the same config."""
        wanted = json.loads(json.dumps(config.to_dict()))  # tuples read back as lists
        if self.config_path.is_file():
            existing = self._read_config_json()
            ours, theirs = identity(wanted, existing), identity(existing, wanted)
            defaults = json.loads(json.dumps(RunConfig(task="", strategy="random").to_dict()))
            # A setting added since the directory was written counts as its default there
            # (also inside the lora and train groups).
            def value(config_dict, key):
                found, default = config_dict.get(key, defaults.get(key)), defaults.get(key)
                return {**default, **found} if isinstance(found, dict) and isinstance(default, dict) else found

            differing = sorted(k for k in set(ours) | set(theirs) if value(ours, k) != value(theirs, k))
            if differing == ["data_hash"]:
                raise StarError(f"run directory {self.path} was run on other data (the train or test "
                                "examples differ from the ones it started with); give it the data it "
                                "was run with, or use another --out")
            if differing:
                raise StarError(f"run directory {self.path} holds a run with another config "
                                f"(differs in: {', '.join(differing)}); use another --out")
            return
        if self.path.is_file():
            raise StarError(f"{self.path} is a file, not a run directory; use another --out")
        ours = (LOCK_FILE, LOCK_OWNER_FILE, "run.log")  # written before the claim: the lock and its log
        if self.path.exists() and any(p.name not in ours for p in self.path.iterdir()):
            raise StarError(f"{self.path} exists and is not a run directory; use another --out")
        write_json_atomic(self.config_path, wanted)

    @contextlib.contextmanager
    def locked(self):
        """Hold the directory's writer lock: a second writer is refused, naming the holder's pid."""
        from filelock import FileLock, Timeout

        if self.path.is_file():
            raise StarError(f"{self.path} is a file, not a run directory; use another --out")
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path / LOCK_FILE), timeout=0)
        owner = self.path / LOCK_OWNER_FILE
        try:
            lock.acquire()
        except Timeout:
            holder = owner.read_text().strip() if owner.is_file() else "unknown"
            raise StarError(f"{self.path} is being written by another star process (pid {holder}); "
                            "wait for it to finish, or stop it") from None
        try:
            write_text_atomic(owner, f"{os.getpid()}\n")
            yield self
        finally:
            owner.unlink(missing_ok=True)
            lock.release()

    # rounds ---------------------------------------------------------------
    @property
    def rounds_path(self) -> Path:
        return self.path / "rounds.jsonl"

    def read_rounds(self) -> list[RoundRecord]:
        """The finished rounds, in order (checked: rounds 0, 1, 2, ..., no example labeled twice)."""
        lines = self._round_lines()
        for number, line in enumerate(lines, 1):
            if "n_labeled" not in line:
                raise StarError(f"{self.rounds_path}:{number}: a round without n_labeled; "
                                "the file is damaged: restore it from a copy")
        return [RoundRecord.from_dict(line) for line in lines]

    def _round_lines(self) -> list[dict]:
        """rounds.jsonl's lines as JSON objects, checked for their sequence."""
        if not self.rounds_path.is_file():
            return []
        rounds = []
        for number, line in enumerate(self.rounds_path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rounds.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise StarError(f"{self.rounds_path}:{number}: malformed JSON ({error.msg}); "
                                    "the file is damaged: restore it from a copy") from error
        check_round_sequence(rounds, self.rounds_path)
        return rounds

    def append_round(self, record: RoundRecord) -> None:
        """Rewrite rounds.jsonl with one more line, atomically (the lines before it as they were read)."""
        rounds = self._round_lines() + [record.to_dict()]
        write_text_atomic(self.rounds_path, "".join(json.dumps(r) + "\n" for r in rounds))

    # pending query ----------------------------------------------------------
    @property
    def pending_path(self) -> Path:
        return self.path / "pending.json"

    def read_pending(self) -> dict | None:
        """The queried batch waiting for labels, checked for shape (the loop checks its ids)."""
        if not self.pending_path.is_file():
            return None
        what_to_do = "delete it and `star resume` queries that round again"
        pending = read_json(self.pending_path, what_to_do)
        ids = pending.get("ids") if isinstance(pending, dict) else None
        scores = pending.get("scores") if isinstance(pending, dict) else None
        if not (isinstance(ids, list) and isinstance(pending.get("round"), int)
                and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
                and (scores is None or (isinstance(scores, list) and len(scores) == len(ids)))):
            raise StarError(f"{self.pending_path}: not a queried batch (round, ids, scores); {what_to_do}")
        return pending

    def write_pending(self, pending: dict) -> None:
        write_json_atomic(self.pending_path, pending)

    def clear_pending(self) -> None:
        self.pending_path.unlink(missing_ok=True)

    # scores, predictions, adapter -------------------------------------------
    def scores_path(self, round_index: int) -> Path:
        return self.path / "scores" / f"round-{round_index:02d}.npz"

    def predictions_path(self, round_index: int) -> Path:
        return self.path / "predictions" / f"round-{round_index:02d}.jsonl"

    @property
    def base_scores_path(self) -> Path:
        return self.path / "base_scores.npz"

    @property
    def base_store_path(self) -> Path:
        return self.path / "base-scores"

    def scoring_path(self, round_index: int) -> Path:
        return self.path / "scoring" / f"round-{round_index:02d}"

    @property
    def adapter_path(self) -> Path:
        return self.path / "adapter"

    @property
    def labels_path(self) -> Path:
        return self.path / "labels.jsonl"

    def is_finished(self) -> bool:
        if not self.config_path.is_file():
            return False
        return run_finished(self._read_config_json(), self._round_lines())


def run_finished(config: dict, rounds: list[dict]) -> bool:
    """A run is finished once it holds round 0 and all n_rounds query rounds, or a stopping
    criterion ended it (one rule for all readers)."""
    n_rounds = config.get("n_rounds")
    stopped_early = bool(rounds) and bool(rounds[-1].get("stopped"))  # a --stop criterion fired
    return stopped_early or (isinstance(n_rounds, int) and len(rounds) >= n_rounds + 1)


def check_round_sequence(rounds: list[dict], path: Path) -> None:
    """Rounds must be 0, 1, 2, ... once each, and no example may be labeled twice.

    Two writers at once (before the lock existed) left every round twice; reading such a
    file as a curve would report a 6-point curve from 3 rounds.
    """
    seen: set[int] = set()
    for position, record in enumerate(rounds):
        if not isinstance(record, dict) or record.get("round") != position:
            found = record.get("round") if isinstance(record, dict) else record
            raise StarError(f"{path}: line {position + 1} holds round {found!r} where round {position} "
                            "belongs (rounds duplicated or missing: written by two processes at once?); "
                            "restore the file from a copy, or start the run again in another directory")
        selected = record.get("selected_ids", [])
        if not isinstance(selected, list) or seen & set(selected) or len(set(selected)) != len(selected):
            raise StarError(f"{path}: round {position} labels an example a second time; "
                            "restore the file from a copy, or start the run again in another directory")
        seen.update(selected)
