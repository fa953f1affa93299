import numpy as np

from benchmark.cache import ArtifactCache, cache_key


def test_round_trip_and_counts(tmp_path):
    cache = ArtifactCache(tmp_path)
    key = cache_key("encode", "codec", "hash")
    assert cache.load_arrays("encode", key) is None
    cache.save_arrays("encode", key, latents=np.arange(6, dtype=np.float32).reshape(1, 2, 3))
    out = cache.load_arrays("encode", key)
    np.testing.assert_array_equal(out["latents"], np.arange(6).reshape(1, 2, 3))
    assert (cache.hits, cache.misses) == (1, 1)
    cache.save_value("metrics", key, {"value": 1.5})
    assert cache.load_value("metrics", key) == {"value": 1.5}


def test_key_depends_on_every_part():
    assert cache_key("a", 1) != cache_key("a", 2)
    assert cache_key("a", {"x": 1, "y": 2}) == cache_key("a", {"y": 2, "x": 1})


def test_corrupt_artifact_is_recomputed_not_trusted(tmp_path):
    cache = ArtifactCache(tmp_path)
    key = cache_key("k")
    cache.save_arrays("decode", key, audio=np.zeros(4))
    path = next((tmp_path / "artifacts" / "decode").rglob("*.npz"))
    path.write_bytes(b"garbage")
    assert cache.load_arrays("decode", key) is None
    assert not path.exists()
    assert not list((tmp_path / "artifacts").rglob("*.tmp"))
