"""Codec registry: registry name -> ``"module:attribute"`` factory path, imported lazily.

External codecs need no registration: pass an import path ``"my_pkg.my_module:MyCodec"``
anywhere a codec name is accepted (CLI ``--codecs``, configs). Plugins can also call
``register_codec`` at import time.
"""

from __future__ import annotations

from typing import Any, Callable

from benchmark.codecs.protocol import Codec, CodecError
from benchmark.lazy import resolve

_REGISTRY: dict[str, str] = {
    # reference codecs (no parameters)
    "identity": "baselines.identity:IdentityCodec",
    "lowpass": "baselines.lowpass:LowpassCodec",
    "mel_griffinlim": "baselines.mel_griffinlim:MelGriffinLimCodec",
    # learned codecs
    "music2latent": "benchmark.music2latent.codec:Music2LatentCodec",
    "music2latent_official": "benchmark.music2latent.codec:OfficialMusic2LatentCodec",
    # external codecs: released weights from local files (docs/baselines.md, "External codecs")
    "snac": "baselines.snac_codec:SNACCodec",
    "encodec": "baselines.encodec_codec:EnCodecCodec",
    "dac": "baselines.dac_codec:DACCodec",
    "stable_audio_vae": "baselines.oobleck_codec:StableAudioVAECodec",
    "codicodec": "baselines.codicodec_codec:CoDiCodecCodec",
    # classical codecs, no weights: exact constant bitrate, the bitrate obtained measured per item
    # (docs/codecs.md); option kbps
    "opus": "baselines.classical:OpusCodec",
    "mp3": "baselines.classical:MP3Codec",
    # baseline autoencoders (same backbone and latent rate, other objectives)
    "spectral_ae": "baselines.autoencoders.spectral_ae:SpectralAECodec",
    "vae": "baselines.autoencoders.vae:VAECodec",
    "diffusion_ae": "baselines.autoencoders.diffusion_ae:DiffusionAECodec",
    # non-learned feature baselines for probing (feature-only)
    "logmel": "baselines.features:LogMelFeatures",
    "mfcc": "baselines.features:MFCCFeatures",
    "chroma": "baselines.features:ChromaFeatures",
}


def register_codec(name: str, target: str | Callable[..., Codec]) -> None:
    """Register ``name`` -> import path ``"module:attr"`` (or a factory callable)."""
    _REGISTRY[name] = target  # type: ignore[assignment]


def available_codecs() -> list[str]:
    return sorted(_REGISTRY)


def resolve_factory(spec: str) -> Callable[..., Codec]:
    """Turn a registry name or ``"module:attr"`` import path into a codec factory."""
    return resolve(_REGISTRY, spec, "codec", CodecError)


def create_codec(spec: str, **config: Any) -> Codec:
    """Build a codec from a registry name or import path with keyword configuration."""
    factory = resolve_factory(spec)
    try:
        codec = factory(**config)
    except CodecError:
        raise
    except Exception as exc:  # a plugin's constructor failing must name the codec
        raise CodecError(f"codec {spec!r} could not be built with {config}: {exc}") from exc
    if not isinstance(codec, Codec):
        raise CodecError(f"{spec!r} did not produce a benchmark.codecs.Codec (got {type(codec)!r})")
    return codec
