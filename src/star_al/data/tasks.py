"""Tasks: a YAML file says how a dataset's records become prompts, training targets and gold answers.

As in lm-evaluation-harness, no Python knows a task by name: the built-ins are YAML files in
``star_al/tasks/`` and a user's own data is one more YAML file. Dataset quirks are fixed by the
YAML's ``normalize`` rules, never by editing the data.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import string
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterable

import yaml

from star_al.data.records import FORMAT_SUFFIX, FORMATS, locate, read_records
from star_al.data.records import read_jsonl  # noqa: F401 (labeling imports it from here)
from star_al.data.records import one_line as _one_line
from star_al.errors import StarError

ANSWER_TYPES = ("number", "label", "text")
# Not a task-file answer_type: an lm-eval multiple-choice task whose choices differ per example
# (data/lm_eval_tasks.py); each Example carries its candidates and the model picks one of them.
CHOICE = "choice"
DEFAULT_SPLITS = {"train": "train.jsonl", "test": "test.jsonl"}
DEFAULT_HF_SPLITS = {"train": "train", "test": "test"}
DEFAULT_TARGET = " {gold}"
DEFAULT_MAX_NEW_TOKENS = 256

_TASK_KEYS = (
    "name", "data", "splits", "prompt", "answer", "answer_pattern", "answer_type", "labels",
    "target", "normalize", "stop_pattern", "max_new_tokens", "hf", "training", "format",
)
_REQUIRED_KEYS = ("name", "prompt", "answer", "answer_type")
_RULE_KEYS = ("field", "from", "pattern", "replace")
_HF_KEYS = ("path", "name", "splits", "fields", "values")

_NUMBER = r"(?<!\d)-?\d[\d,]*(?:\.\d+)?"
_FINAL_ANSWER = re.compile(r"final answer is\s*:?\s*\$?\s*(" + _NUMBER + ")", re.IGNORECASE)
_FORMAT_ERRORS = (KeyError, IndexError, AttributeError, ValueError, TypeError)


@dataclass(frozen=True)
class Example:
    """One record, rendered: ``prompt + target`` is the training text, ``gold`` what accuracy compares."""

    id: int
    prompt: str
    target: str | None   # None: a pool record nobody has labeled yet
    gold: str | None
    record: dict | None = field(default=None, compare=False, hash=False, repr=False)  # the fields, for export
    choices: tuple[str, ...] | None = None  # a choice task's candidates for this example (gold is one of them)


def fingerprint(*splits: Iterable[Example]) -> str:
    """A sha256 of the examples' content (id, prompt, target, gold), one split after another.

    Caches and run directories key on it: a data file edited in place (same path, same
    number of lines) gets another fingerprint, so old scores are never served for it.
    A pool read from disk (data/disk_pool.py) enters by the digest of its examples' content,
    computed when its file was indexed, so a start does not read a million examples to hash them.
    """
    digest = hashlib.sha256()
    for split in splits:
        indexed = getattr(split, "content_digest", None)
        if indexed is not None:
            digest.update(b"\x00indexed\x00" + indexed.encode())
        else:
            for ex in split:
                digest.update(example_content(ex))
        digest.update(b"\x00split\x00")
    return digest.hexdigest()


def example_content(ex: Example) -> bytes:
    """What an example's fingerprint covers: id, prompt, target, gold (and its choices), as JSON."""
    content = [ex.id, ex.prompt, ex.target, ex.gold] + ([list(ex.choices)] if ex.choices is not None else [])
    return json.dumps(content).encode()


@dataclass(frozen=True)
class NormalizeRule:
    """``re.sub(pattern, replace, record[from_field or field_name])`` stored into ``field_name``."""

    field_name: str
    pattern: str
    replace: str = ""
    from_field: str | None = None


