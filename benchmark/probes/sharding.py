"""Sharding embedding extraction over processes or GPUs (``torchrun``) and merging the shards.

Extraction is the expensive, embarrassingly parallel part of probing: each process encodes a
disjoint shard of the items and writes its own file; one process merges them. Shards are
strided (``items[rank::world_size]``) so that every shard gets a similar mix of short and long
files whatever the dataset order.

Typical use inside a script launched with ``torchrun --nproc_per_node=N``::

    ctx = dist_context()                                   # rank/world from torchrun's env
    mine = shard_items(items, ctx.rank, ctx.world_size)
    embeddings = {it.id: encode(it) for it in mine}        # on ctx.device
    save_shard(shard_path(out_dir, ctx.rank, ctx.world_size), embeddings)
    barrier()
    if ctx.rank == 0:
        merged = merge_shard_files(shard_paths(out_dir, ctx.world_size), [it.id for it in items])

Without torchrun, :func:`dist_context` returns rank 0 of 1 and the same code runs serially.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence, TypeVar

import numpy as np

from benchmark.errors import BenchmarkError

T = TypeVar("T")


class ShardError(BenchmarkError, RuntimeError):
    """Shards that do not add up to the item list; the message names the items."""


@dataclasses.dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: str


def dist_context(prefer_cuda: bool = True) -> DistContext:
    """Rank, world size, local rank and device from the torchrun environment variables.

    ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` default to 0/1/0. The device is
    ``cuda:<local_rank>`` when CUDA is available (and preferred), else ``cpu``.
    """
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if not 0 <= rank < world:
        raise ShardError(f"RANK={rank} is outside WORLD_SIZE={world}; check the launcher")
    device = "cpu"
    if prefer_cuda:
        import torch
        if torch.cuda.is_available():
            device = f"cuda:{local % torch.cuda.device_count()}"
    return DistContext(rank=rank, world_size=world, local_rank=local, device=device)


def barrier() -> None:
    """``torch.distributed.barrier()`` when a process group is initialised, else nothing."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shard_items(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """The items of shard ``rank`` of ``world_size``: ``items[rank::world_size]``.

    Shards are disjoint, cover every item, keep the input order and differ in size by at most one.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ShardError(f"invalid shard {rank} of {world_size}; need 0 <= rank < world_size")
    return list(items[rank::world_size])


def shard_path(out_dir: str | Path, rank: int, world_size: int) -> Path:
    return Path(out_dir) / f"shard-{rank:05d}-of-{world_size:05d}.npz"


def shard_paths(out_dir: str | Path, world_size: int) -> list[Path]:
    return [shard_path(out_dir, r, world_size) for r in range(world_size)]


def save_shard(path: str | Path, embeddings: Mapping[str, np.ndarray]) -> None:
    """Write one shard (item id -> array) as ``.npz``, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = list(embeddings)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, __ids__=np.asarray(ids, dtype=str),
             **{f"a{k}": np.asarray(embeddings[i]) for k, i in enumerate(ids)})
    tmp.replace(path)


def load_shard(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        ids = [str(i) for i in z["__ids__"]]
        return {i: z[f"a{k}"] for k, i in enumerate(ids)}


def merge_shards(shards: Iterable[Mapping[str, np.ndarray]],
                 expected_ids: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Union of shard dicts, checking that no id appears twice and (if given) none is missing.

    The result is ordered like ``expected_ids`` when given.
    """
    merged: dict[str, np.ndarray] = {}
    for k, shard in enumerate(shards):
        dup = [i for i in shard if i in merged]
        if dup:
            raise ShardError(f"shard {k} repeats {len(dup)} item(s) already merged, e.g. {dup[:3]}; "
                             "were two ranks given the same rank number?")
        merged.update(shard)
    if expected_ids is None:
        return merged
    missing = [i for i in expected_ids if i not in merged]
    extra = [i for i in merged if i not in set(expected_ids)]
    if missing:
        raise ShardError(f"{len(missing)} item(s) have no embedding in any shard, e.g. {missing[:5]}; "
                         "a rank failed or was launched with another world size - re-run it")
    if extra:
        raise ShardError(f"{len(extra)} embedded item(s) are not in the item list, e.g. {extra[:5]}; "
                         "the shards come from another dataset version - clear them")
    return {i: merged[i] for i in expected_ids}


def merge_shard_files(paths: Sequence[str | Path], expected_ids: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Load and merge shard files; a missing file raises :class:`ShardError` naming it."""
    absent = [str(p) for p in paths if not Path(p).exists()]
    if absent:
        raise ShardError(f"missing shard file(s): {absent}; the corresponding ranks did not finish")
    return merge_shards((load_shard(p) for p in paths), expected_ids)
