"""``python -m benchmark eval``: reconstruction metrics on any folder of audio files.

Two modes::

    python -m benchmark eval --codec NAME --audio DIR [--metrics ...] [--out DIR]
    python -m benchmark eval --reference DIR --decoded DIR [--metrics ...] [--out DIR]

Codec mode
    Every audio file under ``--audio`` (WAV, FLAC, OGG, MP3, AIFF, Opus; any rate; mono or
    multi-channel; any length) is resampled to the codec's rate, encoded and decoded channel
    by channel (channels go in the batch axis), in chunks of ``--chunk-seconds`` at the codec's
    rate, and resampled back to the file's rate. Each decoded chunk is fitted to its input chunk
    (trimmed, or zero-filled at its end if a non-final chunk came back short; the count is
    reported), so chunks stay time-aligned; the last chunk follows the usual trim-to-shorter
    policy of :mod:`benchmark.metrics.align`.
Paired mode
    Files under ``--decoded`` are matched to files under ``--reference`` by relative path
    without extension (``a/b.wav`` <-> ``a/b.flac``); the decoded file is resampled to the
    reference's rate when they differ.

Streaming and segments (``--segment-seconds S``, default 30 s; ``0`` = whole files)
    Files are never loaded whole: the reference (and, in paired mode, the decoded file) is read
    block by block with libsndfile, which decodes every listed format incrementally (MP3 and
    OGG/Opus included, libsndfile >= 1.1), and cut into consecutive *segments* of ``S``
    seconds at the file's rate. Blocks are read with libsndfile's ``sf_readf_float`` directly:
    ``SoundFile.read`` seeks after every call, and an MP3 seek restarts mpg123, which glitches
    at every block border (should soundfile's internals change, MP3 files are read whole, with
    a note). Resampling (file -> codec rate -> file rate, decoded -> reference
    rate) goes through soxr's streaming resampler (:class:`benchmark.data.audio.ResampleFifo`),
    whose output is bit-identical to resampling the whole file at once, so segment borders
    add no resampling edge effects. Codec calls follow ``--chunk-seconds`` independently of
    the segments, so the decoded signal does not depend on ``S`` either. Memory is
    O(``S`` + ``--chunk-seconds``) per file, whatever its length. Why 30 s by default: it is
    the usual excerpt length of music test sets (GTZAN, FMA, MTG-Jamendo clips; MusicCaps has
    10 s), so such clips are scored whole; it is long enough for ViSQOL's patch alignment and
    a whole number of FAD patches (3 CLAP windows of 10 s, 10 musicnn patches of 2.99 s), and
    short enough that every metric's working memory stays small (tens of MB at 48 kHz).

    Rule for the end of a file: a final remainder shorter than ``min(1 s, S / 2)`` is appended
    to the previous segment (it is neither dropped nor scored alone), so every segment of a
    split file lasts between ``min(1 s, S / 2)`` and ``S + min(1 s, S / 2)`` seconds, and a file
    of at most ``S + min(1 s, S / 2)`` is one segment, read in one call: its values are exactly
    those of whole-file mode (``S = 0``).

    Every item metric scores each segment (per channel), and the file's value is the mean over
    its segments weighted by their length in samples. Segments with a silent reference (NaN)
    are left out of the mean; the file is NaN only if all are. This is a *segmental* score:
    for SI-SDR it is the length-weighted mean of per-segment SI-SDRs (each segment has its own
    scale factor and zero mean), which differs from the SI-SDR of the whole file (a single
    energy ratio); for ViSQOL it is the length-weighted mean of per-segment MOS; for the
    spectral distances, which are already means over frames, it differs from the whole-file
    value only by the frames at segment borders. FAD embeds each segment separately (the
    backbone's analysis patches restart at every border) and pools a file's segment
    embeddings, so per-file contributions stay per file. Values under different segment
    lengths are not comparable: ``S`` is stored in every row of ``items.csv``
    (``segment_seconds``, with the number of ``segments``), in the summary's settings, in the
    FAD settings (``segment_seconds``, set when any file was split) and in ``eval.json``.

Item metrics are computed per channel at the reference's rate (each metric resamples
internally if it has a fixed analysis rate, e.g. ViSQOL 48 kHz) and averaged over channels;
set metrics (FAD) use channel-averaged clips, embedded segment by segment as the folder is
processed (only the embeddings are kept, so memory does not grow with the audio). Segments
whose reference is silent on every channel are excluded from set metrics. A file that cannot
be read, a codec chunk that raises or returns NaN, or a pair that cannot be aligned become rows
with status ``error`` and a message naming the file and, for files of several segments, the
time range (``a.wav [30.00-60.00 s]: ...``); the rest of the file and of the folder completes.
A failed codec chunk is replaced by silence to keep the stream aligned and the segments it
overlaps are not scored (when the codec's rate differs from the file's, the resampler spreads
that silence a few milliseconds into the neighbouring segments). A file with failed segments
gets the mean over its scored segments with status ``partial`` and, like every file with an
error, is left out of the summary. ``--max-seconds`` evaluates only the start of every file.

Outputs in ``--out``: ``items.csv`` (tidy: one row per file x channel x metric, with status,
message, seconds scored, ``segment_seconds`` and ``segments``), ``segments.csv`` (segment mode:
one row per file x segment x channel x metric with its time range), ``summary.csv`` (per
metric: mean, std, n, n_nan, n_error, the metric card and settings), ``fad_contributions.csv``
(leave-one-out FAD change per file) and ``eval.json`` (arguments, segment settings, codec
info, metric cards, FAD settings, provenance).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import hashlib
import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data.audio import (
    AUDIO_EXTENSIONS,
    AudioError,
    ResampleFifo,
    resample,
    validate_audio,
)
from benchmark.metrics import (
    ItemMetric,
    MetricError,
    SetMetric,
    available_metrics,
    create_metric,
)
from benchmark.metrics.align import align_pair

DEFAULT_METRICS = ("si_sdr", "visqol", "mel_distance", "mrstft_distance", "fad")
DEFAULT_SEGMENT_SECONDS = 30.0
MIN_SEGMENT_SECONDS = 1.0  # a shorter final remainder joins the previous segment (see module doc)
SEGMENT_AGGREGATION = ("length-weighted mean over segments of the per-segment values; segments "
                       "with a silent reference (NaN) left out")
ITEM_COLUMNS = ("file", "channel", "metric", "value", "status", "message", "seconds", "sample_rate",
                "segment_seconds", "segments")
SEGMENT_COLUMNS = ("file", "segment", "start_seconds", "end_seconds", "channel", "metric", "value", "status",
                   "message", "sample_rate")
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
    parser.add_argument("--segment-seconds", type=_segment_seconds, default=DEFAULT_SEGMENT_SECONDS,
                        metavar="S",
                        help=f"stream files in segments of S seconds, score each segment and report the "
                             f"length-weighted mean per file (segmental SI-SDR, mean ViSQOL MOS, ...); "
                             f"memory stays bounded for any file length; files up to S + min(1 s, S/2) are "
                             f"one segment, scored exactly as whole files; 0 or 'none': whole files, "
                             f"memory grows with file length (default {DEFAULT_SEGMENT_SECONDS:g})")
    parser.add_argument("--chunk-seconds", type=float, default=60.0,
                        help="codec mode: seconds per codec call (bounds codec memory; the decoded audio "
                             "does not depend on --segment-seconds; default 60)")
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
# reading files in segments
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Segment:
    """A piece of a file: ``audio [channels, samples]`` float32 at ``sample_rate`` Hz, starting
    at sample ``start`` of the file. ``last``: no segment follows; ``only``: the file is this
    one segment."""

    index: int
    start: int
    audio: np.ndarray
    sample_rate: int
    last: bool
    only: bool

    @property
    def samples(self) -> int:
        return self.audio.shape[1]

    @property
    def seconds(self) -> tuple[float, float]:
        """(start, end) of the segment in seconds from the start of the file."""
        return self.start / self.sample_rate, (self.start + self.samples) / self.sample_rate

    def label(self, name: str) -> str:
        """How messages name the segment: ``name`` if it is the whole file, else ``name [t0-t1 s]``."""
        return name if self.only else f"{name} [{_span(*self.seconds)}]"


def _span(t0: float, t1: float) -> str:
    return f"{t0:.2f}-{t1:.2f} s"


def read_segments(path: str | Path, segment_seconds: float | None = None, max_seconds: float | None = None,
                  notes: list[str] | None = None) -> Iterator[Segment]:
    """Read ``path`` block by block as consecutive :class:`Segment` s at the file's own rate.

    ``segment_seconds=None`` yields the file (its first ``max_seconds``, if given) as one
    segment. Otherwise segments last ``segment_seconds`` and a final remainder shorter than
    ``min(MIN_SEGMENT_SECONDS, segment_seconds / 2)`` is appended to the previous segment; only
    the current and the next segment are in memory. A file whose header says it fits in one
    segment is read in one call, exactly as in whole-file mode. Unreadable, empty or non-finite
    audio raises :class:`AudioError` naming the file (and the time range, for files of several
    segments) when the reader gets there. ``notes`` receives a line if the file had to be read
    whole.
    """
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    try:
        fh = sf.SoundFile(str(path))
    except Exception as exc:  # libsndfile raises several types for corrupt or non-audio files
        raise AudioError(f"{path}: cannot decode audio ({exc}); the file is corrupt or not audio - "
                         "re-export it as WAV/FLAC or remove it from the folder") from exc
    with fh:
        rate, channels = fh.samplerate, fh.channels
        left = None if max_seconds is None else int(round(max_seconds * rate))
        size = None if not segment_seconds else max(1, int(round(segment_seconds * rate)))
        tail = 0 if size is None else int(round(min(MIN_SEGMENT_SECONDS, segment_seconds / 2) * rate))
        raw = _raw_reader(fh)
        if size is not None and 0 < min(fh.frames, left if left is not None else fh.frames) <= size + tail:
            size = None  # one segment: one read, as whole-file mode reads it
        elif size is not None and raw is None and fh.format == "MP3":
            size = None
            if notes is not None:
                notes.append("MP3 read whole (this soundfile version cannot read MP3 block by block)")
        position = 0

        def take(frames: int | None) -> np.ndarray:  # [channels, frames]; None: to the end
            nonlocal left, position
            if left is not None:
                frames = left if frames is None else min(frames, left)
            try:
                if frames is None:
                    block = fh.read(-1, dtype="float32", always_2d=True)
                else:
                    parts, got = [], 0
                    while got < frames:  # a decoder may return short reads before the end
                        part = raw(frames - got) if raw is not None else fh.read(
                            frames - got, dtype="float32", always_2d=True)
                        if not len(part):
                            break
                        parts.append(part)
                        got += len(part)
                    block = (parts[0] if len(parts) == 1 else np.concatenate(parts) if parts
                             else np.zeros((0, channels), np.float32))
            except Exception as exc:
                raise AudioError(f"{path}: cannot decode audio after {position / rate:.2f} s ({exc}); the file "
                                 "is corrupt - re-export it") from exc
            position += len(block)
            if left is not None:
                left -= len(block)
            return np.ascontiguousarray(block.T)

        current, index, start = take(size), 0, 0
        while True:
            following = take(size) if size is not None and current.shape[1] == size else current[:, :0]
            if 0 < following.shape[1] < tail:  # short final remainder: joins this segment
                current, following = np.concatenate([current, following], axis=1), following[:, :0]
            last = following.shape[1] == 0
            segment = Segment(index, start, current, rate, last=last, only=last and index == 0)
            validate_audio(current, str(path) if segment.only else f"{path} [{_span(*segment.seconds)}]")
            yield segment
            if last:
                return
            index, start, current = index + 1, start + current.shape[1], following


def _raw_reader(fh):
    """``read(frames) -> [n, channels] float32`` calling libsndfile's ``sf_readf_float`` directly.

    ``SoundFile.read`` seeks after every call to track its position (and clamps reads to the
    header's frame count): harmless for WAV/FLAC/OGG, but an MP3 seek restarts mpg123 without
    its bit reservoir, so MP3 read block by block glitches at every block border, and MP3
    headers may under-count frames. ``None`` if python-soundfile's internals are not there.
    """
    try:
        from soundfile import _ffi, _snd
    except ImportError:
        return None
    if not (hasattr(_snd, "sf_readf_float") and hasattr(fh, "_file")):
        return None

    def read(frames: int) -> np.ndarray:
        out = np.empty((frames, fh.channels), np.float32)
        got = int(_snd.sf_readf_float(fh._file, _ffi.cast("float *", out.ctypes.data), frames))
        error = int(_snd.sf_error(fh._file))
        if error:
            raise RuntimeError(_ffi.string(_snd.sf_error_number(error)).decode("utf-8", "replace"))
        return out[:got]

    return read


# ---------------------------------------------------------------------------------------------
# codec round trip
# ---------------------------------------------------------------------------------------------
def _code_chunk(codec, block: np.ndarray, device: str, last: bool) -> tuple[np.ndarray, int, int]:
    """Encode and decode one chunk ``[channels, n]`` at the codec's rate (channels as a batch).

    Returns ``(decoded, filled, short)``: the output is trimmed to ``n`` samples; a non-final
    chunk that comes back short is zero-filled at its end (``filled`` samples) so that the
    following chunks stay time-aligned; the last chunk is left ``short`` samples short (handled
    later by trim-to-shorter).
    """
    import torch

    from benchmark.codecs import CodecError

    x = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)).to(device)
    with torch.no_grad():
        decoded = codec.decode(codec.encode(x))
    if decoded.ndim != 2 or decoded.shape[0] != x.shape[0]:
        raise CodecError(f"decoder returned shape {tuple(decoded.shape)} for input {tuple(x.shape)}; "
                         "expected [batch, samples]")
    y = decoded.detach().float().cpu().numpy()
    n = block.shape[1]
    if y.shape[1] >= n:
        return y[:, :n], 0, 0
    if last:
        return y, 0, n - y.shape[1]
    return np.pad(y, ((0, 0), (0, n - y.shape[1]))), n - y.shape[1], 0


def codec_round_trip(codec, audio: np.ndarray, sample_rate: int, chunk_seconds: float,
                     device: str = "cpu") -> tuple[np.ndarray, int, int]:
    """Encode and decode ``[channels, samples]`` audio at ``sample_rate`` with ``codec``.

    Channels are coded as a batch; the signal is cut into chunks of ``chunk_seconds`` at the
    codec's rate. Returns ``(decoded [channels, samples'] at sample_rate, filled, trimmed)``:
    samples zero-filled at the end of short non-final chunks, and samples the last chunk
    came back short (handled later by trim-to-shorter). ``eval`` streams the same chunks
    (:meth:`EvalJob._codec_pairs`) without holding the whole file.
    """
    rate = codec.info.sample_rate
    x = resample(np.ascontiguousarray(audio, dtype=np.float32), sample_rate, rate)
    chunk = max(1, int(round(chunk_seconds * rate)))
    pieces, filled, short_tail = [], 0, 0
    for start in range(0, x.shape[1], chunk):
        y, fill, short = _code_chunk(codec, x[:, start:start + chunk], device, last=start + chunk >= x.shape[1])
        pieces.append(y)
        filled += fill
        short_tail += short
    return resample(np.concatenate(pieces, axis=1), rate, sample_rate), filled, short_tail


# ---------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _FileResult:
    """A scored clip (file or segment) kept for set metrics that need the audio itself:
    channel-mean mono audio at ``sample_rate``."""

    name: str
    reference: np.ndarray
    estimate: np.ndarray
    sample_rate: int


@dataclasses.dataclass
class _EmbeddingSet:
    """Streaming state of one embedding-based set metric (FAD): per-file embeddings (a file's
    segment embeddings pooled), durations and a running hash of the reference clips; the audio
    itself is not kept."""

    names: list[str] = dataclasses.field(default_factory=list)
    reference: list[np.ndarray] = dataclasses.field(default_factory=list)
    estimate: list[np.ndarray] = dataclasses.field(default_factory=list)
    reference_seconds: list[float] = dataclasses.field(default_factory=list)
    estimate_seconds: list[float] = dataclasses.field(default_factory=list)
    segments: int = 0
    hasher: Any = None


@dataclasses.dataclass
class _FileState:
    """What is known about one file while its segments stream by."""

    index: int
    notes: list[str] = dataclasses.field(default_factory=list)
    segments: int = 0
    filled: int = 0  # codec-rate samples zero-filled after short decoder chunks
    failed_spans: list[tuple[float, float]] = dataclasses.field(default_factory=list)  # seconds
    embeddings: dict[str, list[tuple]] = dataclasses.field(default_factory=dict)

    def all_notes(self) -> list[str]:
        filled = [f"{self.filled} samples zero-filled after short decoder chunks"] if self.filled else []
        return filled + self.notes


@dataclasses.dataclass
class _Job:
    """One channel of one segment, aligned and ready for the item metrics."""

    name: str
    channel: int
    segment: int
    seconds: tuple[float, float]
    label: str
    reference: np.ndarray
    estimate: np.ndarray
    sample_rate: int
    warnings: str


@dataclasses.dataclass
class _Aggregate:
    """Per-segment values of one file x channel x metric; combined into the file's row."""

    sample_rate: int
    values: list[float] = dataclasses.field(default_factory=list)
    samples: list[int] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    reasons: list[str] = dataclasses.field(default_factory=list)  # why a value is NaN

    def value(self) -> float:
        """Mean of the finite values weighted by segment length (a single one returned as is)."""
        finite = [(v, w) for v, w in zip(self.values, self.samples) if math.isfinite(v)]
        if not finite:
            return float("nan")
        if len(finite) == 1:
            return finite[0][0]
        values, weights = np.array(finite, dtype=np.float64).T
        return float(np.dot(values, weights) / weights.sum())


