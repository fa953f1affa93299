"""The alignment policy: how a decoded estimate is lined up with its reference before any metric.

One policy for every metric and every front end (``run``, ``eval``, the steps study, scripts);
the engine applies it once (:class:`StreamAligner`), and every metric card refers to it.

1. **Reference**: the untouched original at its native rate. **Estimate**: the codec's output
   resampled back to that rate (or a decoded file resampled to it).
2. **Declared delay**: a codec whose output lags its input by a constant number of samples says
   so in ``CodecInfo.delay_samples`` (at its own rate); that many samples are dropped from the
   start of every decoded chunk before anything else. An undeclared delay is not searched for:
   the codec is scored as it aligns.
3. **Missing samples count as silence**: an estimate shorter than its reference is zero-padded
   at its end (``padded`` samples); extra samples at the end are cut (``cut`` samples). A codec
   can therefore never gain by returning less audio: the samples it did not return are scored
   as silence against the reference.
4. An estimate **shorter than half its reference** is an error row (:class:`AlignmentError`),
   not a score: such a mismatch means a wrong rate or a broken codec, not a codec crop.
5. What was padded, cut or clipped is recorded per item (:class:`AlignFacts`) and summed per
   codec in the tables.
6. Per channel and segment, :func:`check_pair` rejects NaN/inf or empty signals (an error row
   naming the item), counts clipped samples (``|x| >= 0.999``, a warning) and marks a silent
   reference (RMS below -90 dBFS): item metrics are then undefined (NaN, with the reason), the
   same for every codec.

``POLICY_VERSION`` is part of every cache key that holds a score.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from benchmark.data.audio import ResampleFifo
from benchmark.metrics.base import MetricError

POLICY_VERSION = "3"  # 3: zero-filled chunk gaps count as padded and not as delivered
CLIP_LEVEL = 0.999
SILENCE_DBFS = -90.0
MIN_ESTIMATE_FRACTION = 0.5
POLICY = ("estimate resampled to the reference's native rate; declared codec delay removed; missing "
          "samples zero-padded (scored as silence), extra samples cut; estimate shorter than half the "
          "reference = error row; silent reference (< -90 dBFS) = NaN")


class AlignmentError(MetricError):
    """An estimate that cannot be aligned with its reference (far too short, wrong channels)."""


@dataclasses.dataclass
class AlignFacts:
    """What alignment did to one item (samples at the reference's rate unless stated).

    reference_samples, estimate_samples: lengths as delivered (estimate after delay removal).
    padded: zeros appended because the estimate ended early (missing audio scored as silence).
    cut: estimate samples beyond the end of the reference, dropped.
    gap: samples inside the signal that no codec chunk covered (a chunk decoded far too short),
        scored as silence; included in ``padded``.
    delay_removed: codec-rate samples removed at the start of each decoded chunk (declared).
    clipped: estimate samples at or above full scale (counted per channel).
    """

    reference_samples: int = 0
    estimate_samples: int = 0
    padded: int = 0
    cut: int = 0
    gap: int = 0
    delay_removed: int = 0
    clipped: int = 0

    def notes(self, sample_rate: int) -> list[str]:
        out = []
        if self.padded:
            out.append(f"estimate {self.padded / sample_rate:.3f} s short: zero-padded (scored as silence)")
        if self.gap:
            out.append(f"{self.gap / sample_rate:.3f} s of it inside the signal, where no codec chunk reached")
        if self.cut:
            out.append(f"{self.cut / sample_rate:.3f} s of extra estimate cut")
        if self.delay_removed:
            out.append(f"declared delay removed ({self.delay_removed} codec samples per chunk)")
        if self.clipped:
            out.append(f"estimate clipped on {self.clipped} samples")
        return out

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class StreamAligner:
    """Fits an estimate stream to a reference stream, block by block (policy points 3-5).

    The estimate is pushed as ``[channels, n]`` blocks at the reference's rate (``last=True``
    with the final one); :meth:`take` returns exactly the samples that go with the next
    reference block (zero-padded once the estimate has ended). After the last reference block,
    everything the estimate still holds or receives is cut. :meth:`finish` checks rule 4 and
    returns the facts.
    """

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self._queue = ResampleFifo(channels, 1, 1)  # equal rates: a plain sample queue
        self.closed = False
        self._reference_done = False
        self.facts = AlignFacts()

    @property
    def size(self) -> int:
        return self._queue.size

    def push(self, block: np.ndarray, last: bool = False) -> None:
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise AlignmentError(f"estimate has shape {block.shape}; expected [{self.channels}, samples]")
        self.facts.estimate_samples += block.shape[1]
        if self._reference_done:
            self.facts.cut += block.shape[1]
        elif block.shape[1]:
            self._queue.push(block)
        self.closed = self.closed or last

    def ready(self, samples: int) -> bool:
        """Whether :meth:`take` of ``samples`` can be answered without more estimate."""
        return self.closed or self.size >= samples

    def take(self, samples: int, last: bool = False) -> np.ndarray:
        """The estimate ``[channels, samples]`` for the next reference block of ``samples``."""
        if not self.ready(samples):
            raise RuntimeError("StreamAligner.take before the estimate was ready (call ready() first)")
        block = self._queue.pop(samples)
        if block.shape[1] < samples:
            self.facts.padded += samples - block.shape[1]
            block = np.pad(block, ((0, 0), (0, samples - block.shape[1])))
        self.facts.reference_samples += samples
        self.facts.clipped += int(np.count_nonzero(np.abs(block) >= CLIP_LEVEL))
        if last:
            self._reference_done = True
            self.facts.cut += self.size
            self._queue.pop(self.size)
        return np.ascontiguousarray(block)

    def finish(self, name: str) -> AlignFacts:
        """Apply rule 4 (``name`` goes into the error) and return the facts."""
        facts = self.facts
        delivered = facts.estimate_samples - facts.cut - facts.gap  # zero-filled gaps were not delivered
        if facts.reference_samples and delivered < MIN_ESTIMATE_FRACTION * facts.reference_samples:
            raise AlignmentError(
                f"{name}: the estimate has {delivered} samples for a reference of "
                f"{facts.reference_samples} (< {MIN_ESTIMATE_FRACTION:.0%}); a wrong sample rate or a "
                "truncating codec - this item is an error, not a score")
        return facts


def fit_to_reference(reference_samples: int, estimate: np.ndarray, name: str = "item") -> tuple[np.ndarray, AlignFacts]:
    """Whole-signal form of the policy: ``estimate [channels, n]`` fitted to ``reference_samples``."""
    estimate = np.asarray(estimate, dtype=np.float32)
    if estimate.ndim == 1:
        estimate = estimate[None]
    aligner = StreamAligner(estimate.shape[0])
    aligner.push(estimate, last=True)
    fitted = aligner.take(reference_samples, last=True)
    return fitted, aligner.finish(name)


@dataclasses.dataclass
class PairInfo:
    """What :func:`check_pair` found in one mono pair."""

    clipped_reference: int
    clipped_estimate: int
    reference_rms_dbfs: float
    silent: bool
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def nan_reason(self) -> str | None:
        if self.silent:
            return f"silent reference (RMS {self.reference_rms_dbfs:.1f} dBFS < {SILENCE_DBFS:.0f} dBFS)"
        return None


def is_silent(x: np.ndarray, silence_dbfs: float = SILENCE_DBFS) -> bool:
    """Whether ``x``'s RMS level is below ``silence_dbfs`` (dB full scale)."""
    rms = float(np.sqrt(np.mean(np.square(np.asarray(x), dtype=np.float64)))) if np.size(x) else 0.0
    return rms <= 10 ** (silence_dbfs / 20)


