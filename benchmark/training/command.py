"""``python -m benchmark train`` and the Python entry point :func:`train`.

CLI::

    python -m benchmark train --codec music2latent --preset smoke|cpu|paper
        [--data builtin|DIR|jamendo:ROOT] [--steps N] [--batch-size B] [--out DIR]
        [--resume] [--device cpu|cuda] [--set key=value ...]

Multi-GPU: ``torchrun --nproc_per_node 4 -m benchmark train --device cuda ...`` (the global
batch is split over the processes; only rank 0 logs and writes).

A run folder holds ``last.pt``, ``best.pt`` (+ ``best.json``, the completion record),
``train_log.csv``, ``valid_log.csv``, ``tensorboard/`` and ``config.yaml``. Its name is
``<codec>-<preset>-<hash8>`` where the hash covers the resolved training config, the model
config overrides and the data identity; a finished run with the same hash is a cache hit and
returns at once. Run folders go to the one checkpoints folder, ``<cache>/checkpoints``
(:mod:`benchmark.checkpoints`), where ``python -m benchmark models`` lists them and codecs find
them by that short name (``--codec-option checkpoint=music2latent-cpu-1a2b3c4d``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import random
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch
import yaml

from benchmark.checkpoints import default_checkpoints_dir, short_name
from benchmark.data.dataset import Dataset
from benchmark.training.config import TrainConfig, available_train_presets, resolve_train_config
from benchmark.training.data import CropSampler, TrainingData, resolve_training_data
from benchmark.training.distributed import DistContext, init_distributed
from benchmark.training.tasks import available_tasks, build_task
from benchmark.training.trainer import Trainer, TrainResult
from benchmark.training.validation import VALIDATION_VERSION

log = logging.getLogger(__name__)

__all__ = ["add_train_arguments", "train_command", "train", "run_training", "prepare_run",
           "PreparedRun"]


@dataclasses.dataclass
class PreparedRun:
    """Resolved config, data and run folder of a training run (no model built yet).

    run_id: hash of (codec, training config incl. model overrides, data identity, validation
    protocol version).
    """

    codec: str
    preset: str
    config: TrainConfig
    data: TrainingData
    run_id: str
    run_dir: Path

    @property
    def record_path(self) -> Path:
        return self.run_dir / "best.json"

    def finished(self) -> bool:
        """True if ``run_dir`` holds a finished run of exactly this configuration."""
        if not (self.record_path.exists() and (self.run_dir / "best.pt").exists()):
            return False
        try:
            record = json.loads(self.record_path.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        return record.get("run") == self.run_id and record.get("train_steps", -1) >= self.config.steps


def prepare_run(codec: str = "music2latent", preset: str = "cpu", dataset: Dataset | str | Path | None = None,
                out_dir: str | Path | None = None, overrides: Iterable[str] | Mapping[str, Any] | None = None,
                run_dir: str | Path | None = None, **settings: Any) -> PreparedRun:
    """Resolve config and data, and name the run folder (``run_dir``, or
    ``<out_dir>/<codec>-<preset>-<hash8>``, ``out_dir`` defaulting to the checkpoints folder
    :func:`benchmark.checkpoints.default_checkpoints_dir`)."""
    merged = dict(_as_mapping(overrides))
    merged.update(settings)
    config = resolve_train_config(codec, preset, merged)
    data = resolve_training_data(dataset if dataset is not None else "builtin", config.val_fraction, config.seed)
    # The validation protocol picks best.pt, so a run selected under another one is not reused.
    run_id = config.hash(codec, data.identity, f"validation-v{VALIDATION_VERSION}")
    if run_dir is None:
        folder = Path(out_dir if out_dir is not None else default_checkpoints_dir())
        run_dir = folder / short_name(codec, preset, run_id)
    return PreparedRun(codec, preset, config, data, run_id, Path(run_dir))


def _prepare_in_order(ctx: DistContext, *args: Any, **kwargs: Any) -> PreparedRun:
    """Rank 0 resolves the data first (it may generate the built-in dataset), then the others."""
    if not ctx.is_main:
        ctx.barrier()
    try:
        return prepare_run(*args, **kwargs)
    finally:
        if ctx.is_main:
            ctx.barrier()


def _as_mapping(overrides: Iterable[str] | Mapping[str, Any] | None) -> Mapping[str, Any]:
    from benchmark.training.config import parse_overrides
    return parse_overrides(overrides)


def run_training(run: PreparedRun, device: str | torch.device | None = None, resume: bool | str = "auto",
                 progress: bool | None = None, max_steps: int | None = None,
                 ctx: DistContext | None = None) -> TrainResult:
    """Build the task and train ``run`` (DDP if launched by torchrun).

    resume: ``"auto"`` continues a compatible unfinished ``last.pt`` if there is one; True
    requires one; False refuses to overwrite an unfinished run.
    ctx: an already joined process group (default: join the torchrun one, if any, and leave
    it at the end). max_steps: stop early (for tests; the run stays resumable).
    """
    config = run.config
    if progress is not None:
        config.progress = progress
    owns_ctx = ctx is None
    ctx = ctx or init_distributed(device)
    try:
        last = run.run_dir / "last.pt"
        if resume is True and not last.exists():
            raise FileNotFoundError(f"--resume: no {last} to resume from; drop --resume to start a "
                                    "new run")
        if resume is False and last.exists():
            raise FileExistsError(f"{run.run_dir} holds an unfinished run (last.pt); pass --resume to "
                                  "continue it, or choose another --out folder")
        _seed_everything(config.seed)
        task = build_task(run.codec, config, ctx.device)
        sampler = CropSampler(run.data.train, task.sample_rate, task.crop_samples, seed=config.seed,
                              rms_threshold=config.rms_threshold, memory_budget_mb=config.memory_budget_mb)
        val_audio = None
        if ctx.is_main and config.val_crops > 0:
            val_sampler = CropSampler(run.data.valid, task.sample_rate, task.crop_samples,
                                      seed=config.seed, rms_threshold=config.rms_threshold,
                                      memory_budget_mb=config.memory_budget_mb / 4, name="valid")
            val_audio = val_sampler.fixed_crops(config.val_crops, config.val_seed)
        extra = {"preset": run.preset, "data": run.data.description, "data_identity": run.data.identity,
                 "train_files": len(sampler), "train_seconds_of_audio": round(sampler.total_seconds, 1)}
        trainer = Trainer(task, config, sampler, run.run_dir, val_audio=val_audio, ctx=ctx,
                          run_id=run.run_id, extra=extra)
        if last.exists() and resume:
            trainer.load(last)
            log.info("resuming %s from step %d", run.run_dir, trainer.step)
        if ctx.is_main:
            run.run_dir.mkdir(parents=True, exist_ok=True)
            _write_yaml(run.run_dir / "config.yaml", {
                "codec": run.codec, "preset": run.preset, "run": run.run_id, "train": config.to_dict(),
                "model": task.config_dict(), "data": {"description": run.data.description,
                                                      "identity": run.data.identity},
                "world_size": ctx.world_size, "device": str(ctx.device)})
        result = trainer.fit(max_steps=max_steps)
        if ctx.is_main and result.step >= config.steps:
            _write_record(run, result, trainer.elapsed)
        return result
    finally:
        if owns_ctx:
            ctx.close()


def train(codec: str = "music2latent", preset: str = "cpu", dataset: Dataset | str | Path | None = None,
          out_dir: str | Path | None = None, overrides: Iterable[str] | Mapping[str, Any] | None = None,
          device: str | None = None, resume: bool | str = "auto", progress: bool | None = None,
          run_dir: str | Path | None = None, **settings: Any) -> Path:
    """Train ``codec`` with training preset ``preset`` and return the best checkpoint path.

    Parameters
    ----------
    codec: training-task name (``music2latent``; baselines register theirs).
    preset: training preset (``smoke``, ``cpu``, ``paper``).
    dataset: a :class:`Dataset` (train split trains, valid validates), ``"builtin"``, a folder
        path or ``"jamendo:ROOT"``; default ``"builtin"``.
    out_dir: parent folder; the run goes to ``<out_dir>/<codec>-<preset>-<hash8>``
        (default parent: ``<cache>/checkpoints``, where ``benchmark models`` lists it and codecs
        find it by that short name). run_dir: exact run folder instead.
    overrides: ``["lr=3e-4", "model.latent_dim=16"]`` or a mapping; ``**settings`` are more
        overrides (``steps=100, batch_size=4``).
    device: ``cpu``, ``cuda`` or None (CUDA if available).
    resume: ``"auto"`` (continue an unfinished run of the same config), True, or False.

    A finished run with the same configuration and data returns immediately (cache hit).
    """
    ctx = init_distributed(device)
    try:
        run = _prepare_in_order(ctx, codec, preset, dataset, out_dir, overrides, run_dir, **settings)
        best = run.run_dir / "best.pt"
        if run.finished():
            log.info("training cache hit: %s", best)
            return best
        run_training(run, resume=resume, progress=progress, ctx=ctx)
        return best
    finally:
        ctx.close()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _write_yaml(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)


def _write_record(run: PreparedRun, result: TrainResult, train_seconds: float) -> None:
    record = {"name": short_name(run.codec, run.preset, run.run_id), "run": run.run_id,
              "codec": run.codec, "preset": run.preset,
              "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "train_steps": result.step, "train_seconds": round(train_seconds, 3),
              "wall_seconds_last_session": round(result.seconds, 3),
              "best": result.best, "final_metrics": result.final_metrics,
              "data": run.data.description, "checkpoint": str(result.best_path)}
    initial = _initial_metrics(run.run_dir)
    if initial is not None:
        record["initial_metrics"] = initial
    tmp = run.record_path.with_name(f".{run.record_path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, run.record_path)


def _initial_metrics(run_dir: Path) -> dict[str, float] | None:
    """Step-0 (untrained) validation metrics from ``valid_log.csv`` (survives resumes)."""
    import csv
    path = run_dir / "valid_log.csv"
    if not path.exists():
        return None
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if int(float(row["step"])) == 0:
                return {k: float(v) for k, v in row.items() if k != "step" and v != ""}
    return None


# -- CLI -------------------------------------------------------------------------------------
def _name_hint(run: PreparedRun) -> str:
    """How to use the model by short name, if it is in the default checkpoints folder."""
    if run.run_dir.parent.resolve() != default_checkpoints_dir().resolve():
        return ""
    name = short_name(run.codec, run.preset, run.run_id)
    return (f"\n  short name: {name} (e.g. `eval --codec {run.codec} --codec-option "
            f"checkpoint={name}`)")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` sub-command's options to ``parser``."""
    parser.add_argument("--codec", default="music2latent",
                        help=f"codec to train (trainable: {', '.join(available_tasks())})")
    parser.add_argument("--preset", default="cpu",
                        help="training preset: " + ", ".join(available_train_presets("music2latent"))
                        + " (smoke: seconds; cpu: ~6 min on 2 cores; paper: 800k steps on a GPU)")
    parser.add_argument("--data", default="builtin",
                        help="builtin | a folder of audio files | jamendo:ROOT (MTG-Jamendo layout)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (overrides the preset)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="examples per step over all processes (overrides the preset)")
    parser.add_argument("--out", type=Path, default=None,
                        help="run folder (default: <cache>/checkpoints/<codec>-<preset>-<hash8>, "
                             "listed by `python -m benchmark models`)")
    parser.add_argument("--resume", action="store_true", help="continue the unfinished run in the run folder")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a training setting (lr=3e-4) or a model field (model.latent_dim=16)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def train_command(args: argparse.Namespace) -> int:
    """Run the ``train`` sub-command; returns the exit status."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings: dict[str, Any] = {}
    if args.steps is not None:
        settings["steps"] = args.steps
    if args.batch_size is not None:
        settings["batch_size"] = args.batch_size
    ctx = None
    try:
        ctx = init_distributed(args.device)
        run = _prepare_in_order(ctx, args.codec, args.preset, args.data, None, args.overrides, args.out,
                                **settings)
        if run.finished():
            if ctx.is_main:
                print(f"already trained (cache hit): {run.run_dir / 'best.pt'}{_name_hint(run)}")
            return 0
        result = run_training(run, resume=True if args.resume else False,
                              progress=False if args.no_progress else None, ctx=ctx)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if ctx is not None:
            ctx.close()
    if ctx.is_main:
        print(f"trained {result.step} steps in {result.seconds:.1f} s -> {result.best_path}{_name_hint(run)}")
        if result.initial_metrics and result.final_metrics:
            for key in result.final_metrics:
                before = result.initial_metrics.get(key)
                print(f"  {key}: {before:.3f} (untrained) -> {result.final_metrics[key]:.3f}"
                      if before is not None else f"  {key}: {result.final_metrics[key]:.3f}")
    return 0
