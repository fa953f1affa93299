"""The built-in labelled music dataset, rendered deterministically from MIDI with FluidSynth.

It lets every stage of the benchmark (reconstruction metrics, latent probes) run offline with
no downloaded data. Audio is synthesised by :mod:`benchmark.data.synth` from a General MIDI
SoundFont (default: ``TimGM6mb.sf2`` shipped inside ``pretty_midi``; any ``.sf2`` may be
given as ``soundfont``). This is version 2 of the generator (:data:`GENERATOR_VERSION`).

Content
-------
**Notes** (NSynth-like, ``kind=note``): one note per file, after ``note_lead_in`` (default
0.1 s) of silence: onset at ``onset_s``, note-off at the onset plus 50-75 % of the rest of the
file, so the release is heard. (The lead-in keeps the attack out of the first ``n_fft - hop``
samples, which spectral front ends attenuate.) Labels ``instrument`` (one of the 11 families
in :data:`FAMILIES`, several GM programs each, see :data:`PROGRAMS`) and ``pitch`` (MIDI
number, within ``[pitch_min, pitch_max]`` and the program's playable range). Extra columns:
``program``, ``velocity`` (``[velocity_min, velocity_max]``), ``onset_s``, ``note_off_s``. Dry
(no reverb or chorus).

**Clips** (``kind=clip``): multi-instrument excerpts in one of the 24 keys (label ``key`` in
``mir_eval`` spelling, see :data:`KEYS`), silent for ``clip_lead_in`` (default 0.1 s), then: a
chord instrument playing a progression (sustained, on-beat stabs or arpeggios), a melody
(85 % of clips), a bass on the chord roots and fifths (70 %) and GM drums on channel 10
(``drum_probability``), at a tempo drawn from one of three bins (slow 60-88, medium 92-116,
fast 120-160 BPM). Label ``tags`` (multi-label, vocabulary :data:`TAGS`): the family of every
pitched part present (``bass`` for the bass line), ``drums``, ``slow``/``fast`` (medium tempo
gets neither) and ``major``/``minor``. Extra columns: ``tempo_bpm``, ``programs``,
``progression``, ``onset_s`` (the lead-in).

Harmony (:data:`PROGRESSIONS`, one drawn per clip):

=====  ====================================================================================
major  I-IV-V-I, I-ii-V-I, I-vi-IV-V-I, I-IV-I-V-I, I-IV-vi-V-I, I-vi-ii-V-I
minor  i-iv-V-i, i-iio-V-i, i-VI-iv-V-i, i-iv-i-V-i, i-VII-VI-V-i, i-III-iv-V-i
=====  ====================================================================================

What holds for every clip (checked on the planned notes by ``tests/data/test_builtin*.py``):

- Every progression starts on the tonic chord and ends with the cadence V-I (V-i). Minor keys
  use natural minor with a major dominant V, whose third is the harmonic-minor leading tone:
  every minor progression contains V, so every minor clip sounds the leading tone, which lies
  outside its relative major's scale. All major progressions start on I, so none is chord for
  chord a minor progression (which starts on i) of the relative key.
- The progression is fitted to the clip (:func:`chord_timeline`): played once, or repeated
  where a chord would otherwise exceed one 4/4 bar, with equal chords (a whole number of half
  beats) from the lead-in on and the final tonic, at least as long, held to the clip's end.
  So the last chord is the tonic and the tonic chord sounds for at least 2/5 of the time
  after the lead-in (at least 39 % of a ``default`` clip). Only the chord lengths depend on
  ``clip_seconds``, not the arrangement (tempo, progression, parts, programs).
- Every pitched note is in the key's scale (natural minor in minor keys) except the leading
  tone, which only starts while V sounds. The melody walks on the scale from the tonic, starts
  each chord on a chord tone and ends on the tonic, held through the final chord.

Krumhansl-Schmuckler key finding on the planned notes (duration-weighted pitch classes, drums
excluded) ranks the labelled key first for 237 of the 240 ``default`` clips (the other three
are minor clips, second to their parallel major) and above its relative key for all 240
(with seeds 1-8: 234-239 first, all 240 above the relative key; ``large``: 796 of 800 first,
one major clip below its relative minor).

All audio is mono, peak-normalised to ``peak_dbfs`` (default -1 dBFS; FluidSynth's own peaks
are at -30 to -15 dBFS), with a 10 ms (notes) / 20 ms (clips) fade at the end against clicks, and
stored as 16-bit WAV at ``sample_rate`` (FluidSynth renders at that rate; no resampling).
Keys for which the SoundFont has no sample (:func:`benchmark.data.synth.key_coverage`) are
never chosen for notes and are played an octave away in clips. Pitch labels are MIDI note
numbers as played: organ presets with 16' stops sound an octave below, as on the real
instrument.

Splits (train/valid/test, ``split_fractions``) cannot leak
----------------------------------------------------------
- Notes: the split is a pure function of the group key ``(program, pitch)`` hashed with
  SHA-256 into buckets of widths ``split_fractions`` (:func:`split_of`), so adding notes never
  moves an existing one, and the rule does not depend on the seed. Every (program, pitch)
  combination occurs at most once in the whole dataset, so no near-duplicate render (same
  preset, same key, other velocity) can sit in two splits. Notes are chosen family by family
  in a seeded hash order; a valid/test note is only taken once its family and pitch already
  occur in train (it is deferred otherwise, and dropped if ``n_notes`` is reached first), so
  every instrument and pitch that is evaluated was seen in training; the split sizes are
  therefore the fractions only in expectation. Unlike NSynth's split (by instrument), the same
  GM programs appear in every split at different pitches: the instrument task measures timbre
  recognition across pitch, not generalisation to unseen instruments.
- Clips: each clip is composed from its own seed (``seed``, clip index) and has its own
  group. Clip ``i`` goes to the split most behind its quota after ``i + 1`` clips
  (:func:`deal_splits`): every split holds its fraction of the clips to within one (exactly
  when the quotas are whole numbers), and adding clips never moves an existing one. Keys are
  dealt in a seeded cycle of the 24 keys *per split*, so a split of ``24 m`` clips holds
  every key exactly ``m`` times, and as train is the largest split, every key in valid or
  test is also in train.

Presets (:data:`BUILTIN_PRESETS`)
---------------------------------
Generation measured with ``load_builtin(workers=2)`` into an empty folder on a 2-core AMD
EPYC shared with other jobs (CPU = sum over processes; version 1 of the generator took
20 s CPU, 10 s wall for its ``default`` of 480 x 1 s + 160 x 5 s on the same machine):

========  =====  ==================  ==========  ==========  ======  =======  =====  =====
preset    rate   split fractions     notes       clips       pitch   disk     CPU    wall
========  =====  ==================  ==========  ==========  ======  =======  =====  =====
smoke     22050  0.70 / 0.15 / 0.15  66 x 1 s    24 x 3 s    48-72   6 MB     3 s    2 s
default   44100  0.50 / 0.10 / 0.40  480 x 1 s   240 x 4 s   36-84   127 MB   25 s   13 s
large     44100  0.70 / 0.15 / 0.15  2000 x 2 s  800 x 10 s  28-96   1.06 GB  125 s  65 s
========  =====  ==================  ==========  ==========  ======  =======  =====  =====

Items per split (train / valid / test), notes + clips: ``smoke`` 39 / 11 / 16 + 17 / 4 / 3
(138 s of audio); ``default`` 228 / 42 / 210 + 120 / 24 / 96 (1440 s: 480 s of notes, 960 s
of clips; test 594 s); ``large`` 1402 / 312 / 286 + 560 / 120 / 120 (12000 s).
``smoke`` holds all 11 families, 20 pitches and both modes; ``default`` has every key 5 times
in train, 4 times in test and once in valid, every family 15 or more times in test notes,
and 49 pitches, all of them in train.

Cache
-----
The dataset lives in ``<root>/datasets/builtin-<identity>/`` (``root`` defaults to
``$BENCHMARK_CACHE`` or ``~/.cache/m2l-benchmark``): ``notes/*.wav``, ``clips/*.wav``,
``metadata.csv``, ``spec.json`` and the completion marker ``complete.json``, written last.
``identity`` hashes the spec (without the SoundFont path), the SoundFont's SHA-256, the
FluidSynth version and :data:`GENERATOR_VERSION`. A folder with the marker is a cache hit;
without it, generation resumes (files are written atomically, so every file present is
complete). Each item is rendered from its own seed in a fresh synthesizer, so the bytes do
not depend on the number of workers or their order.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from benchmark.data import synth
from benchmark.data.audio import file_hash, write_audio
from benchmark.data.dataset import (SPLITS, Dataset, DatasetError, DatasetPlan, identity_of, read_metadata,
                                    write_metadata)

log = logging.getLogger(__name__)

#: Bump whenever the generator's output changes for the same spec (renames every cache folder).
GENERATOR_VERSION = 2

# -- vocabularies ----------------------------------------------------------------------------
FAMILIES: tuple[str, ...] = ("keyboard", "mallet", "organ", "guitar", "bass", "strings", "brass",
                             "reed", "flute", "synth_lead", "vocal")


@dataclasses.dataclass(frozen=True)
class Program:
    """A General MIDI program used by the dataset, with its family and playable range (MIDI)."""

    number: int
    name: str
    family: str
    lowest: int
    highest: int


#: 0-based GM program -> :class:`Program`; ranges follow the real instruments.
PROGRAMS: dict[int, Program] = {p.number: p for p in (
    Program(0, "acoustic grand piano", "keyboard", 21, 108),
    Program(1, "bright acoustic piano", "keyboard", 21, 108),
    Program(4, "electric piano 1", "keyboard", 28, 103),
    Program(5, "electric piano 2", "keyboard", 28, 103),
    Program(6, "harpsichord", "keyboard", 29, 89),
    Program(7, "clavinet", "keyboard", 29, 89),
    Program(8, "celesta", "mallet", 60, 108),
    Program(11, "vibraphone", "mallet", 53, 89),
    Program(12, "marimba", "mallet", 45, 96),
    Program(13, "xylophone", "mallet", 65, 108),
    Program(16, "drawbar organ", "organ", 36, 96),
    Program(17, "percussive organ", "organ", 36, 96),
    Program(19, "church organ", "organ", 24, 96),
    Program(21, "accordion", "organ", 41, 89),
    Program(24, "acoustic guitar (nylon)", "guitar", 40, 83),
    Program(25, "acoustic guitar (steel)", "guitar", 40, 83),
    Program(26, "electric guitar (jazz)", "guitar", 40, 86),
    Program(27, "electric guitar (clean)", "guitar", 40, 86),
    Program(29, "overdriven guitar", "guitar", 40, 86),
    Program(32, "acoustic bass", "bass", 28, 60),
    Program(33, "electric bass (finger)", "bass", 28, 67),
    Program(34, "electric bass (pick)", "bass", 28, 67),
    Program(35, "fretless bass", "bass", 28, 67),
    Program(38, "synth bass 1", "bass", 24, 60),
    Program(40, "violin", "strings", 55, 100),
    Program(41, "viola", "strings", 48, 88),
    Program(42, "cello", "strings", 36, 76),
    Program(48, "string ensemble 1", "strings", 28, 96),
    Program(49, "string ensemble 2", "strings", 28, 96),
    Program(52, "choir aahs", "vocal", 48, 79),
    Program(53, "voice oohs", "vocal", 48, 79),
    Program(54, "synth voice", "vocal", 48, 84),
    Program(85, "lead 6 (voice)", "vocal", 48, 84),
    Program(56, "trumpet", "brass", 54, 86),
    Program(57, "trombone", "brass", 40, 72),
    Program(58, "tuba", "brass", 28, 58),
    Program(60, "french horn", "brass", 41, 77),
    Program(61, "brass section", "brass", 36, 84),
    Program(64, "soprano sax", "reed", 56, 88),
    Program(65, "alto sax", "reed", 49, 81),
    Program(66, "tenor sax", "reed", 44, 76),
    Program(68, "oboe", "reed", 58, 91),
    Program(71, "clarinet", "reed", 50, 91),
    Program(72, "piccolo", "flute", 74, 108),
    Program(73, "flute", "flute", 60, 96),
    Program(74, "recorder", "flute", 60, 96),
    Program(75, "pan flute", "flute", 60, 96),
    Program(80, "lead 1 (square)", "synth_lead", 36, 96),
    Program(81, "lead 2 (sawtooth)", "synth_lead", 36, 96),
    Program(84, "lead 5 (charang)", "synth_lead", 36, 96),
    Program(87, "lead 8 (bass + lead)", "synth_lead", 36, 96),
)}

# Programs each role of a clip may use (filtered by ``BuiltinSpec.families``).
CHORD_PROGRAMS = (0, 4, 5, 11, 16, 19, 21, 24, 25, 27, 48, 49, 61)
MELODY_PROGRAMS = (0, 11, 12, 26, 40, 53, 56, 60, 65, 66, 68, 71, 73, 74, 80, 81, 85)
BASS_PROGRAMS = (32, 33, 34, 35, 38)

_MAJOR_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
#: The 24 key labels (conventional key-signature spelling, accepted by ``mir_eval.key``).
KEYS: tuple[str, ...] = (tuple(f"{n} major" for n in _MAJOR_NAMES)
                         + tuple(f"{n} minor" for n in _MINOR_NAMES))
#: Clip tag vocabulary.
TAGS: tuple[str, ...] = FAMILIES + ("drums", "slow", "fast", "major", "minor")

SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
#: Chord progressions as 0-based scale degrees (0 = I/i); roman numerals are stored in metadata.
#: Every one starts and ends on the tonic chord and every minor one passes through the major
#: dominant V (the harmonic-minor leading tone, outside the relative major's scale). As every
#: major progression starts on I, none equals a minor progression (which starts on i) of the
#: relative key chord for chord.
PROGRESSIONS = {
    "major": ((0, 3, 4, 0), (0, 1, 4, 0), (0, 5, 3, 4, 0), (0, 3, 0, 4, 0), (0, 3, 5, 4, 0), (0, 5, 1, 4, 0)),
    "minor": ((0, 3, 4, 0), (0, 1, 4, 0), (0, 5, 3, 4, 0), (0, 3, 0, 4, 0), (0, 6, 5, 4, 0), (0, 2, 3, 4, 0)),
}
_ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII")
TEMPO_BINS = {"slow": (60, 88), "medium": (92, 116), "fast": (120, 160)}
#: Longest chord of a clip, in beats (one 4/4 bar); longer clips repeat their progression.
MAX_CHORD_BEATS = 4.0

#: ``(bank, program) -> MIDI keys with a sample``, see :func:`benchmark.data.synth.key_coverage`.
Coverage = Mapping[tuple[int, int], frozenset[int]]


# -- spec and presets ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BuiltinSpec:
    """Generation parameters; equal specs (and SoundFont bytes) give byte-identical datasets.

    The field defaults are the ``default`` preset.

    sample_rate: Hz (8000-96000), the rate FluidSynth renders and the files are stored at.
    n_notes, note_seconds: number and length (s) of single-note files.
    n_clips, clip_seconds: number and length (s) of multi-instrument clips.
    note_lead_in, clip_lead_in: silence (s) before a note's onset / a clip's first event; each
        must be shorter than half its item.
    split_fractions: target (train, valid, test) fractions, positive, summing to 1; clips hit
        them exactly (within one clip), notes in expectation (see the module docstring).
    seed: chooses the notes, velocities, keys and every clip's composition.
    soundfont: path of a ``.sf2`` file; ``None`` uses pretty_midi's ``TimGM6mb.sf2``. Only its
        SHA-256 enters the identity, not the path.
    families: instrument families to use (subset of :data:`FAMILIES`).
    pitch_min, pitch_max: MIDI range of the notes part (inclusive).
    velocity_min, velocity_max: MIDI velocity range of the notes part.
    drum_probability: probability that a clip has drums.
    reverb: FluidSynth reverb on the clips (notes are always dry).
    peak_dbfs: peak level after normalisation (dB full scale).
    """

    sample_rate: int = 44100
    n_notes: int = 480
    note_seconds: float = 1.0
    n_clips: int = 240
    clip_seconds: float = 4.0
    note_lead_in: float = 0.1
    clip_lead_in: float = 0.1
    split_fractions: tuple[float, float, float] = (0.5, 0.1, 0.4)
    seed: int = 0
    soundfont: str | None = None
    families: tuple[str, ...] = FAMILIES
    pitch_min: int = 36
    pitch_max: int = 84
    velocity_min: int = 40
    velocity_max: int = 120
    drum_probability: float = 0.5
    reverb: bool = True
    peak_dbfs: float = -1.0

    def __post_init__(self) -> None:
        if self.soundfont is not None and not isinstance(self.soundfont, str):
            object.__setattr__(self, "soundfont", str(self.soundfont))
        if isinstance(self.families, str):
            object.__setattr__(self, "families", (self.families,))
        object.__setattr__(self, "families", tuple(self.families))
        object.__setattr__(self, "split_fractions", tuple(float(f) for f in self.split_fractions))
        problems = []
        if unknown := [f for f in self.families if f not in FAMILIES]:
            problems.append(f"unknown families {unknown} (known: {', '.join(FAMILIES)})")
        if not self.families:
            problems.append("families is empty")
        if not 8000 <= self.sample_rate <= 96000:
            problems.append(f"sample_rate={self.sample_rate} outside 8000-96000 Hz")
        if self.n_notes < 0 or self.n_clips < 0 or self.n_notes + self.n_clips == 0:
            problems.append(f"n_notes={self.n_notes}, n_clips={self.n_clips}: need >= 0 and at least one item")
        if self.note_seconds <= 0 or self.clip_seconds <= 0:
            problems.append("note_seconds and clip_seconds must be positive")
        elif not (0 <= self.note_lead_in < self.note_seconds / 2 and 0 <= self.clip_lead_in < self.clip_seconds / 2):
            problems.append(f"note_lead_in={self.note_lead_in} and clip_lead_in={self.clip_lead_in} must be >= 0 "
                            f"and shorter than half of note_seconds={self.note_seconds} / "
                            f"clip_seconds={self.clip_seconds}")
        if (len(self.split_fractions) != len(SPLITS) or min(self.split_fractions) <= 0
                or abs(sum(self.split_fractions) - 1.0) > 1e-6):
            problems.append(f"split_fractions={self.split_fractions} must be three positive (train, valid, "
                            f"test) fractions summing to 1")
        if not 0 <= self.pitch_min <= self.pitch_max <= 127:
            problems.append(f"pitch range {self.pitch_min}-{self.pitch_max} must satisfy 0 <= min <= max <= 127")
        if not 1 <= self.velocity_min <= self.velocity_max <= 127:
            problems.append(f"velocity range {self.velocity_min}-{self.velocity_max} must lie in 1-127")
        if not 0.0 <= self.drum_probability <= 1.0:
            problems.append(f"drum_probability={self.drum_probability} must lie in [0, 1]")
        if self.peak_dbfs > 0:
            problems.append(f"peak_dbfs={self.peak_dbfs} would clip; use a value <= 0")
        if problems:
            raise DatasetError("invalid built-in dataset spec: " + "; ".join(problems))


#: Named sizes; see the table in the module docstring.
BUILTIN_PRESETS: dict[str, BuiltinSpec] = {
    "smoke": BuiltinSpec(sample_rate=22050, n_notes=66, note_seconds=1.0, n_clips=24, clip_seconds=3.0,
                         split_fractions=(0.70, 0.15, 0.15), pitch_min=48, pitch_max=72),
    "default": BuiltinSpec(),
    "large": BuiltinSpec(n_notes=2000, note_seconds=2.0, n_clips=800, clip_seconds=10.0,
                         split_fractions=(0.70, 0.15, 0.15), pitch_min=28, pitch_max=96),
}


# -- deterministic randomness and splits -----------------------------------------------------
def _digest(*parts: Any) -> int:
    text = "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _rng(*parts: Any) -> np.random.Generator:
    return np.random.default_rng(_digest("m2l-builtin", *parts))


def split_of(group: str, fractions: Sequence[float]) -> str:
    """Split of a group key: a fixed SHA-256 hash bucket, independent of the seed.

    ``fractions``: (train, valid, test) bucket widths, summing to 1.
    """
    u = _digest("m2l-builtin-split", group) / 2.0 ** 64
    edge = 0.0
    for name, fraction in zip(SPLITS, fractions, strict=True):
        edge += fraction
        if u < edge:
            return name
    return SPLITS[-1]


def deal_splits(n: int, fractions: Sequence[float]) -> list[str]:
    """Splits of items ``0..n-1`` dealt in order, each to the split most behind its quota.

    After ``m`` items every split holds its quota ``m * fraction`` to within one item (exactly,
    whenever all quotas are whole numbers), and item ``i``'s split depends on ``i`` and the
    fractions only, so adding items never moves an existing one. Quotas are compared as exact
    fractions (``fractions`` are rounded to 1e-6), ties go to the earlier split.
    """
    quotas = [Fraction(f).limit_denominator(10 ** 6) for f in fractions]
    quotas = [q / sum(quotas) for q in quotas]
    counts = [0] * len(quotas)
    splits = []
    for m in range(1, n + 1):
        behind = [m * q - c for q, c in zip(quotas, counts)]
        s = behind.index(max(behind))
        counts[s] += 1
        splits.append(SPLITS[s])
    return splits


# -- planning (pure, cheap): what to render and its labels ----------------------------------
@dataclasses.dataclass(frozen=True)
class Chord:
    """One chord of a clip: scale ``degree`` (0 = tonic), its ``numeral``, ``pitch_classes``
    (root, third, fifth; 0 = C) and when it sounds, ``start``-``end`` in seconds."""

    degree: int
    numeral: str
    pitch_classes: tuple[int, int, int]
    start: float
    end: float


@dataclasses.dataclass(frozen=True)
class PlannedItem:
    """One file to render: its metadata row and the MIDI tracks that make it.

    ``chords``: a clip's chord timeline (empty for notes), for analysis and tests; not stored.
    """

    id: str
    relpath: str
    split: str
    labels: Mapping[str, Any]
    extras: Mapping[str, Any]
    tracks: tuple[synth.Track, ...]
    seconds: float
    reverb: bool
    fade_seconds: float
    chords: tuple[Chord, ...] = ()


def plan_notes(spec: BuiltinSpec, coverage: Coverage) -> list[PlannedItem]:
    """Choose ``spec.n_notes`` distinct (program, pitch) notes; see the module docstring.

    ``coverage`` (:func:`benchmark.data.synth.key_coverage` of the SoundFont) excludes notes the
    SoundFont has no sample for.
    """
    if spec.n_notes == 0:
        return []
    per_family: dict[str, list[tuple[int, int, int]]] = {}
    for prog in PROGRAMS.values():
        if prog.family not in spec.families:
            continue
        keys = coverage.get((0, prog.number), frozenset())
        for pitch in range(max(prog.lowest, spec.pitch_min), min(prog.highest, spec.pitch_max) + 1):
            if pitch not in keys:
                continue
            per_family.setdefault(prog.family, []).append(
                (_digest(spec.seed, "note-order", prog.number, pitch), prog.number, pitch))
    total = sum(len(c) for c in per_family.values())
    if spec.n_notes > total:
        raise DatasetError(f"n_notes={spec.n_notes} exceeds the {total} distinct (program, pitch) "
                           f"playable notes in pitch range {spec.pitch_min}-{spec.pitch_max} for families "
                           f"{list(spec.families)}; widen the range, add families or ask for fewer notes")
    queues = [sorted(per_family[f]) for f in FAMILIES if f in per_family]
    order = [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]  # round robin

    def split(program: int, pitch: int) -> str:
        return split_of(f"note:{program}:{pitch}", spec.split_fractions)

    chosen: list[tuple[int, int]] = []
    train_families: set[str] = set()
    train_pitches: set[int] = set()
    pending: list[tuple[int, int]] = []

    def covered(program: int, pitch: int) -> bool:
        return PROGRAMS[program].family in train_families and pitch in train_pitches

    for _, program, pitch in order:
        if len(chosen) >= spec.n_notes:
            break
        if split(program, pitch) == "train":
            chosen.append((program, pitch))
            train_families.add(PROGRAMS[program].family)
            train_pitches.add(pitch)
            waiting, pending = pending, []
            for cand in waiting:
                if covered(*cand) and len(chosen) < spec.n_notes:
                    chosen.append(cand)
                else:
                    pending.append(cand)
        elif covered(program, pitch):
            chosen.append((program, pitch))
        else:
            pending.append((program, pitch))
    if len(chosen) < spec.n_notes:
        raise DatasetError(f"could only place {len(chosen)} of n_notes={spec.n_notes} notes with "
                           f"every pitch and family covered in train; ask for fewer notes")

    # Within each split, reorder the notes to cycle through the families (selection order within
    # a family), keeping the positions the split's notes hold in the list: then every prefix of
    # a split, e.g. a max_items cap, is balanced across families, as is every prefix of the list.
    rank: collections.Counter[tuple[str, str]] = collections.Counter()
    per_split: dict[str, list[tuple[int, int, int, int]]] = collections.defaultdict(list)
    for program, pitch in chosen:
        group = (split(program, pitch), PROGRAMS[program].family)
        per_split[group[0]].append((rank[group], FAMILIES.index(group[1]), program, pitch))
        rank[group] += 1
    queues = {name: iter(sorted(notes)) for name, notes in per_split.items()}
    chosen = [next(queues[split(program, pitch)])[2:] for program, pitch in chosen]

    items = []
    onset = spec.note_lead_in
    for program, pitch in chosen:
        rng = _rng(spec.seed, "note", program, pitch)
        velocity = int(rng.integers(spec.velocity_min, spec.velocity_max + 1))
        note_off = round(float(onset + (spec.note_seconds - onset) * rng.uniform(0.5, 0.75)), 4)
        item_id = f"note-{program:03d}-{pitch:03d}"
        items.append(PlannedItem(
            id=item_id, relpath=f"notes/{item_id}.wav", split=split(program, pitch),
            labels={"instrument": PROGRAMS[program].family, "pitch": pitch},
            extras={"kind": "note", "program": program, "velocity": velocity, "onset_s": onset,
                    "note_off_s": note_off},
            tracks=(synth.Track(0, program, (synth.Note(pitch, velocity, onset, note_off),)),),
            seconds=spec.note_seconds, reverb=False, fade_seconds=0.01))
    return items


def key_cycle(seed: int) -> list[str]:
    """The 24 keys in the seeded order clips are dealt them: majors and minors alternate."""
    rng = _rng(seed, "key-cycle")
    majors = [KEYS[i] for i in rng.permutation(12)]
    minors = [KEYS[12 + i] for i in rng.permutation(12)]
    return [k for pair in zip(majors, minors, strict=True) for k in pair]


def plan_clips(spec: BuiltinSpec, coverage: Coverage) -> list[PlannedItem]:
    """Compose ``spec.n_clips`` clips; clip ``i`` depends only on ``(seed, i)`` and its split rank."""
    cycle = key_cycle(spec.seed)
    dealt = dict.fromkeys(SPLITS, 0)
    items = []
    for index, split in enumerate(deal_splits(spec.n_clips, spec.split_fractions)):
        key = cycle[dealt[split] % len(cycle)]
        dealt[split] += 1
        items.append(_compose_clip(spec, coverage, index, f"clip-{index:05d}", split, key))
    return items


def _programs_for(role: Sequence[int], spec: BuiltinSpec, coverage: Coverage) -> list[int]:
    return [p for p in role if PROGRAMS[p].family in spec.families and coverage.get((0, p))]


def _fit(pitch: int, low: int, high: int) -> int:
    """Move ``pitch`` by octaves into ``[low, high]`` (as close as possible)."""
    while pitch < low:
        pitch += 12
    while pitch > high and pitch - 12 >= low:
        pitch -= 12
    return pitch


def _roman(degree: int, pcs: Sequence[int]) -> str:
    """Roman numeral of a triad: upper case major, lower case minor, ``o`` suffix diminished."""
    third, fifth = (pcs[1] - pcs[0]) % 12, (pcs[2] - pcs[0]) % 12
    numeral = _ROMAN[degree]
    return numeral if third == 4 else numeral.lower() + ("o" if fifth == 6 else "")


def _choose(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def triad(tonic: int, mode: str, degree: int) -> tuple[int, int, int]:
    """Pitch classes (root, third, fifth) of the triad on scale ``degree`` (0-based) of a key.

    Diatonic, except the minor-mode dominant, which is major: its third is the harmonic-minor
    leading tone, a semitone below the tonic.
    """
    scale = SCALES[mode]
    pcs = [(tonic + scale[(degree + 2 * k) % 7]) % 12 for k in range(3)]
    if mode == "minor" and degree == 4:
        pcs[1] = (tonic + 11) % 12
    return pcs[0], pcs[1], pcs[2]


def chord_timeline(tonic: int, mode: str, progression: Sequence[int], beat: float, start: float,
                   end: float) -> tuple[Chord, ...]:
    """Fit ``progression`` to ``[start, end]`` seconds so that the clip ends on its final tonic.

    The progression is played ``passes`` times, every chord ``chord_beats`` long, except the
    last (the tonic), which is held to ``end``, as a cadence's final chord: at least as long as
    the others. ``passes`` is the fewest that need no chord longer than
    :data:`MAX_CHORD_BEATS`, ``chord_beats`` the longest whole number of half beats that then
    fits. A clip too short for half-beat chords gets shorter ones, off the beat grid.
    """
    span = (end - start) / beat  # in beats
    passes = max(1, math.ceil(span / (len(progression) * MAX_CHORD_BEATS) - 1e-9))
    slots = passes * len(progression)
    chord_beats = min(MAX_CHORD_BEATS, math.floor(2 * span / slots + 1e-9) / 2) or span / slots
    degrees = [d for _ in range(passes) for d in progression]
    chords = []
    for c, degree in enumerate(degrees):
        pcs = triad(tonic, mode, degree)
        t0 = start + c * chord_beats * beat
        t1 = end if c == len(degrees) - 1 else start + (c + 1) * chord_beats * beat
        chords.append(Chord(degree, _roman(degree, pcs), pcs, t0, t1))
    return tuple(chords)


@dataclasses.dataclass(frozen=True)
class _Harmony:
    """Key, tempo and chord timeline of one clip; times in seconds."""

    tonic: int  # pitch class 0-11
    mode: str
    beat: float  # seconds per beat
    chords: tuple[Chord, ...]

    @property
    def scale(self) -> tuple[int, ...]:
        return SCALES[self.mode]

    @property
    def start(self) -> float:
        return self.chords[0].start

    @property
    def chord_beats(self) -> float:
        """Length of every chord but the (held) last one, in beats."""
        return (self.chords[0].end - self.chords[0].start) / self.beat

    @property
    def end(self) -> float:
        return self.chords[-1].end

    def chord_index(self, time: float) -> int:
        """Index of the chord sounding at ``time`` (the last one from its start on)."""
        return max(c for c, chord in enumerate(self.chords) if c == 0 or chord.start <= time + 1e-9)

    def pulses(self, chord: Chord, beats: float) -> list[tuple[float, float]]:
        """``(start, end)`` of consecutive ``beats``-long slots from the chord's start to its end."""
        step, slots, t = beats * self.beat, [], chord.start
        while t < chord.end - 1e-6:
            slots.append((t, min(t + step, chord.end)))
            t += step
        return slots


