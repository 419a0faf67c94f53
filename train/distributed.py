"""Process-group set-up for ``torchrun``: NCCL on GPUs, gloo on CPUs; a single process needs none."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the (possibly one-process) training job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # set up here (then torn down here too), not by the caller

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, evaluates and writes files."""
        return self.rank == 0

    def all_agree(self, flag: bool, device: torch.device) -> bool:
        """True when ``flag`` holds on every rank (a collective: every rank must call it)."""
        if not self.enabled:
            return flag
        value = torch.tensor(int(flag), device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item())

    def any_rank(self, flag: bool, device: torch.device) -> bool:
        """True when ``flag`` holds on some rank (a collective)."""
        return not self.all_agree(not flag, device)


def init_distributed(device_type: str) -> DistContext:
    """Join the process group that ``torchrun`` describes in the environment (or one already set up)."""
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank()
        return DistContext(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistContext()
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), world_size, int(os.environ.get("LOCAL_RANK", "0")), owns_group=True)


def close_distributed(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
