"""The fast CPU inference convolutions of :mod:`benchmark.music2latent.kernels`: accuracy
against float64, batch invariance, when the fast path is (not) taken, the ``Conv2d`` module and
the NCHW layout that :func:`~benchmark.music2latent.inference.prepare_for_inference` picks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.music2latent import kernels
from benchmark.music2latent.config import get_preset
from benchmark.music2latent.frontend import SpectralFrontend
from benchmark.music2latent.inference import decode_latents, encode_audio, prepare_for_inference
from benchmark.music2latent.kernels import Conv2d, conv2d, uses_fast_path, winograd_available
from benchmark.music2latent.model import Music2Latent, randomize_parameters

needs_nnpack = pytest.mark.skipif(not winograd_available(), reason="NNPACK not available")


@pytest.fixture
def nnpack_calls(monkeypatch):
    """Counts the calls to ``torch._nnpack_spatial_convolution`` (still running it)."""
    calls = []
    real = torch._nnpack_spatial_convolution

    def counting(x, weight, bias, padding, *args, **kwargs):
        calls.append(tuple(x.shape))
        return real(x, weight, bias, padding, *args, **kwargs)

    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", counting)
    return calls


def _tensors(batch, c_in, c_out, h, w, k, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, c_in, h, w, generator=g)
    weight = torch.randn(c_out, c_in, k, k, generator=g) / (c_in * k * k) ** 0.5
    b = 0.5 * torch.randn(c_out, generator=g) if bias else None
    return x, weight, b


def _reference(x, weight, bias, padding):
    """float64 F.conv2d."""
    return F.conv2d(x.double(), weight.double(), None if bias is None else bias.double(),
                    padding=padding)


def _rel_error(out, ref):
    return ((out.double() - ref).abs().max() / ref.abs().max()).item()


# -- accuracy --------------------------------------------------------------------------------
@needs_nnpack
@pytest.mark.parametrize("batch, c_in, c_out, h, w, bias", [
    (1, 2, 2, 5, 7, True),
    (3, 2, 2, 9, 11, False),
    (3, 8, 6, 13, 17, True),
    (2, 16, 4, 16, 15, False),
    (1, 3, 5, 1, 1, True),
])
def test_winograd_3x3_matches_float64(nnpack_calls, batch, c_in, c_out, h, w, bias):
    x, weight, b = _tensors(batch, c_in, c_out, h, w, 3, bias)
    with torch.no_grad():
        out = conv2d(x, weight, b, stride=1, padding=1)
    assert nnpack_calls == [(1, c_in, h, w)] * batch  # one NNPACK call per batch item
    assert out.shape == (batch, c_out, h, w) and out.dtype == torch.float32
    ref = _reference(x, weight, b, 1)
    assert _rel_error(out, ref) <= 1e-4
    # the bias is really applied (a missing bias would be an error of its size)
    if b is not None:
        assert _rel_error(out - b[:, None, None], _reference(x, weight, None, 1)) <= 1e-4


@needs_nnpack
@pytest.mark.parametrize("padding", [1, (1, 1), [1, 1]])
def test_winograd_takes_every_spelling_of_padding_one(nnpack_calls, padding):
    x, weight, b = _tensors(2, 3, 4, 6, 5, 3)
    with torch.no_grad():
        out = conv2d(x, weight, b, stride=(1, 1), padding=padding, dilation=(1, 1))
    assert len(nnpack_calls) == 2
    assert _rel_error(out, _reference(x, weight, b, 1)) <= 1e-4


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch, c_in, c_out, h, w", [(3, 2, 2, 5, 7), (2, 16, 8, 9, 12)])
def test_pointwise_matches_conv2d(nnpack_calls, batch, c_in, c_out, h, w, bias):
    x, weight, b = _tensors(batch, c_in, c_out, h, w, 1, bias)
    with torch.no_grad():
        out = conv2d(x, weight, b)
        expected = F.conv2d(x, weight, b)
    assert not nnpack_calls  # a matrix product, not NNPACK
    assert out.shape == expected.shape and out.is_contiguous()
    assert _rel_error(out, expected.double()) <= 1e-5
    assert _rel_error(out, _reference(x, weight, b, 0)) <= 1e-5


# -- batch invariance ------------------------------------------------------------------------
@pytest.mark.parametrize("k, padding", [(3, 1), (1, 0)])
def test_batch_items_are_computed_independently(k, padding):
    x, weight, b = _tensors(4, 6, 5, 11, 9, k)
    with torch.no_grad():
        whole = conv2d(x, weight, b, padding=padding)
        for i in range(x.shape[0]):
            alone = conv2d(x[i:i + 1].clone(), weight, b, padding=padding)
            assert torch.equal(whole[i:i + 1], alone), f"item {i} depends on its batch"
        # and on its position in the batch
        assert torch.equal(conv2d(x.flip(0), weight, b, padding=padding), whole.flip(0))


# -- fallbacks -------------------------------------------------------------------------------
def _fallback_cases():
    x, w3, b = _tensors(2, 4, 4, 7, 8, 3)
    cl = x.contiguous(memory_format=torch.channels_last)
    return {
        "channels_last": (cl, w3, b, {"padding": 1}),
        "float64": (x.double(), w3.double(), b.double(), {"padding": 1}),
        "stride2": (x, w3, b, {"stride": 2, "padding": 1}),
        "same_string": (x, w3, b, {"padding": "same"}),
        "groups2": (x, w3[:, :2].contiguous(), b, {"padding": 1, "groups": 2}),
        "dilation2": (x, w3, b, {"padding": 1, "dilation": 2}),
        "padding0": (x, w3, b, {"padding": 0}),
        "stride2_1x1": (x, w3[..., :1, :1].contiguous(), b, {"stride": 2}),
    }


@pytest.mark.parametrize("case", list(_fallback_cases()))
def test_fallbacks_to_f_conv2d(nnpack_calls, monkeypatch, case):
    x, weight, b, kwargs = _fallback_cases()[case]
    with torch.no_grad():
        expected = F.conv2d(x, weight, b, **kwargs)
        # the 1x1 matrix-product path must not run either
        monkeypatch.setattr(kernels, "_pointwise", _forbidden)
        out = conv2d(x, weight, b, **kwargs)
    assert not nnpack_calls
    assert torch.equal(out, expected)


def _forbidden(*args, **kwargs):
    raise AssertionError("fast path taken")


@pytest.mark.parametrize("k, padding", [(3, 1), (1, 0)])
def test_grad_enabled_falls_back_and_gradients_flow(nnpack_calls, monkeypatch, k, padding):
    monkeypatch.setattr(kernels, "_pointwise", _forbidden)
    x, weight, b = _tensors(2, 3, 4, 6, 7, k)
    weight.requires_grad_(True)
    x.requires_grad_(True)
    assert torch.is_grad_enabled() and not uses_fast_path(x, weight)
    out = conv2d(x, weight, b, padding=padding)
    assert not nnpack_calls and out.grad_fn is not None
    out.square().sum().backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():
        assert torch.equal(out, F.conv2d(x, weight, b, padding=padding))


@pytest.mark.parametrize("k, padding", [(3, 1), (1, 0)])
def test_cpu_autocast_falls_back(nnpack_calls, monkeypatch, k, padding):
    monkeypatch.setattr(kernels, "_pointwise", _forbidden)
    x, weight, b = _tensors(2, 4, 4, 6, 7, k)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert not uses_fast_path(x, weight)
        out = conv2d(x, weight, b, padding=padding)
        expected = F.conv2d(x, weight, b, padding=padding)
    assert not nnpack_calls
    assert out.dtype == torch.bfloat16  # autocast applied, as in F.conv2d
    assert torch.equal(out, expected)


@needs_nnpack
def test_uses_fast_path_conditions():
    x, weight, _ = _tensors(1, 2, 2, 4, 4, 3)
    with torch.no_grad():
        assert uses_fast_path(x, weight)
        assert not uses_fast_path(x.contiguous(memory_format=torch.channels_last), weight)
        assert not uses_fast_path(x.double(), weight)
        assert not uses_fast_path(x, weight.double())
        assert not uses_fast_path(x[0], weight)
    with torch.inference_mode():
        assert uses_fast_path(x, weight)
    assert not uses_fast_path(x, weight)  # grad mode on


@needs_nnpack
def test_nnpack_failure_warns_and_falls_back(monkeypatch):
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("NNPACK says no")

    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", failing)
    x, weight, b = _tensors(2, 3, 4, 6, 7, 3)
    with torch.no_grad():
        with pytest.warns(RuntimeWarning, match="NNPACK says no"):
            out = conv2d(x, weight, b, padding=1)
        expected = F.conv2d(x, weight, b, padding=1)
    assert calls  # NNPACK was tried
    assert torch.equal(out, expected)


# -- the Conv2d module -----------------------------------------------------------------------
@pytest.mark.parametrize("k, padding, bias", [(3, 1, True), (3, 1, False), (1, 0, True)])
def test_conv2d_module_is_a_drop_in_nn_conv2d(nnpack_calls, k, padding, bias):
    torch.manual_seed(0)
    ref = nn.Conv2d(5, 7, k, padding=padding, bias=bias)
    mine = Conv2d(5, 7, k, padding=padding, bias=bias)
    assert isinstance(mine, nn.Conv2d)
    assert list(mine.state_dict()) == list(ref.state_dict())
    assert all(mine.state_dict()[n].shape == t.shape for n, t in ref.state_dict().items())
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(2, 5, 9, 10)
    with torch.no_grad():
        out, expected = mine(x), ref(x)
    assert _rel_error(out, expected.double()) <= 1e-4
    assert len(nnpack_calls) == (2 if k == 3 and winograd_available() else 0)
    # with gradients on it is exactly nn.Conv2d and trains
    out = mine(x)
    assert torch.equal(out, ref(x))
    out.sum().backward()
    assert mine.weight.grad is not None


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv2d_module_other_padding_modes_use_nn_conv2d(nnpack_calls, monkeypatch, mode):
    monkeypatch.setattr(kernels, "conv2d", _forbidden)
    torch.manual_seed(0)
    ref = nn.Conv2d(3, 4, 3, padding=1, padding_mode=mode)
    mine = Conv2d(3, 4, 3, padding=1, padding_mode=mode)
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 6, 7)
    with torch.no_grad():
        out = mine(x)
        assert torch.equal(out, ref(x))
        # differs from zero padding at the borders
        assert not torch.allclose(out, F.conv2d(x, ref.weight, ref.bias, padding=1))
    assert not nnpack_calls


# -- the model's layout ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    config = get_preset("smoke")
    model = randomize_parameters(Music2Latent(config), seed=1).eval()
    return config, model, SpectralFrontend(config)


def _conv_weights(model):
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]


@needs_nnpack
def test_prepare_for_inference_picks_nchw_and_matches_channels_last(tiny, nnpack_calls,
                                                                     monkeypatch):
    config, model, frontend = tiny
    # the tiny model is narrower than the Winograd threshold: lower it to test the wide policy
    assert not kernels.winograd_pays_off(config.channels)
    monkeypatch.setattr(kernels, "WINOGRAD_MIN_CHANNELS", min(config.channels))
    fast = prepare_for_inference(Music2Latent(config))
    fast.load_state_dict(model.state_dict())
    slow = prepare_for_inference(Music2Latent(config), channels_last=True)
    slow.load_state_dict(model.state_dict())
    assert not fast.training and not slow.training
    weights = _conv_weights(fast)
    assert any(w.shape[-1] == 3 for w in weights)
    assert all(w.is_contiguous() for w in weights)
    assert not any(w.is_contiguous(memory_format=torch.channels_last)
                   for w in weights if w.shape[-1] > 1)
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in _conv_weights(slow))
    # channels_last=False forces NCHW back
    assert all(w.is_contiguous() for w in _conv_weights(
        prepare_for_inference(Music2Latent(config).to(memory_format=torch.channels_last),
                              channels_last=False)))
    for name, p in fast.state_dict().items():  # values and keys unchanged
        assert torch.equal(p, slow.state_dict()[name])

    g = torch.Generator().manual_seed(0)
    wave = 0.3 * torch.randn(2, frontend.samples_for_latents(4), generator=g)
    z_slow = encode_audio(slow, frontend, wave, chunk_seconds=None)
    assert not nnpack_calls  # channels-last activations: the direct kernels
    z_fast = encode_audio(fast, frontend, wave, chunk_seconds=None)
    assert nnpack_calls  # NCHW: Winograd
    assert z_fast.abs().max() > 0.01
    torch.testing.assert_close(z_fast, z_slow, rtol=0, atol=1e-3)

    nnpack_calls.clear()
    z = torch.rand(2, config.latent_dim, 4, generator=g) * 1.6 - 0.8
    audio_fast = decode_latents(fast, frontend, z, seed=5, chunk_latents=None)
    assert nnpack_calls
    audio_slow = decode_latents(slow, frontend, z, seed=5, chunk_latents=None)
    assert audio_fast.abs().max() > 0.01
    torch.testing.assert_close(audio_fast, audio_slow, rtol=0, atol=1e-3)


def test_winograd_only_for_wide_models():
    assert kernels.winograd_pays_off([64, 128, 256, 256, 256]) == winograd_available()
    assert not kernels.winograd_pays_off([8, 16, 16, 32])  # the cpu preset: channels-last
    assert not kernels.winograd_pays_off([64, 32])


def test_prepare_for_inference_channels_last_for_narrow_models(tiny):
    config, _, _ = tiny
    prepared = prepare_for_inference(Music2Latent(config))
    assert all(w.is_contiguous(memory_format=torch.channels_last)
               for w in _conv_weights(prepared))


def test_prepare_for_inference_channels_last_without_nnpack(tiny, monkeypatch):
    config, model, _ = tiny
    monkeypatch.setattr(kernels, "winograd_available", lambda: False)
    prepared = prepare_for_inference(Music2Latent(config))
    assert all(w.is_contiguous(memory_format=torch.channels_last)
               for w in _conv_weights(prepared))
