"""Accelerated ViSQOL kernels: bit-identical to visqol-python's, kernel by kernel and end to end.

End-to-end references come from a separate Python process that never imports ``benchmark``, so
they are computed by visqol-python's own, unpatched functions.

Both processes run libsvm (the audio-mode SVR that maps features to MOS) on one OpenMP thread:
libsvm sums its support-vector terms in an OpenMP reduction whose order depends on thread timing,
so with more threads the same features give MOS values that differ by ~1e-15 from call to call,
whatever the kernels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("numba")
pytest.importorskip("visqol")
threadpoolctl = pytest.importorskip("threadpoolctl")

import visqol  # noqa: E402
import visqol.gammatone  # noqa: E402
import visqol.patch_selector  # noqa: E402
from visqol.numba_accel import (  # noqa: E402
    _C1,
    _C3,
    _GW,
    _build_all_deg_patches,
    _dp_forward_pass,
    _gammatone_spectrogram_numba,
)
from visqol.patch_creator import ImagePatchCreator  # noqa: E402
from visqol.patch_selector import _find_most_optimal_deg_patches_numba  # noqa: E402

from benchmark.data.audio import resample  # noqa: E402
from benchmark.metrics import visqol_accel  # noqa: E402
from benchmark.metrics.signals import mixture  # noqa: E402
from benchmark.metrics.visqol import ViSQOL  # noqa: E402


def _noisy(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    n = np.random.default_rng(seed).standard_normal(x.size).astype(np.float32)
    return x + n * np.sqrt(np.mean(x ** 2) / np.mean(n ** 2)) * 10 ** (-snr_db / 20)


# -- installation ---------------------------------------------------------------------------------
def test_kernels_are_swapped_only_inside_the_block():
    assert visqol.gammatone._gammatone_spectrogram_numba is _gammatone_spectrogram_numba
    assert visqol.patch_selector._find_most_optimal_deg_patches_numba is _find_most_optimal_deg_patches_numba
    with visqol_accel.accelerated():
        with visqol_accel.accelerated():  # re-entrant
            assert visqol_accel.is_installed()
        assert visqol.gammatone._gammatone_spectrogram_numba is visqol_accel.gammatone_spectrogram
        assert visqol.patch_selector._find_most_optimal_deg_patches_numba is visqol_accel.find_most_optimal_deg_patches
    assert not visqol_accel.is_installed()
    with pytest.raises(RuntimeError), visqol_accel.accelerated():
        raise RuntimeError("boom")
    assert visqol.gammatone._gammatone_spectrogram_numba is _gammatone_spectrogram_numba
    with visqol_accel.accelerated(enabled=False):
        assert not visqol_accel.is_installed()


# -- kernels against the originals on random input ----------------------------------------------------
def _filterbank(sample_rate: int, bands: int, rng: np.random.Generator, perturb: bool):
    """visqol-python's own coefficient packing; ``perturb`` randomises the numerators (incl. b2)."""
    coeffs = visqol.gammatone.make_erb_filters(sample_rate, bands, 50.0, sample_rate / 2.0).filter_coeffs[:, ::-1]
    a0, a11, a12, a13, a14, a2, b0, b1, b2, gain = coeffs
    b_stages = np.stack([np.column_stack([a0 / gain, a11 / gain, a2 / gain]), np.column_stack([a0, a12, a2]),
                         np.column_stack([a0, a13, a2]), np.column_stack([a0, a14, a2])])
    if perturb:
        noise = rng.standard_normal((2, *b_stages.shape))
        b_stages = b_stages * (1 + 0.1 * noise[0]) + 1e-6 * noise[1]
    return np.ascontiguousarray(b_stages), np.ascontiguousarray(np.column_stack([b0, b1, b2]))


@pytest.mark.parametrize("sample_rate,bands,window,hop,extra,perturb", [
    (48000, 32, 3840, 960, 123, False),   # audio mode
    (16000, 21, 1280, 320, 0, False),     # speech mode
    (48000, 7, 101, 13, 5, True),         # odd sizes, random numerators
])
def test_gammatone_spectrogram_is_bit_identical(sample_rate, bands, window, hop, extra, perturb):
    rng = np.random.default_rng(bands)
    b_stages, a_denom = _filterbank(sample_rate, bands, rng, perturb)
    cols = 9
    sig = rng.standard_normal((cols - 1) * hop + window + extra) * 0.3
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / (window - 1))
    want = _gammatone_spectrogram_numba(sig, hann, b_stages, a_denom, window, hop, bands, cols)
    got = visqol_accel.gammatone_spectrogram(sig, hann, b_stages, a_denom, window, hop, bands, cols)
    assert got.shape == (bands, cols) and np.all(got > 0)
    np.testing.assert_array_equal(got, want)


