"""NSynth and TinySOL loaders on tiny canonical fixture trees (WAV, as distributed)."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmark.data.audio import read_audio
from benchmark.data.dataset import DatasetError
from benchmark.data.nsynth import load_nsynth
from benchmark.data.tinysol import load_tinysol


def write_wav(path: Path, rate: int, midi: int, seconds: float = 0.1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate * seconds)) / rate
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32), rate, subtype="PCM_16")


NSYNTH = {
    "train": [("keyboard_acoustic_004-060-025", "keyboard", 60), ("bass_synthetic_033-022-050", "bass", 22),
              ("brass_acoustic_006-110-100", "brass", 110), ("organ_electronic_001-048-075", "organ", 48)],
    "valid": [("flute_acoustic_002-077-100", "flute", 77)],
    "test": [("guitar_acoustic_010-064-127", "guitar", 64), ("vocal_synthetic_003-021-050", "vocal", 21)],
}


def nsynth_tree(root: Path) -> Path:
    for split, notes in NSYNTH.items():
        folder = root / f"nsynth-{split}"
        examples = {}
        for note_str, family, pitch in notes:
            examples[note_str] = {"note_str": note_str, "pitch": pitch, "velocity": 100, "sample_rate": 16000,
                                  "instrument_family_str": family, "instrument_source_str": "acoustic",
                                  "qualities_str": []}
            write_wav(folder / "audio" / f"{note_str}.wav", 16000, pitch)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "examples.json").write_text(json.dumps(examples))
    return root


def test_nsynth_labels_splits_and_pitch_range(tmp_path):
    ds = load_nsynth(nsynth_tree(tmp_path))
    by_id = {it.id: it for it in ds.items}
    assert len(by_id) == 7 and by_id["flute_acoustic_002-077-100"].split == "valid"
    assert by_id["keyboard_acoustic_004-060-025"].labels == {"instrument": "keyboard", "pitch": 60}
    # 22 and 21 are inside 21..108; 110 is outside: the note keeps its instrument label only
    assert by_id["brass_acoustic_006-110-100"].labels == {"instrument": "brass"}
    assert by_id["vocal_synthetic_003-021-050"].labels["pitch"] == 21
    assert read_audio(by_id["guitar_acoustic_010-064-127"].path)[1] == 16000
    wide = load_nsynth(tmp_path, pitch_range=None)
    assert {it.id: it for it in wide.items}["brass_acoustic_006-110-100"].labels["pitch"] == 110
    assert wide.identity != ds.identity
    few = load_nsynth(tmp_path, splits=("train",), families=("bass", "organ"), max_per_split=1)
    assert len(few.items) == 1 and few.items[0].labels["instrument"] in ("bass", "organ")


def test_nsynth_missing_pieces(tmp_path):
    root = nsynth_tree(tmp_path)
    (root / "nsynth-valid" / "audio" / "flute_acoustic_002-077-100.wav").unlink()
    with pytest.raises(DatasetError, match="(?s)1 of 7 audio files are missing.*flute_acoustic_002-077-100.wav"):
        load_nsynth(root)
    (root / "nsynth-test" / "examples.json").unlink()
    with pytest.raises(DatasetError, match="(?s)nsynth-test/examples.json.*magenta.tensorflow.org"):
        load_nsynth(root)


TINYSOL = [  # Path, Fold, Family, abbr, full name, Pitch, Pitch ID
    ("Brass/Bass_Tuba/ordinario/BTb-ord-F#1-pp-N-N.wav", 0, "Brass", "BTb", "Bass Tuba", "F#1", 30),
    ("Brass/Trumpet_C/ordinario/TpC-ord-C4-mf-N-N.wav", 1, "Brass", "TpC", "Trumpet in C", "C4", 60),
    ("Winds/Flute/ordinario/Fl-ord-A4-pp-N-N.wav", 2, "Winds", "Fl", "Flute", "A4", 69),
    ("Strings/Violin/ordinario/Vn-ord-G6-mf-1c-N.wav", 3, "Strings", "Vn", "Violin", "G6", 91),
    ("Keyboards/Accordion/ordinario/Acc-ord-C#3-ff-N-N.wav", 4, "Keyboards", "Acc", "Accordion", "C#3", 49),
]
HEADER = ("Path,Fold,Family,Instrument (abbr.),Instrument (in full),Technique (abbr.),Technique (in full),"
          "Pitch,Pitch ID,Dynamics,Dynamics ID,Instance ID,String ID (if applicable),Needed digital retuning")


def tinysol_tree(root: Path, audio_sub: str = "TinySOL", pitch_ids=None) -> Path:
    lines = [HEADER]
    for k, (path, fold, family, abbr, full, pitch, pid) in enumerate(TINYSOL):
        pid = pitch_ids[k] if pitch_ids else pid
        lines.append(f"{path},{fold},{family},{abbr},{full},ord,ordinario,{pitch},{pid},pp,0,0,,FALSE")
        write_wav(root / audio_sub / path, 44100, pid)
    root.mkdir(parents=True, exist_ok=True)
    (root / "TinySOL_metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def test_tinysol_folds_labels_and_pitch_from_note_names(tmp_path):
    ds = load_tinysol(tinysol_tree(tmp_path))
    by_id = {it.id: it for it in ds.items}
    tuba = by_id["Brass/Bass_Tuba/ordinario/BTb-ord-F#1-pp-N-N"]
    assert tuba.split == "test" and tuba.labels == {"instrument": "Bass Tuba", "pitch": 30}
    assert by_id["Brass/Trumpet_C/ordinario/TpC-ord-C4-mf-N-N"].split == "valid"
    assert [it.split for it in ds.items].count("train") == 3
    assert by_id["Keyboards/Accordion/ordinario/Acc-ord-C#3-ff-N-N"].labels["pitch"] == 49
    assert read_audio(tuba.path)[1] == 44100
    fam = load_tinysol(tmp_path, test_fold=2, valid_fold=4, instrument_level="family")
    assert {it.id: it.split for it in fam.items}["Winds/Flute/ordinario/Fl-ord-A4-pp-N-N"] == "test"
    assert {it.labels["instrument"] for it in fam.items} == {"Brass", "Winds", "Strings", "Keyboards"}
    with pytest.raises(DatasetError, match="two different folds"):
        load_tinysol(tmp_path, test_fold=1, valid_fold=1)


def test_tinysol_other_audio_folder_and_pitch_id_cross_check(tmp_path):
    root = tinysol_tree(tmp_path, audio_sub="audio", pitch_ids=[30, 60, 70, 91, 49])
    with pytest.warns(UserWarning, match="1 rows .* Pitch ID"):
        ds = load_tinysol(root)
    assert {it.labels["pitch"] for it in ds.items} == {30, 60, 69, 91, 49}  # the note name wins
    assert "1 pitch-name/Pitch-ID mismatches" in ds.description


def test_tinysol_missing_metadata_and_audio(tmp_path):
    with pytest.raises(DatasetError, match="TinySOL_metadata.csv is missing.*zenodo.org/record/3685367"):
        load_tinysol(tmp_path)
    root = tinysol_tree(tmp_path)
    (root / "TinySOL" / "Winds/Flute/ordinario/Fl-ord-A4-pp-N-N.wav").unlink()
    with pytest.raises(DatasetError, match="(?s)1 of 5 audio files are missing.*Fl-ord-A4"):
        load_tinysol(root)
