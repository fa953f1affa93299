#!/usr/bin/env python
"""Throughput of ``eval``: items/s and real-time factor per stage, and the scaling from 1 to 2 processes.

    python scripts/bench_throughput.py [--hours 0.05] [--clip-seconds 10] [--audio DIR] [--work DIR]
        [--codec music2latent] [--codec-option KEY=VALUE ...] [--metrics si_sdr,visqol,...]
        [--device cpu|cuda] [--workers 2] [--processes 2] [--no-scaling] [--json out.json]

Material: every audio file under ``--audio DIR`` (anything the reader reads: WAV, FLAC, OGG/Opus,
MP3, AIFF; any rate, channels and length), or by default ``--hours`` of built-in music:
``round(hours * 3600 / clip_seconds)`` multi-instrument clips rendered with FluidSynth by the
built-in generator (:mod:`benchmark.data.builtin`, clips part, 44.1 kHz mono) into
``<work>/datasets/builtin-<identity>/clips/`` and reused by later calls (``--work``, default
``<tmp>/m2l-bench-throughput``). The default, 0.05 h (18 clips of 10 s, 3 min of audio), takes
about 2-3 minutes on 2 CPU cores with the default codec and metrics (2 min 15 s measured): three
passes over the folder, one in this process and one per process count.

1. **Stages, in this process.** The engine's own pieces, called directly on the items, one timer
   per stage: the codec source (:class:`benchmark.engine.sources.CodecSource`, no cache: reads
   the file, resamples it to the codec's rate, codes short items in batches as ``eval`` does,
   cross-fades chunks, resamples back and aligns), whose encode and decode seconds are the
   engine's own timers around ``codec.encode``/``codec.decode`` (synchronised on CUDA); every
   item metric on every (segment, channel) pair, batched as the scorer batches it (ViSQOL in
   ``--workers`` processes); every set metric's accumulator (embedding each clip with the FAD
   backbone, through a fresh embedding cache, so FAD, KAD and FAD-inf embed each clip once as
   in a cold ``eval``) and its final computation. ``read + resample`` is the codec source's
   time less encode and decode. ``other`` is the loop's wall time not in a stage (pair checks).
   One-off costs (model and backbone loading, numba JIT, ViSQOL pool start-up) are excluded
   by an untimed warm-up on the first ``--warmup-seconds`` of the first file, and printed.
2. **Scaling, whole processes.** The real CLI on the same folder, wall-clock timed (start-up,
   model building and the report included): ``python -m benchmark eval ...`` and then
   ``python -m torch.distributed.run --standalone --nproc_per_node 2 -m benchmark eval ...``,
   each with a fresh ``--cache`` (both compute everything). The one-process run keeps all
   cores (``OMP_NUM_THREADS`` removed from its environment); torchrun gives each rank one
   thread (``OMP_NUM_THREADS=1``). Printed: items/s, real-time factor, the speed-up (1-process
   wall / 2-process wall) and the parallel efficiency (speed-up / 2), the ranks' shares when
   the ranks record them (``<out>/ranks/rank-<k>.json``), and, as a sanity check, the largest
   relative difference between the two runs' values (``results.csv`` rows except timing rows,
   and ``items.csv``). If the torchrun launch fails, its stderr tail is printed and the script
   goes on; ``--no-scaling`` skips this part.

Figures: ``items/s`` = files / seconds; ``x real time`` = seconds of audio (at the files' own
rate) / wall seconds; ``share`` = the stage's fraction of the stages' total. With no
``--codec-option``, ``music2latent`` is built with ``preset=cpu`` (the 0.54 M-parameter 16 kHz
model the ``default`` run trains on a CPU) and, with no checkpoint, RANDOM weights: fine for
throughput, its scores mean nothing. The paper model (``--codec-option preset=paper``, 57.7 M
parameters, 44.1 kHz) codes at about 0.3-0.4x real time on 2 CPU cores: use a GPU or
``--hours 0.01`` for it. Timings on a shared machine are noisy; the load average is printed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: Codec options used when none is given (a CPU-sized model; see the module docstring).
DEFAULT_CODEC_OPTIONS = {"music2latent": ["preset=cpu"]}

from benchmark.engine.distributed import rank_stages  # noqa: E402  (after the path set-up)
from benchmark.results import compare_runs  # noqa: E402

# -- machine ---------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """CPU model (from /proc/cpuinfo), cores, torch version and threads, accelerator, load."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "load_average": os.getloadavg()[0]}


