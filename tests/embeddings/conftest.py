from __future__ import annotations

import pytest

from benchmark.embeddings.musicnn import MusicnnBackbone


@pytest.fixture(scope="session")
def musicnn(tmp_path_factory):
    """The default backbone, with its converted weights cached in a temporary folder."""
    return MusicnnBackbone(cache_dir=tmp_path_factory.mktemp("musicnn-cache"))
