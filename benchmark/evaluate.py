"""``python -m benchmark eval``: reconstruction metrics on any folder of audio files.

Two modes::

    python -m benchmark eval --codec NAME --audio DIR [--metrics ...] [--out DIR]
    python -m benchmark eval --reference DIR --decoded DIR [--metrics ...] [--out DIR]

Codec mode
    Every audio file under ``--audio`` (WAV, FLAC, OGG, MP3, AIFF, Opus; any rate; mono or
    multi-channel; any length) is resampled to the codec's rate, encoded and decoded channel
    by channel (channels go in the batch axis), in chunks of ``--chunk-seconds`` so that codec
    memory stays bounded, and resampled back to the file's rate. Each decoded chunk is fitted
    to its input chunk (trimmed, or zero-filled at its end if a non-final chunk came back
    short; the count is reported), so chunks stay time-aligned; the last chunk follows the
    usual trim-to-shorter policy of :mod:`benchmark.metrics.align`.
Paired mode
    Files under ``--decoded`` are matched to files under ``--reference`` by relative path
    without extension (``a/b.wav`` <-> ``a/b.flac``); the decoded file is resampled to the
    reference's rate when they differ.

Item metrics are computed per channel at the reference's rate (each metric resamples
internally if it has a fixed analysis rate, e.g. ViSQOL 48 kHz) and averaged over channels;
set metrics (FAD) use channel-averaged clips, embedded file by file as the folder is processed
(only the embeddings are kept, so memory does not grow with the audio). Files with a silent
reference are excluded from set metrics. Memory per file is O(file length) for the audio
buffers; use ``--max-seconds`` to evaluate excerpts of very long files. A file that cannot be read, a codec that raises,
NaN output or a silent reference become rows with a status and a message naming the file; the
rest of the folder completes.

Outputs in ``--out``: ``items.csv`` (tidy: one row per file x channel x metric, with status
and message), ``summary.csv`` (per metric: mean, std, n, n_nan, n_error and the metric card),
``fad_contributions.csv`` (leave-one-out FAD change per file) and ``eval.json`` (arguments,
codec info, metric cards, FAD settings, provenance).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data.audio import AUDIO_EXTENSIONS, AudioError, read_audio, resample
from benchmark.metrics import (
    ItemMetric,
    MetricError,
    SetMetric,
    available_metrics,
    create_metric,
)
from benchmark.metrics.align import align_pair

DEFAULT_METRICS = ("si_sdr", "visqol", "mel_distance", "mrstft_distance", "fad")
ITEM_COLUMNS = ("file", "channel", "metric", "value", "status", "message", "seconds", "sample_rate")
SUMMARY_COLUMNS = ("metric", "mean", "std", "n", "n_nan", "n_error", "unit", "higher_is_better",
                   "convention", "implementation", "version", "settings")


class EvalError(RuntimeError):
    """Bad command-line use of ``eval`` (message says what to change)."""


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``eval`` options to ``parser`` (the lead's CLI calls this)."""
    src = parser.add_argument_group("what to evaluate (codec mode or paired mode)")
    src.add_argument("--codec", help="codec registry name or import path 'pkg.module:Class'")
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
                        help="FAD backbone: musicnn (default, offline), vggish or clap (need --fad-checkpoint) "
                             "or an import path 'pkg.module:Backbone'")
    parser.add_argument("--fad-checkpoint", type=Path, default=None,
                        help="local checkpoint of the FAD backbone (vggish-10086976.pth, 630k-audioset-best.pt)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: ./eval-<name>-<time>)")
    parser.add_argument("--chunk-seconds", type=float, default=60.0,
                        help="codec mode: seconds per codec call (bounds codec memory; default 60)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="evaluate only the first N seconds of every file")
    parser.add_argument("--device", default="cpu", help="codec device (cpu, cuda, ...)")
    parser.add_argument("--workers", type=int, default=2, help="processes for ViSQOL (default 2)")
    parser.add_argument("--save-decoded", action="store_true", help="codec mode: write decoded audio to OUT/decoded/")
    parser.add_argument("--limit", type=int, default=None, help="only the first N files (quick looks)")
    parser.add_argument("--quiet", action="store_true", help="no per-file progress lines")


def eval_command(args: argparse.Namespace) -> int:
    """Run ``eval``; returns 0 on success, 1 if some files failed, 2 on usage errors."""
    try:
        job = EvalJob.from_args(args)
    except (EvalError, MetricError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = job.run()
    print(format_table(summary))
    print(f"\nwrote {job.out}/items.csv, summary.csv, eval.json")
    return 1 if job.n_failed_files else 0


def _yaml_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def _parse_options(pairs: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise EvalError(f"{what} {pair!r}: expected KEY=VALUE")
        key, value = pair.split("=", 1)
        out[key.strip()] = _yaml_value(value)
    return out


# ---------------------------------------------------------------------------------------------
# file discovery
# ---------------------------------------------------------------------------------------------
def list_audio(root: Path) -> list[Path]:
    """Audio files under ``root`` (recursive, sorted by relative path; hidden files skipped)."""
    if not root.is_dir():
        raise EvalError(f"{root}: not a folder")
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def pair_folders(reference: Path, decoded: Path) -> tuple[list[tuple[str, Path, Path | None]], list[str]]:
    """Match files by relative path without extension.

    Returns ``([(name, reference_path, decoded_path or None)], notes)``; ``notes`` lists decoded
    files without a reference and ambiguous names.
    """
    def index(root: Path) -> tuple[dict[str, Path], list[str]]:
        out: dict[str, Path] = {}
        dup: list[str] = []
        for p in list_audio(root):
            key = p.relative_to(root).with_suffix("").as_posix()
            if key in out:
                dup.append(f"{root}: several files named {key}.* ({out[key].name}, {p.name}); using {out[key].name}")
                continue
            out[key] = p
        return out, dup

    refs, notes = index(reference)
    decs, dup = index(decoded)
    notes += dup
    notes += [f"{decs[k]}: no reference file {k}.* under {reference}; ignored" for k in sorted(set(decs) - set(refs))]
    return [(k, refs[k], decs.get(k)) for k in sorted(refs)], notes


# ---------------------------------------------------------------------------------------------
# codec round trip
# ---------------------------------------------------------------------------------------------
def codec_round_trip(codec, audio: np.ndarray, sample_rate: int, chunk_seconds: float,
                     device: str = "cpu") -> tuple[np.ndarray, int, int]:
    """Encode and decode ``[channels, samples]`` audio at ``sample_rate`` with ``codec``.

    Channels are coded as a batch; the signal is cut into chunks of ``chunk_seconds`` at the
    codec's rate. Returns ``(decoded [channels, samples'] at sample_rate, filled, trimmed)``:
    samples zero-filled at the end of short non-final chunks, and samples the last chunk
    came back short (handled later by trim-to-shorter).
    """
    import torch

    from benchmark.codecs import CodecError

    rate = codec.info.sample_rate
    x = resample(np.ascontiguousarray(audio, dtype=np.float32), sample_rate, rate)
    chunk = max(1, int(round(chunk_seconds * rate)))
    pieces, filled, short_tail = [], 0, 0
    for start in range(0, x.shape[1], chunk):
        block = torch.from_numpy(np.ascontiguousarray(x[:, start:start + chunk])).to(device)
        with torch.no_grad():
            decoded = codec.decode(codec.encode(block))
        if decoded.ndim != 2 or decoded.shape[0] != block.shape[0]:
            raise CodecError(f"decoder returned shape {tuple(decoded.shape)} for input {tuple(block.shape)}; "
                             "expected [batch, samples]")
        y = decoded.detach().float().cpu().numpy()
        n = block.shape[1]
        last = start + chunk >= x.shape[1]
        if y.shape[1] >= n:
            y = y[:, :n]
        elif last:
            short_tail = n - y.shape[1]
        else:
            filled += n - y.shape[1]
            y = np.pad(y, ((0, 0), (0, n - y.shape[1])))
        pieces.append(y)
    out = np.concatenate(pieces, axis=1)
    return resample(out, rate, sample_rate), filled, short_tail


# ---------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _FileResult:
    """A scored file kept for set metrics: channel-mean mono audio at ``sample_rate``."""

    name: str
    reference: np.ndarray
    estimate: np.ndarray
    sample_rate: int


@dataclasses.dataclass
class _EmbeddingSet:
    """Streaming state of one embedding-based set metric (FAD): per-file embeddings, durations
    and a running hash of the reference clips; the audio itself is not kept."""

    names: list[str] = dataclasses.field(default_factory=list)
    reference: list[np.ndarray] = dataclasses.field(default_factory=list)
    estimate: list[np.ndarray] = dataclasses.field(default_factory=list)
    reference_seconds: list[float] = dataclasses.field(default_factory=list)
    estimate_seconds: list[float] = dataclasses.field(default_factory=list)
    hasher: Any = None


class EvalJob:
    """One ``eval`` invocation: the file list, the metrics, the rows it produces."""

    def __init__(self, files: list[tuple[str, Path, Path | None]], metrics: list[ItemMetric | SetMetric],
                 out: Path, codec=None, codec_name: str = "", codec_options: dict | None = None,
                 chunk_seconds: float = 60.0, max_seconds: float | None = None, device: str = "cpu",
                 save_decoded: bool = False, quiet: bool = False, notes: list[str] | None = None,
                 args: dict | None = None) -> None:
        self.files = files
        self.metrics = metrics
        self.item_metrics = [m for m in metrics if isinstance(m, ItemMetric)]
        self.set_metrics = [m for m in metrics if isinstance(m, SetMetric)]
        self.out = out
        self.codec = codec
        self.codec_name = codec_name
        self.codec_options = codec_options or {}
        self.chunk_seconds = chunk_seconds
        self.max_seconds = max_seconds
        self.device = device
        self.save_decoded = save_decoded
        self.quiet = quiet
        self.notes = list(notes or [])
        self.args = args or {}
        self.rows: list[dict[str, Any]] = []
        self.set_results: dict[str, Any] = {}
        self.failed: set[str] = set()
        # a metric with its own batch() (ViSQOL's process pool) is fed in small groups
        self._pending: dict[str, list[tuple[str, int, np.ndarray, np.ndarray, int, float]]] = {}

    @property
    def n_failed_files(self) -> int:
        return len(self.failed)

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EvalJob:
        codec_mode = args.codec is not None or args.audio is not None
        paired_mode = args.reference is not None or args.decoded is not None
        if codec_mode == paired_mode:
            raise EvalError("give either --codec NAME --audio DIR (codec mode) or --reference DIR "
                            "--decoded DIR (paired mode)")
        metric_options = _metric_options(args.metric_option)
        names = [m.strip() for m in args.metrics.split(",") if m.strip()]
        if not names:
            raise EvalError("--metrics is empty")
        if args.fad_backbone:
            metric_options.setdefault("fad", {})["backbone"] = args.fad_backbone
        if args.fad_checkpoint:
            metric_options.setdefault("fad", {}).setdefault("backbone_options", {})["checkpoint"] = str(args.fad_checkpoint)
        if "fad" in names:  # the reference set of FAD: the folder evaluated against
            metric_options.setdefault("fad", {}).setdefault("reference_name", str(args.audio or args.reference))
        if "visqol" in names:
            metric_options.setdefault("visqol", {}).setdefault("workers", args.workers)
        metrics = []
        for name in names:
            try:
                metrics.append(create_metric(name, **metric_options.get(name, {})))
            except MetricError:
                raise
            except Exception as exc:
                raise EvalError(f"metric {name!r} could not be built with {metric_options.get(name, {})}: {exc}") from exc
        stamp = time.strftime("%Y%m%d-%H%M%S")
        notes: list[str] = []
        codec, codec_options = None, {}
        if codec_mode:
            if args.codec is None or args.audio is None:
                raise EvalError("codec mode needs both --codec NAME and --audio DIR")
            from benchmark.codecs import CodecError, create_codec

            codec_options = _parse_options(args.codec_option, "--codec-option")
            try:
                codec = create_codec(args.codec, **codec_options).to(args.device)
            except CodecError as exc:
                raise EvalError(str(exc)) from exc
            if not codec.info.can_decode:
                raise EvalError(f"codec {args.codec!r} is feature-only (cannot decode); nothing to evaluate")
            root = args.audio
            files = [(p.relative_to(root).as_posix(), p, None) for p in list_audio(root)]
            label = codec.info.name
        else:
            if args.reference is None or args.decoded is None:
                raise EvalError("paired mode needs both --reference DIR and --decoded DIR")
            for opt in ("codec_option",):
                if getattr(args, opt):
                    raise EvalError("--codec-option only applies to codec mode")
            files, notes = pair_folders(args.reference, args.decoded)
            label = "paired"
        if not files:
            raise EvalError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found under "
                            f"{args.audio if codec_mode else args.reference}")
        if args.limit:
            files = files[:args.limit]
        out = args.out or Path(f"eval-{label.replace('/', '_').replace(':', '_')}-{stamp}")
        return cls(files, metrics, out, codec=codec, codec_name=args.codec or "", codec_options=codec_options,
                   chunk_seconds=args.chunk_seconds, max_seconds=args.max_seconds, device=args.device,
                   save_decoded=args.save_decoded, quiet=args.quiet, notes=notes,
                   args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"})

    # -- running ----------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        for note in self.notes:
            print(f"note: {note}", file=sys.stderr)
        kept: list[_FileResult] = []  # only for set metrics that need the audio itself
        streams = {m.card.name: _EmbeddingSet(hasher=hashlib.sha256()) for m in self.set_metrics if _streams(m)}
        keep_audio = any(not _streams(m) for m in self.set_metrics)
        for i, (name, ref_path, dec_path) in enumerate(self.files):
            t0 = time.perf_counter()
            result = self._evaluate_file(name, ref_path, dec_path)
            if result is not None:
                for metric in self.set_metrics:
                    if _streams(metric):
                        self._embed(metric, streams[metric.card.name], result)
                if keep_audio:
                    kept.append(result)
            if not self.quiet:
                status = "FAILED" if name in self.failed else "ok"
                print(f"[{i + 1}/{len(self.files)}] {name}: {status} ({time.perf_counter() - t0:.1f} s)",
                      file=sys.stderr)
        self._flush_all()
        for metric in self.set_metrics:
            if _streams(metric):
                self._finish_embedding_metric(metric, streams[metric.card.name])
            else:
                self._set_metric(metric, kept)
        summary = self.summary()
        self.write(summary)
        for metric in self.item_metrics:
            close = getattr(metric, "close", None)
            if callable(close):
                close()
        return summary

    def _error(self, name: str, metric: str, exc: BaseException | str, channel: int | str = "") -> None:
        message = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        if name != "*" and name not in message:
            message = f"{name}: {message}"
        self.failed.add(name)
        self.rows.append({"file": name, "channel": channel, "metric": metric, "value": float("nan"),
                          "status": "error", "message": message})

    def _load_pair(self, name: str, ref_path: Path, dec_path: Path | None) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
        notes: list[str] = []
        reference, rate = read_audio(ref_path, duration=self.max_seconds)
        if self.codec is not None:
            estimate, filled, _ = codec_round_trip(self.codec, reference, rate, self.chunk_seconds, self.device)
            if filled:
                notes.append(f"{filled} samples zero-filled after short decoder chunks")
            if self.save_decoded:
                from benchmark.data.audio import write_audio

                target = self.out / "decoded" / Path(name).with_suffix(".wav")
                write_audio(target, np.clip(estimate, -1.0, 1.0), rate, subtype="FLOAT")
        else:
            if dec_path is None:
                raise AudioError(f"{name}: no decoded file with this name (any extension) under the "
                                 "--decoded folder")
            estimate, _ = read_audio(dec_path, sample_rate=rate, duration=self.max_seconds)
        if estimate.shape[0] != reference.shape[0]:
            if estimate.shape[0] == 1:
                estimate = np.repeat(estimate, reference.shape[0], axis=0)
                notes.append("mono estimate compared with every reference channel")
            else:
                raise AudioError(f"{name}: reference has {reference.shape[0]} channels, estimate "
                                 f"{estimate.shape[0]}")
        return reference, estimate, rate, notes

    def _evaluate_file(self, name: str, ref_path: Path, dec_path: Path | None) -> _FileResult | None:
        try:
            reference, estimate, rate, notes = self._load_pair(name, ref_path, dec_path)
        except Exception as exc:  # unreadable file, codec failure: one error row, go on
            self._error(name, "*", exc)
            return None
        refs, ests = [], []
        for ch in range(reference.shape[0]):
            try:
                ref, est, info = align_pair(reference[ch], estimate[ch], item=f"{name} [channel {ch}]")
            except MetricError as exc:
                for metric in self.item_metrics:
                    self._error(name, metric.card.name, exc, ch)
                return None
            refs.append(ref)
            ests.append(est)
            message = "; ".join(notes + info.warnings)
            for metric in self.item_metrics:
                if info.silent:
                    self.rows.append({"file": name, "channel": ch, "metric": metric.card.name, "value": float("nan"),
                                      "status": "nan", "message": info.nan_reason, "seconds": ref.size / rate,
                                      "sample_rate": rate})
                elif type(metric).batch is not ItemMetric.batch:
                    self._queue(metric, name, ch, ref, est, rate, message)
                else:
                    self._score(metric, name, ch, ref, est, rate, message)
        if info.silent:
            return None  # silent reference: excluded from set metrics too (rows say why)
        n = min(r.size for r in refs)
        return _FileResult(name, np.mean([r[:n] for r in refs], axis=0), np.mean([e[:n] for e in ests], axis=0), rate)

    def _score(self, metric: ItemMetric, name: str, ch: int, ref, est, rate: int, message: str) -> None:
        try:
            value = float(metric(ref, est, rate))
        except Exception as exc:
            self._error(name, metric.card.name, exc, ch)
            return
        self._add_value(metric, name, ch, value, message, ref.size / rate, rate)

    def _add_value(self, metric, name, ch, value, message, seconds, rate) -> None:
        self.rows.append({"file": name, "channel": ch, "metric": metric.card.name, "value": value,
                          "status": "ok" if math.isfinite(value) else "nan",
                          "message": message if math.isfinite(value) else (message or "undefined"),
                          "seconds": round(seconds, 4), "sample_rate": rate})

    def _queue(self, metric: ItemMetric, name, ch, ref, est, rate, message) -> None:
        queue = self._pending.setdefault(metric.card.name, [])
        queue.append((name, ch, ref, est, rate, message))
        if len(queue) >= 2 * max(1, getattr(metric, "workers", 1)):
            self._flush(metric)

    def _flush(self, metric: ItemMetric) -> None:
        queue = self._pending.pop(metric.card.name, [])
        by_rate: dict[int, list] = {}
        for job in queue:
            by_rate.setdefault(job[4], []).append(job)
        for rate, jobs in by_rate.items():
            try:
                values = metric.batch([(j[2], j[3]) for j in jobs], rate)
            except Exception:  # find the culprit(s) one by one
                for j in jobs:
                    self._score(metric, j[0], j[1], j[2], j[3], rate, j[5])
                continue
            for j, value in zip(jobs, values):
                self._add_value(metric, j[0], j[1], float(value), j[5], j[2].size / rate, rate)

    def _flush_all(self) -> None:
        for metric in self.item_metrics:
            if metric.card.name in self._pending:
                self._flush(metric)

    def _set_metric(self, metric: SetMetric, kept: list[_FileResult]) -> None:
        name = metric.card.name
        if len(kept) < 2:
            self._error("*", name, f"set metric needs at least 2 evaluated files, got {len(kept)}")
            return
        try:
            rate = max(k.sample_rate for k in kept)
            result = metric.compute([resample(k.reference[None], k.sample_rate, rate)[0] for k in kept],
                                    [resample(k.estimate[None], k.sample_rate, rate)[0] for k in kept],
                                    rate, ids=[k.name for k in kept])
        except Exception as exc:
            self._error("*", name, exc)
            return
        self.set_results[name] = result

    def _embed(self, metric, state: _EmbeddingSet, result: _FileResult) -> None:
        """Embed one file's reference and estimate now (cached), keep only the embeddings."""
        try:
            ref = metric.embed_clip(result.reference, result.sample_rate, f"{result.name} (reference)")
            est = metric.embed_clip(result.estimate, result.sample_rate, f"{result.name} (estimate)")
        except Exception as exc:
            self._error(result.name, metric.card.name, exc)
            return
        cropped = metric._crop(result.reference, result.sample_rate)
        metric.hash_update(state.hasher, cropped, result.sample_rate)
        state.names.append(result.name)
        state.reference.append(ref)
        state.estimate.append(est)
        state.reference_seconds.append(cropped.size / result.sample_rate)
        state.estimate_seconds.append(metric._crop(result.estimate, result.sample_rate).size / result.sample_rate)

    def _finish_embedding_metric(self, metric, state: _EmbeddingSet) -> None:
        name = metric.card.name
        if len(state.names) < 2:
            self._error("*", name, f"set metric needs at least 2 evaluated files, got {len(state.names)}")
            return
        try:
            result = metric.from_embeddings(state.reference, state.estimate, state.names,
                                            reference_seconds=state.reference_seconds,
                                            estimate_seconds=state.estimate_seconds,
                                            reference_hash=state.hasher.hexdigest()[:16])
        except Exception as exc:
            self._error("*", name, exc)
            return
        self.set_results[name] = result

    # -- outputs ----------------------------------------------------------------------------
    def _item_values(self, metric_name: str) -> tuple[np.ndarray, int, int]:
        """Channel-averaged value per file, number of NaN files, number of failed files."""
        per_file: dict[str, list[float]] = {}
        errors: set[str] = set()
        for row in self.rows:
            if row["metric"] not in (metric_name, "*") or row["file"] == "*":
                continue
            if row["status"] == "error":
                errors.add(row["file"])
            elif row["metric"] == metric_name:
                per_file.setdefault(row["file"], []).append(row["value"])
        values = np.array([np.mean(v) for f, v in per_file.items() if f not in errors], dtype=float)
        return values, int(np.isnan(values).sum()), len(errors)

    def summary(self) -> list[dict[str, Any]]:
        out = []
        for metric in self.item_metrics:
            values, n_nan, n_err = self._item_values(metric.card.name)
            finite = values[np.isfinite(values)]
            out.append({"metric": metric.card.name,
                        "mean": float(finite.mean()) if finite.size else float("nan"),
                        "std": float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
                        "n": int(finite.size), "n_nan": n_nan, "n_error": n_err,
                        **_card_columns(metric.card), "settings": ""})
        for metric in self.set_metrics:
            result = self.set_results.get(metric.card.name)
            failed = {r["file"] for r in self.rows if r["status"] == "error" and r["metric"] in (metric.card.name, "*")}
            out.append({"metric": metric.card.name,
                        "mean": result.value if result else float("nan"), "std": float("nan"),
                        "n": result.settings.get("n_estimate_clips", 0) if result else 0,
                        "n_nan": 0, "n_error": len(failed), **_card_columns(metric.card),
                        "settings": json.dumps(result.settings, sort_keys=True, default=str) if result else ""})
        return out

    def write(self, summary: list[dict[str, Any]]) -> None:
        from benchmark.results import git_commit, hardware, write_csv

        self.out.mkdir(parents=True, exist_ok=True)
        write_csv(self.out / "items.csv", ITEM_COLUMNS, self.rows)
        write_csv(self.out / "summary.csv", SUMMARY_COLUMNS, summary)
        for name, result in self.set_results.items():
            if result.per_item:
                rows = sorted(({"file": k, "metric": f"{name}_contribution", "value": v}
                               for k, v in result.per_item.items()), key=lambda r: -np.nan_to_num(r["value"], nan=-np.inf))
                write_csv(self.out / f"{name}_contributions.csv", ("file", "metric", "value"), rows)
        meta = {
            "command": self.args, "files": len(self.files), "failed_files": sorted(self.failed),
            "codec": self.codec.info.as_dict() if self.codec is not None else None,
            "codec_identity": self.codec.identity if self.codec is not None else None,
            "codec_options": self.codec_options,
            "metrics": {m.card.name: m.card.as_dict() for m in self.metrics},
            "set_metric_settings": {k: r.settings for k, r in self.set_results.items()},
            "notes": self.notes, "git_commit": git_commit(), "hardware": hardware(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        tmp = self.out / ".eval.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2, default=str))
        tmp.replace(self.out / "eval.json")


def _streams(metric) -> bool:
    """Whether a set metric can be fed file by file (FAD: per-clip embeddings)."""
    return all(hasattr(metric, a) for a in ("embed_clip", "from_embeddings", "hash_update"))


def _card_columns(card) -> dict[str, Any]:
    return {"unit": card.unit, "higher_is_better": card.higher_is_better, "convention": card.convention,
            "implementation": card.implementation, "version": card.version}


def _metric_options(pairs: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in _parse_options(pairs, "--metric-option").items():
        if "." not in key:
            raise EvalError(f"--metric-option {key}=...: expected METRIC.KEY=VALUE, e.g. visqol.mode=speech")
        metric, option = key.split(".", 1)
        out.setdefault(metric, {})[option] = value
    return out


def format_table(summary: list[dict[str, Any]]) -> str:
    """Plain-text table of a summary: metric, mean +- std, n, NaN, errors, unit."""
    header = ("metric", "value", "n", "nan", "errors", "unit")
    rows = []
    for s in summary:
        arrow = "(higher better)" if s["higher_is_better"] else "(lower better)"
        value = "n/a" if not math.isfinite(s["mean"]) else (
            f"{s['mean']:.4g}" + (f" +- {s['std']:.3g}" if math.isfinite(s["std"]) else ""))
        rows.append((s["metric"], value, str(s["n"]), str(s["n_nan"]), str(s["n_error"]), f"{s['unit']} {arrow}"))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(lines)
