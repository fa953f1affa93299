"""Dataset abstraction shared by every stage: a list of labelled audio items with splits.

Label fields (``Item.labels``) use one vocabulary across datasets so that tasks can read them
without knowing the dataset:

- ``tags``: tuple of tag strings (multi-label auto-tagging)
- ``key``: ``"<tonic> major"`` / ``"<tonic> minor"`` in ``mir_eval`` spelling, e.g. ``"F# minor"``
- ``instrument``: instrument (family) name, e.g. ``"brass"``
- ``pitch``: MIDI note number (int)

A field that does not apply to an item is absent (not ``None``). Splits are ``train``,
``valid`` and ``test``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

SPLITS = ("train", "valid", "test")
LABEL_FIELDS = ("tags", "key", "instrument", "pitch")


class DatasetError(RuntimeError):
    """A dataset that is missing, incomplete or malformed; the message lists what and the fix."""


@dataclasses.dataclass(frozen=True)
class Item:
    """One audio file with its labels.

    id: unique within the dataset (stable across runs; used in result rows).
    path: absolute path to the audio file.
    split: one of ``SPLITS``.
    labels: task label fields (see module docstring).
    content_hash: SHA-256 of the file's bytes ("" if not known yet).
    """

    id: str
    path: Path
    split: str
    labels: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    content_hash: str = ""


@dataclasses.dataclass
class Dataset:
    """A named collection of items.

    name: dataset name (``builtin``, ``nsynth``, ``folder``...).
    identity: hash that changes whenever the content changes (generation parameters,
        soundfont hash, file list...). Part of every cache key and result row.
    root: folder holding the data.
    items: all items, all splits.
    sample_rate: native rate of the files if uniform (Hz), else None.
    """

    name: str
    identity: str
    root: Path
    items: list[Item]
    sample_rate: int | None = None
    description: str = ""

    def split(self, name: str) -> list[Item]:
        return [it for it in self.items if it.split == name]

    def with_label(self, field: str) -> list[Item]:
        return [it for it in self.items if field in it.labels]

    def __len__(self) -> int:
        return len(self.items)


def identity_of(payload: Any) -> str:
    """16-hex identity of any JSON-serialisable payload."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- metadata tables -----------------------------------------------------------------------
METADATA_COLUMNS = ("id", "path", "split", "sha256", "tags", "key", "instrument", "pitch")


def write_metadata(path: Path, rows: Iterable[Mapping[str, Any]], extra_columns: Iterable[str] = ()) -> None:
    """Write a metadata CSV (``tags`` joined with ``|``), atomically."""
    columns = list(METADATA_COLUMNS) + [c for c in extra_columns if c not in METADATA_COLUMNS]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            row = dict(row)
            if isinstance(row.get("tags"), (list, tuple)):
                row["tags"] = "|".join(row["tags"])
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    tmp.replace(path)


def read_metadata(path: Path, root: Path | None = None) -> list[Item]:
    """Read a metadata CSV written by :func:`write_metadata` into items."""
    if not path.exists():
        raise DatasetError(f"metadata table {path} is missing; regenerate the dataset")
    root = root or path.parent
    items = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            labels: dict[str, Any] = {}
            if row.get("tags"):
                labels["tags"] = tuple(t for t in row["tags"].split("|") if t)
            if row.get("key"):
                labels["key"] = row["key"]
            if row.get("instrument"):
                labels["instrument"] = row["instrument"]
            if row.get("pitch"):
                labels["pitch"] = int(row["pitch"])
            items.append(Item(id=row["id"], path=(root / row["path"]).resolve(), split=row["split"],
                              labels=labels, content_hash=row.get("sha256", "")))
    return items
