"""Length alignment and validation of a (reference, estimate) pair before item metrics.

Policy
------
1. Both signals are mono ``[samples]`` at the same rate and start at the same instant: a
   codec's decoder output begins at sample 0 of its input. Some decoders return fewer samples
   (Music2Latent crops to ``4096 k + 1536``) or more (padding to a frame multiple), always
   at the end.
2. Both are therefore **trimmed to the shorter length**, from the end. No resampling, no
   cross-correlation shift: a codec that delays its output is penalised, as it should be.
3. If more than ``max_trim_fraction`` (default 50 %) of the longer signal would be cut, the
   pair is rejected: such a mismatch means a wrong sample rate or a truncated file, not a
   codec crop.
4. NaN or inf samples, empty or multi-channel arrays raise :class:`MetricError` naming the
   item (and which signal).
5. Clipping (``|x| >= clip_level``, default 0.999 full scale) is counted per signal and
   reported as a warning; the pair is still scored.
6. A silent reference (RMS below ``silence_dbfs``, default -90 dBFS) makes every item metric
   undefined: ``info.silent`` is set and :attr:`AlignInfo.nan_reason` explains it; the
   pipeline records NaN with that reason instead of a number.
7. Set metrics (FAD) compare a codec's decoded set with a *reference set* that must be the
   same for every codec, so for them the reference is never trimmed: the estimate is fitted
   to the reference length instead (:func:`fit_to_reference`: cut at the end, or zero-padded
   at the end; codec crops are at most a few tens of milliseconds).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from benchmark.metrics.base import MetricError

CLIP_LEVEL = 0.999
SILENCE_DBFS = -90.0
MAX_TRIM_FRACTION = 0.5


@dataclasses.dataclass
class AlignInfo:
    """What :func:`align_pair` did and found.

    reference_samples, estimate_samples: lengths before alignment.
    samples: common length after trimming.
    trimmed_reference, trimmed_estimate: samples cut from the end of each.
    clipped_reference, clipped_estimate: samples at or above the clip level.
    reference_rms_dbfs: RMS level of the (trimmed) reference in dB full scale.
    silent: the reference is silent, so item metrics are undefined (NaN).
    warnings: human-readable notes (clipping, large trims), for logs and result rows.
    """

    reference_samples: int
    estimate_samples: int
    samples: int
    trimmed_reference: int
    trimmed_estimate: int
    clipped_reference: int
    clipped_estimate: int
    reference_rms_dbfs: float
    silent: bool
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def nan_reason(self) -> str | None:
        """Why metrics of this pair are NaN (``None`` if they are defined)."""
        if self.silent:
            return f"silent reference (RMS {self.reference_rms_dbfs:.1f} dBFS < {SILENCE_DBFS:.0f} dBFS)"
        return None

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["warnings"] = "; ".join(self.warnings)
        d["nan_reason"] = self.nan_reason or ""
        return d


def is_silent(x: np.ndarray, silence_dbfs: float = SILENCE_DBFS) -> bool:
    """Whether ``x``'s RMS level is below ``silence_dbfs`` (dB full scale)."""
    rms = float(np.sqrt(np.mean(np.square(np.asarray(x), dtype=np.float64)))) if np.size(x) else 0.0
    return rms <= 10 ** (silence_dbfs / 20)


def _as_mono(x: np.ndarray, what: str, item: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise MetricError(f"{item}: {what} must be mono [samples], got shape {a.shape}; "
                          "split channels before scoring (metrics are computed per channel)")
    if a.size == 0:
        raise MetricError(f"{item}: {what} is empty (0 samples)")
    if not np.issubdtype(a.dtype, np.floating):
        raise MetricError(f"{item}: {what} must be floating point in [-1, 1], got {a.dtype}")
    bad = ~np.isfinite(a)
    if bad.any():
        first = int(np.argmax(bad))
        raise MetricError(f"{item}: {what} contains {int(bad.sum())} NaN/inf samples (first at "
                          f"sample {first}); the codec diverged or the file is corrupt")
    return a.astype(np.float32, copy=False)


def align_pair(reference: np.ndarray, estimate: np.ndarray, item: str = "item",
               clip_level: float = CLIP_LEVEL, silence_dbfs: float = SILENCE_DBFS,
               max_trim_fraction: float = MAX_TRIM_FRACTION) -> tuple[np.ndarray, np.ndarray, AlignInfo]:
    """Validate and align a pair (see module docstring for the policy).

    Parameters
    ----------
    reference, estimate: mono float arrays ``[samples]`` (``[1, samples]`` accepted) at the
        same sample rate.
    item: name used in error messages (item id or file path).

    Returns
    -------
    ``(reference, estimate, info)``: float32 ``[n]`` arrays of equal length ``n`` and an
    :class:`AlignInfo`.
    """
    ref = _as_mono(reference, "reference", item)
    est = _as_mono(estimate, "estimate", item)
    n = min(ref.size, est.size)
    longest = max(ref.size, est.size)
    warnings: list[str] = []
    if longest - n > max_trim_fraction * longest:
        raise MetricError(f"{item}: reference has {ref.size} samples but estimate has {est.size}; "
                          f"trimming {longest - n} samples (>{max_trim_fraction:.0%}) suggests a wrong "
                          "sample rate or a truncated file, not a codec crop")
    if longest != n:
        warnings.append(f"trimmed to {n} samples (reference -{ref.size - n}, estimate -{est.size - n})")
    ref, est = ref[:n], est[:n]
    clipped_ref = int(np.count_nonzero(np.abs(ref) >= clip_level))
    clipped_est = int(np.count_nonzero(np.abs(est) >= clip_level))
    if clipped_ref:
        warnings.append(f"reference clipped on {clipped_ref} samples")
    if clipped_est:
        warnings.append(f"estimate clipped on {clipped_est} samples")
    rms = float(np.sqrt(np.mean(np.square(ref, dtype=np.float64))))
    rms_db = 20.0 * np.log10(rms) if rms > 0 else -np.inf
    info = AlignInfo(reference_samples=int(np.asarray(reference).size),
                     estimate_samples=int(np.asarray(estimate).size), samples=n,
                     trimmed_reference=int(np.asarray(reference).size) - n,
                     trimmed_estimate=int(np.asarray(estimate).size) - n,
                     clipped_reference=clipped_ref, clipped_estimate=clipped_est,
                     reference_rms_dbfs=float(rms_db), silent=bool(rms_db < silence_dbfs),
                     warnings=warnings)
    return ref, est, info


def fit_to_reference(estimate: np.ndarray, samples: int) -> np.ndarray:
    """``estimate [..., n]`` cut or zero-padded at the end to ``samples`` (policy 7)."""
    n = estimate.shape[-1]
    if n >= samples:
        return estimate[..., :samples]
    pad = [(0, 0)] * (estimate.ndim - 1) + [(0, samples - n)]
    return np.pad(estimate, pad)
