"""One-shot jobs beside the loop: evaluate a model, fine-tune one adapter, export and push adapters.

`star eval`, `star train`, `star export-adapter` and `star push-adapter` are these
functions behind argument parsing; each writes its folder and returns what it measured.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from star_al.al.run_dir import RunDir
from star_al.config import LoraSettings, TrainSettings, check_settings
from star_al.data.tasks import Example, Task
from star_al.engine.evaluation import evaluate, lm_eval_results, write_predictions, write_samples
from star_al.engine.training import train_adapter
from star_al.errors import StarError
from star_al.files import write_json_atomic, write_text_atomic
from star_al.log import log
from star_al.models.adapters import adapter_method, load_adapter, saved_method
from star_al.models.backbones import Backbone


def check_writable_dir(path: Path) -> None:
    """Fail before any work when the output folder cannot be written (a file, read-only, full)."""
    if path.exists() and not path.is_dir():
        raise StarError(f"--out {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path) as probe:
            probe.write(b"0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise StarError(f"--out {path} cannot be written: {error.strerror or error}") from error


def check_adapter_dir(adapter_dir: str | Path) -> None:
    """An adapter directory must hold a readable adapter_config.json and the weights beside it."""
    folder = Path(adapter_dir)
    config = folder / "adapter_config.json"
    if not config.is_file():
        raise StarError(f"adapter {adapter_dir}: no adapter_config.json there")
    try:
        value = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StarError(f"adapter {config}: not valid JSON ({getattr(error, 'msg', error)})") from error
    if not isinstance(value, dict) or "peft_type" not in value:
        raise StarError(f"adapter {config}: not a PEFT adapter config (no peft_type)")
    if not (folder / "adapter_model.safetensors").is_file():
        raise StarError(f"adapter {adapter_dir}: no adapter_model.safetensors there "
                        "(adapters load from safetensors only, never pickles)")


def evaluate_model(backbone: Backbone, task: Task, examples: list[Example], out: Path, *,
                   adapter: str | None = None, batch_size: int = 32, model_name: str | None = None,
                   limit: int | None = None, n_original: int | None = None, log_samples: bool = False) -> dict:
    """Accuracy, ECE and Brier of the model (with a saved adapter) on the examples; writes
    predictions.jsonl, summary.json and lm-eval-shaped results.json (and samples) to `out`."""
    model = backbone.model
    if adapter:
        check_adapter_dir(adapter)
        model = load_adapter(model, adapter)
    scores, summary = evaluate(model, backbone.tokenizer, task, examples, batch_size)
    write_predictions(scores, out / "predictions.jsonl")
    name = model_name or backbone.name
    write_text_atomic(out / "summary.json", json.dumps(
        {"task": task.name, "model": name, "adapter": adapter, **summary}, indent=2) + "\n")
    config = {"model": name, "model_hub_id": backbone.hub_id, "adapter": adapter, "limit": limit,
              "batch_size": batch_size, "device": backbone.placement.device,
              "dtype": backbone.placement.dtype_name}
    write_text_atomic(out / "results.json", json.dumps(
        lm_eval_results(task, scores, summary, config, n_original or len(examples)), indent=2) + "\n")
    if log_samples:
        write_samples(task, examples, scores, out / f"samples_{task.name}.jsonl")
    return summary


def train_once(backbone: Backbone | Callable[[], Backbone], task: Task, pool: list[Example], test: list[Example], out: Path, *,
               n_train: int, lora: LoraSettings, train: TrainSettings, peft: str = "lora", seed: int = 0,
               batch_size: int = 32, baseline: bool = True, report=lambda label, summary: None) -> dict:
    """Fine-tune a fresh adapter on `n_train` random pool examples; evaluate before (unless not
    `baseline`) and after, each handed to `report(label, summary)` as it is measured.
    Writes adapter/, predictions.jsonl and summary.json to `out`. `backbone` may be a
    function that loads it: the settings are checked before the model is loaded."""
    method = adapter_method(peft)
    if not method.is_adapter:
        raise StarError(f"star train trains an adapter; --peft {peft} is not one (use star run --finetune full)")
    if seed < 0:
        raise StarError(f"--seed must be at least 0, got {seed}")
    if not 0 < n_train <= len(pool):
        raise StarError(f"--n-train {n_train} must be between 1 and the {len(pool)} train examples")
    check_settings(lora, train)
    check_writable_dir(out)
    if not isinstance(backbone, Backbone):
        backbone = backbone()
    labeled = [pool[i] for i in random.Random(seed).sample(range(len(pool)), n_train)]
    method.check_targets(backbone.model, lora)
    summary = {"task": task.name, "model": backbone.name, "n_train": n_train, "seed": seed,
               "peft": method.name, "lora": asdict(lora), "train": asdict(train)}
    if baseline:
        _, summary["untuned"] = evaluate(backbone.model, backbone.tokenizer, task, test, batch_size,
                                         desc="evaluate untuned")
        report("untuned", summary["untuned"])
    peft_model = method.attach(backbone.model, lora, seed)
    started = time.perf_counter()
    result = train_adapter(peft_model, backbone.tokenizer, task, labeled, train, seed, method=method)
    log.info(f"trained {result.steps} steps on {n_train} examples in {time.perf_counter() - started:.1f}s "
             f"(final loss {result.losses[-1]:.3f})")
    method.save(peft_model, out / "adapter", backbone.hub_id)
    scores, summary["tuned"] = evaluate(peft_model, backbone.tokenizer, task, test, batch_size, desc="evaluate tuned")
    write_predictions(scores, out / "predictions.jsonl")
    summary.update(train_ids=[ex.id for ex in labeled], seconds=result.seconds)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    report("tuned", summary["tuned"])
    return summary


def export_adapter(run: str | Path, out: str | Path, base_model: str | None = None) -> str:
    """A run's last adapter as a plain PEFT directory with a model card; returns the base's Hub id."""
    run_dir = RunDir(run)
    config = run_dir.read_config()
    source = run_dir.adapter_path
    check_adapter_dir(source)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise StarError(f"{out} exists and is not empty; choose another folder")
    adapter_config = json.loads((source / "adapter_config.json").read_text())
    base = base_model or adapter_config.get("base_model_name_or_path")
    if not base or Path(str(base)).is_absolute():
        raise StarError(f"the run does not know its base model's Hub id ({base}); give --base-model ORG/NAME")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "adapter_model.safetensors", out / "adapter_model.safetensors")
    write_json_atomic(out / "adapter_config.json", {**adapter_config, "base_model_name_or_path": base})
    rounds = run_dir.read_rounds()
    last = rounds[-1] if rounds else None
    accuracy = "-" if last is None or last.accuracy is None else f"{100 * last.accuracy:.2f}%"
    method = saved_method(source)
    write_text_atomic(out / "README.md", (
        f"---\nbase_model: {base}\nlibrary_name: peft\ntags: [{method.name}, active-learning, star-al]\n---\n\n"
        f"# {config.task} adapter from active learning ({config.strategy})\n\n"
        f"A {method.title} adapter for `{base}`, trained by star-al on {last.n_labeled if last else '?'} labels "
        f"chosen by `{config.strategy}` (seed {config.seed}, preset {config.preset}); test accuracy {accuracy}.\n\n"
        f"```python\nfrom peft import AutoPeftModelForCausalLM\n"
        f"model = AutoPeftModelForCausalLM.from_pretrained(\"path/or/repo\")\n```\n"))
    return base


def push_adapter(adapter_dir: str | Path, repo: str, private: bool = False) -> str:
    """Upload an exported adapter directory to the Hugging Face Hub; returns its address."""
    check_adapter_dir(adapter_dir)
    try:
        from huggingface_hub import HfApi
    except ImportError as error:
        raise StarError("pushing needs huggingface_hub (installed with transformers)") from error
    api = HfApi()
    try:
        api.create_repo(repo, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(adapter_dir), repo_id=repo, commit_message="star-al adapter")
    except Exception as error:  # network, auth, permissions: one line
        raise StarError(f"push to {repo} failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}") from error
    return f"https://huggingface.co/{repo}"


def probe_decay(run: str | Path, out: str | Path | None, machine, data_root: str | None = None,
                data: str | None = None) -> str:
    """Per query round of a run with L2 on B: the picks the decay changed and how much it shrank B.
    Writes decay.json and summary.md (default RUN/probe-decay); returns the summary."""
    from star_al.analysis.components import decay_effect
    from star_al.runs import load_model, run_data
    from star_al.strategies.registry import recipe_of

    run_dir = RunDir(run)
    config = run_dir.read_config()
    if not recipe_of(config).decays:
        raise StarError(f"{run} runs {config.strategy}, which has no L2 decay on B")
    rounds = run_dir.read_rounds()
    task, pool, test = run_data(config, data_root, data)
    effects = decay_effect(config, task, pool, test, load_model(config.model, machine), rounds, machine.cache_root)
    out = Path(out or run_dir.path / "probe-decay")
    write_json_atomic(out / "decay.json", effects)
    lines = ["| query round | picks changed by L2 on B | B norm shrunk by | decay twin = the run's picks |",
             "|---|---|---|---|"]
    lines += [f"| {e['round']} | {e['picks_changed']} of {e['of']} | {100 * e['b_shrink']:.2f}% | "
              f"{'yes' if e['matches_run'] else 'no'} |" for e in effects]
    text = f"# L2 decay on B in {run}\n\n" + "\n".join(lines) + "\n"
    write_text_atomic(out / "summary.md", text)
    return text


def probe_confidence(args, machine, out: Path, settings) -> str:
    """Figure 2's probe: wrong-answer confidence of a LoRA-tuned model against the untuned model
    prompted in context. The tuned side is a run's warm-start round: the preset's size, LoRA
    and training settings (over the task's own), on the preset's test slice, unless the
    arguments say otherwise (`settings(group, base)` overlays them). Returns summary.md."""
    from star_al.analysis.probes import confidence_probe
    from star_al.config import merge, preset_values
    from star_al.data.catalog import load_task
    from star_al.data.tasks import load_examples
    from star_al.runs import load_model

    task = load_task(args.task)
    preset = merge({"train": TrainSettings(**task.training)}, preset_values(args.preset, task.name))
    limit = args.limit or preset.get("test_limit")
    if limit is not None and limit <= 0:
        raise StarError(f"--limit must be positive, got {limit}")
    test = load_examples(task, "test", data_root=args.data_root, data_dir=args.data)[:limit]
    train_pool = load_examples(task, "train", data_root=args.data_root, data_dir=args.data)
    confidence_probe(load_model(args.model, machine), task, train_pool, test,
                     settings("lora", preset.get("lora") or LoraSettings()), settings("train", preset["train"]),
                     args.n_train or preset["warm_start"], args.k_shot, args.seed, out, batch_size=args.batch_size)
    return (out / "summary.md").read_text()
