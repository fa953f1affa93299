"""GiantSteps Key (test) with GiantSteps MTG Key (train/valid): global key of EDM excerpts.

Official repositories (annotations; the audio is fetched from Beatport by their
``audio_dl.sh`` script):

- test: https://github.com/GiantSteps/giantsteps-key-dataset - 604 two-minute previews;
- train: https://github.com/GiantSteps/giantsteps-mtg-key-dataset - 1,486 previews.

Layout (assumptions)
--------------------
``root`` holds the two repositories as ``root/giantsteps-key-dataset`` and
``root/giantsteps-mtg-key-dataset`` (``train_root=`` points elsewhere; a ``root`` that is
itself the test repository is accepted too).

- test: ``annotations/key/<id>.LOFI.key`` holds one line such as ``Bb major``;
  audio at ``audio/<id>.LOFI.mp3``.
- train: ``annotations/annotations.txt`` is tab-separated with the header
  ``ID  MANUAL KEY  C``: Beatport id, key (``D# minor``; ``-`` unknown; several keys as
  ``C minor / F# minor``), and the annotator's confidence ``C`` in {0, 1, 2}; audio at
  ``audio/<id>.LOFI.mp3``.

Labels and splits
-----------------
Keys are normalised by :func:`benchmark.data.canonical.canonical_key` (24 classes,
enharmonics merged). Excerpts whose key is unknown, ambiguous or modal are dropped, and
training excerpts with confidence below ``min_confidence`` (default 2, the highest) are
dropped too; the description counts both. Neither repository defines a validation set:
``valid_fraction`` of the MTG excerpts (chosen by a stable hash of the id) become ``valid``.
A Beatport id present in both sets is kept in test only. Item ids are ``gs-<id>`` (test) and
``gsmtg-<id>`` (train/valid).

``test_only=True`` loads only the 604 test excerpts (e.g. to evaluate a probe trained on
another dataset); the probe engine then refuses to train, having no train split.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping

from benchmark.data.canonical import (canonical_key, check_files, describe, hash_split, layout_identity,
                                      limit_per_split, require_paths, resolve_root)
from benchmark.data.dataset import Dataset, DatasetError, Item

NAME = "giantsteps_key"
VERSION = "1"
TEST_URL = "https://github.com/GiantSteps/giantsteps-key-dataset"
TRAIN_URL = "https://github.com/GiantSteps/giantsteps-mtg-key-dataset"
TEST_DIR = "giantsteps-key-dataset"
TRAIN_DIR = "giantsteps-mtg-key-dataset"


def _test_root(root: Path) -> Path:
    if (root / TEST_DIR).is_dir():
        return root / TEST_DIR
    if (root / "annotations" / "key").is_dir():
        return root
    raise DatasetError(f"{NAME}: no GiantSteps Key test set under {root}: expected {root / TEST_DIR}/annotations/key "
                       f"(clone {TEST_URL} there and run its audio_dl.sh)")


def read_test_annotations(test_root: Path) -> tuple[list[tuple[str, str]], int, list[Path]]:
    """(``[(id, raw key)]``, number of files, annotation paths) from ``annotations/key``."""
    key_dir = test_root / "annotations" / "key"
    paths = sorted(key_dir.glob("*.key"))
    if not paths:
        raise DatasetError(f"{NAME}: {key_dir} holds no .key files; re-clone {TEST_URL}")
    out = []
    for p in paths:
        track = p.name[: -len(".LOFI.key")] if p.name.endswith(".LOFI.key") else p.stem
        out.append((track, p.read_text(encoding="utf-8").strip().splitlines()[0] if p.stat().st_size else ""))
    return out, len(paths), paths


def read_mtg_annotations(path: Path) -> list[dict]:
    """Rows ``{"id", "key", "confidence"}`` of the MTG ``annotations.txt``."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = [h.strip() for h in next(reader, [])]
        if header[:3] != ["ID", "MANUAL KEY", "C"]:
            raise DatasetError(f"{NAME}: {path} has header {header}; expected 'ID<TAB>MANUAL KEY<TAB>C' "
                               f"(from {TRAIN_URL})")
        rows = []
        for line_no, row in enumerate(reader, start=2):
            if not row or not row[0].strip():
                continue
            try:
                confidence = int(row[2])
            except (IndexError, ValueError):
                raise DatasetError(f"{NAME}: {path} line {line_no}: expected ID, key and an integer "
                                   f"confidence, got {row}") from None
            rows.append({"id": row[0].strip(), "key": row[1].strip(), "confidence": confidence})
    return rows


