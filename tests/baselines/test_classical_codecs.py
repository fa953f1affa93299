"""The classical codecs ``opus`` (opusenc, hard CBR) and ``mp3`` (LAME in libsndfile, CBR).

Checked with real numbers: every Opus audio packet and every MP3 frame has exactly the target
bitrate; the bitrate obtained (file bytes, container included) is within the container's
overhead of it; a known signal (chirp + clicks) comes back with its length and no lag,
mono and stereo; stereo pairs are one joint stream at the target bitrate that keeps the
channels apart; quality rises over the bitrate ladder on a music-like mixture; the engine hands
a joint codec one item per call and reports the bitrate per item and per codec. The Opus tests
need ``opusenc`` (``sudo apt-get install -y opus-tools``; ``scripts/install.sh`` installs it);
the error tests need nothing.
"""

from __future__ import annotations

import csv
import math
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import chirp, correlate

from baselines.classical import MP3Codec, OpusCodec, has_info_tag, mp3_frame_bitrates, ogg_packet_sizes
from benchmark.cli import main
from benchmark.codecs import CodecError, available_codecs, create_codec
from benchmark.config import load_preset
from benchmark.data.dataset import Item
from benchmark.engine.sources import CodecSource
from benchmark.metrics.signals import mixture
from benchmark.metrics.sisdr import si_sdr
from benchmark.metrics.spectral import mel_distance

needs_opusenc = pytest.mark.skipif(shutil.which("opusenc") is None, reason="sudo apt-get install -y opus-tools")
needs_mp3 = pytest.mark.skipif("MP3" not in sf.available_formats(), reason="libsndfile without MP3 (soundfile>=0.13)")
OPUS_LADDER = (6, 12, 24, 48, 96)
MP3_LADDER = (32, 64, 128, 192, 320)


