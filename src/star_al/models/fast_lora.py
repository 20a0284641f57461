"""The unmerged LoRA projection, y = W x + (alpha / r) B A dropout(x), in fewer passes.

MC-dropout scoring and training run the adapter unmerged, on every projection of every
layer. PEFT's forward draws a Bernoulli mask, selects the kept inputs, scales them by
1 / (1 - p), runs A and B, scales by alpha / r and adds the result to W x. On CPU the
mask draw and the select cost more than the two small matmuls (torch's dropout took 6 ns
per value here, `scripts/measure.py kernels`). Here the mask is built from random words with integer
shifts and applied as a bitwise AND on the inputs' bits, and both scales go into the
`addmm` that adds B A h to W x. Same distribution, same math (`tests/test_fast_lora.py`).
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np
import torch

_INT_OF_SIZE = {2: np.int16, 4: np.int32, 8: np.int64}


def mask_seed() -> int:
    """The seed of one dropout mask: one draw from torch's CPU generator per dropout call.

    One draw per call, whatever the tensor's size or device, so a forward pass always takes
    the same number of draws: a process that leaves a batch to another can step past it
    (`skip_mask_draws`) and every batch keeps the masks it gets in a single process.
    """
    return int(torch.randint(0, 2 ** 62, (1,)))


def keep_bits(x: torch.Tensor, p: float, rows: tuple[int, int] | None = None) -> tuple[torch.Tensor, float]:
    """A CPU keep-mask for x as integers of x's width, all ones (keep) or zero (drop), and
    the kept fraction it was drawn with.

    Each value takes one uniform w-bit slice of random words; halved (so that no step
    overflows) it is uniform on [-2^(w-2), 2^(w-2)) and is dropped when below
    t = p 2^(w-1) - 2^(w-2): then (t - 1 - u) >= 0, whose sign shift is 0, else -1.
    p is rounded to a multiple of 2^-(w-1) (2^-15 for bf16). The words come from NumPy's
    SFC64, seeded from torch's generator so that torch.manual_seed fixes the masks: it
    draws 64 bits about twice as fast as torch's CPU generator.

    rows = (start, total): x is rows start.. of a batch of `total` rows (data-parallel
    training); the mask is drawn for the whole batch and x gets its rows' part, as alone.
    """
    width = 8 * x.element_size()
    start, total = rows if rows is not None else (0, x.shape[0])
    per_row = x[:1].numel() if x.dim() else 1
    n = total * per_row if x.dim() else x.numel()
    words = np.random.SFC64(mask_seed()).random_raw(-(-n * x.element_size() // 8))
    values = words.view(_INT_OF_SIZE[x.element_size()])[start * per_row:start * per_row + x.numel()]
    bits = torch.from_numpy(values).view(x.shape)
    dropped = round(p * 2 ** (width - 1))
    threshold = dropped - 2 ** (width - 2)
    bits.bitwise_right_shift_(1).neg_().add_(threshold - 1).bitwise_right_shift_(width - 1)
    return bits, 1 - dropped / 2 ** (width - 1)


class _KeepBits(torch.autograd.Function):
    """x with the dropped values zeroed through their bits; gradients masked the same way."""

    @staticmethod
    def forward(ctx, x, bits):
        ctx.save_for_backward(bits)
        return (x.contiguous().view(bits.dtype) & bits).view(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (bits,) = ctx.saved_tensors
        return (grad.contiguous().view(bits.dtype) & bits).view(grad.dtype), None


def drop_inputs(x: torch.Tensor, p: float, rows: tuple[int, int] | None = None) -> tuple[torch.Tensor, float]:
    """Dropout without the 1 / (1 - p) rescale: (x with dropped values zeroed, kept fraction)."""
    bits, kept_fraction = keep_bits(x, p, rows)
    return _KeepBits.apply(x, bits), kept_fraction


def _draws(dropout) -> bool:
    """Whether this dropout module draws a mask when called (and so takes one mask seed)."""
    return isinstance(dropout, BitDropout) and dropout.training and 0 < dropout.p < 1


def _cpu_bit_dropout(dropout, x) -> bool:
    return _draws(dropout) and x.device.type == "cpu"


class BitDropout(torch.nn.Dropout):
    """LoRA input dropout with `keep_bits` masks on CPU: nn.Dropout's distribution, cheaper.

    On GPUs the mask comes from torch's fused uniform draw on a generator seeded by the
    call's mask seed, so GPU runs also take one seed per call. `rows` (set by
    `batch_rows`) says which rows of a larger batch this process holds.
    """

    rows: tuple[int, int] | None = None

    def forward(self, x):
        if not _draws(self):
            return super().forward(x)
        if x.device.type == "cpu":
            kept, kept_fraction = drop_inputs(x, self.p, self.rows)
            return kept * (1 / kept_fraction)
        start, total = self.rows if self.rows is not None else (0, x.shape[0])
        generator = torch.Generator(device=x.device).manual_seed(mask_seed())
        uniform = torch.rand((total, *x.shape[1:]), generator=generator, device=x.device)[start:start + x.shape[0]]
        return x * (uniform >= self.p).to(x.dtype) * (1 / (1 - self.p))


def mask_draws_per_forward(model) -> int:
    """How many mask seeds one forward pass of the model takes: one per drawing LoRA dropout."""
    return sum(1 for module in model.modules() if _draws(module))


def skip_mask_draws(count: int) -> None:
    """Step torch's generator past `count` mask seeds, as the forward that took them would."""
    for _ in range(count):
        mask_seed()


