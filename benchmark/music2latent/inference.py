"""Inference with Music2Latent: audio -> latents, latents -> audio, for any length.

- :func:`encode_audio`: ``[B, L]`` audio -> ``[B, latent_dim, K]`` latents (or the
  pre-bottleneck features) with ``K = (L - (n_fft - hop)) // samples_per_latent``; the audio is
  cropped to ``K * samples_per_latent + n_fft - hop`` samples first (``4096 K + 1536``).
- :func:`decode_latents`: latents -> ``[B, K * samples_per_latent + n_fft - hop]`` audio by
  consistency sampling (:func:`sample_representation`) and the inverse front end.

Sampling (facts §4.1): one step evaluates the consistency function once at ``sigma_max`` on
``sigma_max * z``. With ``steps = n > 1`` the Karras grid of ``n + 1`` levels from
``sigma_max`` to ``sigma_min`` (:func:`karras_sigmas`) is walked: the model is evaluated at
the first ``n`` levels and each prediction is re-noised to the next level with standard
deviation ``sqrt(sigma_next^2 - sigma_min^2)``.

Long inputs are processed in chunks of a fixed number of latent frames that OVERLAP and are
cross-faded (raised cosine), so working memory is bounded by the chunk size whatever the
length and there is no seam. Encoder chunks are cross-faded on the latent frames they share;
decoder chunks on the waveform samples they share, skipping the ``n_fft - hop`` samples at
each chunk edge that the inverse STFT attenuates. Chunks are not exactly equivalent to a
whole-signal pass: the model's GroupNorms take statistics over the whole time axis of what
they see. Decoder noise is drawn per (seed, step, item, block of frames), the item being
addressed by the content of its latents (not by its place in the batch), so a frame gets the
same noise however the latents are chunked *or batched*, and decoding is deterministic given
the seed.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from typing import Callable, Sequence

import numpy as np
import torch

from benchmark.music2latent import heap, kernels
from benchmark.music2latent.frontend import SpectralFrontend
from benchmark.music2latent.model import Music2Latent

#: Default chunk lengths (seconds of audio) and overlaps for long inputs.
DEFAULT_CHUNK_SECONDS = 20.0
DEFAULT_OVERLAP_SECONDS = 1.0
#: STFT frames per independently seeded noise block.
NOISE_BLOCK_FRAMES = 64

#: ``noise_fn(step, frame_start, frame_end) -> [B, 2, bins, frame_end - frame_start]``
NoiseFn = Callable[[int, int, int], torch.Tensor]


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float) -> list[float]:
    """``steps + 1`` noise levels from ``sigma_max`` down to ``sigma_min`` (Karras et al.)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return [(hi + i / steps * (lo - hi)) ** rho for i in range(steps + 1)]


class BlockNoise:
    """Deterministic standard-normal noise addressed by (step, item, frame).

    Frames are grouped in blocks of :data:`NOISE_BLOCK_FRAMES`; each (seed, step, item, block)
    has its own generator, so the noise of a frame does not depend on how the frames are
    chunked. ``keys`` name the items (:func:`latent_keys`: the content of each item's latents,
    which makes the noise independent of the batch it is decoded in); without them item ``i`` is
    its batch index.
    """

    def __init__(self, seed: int, batch: int, bins: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, keys: Sequence[str] | None = None) -> None:
        self.seed, self.batch, self.bins = int(seed), batch, bins
        self.device, self.dtype = device, dtype
        if keys is not None and len(keys) != batch:
            raise ValueError(f"BlockNoise: {len(keys)} item keys for a batch of {batch}")
        self.keys = list(keys) if keys is not None else list(range(batch))

    def _block(self, step: int, item: int | str, block: int) -> torch.Tensor:
        key = f"m2l-noise/{self.seed}/{step}/{item}/{block}".encode()
        seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1
        g = torch.Generator().manual_seed(seed)
        return torch.randn(2, self.bins, NOISE_BLOCK_FRAMES, generator=g)

    def __call__(self, step: int, start: int, end: int) -> torch.Tensor:
        b0, b1 = start // NOISE_BLOCK_FRAMES, -(-end // NOISE_BLOCK_FRAMES)
        items = []
        for item in self.keys:
            blocks = torch.cat([self._block(step, item, b) for b in range(b0, b1)], dim=-1)
            off = start - b0 * NOISE_BLOCK_FRAMES
            items.append(blocks[..., off:off + end - start])
        return torch.stack(items).to(device=self.device, dtype=self.dtype)


