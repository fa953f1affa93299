"""What the generic trainer trains: the :class:`TrainingTask` protocol and its registry.

A training task owns a model and knows how to turn a batch of audio crops into a loss and how
to score the model on a fixed validation set. Everything else (optimiser, schedule, EMA,
mixed precision, accumulation, DDP, logging, checkpoints, resume) is the trainer's job, so a
new autoencoder (plain AE, VAE, diffusion AE...) plugs in by writing a recipe module next to
its model (a task class, a builder, and its training presets registered at import with
:func:`~benchmark.training.config.register_train_presets`) and registering the builder's
import path::

    register_task("my_ae", "my_pkg.my_ae_recipe:build_task")

A builder has the signature ``build(config: TrainConfig, device: torch.device) -> TrainingTask``
and must create its parameters from the global torch RNG (the trainer seeds it), so that
every DDP rank and every resumed run builds the same initial model.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import torch
from torch import nn

__all__ = ["Batch", "TrainingTask", "TASKS", "register_task", "load_recipe", "available_tasks",
           "build_task", "example_generators"]


@dataclasses.dataclass
class Batch:
    """A (micro-)batch of training crops.

    audio: ``[batch, samples]`` float32 mono crops at the task's sample rate, on the device.
    seeds: ``[batch]`` int64 per-example seeds (CPU). Tasks draw their per-example randomness
        (noise levels, noise) from generators seeded with these, which makes training
        independent of how a global batch is split over DDP ranks or accumulation steps.
    """

    audio: torch.Tensor
    seeds: torch.Tensor

    def __len__(self) -> int:
        return int(self.audio.shape[0])

    def split(self, parts: int) -> list["Batch"]:
        """Split into ``parts`` equal micro-batches (the size must be divisible)."""
        if len(self) % parts:
            raise ValueError(f"batch of {len(self)} cannot be split into {parts} equal parts")
        size = len(self) // parts
        return [Batch(self.audio[i:i + size], self.seeds[i:i + size]) for i in range(0, len(self), size)]

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.audio.to(device, non_blocking=True), self.seeds)


def example_generators(seeds: torch.Tensor, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One ``torch.Generator`` per example, seeded from ``seeds`` (``[batch]`` int64)."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds.tolist()]


@runtime_checkable
class TrainingTask(Protocol):
    """The model-specific half of training.

    Attributes
    ----------
    name: codec name (registry key), stored in checkpoints.
    model: the ``nn.Module`` whose parameters are optimised (everything trainable).
    sample_rate: rate (Hz) of the audio crops the task wants.
    crop_samples: samples per training / validation crop.
    select_metric, higher_is_better: validation metric that picks ``best.pt``.
    """

    name: str
    model: nn.Module
    sample_rate: int
    crop_samples: int
    select_metric: str
    higher_is_better: bool

    def loss(self, batch: Batch, step: int) -> tuple[torch.Tensor, Mapping[str, Any]]:
        """Scalar loss (mean over the batch) and logs (floats or 0-d tensors) for ``step``.

        Called inside the trainer's (possibly DDP-wrapped) forward, so it must use
        ``self.model`` for everything that needs a gradient.
        """
        ...

    def validate(self, model: nn.Module, audio: torch.Tensor) -> dict[str, float]:
        """Metrics of ``model`` (the EMA copy, in eval mode) on fixed crops ``[n, samples]``.

        Must be deterministic (fixed noise seed) so that scores are comparable across steps.
        Must contain ``select_metric``.
        """
        ...

    def config_dict(self) -> dict[str, Any]:
        """The model configuration, stored as ``checkpoint["config"]``; enough to rebuild it."""
        ...


#: Codec name -> ``"module:function"`` of its task builder, imported on first use. A model's
#: recipe lives next to the model and registers the model's training presets when imported,
#: so the trainer itself imports no model.
TASKS: dict[str, str | Callable[..., TrainingTask]] = {
    "music2latent": "benchmark.music2latent.recipe:build_task",
    # baseline autoencoders (same network and budget, other objectives)
    "spectral_ae": "baselines.autoencoders.recipes:build_spectral_ae_task",
    "vae": "baselines.autoencoders.recipes:build_vae_task",
    "diffusion_ae": "baselines.autoencoders.recipes:build_diffusion_ae_task",
}


def register_task(name: str, target: str | Callable[..., TrainingTask]) -> None:
    """Register a task builder: ``"module:function"`` path or a callable."""
    TASKS[name] = target


def load_recipe(name: str) -> None:
    """Import the recipe module of codec ``name`` (registry name or ``"module:function"``
    path), which registers the codec's training presets.

    Names that are neither registered by path nor an import path are left to the caller (it
    reports the unknown codec with the known ones); a recipe that fails to import raises
    ``ValueError`` naming it.
    """
    target = TASKS.get(name, name)
    if isinstance(target, str) and ":" in target:
        module_name = target.split(":", 1)[0]
        try:
            importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"training recipe of {name!r}: cannot import {module_name!r} ({exc})") from exc


def available_tasks() -> list[str]:
    return sorted(TASKS)


def resolve_builder(name: str) -> Callable[..., TrainingTask]:
    """Registry name or ``"module:function"`` import path -> task builder."""
    target = TASKS.get(name, name)
    if callable(target):
        return target
    if ":" not in target:
        raise ValueError(f"no training task for codec {name!r}; trainable codecs: "
                         f"{', '.join(available_tasks())} (or give 'package.module:build_task')")
    module_name, attr = target.split(":", 1)
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"training task {name!r}: cannot load {target!r} ({exc})") from exc


def build_task(name: str, config: Any, device: torch.device) -> TrainingTask:
    """Build the training task of codec ``name`` for ``config`` on ``device``."""
    task = resolve_builder(name)(config, device)
    missing = [a for a in ("model", "sample_rate", "crop_samples", "select_metric", "loss",
                           "validate", "config_dict") if not hasattr(task, a)]
    if missing:
        raise TypeError(f"training task {name!r} lacks {missing}; see benchmark.training.tasks.TrainingTask")
    return task
