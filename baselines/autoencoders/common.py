"""Shared parts of the baseline autoencoders (plain spectral AE, VAE, diffusion-decoder AE).

Every baseline is built from the *same* network as our Music2Latent
(:class:`benchmark.music2latent.model.Music2Latent`): the same encoder (same latent rate and
dimension), the same decoder pyramid and the same UNet, on the same alpha/beta-compressed
complex STFT front end. Only the training objective, the latent regularisation and the way the
UNet is run at decoding time differ, so a comparison isolates what consistency training buys:

=============  ===================================  =====================================
baseline       latents                              decoder (UNet run as ...)
=============  ===================================  =====================================
spectral_ae    tanh-bounded (as Music2Latent)       deterministic: one pass at sigma_max
                                                    with a zero input (:func:`deterministic_decode`)
vae            Gaussian posterior, mean at encode   deterministic, as spectral_ae
diffusion_ae   tanh-bounded (as Music2Latent)       EDM denoiser, Euler/Heun sampler
=============  ===================================  =====================================

Deterministic decoder (choice documented in ``docs/baselines.md``): the consistency function
``f(x, sigma | pyramid)`` evaluated at ``sigma = sigma_max`` on ``x = 0``. Its skip term
``c_skip x`` vanishes, so the output is ``c_out(sigma_max) F(0, sigma_max, pyramid)``: a
feed-forward map from the pyramid to the spectrogram with exactly Music2Latent's parameters and
decoding cost (one UNet pass), trained by regression instead of consistency training.

Regression loss (spectral_ae, vae; :func:`reconstruction_loss`), per example::

    L = spec_weight * mean |S_hat - S|  +  stft_weight * MRSTFT(iSTFT(S_hat), iSTFT(S))

with ``S`` the compressed complex spectrogram ``[2, bins, frames]`` and MRSTFT the usual
multi-resolution STFT loss (spectral convergence + mean absolute log-magnitude difference,
averaged over FFT sizes ``n_fft / 2, n_fft, 2 n_fft`` of the model, hop = FFT size / 4).
The target waveform is the front end's own round trip of ``S`` so that both signals carry the
same edge taper.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.codecs.protocol import CodecError, CodecInfo, check_latents
from benchmark.music2latent.codec import SpectralModelCodec, file_sha256, resolve_checkpoint_option
from benchmark.music2latent.config import Music2LatentConfig, get_preset
from benchmark.music2latent.frontend import SpectralFrontend
from benchmark.music2latent.inference import (DEFAULT_CHUNK_SECONDS, decode_latents,
                                              encode_audio, prepare_for_inference)
from benchmark.music2latent.model import Music2Latent

__all__ = ["RegressionLossConfig", "deterministic_decode", "deterministic_sampler",
           "like_model", "spec_to_wave_differentiable", "stft_sizes",
           "multi_resolution_stft_loss", "reconstruction_loss", "autoencoder_config_dict",
           "load_autoencoder_checkpoint", "AutoencoderCodec"]


# -- deterministic decoder -------------------------------------------------------------------
def like_model(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` in the memory format of the model's 2-D weights (channels-last after
    :func:`~benchmark.music2latent.inference.prepare_for_inference` on CPU)."""
    if model.unet.stem.weight.is_contiguous(memory_format=torch.channels_last):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def deterministic_decode(model: Music2Latent, pyramid: Sequence[torch.Tensor], frames: int
                         ) -> torch.Tensor:
    """Spectrogram ``[B, 2, bins, frames]`` from a decoder pyramid, without noise.

    Runs the consistency function at ``sigma_max`` on an all-zero input (see module
    docstring); ``frames`` is ``latent frames * downsample_time``.
    """
    c = model.config
    ref = pyramid[0]
    x = like_model(model, ref.new_zeros(ref.shape[0], 2, c.freq_bins, frames))
    return model.denoise(x, c.sigma_max, pyramid)


def deterministic_sampler(model: Music2Latent, pyramid: Sequence[torch.Tensor], frames: int,
                          steps: int, noise_fn: Callable[..., torch.Tensor],
                          frame_offset: int = 0) -> torch.Tensor:
    """:func:`deterministic_decode` with the ``sampler`` signature of
    :func:`benchmark.music2latent.inference.decode_latents` (``steps``/``noise_fn`` unused)."""
    return deterministic_decode(model, pyramid, frames)


# -- losses ----------------------------------------------------------------------------------
def settings_from_mapping(cls, settings: Mapping[str, Any], what: str):
    """``cls(**settings)`` for a settings dataclass, naming unknown keys (``what``: e.g. "diffusion loss")."""
    known = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(settings) - known):
        raise ValueError(f"unknown {what} settings {unknown}; known: {sorted(known)}")
    return cls(**dict(settings))


