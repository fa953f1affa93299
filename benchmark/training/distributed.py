"""Multi-process (DDP) context from the ``torchrun`` environment.

``torchrun --nproc_per_node N -m benchmark train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them and
joins the process group (``nccl`` on CUDA, ``gloo`` on CPU). Without them everything runs in
one process. Only rank 0 logs and writes files.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistContext", "init_distributed", "resolve_device"]


@dataclasses.dataclass(frozen=True)
class DistContext:
    """rank / world_size / local_rank of this process and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def gather_objects(self, obj: Any) -> list[Any]:
        """All ranks' ``obj`` (list indexed by rank) on every rank; ``[obj]`` if single."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def resolve_device(device: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """``None``/``"auto"`` -> CUDA if available; ``"cuda"`` -> ``cuda:<local_rank>``."""
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda requested but torch sees no CUDA device; use "
                               "--device cpu or install a CUDA build of torch")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def init_distributed(device: str | torch.device | None = None, timeout_s: int = 1800) -> DistContext:
    """Join the process group described by the torchrun environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if world_size <= 1:
        return DistContext(device=resolved)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
        owns = True
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                       local_rank=local_rank, device=resolved, owns_group=owns)
