"""`star bench`: our scoring and training paths against the machine's limit and the plain way.

Every figure is measured in one process on one machine, side by side: the matmul peak,
our pool scoring (one deterministic pass and K MC-dropout passes), the naive research
script way of scoring (one example at a time, fp32, full-vocabulary softmax at every
answer position in a Python loop, K passes one after the other), our LoRA training step
against a plain fp32 transformers loop and against the other adapter methods' steps
(LoRA on PEFT's forward, DoRA, IA3), and greedy generation. Fractions of peak use
FLOPs per token = 2 x the non-embedding parameters (+ attention), plus the output head
only where logits are computed, plus 2 x the LoRA weights; a training token counts twice
its base forward FLOPs and three times its LoRA ones. The `*_base_only` fractions leave
the LoRA FLOPs out (for a 7B base they are about 3%; for SmolLM2 at r 64 about 18%).

The bench is time-boxed: each stage repeats its side-by-side turns only while its share of
the plan's seconds lasts (at least one turn), and prints its figures with the time since
the start as soon as they are measured, so an interrupted bench still says something. On
a CPU where bf16 is emulated (AVX2 only: about 1 GFLOP/s) the bf16 peak comes from small
matmuls and no large bf16 matmul runs. `--quick` measures the headline figures only.
"""

from __future__ import annotations

import gc
import resource
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from star_al.data.batching import encode_pair, encode_prompt, length_buckets
from star_al.errors import StarError
from star_al.models.hardware import cpu_bf16_is_fast, device_name
from star_al.config import LoraSettings
from star_al.models.adapters import ADAPTERS, LORA
from star_al.engine.scoring import ScoringOptions, mc_dropout_active, score_examples, shared_prefix_length
from star_al.engine.training import (adamw, answer_loss, answer_only_batch, autocast_context, optimizer_groups,
                                     training_attention)


def _sync(device: str) -> None:
    """Wait for queued GPU work, so wall time measures it (a no-op on the CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def matmul_gflops(dtype: torch.dtype, size: int = 2048, seconds: float = 1.0, device: str = "cpu",
                  windows: int = 5) -> float:
    """Sustained GFLOP/s of size x size matmuls in dtype: the best of `windows` windows
    that share about `seconds` (on a shared machine one window can catch a slow spell,
    and a low peak would flatter every fraction of it)."""
    if device.startswith("cuda"):
        size = max(size, 8192)  # a 2048 matmul is launch-bound on a GPU
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.mm(a, b)
    _sync(device)
    best = 0.0
    for _ in range(windows):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / windows or count < 2:
            torch.mm(a, b)
            count += 1
            _sync(device)
        best = max(best, 2 * size ** 3 * count / (time.perf_counter() - start) / 1e9)
    return best


def model_shape(model) -> dict:
    """Parameter counts that decide FLOPs per token."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    head = model.get_output_embeddings().weight
    embed = model.get_input_embeddings().weight
    total = sum(p.numel() for p in model.parameters())
    tied = head.data_ptr() == embed.data_ptr()
    body = total - embed.numel() - (0 if tied else head.numel())
    return {"body_params": body, "head_params": head.numel(), "layers": config.num_hidden_layers,
            "hidden": config.hidden_size}


def forward_flops(shape: dict, lengths: list[int], logit_positions: int, shared: int = 0) -> float:
    """2 x body params per token, attention 4 x layers x hidden x context per token, head where used.

    `shared` leading tokens common to every sequence are counted once (a cached prefix).
    """
    def attention(n: int) -> float:  # over positions 0..n-1, each attending to itself and all before it
        return 4 * shape["layers"] * shape["hidden"] * n * (n + 1) / 2

    tokens = sum(n - shared for n in lengths) + shared
    attended = sum(attention(n) - attention(shared) for n in lengths) + attention(shared)
    return 2 * shape["body_params"] * tokens + attended + 2 * shape["head_params"] * logit_positions


