"""The ``codicodec`` adapter against the package's own ``EncoderDecoder``.

The package builds its ``UNet`` (the released architecture; its size is fixed by module
constants) with random weights; the test saves it as ``codicodec.pt`` (``{"gen_state_dict"}``)
and loads it through our codec by path, and through the package's ``EncoderDecoder`` with its
download step disabled. Latents, tokens and decoded audio (same noise seed, parallel and
autoregressive) must be equal. One transformer layer instead of 12 and one denoising step keep
the decoder tests short; the full model's size is checked on the meta device.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.codecs import CodecError, create_codec

needs_codicodec = pytest.mark.skipif(importlib.util.find_spec("codicodec") is None,
                                     reason="pip install --no-deps codicodec==0.1.2 einops")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def stereo(seconds: float = 2 / 3, rate: int = 48000) -> torch.Tensor:
    """A stereo item ``[2, samples]``: a tone on the left, a quieter noise on the right."""
    t = torch.arange(int(seconds * rate)) / rate
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal(t.numel())).float()
    return torch.stack([0.4 * torch.sin(2 * math.pi * 330 * t), 0.1 * noise])


@pytest.fixture(scope="module")
def codicodec_file(tmp_path_factory):
    """A random-weight ``UNet`` saved as ``codicodec.pt``: the released architecture with one
    transformer layer in each of its three transformers instead of 12 (module constants of
    ``codicodec.models``, patched while this module's tests run), to keep the decoder fast."""
    from baselines.codicodec_codec import import_codicodec

    inference = import_codicodec()
    models = sys.modules["codicodec.models"]
    saved = models.num_layers, models.num_layers_encoder
    models.num_layers = models.num_layers_encoder = 1
    try:
        torch.manual_seed(0)
        model = inference.UNet()
        path = tmp_path_factory.mktemp("codicodec") / "codicodec.pt"
        torch.save({"gen_state_dict": model.state_dict()}, path)
        yield path
    finally:
        models.num_layers, models.num_layers_encoder = saved


@pytest.fixture(scope="module")
def reference(codicodec_file):
    """The package's ``EncoderDecoder`` on the same file (its download step disabled), in
    float32 like our codec on CPU."""
    from baselines.codicodec_codec import import_codicodec

    inference = import_codicodec()
    utils = sys.modules["codicodec.utils"]
    saved = (inference.download_model, utils.mixed_precision)
    inference.download_model, utils.mixed_precision = (lambda: None), False
    try:
        yield inference.EncoderDecoder(load_path_inference=str(codicodec_file), device=torch.device("cpu"))
    finally:
        inference.download_model, utils.mixed_precision = saved


# ------------------------------------------------------------------------------------------
# errors (no package needed)
# ------------------------------------------------------------------------------------------
def test_codicodec_missing_weights_say_what_to_download(tmp_path):
    for weights in (None, str(tmp_path / "codicodec.pt")):
        with pytest.raises(CodecError, match="weights needed") as err:
            create_codec("codicodec", weights=weights)
        assert "https://huggingface.co/SonyCSLParis/codicodec" in str(err.value)
        assert "CC BY-NC 4.0" in str(err.value)


def test_codicodec_missing_package_says_how_to_install(tmp_path, monkeypatch):
    path = tmp_path / "codicodec.pt"
    path.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "codicodec", None)
    monkeypatch.delitem(sys.modules, "codicodec.inference", raising=False)
    with pytest.raises(CodecError, match=r"pip install --no-deps codicodec==0\.1\.2"):
        create_codec("codicodec", weights=str(path))


