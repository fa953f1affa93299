"""Codec registry: registry name -> ``"module:attribute"`` factory path, imported lazily.

External codecs need no registration: pass an import path ``"my_pkg.my_module:MyCodec"``
anywhere a codec name is accepted (CLI ``--codecs``, configs). Plugins can also call
``register_codec`` at import time.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from benchmark.codecs.protocol import Codec, CodecError

_REGISTRY: dict[str, str] = {
    # reference codecs (no parameters)
    "identity": "baselines.identity:IdentityCodec",
    "lowpass": "baselines.lowpass:LowpassCodec",
    "mel_griffinlim": "baselines.mel_griffinlim:MelGriffinLimCodec",
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
    target: Any = _REGISTRY.get(spec, spec)
    if callable(target):
        return target
    if ":" not in target:
        known = ", ".join(available_codecs())
        raise CodecError(f"unknown codec {spec!r}; known codecs: {known}; or give an import "
                         "path 'package.module:ClassName'")
    module_name, attr = target.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CodecError(f"codec {spec!r}: cannot import {module_name!r} ({exc}); is the package "
                         "installed and on PYTHONPATH?") from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise CodecError(f"codec {spec!r}: module {module_name!r} has no attribute {attr!r}") from exc


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
