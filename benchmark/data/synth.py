"""Deterministic offline MIDI rendering with FluidSynth.

The built-in dataset (:mod:`benchmark.data.builtin`) is rendered note by note from event lists
with the system FluidSynth library (``libfluidsynth3``) through ``pyfluidsynth``, using a
General MIDI SoundFont: by default ``TimGM6mb.sf2``, which ships inside the ``pretty_midi``
package, so nothing is downloaded.

Conventions
-----------
- Times are in seconds, sample rates in Hz; MIDI pitch, velocity and program are 0-127 and
  programs are 0-based General MIDI numbers (0 = Acoustic Grand Piano). Drum tracks use bank
  128 on channel 9 (MIDI channel 10).
- :func:`render` returns float32 mono ``[samples]`` (the left/right mean of FluidSynth's
  stereo output), unnormalised; :func:`peak_normalise` and :func:`to_pcm16` finish it.
- Determinism: every call creates a fresh synthesizer (no state carried between renders),
  reads FluidSynth's *float* output (the 16-bit output path adds random dither) and runs the
  synthesizer single-threaded, so the same events, rate and SoundFont give bit-identical
  audio in any process, in any order. FluidSynth applies events at its 64-sample block
  boundaries, so onsets are quantised to 64 samples (1.5 ms at 44.1 kHz) - deterministically.
- Errors (library missing, SoundFont missing or invalid, preset absent from the SoundFont)
  raise :class:`benchmark.data.dataset.DatasetError` naming the file and the fix.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import hashlib
import os
import struct
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmark.data.dataset import DatasetError

DRUM_CHANNEL = 9
DRUM_BANK = 128
SOUNDFONT_HELP = ("pass another SoundFont 2 file with --soundfont PATH (soundfont=... in Python), "
                  "or reinstall pretty_midi, which ships TimGM6mb.sf2")
FLUIDSYNTH_HELP = ("install the FluidSynth library (Debian/Ubuntu: `apt-get install libfluidsynth3`; "
                   "macOS: `brew install fluid-synth`; conda: `conda install -c conda-forge fluidsynth`) "
                   "and its Python binding (`pip install pyfluidsynth`)")


@dataclasses.dataclass(frozen=True)
class Note:
    """One MIDI note: ``pitch`` and ``velocity`` 0-127, ``start``/``end`` in seconds."""

    pitch: int
    velocity: int
    start: float
    end: float


@dataclasses.dataclass(frozen=True)
class Track:
    """Notes played by one General MIDI preset on one MIDI channel.

    channel: 0-15 (use :data:`DRUM_CHANNEL` with ``bank=DRUM_BANK`` for drums).
    program: 0-based GM program (for drums: the kit, 0 = Standard).
    reverb, chorus: effect send levels (MIDI CC 91 / CC 93, 0-127); only audible when the
        corresponding effect is enabled in :func:`render`.
    """

    channel: int
    program: int
    notes: tuple[Note, ...]
    bank: int = 0
    reverb: int = 0
    chorus: int = 0


# -- library and SoundFont ------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _fluidsynth() -> tuple[Any, Any]:
    """Import pyfluidsynth and bind ``fluid_synth_write_float``; DatasetError if unavailable."""
    try:
        import fluidsynth  # noqa: PLC0415 - optional system library, imported on first use
    except (ImportError, OSError) as exc:
        raise DatasetError(f"FluidSynth is not available ({exc}); it renders the built-in "
                           f"dataset. Fix: {FLUIDSYNTH_HELP}") from exc
    lib = ctypes.CDLL(fluidsynth.lib)
    write_float = lib.fluid_synth_write_float
    write_float.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                            ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    write_float.restype = ctypes.c_int
    return fluidsynth, write_float


@functools.lru_cache(maxsize=1)
def fluidsynth_version() -> str:
    """Version of the loaded FluidSynth library, e.g. ``"2.3.1"`` (part of the dataset identity)."""
    fluidsynth, _ = _fluidsynth()
    lib = ctypes.CDLL(fluidsynth.lib)
    major, minor, micro = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    lib.fluid_version(ctypes.byref(major), ctypes.byref(minor), ctypes.byref(micro))
    return f"{major.value}.{minor.value}.{micro.value}"


def default_soundfont() -> Path:
    """Path of the General MIDI SoundFont shipped inside ``pretty_midi`` (``TimGM6mb.sf2``)."""
    try:
        import pretty_midi  # noqa: PLC0415 - only needed for the file's location
    except ImportError as exc:
        raise DatasetError(f"pretty_midi is not installed, so its bundled SoundFont TimGM6mb.sf2 "
                           f"cannot be found; `pip install pretty_midi` or {SOUNDFONT_HELP}") from exc
    return Path(pretty_midi.__file__).resolve().parent / "TimGM6mb.sf2"


def resolve_soundfont(soundfont: str | os.PathLike | None) -> Path:
    """Return the SoundFont to use (``None`` -> :func:`default_soundfont`), checked to exist."""
    path = default_soundfont() if soundfont is None else Path(soundfont).expanduser().resolve()
    if not path.is_file():
        raise DatasetError(f"SoundFont {path} not found; {SOUNDFONT_HELP}")
    return path


@functools.lru_cache(maxsize=8)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def soundfont_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a SoundFont file (memoised per path, size and modification time)."""
    stat = Path(path).stat()
    return _sha256_cached(str(path), stat.st_size, stat.st_mtime_ns)


