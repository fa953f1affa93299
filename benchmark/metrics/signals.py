"""Deterministic music-like test signals for metric validation and benchmarks.

Quality metrics behave very differently on sparse synthetic tones and on music (ViSQOL, for
instance, collapses on a pure sine as soon as noise is audible). These generators make short,
dense, music-like material from numpy alone (no data files, no network):

- :func:`chord_progression`: piano-like decaying harmonic tones, a four-chord progression with
  a bass line;
- :func:`drum_loop`: kick, snare and hi-hat on a 120 bpm grid;
- :func:`render_midi`: General-MIDI rendering through FluidSynth with pretty_midi's bundled
  soundfont (optional: needs ``pyfluidsynth`` and ``libfluidsynth``).

All return mono float32 ``[samples]`` with peak amplitude ``peak``.
"""

from __future__ import annotations

import numpy as np

_PROGRESSION = ((60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62))  # C Am F G


def _midi_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69) / 12)


def _tone(pitch: float, sample_rate: int, seconds: float, rng: np.random.Generator,
          harmonics: int = 10, decay: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = _midi_hz(pitch) * (1.0 + 0.001 * rng.standard_normal())
    out = np.zeros_like(t)
    for k in range(1, harmonics + 1):
        fk = k * f0 * np.sqrt(1.0 + 1e-4 * k * k)  # slight inharmonicity, as in strings
        if fk >= 0.45 * sample_rate:
            break
        out += np.sin(2 * np.pi * fk * t + rng.uniform(0, 2 * np.pi)) * np.exp(-decay * k ** 0.5 * t) / k
    attack = np.minimum(1.0, t / 0.005)
    return out * attack


def _normalise(x: np.ndarray, peak: float) -> np.ndarray:
    m = float(np.abs(x).max())
    return (x * (peak / m) if m > 0 else x).astype(np.float32)


def chord_progression(sample_rate: int, seconds: float = 3.0, seed: int = 0, peak: float = 0.5,
                      chord_seconds: float = 0.5) -> np.ndarray:
    """Piano-like chords (C Am F G, repeated) with a bass line, ``[samples]`` float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    out = np.zeros(n)
    hop = int(chord_seconds * sample_rate)
    for i, start in enumerate(range(0, n, hop)):
        chord = _PROGRESSION[i % len(_PROGRESSION)]
        length = min(n - start, int(2 * chord_seconds * sample_rate))
        for p in chord:
            out[start:start + length] += _tone(p, sample_rate, length / sample_rate, rng)[:length]
        out[start:start + length] += 1.2 * _tone(chord[0] - 24, sample_rate, length / sample_rate,
                                                 rng, harmonics=6, decay=2.0)[:length]
    return _normalise(out, peak)


def drum_loop(sample_rate: int, seconds: float = 3.0, seed: int = 0, peak: float = 0.5,
              bpm: float = 120.0) -> np.ndarray:
    """Kick / snare / hi-hat pattern, ``[samples]`` float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    out = np.zeros(n)
    step = int(60.0 / bpm / 2 * sample_rate)  # eighth notes
    t = np.arange(int(0.4 * sample_rate)) / sample_rate
    kick = np.sin(2 * np.pi * (50 * t + 70 / 30 * (1 - np.exp(-30 * t)))) * np.exp(-8 * t)
    snare = (0.6 * rng.standard_normal(t.size) + np.sin(2 * np.pi * 190 * t)) * np.exp(-18 * t)
    hat_noise = np.diff(rng.standard_normal(t.size + 1))  # first difference: high-passed noise
    hat = 0.3 * hat_noise * np.exp(-60 * t)
    for i, start in enumerate(range(0, n, step)):
        hits = [hat]
        if i % 4 == 0:
            hits.append(kick)
        if i % 4 == 2:
            hits.append(snare)
        for h in hits:
            end = min(n, start + h.size)
            out[start:end] += h[:end - start]
    return _normalise(out, peak)


def mixture(sample_rate: int, seconds: float = 3.0, seed: int = 0, peak: float = 0.5) -> np.ndarray:
    """Chords plus drums: dense, broadband, music-like."""
    x = chord_progression(sample_rate, seconds, seed, 1.0) + 0.5 * drum_loop(sample_rate, seconds, seed, 1.0)
    return _normalise(x, peak)


def render_midi(program: int, pitches: list[int], sample_rate: int, note_seconds: float = 0.5,
                is_drum: bool = False, peak: float = 0.5, polyphony: int = 1) -> np.ndarray:
    """Render notes with FluidSynth and pretty_midi's General-MIDI soundfont (TimGM6mb).

    ``pitches`` are played in groups of ``polyphony`` (chords), one group per
    ``note_seconds``. Needs ``pyfluidsynth`` and the system library ``libfluidsynth``.
    """
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program, is_drum=is_drum)
    for i in range(0, len(pitches), polyphony):
        start = (i // polyphony) * note_seconds
        for p in pitches[i:i + polyphony]:
            inst.notes.append(pretty_midi.Note(velocity=100, pitch=int(p), start=start,
                                               end=start + note_seconds))
    pm.instruments.append(inst)
    return _normalise(pm.fluidsynth(fs=sample_rate), peak)
