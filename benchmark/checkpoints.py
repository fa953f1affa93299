"""Trained models: one checkpoints folder, one listing, one way to name a checkpoint.

Every model trained by the suite, whether by ``python -m benchmark train`` or by ``run`` (a
codec with a ``train:`` section), is a run folder in ONE place, :func:`default_checkpoints_dir`
(``<cache>/checkpoints``, the cache being ``$BENCHMARK_CACHE`` or ``~/.cache/m2l-benchmark``)::

    <cache>/checkpoints/
      music2latent-cpu-1a2b3c4d/      best.pt  best.json  last.pt  config.yaml  *_log.csv ...
      spectral_ae-cpu-5e6f7a8b/       ...

The folder's name is the model's **short name** ``<codec>-<preset>-<hash8>``
(:func:`short_name`), ``hash8`` being the first 8 hex digits of the run hash, a hash of the
resolved training config, the data identity and the validation protocol. The same recipe on the
same data always gets the same name, and any change to either gets another one; so ``run``,
which trains into the same folder (``<its cache>/checkpoints``), reuses a model that ``train``
made from the same data, and vice versa (the trainer returns a finished run at once).

``best.json``, written when a run finishes, is the sidecar of ``best.pt`` that the listing reads:
codec, preset, steps, training time, the validation metric that selected ``best.pt`` and its
value. Only finished runs are listed (an interrupted run has no ``best.json``; resume it with
``train --resume``).

Wherever a checkpoint is accepted (``eval --codec music2latent --codec-option
checkpoint=NAME``, a run config's ``options: {checkpoint: NAME}``), NAME is a file path, a run
folder, or the short name of a listed model (:func:`resolve_checkpoint`);
``python -m benchmark models`` lists the names.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import re
from pathlib import Path
from typing import Any

from benchmark.errors import BenchmarkError

__all__ = ["CheckpointError", "ModelEntry", "CHECKPOINT_FILE", "RECORD_FILE",
           "default_checkpoints_dir", "short_name", "list_models", "resolve_checkpoint"]

#: Weights file of a run folder that evaluation uses (selected by the validation metric).
CHECKPOINT_FILE = "best.pt"
#: Completion record of a run folder (the sidecar of ``best.pt``).
RECORD_FILE = "best.json"


class CheckpointError(BenchmarkError, ValueError):
    """A checkpoint name or path that does not lead to a trained model; the message lists the
    trained models that do."""


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One trained model of a checkpoints folder.

    name: short name ``<codec>-<preset>-<hash8>`` (usable wherever a checkpoint is accepted).
    codec: codec (training-task) name. path: its ``best.pt``. preset: training preset.
    steps: optimiser steps done. train_seconds: optimiser wall time over all sessions (s).
    trained_at: when the run finished (ISO 8601, UTC). metric, value, higher_is_better: the
    validation metric that selected ``best.pt`` and its value (None if never validated).
    best_step: step of ``best.pt``. run: full run hash. data: training data description.
    """

    name: str
    codec: str
    path: Path
    preset: str
    steps: int | None = None
    train_seconds: float | None = None
    trained_at: str | None = None
    metric: str | None = None
    value: float | None = None
    higher_is_better: bool | None = None
    best_step: int | None = None
    run: str = ""
    data: str = ""

    @property
    def run_dir(self) -> Path:
        return self.path.parent


def default_checkpoints_dir() -> Path:
    """``<cache>/checkpoints``: where ``train`` and ``run`` put trained models."""
    from benchmark.config import default_cache_dir

    return default_cache_dir() / "checkpoints"


def short_name(codec: str, preset: str, run_id: str) -> str:
    """``<codec>-<preset>-<hash8>``: the run folder's name and the model's short name.

    Characters other than letters, digits, ``.``, ``_`` and ``-`` (e.g. the ``:`` of a
    plugin's import path) become ``_`` so that the name is a valid folder name.
    """
    if len(run_id) < 8:
        raise ValueError(f"run id {run_id!r} is shorter than 8 characters")
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{codec}-{preset}-{run_id[:8]}")


