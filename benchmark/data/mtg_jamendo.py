"""MTG-Jamendo auto-tagging (top-50 tags by default) with the official split files.

Official pages: https://mtg.github.io/mtg-jamendo-dataset/ (metadata repository
``MTG/mtg-jamendo-dataset`` on GitHub; audio via its ``scripts/download/download.py``).

Layout under ``root`` (assumptions)
-----------------------------------
- ``root`` is a clone of the metadata repository, so the split files are
  ``data/splits/split-<k>/autotagging_<subset>-{train,validation,test}.tsv``; ``subset`` is
  ``top50tags`` (default), ``genre``, ``instrument`` or ``moodtheme``.
- each TSV has the header ``TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS`` and one row per
  track; the tags follow in the remaining tab-separated fields
  (``track_0000214  artist_000014  album_000031  14/214.mp3  124.6  genre---punkrock ...``).
- the audio is under ``root/audio/`` (or ``audio_dir=``) at the row's ``PATH``
  (``<NN>/<number>.mp3``, 320 kbps full tracks). The low-quality download
  (``<NN>/<number>.low.mp3``) is used when ``audio_quality="low"``, or with ``"auto"`` when
  the full-quality file is absent.

Splits: ``split-<split_index>`` (0 is the one most papers report); ``validation`` maps to our
``valid``. Tags keep their category prefix (``genre---rock``, ``instrument---piano``,
``mood/theme---happy``), so tag names are unique. Item ids are ``TRACK_ID``s. The audio is
full-length tracks (minutes): crop or segment them in the embedding stage.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping

from benchmark.data.canonical import (check_files, describe, layout_identity, limit_per_split, require_paths,
                                      resolve_root)
from benchmark.data.dataset import Dataset, DatasetError, Item

NAME = "mtg_jamendo"
VERSION = "1"
URL = "https://mtg.github.io/mtg-jamendo-dataset/"
SUBSETS = ("top50tags", "genre", "instrument", "moodtheme")
SPLIT_NAMES = {"train": "train", "validation": "valid", "test": "test"}
HEADER = ["TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS"]


def split_file(root: Path, split_index: int, subset: str, split: str) -> Path:
    return root / "data" / "splits" / f"split-{split_index}" / f"autotagging_{subset}-{split}.tsv"


def read_split_tsv(path: Path) -> list[dict]:
    """Rows ``{"track_id", "path", "tags": tuple}`` of one split TSV."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader, None)
        if header is None or header[:6] != HEADER:
            raise DatasetError(f"{NAME}: {path} has header {header}; expected {HEADER} (tab-separated)")
        rows = []
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 5:
                raise DatasetError(f"{NAME}: {path} line {line_no} has {len(row)} fields, expected >= 5")
            rows.append({"track_id": row[0], "path": row[3], "tags": tuple(t for t in row[5:] if t)})
    return rows


def _audio_path(audio: Path, rel: str, quality: str) -> Path:
    full = audio / rel
    low = full.with_name(full.name[: -len(full.suffix)] + ".low" + full.suffix)
    if quality == "full":
        return full
    if quality == "low":
        return low
    return full if full.exists() or not low.exists() else low


def load_mtg_jamendo(root: Path | None, *, subset: str = "top50tags", split_index: int = 0,
                     audio_dir: str | Path | None = None, audio_quality: str = "auto",
                     allow_missing: bool = False,
                     max_per_split: int | Mapping[str, int] | None = None) -> Dataset:
    """Load MTG-Jamendo auto-tagging ``subset`` with official split ``split_index``.

    Parameters
    ----------
    subset: ``top50tags``, ``genre``, ``instrument`` or ``moodtheme``.
    split_index: 0-4, the official splits.
    audio_dir: audio root (default ``root/audio``); relative paths are taken under ``root``.
    audio_quality: ``"auto"``, ``"full"`` (``.mp3``) or ``"low"`` (``.low.mp3``).
    allow_missing: skip tracks whose audio is missing instead of raising.
    max_per_split: keep at most this many tracks per split (stable hash choice).
    """
    if subset not in SUBSETS:
        raise DatasetError(f"{NAME}: unknown subset {subset!r}; use one of {SUBSETS}")
    if audio_quality not in ("auto", "full", "low"):
        raise DatasetError(f"{NAME}: audio_quality must be 'auto', 'full' or 'low', got {audio_quality!r}")
    root = resolve_root(NAME, root, URL, "data/splits/ (a clone of MTG/mtg-jamendo-dataset) and audio/")
    files = {s: split_file(root, split_index, subset, s) for s in SPLIT_NAMES}
    require_paths(NAME, root, list(files.values()), URL,
                  f"split-{split_index} files of autotagging_{subset}; clone "
                  "https://github.com/MTG/mtg-jamendo-dataset into the root")
    audio = Path(audio_dir) if audio_dir is not None else root / "audio"
    audio = audio if audio.is_absolute() else root / audio
    if not audio.is_dir():
        raise DatasetError(f"{NAME}: audio folder {audio} does not exist; download the audio with the "
                           f"repository's scripts/download/download.py (see {URL}) into it, or pass audio_dir=")
    items, seen = [], {}
    for split, path in files.items():
        for row in read_split_tsv(path):
            if row["track_id"] in seen:
                raise DatasetError(f"{NAME}: track {row['track_id']} is in both {seen[row['track_id']]} and "
                                   f"{split}; the split files are inconsistent")
            seen[row["track_id"]] = split
            items.append(Item(id=row["track_id"], path=_audio_path(audio, row["path"], audio_quality).resolve(),
                              split=SPLIT_NAMES[split], labels={"tags": row["tags"]}))
    items = limit_per_split(items, max_per_split)
    items, counts = check_files(NAME, root, items, URL, allow_missing)
    n_tags = len({t for it in items for t in it.labels["tags"]})
    options = {"subset": subset, "split_index": split_index, "audio_quality": audio_quality,
               "max_per_split": max_per_split}
    return Dataset(name=NAME, identity=layout_identity(NAME, VERSION, root, items, files.values(), options, audio),
                   root=root, items=items, sample_rate=44100,
                   description=f"MTG-Jamendo autotagging_{subset} split-{split_index}, {n_tags} tags: "
                               f"{describe(counts, items)}")
