"""MagnaTagATune and MTG-Jamendo loaders on tiny fixture trees in their canonical layouts.

The fixtures hold real MP3 files (libsndfile >= 1.1 writes MPEG Layer III through soundfile).
"""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmark.data.audio import read_audio
from benchmark.data.dataset import DatasetError
from benchmark.data.magnatagatune import load_magnatagatune
from benchmark.data.mtg_jamendo import load_mtg_jamendo
from benchmark.data.registry import load_dataset


def write_tone(path: Path, rate: int = 16000, seconds: float = 0.25, freq: float = 440.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate * seconds)) / rate
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate,
             format="MP3" if path.suffix == ".mp3" else "WAV")


# -- MagnaTagATune ---------------------------------------------------------------------------
MTT_TAGS = ["guitar", "rock", "piano", "no voice"]
MTT_CLIPS = [  # clip_id, folder, tag flags (guitar, rock, piano, no voice)
    ("2", "0", (1, 1, 0, 0)), ("6", "0", (1, 0, 1, 0)), ("10", "b", (0, 1, 0, 1)),
    ("12", "c", (1, 1, 0, 0)), ("15", "d", (0, 0, 1, 0)), ("20", "f", (1, 0, 0, 0)),
    ("23", "f", (0, 0, 0, 0)),
]


def mtt_tree(root: Path, layout: str = "mp3") -> Path:
    audio = root / "mp3" if layout == "mp3" else root
    lines = ["\t".join(f'"{h}"' for h in ["clip_id", *MTT_TAGS, "mp3_path"])]
    for clip, folder, flags in MTT_CLIPS:
        rel = f"{folder}/artist-album-{clip}-song-0-29.mp3"
        lines.append("\t".join(f'"{v}"' for v in [clip, *map(str, flags), rel]))
        write_tone(audio / rel)
    (root / "annotations_final.csv").write_text("\n".join(lines) + "\n")
    return root


def test_mtt_directory_split_and_top_tags(tmp_path):
    ds = load_magnatagatune(mtt_tree(tmp_path), n_tags=2)
    by_id = {it.id: it for it in ds.items}
    assert sorted(by_id) == sorted(c for c, _, _ in MTT_CLIPS)
    assert {i: it.split for i, it in by_id.items()} == {"2": "train", "6": "train", "10": "train", "12": "valid",
                                                       "15": "test", "20": "test", "23": "test"}
    # guitar (4 clips) and rock (3) are the top-2; piano (2) and no voice (1) are dropped
    assert by_id["2"].labels["tags"] == ("guitar", "rock")
    assert by_id["6"].labels["tags"] == ("guitar",) and by_id["15"].labels["tags"] == ()
    assert by_id["2"].path == (tmp_path / "mp3" / "0" / "artist-album-2-song-0-29.mp3").resolve()
    audio, rate = read_audio(by_id["2"].path)
    assert rate == 16000 and abs(audio.shape[1] - 4000) < 1200  # a real, decodable mp3
    assert ds.name == "magnatagatune" and ds.sample_rate == 16000 and "top-2 tags" in ds.description
    untagged = load_magnatagatune(tmp_path, n_tags=2, drop_untagged=True)
    assert {it.id for it in untagged.items} == set(by_id) - {"15", "23"}


def test_mtt_official_unzip_layout_and_identity(tmp_path):
    a = load_magnatagatune(mtt_tree(tmp_path / "a", layout="flat"))
    b = load_magnatagatune(mtt_tree(tmp_path / "b", layout="mp3"))
    assert len(a.items) == 7 and a.identity == b.identity  # same content, other place and layout
    assert load_dataset("magnatagatune", tmp_path / "a", n_tags=2).identity != a.identity


