"""Generic trainer over a :class:`~benchmark.training.tasks.TrainingTask`.

One optimiser step ("step") consumes a global batch of ``config.batch_size`` crops, split
over DDP ranks and then into ``config.grad_accum`` micro-batches; gradients are averaged
over all of them, so the update equals that of one process with the whole batch.

Per step: forward/backward of every micro-batch under autocast (fp16 with a GradScaler on
CUDA by default, bf16 optional, fp32 on CPU); unscale; global grad norm (logged; clipped only
if ``grad_clip`` is set); RAdam step; LR schedule step; EMA update. Every ``val_every`` steps
(and at the start and the end) rank 0 scores the EMA weights on the fixed validation crops,
keeps ``best.pt`` by the task's selection metric, and writes ``last.pt``. A run resumed from
``last.pt`` continues bit for bit as if it had never stopped (on CPU; on GPU up to the
non-determinism of cuDNN kernels): crops and noise are functions of (seed, step, example) and
every piece of state (weights, EMA, optimiser, scaler, schedule, RNGs) is checkpointed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from benchmark.errors import BenchmarkError
from benchmark.training.checkpoint import (FORMAT, capture_rng, git_commit, load_checkpoint,
                                           restore_rng, save_checkpoint)
from benchmark.training.config import TrainConfig
from benchmark.training.data import CropSampler
from benchmark.training.distributed import DistContext
from benchmark.training.logs import TrainLogger
from benchmark.training.optim import ModelEMA, build_optimizer, build_scheduler
from benchmark.training.tasks import Batch, TrainingTask

log = logging.getLogger(__name__)

__all__ = ["Trainer", "TrainResult", "resolve_precision", "RunMismatchError"]


class RunMismatchError(BenchmarkError, RuntimeError):
    """A checkpoint to resume from belongs to a different configuration or data."""


@dataclasses.dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.fit`.

    best_path / last_path: checkpoints. step: steps done. best: best validation record.
    initial_metrics: validation of the untrained model (None if resumed or not validated).
    final_metrics: validation at the last step. seconds: wall time of this call.
    model, ema_model: the trained modules (online and EMA), for in-process use.
    """

    out_dir: Path
    best_path: Path
    last_path: Path
    step: int
    best: dict[str, Any]
    initial_metrics: dict[str, float] | None
    final_metrics: dict[str, float] | None
    seconds: float
    model: nn.Module | None = dataclasses.field(default=None, repr=False)
    ema_model: nn.Module | None = dataclasses.field(default=None, repr=False)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``fp16`` on CUDA, ``fp32`` elsewhere; fp16 on CPU is refused."""
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device (GradScaler); use bf16 or fp32 on CPU")
    return precision


class _LossModule(nn.Module):
    """Makes ``task.loss`` the ``forward`` of a module that owns the model, so that DDP sees
    the forward pass (its gradient hooks and unused-parameter search need it)."""

    def __init__(self, task: TrainingTask) -> None:
        super().__init__()
        self.model = task.model
        self._task = (task,)  # a tuple keeps the task out of the module tree

    def forward(self, audio: torch.Tensor, seeds: torch.Tensor, step: int):  # noqa: D401
        return self._task[0].loss(Batch(audio, seeds), step)


class Trainer:
    """Train ``task`` with ``config`` on crops from ``sampler``.

    Parameters
    ----------
    task: the model and its loss/validation.
    config: optimisation and bookkeeping settings.
    sampler: training crops (deterministic in seed/step/example).
    out_dir: run folder (``last.pt``, ``best.pt``, logs); written by rank 0 only.
    val_audio: fixed validation crops ``[n, samples]`` (None or empty: no validation).
    ctx: DDP context (default: single process on ``task.model``'s device).
    run_id: identity of (config, data); stored in checkpoints and checked on resume.
    extra: JSON-able facts stored in every checkpoint (data description, preset...).
    """

    def __init__(self, task: TrainingTask, config: TrainConfig, sampler: CropSampler, out_dir: str | Path,
                 val_audio: torch.Tensor | None = None, ctx: DistContext | None = None,
                 run_id: str = "", extra: Mapping[str, Any] | None = None) -> None:
        self.task = task
        self.config = config
        self.sampler = sampler
        self.out_dir = Path(out_dir)
        self.val_audio = val_audio if val_audio is not None and len(val_audio) else None
        device = next(task.model.parameters()).device
        self.ctx = ctx or DistContext(device=device)
        self.device = self.ctx.device
        self.run_id = run_id
        self.extra = dict(extra or {})
        if config.batch_size % (self.ctx.world_size * config.grad_accum):
            raise ValueError(f"batch_size {config.batch_size} must be divisible by processes x "
                             f"grad_accum = {self.ctx.world_size} x {config.grad_accum}")

        self.model = task.model
        self.precision = resolve_precision(config.precision, self.device)
        self.autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
        self.optimizer = build_optimizer(self.model.parameters(), config.lr, config.betas, config.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, config.lr, config.final_lr, config.warmup_steps, config.steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.ema = ModelEMA(self.model, config.ema_decay)
        module: nn.Module = _LossModule(task)
        if self.ctx.distributed:
            module = DistributedDataParallel(
                module, device_ids=None,
                find_unused_parameters=bool(getattr(task, "find_unused_parameters", False)))
        self.module = module
        self.step = 0
        self.elapsed = 0.0
        self.best: dict[str, Any] = {"metric": task.select_metric, "higher_is_better": task.higher_is_better,
                                     "value": None, "step": None}
        self.resumed = False
        self.last_metrics: dict[str, float] | None = None
        self.last_lr = 0.0

    # -- paths ---------------------------------------------------------------------------------
    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pt"

    # -- checkpoints -----------------------------------------------------------------------------
    def state_payload(self, rng_states: list[Any]) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "codec": self.task.name,
            "config": self.task.config_dict(),
            "train": self.config.to_dict(),
            "run": self.run_id,
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict(),
            "ema_state": {"updates": self.ema.updates, "decay": self.ema.decay},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "elapsed_s": self.elapsed,
            "rng": rng_states,
            "sampler": self.sampler.state_dict(),
            "best": dict(self.best),
            "metrics": self.last_metrics,
            "extra": self.extra,
            "provenance": {"torch": str(torch.__version__), "git_commit": git_commit(),
                           "world_size": self.ctx.world_size, "device": str(self.device),
                           "precision": self.precision, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        }

    def load(self, path: str | Path) -> None:
        """Restore every piece of training state from checkpoint ``path``."""
        ckpt = load_checkpoint(path, map_location=self.device)
        if self.run_id and ckpt.get("run") != self.run_id:
            raise RunMismatchError(
                f"{path} belongs to run {ckpt.get('run')!r}, not {self.run_id!r} (different "
                "config or data); resume with the same settings, or choose a new --out folder")
        self.model.load_state_dict(ckpt["model"])
        self.ema.module.load_state_dict(ckpt["ema"])
        self.ema.updates = int(ckpt["ema_state"]["updates"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["step"])
        self.elapsed = float(ckpt.get("elapsed_s", 0.0))
        self.best = dict(ckpt["best"])
        self.last_metrics = ckpt.get("metrics")
        if ckpt.get("sampler") != self.sampler.state_dict():
            log.warning("resuming %s with a different crop sampler (%s vs %s): the data stream "
                        "will differ from the uninterrupted run", path, ckpt.get("sampler"),
                        self.sampler.state_dict())
        rng = ckpt.get("rng") or []
        if len(rng) == self.ctx.world_size:
            restore_rng(rng[self.ctx.rank])
        elif rng:
            log.warning("checkpoint holds RNG states of %d processes, this run has %d; global RNGs "
                        "are not restored", len(rng), self.ctx.world_size)
        self.resumed = True

    def _save(self, improved: bool) -> None:
        rng_states = self.ctx.gather_objects(capture_rng())  # collective: every rank calls it
        if self.ctx.is_main:
            payload = self.state_payload(rng_states)
            save_checkpoint(payload, self.last_path)
            if improved:
                save_checkpoint(payload, self.best_path)
        self.ctx.barrier()

    # -- validation ------------------------------------------------------------------------------
    def validate(self) -> dict[str, float] | None:
        """Score the EMA weights on the validation crops (rank 0; None elsewhere)."""
        if self.val_audio is None or not self.ctx.is_main:
            return None
        with torch.no_grad():
            metrics = self.task.validate(self.ema.module, self.val_audio)
        if self.task.select_metric not in metrics:
            raise KeyError(f"task {self.task.name!r} validation returned {sorted(metrics)}, "
                           f"without its selection metric {self.task.select_metric!r}")
        return {k: float(v) for k, v in metrics.items()}

    def _is_better(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best["value"] is None:
            return True
        return value > self.best["value"] if self.best["higher_is_better"] else value < self.best["value"]

    # -- training --------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _fetch(self, step: int) -> Batch:
        return self.sampler.batch(step, self.config.batch_size, self.ctx.rank, self.ctx.world_size)

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, dict[str, Any], torch.Tensor]:
        """One optimiser step on this rank's share of the global batch.

        Returns (loss, task logs, grad norm) as detached tensors / values (no device sync).
        """
        accum = self.config.grad_accum
        self.module.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        logs_sum: dict[str, Any] = {}
        for i, micro in enumerate(batch.split(accum)):
            last = i == accum - 1
            sync = (self.module.no_sync() if self.ctx.distributed and not last
                    else contextlib.nullcontext())
            with sync:
                with self._autocast():
                    loss, logs = self.module(micro.audio.to(self.device, non_blocking=True), micro.seeds, self.step)
                if not torch.isfinite(loss.detach()).all() and self.precision != "fp16":
                    raise FloatingPointError(f"step {self.step}: loss is {float(loss.detach())}; lower the "
                                             "lr or check the data (NaN/inf in the audio?)")
                self.scaler.scale(loss / accum).backward()
            loss_sum += loss.detach().float() / accum
            for k, v in logs.items():
                v = v.detach().float() if torch.is_tensor(v) else float(v)
                logs_sum[k] = logs_sum.get(k, 0.0) + v / accum
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = self.config.grad_clip if self.config.grad_clip is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if params else torch.zeros(())
        self.last_lr = float(self.optimizer.param_groups[0]["lr"])  # the lr of this update
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with warnings.catch_warnings():  # GradScaler may skip a step; the schedule still advances
            warnings.simplefilter("ignore", UserWarning)
            self.scheduler.step()
        self.ema.update(self.model)
        self.step += 1
        return loss_sum, logs_sum, grad_norm.detach()

    def fit(self, max_steps: int | None = None) -> TrainResult:
        """Train until ``config.steps`` (or ``max_steps`` for an intentional early stop)."""
        cfg = self.config
        until = min(cfg.steps, max_steps) if max_steps is not None else cfg.steps
        start_time = time.time()
        logger = None
        if self.ctx.is_main:
            logger = TrainLogger(self.out_dir, resume_step=self.step if self.resumed else None,
                                 tensorboard=cfg.tensorboard)
        initial = None
        if not self.resumed and self.step == 0:
            initial = self.validate()
            if initial is not None and logger is not None:
                logger.log_valid(0, initial)
                log.info("step 0 (untrained) validation: %s", _fmt_metrics(initial))
            self.ctx.barrier()

        progress = None
        if self.ctx.is_main and cfg.progress is not False:
            from tqdm.auto import tqdm
            progress = tqdm(total=cfg.steps, initial=self.step, desc=f"train {self.task.name}",
                            unit="step", dynamic_ncols=True, disable=None if cfg.progress is None else False)

        sums: dict[str, Any] = {}
        count = 0
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="crops")
        try:
            pending = pool.submit(self._fetch, self.step) if self.step < until else None
            while self.step < until:
                batch = pending.result()
                pending = pool.submit(self._fetch, self.step + 1) if self.step + 1 < until else None
                t0 = time.time()
                loss, logs, grad_norm = self.train_step(batch)
                self.elapsed += time.time() - t0
                for key, value in (("loss", loss), ("grad_norm", grad_norm), *logs.items()):
                    sums[key] = sums.get(key, 0.0) + value
                count += 1
                step = self.step
                if progress is not None:
                    progress.update(1)
                at_end = step == cfg.steps
                if logger is not None and ((cfg.log_every and step % cfg.log_every == 0) or at_end or step == until):
                    values = {"time_s": round(self.elapsed, 3), "lr": self.last_lr}
                    values.update({k: float(v) / count for k, v in sums.items()})
                    logger.log_train(step, values)
                    if progress is not None:
                        progress.set_postfix(loss=f"{values['loss']:.4g}", refresh=False)
                    sums, count = {}, 0
                validate_now = (cfg.val_every and step % cfg.val_every == 0) or at_end
                save_now = validate_now or (cfg.save_every and step % cfg.save_every == 0) or step == until
                improved = False
                if validate_now:
                    metrics = self.validate()
                    if metrics is not None:
                        self.last_metrics = metrics
                        value = metrics[self.task.select_metric]
                        improved = self._is_better(value)
                        if improved:
                            self.best.update(value=value, step=step)
                        if logger is not None:
                            logger.log_valid(step, metrics)
                        log.info("step %d validation: %s%s", step, _fmt_metrics(metrics),
                                 " (best)" if improved else "")
                if at_end and self.best["step"] is None:  # never validated: the last is the best
                    self.best.update(step=step)
                    improved = True
                if save_now:
                    self._save(improved)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if progress is not None:
                progress.close()
            if logger is not None:
                logger.close()
        return TrainResult(self.out_dir, self.best_path, self.last_path, self.step, dict(self.best),
                           initial, self.last_metrics, time.time() - start_time,
                           model=self.model, ema_model=self.ema.module)


def _fmt_metrics(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
