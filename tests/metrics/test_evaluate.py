"""``python -m benchmark eval``: codec mode, paired mode, chunking, per-file failures, outputs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from benchmark.cli import main
from benchmark.codecs.protocol import Codec, CodecInfo
from benchmark.evaluate import codec_round_trip, format_table, pair_folders
from benchmark.metrics.signals import chord_progression, mixture

TOY_FAD = ["--metric-option", "fad.backbone=tests.metrics.test_fad:ToyBackbone",
           "--metric-option", "fad.cache=false"]


class CroppingCodec(Codec):
    """Identity codec whose decoder drops the samples past the last multiple of ``block``
    (as Music2Latent crops to 4096 k + 1536)."""

    def __init__(self, sample_rate: int = 16000, block: int = 1000) -> None:
        super().__init__(sample_rate=sample_rate, block=block)
        self.block = block
        self.info = CodecInfo(name="cropping", sample_rate=sample_rate, latent_dim=1, latent_rate_hz=float(sample_rate))

    def encode(self, audio):
        return audio[:, None, :]

    def decode(self, latents):
        n = latents.shape[-1] // self.block * self.block
        return latents[:, 0, :n]


def _read(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    sf.write(root / "a.wav", mixture(44100, 2.0, seed=0), 44100)
    stereo = np.stack([chord_progression(22050, 2.0, seed=1), mixture(22050, 2.0, seed=2)], axis=1)
    sf.write(root / "sub" / "b.flac", stereo, 22050)
    sf.write(root / "c.ogg", mixture(32000, 2.0, seed=3), 32000)
    sf.write(root / "silent.wav", np.zeros(16000, np.float32), 16000)
    nan = mixture(16000, 1.0, seed=4)
    nan[100] = np.nan
    sf.write(root / "nan.wav", nan, 16000, subtype="FLOAT")
    (root / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    (root / "notes.txt").write_text("not audio")
    return root


def test_codec_mode_end_to_end(folder, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["eval", "--codec", "identity", "--codec-option", "sample_rate=16000", "--audio", str(folder),
               "--metrics", "si_sdr,mel_distance,fad", "--out", str(out), "--quiet", *TOY_FAD])
    assert rc == 1  # some files failed, the rest completed
    rows = _read(out / "items.csv")
    by_file = {}
    for r in rows:
        by_file.setdefault(r["file"], []).append(r)
    assert set(by_file) == {"a.wav", "sub/b.flac", "c.ogg", "silent.wav", "nan.wav", "broken.wav"}
    # stereo: both channels scored separately
    assert {r["channel"] for r in by_file["sub/b.flac"] if r["metric"] == "si_sdr"} == {"0", "1"}
    # identity codec through 16 kHz: in-band content survives -> positive SI-SDR; the 44.1 kHz
    # file loses its > 8 kHz content
    sisdr = {r["file"]: float(r["value"]) for r in rows if r["metric"] == "si_sdr" and r["channel"] == "0"}
    assert sisdr["sub/b.flac"] > 20 and sisdr["a.wav"] > 5
    broken = by_file["broken.wav"][0]
    assert broken["status"] == "error" and "broken.wav" in broken["message"]
    assert all(r["status"] == "error" and "NaN" in r["message"] for r in by_file["nan.wav"])
    assert all(r["status"] == "nan" and "silent reference" in r["message"] for r in by_file["silent.wav"])
    summary = {r["metric"]: r for r in _read(out / "summary.csv")}
    assert (summary["si_sdr"]["n"], summary["si_sdr"]["n_nan"], summary["si_sdr"]["n_error"]) == ("3", "1", "2")
    assert summary["si_sdr"]["unit"] == "dB" and summary["si_sdr"]["higher_is_better"] == "True"
    assert summary["fad"]["n_error"] == "2"  # broken.wav, nan.wav (silent.wav is excluded, not failed)
    settings = json.loads(summary["fad"]["settings"])
    assert settings["n_estimate_clips"] == 3 and settings["backbone"] == "toy"
    assert len(_read(out / "fad_contributions.csv")) == 3
    meta = json.loads((out / "eval.json").read_text())
    assert meta["codec"]["name"] == "identity" and set(meta["failed_files"]) == {"broken.wav", "nan.wav"}
    assert meta["metrics"]["si_sdr"]["convention"].startswith("zero-mean")
    printed = capsys.readouterr().out
    assert "si_sdr" in printed and "mel_distance" in printed


def test_paired_mode(tmp_path):
    ref, dec = tmp_path / "ref", tmp_path / "dec"
    ref.mkdir()
    dec.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        x = mixture(16000, 1.5, seed=i)
        sf.write(ref / f"t{i}.wav", x, 16000)
        noise = rng.standard_normal(x.size).astype(np.float32)
        noise *= np.sqrt(np.mean(x ** 2) / np.mean(noise ** 2)) * 10 ** (-20 / 20)  # 20 dB SNR
        if i < 2:  # t2 has no decoded file; t1's is at another rate and format
            y = x + noise
            if i == 1:
                from benchmark.data.audio import resample

                sf.write(dec / "t1.flac", resample(y[None], 16000, 24000)[0], 24000)
            else:
                sf.write(dec / "t0.wav", y, 16000, subtype="FLOAT")
    sf.write(dec / "extra.wav", np.zeros(100, np.float32), 16000)
    pairs, notes = pair_folders(ref, dec)
    assert [(k, d.name if d else None) for k, _, d in pairs] == [("t0", "t0.wav"), ("t1", "t1.flac"), ("t2", None)]
    assert any("extra.wav" in n for n in notes)
    out = tmp_path / "out"
    rc = main(["eval", "--reference", str(ref), "--decoded", str(dec), "--metrics", "si_sdr,visqol",
               "--workers", "1", "--out", str(out), "--quiet"])
    assert rc == 1
    rows = {(r["file"], r["metric"]): r for r in _read(out / "items.csv")}
    assert float(rows[("t0", "si_sdr")]["value"]) == pytest.approx(20.0, abs=0.05)
    assert float(rows[("t1", "si_sdr")]["value"]) == pytest.approx(20.0, abs=0.5)  # resampled back
    assert 1.0 < float(rows[("t0", "visqol")]["value"]) < 4.8
    assert rows[("t2", "*")]["status"] == "error" and "no decoded file" in rows[("t2", "*")]["message"]


def test_chunked_round_trip_stays_aligned():
    codec = CroppingCodec(block=1000)
    x = mixture(16000, 2.3, seed=5)[None]              # 36800 samples
    y, filled, short = codec_round_trip(codec, x, 16000, chunk_seconds=0.5)  # 8000-sample chunks
    # chunks of 8000 come back whole; the last (4800) is cropped to 4000 -> 800 short
    assert (filled, short) == (0, 800) and y.shape == (1, 36000)
    np.testing.assert_allclose(y[0], x[0, :36000], atol=1e-6)
    codec = CroppingCodec(block=3000)                   # every chunk comes back 2000 short
    y, filled, short = codec_round_trip(codec, x, 16000, chunk_seconds=0.5)
    assert filled == 4 * 2000 and short == 4800 - 3000
    np.testing.assert_allclose(y[0, 8000:14000], x[0, 8000:14000], atol=1e-6)  # no drift
    assert not y[0, 6000:8000].any()                    # zero-filled tail of chunk 1


def test_codec_failures_become_rows(folder, tmp_path):
    out = tmp_path / "out"
    rc = main(["eval", "--codec", "tests.plugins:CrashingCodec", "--audio", str(folder), "--metrics", "si_sdr",
               "--out", str(out), "--quiet", "--limit", "2"])
    assert rc == 1
    rows = _read(out / "items.csv")
    assert [(r["file"], r["status"]) for r in rows] == [("a.wav", "error"), ("broken.wav", "error")]
    assert rows[0]["message"] == "a.wav: CodecError: decoder exploded"


def test_usage_errors(tmp_path, capsys):
    assert main(["eval", "--audio", str(tmp_path)]) == 2
    assert "--codec" in capsys.readouterr().err
    assert main(["eval", "--codec", "identity", "--audio", str(tmp_path), "--reference", str(tmp_path)]) == 2
    assert main(["eval", "--codec", "identity", "--audio", str(tmp_path)]) == 2  # no audio files
    assert "no audio files" in capsys.readouterr().err
    assert main(["eval", "--codec", "identity", "--audio", str(tmp_path), "--metrics", "pesq"]) == 2


def test_format_table():
    text = format_table([{"metric": "si_sdr", "mean": 3.14159, "std": 0.5, "n": 4, "n_nan": 1, "n_error": 0,
                          "unit": "dB", "higher_is_better": True}])
    assert "3.142 +- 0.5" in text and "(higher better)" in text


def _paired_fad(tmp_path, backbone: str, checkpoint, n_files: int) -> tuple[dict, dict]:
    """``eval`` paired mode, FAD only, on ``n_files`` 2 s clips (decoded = half level): the
    summary row and its settings."""
    ref, dec = tmp_path / "ref", tmp_path / "dec"
    ref.mkdir()
    dec.mkdir()
    for i in range(n_files):
        x = mixture(16000, 2.0, seed=i)
        sf.write(ref / f"t{i}.wav", x, 16000)
        sf.write(dec / f"t{i}.wav", 0.5 * x, 16000)
    out = tmp_path / "out"
    rc = main(["eval", "--reference", str(ref), "--decoded", str(dec), "--metrics", "fad", "--fad-backbone",
               backbone, "--fad-checkpoint", str(checkpoint), "--metric-option", f"fad.cache={tmp_path / 'cache'}",
               "--out", str(out), "--quiet"])
    assert rc == 0
    summary = _read(out / "summary.csv")[0]
    settings = json.loads(summary["settings"])
    assert settings["reference_set"] == str(ref)
    return summary, settings


def test_fad_with_a_local_vggish_checkpoint(tmp_path):
    from tests.embeddings.test_vggish import _torchvggish_state

    ckpt = tmp_path / "vggish-10086976.pth"
    torch.save(_torchvggish_state(), ckpt)
    summary, settings = _paired_fad(tmp_path, "vggish", ckpt, n_files=3)
    assert settings["backbone"] == "vggish"
    assert settings["n_reference_embeddings"] == 6 and float(summary["mean"]) > 0


def test_fad_with_a_local_clap_checkpoint(tmp_path):
    from tests.embeddings.test_clap import random_encoder_state

    ckpt = tmp_path / "630k-audioset-best.pt"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in random_encoder_state().items()}}, ckpt)
    summary, settings = _paired_fad(tmp_path, "clap", ckpt, n_files=2)
    assert settings["backbone"] == "clap" and settings["backbone_patch_seconds"] == 10.0
    assert settings["n_reference_embeddings"] == 2 and float(summary["mean"]) > 0  # one padded window per 2 s clip