def load_giantsteps_key(root: Path | None, *, train_root: str | Path | None = None, valid_fraction: float = 0.15,
                        min_confidence: int = 2, test_only: bool = False, allow_missing: bool = False,
                        max_per_split: int | Mapping[str, int] | None = None) -> Dataset:
    """Load GiantSteps Key (test) and GiantSteps MTG Key (train/valid); see the module docstring.

    Parameters
    ----------
    train_root: the MTG key repository (default ``root/giantsteps-mtg-key-dataset``).
    valid_fraction: share of MTG excerpts held out as ``valid`` (stable hash of the id).
    min_confidence: drop MTG excerpts whose annotation confidence is lower (0-2).
    test_only: load the test set only.
    allow_missing: skip excerpts whose mp3 is missing instead of raising.
    max_per_split: keep at most this many excerpts per split (stable hash choice).
    """
    if not 0.0 < valid_fraction < 1.0:
        raise DatasetError(f"{NAME}: valid_fraction must be in (0, 1), got {valid_fraction}")
    root = resolve_root(NAME, root, TEST_URL, f"{TEST_DIR}/ and {TRAIN_DIR}/")
    test_root = _test_root(root)
    raw_test, n_files, annotation_files = read_test_annotations(test_root)
    dropped = {"unreadable_key": 0, "low_confidence": 0, "in_test_set": 0}
    items, test_ids = [], set()
    for track, raw in raw_test:
        key = canonical_key(raw)
        if key is None:
            dropped["unreadable_key"] += 1
            continue
        test_ids.add(track)
        items.append(Item(id=f"gs-{track}", path=(test_root / "audio" / f"{track}.LOFI.mp3").resolve(),
                          split="test", labels={"key": key}))
    audio_roots = [test_root]
    if not test_only:
        mtg = Path(train_root).expanduser().resolve() if train_root is not None else root / TRAIN_DIR
        ann = mtg / "annotations" / "annotations.txt"
        require_paths(NAME, mtg, [ann], TRAIN_URL,
                      "the GiantSteps MTG Key training set; clone it there and run its audio_dl.sh, "
                      "pass train_root=, or load with test_only=True")
        annotation_files.append(ann)
        for row in read_mtg_annotations(ann):
            key = canonical_key(row["key"])
            if key is None:
                dropped["unreadable_key"] += 1
            elif row["confidence"] < min_confidence:
                dropped["low_confidence"] += 1
            elif row["id"] in test_ids:
                dropped["in_test_set"] += 1
            else:
                split = hash_split(row["id"], {"train": 1.0 - valid_fraction, "valid": valid_fraction}, salt=NAME)
                items.append(Item(id=f"gsmtg-{row['id']}", path=(mtg / "audio" / f"{row['id']}.LOFI.mp3").resolve(),
                                  split=split, labels={"key": key}))
        audio_roots.append(mtg)
    items = limit_per_split(items, max_per_split)
    items, counts = check_files(NAME, root, items, f"{TEST_URL} and {TRAIN_URL} (audio_dl.sh)", allow_missing)
    counts = {**dropped, **counts}
    options = {"valid_fraction": valid_fraction, "min_confidence": min_confidence, "test_only": test_only,
               "max_per_split": max_per_split}
    identity = layout_identity(NAME, VERSION, root, items, annotation_files, options,
                               audio_root=root if all(r.is_relative_to(root) for r in audio_roots) else None)
    return Dataset(name=NAME, identity=identity, root=root, items=items, sample_rate=44100,
                   description=f"GiantSteps Key ({n_files} test annotations)"
                               f"{'' if test_only else ' + GiantSteps MTG Key'}: {describe(counts, items)}")