@contextlib.contextmanager
def batch_rows(model, start: int, total: int):
    """Draw every dropout mask for a batch of `total` rows and keep rows start..: data-parallel
    training then sees the masks a single process draws for the whole batch."""
    modules = [module for module in model.modules() if isinstance(module, BitDropout)]
    for module in modules:
        module.rows = (start, total)
    try:
        yield
    finally:
        for module in modules:
            module.rows = None


def _fast_path(layer, x, args, kwargs) -> bool:
    adapters = layer.active_adapters
    if args or kwargs or layer.disable_adapters or layer.merged or len(adapters) != 1:
        return False
    name = adapters[0]
    if name not in layer.lora_A or name in getattr(layer, "lora_variant", {}):
        return False
    a, b = layer.lora_A[name], layer.lora_B[name]
    if a.bias is not None or b.bias is not None:
        return False
    # Without autocast every operand must already share one dtype (PEFT would cast).
    return torch.is_autocast_enabled(x.device.type) or x.dtype == a.weight.dtype == layer.base_layer.weight.dtype


@functools.cache
def _lora_linear_class():
    from peft.tuners.lora.layer import Linear

    class FastLoraLinear(Linear):
        """PEFT's lora.Linear with the one-adapter, unmerged forward done in fewer passes."""

        def forward(self, x, *args, **kwargs):
            if not _fast_path(self, x, args, kwargs):
                return super().forward(x, *args, **kwargs)
            name = self.active_adapters[0]
            dropout, scale = self.lora_dropout[name], self.scaling[name]
            result = self.base_layer(x)
            if _cpu_bit_dropout(dropout, x):
                h, kept_fraction = drop_inputs(x, dropout.p, dropout.rows)
                scale = scale / kept_fraction
            else:
                h = dropout(x)
            down = torch.nn.functional.linear(h, self.lora_A[name].weight)
            up = self.lora_B[name].weight.to(result.dtype)  # in-place ops skip autocast's cast
            # In place: an out-of-place addmm first copies W x, as large as the matmul's output.
            result.view(-1, result.shape[-1]).addmm_(down.reshape(-1, down.shape[-1]).to(result.dtype), up.t(),
                                                     alpha=scale)
            return result

    return Linear, FastLoraLinear


def replace_lora_dropout(peft_model, make) -> None:
    """Swap every LoRA dropout module (an nn.Dropout) for make(p), in its training mode (in place)."""
    for module in list(peft_model.modules()):
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, torch.nn.ModuleDict):
            for name, dropout in dropouts.items():
                if isinstance(dropout, torch.nn.Dropout):
                    swapped = make(dropout.p)
                    swapped.train(dropout.training)
                    dropouts[name] = swapped


def use_fast_lora(peft_model):
    """Give the adapter BitDropout and the fused forward (in place; same weights, same math).

    Only plain lora.Linear layers change class; any other layer type keeps PEFT's own.
    """
    linear, fast_linear = _lora_linear_class()
    for module in list(peft_model.modules()):
        if type(module) is linear:
            module.__class__ = fast_linear
    replace_lora_dropout(peft_model, BitDropout)
    return peft_model
