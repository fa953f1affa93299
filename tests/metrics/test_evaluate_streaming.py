"""``python -m benchmark eval --segment-seconds``: files streamed in segments, bounded memory,
segmental values, errors per segment."""

from __future__ import annotations

import csv
import json
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from benchmark.cli import main
from benchmark.codecs.protocol import Codec, CodecInfo
from benchmark.data.audio import resample
from benchmark.evaluate import read_segments
from benchmark.metrics.signals import chord_progression, mixture
from benchmark.metrics.sisdr import si_sdr

TOY_FAD = ["--metric-option", "fad.backbone=tests.metrics.test_fad:ToyBackbone",
           "--metric-option", "fad.cache=false"]


class NaNChunkCodec(Codec):
    """Identity codec whose decoder returns NaN on its second call (one bad chunk)."""

    def __init__(self, sample_rate: int = 16000) -> None:
        super().__init__(sample_rate=sample_rate)
        self.info = CodecInfo(name="nan_chunk", sample_rate=sample_rate, latent_dim=1,
                              latent_rate_hz=float(sample_rate))
        self.calls = 0

    def encode(self, audio):
        return audio[:, None, :]

    def decode(self, latents):
        self.calls += 1
        out = latents[:, 0, :].clone()
        if self.calls == 2:
            out[:] = float("nan")
        return out


def _read(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _noisy(x, snr_db, seed):
    noise = np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)
    return x + noise * np.sqrt(np.mean(x ** 2) / np.mean(noise ** 2)) * 10 ** (-snr_db / 20)


def _eval(*args):
    return main(["eval", *args, "--quiet"])


# -- reading in segments --------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3"])
def test_segments_concatenate_to_the_file(tmp_path, ext):
    if ext == "mp3" and "MP3" not in sf.available_formats():
        pytest.skip("libsndfile without MP3")
    path = tmp_path / f"x.{ext}"
    sf.write(path, np.stack([mixture(16000, 9.5, seed=0), chord_progression(16000, 9.5, seed=1)], axis=1), 16000)
    whole = next(read_segments(path, None)).audio
    segments = list(read_segments(path, 3.0))
    # the 0.5 s remainder (< min(1 s, 3 s / 2)) joins the last segment
    assert [s.samples for s in segments] == [48000, 48000, whole.shape[1] - 96000]
    assert [s.last for s in segments] == [False, False, True] and not segments[0].only
    # MP3 too: block-wise reads bypass SoundFile.read's seek, which restarts mpg123 (glitches)
    np.testing.assert_allclose(np.concatenate([s.audio for s in segments], axis=1), whole, atol=1e-6)
    assert [s.samples for s in read_segments(path, 3.0, max_seconds=7.2)] == [48000, 48000, 19200]  # 1.2 s: alone


