"""Each metric declares what must match for two of its values to be compared; the registry
answers for a metric name without building the metric."""

from __future__ import annotations

import pytest

from benchmark.metrics import METRICS, comparability_problems, format_warning
from benchmark.metrics.base import EmbeddingSetMetric, Metric, metric_class
from benchmark.metrics.fad import FAD
from benchmark.metrics.signals import mixture
from benchmark.metrics.sisdr import SISDR
from benchmark.metrics.spectral import MelDistance
from benchmark.metrics.visqol import ACCEL_SUFFIX, ViSQOL

@pytest.fixture(scope="module")
def clips():
    return [mixture(16000, 1.0, seed=s) for s in range(3)]


VISQOL = {"mode": "audio", "rate": 48000, "search_window": 60, "implementation": "visqol-python 3.3.3",
          "version": "1"}


def test_visqol_mode_and_rate_must_match():
    speech = dict(VISQOL, mode="speech", rate=16000)
    assert comparability_problems("visqol", VISQOL, speech) == ["mode: 'audio' vs 'speech'", "rate: 48000 vs 16000"]
    assert comparability_problems("visqol", VISQOL, dict(VISQOL)) == []
    # settings read back from JSON/CSV: 48000 and 48000.0 are one rate
    assert comparability_problems("visqol", VISQOL, dict(VISQOL, rate=48000.0)) == []


def test_visqol_accelerated_kernels_are_the_same_implementation():
    accelerated = dict(VISQOL, implementation=VISQOL["implementation"] + ACCEL_SUFFIX)
    assert comparability_problems("visqol", VISQOL, accelerated) == []
    newer = dict(VISQOL, implementation="visqol-python 3.4.0")
    assert comparability_problems("visqol", VISQOL, newer) == [
        "implementation: 'visqol-python 3.3.3' vs 'visqol-python 3.4.0'"]


def test_unknown_metric_compares_version_and_implementation_only():
    a = {"implementation": "x", "version": "1", "mode": "audio"}
    assert comparability_problems("pesq", a, dict(a, mode="speech")) == []
    assert comparability_problems("pesq", a, dict(a, version="2", implementation="y")) == [
        "implementation: 'x' vs 'y'", "version: '1' vs '2'"]
    assert metric_class("pesq") is None and metric_class("os:path") is None  # import paths are not looked up


def test_unrecorded_setting_counts_as_none():
    assert comparability_problems("visqol", {}, {}) == []
    assert comparability_problems("visqol", {"mode": "audio"}, {}) == ["mode: 'audio' vs None"]


@pytest.mark.parametrize("name", sorted(set(METRICS) - {"fad"}))
def test_item_metrics_record_the_keys_they_declare(name, backbone_weights):
    cls = metric_class(name)
    assert cls is not None and issubclass(cls, Metric)
    metric = cls(workers=1) if cls is ViSQOL else cls()
    assert set(metric.settings) == set(cls.comparable_on)


def test_fad_records_the_keys_it_declares(clips):
    result = FAD(backbone="tests.metrics.test_fad:ToyBackbone", cache=False).compute(clips, clips, 16000)
    assert set(FAD.comparable_on) <= set(result.settings)


def test_declarations():
    assert SISDR.comparable_on == ()
    assert MelDistance.comparable_on == ("rate",) and MelDistance(rate=22050).settings == {"rate": 22050}
    assert set(ViSQOL.comparable_on) >= {"mode", "rate"}
    assert ViSQOL(mode="speech", workers=1).settings == {"mode": "speech", "rate": 16000, "search_window": 60}
    # FAD (and any distance between embedding distributions, e.g. KAD) shares the embedding-set keys
    assert issubclass(FAD, EmbeddingSetMetric) and FAD.comparable_on == EmbeddingSetMetric.comparable_on
    assert {"backbone", "reference_hash", "n_reference_clips", "clip_seconds"} <= set(FAD.comparable_on)


def test_format_warning_one_line_named_by_metric():
    assert format_warning("fad", "only 6 embeddings for 200 dimensions") == \
        "warning [fad]: only 6 embeddings for 200 dimensions"
    assert format_warning("fad", "fad: only 6 embeddings\n") == "warning [fad]: only 6 embeddings"
