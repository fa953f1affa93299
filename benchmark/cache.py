"""Content-addressed artefact cache.

Every stage artefact (latents, decoded audio, metric values, probe results) is stored under a
key that hashes everything it depends on: codec identity (name + config + weights hash),
stage settings and the audio content hash. A re-run therefore recomputes nothing that is
unchanged, and a killed run resumes from the last finished item. Writes are atomic
(temp file + rename), so an interrupted write never leaves a corrupt artefact.

Layout: ``<root>/artifacts/<stage>/<key[:2]>/<key>.npz`` (arrays) and ``.json`` (values).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np


def cache_key(*parts: Any) -> str:
    """SHA-256 hex key of JSON-serialisable ``parts``."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


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
        _atomic_write(self._path(stage, key, ".npz"), buf.getvalue())

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
        _atomic_write(self._path(stage, key, ".json"), json.dumps(value, default=_json_default).encode())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
