"""Built-in dataset, clips: harmony rules, lead-ins and symbolic key finding, all on the planned
MIDI (no rendering; the SoundFont's key coverage applied, as when the dataset is generated)."""

from __future__ import annotations

import collections
import functools

import mir_eval
import numpy as np
import pytest

from benchmark.data import builtin, synth

# Krumhansl-Kessler probe-tone key profiles, C major and C minor (Krumhansl & Kessler 1982,
# "Tracing the dynamic changes in perceived tonal organization in a spatial representation of
# musical keys", Psychological Review 89(4); the profiles of the Krumhansl-Schmuckler
# key-finding algorithm, Krumhansl 1990, "Cognitive Foundations of Musical Pitch").
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

PRESETS = ("smoke", "default", "large")


@functools.lru_cache(maxsize=None)
def planned_clips(preset: str) -> list[builtin.PlannedItem]:
    spec = builtin.BUILTIN_PRESETS[preset]
    return builtin.plan_clips(spec, synth.key_coverage(synth.resolve_soundfont(spec.soundfont)))


def key_of(label: str) -> tuple[int, str]:
    """``"F# minor"`` -> ``(6, "minor")``."""
    return mir_eval.key.split_key_string(label)


def pitched_notes(item: builtin.PlannedItem) -> list[synth.Note]:
    """Every pitched note (not the drum track) that starts within the clip."""
    return [n for t in item.tracks if t.channel != synth.DRUM_CHANNEL for n in t.notes if n.start < item.seconds]


def pitch_class_histogram(item: builtin.PlannedItem) -> np.ndarray:
    """Seconds each pitch class sounds, ``[12]`` (C = 0), notes clipped to the clip's end."""
    hist = np.zeros(12)
    for note in pitched_notes(item):
        hist[note.pitch % 12] += min(note.end, item.seconds) - note.start
    return hist


def key_scores(hist: np.ndarray) -> dict[str, float]:
    """Krumhansl-Schmuckler: correlation of the histogram with each key's rotated KK profile."""
    scores = {}
    for label in builtin.KEYS:
        tonic, mode = key_of(label)
        profile = np.roll(KK_MAJOR if mode == "major" else KK_MINOR, tonic)
        scores[label] = float(np.corrcoef(hist, profile)[0, 1])
    return scores


def relative_key(label: str) -> str:
    tonic, mode = key_of(label)
    other = ((tonic + 9) % 12, "minor") if mode == "major" else ((tonic + 3) % 12, "major")
    return next(k for k in builtin.KEYS if key_of(k) == other)


def tonic_seconds(item: builtin.PlannedItem) -> float:
    return sum(min(c.end, item.seconds) - c.start for c in item.chords if c.degree == 0 and c.start < item.seconds)


# -- the progression tables ----------------------------------------------------------------
def test_progression_tables_follow_the_rules():
    for progressions in builtin.PROGRESSIONS.values():
        assert len(set(progressions)) == len(progressions) >= 6
        for p in progressions:  # from the tonic, ending with the cadence V-I (so minor ones contain V)
            assert p[0] == 0 and p[-2:] == (4, 0) and 4 <= len(p) <= 5
    # the minor dominant is major: its third is the leading tone, outside the relative major scale
    c_minor_v = builtin.triad(0, "minor", 4)
    assert c_minor_v == (7, 11, 2) and 11 not in {(3 + d) % 12 for d in builtin.SCALES["major"]}
    # no major progression is, chord for chord, a minor progression of its relative key (C / A)
    def chords(tonic: int, mode: str, p: tuple[int, ...]) -> list[tuple[int, int, int]]:
        return [builtin.triad(tonic, mode, d) for d in p]

    minor_in_a = [chords(9, "minor", p) for p in builtin.PROGRESSIONS["minor"]]
    for p in builtin.PROGRESSIONS["major"]:
        assert chords(0, "major", p) not in minor_in_a
    assert [builtin._roman(d, builtin.triad(0, "minor", d)) for d in range(7)] == [
        "i", "iio", "III", "iv", "V", "VI", "VII"]


