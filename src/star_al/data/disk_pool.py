"""A pool too large to hold as Python objects: its file indexed once, its examples read when needed.

A JSONL pool is indexed by the byte offset of each record's line; a Parquet pool is copied
once into an uncompressed Arrow file that is memory-mapped; a saved `datasets` dataset is
memory-mapped already (its row number is the index). Building the index reads every record
once: each is checked and rendered as `load_examples` would (a bad row is refused at the
start, naming its file and row), and the digest of the examples' content is taken then. The
index is cached by the file's content and by how the task renders it (`$STAR_CACHE/pool-index`),
so a second start only hashes the file. From then on a run holds a few bytes per example
(an offset) and reads the examples a round scores, labels or exports. A CSV pool is read whole
(a row may span lines): save a pool of millions as JSONL or Parquet.

Pools below `large_pool` examples (the run's `--large-pool`, 100,000 by default) are read
whole into memory as they always were.
"""

from __future__ import annotations

import hashlib
import json
import time
from array import array
from dataclasses import astuple
from pathlib import Path
from typing import Iterator

import numpy as np

from star_al.data.records import _import, arrow_rows, dataset_records, format_of, jsonl_record, one_line
from star_al.data.tasks import Example, Task, example_content, load_examples, resolve_data_dir
from star_al.errors import StarError
from star_al.files import load_npz, write_npz_atomic
from star_al.log import log

STREAMED_FORMATS = ("jsonl", "parquet", "datasets")
INDEX_VERSION = 1
_BLOCK = 1 << 23       # bytes read at a time when hashing or counting lines
_READ_ROWS = 4096      # examples read at a time when iterating