@dataclass(frozen=True)
class Task:
    """Everything a task YAML says; the single source of truth for prompts and answer checking."""

    name: str
    answer_type: str
    labels: tuple[str, ...]
    source: str
    prompt: str
    answer: str
    target: str = DEFAULT_TARGET
    answer_pattern: str | None = None
    normalize: tuple[NormalizeRule, ...] = ()
    data: str | None = None
    format: str | None = None  # of the split files: jsonl, csv, parquet, datasets; None: by each file's name
    splits: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SPLITS), hash=False)
    hf: dict[str, Any] | None = field(default=None, hash=False)
    stop_pattern: str | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    training: dict[str, Any] = field(default_factory=dict, hash=False)
    builtin: bool = False
    # Where the records come from when not from files: split, require_answer -> examples
    # (an lm-evaluation-harness task builds them from its own definition).
    loader: Any = field(default=None, hash=False, compare=False, repr=False)

    def label_target(self, label: str) -> str:
        """The continuation meaning ``label`` (e.g. " true"); label tasks are scored by its likelihood."""
        canonical = self._match_label(label)
        if canonical is None:
            raise StarError(f"task {self.name}: '{label}' is not one of its labels ({', '.join(self.labels)})")
        return self.target.format(gold=canonical)

    def with_label(self, example: Example, answer: str, target: str | None = None) -> Example:
        """The example as a labeler answered it: `answer` is what accuracy compares, `target` the
        text training teaches (rendered from the answer when the labeler gave none)."""
        if self.answer_type == CHOICE:
            answer = self.match_choice(example, answer)
        if target is None:
            if self.answer_type == "label":
                target = self.label_target(answer)
            else:
                try:
                    target = self.target.format(gold=answer)
                except (KeyError, IndexError) as error:
                    raise StarError(f"task {self.name}: its target template needs more than the answer "
                                    f"({error}); give the label's full target text") from error
        return Example(example.id, example.prompt, target, answer, choices=example.choices)

    def match_choice(self, example: Example, answer: str) -> str:
        """The candidate of a choice task's example that `answer` names: itself, else the one equal
        to it up to case and surrounding spaces."""
        choices = example.choices or ()
        if answer in choices:
            return answer
        wanted = answer.strip().lower()
        close = [choice for choice in choices if choice.strip().lower() == wanted]
        if len(close) != 1:
            raise StarError(f"task {self.name}, example {example.id}: answer {answer!r} is not one of its "
                            f"choices ({' | '.join(choices)})")
        return close[0]

    def load(self, split: str, data_dir: Path, require_answer: bool = True) -> list[Example]:
        """Examples of one split from ``data_dir``; ids count examples, errors cite file rows.

        The split file is read in the task's ``format``, else the one its name says; a split
        named train.jsonl is also found as train.csv, train.parquet or a saved dataset train/.
        """
        return self.build_examples(read_records(self.split_path(split, data_dir), self.format), require_answer)

    def split_path(self, split: str, data_dir: Path) -> Path:
        """The file (or saved dataset folder) holding one split in ``data_dir``."""
        if split not in self.splits:
            raise StarError(f"task {self.name} has no split '{split}' (splits: {', '.join(self.splits)})")
        named = Path(data_dir) / self.splits[split]
        path = locate(named, self.format)
        if path is None:
            raise StarError(f"task {self.name}: split file {named} not found")
        return path

    def build_examples(self, located_records: Iterable[tuple[str, dict]],
                       require_answer: bool = True) -> list[Example]:
        """Normalise, check and render records; shared by local JSONL and Hugging Face rows.

        ``located_records`` pairs each raw record with where it came from ("path:LINE"), so
        every error points at the line to fix. Without ``require_answer`` (a pool that people
        label) a record may lack its answer: its gold and target are then None.
        """
        named_by = self._fields_named_by()
        examples = []
        for where, raw in located_records:
            examples.append(self.render(where, raw, len(examples), require_answer, named_by))
        return examples

    def render(self, where: str, raw: dict, example_id: int, require_answer: bool = True,
               named_by: dict[str, str] | None = None) -> Example:
        """One record as example `example_id`: normalised, checked and rendered (build_examples' step)."""
        record = self._normalized(where, raw)
        answered = record.get(self.answer) not in (None, "")
        for name, key in (named_by if named_by is not None else self._fields_named_by()).items():
            if name not in record and (require_answer or name != self.answer):
                raise StarError(f"{where}: missing field '{name}' named by the task's {key}")
        prompt = _render(where, "prompt", self.prompt, record)
        if answered or require_answer:
            gold = self._gold(where, record)
            target = _render(where, "target", self.target, {**record, "gold": gold})
        else:
            gold = target = None
        return Example(id=example_id, prompt=prompt, target=target, gold=gold, record=raw)

    def extract_answer(self, generated: str) -> str | None:
        """The answer a generation commits to, in the form ``is_correct`` compares.

        Numbers: the last "final answer is N", else the last number; labels: the first label
        named; text: the first line.
        """
        if self.answer_type == "number":
            numbers = _FINAL_ANSWER.findall(generated) or re.findall(_NUMBER, generated)
            return normalize_number(numbers[-1]) if numbers else None
        if self.answer_type == "label":
            # Case-sensitive first, so OBQA's "A" is not read off the article "a".
            for flags in (0, re.IGNORECASE):
                hits = [
                    (m.start(), label)
                    for label in self.labels
                    if (m := re.search(rf"(?<!\w){re.escape(label)}(?!\w)", generated, flags))
                ]
                if hits:
                    return min(hits)[1]
            return None
        first_line = generated.strip().split("\n", 1)[0].strip()
        return first_line or None

    def is_correct(self, prediction: str | None, gold: str) -> bool:
        """Exact match: numbers by value ("$5.00" equals "5"), labels case-insensitively, text stripped."""
        if prediction is None:
            return False
        if self.answer_type == "number":
            predicted, expected = _to_decimal(prediction), _to_decimal(gold)
            return predicted is not None and predicted == expected
        if self.answer_type == "label":
            return prediction.strip().lower() == gold.strip().lower()
        return prediction.strip() == gold.strip()

    def prediction_for(self, example: Example, generated: str) -> str | None:
        """The answer `generated` commits to for `example`: ``extract_answer``'s; a task whose
        extraction reads the example (an lm-eval task's filters read its document) overrides it."""
        return self.extract_answer(generated)

    def is_correct_for(self, example: Example, prediction: str | None) -> bool:
        """Whether `prediction` is right for `example`: ``is_correct`` against its gold (never without one)."""
        return example.gold is not None and self.is_correct(prediction, example.gold)

    def answer_complete(self, generated: str) -> bool:
        """True once ``stop_pattern`` sees a finished final answer, so generation can stop early."""
        return bool(self.stop_pattern and re.search(self.stop_pattern, generated))

    def _fields_named_by(self) -> dict[str, str]:
        """Record fields each example must hold, mapped to the YAML key that names them."""
        named_by: dict[str, str] = {}
        for key, template in (("prompt", self.prompt), ("target", self.target)):
            for name in sorted(_template_fields(template)):
                named_by.setdefault(name, key)
        named_by.pop("gold", None)
        named_by.setdefault(self.answer, "answer")
        return named_by

    def _normalized(self, where: str, raw: dict) -> dict:
        record = dict(raw)
        for rule in self.normalize:
            source_field = rule.from_field or rule.field_name
            if source_field not in record:
                raise StarError(f"{where}: missing field '{source_field}' named by the task's normalize")
            record[rule.field_name] = re.sub(rule.pattern, rule.replace, _as_text(record[source_field]))
        return record

    def _gold(self, where: str, record: dict) -> str:
        text = _as_text(record[self.answer])
        if self.answer_pattern is not None:
            match = re.search(self.answer_pattern, text)
            if match is None:
                raise StarError(f"{where}: answer {text!r} does not match answer_pattern {self.answer_pattern!r}")
            text = match.group(1) if match.re.groups else match.group(0)
        if self.answer_type == "label":
            label = self._match_label(text)
            if label is None:
                raise StarError(f"{where}: answer {text!r} is not one of the labels ({', '.join(self.labels)})")
            return label
        if self.answer_type == "number":
            number = normalize_number(text)
            if number is None:
                raise StarError(f"{where}: answer {text!r} is not a number")
            return number
        return text.strip()

    def _match_label(self, text: str) -> str | None:
        wanted = text.strip().lower()
        return next((label for label in self.labels if label.lower() == wanted), None)


