"""Data-parallel training with torch.distributed, as launched by ``torchrun``.

Native DistributedDataParallel rather than Hugging Face accelerate: the loop already owns its
batching, clipping, scheduling and checkpointing, so DDP adds three things to it (wrap the loss
module, give each rank its share of every batch, let rank 0 alone evaluate and write) where
accelerate would replace the loop's own pieces with its own. NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    """This process's place among the training processes (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, device: torch.device) -> "DistContext":
        """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK and join the process group if needed."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast_object(self, value):
        """Rank 0's ``value`` on every rank (decisions: improved, stop)."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Every rank takes rank 0's parameters and buffers (the best model, at the end)."""
        if self.world == 1:
            return
        for tensor in module.state_dict().values():
            dist.broadcast(tensor.data if hasattr(tensor, "data") else tensor, src=0)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def local_device(device: str | None) -> str | None:
    """Under torchrun on GPUs, each process takes the GPU of its LOCAL_RANK unless told otherwise."""
    if device is None and int(os.environ.get("WORLD_SIZE", "1")) > 1 and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device
