"""Helpers shared by the loaders of public datasets in their canonical on-disk layouts.

- label normalisation into the vocabulary of :mod:`benchmark.data.dataset`:
  :func:`canonical_key` (``"Bb major"``, ``"a# min"`` -> ``"Bb major"``) and
  :func:`note_to_midi` (``"F#1"`` -> 30);
- deterministic, order-free item selection: :func:`stable_unit` (a number in [0, 1) from a
  string), :func:`hash_split` and :func:`limit_per_split`;
- :func:`check_files` that turns missing or empty files into one :class:`DatasetError` naming
  them, with the official download page;
- :func:`layout_identity`: a dataset identity from annotation hashes and the file list (path,
  size, split, labels) - cheap to compute for 25k files, changes when any of them changes.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from benchmark.data.dataset import SPLITS, DatasetError, Item, identity_of

# -- keys ------------------------------------------------------------------------------------
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
#: spelling of the 12 tonics in canonical key labels (the common EDM/DJ spelling; mir_eval
#: reads all of them)
TONIC_SPELLING = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
KEY_LABELS = tuple(f"{t} {m}" for m in ("major", "minor") for t in TONIC_SPELLING)
_SEMITONE = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_MODE = {"major": "major", "maj": "major", "minor": "minor", "min": "minor", "m": "minor"}
_KEY_RE = re.compile(r"^\s*([A-Ga-g])\s*([#b♯♭]*)\s*:?\s*([A-Za-z]+)\s*$")


def tonic_semitone(tonic: str) -> int:
    """Pitch class (0 = C) of a tonic spelled like ``C``, ``c#``, ``Bb``, ``F♯``."""
    tonic = tonic.strip()
    if not tonic or tonic[0].lower() not in _SEMITONE:
        raise ValueError(f"not a tonic: {tonic!r}")
    pc = _SEMITONE[tonic[0].lower()]
    for ch in tonic[1:]:
        if ch in "#♯":
            pc += 1
        elif ch in "b♭":
            pc -= 1
        else:
            raise ValueError(f"not a tonic: {tonic!r}")
    return pc % 12


def canonical_key(text: str) -> str | None:
    """Canonical ``"<tonic> <major|minor>"`` label, or ``None`` if ``text`` is not one key.

    Accepts ``"A# minor"``, ``"Bb major"``, ``"bb min"``, ``"F#:maj"``. Returns ``None`` for
    ambiguous or missing annotations found in the public key datasets: ``"-"``, ``"x"``,
    ``"C minor / F# minor"``, ``"G minor/major"``, ``"A-A# minor"``, modal labels
    (``"D dorian"``). Enharmonic spellings map to one label (``"A# minor"`` -> ``"Bb minor"``).
    """
    match = _KEY_RE.match(text or "")
    if not match:
        return None
    tonic, accidentals, mode = match.groups()
    mode = _MODE.get(mode.lower())
    if mode is None:
        return None
    pc = tonic_semitone(tonic + accidentals.replace("♯", "#").replace("♭", "b"))
    return f"{TONIC_SPELLING[pc]} {mode}"


# -- notes -----------------------------------------------------------------------------------
_NOTE_RE = re.compile(r"^([A-Ga-g])([#b♯♭]?)(-?\d+)$")


def note_to_midi(name: str) -> int:
    """MIDI note number of a scientific pitch name (``"C4"`` = 60, ``"A4"`` = 69, ``"F#1"`` = 30)."""
    match = _NOTE_RE.match(name.strip())
    if not match:
        raise ValueError(f"not a note name: {name!r} (expected e.g. 'C4', 'F#1', 'Bb3')")
    letter, accidental, octave = match.groups()
    pc = _SEMITONE[letter.lower()] + {"": 0, "#": 1, "♯": 1, "b": -1, "♭": -1}[accidental]
    return 12 * (int(octave) + 1) + pc


