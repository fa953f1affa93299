"""fad_vggish, kad_vggish, fad_clap, kad_clap: FAD/KAD with a fixed backbone and one embedding per
clip (the mean of its patches), under their own names; checked against the backbone and the
distance functions called by hand, with a random VGGish checkpoint the test saves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.embeddings.vggish import VGGishBackbone
from benchmark.metrics import METRICS, MetricError, create_metric
from benchmark.metrics.fad import FAD
from benchmark.metrics.frechet import frechet_distance_stats, gaussian_stats
from benchmark.metrics.kad import KAD, SCALE, median_pairwise_distance, mmd2_unbiased
from benchmark.metrics.signals import mixture
from benchmark.metrics.variants import BACKBONES, CLIP_MEAN
from tests.embeddings.test_vggish import _torchvggish_state

NAMES = {"fad_vggish": (FAD, "vggish"), "kad_vggish": (KAD, "vggish"), "fad_clap": (FAD, "clap"),
         "kad_clap": (KAD, "clap")}
RATE = 16000


@pytest.fixture(scope="module")
def vggish(tmp_path_factory):
    path = tmp_path_factory.mktemp("vggish") / "vggish-10086976.pth"
    torch.save(_torchvggish_state(), path)
    return path


@pytest.fixture(scope="module")
def sets():
    """Six 2 s references (two VGGish patches each) and their decodes with noise."""
    rng = np.random.default_rng(0)
    refs = [mixture(RATE, 2.0, seed=s).astype(np.float32) for s in range(6)]
    ests = [(r + 0.05 * rng.standard_normal(r.size)).astype(np.float32) for r in refs]
    return refs, ests


@pytest.fixture(scope="module")
def clip_means(vggish, sets):
    """Per-clip mean VGGish embeddings ``[6, 128]`` of (references, estimates), by hand."""
    backbone = VGGishBackbone(checkpoint=vggish)
    assert backbone.embed(sets[0][0], RATE).shape == (2, 128)  # two patches, pooled into one vector
    return tuple(np.stack([backbone.embed(c, RATE).mean(axis=0) for c in clips]).astype(np.float64)
                 for clips in sets)


@pytest.fixture(scope="module")
def embedding_cache(tmp_path_factory):
    """One embedding cache for the module: each clip is embedded once by the metrics."""
    return str(tmp_path_factory.mktemp("embeddings"))


@pytest.mark.parametrize("name", sorted(NAMES))
def test_registered_under_own_name_with_fixed_backbone(name, backbone_weights, monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    base, backbone = NAMES[name]
    metric = create_metric(name, cache=False)
    assert name in METRICS and isinstance(metric, base) and metric.card.name == name
    assert metric.backbone_name == backbone and metric._backbone is None  # the network is read lazily
    assert metric.backbone_options == {"checkpoint": str(backbone_weights / BACKBONES[backbone].checkpoint_file),
                                       "device": "cuda:0" if torch.cuda.is_available() else "cpu"}
    assert "per-clip means of the" in metric.card.convention and "per-patch" not in metric.card.convention
    assert metric.settings["pooling"] == CLIP_MEAN
    assert type(metric).comparable_on == (*base.comparable_on, "pooling")
    assert create_metric(name, cache=False, device="cpu").backbone_options["device"] == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")  # under torchrun: this rank's GPU (nothing is put on it yet)
    assert create_metric(name, cache=False).backbone_options["device"] == "cuda:3"


@pytest.mark.parametrize("name", sorted(NAMES))
def test_missing_checkpoint_is_named_with_its_download(name, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_WEIGHTS", str(tmp_path / "empty"))
    backbone = BACKBONES[NAMES[name][1]]
    expected = tmp_path / "empty" / backbone.checkpoint_file
    with pytest.raises(MetricError, match=f"{name}: .*checkpoint {expected} not found.*{backbone.url}"):
        create_metric(name, cache=False)
    with pytest.raises(MetricError, match=f"checkpoint {tmp_path}/nope.pt not found"):
        create_metric(name, cache=False, checkpoint=tmp_path / "nope.pt")


def test_fad_vggish_is_frechet_distance_of_clip_means(vggish, sets, clip_means, embedding_cache):
    refs, ests = sets
    expected = frechet_distance_stats(gaussian_stats(clip_means[0]), gaussian_stats(clip_means[1]))
    fad = create_metric("fad_vggish", checkpoint=vggish, cache=embedding_cache, device="cpu")
    result = fad.compute(refs, ests, RATE)
    assert result.value == pytest.approx(expected, rel=1e-5) and result.value > 0
    assert result.settings["pooling"] == CLIP_MEAN and result.settings["backbone"] == "vggish"
    assert result.settings["n_reference_embeddings"] == 6 == result.settings["n_estimate_embeddings"]
    assert any("only 6 embeddings for 128 dimensions" in w for w in result.warnings)
    # the patch-pooled FAD over the same backbone is another number
    patches = FAD(backbone="vggish", backbone_options={"checkpoint": str(vggish), "device": "cpu"},
                  cache=embedding_cache)
    assert patches.compute(refs, ests, RATE).value != pytest.approx(result.value, rel=1e-3)


def test_kad_vggish_is_paired_mmd_of_clip_means(vggish, sets, clip_means, embedding_cache):
    refs, ests = sets
    x, y = clip_means
    groups = np.arange(len(refs))
    expected = SCALE * mmd2_unbiased(x, y, median_pairwise_distance(x), groups, groups)
    kad = create_metric("kad_vggish", checkpoint=vggish, cache=embedding_cache, device="cpu")
    result = kad.compute(refs, ests, RATE, ids=[f"clip{i}" for i in range(6)])
    assert result.value == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert set(result.per_item) == {f"clip{i}" for i in range(6)}
    assert kad.compute(refs, refs, RATE).value == pytest.approx(0.0, abs=1e-9)  # identical sets: exactly 0


def test_vggish_pair_shares_one_backbone(vggish):
    fad = create_metric("fad_vggish", checkpoint=vggish, cache=False, device="cpu")
    kad = create_metric("kad_vggish", checkpoint=vggish, cache=False, device="cpu")
    assert fad.backbone is kad.backbone
