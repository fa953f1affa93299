"""The README's plugin example runs through the codec registry by import path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.codecs import Codec, CodecError, create_codec
from benchmark.metrics.sisdr import si_sdr
from examples.my_codec_plugin import ExampleCodec, dct_matrix

SPEC = "examples.my_codec_plugin:ExampleCodec"


def broadband(samples: int, seed: int = 0) -> torch.Tensor:
    """Pink-ish noise ``[1, samples]`` (energy at every frequency, more at the low end)."""
    g = np.random.default_rng(seed)
    spectrum = g.standard_normal(samples // 2 + 1) + 1j * g.standard_normal(samples // 2 + 1)
    spectrum /= np.sqrt(np.arange(samples // 2 + 1) + 1.0)
    x = np.fft.irfft(spectrum, n=samples)
    return torch.from_numpy(0.5 * x / np.abs(x).max()).float()[None]


def test_plugin_builds_by_import_path_with_defaults():
    codec = create_codec(SPEC)
    assert isinstance(codec, Codec) and isinstance(codec, ExampleCodec)
    assert (codec.info.sample_rate, codec.info.latent_dim) == (44100, 64)
    assert codec.info.latent_rate_hz == pytest.approx(44100 / 256)
    assert codec.info.compression_ratio == pytest.approx(4.0)  # 256 samples -> 64 numbers
    assert codec.config() == {"sample_rate": 44100, "frame": 256, "keep": 64}
    assert codec.identity != create_codec(SPEC, keep=32).identity


def test_dct_is_orthonormal():
    d = dct_matrix(16)
    torch.testing.assert_close(d @ d.T, torch.eye(16), atol=1e-6, rtol=0)


def test_round_trip_is_exact_when_every_coefficient_is_kept():
    codec = create_codec(SPEC, sample_rate=16000, frame=64, keep=64)
    x = broadband(1000)
    z = codec.encode(x)
    assert z.shape == (1, 64, 16)  # ceil(1000 / 64) frames
    y = codec.decode(z)
    assert y.shape == (1, 1024)
    torch.testing.assert_close(y[:, :1000], x, atol=1e-6, rtol=0)


def test_fewer_coefficients_lower_the_quality():
    x = broadband(16000)
    scores = []
    for keep in (64, 32, 16, 8):
        codec = create_codec(SPEC, sample_rate=16000, frame=64, keep=keep)
        y = codec.decode(codec.encode(x))[:, : x.shape[1]]
        scores.append(si_sdr(x[0].numpy(), y[0].numpy()))
    assert scores[0] > 60 and scores == sorted(scores, reverse=True)
    assert scores[-1] < 10


def test_plugin_errors_name_the_problem():
    with pytest.raises(CodecError, match="keep <= frame"):
        create_codec(SPEC, frame=32, keep=64)
    codec = create_codec(SPEC, keep=8)
    with pytest.raises(CodecError, match="expected keep=8"):
        codec.decode(torch.zeros(1, 4, 3))
