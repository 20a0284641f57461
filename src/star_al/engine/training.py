"""Fine-tuning a round's model: a fresh adapter on the frozen base (or a full copy), loss on answer tokens only.

`train_round` trains whatever the adapter method attached: an adapter by `train_adapter`,
a full copy by `train_full`. AdamW applies decoupled weight decay to the adapter's
zero-initialised B side only, as the method names it (STAR's L2 decay on B, docs/method.md
3.3); LoRA's A and everything else get none. Batches are left-padded so the answer tokens
sit in the last columns, and the model computes logits only there: for one-token answers
that is two positions instead of the whole sequence.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field, replace

import torch
from tqdm.auto import tqdm

from star_al.config import TrainSettings
from star_al.data.batching import encode_pair, left_pad
from star_al.data.tasks import CHOICE
from star_al.engine.distributed import Execution
from star_al.engine.heap import HeapGuard
from star_al.errors import StarError
from star_al.log import quiet
from star_al.models.adapters import PeftMethod, method_of
from star_al.models.fast_lora import batch_rows


@dataclass
class TrainResult:
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)


def optimizer_groups(model, b_decay: float, method: PeftMethod | None = None) -> list[dict]:
    """Decay on the adapter's B side only (eq. 6): two parameter groups over the trainable weights.

    `method` names the decayed side (default: the method whose layers the model carries)."""
    method = method or method_of(model)
    decayed = method.is_decayed if method is not None else (lambda name: False)
    b_params = [p for n, p in model.named_parameters() if p.requires_grad and decayed(n)]
    other = [p for n, p in model.named_parameters() if p.requires_grad and not decayed(n)]
    return [{"params": b_params, "weight_decay": b_decay}, {"params": other, "weight_decay": 0.0}]


def adamw(params, lr: float, **options) -> torch.optim.AdamW:
    """AdamW, fused where torch has the kernel (CPU and CUDA float weights).

    The default CPU AdamW runs a dozen small ops per tensor; SmolLM2's r-64 adapter has 420
    tensors, and the fused kernel cuts its step from 34 to 13 ms (a LoRA step is about 1 s;
    `scripts/measure.py kernels`).
    Same update rule.
    """
    groups = list(params)
    tensors = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in tensors)
    return torch.optim.AdamW(groups, lr=lr, fused=fused or None, **options)


def answer_only_batch(encoded, pad_id, device):
    """Left-padded prompt+answer ids and the answer-token targets of the last columns.

    Returns (input_ids, attention_mask, position_ids, targets) where targets has shape
    [batch, width] for the last `width` tokens, -100 where a row's answer is shorter.
    """
    width = max(len(e.target_ids) for e in encoded)
    input_ids, attention_mask, position_ids = left_pad(
        [e.prompt_ids + e.target_ids for e in encoded], pad_id, device)
    targets = torch.full((len(encoded), width), -100, dtype=torch.long)
    for row, e in enumerate(encoded):
        targets[row, width - len(e.target_ids):] = torch.tensor(e.target_ids)
    return input_ids, attention_mask, position_ids, targets.to(device)


def answer_loss(model, input_ids, attention_mask, position_ids, targets, reduction: str = "mean") -> torch.Tensor:
    """Mean (or summed) cross-entropy over answer tokens, with logits computed only where they are used."""
    width = targets.shape[1]
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   logits_to_keep=width + 1, use_cache=False).logits[:, :-1]
    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                             targets.reshape(-1), ignore_index=-100, reduction=reduction)


def autocast_context(model):
    """Run frozen-base matmuls in the base's low precision while LoRA weights stay fp32.

    PEFT casts each LoRA input up to the adapter's fp32 (a full-activation copy per
    projection); under bf16 autocast that cast is wasted, so it is switched off there.
    """
    from peft.helpers import disable_input_dtype_casting

    dtype = next(model.get_base_model().parameters()).dtype
    if dtype not in (torch.bfloat16, torch.float16):
        return contextlib.nullcontext()
    device_type = next(model.parameters()).device.type
    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast(device_type, dtype=dtype))
    stack.enter_context(disable_input_dtype_casting(model))
    return stack


@contextlib.contextmanager
def training_attention(model):
    """Train with plain (eager) attention on CPU, then restore the model's own kernel.

    PyTorch's CPU flash-attention backward is slow on the short sequences of
    fine-tuning: on SmolLM2 it took 11-13% of a LoRA step over 8 BoolQ questions, and eager
    attention made BoolQ and SST-2 steps 10-20% faster and GSM8K's longer ones about as
    fast (`scripts/measure.py training-profile`), while scoring and generation were no
    faster or slower with it. GPUs keep their fused kernels. Same math either way.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    current = getattr(base.config, "_attn_implementation", None)
    on_cpu = next(base.parameters()).device.type == "cpu"
    if not on_cpu or current != "sdpa" or not hasattr(base, "set_attn_implementation"):
        yield
        return
    base.set_attn_implementation("eager")
    try:
        yield
    finally:
        base.set_attn_implementation(current)


