"""Tidy results store with provenance: the one schema that ``run`` and ``eval`` both write.

- ``results.csv``: one row per codec x dataset x split (x item kind: ``subset``) x task/metric x
  head x seed (or aggregate), each carrying its provenance: codec id and weights hash, dataset identity, metric
  card (unit, direction, convention, implementation, version), ``n`` and ``n_failed``, the
  settings the value depends on, config hash, git commit, hardware and time.
- ``items.csv``: per-item values with status (``ok``/``nan``/``error``), the reason, the
  segments scored, the seconds, what alignment padded or cut, and (codecs with a real
  bitstream: Opus, MP3) the bitrate obtained on the item in kbit/s.
- ``segments.csv``: per-segment values of items scored in several segments.
- ``errors.csv``: one row per failed item/stage with the message.
All of them are written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark.provenance import git_commit, hardware, now, write_csv

RESULT_COLUMNS = (
    "run", "codec", "codec_label", "codec_id", "weights_id", "dataset", "dataset_id", "split", "subset",
    "stage", "task", "metric", "representation", "head", "pooling", "seed",
    "value", "std", "ci_low", "ci_high", "n", "n_failed", "unit", "higher_is_better",
    "convention", "implementation", "metric_version", "settings",
    "config_hash", "git_commit", "hardware", "timestamp",
)
ITEM_COLUMNS = ("run", "codec_label", "codec_id", "dataset_id", "split", "item", "metric", "value", "status",
                "note", "segments", "seconds", "sample_rate", "padded_samples", "cut_samples", "kbps")
SEGMENT_COLUMNS = ("run", "codec_label", "codec_id", "dataset_id", "split", "item", "segment", "samples",
                   "metric", "value")
ERROR_COLUMNS = ("run", "codec_label", "stage", "item", "path", "error")

__all__ = ["ResultsStore", "git_commit", "hardware", "write_csv", "RESULT_COLUMNS", "ITEM_COLUMNS",
           "SEGMENT_COLUMNS", "ERROR_COLUMNS"]


class ResultsStore:
    """Collects rows for one run and writes them atomically under ``run_dir``."""

    def __init__(self, run_dir: Path, run: str, config_hash: str) -> None:
        self.run_dir = Path(run_dir)
        self.provenance = {"run": run, "config_hash": config_hash, "git_commit": git_commit(),
                           "hardware": hardware()}
        self.rows: list[dict[str, Any]] = []
        self.items: list[dict[str, Any]] = []
        self.segments: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []

    def add(self, **row: Any) -> None:
        row = {**self.provenance, "timestamp": now(), **row}
        unknown = set(row) - set(RESULT_COLUMNS)
        if unknown:
            raise KeyError(f"unknown result columns {sorted(unknown)}")
        self.rows.append(row)

    def add_item(self, **row: Any) -> None:
        self.items.append({"run": self.provenance["run"], **row})

    def add_segment(self, **row: Any) -> None:
        self.segments.append({"run": self.provenance["run"], **row})

    def add_error(self, codec_label: str, stage: str, item: str, path: str, error: str) -> None:
        self.errors.append({"run": self.provenance["run"], "codec_label": codec_label, "stage": stage,
                            "item": item, "path": path, "error": error})

    def write(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_csv(self.run_dir / "results.csv", RESULT_COLUMNS, self.rows)
        write_csv(self.run_dir / "items.csv", ITEM_COLUMNS, self.items)
        write_csv(self.run_dir / "errors.csv", ERROR_COLUMNS, self.errors)
        if self.segments:
            write_csv(self.run_dir / "segments.csv", SEGMENT_COLUMNS, self.segments)