def test_mtt_split_files_take_precedence(tmp_path):
    root = mtt_tree(tmp_path)
    folder = root / "split" / "mtat"
    folder.mkdir(parents=True)
    rel = {c: f"{f}/artist-album-{c}-song-0-29.mp3" for c, f, _ in MTT_CLIPS}
    np.save(folder / "train.npy", np.array([f"0\t{rel['2']}", f"1\t{rel['15']}"]))
    np.save(folder / "valid.npy", np.array([f"2\t{rel['6']}"]))
    np.save(folder / "test.npy", np.array([f"3\t{rel['20']}"]))
    np.save(folder / "tags.npy", np.array(["piano", "no voice"]))
    ds = load_magnatagatune(root)
    assert {it.id: it.split for it in ds.items} == {"2": "train", "15": "train", "6": "valid", "20": "test"}
    assert {it.id: it.labels["tags"] for it in ds.items} == {"2": (), "15": ("piano",), "6": ("piano",), "20": ()}
    assert len(load_magnatagatune(root, split="directory").items) == 7
    np.save(folder / "test.npy", np.array(["9\tf/not-in-annotations.mp3"]))
    with pytest.raises(DatasetError, match="not-in-annotations.mp3.*not in annotations_final.csv"):
        load_magnatagatune(root)


def test_mtt_missing_and_empty_files(tmp_path):
    root = mtt_tree(tmp_path)
    (root / "mp3" / "f" / "artist-album-23-song-0-29.mp3").write_bytes(b"")  # as in the official archive
    ds = load_magnatagatune(root)
    assert len(ds.items) == 6 and "1 empty" in ds.description
    (root / "mp3" / "0" / "artist-album-2-song-0-29.mp3").unlink()
    with pytest.raises(DatasetError, match="(?s)1 of 7 audio files are missing.*artist-album-2-song.*mirg.city.ac.uk"):
        load_magnatagatune(root)
    assert len(load_magnatagatune(root, allow_missing=True).items) == 5
    (root / "annotations_final.csv").unlink()
    with pytest.raises(DatasetError, match="annotations_final.csv"):
        load_magnatagatune(root)


# -- MTG-Jamendo -----------------------------------------------------------------------------
JAMENDO = {
    "train": [("track_0000214", "14/214.mp3", ["genre---rock", "instrument---guitar"]),
              ("track_0000215", "15/215.mp3", ["genre---pop"])],
    "validation": [("track_0000773", "73/773.mp3", ["genre---electronic", "mood/theme---happy"])],
    "test": [("track_0001332", "32/1332.mp3", ["genre---rock"])],
}


def jamendo_tree(root: Path, low: tuple[str, ...] = ()) -> Path:
    folder = root / "data" / "splits" / "split-0"
    folder.mkdir(parents=True)
    for split, rows in JAMENDO.items():
        lines = ["TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"]
        for track, rel, tags in rows:
            lines.append("\t".join([track, "artist_000001", "album_000001", rel, "124.6", *tags]))
            name = rel.replace(".mp3", ".low.mp3") if track in low else rel
            write_tone(root / "audio" / name, rate=44100)
        (folder / f"autotagging_top50tags-{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_jamendo_official_split_and_tags(tmp_path):
    ds = load_mtg_jamendo(jamendo_tree(tmp_path))
    by_id = {it.id: it for it in ds.items}
    assert {i: it.split for i, it in by_id.items()} == {"track_0000214": "train", "track_0000215": "train",
                                                       "track_0000773": "valid", "track_0001332": "test"}
    assert by_id["track_0000773"].labels["tags"] == ("genre---electronic", "mood/theme---happy")
    assert by_id["track_0000214"].path == (tmp_path / "audio" / "14" / "214.mp3").resolve()
    assert read_audio(by_id["track_0000214"].path)[1] == 44100
    assert "5 tags" in ds.description and ds.name == "mtg_jamendo"


def test_jamendo_low_quality_audio_and_missing_files(tmp_path):
    root = jamendo_tree(tmp_path, low=("track_0000215",))
    ds = load_mtg_jamendo(root)
    assert {it.id: it.path.name for it in ds.items}["track_0000215"] == "215.low.mp3"
    with pytest.raises(DatasetError, match="(?s)1 of 4 audio files are missing.*15/215.mp3"):
        load_mtg_jamendo(root, audio_quality="full")
    with pytest.raises(DatasetError, match="autotagging_top50tags-train.tsv"):
        load_mtg_jamendo(root, split_index=1)
    with pytest.raises(DatasetError, match="unknown subset"):
        load_mtg_jamendo(root, subset="decade")
