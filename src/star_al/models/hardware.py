"""Pick device and dtype from the hardware at hand, measured at run time.

Machines of one kind differ: on a CPU with AVX512-BF16/AMX bf16 matmuls run several
times faster than fp32, while on an AVX2-only CPU bf16 is emulated and hundreds of
times slower. So "fast bf16" is decided by the CPU's capability and a tiny timed
matmul, never assumed.
"""

from __future__ import annotations

import functools
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from star_al.errors import StarError

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


@dataclass(frozen=True)
class Placement:
    """Where the model runs and in which dtype its frozen weights are held; `automatic` when
    this machine chose them (not --device/--dtype, not a model handed over as loaded)."""

    device: str
    dtype: torch.dtype
    reason: str
    automatic: bool = False

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def bf16_is_fast(capability: str, fp32_seconds: float, bf16_seconds: float) -> bool:
    """bf16 counts as fast only on a CPU with AVX512 kernels where it also timed faster.

    An AVX2-only build (capability "AVX2" or "DEFAULT") emulates bf16, whatever a
    single noisy timing says.
    """
    if not capability.upper().startswith("AVX512"):
        return False
    return bf16_seconds < fp32_seconds


def time_matmul(dtype: torch.dtype, size: int = 512, repeats: int = 3) -> float:
    """Seconds for one size x size matmul in dtype (best of `repeats`, after a warm-up)."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return best


@functools.lru_cache(maxsize=1)
def cpu_bf16_is_fast() -> bool:
    """Measure once per process whether this CPU runs bf16 matmuls faster than fp32."""
    capability = torch.backends.cpu.get_cpu_capability()
    if not capability.upper().startswith("AVX512"):
        return False
    return bf16_is_fast(capability, time_matmul(torch.float32), time_matmul(torch.bfloat16))


def choose_placement(device: str | None = None, dtype: str | None = None) -> Placement:
    """CUDA when present, else CPU; bf16 where the hardware runs it fast, else fp32."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise StarError(f"unknown --device {device!r}; choose cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise StarError(f"--device {device} asked for, but no CUDA device is available")
    if dtype is not None:
        if dtype not in DTYPES:
            raise StarError(f"unknown --dtype {dtype!r}; choose one of {sorted(set(DTYPES))}")
        return Placement(device, DTYPES[dtype], "asked for")
    if device.startswith("cuda"):
        fast = torch.cuda.is_bf16_supported()
        return Placement(device, torch.bfloat16 if fast else torch.float32,
                         "CUDA bf16 supported" if fast else "CUDA without bf16", automatic=True)
    if cpu_bf16_is_fast():
        return Placement("cpu", torch.bfloat16, "CPU has fast bf16 (measured)", automatic=True)
    return Placement("cpu", torch.float32,
                     f"CPU bf16 is slow here ({torch.backends.cpu.get_cpu_capability()})", automatic=True)


def device_name(device: str) -> str:
    """The GPU's name, or the CPU's model name: what a measured speed belongs to."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
