"""Multi-process generation on HF accelerate (``accelerate launch`` on GPUs, ``torchrun`` on CPUs).

Why accelerate and not our own process management: it is the field's engine for this,
it knows SLURM/multi-node launchers, and ``PartialState`` gives rank, world size and the
process group (NCCL on GPUs, gloo on CPUs) with one call. A run that was not launched
by a distributed launcher (``WORLD_SIZE`` unset or 1) never imports it.

Protocol (implemented in :mod:`erasekit.runner`): every rank loads the base model and
applies the (deterministic) technique; the unique missing image requests are split
across ranks, each rank writes into the shared content-addressed cache, a barrier
follows, and rank 0 alone scores and writes the report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    state: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.enabled:
            self.state.wait_for_everyone()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (a small picklable value), on every rank."""
        if not self.enabled:
            return [obj]
        import torch.distributed as tdist

        out: list[Any] = [None] * self.world
        tdist.all_gather_object(out, obj)
        return out

    def device_for(self, device: str) -> str:
        """One GPU per rank: cuda → cuda:<local rank>."""
        if self.enabled and device == "cuda":
            return f"cuda:{self.local_rank}"
        return device


def launched_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def detect(device: str) -> Dist:
    """The process's place in a distributed launch (world 1 when not launched)."""
    if launched_world_size() <= 1:
        return Dist()
    from accelerate import PartialState

    state = PartialState(cpu=not device.startswith("cuda"))
    return Dist(rank=state.process_index, world=state.num_processes, local_rank=state.local_process_index, state=state)
