"""Side measurements behind the README's performance notes and the full fine-tuning lr.

`star bench` gives the headline figures; these are the one-off experiments that explain
them. Each prints its figures; timings compare only within one run on one machine.

    .venv/bin/python scripts/measure.py scoring-profile    # where a scoring pass spends its time; LoRA branch cost
    .venv/bin/python scripts/measure.py training-profile   # where a LoRA step spends its time; eager vs sdpa attention
    .venv/bin/python scripts/measure.py mc-dropout         # 3 MC passes with real dropout masks vs identity (1 thread)
    .venv/bin/python scripts/measure.py train-prefix       # a BoolQ step with and without the shared-prefix cache
    .venv/bin/python scripts/measure.py kernels            # dropout masks, random words and AdamW: torch's way and ours
    .venv/bin/python scripts/measure.py compile            # torch.compile(dynamic=True) on a scoring pass (minutes)
    .venv/bin/python scripts/measure.py full-ft-lr 1e-4 3e-5 1e-5   # full fine-tuning lr on 16 and 64 sst2 labels
    .venv/bin/python scripts/measure.py full-ft-lr --schedule cpu 1e-4 5e-5 2e-5   # the same on the cpu preset's schedule
    .venv/bin/python scripts/measure.py peft-methods 1e-3 1e-2 3e-2  # a cpu round: LoRA, DoRA (lr 1e-3), IA3 (each lr)
    .venv/bin/python scripts/measure.py trec-learnability   # trec: zero-shot, after 64 and 256 random labels (cpu)
    .venv/bin/python scripts/measure.py trec-learnability --task my-trec.yaml --seeds 0 1 2   # another prompt, 3 draws
    .venv/bin/python scripts/measure.py trec-learnability --sizes 96 --train-seeds 0 1 2 --lr 1e-3 --no-zero-shot
        # a trec schedule: the cpu preset's with lr 1e-3, 3 training runs on the same 96 labels

Data from $STAR_DATA_ROOT (default ../shared/data), model cache from $STAR_CACHE; --model
loads another backbone (a name, a model directory or a .gguf file) instead of SmolLM2-135M.
"""

import argparse
import os
import random
import time

import torch

from star_al.models.backbones import load_backbone
from star_al.data.batching import encode_pair, left_pad
from star_al.bench import our_training_step
from star_al.engine.evaluation import evaluate
from star_al.models.fast_lora import replace_lora_dropout
from star_al.models.hardware import choose_placement
from star_al.engine.scoring import ScoringOptions, cache_argument, score_examples, shared_prefix_length
from star_al.config import LoraSettings, TrainSettings
from star_al.data.catalog import load_task
from star_al.data.tasks import load_examples
from star_al.engine.training import (adamw, answer_only_batch, autocast_context, optimizer_groups, train_adapter,
                                     train_full, training_attention)
from star_al.models.adapters import LORA, full_copy

DATA = os.environ.get("STAR_DATA_ROOT", "../shared/data")


def best_of(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def scoring_adapter(backbone):
    """A trained-looking r-64 adapter (B not zero), in eval mode and the base dtype, as in the bench."""
    model = LORA.attach(backbone.model, LoraSettings(), seed=0)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.01)
    model.eval()
    LORA.to_base_dtype(model)
    return model


def scoring_profile(backbone):
    task = load_task("boolq")
    examples = load_examples(task, "train", data_root=DATA)[:96]
    model, options = scoring_adapter(backbone), ScoringOptions(batch_size=32)
    run = lambda: score_examples(model, backbone.tokenizer, task, examples, options)  # noqa: E731
    print(f"one pass, adapter on: {best_of(run):.2f} s")
    with model.disable_adapter():
        print(f"one pass, adapter disabled: {best_of(run):.2f} s")
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    print_matmul_share(prof)


def print_matmul_share(prof) -> None:
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    matmuls = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm_", "aten::addmm", "aten::bmm"))
    print(f"matrix multiplies: {100 * matmuls / total:.0f}% of the profiled CPU time")


