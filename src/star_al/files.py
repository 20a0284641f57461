"""Writing files so that a kill never leaves half of one, and reading them back with errors a user can act on.

Every writer here writes beside the target, syncs, and renames over it: a reader sees
the old file or the new one, never a torn one. Run directories, reports, adapters'
configs and label files are all written through these.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from star_al.errors import StarError


def _file_mode() -> int:
    """The mode a plain `open(path, "w")` would give under the current umask (0644 under 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write beside the target then rename, so a kill never leaves half a file.

    The temporary file is created 0600; it gets the umask's mode before the rename, so a
    teammate can read a shared run directory as they could any other file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, prefix=f".{path.name}.") as handle:
        try:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            os.chmod(handle.name, _file_mode())
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise
    os.replace(handle.name, path)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_json_atomic(path: Path, value) -> None:
    write_text_atomic(path, json.dumps(value, indent=2) + "\n")


def write_figure_atomic(figure, path: Path, dpi: int = 150) -> None:
    """A matplotlib figure, rendered in memory and then written atomically (format from the suffix)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png")
    write_bytes_atomic(path, buffer.getvalue())


def write_npz_atomic(path: Path, **arrays) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())


def read_json(path: Path, what_to_do: str):
    """A JSON state file, or a one-line StarError naming it and what to do."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StarError(f"{path}: damaged ({getattr(error, 'msg', error)}); {what_to_do}") from error


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz; a damaged file (its zip CRCs, truncation) raises a StarError naming it."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise StarError(f"{path}: damaged array file ({error})") from error
