"""Several processes, one run (benchmark.engine.distributed).

The integration test launches the real CLI under ``torchrun --standalone --nproc_per_node 2``
(gloo, CPU) on the smoke preset, kills rank 1 in the middle of its shard, re-runs the same
command, and checks that (a) nothing the killed launch had finished is computed again (every
cached artefact it left keeps its inode and modification time: the cache rewrites a file only
when it computes it) and (b) the one results folder equals a one-process run's (own cache,
same threads per process) within 1e-5 relative, timings aside.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.engine.distributed import DistributedError, Ranks, process_group
from benchmark.results import compare_runs


# -- ranks ------------------------------------------------------------------------------------------
def test_ranks_from_torchrun_environment():
    ranks = Ranks.from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert (ranks.rank, ranks.world_size, ranks.local_rank, ranks.local_world_size) == (3, 4, 1, 2)
    assert ranks.distributed and not ranks.main
    assert Ranks.from_environment({}) == Ranks()  # no launcher: one process
    assert not Ranks().distributed and Ranks().main
    for env in ({"RANK": "2", "WORLD_SIZE": "2"}, {"RANK": "-1", "WORLD_SIZE": "2"}, {"RANK": "x"},
                {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"}):
        with pytest.raises(DistributedError, match="launcher"):
            Ranks.from_environment(env)


def test_blocks_are_disjoint_cover_everything_and_keep_order():
    items = list(range(37))
    for world in (1, 2, 3, 5):
        for block in (1, 4, 8):
            shards = [Ranks(r, world).blocks(items, block) for r in range(world)]
            assert sorted(sum(shards, [])) == items
            assert all(s == sorted(s) for s in shards)
            sizes = [len(s) for s in shards]
            assert max(sizes) - min(sizes) <= block
    # block b goes to rank b % world: each block is one codec batch of a one-process run
    assert Ranks(0, 2).blocks(items[:20], 8) == list(range(8)) + list(range(16, 20))
    assert Ranks(1, 2).blocks(items[:20], 8) == list(range(8, 16))


def test_device_and_workers_per_rank():
    ranks = Ranks(3, 4, 1, 2)
    assert ranks.device("cuda") == "cuda:1"
    assert ranks.device("cuda:0") == "cuda:0" and ranks.device("cpu") == "cpu"
    assert Ranks().device("cuda") == "cuda"
    assert ranks.workers(8) == 4 and ranks.workers(1) == 1


def test_process_group_names_the_missing_launcher_variables(monkeypatch):
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(DistributedError, match="MASTER_ADDR.*torchrun"):
        with process_group(Ranks(0, 2)):
            pass
    with process_group(Ranks()):  # one process: nothing to set up
        pass


def test_ranks_without_a_process_group_refuse_to_go_on_unsynchronised():
    from benchmark.engine.distributed import barrier

    barrier(Ranks())  # one process: nothing to wait for
    with pytest.raises(DistributedError, match="no process group"):
        barrier(Ranks(1, 2))


def test_rank_records_of_an_earlier_larger_launch_are_cleared(tmp_path):
    from benchmark.engine.distributed import RankRecord, rank_stages

    for k in range(4):
        RankRecord(tmp_path, Ranks(k, 4), "cpu").update("done")
    assert [r["rank"] for r in rank_stages(tmp_path)] == [0, 1, 2, 3]
    RankRecord(tmp_path, Ranks(1, 2), "cpu").update()  # only rank 0 clears
    assert len(rank_stages(tmp_path)) == 4
    RankRecord(tmp_path, Ranks(0, 2), "cpu").update()
    assert [(r["rank"], r["world_size"]) for r in rank_stages(tmp_path)] == [(0, 2), (1, 2)]


# -- the real CLI under torchrun --------------------------------------------------------------------
def _cli(results: Path, cache: Path) -> list[str]:
    return ["-m", "benchmark", "run", "all", "--preset", "smoke", "--results", str(results), "--cache", str(cache),
            "--quiet"]


def _artifacts(cache: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (cache / "artifacts").rglob("*")
            if p.is_file() and p.suffix in (".npz", ".json")}


def _kill_rank_one_mid_shard(run_dir_root: Path, proc: subprocess.Popen, timeout: float = 600) -> int:
    """Wait until rank 1 has scored (and cached) its first block of items, then SIGKILL it;
    returns the items it had scored."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("the launch finished before rank 1 could be killed")
        for path in run_dir_root.glob("*/ranks/rank-1.json"):
            try:
                record = json.loads(path.read_text())
            except json.JSONDecodeError:  # replaced while read
                continue
            if record.get("scored", 0) > 0:
                os.kill(record["pid"], signal.SIGKILL)
                return record["scored"]
        time.sleep(0.05)
    pytest.fail("rank 1 never scored a block")


