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

import math
from dataclasses import dataclass, field
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

__all__ = ["ResultsStore", "Agreement", "compare_runs", "TIMING_METRICS", "git_commit", "hardware", "write_csv",
           "RESULT_COLUMNS", "ITEM_COLUMNS",
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


#: Cost metrics measured as wall time: they differ between any two runs and are not compared.
TIMING_METRICS = frozenset({"decode_speed", "encode_speed", "train_seconds"})
_RESULT_KEY = ("codec_label", "subset", "stage", "task", "metric", "representation", "head", "pooling", "seed")
_RESULT_NUMBERS = ("value", "std", "ci_low", "ci_high", "n", "n_failed")
_SCALE_COLUMNS = ("value", "ci_low", "ci_high")  # the size of a row's quantity
_SPREAD_COLUMNS = ("std", "ci_low", "ci_high")  # compared on that size


@dataclass
class Agreement:
    """How far two run folders' numbers are apart (:func:`compare_runs`).

    max_relative: the largest relative difference found. worst: ``(relative, where)``, largest
    first (at most 20). unmatched: rows or items present in one folder only.
    """

    max_relative: float = 0.0
    worst: list[tuple[float, str]] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    compared: int = 0

    def within(self, rtol: float) -> bool:
        return not self.unmatched and self.max_relative <= rtol


def compare_runs(a: str | Path, b: str | Path) -> Agreement:
    """Compare every number of two run folders (``results.csv`` and ``items.csv``), timings aside.

    A row's value is compared relative to its own size; its spread and interval bounds (``std``,
    ``ci_low``, ``ci_high``) relative to the size of the row's quantity (the largest of its value
    and bounds), so that a spread of exactly 0 in one run and 1e-15 in the other is no difference.
    Item values are compared relative to the largest size of that metric for that codec; an
    item's share of a set metric (``fad_contribution``: the metric minus its value without the
    item, a small difference of large numbers) relative to the size of the set metric.
    Rows are matched by codec, subset, stage, task, metric, representation, head, pooling, seed
    (and order among equal keys); items by codec, item and metric.
    """
    for folder in (a, b):
        if not (Path(folder) / "results.csv").is_file():
            raise FileNotFoundError(f"{folder}/results.csv not found; is {folder} a run folder?")
    out = Agreement()
    rows_a, rows_b = _keyed(Path(a) / "results.csv", _RESULT_KEY), _keyed(Path(b) / "results.csv", _RESULT_KEY)
    items_a = _keyed(Path(a) / "items.csv", ("codec_label", "item", "metric"))
    items_b = _keyed(Path(b) / "items.csv", ("codec_label", "item", "metric"))
    found: list[tuple[float, str]] = []
    item_scales: dict[tuple[str, str], float] = {}
    for table in (items_a, items_b, rows_a, rows_b):  # an item's share of a set metric: the metric's size
        for row in table.values():
            x = _number(row.get("value"))
            if x is not None and math.isfinite(x):
                metric = row.get("metric", "") + ("_contribution" if table in (rows_a, rows_b) else "")
                group = (row.get("codec_label", ""), metric)
                item_scales[group] = max(item_scales.get(group, 0.0), abs(x))
    tables = (("row", rows_a, rows_b, _RESULT_NUMBERS), ("item", items_a, items_b, ("value",)))
    for kind, left, right, columns in tables:
        out.unmatched += [f"{kind} {k} only in {a}" for k in left if k not in right]
        out.unmatched += [f"{kind} {k} only in {b}" for k in right if k not in left]
        for key, ra in left.items():
            rb = right.get(key)
            if rb is None or (kind == "row" and ra.get("metric") in TIMING_METRICS):
                continue
            if kind == "row":
                sizes = [_number(r.get(c)) for r in (ra, rb) for c in _SCALE_COLUMNS]
                scale = max([abs(x) for x in sizes if x is not None and math.isfinite(x)] + [0.0])
            else:
                scale = item_scales.get((key[0], key[2]), 0.0)
            for column in columns:
                x, y = _number(ra.get(column)), _number(rb.get(column))
                out.compared += 1
                if x is None or y is None:
                    if ra.get(column) != rb.get(column):
                        found.append((math.inf, f"{kind} {key} {column}: {ra.get(column)!r} vs {rb.get(column)!r}"))
                    continue
                if x == y or (math.isnan(x) and math.isnan(y)):
                    continue
                relative_to_scale = column in _SPREAD_COLUMNS or kind == "item"
                size = max(scale, abs(x), abs(y)) if relative_to_scale else max(abs(x), abs(y))
                found.append((abs(x - y) / size if size > 0 else math.inf, f"{kind} {key} {column}: {x!r} vs {y!r}"))
    found.sort(key=lambda f: -f[0])
    out.worst = found[:20]
    out.max_relative = found[0][0] if found else 0.0
    return out


def _keyed(path: Path, key: tuple[str, ...]) -> dict[tuple, dict[str, str]]:
    import collections
    import csv

    if not path.exists():
        return {}
    seen: collections.Counter = collections.Counter()
    out = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            k = tuple(row.get(c, "") for c in key)
            seen[k] += 1
            out[k + (seen[k],)] = row
    return out


def _number(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return None