# -- material --------------------------------------------------------------------------------------
def material(args: argparse.Namespace) -> tuple[Path, str]:
    """The folder to evaluate and one line describing it (renders the built-in clips if needed)."""
    if args.audio is not None:
        if not args.audio.is_dir():
            raise SystemExit(f"--audio {args.audio}: not a folder")
        return args.audio.resolve(), f"user folder {args.audio.resolve()}"
    from benchmark.data.builtin import load_builtin

    clips = max(1, round(args.hours * 3600 / args.clip_seconds))
    t0 = time.perf_counter()
    dataset = load_builtin(root=args.work, preset="default", workers=os.cpu_count() or 1, progress=False,
                           n_notes=0, n_clips=clips, clip_seconds=args.clip_seconds)
    folder = dataset.root / "clips"
    return folder, (f"built-in music: {clips} clips x {args.clip_seconds:g} s at {dataset.sample_rate} Hz in "
                    f"{folder} (ready in {time.perf_counter() - t0:.1f} s)")


def list_items(folder: Path) -> list:
    from benchmark.data.dataset import Item
    from benchmark.data.folder import list_audio_files

    return [Item(id=p.relative_to(folder).as_posix(), path=p, split="test") for p in list_audio_files(folder)]


def codec_options(args: argparse.Namespace) -> list[str]:
    return list(args.codec_option) if args.codec_option else list(DEFAULT_CODEC_OPTIONS.get(args.codec, []))


def build_codec(name: str, options: list[str], device: str):
    from benchmark.codecs.registry import create_codec
    from benchmark.evaluate import parse_options

    codec = create_codec(name, **parse_options(options, "--codec-option")).to(device)
    if str(device).startswith("cuda"):  # the engine's timers do not synchronise: make each call complete
        for method in ("encode", "decode"):
            call = getattr(codec, method)

            def synced(*a, _call=call, **k):
                out = _call(*a, **k)
                torch.cuda.synchronize()
                return out

            setattr(codec, method, synced)
    return codec


# -- part 1: stages in one process -----------------------------------------------------------------
def _own_batch(metric) -> bool:
    from benchmark.metrics import ItemMetric

    return type(metric).batch is not ItemMetric.batch


def warm_up(items: list, codec, metrics: list, device: str, seconds: float, workers: int) -> float:
    """One untimed pass over the first ``seconds`` of the first file through every stage; returns
    its wall seconds. The set metrics' backbone is called directly (nothing enters the cache)."""
    from benchmark.engine.sources import CodecSource
    from benchmark.metrics import ItemMetric, SetMetric

    t0 = time.perf_counter()
    source = CodecSource(codec, device=device, cache=None)
    for item in items[:1]:
        try:
            pieces = list(source.stream(item, None, max_seconds=seconds))
        except Exception as exc:  # the timed pass reports it
            print(f"warm-up: {item.id}: {exc}", file=sys.stderr)
            continue
        for piece in pieces[:1]:
            ref, est, rate = piece.segment.audio[0], piece.estimate[0], piece.segment.sample_rate
            for metric in metrics:
                if isinstance(metric, ItemMetric):
                    metric(ref, est, rate)
                    if _own_batch(metric):  # starts ViSQOL's worker pool
                        metric.batch([(ref, est)] * (2 * max(1, workers)), rate)
                elif isinstance(metric, SetMetric) and hasattr(metric, "backbone"):
                    metric.backbone.embed(ref, rate)
    return time.perf_counter() - t0