@pytest.fixture(scope="module")
def launches(tmp_path_factory):
    """A one-process smoke run, and a two-rank one killed mid-run then run again."""
    root = tmp_path_factory.mktemp("distributed")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")  # torchrun's per-rank threads
    single = subprocess.Popen([sys.executable, *_cli(root / "single", root / "cache-single")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                *_cli(root / "ranks", root / "cache-ranks")]
    killed = subprocess.Popen(torchrun, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    scored_before_kill = _kill_rank_one_mid_shard(root / "ranks", killed)
    killed_log, _ = killed.communicate(timeout=600)
    left = _artifacts(root / "cache-ranks")
    statuses = [json.loads(p.read_text())["state"] for p in (root / "ranks").glob("*/status.json")]
    again = subprocess.run(torchrun, env=env, capture_output=True, text=True, timeout=900)
    single_log, _ = single.communicate(timeout=900)
    return dict(root=root, killed_rc=killed.returncode, killed_log=killed_log, left=left, statuses=statuses,
                scored_before_kill=scored_before_kill,
                again=again, single_rc=single.returncode, single_log=single_log)


@pytest.mark.slow
def test_killed_rank_is_recovered_without_recomputing(launches):
    assert launches["killed_rc"] != 0, launches["killed_log"][-3000:]
    assert launches["statuses"] == ["running"]  # it really stopped mid-run
    again = launches["again"]
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    left = launches["left"]
    assert launches["scored_before_kill"] >= 1  # rank 1 had finished work of its own when killed
    assert len([p for p in left if "scores" in p.parts]) >= 6
    rewritten = [str(p) for p, stamp in left.items() if not p.exists() or (p.stat().st_ino, p.stat().st_mtime_ns)
                 != stamp]
    assert rewritten == [], f"{len(rewritten)} finished artefacts were computed again, e.g. {rewritten[:3]}"
    run_dir = next((launches["root"] / "ranks").iterdir())
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "complete" and status["world_size"] == 2
    assert [r["state"] for r in status["ranks"]] == ["done", "done"]
    assert (run_dir / "report" / "index.html").exists()


@pytest.mark.slow
def test_two_ranks_write_one_results_folder_equal_to_one_process(launches):
    assert launches["single_rc"] == 0, launches["single_log"][-3000:]
    assert launches["again"].returncode == 0
    (single,), (ranked,) = list((launches["root"] / "single").iterdir()), list((launches["root"] / "ranks").iterdir())
    assert single.name == ranked.name  # the same run, the same folder name
    results = sorted(p.name for p in ranked.iterdir() if p.suffix == ".csv")
    assert results == sorted(p.name for p in single.iterdir() if p.suffix == ".csv")
    agreement = compare_runs(single, ranked)
    assert agreement.compared > 2000
    assert agreement.within(1e-5), (agreement.max_relative, agreement.worst[:5], agreement.unmatched[:5])


def test_eval_under_torchrun_shares_the_files_and_equals_one_process(tmp_path):
    """`eval` through the CLI: two ranks (gloo) score their blocks of a folder into the cache, rank 0
    writes the one results folder; every value equals the one-process eval's."""
    import numpy as np
    import soundfile as sf

    audio = tmp_path / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for k in range(12):  # 12 files of different lengths: blocks of 8 -> ranks get 8 and 4
        t = np.arange(int(16000 * (0.6 + 0.1 * k))) / 16000
        sf.write(audio / f"f{k:02d}.wav", (0.3 * np.sin(2 * np.pi * (200 + 40 * k) * t)
                                          + 0.05 * rng.standard_normal(t.size)).astype(np.float32), 16000)
    args = ["eval", "--codec", "lowpass", "--audio", str(audio), "--metrics", "si_sdr,mel_distance,kad", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, "-m", "benchmark", *args, "--out", str(tmp_path / "one"), "--cache",
                          str(tmp_path / "c1")], env=env, capture_output=True, text=True, timeout=300)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "benchmark", *args, "--out", str(tmp_path / "two"), "--cache", str(tmp_path / "c2")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    records = [json.loads((tmp_path / "two" / "ranks" / f"rank-{k}.json").read_text()) for k in (0, 1)]
    assert [(r["state"], r["scored"]) for r in records] == [("done", 8), ("done", 4)]
    agreement = compare_runs(tmp_path / "one", tmp_path / "two")
    assert agreement.compared > 30 and agreement.within(1e-6), agreement.worst[:3]


def test_a_rank_record_says_failed_with_the_error_when_the_shard_raises(tmp_path):
    from benchmark.engine.distributed import RankRecord, rank_stages
    from benchmark.engine.run import StageTimer

    record, timer = RankRecord(tmp_path, Ranks(0, 2), "cpu"), StageTimer()
    with pytest.raises(RuntimeError, match="disk full"):
        with record.tracking(timer):
            with timer.stage("shard encode x", 3):
                raise RuntimeError("disk full")
    (saved,) = rank_stages(tmp_path)
    assert saved["state"] == "failed" and "disk full" in saved["error"]
    assert saved["stages"]["shard encode x"]["items"] == 3
