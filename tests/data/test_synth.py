"""FluidSynth rendering helpers: SoundFont handling, timing, pitch, determinism, errors."""

from __future__ import annotations

import sys

import librosa
import numpy as np
import pytest

from benchmark.data import synth
from benchmark.data.dataset import DatasetError

SR = 16000


def _note(program: int, pitch: int, start: float = 0.0, end: float = 0.5, velocity: int = 100) -> synth.Track:
    return synth.Track(0, program, (synth.Note(pitch, velocity, start, end),))


def test_default_soundfont_is_pretty_midis_general_midi_bank():
    path = synth.default_soundfont()
    assert path.name == "TimGM6mb.sf2" and path.parent.name == "pretty_midi" and path.is_file()
    assert synth.soundfont_sha256(path) == synth.soundfont_sha256(str(path))
    assert len(synth.soundfont_sha256(path)) == 64


def test_key_coverage_reads_sample_zones():
    coverage = synth.key_coverage(synth.default_soundfont())
    assert len([key for key in coverage if key[0] == 0]) == 128  # every GM melodic program
    assert coverage[(0, 0)] >= set(range(21, 109))  # piano: the full keyboard
    assert {35, 36, 38, 42, 46, 49}.issubset(coverage[(synth.DRUM_BANK, 0)])  # Standard kit
    # TimGM6mb's alto sax has no sample zone for E4; rendering it gives silence (checked below)
    assert 64 not in coverage[(0, 65)] and {63, 65}.issubset(coverage[(0, 65)])
    silent = synth.render([_note(65, 64)], 0.3, SR, synth.default_soundfont())
    assert np.max(np.abs(silent)) == 0.0


def test_render_length_onset_and_release():
    audio = synth.render([_note(73, 69, start=0.503, end=0.9)], 1.5, SR, synth.default_soundfont())
    assert audio.dtype == np.float32 and audio.shape == (round(1.5 * SR),)
    onset = int(np.nonzero(audio)[0][0])
    # events land on FluidSynth's 64-sample block grid, after the requested time
    assert round(0.503 * SR) <= onset < round(0.503 * SR) + 2 * 64
    rms = lambda a, b: float(np.sqrt(np.mean(audio[int(a * SR):int(b * SR)] ** 2)))  # noqa: E731
    assert rms(0.6, 0.85) > 1e-3  # sustain is audible (FluidSynth gain 0.2: ~ -35 dBFS RMS)
    assert rms(1.4, 1.5) < 1e-3 * rms(0.6, 0.85)  # released well before the end


@pytest.mark.parametrize("program, pitch", [(73, 69), (0, 48), (33, 40), (40, 76)])
def test_rendered_fundamental_matches_midi_pitch(program, pitch):
    audio = synth.render([_note(program, pitch, end=0.6)], 0.6, SR, synth.default_soundfont())
    f0 = librosa.yin(audio[int(0.1 * SR):int(0.5 * SR)], fmin=30, fmax=2000, sr=SR, frame_length=2048)
    assert abs(float(np.median(librosa.hz_to_midi(f0))) - pitch) < 0.5


def test_render_is_bit_identical_and_velocity_matters():
    tracks = [_note(0, 60, velocity=90),
              synth.Track(synth.DRUM_CHANNEL, 0, (synth.Note(38, 100, 0.1, 0.2),), bank=synth.DRUM_BANK,
                          reverb=60)]
    a = synth.render(tracks, 1.0, SR, synth.default_soundfont(), reverb=True)
    b = synth.render(tracks, 1.0, SR, synth.default_soundfont(), reverb=True)
    assert a.tobytes() == b.tobytes()
    dry = synth.render(tracks, 1.0, SR, synth.default_soundfont(), reverb=False)
    assert not np.array_equal(a, dry)
    soft = synth.render([_note(0, 60, velocity=30)], 1.0, SR, synth.default_soundfont())
    loud = synth.render([_note(0, 60, velocity=120)], 1.0, SR, synth.default_soundfont())
    assert np.max(np.abs(loud)) > 2 * np.max(np.abs(soft))


def test_peak_normalise_pcm16_and_fade():
    x = np.array([0.0, 0.02, -0.04, 0.01], dtype=np.float32)
    y = synth.peak_normalise(x, -1.0)
    assert np.max(np.abs(y)) == pytest.approx(10 ** (-1 / 20), rel=1e-6)
    assert y[2] < 0 and y[1] == pytest.approx(-y[2] / 2)
    assert synth.to_pcm16(np.array([0.0, 0.5, -1.0, 1.2, -1.2])).tolist() == [0, 16384, -32767, 32767, -32768]
    faded = synth.fade_out(np.ones(100, dtype=np.float32), 1000, seconds=0.01)  # 10 samples
    assert faded[:90].tolist() == [1.0] * 90 and faded[-1] == 0.0 and faded[90] == 1.0
    assert np.all(np.diff(faded[90:]) < 0)
    with pytest.raises(DatasetError, match="note-x: FluidSynth rendered silence"):
        synth.peak_normalise(np.zeros(10, dtype=np.float32), name="note-x")


def test_invalid_notes_and_rates_are_refused():
    with pytest.raises(DatasetError, match="invalid note"):
        synth.render([_note(0, 60, start=0.5, end=0.5)], 1.0, SR, synth.default_soundfont())
    with pytest.raises(DatasetError, match="8000-96000 Hz"):
        synth.render([_note(0, 60)], 1.0, 4000, synth.default_soundfont())


def test_missing_soundfont_names_path_and_fix(tmp_path):
    missing = tmp_path / "nowhere" / "GM.sf2"
    with pytest.raises(DatasetError, match="--soundfont") as info:
        synth.resolve_soundfont(missing)
    assert str(missing) in str(info.value)
    with pytest.raises(DatasetError, match="not found"):
        synth.render([_note(0, 60)], 0.5, SR, missing)


def test_file_that_is_not_a_soundfont(tmp_path):
    fake = tmp_path / "fake.sf2"
    fake.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(DatasetError, match="not a SoundFont 2") as info:
        synth.key_coverage(fake)
    assert str(fake) in str(info.value)
    with pytest.raises(DatasetError, match="not a valid SoundFont"):
        synth.render([_note(0, 60)], 0.5, SR, fake)


def test_missing_fluidsynth_library_explains_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # import fails as if not installed
    synth._fluidsynth.cache_clear()
    try:
        with pytest.raises(DatasetError, match="apt-get install libfluidsynth3") as info:
            synth.render([_note(0, 60)], 0.5, SR, synth.default_soundfont())
        assert "pip install pyfluidsynth" in str(info.value)
    finally:
        synth._fluidsynth.cache_clear()
