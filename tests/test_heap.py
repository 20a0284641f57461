"""Scoring keeps memory flat in the pool's size: the heap freed by each batch goes back to the OS."""

from __future__ import annotations

from star_al.engine import heap


def test_heap_guard_releases_only_past_its_margin(monkeypatch):
    readings = iter([1000.0, 1100.0, 1300.0, 1010.0, 1200.0, 1300.0, 1290.0])
    released, fixed = [], []
    monkeypatch.setattr(heap, "resident_mb", lambda: next(readings))
    monkeypatch.setattr(heap, "release_freed_memory", lambda: released.append(True) or True)
    monkeypatch.setattr(heap, "fix_mmap_threshold", lambda: fixed.append(True) or True)
    guard = heap.HeapGuard(slack_mb=256)   # floor 1000
    guard.after_batch()                     # 1100: within the margin
    assert released == []
    guard.after_batch()                     # 1300: past it; released, new floor 1010
    assert released == [True] and guard.floor == 1010 and fixed == []
    guard.after_batch()                     # 1200: within the new margin
    assert released == [True]
    guard.after_batch()                     # 1300: past it, but the trim gives back nothing (1290)
    assert released == [True, True] and fixed == [True] and guard.floor == 1290


def test_every_scored_batch_passes_the_guard(tiny_backbone, monkeypatch):
    """run_batches hands each batch it computes to one HeapGuard (the memory itself is a
    benchmark figure: `star bench --pool-memory`)."""
    from star_al.engine import scoring

    seen = []

    class Counting:
        def after_batch(self):
            seen.append(True)

    monkeypatch.setattr(scoring, "HeapGuard", Counting)
    results = scoring.run_batches(tiny_backbone.model, [[0], [1], [2]], lambda batch: batch[0] * 2)
    assert results == [0, 2, 4] and len(seen) == 3