def _random_spectrogram(rng, bands, frames, flat_from=None):
    spec = np.maximum(rng.normal(20, 10, (bands, frames)), 0.0)
    if flat_from is not None:
        spec[:, flat_from:] = 0.0  # silence: equal similarities, so the DP's tie rules matter
    return spec


@pytest.mark.parametrize("bands,frames,patch,window,flat_from", [
    (32, 140, 30, 60, None),   # audio-mode patches, search window wider than the clip
    (21, 97, 20, 1, None),     # speech-mode patches, narrow search window (offsets start > 0)
    (6, 53, 5, 2, 30),         # small odd patches, a silent tail
])
def test_dp_forward_pass_is_bit_identical(bands, frames, patch, window, flat_from):
    rng = np.random.default_rng(frames)
    ref = _random_spectrogram(rng, bands, frames, flat_from)
    deg = np.roll(ref, 3, axis=1) + rng.normal(0, 3, ref.shape)
    deg = np.maximum(deg[:, : frames - 4], 0.0)  # shorter than the reference
    indices = ImagePatchCreator(patch).create_ref_patch_indices(ref)
    patches = np.ascontiguousarray([ref[:, i:i + patch] for i in indices])
    idx = np.asarray(indices, dtype=np.int64)
    num = len(indices) - 1  # one patch fewer than indices, as when a patch is dropped
    want = _dp_forward_pass(patches[:num], _build_all_deg_patches(deg, bands, patch), idx, num, deg.shape[1],
                            window * patch, _GW, _C1, _C3)
    got = visqol_accel.dp_forward_pass(patches[:num], deg, idx, num, window * patch)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("flat_from", [None, 40])
def test_patch_matching_results_are_identical(flat_from):
    rng = np.random.default_rng(7)
    bands, frames, patch = 32, 150, 30
    ref = _random_spectrogram(rng, bands, frames, flat_from)
    deg = np.maximum(ref + rng.normal(0, 5, ref.shape), 0.0)
    indices = ImagePatchCreator(patch).create_ref_patch_indices(ref)
    patches = [ref[:, i:i + patch] for i in indices]
    args = (patches, indices, deg, 0.02, len(indices), bands, patch, frames, 0.6, 60 * patch)
    want, got = _find_most_optimal_deg_patches_numba(*args), visqol_accel.find_most_optimal_deg_patches(*args)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for field in ("similarity", "ref_patch_start_time", "ref_patch_end_time", "deg_patch_start_time",
                      "deg_patch_end_time"):
            assert getattr(g, field) == getattr(w, field)
        for field in ("freq_band_means", "freq_band_stddevs", "freq_band_deg_energy"):
            np.testing.assert_array_equal(getattr(g, field), getattr(w, field))


# -- whole measurements against an unpatched visqol-python in another process ------------------------
_REFERENCE_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import visqol, visqol.gammatone, visqol.numba_accel, visqol.patch_selector
    assert "benchmark" not in sys.modules
    assert visqol.gammatone._gammatone_spectrogram_numba is visqol.numba_accel._gammatone_spectrogram_numba
    assert visqol.patch_selector._find_most_optimal_deg_patches_numba.__module__ == "visqol.patch_selector"
    cases = np.load(sys.argv[1])
    apis = {}
    out = {}
    for name in sorted({k[:-4] for k in cases.files}):
        mode, rate = ("speech", 16000) if name.startswith("speech") else ("audio", 48000)
        if mode not in apis:
            apis[mode] = visqol.VisqolApi()
            apis[mode].create(mode=mode, **({"use_lattice_model": False} if mode == "speech" else {}))
        r = apis[mode].measure_from_arrays(cases[name + "_ref"], cases[name + "_deg"], rate)
        out[name] = {"moslqo": r.moslqo, "vnsim": r.vnsim, "fvnsim": r.fvnsim.tolist(),
                     "fstdnsim": r.fstdnsim.tolist(), "fvdegenergy": r.fvdegenergy.tolist()}
    json.dump(out, open(sys.argv[2], "w"))
