"""Built-in FluidSynth dataset: determinism, cache, labels, splits, identity, errors."""

from __future__ import annotations

import collections
import dataclasses
import json
import multiprocessing
import shutil
from pathlib import Path

import librosa
import mir_eval
import numpy as np
import pytest
import soundfile as sf

from benchmark.data import builtin, synth
from benchmark.data.audio import file_hash, read_audio
from benchmark.data.dataset import SPLITS, DatasetError
from benchmark.data.registry import load_dataset
from tests.data.test_builtin_harmony import KK_MAJOR, KK_MINOR

TINY = dict(sample_rate=16000, n_notes=12, n_clips=4, clip_seconds=2.0, pitch_min=55, pitch_max=67)


def _file_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file except the completion marker (which records timings)."""
    return {str(p.relative_to(folder)): file_hash(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != builtin.MARKER}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return builtin.load_builtin(tmp_path_factory.mktemp("cache"), "smoke", workers=2, progress=False)


# -- generation, determinism, cache ---------------------------------------------------------
def test_same_spec_gives_identical_bytes_whatever_the_workers(tmp_path):
    a = builtin.load_builtin(tmp_path / "a", "smoke", workers=1, progress=False, **TINY)
    b = builtin.load_builtin(tmp_path / "b", "smoke", workers=2, progress=False, **TINY)
    assert a.identity == b.identity and a.root.name == f"builtin-{a.identity}"
    assert a.root.parent == tmp_path / "a" / "datasets"
    hashes = _file_hashes(a.root)
    assert len(hashes) == 12 + 4 + 2  # audio + metadata.csv + spec.json
    assert hashes == _file_hashes(b.root)
    assert [it.content_hash for it in a.items] == [hashes[str(it.path.relative_to(a.root))] for it in a.items]

    c = builtin.load_builtin(tmp_path / "c", "smoke", workers=1, progress=False, **{**TINY, "seed": 1})
    assert c.identity != a.identity
    other = _file_hashes(c.root)
    assert not set(h for k, h in other.items() if k.endswith(".wav")) & set(hashes.values())


def test_second_load_is_a_cache_hit(smoke, monkeypatch):
    mtimes = {p: p.stat().st_mtime_ns for p in smoke.root.rglob("*")}

    def must_not_render(*args, **kwargs):
        raise AssertionError("cache hit expected, but the dataset was regenerated")

    monkeypatch.setattr(builtin, "generate", must_not_render)
    again = builtin.load_builtin(smoke.root.parent.parent, "smoke", progress=False)
    assert again.identity == smoke.identity and again.items == smoke.items
    assert {p: p.stat().st_mtime_ns for p in smoke.root.rglob("*")} == mtimes


def test_interrupted_generation_resumes(tmp_path):
    first = builtin.load_builtin(tmp_path, "smoke", workers=1, progress=False, **TINY)
    reference = _file_hashes(first.root)
    # simulate a crash: marker not yet written, one file never finished (temp file left over)
    (first.root / builtin.MARKER).unlink()
    victim = first.items[3].path
    victim.unlink()
    (victim.parent / f".{victim.name}.tmp").write_bytes(b"half a file")
    resumed = builtin.load_builtin(tmp_path, "smoke", workers=1, progress=False, **TINY)
    marker = json.loads((resumed.root / builtin.MARKER).read_text())
    assert marker["rendered"] == 1 and marker["items"] == 16
    assert _file_hashes(resumed.root) == reference
    # a file deleted after completion is re-rendered on the next load
    victim.unlink()
    builtin.load_builtin(tmp_path, "smoke", workers=1, progress=False, **TINY)
    assert json.loads((resumed.root / builtin.MARKER).read_text())["rendered"] == 1
    assert _file_hashes(resumed.root) == reference


@pytest.mark.parametrize("workers", [1, 2])
def test_failed_render_names_the_item_and_leaves_no_marker(tmp_path, monkeypatch, workers):
    if workers > 1 and "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("the patched renderer reaches pool workers only through fork")
    def silent(tracks, seconds, rate, *args, **kwargs):
        return np.zeros(int(seconds * rate), np.float32)

    monkeypatch.setattr(synth, "render", silent)
    with pytest.raises(DatasetError, match=r"(note|clip)-[-\d]+: FluidSynth rendered silence"):
        builtin.load_builtin(tmp_path, "smoke", workers=workers, progress=False, **TINY)
    folder = next((tmp_path / "datasets").glob("builtin-*"))
    assert not (folder / builtin.MARKER).exists() and not (folder / "metadata.csv").exists()
    assert not list(folder.rglob("*.wav"))
    monkeypatch.undo()
    dataset = builtin.load_builtin(tmp_path, "smoke", workers=1, progress=False, **TINY)  # recovers
    assert len(dataset) == 16 and (folder / builtin.MARKER).exists()


def test_default_root_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_CACHE", str(tmp_path))
    assert builtin.default_cache_root() == tmp_path
    monkeypatch.delenv("BENCHMARK_CACHE")
    assert builtin.default_cache_root() == Path("~/.cache/m2l-benchmark").expanduser()


def test_registry_loads_builtin(smoke):
    via_registry = load_dataset("builtin", smoke.root.parent.parent, preset="smoke", progress=False)
    assert via_registry.identity == smoke.identity and len(via_registry) == len(smoke)


# -- files and labels ----------------------------------------------------------------------
def test_files_are_normalised_mono_pcm16(smoke):
    spec = builtin.BUILTIN_PRESETS["smoke"]
    target = round(10 ** (spec.peak_dbfs / 20) * 32767)
    for it in smoke.items[::7]:
        info = sf.info(str(it.path))
        assert (info.channels, info.samplerate, info.subtype) == (1, spec.sample_rate, "PCM_16")
        seconds = spec.note_seconds if "pitch" in it.labels else spec.clip_seconds
        assert info.frames == round(seconds * spec.sample_rate)
        data, _ = sf.read(str(it.path), dtype="int16")
        assert int(np.max(np.abs(data.astype(np.int32)))) == target
        assert data[-1] == 0  # faded out


def test_items_are_silent_until_their_onset(smoke):
    """The lead-in keeps every onset out of the first ``n_fft - hop`` samples of a spectral front end."""
    spec = builtin.BUILTIN_PRESETS["smoke"]
    for it in smoke.items:
        data, rate = sf.read(str(it.path), dtype="int16")
        onset = round((spec.note_lead_in if "pitch" in it.labels else spec.clip_lead_in) * rate)
        assert onset >= round(0.1 * rate) and not np.any(data[:onset])  # digital silence before
        assert np.any(data[onset:onset + round(0.02 * rate)])  # and sound within 20 ms (measured: <= 10 ms)


def test_smoke_content_covers_every_family_and_both_modes(smoke):
    notes, clips = smoke.with_label("pitch"), smoke.with_label("key")
    spec = builtin.BUILTIN_PRESETS["smoke"]
    assert (len(notes), len(clips)) == (spec.n_notes, spec.n_clips)
    assert {it.labels["instrument"] for it in notes} == set(builtin.FAMILIES)
    assert len({it.labels["pitch"] for it in notes}) >= 12
    assert all(spec.pitch_min <= it.labels["pitch"] <= spec.pitch_max for it in notes)
    assert {it.labels["key"].split()[1] for it in clips} == {"major", "minor"}
    for it in clips:
        mir_eval.key.validate_key(it.labels["key"])
        assert it.labels["key"] in builtin.KEYS
        assert set(it.labels["tags"]) <= set(builtin.TAGS)
        assert (it.labels["key"].split()[1] in it.labels["tags"])
    assert all("key" not in it.labels and "tags" not in it.labels for it in notes)


def test_note_fundamental_matches_pitch_label(smoke):
    """YIN on the sustain: organs sound an octave down (16' stops), so check the pitch class
    for all notes and the exact pitch for most."""
    errors = []
    onset = builtin.BUILTIN_PRESETS["smoke"].note_lead_in
    for it in smoke.with_label("pitch"):
        audio, rate = read_audio(it.path, mono=True)
        f0 = librosa.yin(audio[0, int((onset + 0.05) * rate):int((onset + 0.45) * rate)], fmin=30, fmax=2500,
                         sr=rate, frame_length=2048)
        errors.append(float(np.median(librosa.hz_to_midi(f0))) - it.labels["pitch"])
    errors = np.array(errors)
    pitch_class_error = np.abs((errors + 6) % 12 - 6)
    assert np.mean(pitch_class_error < 0.5) >= 0.95  # nearest semitone right (measured: 99 %)
    assert np.mean(np.abs(errors) < 0.5) >= 0.85  # octave right too (measured: 92 %)


def test_clip_chroma_matches_its_key_profile(smoke):
    """Krumhansl-Kessler: the labelled key must correlate better than most of the other 23."""
    ranks = []
    for it in smoke.with_label("key"):
        audio, rate = read_audio(it.path, mono=True)
        chroma = librosa.feature.chroma_cqt(y=audio[0], sr=rate).mean(axis=1)
        scores = {}
        for key in builtin.KEYS:
            tonic, mode = mir_eval.key.split_key_string(key)
            scores[key] = np.corrcoef(chroma, np.roll(KK_MAJOR if mode == "major" else KK_MINOR, tonic))[0, 1]
        ranks.append(sorted(scores, key=scores.get, reverse=True).index(it.labels["key"]))
    ranks = np.array(ranks)
    assert ranks.max() <= 7  # better than at least 16 of the 23 other keys, for every clip
    assert np.mean(ranks == 0) >= 0.35  # and the best-matching key outright for many


# -- splits --------------------------------------------------------------------------------
def test_notes_cannot_leak_across_splits():
    spec = builtin.BUILTIN_PRESETS["default"]
    items = builtin.plan(spec)
    assert len({it.id for it in items}) == len(items)
    notes = [it for it in items if it.extras["kind"] == "note"]
    groups = collections.Counter((it.extras["program"], it.labels["pitch"]) for it in notes)
    assert max(groups.values()) == 1  # each (program, pitch) once in the whole dataset
    for it in notes:
        assert it.split == builtin.split_of(f"note:{it.extras['program']}:{it.labels['pitch']}", spec.split_fractions)
    train = [it for it in notes if it.split == "train"]
    for field in ("instrument", "pitch"):
        seen = {it.labels[field] for it in train}
        assert {it.labels[field] for it in notes} == seen  # every class is trained on
    counts = collections.Counter(it.split for it in notes)  # the hash buckets, less deferred valid/test notes
    for name, fraction in zip(SPLITS, spec.split_fractions, strict=True):
        assert abs(counts[name] / len(notes) - fraction) <= 0.06


def test_default_preset_sizes():
    """Statistical power: 96 test clips (4 per key), >= 4 train clips per key, >= 200 test notes."""
    spec = builtin.BUILTIN_PRESETS["default"]
    assert (spec.n_clips, spec.clip_seconds, spec.note_seconds) == (240, 4.0, 1.0)
    items = builtin.plan(spec)
    clips = [it for it in items if it.extras["kind"] == "clip"]
    notes = [it for it in items if it.extras["kind"] == "note"]
    keys = {s: collections.Counter(it.labels["key"] for it in clips if it.split == s) for s in SPLITS}
    assert sum(keys["test"].values()) == 96 and dict(keys["test"]) == dict.fromkeys(builtin.KEYS, 4)
    assert sum(keys["train"].values()) >= 96 and set(keys["train"]) == set(builtin.KEYS)
    assert min(keys["train"].values()) >= 4
    assert {s: sum(c.values()) for s, c in keys.items()} == {"train": 120, "valid": 24, "test": 96}
    test_notes = [it for it in notes if it.split == "test"]
    assert len(test_notes) >= 200 and len(notes) == spec.n_notes == 480
    assert {it.labels["instrument"] for it in test_notes} == set(builtin.FAMILIES)
    assert sum(it.seconds for it in items) == 1440.0  # 480 s of notes, 960 s of clips


@pytest.mark.parametrize("fractions", [(0.5, 0.1, 0.4), (0.7, 0.15, 0.15), (0.2, 0.3, 0.5), (0.9, 0.05, 0.05),
                                       (1 / 3, 1 / 3, 1 / 3)])
def test_clip_deal_is_exact_and_prefix_stable(fractions):
    splits = builtin.deal_splits(1000, fractions)
    assert builtin.deal_splits(137, fractions) == splits[:137]  # adding clips never moves one
    counts = dict.fromkeys(SPLITS, 0)
    for m, split in enumerate(splits, start=1):
        counts[split] += 1
        for name, fraction in zip(SPLITS, fractions, strict=True):
            assert abs(counts[name] - m * fraction) < 1  # every prefix within one clip of its quota
            if m % 100 == 0 and abs(m * fraction - round(m * fraction)) < 1e-9:
                assert counts[name] == round(m * fraction)  # whole quotas are met exactly
    assert collections.Counter(builtin.deal_splits(240, (0.5, 0.1, 0.4))) == {"train": 120, "valid": 24, "test": 96}


def test_every_evaluated_key_is_in_train():
    for preset in ("smoke", "default", "large"):
        clips = builtin.plan_clips(builtin.BUILTIN_PRESETS[preset], synth.key_coverage(synth.default_soundfont()))
        by_split = {s: {it.labels["key"] for it in clips if it.split == s} for s in SPLITS}
        assert by_split["valid"] | by_split["test"] <= by_split["train"]
        if preset != "smoke":
            assert by_split["train"] == set(builtin.KEYS)


def test_growing_the_dataset_never_moves_an_item():
    small = builtin.plan(dataclasses.replace(builtin.BUILTIN_PRESETS["default"], n_notes=200, n_clips=60))
    large = {it.id: it for it in builtin.plan(builtin.BUILTIN_PRESETS["default"])}
    for it in small:
        if it.extras["kind"] == "clip":  # clips: same id, same split, same music
            assert large[it.id] == it
        elif it.id in large:  # notes: a note kept in the larger set keeps its split and velocity
            assert (large[it.id].split, large[it.id].extras) == (it.split, it.extras)
    assert sum(it.id in large for it in small) >= 0.9 * len(small)


def test_clip_arrangement_does_not_depend_on_clip_length():
    """Tempo, progression, parts and programs do; the chord lengths are fitted to the clip."""
    cov = synth.key_coverage(synth.default_soundfont())
    short = builtin.plan_clips(builtin.BuiltinSpec(n_notes=0, n_clips=10, clip_seconds=3.0), cov)
    long = builtin.plan_clips(builtin.BuiltinSpec(n_notes=0, n_clips=10, clip_seconds=8.0), cov)
    for a, b in zip(short, long, strict=True):
        assert (a.labels, a.extras, a.split) == (b.labels, b.extras, b.split)
        assert [(t.channel, t.program) for t in a.tracks] == [(t.channel, t.program) for t in b.tracks]
        assert a.chords[-1].end == 3.0 and b.chords[-1].end == 8.0
        one_pass = a.extras["progression"].split("-")
        for item in (a, b):  # the same progression, played whole once or more
            numerals = [c.numeral for c in item.chords]
            assert numerals == one_pass * (len(numerals) // len(one_pass))


def test_every_prefix_of_the_item_list_is_balanced():
    items = builtin.plan(builtin.BUILTIN_PRESETS["default"])
    for split in SPLITS:  # e.g. the pipeline's max_items cap takes the first items of a split
        head = [it for it in items if it.split == split][:40]
        assert {it.labels["instrument"] for it in head if "instrument" in it.labels} == set(builtin.FAMILIES)
        assert 0.55 <= sum("pitch" in it.labels for it in head) / len(head) <= 0.8  # 480 : 240 overall


def test_tag_vocabulary_is_rich_and_used():
    clips = [it for it in builtin.plan(builtin.BUILTIN_PRESETS["default"]) if it.extras["kind"] == "clip"]
    counts = collections.Counter(t for it in clips for t in it.labels["tags"])
    assert set(counts) == set(builtin.TAGS) and len(counts) >= 10
    for it in clips:  # tempo tags follow the stored tempo
        tempo = it.extras["tempo_bpm"]
        assert ("fast" in it.labels["tags"]) == (tempo >= 120) and ("slow" in it.labels["tags"]) == (tempo <= 88)


def test_notes_avoid_keys_the_soundfont_lacks():
    items = builtin.plan_notes(builtin.BuiltinSpec(n_notes=1500, pitch_min=40, pitch_max=90),
                               synth.key_coverage(synth.default_soundfont()))
    assert "note-065-064" not in {it.id for it in items}  # TimGM6mb alto sax has no E4 sample
    assert "note-065-063" in {it.id for it in items}


# -- identity and errors ---------------------------------------------------------------------
def test_identity_hashes_soundfont_bytes_not_path(tmp_path):
    spec = builtin.BUILTIN_PRESETS["smoke"]
    base = builtin.builtin_identity(spec)
    copy = tmp_path / "copy.sf2"
    shutil.copyfile(synth.default_soundfont(), copy)
    assert builtin.builtin_identity(dataclasses.replace(spec, soundfont=str(copy))) == base
    with open(copy, "ab") as fh:
        fh.write(b"\0\0")
    assert builtin.builtin_identity(dataclasses.replace(spec, soundfont=copy)) != base
    assert builtin.builtin_identity(dataclasses.replace(spec, seed=1)) != base
    payload = builtin.identity_payload(spec)
    assert payload["soundfont_sha256"] == synth.soundfont_sha256(synth.default_soundfont())
    assert payload["generator_version"] == builtin.GENERATOR_VERSION and "fluidsynth" in payload


def test_missing_soundfont_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="--soundfont") as info:
        builtin.load_builtin(tmp_path, "smoke", progress=False, soundfont=tmp_path / "GM.sf2")
    assert str(tmp_path / "GM.sf2") in str(info.value)


def test_bad_options_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="unknown built-in preset 'huge'.*smoke"):
        builtin.load_builtin(tmp_path, "huge")
    with pytest.raises(DatasetError, match=r"unknown built-in dataset option\(s\) \['n_note'\]"):
        builtin.load_builtin(tmp_path, "smoke", n_note=3)
    with pytest.raises(DatasetError, match="unknown families"):
        builtin.BuiltinSpec(families=("kazoo",))
    with pytest.raises(DatasetError, match="exceeds the .* playable notes"):
        builtin.plan(builtin.BuiltinSpec(n_notes=500, pitch_min=60, pitch_max=61))
    for fractions in ((0.5, 0.5, 0.0), (0.6, 0.2, 0.3), (0.5, 0.5)):
        with pytest.raises(DatasetError, match="split_fractions"):
            builtin.BuiltinSpec(split_fractions=fractions)
    with pytest.raises(DatasetError, match="note_lead_in"):
        builtin.BuiltinSpec(note_lead_in=0.5)
    with pytest.raises(DatasetError, match="clip_lead_in"):
        builtin.BuiltinSpec(clip_lead_in=-0.1)
    assert builtin.BuiltinSpec(split_fractions=[0.8, 0.1, 0.1]).split_fractions == (0.8, 0.1, 0.1)
    assert builtin.BuiltinSpec(families=["bass", "flute"]).families == ("bass", "flute")
