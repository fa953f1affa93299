"""Training task of Music2Latent: consistency training end to end (see
:mod:`benchmark.music2latent.consistency`).

Loss: ``consistency_loss`` on the compressed spectrogram of each crop, with per-example noise
generators seeded by the sampler (so DDP sharding and gradient accumulation do not change
the draws). Validation: single-step reconstructions of the fixed validation crops (encode,
decode the pyramid, one consistency step from ``sigma_max`` noise drawn with a fixed
per-crop seed, inverse front end), scored by
:func:`~benchmark.training.validation.reconstruction_metrics`; the mel distance
(``SELECT_METRIC``) selects ``best.pt``.
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
from benchmark.training.config import TrainConfig
from benchmark.training.tasks import Batch, example_generators
from benchmark.training.validation import SELECT_METRIC, validate_in_batches

__all__ = ["Music2LatentTask", "build_task", "one_step_reconstruction"]


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


def build_task(config: TrainConfig, device: torch.device) -> Music2LatentTask:
    """Registry builder: model preset ``config.model_preset`` with ``config.model`` overrides
    (and ``config.crop_frames``, if set, as the crop length)."""
    model_config = get_preset(config.model_preset, **config.model)
    if config.crop_frames is not None:
        try:
            model_config = model_config.replace(crop_frames=config.crop_frames)
        except ValueError as exc:
            raise ValueError(f"training crop_frames={config.crop_frames}: {exc}") from None
    known = {f.name for f in dataclasses.fields(ConsistencySchedule)}
    if unknown := sorted(set(config.loss) - known):
        raise ValueError(f"unknown Music2Latent loss settings {unknown}; known: {sorted(known)}")
    schedule = ConsistencySchedule.from_config(model_config, **config.loss)
    return Music2LatentTask(model_config, config.steps, device, config.val_seed, config.val_batch, schedule)
