"""TinySOL: 2,913 single notes of 14 orchestral instruments (Ircam Studio On Line), 5 folds.

Official download: https://zenodo.org/record/3685367 (``TinySOL.tar.gz`` and
``TinySOL_metadata.csv``; CC BY 4.0).

Layout under ``root`` (assumptions)
-----------------------------------
- ``TinySOL_metadata.csv`` in ``root`` (or ``root/annotation/``, the mirdata layout): comma
  separated with a header that names at least ``Path``, ``Fold``, ``Family``, the full
  instrument name (``Instrument (in full)``; older releases: ``Instrument Name``) and ``Pitch``
  (scientific pitch name, ``C4`` = MIDI 60); ``Pitch ID`` (MIDI) is used to cross-check.
- ``Path`` is relative to the unpacked audio folder, e.g.
  ``Brass/Bass_Tuba/ordinario/BTb-ord-F#1-pp-N-N.wav`` (``<Family>/<Instrument>/<technique>/``).
  The audio folder is the first of ``root/TinySOL``, ``root/TinySOL/audio``, ``root/audio``
  and ``root`` that holds the first listed file.

Labels and splits
-----------------
- ``instrument``: the full instrument name (14 classes), or the family (Brass, Keyboards,
  Strings, Winds) with ``instrument_level="family"``;
- ``pitch``: MIDI number parsed from the ``Pitch`` note name (not from ``Pitch ID``; rows where
  the two disagree are counted in the description).
- The official split is 5 folds (0-4), balanced in instrument, pitch and dynamics:
  ``test_fold`` (default 0) is test, ``valid_fold`` (default the next fold) is valid, the rest
  train. Report the mean over ``test_fold`` = 0..4 for the official protocol.

Item ids are the file paths without extension.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Mapping

from benchmark.data.canonical import (check_files, describe, layout_identity, limit_per_split, note_to_midi,
                                      resolve_root)
from benchmark.data.dataset import Dataset, DatasetError, Item

NAME = "tinysol"
VERSION = "1"
URL = "https://zenodo.org/record/3685367"
METADATA = "TinySOL_metadata.csv"
INSTRUMENT_COLUMNS = ("Instrument (in full)", "Instrument Name")
N_FOLDS = 5


def _metadata_path(root: Path) -> Path:
    for candidate in (root / METADATA, root / "annotation" / METADATA):
        if candidate.exists():
            return candidate
    raise DatasetError(f"{NAME}: {METADATA} is missing: expected {root / METADATA} (or "
                       f"{root / 'annotation' / METADATA}); download it from {URL}")


def read_metadata(path: Path) -> list[dict]:
    """Rows ``{"path", "fold", "family", "instrument", "pitch_name", "pitch_id"}`` of the metadata CSV."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        inst_col = next((c for c in INSTRUMENT_COLUMNS if c in header), None)
        missing = [c for c in ("Path", "Fold", "Family", "Pitch") if c not in header]
        if inst_col is None:
            missing.append(INSTRUMENT_COLUMNS[0])
        if missing:
            raise DatasetError(f"{NAME}: {path} lacks column(s) {missing}; header is {header}")
        rows = []
        for line_no, row in enumerate(reader, start=2):
            try:
                fold = int(row["Fold"])
            except ValueError:
                raise DatasetError(f"{NAME}: {path} line {line_no}: Fold {row['Fold']!r} is not an integer") from None
            pitch_id = row.get("Pitch ID")
            rows.append({"path": row["Path"].strip(), "fold": fold, "family": row["Family"].strip(),
                         "instrument": row[inst_col].strip(), "pitch_name": row["Pitch"].strip(),
                         "pitch_id": int(float(pitch_id)) if pitch_id not in (None, "") else None})
    if not rows:
        raise DatasetError(f"{NAME}: {path} lists no files; re-download it from {URL}")
    return rows


def _audio_root(root: Path, first: str) -> Path:
    candidates = (root / "TinySOL", root / "TinySOL" / "audio", root / "audio", root)
    for c in candidates:
        if (c / first).exists():
            return c
    raise DatasetError(f"{NAME}: cannot find the audio: {first} is in none of "
                       f"{[str(c) for c in candidates]}; unpack TinySOL.tar.gz from {URL} into {root}")


def load_tinysol(root: Path | None, *, test_fold: int = 0, valid_fold: int | None = None,
                 instrument_level: str = "instrument", allow_missing: bool = False,
                 max_per_split: int | Mapping[str, int] | None = None) -> Dataset:
    """Load TinySOL from ``root`` (see the module docstring).

    Parameters
    ----------
    test_fold: official fold (0-4) used as test.
    valid_fold: fold used as valid (default ``(test_fold + 1) % 5``).
    instrument_level: ``"instrument"`` (14 classes) or ``"family"`` (4 classes).
    allow_missing: skip notes whose wav is missing instead of raising.
    max_per_split: keep at most this many notes per split (stable hash choice).
    """
    valid_fold = (test_fold + 1) % N_FOLDS if valid_fold is None else valid_fold
    if not (0 <= test_fold < N_FOLDS and 0 <= valid_fold < N_FOLDS) or test_fold == valid_fold:
        raise DatasetError(f"{NAME}: test_fold and valid_fold must be two different folds in 0..4, "
                           f"got {test_fold} and {valid_fold}")
    if instrument_level not in ("instrument", "family"):
        raise DatasetError(f"{NAME}: instrument_level must be 'instrument' or 'family', got {instrument_level!r}")
    root = resolve_root(NAME, root, URL, f"{METADATA} and TinySOL/")
    meta = _metadata_path(root)
    rows = read_metadata(meta)
    audio = _audio_root(root, rows[0]["path"])
    items, mismatched = [], 0
    for row in rows:
        try:
            pitch = note_to_midi(row["pitch_name"])
        except ValueError:
            raise DatasetError(f"{NAME}: {meta}: {row['path']} has pitch {row['pitch_name']!r}, "
                               "not a note name") from None
        if row["pitch_id"] is not None and row["pitch_id"] != pitch:
            mismatched += 1
        split = "test" if row["fold"] == test_fold else "valid" if row["fold"] == valid_fold else "train"
        item_id = row["path"].rsplit(".", 1)[0]
        items.append(Item(id=item_id, path=(audio / row["path"]).resolve(), split=split,
                          labels={"instrument": row[instrument_level], "pitch": pitch}))
    if mismatched:
        warnings.warn(f"{NAME}: {mismatched} rows of {meta.name} have a Pitch ID that differs from their note "
                      "name; the note name was used", stacklevel=2)
    items = limit_per_split(items, max_per_split)
    items, counts = check_files(NAME, root, items, URL, allow_missing)
    options = {"test_fold": test_fold, "valid_fold": valid_fold, "instrument_level": instrument_level,
               "max_per_split": max_per_split}
    extra = f"{mismatched} pitch-name/Pitch-ID mismatches" if mismatched else ""
    return Dataset(name=NAME, identity=layout_identity(NAME, VERSION, root, items, [meta], options, audio),
                   root=root, items=items, sample_rate=44100,
                   description=f"TinySOL {instrument_level} / pitch, test fold {test_fold}, valid fold {valid_fold}: "
                               f"{describe(counts, items, extra)}")
