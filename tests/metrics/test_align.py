"""The alignment policy (benchmark.metrics.align): missing estimate samples are scored as silence,
extra ones are cut, an estimate under half its reference is an error, and the streaming aligner
gives exactly the whole-signal answer."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.metrics.align import (
    AlignmentError,
    StreamAligner,
    check_pair,
    fit_to_reference,
)
from benchmark.metrics.base import MetricError
from benchmark.metrics.sisdr import MAX_DB, si_sdr


def _noise(channels: int, n: int, seed: int = 0, scale: float = 0.3, peak: float = 0.9) -> np.ndarray:
    x = scale * np.random.default_rng(seed).standard_normal((channels, n))
    return np.clip(x, -peak, peak).astype(np.float32)


# -- fit_to_reference: pad, cut, exact counts ----------------------------------------------------
def test_short_estimate_is_zero_padded_with_exact_count():
    est = _noise(2, 700)
    fitted, facts = fit_to_reference(1000, est, "a.wav")
    assert fitted.shape == (2, 1000) and fitted.dtype == np.float32
    np.testing.assert_array_equal(fitted[:, :700], est)  # kept as is, from sample 0 (no shift)
    assert not fitted[:, 700:].any()  # the 300 missing samples are silence
    f = facts
    assert (f.reference_samples, f.estimate_samples, f.padded, f.cut, f.gap) == (1000, 700, 300, 0, 0)
    assert facts.notes(1000) == ["estimate 0.300 s short: zero-padded (scored as silence)"]


def test_long_estimate_is_cut_with_exact_count():
    est = _noise(1, 1300, seed=1)
    fitted, facts = fit_to_reference(1000, est)
    np.testing.assert_array_equal(fitted, est[:, :1000])
    assert (facts.estimate_samples, facts.padded, facts.cut) == (1300, 0, 300)
    assert facts.notes(100) == ["3.000 s of extra estimate cut"]


def test_equal_lengths_untouched_and_mono_1d_accepted():
    est = _noise(1, 500, seed=2)[0]
    fitted, facts = fit_to_reference(500, est)
    assert fitted.shape == (1, 500)
    np.testing.assert_array_equal(fitted[0], est)
    assert (facts.padded, facts.cut, facts.clipped) == (0, 0, 0) and facts.notes(16000) == []


def test_clipped_estimate_samples_are_counted_after_the_cut():
    est = np.zeros((2, 120), np.float32)
    est[0, [3, 50]] = 1.0        # two inside
    est[1, 7] = -0.9995          # one inside, below -0.999
    est[1, 8] = 0.998            # below the clip level: not counted
    est[0, 110] = 1.0            # cut away: not counted
    _, facts = fit_to_reference(100, est)
    assert facts.clipped == 3 and facts.cut == 20


@pytest.mark.parametrize(("fraction", "fails"), [(0.49, True), (0.499, True), (0.50, False), (0.51, False)])
def test_estimate_under_half_the_reference_is_an_error_naming_the_item(fraction, fails):
    n = 10_000
    est = _noise(1, int(round(fraction * n)), seed=3)
    if fails:
        with pytest.raises(AlignmentError, match=r"song\.wav.*< 50%"):
            fit_to_reference(n, est, "song.wav")
    else:
        _, facts = fit_to_reference(n, est, "song.wav")
        assert facts.padded == n - est.shape[1]


def test_alignment_error_is_a_metric_error():
    assert issubclass(AlignmentError, MetricError)


def test_channel_mismatch_is_an_alignment_error():
    aligner = StreamAligner(2)
    with pytest.raises(AlignmentError, match=r"expected \[2, samples\]"):
        aligner.push(np.zeros((1, 10), np.float32))


def test_take_before_the_estimate_is_ready_is_refused():
    aligner = StreamAligner(1)
    aligner.push(np.ones((1, 5), np.float32))
    assert aligner.ready(5) and not aligner.ready(6)
    with pytest.raises(RuntimeError, match="ready"):
        aligner.take(6)


# -- the streaming aligner is the whole-signal policy, whatever the block sizes -----------------
def _blocks(rng: np.random.Generator, total: int, largest: int, smallest: int) -> list[int]:
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(rng.integers(smallest, largest + 1)))
    sizes[-1] -= sum(sizes) - total
    if sizes[-1] < smallest:  # the engine never asks for an empty reference block
        sizes[-2] += sizes.pop()
    return sizes


@pytest.mark.parametrize("seed", range(12))
def test_stream_aligner_equals_fit_to_reference_for_random_blocks(seed):
    rng = np.random.default_rng(seed)
    channels = int(rng.integers(1, 3))
    n_ref = int(rng.integers(200, 3000))
    n_est = int(rng.integers(n_ref // 2 + 1, 2 * n_ref))  # shorter and longer estimates
    est = _noise(channels, n_est, seed=100 + seed, scale=0.6, peak=1.2)  # some samples clip

    expected, facts = fit_to_reference(n_ref, est, "x")

    aligner = StreamAligner(channels)
    est_sizes = _blocks(rng, n_est, int(rng.integers(1, 400)), smallest=0)  # empty blocks too
    ref_sizes = _blocks(rng, n_ref, int(rng.integers(1, 400)), smallest=1)
    bounds = np.cumsum([0] + est_sizes)
    pushed = 0

    def push_next():
        nonlocal pushed
        aligner.push(est[:, bounds[pushed]:bounds[pushed + 1]], last=pushed == len(est_sizes) - 1)
        pushed += 1

    out = []
    for i, size in enumerate(ref_sizes):
        while not aligner.ready(size):
            push_next()
        out.append(aligner.take(size, last=i == len(ref_sizes) - 1))
    while pushed < len(est_sizes):  # estimate that arrives after the reference ended: all cut
        push_next()
    got = aligner.finish("x")

    assert [b.shape[1] for b in out] == ref_sizes
    np.testing.assert_array_equal(np.concatenate(out, axis=1), expected)
    assert got.as_dict() == facts.as_dict()
    assert got.padded == max(0, n_ref - n_est) and got.cut == max(0, n_est - n_ref)


def test_stream_aligner_applies_the_half_rule_to_what_was_delivered():
    aligner = StreamAligner(1)
    aligner.push(np.ones((1, 40), np.float32), last=True)
    aligner.take(100, last=True)
    with pytest.raises(AlignmentError, match=r"clip\.wav: the estimate has 40 samples for a reference of 100"):
        aligner.finish("clip.wav")


# -- check_pair: validation of an aligned mono pair ----------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_errors_naming_the_item_and_sample(bad):
    x = np.full(100, 0.1, np.float32)
    y = x.copy()
    y[42] = bad
    with pytest.raises(MetricError, match=r"song\.wav: estimate contains 1 NaN/inf samples \(first at sample 42\)"):
        check_pair(x, y, item="song.wav")
    with pytest.raises(MetricError, match=r"song\.wav: reference contains 1 NaN/inf"):
        check_pair(y, x, item="song.wav")


def test_empty_unequal_multichannel_and_integer_pairs_are_errors_naming_the_item():
    x = np.full(100, 0.1, np.float32)
    with pytest.raises(MetricError, match=r"a\.wav: estimate is empty"):
        check_pair(x, np.zeros(0, np.float32), item="a.wav")
    with pytest.raises(MetricError, match=r"a\.wav: reference has 100 samples, estimate 99"):
        check_pair(x, x[:99], item="a.wav")
    with pytest.raises(MetricError, match=r"a\.wav: reference must be mono"):
        check_pair(np.zeros((2, 100), np.float32), x, item="a.wav")
    with pytest.raises(MetricError, match=r"a\.wav: estimate must be floating point"):
        check_pair(x, np.zeros(100, np.int16), item="a.wav")


def test_single_channel_2d_is_accepted_as_mono():
    x = np.full((1, 50), 0.1, np.float32)
    ref, est, info = check_pair(x, x.T)
    assert ref.shape == est.shape == (50,) and info.warnings == []


def test_clipping_is_counted_on_both_sides():
    ref = np.full(1000, 0.1, np.float32)
    est = ref.copy()
    ref[:3] = 1.0
    est[10:15] = -1.0
    est[20] = 0.9989  # just under the clip level
    _, _, info = check_pair(ref, est, item="loud.wav")
    assert (info.clipped_reference, info.clipped_estimate) == (3, 5)
    assert info.warnings == ["reference clipped on 3 samples", "estimate clipped on 5 samples"]
    assert not info.silent and info.nan_reason is None


@pytest.mark.parametrize(("level_db", "silent"), [(-300.0, True), (-100.0, True), (-80.0, False)])
def test_silent_reference_is_marked_with_its_level(level_db, silent):
    n = 4000
    # a square wave of amplitude A has RMS exactly A
    ref = (10 ** (level_db / 20) * np.where(np.arange(n) % 2, 1.0, -1.0)).astype(np.float32)
    _, _, info = check_pair(ref, np.full(n, 0.1, np.float32))
    assert info.silent is silent
    assert info.reference_rms_dbfs == pytest.approx(level_db, abs=0.01)
    if silent:
        assert info.nan_reason.startswith("silent reference (RMS") and "-90 dBFS" in info.nan_reason
    else:
        assert info.nan_reason is None


def test_all_zero_reference_is_silent():
    _, _, info = check_pair(np.zeros(100, np.float32), np.full(100, 0.5, np.float32))
    assert info.silent and info.reference_rms_dbfs == -np.inf and "silent reference" in info.nan_reason


# -- padded samples are scored as silence ----------------------------------------------------------
def _hand_si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """10 log10(||a s||^2 / ||e - a s||^2) with zero-meaned s, e and a = <s, e> / ||s||^2."""
    s = reference.astype(np.float64)
    e = estimate.astype(np.float64)
    s -= s.sum() / s.size
    e -= e.sum() / e.size
    a = np.dot(s, e) / np.dot(s, s)
    target = a * s
    residual = e - target
    return 10.0 * np.log10(np.dot(target, target) / np.dot(residual, residual))


def test_padded_samples_are_scored_as_silence_in_si_sdr():
    x = _noise(1, 20_000, seed=7)[0]
    keep = int(0.55 * x.size)
    fitted, facts = fit_to_reference(x.size, x[:keep], "x.wav")
    ref, est, _ = check_pair(x, fitted[0], "x.wav")
    assert facts.padded == x.size - keep
    value = si_sdr(ref, est)
    assert value == pytest.approx(_hand_si_sdr(x, fitted[0]), abs=1e-6)
    assert value < 3.0  # about 10 log10(0.55 / 0.45) = 0.87 dB, nowhere near the cap
    # the old trim-to-shorter policy would have called this codec perfect
    assert si_sdr(x[:keep], x[:keep]) == MAX_DB


def test_padded_sinusoid_matches_the_closed_form():
    """x: whole periods of a sinusoid in both the kept 55 % and the padded 45 %, so both parts are
    zero-mean with energy in proportion to their length: a = p, ||a s||^2 = p^2 E,
    ||e - a s||^2 = (1 - p)^2 p E + p^2 (1 - p) E, and SI-SDR = 10 log10(p / (1 - p))."""
    n, period, p = 16_000, 400, 0.55
    x = (0.5 * np.sin(2 * np.pi * np.arange(n) / period)).astype(np.float32)
    keep = int(p * n)
    assert keep % period == 0 and (n - keep) % period == 0
    fitted, _ = fit_to_reference(n, x[:keep])
    assert si_sdr(x, fitted[0]) == pytest.approx(10 * np.log10(p / (1 - p)), abs=1e-4)