# -- every planned clip ---------------------------------------------------------------------
@pytest.mark.parametrize("preset", PRESETS)
def test_each_progression_spans_its_clip_and_ends_on_the_tonic(preset):
    spec = builtin.BUILTIN_PRESETS[preset]
    for it in planned_clips(preset):
        chords = it.chords
        assert chords[0].start == pytest.approx(spec.clip_lead_in) and chords[-1].end == spec.clip_seconds
        assert all(a.end == pytest.approx(b.start) and a.start < a.end for a, b in zip(chords, chords[1:]))
        one_pass = it.extras["progression"].split("-")
        numerals = [c.numeral for c in chords]  # the whole progression, once or more
        assert numerals == one_pass * (len(numerals) // len(one_pass)) and len(numerals) >= len(one_pass)
        assert chords[0].degree == 0 and chords[-1].degree == 0  # starts and ends on the tonic
        assert chords[-1].start < spec.clip_seconds - 0.25  # and the final tonic is heard
        lengths = {round(c.end - c.start, 9) for c in chords[:-1]}
        assert len(lengths) == 1 and chords[-1].end - chords[-1].start >= min(lengths) - 1e-9
        beats = min(lengths) * it.extras["tempo_bpm"] / 60.0
        assert beats <= builtin.MAX_CHORD_BEATS + 1e-9 and abs(2 * beats - round(2 * beats)) < 1e-6
        # the tonic sounds for >= 2/5 of the time after the lead-in, hence >= 25 % of the clip
        assert tonic_seconds(it) >= 0.4 * (spec.clip_seconds - spec.clip_lead_in) - 1e-9
        assert tonic_seconds(it) >= 0.25 * spec.clip_seconds


@pytest.mark.parametrize("preset", PRESETS)
def test_notes_stay_in_the_scale_and_every_minor_clip_sounds_the_leading_tone(preset):
    for it in planned_clips(preset):
        tonic, mode = key_of(it.labels["key"])
        scale = {(tonic + d) % 12 for d in builtin.SCALES[mode]}
        leading_tone = (tonic + 11) % 12
        for note in pitched_notes(it):
            if note.pitch % 12 not in scale:  # only the leading tone, and only over the dominant
                assert mode == "minor" and note.pitch % 12 == leading_tone
                chord = next(c for c in reversed(it.chords) if c.start <= note.start + 1e-9)
                assert chord.numeral == "V"
        if mode == "minor":
            assert leading_tone not in {(tonic + 3 + d) % 12 for d in builtin.SCALES["major"]}
            assert pitch_class_histogram(it)[leading_tone] > 0.05  # seconds (measured: >= 0.08)


@pytest.mark.parametrize("preset", PRESETS)
def test_chord_part_plays_every_chord_and_the_melody_ends_on_the_tonic(preset):
    for it in planned_clips(preset):
        chord_track = next(t for t in it.tracks if t.channel == 0)
        for chord in it.chords:  # all three tones of every chord, nothing else
            played = {n.pitch % 12 for n in chord_track.notes if chord.start - 1e-9 <= n.start < chord.end - 1e-9}
            assert played == set(chord.pitch_classes), (it.id, chord)
        melody = [t for t in it.tracks if t.channel == 1]
        if melody:
            last = melody[0].notes[-1]
            assert last.pitch % 12 == key_of(it.labels["key"])[0] and last.end == it.seconds
            assert last.start >= it.chords[-1].start - 1e-9


def test_symbolic_key_finding_recovers_every_default_label():
    """Krumhansl-Schmuckler on each clip's duration-weighted pitch classes (drums excluded).

    Measured with the default SoundFont and seed 0: the labelled key ranks first for 237 of the
    240 clips (the other 3 are minor clips whose parallel major correlates slightly better) and
    beats its relative key in all 240.
    """
    ranks, margins = [], []
    for it in planned_clips("default"):
        scores = key_scores(pitch_class_histogram(it))
        label = it.labels["key"]
        ranks.append(sorted(scores, key=scores.get, reverse=True).index(label))
        margins.append(scores[label] - scores[relative_key(label)])
    ranks, margins = np.array(ranks), np.array(margins)
    assert len(ranks) == 240
    assert np.all(margins > 0)  # the label, never its relative key
    assert np.mean(ranks == 0) >= 0.95  # and the best of all 24 keys for nearly every clip


# -- lead-ins (planned; the rendered silence is checked in test_builtin.py) -----------------
def test_notes_and_clips_start_after_their_lead_in():
    spec = builtin.BUILTIN_PRESETS["default"]
    items = builtin.plan(spec)
    for it in items:
        starts = [n.start for t in it.tracks for n in t.notes]
        if it.extras["kind"] == "note":
            (note,) = it.tracks[0].notes
            rest = spec.note_seconds - spec.note_lead_in
            assert note.start == it.extras["onset_s"] == spec.note_lead_in == 0.1
            assert note.end == it.extras["note_off_s"]
            assert spec.note_lead_in + 0.5 * rest - 1e-4 <= note.end <= spec.note_lead_in + 0.75 * rest + 1e-4
        else:
            assert min(starts) == pytest.approx(it.extras["onset_s"]) and it.extras["onset_s"] == spec.clip_lead_in
    assert collections.Counter(it.extras["kind"] for it in items) == {"note": 480, "clip": 240}