def lora_step(backbone, task_name: str):
    """Our LoRA step (the bench's) over 8 training examples of the task: (adapter model, step)."""
    task = load_task(task_name)
    examples = load_examples(task, "train", data_root=DATA)[:8]
    model, step, _ = our_training_step(backbone.model, backbone.tokenizer, examples, 8)
    return model, step


def training_profile(backbone):
    from torch.profiler import ProfilerActivity, profile
    for task_name in ("boolq", "sst2", "gsm8k"):
        model, step = lora_step(backbone, task_name)
        for _ in range(3):  # alternate, so that machine noise hits both
            print(task_name, f"sdpa {best_of(step):.3f} s", end="; ")
            with training_attention(model):
                print(f"eager {best_of(step):.3f} s")
        if task_name == "boolq":  # our step, as training runs it (eager attention)
            with training_attention(model), profile(activities=[ProfilerActivity.CPU]) as prof:
                step()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
            print_matmul_share(prof)
        LORA.detach(model)


def mc_dropout(backbone):
    torch.set_num_threads(1)
    task = load_task("boolq")
    examples = load_examples(task, "train", data_root=DATA)[:32]
    model = scoring_adapter(backbone)
    run = lambda passes: score_examples(model, backbone.tokenizer, task, examples, ScoringOptions(passes=passes))  # noqa: E731
    print(f"one pass: {best_of(lambda: run(1), 1):.2f} s; 3 MC passes: {best_of(lambda: run(3), 1):.2f} s")

    class KeepAll(torch.nn.Dropout):  # still "dropout on" for the scoring code, but draws no mask
        def forward(self, x):
            return x

    replace_lora_dropout(model, KeepAll)
    print(f"3 passes with dropout replaced by identity: {best_of(lambda: run(3), 1):.2f} s")


def train_prefix(backbone):
    model, plain_step = lora_step(backbone, "boolq")
    task = load_task("boolq")
    encoded = [encode_pair(backbone.tokenizer, ex.prompt, ex.target)
               for ex in load_examples(task, "train", data_root=DATA)[:8]]
    *_, targets = answer_only_batch(encoded, backbone.tokenizer.pad_token_id, "cpu")
    shared = shared_prefix_length([e.prompt_ids for e in encoded], [[0], [1]])
    optimizer = adamw(optimizer_groups(model, 0.5), lr=1e-4)

    def prefix_step():  # the prefix once, with gradients through its cached keys and values
        with autocast_context(model):
            output = model(input_ids=torch.tensor([encoded[0].prompt_ids[:shared]]), use_cache=True, logits_to_keep=1)
            cache = output.get(cache_argument())
            cache.batch_repeat_interleave(len(encoded))
            ids, mask, positions = left_pad([e.prompt_ids[shared:] + e.target_ids for e in encoded],
                                            backbone.tokenizer.pad_token_id, "cpu")
            mask = torch.cat([mask.new_ones(len(encoded), shared), mask], 1)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions + shared, use_cache=True,
                           logits_to_keep=targets.shape[1] + 1, **{cache_argument(): cache}).logits[:, :-1]
            loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                                     targets.reshape(-1), ignore_index=-100)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    print(f"shared prefix: {shared} tokens")
    with training_attention(model):
        for _ in range(3):
            print(f"plain step {best_of(plain_step):.3f} s; prefix step {best_of(prefix_step):.3f} s")


def compile_scoring(backbone):
    task = load_task("boolq")
    examples = load_examples(task, "train", data_root=DATA)[:32]
    model = scoring_adapter(backbone)
    run = lambda: score_examples(model, backbone.tokenizer, task, examples, ScoringOptions())  # noqa: E731
    print(f"eager one pass: {best_of(run, 1):.2f} s")
    inner = model.base_model.model.model
    inner.forward = torch.compile(inner.forward, dynamic=True)
    start = time.perf_counter()
    run()
    print(f"first compiled pass (compiles): {time.perf_counter() - start:.0f} s; "
          f"compiled one pass: {best_of(run, 1):.2f} s")


