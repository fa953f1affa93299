"""The ``stable_audio_vae`` codec (our oobleck VAE) against stable-audio-tools' own autoencoder.

The package builds a small oobleck VAE with random weights (Stable Audio Open's strides and
ratio 2048, 4 base channels instead of 128), the test stores it the way the release does - the
full model's ``model.safetensors`` with the VAE under ``pretransform.model.`` (beside a stray
diffusion tensor) and a ``model_config.json`` - and our codec loads both by path. Latents (the
posterior mean, or a seeded sample) and decoded audio must equal the package's. Importing
``stable_audio_tools.models.autoencoders`` needs torchaudio and pytorch_lightning at module
level (a resampler and training callbacks, never used here): placeholders stand in for them
during that import only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
import types
import warnings

import pytest
import torch

from baselines.oobleck_codec import SAO_CONFIG, OobleckVAE
from benchmark.codecs import CodecError, create_codec
from benchmark.config import CodecSpec
from tests.baselines.test_external_codecs import check_pipeline_run, signals

needs_sat = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("stable_audio_tools", "safetensors",
                                                      "alias_free_torch", "einops")),
    reason="pip install --no-deps --ignore-requires-python stable-audio-tools==0.0.20 "
           "(and its small dependencies, see scripts/install.sh test)")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Stable Audio Open's VAE layout (SnakeBeta, c_mults 1-16, strides 2/4/4/8/8, ratio 2048,
#: no final tanh) with 4 base channels and an 8-d latent.
SMALL_VAE = {
    "encoder": {"type": "oobleck", "config": {
        "in_channels": 2, "channels": 4, "c_mults": [1, 2, 4, 8, 16], "strides": [2, 4, 4, 8, 8],
        "latent_dim": 16, "use_snake": True}},
    "decoder": {"type": "oobleck", "config": {
        "out_channels": 2, "channels": 4, "c_mults": [1, 2, 4, 8, 16], "strides": [2, 4, 4, 8, 8],
        "latent_dim": 8, "use_snake": True, "final_tanh": False}},
    "bottleneck": {"type": "vae"}, "latent_dim": 8, "downsampling_ratio": 2048, "io_channels": 2,
}
RATE = 16000  # the pipeline test's folder rate: no resampling


class _Placeholder(types.ModuleType):
    def __getattr__(self, name: str):
        raise AttributeError(f"{self.__name__}.{name}: a test placeholder (not installed here)")


def _unavailable(*args, **kwargs):
    raise RuntimeError("a test placeholder: not available here")


def _placeholders() -> dict[str, types.ModuleType]:
    """What stable-audio-tools 0.0.20 imports at module level and the autoencoder never uses:
    torchaudio (``transforms.Resample``/``MelSpectrogram``, named by ``pretransforms.py``; the
    wheels here are CUDA builds that do not load) and pytorch_lightning (base classes of the
    LoRA training callbacks)."""
    audio, transforms = _Placeholder("torchaudio"), _Placeholder("torchaudio.transforms")
    for name in ("Resample", "MelSpectrogram"):
        setattr(transforms, name, type(name, (), {"__init__": _unavailable}))
    object.__setattr__(audio, "transforms", transforms)
    lightning, callbacks = _Placeholder("pytorch_lightning"), _Placeholder("pytorch_lightning.callbacks")
    object.__setattr__(lightning, "Callback", type("Callback", (), {"__init__": _unavailable}))
    object.__setattr__(callbacks, "ModelCheckpoint", type("ModelCheckpoint", (), {"__init__": _unavailable}))
    object.__setattr__(lightning, "callbacks", callbacks)
    return {"torchaudio": audio, "torchaudio.transforms": transforms,
            "pytorch_lightning": lightning, "pytorch_lightning.callbacks": callbacks}


@contextlib.contextmanager
def _stubbed_imports():
    """The placeholders in ``sys.modules`` while the package is imported, removed afterwards.
    A module already imported is left alone, and so is an installed pytorch_lightning (an
    installed torchaudio is not trusted to load: the placeholder is used, as for encodec)."""
    stubs = {name: stub for name, stub in _placeholders().items()
             if name not in sys.modules and (name.startswith("torchaudio")
                                             or importlib.util.find_spec(name.split(".")[0]) is None)}
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for name, stub in stubs.items():
            if sys.modules.get(name) is stub:
                del sys.modules[name]


def import_autoencoders():
    with _stubbed_imports(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from stable_audio_tools.models import autoencoders
    return autoencoders


def package_vae(config: dict, seed: int = 0):
    """The package's ``AudioAutoencoder`` with every parameter random (its own init, then
    SnakeBeta's log-scale alpha/beta in [-0.5, 0.5] and small random biases)."""
    autoencoders = import_autoencoders()
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.nn.utils.weight_norm is deprecated
        model = autoencoders.create_autoencoder_from_config({"model": config, "sample_rate": RATE})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("alpha", "beta")):
                p.uniform_(-0.5, 0.5)
            elif name.endswith("bias"):
                p.normal_(0, 0.01)
    return model.eval()


