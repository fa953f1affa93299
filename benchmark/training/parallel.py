"""Train several models at once: one process per job, a few threads each.

Small models do not use many cores well: measured with ``python -m benchmark.training.bench
--preset cpu`` on 2 cores, one process with 2 threads runs 0.386 s/step, while two processes
with 1 thread each run 0.59 s/step each (0.295 s/step of throughput), 1.3x more models per
hour. :func:`train_many` runs a list of :func:`~benchmark.training.command.train` calls that
way::

    from benchmark.training.parallel import train_many

    jobs = [dict(codec=codec, preset="cpu", dataset=dataset, seed=seed)
            for codec in ("music2latent", "spectral_ae") for seed in (0, 1, 2)]
    if __name__ == "__main__":  # worker processes are spawned: they re-import the main script
        paths = train_many(jobs, workers=2, threads_per_worker=1)

Route
    The parent resolves every job with :func:`~benchmark.training.command.prepare_run`
    (config, data, run folder): a job that is already trained (cache hit) or whose settings are
    invalid costs nothing more, and jobs naming the same run folder are trained once. The
    remaining runs go to ``workers`` spawned processes, at most ``workers`` at a time, each
    with ``torch.set_num_threads(threads_per_worker)`` (default: the usable cores divided by
    ``workers``) and no step bar; the parent shows one bar over jobs and logs one line per job.
    A single run left is trained in this process, with the threads a worker would have had.
    With ``workers <= 1`` the runs are trained one after the other in this process (with
    ``threads_per_worker`` threads if given, else torch's current setting).

Same weights on every route
    A run's weights depend on its config, data and seed, not on the route: a job trained in a
    worker equals, tensor for tensor, the same job trained by ``train(...)`` in this process
    with the same number of torch threads (a different thread count may change float
    summation order, hence the last bits).

What travels to a worker
    The prepared run (resolved config, the train/valid file lists, the run folder), not the
    :class:`~benchmark.data.dataset.Dataset`: about 100 bytes per training file, e.g. 6 kB
    for the built-in smoke dataset. The training-task registry
    (:data:`~benchmark.training.tasks.TASKS`) is copied to each worker at start-up, so a task
    registered at run time with a module-level builder trains in a worker too (a lambda, or a
    builder defined in an interactive session, cannot travel: its jobs fail with a
    ``ValueError`` saying so).

Failures
    Results come back in job order, a path to ``best.pt`` or the exception the job raised;
    the other jobs go on. A worker process that dies (killed, out of memory, a crash in native
    code) breaks the whole pool; the jobs that were running in it are then re-run one at a
    time, each in a pool of its own, so the job that kills its worker is named in a
    :class:`WorkerCrashedError` and the others finish (resuming from their ``last.pt``).
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import pickle
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from benchmark.checkpoints import short_name
from benchmark.errors import BenchmarkError
from benchmark.training.command import PreparedRun, prepare_run, run_training
from benchmark.training.distributed import DistContext, resolve_device
from benchmark.training.tasks import TASKS

__all__ = ["train_many", "threads_per_job", "WorkerCrashedError"]

#: ``train(...)`` keywords that do not change the run (the rest go to ``prepare_run``).
_RUN_OPTIONS = ("device", "resume", "progress")


class WorkerCrashedError(BenchmarkError, RuntimeError):
    """The worker process training a job died without raising (killed, out of memory...)."""


def train_many(jobs: Sequence[Mapping[str, Any]], workers: int = 2, threads_per_worker: int | None = None,
               progress: bool = True, log: Callable[[str], None] | None = None) -> list[Path | BaseException]:
    """Train every job, ``workers`` at a time in spawned processes.

    Parameters
    ----------
    jobs: keyword arguments of one :func:`~benchmark.training.command.train` call each
        (``codec``, ``preset``, ``dataset``, ``out_dir``, ``overrides``, ``run_dir``,
        ``device``, ``resume`` and settings such as ``seed=1``); ``progress`` is ignored (the
        step bars of concurrent runs would interleave).
    workers: processes training at the same time; ``<= 1`` trains in this process.
    threads_per_worker: torch threads of each worker (default: usable cores // ``workers``,
        at least 1).
    progress: one tqdm bar over the jobs.
    log: receives one line per job (outcome, wall seconds) and a summary; default:
        ``tqdm.write`` (prints above the bar).

    Returns
    -------
    One entry per job, in job order: the path of its ``best.pt`` (as ``train`` returns it), or
    the exception that stopped it (:class:`WorkerCrashedError` if its process died).
    """
    if threads_per_worker is not None and threads_per_worker < 1:
        raise ValueError(f"threads_per_worker must be >= 1, got {threads_per_worker}")
    board = _Board(len(jobs), progress, log or tqdm.write)
    try:
        todo = board.prepare(jobs)
        if workers <= 1:
            _train_here(board, todo, threads_per_worker)
        else:
            # from the arguments only, not from how many jobs were cache hits: same threads, same bits
            threads = threads_per_worker or threads_per_job(workers)
            if len(todo) <= 1:
                _train_here(board, todo, threads)
            else:
                _train_in_pool(board, todo, min(workers, len(todo)), threads)
    finally:
        board.close()
    return board.results()


# -- bookkeeping ---------------------------------------------------------------------------------
class _Board:
    """Jobs, their prepared runs and outcomes, the bar over jobs and the log lines."""

    def __init__(self, n_jobs: int, progress: bool, log: Callable[[str], None]) -> None:
        self.n = n_jobs
        self.log = log
        self.runs: list[PreparedRun | None] = [None] * n_jobs
        self.options: list[dict[str, Any]] = [{} for _ in range(n_jobs)]
        self.labels: list[str] = [""] * n_jobs
        self.outcomes: list[Path | BaseException | None] = [None] * n_jobs
        self.same_as: dict[int, list[int]] = collections.defaultdict(list)  # job -> its duplicates
        self.counts: collections.Counter[str] = collections.Counter()
        self.start = time.perf_counter()
        self.bar = tqdm(total=n_jobs, desc="train jobs", unit="job", dynamic_ncols=True, disable=not progress)

    def prepare(self, jobs: Sequence[Mapping[str, Any]]) -> list[int]:
        """Resolve every job; settle cache hits and invalid jobs; return the jobs to train."""
        leaders: list[tuple[int, float]] = []
        by_folder: dict[Path, int] = {}
        for i, job in enumerate(jobs):
            job = dict(job)
            self.options[i] = {k: job.pop(k) for k in _RUN_OPTIONS if k in job}
            self.labels[i] = _describe(job)
            t0 = time.perf_counter()
            try:
                run = prepare_run(**job)
            except Exception as exc:  # reported as this job's result; the others go on
                self.finish(i, exc, time.perf_counter() - t0)
                continue
            self.runs[i] = run
            self.labels[i] = short_name(run.codec, run.preset, run.run_id)
            folder = run.run_dir.resolve()
            if folder in by_folder:
                self.same_as[by_folder[folder]].append(i)
            else:
                by_folder[folder] = i
                leaders.append((i, time.perf_counter() - t0))
        todo = []
        for i, seconds in leaders:  # after grouping, so that a cache hit settles its duplicates too
            run = self.runs[i]
            if run.finished():  # type: ignore[union-attr]
                self.finish(i, run.run_dir / "best.pt", seconds, cached=True)  # type: ignore[union-attr]
            else:
                todo.append(i)
        return todo

    def finish(self, i: int, outcome: Path | BaseException, seconds: float, cached: bool = False) -> None:
        for j in [i, *self.same_as.get(i, [])]:
            self.outcomes[j] = outcome
            self.bar.update(1)
            if isinstance(outcome, BaseException):
                kind, text = "failed", f"failed after {seconds:.1f} s: {type(outcome).__name__}: {outcome}"
            elif j != i:
                kind, text = "same", f"same run as job {i + 1} -> {outcome}"
            elif cached:
                kind, text = "cached", f"cache hit -> {outcome}"
            else:
                kind, text = "trained", f"trained in {seconds:.1f} s -> {outcome}"
            self.counts[kind] += 1
            self.log(f"job {j + 1}/{self.n} {self.labels[j]}: {text}")

    def results(self) -> list[Path | BaseException]:
        missing = [i + 1 for i, r in enumerate(self.outcomes) if r is None]
        if missing:  # only if this function has a bug; never return a None in place of a result
            raise RuntimeError(f"train_many: jobs {missing} have no outcome")
        return list(self.outcomes)  # type: ignore[arg-type]

    def close(self) -> None:
        self.bar.close()
        if self.n:
            parts = ", ".join(f"{self.counts[k]} {k}" for k in ("trained", "cached", "same", "failed")
                              if self.counts[k])
            self.log(f"{self.n} training jobs in {time.perf_counter() - self.start:.1f} s: {parts or 'interrupted'}")


# -- routes -------------------------------------------------------------------------------------
def _train_prepared(run: PreparedRun, options: Mapping[str, Any]) -> Path:
    """What one job does, in this process or a worker (``train`` minus the preparation)."""
    # one job, one process: never the DDP group of a torchrun launch this process may belong to
    alone = DistContext(device=resolve_device(options.get("device")))
    run_training(run, resume=options.get("resume", "auto"), progress=False, ctx=alone)
    return run.run_dir / "best.pt"


def _train_here(board: _Board, todo: Sequence[int], threads: int | None) -> None:
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        for i in todo:
            t0 = time.perf_counter()
            try:
                outcome: Path | BaseException = _train_prepared(board.runs[i], board.options[i])  # type: ignore[arg-type]
            except Exception as exc:
                outcome = exc
            board.finish(i, outcome, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(previous)


def _train_in_pool(board: _Board, todo: Sequence[int], workers: int, threads: int) -> None:
    """Train ``todo`` in pools of ``workers`` processes; isolate the jobs of a pool that broke."""
    portable = _portable_tasks()
    queue = []
    for i in todo:
        codec = board.runs[i].codec  # type: ignore[union-attr]
        if codec in TASKS and codec not in portable:
            board.finish(i, ValueError(
                f"codec {codec!r}: its task builder {TASKS[codec]!r} cannot be sent to a worker process "
                "(it does not pickle); define it at module level, or train with workers=1"), 0.0)
        else:
            queue.append(i)
    while queue:
        in_flight, queue = _pool_pass(board, queue, workers, threads, portable)
        if len(in_flight) == 1:
            i, seconds, exc = in_flight[0]
            board.finish(i, WorkerCrashedError(
                f"job {i + 1} ({board.labels[i]}): its worker process died ({exc}); what it saved stays "
                f"in {board.runs[i].run_dir} and resumes on the next call"), seconds)  # type: ignore[union-attr]
        else:  # one of them took the others down: run each alone to find it
            for i, _, _ in in_flight:
                _train_in_pool(board, [i], 1, threads)


def _pool_pass(board: _Board, queue: list[int], workers: int, threads: int, tasks: Mapping[str, Any]
               ) -> tuple[list[tuple[int, float, BaseException]], list[int]]:
    """Run ``queue`` in one pool, at most ``workers`` jobs at a time (so a job's wall time is
    its own). Returns, if the pool broke, the jobs in flight then (job, seconds, error) and the
    jobs not started; else two empty lists."""
    pending = collections.deque(queue)
    running: dict[Future, tuple[int, float]] = {}
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads, tasks))
    try:
        while pending or running:
            while pending and len(running) < workers:
                i = pending.popleft()
                try:
                    running[pool.submit(_train_prepared, board.runs[i], board.options[i])] = (i, time.perf_counter())
                except BrokenProcessPool as exc:
                    if not running:
                        return [(i, 0.0, exc)], list(pending)
                    pending.appendleft(i)
                    break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            if any(isinstance(future.exception(), BrokenProcessPool) for future in done):
                done, _ = wait(running)  # every job still running went down with the pool
            broken = []
            for future in done:
                i, t0 = running.pop(future)
                exc = future.exception()
                if isinstance(exc, BrokenProcessPool):
                    broken.append((i, time.perf_counter() - t0, exc))
                else:
                    board.finish(i, exc if exc is not None else future.result(), time.perf_counter() - t0)
            if broken:
                return sorted(broken, key=lambda b: b[0]), list(pending)
        return [], []
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _init_worker(threads: int, tasks: Mapping[str, Any]) -> None:
    torch.set_num_threads(threads)
    TASKS.update(tasks)


def _portable_tasks() -> dict[str, Any]:
    """The entries of the training-task registry that can be sent to a spawned worker."""
    out = {}
    for name, target in TASKS.items():
        try:
            pickle.dumps(target)
        except Exception:  # a lambda or a function of an interactive session stays behind
            continue
        out[name] = target
    return out


def _describe(job: Mapping[str, Any]) -> str:
    """``codec-preset (seed=1, steps=40)``: names a job that has no run folder (invalid settings)."""
    settings = ", ".join(f"{k}={v!r}" for k, v in job.items()
                         if k not in ("codec", "preset", "dataset", "out_dir", "run_dir"))
    name = f"{job.get('codec', 'music2latent')}-{job.get('preset', 'cpu')}"
    return f"{name} ({settings})" if settings else name


def threads_per_job(workers: int) -> int:
    """Torch threads of each of ``workers`` concurrent training jobs: the usable cores shared out."""
    return max(1, _usable_cores() // max(1, workers))


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
