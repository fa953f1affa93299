"""Faster, numerically identical kernels for ``visqol-python``'s two hot spots (audio and speech mode).

``visqol-python`` (Apache-2.0, with its numba extra) spends nearly all of a measurement in two
numba kernels, both of which run scalar code that the CPU cannot overlap:

1. the **gammatone spectrogram** (``visqol.numba_accel._gammatone_spectrogram_numba``): 32 bands x
   4 cascaded biquads per sample, each band a serial recurrence, so the scalar code is bound by
   the latency of the recurrence. It runs on both full signals and again on both sides of every
   patch during fine realignment (about 75% of a 10 s audio-mode measurement);
2. the **patch-matching DP** (``visqol.patch_selector._find_most_optimal_deg_patches_numba``): one
   NSIM (3x3 Gaussian SSIM-like map) per (reference patch, degraded offset), with clamped-index
   convolutions recomputed from scratch for every pair (about 15%; quadratic in the length).

The replacements here perform, for every output value, *the same floating-point operations in the
same order* as the originals, so results are bit-identical (numba compiles without fastmath, so
LLVM may neither reassociate nor contract ``a * b + c`` into an FMA); only the independent work is
reorganised so that it vectorises:

- :func:`gammatone_spectrogram` runs the bands' recurrences side by side (the band loop is the
  innermost, SIMD-friendly loop; each band's own sequence of operations is unchanged);
- :func:`find_most_optimal_deg_patches` scores all candidate offsets of a reference patch at once
  (offsets are the innermost loop), computes the degraded patches' local means and mean squares
  once per spectrogram column instead of once per (patch, offset), and reads degraded patches as
  windows of one zero-padded spectrogram instead of materialising every patch.

On one core of an AMD EPYC (AVX-512), for a 10 s clip at 48 kHz: 0.25 s -> 0.057 s per gammatone
spectrogram of a full signal, 0.15 s -> 0.019 s for the DP. What remains of a measurement is mostly
visqol-python's FFT-based alignment (global and per patch; untouched, as any change to it could
move a lag) and the accelerated gammatone kernel.

:func:`accelerated` installs both in ``visqol-python``'s call path for the duration of a ``with``
block and restores the originals afterwards (re-entrant, not thread-safe: do not score with the
original implementation in another thread of the same process at the same time).
:mod:`benchmark.metrics.visqol` uses it when ``accelerate=True`` (the default).

The kernels are drop-in replacements with the originals' signatures and return values; the tests
(``tests/metrics/test_visqol_accel.py``) compare each with the original on random input, and whole
measurements with an unpatched ``visqol-python`` run in a separate process.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import visqol.gammatone
import visqol.patch_selector
from numba import njit, prange
from visqol.nsim import PatchSimilarityResult
from visqol.numba_accel import (
    _C1,
    _C3,
    _GW,
    _dp_backtrace,
    _measure_patch_similarity_numba,
    _reference_local_stats,
)

# error_model="numpy" drops numba's divide-by-zero checks, whose branches would stop the loops from
# vectorising; no divisor here can be zero (they are >= C1, >= C3 or positive sizes), so no result changes.
_JIT = {"cache": True, "error_model": "numpy"}

# the originals, kept for restoring and for the tests
ORIGINAL_GAMMATONE = visqol.gammatone._gammatone_spectrogram_numba
ORIGINAL_FIND_PATCHES = visqol.patch_selector._find_most_optimal_deg_patches_numba


# -- gammatone filterbank -------------------------------------------------------------------------
_LANES = 8  # bands filtered side by side (one AVX-512 register of float64, two AVX2 ones)
_NUM_COEFFS = 14  # a1, a2, then b0, b1, b2 of each of the four biquads
_NUM_STATE = 9  # (z0, z1) of each biquad, then the energy accumulator
# where the state starts in the kernel's buffer: a global, so a compile-time constant (a local
# defined outside the prange loop would reach the loop body as a run-time argument)
_STATE0 = _NUM_COEFFS * _LANES


@njit(parallel=True, **_JIT)
def _gammatone_kernel(sig, hann_window, coeffs, window_size, hop_size, num_cols):
    """``coeffs``: [14, bands] rows a1, a2, b(stage 0..3, tap 0..2). Returns [bands, num_cols].

    Bands go through in blocks of ``_LANES``; a block's coefficients and filter state share one
    flat buffer indexed ``row * _LANES + lane``. Compile-time offsets let LLVM prove the lanes
    independent and vectorise the lane loop (with separate arrays it would need too many run-time
    aliasing checks, and does not). Frames are independent (the state restarts from zero), so
    they are spread over numba's threads like the original's; one thread in our worker processes.
    """
    num_bands = coeffs.shape[1]
    num_blocks = (num_bands + _LANES - 1) // _LANES
    packed = np.zeros((num_blocks, _NUM_COEFFS * _LANES), dtype=np.float64)  # zero-padded last block
    for band in range(num_bands):
        for row in range(_NUM_COEFFS):
            packed[band // _LANES, row * _LANES + band % _LANES] = coeffs[row, band]
    out = np.empty((num_bands, num_cols), dtype=np.float64)
    for i in prange(num_cols):
        buf = np.empty(_STATE0 + _NUM_STATE * _LANES, dtype=np.float64)
        start = i * hop_size
        for block in range(num_blocks):
            buf[:_STATE0] = packed[block]
            buf[_STATE0:] = 0.0
            for k in range(window_size):
                x = sig[start + k] * hann_window[k]
                # per lane: the original's direct-form-II-transposed updates, in the same order
                for lane in range(_LANES):
                    a1 = buf[lane]
                    a2 = buf[_LANES + lane]
                    y0 = buf[2 * _LANES + lane] * x + buf[_STATE0 + lane]
                    buf[_STATE0 + lane] = buf[3 * _LANES + lane] * x - a1 * y0 + buf[_STATE0 + _LANES + lane]
                    buf[_STATE0 + _LANES + lane] = buf[4 * _LANES + lane] * x - a2 * y0
                    y1 = buf[5 * _LANES + lane] * y0 + buf[_STATE0 + 2 * _LANES + lane]
                    buf[_STATE0 + 2 * _LANES + lane] = (buf[6 * _LANES + lane] * y0 - a1 * y1
                                                        + buf[_STATE0 + 3 * _LANES + lane])
                    buf[_STATE0 + 3 * _LANES + lane] = buf[7 * _LANES + lane] * y0 - a2 * y1
                    y2 = buf[8 * _LANES + lane] * y1 + buf[_STATE0 + 4 * _LANES + lane]
                    buf[_STATE0 + 4 * _LANES + lane] = (buf[9 * _LANES + lane] * y1 - a1 * y2
                                                        + buf[_STATE0 + 5 * _LANES + lane])
                    buf[_STATE0 + 5 * _LANES + lane] = buf[10 * _LANES + lane] * y1 - a2 * y2
                    y3 = buf[11 * _LANES + lane] * y2 + buf[_STATE0 + 6 * _LANES + lane]
                    buf[_STATE0 + 6 * _LANES + lane] = (buf[12 * _LANES + lane] * y2 - a1 * y3
                                                        + buf[_STATE0 + 7 * _LANES + lane])
                    buf[_STATE0 + 7 * _LANES + lane] = buf[13 * _LANES + lane] * y2 - a2 * y3
                    buf[_STATE0 + 8 * _LANES + lane] += y3 * y3
            for lane in range(min(_LANES, num_bands - block * _LANES)):
                out[block * _LANES + lane, i] = np.sqrt(buf[_STATE0 + 8 * _LANES + lane] / window_size)
    return out


def gammatone_spectrogram(sig: np.ndarray, hann_window: np.ndarray, b_stages: np.ndarray, a_denom: np.ndarray,
                          window_size: int, hop_size: int, num_bands: int, num_cols: int) -> np.ndarray:
    """Drop-in for ``visqol.numba_accel._gammatone_spectrogram_numba`` (bit-identical output).

    Parameters
    ----------
    sig: signal ``[samples]`` float64.
    hann_window: ``[window_size]``.
    b_stages: numerators ``[4, bands, 3]`` of the four cascaded biquads (stage 0 includes the gain).
    a_denom: denominators ``[bands, 3]`` (``a0`` assumed 1, as in the original).
    window_size, hop_size: frame length and hop in samples.
    num_bands, num_cols: output shape.

    Returns
    -------
    RMS of each band's filter output per frame, ``[num_bands, num_cols]``; the filter state is reset
    at every frame.
    """
    if num_cols > 0 and (num_cols - 1) * hop_size + window_size > sig.shape[0]:
        raise ValueError("gammatone_spectrogram: frames run past the end of the signal")
    coeffs = np.empty((_NUM_COEFFS, num_bands), dtype=np.float64)
    coeffs[0] = a_denom[:num_bands, 1]
    coeffs[1] = a_denom[:num_bands, 2]
    coeffs[2:] = np.asarray(b_stages, dtype=np.float64)[:, :num_bands, :].transpose(0, 2, 1).reshape(12, num_bands)
    return _gammatone_kernel(np.ascontiguousarray(sig, dtype=np.float64),
                             np.ascontiguousarray(hann_window, dtype=np.float64), coeffs,
                             int(window_size), int(hop_size), int(num_cols))


# -- patch matching (dynamic programming over NSIM) -------------------------------------------------
@njit(**_JIT)
def _degraded_local_stats(padded, gw, shifts):
    """Local weighted mean and mean square of ``padded`` [rows, width] for each column pattern.

    ``shifts[v, kc]`` is the column offset that kernel column ``kc`` reads in pattern ``v`` (the
    clamped patch-local offset, which differs from ``kc - kw // 2`` only at the patch edges). The
    accumulation order (kernel row, then kernel column) is the original kernel's.
    """
    rows, width = padded.shape
    kh, kw = gw.shape
    pad_h = kh // 2
    num_patterns = shifts.shape[0]
    mean = np.empty((num_patterns, rows, width), dtype=np.float64)
    square = np.empty((num_patterns, rows, width), dtype=np.float64)
    for v in range(num_patterns):
        for row in range(rows):
            for col in range(width):
                mean_sum = 0.0
                square_sum = 0.0
                for kernel_row in range(kh):
                    source_row = min(max(row + kernel_row - pad_h, 0), rows - 1)
                    for kernel_col in range(kw):
                        # out-of-range columns only occur for (pattern, column) pairs never read
                        source_col = min(max(col + shifts[v, kernel_col], 0), width - 1)
                        weight = gw[kernel_row, kernel_col]
                        value = padded[source_row, source_col]
                        mean_sum += weight * value
                        square_sum += weight * (value * value)
                mean[v, row, col] = mean_sum
                square[v, row, col] = square_sum
    return mean, square


@njit(**_JIT)
def _dp_forward_pass_padded(ref_patches, padded, shifts, col_pattern, ref_patch_indices, num_patches,
                            num_frames_in_deg, search_window, gw, c1, c3):
    """``_dp_forward_pass`` of visqol-python, reading degraded patch ``o`` as ``padded[:, o:o + cols]``.

    All candidate offsets of one reference patch are scored together: every loop over ``t`` below is
    elementwise over offsets, so it vectorises, while each offset's own sequence of operations is
    the original's.
    """
    _, rows, cols = ref_patches.shape
    kh, kw = gw.shape
    pad_h = kh // 2
    pad_w = kw // 2
    mean_deg, square_deg = _degraded_local_stats(padded, gw, shifts)

    num_ref_patches = ref_patch_indices.shape[0]
    cumulative_dp = np.zeros((num_ref_patches, num_frames_in_deg), dtype=np.float64)
    backtrace = np.full((num_ref_patches, num_frames_in_deg), -1, dtype=np.int64)
    prefix_value = np.empty(num_frames_in_deg, dtype=np.float64)
    prefix_index = np.empty(num_frames_in_deg, dtype=np.int64)
    cross = np.empty(num_frames_in_deg, dtype=np.float64)
    band_sum = np.empty(num_frames_in_deg, dtype=np.float64)
    total = np.empty(num_frames_in_deg, dtype=np.float64)

    for patch_index in range(num_patches):
        ref_patch = ref_patches[patch_index]
        ref_frame_index = ref_patch_indices[patch_index]
        low = max(0, ref_frame_index - search_window)
        high = min(num_frames_in_deg - 1, ref_frame_index + search_window)
        n = high - low + 1
        mu_r, sigma_r_sq = _reference_local_stats(ref_patch, gw)

        if patch_index > 0:
            lower_limit = max(0, ref_patch_indices[patch_index - 1] - search_window)
            highest_sim = -1e308
            highest_offset = -1
            for offset in range(lower_limit, high + 1):
                prefix_value[offset] = highest_sim
                prefix_index[offset] = highest_offset
                previous = cumulative_dp[patch_index - 1, offset]
                if previous >= highest_sim:  # rightmost tie, as the original
                    highest_sim = previous
                    highest_offset = offset

        if n <= 0:
            continue
        for t in range(n):
            total[t] = 0.0
        for row in range(rows):
            for t in range(n):
                band_sum[t] = 0.0
            for col in range(cols):
                for t in range(n):
                    cross[t] = 0.0
                for kernel_row in range(kh):
                    source_row = min(max(row + kernel_row - pad_h, 0), rows - 1)
                    deg_row = padded[source_row]
                    for kernel_col in range(kw):
                        source_col = min(max(col + kernel_col - pad_w, 0), cols - 1)
                        weight = gw[kernel_row, kernel_col]
                        ref_value = ref_patch[source_row, source_col]
                        # slices, not deg_row[low + source_col + t]: numba's negative-index
                        # wrap-around check on a computed index keeps loops from vectorising
                        deg_values = deg_row[low + source_col:low + source_col + n]
                        for t in range(n):
                            cross[t] += weight * (ref_value * deg_values[t])
                mean_ref = mu_r[row, col]
                sigma_ref = sigma_r_sq[row, col]
                ref_mean_sq = mean_ref * mean_ref
                means = mean_deg[col_pattern[col], row, low + col:low + col + n]
                squares = square_deg[col_pattern[col], row, low + col:low + col + n]
                for t in range(n):
                    mean_d = means[t]
                    deg_mean_sq = mean_d * mean_d
                    mean_cross = mean_ref * mean_d
                    deg_variance = squares[t] - deg_mean_sq
                    covariance = cross[t] - mean_cross
                    intensity = (2.0 * mean_cross + c1) / (ref_mean_sq + deg_mean_sq + c1)
                    variance_product = sigma_ref * deg_variance
                    root = math.sqrt(abs(variance_product))  # unconditional, so the loop vectorises
                    denominator = c3 if variance_product < 0.0 else root + c3
                    band_sum[t] += intensity * ((covariance + c3) / denominator)
            for t in range(n):
                total[t] += band_sum[t] / cols

        for t in range(n):
            slide_offset = low + t
            sim_val = total[t] / rows
            past_slide_offset = -1
            if patch_index > 0:
                sim_val += prefix_value[slide_offset]
                past_slide_offset = prefix_index[slide_offset]
                same_offset = cumulative_dp[patch_index - 1, slide_offset]
                if same_offset > sim_val:
                    sim_val = same_offset
                    past_slide_offset = slide_offset
            cumulative_dp[patch_index, slide_offset] = sim_val
            backtrace[patch_index, slide_offset] = past_slide_offset

    return cumulative_dp, backtrace


def _column_patterns(cols: int, kw: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct clamped column-offset patterns of a ``kw``-wide kernel over a ``cols``-wide patch.

    Returns ``shifts [patterns, kw]`` and ``col_pattern [cols]`` (pattern index of each column).
    """
    c = np.arange(cols)[:, None]
    per_col = np.clip(c + np.arange(kw)[None, :] - kw // 2, 0, cols - 1) - c
    shifts, col_pattern = np.unique(per_col, axis=0, return_inverse=True)
    return np.ascontiguousarray(shifts, dtype=np.int64), np.ascontiguousarray(col_pattern.ravel(), dtype=np.int64)


def padded_spectrogram(spectrogram: np.ndarray, num_frames_per_patch: int) -> np.ndarray:
    """``[bands, frames + patch - 1]``: the spectrogram followed by the zeros that degraded patches see."""
    bands, frames = spectrogram.shape
    padded = np.zeros((bands, frames + num_frames_per_patch - 1), dtype=np.float64)
    padded[:, :frames] = spectrogram
    return padded


def dp_forward_pass(ref_patches: np.ndarray, spectrogram: np.ndarray, ref_patch_indices: np.ndarray,
                    num_patches: int, search_window: int, gw: np.ndarray = _GW, c1: float = _C1,
                    c3: float = _C3) -> tuple[np.ndarray, np.ndarray]:
    """Same result as ``_dp_forward_pass(ref_patches, _build_all_deg_patches(spectrogram, ...), ...)``.

    Parameters
    ----------
    ref_patches: ``[patches, bands, frames_per_patch]`` reference patches.
    spectrogram: degraded spectrogram ``[bands, frames]`` (dB above the common floor).
    ref_patch_indices: first frame of every reference patch ``[all_patches]`` (int64, increasing).
    num_patches: how many leading patches to match.
    search_window: search radius in frames.

    Returns
    -------
    ``(cumulative_dp, backtrace)``, both ``[all_patches, frames]``.
    """
    ref_patches = np.ascontiguousarray(ref_patches, dtype=np.float64)
    cols = ref_patches.shape[2]
    shifts, col_pattern = _column_patterns(cols, gw.shape[1])
    return _dp_forward_pass_padded(ref_patches, padded_spectrogram(spectrogram, cols), shifts, col_pattern,
                                   np.ascontiguousarray(ref_patch_indices, dtype=np.int64), int(num_patches),
                                   int(spectrogram.shape[1]), int(search_window), gw, c1, c3)


def find_most_optimal_deg_patches(ref_patches: list[np.ndarray], ref_patch_indices: list[int],
                                  spectrogram_data: np.ndarray, frame_duration: float, num_patches: int,
                                  num_bands: int, num_frames_per_patch: int, num_frames_in_deg: int,
                                  patch_duration: float, search_window: int) -> list[PatchSimilarityResult]:
    """Drop-in for ``visqol.patch_selector._find_most_optimal_deg_patches_numba`` (identical results)."""
    ref_patches_arr = np.ascontiguousarray(np.array(ref_patches[:num_patches], dtype=np.float64))
    ref_indices_arr = np.ascontiguousarray(np.array(ref_patch_indices, dtype=np.int64))
    padded = padded_spectrogram(np.asarray(spectrogram_data, dtype=np.float64), num_frames_per_patch)
    shifts, col_pattern = _column_patterns(num_frames_per_patch, _GW.shape[1])
    cumulative_dp, backtrace = _dp_forward_pass_padded(ref_patches_arr, padded, shifts, col_pattern, ref_indices_arr,
                                                       num_patches, num_frames_in_deg, search_window, _GW, _C1, _C3)
    best_offsets = _dp_backtrace(cumulative_dp, backtrace, ref_indices_arr, num_patches, num_frames_in_deg,
                                 search_window)

    # from here on the original's bookkeeping, unchanged
    results: list[PatchSimilarityResult] = []
    for patch_index in range(num_patches):
        offset = int(best_offsets[patch_index])
        deg_patch = np.ascontiguousarray(padded[:, offset:offset + num_frames_per_patch])
        sim_mean, fb_means, fb_stddevs, fb_deg_energy = _measure_patch_similarity_numba(
            ref_patches[patch_index], deg_patch, _GW, _C1, _C3)
        result = PatchSimilarityResult(similarity=float(sim_mean), freq_band_means=fb_means,
                                       freq_band_stddevs=fb_stddevs, freq_band_deg_energy=fb_deg_energy)
        if offset == backtrace[patch_index, offset]:  # packet loss
            result.deg_patch_start_time = 0.0
            result.deg_patch_end_time = 0.0
            result.similarity = 0.0
            result.freq_band_means = np.zeros(num_bands)
        else:
            result.deg_patch_start_time = offset * frame_duration
            result.deg_patch_end_time = result.deg_patch_start_time + patch_duration
        result.ref_patch_start_time = ref_patch_indices[patch_index] * frame_duration
        result.ref_patch_end_time = result.ref_patch_start_time + patch_duration
        results.append(result)
    return results


# -- installation -------------------------------------------------------------------------------------
_depth = 0


@contextlib.contextmanager
def accelerated(enabled: bool = True) -> Iterator[None]:
    """Route visqol-python's gammatone and patch-matching kernels through this module inside the block.

    ``enabled=False`` makes the block a no-op (the originals run). Re-entrant; the originals are
    restored when the outermost block exits, also on error.
    """
    global _depth
    if not enabled:
        yield
        return
    if _depth == 0:
        visqol.gammatone._gammatone_spectrogram_numba = gammatone_spectrogram
        visqol.patch_selector._find_most_optimal_deg_patches_numba = find_most_optimal_deg_patches
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            visqol.gammatone._gammatone_spectrogram_numba = ORIGINAL_GAMMATONE
            visqol.patch_selector._find_most_optimal_deg_patches_numba = ORIGINAL_FIND_PATCHES


def is_installed() -> bool:
    """True while an :func:`accelerated` block is active."""
    return visqol.gammatone._gammatone_spectrogram_numba is gammatone_spectrogram

