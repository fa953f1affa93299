"""Dataset registry: name -> ``"module:function"`` loader, imported lazily.

Every loader has the signature ``load(root: Path | None, **options) -> Dataset``. ``root`` is
the dataset's canonical folder (for the built-in dataset: the cache folder to generate into).
A missing or incomplete dataset raises :class:`benchmark.data.dataset.DatasetError` listing the
missing files and where to get them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark.data.dataset import Dataset, DatasetError
from benchmark.lazy import resolve

DATASETS: dict[str, str] = {
    "builtin": "benchmark.data.builtin:load_builtin",
    "folder": "benchmark.data.folder:load_folder",
    "magnatagatune": "benchmark.data.magnatagatune:load_magnatagatune",
    "mtg_jamendo": "benchmark.data.mtg_jamendo:load_mtg_jamendo",
    "giantsteps_key": "benchmark.data.giantsteps:load_giantsteps_key",
    "beatport_key": "benchmark.data.beatport:load_beatport_key",
    "nsynth": "benchmark.data.nsynth:load_nsynth",
    "tinysol": "benchmark.data.tinysol:load_tinysol",
}


def available_datasets() -> list[str]:
    return sorted(DATASETS)


def load_dataset(name: str, root: str | Path | None = None, **options: Any) -> Dataset:
    """Load dataset ``name`` (registry name or ``"module:function"``) from ``root``."""
    loader = resolve(DATASETS, name, "dataset", DatasetError)
    return loader(Path(root) if root is not None else None, **options)
