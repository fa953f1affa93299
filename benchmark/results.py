"""Tidy results store with provenance.

``results.csv``: one row per codec x dataset x split x task/metric x head x seed (or aggregate),
each carrying its provenance: codec id and weights hash, dataset identity, metric card
(unit, direction, convention, implementation, version), config hash, git commit, hardware and
time. ``items.csv``: per-item values (for outliers, paired tests, box plots). ``errors.csv``:
one row per failed item/stage with the message. All three are written atomically.
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Iterable

import torch

RESULT_COLUMNS = (
    "run", "codec", "codec_label", "codec_id", "weights_id", "dataset", "dataset_id", "split",
    "stage", "task", "metric", "representation", "head", "pooling", "seed",
    "value", "std", "ci_low", "ci_high", "n", "n_failed", "unit", "higher_is_better",
    "convention", "implementation", "metric_version", "settings",
    "config_hash", "git_commit", "hardware", "timestamp",
)
ITEM_COLUMNS = ("run", "codec_label", "codec_id", "dataset_id", "split", "item", "metric", "value", "note")
ERROR_COLUMNS = ("run", "codec_label", "stage", "item", "path", "error")


def git_commit() -> str:
    """Short commit of the benchmark checkout (``+dirty`` if modified), or ``unknown``."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("+dirty" if dirty else "")) if commit else "unknown"


def hardware() -> str:
    """One-line description of the compute used."""
    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return f"cpu:{platform.processor() or platform.machine()}x{os.cpu_count()} torch{torch.__version__}"


class ResultsStore:
    """Collects rows for one run and writes them atomically under ``run_dir``."""

    def __init__(self, run_dir: Path, run: str, config_hash: str) -> None:
        self.run_dir = Path(run_dir)
        self.provenance = {"run": run, "config_hash": config_hash, "git_commit": git_commit(),
                           "hardware": hardware()}
        self.rows: list[dict[str, Any]] = []
        self.items: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []

    def add(self, **row: Any) -> None:
        row = {**self.provenance, "timestamp": _now(), **row}
        unknown = set(row) - set(RESULT_COLUMNS)
        if unknown:
            raise KeyError(f"unknown result columns {sorted(unknown)}")
        self.rows.append(row)

    def add_item(self, **row: Any) -> None:
        self.items.append({"run": self.provenance["run"], **row})

    def add_error(self, codec_label: str, stage: str, item: str, path: str, error: str) -> None:
        self.errors.append({"run": self.provenance["run"], "codec_label": codec_label, "stage": stage,
                            "item": item, "path": path, "error": error})

    def write(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_csv(self.run_dir / "results.csv", RESULT_COLUMNS, self.rows)
        write_csv(self.run_dir / "items.csv", ITEM_COLUMNS, self.items)
        write_csv(self.run_dir / "errors.csv", ERROR_COLUMNS, self.errors)


def write_csv(path: Path, columns: Iterable[str], rows: Iterable[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
    tmp.replace(path)


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list, tuple)):
        import json
        return json.dumps(value, sort_keys=True, default=str)
    return "" if value is None else value


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