def adapter_weight_count(peft_model) -> int:
    """Weights of the LoRA branches: a token costs 2 FLOPs per weight in a forward pass.

    Training costs 3 times that (forward, input gradient, weight gradient), against 2
    times for the frozen base (no weight gradient).
    """
    return sum(p.numel() for name, p in peft_model.named_parameters() if LORA.is_adapter_parameter(name))


def _timed(fn, warmup: bool = True, device: str = "cpu", repeats: int = 1, seconds: float | None = None):
    """Best wall time of `repeats` calls (after one warm-up call unless told otherwise), and a result."""
    (best,), (result,) = _taking_turns([fn], repeats, device, warmup, seconds)
    return best, result


def _taking_turns(fns, rounds: int, device: str = "cpu", warmup: bool = True, seconds: float | None = None):
    """Best wall time of each of `fns` over up to `rounds` rounds in which they take turns,
    and each one's last result; no new round starts once `seconds` have passed (one always runs).

    The best of several is the figure least disturbed by whatever else the machine does,
    and taking turns puts both sides of a ratio under the same conditions: on a shared
    machine the speed drifts by 20% within a minute.
    """
    started = time.perf_counter()
    results = [fn() for fn in fns] if warmup else [None] * len(fns)
    best = [float("inf")] * len(fns)
    for turn in range(rounds):
        if turn and seconds is not None and time.perf_counter() - started >= seconds:
            break
        for index, fn in enumerate(fns):
            _sync(device)
            start = time.perf_counter()
            results[index] = fn()
            _sync(device)
            best[index] = min(best[index], time.perf_counter() - start)
    return best, results


@dataclass(frozen=True)
class BenchPlan:
    """What the bench measures and how long each stage may repeat its turns.

    `stage_seconds` is each stage's share: a stage stops starting new turns once it is
    spent, so the whole bench takes about their sum plus one turn of each stage and the
    model loading. `naive` and `adapters` False leave those stages out (the quick plan).
    """

    examples: int = 96
    passes: int = 3
    naive_examples: int = 24
    train_steps: int = 3
    train_batch: int = 8
    gen_examples: int = 8
    max_new_tokens: int = 64
    repeats: int = 5
    peak_seconds: float = 2.0
    naive: bool = True
    adapters: bool = True
    stage_seconds: dict = field(default_factory=lambda: {"scoring": 60.0, "training": 45.0, "adapters": 40.0})

    def seconds(self, stage: str) -> float | None:
        return self.stage_seconds.get(stage)


# The headline figures (peak, scoring, MC cost, our step against the plain one, generation)
# in about a minute and a half on 2 AVX2 cores with SmolLM2-135M.
QUICK = BenchPlan(examples=32, passes=3, naive_examples=0, train_steps=1, train_batch=8, gen_examples=4,
                  max_new_tokens=32, repeats=3, peak_seconds=1.0, naive=False, adapters=False,
                  stage_seconds={"scoring": 15.0, "training": 10.0})

# On a slow-bf16 CPU the (unused) bf16 peak is measured on matmuls this small: one takes
# about 30 ms at the emulated 1 GFLOP/s.
SMALL_MATMUL = 256


class _Clock:
    """Seconds since the bench started, prefixed to every line it prints."""

    def __init__(self, log):
        self.started, self.log = time.perf_counter(), log

    def __call__(self, stage: str, message: str) -> None:
        self.log(f"[{time.perf_counter() - self.started:6.1f} s] {stage}: {message}")

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


@torch.inference_mode()
def naive_scores(model, tokenizer, task, examples, passes: int = 1) -> np.ndarray:
    """The research-script way: one example at a time, full logits, a Python loop over the
    answer positions with a full-vocabulary softmax at each. Returns ME, shape [passes, n]."""
    scores = np.zeros((passes, len(examples)))
    for k in range(passes):
        for row, example in enumerate(examples):
            pair = encode_pair(tokenizer, example.prompt, example.target)
            ids = torch.tensor([pair.prompt_ids + pair.target_ids], device=model.device)
            logits = model(input_ids=ids).logits[0].float()
            entropy = 0.0
            for offset in range(len(pair.target_ids) if task.answer_type != "label" else 1):
                probs = torch.softmax(logits[len(pair.prompt_ids) + offset - 1], dim=-1)
                entropy += float(-(probs * torch.log(probs + 1e-30)).sum())
            scores[k, row] = entropy
    return scores


