"""Backbone registry, plugin route, embedding cache keys."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.embeddings import (
    BACKBONES,
    EmbeddingCache,
    EmbeddingError,
    available_backbones,
    create_backbone,
)


def test_registry():
    assert {"musicnn", "vggish", "clap"} <= set(available_backbones())
    assert all(":" in target for target in BACKBONES.values())
    with pytest.raises(EmbeddingError, match="unknown FAD backbone"):
        create_backbone("openl3")
    with pytest.raises(EmbeddingError, match="cannot import"):
        create_backbone("no_such_pkg.module:Backbone")
    with pytest.raises(EmbeddingError, match="not an EmbeddingBackbone"):
        create_backbone("collections:OrderedDict")


def test_import_path_plugin(tmp_path):
    bb = create_backbone("tests.metrics.test_fad:ToyBackbone")
    assert bb.embed(np.ones(16000, np.float32) * 0.1, 16000).shape == (10, 8)  # 1 s at 8 kHz, 0.1 s frames


def test_clap_needs_a_local_checkpoint(tmp_path):
    with pytest.raises(EmbeddingError, match="checkpoint not found.*huggingface.co/lukewys/laion_clap"):
        create_backbone("clap", checkpoint=tmp_path / "630k-audioset-best.pt")


def test_cache_key_depends_on_backbone_audio_and_rate(tmp_path):
    from tests.metrics.test_fad import ToyBackbone

    a, b = ToyBackbone(), ToyBackbone(offset=1.0)
    x = np.linspace(-0.1, 0.1, 8000, dtype=np.float32)
    keys = {EmbeddingCache.key(a, x, 8000), EmbeddingCache.key(b, x, 8000),
            EmbeddingCache.key(a, x * 0.5, 8000), EmbeddingCache.key(a, x, 16000)}
    assert len(keys) == 4
    assert EmbeddingCache.key(a, x.copy(), 8000) == EmbeddingCache.key(ToyBackbone(), x, 8000)
    cache = EmbeddingCache(tmp_path)
    first = cache.embed(a, x, 8000)
    np.testing.assert_array_equal(cache.embed(a, x, 8000), first)
    assert (cache.hits, cache.misses) == (1, 1)