def train_round(method, model, base, tokenizer, task, examples, train_settings: TrainSettings, b_decay: float,
                seed: int, desc: str | None = "train", execution: Execution = Execution()) -> TrainResult:
    """Train the model `method.attach` made on the labeled examples: an adapter with STAR's
    `b_decay` on its B side (strategies/registry.py b_decay_of), or every weight of a full copy."""
    if method.is_adapter:
        return train_adapter(model, tokenizer, task, examples, replace(train_settings, b_decay=b_decay), seed,
                             desc=desc, execution=execution, method=method)
    return train_full(model, base.dtype, tokenizer, task, examples, train_settings, seed, desc=desc,
                      execution=execution)


def train_adapter(peft_model, tokenizer, task, examples, settings: TrainSettings, seed: int,
                  desc: str | None = "train", execution: Execution = Execution(),
                  method: PeftMethod | None = None) -> TrainResult:
    """Fine-tune the attached adapter of `method` (default: the one the model carries) on the
    labeled examples; leaves the model in eval mode, its adapter in the base's dtype."""
    method = method or method_of(peft_model)
    if method is None:
        raise ValueError("train_adapter needs a model with an adapter attached (a method's attach)")
    optimizer = adamw(optimizer_groups(peft_model, settings.b_decay, method), lr=settings.learning_rate)
    with_autocast = lambda: autocast_context(peft_model)  # noqa: E731
    result = _train(peft_model, optimizer, with_autocast, tokenizer, task, examples, settings, seed, desc,
                    execution)
    method.to_base_dtype(peft_model)
    return result


def train_full(model, base_dtype, tokenizer, task, examples, settings: TrainSettings, seed: int,
               desc: str | None = "train", execution: Execution = Execution()) -> TrainResult:
    """Train every weight of a full copy (models/adapters.py full_copy; plain AdamW, no decay), then cast it
    to base_dtype."""
    optimizer = adamw(model.parameters(), lr=settings.learning_rate, weight_decay=0.0)
    device_type = next(model.parameters()).device.type
    low = base_dtype in (torch.bfloat16, torch.float16)
    with_autocast = lambda: (torch.autocast(device_type, dtype=base_dtype) if low  # noqa: E731
                             else contextlib.nullcontext())
    result = _train(model, optimizer, with_autocast, tokenizer, task, examples, settings, seed, desc, execution)
    model.requires_grad_(False)
    model.to(base_dtype)
    return result


