"""Throughput of the reconstruction metrics: seconds of audio scored per second, per core.

    python scripts/bench_metrics.py [--seconds 10] [--clips 8] [--workers 2] [--json out.json]

Material: dense music-like mixtures (chords + drums, ``benchmark.metrics.signals``) at 44.1 kHz,
each paired with a 20 dB-SNR noisy copy. Single-core figures run in this process with one
torch / numba thread; the ViSQOL pool figure uses ``--workers`` processes (one numba thread
each) and is divided by the number of workers for the per-core value. One-off costs (numba JIT
compilation, weight conversion, pool start-up) are excluded by a warm-up run. Target: ViSQOL
>= 10x real time per core.

ViSQOL is timed twice in this process, with visqol-python's own kernels (``accelerate=False``)
and with the bit-identical vectorised kernels of ``benchmark.metrics.visqol_accel``
(``accelerate=True``, the default); the script prints the speed-up and the largest score
difference between the two (expected: exactly 0; libsvm runs on one OpenMP thread here, as with
more threads its MOS varies by ~1e-15 from call to call).

Two per-core figures are printed: from wall-clock time (what you get on this machine now) and
from the CPU time of the process (``time.process_time``; independent of other load on a
shared machine, so comparable across runs). The pool row has no CPU-time figure.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # before numba is imported (single-core figures)
os.environ.setdefault("OMP_NUM_THREADS", "1")  # likewise for OpenMP (libsvm in ViSQOL's SVR)

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.metrics.signals import mixture  # noqa: E402

SR = 44100


def _pairs(n: int, seconds: float) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for i in range(n):
        x = mixture(SR, seconds, seed=i)
        noise = np.random.default_rng(100 + i).standard_normal(x.size).astype(np.float32)
        noise *= np.sqrt(np.mean(x ** 2) / np.mean(noise ** 2)) * 0.1
        out.append((x, x + noise))
    return out


def _timed(fn, repeat: int = 1) -> tuple[float, float]:
    """Best (wall seconds, CPU seconds of this process) over ``repeat`` runs."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - w0, time.process_time() - c0))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (s)")
    parser.add_argument("--clips", type=int, default=8, help="number of clip pairs")
    parser.add_argument("--workers", type=int, default=2, help="ViSQOL worker processes")
    parser.add_argument("--skip", default="", help="comma-separated metrics to skip")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    torch.set_num_threads(1)
    pairs = _pairs(args.clips, args.seconds)
    audio_s = args.clips * args.seconds
    rows: list[tuple[str, str, tuple[float, float], int]] = []  # (metric, setting, (wall, cpu) s, cores)

    if "si_sdr" not in skip:
        from benchmark.metrics.sisdr import si_sdr

        rows.append(("si_sdr", "numpy float64", _timed(lambda: [si_sdr(r, e) for r, e in pairs], 3), 1))

    for name, fn_name in (("mel_distance", "mel_distance"), ("mrstft_distance", "mrstft_distance")):
        if name in skip:
            continue
        from benchmark.metrics import spectral

        fn = getattr(spectral, fn_name)
        fn(*pairs[0], SR)
        rows.append((name, "torch.stft, 1 thread", _timed(lambda fn=fn: [fn(r, e, SR) for r, e in pairs]), 1))

    if "fad" not in skip:
        from benchmark.embeddings.musicnn import MusicnnBackbone

        with tempfile.TemporaryDirectory() as tmp:
            bb = MusicnnBackbone(cache_dir=tmp)
            bb.embed(pairs[0][0], SR)
            t = _timed(lambda: [bb.embed(r, SR) for r, _ in pairs])
        rows.append(("fad embeddings", "musicnn (resample + log-mel + CNN), 1 thread", t, 1))
        torch.set_num_threads(2)
        t = _timed(lambda: [bb.embed(r, SR) for r, _ in pairs])
        rows.append(("fad embeddings", "musicnn, 2 torch threads", t, 2))
        torch.set_num_threads(1)

    if "visqol" not in skip:
        from benchmark.metrics.visqol import ViSQOL

        scores = {}
        for accelerate, label in ((False, "visqol-python kernels"), (True, "visqol_accel kernels")):
            single = ViSQOL(workers=1, accelerate=accelerate)
            single(*pairs[0], SR)  # numba JIT / cache load

            def run(single=single, accelerate=accelerate):
                scores[accelerate] = single.batch(pairs, SR)

            rows.append(("visqol", f"audio 48 kHz, in-process, {label}", _timed(run), 1))
        visqol_ratio = (rows[-2][2][0] / rows[-1][2][0], rows[-2][2][1] / rows[-1][2][1])
        visqol_diff = max(abs(a - b) for a, b in zip(scores[False], scores[True]))
        with ViSQOL(workers=args.workers) as pooled:
            pooled.batch(pairs[: args.workers], SR)  # start and warm the workers
            t = _timed(lambda: pooled.batch(pairs, SR))
        rows.append(("visqol", f"audio 48 kHz, {args.workers} worker processes, visqol_accel", (t[0], float("nan")),
                     args.workers))

    print(f"# {args.clips} clips x {args.seconds:g} s at {SR} Hz = {audio_s:g} s of audio; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'metric':16s} {'setting':52s} {'wall s':>7s} {'x real time':>11s} {'/core (wall)':>12s} "
          f"{'/core (CPU)':>11s}")
    out = []
    for metric, setting, (wall, cpu), cores in rows:
        speed = audio_s / wall
        cpu_speed = float("nan") if math.isnan(cpu) else audio_s / cpu
        print(f"{metric:16s} {setting:52s} {wall:7.2f} {speed:11.1f} {speed / cores:12.1f} {cpu_speed:11.1f}")
        out.append({"metric": metric, "setting": setting, "wall_seconds": wall, "cpu_seconds": cpu,
                    "cores": cores, "audio_seconds_per_second": speed, "per_core_wall": speed / cores,
                    "per_core_cpu": cpu_speed})
    summary: dict = {}
    if "visqol" not in skip:
        print(f"visqol speed-up from visqol_accel: {visqol_ratio[0]:.2f}x (wall), {visqol_ratio[1]:.2f}x (CPU); "
              f"max |score difference| over {len(pairs)} clips: {visqol_diff:.3g}")
        summary = {"visqol_accel_speedup_wall": visqol_ratio[0], "visqol_accel_speedup_cpu": visqol_ratio[1],
                   "visqol_accel_max_score_difference": visqol_diff}
    if args.json:
        args.json.write_text(json.dumps({"audio_seconds": audio_s, "rows": out, **summary,
                                         "load_average": os.getloadavg()[0]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