def full_ft_lr(backbone, rates, schedule):
    """Full fine-tuning of 16 and 64 sst2 labels at each rate, on a preset's LoRA schedule
    (`cpu-v1`: 3 epochs, first 300 test sentences; `cpu`: at least 48 steps, 10% warm-up,
    the whole test set), so that the preset's `full_train` moves every weight on the same
    schedule as its LoRA runs and differs only in its rate."""
    from dataclasses import replace

    from star_al.config import PRESETS

    lora_schedule = PRESETS[schedule]["train"]
    task = load_task("sst2")
    train = load_examples(task, "train", data_root=DATA)
    test = load_examples(task, "test", data_root=DATA)[:300 if schedule == "cpu-v1" else None]
    pool = random.Random(0).sample(train, 400)
    for n in (16, 64):
        for lr in rates:
            model = full_copy(backbone.model)
            result = train_full(model, backbone.model.dtype, backbone.tokenizer, task, pool[:n],
                                replace(lora_schedule, learning_rate=lr), 0, desc=None)
            _, summary = evaluate(model, backbone.tokenizer, task, test, 32, desc=None)
            print(f"{n} labels, lr {lr:g}: {result.steps} steps in {result.seconds:.0f} s, accuracy "
                  f"{summary['accuracy']:.3f} on {len(test)} test sentences", flush=True)
            del model


def peft_methods(backbone, ia3_rates):
    """One `cpu-v1`-preset training round (32 sst2 labels, r 64, 3 epochs, batch 8) per adapter method:
    its time, last loss and accuracy on the first 200 test examples; LoRA and DoRA at that preset's
    lr 1e-3, IA3 at each of `ia3_rates` (it scales rather than adds, and wants a larger step)."""
    from star_al.models.adapters import ADAPTERS

    task = load_task("sst2")
    labeled = load_examples(task, "train", data_root=DATA)[:32]
    test = load_examples(task, "test", data_root=DATA)[:200]
    for name, lr in [("lora", 1e-3), ("dora", 1e-3)] + [("ia3", rate) for rate in ia3_rates]:
        method = ADAPTERS.get(name)
        model = method.attach(backbone.model, LoraSettings(), seed=0)
        result = train_adapter(model, backbone.tokenizer, task, labeled,
                               TrainSettings(epochs=3, batch_size=8, learning_rate=lr), 0, desc=None)
        _, summary = evaluate(model, backbone.tokenizer, task, test, 32, desc=None)
        print(f"{name} lr {lr:g}: {result.steps} steps in {result.seconds:.1f} s, loss {result.losses[0]:.2f} -> "
              f"{result.losses[-1]:.2f}, accuracy {100 * summary['accuracy']:.1f}%", flush=True)
        method.detach(model)


