"""MusicCaps loader on a tiny copy in the canonical layout: the public CSV (quoted captions with
commas and line breaks, as in the real file) and one generated excerpt per ytid."""

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmark.data.audio import read_audio
from benchmark.data.dataset import DatasetError
from benchmark.data.musiccaps import load_musiccaps, read_musiccaps_csv
from benchmark.data.registry import describe_dataset, load_dataset

HEADER = ("ytid,start_s,end_s,audioset_positive_labels,aspect_list,caption,author_id,is_balanced_subset,"
          "is_audioset_eval")
#: ytid, start_s, end_s, is_balanced_subset, is_audioset_eval, extension of its file
CLIPS = [
    ("-0Gj8-vB1q4", 30, 40, False, True, ".wav"),
    ("-0SdAVK79lg", 30, 40, True, False, ".flac"),
    ("-0vPFx-wRRI", 30, 40, False, True, ".mp3"),
    ("-0xzrMun0Rs", 30, 40, True, True, ".ogg"),
    ("-1LrH01Ei1w", 0, 10, False, False, ".wav"),
]
RATE = 16000


def write_excerpt(path: Path, seconds: float = 0.5, freq: float = 330.0) -> None:
    t = np.arange(int(RATE * seconds)) / RATE
    fmt = {".wav": "WAV", ".flac": "FLAC", ".mp3": "MP3", ".ogg": "OGG"}[path.suffix]
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), RATE, format=fmt)


def csv_row(ytid: str, start: float, end: float, balanced: bool, audioset_eval: bool) -> str:
    caption = '"A calm piano melody, recorded live.\nThe audio quality is poor, with ""hiss""."'
    return (f'{ytid},{start},{end},"/m/04rlf,/m/05148p4","[\'piano\', \'calm\']",{caption},4,'
            f"{balanced},{audioset_eval}")