@contextlib.contextmanager
def gradient_checkpointing(model, enabled: bool):
    """Recompute each layer's activations in the backward pass instead of keeping them.

    Non-reentrant checkpointing restores the generator state before recomputing, so the
    recomputed forward draws the same dropout masks: same loss and gradients.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not enabled:
        yield
        return
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise StarError(f"{type(base).__name__} does not support --gradient-checkpointing")
    # transformers 5.2x names it activation checkpointing; earlier versions gradient checkpointing.
    kind = "activation" if hasattr(base, "activation_checkpointing_enable") else "gradient"
    getattr(base, f"{kind}_checkpointing_enable")(**{f"{kind}_checkpointing_kwargs": {"use_reentrant": False}})
    try:
        yield
    finally:
        getattr(base, f"{kind}_checkpointing_disable")()


def _train(model, optimizer, autocast, tokenizer, task, examples, settings: TrainSettings, seed: int,
           desc: str | None, execution: Execution = Execution()) -> TrainResult:
    """The shared loop: seeded shuffles, left-padded batches, answer-only loss, linear schedule."""
    from transformers import get_linear_schedule_with_warmup

    add_eos = task.answer_type not in ("label", CHOICE)  # a chosen continuation is scored without an EOS
    encoded = [encode_pair(tokenizer, ex.prompt, ex.target, add_eos, settings.max_prompt_tokens)
               for ex in examples]
    device = next(model.parameters()).device
    steps_per_epoch = math.ceil(len(encoded) / settings.batch_size)
    # Whole epochs (every example as often), enough of them for the round's minimum of steps.
    epochs = max(settings.epochs, math.ceil(settings.min_steps / steps_per_epoch))
    total_steps = epochs * steps_per_epoch
    scheduler = get_linear_schedule_with_warmup(optimizer, int(settings.warmup_ratio * total_steps),
                                                total_steps)
    generator = torch.Generator().manual_seed(seed)
    result = TrainResult(steps=0, seconds=0.0)
    start = time.perf_counter()
    processes = execution.processes
    if processes.world > 1:  # data parallel: accelerate wraps the model (DDP) and the optimizer
        accelerator = processes.accelerator()
        _leave_frozen_weights_alone(model)
        parallel_model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    heap = HeapGuard()
    with (training_attention(model), gradient_checkpointing(model, execution.gradient_checkpointing),
          tqdm(total=total_steps, desc=desc, disable=desc is None or quiet(), leave=False) as bar):
        for _ in range(epochs):
            order = torch.randperm(len(encoded), generator=generator).tolist()
            for first in range(0, len(order), settings.batch_size):
                batch = [encoded[i] for i in order[first:first + settings.batch_size]]
                *inputs, targets = answer_only_batch(batch, tokenizer.pad_token_id, device)
                if processes.world == 1:
                    with autocast():
                        loss = answer_loss(model, *inputs, targets)
                    loss.backward()
                    loss_value = loss.item()
                else:
                    loss_value = _parallel_backward(model, parallel_model, accelerator, autocast, inputs, targets,
                                                    processes)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                heap.after_batch()  # batch shapes vary: keep the heap flat (engine/heap.py)
                result.steps += 1
                result.losses.append(loss_value)
                bar.set_postfix(loss=f"{result.losses[-1]:.3f}")
                bar.update()
    model.eval()
    if processes.world > 1:
        accelerator.free_memory()  # drop the wrappers; the adapter's weights stay in `model`
    result.seconds = time.perf_counter() - start
    return result


def _leave_frozen_weights_alone(model) -> None:
    """Tell DDP to skip the frozen base's weights and the buffers: every process loaded the same,
    and broadcasting them at each round's wrapping would send the whole model (13 GB at 7B)."""
    from torch.nn.parallel import DistributedDataParallel

    ignored = [name for name, p in model.named_parameters() if not p.requires_grad]
    ignored += [name for name, _ in model.named_buffers()]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, ignored)


def _parallel_backward(model, parallel_model, accelerator, autocast, inputs, targets, processes) -> float:
    """Data parallel: this process's rows of the batch forward and backward through accelerate's
    wrapped model, whose gradient all-reduce (a mean over the processes) then gives every process
    the single-process batch's gradient.

    Each process takes a contiguous block of the (globally padded) batch's rows, draws the
    whole batch's dropout masks and keeps its rows' (`batch_rows`), and scales its summed
    loss by processes / the whole batch's answer-token count, so that the mean of the
    processes' gradients is the gradient of the batch's mean loss. A process left without
    rows (more processes than rows) runs one row weighted 0: the all-reduce needs every
    process, and the forward draws the same masks as the others'. Returns the batch's mean loss.
    """
    start, stop = processes.rows(targets.shape[0])
    tokens = (targets != -100).sum()
    rows = slice(start, stop) if stop > start else slice(0, 1)
    with autocast(), batch_rows(model, rows.start, targets.shape[0]):
        loss_sum = answer_loss(parallel_model, *(t[rows] for t in inputs), targets[rows], reduction="sum")
    weight = processes.world / tokens if stop > start else 0.0
    accelerator.backward(loss_sum * weight)
    mine = loss_sum.detach().float() if stop > start else torch.zeros((), device=targets.device)
    return float(processes.sum(mine.reshape(1))[0] / tokens)