def measure_stages(items: list, codec, metrics: list, device: str, workers: int,
                   segment_seconds: float | None) -> dict[str, Any]:
    """Time every stage of scoring ``items`` through ``codec`` (module docstring, part 1)."""
    from benchmark.engine.reconstruct import PREPARE_WINDOW
    from benchmark.engine.score import accumulator_for, describe
    from benchmark.engine.sources import CodecSource
    from benchmark.metrics import ItemMetric, SetMetric
    from benchmark.metrics.align import check_pair

    item_metrics = [m for m in metrics if isinstance(m, ItemMetric)]
    set_metrics = [m for m in metrics if isinstance(m, SetMetric)]
    accumulators = {m.card.name: accumulator_for(m) for m in set_metrics}
    source = CodecSource(codec, device=device, cache=None)
    spent: dict[str, float] = collections.defaultdict(float)
    queues: dict[str, list] = {}
    encode = decode = audio_seconds = 0.0
    scored: list[str] = []
    failures: list[str] = []

    def flush(metric) -> None:
        jobs = queues.pop(metric.card.name, [])
        if jobs:
            t = time.perf_counter()
            try:
                metric.batch([(r, e) for r, e, _ in jobs], jobs[0][2])
            except Exception as exc:
                failures.append(f"{metric.card.name} batch: {describe(exc)}")
            spent[metric.card.name] += time.perf_counter() - t

    start = time.perf_counter()
    for first in range(0, len(items), PREPARE_WINDOW):
        window = items[first:first + PREPARE_WINDOW]
        t = time.perf_counter()
        source.prepare(window, segment_seconds)
        spent["source"] += time.perf_counter() - t
        for item in window:
            stream = source.stream(item, segment_seconds)
            pieces = iter(stream)
            seconds = 0.0
            try:
                while True:
                    t = time.perf_counter()
                    piece = next(pieces, None)
                    spent["source"] += time.perf_counter() - t
                    if piece is None:
                        break
                    segment = piece.segment
                    rate = segment.sample_rate
                    seconds += segment.samples / rate
                    label = segment.label(item.id)
                    pairs = [check_pair(segment.audio[ch], piece.estimate[ch], label)
                             for ch in range(segment.audio.shape[0])]
                    for metric in item_metrics:
                        name = metric.card.name
                        for ref, est, info in pairs:
                            if info.silent:
                                continue
                            if _own_batch(metric):  # queued and flushed as the scorer does
                                queue = queues.setdefault(name, [])
                                if queue and queue[0][2] != rate:
                                    flush(metric)
                                    queue = queues.setdefault(name, [])
                                queue.append((ref, est, rate))
                                if len(queue) >= 2 * max(1, int(getattr(metric, "workers", 1) or 1)):
                                    flush(metric)
                            else:
                                t = time.perf_counter()
                                metric(ref, est, rate)
                                spent[name] += time.perf_counter() - t
                    if accumulators and not all(info.silent for _, _, info in pairs):
                        reference = np.mean([r for r, _, _ in pairs], axis=0)
                        estimate = np.mean([e for _, e, _ in pairs], axis=0)
                        for name, acc in accumulators.items():
                            t = time.perf_counter()
                            acc.update(item.id, reference, estimate, rate, segment.start, label)
                            spent[f"{name} embed"] += time.perf_counter() - t
            except Exception as exc:
                failures.append(f"{item.id}: {describe(exc)}")
                for acc in accumulators.values():
                    acc.discard(item.id)
            else:
                for acc in accumulators.values():
                    acc.commit(item.id)
                scored.append(item.id)
                audio_seconds += seconds
            encode += stream.coding.encode_seconds
            decode += stream.coding.decode_seconds
    for metric in item_metrics:
        flush(metric)
    set_values = {}
    t = time.perf_counter()
    for name, acc in accumulators.items():
        try:
            set_values[name] = acc.compute(scored).value
        except Exception as exc:
            failures.append(f"{name}: {describe(exc)}")
    spent["set compute"] += time.perf_counter() - t
    wall = time.perf_counter() - start

    rows = [("read + resample", spent["source"] - encode - decode,
             f"read, soxr to {codec.info.sample_rate} Hz and back, chunks, alignment"),
            ("encode", encode, f"{codec.info.name}.encode ({device})"),
            ("decode", decode, f"{codec.info.name}.decode ({device})")]
    for metric in item_metrics:
        how = f"{metric.workers} worker processes" if _own_batch(metric) and getattr(metric, "workers", 1) > 1 \
            else "in process"
        rows.append((metric.card.name, spent[metric.card.name], how))
    for metric in set_metrics:
        name = metric.card.name
        backbone = getattr(metric, "backbone_name", "")
        rows.append((f"{name} embeddings", spent[f"{name} embed"],
                     f"{backbone} backbone" + (", embedding cache" if name != set_metrics[0].card.name else "")))
    if set_metrics:
        rows.append(("set metrics compute", spent["set compute"], ", ".join(m.card.name for m in set_metrics)))
    rows.append(("other", wall - sum(r[1] for r in rows), "pair checks, loop"))
    return {"rows": rows, "wall_seconds": wall, "items": len(scored), "audio_seconds": audio_seconds,
            "failures": failures, "set_values": set_values}