_GEN_KEY_RANGE, _GEN_INSTRUMENT, _GEN_SAMPLE_ID = 43, 41, 53


def _read_pdta(path: Path) -> dict[bytes, bytes]:
    """The sub-chunks of an SF2/SF3 file's ``pdta`` list (``phdr``, ``pbag``, ``pgen``...)."""
    with open(path, "rb") as fh:
        riff, _, form = struct.unpack("<4sI4s", fh.read(12))
        if riff != b"RIFF" or form not in (b"sfbk",):
            raise DatasetError(f"{path} is not a SoundFont 2 file (RIFF form {form!r}); {SOUNDFONT_HELP}")
        while header := fh.read(8):
            if len(header) < 8:
                break
            chunk_id, size = struct.unpack("<4sI", header)
            if chunk_id == b"LIST" and fh.read(4) == b"pdta":
                data, chunks, pos = fh.read(size - 4), {}, 0
                while pos + 8 <= len(data):
                    sub_id, sub_size = struct.unpack_from("<4sI", data, pos)
                    chunks[sub_id] = data[pos + 8:pos + 8 + sub_size]
                    pos += 8 + sub_size + (sub_size & 1)
                return chunks
            fh.seek(size - (4 if chunk_id == b"LIST" else 0) + (size & 1), 1)
    raise DatasetError(f"{path}: no preset data (pdta chunk); the SoundFont is truncated or corrupt")


def _zones(bags: bytes, gens: bytes, first: int, stop: int) -> list[dict[int, int]]:
    """Generators ``{operator: raw 16-bit amount}`` of bag records ``first..stop-1``."""
    zones = []
    for b in range(first, stop):
        g0 = struct.unpack_from("<H", bags, 4 * b)[0]
        g1 = struct.unpack_from("<H", bags, 4 * (b + 1))[0]
        zones.append({op: amount for op, amount in (struct.unpack_from("<HH", gens, 4 * g) for g in range(g0, g1))})
    return zones


def _key_range(zone: dict[int, int]) -> range:
    amount = zone.get(_GEN_KEY_RANGE, 127 << 8)  # default 0-127; low byte = lowest key
    return range(amount & 0xFF, (amount >> 8) + 1)


