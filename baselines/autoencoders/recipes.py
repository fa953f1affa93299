"""Training recipes of the baseline autoencoders, and their budget: the same as Music2Latent's.

Three trainable codecs for the generic trainer (listed by import path in
:data:`benchmark.training.tasks.TASKS`, which imports this module, and with it registers their
presets, on first use):

=============  ============================================  ===============================
codec          model (``baselines/autoencoders/``)            loss
=============  ============================================  ===============================
spectral_ae    Music2Latent network, deterministic decoder    L1(compressed STFT) + MRSTFT
vae            + Gaussian posterior (mean, log-variance)      same + kl_weight * KL
diffusion_ae   Music2Latent network, EDM denoiser             EDM (lognormal sigma, lambda)
=============  ============================================  ===============================

Fair comparison: ONE training budget per preset. The ``smoke``/``cpu``/``paper`` presets of
every baseline are copies of Music2Latent's preset of the same name (same model preset, crop
length, steps, batch, learning-rate schedule, EMA, validation crops; see
:func:`shared_budget`), with only ``codec`` and the baseline's own ``loss`` settings
changed, so every model sees the same data (the built-in train split by default), the same
number of crops and the same optimiser schedule. The budget is stored in every checkpoint
(``checkpoint["train"]``), with the optimiser wall time (``elapsed_s``).

Model settings use the Music2Latent config (``model_preset`` + ``model`` overrides, e.g.
``--set model.latent_dim=16``); loss settings go to ``loss`` (``--set loss.kl_weight=1e-3``;
fields of :class:`baselines.autoencoders.common.RegressionLossConfig` for ``spectral_ae``/``vae``,
of :class:`baselines.autoencoders.diffusion_ae.EDMSettings` for ``diffusion_ae``). All three select
``best.pt`` by the same validation score as Music2Latent (the mel distance on the validation
crops, :data:`benchmark.training.validation.SELECT_METRIC`).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable, Mapping

import torch
from torch import nn

from baselines.autoencoders import diffusion_ae, spectral_ae, vae
from baselines.autoencoders.common import (RegressionLossConfig, autoencoder_config_dict,
                                           deterministic_decode)
from benchmark.music2latent.config import Music2LatentConfig
from benchmark.music2latent.frontend import SpectralFrontend
from benchmark.music2latent.recipe import model_config_for  # same network and crop handling
from benchmark.training.config import TrainConfig, register_train_presets, train_presets
from benchmark.training.tasks import Batch, example_generators
from benchmark.training.validation import SELECT_METRIC, validate_in_batches

__all__ = ["BASELINE_CODECS", "AutoencoderTask", "SpectralAETask", "VAETask", "DiffusionAETask",
           "build_spectral_ae_task", "build_vae_task", "build_diffusion_ae_task",
           "shared_budget", "BUDGET_KEYS", "register"]

#: Codec (and training-task) names of the baselines.
BASELINE_CODECS = ("spectral_ae", "vae", "diffusion_ae")

#: Training settings that make up "the budget" and must be equal across compared models.
BUDGET_KEYS = ("model_preset", "model", "crop_frames", "steps", "batch_size", "grad_accum", "lr",
               "final_lr", "warmup_steps", "betas", "weight_decay", "grad_clip", "ema_decay",
               "precision", "rms_threshold", "val_crops", "val_fraction", "val_every", "val_batch",
               "seed", "val_seed")


class AutoencoderTask:
    """Common part of the baseline tasks: front end, crop length, validation, config.

    Subclasses set ``name`` and implement :meth:`per_example_loss` and :meth:`reconstruct`.
    """

    name = "autoencoder"
    select_metric = SELECT_METRIC
    higher_is_better = False

    def __init__(self, model: nn.Module, model_config: Music2LatentConfig, settings: Any,
                 device: torch.device, val_seed: int = 1234, val_batch: int = 8) -> None:
        self.model_config = model_config
        self.settings = settings
        self.model = model.to(device)
        self.frontend = SpectralFrontend(model_config).to(device)
        self.sample_rate = model_config.sample_rate
        self.crop_samples = model_config.crop_samples
        self.device = torch.device(device)
        self.val_seed, self.val_batch = int(val_seed), int(val_batch)

    # -- to implement -------------------------------------------------------------------------
    def per_example_loss(self, spec: torch.Tensor, generators: list[torch.Generator]
                         ) -> tuple[torch.Tensor, Mapping[str, torch.Tensor]]:
        """``spec [B, 2, bins, F]`` -> (loss ``[B]``, per-example logs ``{name: [B]}``)."""
        raise NotImplementedError

    def reconstruct(self, model: nn.Module, spec: torch.Tensor,
                    generators: list[torch.Generator]) -> torch.Tensor:
        """Encode and decode ``spec`` with ``model`` (no grad); returns a spectrogram."""
        raise NotImplementedError

    # -- TrainingTask protocol ----------------------------------------------------------------
    def loss(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, Any]]:
        spec = self.frontend.wave_to_spec(batch.audio)
        per_example, logs = self.per_example_loss(spec, example_generators(batch.seeds, spec.device))
        return per_example.mean(), {k: v.detach().float().mean() for k, v in logs.items()}

    @torch.no_grad()
    def validate(self, model: nn.Module, audio: torch.Tensor) -> dict[str, float]:
        def reconstruct(chunk, generators):
            return self.frontend.spec_to_wave(self.reconstruct(model, self.frontend.wave_to_spec(chunk), generators))

        return validate_in_batches(audio, reconstruct, self.val_batch, self.device, self.val_seed, self.sample_rate)

    def config_dict(self) -> dict[str, Any]:
        return autoencoder_config_dict(self.name, self.model_config,
                                       dataclasses.asdict(self.settings))


class SpectralAETask(AutoencoderTask):
    """Plain spectral AE: regression loss (:func:`baselines.autoencoders.spectral_ae.spectral_ae_loss`)."""

    name = "spectral_ae"

    def per_example_loss(self, spec, generators):
        return spectral_ae.spectral_ae_loss(self.model, self.frontend, spec, self.settings)

    def reconstruct(self, model, spec, generators):
        return deterministic_decode(model, model.decode_pyramid(model.encode(spec)), spec.shape[-1])


class VAETask(SpectralAETask):
    """VAE: regression loss + beta-KL (:func:`baselines.autoencoders.vae.vae_loss`); validates the
    posterior mean, as the codec encodes."""

    name = "vae"

    def per_example_loss(self, spec, generators):
        return vae.vae_loss(self.model, self.frontend, spec, generators, self.settings)


class DiffusionAETask(AutoencoderTask):
    """Diffusion decoder: EDM loss (:func:`baselines.autoencoders.diffusion_ae.edm_loss`); validates with
    ``settings.val_steps`` steps of ``settings.val_sampler`` from seeded noise."""

    name = "diffusion_ae"

    def per_example_loss(self, spec, generators):
        return diffusion_ae.edm_loss(self.model, spec, generators, self.settings)

    def reconstruct(self, model, spec, generators):
        c = model.config
        pyramid = model.decode_pyramid(model.encode(spec))
        noise = torch.cat([torch.randn((1, *spec.shape[1:]), generator=g, device=g.device)
                           for g in generators]).to(spec)
        return diffusion_ae.edm_sample(
            lambda x, s: diffusion_ae.edm_denoise(model, x, s, pyramid), c.sigma_max * noise,
            self.settings.val_steps, self.settings.val_sampler, c.sigma_min, c.sigma_max, c.rho)


# -- builders (registered in benchmark.training.tasks.TASKS) ---------------------------------


def build_spectral_ae_task(config: TrainConfig, device: torch.device) -> SpectralAETask:
    mc = model_config_for(config)
    return SpectralAETask(spectral_ae.build_model(mc), mc,
                          RegressionLossConfig.from_mapping(config.loss), device,
                          config.val_seed, config.val_batch)


def build_vae_task(config: TrainConfig, device: torch.device) -> VAETask:
    mc = model_config_for(config)
    return VAETask(vae.build_model(mc), mc, RegressionLossConfig.from_mapping(config.loss), device,
                   config.val_seed, config.val_batch)


def build_diffusion_ae_task(config: TrainConfig, device: torch.device) -> DiffusionAETask:
    mc = model_config_for(config)
    return DiffusionAETask(diffusion_ae.build_model(mc), mc,
                           diffusion_ae.EDMSettings.from_mapping(config.loss), device,
                           config.val_seed, config.val_batch)


_BUILDERS: dict[str, Callable[[TrainConfig, torch.device], AutoencoderTask]] = {
    "spectral_ae": build_spectral_ae_task,
    "vae": build_vae_task,
    "diffusion_ae": build_diffusion_ae_task,
}


# -- the shared budget -----------------------------------------------------------------------
def shared_budget(preset: str, reference: str = "music2latent") -> dict[str, Any]:
    """Training preset ``preset`` of ``reference`` without its codec and loss settings:
    the budget every compared model gets."""
    presets = train_presets(reference)
    if preset not in presets:
        raise ValueError(f"no training preset {preset!r} for {reference!r}; available: "
                         f"{sorted(presets)}")
    budget = copy.deepcopy(dict(presets[preset]))
    budget.pop("codec", None)
    budget.pop("loss", None)
    return budget


def register() -> None:
    """Register the training presets of the three baselines, one per Music2Latent preset.

    (Their task builders are listed by import path in ``benchmark.training.tasks.TASKS``,
    which imports this module on first use, so these presets exist whenever a baseline is
    trained.)"""
    for codec in _BUILDERS:
        register_train_presets(codec, {
            preset: {**shared_budget(preset), "codec": codec, "loss": {}}
            for preset in train_presets("music2latent")})


register()
