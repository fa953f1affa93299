"""Wall time of training several small models: one after the other vs :func:`train_many`.

    python scripts/bench_train_many.py                      # 4 jobs, cpu preset, 40 steps
    python scripts/bench_train_many.py --steps 100 --seeds 0 1 2

Trains ``codecs x seeds`` on the built-in ``default`` dataset (rendered into the cache folder
on first use, ~30 s, not timed) twice, into two fresh run folders: serially in this process
with ``--serial-threads`` torch threads (default: every usable core), then with
``train_many(workers=W, threads_per_worker=T)``. Prints both wall times (worker start-up
included) and their ratio. Run it on idle cores: the 1-minute load average is printed before
each pass.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from benchmark.data.builtin import load_builtin
from benchmark.training import train
from benchmark.training.parallel import train_many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codecs", nargs="+", default=["music2latent", "spectral_ae"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--serial-threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--cache", type=Path, default=None, help="dataset cache (default: a temporary folder)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp) / "cache"
        dataset = load_builtin(cache, "default", progress=False)
        jobs = [dict(codec=codec, preset=args.preset, dataset=dataset, device="cpu", steps=args.steps, seed=seed,
                     tensorboard=False) for codec in args.codecs for seed in args.seeds]

        print(f"{len(jobs)} jobs ({' '.join(args.codecs)} x seeds {args.seeds}, preset {args.preset}, "
              f"{args.steps} steps) on {len(os.sched_getaffinity(0))} usable cores, torch {torch.__version__}")
        print(f"serial, {args.serial_threads} threads (load {os.getloadavg()[0]:.2f})")
        torch.set_num_threads(args.serial_threads)
        start = time.perf_counter()
        for job in jobs:
            t0 = time.perf_counter()
            path = train(**job, out_dir=Path(tmp) / "serial", progress=False)
            print(f"  {path.parent.name}: {time.perf_counter() - t0:.1f} s")
        serial = time.perf_counter() - start

        print(f"train_many, {args.workers} workers x {args.threads_per_worker} threads "
              f"(load {os.getloadavg()[0]:.2f})")
        start = time.perf_counter()
        results = train_many([dict(job, out_dir=Path(tmp) / "parallel") for job in jobs], workers=args.workers,
                             threads_per_worker=args.threads_per_worker, progress=False,
                             log=lambda line: print("  " + line))
        parallel = time.perf_counter() - start
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise SystemExit(f"{len(failed)} jobs failed: {failed[0]!r}")

    print(f"serial {serial:.1f} s, train_many {parallel:.1f} s: {serial / parallel:.2f}x faster "
          f"({serial / len(jobs):.1f} vs {parallel / len(jobs):.1f} s per model)")


if __name__ == "__main__":  # train_many spawns workers, which import this file again
    main()