def known_signal(rate: int, seconds: float = 2.0) -> np.ndarray:
    """A log chirp 100 Hz - 8 kHz plus a click every 0.25 s: one sharp cross-correlation peak."""
    t = np.arange(int(rate * seconds)) / rate
    x = 0.3 * chirp(t, 100, seconds, 8000, method="logarithmic")
    x[:: rate // 4] += 0.5
    return x.astype(np.float32)


def lag_of(reference: np.ndarray, estimate: np.ndarray, max_lag: int = 4000) -> int:
    """The lag (samples) of ``estimate`` behind ``reference`` at the cross-correlation peak."""
    full = correlate(estimate, reference, mode="full", method="fft")
    lags = np.arange(-reference.size + 1, estimate.size)
    keep = np.abs(lags) <= max_lag
    return int(lags[keep][np.argmax(full[keep])])


def round_trip(codec, audio: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    latents = codec.encode(torch.from_numpy(np.atleast_2d(audio)))
    return codec.decode(latents).numpy(), latents


def stream_bytes(codec, audio: np.ndarray) -> bytes:
    return codec.streams(codec.encode(torch.from_numpy(np.atleast_2d(audio))))[0][2]


# -- registry, options, missing tool (nothing needed) ---------------------------------------------
def test_registered_under_their_names():
    assert {"opus", "mp3"} <= set(available_codecs())


@pytest.mark.parametrize("options, match", [
    ({"kbps": "fast"}, r"kbps must be a positive number.*--codec-option kbps=24"),
    ({"kbps": -8}, "kbps must be a positive number"),
    ({"kbps": 100}, r"not a MPEG-1 Layer III bitrate.*choose one of \[32, 40, 48, .*320\]"),
    ({"kbps": 320, "sample_rate": 22050}, r"MPEG-2 Layer III.*pass sample_rate=44100"),
    ({"kbps": 128, "sample_rate": 96000}, r"no MPEG Layer III mode at 96000 Hz"),
    ({"kbps": 128, "stereo": "mid-side"}, r"stereo must be one of \('joint', 'separate'\)"),
])
def test_mp3_options_are_validated_with_clear_errors(options, match):
    with pytest.raises(CodecError, match=match):
        create_codec("mp3", **options)


@pytest.mark.parametrize("options, match", [
    ({"kbps": 3}, r"kbps=3 is outside opusenc's range 6-256"),
    ({"kbps": 300}, "outside opusenc's range"),
    ({"kbps": float("nan")}, "kbps must be a positive number"),
    ({"kbps": 24, "mode": "abr"}, r"mode must be one of \('cbr', 'cvbr', 'vbr'\)"),
])
def test_opus_options_are_validated_before_looking_for_the_tool(options, match, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no opusenc: option errors still come first
    with pytest.raises(CodecError, match=match):
        create_codec("opus", **options)


def test_missing_opusenc_names_the_package_and_the_apt_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("opusenc") is None
    with pytest.raises(CodecError, match=r"`opusenc` program \(package opus-tools\).*"
                                         r"`sudo apt-get install -y opus-tools`"):
        create_codec("opus", kbps=24)
    assert main(["codecs"]) == 0  # still listed, with the reason
    line = next(li for li in capsys.readouterr().out.splitlines() if li.startswith("opus "))
    assert "not buildable with defaults" in line and "opus-tools" in line


@needs_opusenc
@needs_mp3
def test_codec_cards_in_the_listing(capsys):
    assert main(["codecs"]) == 0
    lines = {li.split()[0]: li for li in capsys.readouterr().out.splitlines() if li.strip()}
    assert "channels" in lines["name"] and "size" in lines["name"] and "params" in lines["name"]
    for name, size in (("opus", "24 kbps"), ("mp3", "128 kbps")):
        assert size in lines[name] and " joint " in lines[name], lines[name]
    assert "floats/s" in lines["identity"] and " each " in lines["identity"]
    opus, mp3 = create_codec("opus").info, create_codec("mp3").info
    assert (opus.sample_rate, opus.channels, opus.bitrate_kbps, opus.delay_samples) == (48000, 2, 24.0, 0)
    assert (mp3.sample_rate, mp3.channels, mp3.bitrate_kbps, mp3.delay_samples) == (44100, 2, 128.0, 0)
    assert "BSD" in opus.code_license and "LGPL" in mp3.code_license


# -- exact constant bitrate -----------------------------------------------------------------------
@needs_opusenc
@pytest.mark.parametrize("kbps", OPUS_LADDER)
def test_opus_hard_cbr_packets_have_exactly_the_target_size(kbps):
    seconds = 3.0
    data = stream_bytes(OpusCodec(kbps=kbps), mixture(48000, seconds))
    packets = ogg_packet_sizes(data)
    audio = packets[2:]  # after OpusHead and OpusTags
    assert set(audio) == {round(kbps * 1000 * 0.020 / 8)}  # 20 ms frames
    # the stream covers the signal plus the pre-skip (one or two packets more)
    assert seconds / 0.02 < len(audio) <= seconds / 0.02 + 2
    obtained = len(data) * 8 / seconds / 1000
    overhead = (sum(packets[:2]) + 27 * 3 + len(audio)) * 8 / seconds / 1000  # headers, pages, lacing
    assert kbps <= obtained <= kbps + overhead + 2 * kbps * 0.02 / seconds + 0.5


@needs_mp3
@pytest.mark.parametrize("kbps", MP3_LADDER)
def test_mp3_every_frame_has_exactly_the_target_bitrate(kbps):
    seconds = 3.0
    data = stream_bytes(MP3Codec(kbps=kbps), mixture(44100, seconds))
    frames = mp3_frame_bitrates(data)
    assert set(frames) == {kbps}
    # delay (576 + 529 samples) and padding to whole 1152-sample frames, plus the LAME/Info frame
    assert math.ceil(seconds * 44100 / 1152) + 1 <= len(frames) <= math.ceil((seconds * 44100 + 1105) / 1152) + 2
    obtained = len(data) * 8 / seconds / 1000
    assert kbps <= obtained <= kbps * len(frames) * 1152 / (seconds * 44100) + 0.01


@needs_mp3
def test_mp3_bitrates_of_the_lower_mpeg_versions_are_reached():
    for rate, kbps in ((22050, 160), (16000, 8), (11025, 64), (8000, 8)):
        frames = mp3_frame_bitrates(stream_bytes(MP3Codec(kbps=kbps, sample_rate=rate), mixture(rate, 1.0)))
        assert set(frames) == {kbps}, (rate, kbps)


# -- the codec delay, to the sample ----------------------------------------------------------------
@pytest.mark.parametrize("name, kbps, rate", [("opus", 64, 48000), ("opus", 24, 48000), ("mp3", 128, 44100),
                                              ("mp3", 32, 44100), ("mp3", 64, 22050), ("mp3", 32, 22050),
                                              ("mp3", 8, 8000)])
@pytest.mark.parametrize("channels", [1, 2])
def test_known_signal_comes_back_aligned_to_the_sample(name, kbps, rate, channels):
    if name == "opus" and shutil.which("opusenc") is None:
        pytest.skip("sudo apt-get install -y opus-tools")
    if name == "mp3" and "MP3" not in sf.available_formats():
        pytest.skip("libsndfile without MP3")
    codec = create_codec(name, kbps=kbps, **({"sample_rate": rate} if name == "mp3" else {}))
    x = known_signal(rate)
    audio = np.stack([x, -0.5 * np.roll(x, rate // 8)])[:channels]  # the right channel: another signal
    decoded, _ = round_trip(codec, audio)
    assert decoded.shape == audio.shape
    for ref, est in zip(audio, decoded):
        assert lag_of(ref, est) == 0
    assert codec.info.delay_samples == 0


@needs_mp3
def test_both_mp3_delay_paths_are_exercised():
    """LAME writes the LAME/Info tag (delay and padding, removed by mpg123) only when a frame can
    hold it: at 128 kbps, not at 32 kbps (44.1 kHz), where the codec removes the 1105 samples."""
    x = known_signal(44100)[None]
    assert has_info_tag(stream_bytes(MP3Codec(kbps=128), x))
    assert not has_info_tag(stream_bytes(MP3Codec(kbps=32), x))
    assert not has_info_tag(stream_bytes(MP3Codec(kbps=48, sample_rate=22050), x))


# -- stereo: one joint stream --------------------------------------------------------------------
@pytest.mark.parametrize("name, kbps", [("opus", 64), ("mp3", 128)])
def test_stereo_is_one_joint_stream_at_the_target_bitrate_and_keeps_the_channels_apart(name, kbps):
    if name == "opus" and shutil.which("opusenc") is None:
        pytest.skip("sudo apt-get install -y opus-tools")
    if name == "mp3" and "MP3" not in sf.available_formats():
        pytest.skip("libsndfile without MP3")
    joint = create_codec(name, kbps=kbps)
    rate, seconds = joint.info.sample_rate, 3.0
    left = mixture(rate, seconds, seed=1)
    stereo = np.stack([left, np.zeros_like(left)])  # all in the left channel
    decoded, latents = round_trip(joint, stereo)
    streams = joint.streams(latents)
    assert [(row, channels, samples) for row, channels, _, samples in streams] == [(0, 2, stereo.shape[1])]
    bits = joint.bitstream_bits(latents)
    assert bits[1] == 0 and bits[0] == 8 * len(streams[0][2])
    assert kbps <= bits.sum() / seconds / 1000 <= kbps * 1.1  # the pair shares the target
    assert si_sdr(left, decoded[0]) > 10
    assert np.sum(decoded[1] ** 2) < 1e-3 * np.sum(decoded[0] ** 2)  # the right channel stays below -30 dB

    separate = create_codec(name, kbps=kbps, stereo="separate")
    assert separate.info.channels == 1
    _, latents = round_trip(separate, stereo)
    assert [(row, channels) for row, channels, _, _ in separate.streams(latents)] == [(0, 1), (1, 1)]
    assert separate.bitstream_bits(latents).sum() / seconds / 1000 >= 2 * kbps  # a stream per channel

    with pytest.raises(CodecError, match="1 or 2 channels of one signal per call.*stereo=separate"):
        joint.encode(torch.zeros(3, rate))


@needs_mp3
def test_latents_that_are_not_a_bitstream_are_refused():
    codec = MP3Codec(kbps=64)
    latents = codec.encode(torch.from_numpy(mixture(44100, 0.5)[None]))
    bad = latents.clone()
    bad[0, 0, 5] = 300.0  # not a byte
    with pytest.raises(CodecError, match="not a mp3 bitstream"):
        codec.decode(bad)
    bad = latents.clone()
    bad[0, 0, 0] = 0.0  # a continuation row with nothing before it
    with pytest.raises(CodecError, match="not a mp3 bitstream"):
        codec.decode(bad)


# -- quality over the ladder ---------------------------------------------------------------------
@pytest.mark.parametrize("name, ladder", [("opus", OPUS_LADDER), ("mp3", MP3_LADDER)])
def test_quality_rises_with_the_bitrate_on_a_music_like_signal(name, ladder):
    if name == "opus" and shutil.which("opusenc") is None:
        pytest.skip("sudo apt-get install -y opus-tools")
    if name == "mp3" and "MP3" not in sf.available_formats():
        pytest.skip("libsndfile without MP3")
    rate = 48000 if name == "opus" else 44100
    x = mixture(rate, 3.0, seed=2)
    mel, sdr = [], []
    for kbps in ladder:
        decoded, _ = round_trip(create_codec(name, kbps=kbps), x)
        mel.append(mel_distance(x, decoded[0], rate))
        sdr.append(si_sdr(x, decoded[0]))
    assert all(a > b for a, b in zip(mel, mel[1:])), mel
    assert all(a < b for a, b in zip(sdr[1:], sdr[2:])), sdr  # waveform fidelity above the lowest rung
    assert sdr[-1] > 15, sdr


# -- through the engine ----------------------------------------------------------------------------
class SpyMP3(MP3Codec):
    """MP3 that records the shape of every ``encode`` call."""

    calls: list[tuple[int, ...]] = []

    def encode(self, audio):
        SpyMP3.calls.append(tuple(audio.shape))
        return super().encode(audio)


@needs_mp3
def test_engine_hands_a_joint_codec_one_item_per_call_and_counts_its_bits(tmp_path):
    items = []
    for i in range(3):  # three equal-length stereo items: a batching codec would take them together
        path = tmp_path / f"s{i}.wav"
        sf.write(path, np.stack([mixture(44100, 1.0, seed=i), mixture(44100, 1.0, seed=i + 10)]).T, 44100)
        items.append(Item(id=path.name, path=path, split="test"))
    SpyMP3.calls = []
    source = CodecSource(SpyMP3(kbps=64))
    assert source.prepare(items, None) == 0
    for item in items:
        stream = source.stream(item, None)
        pieces = list(stream)
        assert pieces[0].estimate.shape == (2, 44100)
        assert 64 <= stream.coding.kbps <= 64 * 1.2
        assert stream.coding.bits > 0
    assert SpyMP3.calls == [(2, 44100)] * 3


@needs_mp3
def test_eval_reports_the_bitrate_obtained_per_item_and_per_codec(audio_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "eval"
    assert main(["eval", "--codec", "mp3", "--codec-option", "kbps=64", "--audio", str(audio_folder),
                 "--metrics", "si_sdr,mel_distance", "--out", str(out), "--quiet"]) == 0
    with open(out / "items.csv", newline="") as fh:
        items = [r for r in csv.DictReader(fh) if r["metric"] == "si_sdr"]
    per_item = [float(r["kbps"]) for r in items]
    assert len(per_item) == 6
    # 0.5 s files: 64 kbps frames over 0.5 s + delay, padding and the Info frame
    assert all(64 < k < 64 * 1.6 for k in per_item), per_item
    with open(out / "results.csv", newline="") as fh:
        cost = {r["metric"]: r for r in csv.DictReader(fh) if r["stage"] == "cost"}
    assert float(cost["kbps"]["value"]) == pytest.approx(np.mean(per_item), rel=1e-6)  # equal lengths
    assert (out / "report" / "bitrate.png").exists()


def test_ladder_preset_lists_the_rungs():
    config = load_preset("ladder")
    labels = {c.display: (c.name, c.options.get("kbps")) for c in config.codecs}
    assert {labels[f"opus-{k}k"] for k in OPUS_LADDER} == {("opus", k) for k in OPUS_LADDER}
    assert {labels[f"mp3-{k}k"] for k in MP3_LADDER} == {("mp3", k) for k in MP3_LADDER}
    assert config.tasks == [] and "visqol" in config.metrics
