"""Segment policy and block-wise reading: every front end cuts items into the same segments.

Items are read block by block with libsndfile (WAV, FLAC, OGG/Opus, MP3, AIFF) and cut into
consecutive *segments* of ``segment_seconds`` (default 30 s) at the file's own rate, so memory
is bounded by the segment length, not the file. A final remainder shorter than
``min(1 s, S / 2)`` joins the previous segment, so an item of at most ``S + min(1 s, S / 2)``
is one segment, read in one call, and scored exactly as a whole file (``segment_seconds=None``).

Why 30 s: the usual excerpt length of music test sets (GTZAN, FMA, MTG-Jamendo clips; MusicCaps
has 10 s), long enough for ViSQOL's patch alignment and a whole number of FAD patches, short
enough that every metric's working memory stays small.

An item's value is the **length-weighted mean of its segments' values** (a segmental score:
for SI-SDR each segment has its own scale factor). Values under different segment lengths are
not comparable: the segment length is stored with every number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from benchmark.data.audio import AudioError, missing_file_error, validate_audio

DEFAULT_SEGMENT_SECONDS = 30.0
MIN_SEGMENT_SECONDS = 1.0  # a shorter final remainder joins the previous segment
SEGMENT_AGGREGATION = ("length-weighted mean over segments of the per-segment values; segments "
                       "with a silent reference (NaN) left out")


def segment_settings(segment_seconds: float | None) -> dict:
    """How item values are formed from segments (stored with every summary row)."""
    if not segment_seconds:
        return {"segment_seconds": "whole", "aggregation": "whole item"}
    return {"segment_seconds": segment_seconds,
            "min_segment_seconds": min(MIN_SEGMENT_SECONDS, segment_seconds / 2),
            "aggregation": SEGMENT_AGGREGATION}


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
        return name if self.only else f"{name} [{span_text(*self.seconds)}]"


def span_text(t0: float, t1: float) -> str:
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
        raise missing_file_error(path)
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
            validate_audio(current, str(path) if segment.only else f"{path} [{span_text(*segment.seconds)}]")
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


