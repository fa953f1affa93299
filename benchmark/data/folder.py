"""A plain folder of audio files as a dataset (no labels; every file in split ``test``).

Item ids are paths relative to the root. Used by ``benchmark eval`` and for reconstruction
runs on your own audio (``run reconstruction --dataset folder --dataset-root DIR``).
"""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

from benchmark.data.audio import AUDIO_EXTENSIONS
from benchmark.data.dataset import Dataset, DatasetError, Item, identity_of


def list_audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())


def load_folder(root: Path | None, split: str = "test") -> Dataset:
    if root is None:
        raise DatasetError("dataset 'folder' needs a root: --dataset-root DIR")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    files = list_audio_files(root)
    if not files:
        raise DatasetError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    items = [Item(id=str(p.relative_to(root)), path=p, split=split) for p in files]
    stats = [(str(p.relative_to(root)), p.stat().st_size, int(p.stat().st_mtime)) for p in files]
    return Dataset(name="folder", identity=identity_of(stats), root=root, items=items,
                   sample_rate=_uniform_rate(files))


def _uniform_rate(files: list[Path]) -> int | None:
    """The files' common sample rate, or None if they differ (or some cannot be read)."""
    rates = set()
    for path in files:
        try:
            rates.add(sf.info(str(path)).samplerate)
        except Exception:  # unreadable files are reported per item by the pipeline
            continue
    return rates.pop() if len(rates) == 1 else None