def latent_keys(z: torch.Tensor) -> list[str]:
    """A content key per item of ``z [batch, ...]`` (BLAKE2b of its float32 bytes): the noise of
    an item then follows its latents, whichever batch or position it is decoded in."""
    rows = z.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
    return ["z" + hashlib.blake2b(row.tobytes(), digest_size=8).hexdigest() for row in rows]


def prepare_for_inference(model: Music2Latent, channels_last: bool | None = None
                          ) -> Music2Latent:
    """Put ``model`` in eval mode and choose the memory layout of its weights (hence of its
    activations) for inference.

    ``channels_last=None`` (default): on CPU, NCHW when NNPACK's Winograd convolutions pay off
    for the model's widths (:func:`~benchmark.music2latent.kernels.winograd_pays_off`; the fast
    path of :mod:`benchmark.music2latent.kernels`), otherwise channels-last (NHWC), which
    oneDNN's direct convolutions run markedly faster with; other devices keep their layout. ``True`` or
    ``False`` force one. Values and state-dict keys are unchanged. Returns the model.
    """
    model.eval()
    if channels_last is None:
        if _device(model).type != "cpu":
            return model
        channels_last = not kernels.winograd_pays_off(model.config.channels)
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    return model


def _like_model(model: Music2Latent, x: torch.Tensor) -> torch.Tensor:
    """``x`` in the memory format of the model's 2-D weights (channels-last or not)."""
    if model.unet.stem.weight.is_contiguous(memory_format=torch.channels_last):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def sample_representation(model: Music2Latent, pyramid: Sequence[torch.Tensor], frames: int,
                          steps: int, noise_fn: NoiseFn, frame_offset: int = 0
                          ) -> torch.Tensor:
    """Consistency sampling of the representation ``[B, 2, bins, frames]``.

    Parameters
    ----------
    model: the autoencoder (eval mode).
    pyramid: :meth:`Music2Latent.decode_pyramid` of the latents (computed once, reused by
        every step).
    frames: STFT frames (``latents * downsample_time``).
    steps: network evaluations (1 = single-step decoding from ``sigma_max``).
    noise_fn: standard normal noise ``noise_fn(step, start, end)``; step 0 is the initial
        noise, step ``j`` the re-noising after evaluation ``j``. Frames are global indices
        ``frame_offset .. frame_offset + frames``.
    """
    c = model.config
    sigmas = karras_sigmas(steps, c.sigma_min, c.sigma_max, c.rho)
    x = _like_model(model, sigmas[0] * noise_fn(0, frame_offset, frame_offset + frames))
    for j in range(steps):
        x = model.denoise(x, sigmas[j], pyramid)
        if j + 1 < steps:
            std = math.sqrt(sigmas[j + 1] ** 2 - c.sigma_min ** 2)
            x = x + std * _like_model(model, noise_fn(j + 1, frame_offset, frame_offset + frames))
    return x


# -- chunking --------------------------------------------------------------------------------
def plan_chunks(total: int, chunk: int | None, overlap: int) -> list[tuple[int, int]]:
    """Split ``[0, total)`` into windows of ``chunk`` that overlap by at least ``overlap``.

    Returns ``[(start, end), ...]``; a single window when ``chunk`` is None or >= total.
    """
    if total <= 0:
        raise ValueError("nothing to chunk (total <= 0)")
    if chunk is None or chunk >= total:
        return [(0, total)]
    if not 0 <= overlap < chunk:
        raise ValueError(f"overlap ({overlap}) must be in [0, chunk={chunk})")
    stride = chunk - overlap
    spans = []
    start = 0
    while True:
        if start + chunk >= total:
            spans.append((max(0, total - chunk), total))
            break
        spans.append((start, start + chunk))
        start += stride
    return spans