@dataclasses.dataclass(frozen=True)
class RegressionLossConfig:
    """Weights of the regression loss of the deterministic baselines.

    spec_weight: weight of the L1 distance on the compressed complex spectrogram.
    stft_weight: weight of the multi-resolution STFT loss on the waveform.
    stft_ffts: FFT sizes of the MRSTFT loss; empty = ``(n_fft // 2, n_fft, 2 n_fft)`` of the
        model (512/1024/2048... scaled with the front end).
    kl_weight: beta of the KL term (VAE only; ignored by the plain AE). The KL is measured in
        nats per latent number (mean over latent channels and frames).
    """

    spec_weight: float = 1.0
    stft_weight: float = 1.0
    stft_ffts: tuple[int, ...] = ()
    kl_weight: float = 1e-2

    def __post_init__(self) -> None:
        object.__setattr__(self, "stft_ffts", tuple(int(n) for n in self.stft_ffts))
        if min(self.spec_weight, self.stft_weight, self.kl_weight) < 0:
            raise ValueError(f"RegressionLossConfig: weights must be >= 0, got {self}")
        if any(n < 16 or n & (n - 1) for n in self.stft_ffts):
            raise ValueError(f"RegressionLossConfig: stft_ffts must be powers of two >= 16, got "
                             f"{self.stft_ffts}")

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> "RegressionLossConfig":
        return settings_from_mapping(cls, settings, "regression loss")


def spec_to_wave_differentiable(frontend: SpectralFrontend, spec: torch.Tensor,
                                eps: float = 1e-8) -> torch.Tensor:
    """Inverse front end with finite gradients everywhere, for training losses.

    Same maths as :meth:`SpectralFrontend.spec_to_wave` (amplitude expansion
    ``c = c~ |c~|^(1/alpha - 1) / beta^(1/alpha)``, zero Nyquist row, inverse FFT, synthesis
    window, overlap-add) but without the final clamp and with ``|c~|^2 + eps`` inside the power,
    so that the gradient at a zero coefficient (the zero-initialised UNet output) is finite.

    ``spec [B, 2, bins, frames] -> [B, (frames - 1) * hop + n_fft]``.
    """
    alpha, beta = frontend.alpha, frontend.beta
    re, im = spec[:, 0].float(), spec[:, 1].float()
    gain = (re * re + im * im + eps) ** ((1.0 / alpha - 1.0) / 2.0) / beta ** (1.0 / alpha)
    coeffs = F.pad(torch.complex(re * gain, im * gain), (0, 0, 0, 1))
    frames = torch.fft.irfft(coeffs, n=frontend.n_fft, dim=1)
    frames = frames * frontend.synthesis_window.to(spec.device)[:, None]
    length = frontend.samples_for_frames(frames.shape[-1])
    wave = F.fold(frames, output_size=(1, length), kernel_size=(1, frontend.n_fft),
                  stride=(1, frontend.hop))
    return wave.reshape(spec.shape[0], length)


