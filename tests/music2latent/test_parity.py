"""Parity with the official implementation (the ``music2latent`` pip package, CC BY-NC 4.0).

The official model is built offline with random weights (no checkpoint is downloaded), its
state dict is converted into ours, and both are run in fp32 on CPU on the same input and the
same initial noise. We only *call* the package. Skipped when it is not installed.
"""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import pytest
import torch

from benchmark.music2latent.codec import OFFICIAL_LATENT_SCALE, OfficialMusic2LatentCodec
from benchmark.music2latent.config import PRESETS
from benchmark.music2latent.convert import convert_official_state_dict
from benchmark.music2latent.frontend import SpectralFrontend
from benchmark.music2latent.inference import sample_representation
from benchmark.music2latent.model import Music2Latent, randomize_parameters


def _import_official():
    """Import the official package; its top level imports huggingface_hub only to download
    weights, so a stub stands in when that is not installed (nothing is downloaded here)."""
    if importlib.util.find_spec("music2latent") is None:
        pytest.skip("the official music2latent package is not installed")
    if importlib.util.find_spec("huggingface_hub") is None and "huggingface_hub" not in sys.modules:
        stub = types.ModuleType("huggingface_hub")

        def hf_hub_download(*args, **kwargs):
            raise RuntimeError("downloads are disabled in tests")

        stub.hf_hub_download = hf_hub_download
        sys.modules["huggingface_hub"] = stub
    import music2latent.audio as audio
    import music2latent.inference as inference
    import music2latent.models as models
    return types.SimpleNamespace(audio=audio, inference=inference, models=models)


M2L = _import_official()
CONFIG = PRESETS["paper"]
LATENT_FRAMES = 2  # 16 STFT frames, 9728 samples: quick even for the 58 M-parameter model


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    official = randomize_parameters(M2L.models.UNet(), seed=0).eval()
    ours = Music2Latent(CONFIG).eval()
    ours.load_state_dict(convert_official_state_dict(official.state_dict(), CONFIG))
    return official, ours


@pytest.fixture(scope="module")
def wave():
    g = torch.Generator().manual_seed(3)
    length = 4096 * LATENT_FRAMES + 1536
    t = torch.arange(length) / 44100
    tone = 0.4 * torch.sin(2 * torch.pi * 220 * t) * torch.exp(-3 * t)
    return (tone + 0.05 * torch.randn(length, generator=g))[None].float()


def test_encoder_matches(models, wave):
    official, ours = models
    frontend = SpectralFrontend(CONFIG)
    with torch.no_grad():
        rep_official = M2L.audio.to_representation_encoder(wave)
        rep_ours = frontend.wave_to_spec(wave)
        torch.testing.assert_close(rep_ours, rep_official, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.encode(rep_ours), official.encoder(rep_official),
                                   rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ours.encode_features(rep_ours),
                                   official.encoder(rep_official, extract_features=True),
                                   rtol=1e-4, atol=1e-4)
        z = official.encoder(rep_official)
        for a, b in zip(ours.decode_pyramid(z), official.decoder(z)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("steps", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_decode_matches_with_the_same_noise(models, wave, steps):
    official, ours = models
    frontend = SpectralFrontend(CONFIG)
    with torch.no_grad():
        z = official.encoder(M2L.audio.to_representation_encoder(wave))
        # the official sampler draws its initial noise and every re-noising from the global
        # generator, in order; draw ours the same way
        torch.manual_seed(1234)
        rep_official = M2L.inference.decode_to_representation(official, z, steps,
                                                               device="cpu").float()
        torch.manual_seed(1234)
        shape = (1, 2, CONFIG.freq_bins, LATENT_FRAMES * CONFIG.downsample_time)
        rep_ours = sample_representation(ours, ours.decode_pyramid(z), shape[-1], steps,
                                         lambda step, start, end: torch.randn(shape))
        assert rep_ours.abs().max() > 0.1  # the random model produces a real signal
        torch.testing.assert_close(rep_ours, rep_official, rtol=1e-4, atol=1e-4)
        wave_official = M2L.audio.to_waveform(rep_official)
        wave_ours = frontend.spec_to_wave(rep_ours)
        assert wave_ours.shape == (1, 4096 * LATENT_FRAMES + 1536)
        torch.testing.assert_close(wave_ours, wave_official, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # writes and reads a 233 MB checkpoint three times
def test_checkpoint_file_and_official_codec_match_the_official_api(models, wave, tmp_path,
                                                                  monkeypatch):
    official, ours = models
    path = tmp_path / "music2latent.pt"
    torch.save({"gen_state_dict": official.state_dict()}, path)
    codec = OfficialMusic2LatentCodec(weights=str(path))  # load_official_checkpoint inside
    assert codec.info.weights_license == "CC BY-NC 4.0"
    assert codec.info.parameters == ours.num_parameters()
    assert len(codec.info.weights_id) == 64
    # the official API, pointed at the same file (its download step disabled)
    monkeypatch.setattr(M2L.inference, "download_model", lambda *a, **k: None)
    api = M2L.inference.EncoderDecoder(load_path_inference=str(path), device="cpu")
    audio = np.concatenate([wave.numpy(), 0.5 * wave.numpy()[:, ::-1].copy()])
    expected = api.encode(audio)  # tanh latents / 0.06
    torch.testing.assert_close(codec.encode(torch.from_numpy(audio)), expected,
                               rtol=1e-4, atol=2e-4)
    torch.testing.assert_close(codec.features(torch.from_numpy(audio)),
                               api.encode(audio, extract_features=True), rtol=1e-4, atol=1e-4)
    assert OFFICIAL_LATENT_SCALE == 0.06
    out = codec.decode(expected)
    assert out.shape == (2, 4096 * LATENT_FRAMES + 1536) and out.abs().max() <= 1
