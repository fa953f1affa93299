import numpy as np
import pytest
import torch

from benchmark.codecs import CodecError, create_codec
from benchmark.codecs.registry import available_codecs, resolve_factory
from benchmark.metrics.sisdr import si_sdr


def tone(freq, sr=16000, seconds=0.5):
    t = torch.arange(int(sr * seconds)) / sr
    return (0.5 * torch.sin(2 * torch.pi * freq * t))[None].float()


def test_identity_round_trip_is_exact():
    codec = create_codec("identity", sample_rate=16000)
    x = tone(440)
    z = codec.encode(x)
    assert z.shape == (1, 1, 8000)
    assert torch.equal(codec.decode(z), x)
    assert codec.info.compression_ratio == 1.0


def test_lowpass_keeps_low_band_and_removes_high_band():
    codec = create_codec("lowpass", sample_rate=16000, factor=4)
    assert codec.info.compression_ratio == pytest.approx(4.0)
    low, high = tone(440), tone(5000)  # new Nyquist is 2 kHz
    rec_low = codec.decode(codec.encode(low))[:, : low.shape[1]]
    rec_high = codec.decode(codec.encode(high))[:, : high.shape[1]]
    assert si_sdr(low[0, 500:-500].numpy(), rec_low[0, 500:-500].numpy()) > 30
    assert rec_high[:, 500:-500].abs().max() < 0.01  # resampler edge transients excluded


def test_mel_griffinlim_is_deterministic_and_keeps_spectral_envelope():
    codec = create_codec("mel_griffinlim", sample_rate=16000, n_iter=8)
    x = tone(440)
    a, b = codec.decode(codec.encode(x)), codec.decode(codec.encode(x))
    assert torch.equal(a, b)
    spec = np.abs(np.fft.rfft(a[0].numpy()))
    peak_hz = spec.argmax() * 16000 / (2 * (len(spec) - 1))
    assert abs(peak_hz - 440) < 30


@pytest.mark.parametrize("name,dim", [("logmel", 128), ("mfcc", 60), ("chroma", 12)])
def test_feature_baselines_shapes_and_no_decoder(name, dim):
    codec = create_codec(name)
    z = codec.encode(tone(440, sr=22050))
    assert z.shape[:2] == (1, dim) and z.shape[2] > 5
    assert not codec.info.can_decode
    with pytest.raises(CodecError):
        codec.decode(z)


def test_chroma_peaks_at_pitch_class():
    z = create_codec("chroma").encode(tone(440, sr=22050))  # A
    assert int(z[0].mean(dim=1).argmax()) == 9


def test_registry_unknown_name_lists_known_codecs():
    with pytest.raises(CodecError, match="identity"):
        create_codec("no_such_codec")


def test_plugin_by_import_path_and_identity_tracks_config():
    a = create_codec("tests.plugins:CountingCodec", gain=1.0)
    b = create_codec("tests.plugins:CountingCodec", gain=2.0)
    assert a.info.name == "counting"
    assert a.identity != b.identity
    assert a.identity == create_codec("tests.plugins:CountingCodec", gain=1.0).identity


def test_bad_import_path_and_bad_config_are_clear():
    with pytest.raises(CodecError, match="cannot import"):
        resolve_factory("nonexistent_pkg.mod:Codec")
    with pytest.raises(CodecError, match="could not be built"):
        create_codec("identity", no_such_option=1)


def test_codecs_reject_nan_audio_and_bad_shapes():
    codec = create_codec("identity")
    with pytest.raises(CodecError, match="NaN"):
        codec.encode(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(CodecError, match="batch, samples"):
        codec.encode(torch.zeros(3))


NEEDS_LOCAL_WEIGHTS = {"music2latent_official", "snac", "encodec", "dac", "stable_audio_vae", "codicodec"}


def test_every_registered_codec_builds_with_defaults():
    for name in available_codecs():
        if name in NEEDS_LOCAL_WEIGHTS:  # no weights file given: a clear error, not a download
            with pytest.raises(CodecError, match="weights"):
                create_codec(name)
            continue
        info = create_codec(name).info
        assert info.sample_rate > 0 and info.latent_dim > 0 and info.latent_rate_hz > 0
