"""Sharded extraction with world_size 2, simulated in one process."""

import numpy as np
import pytest

from benchmark.probes.sharding import (ShardError, dist_context, load_shard, merge_shard_files, merge_shards,
                                       save_shard, shard_items, shard_path, shard_paths)


def fake_encoder(item_id):
    seed = int(item_id[2:])
    return np.random.default_rng(seed).normal(size=(4, 3 + seed % 5)).astype(np.float32)


def test_shards_are_disjoint_balanced_and_cover_everything():
    items = [f"id{i}" for i in range(11)]
    shards = [shard_items(items, r, 2) for r in range(2)]
    assert shards[0] == items[0::2] and shards[1] == items[1::2]
    assert sorted(shards[0] + shards[1]) == sorted(items)
    assert abs(len(shards[0]) - len(shards[1])) <= 1
    assert shard_items(items, 0, 1) == items
    for rank, world in [(2, 2), (-1, 2), (0, 0)]:
        with pytest.raises(ShardError):
            shard_items(items, rank, world)


def test_world_size_two_in_one_process_equals_serial(tmp_path):
    items = [f"id{i}" for i in range(9)]
    serial = {i: fake_encoder(i) for i in items}
    for rank in range(2):  # what each torchrun process would do
        save_shard(shard_path(tmp_path, rank, 2), {i: fake_encoder(i) for i in shard_items(items, rank, 2)})
    assert [p.name for p in shard_paths(tmp_path, 2)] == ["shard-00000-of-00002.npz", "shard-00001-of-00002.npz"]
    merged = merge_shard_files(shard_paths(tmp_path, 2), items)
    assert list(merged) == items  # in item order, whatever the shard order
    for i in items:
        np.testing.assert_array_equal(merged[i], serial[i])
        assert merged[i].dtype == np.float32
    assert list(load_shard(shard_path(tmp_path, 1, 2))) == items[1::2]


def test_merge_reports_missing_duplicate_and_foreign_items(tmp_path):
    a, b = {"x": np.ones(2)}, {"y": np.zeros(2)}
    with pytest.raises(ShardError, match="no embedding in any shard.*'z'"):
        merge_shards([a, b], ["x", "y", "z"])
    with pytest.raises(ShardError, match="shard 1 repeats 1 item"):
        merge_shards([a, {"x": np.ones(2)}])
    with pytest.raises(ShardError, match="not in the item list"):
        merge_shards([a, b], ["x"])
    with pytest.raises(ShardError, match="missing shard file"):
        merge_shard_files(shard_paths(tmp_path, 3))


def test_dist_context_reads_torchrun_environment(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ctx = dist_context(prefer_cuda=False)
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.device) == (1, 2, 1, "cpu")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ShardError, match="outside WORLD_SIZE"):
        dist_context(prefer_cuda=False)
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var)
    assert dist_context(prefer_cuda=False).world_size == 1