@pytest.fixture(scope="module")
def sao_files(tmp_path_factory):
    """``(model.safetensors, model_config.json, the package's model)`` in the release layout."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("sao")
    model = package_vae(SMALL_VAE)
    tensors = {f"pretransform.model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    tensors["model.model.stray_diffusion_weight"] = torch.ones(3)  # the rest of the full model
    save_file(tensors, str(root / "model.safetensors"))
    config = {"model_type": "diffusion_cond", "sample_rate": RATE, "audio_channels": 2,
              "model": {"pretransform": {"type": "autoencoder", "iterate_batch": True,
                                         "config": SMALL_VAE}}}
    (root / "model_config.json").write_text(json.dumps(config))
    return root / "model.safetensors", root / "model_config.json", model


def open_codec(sao_files, **options):
    weights, config, _ = sao_files
    return create_codec("stable_audio_vae", weights=str(weights), config=str(config), **options)


# ------------------------------------------------------------------------------------------
# errors (no package needed)
# ------------------------------------------------------------------------------------------
def test_stable_audio_missing_weights_say_what_to_download(tmp_path):
    for weights in (None, str(tmp_path / "model.safetensors")):
        with pytest.raises(CodecError, match="weights needed") as err:
            create_codec("stable_audio_vae", weights=weights)
        message = str(err.value)
        assert "https://huggingface.co/stabilityai/stable-audio-open-1.0" in message
        assert "Stability AI Community License" in message and "non-commercial" in message


def test_stable_audio_rejects_a_file_without_the_vae(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"model.model.x": torch.zeros(1)}, path)
    with pytest.raises(CodecError, match="no VAE tensors"):
        create_codec("stable_audio_vae", weights=str(path))


# ------------------------------------------------------------------------------------------
# parity with the package
# ------------------------------------------------------------------------------------------
@needs_sat
def test_stable_audio_oobleck_matches_the_package(sao_files):
    reference = sao_files[2]
    codec = open_codec(sao_files)
    assert (codec.info.channels, codec.info.latent_dim, codec.info.sample_rate) == (2, 8, RATE)
    assert codec.info.latent_rate_hz == pytest.approx(RATE / 2048)
    assert codec.info.parameters == sum(p.numel() for p in reference.parameters())
    assert not codec.info.stochastic and "Community License" in codec.info.weights_license
    x = signals(RATE)  # a stereo item: 8000 samples per channel -> padded to 4 x 2048
    differences = {}
    z = codec.encode(x)
    assert z.shape == (2, 8, 4) and torch.equal(z[0], z[1])
    padded = torch.nn.functional.pad(x, (0, 4 * 2048 - x.shape[1]))[None]
    with torch.inference_mode():
        mean = reference.encoder(padded).chunk(2, dim=1)[0]  # the VAE bottleneck's (mean, scale)
        ref_y = reference.decode(mean)[0]
    differences["latents (mean)"] = (z[0] - mean[0]).abs().max().item()
    y = codec.decode(z)
    assert y.shape == (2, 4 * 2048)
    differences["decoded stereo"] = (y - ref_y).abs().max().item()

    sampled = open_codec(sao_files, sample=True, seed=3)
    assert sampled.info.stochastic and sampled.identity != codec.identity
    with torch.inference_mode():
        torch.manual_seed(3)  # the package's VAEBottleneck draws from the global generator
        ref_sample = reference.encode(padded)
    zs = sampled.encode(x)
    differences["latents (sampled, seed 3)"] = (zs[0] - ref_sample[0]).abs().max().item()
    assert torch.equal(zs, sampled.encode(x)) and (zs - z).abs().max() > 1e-3

    mono = codec.encode(x[:1])  # a mono item is coded as (mono, mono)
    with torch.inference_mode():
        pair = padded[:, :1].expand(1, 2, -1)
        mono_mean = reference.encoder(pair).chunk(2, dim=1)[0]
        mono_y = reference.decode(mono_mean)[0].mean(0, keepdim=True)
    differences["mono item"] = (codec.decode(mono) - mono_y).abs().max().item()
    assert mono.shape == (1, 8, 4)
    print("stable_audio_vae parity, max |ours - package|:", differences)
    assert max(differences.values()) < 1e-5, differences


@needs_sat
def test_stable_audio_oobleck_default_is_the_release_layout():
    """Our default architecture has the same tensors (names, shapes) as the package's model of
    Stable Audio Open 1.0's config, so the released file loads strictly: 156 M parameters."""
    autoencoders = import_autoencoders()
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = autoencoders.create_autoencoder_from_config({"model": SAO_CONFIG, "sample_rate": 44100})
        ours = OobleckVAE()
    assert ({k: tuple(v.shape) for k, v in ours.state_dict().items()}
            == {k: tuple(v.shape) for k, v in reference.state_dict().items()})
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in reference.parameters())
    assert round(count / 1e6) == 156


@needs_sat
def test_stable_audio_rejects_bad_rows(sao_files):
    codec = open_codec(sao_files)
    with pytest.raises(CodecError, match="1 or 2 channels"):
        codec.encode(torch.zeros(3, 4096))
    with pytest.raises(CodecError, match="channels"):
        codec.decode(torch.zeros(1, 64, 2))


@needs_sat
def test_stable_audio_runs_through_the_pipeline(audio_folder, sao_files, tmp_path):
    weights, config, _ = sao_files
    check_pipeline_run(audio_folder, CodecSpec(name="stable_audio_vae", options={
        "weights": str(weights), "config": str(config)}), tmp_path)