def kernels(backbone):
    """Per-value cost of LoRA dropout masks and per-word cost of random words, on a BoolQ
    MC batch's LoRA input (96 rows x 24 tokens x 576, bf16), and one AdamW step over the
    r-64 adapter: torch's default against ours."""
    import numpy as np

    from star_al.models.fast_lora import drop_inputs

    x = torch.randn(96, 24, 576).to(backbone.model.dtype)
    keep = torch.rand(x.shape) > 0.1
    words = torch.empty(x.numel() // 4, dtype=torch.int64)
    per_value = lambda fn: 1e9 * best_of(fn, 20) / x.numel()  # noqa: E731
    per_word = lambda fn: 1e9 * best_of(fn, 20) / words.numel()  # noqa: E731
    print(f"dropout mask, ns per value: nn.functional.dropout {per_value(lambda: torch.nn.functional.dropout(x, 0.1)):.2f}"
          f" (torch.where alone {per_value(lambda: torch.where(keep, x, 0)):.2f}); "
          f"ours (drop_inputs) {per_value(lambda: drop_inputs(x, 0.1)):.2f}")
    generator = np.random.SFC64(0)
    print(f"random 64-bit words, ns each: torch random_ {per_word(lambda: words.random_(-2 ** 63, 2 ** 63 - 1)):.2f}; "
          f"NumPy SFC64 {per_word(lambda: generator.random_raw(words.numel())):.2f}")
    model = LORA.attach(backbone.model, LoraSettings(), seed=0)
    for param in model.parameters():
        if param.requires_grad:
            param.grad = torch.randn_like(param)
    tensors = sum(p.requires_grad for p in model.parameters())
    plain, fused = torch.optim.AdamW(optimizer_groups(model, 0.5), lr=1e-4), adamw(optimizer_groups(model, 0.5), lr=1e-4)
    print(f"AdamW step over the {tensors} adapter tensors: torch default {1e3 * best_of(plain.step, 10):.1f} ms; "
          f"ours (fused) {1e3 * best_of(fused.step, 10):.1f} ms")
    LORA.detach(model)


def trec_learnability(backbone, model_name: str, task_name: str, sizes, seeds, test_limit, out,
                      schedule: dict | None = None, train_seeds=None, zero_shot: bool = True):
    """Whether the backbone learns a label task (TREC unless `task_name` says otherwise) before an
    AL comparison is spent on it: test accuracy zero-shot and after training on each of `sizes`
    random labels (nested draws from the train split, one per seed), trained as a `cpu`-preset
    random run trains a round (its LoRA and schedule, a fresh adapter, no B decay), or on the
    `cpu` preset with `schedule`'s training settings changed. Per class too, and what the model
    answers: a model that answers the majority class scores that class's share. With
    `train_seeds`, each draw is trained once per training seed (adapter init, dropout, batch
    order) on the same labels: the spread over them is the training run's own luck, what the
    variance study chose the `cpu` preset's schedule by. The figures go to `out` as JSON,
    rewritten after each measurement."""
    import json
    import math
    from dataclasses import asdict

    import numpy as np
    from pathlib import Path

    from star_al.al.run_config import resolve_config
    from star_al.analysis.classes import balanced_accuracy, class_accuracy, label_counts
    from star_al.files import write_json_atomic

    task = load_task(task_name)
    train = load_examples(task, "train", data_root=DATA)
    test = load_examples(task, "test", data_root=DATA)[:test_limit]
    golds = [ex.gold for ex in test]

    def measured(model, name: str) -> dict:
        start = time.perf_counter()
        scores, summary = evaluate(model, backbone.tokenizer, task, test, 32, desc=None)
        per_class = class_accuracy(scores.correct, golds, task.labels)
        figures = {"accuracy": summary["accuracy"], "balanced_accuracy": balanced_accuracy(per_class),
                   "per_class": {label: None if math.isnan(value) else value for label, value in per_class.items()},
                   "predicted": label_counts(scores.predictions, task.labels),
                   "eval_seconds": time.perf_counter() - start}
        print(f"{name}: accuracy {100 * figures['accuracy']:.1f}%, balanced {100 * figures['balanced_accuracy']:.1f}%"
              f" ({figures['eval_seconds']:.0f} s)\n  per class: "
              + ", ".join(f"{label} {100 * value:.1f}%" for label, value in per_class.items())
              + "\n  answers: " + ", ".join(f"{label} {n}" for label, n in figures["predicted"].items()), flush=True)
        return figures

    test_counts = label_counts(golds, task.labels)
    print(f"{task.name}: {len(train)} train, {len(test)} test questions ("
          + ", ".join(f"{label} {n}" for label, n in test_counts.items()) + ")", flush=True)
    tag = "".join(f"-{key}{value:g}" for key, value in sorted((schedule or {}).items()))
    out = Path(out or Path("docs/results/trec-learnability") / f"{task.name}-{Path(model_name).name}{tag}.json")

    def save():  # after every measurement, so that an interrupted run keeps what it measured
        write_json_atomic(out, json.loads(json.dumps(result, default=float)))

    result = {"task": task.name, "task_file": task.source, "prompt": task.prompt, "model": model_name,
              "dtype": str(backbone.model.dtype).removeprefix("torch."), "n_test": len(test),
              "test_counts": test_counts, "zero_shot": measured(backbone.model, "zero-shot") if zero_shot else None,
              "trained": []}
    save()
    for seed in seeds:
        config = resolve_config(task, "random", "cpu", seed, {}, {"train": schedule or {}})
        result.setdefault("lora", asdict(config.lora))
        result.setdefault("train", asdict(config.train))
        drawn = random.Random(seed).sample(train, max(sizes))
        for n in sorted(sizes):
            labeled = drawn[:n]
            for train_seed in train_seeds or [seed]:
                model = LORA.attach(backbone.model, config.lora, train_seed * 1000)  # seeded as a run's round 0 is
                trained = train_adapter(model, backbone.tokenizer, task, labeled, config.train, train_seed * 1000,
                                        desc=None)
                figures = measured(model, f"seed {seed}, train seed {train_seed}, {n} random labels "
                                          f"({trained.steps} steps in {trained.seconds:.0f} s, last loss "
                                          f"{trained.losses[-1]:.2f})")
                result["trained"].append({"seed": seed, "train_seed": train_seed, "n_labels": n,
                                          "label_counts": label_counts([ex.gold for ex in labeled], task.labels),
                                          "train_steps": trained.steps, "train_seconds": trained.seconds,
                                          "loss_first": trained.losses[0], "loss_last": trained.losses[-1],
                                          "loss_mean_last_epoch": float(np.mean(trained.losses[-math.ceil(n / config.train.batch_size):])),
                                          **figures})
                save()
                LORA.detach(model)
    print(f"written: {out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["scoring-profile", "training-profile", "mc-dropout", "train-prefix",
                                         "kernels", "compile", "full-ft-lr", "peft-methods", "trec-learnability"])
    parser.add_argument("rates", nargs="*", type=float, default=None)
    parser.add_argument("--model", default="smollm2-135m",
                        help="the backbone: a name, a model directory or a .gguf file")
    parser.add_argument("--task", default="trec", help="trec-learnability: the label task, a name or a task YAML")
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 256],
                        help="trec-learnability: numbers of random training labels")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="trec-learnability: one draw per seed")
    parser.add_argument("--test-limit", type=int, default=None, help="trec-learnability: the first N test questions")
    parser.add_argument("--train-seeds", nargs="+", type=int, default=None,
                        help="trec-learnability: train each draw once per training seed (default: the draw's seed)")
    parser.add_argument("--lr", type=float, default=None, help="trec-learnability: the cpu preset's peak lr, changed")
    parser.add_argument("--min-steps", type=int, default=None, help="trec-learnability: its least steps a round")
    parser.add_argument("--epochs", type=int, default=None, help="trec-learnability: its epochs")
    parser.add_argument("--zero-shot", action=argparse.BooleanOptionalAction, default=True,
                        help="trec-learnability: also measure the untuned model")
    parser.add_argument("--out", default=None, help="trec-learnability: the JSON file "
                        "(default docs/results/trec-learnability/TASK-MODEL.json)")
    parser.add_argument("--schedule", choices=["cpu-v1", "cpu"], default="cpu-v1",
                        help="full-ft-lr: the preset whose LoRA schedule the rates are tried on")
    args = parser.parse_intermixed_args()
    backbone = load_backbone(args.model, choose_placement(None, None))
    if args.what == "trec-learnability":
        schedule = {key: value for key, value in (("learning_rate", args.lr), ("min_steps", args.min_steps),
                                                  ("epochs", args.epochs)) if value is not None}
        trec_learnability(backbone, args.model, args.task, args.sizes, args.seeds, args.test_limit, args.out,
                          schedule, args.train_seeds, args.zero_shot)
    elif args.what == "full-ft-lr":
        full_ft_lr(backbone, args.rates or [1e-4, 3e-5, 1e-5], args.schedule)
    elif args.what == "peft-methods":
        peft_methods(backbone, args.rates or [1e-3, 1e-2, 3e-2])
    else:
        {"scoring-profile": scoring_profile, "training-profile": training_profile, "mc-dropout": mc_dropout,
         "train-prefix": train_prefix, "kernels": kernels, "compile": compile_scoring}[args.what](backbone)


if __name__ == "__main__":
    main()