def _chord_part(h: _Harmony, program: int, rng: np.random.Generator) -> tuple[synth.Note, ...]:
    """Closed triads around C3-C4 (random inversion): sustained, stabbed on beats, or arpeggiated
    in eighths (faster where a chord is shorter than two beats, so each sounds all three tones)."""
    style = _choose(rng, ("sustain", "stabs", "arpeggio"))
    inversion = int(rng.integers(3))
    low, high = max(PROGRAMS[program].lowest, 45), min(PROGRAMS[program].highest, 84)
    notes = []
    for chord in h.chords:
        pcs = chord.pitch_classes
        root = _fit(48 + pcs[0], low, high)
        voicing = sorted(root + (pc - pcs[0]) % 12 for pc in pcs)
        for _ in range(inversion):
            voicing = voicing[1:] + [voicing[0] + 12]
        vel = int(rng.integers(62, 85))
        if style == "sustain":
            end = max(chord.end - 0.05, (chord.start + chord.end) / 2)
            notes += [synth.Note(p, vel, chord.start, end) for p in voicing]
        elif style == "stabs":
            for t0, t1 in h.pulses(chord, 1.0):
                v = vel + int(rng.integers(-6, 7))
                notes += [synth.Note(p, v, t0, min(t0 + 0.6 * h.beat, t1)) for p in voicing]
        else:
            arp = voicing + [voicing[1]]  # up and back down, at least once per chord
            for e, (t0, t1) in enumerate(h.pulses(chord, min(0.5, h.chord_beats / len(arp)))):
                v = vel + int(rng.integers(-6, 7))
                notes.append(synth.Note(arp[e % len(arp)], v, t0, t0 + 0.9 * (t1 - t0)))
    return tuple(notes)


