"""Crop sampler and training-data sources."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf
import torch

from benchmark.data.audio import read_audio
from benchmark.data.dataset import Dataset, DatasetError, Item
from benchmark.training.data import (CropSampler, folder_files, jamendo_files,
                                     resolve_training_data)

RATE = 8000


def _tone(seconds: float, f0: float, amp: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


@pytest.fixture
def files(tmp_path):
    root = tmp_path / "audio"
    root.mkdir()
    paths = []
    for i in range(3):
        path = root / f"tone{i}.wav"
        sf.write(path, _tone(1.0 + i, 200.0 * (i + 1), 0.5), RATE)
        paths.append(path)
    return paths


def test_crops_are_deterministic_in_seed_step_and_index(files):
    a = CropSampler(files, RATE, 1000, seed=3)
    b = CropSampler(files, RATE, 1000, seed=3)
    x1, s1 = a.example(step=5, index=2)
    x2, s2 = b.example(step=5, index=2)
    assert np.array_equal(x1, x2) and s1 == s2 and x1.shape == (1000,) and x1.dtype == np.float32
    assert not np.array_equal(a.example(6, 2)[0], x1)
    assert not np.array_equal(CropSampler(files, RATE, 1000, seed=4).example(5, 2)[0], x1)


def test_ranks_shard_the_global_batch(files):
    sampler = CropSampler(files, RATE, 800, seed=0)
    whole = sampler.batch(step=7, batch_size=6)
    parts = [sampler.batch(step=7, batch_size=6, rank=r, world_size=3) for r in range(3)]
    assert torch.equal(torch.cat([p.audio for p in parts]), whole.audio)
    assert torch.equal(torch.cat([p.seeds for p in parts]), whole.seeds)
    assert whole.audio.shape == (6, 800) and len(set(whole.seeds.tolist())) == 6
    with pytest.raises(ValueError, match="divisible"):
        sampler.batch(0, 5, rank=0, world_size=2)


def test_disk_reads_equal_resident_crops(files):
    resident = CropSampler(files, RATE, 1000, seed=1)
    on_disk = CropSampler(files, RATE, 1000, seed=1, memory_budget_mb=0)
    assert all(e.resident for e in resident.entries) and not any(e.resident for e in on_disk.entries)
    for step in range(5):
        assert torch.equal(resident.batch(step, 4).audio, on_disk.batch(step, 4).audio)


def test_resampling_resident_and_from_disk(tmp_path):
    path = tmp_path / "hi.wav"
    sf.write(path, _tone(1.0, 440.0, 0.5, rate=16000), 16000)
    resident = CropSampler([path], RATE, 1000, seed=0)
    on_disk = CropSampler([path], RATE, 1000, seed=0, memory_budget_mb=0)
    full, _ = read_audio(path, sample_rate=RATE)
    crop = resident.example(0, 0)[0]
    # the crop is a contiguous window of the resampled file
    corr = np.correlate(full[0], crop, mode="valid")
    offset = int(np.argmax(corr))
    np.testing.assert_allclose(full[0, offset:offset + 1000], crop, atol=1e-6)
    # crop-wise resampling of a disk window agrees away from its edges
    np.testing.assert_allclose(on_disk.example(0, 0)[0][50:-50], crop[50:-50], atol=2e-3)


def test_silent_crops_are_redrawn(tmp_path):
    loud = tmp_path / "loud.wav"
    quiet = tmp_path / "quiet.wav"
    y = _tone(2.0, 300.0, 0.5)
    y[: RATE] = 0.0  # first second silent
    sf.write(loud, y, RATE)
    sf.write(quiet, np.zeros(2 * RATE, np.float32), RATE)
    sampler = CropSampler([loud, quiet], RATE, 2000, seed=0, rms_threshold=1e-3)
    audio = sampler.batch(0, 32).audio
    rms = audio.pow(2).mean(dim=1).sqrt()
    assert bool((rms >= 1e-3).all())
    unfiltered = CropSampler([loud, quiet], RATE, 2000, seed=0, rms_threshold=0.0).batch(0, 32).audio
    assert bool((unfiltered.pow(2).mean(dim=1).sqrt() < 1e-3).any())  # the filter did something


def test_one_random_channel_of_stereo_files(tmp_path):
    path = tmp_path / "stereo.wav"
    left, right = _tone(1.0, 250.0, 0.5), _tone(1.0, 700.0, 0.3)
    sf.write(path, np.stack([left, right], axis=1), RATE)
    sampler = CropSampler([path], RATE, 500, seed=0)
    seen = set()
    for step in range(12):
        crop = sampler.example(step, 0)[0]
        rms = float(np.sqrt(np.mean(crop ** 2)))
        side = "L" if abs(rms - 0.5 / np.sqrt(2)) < 0.02 else "R" if abs(rms - 0.3 / np.sqrt(2)) < 0.02 else "?"
        seen.add(side)
    assert seen == {"L", "R"}


def test_bad_and_short_files_are_skipped_with_a_warning(files, tmp_path, caplog):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file")
    short = tmp_path / "short.wav"
    sf.write(short, _tone(0.05, 300, 0.5), RATE)
    with caplog.at_level(logging.WARNING):
        sampler = CropSampler([*files, broken, short], RATE, 1000, seed=0)
    assert len(sampler) == 3
    assert "broken.wav" in caplog.text and "short.wav" in caplog.text and "shorter than one crop" in caplog.text
    with pytest.raises(DatasetError, match="none of the 2 files"):
        CropSampler([broken, short], RATE, 1000)


def test_file_failing_at_read_time_is_skipped(files, tmp_path, caplog):
    path = tmp_path / "vanishing.wav"
    sf.write(path, _tone(3.0, 300, 0.5), RATE)
    sampler = CropSampler([files[0], path], RATE, 1000, seed=0, memory_budget_mb=0)
    path.unlink()
    with caplog.at_level(logging.WARNING):
        batch = sampler.batch(0, 16)
    assert "vanishing.wav" in caplog.text
    assert torch.isfinite(batch.audio).all() and batch.audio.abs().max() > 0


def test_fixed_validation_crops_cover_every_file(files):
    sampler = CropSampler(files, RATE, 1000, seed=0, name="valid")
    crops = sampler.fixed_crops(6, seed=9)
    assert crops.shape == (6, 1000)
    assert torch.equal(crops, CropSampler(files, RATE, 1000, seed=123).fixed_crops(6, seed=9))
    # crop j comes from file j % 3: the tones have 200/400/600 Hz
    peaks = [int(np.argmax(np.abs(np.fft.rfft(c.numpy())))) * RATE / 1000 for c in crops]
    assert peaks == [200, 400, 600, 200, 400, 600]


def test_folder_holdout_is_deterministic_and_disjoint(tmp_path):
    root = tmp_path / "songs"
    (root / "sub").mkdir(parents=True)
    for i in range(10):
        sf.write(root / ("sub" if i % 2 else ".") / f"s{i}.flac", _tone(0.5, 300, 0.5), RATE)
    (root / "notes.txt").write_text("not audio")
    assert len(folder_files(root)) == 10
    a = resolve_training_data(str(root), val_fraction=0.2, seed=0)
    b = resolve_training_data(str(root), val_fraction=0.2, seed=0)
    assert [f.id for f in a.valid] == [f.id for f in b.valid] and len(a.valid) == 2
    assert not {f.id for f in a.train} & {f.id for f in a.valid}
    assert a.identity == b.identity
    with pytest.raises(DatasetError, match="no such folder"):
        resolve_training_data(str(tmp_path / "missing"))


def test_dataset_splits_are_used(files):
    items = [Item(f"t{i}", p, split) for i, (p, split) in enumerate(zip(files, ["train", "train", "valid"]))]
    data = resolve_training_data(Dataset("mini", "abc", files[0].parent, items))
    assert [f.id for f in data.train] == ["t0", "t1"] and [f.id for f in data.valid] == ["t2"]
    assert data.identity == "mini:abc"


def test_jamendo_canonical_layout(tmp_path):
    root = tmp_path / "jamendo"
    split = root / "splits" / "split-0"
    split.mkdir(parents=True)
    header = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS\n"
    rows = {"train": [], "validation": []}
    for n, track in enumerate([1214, 3300, 4512, 948]):
        folder = root / f"{track % 100:02d}"
        folder.mkdir(exist_ok=True)
        name = f"{track}.low.mp3" if track == 948 else f"{track}.mp3"  # the audio-low naming
        sf.write(folder / name, _tone(1.0, 220.0 * (n + 1), 0.4), RATE, format="MP3")
        part = "validation" if n == 3 else "train"
        rows[part].append(f"track_{track:07d}\tartist_1\talbum_1\t{track % 100:02d}/{track}.mp3\t1.0\t"
                          "genre---rock\tmood/theme---happy\n")
    rows["train"].append("track_0009999\tartist_2\talbum_2\t99/9999.mp3\t200.0\tgenre---pop\n")  # missing
    for part, lines in rows.items():
        (split / f"autotagging-{part}.tsv").write_text(header + "".join(lines))
    train, valid = jamendo_files(root)
    assert [f.id for f in train] == ["track_0001214", "track_0003300", "track_0004512"]
    assert [f.id for f in valid] == ["track_0000948"] and valid[0].path.name == "948.low.mp3"
    assert train[0].duration == 1.0
    data = resolve_training_data(f"jamendo:{root}")
    assert len(data.train) == 3 and len(data.valid) == 1
    crops = CropSampler(data.train, RATE, 2000, seed=0).batch(0, 4).audio
    assert crops.shape == (4, 2000) and bool((crops.pow(2).mean(1).sqrt() > 0.1).all())
    with pytest.raises(DatasetError, match="no track list"):
        jamendo_files(tmp_path)
