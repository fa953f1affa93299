"""FAD: zero on identical sets, symmetry, monotone growth with noise, settings, per-track
contributions, embedding cache, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from benchmark.embeddings.base import EmbeddingBackbone
from benchmark.metrics.base import MetricError, comparability_problems, format_warning
from benchmark.metrics.fad import (
    COMPARABLE_KEYS,
    FAD,
    FADSettingsWarning,
    check_comparable,
    warn_if_incomparable,
)
from benchmark.metrics.frechet import frechet_distance, gaussian_stats
from benchmark.metrics.signals import mixture


class ToyBackbone(EmbeddingBackbone):
    """Cheap deterministic backbone: per 0.1 s frame, log energy in 8 FFT bands."""

    name = "toy"
    sample_rate = 8000
    dim = 8
    patch_seconds = 0.1
    calls = 0

    def __init__(self, offset: float = 0.0, device: str = "cpu") -> None:
        super().__init__(device=device, offset=offset)
        self.offset = offset

    def embed_at_rate(self, audio):
        type(self).calls += 1
        frames = audio[: audio.size // 800 * 800].reshape(-1, 800)
        spec = np.abs(np.fft.rfft(frames, axis=1))[:, 1:401] ** 2
        return (np.log10(spec.reshape(len(frames), 8, 50).sum(2) + 1e-6) + self.offset).astype(np.float32)


TOY = "tests.metrics.test_fad:ToyBackbone"
SR = 16000


def _noisy(x, snr_db, seed):
    n = np.random.default_rng(seed).standard_normal(x.size).astype(np.float32)
    return x + n * np.sqrt(np.mean(x ** 2) / np.mean(n ** 2)) * 10 ** (-snr_db / 20)


@pytest.fixture(scope="module")
def clips():
    return [mixture(SR, 6.0, seed=s) for s in range(6)]


@pytest.fixture(scope="module")
def musicnn_fad(tmp_path_factory):
    root = tmp_path_factory.mktemp("fadcache")
    return FAD(backbone="musicnn", backbone_options={"cache_dir": root}, cache=root, reference_name="mixtures")


def test_identical_sets_give_zero(musicnn_fad, clips):
    result = musicnn_fad.compute(clips[:4], clips[:4], SR)  # 8 embeddings < 200 dims, on purpose
    assert result.value == pytest.approx(0.0, abs=1e-6)


def test_monotone_growth_with_noise_and_symmetry(musicnn_fad, clips):
    values = []
    for snr in (30, 15, 0):
        noisy = [_noisy(c, snr, i) for i, c in enumerate(clips[:3])]
        values.append(musicnn_fad.compute(clips[:3], noisy, SR, ids=["a", "b", "c"]).value)
    swapped = musicnn_fad.compute(noisy, clips[:3], SR).value
    assert 0 < values[0] < values[1] < values[2]
    assert swapped == pytest.approx(values[2], rel=1e-6)


def test_settings_record_what_the_value_depends_on(musicnn_fad, clips):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warnings are data, never raw Python warnings
        result = musicnn_fad.compute(clips[:4], clips[:4], SR, ids=[f"c{i}" for i in range(4)])
    (warning,) = result.warnings
    assert warning.startswith("only 8 embeddings for 200 dimensions: covariances are rank-deficient")
    assert result.settings["warnings"] == [warning] and result.settings["warning"] == warning
    assert format_warning("fad", warning) == f"warning [fad]: {warning}"
    s = result.settings
    assert s["backbone"] == "musicnn-MTT_musicnn" and s["backbone_dim"] == 200
    assert s["reference_set"] == "mixtures" and len(s["reference_hash"]) == 16
    assert (s["n_reference_clips"], s["n_estimate_clips"]) == (4, 4)
    assert (s["n_reference_embeddings"], s["n_estimate_embeddings"]) == (8, 8)  # 2 x 2.99 s per 6 s clip
    assert s["clip_seconds"] == "whole (mean 6.00 s)"
    assert set(result.per_item) == {"c0", "c1", "c2", "c3"}


def test_embedding_cache_keyed_by_backbone_identity_and_audio(tmp_path, clips):
    ToyBackbone.calls = 0
    fad = FAD(backbone=TOY, cache=tmp_path)
    first = fad.compute(clips[:3], clips[3:], SR).value
    assert ToyBackbone.calls == 6
    assert fad.compute(clips[:3], clips[3:], SR).value == first and ToyBackbone.calls == 6  # all hits
    FAD(backbone=TOY, backbone_options={"offset": 1.0}, cache=tmp_path).compute(clips[:3], clips[3:], SR)
    assert ToyBackbone.calls == 12  # another configuration: another identity, recomputed
    changed = [clips[0] * 0.5] + clips[1:3]
    fad.compute(changed, clips[3:], SR)
    assert ToyBackbone.calls == 13  # only the changed clip


def test_equals_frechet_distance_of_pooled_embeddings(tmp_path, clips):
    bb = ToyBackbone()
    ref = np.concatenate([bb.embed(c, SR) for c in clips[:3]])
    est = np.concatenate([bb.embed(c, SR) for c in clips[3:]])
    a, b = gaussian_stats(ref), gaussian_stats(est)
    expected = frechet_distance(a.mean, a.cov, b.mean, b.cov)
    assert FAD(backbone=TOY, cache=False).compute(clips[:3], clips[3:], SR).value == pytest.approx(expected, rel=1e-12)


def test_leave_one_out_contribution_exact_and_finds_the_outlier(clips):
    fad = FAD(backbone=TOY, cache=False)
    estimates = [_noisy(c, 40, i) for i, c in enumerate(clips)]
    estimates[4] = _noisy(clips[4], -5, 4)  # one badly degraded track
    ids = [f"t{i}" for i in range(6)]
    result = fad.compute(clips, estimates, SR, ids=ids)
    assert max(result.per_item, key=result.per_item.get) == "t4"
    assert result.warnings == [] and "warning" not in result.settings  # 360 embeddings for 8 dimensions
    # the incremental leave-one-out equals recomputing FAD without the track
    without = fad.compute(clips, estimates[:2] + estimates[3:], SR).value
    assert result.per_item["t2"] == pytest.approx(result.value - without, rel=1e-8, abs=1e-9)


def test_clip_seconds_crops_and_is_recorded(clips):
    fad = FAD(backbone=TOY, cache=False, clip_seconds=2.0, per_item=False)
    result = fad.compute(clips + [clips[0][: SR]], clips, SR)
    full = FAD(backbone=TOY, cache=False).compute([c[: 2 * SR] for c in clips] + [clips[0][: SR]],
                                                  [c[: 2 * SR] for c in clips], SR)
    assert result.value == pytest.approx(full.value, rel=1e-12)
    assert result.settings["clip_seconds"] == 2.0 and result.settings["n_short_clips"] == 1
    assert result.per_item == {}


def test_comparability_warning():
    a = {"backbone": "musicnn-MTT_musicnn", "reference_set": "x", "n_reference_clips": 10,
         "n_estimate_clips": 10, "clip_seconds": 10.0, "backbone_id": "1", "reference_hash": "h"}
    assert check_comparable(a, dict(a)) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_incomparable(a, dict(a)) == []
    b = dict(a, backbone="vggish", clip_seconds=5.0)
    with pytest.warns(FADSettingsWarning, match="backbone.*clip_seconds|clip_seconds.*backbone"):
        diffs = warn_if_incomparable(a, b)
    assert len(diffs) == 2
    # the same answer as asking the registry, which also compares the card's version
    assert comparability_problems("fad", a, b) == diffs
    assert comparability_problems("fad", dict(a, version="1"), dict(a, version="2")) == ["version: '1' vs '2'"]
    assert set(COMPARABLE_KEYS) == set(FAD.comparable_on) >= {"reference_hash", "n_reference_clips", "clip_seconds"}


def test_bad_input_names_the_clip(clips):
    fad = FAD(backbone=TOY, cache=False)
    bad = clips[1].copy()
    bad[100] = np.nan
    with pytest.raises(MetricError, match="song_b"):
        fad.compute(clips[:2], [clips[0], bad], SR, ids=["song_a", "song_b"])
    with pytest.raises(MetricError, match="at least 2 embeddings"):
        fad.compute([clips[0][:800]], [clips[1][:800]], SR)
    with pytest.raises(MetricError, match="ids"):
        fad.compute(clips[:2], clips[:2], SR, ids=["only one"])
