"""Embedding backbones for set metrics (FAD): a registry of name -> ``"module:Class"``.

Backbones are imported lazily; external ones need no registration (pass
``"my_pkg.my_module:MyBackbone"``, a subclass of :class:`EmbeddingBackbone`).

========  ==========================================================  ======  =====  =======
name      network / weights                                           rate    dim    patch
========  ==========================================================  ======  =====  =======
musicnn   musicnn MTT_musicnn (weights from the ``musicnn`` wheel)     16 kHz  200    2.99 s
vggish    VGGish, user-supplied torchvggish checkpoint                16 kHz  128    0.96 s
clap      LAION-CLAP HTSAT-tiny/base, user-supplied checkpoint        48 kHz  512    10 s
========  ==========================================================  ======  =====  =======
"""

from __future__ import annotations

from typing import Any

from benchmark.lazy import resolve
from benchmark.embeddings.base import EmbeddingBackbone, EmbeddingCache, EmbeddingError

BACKBONES: dict[str, str] = {
    "musicnn": "benchmark.embeddings.musicnn:MusicnnBackbone",
    "vggish": "benchmark.embeddings.vggish:VGGishBackbone",
    "clap": "benchmark.embeddings.clap:ClapBackbone",
}


def available_backbones() -> list[str]:
    return sorted(BACKBONES)


def create_backbone(name: str, **kwargs: Any) -> EmbeddingBackbone:
    """Build the backbone registered as ``name`` (or given as ``"module:Class"``)."""
    cls = resolve(BACKBONES, name, "FAD backbone", EmbeddingError)
    backbone = cls(**kwargs)
    if not isinstance(backbone, EmbeddingBackbone):
        raise EmbeddingError(f"{name!r} is not an EmbeddingBackbone (got {type(backbone)!r})")
    return backbone


__all__ = ["BACKBONES", "EmbeddingBackbone", "EmbeddingCache", "EmbeddingError",
           "available_backbones", "create_backbone"]
