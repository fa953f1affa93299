"""Dataset registry: name -> ``"module:function"`` loader, imported lazily.

Every loader has the signature ``load(root: Path | None, **options) -> Dataset``. ``root`` is
the dataset's canonical folder (for the built-in dataset: the cache folder to generate into).
A missing or incomplete dataset raises :class:`benchmark.data.dataset.DatasetError` listing the
missing files and where to get them.

:func:`describe_dataset` answers "what would loading find and compute?" without computing it
(for ``--dry-run``): through a planning route in :data:`PLANNERS` (the built-in dataset plans
its items and looks at its cache, rendering nothing), or by calling a loader whose listing is
cheap (:data:`CHEAP_LISTING`: annotation files and file sizes, no audio decoded or hashed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark.data.dataset import Dataset, DatasetError, DatasetPlan
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
    "musiccaps": "benchmark.data.musiccaps:load_musiccaps",
}


def available_datasets() -> list[str]:
    return sorted(DATASETS)


def load_dataset(name: str, root: str | Path | None = None, **options: Any) -> Dataset:
    """Load dataset ``name`` (registry name or ``"module:function"``) from ``root``."""
    loader = resolve(DATASETS, name, "dataset", DatasetError)
    return loader(Path(root) if root is not None else None, **options)


#: name -> planning route ``describe(root, **options) -> DatasetPlan`` taking the loader's options.
PLANNERS: dict[str, str] = {
    "builtin": "benchmark.data.builtin:describe_builtin",
    "folder": "benchmark.data.folder:describe_folder",
}
#: Loaders whose listing reads only annotation files and file sizes (no audio decoded or hashed):
#: loading them is their plan.
CHEAP_LISTING = frozenset({"magnatagatune", "mtg_jamendo", "giantsteps_key", "beatport_key", "nsynth", "tinysol",
                           "musiccaps"})
NO_PLAN = "dataset listing not available without loading"


def describe_dataset(name: str, root: str | Path | None = None, **options: Any) -> DatasetPlan:
    """What ``load_dataset(name, root, **options)`` would find and compute, computing none of it.

    Renders, decodes, hashes (audio) and writes nothing. A dataset that loading would reject
    (missing files, bad options, FluidSynth missing) gives a plan with status ``unavailable``
    and the :class:`DatasetError` message as ``problem``, so a dry run can list every problem;
    a loader without a planning route gives status ``unknown`` (:data:`NO_PLAN`).
    """
    root = Path(root) if root is not None else None
    try:
        if name in PLANNERS:
            return resolve(PLANNERS, name, "dataset planner", DatasetError)(root, **options)
        loader = resolve(DATASETS, name, "dataset", DatasetError)
        if name in CHEAP_LISTING:
            return DatasetPlan.of(loader(root, **options),
                                  work="nothing to compute (read the annotations and listed the files)")
    except DatasetError as exc:
        return DatasetPlan(name=name, status="unavailable", work="loading fails", root=root, problem=str(exc))
    return DatasetPlan(name=name, status="unknown", work=NO_PLAN, root=root)
