"""Embedding backbone protocol and the embedding cache.

A backbone maps one mono clip to a sequence of embeddings, one per analysis patch:
``embed(audio [samples], sample_rate) -> [patches, dim]`` float32. Backbones resample to their
own rate. Embeddings are expensive and deterministic, so they are cached on disk keyed by
``(backbone.identity, hash of the audio and its rate)``.
"""

from __future__ import annotations

import abc
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.data.audio import array_hash, resample
from benchmark.errors import BenchmarkError


class EmbeddingError(BenchmarkError, RuntimeError):
    """A backbone cannot be built (missing or malformed checkpoint) or cannot embed an input."""


class EmbeddingBackbone(abc.ABC):
    """Base class of FAD backbones.

    Subclasses set ``name``, ``sample_rate`` (Hz the network works at), ``dim`` (embedding
    size), ``patch_seconds`` (audio covered by one embedding) and ``weights_id`` (content hash
    of the weights), and implement :meth:`embed_at_rate`.
    """

    name: str
    sample_rate: int
    dim: int
    patch_seconds: float
    weights_id: str = "none"
    version: str = "1"

    def __init__(self, device: str | torch.device = "cpu", **config: Any) -> None:
        self.device = torch.device(device)
        self._config = dict(config)

    @abc.abstractmethod
    def embed_at_rate(self, audio: np.ndarray) -> np.ndarray:
        """``[samples]`` float32 audio at ``self.sample_rate`` -> ``[patches, dim]`` float32."""

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Embed one mono clip ``[samples]`` at ``sample_rate`` Hz -> ``[patches, dim]``."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise EmbeddingError(f"{self.name}: expected mono audio [samples], got shape {audio.shape}")
        if audio.size == 0:
            raise EmbeddingError(f"{self.name}: empty audio clip")
        if not np.isfinite(audio).all():
            raise EmbeddingError(f"{self.name}: audio contains NaN or inf samples")
        if sample_rate != self.sample_rate:
            audio = resample(audio[None], sample_rate, self.sample_rate)[0]
        return self.embed_at_rate(audio)

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    @property
    def identity(self) -> str:
        """16-hex id of (name, config, weights, version); keys the embedding cache."""
        payload = json.dumps({"name": self.name, "config": self.config(), "weights": self.weights_id,
                              "version": self.version}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """Everything an embedding depends on, for result provenance."""
        return {"name": self.name, "identity": self.identity, "sample_rate": self.sample_rate,
                "dim": self.dim, "patch_seconds": self.patch_seconds, "weights_id": self.weights_id,
                "config": self.config()}


class EmbeddingCache:
    """On-disk cache of clip embeddings under ``<root>/artifacts/embeddings/...``.

    Key: SHA-256 of ``(backbone identity, SHA-256 of the float32 audio, sample rate)``. Uses
    the project's atomic artefact cache, so interrupted writes never leave corrupt entries.
    """

    STAGE = "embeddings"

    def __init__(self, root: str | Path | None = None) -> None:
        from benchmark.cache import ArtifactCache
        from benchmark.config import default_cache_dir

        self.store = ArtifactCache(Path(root) if root is not None else default_cache_dir())

    @staticmethod
    def key(backbone: EmbeddingBackbone, audio: np.ndarray, sample_rate: int) -> str:
        audio_id = array_hash(np.ascontiguousarray(audio, dtype=np.float32))
        return hashlib.sha256(f"{backbone.identity}:{audio_id}:{int(sample_rate)}".encode()).hexdigest()

    def embed(self, backbone: EmbeddingBackbone, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """``backbone.embed(audio, sample_rate)``, read from the cache when present."""
        key = self.key(backbone, audio, sample_rate)
        hit = self.store.load_arrays(self.STAGE, key)
        if hit is not None and "embeddings" in hit:
            return hit["embeddings"]
        emb = backbone.embed(audio, sample_rate)
        self.store.save_arrays(self.STAGE, key, embeddings=emb)
        return emb

    @property
    def hits(self) -> int:
        return self.store.hits

    @property
    def misses(self) -> int:
        return self.store.misses