def stft_sizes(config: Music2LatentConfig, ffts: Sequence[int] = ()) -> tuple[int, ...]:
    """FFT sizes of the MRSTFT loss: ``ffts`` or ``(n_fft // 2, n_fft, 2 n_fft)``."""
    return tuple(ffts) or (config.n_fft // 2, config.n_fft, 2 * config.n_fft)


def multi_resolution_stft_loss(reference: torch.Tensor, estimate: torch.Tensor,
                               ffts: Sequence[int], eps: float = 1e-5) -> torch.Tensor:
    """Per-example multi-resolution STFT loss ``[B]`` (dimensionless).

    For each FFT size N (Hann window, hop N/4, centred frames): spectral convergence
    ``||M - M_hat||_F / ||M||_F`` plus ``mean |ln(M + eps) - ln(M_hat + eps)|`` on magnitudes
    ``M``; averaged over the sizes. Zero for identical signals.

    reference, estimate: ``[B, samples]`` of equal length (at least the largest N / 2).
    """
    if reference.shape != estimate.shape:
        raise ValueError(f"multi_resolution_stft_loss: shapes differ {tuple(reference.shape)} vs "
                         f"{tuple(estimate.shape)}")
    total = reference.new_zeros(reference.shape[0], dtype=torch.float32)
    for n in ffts:
        window = torch.hann_window(n, device=reference.device)

        def magnitude(x: torch.Tensor, n: int = n, window: torch.Tensor = window) -> torch.Tensor:
            s = torch.stft(x.float(), n, hop_length=n // 4, window=window, center=True,
                           return_complex=True)
            return torch.view_as_real(s).pow(2).sum(-1).clamp_min(1e-12).sqrt()

        m_ref, m_est = magnitude(reference), magnitude(estimate)
        sc = (m_ref - m_est).flatten(1).norm(dim=1) / m_ref.flatten(1).norm(dim=1).clamp_min(eps)
        log_mag = (torch.log(m_ref + eps) - torch.log(m_est + eps)).abs().flatten(1).mean(dim=1)
        total = total + sc + log_mag
    return total / len(ffts)


def reconstruction_loss(frontend: SpectralFrontend, target: torch.Tensor, estimate: torch.Tensor,
                        settings: RegressionLossConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-example regression loss ``[B]`` of a decoded spectrogram, and its two terms.

    target, estimate: compressed spectrograms ``[B, 2, bins, frames]``. Returns
    ``(loss [B], {"spec_l1": [B], "mrstft": [B]})``.
    """
    spec_l1 = (estimate.float() - target.float()).abs().flatten(1).mean(dim=1)
    with torch.no_grad():
        wave_ref = spec_to_wave_differentiable(frontend, target)
    wave_est = spec_to_wave_differentiable(frontend, estimate)
    mrstft = multi_resolution_stft_loss(wave_ref, wave_est,
                                        stft_sizes(frontend.config, settings.stft_ffts))
    loss = settings.spec_weight * spec_l1 + settings.stft_weight * mrstft
    return loss, {"spec_l1": spec_l1, "mrstft": mrstft}


# -- checkpoints -----------------------------------------------------------------------------
def autoencoder_config_dict(kind: str, config: Music2LatentConfig, loss: Mapping[str, Any]
                            ) -> dict[str, Any]:
    """``checkpoint["config"]`` of a baseline: ``{"kind", "model", "loss"}``."""
    loss = {k: list(v) if isinstance(v, tuple) else v for k, v in loss.items()}
    return {"kind": kind, "model": config.to_dict(), "loss": loss}


def load_autoencoder_checkpoint(path: str | Path, kind: str
                                ) -> tuple[Music2LatentConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """Read one of our trainer's checkpoints of baseline ``kind``.

    Returns ``(model config, inference weights (EMA if present), meta)``; meta holds ``step``,
    ``weights`` ("ema"/"model"), ``train_seconds`` (optimiser time), ``train`` (the training
    config dict: the budget) and ``loss`` (loss settings). Raises :class:`CodecError` naming
    the file and the fix.
    """
    from benchmark.training.checkpoint import inference_weights, load_checkpoint

    path = Path(path)
    try:
        ckpt = load_checkpoint(path)
    except (FileNotFoundError, RuntimeError) as exc:
        raise CodecError(f"{kind}: {exc}") from exc
    config = ckpt.get("config")
    if ckpt.get("codec") != kind or not isinstance(config, Mapping) or config.get("kind") != kind:
        raise CodecError(f"{kind}: {path} is a checkpoint of {ckpt.get('codec')!r}, not of "
                         f"{kind!r}; train one with `python -m benchmark train --codec {kind}` "
                         "or pass the matching codec")
    try:
        model_config = Music2LatentConfig.from_dict(config["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"{kind}: bad model config in {path}: {exc}") from exc
    use_ema = ckpt.get("ema") is not None
    meta = {"step": ckpt.get("step"), "weights": "ema" if use_ema else "model",
            "train_seconds": ckpt.get("elapsed_s"), "train": ckpt.get("train"),
            "loss": dict(config.get("loss") or {})}
    return model_config, inference_weights(ckpt), meta


# -- codec -----------------------------------------------------------------------------------
class AutoencoderCodec(SpectralModelCodec):
    """Base codec of the baseline autoencoders (see the subclasses for the options).

    Subclasses set ``name`` (= the training-task name), ``description_prefix``,
    ``stochastic``, and implement :meth:`build_model` and :meth:`sampler`; they may extend
    :meth:`decode_steps`.

    Parameters
    ----------
    checkpoint: one of our trainer's checkpoints of this baseline (EMA weights used): a path,
        a training run folder, or a trained model's short name (``python -m benchmark models``).
    preset: without a checkpoint, a RANDOMLY initialised model of this Music2Latent preset
        (``paper``, ``cpu``, ``smoke``), flagged in ``info``; for pipeline tests only.
    model: Music2LatentConfig field overrides for the random-init model (a checkpoint carries
        its own config).
    steps: decoding steps (the deterministic decoders accept only 1).
    seed: decoding-noise seed (each ``decode`` call restarts from it) and random-init seed.
    device: torch device. chunk_seconds: longest audio per forward pass.
    """

    name = "autoencoder"
    version = "2"  # 2: Winograd CPU convolutions (NCHW inference layout)
    stochastic = False
    description_prefix = "autoencoder"

    def __init__(self, checkpoint: str | None = None, preset: str = "paper",
                 model: Mapping[str, Any] | None = None, steps: int = 1, seed: int = 0,
                 device: str = "cpu", chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
                 **options: Any) -> None:
        overrides = dict(model or {})
        super().__init__(preset=None if checkpoint else preset, model=overrides, steps=steps,
                         seed=seed, chunk_seconds=chunk_seconds, **options)
        if checkpoint and overrides:
            raise CodecError(f"{self.name}: model overrides {overrides} apply to random-init "
                             "presets only; a checkpoint carries its own config")
        if int(steps) < 1:
            raise CodecError(f"{self.name}: steps must be >= 1, got {steps}")
        if not self.stochastic and int(steps) != 1:
            raise CodecError(f"{self.name}: deterministic decoder (one network pass), steps must "
                             f"be 1, got {steps}")
        self.steps, self.seed, self.chunk_seconds = int(steps), int(seed), float(chunk_seconds)
        self.options = dict(options)
        self.training: dict[str, Any] = {}
        if checkpoint is not None:
            path = resolve_checkpoint_option(self.name, checkpoint)
            config, weights, meta = load_autoencoder_checkpoint(path, self.name)
            net = self.build_model(config)
            try:
                net.load_state_dict(weights, strict=True)
            except RuntimeError as exc:
                raise CodecError(f"{self.name}: weights in {path} do not fit its config: "
                                 f"{exc}") from exc
            self.training = {k: meta[k] for k in ("step", "train_seconds", "train", "loss")}
            step = f", step {meta['step']}" if meta.get("step") is not None else ""
            weights_id = file_sha256(path)
            description = (f"{self.description_prefix}, {meta['weights']} weights of "
                           f"{path.parent.name}/{path.name}{step}")
            license_ = "see training data"
        else:
            try:
                config = get_preset(preset, **overrides)
            except (TypeError, ValueError) as exc:
                raise CodecError(f"{self.name}: {exc}") from exc
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                net = self.build_model(config)
            weights_id = f"random-init:{preset}:seed{self.seed}"
            if overrides:
                weights_id += ":" + ",".join(f"{k}={v}" for k, v in sorted(overrides.items()))
            description = (f"{self.description_prefix}, '{preset}' preset, RANDOM UNTRAINED "
                           "WEIGHTS (no checkpoint given): numbers are meaningless")
            license_ = "n/a"
        self.model = prepare_for_inference(net.to(device))
        self.frontend = SpectralFrontend(config).to(device)
        self.info = CodecInfo(
            name=self.name, sample_rate=config.sample_rate, latent_dim=config.latent_dim,
            latent_rate_hz=config.latent_rate_hz, stochastic=self.stochastic,
            batch_invariant=True,  # decoder noise (if any) addressed by each item's latents
            decode_steps=self.decode_steps(), has_features=True, code_license="MIT",
            weights_license=license_, weights_id=weights_id,
            parameters=sum(p.numel() for p in net.parameters()), description=description)

    # -- subclass hooks -----------------------------------------------------------------------
    def build_model(self, config: Music2LatentConfig) -> Music2Latent:
        """A fresh (randomly initialised) network for ``config``."""
        raise NotImplementedError

    def sampler(self) -> Callable[..., torch.Tensor]:
        """Decoder with the ``sampler`` signature of ``decode_latents``."""
        return deterministic_sampler

    def decode_steps(self) -> int | None:
        """Network evaluations per decode (None: a single non-iterative pass)."""
        return None

    # -- protocol -----------------------------------------------------------------------------
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """``[batch, samples]`` -> ``[batch, latent_dim, K]``,
        ``K = (samples - (n_fft - hop)) // samples_per_latent`` (the audio is cropped)."""
        return encode_audio(self.model, self.frontend, self._check_audio(audio),
                            chunk_seconds=self.chunk_seconds)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[batch, latent_dim, K]`` -> ``[batch, K * samples_per_latent + n_fft - hop]``."""
        check_latents(latents, self.info.name, self.info.latent_dim)
        chunk = max(4, round(self.chunk_seconds * self.info.latent_rate_hz))
        return decode_latents(self.model, self.frontend, latents.float(), steps=self.steps,
                              seed=self.seed, chunk_latents=chunk, sampler=self.sampler(),
                              keys=self.row_names(latents.shape[0]) if latents.ndim == 3 else None)

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """Pre-bottleneck encoder features ``[batch, feature_dim, K]`` (as Music2Latent's)."""
        return encode_audio(self.model, self.frontend, self._check_audio(audio),
                            chunk_seconds=self.chunk_seconds, features=True)

    def encode_with_features(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(encode(audio), features(audio))`` from one encoder pass."""
        return encode_audio(self.model, self.frontend, self._check_audio(audio),
                            chunk_seconds=self.chunk_seconds, features="both")

