"""Beatport EDM Key (Faraldo 2017): global key of 1,486 two-minute EDM previews.

Official download: https://zenodo.org/record/1101082 (``audio.zip``, ``keys.zip``,
``original_metadata.zip``; CC BY-SA 4.0).

Layout under ``root`` (assumptions, the unpacked zips)
-----------------------------------------------------
- ``keys/<name>.txt``: the key on the first line (``D minor``); several plausible keys are
  separated by ``|``; ``unknown``/``x`` when there is none;
- ``audio/<name>.mp3`` with the same ``<name>``, e.g.
  ``100066 Lindstrom - Monsteer (Original Mix)``; the leading number is the Beatport id;
- ``meta/<name>.json`` (genre, tempo, artists) - not needed here.

Labels and splits
-----------------
Keys go through :func:`benchmark.data.canonical.canonical_key`; excerpts with no single
major/minor key (unknown, several keys, modal labels) are dropped and counted. The dataset
has no official split: ``split="hash"`` (default) assigns each excerpt by a stable hash of its
Beatport id with ``fractions`` (train/valid/test = 0.7/0.15/0.15); ``split="test"`` puts every
excerpt in test, to evaluate a probe trained elsewhere. Item ids are ``bp-<beatport id>``.

Caution: these previews are, as far as the ids show (e.g. 100066 is in both), the excerpts
of GiantSteps MTG Key, re-annotated by Faraldo. Never train on one of the two and test on
the other; GiantSteps Key (the 604-excerpt test set) is a different set.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

from benchmark.data.canonical import (canonical_key, check_files, describe, hash_split, layout_identity,
                                      limit_per_split, require_paths, resolve_root)
from benchmark.data.dataset import Dataset, DatasetError, Item

NAME = "beatport_key"
VERSION = "1"
URL = "https://zenodo.org/record/1101082"
DEFAULT_FRACTIONS = {"train": 0.7, "valid": 0.15, "test": 0.15}
_ID_RE = re.compile(r"^(\d+)\b")


def read_key_file(path: Path) -> list[str]:
    """The keys listed on the first line of a Beatport key file (``|``-separated)."""
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    first = text.splitlines()[0] if text else ""
    return [k.strip() for k in first.split("|") if k.strip()]


def beatport_id(name: str) -> str:
    """The Beatport id at the start of a file name, or the whole name if it has none."""
    match = _ID_RE.match(name)
    return match.group(1) if match else name


def load_beatport_key(root: Path | None, *, split: str = "hash",
                      fractions: Mapping[str, float] | None = None, allow_missing: bool = False,
                      max_per_split: int | Mapping[str, int] | None = None) -> Dataset:
    """Load Beatport EDM Key from ``root`` (see the module docstring).

    Parameters
    ----------
    split: ``"hash"`` (stable hash of the Beatport id, see ``fractions``) or ``"test"``.
    fractions: split shares for ``"hash"``, e.g. ``{"train": 0.7, "valid": 0.15, "test": 0.15}``.
    allow_missing: skip excerpts whose mp3 is missing instead of raising.
    max_per_split: keep at most this many excerpts per split (stable hash choice).
    """
    fractions = dict(fractions or DEFAULT_FRACTIONS)
    if split not in ("hash", "test"):
        raise DatasetError(f"{NAME}: unknown split {split!r}; use 'hash' or 'test'")
    if split == "hash" and (set(fractions) - {"train", "valid", "test"} or abs(sum(fractions.values()) - 1) > 1e-9):
        raise DatasetError(f"{NAME}: fractions must map train/valid/test to shares summing to 1, got {fractions}")
    root = resolve_root(NAME, root, URL, "keys/ and audio/ (unzipped keys.zip and audio.zip)")
    require_paths(NAME, root, [root / "keys", root / "audio"], URL, "unzip keys.zip and audio.zip into the root")
    key_files = sorted((root / "keys").glob("*.txt"))
    if not key_files:
        raise DatasetError(f"{NAME}: {root / 'keys'} holds no .txt key files; unzip keys.zip from {URL} there")
    dropped = {"no_single_key": 0}
    items, seen = [], {}
    for path in key_files:
        keys = read_key_file(path)
        key = canonical_key(keys[0]) if len(keys) == 1 else None
        if key is None:
            dropped["no_single_key"] += 1
            continue
        bid = beatport_id(path.stem)
        if bid in seen:
            raise DatasetError(f"{NAME}: Beatport id {bid} names two key files ({seen[bid]} and {path.name})")
        seen[bid] = path.name
        s = "test" if split == "test" else hash_split(bid, fractions, salt=NAME)
        items.append(Item(id=f"bp-{bid}", path=(root / "audio" / f"{path.stem}.mp3").resolve(), split=s,
                          labels={"key": key}))
    items = limit_per_split(items, max_per_split)
    items, counts = check_files(NAME, root, items, URL, allow_missing)
    counts = {**dropped, **counts}
    options = {"split": split, "fractions": fractions if split == "hash" else None, "max_per_split": max_per_split}
    return Dataset(name=NAME, identity=layout_identity(NAME, VERSION, root, items, key_files, options),
                   root=root, items=items, sample_rate=44100,
                   description=f"Beatport EDM Key ({split} split): {describe(counts, items)}")