class EvalJob:
    """One ``eval`` invocation: the file list, the metrics, the rows it produces."""

    def __init__(self, files: list[tuple[str, Path, Path | None]], metrics: list[ItemMetric | SetMetric],
                 out: Path, codec=None, codec_name: str = "", codec_options: dict | None = None,
                 chunk_seconds: float = 60.0, max_seconds: float | None = None, device: str = "cpu",
                 save_decoded: bool = False, quiet: bool = False, notes: list[str] | None = None,
                 args: dict | None = None, segment_seconds: float | None = DEFAULT_SEGMENT_SECONDS) -> None:
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
        self.segment_seconds = segment_seconds or None
        self.device = device
        self.save_decoded = save_decoded
        self.quiet = quiet
        self.notes = list(notes or [])
        self.args = args or {}
        self.rows: list[dict[str, Any]] = []
        self.segment_rows: list[dict[str, Any]] = []
        self.set_results: dict[str, Any] = {}
        self.failed: set[str] = set()
        self._files: dict[str, _FileState] = {}
        self._aggregates: dict[tuple[str, int, str], _Aggregate] = {}
        self._errors: collections.Counter[tuple[str, str]] = collections.Counter()
        self._streams = {m.card.name: _EmbeddingSet(hasher=hashlib.sha256()) for m in self.set_metrics if _streams(m)}
        self._kept: list[_FileResult] = []  # only for set metrics that need the audio itself
        # a metric with its own batch() (ViSQOL's process pool) is fed in small groups
        self._pending: dict[str, list[_Job]] = {}

    @property
    def n_failed_files(self) -> int:
        return len(self.failed)

    @property
    def n_split_files(self) -> int:
        """Files scored as several segments."""
        return sum(1 for state in self._files.values() if state.segments > 1)

    @property
    def min_segment_seconds(self) -> float | None:
        """Shortest segment (seconds): a shorter final remainder joins the previous segment."""
        return None if self.segment_seconds is None else min(MIN_SEGMENT_SECONDS, self.segment_seconds / 2)

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
                   segment_seconds=getattr(args, "segment_seconds", DEFAULT_SEGMENT_SECONDS),
                   args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"})

    # -- running ----------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        for note in self.notes:
            print(f"note: {note}", file=sys.stderr)
        for i, (name, ref_path, dec_path) in enumerate(self.files):
            t0 = time.perf_counter()
            state = self._files[name] = _FileState(i)
            self._evaluate_file(name, ref_path, dec_path, state)
            self._commit_embeddings(name, state)
            if not self.quiet:
                status = "FAILED" if name in self.failed else "ok"
                parts = f", {state.segments} segments" if state.segments > 1 else ""
                print(f"[{i + 1}/{len(self.files)}] {name}: {status} ({time.perf_counter() - t0:.1f} s{parts})",
                      file=sys.stderr)
        self._flush_all()
        for metric in self.set_metrics:
            if _streams(metric):
                self._finish_embedding_metric(metric, self._streams[metric.card.name])
            else:
                self._set_metric(metric, self._kept)
        self._finish_rows()
        summary = self.summary()
        self.write(summary)
        for metric in self.item_metrics:
            close = getattr(metric, "close", None)
            if callable(close):
                close()
        return summary

    def _error(self, name: str, metric: str, exc: BaseException | str, channel: int | str = "",
               label: str | None = None) -> None:
        """An error row; ``label`` names the segment (``name [t0-t1 s]``), default the file."""
        message = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        label = label or name
        if name != "*" and label not in message:
            message = f"{label}: {message}"
        self.failed.add(name)
        self._errors[name, metric] += 1
        self.rows.append({"file": name, "channel": channel, "metric": metric, "value": float("nan"),
                          "status": "error", "message": message})

    # -- streaming a file -------------------------------------------------------------------
    def _evaluate_file(self, name: str, ref_path: Path, dec_path: Path | None, state: _FileState) -> None:
        """Stream the (reference, estimate) segments of one file and score each of them."""
        pairs = (self._codec_pairs(name, ref_path, state) if self.codec is not None
                 else self._paired_pairs(name, ref_path, dec_path, state))
        writer = None
        try:
            with contextlib.closing(pairs):
                for segment, estimate in pairs:
                    state.segments += 1
                    if self.save_decoded and self.codec is not None:
                        writer = writer or _DecodedWriter(self.out / "decoded" / Path(name).with_suffix(".wav"),
                                                          segment.sample_rate, estimate.shape[0])
                        writer.write(estimate)
                    t0, t1 = segment.seconds
                    eps = 0.5 / segment.sample_rate
                    if any(t0 < f1 - eps and f0 < t1 - eps for f0, f1 in state.failed_spans):
                        continue  # its codec chunk failed: reported there
                    self._score_segment(name, segment, estimate, state)
        except Exception as exc:  # unreadable file, decoded file too short, ...: one error row, go on
            self._error(name, "*", exc)
        finally:
            if writer is not None:
                writer.close()

    def _codec_pairs(self, name: str, path: Path, state: _FileState) -> Iterator[tuple[Segment, np.ndarray]]:
        """``(segment, decoded segment at the file's rate)`` for a file coded by the codec.

        The file's rate -> codec rate -> file's rate resamplers are streams, and the codec is
        called on chunks of ``chunk_seconds`` at its rate, exactly those of
        :func:`codec_round_trip` on the whole file; the reference segments wait in ``pending``
        until their decoded audio is out of the stream.
        """
        rate_codec = self.codec.info.sample_rate
        chunk = max(1, int(round(self.chunk_seconds * rate_codec)))
        down = back = None
        pending: collections.deque[Segment] = collections.deque()
        coded = 0
        with contextlib.closing(read_segments(path, self.segment_seconds, self.max_seconds, state.notes)) as segments:
            for segment in segments:
                if down is None:
                    channels = segment.audio.shape[0]
                    down = ResampleFifo(channels, segment.sample_rate, rate_codec)
                    back = ResampleFifo(channels, rate_codec, segment.sample_rate)
                pending.append(segment)
                down.push(segment.audio, last=segment.last)
                # one sample stays behind until the input ends, so the final chunk is known as final
                while down.size > chunk or (down.closed and down.size):
                    block = down.pop(chunk)
                    final = down.closed and not down.size
                    back.push(self._code(name, block, coded, final, state), last=final)
                    coded += block.shape[1]
                if down.closed and not back.closed:
                    back.push(np.zeros((channels, 0), np.float32), last=True)
                while pending and (back.closed or back.size >= pending[0].samples):
                    ready = pending.popleft()
                    yield ready, back.pop(back.size if ready.last else ready.samples)

    def _code(self, name: str, block: np.ndarray, offset: int, final: bool, state: _FileState) -> np.ndarray:
        """Decoded chunk ``[channels, n]``; a chunk that raises or decodes to NaN/inf becomes an
        error row naming its time range and silence (keeping the stream aligned)."""
        from benchmark.codecs import CodecError

        rate = self.codec.info.sample_rate
        span = (offset / rate, (offset + block.shape[1]) / rate)
        try:
            decoded, filled, _ = _code_chunk(self.codec, block, self.device, final)
            bad = int(np.count_nonzero(~np.isfinite(decoded)))
            if bad:
                raise CodecError(f"decoded audio has {bad} NaN/inf samples (the codec diverged); "
                                 "this chunk is not scored")
        except Exception as exc:
            self._error(name, "*", exc, label=name if offset == 0 and final else f"{name} [{_span(*span)}]")
            state.failed_spans.append(span)
            return np.zeros_like(block)
        state.filled += filled
        return decoded

    def _paired_pairs(self, name: str, ref_path: Path, dec_path: Path | None,
                      state: _FileState) -> Iterator[tuple[Segment, np.ndarray]]:
        """``(reference segment, decoded segment at the reference's rate)`` for paired files.

        The decoded file is read block by block through a streaming resampler and cut at the
        reference's segment borders. The last segment takes up to twice its length (whole files:
        all) of what is left, so that trim-to-shorter rejects a much longer decoded file as in
        whole-file mode.
        """
        fifo: ResampleFifo | None = None
        with contextlib.ExitStack() as files:
            segments = files.enter_context(contextlib.closing(
                read_segments(ref_path, self.segment_seconds, self.max_seconds, state.notes)))
            for segment in segments:
                channels = segment.audio.shape[0]
                if fifo is None:
                    if dec_path is None:
                        raise AudioError(f"{name}: no decoded file with this name (any extension) under the "
                                         "--decoded folder")
                    decoded = files.enter_context(contextlib.closing(
                        read_segments(dec_path, self.segment_seconds, self.max_seconds, state.notes)))
                    first = next(decoded)
                    if first.audio.shape[0] not in (1, channels):
                        raise AudioError(f"{name}: reference has {channels} channels, estimate "
                                         f"{first.audio.shape[0]}")
                    if first.audio.shape[0] != channels:
                        state.notes.append("mono estimate compared with every reference channel")
                    fifo = ResampleFifo(first.audio.shape[0], first.sample_rate, segment.sample_rate)
                    fifo.push(first.audio, last=first.last)
                    del first
                want = (segment.samples if not segment.last
                        else 2 * segment.samples + 1 if self.segment_seconds else None)
                while not fifo.closed and (want is None or fifo.size < want):
                    block = next(decoded)
                    fifo.push(block.audio, last=block.last)
                estimate = fifo.pop(fifo.size if want is None else want)
                if not estimate.shape[1]:
                    raise AudioError(f"{dec_path}: decoded audio ends before {segment.seconds[0]:.2f} s, where "
                                     "the reference goes on; the rest of the file is not scored")
                if estimate.shape[0] != channels:
                    estimate = np.repeat(estimate, channels, axis=0)
                yield segment, estimate

    # -- scoring ----------------------------------------------------------------------------
    def _score_segment(self, name: str, segment: Segment, estimate: np.ndarray, state: _FileState) -> None:
        label, rate = segment.label(name), segment.sample_rate
        refs, ests, silent = [], [], []
        for ch in range(segment.audio.shape[0]):
            try:
                ref, est, info = align_pair(segment.audio[ch], estimate[ch], item=f"{label} [channel {ch}]")
            except MetricError as exc:  # the segment is left out of every metric, set metrics too
                for metric in self.metrics:
                    self._error(name, metric.card.name, exc, ch, label)
                return
            refs.append(ref)
            ests.append(est)
            silent.append(info.silent)
            job = _Job(name, ch, segment.index, segment.seconds, label, ref, est, rate, "; ".join(info.warnings))
            for metric in self.item_metrics:
                if info.silent:
                    self._record(metric.card.name, job, float("nan"), info.nan_reason)
                elif type(metric).batch is not ItemMetric.batch:
                    self._queue(metric, job)
                else:
                    self._score(metric, job)
        if all(silent) or not self.set_metrics:
            return  # a silent reference is excluded from set metrics too (rows say why)
        n = min(r.size for r in refs)
        reference = np.mean([r[:n] for r in refs], axis=0)
        estimate = np.mean([e[:n] for e in ests], axis=0)
        for metric in self.set_metrics:
            if _streams(metric):
                self._embed(metric, name, label, segment, reference, estimate, state)
            else:
                self._kept.append(_FileResult(label, reference, estimate, rate))

    def _score(self, metric: ItemMetric, job: _Job) -> None:
        try:
            value = float(metric(job.reference, job.estimate, job.sample_rate))
        except Exception as exc:
            self._error(job.name, metric.card.name, exc, job.channel, job.label)
            return
        self._record(metric.card.name, job, value)

    def _record(self, metric: str, job: _Job, value: float, reason: str | None = None) -> None:
        """Keep one segment's value (``reason``: why it is NaN, if known)."""
        finite = math.isfinite(value)
        if self.segment_seconds is not None:
            self.segment_rows.append({
                "file": job.name, "segment": job.segment, "start_seconds": round(job.seconds[0], 4),
                "end_seconds": round(job.seconds[1], 4), "channel": job.channel, "metric": metric, "value": value,
                "status": "ok" if finite else "nan",
                "message": job.warnings if finite else (reason or job.warnings or "undefined"),
                "sample_rate": job.sample_rate})
        agg = self._aggregates.setdefault((job.name, job.channel, metric), _Aggregate(job.sample_rate))
        agg.values.append(value)
        agg.samples.append(job.reference.size)
        agg.warnings.append(job.warnings)
        agg.reasons.append("" if finite else (reason or ""))

    def _queue(self, metric: ItemMetric, job: _Job) -> None:
        queue = self._pending.setdefault(metric.card.name, [])
        queue.append(job)
        if len(queue) >= 2 * max(1, getattr(metric, "workers", 1)):
            self._flush(metric)

    def _flush(self, metric: ItemMetric) -> None:
        queue = self._pending.pop(metric.card.name, [])
        by_rate: dict[int, list[_Job]] = {}
        for job in queue:
            by_rate.setdefault(job.sample_rate, []).append(job)
        for rate, jobs in by_rate.items():
            try:
                values = metric.batch([(j.reference, j.estimate) for j in jobs], rate)
            except Exception:  # find the culprit(s) one by one
                for job in jobs:
                    self._score(metric, job)
                continue
            for job, value in zip(jobs, values):
                self._record(metric.card.name, job, float(value))

    def _flush_all(self) -> None:
        for metric in self.item_metrics:
            if metric.card.name in self._pending:
                self._flush(metric)

    def _finish_rows(self) -> None:
        """Add one row per file x channel x metric (the segments' weighted mean) to the error
        rows, and sort them by file, channel and metric."""
        for (name, ch, metric), agg in self._aggregates.items():
            self.rows.append(self._file_row(name, ch, metric, agg))
        order = {m.card.name: i for i, m in enumerate(self.metrics)}
        files = {name: state.index for name, state in self._files.items()}
        self.rows.sort(key=lambda r: (files.get(r["file"], len(files)), -1 if r["channel"] == "" else r["channel"],
                                      order.get(r["metric"], -1), r["status"] == "error"))
        self.segment_rows.sort(key=lambda r: (files[r["file"]], r["segment"], r["channel"], order[r["metric"]]))

    def _file_row(self, name: str, ch: int, metric: str, agg: _Aggregate) -> dict[str, Any]:
        state = self._files[name]
        value = agg.value()
        finite = math.isfinite(value)
        notes = state.all_notes()
        if state.segments <= 1:  # one segment: the row of whole-file mode
            warnings = [w for w in agg.warnings[:1] if w]
            message = "; ".join(notes + warnings) if finite else (agg.reasons[0] or "; ".join(notes + warnings)
                                                                    or "undefined")
            status = "ok" if finite else "nan"
        else:
            n_nan = sum(not math.isfinite(v) for v in agg.values)
            missing = state.segments - len(agg.values)
            parts = notes + [f"length-weighted mean of {len(agg.values) - n_nan} of {state.segments} segments"]
            if n_nan:
                reason = next((r for r in agg.reasons if r), "undefined")
                parts.append(f"{n_nan} NaN segments left out ({reason})")
            if missing:
                parts.append(f"{missing} segments not scored (see error rows)")
            if any(agg.warnings):
                parts.append(f"warnings in {sum(map(bool, agg.warnings))} segments (see segments.csv)")
            message = "; ".join(parts)
            failed = self._errors[name, metric] + self._errors[name, "*"]
            status = "nan" if not finite else "partial" if failed or missing else "ok"
        return {"file": name, "channel": ch, "metric": metric, "value": value, "status": status, "message": message,
                "seconds": round(sum(agg.samples) / agg.sample_rate, 4), "sample_rate": agg.sample_rate,
                "segment_seconds": self.segment_seconds or "whole", "segments": len(agg.values)}

    # -- set metrics ------------------------------------------------------------------------
    def _set_metric(self, metric: SetMetric, kept: list[_FileResult]) -> None:
        name = metric.card.name
        if len(kept) < 2:
            self._error("*", name, f"set metric needs at least 2 evaluated clips, got {len(kept)}")
            return
        try:
            rate = max(k.sample_rate for k in kept)
            result = metric.compute([resample(k.reference[None], k.sample_rate, rate)[0] for k in kept],
                                    [resample(k.estimate[None], k.sample_rate, rate)[0] for k in kept],
                                    rate, ids=[k.name for k in kept])
        except Exception as exc:
            self._error("*", name, exc)
            return
        result.settings["segment_seconds"] = self.segment_seconds if self.n_split_files else None
        self.set_results[name] = result

    def _embed(self, metric, name: str, label: str, segment: Segment, reference: np.ndarray,
               estimate: np.ndarray, state: _FileState) -> None:
        """Embed one segment's reference and estimate now (cached); keep only the embeddings.

        ``clip_seconds`` of the metric crops the *file*: later segments are cut at that time.
        """
        rate = segment.sample_rate
        clip_seconds = getattr(metric, "clip_seconds", None)
        if clip_seconds is not None:
            keep = int(round(clip_seconds * rate)) - segment.start
            if keep <= 0:
                return
            reference, estimate = reference[:keep], estimate[:keep]
        try:
            ref = metric.embed_clip(reference, rate, f"{label} (reference)")
            est = metric.embed_clip(estimate, rate, f"{label} (estimate)")
        except Exception as exc:
            self._error(name, metric.card.name, exc, label=label)
            return
        metric.hash_update(self._streams[metric.card.name].hasher, reference, rate)
        state.embeddings.setdefault(metric.card.name, []).append(
            (ref, est, reference.size / rate, estimate.size / rate))

    def _commit_embeddings(self, name: str, state: _FileState) -> None:
        """Pool a file's segment embeddings into one clip of the set (per-file contributions)."""
        for metric, parts in state.embeddings.items():
            stream = self._streams[metric]
            stream.names.append(name)
            stream.reference.append(np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0])
            stream.estimate.append(np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1])
            stream.reference_seconds.append(sum(p[2] for p in parts))
            stream.estimate_seconds.append(sum(p[3] for p in parts))
            stream.segments += len(parts)
        state.embeddings.clear()

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
        # embeddings restart at every segment border: the segment length is part of the setting
        result.settings["segment_seconds"] = self.segment_seconds if self.n_split_files else None
        result.settings["n_segments"] = state.segments
        self.set_results[name] = result

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
                        **_card_columns(metric.card), "settings": json.dumps(self._segment_settings(), sort_keys=True)})
        for metric in self.set_metrics:
            result = self.set_results.get(metric.card.name)
            failed = {r["file"] for r in self.rows if r["status"] == "error" and r["metric"] in (metric.card.name, "*")}
            out.append({"metric": metric.card.name,
                        "mean": result.value if result else float("nan"), "std": float("nan"),
                        "n": result.settings.get("n_estimate_clips", 0) if result else 0,
                        "n_nan": 0, "n_error": len(failed), **_card_columns(metric.card),
                        "settings": json.dumps(result.settings, sort_keys=True, default=str) if result else ""})
        return out

    def _segment_settings(self) -> dict[str, Any]:
        """How per-file item values were formed (stored with every summary row and in eval.json)."""
        if self.segment_seconds is None:
            return {"segment_seconds": "whole", "aggregation": "whole file"}
        return {"segment_seconds": self.segment_seconds, "min_segment_seconds": self.min_segment_seconds,
                "aggregation": SEGMENT_AGGREGATION, "segmented_files": self.n_split_files}

    def write(self, summary: list[dict[str, Any]]) -> None:
        from benchmark.results import git_commit, hardware, write_csv

        self.out.mkdir(parents=True, exist_ok=True)
        write_csv(self.out / "items.csv", ITEM_COLUMNS, self.rows)
        write_csv(self.out / "summary.csv", SUMMARY_COLUMNS, summary)
        if self.segment_seconds is not None:
            write_csv(self.out / "segments.csv", SEGMENT_COLUMNS, self.segment_rows)
        for name, result in self.set_results.items():
            if result.per_item:
                rows = sorted(({"file": k, "metric": f"{name}_contribution", "value": v}
                               for k, v in result.per_item.items()), key=lambda r: -np.nan_to_num(r["value"], nan=-np.inf))
                write_csv(self.out / f"{name}_contributions.csv", ("file", "metric", "value"), rows)
        meta = {
            "command": self.args, "files": len(self.files), "failed_files": sorted(self.failed),
            "codec": self.codec.info.as_dict() if self.codec is not None else None,
            "codec_identity": self.codec.identity if self.codec is not None else None,
            "codec_options": self.codec_options, "chunk_seconds": self.chunk_seconds,
            "max_seconds": self.max_seconds, **self._segment_settings(),
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


class _DecodedWriter:
    """``--save-decoded``: decoded audio appended segment by segment to a float WAV, written
    under a temporary name and renamed when the file is done."""

    def __init__(self, target: Path, sample_rate: int, channels: int) -> None:
        import soundfile as sf

        target.parent.mkdir(parents=True, exist_ok=True)
        self.target, self.tmp = target, target.with_name(f".{target.name}.tmp")
        self.fh = sf.SoundFile(str(self.tmp), "w", samplerate=sample_rate, channels=channels,
                               subtype="FLOAT", format="WAV")

    def write(self, audio: np.ndarray) -> None:
        self.fh.write(np.clip(audio, -1.0, 1.0).T)

    def close(self) -> None:
        self.fh.close()
        self.tmp.replace(self.target)