def _ramp(n: int, device: torch.device) -> torch.Tensor:
    """Raised-cosine fade-in of ``n`` points strictly inside (0, 1); ``1 - ramp`` fades out."""
    t = (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n
    return 0.5 - 0.5 * torch.cos(math.pi * t)


def _as_batch(audio: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    wave = torch.as_tensor(np.asarray(audio) if not torch.is_tensor(audio) else audio)
    if wave.ndim == 1:
        wave = wave[None]
    if wave.ndim != 2:
        raise ValueError(f"audio must be [samples] or [batch, samples], got {tuple(wave.shape)}")
    return wave.to(device=device, dtype=torch.float32)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _heap_policy(model: Music2Latent) -> contextlib.AbstractContextManager:
    """CPU passes of wide models (those :func:`kernels.winograd_pays_off` for: hundreds of MiB
    per map) reuse freed activation memory (:func:`heap.reuse_freed_memory`). Narrow models are
    left to glibc's defaults, which serve their smaller maps as well or better (measured: the
    small CPU presets' encodes were up to 40 % slower under the policy)."""
    if _device(model).type == "cpu" and kernels.winograd_pays_off(model.config.channels):
        return heap.reuse_freed_memory()
    return contextlib.nullcontext()


def min_decode_overlap(config) -> int:
    """Fewest latent frames two decoder chunks must share so that some samples are fully
    reconstructed by both (outside the ``n_fft - hop`` attenuated edges): 1 for the paper."""
    return config.edge_samples // config.samples_per_latent + 1


# -- public API ------------------------------------------------------------------------------
def encode_audio(model: Music2Latent, frontend: SpectralFrontend,
                 audio: np.ndarray | torch.Tensor, chunk_seconds: float | None =
                 DEFAULT_CHUNK_SECONDS, overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
                 features: bool | str = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Encode audio to latents (or pre-bottleneck features, or both).

    Parameters
    ----------
    model, frontend: built from the same config.
    audio: ``[batch, samples]`` or ``[samples]`` mono float audio at ``config.sample_rate``.
    chunk_seconds: encode at most this much audio per forward pass (None: all at once).
    overlap_seconds: audio shared by neighbouring chunks (rounded to latent frames, at least
        one frame when chunking); the shared latent frames are cross-faded.
    features: return the ``[batch, feature_dim, K]`` pre-bottleneck features instead;
        ``"both"``: ``(latents, features)`` from one encoder pass.

    Returns
    -------
    ``[batch, latent_dim, K]`` float32 CPU tensor (``[batch, feature_dim, K]`` if
    ``features``), ``K = frontend.latents_for_samples(samples)``.
    """
    if features == "both":
        outs = _encode_chunked(model, frontend, audio, chunk_seconds, overlap_seconds, model.encode_both)
        return outs[0], outs[1]
    return _encode_chunked(model, frontend, audio, chunk_seconds, overlap_seconds,
                           lambda spec: (model.encode_features(spec) if features else model.encode(spec),))[0]


def _encode_chunked(model: Music2Latent, frontend: SpectralFrontend, audio: np.ndarray | torch.Tensor,
                    chunk_seconds: float | None, overlap_seconds: float,
                    forward: Callable[[torch.Tensor], tuple[torch.Tensor, ...]]) -> list[torch.Tensor]:
    """``forward(spec)`` over overlapping chunks of latent frames, each output cross-faded on
    the frames neighbouring chunks share (see :func:`encode_audio`)."""
    c = model.config
    device = _device(model)
    wave = _as_batch(audio, device)
    total = frontend.latents_for_samples(wave.shape[-1])
    if total < 1:
        frontend.crop_length(wave.shape[-1])  # raises with the minimum length
    chunk = None if chunk_seconds is None else max(1, round(chunk_seconds * c.latent_rate_hz))
    overlap = 0 if chunk is None else min(chunk - 1, max(1, round(overlap_seconds *
                                                                   c.latent_rate_hz)))
    spans = plan_chunks(total, chunk, overlap)
    spl, edge = c.samples_per_latent, c.edge_samples
    outs: list[torch.Tensor] = []
    with torch.inference_mode(), _heap_policy(model):
        prev_end = 0
        for start, end in spans:
            segment = wave[:, start * spl:end * spl + edge]
            spec = _like_model(model, frontend.wave_to_spec(segment))
            zs = [z.float().cpu() for z in forward(spec)]
            if not outs:
                outs = [torch.zeros(wave.shape[0], z.shape[1], total) for z in zs]
            shared = max(0, prev_end - start)
            for out, z in zip(outs, zs):
                if shared:
                    fade = _ramp(shared, z.device)
                    out[..., start:prev_end] = (out[..., start:prev_end] * (1 - fade)
                                                + z[..., :shared] * fade)
                out[..., start + shared:end] = z[..., shared:]
            prev_end = end
    assert outs
    return outs


def decode_latents(model: Music2Latent, frontend: SpectralFrontend,
                   latents: np.ndarray | torch.Tensor, steps: int = 1, seed: int = 0,
                   chunk_latents: int | str | None = "auto", overlap: int | None = None,
                   noise_fn: NoiseFn | None = None,
                   sampler: Callable[..., torch.Tensor] | None = None,
                   keys: Sequence[str] | None = None) -> torch.Tensor:
    """Decode latents to audio.

    Parameters
    ----------
    latents: ``[batch, latent_dim, K]`` (or ``[latent_dim, K]``).
    steps: consistency sampling steps (1 = the paper's single-step decoding).
    seed: seeds the sampling noise (:class:`BlockNoise`); same seed -> same audio.
    chunk_latents: latent frames per forward pass; ``"auto"`` (default) = about
        ``DEFAULT_CHUNK_SECONDS`` of audio, None = all at once.
    overlap: latent frames shared by neighbouring chunks (default: about
        ``DEFAULT_OVERLAP_SECONDS``); at least :func:`min_decode_overlap`, so that the
        cross-fade avoids the ``n_fft - hop`` attenuated samples at each chunk edge.
    noise_fn: override the noise source (``noise_fn(step, start, end)`` with global frame
        indices), e.g. to reproduce another implementation's noise.
    sampler: replaces :func:`sample_representation` (same signature), e.g. the EDM sampler of
        the diffusion-decoder baseline; chunking and cross-fades are unchanged.
    keys: one name per item addressing its noise (:class:`BlockNoise`); default
        :func:`latent_keys` (the latents' content).

    Returns
    -------
    ``[batch, K * samples_per_latent + n_fft - hop]`` float32 CPU audio in [-1, 1].
    """
    c = model.config
    device = _device(model)
    z = torch.as_tensor(np.asarray(latents) if not torch.is_tensor(latents) else latents)
    if z.ndim == 2:
        z = z[None]
    if z.ndim != 3 or z.shape[1] != c.latent_dim:
        raise ValueError(f"latents must be [batch, {c.latent_dim}, frames], got "
                         f"{tuple(z.shape)}")
    z = z.to(device=device, dtype=torch.float32)
    batch, total = z.shape[0], z.shape[-1]
    min_overlap = min_decode_overlap(c)
    if chunk_latents == "auto":
        chunk_latents = max(4 * min_overlap, round(DEFAULT_CHUNK_SECONDS * c.latent_rate_hz))
    if overlap is None:
        overlap = max(min_overlap, round(DEFAULT_OVERLAP_SECONDS * c.latent_rate_hz))
    if chunk_latents is not None:
        if not isinstance(chunk_latents, int):
            raise ValueError(f"chunk_latents must be an int, None or 'auto', got "
                             f"{chunk_latents!r}")
        if not min_overlap <= overlap < chunk_latents:
            raise ValueError(f"chunked decoding needs {min_overlap} <= overlap < chunk_latents "
                             f"(got overlap={overlap}, chunk_latents={chunk_latents}): the "
                             f"cross-fade must avoid the {c.edge_samples} attenuated samples at "
                             "each chunk edge")
    noise_fn = noise_fn or BlockNoise(seed, batch, c.freq_bins, device,
                                      keys=list(keys) if keys is not None else latent_keys(z))
    spans = plan_chunks(total, chunk_latents, overlap)
    spl, edge, dt = c.samples_per_latent, c.edge_samples, c.downsample_time
    out = torch.zeros(batch, frontend.samples_for_latents(total))
    with torch.inference_mode(), _heap_policy(model):
        prev_end = 0
        for start, end in spans:
            pyramid = model.decode_pyramid(z[..., start:end])
            spec = (sampler or sample_representation)(model, pyramid, (end - start) * dt, steps,
                                                      noise_fn, frame_offset=start * dt)
            wave = frontend.spec_to_wave(spec).float().cpu()
            a = start * spl
            if prev_end > start:
                # previous chunk is reliable up to prev_end*spl; this one from a + edge.
                f0, f1 = a + edge, prev_end * spl
                fade = _ramp(f1 - f0, wave.device)
                out[:, f0:f1] = out[:, f0:f1] * (1 - fade) + wave[:, edge:f1 - a] * fade
                out[:, f1:a + wave.shape[-1]] = wave[:, f1 - a:]
            else:
                out[:, a:a + wave.shape[-1]] = wave
            prev_end = end
    return out