def stage_table(result: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    n, audio, wall = result["items"], result["audio_seconds"], result["wall_seconds"]
    total = sum(max(0.0, s) for _, s, _ in result["rows"]) or 1.0
    width = max(len(name) for name, _, _ in result["rows"]) + 1
    lines = [f"{'stage':{width}s} {'seconds':>8s} {'items/s':>9s} {'x real time':>11s} {'share':>6s}  how"]
    out = []
    for name, seconds, how in [*result["rows"], ("total", wall, "")]:
        rate = n / seconds if seconds > 0 else float("inf")
        rtf = audio / seconds if seconds > 0 else float("inf")
        lines.append(f"{name:{width}s} {seconds:8.2f} {rate:9.2f} {rtf:11.1f} {seconds / total:6.1%}  {how}")
        out.append({"stage": name, "seconds": seconds, "items_per_second": rate, "real_time_factor": rtf,
                    "share": seconds / total, "how": how})
    return "\n".join(lines), out


# -- part 2: scaling with whole processes ----------------------------------------------------------
def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_cli(command: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``command`` from the repository root, output to ``log``: wall seconds, CPU seconds of
    the whole process tree (ranks and metric workers included), load average before and after,
    exit status."""
    load, cpu, t0 = os.getloadavg()[0], _children_cpu(), time.perf_counter()
    with open(log, "wb") as fh:
        rc = subprocess.call(command, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    return {"command": command, "returncode": rc, "wall_seconds": time.perf_counter() - t0,
            "cpu_seconds": _children_cpu() - cpu, "load_average": [load, os.getloadavg()[0]], "log": str(log)}


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def shard_items(stages: dict[str, dict[str, Any]]) -> int:
    """Items a rank scored in its shard (its ``shard reconstruct ...`` stages; one codec here)."""
    shard = [s for name, s in stages.items() if name.startswith("shard")] or \
        [s for name, s in stages.items() if "reconstruct" in name]
    return max((int(s.get("items", 0)) for s in shard), default=0)


def measure_scaling(args: argparse.Namespace, folder: Path, n_items: int, audio_seconds: float) -> dict[str, Any]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = args.work / "scaling" / stamp
    base.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # one process: all cores
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                           capture_output=True, text=True)
    threads_one = probe.stdout.strip() or "?"
    options = sum((["--codec-option", o] for o in codec_options(args)), [])

    def eval_args(tag: str) -> list[str]:
        return ["eval", "--codec", args.codec, *options, "--audio", str(folder), "--out", str(base / tag / "out"),
                "--cache", str(base / tag / "cache"), "--metrics", args.metrics, "--device", args.device,
                "--workers", str(args.workers), "--quiet"]

    runs: dict[str, dict[str, Any]] = {}
    visqol = f", visqol {args.workers} worker processes" if "visqol" in args.metrics.split(",") else ""
    plans = [("1 process", "one", [sys.executable, "-m", "benchmark", *eval_args("one")],
              f"torch {threads_one} threads (OMP_NUM_THREADS unset){visqol}"),
             (f"{args.processes} processes", "many",
              [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.processes),
               "-m", "benchmark", *eval_args("many")],
              "torchrun, OMP_NUM_THREADS=1 per rank")]
    for label, tag, command, threads in plans:
        (base / tag).mkdir(parents=True, exist_ok=True)
        print(f"[scaling] {label}: {' '.join(command)}", file=sys.stderr, flush=True)
        run = run_cli(command, env, base / tag / "log.txt")
        run.update(label=label, threads=threads, out=str(base / tag / "out"))
        done = (base / tag / "out" / "results.csv").exists()
        run["ok"] = run["returncode"] in (0, 1) and done  # 1: some files failed, the rest scored
        if run["ok"]:
            run["items_per_second"] = n_items / run["wall_seconds"]
            run["real_time_factor"] = audio_seconds / run["wall_seconds"]
        else:
            run["stderr_tail"] = _tail(base / tag / "log.txt")
        shutil.rmtree(base / tag / "cache", ignore_errors=True)
        runs[tag] = run
    result: dict[str, Any] = {"folder": str(base), "runs": runs, "processes": args.processes}
    records = rank_stages(base / "many" / "out")
    result["ranks"] = [{"rank": r.get("rank"), "device": r.get("device"), "state": r.get("state"),
                        "items": shard_items(r.get("stages", {})), "stages": r.get("stages", {})} for r in records]
    if runs["one"]["ok"] and runs["many"]["ok"]:
        speedup = runs["one"]["wall_seconds"] / runs["many"]["wall_seconds"]
        result.update(speedup=speedup, efficiency=speedup / args.processes,
                      comparison=compare_runs(base / "one" / "out", base / "many" / "out"))  # timings aside
    return result


def scaling_report(result: dict[str, Any], n_items: int) -> str:
    runs = result["runs"]
    lines = [f"{'run':12s} {'wall s':>8s} {'items/s':>8s} {'x real time':>11s} {'speed-up':>8s} "
             f"{'efficiency':>10s} {'CPU s':>7s} {'load':>9s}  threads"]
    for tag in ("one", "many"):
        run = runs[tag]
        if not run["ok"]:
            lines.append(f"{run['label']:12s} FAILED (exit status {run['returncode']} after "
                         f"{run['wall_seconds']:.1f} s); log {run['log']}")
            continue
        speedup = 1.0 if tag == "one" else result.get("speedup", float("nan"))
        procs = 1 if tag == "one" else result["processes"]
        lines.append(f"{run['label']:12s} {run['wall_seconds']:8.1f} {run['items_per_second']:8.2f} "
                     f"{run['real_time_factor']:11.1f} {speedup:7.2f}x {speedup / procs:10.0%} "
                     f"{run['cpu_seconds']:7.1f} {run['load_average'][0]:4.1f}-{run['load_average'][1]:<4.1f}  "
                     f"{run['threads']}")
    lines.append("(CPU s: CPU time of the run's process tree; load: 1-minute load average before-after the run, "
                 "other jobs on the cores slow it)")
    for tag in ("one", "many"):
        if not runs[tag]["ok"]:
            lines.append(f"\n{runs[tag]['label']} failed; the tail of its output:\n{runs[tag]['stderr_tail']}")
    if result["ranks"]:
        shares = ", ".join(f"rank {r['rank']}: {r['items']} items ({r['device']}, {r['state']})"
                           for r in result["ranks"])
        biggest = max(r["items"] for r in result["ranks"]) or n_items
        lines.append(f"shards: {shares}; best possible speed-up of the shards alone "
                     f"{n_items / biggest:.2f}x")
    elif runs["many"]["ok"]:
        lines.append("shards: no rank records (<out>/ranks/rank-*.json): this checkout's eval does not shard items "
                     "over torchrun ranks, so every rank may have run every item; the speed-up is not meaningful")
    if "comparison" in result:
        c = result["comparison"]
        lines.append(f"sanity: {c.compared} values of results.csv and items.csv compared (timings aside), "
                     f"{len(c.unmatched)} in one run only, max relative difference {c.max_relative:.2g}"
                     + (f" ({c.worst[0][1]})" if c.worst else ""))
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    from benchmark.engine.segments import DEFAULT_SEGMENT_SECONDS
    from benchmark.evaluate import DEFAULT_METRICS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio", type=Path, help="folder of audio to evaluate (default: generated built-in music)")
    ap.add_argument("--hours", type=float, default=0.05, help="hours of built-in music to generate (default 0.05)")
    ap.add_argument("--clip-seconds", type=float, default=10.0, help="length of a generated clip (default 10 s)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "m2l-bench-throughput",
                    help="folder for the generated music and the scaling runs (reused)")
    ap.add_argument("--codec", default="music2latent", help="codec registry name or import path")
    ap.add_argument("--codec-option", action="append", default=[], metavar="KEY=VALUE",
                    help="codec option, YAML-typed (repeatable; default for music2latent: preset=cpu)")
    ap.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated metrics (eval's default)")
    ap.add_argument("--device", default="cpu", help="codec device: cpu, cuda, ...")
    ap.add_argument("--workers", type=int, default=2, help="ViSQOL worker processes (as eval, default 2)")
    ap.add_argument("--warmup-seconds", type=float, default=2.0, help="audio of the untimed warm-up (s)")
    ap.add_argument("--processes", type=int, default=2, help="processes of the torchrun launch (default 2)")
    ap.add_argument("--no-scaling", action="store_true", help="skip the 1 -> N process comparison")
    ap.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = ap.parse_args(argv)
    args.work = args.work.expanduser().resolve()
    args.work.mkdir(parents=True, exist_ok=True)

    from benchmark.engine.run import build_metrics

    info = machine()
    folder, described = material(args)
    items = list_items(folder)
    if not items:
        raise SystemExit(f"{folder}: no audio files")
    options = codec_options(args)
    t0 = time.perf_counter()
    codec = build_codec(args.codec, options, args.device)
    build_seconds = time.perf_counter() - t0
    random_weights = "random" in f"{codec.info.weights_id} {codec.info.description}".lower()
    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    with tempfile.TemporaryDirectory(dir=args.work) as embeddings:
        metrics = build_metrics(names, {}, cache_dir=Path(embeddings), reference_name=str(folder),
                                workers=args.workers)
        warm = warm_up(items, codec, metrics, args.device, args.warmup_seconds, args.workers)
        stages = measure_stages(items, codec, metrics, args.device, args.workers, DEFAULT_SEGMENT_SECONDS)
        for metric in metrics:  # ViSQOL's pool
            close = getattr(metric, "close", None)
            if callable(close):
                close()
    table, stage_rows = stage_table(stages)

    device = info["cuda"] if str(args.device).startswith("cuda") and info["cuda"] else f"cpu ({info['cpu']})"
    print(f"# machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} ({info['torch_threads']} threads), "
          f"device {device}, load average {info['load_average']:.1f}")
    print(f"# material: {len(items)} files, {stages['audio_seconds']:.1f} s of audio; {described}")
    print(f"# codec: {args.codec} {' '.join(options) or '(defaults)'}, {codec.info.sample_rate} Hz, "
          f"{codec.info.parameters:,} parameters; {codec.info.description}"
          + ("\n#   RANDOM WEIGHTS: fine for throughput, the scores mean nothing" if random_weights else ""))
    print(f"# one-off costs, excluded: codec build {build_seconds:.1f} s, warm-up on "
          f"{args.warmup_seconds:g} s of audio {warm:.1f} s")
    print(f"\nstages in one process ({stages['items']} items scored, segments of {DEFAULT_SEGMENT_SECONDS:g} s):")
    print(table)
    for failure in stages["failures"]:
        print(f"failed: {failure}")

    scaling = None
    if not args.no_scaling:
        print(f"\nscaling: the CLI (`eval`) on the same folder as whole processes, wall clock, fresh caches "
              f"(start-up, model building and the report included); 1 -> {args.processes} processes",
              flush=True)
        scaling = measure_scaling(args, folder, len(items), stages["audio_seconds"])
        print(scaling_report(scaling, len(items)))

    if args.json:
        payload = {"machine": info, "material": {"folder": str(folder), "description": described,
                                                 "files": len(items), "audio_seconds": stages["audio_seconds"]},
                   "codec": {"name": args.codec, "options": options, "sample_rate": codec.info.sample_rate,
                             "parameters": codec.info.parameters, "weights_id": codec.info.weights_id,
                             "random_weights": random_weights, "description": codec.info.description},
                   "device": args.device, "metrics": names, "build_seconds": build_seconds, "warmup_seconds": warm,
                   "stages": stage_rows, "items_scored": stages["items"], "failures": stages["failures"],
                   "set_values": stages["set_values"], "scaling": scaling}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
