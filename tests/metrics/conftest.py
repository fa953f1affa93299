from __future__ import annotations

import pytest


@pytest.fixture
def backbone_weights(tmp_path, monkeypatch):
    """A weights folder ($BENCHMARK_WEIGHTS) holding a placeholder file for each fixed-backbone
    checkpoint (:data:`benchmark.metrics.variants.BACKBONES`): enough to build the ``fad_vggish``
    family (the network is read only when a clip is embedded)."""
    from benchmark.metrics.variants import BACKBONES

    folder = tmp_path / "weights"
    folder.mkdir()
    for backbone in BACKBONES.values():
        (folder / backbone.checkpoint_file).write_bytes(b"")
    monkeypatch.setenv("BENCHMARK_WEIGHTS", str(folder))
    return folder