""")


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """name -> (reference, degraded, input rate): music-like clips, several lengths and noise levels."""
    odd = 48000 * 2 + 12345  # no multiple of the hop (960), window (3840) or patch (28800 samples)
    x = mixture(48000, 3.0, seed=1)
    y = mixture(48000, odd / 48000, seed=2)[:odd]
    delayed = np.concatenate([np.zeros(1234, np.float32), x[:-1234]])
    x44 = mixture(44100, 2.5, seed=3)
    x16 = resample(mixture(48000, 3.0, seed=4)[None], 48000, 16000)[0]
    return {
        "snr30": (x, _noisy(x, 30, 1), 48000),
        "snr10": (x, _noisy(x, 10, 2), 48000),
        "snr0_odd_length": (y, _noisy(y, 0, 3), 48000),
        "delayed_snr20": (x, _noisy(delayed, 20, 4), 48000),
        "identical": (y, y.copy(), 48000),
        "rate44k1_snr15": (x44, _noisy(x44, 15, 5), 44100),
        "speech_snr10": (x16, _noisy(x16, 10, 6), 16000),
    }


@pytest.fixture(scope="module")
def end_to_end(tmp_path_factory):
    """Prepared float64 pairs (what the metric feeds ViSQOL) and the unpatched reference results."""
    tmp = tmp_path_factory.mktemp("visqol_ref")
    prepared = {}
    for name, (ref, deg, rate) in _cases().items():
        metric = ViSQOL(mode="speech" if name.startswith("speech") else "audio", workers=1)
        prepared[name] = (*metric.prepare(ref, deg, rate), metric.rate)
    np.savez(tmp / "cases.npz", **{f"{k}_{s}": v[i] for k, v in prepared.items() for i, s in ((0, "ref"), (1, "deg"))})
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", _REFERENCE_SCRIPT, str(tmp / "cases.npz"), str(tmp / "ref.json")],
                   check=True, env=env, cwd=tmp)
    return prepared, json.loads((tmp / "ref.json").read_text())


@pytest.fixture
def one_openmp_thread():
    """libsvm's prediction on one OpenMP thread (deterministic summation order; see module doc)."""
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        yield


def test_metric_scores_equal_unpatched_visqol_python_exactly(end_to_end, one_openmp_thread):
    _, reference = end_to_end
    got = {}
    for name, (ref, deg, rate) in _cases().items():
        metric = ViSQOL(mode="speech" if name.startswith("speech") else "audio", workers=1)
        assert metric.accelerate
        got[name] = metric(ref, deg, rate)
    assert got == {name: r["moslqo"] for name, r in reference.items()}
    # the cases span the scale: noise lowers the score, identical audio sits at the ceiling
    assert got["snr30"] > got["snr10"] > got["snr0_odd_length"] and got["identical"] > 4.7


def test_all_intermediate_features_are_identical(end_to_end, one_openmp_thread):
    prepared, reference = end_to_end
    for mode in ("audio", "speech"):
        api = visqol.VisqolApi()
        api.create(mode=mode, **({"use_lattice_model": False} if mode == "speech" else {}))
        for name, (ref, deg, rate) in prepared.items():
            if name.startswith("speech") != (mode == "speech"):
                continue
            with visqol_accel.accelerated():
                r = api.measure_from_arrays(ref, deg, rate)
            want = reference[name]
            assert (r.moslqo, r.vnsim) == (want["moslqo"], want["vnsim"]), name
            for key in ("fvnsim", "fstdnsim", "fvdegenergy"):
                assert getattr(r, key).tolist() == want[key], (name, key)


def test_unaccelerated_metric_is_visqol_python_itself(end_to_end, one_openmp_thread):
    _, reference = end_to_end
    ref, deg, rate = _cases()["snr10"]
    metric = ViSQOL(workers=1, accelerate=False)
    assert "visqol_accel" not in metric.card.implementation
    assert "visqol_accel" in ViSQOL(workers=1).card.implementation
    assert metric(ref, deg, rate) == reference["snr10"]["moslqo"]
