"""The run directory: the only place the loop writes, always atomically.

Layout:
    config.json            resolved RunConfig (+ n_rounds, so reports know when it is done)
    rounds.jsonl           one line per finished round: the run's whole state
    pending.json           a queried batch waiting for labels (between "query" and "label")
    scores/round-NN.npz    every round's pool scores, tuned and base parts kept apart
    base_scores.npz        the frozen base model's scores over the pool, computed once
    predictions/round-NN.jsonl   test predictions after each round's fine-tune
    adapter/               the last round's LoRA adapter (PEFT format)

The labeled set is the union of the rounds' selected ids, so nothing else needs saving
for a resume: a killed run restarts the round it was in.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from star_al.config import RunConfig, identity
from star_al.errors import StarError


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write beside the target then rename, so a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, prefix=f".{path.name}.") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_json_atomic(path: Path, value) -> None:
    write_text_atomic(path, json.dumps(value, indent=2) + "\n")


def write_npz_atomic(path: Path, **arrays) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())


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
            return RunConfig.from_dict(json.loads(self.config_path.read_text()))
        except (json.JSONDecodeError, TypeError) as error:
            raise StarError(f"{self.config_path}: unreadable run config ({error})") from error

    def claim(self, config: RunConfig) -> None:
        """Write the config into a new directory, or check an existing one has the same config."""
        wanted = json.loads(json.dumps(config.to_dict()))  # tuples read back as lists
        if self.config_path.is_file():
            existing = json.loads(self.config_path.read_text())
            differing = sorted(k for k in set(identity(wanted)) | set(identity(existing))
                               if identity(wanted).get(k) != identity(existing).get(k))
            if differing:
                raise StarError(f"run directory {self.path} holds a run with another config "
                                f"(differs in: {', '.join(differing)}); use another --out")
            return
        if self.path.exists() and any(self.path.iterdir()):
            raise StarError(f"{self.path} exists and is not a run directory; use another --out")
        write_json_atomic(self.config_path, wanted)

    # rounds ---------------------------------------------------------------
    @property
    def rounds_path(self) -> Path:
        return self.path / "rounds.jsonl"

    def read_rounds(self) -> list[dict]:
        if not self.rounds_path.is_file():
            return []
        rounds = []
        for number, line in enumerate(self.rounds_path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rounds.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise StarError(f"{self.rounds_path}:{number}: malformed JSON ({error.msg})") from error
        return rounds

    def append_round(self, record: dict) -> None:
        """Rewrite rounds.jsonl with one more line, atomically."""
        rounds = self.read_rounds() + [record]
        write_text_atomic(self.rounds_path, "".join(json.dumps(r) + "\n" for r in rounds))

    # pending query ----------------------------------------------------------
    @property
    def pending_path(self) -> Path:
        return self.path / "pending.json"

    def read_pending(self) -> dict | None:
        return json.loads(self.pending_path.read_text()) if self.pending_path.is_file() else None

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
    def adapter_path(self) -> Path:
        return self.path / "adapter"

    def is_finished(self) -> bool:
        if not self.config_path.is_file():
            return False
        return len(self.read_rounds()) >= self.read_config().n_rounds + 1


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}
