"""``python -m benchmark eval``: reconstruction metrics on any folder of audio, a thin front end
over the engine (:func:`benchmark.engine.run.score_sources`), the same one ``run`` uses.

Two modes::

    python -m benchmark eval --codec NAME --audio DIR [--metrics ...] [--out DIR]
    python -m benchmark eval --reference DIR --decoded DIR [--metrics ...] [--out DIR]

Codec mode: every audio file under ``--audio`` (WAV, FLAC, OGG/Opus, MP3, AIFF; any rate,
channel count and length) goes through the codec (:class:`benchmark.engine.sources.CodecSource`:
streamed, chunked with overlap and cross-fade, cached). Paired mode: files under ``--decoded``
are matched to files under ``--reference`` by relative path without extension (``a/b.wav`` <->
``a/b.flac``) and resampled to the reference's rate. Both are scored by the one scorer, under
the one alignment policy (:mod:`benchmark.metrics.align`) and segment policy
(:mod:`benchmark.engine.segments`); for the same file and codec, ``eval`` and ``run`` (with the
``folder`` dataset) give the same number.

Outputs in ``--out`` (default ``results/eval-<codec>-<id>``): the run schema
(:mod:`benchmark.results`): ``results.csv`` (mean with bootstrap CI, ``n``, ``n_failed``, metric
card, settings, provenance), ``items.csv``, ``segments.csv`` (items of several segments),
``errors.csv``, ``eval.json`` (arguments, codec card, provenance) and ``report/``. Scores are
cached (``--cache``), so a second call recomputes nothing. Exit status 1 if some files failed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from benchmark.errors import BenchmarkError
from benchmark.metrics import available_metrics

DEFAULT_METRICS = ("si_sdr", "visqol", "mel_distance", "mrstft_distance", "fad", "kad", "fad_inf")
EMBEDDING_SET_METRICS = ("fad", "kad", "fad_inf")


class EvalError(BenchmarkError, ValueError):
    """Bad command-line use of ``eval`` (the message says what to change)."""


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``eval`` options to ``parser``."""
    from benchmark.engine.segments import DEFAULT_SEGMENT_SECONDS
    from benchmark.engine.sources import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP_SECONDS

    src = parser.add_argument_group("what to evaluate (codec mode or paired mode)")
    src.add_argument("--codec", help="codec registry name, import path 'pkg.module:Class'")
    src.add_argument("--codec-option", action="append", default=[], metavar="KEY=VALUE",
                     help="codec constructor option, YAML-typed (repeatable), e.g. --codec-option sample_rate=16000")
    src.add_argument("--audio", type=Path, help="folder of audio files (codec mode)")
    src.add_argument("--reference", type=Path, help="folder of reference files (paired mode)")
    src.add_argument("--decoded", type=Path, help="folder of decoded files, same relative paths (paired mode)")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                        help=f"comma-separated metrics (default: {','.join(DEFAULT_METRICS)}; "
                             f"available: {','.join(available_metrics())})")
    parser.add_argument("--metric-option", action="append", default=[], metavar="METRIC.KEY=VALUE",
                        help="metric option, YAML-typed (repeatable), e.g. --metric-option visqol.mode=speech")
    parser.add_argument("--fad-backbone", default=None,
                        help="backbone of FAD, KAD and FAD-inf: musicnn (default, offline), vggish or clap (need "
                             "--fad-checkpoint) or an import path 'pkg.module:Backbone'")
    parser.add_argument("--fad-checkpoint", type=Path, default=None,
                        help="local checkpoint of the FAD backbone (vggish-10086976.pth, 630k-audioset-best.pt)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: results/eval-<name>-<id>)")
    parser.add_argument("--segment-seconds", type=_segment_seconds, default=DEFAULT_SEGMENT_SECONDS, metavar="S",
                        help="score files in segments of S seconds, the file's value being the length-weighted "
                             "mean (memory bounded for any length; files up to S + min(1 s, S/2) are one "
                             f"segment); 0 or 'none': whole files (default {DEFAULT_SEGMENT_SECONDS:g}, as `run`)")
    parser.add_argument("--chunk-seconds", type=float, default=DEFAULT_CHUNK_SECONDS,
                        help=f"codec mode: seconds per codec call (default {DEFAULT_CHUNK_SECONDS:g}, as `run`)")
    parser.add_argument("--overlap-seconds", type=float, default=DEFAULT_OVERLAP_SECONDS,
                        help=f"codec mode: cross-faded overlap of consecutive codec calls "
                             f"(default {DEFAULT_OVERLAP_SECONDS:g}, as `run`)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="evaluate only the first N seconds of every file")
    parser.add_argument("--failure-policy", choices=("common", "worst"), default="common",
                        help="summaries over the files scored (common) or failed files as the worst value (worst)")
    parser.add_argument("--device", default="cpu", help="codec device (cpu, cuda, ...)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                        help="learned codecs' forward passes in fp32 (default) or under bfloat16 autocast")
    parser.add_argument("--workers", type=int, default=2, help="processes for ViSQOL (default 2)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="cache folder (default: $BENCHMARK_CACHE or ~/.cache/m2l-benchmark)")
    parser.add_argument("--no-cache", action="store_true", help="compute everything, store nothing in the cache")
    parser.add_argument("--limit", type=int, default=None, help="only the first N files (quick looks)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _segment_seconds(text: str) -> float | None:
    """``--segment-seconds``: a positive number of seconds, or 0 / none / whole (no segments)."""
    if str(text).strip().lower() in ("0", "0.0", "none", "whole", "off"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds (e.g. 30) or 0/none for whole files") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number of seconds, or 0 for whole files")
    return value or None


def parse_options(pairs: list[str], what: str) -> dict[str, Any]:
    """``["k=v", ...]`` -> ``{k: YAML-typed v}``; a pair without ``=`` is an error naming ``what``."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise EvalError(f"{what} {pair!r}: expected KEY=VALUE")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def metric_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in parse_options(args.metric_option, "--metric-option").items():
        if "." not in key:
            raise EvalError(f"--metric-option {key}=...: expected METRIC.KEY=VALUE, e.g. visqol.mode=speech")
        metric, option = key.split(".", 1)
        out.setdefault(metric, {})[option] = value
    for name in EMBEDDING_SET_METRICS:  # one backbone for FAD and its companions
        if args.fad_backbone:
            out.setdefault(name, {})["backbone"] = args.fad_backbone
        if args.fad_checkpoint:
            out.setdefault(name, {}).setdefault("backbone_options", {})["checkpoint"] = str(args.fad_checkpoint)
    return out


def pair_folders(reference: Path, decoded: Path) -> tuple[list, dict[str, Path | None], list[str]]:
    """Match files by relative path without extension: ``(reference items, {item id: decoded
    path or None}, notes)``; notes name decoded files without a reference and ambiguous names."""
    from benchmark.data.dataset import Item
    from benchmark.data.folder import list_audio_files

    def index(root: Path) -> tuple[dict[str, Path], list[str]]:
        out: dict[str, Path] = {}
        dup: list[str] = []
        for p in list_audio_files(root):
            key = p.relative_to(root).with_suffix("").as_posix()
            if key in out:
                dup.append(f"{root}: several files named {key}.* ({out[key].name}, {p.name}); using {out[key].name}")
                continue
            out[key] = p
        return out, dup

    for folder in (reference, decoded):
        if not folder.is_dir():
            raise EvalError(f"{folder}: not a folder")
    refs, notes = index(reference)
    decs, dup = index(decoded)
    notes += dup + [f"{decs[k]}: no reference file {k}.* under {reference}; ignored"
                    for k in sorted(set(decs) - set(refs))]
    items = [Item(id=refs[k].relative_to(reference).as_posix(), path=refs[k], split="test") for k in sorted(refs)]
    return items, {it.id: decs.get(k) for it, k in zip(items, sorted(refs))}, notes


def eval_command(args: argparse.Namespace) -> int:
    """Run ``eval``; returns 0 on success, 1 if some files failed, 2 on usage errors."""
    from benchmark.cache import ArtifactCache, cache_key
    from benchmark.config import default_cache_dir
    from benchmark.data.dataset import Item, identity_of
    from benchmark.data.folder import list_audio_files
    from benchmark.engine.run import build_metrics, cost_facts, score_sources
    from benchmark.engine.sources import CodecSource, FolderSource
    from benchmark.provenance import atomic_write, git_commit, hardware, now
    from benchmark.results import ResultsStore

    from benchmark.engine.distributed import Ranks

    ranks = Ranks.from_environment()
    if ranks.distributed and args.no_cache:
        raise EvalError("under torchrun the ranks share their work through the cache; drop --no-cache")
    device, workers = ranks.device(args.device), ranks.workers(args.workers)  # this rank's share
    if ranks.distributed:
        from benchmark.engine.distributed import claim_device

        claim_device(device)
    codec_mode = args.codec is not None or args.audio is not None
    if codec_mode == (args.reference is not None or args.decoded is not None):
        raise EvalError("give either --codec NAME --audio DIR (codec mode) or --reference DIR --decoded DIR "
                        "(paired mode)")
    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if not names:
        raise EvalError("--metrics is empty")
    options = metric_options(args)
    notes: list[str] = []
    codec = None
    if codec_mode:
        if args.codec is None or args.audio is None:
            raise EvalError("codec mode needs both --codec NAME and --audio DIR")
        if not args.audio.is_dir():
            raise EvalError(f"{args.audio}: not a folder")
        from benchmark.codecs import create_codec

        codec_options = parse_options(args.codec_option, "--codec-option")
        codec = create_codec(args.codec, **codec_options).to(device)
        if not codec.info.can_decode:
            raise EvalError(f"codec {args.codec!r} is feature-only (cannot decode); nothing to evaluate")
        root = args.audio
        items = [Item(id=p.relative_to(root).as_posix(), path=p, split="test") for p in list_audio_files(root)]
        label = args.codec.replace("/", "_").replace(":", "_")
    else:
        if args.reference is None or args.decoded is None:
            raise EvalError("paired mode needs both --reference DIR and --decoded DIR")
        if args.codec_option:
            raise EvalError("--codec-option only applies to codec mode")
        root = args.reference
        items, decoded, notes = pair_folders(args.reference, args.decoded)
        label = "decoded"
    if not items:
        raise EvalError(f"no audio files found under {root}")
    items = items[: args.limit] if args.limit else items
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    dataset_id = identity_of([(it.id, it.path.lstat().st_size, int(it.path.lstat().st_mtime)) for it in items])
    cache_dir = args.cache or default_cache_dir()
    metrics = build_metrics(names, options, cache_dir=None if args.no_cache else cache_dir,
                            reference_name=str(root), workers=workers)
    if codec is not None:
        source = CodecSource(codec, label, chunk_seconds=args.chunk_seconds, overlap_seconds=args.overlap_seconds,
                             device=device, cache=None if args.no_cache else ArtifactCache(cache_dir),
                             precision=args.precision)
        columns = dict(codec=args.codec, codec_label=label, codec_id=codec.identity, weights_id=codec.info.weights_id)
    else:
        source = FolderSource(decoded, label)
        columns = dict(codec="decoded", codec_label=label, codec_id=cache_key(str(args.decoded.resolve()))[:16])
    columns.update(dataset="folder", dataset_id=dataset_id, split="test")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}
    run_name = f"eval-{label}-{cache_key(settings, dataset_id)[:8]}"
    out = args.out or Path("results") / run_name
    store = ResultsStore(out, run_name, cache_key(settings)[:16])
    cache = None if args.no_cache else ArtifactCache(cache_dir)
    if ranks.distributed:  # torchrun: every rank scores its share into the cache, rank 0 the rest
        from benchmark.engine.distributed import RankRecord, barrier, process_group, reconstruct_shard
        from benchmark.engine.run import StageTimer
        block = source.batch_items if isinstance(source, CodecSource) else 8
        record, timer = RankRecord(out, ranks, device), StageTimer()
        with process_group(ranks):
            with record.tracking(timer):
                reconstruct_shard([source], items, metrics, ranks, block=block, segment_seconds=args.segment_seconds,
                                  max_seconds=args.max_seconds, cache=cache, metric_options=options,
                                  progress=not args.quiet and ranks.main, log=lambda m: print(m, file=sys.stderr),
                                  timer=timer, record=record)
            barrier(ranks)
        if not ranks.main:
            return 0
    outcomes = score_sources([(source, columns)], items, metrics, store, segment_seconds=args.segment_seconds,
                             max_seconds=args.max_seconds, cache=cache, metric_options=options,
                             failure_policy=args.failure_policy, seed=args.seed, progress=not args.quiet,
                             log=lambda m: print(m, file=sys.stderr))
    if codec is not None:
        for metric, (value, unit, hib) in cost_facts(codec, outcomes[0]).items():
            store.add(**columns, stage="cost", metric=metric, value=value, unit=unit, higher_is_better=hib,
                      settings={"license": f"code {codec.info.code_license}; weights {codec.info.weights_license}"})
    store.write()
    meta = {"command": settings, "files": len(items), "failed_files": sorted(r.item.id for r in outcomes[0].results
                                                                            if not r.ok),
            "codec": codec.info.as_dict() if codec is not None else None,
            "codec_identity": codec.identity if codec is not None else None, "source": source.settings(),
            "notes": notes, "git_commit": git_commit(), "hardware": hardware(), "timestamp": now()}
    atomic_write(out / "eval.json", json.dumps(meta, indent=2, default=str))
    from benchmark.report import build_report

    build_report([out], out / "report")
    print(format_table(store.rows))
    print(f"\nwrote {out}/results.csv, items.csv, errors.csv, eval.json, report/report.md")
    return 1 if meta["failed_files"] else 0


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of the reconstruction rows: metric, mean [CI], n, failed, unit."""
    header = ("metric", "value", "n", "failed", "unit")
    lines = []
    for r in rows:
        if r.get("stage") != "reconstruction":
            continue
        value = r["value"]
        text = "n/a" if value is None or not math.isfinite(value) else f"{value:.4g}"
        if r.get("ci_low") is not None and math.isfinite(r.get("ci_low", math.nan)):
            text += f" [{r['ci_low']:.4g}, {r['ci_high']:.4g}]"
        arrow = "(higher better)" if r["higher_is_better"] else "(lower better)"
        lines.append((r["metric"], text, str(r.get("n", "")), str(r.get("n_failed", "")), f"{r['unit']} {arrow}"))
    widths = [max(len(x[i]) for x in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*x) for x in lines])
