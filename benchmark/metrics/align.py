"""Length alignment and validation of a (reference, estimate) pair before scoring.

Policy: decoders may return more or fewer samples than were encoded, always starting at the
same time origin (sample 0). Both signals are trimmed to the shorter length; the number of
trimmed samples is reported in ``info``. NaN/inf samples raise :class:`MetricError`.
"""

from __future__ import annotations

import numpy as np

from benchmark.metrics.base import MetricError


def align_pair(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Trim mono ``[samples]`` signals to a common length; validate they are finite."""
    reference = np.asarray(reference, dtype=np.float32).ravel()
    estimate = np.asarray(estimate, dtype=np.float32).ravel()
    for name, x in (("reference", reference), ("estimate", estimate)):
        if x.size == 0:
            raise MetricError(f"{name} is empty")
        if not np.isfinite(x).all():
            raise MetricError(f"{name} contains NaN or inf samples")
    n = min(reference.size, estimate.size)
    info = {"trimmed_reference": int(reference.size - n), "trimmed_estimate": int(estimate.size - n)}
    return reference[:n], estimate[:n], info
