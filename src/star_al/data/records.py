"""Records from the files people keep their data in: JSONL, CSV, Parquet, a saved `datasets` dataset.

Every reader yields ``(where, record)``: the record a dict of fields, ``where`` the place an
error about it should point at ("train.csv:14", "train.parquet row 13"), so a task turns any of
them into examples the same way and every bad row is one line naming its file and row.
Values come as JSON would hold them: CSV cells are text (a JSONL twin's 72 and the CSV's "72"
give the same gold answer), values JSON has no type for (dates, decimals) are read as their
text, and a `datasets` ClassLabel column as its label names.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from star_al.errors import StarError

FORMATS = ("jsonl", "csv", "parquet", "datasets")
SUFFIXES = {".jsonl": "jsonl", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# The file a split is named by when the task gives a format but no `splits` ("datasets": a folder).
FORMAT_SUFFIX = {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet", "datasets": ""}
CSV_DELIMITERS = ",;\t"
_BATCH_ROWS = 1024

Located = tuple[str, dict]


def format_of(path: Path) -> str:
    """A data file's format: a folder is a saved `datasets` dataset, else by suffix; any other
    suffix is JSONL, as every data file was before the other formats."""
    if Path(path).is_dir():
        return "datasets"
    return SUFFIXES.get(Path(path).suffix.lower(), "jsonl")


def locate(path: Path, data_format: str | None = None) -> Path | None:
    """The file (or dataset folder) standing for ``path``: itself if it exists; else, when no
    format is fixed, the one file beside it with the same stem in another format, so a folder
    holding train.csv serves a task whose splits name train.jsonl."""
    path = Path(path)
    if path.exists() or data_format is not None:
        return path if path.exists() else None
    stem = path.with_suffix("")
    twins = [candidate for candidate in (stem.with_name(stem.name + suffix) for suffix in SUFFIXES)
             if candidate != path and candidate.is_file()]
    twins += [stem] if stem.is_dir() else []
    if len(twins) > 1:
        raise StarError(f"{path} not found, and {len(twins)} files could stand for it "
                        f"({', '.join(str(t) for t in twins)}); keep one, or name it in the task's splits")
    return twins[0] if twins else None


def read_records(path: Path, data_format: str | None = None) -> Iterator[Located]:
    """``(where, record)`` of every row of a data file, in the given format or the one its name says."""
    path = Path(path)
    data_format = data_format or format_of(path)
    if data_format == "datasets":
        return read_saved_dataset(path)
    if path.is_dir():
        raise StarError(f"{path} is a folder, not a {data_format} file (a folder is read as a saved `datasets` "
                        "dataset when no format is set)")
    readers = {"jsonl": read_jsonl, "csv": read_csv, "parquet": read_parquet}
    if data_format not in readers:
        raise StarError(f"{path}: unknown data format '{data_format}' (known: {', '.join(FORMATS)})")
    return readers[data_format](path)


def read_jsonl(path: Path) -> Iterator[Located]:
    """Yield ("path:LINE", record) per non-blank line; line numbers count blank lines too."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise StarError(f"{path}: cannot read ({one_line(error)})") from None
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_number}"
        yield where, jsonl_record(where, line)


def jsonl_record(where: str, line: str | bytes) -> dict:
    """One JSONL line's record (a JSON object), or a one-line StarError naming `where`."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise StarError(f"{where}: malformed JSON ({error})") from None
    except UnicodeDecodeError as error:
        raise StarError(f"{where}: not UTF-8 text ({one_line(error)})") from None
    if not isinstance(record, dict):
        raise StarError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def read_csv(path: Path) -> Iterator[Located]:
    """Yield ("path:LINE", record) per row under the header row; cells are text.

    UTF-8 with or without a byte-order mark, CRLF or LF; the separator is sniffed from the
    header among comma, semicolon and tab (a .tsv file is tab-separated). LINE is the row's
    first line in the file, the row number a spreadsheet shows. A row of empty cells is
    skipped as a blank line is; a row shorter than the header lacks the trailing fields.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise StarError(f"{path}: not UTF-8 text ({one_line(error)}); save it as CSV UTF-8") from None
    except OSError as error:
        raise StarError(f"{path}: cannot read ({one_line(error)})") from None
    rows = _located_rows(path, text, "\t" if path.suffix.lower() == ".tsv" else _sniffed_delimiter(text))
    header_line, header = next(rows, (1, None))
    if header is None:
        raise StarError(f"{path}: an empty CSV file; the first row names the columns")
    columns = [name.strip() for name in header]
    named = [name for name in columns if name]
    repeated = sorted({name for name in named if named.count(name) > 1})
    if repeated:
        raise StarError(f"{path}:{header_line}: the header repeats the column {repeated[0]!r}")
    for line, cells in rows:
        if len(cells) > len(columns):
            raise StarError(f"{path}:{line}: {len(cells)} cells, but the header names {len(columns)} columns")
        # An unnamed column (a spreadsheet's or pandas' row index) is no field a task could name.
        yield f"{path}:{line}", {name: cell for name, cell in zip(columns, cells) if name}


