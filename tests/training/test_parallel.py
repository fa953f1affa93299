"""train_many: several smoke trainings in spawned workers (about 30 s on 2 cores)."""

from __future__ import annotations

import multiprocessing
import os

import pytest
import torch

from benchmark.data.builtin import load_builtin
from benchmark.training import parallel, train
from benchmark.training.checkpoint import load_checkpoint
from benchmark.training.config import TRAIN_PRESETS, train_presets
from benchmark.training.parallel import WorkerCrashedError, train_many
from benchmark.training.tasks import TASKS


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The built-in smoke dataset, rendered once into a temporary cache."""
    return load_builtin(tmp_path_factory.mktemp("cache"), "smoke", progress=False)


def _jobs(dataset, out_dir, codec="music2latent", seeds=(1, 2)):
    return [dict(codec=codec, preset="smoke", dataset=dataset, out_dir=out_dir, device="cpu", seed=seed,
                 tensorboard=False) for seed in seeds]


@pytest.fixture(scope="module")
def in_workers(smoke, tmp_path_factory):
    """Two Music2Latent smoke runs (seeds 1 and 2) trained by two 1-thread workers."""
    jobs = _jobs(smoke, tmp_path_factory.mktemp("workers"))
    lines: list[str] = []
    paths = train_many(jobs, workers=2, threads_per_worker=1, progress=False, log=lines.append)
    return jobs, paths, lines


def test_workers_train_the_same_weights_as_train_here(in_workers, tmp_path, one_torch_thread):
    jobs, paths, lines = in_workers
    assert [line.split(": ")[1].split(" in ")[0] for line in lines[:2]] == ["trained", "trained"]
    states = []
    for job, path in zip(jobs, paths):
        here = train(**{**job, "out_dir": tmp_path}, progress=False)  # 1 torch thread, as the workers
        assert here.parent.name == path.parent.name  # same config and data: same run name
        ours, theirs = load_checkpoint(here), load_checkpoint(path)
        assert ours["step"] == theirs["step"] == 4
        for key in ("model", "ema"):
            assert ours[key].keys() == theirs[key].keys()
            for name, tensor in ours[key].items():
                assert torch.equal(tensor, theirs[key][name]), f"{key}.{name}"  # bit for bit
        states.append(theirs["model"])
    # the comparison can fail: the seeds give different weights
    assert any(not torch.equal(a, b) for a, b in zip(states[0].values(), states[1].values()))


def test_a_second_call_is_a_cache_hit_that_starts_no_worker(in_workers, monkeypatch):
    jobs, paths, _ = in_workers
    stamps = [p.stat().st_mtime_ns for p in paths]

    def no_pool(*args, **kwargs):
        raise AssertionError("a cache hit started a worker pool")

    monkeypatch.setattr(parallel, "ProcessPoolExecutor", no_pool)
    lines: list[str] = []
    again = train_many(jobs + jobs[:1], workers=2, progress=False, log=lines.append)
    assert again == paths + paths[:1]
    assert [p.stat().st_mtime_ns for p in paths] == stamps
    outcomes = sorted((line.split(" ")[1], line.split(": ")[1].split(" -> ")[0]) for line in lines[:3])
    assert outcomes == [("1/3", "cache hit"), ("2/3", "cache hit"), ("3/3", "same run as job 1")]


def test_failing_jobs_return_their_error_and_the_others_finish(smoke, tmp_path):
    good, missing_last = _jobs(smoke, tmp_path, codec="spectral_ae", seeds=(3, 4))
    jobs = [good, dict(good, codec="no_such_codec"), dict(missing_last, resume=True), dict(good, lr="fast")]
    lines: list[str] = []
    results = train_many(jobs, workers=2, threads_per_worker=1, progress=False, log=lines.append)
    assert results[0].exists() and results[0].name == "best.pt"
    assert isinstance(results[1], ValueError) and "no_such_codec" in str(results[1])  # caught in this process
    assert isinstance(results[2], FileNotFoundError) and "resume" in str(results[2])  # raised in a worker
    assert isinstance(results[3], ValueError) and "lr='fast' is not a number" in str(results[3])
    assert sorted(line.split(" ")[1] for line in lines[:4]) == ["1/4", "2/4", "3/4", "4/4"]
    assert sum("failed" in line for line in lines[:4]) == 3


def _die_in_a_worker(config, device):
    """Task builder that kills its process, as an out-of-memory kill would."""
    if multiprocessing.parent_process() is None:
        raise RuntimeError("this builder only runs in a worker process")
    os._exit(3)


def test_a_worker_that_dies_is_named_and_the_other_jobs_finish(smoke, tmp_path, monkeypatch):
    monkeypatch.setitem(TASKS, "dies", _die_in_a_worker)  # travels to the workers by reference
    smoke_preset = dict(train_presets("music2latent")["smoke"], codec="dies")
    monkeypatch.setitem(TRAIN_PRESETS, "dies", {"smoke": smoke_preset})
    jobs = _jobs(smoke, tmp_path, codec="spectral_ae", seeds=(5,)) + _jobs(smoke, tmp_path, codec="dies", seeds=(5,))
    results = train_many(jobs, workers=2, threads_per_worker=1, progress=False, log=lambda line: None)
    assert results[0].exists()
    assert isinstance(results[1], WorkerCrashedError)
    assert "job 2 (dies-smoke-" in str(results[1]) and "died" in str(results[1])


def test_a_task_builder_that_cannot_travel_fails_its_jobs_with_the_reason(smoke, tmp_path, monkeypatch):
    monkeypatch.setitem(TASKS, "local", lambda config, device: None)
    monkeypatch.setitem(TRAIN_PRESETS, "local", {"smoke": dict(train_presets("music2latent")["smoke"], codec="local")})
    monkeypatch.setattr(parallel, "ProcessPoolExecutor", None)  # nothing left to send
    results = train_many(_jobs(smoke, tmp_path, codec="local"), workers=2, progress=False, log=lambda line: None)
    assert all(isinstance(r, ValueError) and "does not pickle" in str(r) for r in results)
