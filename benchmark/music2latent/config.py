"""Hyper-parameters of the Music2Latent consistency autoencoder, and named presets.

One frozen dataclass, :class:`Music2LatentConfig`, holds every number the front end, the
model, the training loss and the sampler need; derived quantities (frequency rows, channels per
level, time downsampling, latent rate) are read-only properties. Presets live in the plain
registry :data:`PRESETS`:

``paper``
    The released configuration (Pasini, Lattner & Fazekas, ISMIR 2024): 44.1 kHz, hop 512,
    n_fft 2048, 1024 frequency rows, 5 levels of 64-128-256-256-256 channels, 64-d latents at
    4096 samples per latent frame (10.77 Hz). 57.66 M parameters (the released checkpoint holds
    58.19 M, of which 0.53 M are conditioning weights of the decoder that are never used and
    that we do not build; see :mod:`benchmark.music2latent.convert`).
``cpu``
    A small model of the same architecture for 2-core CPU training in minutes: 16 kHz, hop
    128, n_fft 512 (256 rows, same 75 % overlap), 4 levels of 8-16-16-32 channels (frequency
    256 -> 64 -> 32 -> 16, time ÷4), one block per level, attention on the two coarse levels,
    8-d latents at 512 samples per latent frame (31.25 Hz; 64x fewer numbers than the
    waveform, like the paper model); 0.54 M parameters; training crops of 96 STFT frames
    (0.79 s). One training step at batch 8 (encoder + decoder + two UNet passes + backward)
    is about 20 GFLOP, measured at about 1 CPU-second without the optimiser on our 2-core
    machine (so about 0.5 s of wall time with both cores free). Its cost is dominated by the
    full-resolution level (pixels x channels), so ``crop_frames=64`` is the knob for faster
    steps.
``smoke``
    A tiny model for unit tests (seconds on CPU).

Shapes: audio ``[batch, samples]``, spectrogram ``[batch, 2, freq_bins, frames]``, latents
``[batch, latent_dim, frames // downsample_time]``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

_TUPLE_FIELDS = ("multipliers", "freq_downsample", "encoder_layers", "unet_layers",
                 "attention_levels")
# Derived values that ``to_dict(derived=True)`` writes; ``from_dict`` accepts them back and
# checks them against the fields instead of failing on an unknown key.
_DERIVED = ("freq_bins", "channels", "downsample_time", "downsample_freq", "samples_per_latent",
            "latent_rate_hz", "edge_samples", "latent_freq_bins", "feature_dim",
            "crop_samples")


def norm_groups(channels: int) -> int:
    """GroupNorm groups used everywhere in the model: ``min(channels // 4, 32)``."""
    return max(1, min(channels // 4, 32))


@dataclasses.dataclass(frozen=True)
class Music2LatentConfig:
    """Every hyper-parameter of Music2Latent.

    Front end
        sample_rate (Hz, nominal: nothing resamples inside the model), hop (samples), n_fft
        (samples; window = FFT length, periodic Hann), alpha/beta of the amplitude compression
        ``c -> beta |c|^alpha e^{i angle c}``.
    Architecture
        base_channels and per-level ``multipliers`` (channels = base * multiplier);
        ``freq_downsample[i]`` says how level i goes to level i+1: 1 = frequency-only
        (÷``freq_factor`` in frequency, time unchanged), 0 = ÷2 in frequency and time;
        ``encoder_layers``/``unet_layers``: residual blocks per level (the decoder mirrors the
        encoder); ``attention_levels``: levels with frequency-wise self-attention (``heads``
        heads); ``cond_dim``: width of the noise embedding; ``bottleneck_channels`` and
        ``bottleneck_blocks``: the 1-D part of encoder and decoder; ``latent_dim``: latent
        channels (tanh-bounded).
    Noise schedule (EDM / consistency models)
        sigma_min (= the boundary epsilon of the preconditioning), sigma_max, rho, sigma_data.
    Ablation switches
        cross_connections: decoder pyramid added before every UNet block (False: the latents
        enter the UNet once, at its coarsest level); freq_attention: frequency-wise attention
        (False: none anywhere); freq_scaling: static per-frequency gain in the encoder and the
        sigma-dependent per-frequency scaling at the UNet input and output.
    Training
        crop_frames: STFT frames per training crop (multiple of ``downsample_time``); the crop
        in samples is :attr:`crop_samples`.
    """

    sample_rate: int = 44100
    hop: int = 512
    n_fft: int = 2048
    alpha: float = 0.65
    beta: float = 0.34
    base_channels: int = 64
    multipliers: tuple[int, ...] = (1, 2, 4, 4, 4)
    freq_downsample: tuple[int, ...] = (1, 0, 0, 0)
    freq_factor: int = 4
    encoder_layers: tuple[int, ...] = (1, 1, 1, 1, 1)
    unet_layers: tuple[int, ...] = (2, 2, 2, 2, 2)
    attention_levels: tuple[int, ...] = (2, 3, 4)
    heads: int = 4
    cond_dim: int = 256
    bottleneck_channels: int = 512
    bottleneck_blocks: int = 4
    latent_dim: int = 64
    dropout: float = 0.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    sigma_data: float = 0.5
    cross_connections: bool = True
    freq_attention: bool = True
    freq_scaling: bool = True
    crop_frames: int = 64

    def __post_init__(self) -> None:
        for name in _TUPLE_FIELDS:
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        self._validate()

    # -- validation ---------------------------------------------------------------------------
    def _validate(self) -> None:
        def fail(msg: str) -> None:
            raise ValueError(f"Music2LatentConfig: {msg}")

        levels = len(self.multipliers)
        if levels < 1:
            fail("multipliers must name at least one level")
        if len(self.freq_downsample) != levels - 1:
            fail(f"freq_downsample needs {levels - 1} entries (one per level transition), "
                 f"got {len(self.freq_downsample)}")
        if any(v not in (0, 1) for v in self.freq_downsample):
            fail(f"freq_downsample entries must be 0 (time+freq /2) or 1 (freq-only), got "
                 f"{self.freq_downsample}")
        for name in ("encoder_layers", "unet_layers"):
            if len(getattr(self, name)) != levels or min(getattr(self, name)) < 1:
                fail(f"{name} needs {levels} entries >= 1, got {getattr(self, name)}")
        if any(not 0 <= lvl < levels for lvl in self.attention_levels):
            fail(f"attention_levels {self.attention_levels} outside 0..{levels - 1}")
        if self.n_fft % self.hop or self.n_fft // self.hop < 2:
            fail(f"n_fft ({self.n_fft}) must be a multiple >= 2 of hop ({self.hop})")
        if self.freq_bins % self.downsample_freq:
            fail(f"freq_bins {self.freq_bins} (= n_fft/2) not divisible by the total frequency "
                 f"downsampling {self.downsample_freq}")
        for lvl, ch in enumerate(self.channels):
            if ch % norm_groups(ch):
                fail(f"level {lvl}: {ch} channels not divisible into {norm_groups(ch)} groups")
            if self.freq_attention and lvl in self.attention_levels and ch % self.heads:
                fail(f"level {lvl}: {ch} channels not divisible by heads={self.heads}")
        if self.bottleneck_channels % norm_groups(self.bottleneck_channels):
            fail(f"bottleneck_channels {self.bottleneck_channels} not divisible into groups")
        if self.cond_dim % 2:
            fail("cond_dim must be even (sin/cos halves of the noise embedding)")
        if not 0 < self.sigma_min < self.sigma_max:
            fail("need 0 < sigma_min < sigma_max")
        if self.crop_frames % self.downsample_time or self.crop_frames <= 0:
            fail(f"crop_frames ({self.crop_frames}) must be a positive multiple of "
                 f"downsample_time ({self.downsample_time})")

    # -- derived quantities -------------------------------------------------------------------
    @property
    def freq_bins(self) -> int:
        """Frequency rows of the representation: ``n_fft // 2`` (the Nyquist bin is dropped)."""
        return self.n_fft // 2

    @property
    def levels(self) -> int:
        return len(self.multipliers)

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels per level, ``base_channels * multiplier``."""
        return tuple(self.base_channels * m for m in self.multipliers)

    @property
    def downsample_time(self) -> int:
        """STFT frames per latent frame (8 for the paper config)."""
        return 2 ** sum(1 for v in self.freq_downsample if v == 0)

    @property
    def downsample_freq(self) -> int:
        """Total frequency reduction from level 0 to the last level (32 for the paper config)."""
        return math.prod(self.freq_factor if v else 2 for v in self.freq_downsample)

    @property
    def latent_freq_bins(self) -> int:
        """Frequency rows at the coarsest level (32 for the paper config)."""
        return self.freq_bins // self.downsample_freq

    @property
    def feature_dim(self) -> int:
        """Width of the pre-bottleneck features (8192 for the paper config)."""
        return self.channels[-1] * self.latent_freq_bins

    @property
    def samples_per_latent(self) -> int:
        """Audio samples per latent frame, ``hop * downsample_time`` (4096 for the paper)."""
        return self.hop * self.downsample_time

    @property
    def latent_rate_hz(self) -> float:
        """Latent frames per second at ``sample_rate`` (10.77 Hz for the paper config)."""
        return self.sample_rate / self.samples_per_latent

    @property
    def edge_samples(self) -> int:
        """``n_fft - hop``: samples that k latent frames span beyond ``k * samples_per_latent``
        (1536 for the paper config)."""
        return self.n_fft - self.hop

    @property
    def crop_samples(self) -> int:
        """Samples of a training crop of ``crop_frames`` STFT frames."""
        return (self.crop_frames - 1) * self.hop + self.n_fft

    # -- (de)serialisation --------------------------------------------------------------------
    def to_dict(self, derived: bool = False) -> dict[str, Any]:
        """Plain JSON/YAML-able dict of the fields (and of the derived values if asked)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
        if derived:
            for name in _DERIVED:
                value = getattr(self, name)
                d[name] = list(value) if isinstance(value, tuple) else value
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Music2LatentConfig":
        """Inverse of :meth:`to_dict`. Unknown keys raise; derived keys must agree."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - set(_DERIVED))
        if unknown:
            raise ValueError(f"Music2LatentConfig: unknown keys {unknown}; known fields: "
                             f"{sorted(names)}")
        config = cls(**{k: v for k, v in data.items() if k in names})
        for name in set(data) & set(_DERIVED):
            expected = getattr(config, name)
            given = tuple(data[name]) if isinstance(data[name], list) else data[name]
            if (not math.isclose(given, expected) if isinstance(expected, float)
                    else given != expected):
                raise ValueError(f"Music2LatentConfig: derived key {name}={data[name]!r} "
                                 f"contradicts the fields (they give {expected!r})")
        return config

    def replace(self, **changes: Any) -> "Music2LatentConfig":
        """Copy with some fields changed (re-validated)."""
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, Music2LatentConfig] = {
    "paper": Music2LatentConfig(),
    "cpu": Music2LatentConfig(
        sample_rate=16000, hop=128, n_fft=512, base_channels=8, multipliers=(1, 2, 2, 4),
        freq_downsample=(1, 0, 0), encoder_layers=(1, 1, 1, 1), unet_layers=(1, 1, 1, 1),
        attention_levels=(2, 3), heads=2, cond_dim=64, bottleneck_channels=128,
        bottleneck_blocks=1, latent_dim=8, crop_frames=96,
    ),
    "smoke": Music2LatentConfig(
        sample_rate=16000, hop=64, n_fft=256, base_channels=8, multipliers=(1, 2, 2),
        freq_downsample=(1, 0), encoder_layers=(1, 1, 1), unet_layers=(1, 1, 1),
        attention_levels=(2,), heads=2, cond_dim=32, bottleneck_channels=32,
        bottleneck_blocks=1, latent_dim=8, crop_frames=16,
    ),
}


def get_preset(name: str, **overrides: Any) -> Music2LatentConfig:
    """Config of preset ``name`` with optional field overrides."""
    try:
        config = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown Music2Latent preset {name!r}; known presets: "
                         f"{', '.join(sorted(PRESETS))}") from None
    return config.replace(**overrides) if overrides else config
