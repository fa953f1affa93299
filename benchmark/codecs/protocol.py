"""The one protocol every codec (autoencoder, external codec, feature extractor) implements.

Conventions
-----------
- Audio handed to a codec is mono float32 in [-1, 1] at ``info.sample_rate``, shape
  ``[batch, samples]``. The pipeline resamples to the codec's rate and folds extra channels
  (stereo, multi-channel) into the batch axis, so codecs never see channels - except codecs
  that code channels jointly (``info.channels > 1``, e.g. Opus and MP3 stereo): they are
  handed one item per call, so the rows of a call are the channels of one signal.
- ``encode`` returns latents ``[batch, latent_dim, frames]`` at ``info.latent_rate_hz``.
- ``decode`` maps latents back to audio ``[batch, samples]`` at ``info.sample_rate``. A decoder
  may return fewer or more samples than were encoded (e.g. Music2Latent crops to
  ``4096 k + 1536`` samples); the engine aligns lengths (see ``benchmark.metrics.align``:
  missing samples are scored as silence, extra ones cut, a declared delay removed).
- ``features`` optionally returns a richer representation for probing (e.g. the
  pre-bottleneck features of Music2Latent), ``[batch, dim, frames]``.
- Feature-only extractors (log-mel, MFCC, chroma) set ``info.can_decode = False``; they take
  part in probing only.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import hashlib
import json
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from benchmark.errors import BenchmarkError


class CodecError(BenchmarkError, RuntimeError):
    """A codec failed on an input, or could not be built (bad config, missing weights)."""


@dataclasses.dataclass(frozen=True)
class CodecInfo:
    """Static metadata of a codec.

    Attributes
    ----------
    name: registry name (or import path) of the codec.
    sample_rate: rate (Hz) the codec works at.
    channels: channels modelled jointly; 1 means multi-channel audio is coded per channel (the
        engine then batches items freely); more means one item per ``encode`` call (rows = its
        channels).
    latent_dim: channels of the latent sequence.
    latent_rate_hz: latent frames per second.
    compression_ratio: input numbers per latent number,
        ``sample_rate * channels / (latent_dim * latent_rate_hz)``.
    stochastic: whether decoding draws noise (diffusion / consistency decoders).
    decode_steps: number of network evaluations per decode (None for non-iterative decoders).
    can_decode: False for feature-only extractors.
    has_features: whether ``features()`` returns something besides the latents.
    bitrate_kbps: nominal bitrate (kbit/s) of codecs with a real bitstream (Opus, MP3, the
        quantised codes of EnCodec/SNAC); None for continuous latents (their size is
        :meth:`latent_floats_per_second`). The bitrate actually obtained is measured per item
        when the codec implements :meth:`Codec.bitstream_bits`.
    code_license, weights_license: licences, shown in reports (e.g. CC BY-NC weights).
    weights_id: content hash of the weights (``"none"`` for parameter-free codecs).
    parameters: number of trainable parameters (0 for parameter-free codecs).
    description: one line for listings.
    delay_samples: constant lag of ``decode(encode(x))`` behind ``x`` at ``sample_rate`` (samples);
        the engine removes it from the start of every decoded chunk (see
        :mod:`benchmark.metrics.align`). Declare it only if it is truly constant.
    batch_invariant: whether an item's ``decode(encode(x))`` is the same whatever else is in the
        batch (up to float32 rounding). None: assumed for deterministic codecs, not for stochastic
        ones (their noise may follow the batch row). The engine codes short items in batches only
        when true (:attr:`codes_items_independently`).
    """

    name: str
    sample_rate: int
    latent_dim: int
    latent_rate_hz: float
    channels: int = 1
    stochastic: bool = False
    decode_steps: int | None = None
    can_decode: bool = True
    has_features: bool = False
    code_license: str = "MIT"
    weights_license: str = "n/a"
    weights_id: str = "none"
    parameters: int = 0
    description: str = ""
    delay_samples: int = 0
    batch_invariant: bool | None = None
    bitrate_kbps: float | None = None

    @property
    def codes_items_independently(self) -> bool:
        """``batch_invariant``, defaulting to ``not stochastic``; never for codecs that code
        channels jointly (``channels > 1``: the rows of a call are one item's channels)."""
        if self.channels > 1:
            return False
        return self.batch_invariant if self.batch_invariant is not None else not self.stochastic

    @property
    def compression_ratio(self) -> float:
        """Input numbers per latent number at the codec's own rate (see
        :meth:`compression_ratio_for` for the ratio against the audio that is scored)."""
        return self.sample_rate * self.channels / (self.latent_dim * self.latent_rate_hz)

    def latent_floats_per_second(self, channels: int = 1) -> float:
        """Latent numbers per second of ``channels``-channel audio (channels beyond the codec's
        own are coded separately)."""
        groups = max(1, -(-channels // max(1, self.channels)))
        return self.latent_dim * self.latent_rate_hz * groups

    def compression_ratio_for(self, sample_rate: int, channels: int = 1) -> float:
        """Audio numbers per latent number for audio at ``sample_rate`` Hz with ``channels``
        channels: the ratio relative to the audio the codec is scored on, whatever its own rate."""
        return sample_rate * channels / self.latent_floats_per_second(channels)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["compression_ratio"] = round(self.compression_ratio, 4)
        return d


class Codec(abc.ABC):
    """Base class for codecs. Subclasses set ``self.info`` in ``__init__``.

    Constructor keyword arguments are the codec's configuration: they are recorded by
    ``config()`` and take part in the cache key, so two differently configured instances of
    the same codec never share cached artefacts.
    """

    info: CodecInfo

    def __init__(self, **config: Any) -> None:
        self._config = dict(config)

    # -- protocol ---------------------------------------------------------------------------
    @abc.abstractmethod
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """``[batch, samples]`` audio at ``info.sample_rate`` -> ``[batch, dim, frames]``."""

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[batch, dim, frames]`` latents -> ``[batch, samples]`` audio."""
        raise CodecError(f"codec {self.info.name!r} cannot decode (feature-only)")

    def features(self, audio: torch.Tensor) -> torch.Tensor | None:
        """Optional probing features ``[batch, dim, frames]``; None if the codec has none."""
        return None

    def encode_with_features(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(encode(audio), features(audio))`` (features None without ``info.has_features``); a
        codec whose features are a stage of its encoder overrides this with one pass."""
        return self.encode(audio), (self.features(audio) if self.info.has_features else None)

    def bitstream_bits(self, latents: torch.Tensor) -> np.ndarray | None:
        """Bits of the coded bitstream per row of ``latents`` (``[batch]``), for codecs whose
        latents are a real bitstream (the engine reports the obtained bitrate from them); None
        for continuous latents."""
        return None

    def to(self, device: str | torch.device) -> "Codec":
        """Move weights to ``device`` (no-op for parameter-free codecs)."""
        return self

    @contextlib.contextmanager
    def rows_named(self, names: Sequence[str]) -> Iterator[None]:
        """Content names of the rows that the calls inside code (the engine passes a hash of each
        row's input audio). A stochastic codec seeds each row's noise by its name
        (:meth:`row_names`), so an item's output depends neither on its batch nor on the last bits
        of its latents (thread counts, another rank); other codecs ignore the names."""
        previous, self._row_names = getattr(self, "_row_names", None), list(names)
        try:
            yield
        finally:
            self._row_names = previous

    def row_names(self, batch: int) -> list[str] | None:
        """The names :meth:`rows_named` gave, if they name a batch of ``batch`` rows, else None."""
        names = getattr(self, "_row_names", None)
        return names if names is not None and len(names) == batch else None

    # -- identity ---------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return dict(self._config)

    @property
    def identity(self) -> str:
        """Stable 16-hex id of (name, class, config, weights, version). Keys every cached artefact.

        Subclasses bump a class attribute ``version`` when their output changes for the same
        config and weights, which invalidates cached artefacts.
        """
        payload = json.dumps(
            {"name": self.info.name, "class": f"{type(self).__module__}.{type(self).__qualname__}",
             "config": self.config(), "weights": self.info.weights_id,
             "version": getattr(self, "version", "1")},
            sort_keys=True, default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def check_audio_batch(audio: torch.Tensor, codec: str, allow_empty: bool = True) -> None:
    """Raise a CodecError unless ``audio`` is a finite ``[batch, samples]`` float tensor (with
    at least one sample unless ``allow_empty``)."""
    if audio.ndim != 2:
        raise CodecError(f"{codec}: expected audio [batch, samples], got shape {tuple(audio.shape)}")
    if not allow_empty and audio.shape[-1] < 1:
        raise CodecError(f"{codec}: empty audio")
    if not torch.isfinite(audio).all():
        raise CodecError(f"{codec}: audio contains NaN or inf samples")


def check_one_item(tensor: torch.Tensor, codec: str, what: str = "channels") -> int:
    """The rows of one item for a codec that codes a stereo pair jointly (``info.channels == 2``:
    the engine hands it one item per call): 1 (mono) or 2, else a CodecError."""
    rows = int(tensor.shape[0])
    if rows not in (1, 2):
        raise CodecError(f"{codec}: codes one item per call (its 1 or 2 {what} as rows), got {rows} rows")
    return rows


def check_latents(latents: torch.Tensor, codec: str, dim: int | None = None) -> None:
    """Raise a CodecError unless ``latents`` is a finite ``[batch, dim, frames]`` tensor (with
    ``dim`` channels, when given)."""
    if latents.ndim != 3:
        raise CodecError(f"{codec}: expected latents [batch, dim, frames], got {tuple(latents.shape)}")
    if dim is not None and latents.shape[1] != dim:
        raise CodecError(f"{codec}: latents have {latents.shape[1]} channels, the model expects {dim}")
    if not torch.isfinite(latents).all():
        raise CodecError(f"{codec}: latents contain NaN or inf values; the encoder diverged or "
                         "the latents file is corrupt - re-encode the item")
