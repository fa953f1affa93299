"""``python -m benchmark eval``: a thin front end over the engine, run on generated audio.

Codec mode and paired mode write the run schema (``results.csv``, ``items.csv``,
``segments.csv``, ``errors.csv``, ``eval.json``, ``report/``); bad files and diverging codecs
are error rows naming the file (exit status 1), the rest is scored; long files are scored in
segments; scores are cached; usage errors exit 2. Numbers are closed forms: the identity codec
hits the 150 dB SI-SDR cap, white noise at 20 dB SNR gives the SI-SDR computed here from the
signals themselves.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from benchmark.cli import main
from benchmark.codecs.protocol import Codec, CodecInfo
from benchmark.data.audio import resample
from benchmark.engine.segments import read_segments
from benchmark.evaluate import format_table, pair_folders
from benchmark.metrics.signals import chord_progression, mixture
from tests import plugins
from tests.metrics.test_fad import ToyBackbone

SR = 16000
TOY_FAD = ["--fad-backbone", "tests.metrics.test_fad:ToyBackbone"]
# 1 s segments, 0.5 s codec calls cross-faded over 0.1 s: every code path on short files
SMALL = ["--segment-seconds", "1", "--chunk-seconds", "0.5", "--overlap-seconds", "0.1"]
HAS_MP3 = "MP3" in sf.available_formats()


@pytest.fixture(autouse=True)
def private_default_cache(tmp_path, monkeypatch, one_torch_thread):
    """The default cache folder ($BENCHMARK_CACHE) of every test is its own, empty one (and
    torch uses one thread: fastest for these short files)."""
    monkeypatch.setenv("BENCHMARK_CACHE", str(tmp_path / "default-cache"))
    return tmp_path / "default-cache"


def _eval(*args: str) -> int:
    return main(["eval", *args, "--quiet"])


def _read(path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _by_item(out) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["item"], r["metric"]): r for r in _read(out / "items.csv")}


def _summaries(out) -> dict[str, dict[str, str]]:
    return {r["metric"]: r for r in _read(out / "results.csv") if r["stage"] == "reconstruction"}


def _files(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def si_sdr_by_hand(reference: np.ndarray, estimate: np.ndarray) -> float:
    """SI-SDR (dB) written out from its definition (zero-mean, Le Roux 2019), independently of
    ``benchmark.metrics.sisdr``."""
    s = reference.astype(np.float64) - reference.mean(dtype=np.float64)
    e = estimate.astype(np.float64) - estimate.mean(dtype=np.float64)
    target = (s @ e) / (s @ s) * s
    return float(10 * np.log10((target @ target) / ((e - target) @ (e - target))))


def white_noise(x: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """White noise at ``snr_db`` below the power of ``x``."""
    noise = np.random.default_rng(seed).standard_normal(x.shape)
    return (noise * np.sqrt(np.mean(np.square(x, dtype=np.float64)) / np.mean(noise ** 2))
            * 10 ** (-snr_db / 20)).astype(np.float32)


def sine(hz: float, seconds: float, sample_rate: int = SR, peak: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (peak * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture
def folder(tmp_path):
    """Good files (16 / 44.1 kHz, WAV / FLAC / MP3, mono / stereo, one of 2.5 s, one silent) and
    bad ones (corrupt, empty, a broken symbolic link); a text file that is not audio."""
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    sf.write(root / "a.wav", mixture(SR, 1.0, seed=0), SR)
    sf.write(root / "sub" / "b.flac", np.stack([chord_progression(44100, 1.0, seed=1),
                                                mixture(44100, 1.0, seed=2)], axis=1), 44100)
    if HAS_MP3:
        sf.write(root / "c.mp3", mixture(44100, 1.0, seed=3), 44100)
    sf.write(root / "long.wav", mixture(SR, 2.5, seed=4), SR)
    sf.write(root / "silent.wav", np.zeros(SR // 2, np.float32), SR)
    (root / "corrupt.wav").write_bytes(b"RIFF....WAVEjunk")
    (root / "empty.flac").write_bytes(b"")
    os.symlink(tmp_path / "gone.wav", root / "dangling.wav")
    (root / "notes.txt").write_text("not audio")
    return root


# -- codec mode -------------------------------------------------------------------------------------
def test_codec_mode_scores_every_file_and_names_the_bad_ones(folder, tmp_path, capsys):
    out = tmp_path / "out"
    rc = _eval("--codec", "identity", "--codec-option", f"sample_rate={SR}", "--audio", str(folder),
               "--metrics", "si_sdr,mel_distance,fad", *TOY_FAD, *SMALL, "--out", str(out))
    assert rc == 1  # some files failed, the rest completed
    items = _by_item(out)
    good = {"a.wav", "sub/b.flac", "long.wav"} | ({"c.mp3"} if HAS_MP3 else set())
    bad = {"corrupt.wav", "empty.flac", "dangling.wav"}
    assert {item for item, _ in items} == good | bad | {"silent.wav"}  # notes.txt is not audio
    # identity at the file's own rate: exact, at the SI-SDR cap (also through segments and chunks)
    assert float(items["a.wav", "si_sdr"]["value"]) == 150.0
    assert float(items["long.wav", "si_sdr"]["value"]) == 150.0
    # 44.1 kHz stereo through a 16 kHz codec: what is above 8 kHz is lost; one row, channels averaged
    stereo = items["sub/b.flac", "si_sdr"]
    assert 10 < float(stereo["value"]) < 100
    assert [stereo[c] for c in ("status", "sample_rate", "seconds", "segments")] == ["ok", "44100", "1.0", "1"]
    if HAS_MP3:
        assert 5 < float(items["c.mp3", "si_sdr"]["value"]) < 100
    silent = items["silent.wav", "si_sdr"]
    assert silent["status"] == "nan" and "silent reference" in silent["note"]

    errors = {r["item"]: r for r in _read(out / "errors.csv")}
    assert set(errors) == bad
    for name, row in errors.items():
        assert row["stage"] == "reconstruct" and row["path"] == str(folder / name) and name in row["error"]
        assert items[name, "*"]["status"] == "error" and name in items[name, "*"]["note"]
    assert "cannot decode audio" in errors["corrupt.wav"]["error"]
    assert "cannot decode audio" in errors["empty.flac"]["error"]
    assert "broken symbolic link" in errors["dangling.wav"]["error"]

    # the 2.5 s file: three segments (1 s, 1 s, 0.5 s), its value their length-weighted mean
    segments = [r for r in _read(out / "segments.csv") if r["metric"] == "mel_distance"]
    assert {r["item"] for r in _read(out / "segments.csv")} == {"long.wav"}
    assert [(r["segment"], r["samples"]) for r in segments] == [("0", "16000"), ("1", "16000"), ("2", "8000")]
    weighted = np.average([float(r["value"]) for r in segments], weights=[int(r["samples"]) for r in segments])
    assert float(items["long.wav", "mel_distance"]["value"]) == pytest.approx(weighted, rel=1e-12)
    assert items["long.wav", "mel_distance"]["segments"] == "3"

    summary = _summaries(out)
    sdr = summary["si_sdr"]
    assert (sdr["n"], sdr["n_failed"]) == (str(len(good)), "3")  # the silent file is undefined, not failed
    assert (sdr["unit"], sdr["higher_is_better"]) == ("dB", "True")
    assert float(sdr["value"]) == pytest.approx(np.mean([float(items[i, "si_sdr"]["value"]) for i in good]))
    assert float(sdr["ci_low"]) <= float(sdr["value"]) <= float(sdr["ci_high"])
    settings = json.loads(sdr["settings"])
    assert (settings["segment_seconds"], settings["chunk_seconds"], settings["n_undefined"]) == (1.0, 0.5, 1)
    fad = json.loads(summary["fad"]["settings"])
    assert fad["backbone"] == "toy" and fad["n_estimate_clips"] == len(good) and summary["fad"]["n_failed"] == "3"
    assert {i for i, m in items if m == "fad_contribution"} == good
    costs = {r["metric"] for r in _read(out / "results.csv") if r["stage"] == "cost"}
    assert {"compression_ratio", "decode_speed", "padded_seconds"} <= costs

    meta = json.loads((out / "eval.json").read_text())
    assert meta["codec"]["name"] == "identity" and meta["failed_files"] == sorted(bad)
    assert meta["files"] == len(good | bad) + 1 and meta["source"]["chunk_seconds"] == 0.5
    assert (out / "report" / "report.md").exists()
    printed = capsys.readouterr().out
    assert "si_sdr" in printed and "mel_distance" in printed and "fad" in printed


def test_a_diverging_codec_is_an_error_row_naming_the_file(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    sf.write(root / "loud.wav", mixture(SR, 1.0, seed=0, peak=0.8), SR)
    sf.write(root / "quiet.wav", mixture(SR, 1.0, seed=1, peak=0.2), SR)
    out = tmp_path / "out"
    assert _eval("--codec", "tests.plugins:QuietNaNCodec", "--codec-option", "level=0.4", "--audio", str(root),
                 "--metrics", "si_sdr", "--out", str(out)) == 1
    errors = _read(out / "errors.csv")
    assert [r["item"] for r in errors] == ["quiet.wav"]
    assert errors[0]["error"].startswith("CodecError: quiet.wav: decoded audio has 16000 NaN/inf samples")
    items = _by_item(out)
    assert items["quiet.wav", "*"]["status"] == "error" and float(items["loud.wav", "si_sdr"]["value"]) == 150.0
    summary = _summaries(out)["si_sdr"]
    assert (summary["n"], summary["n_failed"], summary["value"]) == ("1", "1", "150.0")  # a failure never helps


class NaNChunkCodec(Codec):
    """Identity codec whose decoder returns NaN on its second call (one bad chunk)."""

    def __init__(self, sample_rate: int = SR) -> None:
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


def test_a_failing_codec_chunk_is_named_with_its_time_range(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    sf.write(root / "long.wav", mixture(SR, 3.0, seed=9), SR)
    sf.write(root / "short.wav", mixture(SR, 0.8, seed=10), SR)
    out = tmp_path / "out"
    assert _eval("--codec", "tests.test_evaluate:NaNChunkCodec", "--audio", str(root), "--metrics", "si_sdr",
                 "--segment-seconds", "1", "--chunk-seconds", "1", "--overlap-seconds", "0", "--out", str(out)) == 1
    errors = _read(out / "errors.csv")
    assert [r["item"] for r in errors] == ["long.wav"]
    assert "long.wav [1.00-2.00 s at 16000 Hz]: decoded audio has 16000 NaN/inf samples" in errors[0]["error"]
    items = _by_item(out)
    assert set(items) == {("long.wav", "*"), ("short.wav", "si_sdr")}  # no partial values of a failed item
    assert float(items["short.wav", "si_sdr"]["value"]) == 150.0


# -- paired mode ------------------------------------------------------------------------------------
def test_paired_mode_matches_files_by_name_and_scores_noise_at_its_snr(tmp_path, capsys):
    ref, dec = tmp_path / "ref", tmp_path / "dec"
    for folder in (ref / "sub", dec / "sub"):
        folder.mkdir(parents=True)
    # white noise at 20 dB SNR on a sine, written as float WAV: the file holds exactly these samples
    x = sine(440, 1.0)
    y = x + white_noise(x, 20, seed=0)
    sf.write(ref / "sine.wav", x, SR, subtype="FLOAT")
    sf.write(dec / "sine.wav", y, SR, subtype="FLOAT")
    # decoded at 24 kHz, another format, in a sub-folder: matched by relative path without extension
    x1 = sine(330, 1.0)
    y1 = x1 + white_noise(x1, 20, seed=1)
    sf.write(ref / "sub" / "resampled.wav", x1, SR, subtype="FLOAT")
    sf.write(dec / "sub" / "resampled.flac", resample(y1[None], SR, 24000)[0], 24000, subtype="PCM_24")
    # a mono estimate of a stereo reference is compared with every channel (SI-SDR is scale invariant)
    x2 = sine(550, 1.0)
    y2 = x2 + white_noise(x2, 20, seed=2)
    sf.write(ref / "stereo.wav", np.stack([x2, 0.5 * x2], axis=1), SR, subtype="FLOAT")
    sf.write(dec / "stereo.wav", y2, SR, subtype="FLOAT")
    sf.write(ref / "missing.wav", sine(660, 1.0), SR)            # no decoded file
    sf.write(dec / "extra.wav", np.zeros(100, np.float32), SR)   # no reference

    items, decoded, notes = pair_folders(ref, dec)
    assert [it.id for it in items] == ["missing.wav", "sine.wav", "stereo.wav", "sub/resampled.wav"]
    assert {k: v.name if v else None for k, v in decoded.items()} == {
        "missing.wav": None, "sine.wav": "sine.wav", "stereo.wav": "stereo.wav", "sub/resampled.wav": "resampled.flac"}
    assert any("extra.wav" in n and "no reference" in n for n in notes)

    out = tmp_path / "out"
    assert _eval("--reference", str(ref), "--decoded", str(dec), "--metrics", "si_sdr", "--out", str(out)) == 1
    assert "extra.wav" in capsys.readouterr().err
    rows = _by_item(out)
    expected = si_sdr_by_hand(x, y)
    assert abs(expected - 20.0) < 0.1  # white noise is (nearly) orthogonal to the sine: SI-SDR = SNR
    assert float(rows["sine.wav", "si_sdr"]["value"]) == pytest.approx(expected, abs=1e-9)
    # decoded at 24 kHz: resampled (soxr) to the reference's 16 kHz before scoring; the round trip
    # filters a little of the noise right below 8 kHz away, the sine not at all
    back = resample(sf.read(dec / "sub" / "resampled.flac", dtype="float32")[0][None], 24000, SR)[0]
    resampled = float(rows["sub/resampled.wav", "si_sdr"]["value"])
    assert resampled == pytest.approx(si_sdr_by_hand(x1, back), abs=1e-6)
    assert 0 < resampled - si_sdr_by_hand(x1, y1) < 0.5
    assert rows["sub/resampled.wav", "si_sdr"]["sample_rate"] == "16000"
    stereo = rows["stereo.wav", "si_sdr"]
    assert float(stereo["value"]) == pytest.approx(si_sdr_by_hand(x2, y2), abs=1e-9)
    assert "mono estimate compared with every reference channel" in stereo["note"]
    missing = rows["missing.wav", "*"]
    assert missing["status"] == "error" and "no decoded file" in missing["note"] and "missing.wav" in missing["note"]
    assert [r["item"] for r in _read(out / "errors.csv")] == ["missing.wav"]
    summary = _summaries(out)["si_sdr"]
    assert (summary["n"], summary["n_failed"], summary["codec"]) == ("3", "1", "decoded")
    assert json.loads((out / "eval.json").read_text())["codec"] is None


def test_paired_mode_applies_the_alignment_policy(tmp_path):
    """Missing samples are silence, extra ones are cut, less than half the reference is an error."""
    ref, dec = tmp_path / "ref", tmp_path / "dec"
    ref.mkdir()
    dec.mkdir()
    x = mixture(SR, 2.0, seed=3)
    for name in ("short", "long", "stub"):
        sf.write(ref / f"{name}.wav", x, SR, subtype="FLOAT")
    sf.write(dec / "short.wav", x[:-4000], SR, subtype="FLOAT")                       # 0.25 s missing
    sf.write(dec / "long.wav", np.concatenate([x, x[:1600]]), SR, subtype="FLOAT")     # 0.1 s extra
    sf.write(dec / "stub.wav", x[:12000], SR, subtype="FLOAT")                         # 37.5 %
    out = tmp_path / "out"
    assert _eval("--reference", str(ref), "--decoded", str(dec), "--metrics", "si_sdr", "--out", str(out)) == 1
    rows = _by_item(out)
    short = rows["short.wav", "si_sdr"]
    padded = np.concatenate([x[:-4000], np.zeros(4000, np.float32)])
    assert float(short["value"]) == pytest.approx(si_sdr_by_hand(x, padded), abs=1e-9)
    assert short["padded_samples"] == "4000" and "zero-padded" in short["note"]
    extra = rows["long.wav", "si_sdr"]
    assert (extra["value"], extra["cut_samples"], extra["padded_samples"]) == ("150.0", "1600", "0")
    stub = rows["stub.wav", "*"]
    assert stub["status"] == "error" and "stub.wav" in stub["note"] and "< 50%" in stub["note"]


# -- segments -------------------------------------------------------------------------------------
def test_segmental_si_sdr_is_the_length_weighted_mean_of_the_segments(tmp_path):
    ref, dec = tmp_path / "ref", tmp_path / "dec"
    ref.mkdir()
    dec.mkdir()
    x = mixture(SR, 2.5, seed=4)
    bounds = [(0, 16000), (16000, 32000), (32000, 40000)]  # the 0.5 s remainder is a segment of its own
    y = np.concatenate([x[a:b] + white_noise(x[a:b], snr, seed=i) for i, ((a, b), snr) in
                        enumerate(zip(bounds, (5, 20, 35)))])
    sf.write(ref / "long.wav", x, SR, subtype="FLOAT")
    sf.write(dec / "long.wav", y, SR, subtype="FLOAT")
    z = mixture(SR, 1.4, seed=5)  # at most 1 s + min(1 s, 0.5 s): one segment, as a whole file
    sf.write(ref / "short.wav", z, SR, subtype="FLOAT")
    sf.write(dec / "short.wav", z + white_noise(z, 10, seed=6), SR, subtype="FLOAT")
    outs = {seg: tmp_path / f"out-{seg}" for seg in ("1", "0")}
    for seg, out in outs.items():
        assert _eval("--reference", str(ref), "--decoded", str(dec), "--metrics", "si_sdr", "--segment-seconds", seg,
                     "--out", str(out)) == 0
    by_hand = [si_sdr_by_hand(x[a:b], y[a:b]) for a, b in bounds]
    segmental = np.average(by_hand, weights=[b - a for a, b in bounds])
    rows = {seg: _by_item(out) for seg, out in outs.items()}
    long = rows["1"]["long.wav", "si_sdr"]
    assert float(long["value"]) == pytest.approx(segmental, rel=1e-12)
    assert (long["segments"], long["seconds"]) == ("3", "2.5")
    segments = _read(outs["1"] / "segments.csv")
    assert [(r["item"], r["segment"], r["samples"]) for r in segments] == [
        ("long.wav", "0", "16000"), ("long.wav", "1", "16000"), ("long.wav", "2", "8000")]
    np.testing.assert_allclose([float(r["value"]) for r in segments], by_hand, rtol=1e-12)
    # --segment-seconds 0: whole files, the whole-file energy ratio (not the segmental mean)
    whole = rows["0"]["long.wav", "si_sdr"]
    assert float(whole["value"]) == pytest.approx(si_sdr_by_hand(x, y), rel=1e-12) and whole["segments"] == "1"
    assert abs(segmental - si_sdr_by_hand(x, y)) > 3
    assert not (outs["0"] / "segments.csv").exists()
    # a file of one segment gets exactly its whole-file value
    assert rows["1"]["short.wav", "si_sdr"]["value"] == rows["0"]["short.wav", "si_sdr"]["value"]
    assert rows["1"]["short.wav", "si_sdr"]["segments"] == "1"
    settings = {seg: json.loads(_summaries(out)["si_sdr"]["settings"]) for seg, out in outs.items()}
    assert (settings["1"]["segment_seconds"], settings["0"]["segment_seconds"]) == (1.0, "whole")


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3"])
def test_read_segments_reads_block_by_block_and_concatenates_to_the_file(tmp_path, ext):
    if ext == "mp3" and not HAS_MP3:
        pytest.skip("libsndfile without MP3")
    path = tmp_path / f"x.{ext}"
    sf.write(path, np.stack([mixture(SR, 5.5, seed=0), chord_progression(SR, 5.5, seed=1)], axis=1), SR)
    whole = next(read_segments(path, None)).audio
    notes: list[str] = []
    segments = list(read_segments(path, 2.0, notes=notes))
    assert notes == []  # MP3 too is read block by block, not whole
    assert [s.samples for s in segments] == [32000, 32000, whole.shape[1] - 64000]
    assert [s.last for s in segments] == [False, False, True] and not segments[0].only
    # block-wise MP3 reads bypass SoundFile.read's seek, which restarts mpg123 (a glitch per block)
    np.testing.assert_allclose(np.concatenate([s.audio for s in segments], axis=1), whole, atol=1e-6)
    assert [s.samples for s in read_segments(path, 2.0, max_seconds=5.2)] == [32000, 32000, 19200]  # 1.2 s: alone
    assert [s.samples for s in read_segments(path, 2.0, max_seconds=4.7)] == [32000, 43200]  # 0.7 s: joins


# -- cache ----------------------------------------------------------------------------------------
def test_a_second_call_with_the_same_cache_recomputes_nothing(tmp_path, private_default_cache):
    root = tmp_path / "in"
    root.mkdir()
    sf.write(root / "a.wav", mixture(SR, 1.0, seed=0), SR)
    sf.write(root / "long.wav", mixture(SR, 2.5, seed=1), SR)
    codec = plugins.CountingCodec
    codec.encode_calls = codec.decode_calls = ToyBackbone.calls = 0
    common = ["--codec", "tests.plugins:CountingCodec", "--codec-option", "gain=0.5", "--audio", str(root),
              "--metrics", "si_sdr,mel_distance,fad", *TOY_FAD, *SMALL]

    def calls() -> tuple[int, int, int]:
        return codec.encode_calls, codec.decode_calls, ToyBackbone.calls

    def values(out) -> tuple[list, list]:
        items = [(r["item"], r["metric"], r["value"], r["status"]) for r in _read(out / "items.csv")]
        return items, [(r["metric"], r["value"], r["n"]) for r in _read(out / "results.csv")
                       if r["stage"] == "reconstruction"]

    cache = tmp_path / "cache"
    assert _eval(*common, "--cache", str(cache), "--out", str(tmp_path / "first")) == 0
    first = calls()
    assert min(first) > 0 and _files(cache)
    assert _eval(*common, "--cache", str(cache), "--out", str(tmp_path / "second")) == 0
    assert calls() == first  # no codec call, no embedding: everything came from the cache
    assert values(tmp_path / "second") == values(tmp_path / "first")

    # --no-cache: everything recomputed, nothing stored, neither in --cache nor in the default folder
    unused = tmp_path / "unused"
    assert _eval(*common, "--no-cache", "--cache", str(unused), "--out", str(tmp_path / "third")) == 0
    assert calls()[0] == 2 * first[0] and calls()[2] == 2 * first[2]
    assert _files(unused) == [] and _files(private_default_cache) == []
    assert values(tmp_path / "third") == values(tmp_path / "first")


# -- usage errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--codec", "identity", "--audio", "{audio}", "--reference", "{audio}", "--decoded", "{audio}"],
     "give either --codec NAME --audio DIR (codec mode) or --reference DIR --decoded DIR (paired mode)"),
    ([], "give either --codec NAME --audio DIR"),
    (["--codec", "identity", "--audio", "{audio}", "--metrics", ""], "--metrics is empty"),
    (["--codec", "identity", "--audio", "{audio}", "--metrics", " , "], "--metrics is empty"),
    (["--codec", "identity"], "codec mode needs both --codec NAME and --audio DIR"),
    (["--reference", "{audio}"], "paired mode needs both --reference DIR and --decoded DIR"),
    (["--codec", "identity", "--audio", "{empty}"], "no audio files found under"),
    (["--codec", "identity", "--audio", "{audio}", "--metrics", "pesq"], "unknown metric 'pesq'"),
])
def test_usage_errors_exit_2_with_a_clear_message(tmp_path, capsys, args, message):
    audio, empty = tmp_path / "audio", tmp_path / "empty"
    audio.mkdir()
    empty.mkdir()
    sf.write(audio / "a.wav", mixture(SR, 0.5, seed=0), SR)
    out = tmp_path / "out"
    assert _eval(*[a.format(audio=audio, empty=empty) for a in args], "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not out.exists()


def test_format_table():
    rows = [{"stage": "reconstruction", "metric": "si_sdr", "value": 3.14159, "ci_low": 2.5, "ci_high": 3.75, "n": 4,
             "n_failed": 1, "unit": "dB", "higher_is_better": True},
            {"stage": "reconstruction", "metric": "fad", "value": float("nan"), "ci_low": None, "n": 0,
             "n_failed": 4, "unit": "squared embedding distance", "higher_is_better": False},
            {"stage": "cost", "metric": "parameters", "value": 0.0, "unit": "count", "higher_is_better": None}]
    lines = format_table(rows).splitlines()
    assert len(lines) == 4 and "parameters" not in format_table(rows)
    assert lines[2].split()[:6] == ["si_sdr", "3.142", "[2.5,", "3.75]", "4", "1"] and "(higher better)" in lines[2]
    assert lines[3].split()[:4] == ["fad", "n/a", "0", "4"] and "(lower better)" in lines[3]


# -- FAD with local backbone checkpoints ------------------------------------------------------------
def _paired_fad(tmp_path, backbone: str, checkpoint, n_files: int) -> tuple[dict, dict]:
    """``eval`` paired mode, FAD only, on ``n_files`` 2 s clips (decoded = half level): the
    summary row and its settings."""
    ref, dec = tmp_path / "ref", tmp_path / "dec"
    ref.mkdir()
    dec.mkdir()
    for i in range(n_files):
        x = mixture(SR, 2.0, seed=i)
        sf.write(ref / f"t{i}.wav", x, SR)
        sf.write(dec / f"t{i}.wav", 0.5 * x, SR)
    out = tmp_path / "out"
    assert _eval("--reference", str(ref), "--decoded", str(dec), "--metrics", "fad", "--fad-backbone", backbone,
                 "--fad-checkpoint", str(checkpoint), "--cache", str(tmp_path / "cache"), "--out", str(out)) == 0
    summary = _summaries(out)["fad"]
    settings = json.loads(summary["settings"])
    assert settings["reference_set"] == str(ref) and settings["n_estimate_clips"] == n_files
    return summary, settings


def test_fad_with_a_local_vggish_checkpoint(tmp_path):
    from tests.embeddings.test_vggish import _torchvggish_state

    ckpt = tmp_path / "vggish-10086976.pth"
    torch.save(_torchvggish_state(), ckpt)
    summary, settings = _paired_fad(tmp_path, "vggish", ckpt, n_files=3)
    assert settings["backbone"] == "vggish"
    assert settings["n_reference_embeddings"] == 6 and float(summary["value"]) > 0