def list_models(folder: str | Path | None = None) -> list[ModelEntry]:
    """The finished training runs in ``folder`` (default :func:`default_checkpoints_dir`),
    sorted by codec, preset and name. A missing folder has none; unreadable records are
    skipped."""
    root = Path(folder).expanduser() if folder is not None else default_checkpoints_dir()
    if not root.is_dir():
        return []
    entries = []
    for record_path in sorted(root.glob(f"*/{RECORD_FILE}")):
        entry = _entry(record_path)
        if entry is not None:
            entries.append(entry)
    return sorted(entries, key=lambda e: (e.codec, e.preset, e.name))


def resolve_checkpoint(name_or_path: str | Path, folder: str | Path | None = None,
                       codec: str | None = None) -> Path:
    """The checkpoint file that ``name_or_path`` means.

    name_or_path: an existing file (returned as is), a run folder (its ``best.pt``), or the
        short name of a model listed in ``folder`` (default :func:`default_checkpoints_dir`).
    codec: if given, a short name must belong to a model of this codec.

    Raises :class:`CheckpointError` naming the trained models otherwise.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if (path / CHECKPOINT_FILE).is_file():
            return path / CHECKPOINT_FILE
        raise CheckpointError(f"checkpoint {str(name_or_path)!r} is a folder without {CHECKPOINT_FILE}; "
                              "is it a finished training run?")
    root = Path(folder).expanduser() if folder is not None else default_checkpoints_dir()
    models = list_models(root)
    matches = [m for m in models if m.name == str(name_or_path)]
    if len(matches) > 1:
        raise CheckpointError(f"short name {str(name_or_path)!r} is ambiguous in {root}: "
                              f"{', '.join(str(m.path) for m in matches)}; pass the path")
    if matches:
        model = matches[0]
        if codec is not None and model.codec != codec:
            raise CheckpointError(f"{model.name} is a {model.codec} model, not a {codec} one; use it "
                                  f"with the {model.codec} codec")
        if not model.path.is_file():
            raise CheckpointError(f"{model.name}: {model.path} is missing; train it again")
        return model.path
    known = [m.name for m in models if codec is None or m.codec == codec]
    what = f"{codec} models" if codec else "models"
    listing = (f"trained {what} in {root}: {', '.join(known)}" if known else
               f"no trained {what} in {root} yet; train one with `python -m benchmark train "
               f"--codec {codec or 'music2latent'} --preset smoke|cpu|paper`")
    text = str(name_or_path)
    if "/" in text or "\\" in text or path.suffix in (".pt", ".pth", ".ckpt"):  # meant as a path
        raise CheckpointError(f"checkpoint {path} not found (put a finished run's {CHECKPOINT_FILE} there, or "
                              f"pass the run's folder or short name); {listing} (see `python -m benchmark models`)")
    raise CheckpointError(f"checkpoint {text!r} is neither a file nor the short name of a trained "
                          f"model; {listing} (see `python -m benchmark models`)")


def _entry(record_path: Path) -> ModelEntry | None:
    try:
        record: dict[str, Any] = json.loads(record_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    codec, preset, run = record.get("codec"), record.get("preset"), record.get("run")
    if not (isinstance(codec, str) and isinstance(preset, str) and isinstance(run, str) and len(run) >= 8):
        return None
    best = record.get("best") or {}
    trained_at = record.get("finished_at")
    if trained_at is None:  # records written before finished_at was stored
        mtime = record_path.stat().st_mtime
        trained_at = _dt.datetime.fromtimestamp(mtime, _dt.timezone.utc).isoformat(timespec="seconds")
    return ModelEntry(
        name=record.get("name") or short_name(codec, preset, run), codec=codec,
        path=record_path.parent / CHECKPOINT_FILE, preset=preset,
        steps=_opt(int, record.get("train_steps")), train_seconds=_opt(float, record.get("train_seconds")),
        trained_at=trained_at, metric=best.get("metric"), value=_opt(float, best.get("value")),
        higher_is_better=best.get("higher_is_better"), best_step=_opt(int, best.get("step")),
        run=run, data=str(record.get("data", "")))


def _opt(kind: type, value: Any) -> Any:
    try:
        return None if value is None else kind(value)
    except (TypeError, ValueError):
        return None
