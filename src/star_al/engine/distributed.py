"""The processes of one launch: accelerate's PartialState under `accelerate launch` or `torchrun`,
or just this process.

Every process runs the same loop on the same data and makes the same decisions; model
work is shared out and gathered back in order, and everything that touches the run
directory happens on the main process alone, its result handed to the others. Alone,
each helper is the plain single-process operation (no accelerate call at all).
"""

from __future__ import annotations

import contextlib
import os
import pickle
from dataclasses import dataclass

import torch

from star_al.errors import StarError


class Processes:
    """This process's place among the launched ones: rank, count, and the collective steps."""

    def __init__(self, state=None):
        self.state = state  # an accelerate PartialState, or None for a single process
        self.rank = state.process_index if state is not None else 0
        self.world = state.num_processes if state is not None else 1
        self.is_main = self.rank == 0
        self._accelerator = None

    def accelerator(self):
        """accelerate's Accelerator of this launch, made on first use: training hands the model and
        optimizer to its `prepare` (DDP, or the DeepSpeed/FSDP plugin of the accelerate config)."""
        if self.world == 1:
            raise RuntimeError("a single process trains without accelerate")
        if self._accelerator is None:
            from accelerate import Accelerator

            self._accelerator = Accelerator(cpu=self.state.device.type == "cpu")
        return self._accelerator

    @classmethod
    def from_environment(cls, environ=os.environ, device: str | None = None) -> "Processes":
        """The launch this process belongs to: a launcher (accelerate, torchrun) sets WORLD_SIZE."""
        if int(environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        if environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
            raise StarError("FSDP shards the model's weights across the processes, and the loop scores the "
                            "whole model between rounds; launch without the FSDP plugin (DDP), or with "
                            "DeepSpeed ZeRO-2, which shards only gradients and optimizer states")
        from accelerate import PartialState

        on_cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
        return cls(PartialState(cpu=on_cpu))

    @property
    def device(self) -> str | None:
        """This process's own CUDA device under a launcher (cuda:LOCAL_RANK); None otherwise."""
        if self.state is None or self.state.device.type != "cuda":
            return None
        return f"cuda:{self.state.device.index or 0}"

    def barrier(self) -> None:
        if self.world > 1:
            self.state.wait_for_everyone()

    # -- model work: shared out, gathered back in order ----------------------------------------
    def share(self, n: int) -> range:
        """The positions of n work items this process computes: every world-th one, from its rank.

        Batches come sorted by length, so taking every world-th one (rather than a contiguous
        block) gives each process about the same number of tokens.
        """
        return range(self.rank, n, self.world)

    def rows(self, n: int) -> tuple[int, int]:
        """The contiguous block [start, stop) of n rows this process takes (accelerate's split:
        the first n % world processes take one more)."""
        if self.world == 1:
            return 0, n
        with self.state.split_between_processes(list(range(n))) as mine:
            return (mine[0], mine[-1] + 1) if mine else (0, 0)

    def gather(self, mine: dict[int, object], n: int) -> list:
        """Every process's results by position, as one list of n in position order.

        Each position is computed by exactly one process, so nothing is padded or repeated.
        """
        if self.world == 1:
            return [mine[i] for i in range(n)]
        from accelerate.utils import gather_object

        merged: dict[int, object] = {}
        for part in gather_object([mine]):
            merged.update(part)
        if sorted(merged) != list(range(n)):
            raise RuntimeError(f"gathered positions {sorted(merged)[:5]}... are not 0..{n - 1}")
        return [merged[i] for i in range(n)]

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The tensor summed over the processes (itself, alone)."""
        if self.world == 1:
            return tensor
        from accelerate.utils import reduce

        return reduce(tensor, reduction="sum")

    # -- the run directory: main writes, everyone gets its result --------------------------------
    def on_main(self, fn, *args, **kwargs):
        """fn on the main process alone; every process returns its result or raises its error.

        Everyone first waits for everyone, so no process is still reading a file that fn is
        about to change.
        """
        if self.world == 1:
            return fn(*args, **kwargs)
        self.barrier()
        outcome = None
        if self.is_main:
            try:
                outcome = (True, fn(*args, **kwargs))
            except BaseException as error:  # noqa: BLE001 (handed to every process, then raised)
                outcome = (False, error)
        outcome = self._broadcast(outcome)
        succeeded, value = outcome
        if not succeeded:
            raise value
        return value

    @contextlib.contextmanager
    def main_holds(self, make_context):
        """Enter make_context() on the main process only (a lock, a log file) for the whole block;
        an error entering it (the lock is held elsewhere) is raised on every process."""
        if self.world == 1:
            with make_context() as value:
                yield value
            return
        stack = contextlib.ExitStack()
        try:
            self.on_main(lambda: (stack.enter_context(make_context()), None)[1])
            yield None
        finally:
            stack.close()

    def _broadcast(self, value):
        from accelerate.utils import broadcast_object_list

        if self.is_main:
            try:
                pickle.dumps(value)
            except Exception:  # noqa: BLE001 (an error that cannot travel goes as its message)
                value = (False, StarError(str(value[1]))) if isinstance(value, tuple) else value
        holder = [value]
        broadcast_object_list(holder, from_process=0)
        return holder[0]


SINGLE = Processes()


@dataclass(frozen=True)
class Execution:
    """How a run's model work is carried out, which never changes what it computes (beyond float
    rounding): the processes it is shared among, and whether training recomputes activations
    in the backward pass instead of keeping them (less memory, about a third more compute)."""

    processes: Processes = SINGLE
    gradient_checkpointing: bool = False