# -- (a) files shorter than a segment: exactly whole-file mode --------------------------------------
def test_files_shorter_than_a_segment_score_exactly_as_whole_files(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    sf.write(root / "a.wav", mixture(44100, 1.0, seed=0), 44100)
    sf.write(root / "b.flac", np.stack([chord_progression(22050, 2.4, seed=1), mixture(22050, 2.4, seed=2)], 1), 22050)
    sf.write(root / "c.ogg", mixture(32000, 1.0, seed=3), 32000)
    sf.write(root / "silent.wav", np.zeros(8000, np.float32), 16000)
    outs = {}
    for seg in ("none", "2"):  # b.flac: 2.4 s = one segment of 2 s + a 0.4 s remainder
        outs[seg] = tmp_path / f"out-{seg}"
        assert _eval("--codec", "identity", "--codec-option", "sample_rate=16000", "--audio", str(root),
                     "--metrics", "si_sdr,mel_distance,fad", "--chunk-seconds", "1.5", "--segment-seconds", seg,
                     "--out", str(outs[seg]), *TOY_FAD) == 0
    keys = ("file", "channel", "metric", "value", "status", "message", "seconds", "sample_rate")
    whole, segmented = ([tuple(r[k] for k in keys) for r in _read(outs[s] / "items.csv")] for s in ("none", "2"))
    assert whole == segmented and len(whole) == 10
    summary = {s: {r["metric"]: r for r in _read(outs[s] / "summary.csv")} for s in outs}
    for metric in ("si_sdr", "mel_distance", "fad"):
        assert summary["none"][metric]["mean"] == summary["2"][metric]["mean"]
    fad = [json.loads(summary[s]["fad"]["settings"]) for s in ("none", "2")]
    assert fad[0]["reference_hash"] == fad[1]["reference_hash"] and fad[1]["segment_seconds"] is None
    assert {r["segments"] for r in _read(outs["2"] / "items.csv")} == {"1"}
    assert json.loads(summary["2"]["si_sdr"]["settings"])["segment_seconds"] == 2.0
    assert json.loads(summary["none"]["si_sdr"]["settings"])["segment_seconds"] == "whole"


# -- (b) memory bounded by the segment, not the file ------------------------------------------------
def _peak_bytes(args):
    tracemalloc.start()
    try:
        assert _eval(*args) == 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_streaming_memory_does_not_grow_with_file_length(tmp_path):
    base = mixture(22050, 6.0, seed=0)
    for k in (1, 4):  # 24 s and 96 s, written as FLAC
        (tmp_path / f"x{k}").mkdir()
        x = np.tile(base, 4 * k) * np.linspace(0.5, 1.0, 4 * k * base.size, dtype=np.float32)
        sf.write(tmp_path / f"x{k}" / "long.flac", x, 22050)
    common = ["--codec", "identity", "--codec-option", "sample_rate=16000", "--metrics", "si_sdr"]
    _eval(*common, "--audio", str(tmp_path / "x1"), "--max-seconds", "1", "--out", str(tmp_path / "warm"))  # imports
    peaks = {(seg, k): _peak_bytes([*common, "--audio", str(tmp_path / f"x{k}"), "--segment-seconds", seg,
                                    "--chunk-seconds", "2", "--out", str(tmp_path / f"out-{seg}-{k}")])
             for seg in ("0", "2") for k in (1, 4)}
    assert peaks["2", 4] < 1.5 * peaks["2", 1]   # streaming: flat
    assert peaks["0", 4] > 3.0 * peaks["0", 1]   # whole files: grows with the file
    assert peaks["2", 4] < peaks["0", 1] / 2
    rows = _read(tmp_path / "out-2-4" / "items.csv")
    assert rows[0]["segments"] == "48" and rows[0]["status"] == "ok" and float(rows[0]["value"]) > 10


# -- (c) segmental SI-SDR -----------------------------------------------------------------------
def test_segmental_si_sdr_is_the_length_weighted_mean_over_segments(tmp_path):
    ref, dec = tmp_path / "ref", tmp_path / "dec"
    ref.mkdir()
    dec.mkdir()
    x = mixture(16000, 9.5, seed=4)
    y = np.concatenate([_noisy(x[:48000], 5, 0), _noisy(x[48000:96000], 20, 1), _noisy(x[96000:], 35, 2)])
    sf.write(ref / "t.wav", x, 16000, subtype="FLOAT")
    sf.write(dec / "t.wav", y, 16000, subtype="FLOAT")
    out = tmp_path / "out"
    assert _eval("--reference", str(ref), "--decoded", str(dec), "--metrics", "si_sdr", "--segment-seconds", "3",
                 "--out", str(out)) == 0
    bounds = [(0, 48000), (48000, 96000), (96000, 152000)]  # the 0.5 s remainder joined the last one
    by_hand = [si_sdr(x[a:b], y[a:b]) for a, b in bounds]
    expected = np.average(by_hand, weights=[b - a for a, b in bounds])
    row = _read(out / "items.csv")[0]
    assert float(row["value"]) == pytest.approx(expected, rel=1e-12)
    assert (row["segments"], row["segment_seconds"], row["seconds"]) == ("3", "3.0", "9.5")
    assert abs(expected - si_sdr(x, y)) > 3  # segmental: not the whole-file energy ratio
    segments = _read(out / "segments.csv")
    assert [(r["start_seconds"], r["end_seconds"]) for r in segments] == [("0.0", "3.0"), ("3.0", "6.0"),
                                                                           ("6.0", "9.5")]
    np.testing.assert_allclose([float(r["value"]) for r in segments], by_hand, rtol=1e-12)
    meta = json.loads((out / "eval.json").read_text())
    assert meta["segment_seconds"] == 3.0 and meta["min_segment_seconds"] == 1.0


# -- (d) decoded at another rate ------------------------------------------------------------------
def test_paired_mode_streams_a_decoded_file_at_another_rate(tmp_path):
    ref, dec = tmp_path / "ref", tmp_path / "dec"
    ref.mkdir()
    dec.mkdir()
    x = mixture(22050, 6.0, seed=5)[None]
    sf.write(ref / "t.flac", x.T, 22050)
    sf.write(dec / "t.wav", resample(_noisy(x, 25, 3), 22050, 16000).T, 16000, subtype="FLOAT")
    values = {}
    for seg in ("0", "2"):
        out = tmp_path / f"out-{seg}"
        assert _eval("--reference", str(ref), "--decoded", str(dec), "--metrics", "si_sdr,mel_distance",
                     "--segment-seconds", seg, "--out", str(out)) == 0
        values[seg] = {(r["channel"], r["metric"]): float(r["value"]) for r in _read(out / "items.csv")}
    # band-limited to 8 kHz by the decoded file's rate; segments change only the border frames
    assert values["2"]["0", "mel_distance"] == pytest.approx(values["0"]["0", "mel_distance"], rel=0.02)
    assert values["2"]["0", "si_sdr"] == pytest.approx(values["0"]["0", "si_sdr"], abs=1.0)


def test_decoded_audio_does_not_depend_on_the_segment_length(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    sf.write(root / "t.flac", np.stack([mixture(22050, 7.3, seed=7), mixture(22050, 7.3, seed=8)], 1), 22050)
    decoded = {}
    for seg in ("0", "2"):
        out = tmp_path / f"out-{seg}"
        assert _eval("--codec", "identity", "--codec-option", "sample_rate=16000", "--audio", str(root),
                     "--metrics", "si_sdr", "--chunk-seconds", "1.5", "--segment-seconds", seg, "--save-decoded",
                     "--out", str(out)) == 0
        decoded[seg] = sf.read(out / "decoded" / "t.wav", dtype="float32")[0]
    # streamed resampling (22.05 -> 16 -> 22.05 kHz) and codec chunks are those of whole files
    np.testing.assert_array_equal(decoded["2"], decoded["0"])


# -- (e) one failing segment ----------------------------------------------------------------------
def test_a_failing_codec_chunk_is_reported_with_its_time_range(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    sf.write(root / "long.wav", mixture(16000, 8.0, seed=9), 16000)
    sf.write(root / "short.wav", mixture(16000, 1.5, seed=10), 16000)
    out = tmp_path / "out"
    assert _eval("--codec", "tests.metrics.test_evaluate_streaming:NaNChunkCodec", "--audio", str(root),
                 "--metrics", "si_sdr,fad", "--segment-seconds", "2", "--chunk-seconds", "2", "--out", str(out),
                 *TOY_FAD) == 1
    rows = _read(out / "items.csv")
    errors = [r for r in rows if r["status"] == "error"]
    assert len(errors) == 1 and (errors[0]["file"], errors[0]["metric"]) == ("long.wav", "*")
    assert errors[0]["message"].startswith("long.wav [2.00-4.00 s]: CodecError: decoded audio has 32000 NaN")
    long_row = next(r for r in rows if r["file"] == "long.wav" and r["metric"] == "si_sdr")
    assert long_row["status"] == "partial" and long_row["segments"] == "3" and float(long_row["value"]) > 100
    assert "1 segments not scored" in long_row["message"]
    assert [r["segment"] for r in _read(out / "segments.csv") if r["file"] == "long.wav"] == ["0", "2", "3"]
    summary = {r["metric"]: r for r in _read(out / "summary.csv")}
    assert (summary["si_sdr"]["n"], summary["si_sdr"]["n_error"]) == ("1", "1")  # partial files are left out
    fad = json.loads(summary["fad"]["settings"])
    assert fad["n_segments"] == 4 and fad["segment_seconds"] == 2.0  # the 3 scored + short.wav


def test_a_decoded_file_that_ends_early_stops_with_a_named_error(tmp_path):
    ref, dec = tmp_path / "ref", tmp_path / "dec"
    ref.mkdir()
    dec.mkdir()
    x = mixture(16000, 8.0, seed=11)
    sf.write(ref / "t.wav", x, 16000)
    sf.write(dec / "t.wav", x[:40000], 16000)  # 2.5 s
    out = tmp_path / "out"
    assert _eval("--reference", str(ref), "--decoded", str(dec), "--metrics", "si_sdr", "--segment-seconds", "2",
                 "--out", str(out)) == 1
    rows = _read(out / "items.csv")
    stop = next(r for r in rows if r["metric"] == "*")
    assert "ends before 4.00 s" in stop["message"] and "dec/t.wav" in stop["message"]
    segment_errors = [r for r in rows if r["metric"] == "si_sdr" and r["status"] == "error"]
    assert len(segment_errors) == 1 and "t [2.00-4.00 s] [channel 0]" in segment_errors[0]["message"]
    scored = next(r for r in rows if r["metric"] == "si_sdr" and r["status"] != "error")
    assert scored["status"] == "partial" and scored["segments"] == "1"
