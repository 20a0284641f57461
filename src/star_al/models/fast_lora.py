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

import functools

import numpy as np
import torch

_INT_OF_SIZE = {2: np.int16, 4: np.int32, 8: np.int64}


def keep_bits(x: torch.Tensor, p: float) -> tuple[torch.Tensor, float]:
    """A CPU keep-mask for x as integers of x's width, all ones (keep) or zero (drop), and
    the kept fraction it was drawn with.

    Each value takes one uniform w-bit slice of random words; halved (so that no step
    overflows) it is uniform on [-2^(w-2), 2^(w-2)) and is dropped when below
    t = p 2^(w-1) - 2^(w-2): then (t - 1 - u) >= 0, whose sign shift is 0, else -1.
    p is rounded to a multiple of 2^-(w-1) (2^-15 for bf16). The words come from NumPy's
    SFC64, seeded from torch's generator so that torch.manual_seed fixes the masks: it
    draws 64 bits about twice as fast as torch's CPU generator.
    """
    width = 8 * x.element_size()
    n = x.numel()
    seed = int(torch.randint(0, 2 ** 62, (1,)))
    words = np.random.SFC64(seed).random_raw(-(-n * x.element_size() // 8))
    bits = torch.from_numpy(words.view(_INT_OF_SIZE[x.element_size()])[:n]).view(x.shape)
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


def drop_inputs(x: torch.Tensor, p: float) -> tuple[torch.Tensor, float]:
    """Dropout without the 1 / (1 - p) rescale: (x with dropped values zeroed, kept fraction)."""
    bits, kept_fraction = keep_bits(x, p)
    return _KeepBits.apply(x, bits), kept_fraction


def _cpu_bit_dropout(dropout, x) -> bool:
    return isinstance(dropout, BitDropout) and dropout.training and 0 < dropout.p < 1 and x.device.type == "cpu"


class BitDropout(torch.nn.Dropout):
    """LoRA input dropout with `keep_bits` masks on CPU: nn.Dropout's distribution, cheaper.

    On GPUs the fused nn.Dropout kernel is already fast and is used as is.
    """

    def forward(self, x):
        if not _cpu_bit_dropout(self, x):
            return super().forward(x)
        kept, kept_fraction = drop_inputs(x, self.p)
        return kept * (1 / kept_fraction)


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
                h, kept_fraction = drop_inputs(x, dropout.p)
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
