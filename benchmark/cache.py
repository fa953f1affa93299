"""Content-addressed artefact cache.

Every stage artefact (latents, decoded audio, metric values, probe results) is stored under a
key that hashes everything it depends on: codec identity (name + config + weights hash),
stage settings and the audio content hash. A re-run therefore recomputes nothing that is
unchanged, and a killed run resumes from the last finished item. Writes are atomic
(temp file + rename), so an interrupted write never leaves a corrupt artefact.

Layout: ``<root>/artifacts/<stage>/<key[:2]>/<key>.npz`` (arrays) and ``.json`` (values).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.provenance import atomic_write, json_id

cache_key = json_id  # a key is the content id of everything the artefact depends on


class ArtifactCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def _path(self, stage: str, key: str, suffix: str) -> Path:
        return self.root / "artifacts" / stage / key[:2] / f"{key}{suffix}"

    # -- arrays -----------------------------------------------------------------------------
    def has_arrays(self, stage: str, key: str) -> bool:
        return self._path(stage, key, ".npz").exists()

    def load_arrays(self, stage: str, key: str) -> dict[str, np.ndarray] | None:
        path = self._path(stage, key, ".npz")
        if not path.exists():
            self.misses += 1
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                out = {k: data[k] for k in data.files}
        except Exception:  # a damaged artefact is recomputed, never trusted
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        return out

    def save_arrays(self, stage: str, key: str, **arrays: np.ndarray) -> None:
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        atomic_write(self._path(stage, key, ".npz"), buf.getvalue())

    # -- JSON values ------------------------------------------------------------------------
    def has_value(self, stage: str, key: str) -> bool:
        return self._path(stage, key, ".json").exists()

    def load_value(self, stage: str, key: str) -> Any | None:
        path = self._path(stage, key, ".json")
        if not path.exists():
            self.misses += 1
            return None
        try:
            value = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        return value

    def save_value(self, stage: str, key: str, value: Any) -> None:
        atomic_write(self._path(stage, key, ".json"), json.dumps(value, default=_json_default).encode())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
