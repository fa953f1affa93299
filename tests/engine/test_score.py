"""The scorer: segment values become item values by a length-weighted mean (silent segments left
out), a failing item leaves no values and no set-metric entry, and a failing batch is retried
item by item so that only the culprit becomes an error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from benchmark.data.dataset import Item
from benchmark.engine.score import Scorer
from benchmark.engine.sources import CodecSource, FolderSource
from benchmark.metrics.base import ItemMetric, MetricCard
from benchmark.metrics.fad import FAD
from benchmark.metrics.sisdr import SISDR, si_sdr
from tests import plugins

SR = 16000


def write(path, audio: np.ndarray, rate: int = SR):
    sf.write(path, np.asarray(audio, np.float32).T, rate, subtype="FLOAT")
    return path


def item_for(path) -> Item:
    return Item(id=path.name, path=path, split="test")


def zero_mean_noise(n: int, seed: int, scale: float = 0.2) -> np.ndarray:
    x = scale * np.random.default_rng(seed).standard_normal(n)
    return x - x.mean()


def at_snr(reference: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """``reference + n`` with zero-mean ``n`` orthogonal to the (zero-mean) reference and
    ``||reference||^2 / ||n||^2 = 10^(snr/10)``: its SI-SDR is ``snr_db`` exactly (a = 1)."""
    n = zero_mean_noise(reference.size, seed)
    n -= (n @ reference) / (reference @ reference) * reference
    n *= np.sqrt((reference @ reference) / (n @ n) * 10 ** (-snr_db / 10))
    return reference + n


def score_all(scorer: Scorer, streams) -> dict[str, object]:
    for stream in streams:
        scorer.score(stream)
    return {r.item.id: r for r in scorer.finish()}


# -- segments -> item value ------------------------------------------------------------------------
def test_item_value_is_the_length_weighted_mean_of_segments_without_silent_ones(tmp_path):
    """3.3 s in segments of 1 s: [0, 1), [1, 2) silent, [2, 3.3) (the 0.3 s rest joins the last).
    Channel SNRs per segment: ch0 10 / - / 30 dB, ch1 20 / - / 10 dB: segment values 15, NaN, 20."""
    lengths = [SR, SR, int(1.3 * SR)]
    snrs = [(10.0, 20.0), None, (30.0, 10.0)]
    ref = np.zeros((2, sum(lengths)))
    est = np.zeros_like(ref)
    start = 0
    for k, (n, pair) in enumerate(zip(lengths, snrs)):
        if pair is not None:
            for ch, snr in enumerate(pair):
                s = zero_mean_noise(n, seed=10 * k + ch)
                ref[ch, start:start + n] = s
                est[ch, start:start + n] = at_snr(s, snr, seed=100 + 10 * k + ch)
        start += n
    item = item_for(write(tmp_path / "x.wav", ref))
    source = FolderSource({"x.wav": write(tmp_path / "dec.wav", est)})
    result = score_all(Scorer([SISDR()]), [source.stream(item, 1.0)])["x.wav"]

    seg_values = [15.0, 20.0]  # mean over channels, per segment
    expected = (seg_values[0] * lengths[0] + seg_values[1] * lengths[2]) / (lengths[0] + lengths[2])
    assert result.ok and result.segments == 3 and result.channels == 2
    assert result.values["si_sdr"] == pytest.approx(expected, abs=1e-3)
    assert abs(expected - np.mean(seg_values)) > 0.3  # a plain mean would fail this test
    assert result.status["si_sdr"] == "ok"
    rows = sorted(result.segment_rows, key=lambda r: r["segment"])
    assert [r["samples"] for r in rows] == lengths
    assert rows[0]["value"] == pytest.approx(15.0, abs=1e-3) and rows[2]["value"] == pytest.approx(20.0, abs=1e-3)
    assert math.isnan(rows[1]["value"])


def test_item_with_only_silent_segments_is_nan_with_the_reason(tmp_path):
    item = item_for(write(tmp_path / "quiet.wav", np.zeros((1, 2 * SR))))
    source = FolderSource({"quiet.wav": write(tmp_path / "dec.wav", np.full((1, 2 * SR), 0.1))})
    result = score_all(Scorer([SISDR()]), [source.stream(item, 1.0)])["quiet.wav"]
    assert result.ok and math.isnan(result.values["si_sdr"]) and result.status["si_sdr"] == "nan"
    assert result.messages["si_sdr"].startswith("silent reference")


# -- failures --------------------------------------------------------------------------------------
class CountingSISDR(SISDR):
    calls = 0

    def __call__(self, reference, estimate, sample_rate):
        type(self).calls += 1
        return super().__call__(reference, estimate, sample_rate)


def test_item_failing_mid_stream_has_no_values_and_no_set_metric_entry(tmp_path):
    rng = np.random.default_rng(0)
    good = [item_for(write(tmp_path / f"g{i}.wav", 0.2 * rng.standard_normal((1, int(0.6 * SR))))) for i in range(2)]
    bad = item_for(write(tmp_path / "bad.wav", 0.2 * rng.standard_normal((1, int(2.5 * SR)))))
    metrics = [CountingSISDR(), plugins.ReferenceLengthMetric(),
               FAD(backbone="tests.plugins:BandEnergyBackbone", cache=False)]
    scorer = Scorer(metrics)
    honest = CodecSource(plugins.CountingCodec(), chunk_seconds=0.25, overlap_seconds=0.05)
    # segments [0, 1), [1, 2), [2, 2.5) s; chunks of 4000 samples every 3200: after the second
    # segment 9 chunks are decoded (the first segment is complete and scored), the 11th call dies
    crashing = CodecSource(plugins.LateCrashCodec(after=10), chunk_seconds=0.25, overlap_seconds=0.05)
    CountingSISDR.calls = 0
    scorer.score(honest.stream(good[0], 1.0))
    calls_before = CountingSISDR.calls
    scorer.score(crashing.stream(bad, 1.0))
    assert CountingSISDR.calls > calls_before  # the failing item was partly scored
    scorer.score(honest.stream(good[1], 1.0))
    results = {r.item.id: r for r in scorer.finish()}

    failed = results["bad.wav"]
    assert not failed.ok and failed.error.startswith("bad.wav") and "crashed on call 11" in failed.error
    assert failed.segments == 1  # one segment had come through
    assert failed.values == {} and failed.status == {}
    assert all(results[i.id].ok and results[i.id].values["si_sdr"] == 150.0 for i in good)
    for name, acc in scorer.accumulators.items():
        assert set(acc.items) == {"g0.wav", "g1.wav"}, name
        assert not acc._open, name
    lengths = scorer.accumulators["reference_length"].compute(["g0.wav", "bad.wav", "g1.wav"])
    assert lengths.value == 2 * int(0.6 * SR)
    fad = scorer.accumulators["fad"].compute(["g0.wav", "bad.wav", "g1.wav"])
    assert fad.settings["n_estimate_clips"] == 2


class PickyMetric(ItemMetric):
    """SI-SDR that refuses estimates far quieter than their reference; its batch fails whole."""

    card = MetricCard(name="picky", unit="dB", higher_is_better=True, convention="SI-SDR, refuses quiet estimates",
                      implementation="tests.engine.test_score", version="1")
    workers = 1  # the scorer batches 2 pairs at a time

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.singles = 0

    @staticmethod
    def _check(reference, estimate):
        if np.abs(estimate).max() < 0.5 * np.abs(reference).max():
            raise ValueError("estimate too quiet")

    def __call__(self, reference, estimate, sample_rate):
        self.singles += 1
        self._check(reference, estimate)
        return si_sdr(reference, estimate)

    def batch(self, pairs, sample_rate):
        self.batches.append(len(pairs))
        for reference, estimate in pairs:
            self._check(reference, estimate)
        return [si_sdr(r, e) for r, e in pairs]


def test_failing_batch_is_retried_item_by_item_and_only_the_culprit_fails(tmp_path):
    snrs = [12.0, 18.0, None, 24.0]  # item 2: the estimate is the reference at a quarter level
    decoded, items = {}, []
    for i, snr in enumerate(snrs):
        s = zero_mean_noise(SR // 2, seed=i)
        items.append(item_for(write(tmp_path / f"a{i}.wav", s[None])))
        est = 0.25 * s if snr is None else at_snr(s, snr, seed=50 + i)
        decoded[f"a{i}.wav"] = write(tmp_path / f"dec{i}.wav", est[None])
    picky = PickyMetric()
    source = FolderSource(decoded)
    results = score_all(Scorer([picky, SISDR()]), [source.stream(it, None) for it in items])

    assert picky.batches == [2, 2]  # (a0, a1) went through; (a2, a3) failed and was retried
    assert picky.singles == 2
    assert [results[f"a{i}.wav"].status["picky"] for i in range(4)] == ["ok", "ok", "error", "ok"]
    culprit = results["a2.wav"]
    assert culprit.ok and math.isnan(culprit.values["picky"])
    assert culprit.messages["picky"].startswith("a2.wav") and "estimate too quiet" in culprit.messages["picky"]
    assert culprit.status["si_sdr"] == "ok" and culprit.values["si_sdr"] == 150.0  # scale-invariant
    for i in (0, 1, 3):  # values from the batch and from the retry alike
        assert results[f"a{i}.wav"].values["picky"] == pytest.approx(snrs[i], abs=1e-3)


class DeferredMetric(PickyMetric):
    """A pool-like metric: ``submit`` returns at once and the values come when collected; the
    log shows whether the scorer went on to the next batch before collecting the first."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []

    def submit(self, pairs, sample_rate):
        n = sum(entry.startswith("submit") for entry in self.log)
        self.log.append(f"submit {n}")

        def collect():
            self.log.append(f"collect {n}")
            return self.batch(pairs, sample_rate)
        return collect


