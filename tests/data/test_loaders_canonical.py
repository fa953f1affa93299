"""Helpers shared by the public-dataset loaders, and their registration."""

from pathlib import Path

import pytest

from benchmark.data.canonical import (check_files, hash_split, layout_identity, limit_per_split, note_to_midi,
                                      stable_unit)
from benchmark.data.dataset import DatasetError, Item
from benchmark.data.registry import DATASETS, load_dataset

LOADERS = ["magnatagatune", "mtg_jamendo", "giantsteps_key", "beatport_key", "nsynth", "tinysol", "musiccaps"]


def test_note_names():
    assert note_to_midi("C4") == 60 and note_to_midi("A4") == 69 and note_to_midi("A0") == 21
    assert note_to_midi("F#1") == 30 and note_to_midi("Bb3") == 58 and note_to_midi("C8") == 108
    assert note_to_midi("B#3") == 60 and note_to_midi("C-1") == 0
    with pytest.raises(ValueError, match="not a note name"):
        note_to_midi("H2")


def test_hash_split_is_stable_and_proportional():
    assert stable_unit("abc") == stable_unit("abc") != stable_unit("abc", salt="x")
    fr = {"train": 0.7, "valid": 0.1, "test": 0.2}
    splits = [hash_split(f"id{i}", fr) for i in range(5000)]
    for s, f in fr.items():
        assert abs(splits.count(s) / 5000 - f) < 0.02
    assert splits == [hash_split(f"id{i}", fr) for i in range(5000)]


def _items(n, split="train"):
    return [Item(id=f"{split}{i}", path=Path(f"/none/{i}.wav"), split=split) for i in range(n)]


def test_limit_per_split_is_order_free_and_nested():
    items = _items(50) + _items(5, "test")
    small = limit_per_split(items, {"train": 10})
    assert sum(it.split == "train" for it in small) == 10 and sum(it.split == "test" for it in small) == 5
    assert {it.id for it in limit_per_split(items[::-1], {"train": 10})} == {it.id for it in small}
    bigger = {it.id for it in limit_per_split(items, 20)}
    assert {it.id for it in small if it.split == "train"} <= bigger
    assert limit_per_split(items, None) == items


def test_check_files_lists_missing_and_drops_empty(tmp_path):
    good, empty = tmp_path / "a.wav", tmp_path / "b.wav"
    good.write_bytes(b"RIFF")
    empty.write_bytes(b"")
    items = [Item(id=p.stem, path=p, split="train") for p in (good, empty, tmp_path / "c.wav")]
    with pytest.raises(DatasetError, match=r"(?s)1 of 3 audio files are missing.*c\.wav.*https://example.org"):
        check_files("demo", tmp_path, items, "https://example.org")
    kept, counts = check_files("demo", tmp_path, items, "https://example.org", allow_missing=True)
    assert [it.id for it in kept] == ["a"] and counts == {"missing": 1, "empty": 1}


def test_layout_identity_ignores_location_but_not_content(tmp_path):
    ids = []
    for where in ("one", "two"):
        root = tmp_path / where
        root.mkdir()
        (root / "ann.txt").write_text("labels")
        (root / "a.wav").write_bytes(b"1234")
        item = Item(id="a", path=root / "a.wav", split="test", labels={"tags": ("x",)})
        ids.append(layout_identity("demo", "1", root, [item], [root / "ann.txt"], {}))
    assert ids[0] == ids[1]
    (tmp_path / "two" / "ann.txt").write_text("labels changed")
    item = Item(id="a", path=tmp_path / "two" / "a.wav", split="test", labels={"tags": ("x",)})
    assert layout_identity("demo", "1", tmp_path / "two", [item], [tmp_path / "two" / "ann.txt"], {}) != ids[0]


@pytest.mark.parametrize("name", LOADERS)
def test_every_loader_is_registered_and_names_its_missing_root(name, tmp_path):
    assert name in DATASETS
    with pytest.raises(DatasetError, match="no dataset root given"):
        load_dataset(name, None)
    with pytest.raises(DatasetError, match=r"(missing|no .* under|does not exist)"):
        load_dataset(name, tmp_path)  # an empty folder: every loader says what is missing
