"""MagnaTagATune (MTAT) auto-tagging: the top-50 tags with the standard splits.

Official download: https://mirg.city.ac.uk/codeapps/the-magnatagatune-dataset
(``mp3.zip.001``-``003`` concatenated and unzipped, plus ``annotations_final.csv``).

Layout under ``root`` (assumptions)
-----------------------------------
- ``annotations_final.csv``: tab-separated, fields optionally double-quoted. Header
  ``clip_id``, then one column per tag (188 tags, values 0/1), then ``mp3_path``
  (e.g. ``f/american_bach_soloists-...-30-59.mp3``). One row per 29.1 s clip, 25,863 rows.
- the mp3s under ``root/mp3/<0-f>/`` (the layout named in our docs) or directly under
  ``root/<0-f>/`` (where the official zip unpacks); the folder holding ``0/`` is used.
- optional split files ``train.npy``, ``valid.npy``, ``test.npy`` (and ``tags.npy``) as
  published with Won et al., "Evaluation of CNN-based automatic music tagging models"
  (SMC 2020, repository ``minzwon/sota-music-tagging-models``, folder ``split/mtat``):
  numpy string arrays of ``"<row index>\\t<mp3_path>"``. Looked for in ``root/split/mtat/``,
  ``root/split/`` and ``root/``.

Splits (``split=``)
-------------------
- ``"directory"``: the 12:1:3 split by the clip's first folder - ``0``-``b`` train, ``c`` valid,
  ``d``-``f`` test (Dieleman & Schrauwen, ICASSP 2014; used by most MTAT papers). All clips
  are kept, including those without any of the 50 tags (all-negative targets), unless
  ``drop_untagged=True``.
- ``"files"``: the clips listed in the split files (Won et al.: 15,244 / 1,529 / 4,332 clips,
  those with at least one top-50 tag and >= 29.1 s of audio). Labels are always read from
  ``annotations_final.csv`` by mp3 path; ``tags.npy``, if present, fixes the tag list.
- ``"auto"`` (default): ``"files"`` when the three split files exist, else ``"directory"``.

Tags: the ``n_tags`` (50) most frequent tags over all clips of ``annotations_final.csv``
(ties broken by column order), the usual MTAT top-50. Item ids are the ``clip_id`` values.

The official archive holds a few zero-byte mp3s; they are dropped and counted in the
dataset description (see :func:`benchmark.data.canonical.check_files`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping

import numpy as np

from benchmark.data.canonical import (check_files, describe, layout_identity, limit_per_split, require_paths,
                                      resolve_root)
from benchmark.data.dataset import Dataset, DatasetError, Item

NAME = "magnatagatune"
VERSION = "1"
URL = "https://mirg.city.ac.uk/codeapps/the-magnatagatune-dataset"
ANNOTATIONS = "annotations_final.csv"
DIRECTORY_SPLIT = {**{d: "train" for d in "0123456789ab"}, "c": "valid", **{d: "test" for d in "def"}}
SPLIT_FILE_DIRS = ("split/mtat", "split", ".")


def read_annotations(path: Path) -> tuple[list[str], list[dict]]:
    """Parse ``annotations_final.csv`` into (tag names in column order, rows).

    Each row: ``{"clip_id": str, "mp3_path": str, "tags": tuple of tags with value 1}``.
    """
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t", quotechar='"')
        try:
            header = next(reader)
        except StopIteration:
            raise DatasetError(f"{NAME}: {path} is empty; re-download it from {URL}") from None
        if len(header) < 3 or header[0] != "clip_id" or header[-1] != "mp3_path":
            raise DatasetError(f"{NAME}: {path} does not look like annotations_final.csv (header starts "
                               f"{header[:2]}, ends {header[-1:]}; expected clip_id ... mp3_path, tab-separated)")
        tags = header[1:-1]
        rows = []
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise DatasetError(f"{NAME}: {path} line {line_no} has {len(row)} fields, expected {len(header)}")
            try:
                flags = [int(v) for v in row[1:-1]]
            except ValueError as exc:
                raise DatasetError(f"{NAME}: {path} line {line_no}: tag values must be 0/1 ({exc})") from None
            rows.append({"clip_id": row[0], "mp3_path": row[-1],
                         "tags": tuple(t for t, f in zip(tags, flags) if f)})
    return tags, rows


def top_tags(tags: list[str], rows: list[dict], n: int) -> list[str]:
    """The ``n`` tags on most clips (ties: earlier column first)."""
    counts = {t: 0 for t in tags}
    for row in rows:
        for t in row["tags"]:
            counts[t] += 1
    order = sorted(range(len(tags)), key=lambda i: (-counts[tags[i]], i))
    return [tags[i] for i in order[:n]]


def _find_split_files(root: Path) -> dict[str, Path] | None:
    for sub in SPLIT_FILE_DIRS:
        folder = (root / sub).resolve()
        files = {s: folder / f"{s}.npy" for s in ("train", "valid", "test")}
        if all(p.exists() for p in files.values()):
            files["tags"] = folder / "tags.npy"
            return files
    return None


def _read_npy_strings(path: Path) -> list[str]:
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DatasetError(f"{NAME}: {path} is not a numpy string array ({exc}); use the split files of "
                           "minzwon/sota-music-tagging-models (split/mtat)") from None
    return [str(v) for v in np.ravel(arr)]


def _audio_dir(root: Path, audio_dir: str | Path | None) -> Path:
    if audio_dir is not None:
        path = Path(audio_dir)
        return path if path.is_absolute() else root / path
    for candidate in (root / "mp3", root):
        if (candidate / "0").is_dir():
            return candidate
    raise DatasetError(f"{NAME}: no mp3 folders found: expected {root / 'mp3' / '0'} ... {root / 'mp3' / 'f'} "
                       f"(or {root / '0'} ...). Download mp3.zip.001-003 from {URL}, concatenate and unzip "
                       "them into root/mp3, or pass audio_dir=")


def load_magnatagatune(root: Path | None, *, split: str = "auto", n_tags: int = 50, drop_untagged: bool = False,
                       audio_dir: str | Path | None = None, allow_missing: bool = False,
                       max_per_split: int | Mapping[str, int] | None = None) -> Dataset:
    """Load MagnaTagATune from ``root`` (see the module docstring for layout and splits).

    Parameters
    ----------
    split: ``"auto"``, ``"directory"`` (12:1:3) or ``"files"`` (Won et al. split files).
    n_tags: number of most frequent tags kept as labels (ignored when ``tags.npy`` is used).
    drop_untagged: drop clips with none of the kept tags.
    audio_dir: folder holding ``0/`` ... ``f/`` (default: ``root/mp3`` or ``root``).
    allow_missing: skip clips whose mp3 is missing instead of raising.
    max_per_split: keep at most this many clips per split (stable hash choice).
    """
    root = resolve_root(NAME, root, URL, f"{ANNOTATIONS} and mp3/0 ... mp3/f")
    require_paths(NAME, root, [root / ANNOTATIONS], URL, "the tag annotations")
    tag_names, rows = read_annotations(root / ANNOTATIONS)
    audio = _audio_dir(root, audio_dir)
    split_files = _find_split_files(root)
    if split not in ("auto", "directory", "files"):
        raise DatasetError(f"{NAME}: unknown split {split!r}; use 'auto', 'directory' or 'files'")
    if split == "files" and split_files is None:
        raise DatasetError(f"{NAME}: split='files' needs train.npy, valid.npy and test.npy in one of "
                           f"{[str(root / d) for d in SPLIT_FILE_DIRS]}; get them from "
                           "https://github.com/minzwon/sota-music-tagging-models (split/mtat)")
    mode = "files" if split == "files" or (split == "auto" and split_files) else "directory"

    by_path = {r["mp3_path"]: r for r in rows}
    annotation_files = [root / ANNOTATIONS]
    if mode == "files":
        assigned: dict[str, str] = {}
        for s in ("train", "valid", "test"):
            annotation_files.append(split_files[s])
            for entry in _read_npy_strings(split_files[s]):
                path = entry.split("\t")[-1].strip()
                if path not in by_path:
                    raise DatasetError(f"{NAME}: {split_files[s]} lists {path!r}, which is not in {ANNOTATIONS}; "
                                       "the split files and the annotations come from different versions")
                assigned[path] = s
        chosen = [by_path[p] for p in assigned]
        if split_files["tags"].exists():
            annotation_files.append(split_files["tags"])
            vocab = _read_npy_strings(split_files["tags"])
            unknown = sorted(set(vocab) - set(tag_names))
            if unknown:
                raise DatasetError(f"{NAME}: tags.npy names tags not in {ANNOTATIONS}: {unknown[:5]}")
        else:
            vocab = top_tags(tag_names, rows, n_tags)
    else:
        assigned = {}
        for r in rows:
            folder = r["mp3_path"].split("/", 1)[0]
            if folder not in DIRECTORY_SPLIT:
                raise DatasetError(f"{NAME}: clip {r['clip_id']} has mp3_path {r['mp3_path']!r} outside "
                                   "folders 0-f; is this annotations_final.csv?")
            assigned[r["mp3_path"]] = DIRECTORY_SPLIT[folder]
        chosen = rows
        vocab = top_tags(tag_names, rows, n_tags)

    keep = set(vocab)
    items = []
    for r in chosen:
        tags = tuple(t for t in r["tags"] if t in keep)
        if drop_untagged and not tags:
            continue
        items.append(Item(id=r["clip_id"], path=(audio / r["mp3_path"]).resolve(),
                          split=assigned[r["mp3_path"]], labels={"tags": tags}))
    items = limit_per_split(items, max_per_split)
    items, counts = check_files(NAME, root, items, URL, allow_missing)
    options = {"split": mode, "n_tags": len(vocab), "drop_untagged": drop_untagged,
               "max_per_split": max_per_split, "tags": sorted(vocab)}
    return Dataset(name=NAME, identity=layout_identity(NAME, VERSION, root, items, annotation_files, options, audio),
                   root=root, items=items, sample_rate=16000,
                   description="MagnaTagATune top-%d tags, %s split: %s" % (
                       len(vocab), "12:1:3 directory" if mode == "directory" else "Won et al. files",
                       describe(counts, items)))