def test_pool_batches_are_collected_later_and_a_failing_one_is_retried_item_by_item(tmp_path):
    """Scorer keeps IN_FLIGHT batches out (the pool scores while the next items are coded), the
    values equal synchronous scoring, and a batch that fails when collected is retried one by one
    so that only the culprit is an error."""
    from benchmark.engine.score import IN_FLIGHT

    snrs = [12.0, 18.0, 30.0, 6.0, None, 24.0, 9.0, 15.0]
    decoded, items = {}, []
    for i, snr in enumerate(snrs):
        s = zero_mean_noise(SR // 4, seed=i)
        items.append(item_for(write(tmp_path / f"b{i}.wav", s[None])))
        est = 0.25 * s if snr is None else at_snr(s, snr, seed=70 + i)
        decoded[f"b{i}.wav"] = write(tmp_path / f"dec{i}.wav", est[None])
    deferred = DeferredMetric()
    source = FolderSource(decoded)
    results = score_all(Scorer([deferred]), [source.stream(it, None) for it in items])
    assert IN_FLIGHT == 2
    assert deferred.log[:4] == ["submit 0", "submit 1", "submit 2", "collect 0"]  # 3 out before the 1st waits
    assert sorted(deferred.log) == sorted([f"submit {k}" for k in range(4)] + [f"collect {k}" for k in range(4)])
    for i, snr in enumerate(snrs):
        if snr is None:
            assert results[f"b{i}.wav"].status["picky"] == "error"
            assert "estimate too quiet" in results[f"b{i}.wav"].messages["picky"]
        else:
            assert results[f"b{i}.wav"].values["picky"] == pytest.approx(snr, abs=1e-3)
    assert deferred.singles == 2  # only the failed batch (b4, b5) was scored again, one by one


class LoudnessShyBackbone(plugins.BandEnergyBackbone):
    """Refuses loud clips: a set metric that cannot take one item."""

    name = "loudness-shy"

    def embed_at_rate(self, audio):
        if np.abs(audio).max() > 0.8:
            raise ValueError("clip too loud for this backbone")
        return super().embed_at_rate(audio)


def test_a_clip_a_set_metric_cannot_take_fails_that_metric_and_keeps_the_items_other_metrics(tmp_path):
    """The item keeps its SI-SDR; the set metric refuses any set holding it (naming it), because
    its value would be over another set than the other codecs'; a set without it is computed."""
    rng = np.random.default_rng(1)
    quiet = [item_for(write(tmp_path / f"q{i}.wav", 0.1 * rng.standard_normal((1, SR // 2)))) for i in range(3)]
    loud = item_for(write(tmp_path / "loud.wav", np.clip(0.95 * np.sign(rng.standard_normal((1, SR // 2))), -1, 1)))
    fad = FAD(backbone="tests.engine.test_score:LoudnessShyBackbone", cache=False)
    scorer = Scorer([SISDR(), fad])
    source = CodecSource(plugins.CountingCodec(), chunk_seconds=1.0, overlap_seconds=0.05)
    results = score_all(scorer, [source.stream(it, None) for it in [*quiet, loud]])
    assert all(r.ok and r.values["si_sdr"] == 150.0 for r in results.values())
    accumulator = scorer.accumulators["fad"]
    assert set(accumulator.failed) == {"loud.wav"} and "too loud" in accumulator.failed["loud.wav"]
    with pytest.raises(ValueError, match=r"fad: 1 of the 4 items could not be taken, e\.g\. loud\.wav.*too loud"):
        accumulator.compute([it.id for it in [*quiet, loud]])
    assert accumulator.compute([it.id for it in quiet]).settings["n_estimate_clips"] == 3
