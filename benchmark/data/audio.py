"""Audio reading, validation and resampling.

Conventions: audio arrays are float32 ``[channels, samples]`` in [-1, 1]; resampling uses
soxr (VHQ). Every failure raises :class:`AudioError` whose message names the file and the fix.
"""

from __future__ import annotations

import collections
import hashlib
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from benchmark.errors import BenchmarkError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")


class AudioError(BenchmarkError, ValueError):
    """An audio file or array that cannot be used; the message says which and how to fix it."""


def missing_file_error(path: Path) -> AudioError:
    """The error for an audio path that does not exist (a broken symbolic link says where it points)."""
    if path.is_symlink():
        return AudioError(f"{path}: broken symbolic link (points to {path.readlink()}, which does not exist); "
                          "fix the link or remove it")
    return AudioError(f"{path}: file not found; check the dataset root / file list")


def read_audio(path: str | Path, sample_rate: int | None = None, mono: bool = False,
               start: float = 0.0, duration: float | None = None) -> tuple[np.ndarray, int]:
    """Read ``path`` as float32 ``[channels, samples]``.

    Parameters
    ----------
    sample_rate: resample to this rate (Hz) if given, else keep the file's rate.
    mono: average channels to one.
    start, duration: seconds to read (``duration=None`` reads to the end).

    Returns
    -------
    (audio, rate) with audio ``[channels, samples]`` float32.
    """
    path = Path(path)
    if not path.exists():
        raise missing_file_error(path)
    try:
        info = sf.info(str(path))
        frame0 = int(round(start * info.samplerate))
        frames = -1 if duration is None else int(round(duration * info.samplerate))
        data, rate = sf.read(str(path), start=frame0, frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises several types for corrupt or non-audio files
        raise AudioError(f"{path}: cannot decode audio ({exc}); the file is corrupt or not audio - "
                         "re-export it as WAV/FLAC or remove it from the dataset") from exc
    audio = np.ascontiguousarray(data.T)
    validate_audio(audio, str(path))
    if mono and audio.shape[0] > 1:
        audio = audio.mean(axis=0, keepdims=True)
    if sample_rate is not None and rate != sample_rate:
        audio, rate = resample(audio, rate, sample_rate), sample_rate
    return audio, rate


def validate_audio(audio: np.ndarray, name: str = "audio") -> None:
    """Raise :class:`AudioError` for empty or non-finite audio ``[channels, samples]``."""
    if audio.ndim != 2:
        raise AudioError(f"{name}: expected [channels, samples], got shape {audio.shape}")
    if audio.shape[1] == 0:
        raise AudioError(f"{name}: the file holds no samples (empty audio); remove it or re-export it")
    if not np.isfinite(audio).all():
        raise AudioError(f"{name}: contains NaN or inf samples; re-export the file")


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample ``[channels, samples]`` from ``rate_in`` to ``rate_out`` Hz with soxr VHQ."""
    if rate_in == rate_out:
        return audio
    out = soxr.resample(np.ascontiguousarray(audio.T), rate_in, rate_out, quality="VHQ")
    return np.ascontiguousarray(out.T.astype(np.float32))


class ResampleFifo:
    """First-in, first-out buffer of float32 ``[channels, samples]`` audio, resampled on the way in.

    Audio is pushed at ``rate_in`` (Hz) in pieces of any length and popped at ``rate_out`` in
    pieces of any length. soxr's streaming resampler (VHQ, as :func:`resample`) carries its
    filter state from one push to the next, so the popped pieces concatenate to exactly (bit for
    bit) what :func:`resample` returns for the whole signal: there are no edge effects at piece
    borders. The resampler holds back its filter delay (milliseconds) until the next push, or
    until ``push(..., last=True)`` flushes it. Equal rates: audio passes through uncopied.
    """

    def __init__(self, channels: int, rate_in: int, rate_out: int) -> None:
        self.channels = channels
        self.rate_in, self.rate_out = rate_in, rate_out
        self._stream = None if rate_in == rate_out else soxr.ResampleStream(
            rate_in, rate_out, channels, dtype="float32", quality="VHQ")
        self._pieces: collections.deque[np.ndarray] = collections.deque()
        self.size = 0          # samples at rate_out ready to pop
        self.closed = False    # the last piece was pushed

    def push(self, audio: np.ndarray, last: bool = False) -> None:
        """Append ``audio [channels, samples]`` at ``rate_in``; ``last`` ends the signal."""
        if self.closed:
            raise AudioError("ResampleFifo: push after the last piece")
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 2 or audio.shape[0] != self.channels:
            raise AudioError(f"ResampleFifo: expected [{self.channels}, samples], got shape {audio.shape}")
        if self._stream is not None:
            audio = self._stream.resample_chunk(np.ascontiguousarray(audio.T), last=last).T
        if audio.shape[1]:
            self._pieces.append(audio)
            self.size += audio.shape[1]
        self.closed = last

    def pop(self, samples: int) -> np.ndarray:
        """Up to ``samples`` samples ``[channels, n]`` at ``rate_out`` from the front (fewer only
        if fewer are ready)."""
        need = min(int(samples), self.size)
        out: list[np.ndarray] = []
        while need > 0:
            head = self._pieces[0]
            if head.shape[1] <= need:
                out.append(self._pieces.popleft())
            else:
                out.append(head[:, :need])
                self._pieces[0] = head[:, need:]
            need -= out[-1].shape[1]
            self.size -= out[-1].shape[1]
        if not out:
            return np.zeros((self.channels, 0), np.float32)
        return np.ascontiguousarray(out[0] if len(out) == 1 else np.concatenate(out, axis=1))


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write ``[channels, samples]`` audio atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(str(tmp), np.asarray(audio).T, sample_rate, subtype=subtype, format=_format_for(path))
    tmp.replace(path)


def _format_for(path: Path) -> str:
    return {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower(), "WAV")


def file_hash(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes (:func:`benchmark.provenance.file_sha256`)."""
    from benchmark.provenance import file_sha256

    return file_sha256(path)


def array_hash(audio: np.ndarray) -> str:
    """SHA-256 hex digest of an array's dtype, shape and bytes."""
    h = hashlib.sha256()
    h.update(str(audio.dtype).encode())
    h.update(str(audio.shape).encode())
    h.update(np.ascontiguousarray(audio).tobytes())
    return h.hexdigest()