def normalize_number(text: str) -> str | None:
    """Canonical string of a number as written in an answer: "$1,234.50" -> "1234.5", "72.0" -> "72"."""
    value = _to_decimal(text)
    if value is None:
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _to_decimal(text: str) -> Decimal | None:
    cleaned = text.strip().replace(",", "").replace("$", "").strip().rstrip(".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _as_text(value: Any) -> str:
    """JSON/YAML booleans read as the lowercase words the templates use ("true", not "True")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _render(where: str, key: str, template: str, values: dict) -> str:
    try:
        return template.format_map(values)
    except _FORMAT_ERRORS as error:
        raise StarError(f"{where}: cannot render the task's {key} ({type(error).__name__}: {error})") from None


def _template_fields(template: str) -> set[str]:
    """Top-level field names of a format template: "{choices[text][0]}" names "choices"."""
    names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    return {re.match(r"[^.\[]*", name).group() for name in names}


# --- reading task files ---------------------------------------------------------------------


class _TaskLoader(yaml.SafeLoader):
    """YAML 1.2 booleans (only true/false), so labels like [yes, no] or [on, off] stay words."""


_BOOL_TAG = "tag:yaml.org,2002:bool"
_TaskLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_TaskLoader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def parse_task_file(path: Path, builtin: bool = False) -> Task:
    try:
        config = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_TaskLoader)
    except OSError as error:
        raise StarError(f"{path}: cannot read task file ({_one_line(error)})") from None
    except yaml.YAMLError as error:
        raise StarError(f"{path}: not valid YAML ({_one_line(error)})") from None
    return task_from_config(config, source=Path(path), builtin=builtin)


def task_from_config(config: Any, source: Path, builtin: bool = False) -> Task:
    """Validate a parsed task YAML; every message names the file and the offending key."""

    def fail(message: str) -> StarError:
        return StarError(f"{source}: {message}")

    if not isinstance(config, dict):
        raise fail("a task file must be a mapping of keys (name, prompt, answer, answer_type, ...)")
    _check_keys(config, _TASK_KEYS, "", fail)
    for key in _REQUIRED_KEYS:
        if key not in config:
            raise fail(f"missing required key '{key}'")
    text = {key: _string(config, key, fail) for key in
            ("name", "data", "prompt", "answer", "answer_pattern", "answer_type", "target", "stop_pattern")}
    answer_type = text["answer_type"]
    if answer_type not in ANSWER_TYPES:
        raise fail(f"key 'answer_type' is '{answer_type}', expected one of {', '.join(ANSWER_TYPES)}")
    labels = _labels(config.get("labels"), answer_type, fail)
    for key in ("answer_pattern", "stop_pattern"):
        if text[key] is not None:
            _regex(text[key], key, fail)
    target = text["target"] if text["target"] is not None else DEFAULT_TARGET
    prompt_fields = _checked_template(text["prompt"], "prompt", fail)
    target_fields = _checked_template(target, "target", fail)
    if "gold" in prompt_fields:
        raise fail("key 'prompt' names {gold}; only the target may show the answer")
    if answer_type == "label" and target_fields - {"gold"}:
        raise fail(f"key 'target' of a label task may only use {{gold}}, it names {sorted(target_fields - {'gold'})}")
    normalize = _rules(config.get("normalize"), fail)
    hf = _hf(config.get("hf"), fail)
    data_format = _string(config, "format", fail)
    if data_format is not None and data_format not in FORMATS:
        raise fail(f"key 'format' is '{data_format}', expected one of {', '.join(FORMATS)}")
    default_splits = ({split: Path(name).stem + FORMAT_SUFFIX[data_format] for split, name in DEFAULT_SPLITS.items()}
                      if data_format else DEFAULT_SPLITS)
    if not builtin and text["data"] is None and hf is None:
        raise fail("missing required key 'data' (the folder holding the split files), or give 'hf'")
    if hf is not None and hf["fields"]:
        derived = {rule.field_name for rule in normalize if rule.from_field}
        needed = (prompt_fields | target_fields | {text["answer"]}) - {"gold"}
        needed |= {rule.from_field or rule.field_name for rule in normalize}
        lacking = sorted(needed - derived - set(hf["fields"]))
        if lacking:
            raise fail(f"key 'hf.fields' lacks {lacking}, which the task's templates or answer name")
    return Task(
        name=text["name"],
        answer_type=answer_type,
        labels=labels,
        source=str(source),
        prompt=text["prompt"],
        answer=text["answer"],
        target=target,
        answer_pattern=text["answer_pattern"],
        normalize=normalize,
        data=text["data"],
        format=data_format,
        splits=_string_map(config.get("splits", default_splits), "splits", fail),
        hf=hf,
        stop_pattern=text["stop_pattern"],
        max_new_tokens=_max_new_tokens(config.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS), fail),
        training=_training(config.get("training"), fail),
        builtin=builtin,
    )


def _check_keys(mapping: dict, known: tuple[str, ...], prefix: str, fail) -> None:
    for key in mapping:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f" (known: {', '.join(known)})"
            raise fail(f"unknown key '{prefix}{key}'{hint}")


def _string(config: dict, key: str, fail, shown: str | None = None) -> str | None:
    value = config.get(key)
    if value is not None and not isinstance(value, str):
        raise fail(f"key '{shown or key}' must be a string, got {type(value).__name__} {value!r}")
    return value


def _string_map(value: Any, key: str, fail) -> dict[str, str]:
    if not isinstance(value, dict) or not value or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise fail(f"key '{key}' must map names to strings, e.g. {{train: train.jsonl, test: test.jsonl}}")
    return dict(value)


def _labels(value: Any, answer_type: str, fail) -> tuple[str, ...]:
    if answer_type != "label":
        if value is not None:
            raise fail(f"key 'labels' is only for answer_type label, this task is {answer_type}")
        return ()
    if value is None:
        raise fail("missing required key 'labels' (a label task lists its allowed answers)")
    if not isinstance(value, list) or not value or any(isinstance(v, (dict, list)) or v is None for v in value):
        raise fail("key 'labels' must be a non-empty list of answers, e.g. [true, false]")
    labels = tuple(_as_text(v) for v in value)
    if len({label.lower() for label in labels}) < len(labels):
        raise fail(f"key 'labels' repeats a label: {list(labels)}")
    return labels


def _regex(pattern: str, key: str, fail, replace: str | None = None) -> None:
    try:
        compiled = re.compile(pattern)
        if replace is not None:
            compiled.sub(replace, "")
    except re.error as error:
        raise fail(f"key '{key}' is not a valid regex ({error})") from None


def _checked_template(template: str, key: str, fail) -> set[str]:
    try:
        names = _template_fields(template)
    except ValueError as error:
        raise fail(f"key '{key}' is not a valid template ({error})") from None
    if any(name == "" or name.isdigit() for name in names):
        raise fail(f"key '{key}' has a positional field {{}}; name the field, e.g. {{question}}")
    return names


def _rules(value: Any, fail) -> tuple[NormalizeRule, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise fail("key 'normalize' must be a list of {field, pattern, replace} rules")
    rules = []
    for index, item in enumerate(value):
        key = f"normalize[{index}]"
        if not isinstance(item, dict):
            raise fail(f"key '{key}' must be a mapping with field, pattern, replace")
        _check_keys(item, _RULE_KEYS, f"{key}.", fail)
        for required in ("field", "pattern"):
            if required not in item:
                raise fail(f"missing required key '{key}.{required}'")
        values = {name: _string(item, name, fail, shown=f"{key}.{name}") for name in _RULE_KEYS}
        replace = values["replace"] or ""
        _regex(values["pattern"], f"{key}.pattern", fail, replace=replace)
        rules.append(NormalizeRule(values["field"], values["pattern"], replace, values["from"]))
    return tuple(rules)


def _hf(value: Any, fail) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise fail("key 'hf' must be a mapping with path, name, splits, fields, values")
    _check_keys(value, _HF_KEYS, "hf.", fail)
    if not isinstance(value.get("path"), str):
        raise fail("key 'hf.path' must be a Hugging Face dataset id, e.g. google/boolq")
    if value.get("name") is not None and not isinstance(value["name"], str):
        raise fail("key 'hf.name' must be a string (the dataset configuration) or null")
    fields = _string_map(value["fields"], "hf.fields", fail) if value.get("fields") is not None else {}
    for name, template in fields.items():
        _checked_template(template, f"hf.fields.{name}", fail)
    values = value.get("values") or {}
    if not isinstance(values, dict) or not all(isinstance(m, dict) for m in values.values()):
        raise fail("key 'hf.values' must map a column to {raw value: replacement}")
    return {
        "path": value["path"],
        "name": value.get("name"),
        "splits": _string_map(value.get("splits", DEFAULT_HF_SPLITS), "hf.splits", fail),
        "fields": fields,
        "values": {column: {str(k).lower(): _as_text(v) for k, v in m.items()} for column, m in values.items()},
    }


TRAINING_KEYS = {"epochs": int, "batch_size": int, "learning_rate": float}


def _training(value: Any, fail) -> dict[str, Any]:
    """Per-task training defaults (the paper tunes epochs, batch size and lr per task)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail("key 'training' must be a mapping (epochs, batch_size, learning_rate)")
    _check_keys(value, tuple(TRAINING_KEYS), "training.", fail)
    checked = {}
    for key, kind in TRAINING_KEYS.items():
        if key in value:
            if isinstance(value[key], bool) or not isinstance(value[key], (int, float)) or value[key] <= 0:
                raise fail(f"key 'training.{key}' must be a positive number")
            checked[key] = kind(value[key])
    return checked


def _max_new_tokens(value: Any, fail) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise fail(f"key 'max_new_tokens' must be a positive integer, got {value!r}")
    return value


# --- finding the data -----------------------------------------------------------------------


def default_data_root() -> Path | None:
    """Where the built-in tasks' data is when --data-root is not given (the one place that decides):
    $STAR_DATA_ROOT, else ../shared/data beside the repository checkout, else beside the
    working directory."""
    import os

    if os.environ.get("STAR_DATA_ROOT"):
        return Path(os.environ["STAR_DATA_ROOT"]).expanduser()
    parents = Path(__file__).resolve().parents  # src/star_al/data/tasks.py -> the checkout is parents[3]
    for root in ([parents[4] / "shared" / "data"] if len(parents) > 4 else []) + [Path("..") / "shared" / "data"]:
        if root.is_dir():
            return root
    return None


def _expected_folder(task: Task, data_root: str | None) -> Path | None:
    if task.data is None:
        return None
    if task.builtin:
        root = Path(data_root).expanduser() if data_root else default_data_root()
        return root / task.data if root is not None else None
    folder = Path(task.data).expanduser()
    return folder if folder.is_absolute() else Path(task.source).parent / folder


def resolve_data_dir(task: Task, data_root: str | None = None, data_dir: str | None = None) -> Path | None:
    """The local folder of the task's split files, or None when there is none (then use the hub).

    ``data_dir`` (--data) wins; else a built-in's ``data`` folder name under ``data_root``
    (default ../shared/data of the checkout); else a user task's ``data`` relative to its YAML.
    """
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise StarError(f"data folder {folder} (--data) does not exist")
        return folder
    folder = _expected_folder(task, data_root)
    return folder if folder is not None and folder.is_dir() else None


def map_hf_record(hf_cfg: dict, record: dict) -> dict:
    """One Hugging Face row as the fields of the local JSONL, so one prompt template serves both.

    ``values`` first replaces raw column values (keys compared as lowercase strings, so YAML
    ``true`` matches a bool True), then each ``fields`` template formats the row.
    """
    row = dict(record)
    for column, mapping in (hf_cfg.get("values") or {}).items():
        if column in row:
            lookup = {str(k).lower(): v for k, v in mapping.items()}
            row[column] = lookup.get(str(row[column]).lower(), row[column])
    fields = hf_cfg.get("fields")
    if not fields:
        return row
    mapped = {}
    for name, template in fields.items():
        try:
            mapped[name] = template.format_map(row)
        except _FORMAT_ERRORS as error:
            raise StarError(
                f"Hugging Face {hf_cfg.get('path')}: hf.fields.{name} does not fit a row with columns "
                f"{sorted(record)} ({type(error).__name__}: {error})"
            ) from None
    return mapped


def _hf_rows(hf_cfg: dict, hf_split: str) -> Iterable[dict]:
    """Rows of a Hugging Face split; ``datasets`` is optional, so imported only here."""
    import datasets

    return datasets.load_dataset(hf_cfg["path"], hf_cfg["name"], split=hf_split)


def load_examples(
    task: Task, split: str, data_root: str | None = None, data_dir: str | None = None,
    require_answer: bool = True,
) -> list[Example]:
    """A split's examples from the local folder if there is one, else from the task's ``hf`` dataset."""
    if task.loader is not None:
        return task.loader(split, require_answer)
    folder = resolve_data_dir(task, data_root, data_dir)
    if folder is not None:
        return task.load(split, folder, require_answer)
    expected = _expected_folder(task, data_root) or "a folder"
    hint = (
        f"no local data for task {task.name}: put {'/'.join(task.splits.values())} in {expected} "
        "or pass --data-root/--data"
    )
    if task.hf is None:
        raise StarError(hint)
    hf_split = task.hf["splits"].get(split)
    if hf_split is None:
        raise StarError(f"{task.source}: key 'hf.splits' has no entry for split '{split}'")
    try:
        rows = _hf_rows(task.hf, hf_split)
    except Exception as error:  # offline, missing `datasets`, unknown id: all mean "use local files"
        raise StarError(f"{hint} (Hugging Face {task.hf['path']} unreachable: {_one_line(error)})") from error
    location = f"Hugging Face {task.hf['path']}[{hf_split}] row"
    return task.build_examples(((f"{location} {index}", map_hf_record(task.hf, row)) for index, row in enumerate(rows)),
                               require_answer)
