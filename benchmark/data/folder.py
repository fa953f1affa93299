"""A plain folder of audio files as a dataset (no labels; every file in split ``test``).

Item ids are paths relative to the root. Used by ``benchmark eval`` and for reconstruction
runs on your own audio (``run reconstruction --dataset folder --dataset-root DIR``).
"""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

from benchmark.data.audio import AUDIO_EXTENSIONS
from benchmark.data.dataset import Dataset, DatasetError, DatasetPlan, Item, identity_of


def list_audio_files(root: Path) -> list[Path]:
    """Audio files under ``root`` (recursive, sorted by relative path; hidden files skipped).

    Broken symbolic links with an audio extension are listed too: reading them fails with an
    error row naming the link, instead of the file silently disappearing from the evaluation.
    """
    root = Path(root)
    files = [p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS
             and (p.is_file() or (p.is_symlink() and not p.exists()))
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _listing(root: Path | None, split: str) -> Dataset:
    """The folder's items and identity (from names, sizes and modification times); no file is opened."""
    if root is None:
        raise DatasetError("dataset 'folder' needs a root: --dataset-root DIR")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    files = list_audio_files(root)
    if not files:
        raise DatasetError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    items = [Item(id=p.relative_to(root).as_posix(), path=p, split=split) for p in files]
    stats = [(p.relative_to(root).as_posix(), p.lstat().st_size, int(p.lstat().st_mtime)) for p in files]
    return Dataset(name="folder", identity=identity_of(stats), root=root, items=items)


def load_folder(root: Path | None, split: str = "test") -> Dataset:
    dataset = _listing(root, split)
    dataset.sample_rate = _uniform_rate([it.path for it in dataset.items])
    return dataset


def describe_folder(root: Path | None, split: str = "test") -> DatasetPlan:
    """What :func:`load_folder` would find: the listing without reading any file's header."""
    return DatasetPlan.of(_listing(root, split), work="lists the audio files (no audio read)")


def _uniform_rate(files: list[Path]) -> int | None:
    """The files' common sample rate, or None if they differ (or some cannot be read)."""
    rates = set()
    for path in files:
        try:
            rates.add(sf.info(str(path)).samplerate)
        except Exception:  # unreadable files are reported per item by the pipeline
            continue
    return rates.pop() if len(rates) == 1 else None