def plain_training_step_seconds(model, tokenizer, examples, steps: int, batch_size: int) -> tuple[float, int]:
    """A plain fp32 transformers loop: full logits, HF's label-masked loss, PEFT defaults."""
    peft_model = LORA.attach(model, LoraSettings(), seed=0, fast=False)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)
    peft_model.train()
    tokenizer.padding_side = "right"
    batch_texts = [(ex.prompt, ex.target) for ex in examples[:batch_size]]
    full = tokenizer([p + t for p, t in batch_texts], return_tensors="pt", padding=True).to(peft_model.device)
    labels = full.input_ids.clone()
    for row, (prompt, _) in enumerate(batch_texts):
        labels[row, : len(tokenizer(prompt).input_ids)] = -100
    labels[full.attention_mask == 0] = -100
    tokenizer.padding_side = "left"

    def step():
        loss = peft_model(**full, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()  # warm-up: one step, not `steps`
    seconds, _ = _timed(lambda: [step() for _ in range(steps)], warmup=False, device=str(labels.device))
    LORA.detach(peft_model)
    return seconds / steps, int(full.attention_mask.sum())


def our_training_step(model, tokenizer, examples, batch_size: int, method=LORA, fast: bool = True):
    """Our step: bf16 autocast where fast, the adapter fp32, logits only at the answer positions.

    Returns (the model with a fresh adapter of `method`, a callable running one step, tokens per step);
    `fast` False keeps PEFT's own forward (for LoRA: without the fused one).
    """
    peft_model = method.attach(model, LoraSettings(), seed=0, fast=fast)
    optimizer = adamw(optimizer_groups(peft_model, 0.5, method), lr=1e-4)
    peft_model.train()
    encoded = [encode_pair(tokenizer, ex.prompt, ex.target) for ex in examples[:batch_size]]
    *inputs, targets = answer_only_batch(encoded, tokenizer.pad_token_id, next(model.parameters()).device)

    def step():
        with autocast_context(peft_model):
            loss = answer_loss(peft_model, *inputs, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return peft_model, step, sum(len(e.prompt_ids) + len(e.target_ids) for e in encoded)


def our_training_step_seconds(model, tokenizer, examples, steps: int, batch_size: int, method=LORA,
                              fast: bool = True) -> tuple[float, int]:
    """Seconds per step of `our_training_step` (eager attention on CPU, as training runs it), and its tokens."""
    peft_model, step, tokens = our_training_step(model, tokenizer, examples, batch_size, method, fast)
    with training_attention(peft_model):
        step()  # warm-up: one step, not `steps`
        seconds, _ = _timed(lambda: [step() for _ in range(steps)], warmup=False,
                            device=str(next(model.parameters()).device))
    method.detach(peft_model)
    return seconds / steps, tokens


def measure_peaks(device: str, seconds: float, clock) -> tuple[float, float, bool]:
    """fp32 and bf16 matmul peaks in GFLOP/s, and whether bf16 is the fast dtype here.

    Whether bf16 is fast is the run's own test (hardware.cpu_bf16_is_fast) and comes
    first: where it is slow the bf16 peak is measured on small matmuls only.
    """
    fp32_peak = matmul_gflops(torch.float32, seconds=seconds, device=device)
    bf16_fast = device != "cpu" or cpu_bf16_is_fast()
    bf16_peak = matmul_gflops(torch.bfloat16, size=2048 if bf16_fast else SMALL_MATMUL,
                              seconds=seconds if bf16_fast else min(seconds, 0.5), device=device,
                              windows=5 if bf16_fast else 2)
    clock("matmul peak", f"fp32 {fp32_peak:.0f} GFLOP/s, bf16 {bf16_peak:.0f} GFLOP/s "
                         + ("(peak dtype bfloat16)" if bf16_fast else
                            f"on {SMALL_MATMUL}x{SMALL_MATMUL} (bf16 is slow here: peak dtype float32)"))
    return fp32_peak, bf16_peak, bf16_fast


def run_bench(backbone, fp32_backbone, task, examples, gen_task, gen_examples, plan: BenchPlan = BenchPlan(),
              log=print) -> dict:
    """Measure everything `plan` names side by side; returns the flat figure dict `star bench --json`
    prints. `log` gets each stage's figures as soon as they are measured."""
    clock = _Clock(log)
    tokenizer = backbone.tokenizer
    device = backbone.placement.device
    examples = examples[:plan.examples]
    fp32_peak, bf16_peak, bf16_fast = measure_peaks(device, plan.peak_seconds, clock)
    peak_dtype = "bfloat16" if bf16_fast else "float32"
    peak = (bf16_peak if bf16_fast else fp32_peak) * 1e9
    shape = model_shape(backbone.model)
    prompts = [encode_prompt(tokenizer, ex.prompt) for ex in examples]
    lengths = [len(p) for p in prompts]
    options = ScoringOptions(batch_size=32)
    shared = shared_prefix_length(prompts, length_buckets(lengths, options.batch_size))
    score_flops = forward_flops(shape, lengths, len(examples), shared)

    peft_model = LORA.attach(backbone.model, LoraSettings(), seed=0)
    for name, param in peft_model.named_parameters():  # a trained-looking adapter, not B = 0
        if LORA.is_decayed(name):
            torch.nn.init.normal_(param, std=0.01)
    peft_model.eval()
    LORA.to_base_dtype(peft_model)
    computed_tokens = sum(lengths) - shared * (len(lengths) - 1)
    adapter_flops_per_token = 2 * adapter_weight_count(peft_model)
    clock("scoring", f"{len(examples)} examples, {plan.passes} passes and {plan.passes} MC passes a turn, "
                     f"turns for up to {plan.seconds('scoring'):.0f} s")
    # Warm-up on a few examples (first-call setup is not throughput), then one pass timed as
    # `passes` passes back to back, divided by `passes`: both sides of the MC ratio then span
    # the same time (the best of short runs catches the machine's fast spells more often
    # than the best of long ones).
    score_examples(peft_model, tokenizer, task, examples[:8], replace(options, passes=plan.passes))
    torch.manual_seed(0)
    (passes_time, mc_time), _ = _taking_turns(
        [lambda: [score_examples(peft_model, tokenizer, task, examples, options) for _ in range(plan.passes)][-1],
         lambda: score_examples(peft_model, tokenizer, task, examples, replace(options, passes=plan.passes))],
        rounds=plan.repeats, device=device, warmup=False, seconds=plan.seconds("scoring"))
    one_pass = passes_time / plan.passes
    figures = {
        "peak_dtype": peak_dtype, "bf16_fast": bf16_fast, "matmul_gflops_fp32": fp32_peak,
        "matmul_gflops_bf16": bf16_peak, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(), "scoring_examples": len(examples),
        "scoring_tokens": sum(lengths),
        "scoring_shared_prefix": shared,
        "scoring_computed_tokens": computed_tokens,
        "scoring_examples_per_s": len(examples) / one_pass,
        "scoring_tokens_per_s": sum(lengths) / one_pass,
        "scoring_fraction_of_peak": (score_flops + adapter_flops_per_token * computed_tokens) / one_pass / peak,
        "scoring_fraction_of_peak_base_only": score_flops / one_pass / peak,
        "mc_passes": plan.passes, "mc_examples_per_s": len(examples) / mc_time,
        "mc_cost_ratio": mc_time / one_pass,
    }
    clock("scoring", f"one pass {figures['scoring_examples_per_s']:.1f} examples/s, "
                     f"{figures['scoring_tokens_per_s']:.0f} tokens/s ({shared}-token shared prefix computed once), "
                     f"{100 * figures['scoring_fraction_of_peak']:.1f}% of peak on the computed tokens "
                     f"({100 * figures['scoring_fraction_of_peak_base_only']:.1f}% counting the base model only); "
                     f"{plan.passes} MC passes cost {figures['mc_cost_ratio']:.2f}x one pass")

    naive = plan.naive and plan.naive_examples > 0
    if naive:
        figures.update(_naive_reference(backbone, fp32_backbone, peft_model, task, examples[:plan.naive_examples],
                                        options, plan.passes, clock))
        figures["scoring_speedup_vs_naive"] = figures["scoring_examples_per_s"] / figures["naive_examples_per_s"]
        figures["mc_speedup_vs_naive"] = figures["mc_examples_per_s"] / figures["naive_mc_examples_per_s"]
        clock("naive reference", f"ours/naive {figures['scoring_speedup_vs_naive']:.1f}x "
                                 f"(MC {figures['mc_speedup_vs_naive']:.1f}x)")
    if fp32_backbone.model is not backbone.model or not naive:
        LORA.detach(peft_model)
    gc.collect()

    # Training: our step against the plain fp32 loop, same examples and batch.
    # A fresh adapter per turn: the fp32 model may be the base itself, which takes one at a time.
    clock("training", f"our LoRA step against the plain fp32 loop, {plan.train_steps} steps of batch "
                      f"{plan.train_batch} a turn, turns for up to {plan.seconds('training'):.0f} s")
    turns, started = [], time.perf_counter()
    while not turns or (len(turns) < plan.repeats and time.perf_counter() - started < plan.seconds("training")):
        turns.append((our_training_step_seconds(backbone.model, tokenizer, examples, plan.train_steps,
                                                plan.train_batch),
                      plain_training_step_seconds(fp32_backbone.model, tokenizer, examples, plan.train_steps,
                                                  plan.train_batch)))
    (ours_step, ours_tokens), (plain_step, plain_tokens) = (min(side) for side in zip(*turns))
    train_lengths = [len(encode_pair(tokenizer, ex.prompt, ex.target).prompt_ids) + 1
                     for ex in examples[:plan.train_batch]]
    train_flops = 2 * forward_flops(shape, train_lengths, 2 * plan.train_batch)
    train_adapter_flops = 3 * adapter_flops_per_token * sum(train_lengths)
    figures.update({
        "training_step_s_lora": ours_step,
        "training_tokens_per_s": ours_tokens / ours_step,
        "plain_training_tokens_per_s": plain_tokens / plain_step,
        "training_speedup_vs_plain": plain_step / ours_step,
        "training_fraction_of_peak": (train_flops + train_adapter_flops) / ours_step / peak,
        "training_fraction_of_peak_base_only": train_flops / ours_step / peak,
    })
    clock("training", f"LoRA (r 64, batch {plan.train_batch}) {figures['training_tokens_per_s']:.0f} tokens/s, "
                      f"{ours_step:.2f} s a step, {100 * figures['training_fraction_of_peak']:.1f}% of peak "
                      f"({100 * figures['training_fraction_of_peak_base_only']:.1f}% base only); plain fp32 loop "
                      f"{figures['plain_training_tokens_per_s']:.0f} tokens/s; "
                      f"ours/plain {figures['training_speedup_vs_plain']:.2f}x")

    if plan.adapters:
        figures.update(_adapter_steps(backbone, examples, plan, clock))

    # Generation: batched greedy decoding with the KV cache and early stop.
    from star_al.engine.scoring import generate_greedy

    gen_prompts = [encode_prompt(tokenizer, ex.prompt) for ex in gen_examples[:plan.gen_examples]]
    clock("generation", f"{len(gen_prompts)} {gen_task.name} prompts, up to {plan.max_new_tokens} new tokens")
    generate_greedy(backbone.model, tokenizer, gen_prompts[:1], 2, 1)  # warm-up (first-call setup is not throughput)
    gen_time, responses = _timed(lambda: generate_greedy(backbone.model, tokenizer, gen_prompts, plan.max_new_tokens,
                                                          len(gen_prompts), gen_task.answer_complete),
                                 warmup=False, device=device)
    new_tokens = sum(len(r) for r in responses)
    figures.update({"generation_examples": len(gen_prompts), "generation_new_tokens": new_tokens,
                    "generation_tokens_per_s": new_tokens / gen_time,
                    "device": device, "device_name": device_name(device),
                    "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    if device.startswith("cuda"):  # one GPU's figures: a data-parallel launch of N runs about N times the tokens/s
        figures["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
        clock("gpu", f"per GPU ({figures['device_name']}): training {figures['training_tokens_per_s']:.0f} tokens/s, "
                     f"scoring {figures['scoring_tokens_per_s']:.0f} tokens/s, peak GPU memory "
                     f"{figures['peak_gpu_memory_mb']:.0f} MB (torch.cuda.max_memory_allocated)")
    clock("generation", f"{figures['generation_tokens_per_s']:.0f} new tokens/s; "
                        f"peak memory {figures['peak_memory_mb']:.0f} MB")
    figures["bench_seconds"] = clock.elapsed
    return figures


def _naive_reference(backbone, fp32_backbone, peft_model, task, naive_set, options, passes: int, clock) -> dict:
    """The naive loop on the fp32 model with the same adapter weights, dropout off, against ours."""
    tokenizer = backbone.tokenizer
    device = backbone.placement.device
    clock("naive reference", f"{len(naive_set)} examples one at a time, then {min(8, len(naive_set))} "
                             f"with {passes} passes")
    ours_subset = score_examples(peft_model, tokenizer, task, naive_set, options)
    adapter_weights = {k: v.float() for k, v in peft_model.state_dict().items() if LORA.is_adapter_parameter(k)}
    if fp32_backbone.model is backbone.model:  # an fp32 base: one adapter on it at a time
        LORA.detach(peft_model)
    fp32_peft = LORA.attach(fp32_backbone.model, LoraSettings(), seed=0, fast=False)
    missing = set(adapter_weights) - set(fp32_peft.state_dict())
    assert not missing, f"adapter weights without a place in the fp32 model: {sorted(missing)[:3]}"
    fp32_peft.load_state_dict(adapter_weights, strict=False)
    fp32_peft.eval()
    naive_time, naive = _timed(lambda: naive_scores(fp32_peft, tokenizer, task, naive_set), warmup=False,
                               device=device)
    ours_fp32 = score_examples(fp32_peft, tokenizer, task, naive_set, options)
    mc_set = naive_set[:8]
    with mc_dropout_active(fp32_peft):
        naive_mc_time, _ = _timed(lambda: naive_scores(fp32_peft, tokenizer, task, mc_set, passes),
                                  warmup=False, device=device)
    LORA.detach(fp32_peft)
    figures = {
        "naive_examples_per_s": len(naive_set) / naive_time,
        "naive_mc_examples_per_s": len(mc_set) / naive_mc_time,
        "naive_max_abs_diff_fp32": float(np.abs(ours_fp32.me[0] - naive[0]).max()),
        "naive_max_abs_diff_fast": float(np.abs(ours_subset.me[0] - naive[0]).max()),
    }
    clock("naive reference", f"{figures['naive_examples_per_s']:.1f} examples/s one pass, "
                             f"{figures['naive_mc_examples_per_s']:.2f} with {passes} passes; "
                             f"max |ME diff| fp32 path {figures['naive_max_abs_diff_fp32']:.2e}, "
                             f"fast path {figures['naive_max_abs_diff_fast']:.2e}")
    return figures


def _adapter_steps(backbone, examples, plan: BenchPlan, clock) -> dict:
    """The adapter methods side by side, the same step: LoRA and DoRA on PEFT's forward, IA3
    (r 64 where a rank applies); seconds per training step each."""
    variants = {"lora_peft": (ADAPTERS.get("lora"), False), "dora": (ADAPTERS.get("dora"), True),
                "ia3": (ADAPTERS.get("ia3"), True)}
    clock("adapter methods", f"{', '.join(variants)}: turns for up to {plan.seconds('adapters'):.0f} s")
    turns, started = [], time.perf_counter()
    while not turns or (len(turns) < plan.repeats and time.perf_counter() - started < plan.seconds("adapters")):
        turns.append({name: our_training_step_seconds(backbone.model, backbone.tokenizer, examples, plan.train_steps,
                                                      plan.train_batch, method, fast)[0]
                      for name, (method, fast) in variants.items()})
    steps = {f"training_step_s_{name}": min(turn[name] for turn in turns) for name in variants}
    clock("adapter methods", "seconds per training step: " + ", ".join(
        f"{name.removeprefix('training_step_s_')} {seconds:.3f}" for name, seconds in steps.items()))
    return steps


def bench(args, machine, log=print) -> dict:
    """`star bench`: the figures of run_bench on the model and task the arguments name, or with
    --pool-memory the pool-memory passes of bench_memory, or with --pool-scale bench_scale's runs."""
    from dataclasses import replace as dc_replace

    from star_al.data.catalog import load_task
    from star_al.data.tasks import default_data_root, load_examples
    from star_al.models.backbones import load_backbone
    from star_al.models.hardware import choose_placement
    from star_al.runs import load_model

    root = args.data_root or (str(default_data_root()) if default_data_root() is not None else None)
    if getattr(args, "pool_scale", None) is not None:
        from star_al.bench_scale import run_pool_scale_bench

        return {"pool_scale": run_pool_scale_bench(_sizes(args.pool_scale, "--pool-scale"), log)}
    if args.pool_memory is not None:
        from star_al.bench_memory import run_pool_memory_bench

        return {"pool_memory": run_pool_memory_bench(_sizes(args.pool_memory, "--pool-memory"), root, log)}
    plan = bench_plan(args)
    task = load_task(args.task)
    examples = load_examples(task, "train", data_root=root, data_dir=args.data)[:plan.examples]
    gen_task = load_task("gsm8k")
    gen_examples = load_examples(gen_task, "test", data_root=root)[:plan.gen_examples]
    started = time.perf_counter()
    backbone = load_model(args.model, machine)
    fp32_placement = dc_replace(choose_placement(args.device, "float32"), reason="plain reference")
    fp32 = (backbone if backbone.placement.dtype == torch.float32
            else load_backbone(args.model, fp32_placement, machine.cache_root))
    loading = time.perf_counter() - started
    log(f"[{0.0:6.1f} s] model: {args.model} loaded in {loading:.1f} s"
        + ("" if fp32 is backbone else " (with its fp32 copy for the plain reference)"))
    figures = run_bench(backbone, fp32, task, examples, gen_task, gen_examples, plan, log=log)
    figures.update(model=args.model, task=task.name, model_load_seconds=loading)
    return figures


def _sizes(text: str, flag: str) -> list[int]:
    """Pool sizes as a flag gives them (1000,10000), or a one-line StarError."""
    try:
        sizes = [int(n) for n in text.split(",") if n.strip()]
    except ValueError as error:
        raise StarError(f"{flag} takes sizes such as 1000,10000, got {text}") from error
    if not sizes or min(sizes) < 1:
        raise StarError(f"{flag} sizes must be at least 1, got {text}")
    return sizes


def bench_plan(args) -> BenchPlan:
    """The default plan, or the quick one with --quick; any count given on the command line wins."""
    plan = QUICK if getattr(args, "quick", False) else BenchPlan()
    counts = {}
    for flag in ("examples", "passes", "naive_examples", "train_steps", "train_batch", "gen_examples",
                 "max_new_tokens", "repeats"):
        value = getattr(args, flag, None)
        if value is None:
            continue
        if value < (0 if flag == "naive_examples" else 1):
            raise StarError(f"--{flag.replace('_', '-')} must be at least "
                            f"{0 if flag == 'naive_examples' else 1}, got {value}")
        counts[flag] = value
    if counts.get("naive_examples"):
        counts["naive"] = True
    return replace(plan, **counts)