# ------------------------------------------------------------------------------------------
# parity with the package
# ------------------------------------------------------------------------------------------
@needs_codicodec
def test_codicodec_matches_the_package(codicodec_file, reference):
    x = stereo()  # 32000 samples: one chunk of 32768 after the package's padding
    differences = {}
    codec = create_codec("codicodec", weights=str(codicodec_file), steps=1, seed=5)
    assert (codec.info.sample_rate, codec.info.channels, codec.info.latent_dim) == (48000, 2, 64)
    assert codec.info.latent_rate_hz == pytest.approx(48000 / 32768 * 8)
    assert codec.info.stochastic and codec.info.decode_steps == 1
    assert codec.info.parameters == sum(p.numel() for p in reference.gen.parameters())
    assert "CC BY-NC" in codec.info.weights_license

    z = codec.encode(x)
    assert z.shape == (2, 64, 8) and torch.equal(z[0], z[1])
    with torch.inference_mode():
        ref_z = reference.encode(x)  # [chunks, 8, 64]
    differences["continuous latents"] = (z[0] - ref_z.reshape(-1, 64).T).abs().max().item()

    y = codec.decode(z)
    with torch.inference_mode():
        torch.manual_seed(5)
        ref_y = reference.decode(ref_z, mode="parallel", denoising_steps=1)
    assert y.shape == ref_y.shape and y.shape[0] == 2 and y.shape[1] >= x.shape[1]
    differences["parallel decode"] = (y - ref_y).abs().max().item()

    tokens = create_codec("codicodec", weights=str(codicodec_file), tokens=True, steps=1, seed=5)
    assert tokens.info.latent_dim == 128 and tokens.info.bitrate_kbps == pytest.approx(
        128 * math.log2(11 ** 4) * 48000 / 32768 / 1000)
    t = tokens.encode(x)
    with torch.inference_mode():
        ref_t = reference.encode(x, discrete=True)  # [chunks, 128]
    # (with random weights the encoder's output is near 0: most tokens are the centre code)
    assert t.shape == (2, 128, 1) and torch.equal(t[0].long(), ref_t.T.long())

    # a mono item is coded as the pair (mono, mono)
    pair = x[:1].expand(2, -1)
    assert torch.equal(codec.encode(x[:1])[0], codec.encode(pair)[0])
    print("codicodec parity, max |ours - package|:", differences)
    assert max(differences.values()) < 1e-5, differences


@needs_codicodec
def test_codicodec_autoregressive_matches_the_package(codicodec_file, reference):
    """Autoregressive decoding of one chunk: the package needs two, so the codec pads a blank
    (zero) chunk and cuts the output back to one chunk; the package given the same two chunks
    must produce the same audio."""
    x = stereo()
    ar = create_codec("codicodec", weights=str(codicodec_file), mode="autoregressive", steps=1, seed=5)
    z = ar.encode(x)
    y = ar.decode(z)
    with torch.inference_mode():
        ref_z = reference.encode(x)
        torch.manual_seed(5)
        ref_y = reference.decode(torch.cat([ref_z, torch.zeros_like(ref_z)]), mode="autoregressive",
                                 denoising_steps=1)
    assert y.shape == (2, 32768 + 1024)
    difference = (y - ref_y[:, :y.shape[1]]).abs().max().item()
    print("codicodec autoregressive parity, max |ours - package|:", difference)
    assert difference < 1e-5


@needs_codicodec
def test_codicodec_default_model_size():
    """The released architecture (the package's constants, whatever the fixture patched):
    148.5 M parameters."""
    from baselines.codicodec_codec import import_codicodec

    inference = import_codicodec()
    models, hparams = sys.modules["codicodec.models"], importlib.import_module("codicodec.hparams")
    saved = models.num_layers, models.num_layers_encoder
    models.num_layers, models.num_layers_encoder = hparams.num_layers, hparams.num_layers_encoder
    try:
        model = inference.UNet()
    finally:
        models.num_layers, models.num_layers_encoder = saved
    assert hparams.num_layers == hparams.num_layers_encoder == 12
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 148.5


@needs_codicodec
def test_codicodec_import_leaves_torch_state_alone(tmp_path):
    """``import codicodec`` sets cuDNN/TF32 flags and TORCHINDUCTOR_CACHE_DIR; ours restores
    them (a fresh interpreter, so that the import really happens)."""
    script = (
        "import os, torch\n"
        "flags = lambda: (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,"
        " torch.backends.cuda.matmul.allow_tf32, os.environ.get('TORCHINDUCTOR_CACHE_DIR'))\n"
        "before = flags()\n"
        "from baselines.codicodec_codec import import_codicodec\n"
        "import_codicodec()\n"
        "assert flags() == before, (before, flags())\n"
        "print('ok')\n")
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=root)
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         cwd=root, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@needs_codicodec
def test_codicodec_rejects_bad_options(codicodec_file):
    with pytest.raises(CodecError, match="mode must be"):
        create_codec("codicodec", weights=str(codicodec_file), mode="sequential")
    with pytest.raises(CodecError, match="steps must be"):
        create_codec("codicodec", weights=str(codicodec_file), steps=0)
