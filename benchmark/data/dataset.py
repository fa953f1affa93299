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

from benchmark.errors import BenchmarkError

SPLITS = ("train", "valid", "test")
LABEL_FIELDS = ("tags", "key", "instrument", "pitch")


class DatasetError(BenchmarkError, RuntimeError):
    """A dataset that is missing, incomplete or malformed; the message lists what and the fix."""


@dataclasses.dataclass(frozen=True)
class Item:
    """One audio file with its labels.

    id: unique within the dataset (stable across runs; used in result rows).
    path: absolute path to the audio file.
    split: one of ``SPLITS``.
    labels: task label fields (see module docstring).
    content_hash: SHA-256 of the file's bytes ("" if not known yet).
    kind: what sort of audio the item is, for datasets that mix sorts (the built-in one: ``note`` or
        ``clip``); reconstruction results are summarised per kind, never averaged across. "" = one sort.
    """

    id: str
    path: Path
    split: str
    labels: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    content_hash: str = ""
    kind: str = ""


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


#: :attr:`DatasetPlan.status` values.
PLAN_STATUSES = ("present", "partial", "absent", "unavailable", "unknown")


@dataclasses.dataclass(frozen=True)
class DatasetPlan:
    """What loading a dataset would find and compute, known without loading it (for dry runs).

    Made by :func:`benchmark.data.registry.describe_dataset`, which renders, decodes, hashes and
    writes nothing.

    name: dataset name as given to the registry.
    status: ``present`` (on disk and complete: loading only reads listings), ``partial`` (some
        items generated, loading renders the rest), ``absent`` (nothing generated yet: loading
        renders every item), ``unavailable`` (loading would fail: see ``problem``) or
        ``unknown`` (the loader has no planning route; see ``work``).
    work: what loading would compute, in words, e.g. ``"renders 2800 of 2800 items (...)"``.
    identity: the identity loading would give, ``None`` if it cannot be known without loading.
    splits: items per split loading would give (``None``: unknown).
    root: the folder the data is in, or would be generated into.
    items: the items, when the data is present and listing it computed nothing (lets a dry run
        look up cached work item by item); ``None`` otherwise.
    to_compute: number of items loading would render.
    seconds: rough wall-clock estimate of that work (s), ``None`` when unknown or nothing to do.
    problem: why loading would fail (the :class:`DatasetError` message), else ``None``.
    """

    name: str
    status: str
    work: str
    identity: str | None = None
    splits: Mapping[str, int] | None = None
    root: Path | None = None
    items: list[Item] | None = None
    to_compute: int = 0
    seconds: float | None = None
    problem: str | None = None

    def __post_init__(self) -> None:
        if self.status not in PLAN_STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {PLAN_STATUSES}")

    @classmethod
    def of(cls, dataset: Dataset, work: str) -> DatasetPlan:
        """The plan of a dataset whose listing was cheap to make (it is already loaded)."""
        splits = {s: n for s in SPLITS if (n := sum(it.split == s for it in dataset.items))}
        return cls(name=dataset.name, status="present", work=work, identity=dataset.identity, splits=splits,
                   root=dataset.root, items=list(dataset.items))

    def count(self, split: str | None = None, max_items: int | None = None) -> int | None:
        """Items of ``split`` (all splits if ``None``), at most ``max_items`` per split; ``None`` if unknown."""
        if self.splits is None:
            return None
        counts = [n for s, n in self.splits.items() if split is None or s == split]
        return sum(min(n, max_items) if max_items is not None else n for n in counts)

    def lines(self) -> list[str]:
        """Human-readable description, e.g. for ``--dry-run``."""
        head = f"dataset {self.name}" + (f" [{self.identity}]" if self.identity else "")
        if self.splits is not None:
            head += f": {self.count()} items ({', '.join(f'{s} {n}' for s, n in self.splits.items())})"
        where = f" at {self.root}" if self.root else ""
        return [head, f"  {self.status}{where}: {self.problem or self.work}"]


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
                              labels=labels, content_hash=row.get("sha256", ""), kind=row.get("kind") or ""))
    return items