# -- deterministic selection -----------------------------------------------------------------
def stable_unit(text: str, salt: str = "") -> float:
    """A number in [0, 1) from SHA-256 of ``salt + text``: the same on every machine and run."""
    digest = hashlib.sha256((salt + text).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def hash_split(item_id: str, fractions: Mapping[str, float], salt: str = "") -> str:
    """Assign ``item_id`` to a split with probabilities ``fractions`` (summing to 1)."""
    u = stable_unit(item_id, salt)
    total = 0.0
    for split, frac in fractions.items():
        total += frac
        if u < total:
            return split
    return list(fractions)[-1]


def limit_per_split(items: Sequence[Item], max_per_split: int | Mapping[str, int] | None,
                    salt: str = "limit") -> list[Item]:
    """Keep at most ``max_per_split`` items of each split, chosen by a stable hash of the id.

    ``max_per_split`` is an int for every split or a mapping ``{split: n}``; ``None`` keeps all.
    The choice does not depend on item order, and a larger limit keeps a superset.
    """
    if max_per_split is None:
        return list(items)
    limits = (dict(max_per_split) if isinstance(max_per_split, Mapping)
              else {s: int(max_per_split) for s in SPLITS})
    chosen: set[str] = set()
    for split in {it.split for it in items}:
        pool = [it for it in items if it.split == split]
        n = limits.get(split)
        if n is None or n >= len(pool):
            chosen.update(it.id for it in pool)
        else:
            pool.sort(key=lambda it: stable_unit(it.id, salt))
            chosen.update(it.id for it in pool[:n])
    return [it for it in items if it.id in chosen]


# -- file checks -----------------------------------------------------------------------------
def resolve_root(dataset: str, root: str | Path | None, url: str, holds: str) -> Path:
    """The dataset root as an absolute path; ``None`` or a missing folder raise :class:`DatasetError`."""
    if root is None:
        raise DatasetError(f"{dataset}: no dataset root given; pass the folder that holds {holds} "
                           f"(download from {url})")
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise DatasetError(f"{dataset}: dataset root {path} does not exist or is not a folder; it should "
                           f"hold {holds} (download from {url})")
    return path


def require_paths(dataset: str, root: Path, paths: Iterable[Path], url: str, what: str = "") -> None:
    """Raise :class:`DatasetError` if any of ``paths`` (annotation files, folders) is missing."""
    missing = [p for p in paths if not p.exists()]
    if missing:
        listing = "\n  ".join(str(p) for p in missing)
        raise DatasetError(
            f"{dataset}: the dataset at {root} is missing {len(missing)} required "
            f"path(s){' (' + what + ')' if what else ''}:\n  {listing}\n"
            f"Download it from {url} and unpack it so that these paths exist, or pass the "
            "folder that holds them as the dataset root.")


def check_files(dataset: str, root: Path, items: Sequence[Item], url: str,
                allow_missing: bool = False, show: int = 10) -> tuple[list[Item], dict[str, int]]:
    """Check that every item's audio file exists and is not empty.

    Returns ``(items that have their file, counts)``. Missing files raise
    :class:`DatasetError` listing the first ``show`` of them unless ``allow_missing``;
    empty (0-byte) files are always dropped and counted (some public archives ship a few).
    """
    present, missing, empty = [], [], []
    for it in items:
        try:
            size = it.path.stat().st_size
        except FileNotFoundError:
            missing.append(it)
            continue
        (present if size > 0 else empty).append(it)
    if missing and not allow_missing:
        listing = "\n  ".join(str(it.path) for it in missing[:show])
        more = f"\n  ... and {len(missing) - show} more" if len(missing) > show else ""
        raise DatasetError(
            f"{dataset}: {len(missing)} of {len(items)} audio files are missing under {root}:\n"
            f"  {listing}{more}\nDownload the audio from {url} and unpack it there (or pass "
            "allow_missing=True to probe on the files that are present).")
    return present, {"missing": len(missing), "empty": len(empty)}


def layout_identity(name: str, version: str, root: Path, items: Sequence[Item],
                    annotation_files: Iterable[Path], options: Mapping[str, Any],
                    audio_root: Path | None = None) -> str:
    """Identity of a dataset loaded from a canonical layout.

    Hashes the annotation files' bytes and, per item, id, audio path relative to
    ``audio_root`` (default ``root``), file size, split and labels - not the audio bytes
    (reading 50 GB of audio to name a dataset would be too slow); ``Item.content_hash`` is
    left for the cache stage to fill. Paths are relative, so the identity does not depend on
    where the dataset lives.
    """
    def rel(path: Path, base: Path) -> str:
        return path.relative_to(base).as_posix() if path.is_relative_to(base) else path.name

    base = (audio_root or root).resolve()
    ann = {rel(Path(p), root): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in annotation_files}
    files = []
    for it in items:
        size = it.path.stat().st_size if it.path.exists() else -1
        files.append([it.id, rel(it.path, base), size, it.split,
                      {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(it.labels.items())}])
    return identity_of({"loader": name, "version": version, "annotations": ann,
                        "files": files, "options": dict(options)})


def describe(counts: Mapping[str, int], items: Sequence[Item], extra: str = "") -> str:
    """One-line summary: items per split plus dropped-file counts."""
    per_split = ", ".join(f"{s} {sum(it.split == s for it in items)}" for s in SPLITS)
    dropped = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    return f"{len(items)} items ({per_split})" + (f"; dropped: {dropped}" if dropped else "") + \
        (f"; {extra}" if extra else "")