def _sniffed_delimiter(text: str) -> str:
    header = next((line for line in text.splitlines() if line.strip()), "")
    try:
        return csv.Sniffer().sniff(header, delimiters=CSV_DELIMITERS).delimiter
    except csv.Error:  # one column: nothing to separate
        return ","


def _located_rows(path: Path, text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(first line, cells) of each non-blank row."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    line = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise StarError(f"{path}:{line}: malformed CSV ({one_line(error)})") from None
        if any(cell.strip() for cell in cells):
            yield line, cells
        line = reader.line_num + 1


def read_parquet(path: Path) -> Iterator[Located]:
    """Yield ("path row N", record) per row, N counted from 0 as pandas and `datasets` count."""
    parquet = _import("pyarrow.parquet", "reading Parquet", "parquet", path)
    import pyarrow

    try:
        batches = parquet.ParquetFile(path).iter_batches(batch_size=_BATCH_ROWS)
        yield from arrow_rows(path, batches)
    except (OSError, ValueError, pyarrow.ArrowException) as error:
        raise StarError(f"{path}: not a readable Parquet file ({one_line(error)})") from None


def read_saved_dataset(path: Path) -> Iterator[Located]:
    """Yield ("path row N", record) per row of a dataset saved with `Dataset.save_to_disk`."""
    datasets = _import("datasets", "reading a saved `datasets` dataset", "hub", path)
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as error:  # datasets raises FileNotFoundError, ValueError, JSON errors...: one line each
        raise StarError(f"{path}: not a dataset saved with save_to_disk ({one_line(error)})") from None
    if isinstance(loaded, datasets.DatasetDict):
        raise StarError(f"{path} holds a DatasetDict (splits: {', '.join(loaded) or 'none'}); name one split's "
                        f"folder, e.g. {path / next(iter(loaded), 'train')}")
    return dataset_records(loaded, str(path))


def dataset_records(dataset: Any, location: str) -> Iterator[Located]:
    """Yield ("LOCATION row N", record) per row of a `datasets.Dataset`; a ClassLabel column's
    values as their label names (the hub's -1, "no label", as null: an unlabeled row)."""
    from datasets import ClassLabel

    label_columns = {column: feature for column, feature in dataset.features.items()
                     if isinstance(feature, ClassLabel)}
    for where, record in arrow_rows(location, dataset.with_format("arrow").iter(batch_size=_BATCH_ROWS)):
        for column, feature in label_columns.items():
            value = record.get(column)
            record[column] = feature.int2str(value) if value is not None and value >= 0 else None
        yield where, record


def arrow_rows(location: Any, batches: Iterable[Any]) -> Iterator[Located]:
    """("LOCATION row N", record) of every row of Arrow record batches (or tables), values as JSON holds them."""
    index = 0
    for batch in batches:
        for row in batch.to_pylist():
            yield f"{location} row {index}", {name: _json_value(value) for name, value in row.items()}
            index += 1


def _json_value(value: Any) -> Any:
    """A value as JSON can hold it; anything else (a date, a decimal) as the text it formats to."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    return str(value)


def _import(module: str, purpose: str, extra: str, path: Path):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise StarError(f"{path}: {purpose} needs {module.split('.')[0]}: pip install 'star-al[{extra}]'") from None


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