def _melody_part(h: _Harmony, program: int, rng: np.random.Generator) -> tuple[synth.Note, ...]:
    """A random walk on the scale from the tonic near C4 that cadences on the tonic.

    The first note over each chord is a chord tone, in minor the seventh degree is raised
    (leading tone) over the dominant, and over the final chord the melody holds the tonic.
    """
    low, high = max(PROGRAMS[program].lowest, 57), min(PROGRAMS[program].highest, 88)
    rhythm = _choose(rng, ((1.0,), (0.5,), (1.0, 0.5, 0.5), (1.5, 0.5)))  # in beats
    base = _fit(60 + h.tonic, low, high)
    step, t, r, notes = 0, 0.0, 0, []  # step: scale-degree index relative to ``base``; t in beats
    current = -1  # index of the chord of the previous note
    while (start := h.start + t * h.beat) < h.end - 1e-6:
        length = rhythm[r % len(rhythm)]
        r += 1
        index = h.chord_index(start)
        chord = h.chords[index].pitch_classes
        if index == len(h.chords) - 1:  # cadence: the nearest tonic, held to the end
            step = min(range(step - 6, step + 7), key=lambda s: (s % 7 != 0, abs(s - step), s))
        elif index != current:
            options = [s for s in range(step - 4, step + 5) if (h.tonic + h.scale[s % 7]) % 12 in chord]
            step = min(options, key=lambda s: (abs(s - step), s))
            current = index
        else:
            step += int(_choose(rng, (-2, -1, -1, 0, 1, 1, 2)))
        pitch = base + h.scale[step % 7] + 12 * (step // 7)
        if h.mode == "minor" and step % 7 == 6 and (h.tonic + 11) % 12 in chord:
            pitch += 1  # leading tone over the dominant
        while pitch > high:
            step, pitch = step - 7, pitch - 12
        while pitch < low:
            step, pitch = step + 7, pitch + 12
        if index == len(h.chords) - 1:
            notes.append(synth.Note(pitch, int(rng.integers(88, 116)), start, h.end))
            break
        if rng.random() > 0.1:  # occasional rest
            notes.append(synth.Note(pitch, int(rng.integers(88, 116)), start, start + 0.9 * length * h.beat))
        t += length
    return tuple(notes)


def _bass_part(h: _Harmony, program: int, rng: np.random.Generator) -> tuple[synth.Note, ...]:
    """Chord roots in E1-Eb2: one per chord, or every two beats or every beat (the fifth on a
    chord's third beat)."""
    pattern = _choose(rng, ("whole", "half", "quarters"))
    notes = []
    for chord in h.chords:
        pcs = chord.pitch_classes
        root = _fit(28 + (pcs[0] - 28) % 12, max(PROGRAMS[program].lowest, 28), 47)
        fifth = root + (pcs[2] - pcs[0]) % 12
        slots = ([(chord.start, chord.end)] if pattern == "whole"
                 else h.pulses(chord, 2.0 if pattern == "half" else 1.0))
        slot_beats = 2 if pattern == "half" else 1
        for s, (t0, t1) in enumerate(slots):
            pitch = fifth if s * slot_beats % 4 == 2 else root  # the fifth on beat 3 of a bar
            notes.append(synth.Note(pitch, int(rng.integers(84, 106)), t0, max(t1 - 0.1 * h.beat, (t0 + t1) / 2)))
    return tuple(notes)


def _drum_part(h: _Harmony, rng: np.random.Generator) -> tuple[synth.Note, ...]:
    """GM kit: kick (36) on beats 1 and 3, snare (38) on 2 and 4, closed hi-hat (42) on eighths."""
    notes = []
    for b in range(math.ceil((h.end - h.start) / h.beat - 1e-9)):
        hits = [(0.0, 42), (0.5, 42), (0.0, 36 if b % 2 == 0 else 38)]
        if b % 4 == 3 and rng.random() < 0.5:
            hits.append((0.5, 36))  # pickup kick
        for offset, pitch in hits:
            t = h.start + (b + offset) * h.beat
            if t < h.end:
                notes.append(synth.Note(pitch, int(rng.integers(70, 101)), t, t + 0.1))
    return tuple(notes)


def _playable(notes: Sequence[synth.Note], keys: frozenset[int], channel: int) -> tuple[synth.Note, ...]:
    """``notes`` with every key the SoundFont has no sample for (it would be silent) moved to the
    nearest octave that has one, or dropped if none has (drums: dropped)."""
    shifts = (0,) if channel == synth.DRUM_CHANNEL else (0, 12, -12, 24, -24)
    out = []
    for note in notes:
        pitch = next((note.pitch + s for s in shifts if note.pitch + s in keys), None)
        if pitch is not None:
            out.append(dataclasses.replace(note, pitch=pitch))
    return tuple(out)


def _compose_clip(spec: BuiltinSpec, coverage: Coverage, index: int, item_id: str, split: str,
                  key: str) -> PlannedItem:
    """Arrange and compose one clip. The arrangement (tempo, progression, which parts, their
    programs and styles) comes from one random stream and each part's notes from its own, so a
    clip's arrangement does not depend on ``clip_seconds``; its chord lengths do (the
    progression is fitted to the clip, :func:`chord_timeline`)."""
    rng = _rng(spec.seed, "clip", index, "arrangement")
    tonic_name, mode = key.split()
    tonic = (_MAJOR_NAMES if mode == "major" else _MINOR_NAMES).index(tonic_name)
    tempo_tag = _choose(rng, ("slow", "medium", "fast"))
    tempo = int(rng.integers(TEMPO_BINS[tempo_tag][0], TEMPO_BINS[tempo_tag][1] + 1))
    progression = _choose(rng, PROGRESSIONS[mode])
    h = _Harmony(tonic, mode, 60.0 / tempo,
                 chord_timeline(tonic, mode, progression, 60.0 / tempo, spec.clip_lead_in, spec.clip_seconds))
    reverb_send = int(rng.integers(20, 71)) if spec.reverb else 0
    chord_choices = _programs_for(CHORD_PROGRAMS, spec, coverage) or _programs_for(MELODY_PROGRAMS, spec, coverage)
    if not chord_choices:
        raise DatasetError(f"families {list(spec.families)} leave no program to play chords in this "
                           f"SoundFont; include one of keyboard, organ, guitar, strings, brass, mallet")
    melody_choices = _programs_for(MELODY_PROGRAMS, spec, coverage)
    bass_choices = _programs_for(BASS_PROGRAMS, spec, coverage)
    roles = {"chords": _choose(rng, chord_choices)}
    if melody_choices and rng.random() < 0.85:
        roles["melody"] = _choose(rng, melody_choices)
    if bass_choices and rng.random() < 0.7:
        roles["bass"] = _choose(rng, bass_choices)
    if rng.random() < spec.drum_probability and coverage.get((synth.DRUM_BANK, 0)):
        roles["drums"] = 0  # Standard kit

    def part_rng(role: str) -> np.random.Generator:
        return _rng(spec.seed, "clip", index, role)

    tracks = [synth.Track(0, roles["chords"], _chord_part(h, roles["chords"], part_rng("chords")), reverb=reverb_send)]
    tags = {mode, PROGRAMS[roles["chords"]].family}
    if "melody" in roles:
        notes = _melody_part(h, roles["melody"], part_rng("melody"))
        tracks.append(synth.Track(1, roles["melody"], notes, reverb=reverb_send))
        tags.add(PROGRAMS[roles["melody"]].family)
    if "bass" in roles:
        tracks.append(synth.Track(2, roles["bass"], _bass_part(h, roles["bass"], part_rng("bass")), reverb=reverb_send))
        tags.add("bass")
    if "drums" in roles:
        tracks.append(synth.Track(synth.DRUM_CHANNEL, 0, _drum_part(h, part_rng("drums")),
                                  bank=synth.DRUM_BANK, reverb=reverb_send // 2))
        tags.add("drums")
    if tempo_tag != "medium":
        tags.add(tempo_tag)
    tracks = [dataclasses.replace(t, notes=_playable(t.notes, coverage[(t.bank, t.program)], t.channel))
              for t in tracks]
    return PlannedItem(
        id=item_id, relpath=f"clips/{item_id}.wav", split=split,
        labels={"key": key, "tags": tuple(t for t in TAGS if t in tags)},
        extras={"kind": "clip", "tempo_bpm": tempo, "onset_s": spec.clip_lead_in,
                "progression": "-".join(_roman(d, triad(tonic, mode, d)) for d in progression),
                "programs": " ".join(f"{role}={p}" for role, p in roles.items())},
        tracks=tuple(tracks), seconds=spec.clip_seconds, reverb=spec.reverb, fade_seconds=0.02, chords=h.chords)


def plan(spec: BuiltinSpec, coverage: Coverage | None = None) -> list[PlannedItem]:
    """Every item of the dataset, without rendering anything.

    Notes (which cycle through the families within each split) and clips are interleaved
    evenly, so that any prefix of the list - e.g. a ``max_items`` cap - is a balanced sample.
    ``coverage`` defaults to the key coverage of ``spec.soundfont`` (FluidSynth not needed).
    """
    if coverage is None:
        coverage = synth.key_coverage(synth.resolve_soundfont(spec.soundfont))
    notes, clips = plan_notes(spec, coverage), plan_clips(spec, coverage)
    slots = [((i + 0.5) / len(notes), 0, it) for i, it in enumerate(notes)]
    slots += [((j + 0.5) / len(clips), 1, it) for j, it in enumerate(clips)]
    return [it for _, _, it in sorted(slots, key=lambda slot: slot[:2])]


# -- rendering -------------------------------------------------------------------------------
def render_item(item: PlannedItem, sample_rate: int, soundfont: str | os.PathLike,
                peak_dbfs: float = -1.0) -> np.ndarray:
    """Render one planned item to int16 mono ``[samples]`` (normalised, faded)."""
    audio = synth.render(item.tracks, item.seconds, sample_rate, soundfont, reverb=item.reverb)
    audio = synth.fade_out(audio, sample_rate, item.fade_seconds)
    return synth.to_pcm16(synth.peak_normalise(audio, peak_dbfs, name=item.id))


def _render_job(job: tuple[PlannedItem, int, str, float, str]) -> tuple[str, str]:
    """Render and write one item; returns ``(id, SHA-256 of the file)``."""
    item, sample_rate, soundfont, peak_dbfs, path = job
    write_audio(path, render_item(item, sample_rate, soundfont, peak_dbfs)[None, :], sample_rate)
    return item.id, file_hash(path)


# -- cache -----------------------------------------------------------------------------------
def default_cache_root() -> Path:
    """``$BENCHMARK_CACHE`` if set, else ``~/.cache/m2l-benchmark``."""
    return Path(os.environ.get("BENCHMARK_CACHE") or "~/.cache/m2l-benchmark").expanduser()


def dataset_folder(root: str | os.PathLike | None, identity: str) -> Path:
    """``<root>/datasets/builtin-<identity>`` (``root=None``: :func:`default_cache_root`)."""
    return (Path(root) if root is not None else default_cache_root()).expanduser() / "datasets" / f"builtin-{identity}"


def identity_payload(spec: BuiltinSpec) -> dict[str, Any]:
    """What the identity hashes: spec (minus the SoundFont path), SoundFont SHA-256, versions."""
    soundfont = synth.resolve_soundfont(spec.soundfont)
    fields = {k: v for k, v in dataclasses.asdict(spec).items() if k != "soundfont"}
    fields["families"] = list(spec.families)
    return {"generator_version": GENERATOR_VERSION, "spec": fields,
            "soundfont_sha256": synth.soundfont_sha256(soundfont),
            "fluidsynth": synth.fluidsynth_version()}


def builtin_identity(spec: BuiltinSpec) -> str:
    """16-hex identity of the dataset ``spec`` generates (see the module docstring)."""
    return identity_of(identity_payload(spec))


def resolve_spec(preset: str = "default", **overrides: Any) -> BuiltinSpec:
    """``BUILTIN_PRESETS[preset]`` with ``overrides`` applied (DatasetError on unknown names)."""
    if preset not in BUILTIN_PRESETS:
        raise DatasetError(f"unknown built-in preset {preset!r}; known: {', '.join(BUILTIN_PRESETS)}")
    names = {f.name for f in dataclasses.fields(BuiltinSpec)}
    if unknown := sorted(set(overrides) - names):
        raise DatasetError(f"unknown built-in dataset option(s) {unknown}; valid: {', '.join(sorted(names))}")
    return dataclasses.replace(BUILTIN_PRESETS[preset], **overrides)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (released on exit or process death; no-op without fcntl)."""
    try:
        import fcntl  # noqa: PLC0415 - POSIX only
    except ImportError:  # Windows: concurrent generation of one dataset is not guarded
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


MARKER = "complete.json"


def generate(spec: BuiltinSpec, folder: Path, workers: int = 2, progress: bool = True) -> None:
    """Render every missing file of ``spec`` into ``folder``, then metadata, then the marker."""
    soundfont = synth.resolve_soundfont(spec.soundfont)
    synth.fluidsynth_version()  # fail early, with the fix, if FluidSynth is missing
    items = plan(spec, synth.key_coverage(soundfont))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.rglob(".*.tmp"):  # left by an interrupted run
        stale.unlink()
    payload = identity_payload(spec)
    spec_json = {"name": "builtin", "identity": identity_of(payload), **payload,
                 "soundfont_file": soundfont.name}
    (folder / "spec.json").write_text(json.dumps(spec_json, indent=2, sort_keys=True) + "\n")

    todo = [it for it in items if not (folder / it.relpath).exists()]
    jobs = [(it, spec.sample_rate, str(soundfont), spec.peak_dbfs, str(folder / it.relpath)) for it in todo]
    workers = max(1, min(workers, os.cpu_count() or 1, len(jobs)))
    start = time.perf_counter()
    log.info("rendering %d of %d built-in items into %s with %d worker(s)", len(jobs), len(items), folder, workers)
    from tqdm.auto import tqdm  # noqa: PLC0415 - keep import light for planning-only use

    bar = functools.partial(tqdm, total=len(jobs), desc=f"builtin-{spec_json['identity']}", unit="item",
                            disable=not progress or not jobs)
    hashes: dict[str, str] = {}
    if workers == 1:
        with bar() as progress_bar:
            for job in jobs:
                item_id, digest = _render_job(job)
                hashes[item_id] = digest
                progress_bar.update()
    else:
        # fork where available: workers need nothing from the parent but the job, and unlike
        # spawn/forkserver it does not re-import the caller's main script. Submitting starts
        # the workers, before tqdm's monitor thread exists.
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        try:
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = [pool.submit(_render_job, job) for job in jobs]
                try:
                    with bar() as progress_bar:
                        for future in as_completed(futures):
                            item_id, digest = future.result()
                            hashes[item_id] = digest
                            progress_bar.update()
                except BaseException:  # a failed render or Ctrl-C: drop the queued jobs
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        except BrokenProcessPool as exc:
            raise DatasetError(f"a rendering worker died ({exc}); if a script calls load_builtin, "
                               f"guard the call with `if __name__ == '__main__':`, or pass workers=1") from exc
    rows = []
    for it in items:
        digest = hashes.get(it.id) or file_hash(folder / it.relpath)  # files from an earlier run
        rows.append({"id": it.id, "path": it.relpath, "split": it.split, "sha256": digest,
                     **it.labels, **it.extras})
    write_metadata(folder / "metadata.csv", rows, extra_columns=EXTRA_COLUMNS)
    seconds = time.perf_counter() - start
    marker = {"identity": spec_json["identity"], "items": len(items), "rendered": len(jobs),
              "workers": workers, "seconds": round(seconds, 3)}
    (folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    log.info("built-in dataset %s: rendered %d items in %.1f s", spec_json["identity"], len(jobs), seconds)


EXTRA_COLUMNS = ("kind", "program", "velocity", "onset_s", "note_off_s", "tempo_bpm", "progression", "programs")

# Rendering cost model, fitted to the preset table of the module docstring (CPU seconds; the
# clips' reverb and the per-item synthesizer set-up dominate small items).
RENDER_CPU_S_PER_SAMPLE = 1.0e-7
RENDER_CPU_S_PER_ITEM = 0.026


def render_cpu_seconds(items: Sequence[PlannedItem], sample_rate: int) -> float:
    """Rough CPU seconds to render ``items`` at ``sample_rate`` (Hz): a planning estimate, not a measurement."""
    return sum(it.seconds * sample_rate * RENDER_CPU_S_PER_SAMPLE + RENDER_CPU_S_PER_ITEM for it in items)


def describe_builtin(root: Path | None = None, preset: str = "default", workers: int = 2,
                     progress: bool = True, **overrides: Any) -> DatasetPlan:
    """What :func:`load_builtin` with the same arguments would find and render, without rendering.

    Plans the items (:func:`plan`: MIDI composition only, ~1 s for ``large``), computes the
    identity (which hashes the SoundFont) and looks at the cache folder (file existence only):
    nothing is rendered or written, and no audio is read. ``progress`` is accepted so that the
    options of :func:`load_builtin` can be passed unchanged. Raises :class:`DatasetError` where
    loading would (bad options, SoundFont or FluidSynth missing).
    """
    spec = resolve_spec(preset, **overrides)
    identity = builtin_identity(spec)
    folder = dataset_folder(root, identity)
    planned = plan(spec)
    splits = {s: n for s in SPLITS if (n := sum(it.split == s for it in planned))}
    items = None
    if (folder / MARKER).exists():  # complete, unless files were deleted since (load re-renders those)
        listed = read_metadata(folder / "metadata.csv", folder)
        missing = {it.id for it in listed if not it.path.exists()}
        items = None if missing else listed
        todo = [it for it in planned if it.id in missing]
    else:  # generation resumes: every file present is complete
        todo = [it for it in planned if not (folder / it.relpath).exists()]
    status = "present" if not todo else "partial" if len(todo) < len(planned) else "absent"
    if not todo:
        work = "renders nothing (cached)"
        seconds = None
    else:
        cpu = render_cpu_seconds(todo, spec.sample_rate)
        parallel = max(1, min(workers, os.cpu_count() or 1, len(todo)))  # as generate() chooses
        seconds = cpu / parallel
        audio = sum(it.seconds for it in todo)
        work = (f"renders {len(todo)} of {len(planned)} items with FluidSynth ({audio:,.0f} s of audio at "
                f"{spec.sample_rate} Hz; ~{cpu:,.0f} s CPU, ~{seconds:,.0f} s with {parallel} worker(s))")
    return DatasetPlan(name="builtin", status=status, work=work, identity=identity, splits=splits, root=folder,
                       items=items, to_compute=len(todo), seconds=seconds)


def load_builtin(root: Path | None = None, preset: str = "default", workers: int = 2,
                 progress: bool = True, **overrides: Any) -> Dataset:
    """Generate (or reuse from the cache) the built-in dataset and return it.

    Parameters
    ----------
    root: cache folder; the dataset goes to ``<root>/datasets/builtin-<identity>/``.
        ``None`` -> :func:`default_cache_root`.
    preset: a key of :data:`BUILTIN_PRESETS`.
    workers: rendering processes (results do not depend on it).
    progress: show a tqdm bar while rendering.
    overrides: :class:`BuiltinSpec` fields replacing the preset's, e.g. ``seed=1`` or
        ``soundfont="/path/FluidR3_GM.sf2"``.

    Raises
    ------
    DatasetError: bad options, FluidSynth or the SoundFont unavailable, or a failed render.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # a spawn worker importing an unguarded main script would wait forever on our lock
        raise DatasetError("load_builtin was called while a worker process was importing the main "
                           "script; put the call under `if __name__ == '__main__':`")
    spec = resolve_spec(preset, **overrides)
    identity = builtin_identity(spec)
    folder = dataset_folder(root, identity)
    base = folder.parent
    base.mkdir(parents=True, exist_ok=True)
    with _locked(base / f".builtin-{identity}.lock"):
        if (folder / MARKER).exists():
            items = read_metadata(folder / "metadata.csv", folder)
            if missing := [it for it in items if not it.path.exists()]:
                log.warning("built-in dataset %s: %d files missing (e.g. %s); re-rendering them",
                            identity, len(missing), missing[0].path)
                (folder / MARKER).unlink()
        if not (folder / MARKER).exists():
            generate(spec, folder, workers=workers, progress=progress)
        else:
            log.info("built-in dataset %s: cache hit in %s", identity, folder)
    items = read_metadata(folder / "metadata.csv", folder)
    n_notes = sum("pitch" in it.labels for it in items)
    soundfont = synth.resolve_soundfont(spec.soundfont)
    return Dataset(
        name="builtin", identity=identity, root=folder, items=items, sample_rate=spec.sample_rate,
        description=(f"built-in FluidSynth dataset (preset {preset}"
                     f"{''.join(f', {k}={v}' for k, v in sorted(overrides.items()))}): {n_notes} notes of "
                     f"{spec.note_seconds:g} s and {len(items) - n_notes} clips of {spec.clip_seconds:g} s "
                     f"at {spec.sample_rate} Hz, seed {spec.seed}, SoundFont {soundfont.name} "
                     f"(sha256 {synth.soundfont_sha256(soundfont)[:12]}), FluidSynth {synth.fluidsynth_version()}"))
