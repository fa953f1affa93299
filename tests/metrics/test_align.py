"""Length alignment and validation policy (benchmark.metrics.align)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.metrics.align import AlignInfo, align_pair
from benchmark.metrics.base import MetricError


def test_trims_both_to_shorter_from_the_end():
    ref = np.arange(10, dtype=np.float32) / 20
    est = np.arange(7, dtype=np.float32) / 20  # decoder cropped the tail
    r, e, info = align_pair(ref, est)
    assert r.size == e.size == 7
    np.testing.assert_array_equal(r, ref[:7])  # start stays at sample 0 (no shift)
    assert (info.trimmed_reference, info.trimmed_estimate) == (3, 0)
    _, e2, info2 = align_pair(est, ref)
    assert e2.size == 7 and info2.trimmed_estimate == 3
    assert any("trimmed" in w for w in info.warnings)


def test_equal_lengths_untouched():
    x = np.linspace(-0.5, 0.5, 100, dtype=np.float32)
    _, _, info = align_pair(x, 1.5 * x)
    assert info.samples == 100 and info.warnings == [] and not info.silent
    assert info.nan_reason is None


def test_accepts_single_channel_2d():
    x = np.full((1, 50), 0.1, dtype=np.float32)
    r, _, _ = align_pair(x, x)
    assert r.shape == (50,)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_name_the_item(bad):
    x = np.zeros(100, dtype=np.float32) + 0.1
    y = x.copy()
    y[42] = bad
    with pytest.raises(MetricError, match=r"song\.wav.*estimate.*1 NaN/inf.*sample 42"):
        align_pair(x, y, item="song.wav")
    with pytest.raises(MetricError, match=r"song\.wav.*reference"):
        align_pair(y, x, item="song.wav")


def test_rejects_empty_multichannel_integer_and_huge_mismatch():
    x = np.zeros(100, dtype=np.float32) + 0.1
    with pytest.raises(MetricError, match="empty"):
        align_pair(x[:0], x, item="a")
    with pytest.raises(MetricError, match="mono"):
        align_pair(np.zeros((2, 100), np.float32), x, item="a")
    with pytest.raises(MetricError, match="floating point"):
        align_pair(np.zeros(100, np.int16), x, item="a")
    with pytest.raises(MetricError, match="wrong sample rate"):
        align_pair(x, x[:40], item="a")  # 60 % would be trimmed


def test_clipping_counted_and_flagged():
    x = np.full(1000, 0.5, dtype=np.float32)
    y = x.copy()
    y[:25] = 1.0
    y[25:30] = -1.0
    _, _, info = align_pair(x, y)
    assert (info.clipped_reference, info.clipped_estimate) == (0, 30)
    assert any("estimate clipped on 30 samples" in w for w in info.warnings)


def test_silent_reference_gives_nan_reason():
    _, _, info = align_pair(np.zeros(1000, np.float32), np.full(1000, 0.1, np.float32))
    assert info.silent and "silent reference" in info.nan_reason
    quiet = np.full(1000, 10 ** (-80 / 20), np.float32)  # -80 dBFS: quiet, not silent
    _, _, info = align_pair(quiet, quiet)
    assert not info.silent and info.reference_rms_dbfs == pytest.approx(-80.0, abs=1e-3)


def test_info_as_dict_is_flat():
    _, _, info = align_pair(np.full(10, 0.2, np.float32), np.full(8, 0.2, np.float32))
    d = info.as_dict()
    assert isinstance(info, AlignInfo) and isinstance(d["warnings"], str) and d["nan_reason"] == ""


def test_fit_to_reference_cuts_or_zero_pads_at_the_end():
    from benchmark.metrics.align import fit_to_reference
    x = np.arange(1, 6, dtype=np.float32)
    np.testing.assert_array_equal(fit_to_reference(x, 3), [1, 2, 3])
    np.testing.assert_array_equal(fit_to_reference(x, 7), [1, 2, 3, 4, 5, 0, 0])
    np.testing.assert_array_equal(fit_to_reference(np.stack([x, -x]), 6)[1], [-1, -2, -3, -4, -5, 0])