class DiskPool:
    """The examples of one pool file, read when asked for; ids are positions (0, 1, ...), as
    `load_examples` numbers them. Behaves as a sequence of Examples (len, [i], [a:b], iteration)
    and as the run's examples by id (`pool[i]` is example i); `take(ids)` reads many at once."""

    def __init__(self, path: Path, data_format: str, task: Task, require_answer: bool, count: int,
                 content_digest: str, all_answered: bool, offsets: np.ndarray | None = None, table=None,
                 dataset=None):
        self.path, self.format, self.task, self.require_answer = Path(path), data_format, task, require_answer
        self.count, self.content_digest, self.all_answered = count, content_digest, all_answered
        self._offsets, self._table, self._dataset = offsets, table, dataset
        self._stamp = _stamp(self.path) if data_format == "jsonl" else None
        self._named_by = task._fields_named_by()

    @property
    def ids(self) -> np.ndarray:
        return np.arange(self.count, dtype=np.int64)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self.take(range(*key.indices(self.count)))
        index = int(key) + (self.count if int(key) < 0 else 0)
        if not 0 <= index < self.count:
            raise IndexError(f"example {key} is outside the pool of {self.count}")
        return self.take([index])[0]

    def __iter__(self) -> Iterator[Example]:
        for start in range(0, self.count, _READ_ROWS):
            yield from self.take(range(start, min(start + _READ_ROWS, self.count)))

    def take(self, ids) -> list[Example]:
        """The examples of `ids`, in the order given (read from the file in its own order)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) == 0:
            return []
        if ids.min() < 0 or ids.max() >= self.count:
            raise IndexError(f"ids outside the pool of {self.count} examples")
        order = np.argsort(ids, kind="stable")
        records = self._records(ids[order])
        examples: list[Example | None] = [None] * len(ids)
        for position, record in zip(order, records):
            example_id = int(ids[position])
            examples[position] = self.task.render(f"{self.path} example {example_id}", record, example_id,
                                                  self.require_answer, self._named_by)
        return examples

    def _records(self, positions: np.ndarray) -> list[dict]:
        """The raw records at sorted positions."""
        if self.format == "jsonl":
            if _stamp(self.path) != self._stamp:
                raise StarError(f"{self.path} changed since it was indexed (a large pool is read as the run goes); "
                                "put back the file the run started with, or start the run again")
            records = []
            with open(self.path, "rb") as handle:
                for position in positions:
                    handle.seek(int(self._offsets[position]))
                    records.append(jsonl_record(f"{self.path} example {int(position)}", handle.readline()))
            return records
        if self.format == "parquet":
            import pyarrow

            return [record for _, record in arrow_rows(self.path, [self._table.take(pyarrow.array(positions))])]
        return [record for _, record in dataset_records(self._dataset.select(positions.tolist()), str(self.path))]


def load_pool(task: Task, split: str, large_pool: int, index_root: Path | None, data_root: str | None = None,
              data_dir: str | None = None, require_answer: bool = True):
    """A split's examples: a DiskPool when its local file (JSONL, Parquet, a saved dataset) holds at
    least `large_pool` records and an index folder is given, else the list `load_examples` reads."""
    path = _local_split_file(task, split, data_root, data_dir)
    if path is not None and index_root is not None:
        data_format = task.format or format_of(path)
        if data_format in STREAMED_FORMATS and _may_hold(path, data_format, large_pool):
            pool = open_pool(path, data_format, task, require_answer, index_root)
            if len(pool) >= large_pool:
                return pool
        elif data_format == "csv" and large_pool and path.stat().st_size >= 2 * large_pool \
                and _count_lines(path) >= large_pool:
            log.info(f"{path}: a CSV pool is read whole into memory; save it as JSONL or Parquet to have it "
                     "read from disk as it is needed")
    return load_examples(task, split, data_root=data_root, data_dir=data_dir, require_answer=require_answer)


def open_pool(path: Path, data_format: str, task: Task, require_answer: bool, index_root: Path) -> DiskPool:
    """The pool file behind its index: read from the cache, or built now (once per content, under a lock)."""
    from filelock import FileLock

    path = Path(path)
    folder = Path(index_root) / "pool-index"
    folder.mkdir(parents=True, exist_ok=True)
    key = index_key(path, data_format, task, require_answer)
    entry = folder / f"{key}.npz"
    with FileLock(f"{entry}.lock"):
        index = _read_index(entry)
        if index is None:
            log.info(f"indexing the pool file {path} ({path.stat().st_size / 1e6:.0f} MB; once: the index is "
                     f"cached by its content in {folder})")
            started = time.perf_counter()
            index = _build_index(path, data_format, task, require_answer, folder / f"{key}.arrow")
            write_npz_atomic(entry, **index)
            log.info(f"indexed {int(index['count']):,} examples of {path} in {time.perf_counter() - started:.1f} s")
    table = dataset = None
    if data_format == "parquet":
        table = _mapped_table(folder / f"{key}.arrow")
    elif data_format == "datasets":
        dataset = _saved_dataset(path)
    return DiskPool(path, data_format, task, require_answer, int(index["count"]), str(index["digest"]),
                    bool(index["all_answered"]), offsets=index.get("offsets"), table=table, dataset=dataset)


def index_key(path: Path, data_format: str, task: Task, require_answer: bool) -> str:
    """The file's content, its format and how the task turns records into examples."""
    rendering = [task.prompt, task.answer, task.answer_type, list(task.labels), task.target, task.answer_pattern,
                 [list(astuple(rule)) for rule in task.normalize]]
    key = json.dumps([INDEX_VERSION, content_hash(path), data_format, rendering, require_answer])
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def content_hash(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (names and bytes, in name order)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\x00")
        with open(file, "rb") as handle:
            while block := handle.read(_BLOCK):
                digest.update(block)
    return digest.hexdigest()


def _build_index(path: Path, data_format: str, task: Task, require_answer: bool, arrow_copy: Path) -> dict:
    """Every record checked and rendered once: the count, the content digest, whether all have answers,
    and (JSONL) each record's byte offset; a Parquet file is copied to a memory-mappable Arrow file."""
    digest, named_by = hashlib.sha256(), task._fields_named_by()
    count, answered = 0, True

    def add(where: str, record: dict) -> None:
        nonlocal count, answered
        example = task.render(where, record, count, require_answer, named_by)
        digest.update(example_content(example))
        answered = answered and example.gold is not None
        count += 1

    arrays = {}
    if data_format == "jsonl":
        offsets = array("q")
        try:
            with open(path, "rb") as handle:
                position = 0
                for line_number, line in enumerate(handle, start=1):
                    start, position = position, position + len(line)
                    if line.strip():
                        offsets.append(start)
                        add(f"{path}:{line_number}", jsonl_record(f"{path}:{line_number}", line))
        except OSError as error:
            raise StarError(f"{path}: cannot read ({one_line(error)})") from None
        arrays["offsets"] = np.frombuffer(offsets, dtype=np.int64).copy()
    elif data_format == "parquet":
        for where, record in arrow_rows(path, _copy_to_arrow(path, arrow_copy).to_batches()):
            add(where, record)
    else:
        for where, record in dataset_records(_saved_dataset(path), str(path)):
            add(where, record)
    return {**arrays, "count": np.int64(count), "digest": np.str_(digest.hexdigest()),
            "all_answered": np.bool_(answered), "version": np.int64(INDEX_VERSION)}


def _read_index(entry: Path) -> dict | None:
    """A cached index if it is whole; a damaged one is dropped (and built again)."""
    if not entry.is_file():
        return None
    try:
        index = load_npz(entry)
    except StarError as error:
        log.info(f"{error}: dropped, indexing the pool again")
        return None
    keys_present = all(key in index for key in ("count", "digest", "all_answered", "version"))
    offsets = index.get("offsets")
    if not keys_present or int(index["version"]) != INDEX_VERSION or (
            offsets is not None and (len(offsets) != int(index["count"]) or np.any(np.diff(offsets) <= 0))):
        log.info(f"{entry}: not a whole pool index: dropped, indexing the pool again")
        return None
    return index


def _copy_to_arrow(path: Path, target: Path):
    """The Parquet file as an uncompressed Arrow IPC file (written batch by batch), memory-mapped."""
    parquet = _import("pyarrow.parquet", "reading Parquet", "parquet", path)
    import pyarrow

    staging = target.with_name(f".{target.name}.partial")
    try:
        source = parquet.ParquetFile(path)
        with pyarrow.OSFile(str(staging), "wb") as sink, pyarrow.ipc.new_file(sink, source.schema_arrow) as writer:
            for batch in source.iter_batches(batch_size=_READ_ROWS):
                writer.write_batch(batch)
    except (OSError, ValueError, pyarrow.ArrowException) as error:
        staging.unlink(missing_ok=True)
        raise StarError(f"{path}: not a readable Parquet file ({one_line(error)})") from None
    staging.replace(target)
    return _mapped_table(target)


def _mapped_table(path: Path):
    import pyarrow

    try:
        return pyarrow.ipc.open_file(pyarrow.memory_map(str(path), "r")).read_all()
    except (OSError, pyarrow.ArrowException) as error:
        raise StarError(f"{path}: the pool's Arrow copy does not open ({one_line(error)}); delete its index "
                        f"({path.with_suffix('.npz')}) to have it built again") from None


def _saved_dataset(path: Path):
    datasets = _import("datasets", "reading a saved `datasets` dataset", "hub", path)
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as error:  # noqa: BLE001 (as records.read_saved_dataset: one line whatever it is)
        raise StarError(f"{path}: not a dataset saved with save_to_disk ({one_line(error)})") from None
    if isinstance(loaded, datasets.DatasetDict):
        raise StarError(f"{path} holds a DatasetDict (splits: {', '.join(loaded) or 'none'}); name one split's "
                        f"folder, e.g. {path / next(iter(loaded), 'train')}")
    return loaded


def _local_split_file(task: Task, split: str, data_root: str | None, data_dir: str | None) -> Path | None:
    """The split's local file, or None when the task's records come from elsewhere (the hub, lm-eval)."""
    if task.loader is not None:
        return None
    folder = resolve_data_dir(task, data_root, data_dir)
    return task.split_path(split, folder) if folder is not None else None


def _may_hold(path: Path, data_format: str, count: int) -> bool:
    """Whether the file can hold `count` records, by what is cheap to tell (never fewer than it holds)."""
    if data_format == "jsonl":
        return path.stat().st_size >= 2 * count and _count_lines(path) >= count
    if data_format == "parquet":
        parquet = _import("pyarrow.parquet", "reading Parquet", "parquet", path)
        try:
            return parquet.ParquetFile(path).metadata.num_rows >= count
        except Exception:  # noqa: BLE001 (load_examples then says what is wrong with the file)
            return False
    return len(_saved_dataset(path)) >= count


def _count_lines(path: Path) -> int:
    """Lines of a text file (a last line without its newline counts)."""
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def _stamp(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_size, status.st_mtime_ns
