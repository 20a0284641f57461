"""What star says while it works: one logger, -v/-q on the command line, a log file per run.

Messages go to stderr (progress bars too, unless -q); a run directory also keeps every
message of the commands that wrote it in `run.log`, with times, so a run can be
diagnosed afterwards.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

log = logging.getLogger("star_al")


class _Stderr(logging.Handler):
    """Writes to whatever sys.stderr is at the time (a StreamHandler keeps the stream it was made with)."""

    def emit(self, record):
        import sys

        sys.stderr.write(self.format(record) + "\n")
        sys.stderr.flush()


_quiet = [False]


def quiet() -> bool:
    """True under -q: progress bars stay off."""
    return _quiet[0]


def configure(verbosity: int = 0) -> None:
    """0: progress and round lines; -1 (-q): warnings only, no progress bars; 1 (-v): debug too.

    The level is the console's: a run's log file keeps every message whatever it is.
    """
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    log.setLevel(logging.DEBUG)
    console = next((h for h in log.handlers if isinstance(h, _Stderr)), None)
    if console is None:
        console = _Stderr()
        console.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(console)
    console.setLevel(level)
    log.propagate = False
    _quiet[0] = verbosity < 0
    if verbosity < 0:
        # transformers and the Hub read these when first imported (after this, in every command):
        # their weight-loading bars and advice would otherwise still print under -q.
        import os

        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@contextlib.contextmanager
def run_log(run_dir: Path):
    """Append every message to RUN_DIR/run.log while a command writes that run."""
    if log.level == logging.NOTSET:
        configure(0)
    handler = logging.FileHandler(Path(run_dir) / "run.log", encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.setLevel(logging.DEBUG)
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()


def eta(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
