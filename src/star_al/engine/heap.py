"""Give the memory freed by each batch back to the operating system (glibc).

Scoring, evaluation and training run batches whose shapes change from one batch to the
next (length buckets, left padding). glibc's malloc raises its mmap threshold to the
size of every large block freed, so later blocks of those sizes come from the heap
instead, where free space of many sizes piles up and is not returned: scoring a
20k-example pool with a tiny 2-layer Llama of SmolLM2's vocabulary grew by about 580 KB
an example (12 GB), and 7 GB stayed after the pass with no tensor alive.
`malloc_trim(0)` hands the free pages back. Trimming after every batch keeps memory flat
but makes the next batches fault the same pages in again (10-30% slower on the tiny
model); trimming only once memory has grown a margin past the last trim keeps both
(`star bench --pool-memory 10000`: peak 0.9 GB instead of 3.9 GB, same time). Fixing
the threshold instead (`mallopt(M_MMAP_THRESHOLD)`) kept memory flat too but made the
pass about 50% slower: every large block then pays its page faults.
Not settled: run inside a full pytest process of a fresh-clone CI run, a guarded 4k pass
still grew 1.5 GB (twice), where 16 passes elsewhere grew 0.3 GB; the guard's fallback
below (mmapped large blocks once a trim gives nothing back) came after that.

Elsewhere (macOS, musl, Windows) there is no malloc_trim and this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform


@functools.cache
def _glibc(function: str):
    """A function of glibc's malloc (malloc_trim, mallopt), or None off glibc."""
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), function)
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> bool:
    """Return the heap's free pages to the OS; True where that is possible (glibc)."""
    trim = _glibc("malloc_trim")
    if trim is None:
        return False
    trim(ctypes.c_size_t(0))
    return True


def resident_mb() -> float | None:
    """This process's resident memory now (Linux), else None."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError, IndexError):
        return None


M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


@functools.cache
def fix_mmap_threshold(size: int = 4 << 20) -> bool:
    """From now on serve every block above `size` by mmap, given back when freed (and stop glibc
    raising the threshold): flat memory at the price of page faults on every large block."""
    mallopt = _glibc("mallopt")
    return mallopt is not None and bool(mallopt(M_MMAP_THRESHOLD, size))


class HeapGuard:
    """Release the heap whenever resident memory has grown `slack_mb` since the last release.

    Trimming after every batch also keeps memory flat, but the next batch then faults
    the same pages back in (a third slower on a tiny model); trimming only past a
    margin costs nothing measurable and bounds the growth to the margin. Where a trim
    gives nothing back (the heap's free space lies between live blocks), large blocks
    are mmapped from then on (fix_mmap_threshold): slower, but flat.
    """

    def __init__(self, slack_mb: float = 256.0):
        self.slack_mb = slack_mb
        self.floor = resident_mb()

    def after_batch(self) -> None:
        now = resident_mb()
        if now is None:
            release_freed_memory()
        elif self.floor is None or now > self.floor + self.slack_mb:
            release_freed_memory()
            after = resident_mb()
            if self.floor is not None and after is not None and after > self.floor + self.slack_mb:
                fix_mmap_threshold()  # the trim gave nothing back: the free space is scattered among live blocks
            self.floor = after