def _as_mono(x: np.ndarray, what: str, item: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise MetricError(f"{item}: {what} must be mono [samples], got shape {a.shape}")
    if a.size == 0:
        raise MetricError(f"{item}: {what} is empty (0 samples)")
    if not np.issubdtype(a.dtype, np.floating):
        raise MetricError(f"{item}: {what} must be floating point in [-1, 1], got {a.dtype}")
    bad = ~np.isfinite(a)
    if bad.any():
        raise MetricError(f"{item}: {what} contains {int(bad.sum())} NaN/inf samples (first at sample "
                          f"{int(np.argmax(bad))}); the codec diverged or the file is corrupt")
    return a.astype(np.float32, copy=False)


def check_pair(reference: np.ndarray, estimate: np.ndarray,
               item: str = "item") -> tuple[np.ndarray, np.ndarray, PairInfo]:
    """Validate an aligned mono pair (policy point 6); returns float32 ``[n]`` arrays and the info.

    Raises :class:`MetricError` naming ``item`` for NaN/inf, empty or unequal-length signals.
    """
    ref = _as_mono(reference, "reference", item)
    est = _as_mono(estimate, "estimate", item)
    if ref.size != est.size:
        raise AlignmentError(f"{item}: reference has {ref.size} samples, estimate {est.size}; align first "
                             "(benchmark.metrics.align.fit_to_reference)")
    clipped_ref = int(np.count_nonzero(np.abs(ref) >= CLIP_LEVEL))
    clipped_est = int(np.count_nonzero(np.abs(est) >= CLIP_LEVEL))
    warnings = []
    if clipped_ref:
        warnings.append(f"reference clipped on {clipped_ref} samples")
    if clipped_est:
        warnings.append(f"estimate clipped on {clipped_est} samples")
    rms = float(np.sqrt(np.mean(np.square(ref, dtype=np.float64))))
    rms_db = 20.0 * np.log10(rms) if rms > 0 else -np.inf
    info = PairInfo(clipped_ref, clipped_est, float(rms_db), bool(rms_db < SILENCE_DBFS), warnings)
    return ref, est, info