@functools.lru_cache(maxsize=4)
def _coverage_cached(path: str, sha256: str) -> dict[tuple[int, int], frozenset[int]]:
    chunks = _read_pdta(Path(path))
    try:
        phdr, pbag, pgen = chunks[b"phdr"], chunks[b"pbag"], chunks[b"pgen"]
        inst, ibag, igen = chunks[b"inst"], chunks[b"ibag"], chunks[b"igen"]
    except KeyError as exc:
        raise DatasetError(f"{path}: preset data lacks the {exc.args[0]!r} chunk; the SoundFont is corrupt") from exc
    n_inst = len(inst) // 22 - 1  # the last record is the terminal "EOI"
    inst_keys = []
    for i in range(n_inst):
        b0 = struct.unpack_from("<H", inst, 22 * i + 20)[0]
        b1 = struct.unpack_from("<H", inst, 22 * (i + 1) + 20)[0]
        keys: set[int] = set()
        for zone in _zones(ibag, igen, b0, b1):
            if _GEN_SAMPLE_ID in zone:  # zones without a sample are global zones
                keys.update(_key_range(zone))
        inst_keys.append(keys)
    coverage = {}
    for p in range(len(phdr) // 38 - 1):  # the last record is the terminal "EOP"
        program, bank, b0 = struct.unpack_from("<HHH", phdr, 38 * p + 20)
        b1 = struct.unpack_from("<H", phdr, 38 * (p + 1) + 24)[0]
        keys = set()
        for zone in _zones(pbag, pgen, b0, b1):
            if _GEN_INSTRUMENT in zone and zone[_GEN_INSTRUMENT] < n_inst:
                keys.update(set(_key_range(zone)) & inst_keys[zone[_GEN_INSTRUMENT]])
        coverage[(bank, program)] = frozenset(keys)
    return coverage


def key_coverage(soundfont: str | os.PathLike) -> dict[tuple[int, int], frozenset[int]]:
    """MIDI keys each ``(bank, program)`` preset of a SoundFont maps to a sample.

    Read from the file's preset and instrument zones (key ranges only; velocity layers are
    assumed to cover 1-127). A key outside its preset's coverage renders as silence, so the
    built-in dataset never plays one: e.g. TimGM6mb's alto sax (program 65) has no sample
    for E4 (MIDI 64).
    """
    path = Path(soundfont)
    return _coverage_cached(str(path), soundfont_sha256(path))


def _new_synth(sample_rate: int, reverb: bool, chorus: bool) -> Any:
    fluidsynth, _ = _fluidsynth()
    if not 8000 <= sample_rate <= 96000:
        raise DatasetError(f"FluidSynth renders at 8000-96000 Hz, got sample_rate={sample_rate}")
    return fluidsynth.Synth(gain=0.2, samplerate=float(sample_rate), **{
        "synth.reverb.active": int(reverb),
        "synth.chorus.active": int(chorus),
        "synth.cpu-cores": 1,  # one rendering thread: reproducible voice processing order
        # load only the samples of the selected presets: 3x faster than loading the whole
        # SoundFont per render (output differs from full loading by ~1e-8, deterministically)
        "synth.dynamic-sample-loading": 1,
    })


def _load(synth: Any, soundfont: Path) -> int:
    sfid = synth.sfload(str(soundfont))
    if sfid < 0:
        raise DatasetError(f"FluidSynth cannot load {soundfont}: not a valid SoundFont 2 (.sf2) "
                           f"file; {SOUNDFONT_HELP}")
    return sfid


# -- rendering ------------------------------------------------------------------------------
def _events(tracks: Sequence[Track], sample_rate: int, n_samples: int) -> list[tuple[int, int, int, int, int]]:
    """``(sample, kind, channel, pitch, velocity)`` sorted; note-offs (kind 0) before note-ons."""
    events = []
    for track in tracks:
        for note in track.notes:
            start = int(round(note.start * sample_rate))
            end = int(round(note.end * sample_rate))
            if not (0 <= note.pitch <= 127 and 1 <= note.velocity <= 127 and 0 <= start < end):
                raise DatasetError(f"invalid note {note} on channel {track.channel}")
            if start >= n_samples:
                continue
            events.append((start, 1, track.channel, note.pitch, note.velocity))
            events.append((min(end, n_samples), 0, track.channel, note.pitch, 0))
    events.sort()
    return events


def render(tracks: Sequence[Track], duration: float, sample_rate: int, soundfont: str | os.PathLike, *,
           reverb: bool = False, chorus: bool = False) -> np.ndarray:
    """Render ``tracks`` for ``duration`` seconds; returns float32 mono ``[round(duration * sample_rate)]``.

    Notes still sounding at ``duration`` are cut there (no fade); the output is not normalised
    (FluidSynth gain 0.2: peaks typically between -30 and -15 dBFS). ``reverb``/``chorus`` enable the
    synthesizer's effect units; each track's send level is ``Track.reverb``/``Track.chorus``.
    """
    _, write_float = _fluidsynth()
    soundfont = resolve_soundfont(soundfont)
    n_samples = int(round(duration * sample_rate))
    if n_samples <= 0:
        raise DatasetError(f"render duration must be positive, got {duration} s")
    events = _events(tracks, sample_rate, n_samples)
    left = np.zeros(n_samples, dtype=np.float32)
    right = np.zeros(n_samples, dtype=np.float32)
    synth = _new_synth(sample_rate, reverb, chorus)
    try:
        sfid = _load(synth, soundfont)
        for track in tracks:
            if synth.program_select(track.channel, sfid, track.bank, track.program) != 0:
                raise DatasetError(f"SoundFont {soundfont} has no preset bank {track.bank} program "
                                   f"{track.program}; use a General MIDI SoundFont ({SOUNDFONT_HELP})")
            synth.cc(track.channel, 91, int(track.reverb))
            synth.cc(track.channel, 93, int(track.chorus))

        def run_to(stop: int, cursor: int) -> int:
            if stop > cursor:
                offset = 4 * cursor  # float32 bytes
                status = write_float(synth.synth, stop - cursor, left.ctypes.data + offset, 0, 1,
                                     right.ctypes.data + offset, 0, 1)
                if status != 0:
                    raise DatasetError(f"FluidSynth failed while rendering ({soundfont})")
            return max(stop, cursor)

        cursor = 0
        for sample, kind, channel, pitch, velocity in events:
            cursor = run_to(sample, cursor)
            if kind:
                synth.noteon(channel, pitch, velocity)
            else:
                synth.noteoff(channel, pitch)
        run_to(n_samples, cursor)
    finally:
        synth.delete()
    return (0.5 * (left + right)).astype(np.float32)


def peak_normalise(audio: np.ndarray, peak_dbfs: float = -1.0, name: str = "audio") -> np.ndarray:
    """Scale ``audio`` (any shape) so its absolute peak is ``peak_dbfs`` dB full scale.

    Raises DatasetError for (near-)silent audio, which means the preset produced no sound.
    """
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < 1e-6:
        raise DatasetError(f"{name}: FluidSynth rendered silence (peak {peak:.2e}); the SoundFont "
                           f"probably lacks samples for this preset/pitch - use a complete General "
                           f"MIDI SoundFont")
    return (audio * (10.0 ** (peak_dbfs / 20.0) / peak)).astype(np.float32)


def fade_out(audio: np.ndarray, sample_rate: int, seconds: float = 0.01) -> np.ndarray:
    """Apply a linear fade over the last ``seconds`` of ``[..., samples]`` (removes end clicks)."""
    n = min(audio.shape[-1], int(round(seconds * sample_rate)))
    out = audio.copy()
    if n > 0:
        out[..., -n:] *= np.linspace(1.0, 0.0, n, dtype=np.float32)
    return out


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Round float audio in [-1, 1] to int16 (``round(x * 32767)``, clipped)."""
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)
