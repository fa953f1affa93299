"""Training configuration: one dataclass, per-codec presets, ``key=value`` overrides.

:class:`TrainConfig` holds everything the generic trainer needs; codec-specific model
settings live in ``model_preset`` (a preset name of the codec's own config registry) plus the
``model`` override dict (e.g. ``{"latent_dim": 32}``). Presets are plain
dicts in :data:`TRAIN_PRESETS`, keyed by codec and preset name; each model's recipe module
registers its own with :func:`register_train_presets` (Music2Latent's in
``benchmark/music2latent/recipe.py``, the baseline autoencoders' in
``baselines/autoencoders/recipes.py``), so this module names no model.

Override syntax (CLI ``--set``): ``steps=2000``, ``lr=3e-4``, ``betas=[0.9,0.99]``,
``model.latent_dim=16``, ``loss.p_mean=-0.5`` (values parsed as YAML; numbers are coerced to
the field's type, so ``3e-4`` works although YAML reads it as a string).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Iterable, Mapping

import yaml

__all__ = ["TrainConfig", "TRAIN_PRESETS", "register_train_presets", "train_presets",
           "available_train_presets", "resolve_train_config", "parse_overrides"]


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a training run.

    Model
        codec: training-task registry name. model_preset: the codec's model preset.
        model: overrides of the model config fields. crop_frames: STFT frames per training
        crop (None: the model config's own ``crop_frames``). loss: task-specific loss settings
        (Music2Latent: fields of ``ConsistencySchedule``, e.g. ``p_mean``, ``delta_min``).
    Optimisation (defaults: the Music2Latent paper's code)
        steps: optimiser steps. batch_size: examples per optimiser step over all processes
        (split over DDP ranks, then over ``grad_accum`` micro-batches). lr, final_lr,
        warmup_steps: linear warm-up from 0 to ``lr``, then cosine decay to ``final_lr`` at
        ``steps``. betas, weight_decay: RAdam. grad_clip: max global grad norm (None: none;
        the norm is logged either way). ema_decay: EMA decay, warmed up as
        ``min(decay, (1 + n) / (10 + n))``. precision: ``auto`` (fp16 + GradScaler on CUDA,
        fp32 on CPU), ``fp32``, ``fp16`` (CUDA only) or ``bf16``.
    Data
        rms_threshold: crops with RMS below this are redrawn. memory_budget_mb: decoded audio
        kept in memory (files beyond it are read crop by crop from disk). val_crops: fixed
        validation crops. val_fraction: share of files held out when the data source has no
        validation split.
    Bookkeeping
        val_every, save_every, log_every: intervals in steps (0 = only at the end).
        val_batch: crops per validation forward. seed: seeds model init, crops and noise.
        val_seed: seeds the validation crops and decoding noise. progress: tqdm bar
        (None = only on a terminal). tensorboard: write TensorBoard events if installed.
    """

    codec: str = "music2latent"
    model_preset: str = "paper"
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    crop_frames: int | None = None
    loss: dict[str, Any] = dataclasses.field(default_factory=dict)
    steps: int = 800_000
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-4
    final_lr: float = 1e-6
    warmup_steps: int = 10_000
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip: float | None = None
    ema_decay: float = 0.9999
    precision: str = "auto"
    rms_threshold: float = 1e-3
    memory_budget_mb: int = 2048
    val_crops: int = 64
    val_fraction: float = 0.05
    val_every: int = 10_000
    val_batch: int = 8
    save_every: int = 2_000
    log_every: int = 50
    seed: int = 0
    val_seed: int = 1234
    progress: bool | None = None
    tensorboard: bool = True

    def __post_init__(self) -> None:
        # YAML reads "3e-4" as a string (no dot); coerce numbers by the field's type.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = str(f.type)
            try:
                if kind in ("int", "int | None") and value is not None and not isinstance(value, bool):
                    setattr(self, f.name, int(float(value)) if isinstance(value, str) else int(value))
                elif kind in ("float", "float | None") and value is not None:
                    setattr(self, f.name, float(value))
            except (TypeError, ValueError):
                raise ValueError(f"TrainConfig: {f.name}={value!r} is not a number") from None
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        self.model = dict(self.model or {})
        self.loss = dict(self.loss or {})
        self.validate()

    def validate(self) -> None:
        def fail(msg: str) -> None:
            raise ValueError(f"TrainConfig: {msg}")

        if self.steps < 1:
            fail(f"steps must be >= 1, got {self.steps}")
        if self.batch_size < 1 or self.grad_accum < 1:
            fail("batch_size and grad_accum must be >= 1")
        if self.batch_size % self.grad_accum:
            fail(f"batch_size {self.batch_size} is not divisible by grad_accum {self.grad_accum}")
        if self.warmup_steps < 0 or not 0 <= self.final_lr <= self.lr:
            fail("need warmup_steps >= 0 and 0 <= final_lr <= lr")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            fail(f"betas must be two numbers in [0, 1), got {self.betas}")
        if not 0 <= self.ema_decay < 1:
            fail(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.precision not in ("auto", "fp32", "fp16", "bf16"):
            fail(f"precision must be auto, fp32, fp16 or bf16, got {self.precision!r}")
        if not 0 <= self.val_fraction < 1:
            fail("val_fraction must be in [0, 1)")
        for name in ("val_every", "save_every", "log_every"):
            if getattr(self, name) < 0:
                fail(f"{name} must be >= 0")
        if self.crop_frames is not None and self.crop_frames < 1:
            fail(f"crop_frames must be positive, got {self.crop_frames}")
        if self.val_crops < 0 or self.val_batch < 1:
            fail("need val_crops >= 0 and val_batch >= 1")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"TrainConfig: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**dict(data))

    def hash(self, *extra: Any) -> str:
        """16-hex hash of the settings that change the trained weights (+ ``extra``, e.g. the
        data identity). Bookkeeping-only fields are left out."""
        payload = self.to_dict()
        for key in ("progress", "tensorboard", "log_every", "save_every"):
            payload.pop(key)
        blob = json.dumps([payload, *extra], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: Training presets by codec, then preset name. Empty until a codec's recipe module registers
#: its own (:func:`register_train_presets`); :func:`train_presets` imports the recipe of a codec
#: listed in :data:`benchmark.training.tasks.TASKS` on first use.
TRAIN_PRESETS: dict[str, dict[str, dict[str, Any]]] = {}


def register_train_presets(codec: str, presets: Mapping[str, Mapping[str, Any]]) -> None:
    """Add (or replace) training presets of ``codec``."""
    TRAIN_PRESETS.setdefault(codec, {}).update({k: dict(v) for k, v in presets.items()})


def train_presets(codec: str) -> dict[str, dict[str, Any]]:
    """Training presets of ``codec`` (``{}`` if it has none).

    The presets live in the codec's recipe module (next to the model), which registers them
    when imported; a codec not registered yet has its recipe imported through the training
    task registry (:func:`benchmark.training.tasks.load_recipe`), never by name here.
    """
    if codec not in TRAIN_PRESETS:
        from benchmark.training.tasks import load_recipe
        load_recipe(codec)
    return TRAIN_PRESETS.get(codec, {})


def available_train_presets(codec: str) -> list[str]:
    return sorted(train_presets(codec))


def parse_overrides(overrides: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["lr=3e-4", "model.latent_dim=16"]`` (or a mapping) -> ``{"lr": 3e-4, "model.latent_dim": 16}``."""
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        return dict(overrides)
    parsed = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value (e.g. steps=2000 or "
                             "model.latent_dim=16)")
        key, raw = item.split("=", 1)
        parsed[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return parsed


def resolve_train_config(codec: str, preset: str,
                         overrides: Iterable[str] | Mapping[str, Any] | None = None) -> TrainConfig:
    """Preset ``preset`` of ``codec`` with overrides applied (``model.<field>`` for the model)."""
    presets = train_presets(codec)
    if not presets:
        from benchmark.training.tasks import available_tasks
        raise ValueError(f"no training presets for codec {codec!r}; trainable codecs: "
                         f"{', '.join(sorted(set(available_tasks()) | set(TRAIN_PRESETS)))}")
    if preset not in presets:
        raise ValueError(f"unknown training preset {preset!r} for {codec}; available: "
                         f"{', '.join(sorted(presets))}")
    data = json.loads(json.dumps(presets[preset]))  # deep copy
    data.setdefault("codec", codec)
    data.setdefault("model", {})
    data.setdefault("loss", {})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for key, value in parse_overrides(overrides).items():
        group, _, field = key.partition(".")
        if field and group in ("model", "loss"):
            data[group][field] = value
        elif key in known:
            data[key] = value
        else:
            raise ValueError(f"unknown training setting {key!r}; known: {sorted(known)} "
                             "(model fields as model.<field>, loss settings as loss.<field>)")
    return TrainConfig.from_dict(data)
