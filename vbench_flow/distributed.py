"""Evaluation across processes: ``torchrun --nproc_per_node N -m vbench_flow run SUITE``.

Units are sharded by generation batch, round-robin over ranks, so every batch is the one a
single process would form and each clip comes out identical. Each rank appends its records to
its own log (``samples.rank<R>.jsonl``: no two processes write one file); rank 0 alone registers
the run, and at the end merges the logs into ``samples.jsonl``, fills the store and aggregates.
Aggregates come from the merged records -- per-sample sums, and FVD feature statistics merged as
sums -- so they equal a single-process run. The process group uses gloo (CPU tensors only: the
ranks exchange small Python objects, never clips).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def mine(self, index: int) -> bool:
        """Whether the ``index``-th batch of the run is this rank's."""
        return index % self.world == self.rank

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (a no-op in one process)."""
        if not self.distributed:
            return value
        box = [value if self.is_writer else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def current_shard() -> Shard:
    """This process's place: from torchrun's environment (RANK, WORLD_SIZE), joining the process
    group on first use; one process without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Shard()
    if not dist.is_initialized():
        # ranks wait for each other while rank 0 scores reference clips and writes the store, and a
        # rank with fewer batches waits for the others: far longer than gloo's 30-minute default
        hours = float(os.environ.get("VBF_DIST_TIMEOUT_HOURS", "24"))
        dist.init_process_group("gloo", timeout=timedelta(hours=hours))
        if torch.cuda.is_available():  # one GPU per process, as torchrun numbers them per node
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return Shard(dist.get_rank(), dist.get_world_size())
