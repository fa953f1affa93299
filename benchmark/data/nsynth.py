"""NSynth: single notes with instrument family and pitch labels, official splits.

Official download: https://magenta.tensorflow.org/datasets/nsynth (the json/wav archives
``nsynth-train.jsonwav.tar.gz``, ``nsynth-valid...``, ``nsynth-test...``; CC BY 4.0).

Layout under ``root`` (assumptions)
-----------------------------------
``nsynth-{train,valid,test}/examples.json`` and ``nsynth-{split}/audio/<note_str>.wav``
(4 s, 16 kHz, mono). ``examples.json`` maps ``note_str`` (``"keyboard_acoustic_004-060-025"``)
to an object with at least ``pitch`` (MIDI, int) and ``instrument_family_str`` (one of bass,
brass, flute, guitar, keyboard, mallet, organ, reed, string, synth_lead, vocal). The
official valid and test sets use instruments absent from train.

Labels
------
- ``instrument``: ``instrument_family_str`` (the usual 11-way NSynth instrument task);
- ``pitch``: ``pitch``, kept only inside ``pitch_range`` (default 21..108, the piano range of
  the standard NSynth pitch probe); outside it the item keeps its instrument label only.

Item ids are the ``note_str`` values. The train split has 289,205 notes: use
``max_per_split`` (a stable hash choice) for quick runs, e.g. ``{"train": 5000}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

from benchmark.data.canonical import (check_files, describe, layout_identity, limit_per_split, require_paths,
                                      resolve_root)
from benchmark.data.dataset import SPLITS, Dataset, DatasetError, Item

NAME = "nsynth"
VERSION = "1"
URL = "https://magenta.tensorflow.org/datasets/nsynth"


def load_nsynth(root: Path | None, *, splits: Sequence[str] = SPLITS,
                pitch_range: tuple[int, int] | None = (21, 108), families: Sequence[str] | None = None,
                allow_missing: bool = False,
                max_per_split: int | Mapping[str, int] | None = None) -> Dataset:
    """Load NSynth from ``root`` (see the module docstring).

    Parameters
    ----------
    splits: which of ``train``/``valid``/``test`` to load.
    pitch_range: inclusive MIDI range that keeps a ``pitch`` label (``None``: every pitch).
    families: keep only these instrument families (``None``: all).
    allow_missing: skip notes whose wav is missing instead of raising.
    max_per_split: keep at most this many notes per split (stable hash choice).
    """
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise DatasetError(f"{NAME}: unknown split(s) {unknown}; use {SPLITS}")
    root = resolve_root(NAME, root, URL, "nsynth-train/, nsynth-valid/ and nsynth-test/")
    annotation_files = [root / f"nsynth-{s}" / "examples.json" for s in splits]
    require_paths(NAME, root, annotation_files, URL, "download the json/wav archives and untar them into the root")
    items = []
    for split, path in zip(splits, annotation_files):
        try:
            examples = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{NAME}: {path} is not valid JSON ({exc}); re-download it from {URL}") from None
        for note_str, ex in sorted(examples.items()):
            try:
                family, pitch = str(ex["instrument_family_str"]), int(ex["pitch"])
            except (KeyError, TypeError, ValueError):
                raise DatasetError(f"{NAME}: {path}: note {note_str!r} lacks instrument_family_str or an integer "
                                   "pitch") from None
            if families is not None and family not in families:
                continue
            labels = {"instrument": family}
            if pitch_range is None or pitch_range[0] <= pitch <= pitch_range[1]:
                labels["pitch"] = pitch
            items.append(Item(id=note_str, path=(path.parent / "audio" / f"{note_str}.wav").resolve(),
                              split=split, labels=labels))
    items = limit_per_split(items, max_per_split)
    items, counts = check_files(NAME, root, items, URL, allow_missing)
    options = {"splits": list(splits), "pitch_range": list(pitch_range) if pitch_range else None,
               "families": sorted(families) if families is not None else None, "max_per_split": max_per_split}
    return Dataset(name=NAME, identity=layout_identity(NAME, VERSION, root, items, annotation_files, options),
                   root=root, items=items, sample_rate=16000,
                   description=f"NSynth instrument family / pitch {pitch_range}: {describe(counts, items)}")
