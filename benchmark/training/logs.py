"""Training logs: CSV tables (always) and TensorBoard events (if installed).

``train_log.csv``: one row per logged step (``step``, ``time_s``, ``lr``, ``loss``,
``grad_norm``, then the task's own values). ``valid_log.csv``: one row per validation
(``step`` and the metrics). On resume, rows after the resumed step are dropped first, so a
run killed between a log and a checkpoint leaves no duplicate steps.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)

__all__ = ["CsvLog", "TrainLogger"]

_FIRST = ("step", "time_s", "lr", "loss", "grad_norm")


class CsvLog:
    """Append-only CSV whose header grows when new keys appear (the file is then rewritten)."""

    def __init__(self, path: Path, truncate_after: int | None = None) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        if self.path.exists() and truncate_after is None:  # a fresh run replaces old logs
            self.path.unlink()
        elif self.path.exists():
            with open(self.path, newline="") as fh:
                self.rows = [r for r in csv.DictReader(fh) if int(float(r["step"])) <= truncate_after]
            self._rewrite()
        self.header = self._header_for(self.rows)

    @staticmethod
    def _header_for(rows: list[Mapping[str, Any]]) -> list[str]:
        keys: list[str] = []
        for row in rows:
            keys += [k for k in row if k not in keys]
        first = [k for k in _FIRST if k in keys]
        return first + sorted(k for k in keys if k not in first)

    def _rewrite(self) -> None:
        header = self._header_for(self.rows)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=header, lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.rows)
        tmp.replace(self.path)
        self.header = header

    def append(self, row: Mapping[str, Any]) -> None:
        row = {k: _fmt(v) for k, v in row.items()}
        self.rows.append(row)
        if set(row) - set(self.header) or not self.path.exists():
            self._rewrite()
            return
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.header, lineterminator="\n").writerow(row)


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return value


class TrainLogger:
    """CSV + TensorBoard logging of a run in ``out_dir`` (create it on rank 0 only)."""

    def __init__(self, out_dir: Path, resume_step: int | None = None, tensorboard: bool = True) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.train = CsvLog(out_dir / "train_log.csv", truncate_after=resume_step)
        self.valid = CsvLog(out_dir / "valid_log.csv", truncate_after=resume_step)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional dependency ("train" extra)
                log.info("tensorboard not installed; logging to CSV only")
            else:
                self.writer = SummaryWriter(str(out_dir / "tensorboard"),
                                            purge_step=None if resume_step is None else resume_step + 1)

    def log_train(self, step: int, values: Mapping[str, float]) -> None:
        self.train.append({"step": step, **values})
        if self.writer is not None:
            for key, value in values.items():
                if key != "time_s":
                    self.writer.add_scalar(f"train/{key}", value, step)

    def log_valid(self, step: int, metrics: Mapping[str, float]) -> None:
        self.valid.append({"step": step, **metrics})
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(f"valid/{key}", value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
