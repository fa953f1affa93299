"""Music2Latent's training recipe: its training task and its training presets.

Task: consistency training end to end (see :mod:`benchmark.music2latent.consistency`).
Loss: ``consistency_loss`` on the compressed spectrogram of each crop, with per-example noise
generators seeded by the sampler (so DDP sharding and gradient accumulation do not change
the draws). Validation: single-step reconstructions of the fixed validation crops (encode,
decode the pyramid, one consistency step from ``sigma_max`` noise drawn with a fixed
per-crop seed, inverse front end), scored by
:func:`~benchmark.training.validation.reconstruction_metrics`; the mel distance
(``SELECT_METRIC``) selects ``best.pt``.

Presets (:data:`PRESETS`, registered with the generic trainer when this module is imported,
which :data:`benchmark.training.tasks.TASKS` does on first use): ``paper`` (the paper's run),
``cpu`` (minutes on a laptop) and ``smoke`` (seconds, for tests). The baseline autoencoders
train with the same budgets (``baselines/autoencoders/recipes.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from benchmark.music2latent.config import Music2LatentConfig, get_preset
from benchmark.music2latent.consistency import ConsistencySchedule, consistency_loss
from benchmark.music2latent.frontend import SpectralFrontend
from benchmark.music2latent.model import Music2Latent
from benchmark.training.config import TrainConfig, register_train_presets
from benchmark.training.tasks import Batch, example_generators
from benchmark.training.validation import SELECT_METRIC, validate_in_batches

__all__ = ["Music2LatentTask", "build_task", "one_step_reconstruction", "PRESETS"]


@torch.no_grad()
def one_step_reconstruction(model: Music2Latent, frontend: SpectralFrontend, audio: torch.Tensor,
                            generators: list[torch.Generator]) -> torch.Tensor:
    """Encode ``audio [B, samples]`` and decode it with one consistency step.

    ``samples`` must give a multiple of ``downsample_time`` STFT frames (training crops do).
    The decoder starts from ``sigma_max * z`` with ``z`` drawn from ``generators`` (one per
    item). Returns audio ``[B, (frames - 1) * hop + n_fft]``.
    """
    spec = frontend.wave_to_spec(audio)
    pyramid = model.decode_pyramid(model.encode(spec))
    sigma_max = model.config.sigma_max
    noise = torch.cat([torch.randn((1, *spec.shape[1:]), generator=g, device=g.device)
                       for g in generators]).to(spec.device)
    out = model.denoise(noise * sigma_max, torch.full((spec.shape[0],), sigma_max, device=spec.device), pyramid)
    return frontend.spec_to_wave(out)


class Music2LatentTask:
    """:class:`~benchmark.training.tasks.TrainingTask` for Music2Latent."""

    name = "music2latent"
    select_metric = SELECT_METRIC
    higher_is_better = False

    def __init__(self, model_config: Music2LatentConfig, total_steps: int, device: torch.device,
                 val_seed: int = 1234, val_batch: int = 8,
                 schedule: ConsistencySchedule | None = None) -> None:
        self.model_config = model_config
        self.model: nn.Module = Music2Latent(model_config).to(device)
        self.frontend = SpectralFrontend(model_config).to(device)
        self.schedule = schedule or ConsistencySchedule.from_config(model_config)
        self.sample_rate = model_config.sample_rate
        self.crop_samples = model_config.crop_samples
        self.total_steps = int(total_steps)
        self.val_seed = int(val_seed)
        self.val_batch = int(val_batch)
        self.device = torch.device(device)

    def loss(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, Any]]:
        spec = self.frontend.wave_to_spec(batch.audio)
        generators = example_generators(batch.seeds, spec.device)
        return consistency_loss(self.model, spec, step, self.total_steps, generators, self.schedule)

    def validate(self, model: nn.Module, audio: torch.Tensor) -> dict[str, float]:
        def reconstruct(chunk, generators):
            return one_step_reconstruction(model, self.frontend, chunk, generators)

        return validate_in_batches(audio, reconstruct, self.val_batch, self.device, self.val_seed, self.sample_rate)

    def config_dict(self) -> dict[str, Any]:
        return self.model_config.to_dict()


def model_config_for(config: TrainConfig) -> Music2LatentConfig:
    """Model preset ``config.model_preset`` with ``config.model`` overrides (and
    ``config.crop_frames``, if set, as the crop length); the baseline recipes share it."""
    model_config = get_preset(config.model_preset, **config.model)
    if config.crop_frames is not None:
        try:
            model_config = model_config.replace(crop_frames=config.crop_frames)
        except ValueError as exc:
            raise ValueError(f"training crop_frames={config.crop_frames}: {exc}") from None
    return model_config


def build_task(config: TrainConfig, device: torch.device) -> Music2LatentTask:
    """Registry builder (see :func:`model_config_for`)."""
    model_config = model_config_for(config)
    known = {f.name for f in dataclasses.fields(ConsistencySchedule)}
    if unknown := sorted(set(config.loss) - known):
        raise ValueError(f"unknown Music2Latent loss settings {unknown}; known: {sorted(known)}")
    schedule = ConsistencySchedule.from_config(model_config, **config.loss)
    return Music2LatentTask(model_config, config.steps, device, config.val_seed, config.val_batch, schedule)


# -- training presets ------------------------------------------------------------------------
_PAPER: dict[str, Any] = {
    # 800 k iterations of batch 16, RAdam 1e-4, 10 k warm-up, cosine to 1e-6, EMA 0.9999,
    # validation every "epoch" of 10 k iterations; crops of 64 STFT frames (34 304 samples).
    "codec": "music2latent", "model_preset": "paper", "crop_frames": 64, "steps": 800_000, "batch_size": 16,
    "lr": 1e-4, "final_lr": 1e-6, "warmup_steps": 10_000, "ema_decay": 0.9999,
    "val_every": 10_000, "save_every": 2_000, "val_crops": 256, "val_batch": 8,
}

_CPU: dict[str, Any] = {
    # Sized for ~6-7 minutes on 2 idle CPU cores with the "cpu" model: 0.42 s (0.84 CPU-s)
    # per step of 8 crops of 64 frames (``python -m benchmark.training.bench --preset cpu``).
    # The run is ~1000x shorter than the paper's, so the learning rate is 100x higher (1e-3
    # and 3e-3 learned markedly less in 300-step trials) and the EMA horizon is ~100 steps.
    # Discretisation curriculum: the paper's exponential one, 0.1^(1 + 2k/K), cut where the
    # paper's run is at about a quarter of its 800 k iterations (delta 0.1 -> 0.03 instead of
    # -> 0.001). Run down to 0.001 in 300 steps, the pairs become nearly identical after ~100
    # steps (the unweighted distance falls from ~18 to ~0.4 while lambda = 1/(sigma_hi -
    # sigma_lo) grows and the grad norm climbs past 1000) and the model learns much less.
    # 300-step trials, one seed each (seed-to-seed spread ~0.15 in mel), EMA weights at the
    # last step, one-step reconstructions of the built-in valid items, mel / MR-STFT distance
    # (untrained 10.1 / 3.27): delta -> 0.001 6.35 / 2.91, -> 0.01 5.85 / 2.66, -> 0.03
    # 5.59 / 2.58, constant 0.1 5.59 / 2.58 (constant 0.05, 0.2, 0.3, 1.0 worse). With
    # constant 0.1, p_mean 0 or 1 and sigma_max 10 did no better; with the full curriculum,
    # EMA 0.9 and lr 1e-3 / 3e-3 stayed at 6.1-6.4 / 2.8-2.9.
    # `python scripts/m2l_before_after.py` prints the before/after table on the test items.
    "codec": "music2latent", "model_preset": "cpu", "crop_frames": 64, "steps": 900, "batch_size": 8,
    "lr": 1e-2, "final_lr": 1e-4, "warmup_steps": 50, "ema_decay": 0.99,
    "loss": {"delta_min": 0.03},
    "val_every": 100, "save_every": 100, "val_crops": 16, "val_batch": 8, "log_every": 10,
}

_SMOKE: dict[str, Any] = {
    # Seconds: proves the whole loop (loss, EMA, validation, checkpoints) runs.
    "codec": "music2latent", "model_preset": "smoke", "steps": 4, "batch_size": 2,
    "lr": 1e-3, "final_lr": 1e-4, "warmup_steps": 1, "ema_decay": 0.9,
    "val_every": 2, "save_every": 2, "val_crops": 2, "val_batch": 2, "log_every": 1,
}

#: Music2Latent's training presets (preset name -> :class:`TrainConfig` fields).
PRESETS: dict[str, dict[str, Any]] = {"paper": _PAPER, "cpu": _CPU, "smoke": _SMOKE}

register_train_presets("music2latent", PRESETS)
