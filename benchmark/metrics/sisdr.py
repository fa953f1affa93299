"""Scale-invariant signal-to-distortion ratio (SI-SDR).

Convention: dB, higher is better, never negated. Both signals are zero-meaned first (the
standard definition of Le Roux et al., "SDR - half-baked or well done?", ICASSP 2019):

    alpha = <s, s_hat> / ||s||^2,  target = alpha s,  noise = s_hat - target
    SI-SDR = 10 log10(||target||^2 / ||noise||^2)

A silent (all-zero after mean removal) reference makes SI-SDR undefined: NaN is returned
(never a crash, never +-inf). A perfect estimate is capped at ``MAX_DB`` instead of +inf.
"""

from __future__ import annotations

import numpy as np

from benchmark.metrics.base import ItemMetric, MetricCard

MAX_DB = 150.0
_EPS = 1e-20


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """SI-SDR in dB of ``estimate`` against ``reference`` (both ``[samples]``)."""
    s = np.asarray(reference, dtype=np.float64).ravel()
    e = np.asarray(estimate, dtype=np.float64).ravel()
    if s.shape != e.shape:
        raise ValueError(f"si_sdr: length mismatch {s.shape} vs {e.shape}; align the signals first")
    s = s - s.mean()
    e = e - e.mean()
    energy = float(s @ s)
    if energy <= _EPS * s.size:
        return float("nan")
    target = (float(s @ e) / energy) * s
    noise = e - target
    t, n = float(target @ target), float(noise @ noise)
    if t <= 0.0:  # nothing of the target (incl. an all-zero estimate): worst, not perfect
        return -MAX_DB
    if n <= _EPS * t:  # relative: a near-silent estimate must not look perfect
        return MAX_DB
    return float(np.clip(10.0 * np.log10(t / n), -MAX_DB, MAX_DB))


class SISDR(ItemMetric):
    # no setting: the convention (zero-mean, cap) is fixed by the card's version
    comparable_on = ()
    card = MetricCard(
        name="si_sdr", unit="dB", higher_is_better=True,
        convention="zero-mean, scale-invariant (Le Roux 2019), NaN for silent reference, capped at +-150 dB",
        implementation="benchmark.metrics.sisdr (numpy float64)", version="1",
    )

    def __call__(self, reference, estimate, sample_rate):
        return si_sdr(reference, estimate)
