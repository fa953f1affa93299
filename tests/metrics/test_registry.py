"""Every registered metric builds, carries a complete card, and follows its protocol."""

from __future__ import annotations

import pytest

from benchmark.metrics import (
    METRICS,
    ItemMetric,
    MetricError,
    SetMetric,
    available_metrics,
    create_metric,
)


def test_registry_names():
    assert {"si_sdr", "visqol", "fad", "mel_distance", "mrstft_distance"} <= set(available_metrics())


@pytest.mark.parametrize("name", sorted(METRICS))
def test_card_complete(name, tmp_path, backbone_weights):
    options = {"cache": False, "backbone_options": {"cache_dir": tmp_path}} if name == "fad" else {}
    metric = create_metric(name, **options)
    assert isinstance(metric, (ItemMetric, SetMetric))
    card = metric.card
    assert card.name == name
    for field in ("unit", "convention", "implementation", "version"):
        assert getattr(card, field), f"{name}: empty {field}"
    assert isinstance(card.higher_is_better, bool)


def test_unknown_metric():
    with pytest.raises(MetricError, match="unknown metric"):
        create_metric("pesq")