def musiccaps_tree(root: Path, clips=CLIPS, audio: str = "audio") -> Path:
    (root / audio).mkdir(parents=True, exist_ok=True)
    rows = [HEADER] + [csv_row(*clip[:5]) for clip in clips]
    (root / "musiccaps-public.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    for i, (ytid, *_, ext) in enumerate(clips):
        write_excerpt(root / audio / f"{ytid}{ext}", freq=220.0 * (i + 1))
    return root


def test_items_ids_and_files(tmp_path):
    root = musiccaps_tree(tmp_path)
    ds = load_musiccaps(root)
    assert ds.name == "musiccaps" and ds.sample_rate is None and len(ds) == 5
    assert [it.id for it in ds.items] == [c[0] for c in CLIPS]  # CSV order
    assert {it.split for it in ds.items} == {"test"}  # an evaluation set: one split
    for it, (ytid, *_, ext) in zip(ds.items, CLIPS):
        assert it.path == (root / "audio" / f"{ytid}{ext}").resolve() and it.labels == {} and it.kind == ""
    audio, rate = read_audio(ds.items[2].path)  # a real, decodable mp3
    assert rate == RATE and abs(audio.shape[1] - RATE // 2) < 1200
    assert "5 items (train 0, valid 0, test 5)" in ds.description


def test_csv_rows_parsed_with_multiline_captions(tmp_path):
    rows = read_musiccaps_csv(musiccaps_tree(tmp_path) / "musiccaps-public.csv")
    assert [(r["ytid"], r["start_s"], r["end_s"], r["balanced"], r["audioset_eval"]) for r in rows] == [
        c[:5] for c in CLIPS]
    assert [r["line"] for r in rows] == [3, 5, 7, 9, 11]  # each caption spans two lines


def test_subsets_and_splits(tmp_path):
    root = musiccaps_tree(tmp_path)
    ids = lambda ds: [it.id for it in ds.items]  # noqa: E731
    assert ids(load_musiccaps(root, subset="balanced")) == ["-0SdAVK79lg", "-0xzrMun0Rs"]
    assert ids(load_musiccaps(root, subset="audioset_eval")) == ["-0Gj8-vB1q4", "-0vPFx-wRRI", "-0xzrMun0Rs"]
    audioset = load_musiccaps(root, split="audioset")
    assert {it.id: it.split for it in audioset.items} == {
        "-0Gj8-vB1q4": "test", "-0SdAVK79lg": "train", "-0vPFx-wRRI": "test", "-0xzrMun0Rs": "test",
        "-1LrH01Ei1w": "train"}
    identities = {load_musiccaps(root, subset=s).identity for s in ("all", "balanced", "audioset_eval")}
    assert len(identities | {audioset.identity}) == 4
    assert len(load_musiccaps(root, max_per_split=2)) == 2
    with pytest.raises(DatasetError, match="unknown subset 'eval'"):
        load_musiccaps(root, subset="eval")
    with pytest.raises(DatasetError, match="unknown split 'train'"):
        load_musiccaps(root, split="train")


def test_identity_ignores_location_not_content(tmp_path):
    a, b = musiccaps_tree(tmp_path / "a"), musiccaps_tree(tmp_path / "b")
    assert load_musiccaps(a).identity == load_musiccaps(b).identity
    write_excerpt(b / "audio" / "-1LrH01Ei1w.wav", seconds=0.75)
    assert load_musiccaps(a).identity != load_musiccaps(b).identity


def test_custom_csv_and_audio_folder(tmp_path):
    root = musiccaps_tree(tmp_path, audio="clips")
    (root / "musiccaps-public.csv").rename(root / "mc.csv")
    with pytest.raises(DatasetError, match="missing 1 required path"):
        load_musiccaps(root)
    ds = load_musiccaps(root, csv_path="mc.csv", audio_dir=root / "clips")
    assert len(ds) == 5 and ds.items[0].path.parent == (root / "clips").resolve()
    with pytest.raises(DatasetError, match=r"audio folder .*audio does not exist"):
        load_musiccaps(root, csv_path="mc.csv")


def test_lossless_file_preferred_when_a_clip_has_two(tmp_path):
    root = musiccaps_tree(tmp_path)
    write_excerpt(root / "audio" / "-0vPFx-wRRI.wav")
    ds = load_musiccaps(root)
    assert ds.items[2].path.name == "-0vPFx-wRRI.wav"


def test_missing_files_listed_in_one_error(tmp_path):
    root = musiccaps_tree(tmp_path)
    (root / "audio" / "-0SdAVK79lg.flac").unlink()
    (root / "audio" / "-1LrH01Ei1w.wav").rename(root / "audio" / "-1LrH01Ei1w.m4a")  # not decodable
    with pytest.raises(DatasetError) as err:
        load_musiccaps(root)
    message = str(err.value)
    assert "2 of 5 clips have no audio file in " + str((root / "audio").resolve()) in message
    assert "-0SdAVK79lg, -1LrH01Ei1w." in message and "-0Gj8-vB1q4" not in message
    assert "1 of them are there in a format the audio reader cannot decode (.m4a)" in message
    assert 'yt-dlp -x --audio-format flac --download-sections "*30-40"' in message
    assert "https://www.youtube.com/watch?v=-0SdAVK79lg" in message and "allow_missing=True" in message


def test_missing_list_is_capped(tmp_path):
    clips = [(f"id{i:02d}", 0, 10, False, False, ".wav") for i in range(14)]
    root = musiccaps_tree(tmp_path, clips=clips)
    for ytid, *_ in clips[:12]:
        (root / "audio" / f"{ytid}.wav").unlink()
    with pytest.raises(DatasetError, match=r"12 of 14 clips .*id09, \.\.\. \(2 more\)"):
        load_musiccaps(root)


def test_allow_missing_skips_and_logs(tmp_path, caplog):
    root = musiccaps_tree(tmp_path)
    (root / "audio" / "-0SdAVK79lg.flac").unlink()
    (root / "audio" / "-0Gj8-vB1q4.wav").write_bytes(b"")  # zero bytes: always dropped, counted
    with caplog.at_level(logging.WARNING, logger="benchmark.data.musiccaps"):
        ds = load_musiccaps(root, allow_missing=True)
    assert [it.id for it in ds.items] == ["-0vPFx-wRRI", "-0xzrMun0Rs", "-1LrH01Ei1w"]
    assert "1 of 5 clips have no audio file" in caplog.text
    assert "dropped: 1 missing, 1 empty" in ds.description


@pytest.mark.parametrize("mangle, match", [
    (lambda text: text.replace("is_audioset_eval", "eval"),
     r"musiccaps-public\.csv has no column 'is_audioset_eval'"),
    (lambda text: text.replace(",30,40,", ",thirty,40,", 1),
     r"musiccaps-public\.csv line 3: column 'start_s' must be seconds .*'thirty'"),
    (lambda text: text.replace("False,True\n", "no,True\n", 1),
     r"musiccaps-public\.csv line 3: column 'is_balanced_subset' must be True or False, got 'no'"),
    (lambda text: text.replace(",30,40,", ",40,30,", 1),
     r"line 3: columns 'start_s'\.\.'end_s' = 40\.\.30"),
    (lambda text: text.replace("-0SdAVK79lg", "-0Gj8-vB1q4"),
     r"line 5: ytid '-0Gj8-vB1q4' repeats line 3"),
    (lambda text: text + "-2abc\n",
     r"line 12 has fewer fields than the header \(no value for column 'start_s'\)"),
    (lambda text: "",
     r"musiccaps-public\.csv is empty"),
])
def test_malformed_csv_names_file_line_and_column(tmp_path, mangle, match):
    root = musiccaps_tree(tmp_path)
    table = root / "musiccaps-public.csv"
    table.write_text(mangle(table.read_text()))
    with pytest.raises(DatasetError, match=match):
        load_musiccaps(root)


def test_full_length_videos_are_refused_with_the_fix(tmp_path):
    with pytest.raises(DatasetError, match=r"excerpts=False .* not supported.*ffmpeg -ss START_S -to END_S"):
        load_musiccaps(musiccaps_tree(tmp_path), excerpts=False)


def test_through_the_registry(tmp_path):
    root = musiccaps_tree(tmp_path)
    ds = load_dataset("musiccaps", root, subset="balanced")
    assert [it.id for it in ds.items] == ["-0SdAVK79lg", "-0xzrMun0Rs"]
    plan = describe_dataset("musiccaps", root)
    assert plan.status == "present" and plan.splits == {"test": 5} and plan.identity == load_musiccaps(root).identity
    with pytest.raises(DatasetError, match="no dataset root given"):
        load_dataset("musiccaps", None)
    with pytest.raises(DatasetError, match="missing 1 required path"):
        load_dataset("musiccaps", tmp_path / "audio")
