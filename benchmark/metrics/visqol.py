"""ViSQOL v3 MOS-LQO through ``visqol-python`` (Apache-2.0 port of Google's ViSQOL v3.3.3).

Convention: MOS-LQO on the 1-5 scale, higher is better.

- ``mode="audio"`` (default): both signals are resampled (soxr, very high quality) to
  **48 kHz**, the only rate the audio-mode SVR model was trained at. Identical signals score
  about 4.73 (the model's ceiling), not 5.
- ``mode="speech"``: resampled to **16 kHz**; MOS from the polynomial mapping
  (``use_lattice_model=False``: the TFLite lattice mapper of the C++ default is not used, so
  speech scores are not comparable with C++ ViSQOL's defaults).

Signals are mono ``[samples]`` of equal length (align them first), converted to float32 (the
front end's sample format), resampled, then passed to ViSQOL as float64. A silent reference
returns NaN. ``batch()`` scores pairs in a pool of worker processes (``workers``, default 2, each
pinned to one numba thread and one OpenMP thread). The OpenMP pin also makes the workers' scores
bit-reproducible: libsvm, which maps the features to MOS in audio mode, sums in an OpenMP
reduction whose order follows thread timing, so in a process with several OpenMP threads the same
pair can score differently in the 15th digit from call to call (set ``OMP_NUM_THREADS=1`` before
the first measurement to avoid it in-process).

Speed. visqol-python's own numba kernels are used when numba is installed (its ``[accel]``
extra). With ``accelerate=True`` (default; needs numba) the two kernels where nearly all the time
goes, the gammatone filterbank and the NSIM patch-matching search, are replaced for the duration
of each measurement by the vectorised kernels of :mod:`benchmark.metrics.visqol_accel`. They do
the same floating-point operations in the same order, so every score is **bit-identical** to
visqol-python's (checked against an unpatched process in ``tests/metrics/test_visqol_accel.py``);
only the speed changes: about 3x (one core, CPU time, 44.1 kHz music-like clips, AMD EPYC with
AVX-512: 8.8x -> 23x real time for 3 s clips, 7.7x -> 23x for 10 s, 5.6x -> 18x for 30 s; the
patch search grows with the square of the length). Run
``python scripts/bench_metrics.py --skip si_sdr,mel_distance,mrstft_distance,fad`` for both
figures on your machine. The patch is scoped to the ``with`` block around each measurement (see
:func:`benchmark.metrics.visqol_accel.accelerated`); ``accelerate=False`` runs visqol-python
untouched. The kernels' first use compiles them (~4 s, then cached by numba on disk).

The metric card records mode, rate, package version, whether numba was active and whether the
accelerated kernels were used. Two ViSQOL values are comparable under equal ``mode``, ``rate``
and ``search_window`` (:attr:`ViSQOL.comparable_on`, stored by :attr:`ViSQOL.settings`) and
equal implementation, where the accelerated kernels do not count (they are bit-identical).
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib.metadata
import importlib.util
import multiprocessing as mp
import os
from typing import Any, Callable, Mapping

import numpy as np

from benchmark.data.audio import resample
from benchmark.metrics.align import is_silent
from benchmark.metrics.base import ItemMetric, MetricCard, MetricError

MODES = {"audio": 48000, "speech": 16000}
ACCEL_SUFFIX = " + visqol_accel kernels (bit-identical)"

_WORKER_API: Any = None
_WORKER_ACCELERATE = False


def _make_api(mode: str, search_window: int):
    try:
        from visqol import VisqolApi
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MetricError("ViSQOL needs visqol-python: pip install 'visqol-python[accel]'") from exc
    api = VisqolApi()
    kwargs: dict[str, Any] = {"mode": mode, "search_window": search_window}
    if mode == "speech":
        kwargs["use_lattice_model"] = False
    api.create(**kwargs)
    return api


def _measure(api: Any, ref: np.ndarray, est: np.ndarray, rate: int, accelerate: bool) -> float:
    """MOS-LQO of float64 ``ref`` / ``est`` at ``rate``, with the accelerated kernels if asked."""
    if not accelerate:
        return float(api.measure_from_arrays(ref, est, rate).moslqo)
    from benchmark.metrics.visqol_accel import accelerated

    with accelerated():
        return float(api.measure_from_arrays(ref, est, rate).moslqo)


def _worker_init(mode: str, search_window: int, accelerate: bool = False) -> None:
    # one numba thread per worker process: parallelism comes from the pool, not from numba; and
    # one OpenMP thread for libsvm's SVR, whose OpenMP sum otherwise has a timing-dependent order
    # (MOS jitter of ~1e-15 between calls)
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    global _WORKER_API, _WORKER_ACCELERATE
    _WORKER_API = _make_api(mode, search_window)
    _WORKER_ACCELERATE = accelerate


def _worker_score(ref: np.ndarray, est: np.ndarray, rate: int) -> float:
    return _measure(_WORKER_API, ref, est, rate, _WORKER_ACCELERATE)


def visqol_version() -> str:
    try:
        return importlib.metadata.version("visqol-python")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


class ViSQOL(ItemMetric):
    """ViSQOL MOS-LQO (see module docstring).

    Parameters
    ----------
    mode: ``"audio"`` (48 kHz) or ``"speech"`` (16 kHz).
    workers: processes used by :meth:`batch` (1 = score in this process).
    search_window: ViSQOL's alignment search window radius (frames), default 60.
    accelerate: use the bit-identical vectorised kernels of :mod:`benchmark.metrics.visqol_accel`
        (ignored without numba, which they need).
    """

    comparable_on = ("mode", "rate", "search_window")

    @classmethod
    def comparable_values(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        values = super().comparable_values(settings)
        if isinstance(values["implementation"], str):  # the accelerated kernels change no score
            values["implementation"] = values["implementation"].replace(ACCEL_SUFFIX, "")
        return values

    def __init__(self, mode: str = "audio", workers: int = 2, search_window: int = 60,
                 accelerate: bool = True) -> None:
        if mode not in MODES:
            raise MetricError(f"ViSQOL mode {mode!r} unknown; choose 'audio' (48 kHz) or 'speech' (16 kHz)")
        self.mode = mode
        self.rate = MODES[mode]
        self.workers = max(1, int(workers))
        self.search_window = int(search_window)
        self._api = None
        self._pool: cf.ProcessPoolExecutor | None = None
        numba = importlib.util.find_spec("numba") is not None
        self.accelerate = bool(accelerate) and numba
        self.card = MetricCard(
            name="visqol", unit="MOS-LQO", higher_is_better=True,
            convention=(f"ViSQOL v3 {mode} mode at {self.rate} Hz (soxr VHQ resampling), "
                        f"search_window={search_window}"
                        + (", polynomial speech mapping" if mode == "speech" else ", SVR model")
                        + "; NaN for silent reference; identical audio ~4.73 in audio mode"),
            implementation=f"visqol-python {visqol_version()}" + (" + numba" if numba else "")
            + (ACCEL_SUFFIX if self.accelerate else ""),
            version="1")

    # -- single pair ----------------------------------------------------------------------------
    def prepare(self, reference: np.ndarray, estimate: np.ndarray,
                sample_rate: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Validate, resample to the mode's rate, return float64 arrays (None if silent)."""
        ref = np.asarray(reference, dtype=np.float32).ravel()
        est = np.asarray(estimate, dtype=np.float32).ravel()
        if ref.shape != est.shape:
            raise MetricError(f"visqol: length mismatch {ref.size} vs {est.size}; align the signals first")
        if not (np.isfinite(ref).all() and np.isfinite(est).all()):
            raise MetricError("visqol: NaN or inf samples")
        if is_silent(ref):
            return None
        if sample_rate != self.rate:
            both = resample(np.stack([ref, est]), sample_rate, self.rate)
            ref, est = both[0], both[1]
        return ref.astype(np.float64), est.astype(np.float64)

    def __call__(self, reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
        prepared = self.prepare(reference, estimate, sample_rate)
        if prepared is None:
            return float("nan")
        if self._api is None:
            self._api = _make_api(self.mode, self.search_window)
        return _measure(self._api, prepared[0], prepared[1], self.rate, self.accelerate)

    # -- many pairs -----------------------------------------------------------------------------
    def batch(self, pairs: list[tuple[np.ndarray, np.ndarray]], sample_rate: int) -> list[float]:
        """Score many pairs, in ``workers`` processes when ``workers > 1`` (order preserved)."""
        return self.submit(pairs, sample_rate)()

    def submit(self, pairs: list[tuple[np.ndarray, np.ndarray]], sample_rate: int) -> Callable[[], list[float]]:
        """Start scoring many pairs in the worker pool (``workers > 1``; else now); the returned
        function waits for the values, in order."""
        prepared = [self.prepare(r, e, sample_rate) for r, e in pairs]
        todo = [i for i, p in enumerate(prepared) if p is not None]
        scores = [float("nan")] * len(pairs)
        if self.workers == 1 or len(todo) <= 1:
            for i in todo:
                scores[i] = self(*prepared[i], self.rate)  # type: ignore[misc]
            return lambda: scores
        pool = self._get_pool()
        futures = {i: pool.submit(_worker_score, prepared[i][0], prepared[i][1], self.rate) for i in todo}  # type: ignore[index]

        def collect() -> list[float]:
            for i, fut in futures.items():
                scores[i] = fut.result()
            return scores

        return collect

    def _get_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            # spawn: workers never inherit torch/OpenMP thread state from the parent
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                                initializer=_worker_init,
                                                initargs=(self.mode, self.search_window, self.accelerate))
        return self._pool

    def close(self) -> None:
        """Shut the worker pool down (it is also shut down at interpreter exit)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> ViSQOL:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_api"] = None
        state["_pool"] = None
        return state
