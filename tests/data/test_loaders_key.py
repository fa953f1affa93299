"""GiantSteps Key (+ MTG Key) and Beatport EDM Key loaders on tiny canonical fixture trees (real MP3)."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmark.data.audio import read_audio
from benchmark.data.beatport import load_beatport_key
from benchmark.data.dataset import DatasetError
from benchmark.data.giantsteps import load_giantsteps_key


def write_tone(path: Path, rate: int = 44100, seconds: float = 0.2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate * seconds)) / rate
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), rate, format="MP3")


TEST_KEYS = {"1234749": "Bb major", "677299": "Gb major", "945256": "-", "981591": "A minor"}
MTG_ROWS = [  # ID, MANUAL KEY, C
    ("5061", "D# minor", 2), ("5881", "A major", 2), ("10981", "-", 0), ("16484", "A minor", 1),
    ("61578", "C minor / F# minor", 2), ("981591", "A minor", 2)] + [(str(90000 + i), "G minor", 2) for i in range(40)]


def giantsteps_tree(root: Path) -> Path:
    test = root / "giantsteps-key-dataset"
    for track, key in TEST_KEYS.items():
        (test / "annotations" / "key").mkdir(parents=True, exist_ok=True)
        (test / "annotations" / "key" / f"{track}.LOFI.key").write_text(key)
        write_tone(test / "audio" / f"{track}.LOFI.mp3")
    mtg = root / "giantsteps-mtg-key-dataset"
    (mtg / "annotations").mkdir(parents=True)
    lines = ["ID\tMANUAL KEY\tC"] + [f"{i}\t{k}\t{c}" for i, k, c in MTG_ROWS]
    (mtg / "annotations" / "annotations.txt").write_text("\n".join(lines) + "\n")
    for i, _, _ in MTG_ROWS:
        write_tone(mtg / "audio" / f"{i}.LOFI.mp3")
    return root


def test_giantsteps_test_and_mtg_train(tmp_path):
    ds = load_giantsteps_key(giantsteps_tree(tmp_path))
    by_id = {it.id: it for it in ds.items}
    test = {i: it.labels["key"] for i, it in by_id.items() if it.split == "test"}
    assert test == {"gs-1234749": "Bb major", "gs-677299": "F# major", "gs-981591": "A minor"}  # '-' dropped
    assert by_id["gsmtg-5061"].labels["key"] == "Eb minor"  # D# minor, canonical spelling
    # dropped: '-' (x2: test and MTG), the two-key row, confidence < 2 (16484), and 981591, which is in test
    assert not {"gsmtg-10981", "gsmtg-16484", "gsmtg-61578", "gsmtg-981591"} & set(by_id)
    assert "unreadable_key" in ds.description and "in_test_set" in ds.description
    splits = [it.split for it in ds.items if it.id.startswith("gsmtg-")]
    assert len(splits) == 42 and 2 <= splits.count("valid") <= 14  # ~15 % of 42
    assert by_id["gs-1234749"].path == (tmp_path / "giantsteps-key-dataset/audio/1234749.LOFI.mp3").resolve()
    assert read_audio(by_id["gs-1234749"].path)[1] == 44100
    assert load_giantsteps_key(tmp_path, min_confidence=1).identity != ds.identity
    assert "gsmtg-16484" in {it.id for it in load_giantsteps_key(tmp_path, min_confidence=1).items}


def test_giantsteps_test_only_and_missing_train(tmp_path):
    root = giantsteps_tree(tmp_path)
    only = load_giantsteps_key(root / "giantsteps-key-dataset", test_only=True)
    assert {it.split for it in only.items} == {"test"} and len(only.items) == 3
    with pytest.raises(DatasetError, match="(?s)MTG Key training set.*test_only=True.*annotations/annotations.txt"):
        load_giantsteps_key(root / "giantsteps-key-dataset")
    (root / "giantsteps-key-dataset" / "audio" / "677299.LOFI.mp3").unlink()
    with pytest.raises(DatasetError, match="(?s)missing.*677299.LOFI.mp3.*audio_dl.sh"):
        load_giantsteps_key(root)


BEATPORT = {  # file name -> key file content
    "100066 Lindstrom - Monsteer (Original Mix)": "D minor",
    "100067 Artist - Two Keys (Original Mix)": "C minor | Eb major",
    "100068 Artist - Unknown (Original Mix)": "unknown",
    "100069 Artist - Sharp (Extended Mix)": "F# minor",
    **{f"{200000 + i} Artist - Track {i}": "A major" for i in range(60)},
}


def beatport_tree(root: Path) -> Path:
    for name, key in BEATPORT.items():
        (root / "keys").mkdir(parents=True, exist_ok=True)
        (root / "keys" / f"{name}.txt").write_text(key + "\n")
        write_tone(root / "audio" / f"{name}.mp3", seconds=0.05)
    return root


def test_beatport_keys_ids_and_hash_split(tmp_path):
    ds = load_beatport_key(beatport_tree(tmp_path))
    by_id = {it.id: it for it in ds.items}
    assert by_id["bp-100066"].labels["key"] == "D minor" and by_id["bp-100069"].labels["key"] == "F# minor"
    assert "bp-100067" not in by_id and "bp-100068" not in by_id and "2 no_single_key" in ds.description
    assert by_id["bp-100066"].path.name == "100066 Lindstrom - Monsteer (Original Mix).mp3"
    counts = {s: sum(it.split == s for it in ds.items) for s in ("train", "valid", "test")}
    assert sum(counts.values()) == 62 and counts["train"] > counts["test"] > 0 and counts["valid"] > 0
    again = load_beatport_key(tmp_path)
    assert [(it.id, it.split) for it in again.items] == [(it.id, it.split) for it in ds.items]
    assert {it.split for it in load_beatport_key(tmp_path, split="test").items} == {"test"}
    with pytest.raises(DatasetError, match="sum"):
        load_beatport_key(tmp_path, fractions={"train": 0.5, "test": 0.2})


def test_beatport_missing_layout(tmp_path):
    with pytest.raises(DatasetError, match="(?s)keys.*audio.*zenodo.org/record/1101082"):
        load_beatport_key(tmp_path)
