"""LAION-CLAP from a local checkpoint: parity with the ``laion_clap`` package, preprocessing
(quantisation, 48 kHz resampling, repeat-padding, windowing), checkpoint formats and errors.

Parity: the package's own model (``laion_clap`` 1.1.7, CC0) is built offline with random
weights, saved as a checkpoint in LAION's release format, loaded back by the package's
``load_ckpt`` and by our backbone, and both embed the same audio
(``CLAP_Module.get_audio_embedding_from_data`` against :class:`ClapBackbone`). The package's
top-level imports pull torchvision, transformers (whose text models download weights), h5py,
webdataset, ...; none of them is on the audio path, so stubs stand in for them while it is
imported. Those tests are skipped when the package is not installed
(``pip install --no-deps laion_clap torchlibrosa``); the others use checkpoints saved from
our own randomly initialised encoder and always run.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.data.audio import resample
from benchmark.embeddings import create_backbone
from benchmark.embeddings.base import EmbeddingError
from benchmark.embeddings.clap import (
    CLIP_SAMPLES,
    MODELS,
    ClapAudioEncoder,
    ClapBackbone,
    clip_windows,
    detect_model,
    log_mel,
    mel_basis,
    quantize_int16,
    repeat_pad,
)
from benchmark.metrics.signals import chord_progression, drum_loop, mixture

SR = 48000
INSTALL = "pip install --no-deps laion_clap torchlibrosa"


# ---------------------------------------------------------------------------------------------
# the official package, imported offline
# ---------------------------------------------------------------------------------------------
class _AnyMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything


class _Anything(metaclass=_AnyMeta):
    """Stands in for any name of a stubbed module; accepts any call, has any attribute."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __call__(self, *args, **kwargs):
        return _Anything()

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        return _Anything()


class _TextStandIn(nn.Module):
    """What ``RobertaModel.from_pretrained('roberta-base')`` returns here: only the attribute
    CLAP reads (the word-embedding width), so the checkpoint has text-branch keys too."""

    def __init__(self) -> None:
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(4, 768)


class _PretrainedModel(_Anything):
    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        return _TextStandIn()


def _stub_module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)

    def __getattr__(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _PretrainedModel if attr.endswith("Model") else _Anything

    module.__getattr__ = __getattr__
    module.__dict__.update(attrs)
    return module


def _import_laion_clap():
    """``laion_clap`` imported with stubs for its unused heavy imports; the stubs are removed
    from ``sys.modules`` again afterwards (the package keeps its references)."""
    for package in ("laion_clap", "torchlibrosa"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed ({INSTALL})")
    # always stubbed: transformers' text models download weights, torchvision/torchaudio
    # builds may not match torch; the rest only when missing
    always = ["transformers", "transformers.tokenization_utils_base", "torchvision", "torchvision.datasets",
              "torchvision.transforms", "torchvision.ops", "torchvision.ops.misc"]
    if_missing = ["h5py", "webdataset", "braceexpand", "wget", "ftfy", "regex", "PIL"]
    names = always + [n for n in if_missing if importlib.util.find_spec(n) is None]
    saved = {n: sys.modules[n] for n in names + ["torchaudio"] if n in sys.modules}
    stubs = {n: _stub_module(n) for n in names}
    stubs["transformers"].__version__ = "4.30.0"  # keeps load_ckpt from dropping a text key
    for n, module in stubs.items():
        parent, _, child = n.rpartition(".")
        if parent:
            setattr(stubs[parent], child, module)
    path = list(sys.path)
    try:
        sys.modules.update(stubs)
        sys.modules["torchaudio"] = None  # -> ImportError, which laion_clap handles
        import laion_clap
        from laion_clap.training.data import float32_to_int16, int16_to_float32
    finally:
        for n in list(stubs) + ["torchaudio"]:
            sys.modules.pop(n, None)
        sys.modules.update(saved)
        sys.path[:] = path  # laion_clap appends its own folder
    return types.SimpleNamespace(CLAP_Module=laion_clap.CLAP_Module,
                                 quantize=lambda x: int16_to_float32(float32_to_int16(x)))


def _randomize_audio_tower(model: nn.Module, seed: int) -> None:
    """Random audio-branch/projection weights far from the identity-like default init, and
    batch-norm statistics on the scale of log-mel dB values, so every part matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith(("audio_branch.", "audio_projection.")) or "extractor" in name:
                continue
            if name.endswith("relative_position_bias_table"):
                p.copy_(torch.randn(p.shape, generator=g))
            elif p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * (p[0].numel() ** -0.5))
            elif name.endswith("weight"):  # layer / batch norm scales
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        bn = model.audio_branch.bn0
        bn.running_mean.copy_(-30.0 + 5.0 * torch.randn(bn.running_mean.shape, generator=g))
        bn.running_var.copy_(300.0 * (0.5 + torch.rand(bn.running_var.shape, generator=g)))


@pytest.fixture(scope="module")
def laion():
    return _import_laion_clap()


@pytest.fixture(scope="module")
def official(laion, tmp_path_factory):
    """``(checkpoint path, package model that loaded it)``: random HTSAT-tiny CLAP in LAION's
    release format (``{"state_dict": {"module.<key>": ...}}``), text-branch keys included."""
    torch.manual_seed(0)
    clap = laion.CLAP_Module(enable_fusion=False, device="cpu", amodel="HTSAT-tiny", tmodel="roberta")
    _randomize_audio_tower(clap.model, seed=1)
    path = tmp_path_factory.mktemp("clap") / "630k-audioset-best.pt"
    torch.save({"epoch": 45, "name": "random-test-weights",
                "state_dict": {f"module.{k}": v for k, v in clap.model.state_dict().items()}}, path)
    with torch.no_grad():
        for p in clap.model.parameters():
            p.zero_()
    clap.load_ckpt(str(path), verbose=False)  # the package's own loader must bring the weights back
    assert clap.model.audio_projection[2].weight.abs().sum() > 0
    return path, clap


@pytest.fixture(scope="module")
def backbone(official):
    return ClapBackbone(checkpoint=official[0])


def _reference(clap, clips: list[np.ndarray]) -> np.ndarray:
    """The package's embeddings, one clip (<= 10 s) at a time."""
    return np.concatenate([clap.get_audio_embedding_from_data(x=c[None].astype(np.float32)) for c in clips])


def _music(seconds: float, seed: int = 0, sr: int = SR) -> np.ndarray:
    return mixture(sr, seconds, seed=seed, peak=0.6)


# ---------------------------------------------------------------------------------------------
# parity with laion_clap
# ---------------------------------------------------------------------------------------------
def test_front_end_matches_torchlibrosa(official):
    branch = official[1].model.audio_branch
    np.testing.assert_array_equal(mel_basis().numpy(), branch.logmel_extractor.melW.numpy())
    wave = torch.from_numpy(_music(2.0))[None]
    with torch.no_grad():
        theirs = branch.logmel_extractor(branch.spectrogram_extractor(wave))[:, 0]  # [1, frames, 64]
    ours = log_mel(wave)
    assert ours.shape == theirs.shape == (1, 2 * SR // 480 + 1, 64)
    error = (ours - theirs).abs()  # dB; torchlibrosa computes the DFT as a float32 convolution
    assert error[theirs > theirs.max() - 80].max() < 2e-3   # measured 7e-4
    assert error.max() < 0.05                                # bins near the -100 dB floor: 0.014


def test_embeddings_match_laion_clap_window_by_window(official, backbone):
    first, second = _music(10.0, seed=0), chord_progression(SR, 10.0, seed=1, peak=0.4)
    x = np.concatenate([first, second, _music(4.0, seed=3)])  # 24 s: two windows, 4 s tail dropped
    ours = backbone.embed(x, SR)
    assert ours.shape == (2, 512) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    theirs = _reference(official[1], [first, second])
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)  # measured: 2e-7
    # the comparison can fail: the two windows' embeddings differ by far more than the tolerance
    assert np.abs(ours[0] - ours[1]).max() > 100 * 1e-5


def test_overlapping_windows(official, backbone):
    x = _music(24.0, seed=3)
    overlapping = ClapBackbone(checkpoint=official[0], hop_seconds=5.0)
    assert overlapping.identity != backbone.identity
    windows = overlapping.windows(x)                     # starts 0, 5, 10 s
    assert windows.shape == (3, CLIP_SAMPLES)
    q = quantize_int16(x)
    for i, start in enumerate((0, 5 * SR, 10 * SR)):
        np.testing.assert_array_equal(windows[i], q[start:start + CLIP_SAMPLES])
    np.testing.assert_array_equal(backbone.windows(x), windows[[0, 2]])


def test_short_clip_is_repeat_padded_as_laion_does(official, backbone):
    short = drum_loop(SR, 3.3, seed=2, peak=0.5)
    windows = backbone.windows(short)
    assert windows.shape == (1, CLIP_SAMPLES)
    q = quantize_int16(short)
    np.testing.assert_array_equal(windows[0, :3 * q.size], np.tile(q, 3))  # floor(10 / 3.3) = 3 copies
    assert not windows[0, 3 * q.size:].any()                                # then zeros
    np.testing.assert_allclose(backbone.embed(short, SR), _reference(official[1], [short]), rtol=0, atol=1e-5)


def test_resamples_44100_input_to_48k(official, backbone):
    x44 = _music(10.0, seed=4, sr=44100)
    x48 = resample(x44[None], 44100, SR)[0]             # soxr, as every backbone resamples
    assert x48.size == CLIP_SAMPLES                      # 10 s -> exactly one window
    ours = backbone.embed(x44, 44100)
    assert ours.shape == (1, 512)
    np.testing.assert_allclose(ours, _reference(official[1], [x48]), rtol=0, atol=1e-5)


def test_quantization_matches_laion(laion):
    x = np.concatenate([np.linspace(-1.5, 1.5, 1001), _music(0.1)]).astype(np.float32)
    np.testing.assert_array_equal(quantize_int16(x), laion.quantize(x))
    np.testing.assert_array_equal(quantize_int16(np.array([2.0, -2.0, 0.5], np.float32)),
                                  np.array([1.0, -1.0, 16383 / 32767], np.float32))  # clipped, truncated


# ---------------------------------------------------------------------------------------------
# checkpoints, windows, errors (no package needed)
# ---------------------------------------------------------------------------------------------
def random_encoder_state(seed: int = 5) -> dict[str, torch.Tensor]:
    """Audio-tower state dict of our own randomly initialised HTSAT-tiny encoder."""
    torch.manual_seed(seed)
    encoder = ClapAudioEncoder("HTSAT-tiny")
    _randomize_audio_tower(encoder, seed=seed)
    return encoder.state_dict()


@pytest.fixture(scope="module")
def own_state():
    return random_encoder_state()


def test_windowing_rules():
    x = np.arange(2 * CLIP_SAMPLES + 7, dtype=np.float32)
    w = clip_windows(x)
    assert w.shape == (2, CLIP_SAMPLES) and w[1, 0] == CLIP_SAMPLES
    assert clip_windows(x, hop=SR).shape == (11, CLIP_SAMPLES)       # 10 s windows every 1 s
    assert clip_windows(x[:CLIP_SAMPLES]).shape == (1, CLIP_SAMPLES)
    pad = repeat_pad(np.array([1.0, 2.0, 3.0]), length=10)
    assert pad.tolist() == [1, 2, 3, 1, 2, 3, 1, 2, 3, 0]
    assert repeat_pad(np.ones(7), length=10).tolist() == [1] * 7 + [0] * 3  # longer than half: no repeat


def test_checkpoint_formats_and_model_detection(tmp_path, own_state):
    official_format = tmp_path / "official.pt"
    extra = {"text_branch.embeddings.word_embeddings.weight": torch.zeros(4, 8), "logit_scale_a": torch.tensor(2.6),
             "audio_branch.tscam_conv.weight": torch.zeros(527, 768, 2, 3), "audio_branch.head.bias": torch.zeros(527),
             "audio_branch.logmel_extractor.melW": mel_basis().clone(),
             "audio_branch.layers.0.blocks.1.attn_mask": torch.zeros(64, 64, 64)}
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in {**own_state, **extra}.items()}},
               official_format)
    plain = tmp_path / "plain.pt"
    torch.save(own_state, plain)
    a, b = ClapBackbone(checkpoint=official_format), ClapBackbone(checkpoint=plain, model="HTSAT-tiny")
    assert a.model == b.model == "HTSAT-tiny" and a.describe()["config"]["model"] == "HTSAT-tiny"
    for loaded in (a, b):
        state = loaded.encoder.state_dict()
        assert state.keys() == own_state.keys()
        assert all(torch.equal(state[k], own_state[k]) for k in state)
    assert a.embed(_music(3.0, seed=6), SR).shape == (1, 512)
    assert a.weights_id != b.weights_id  # different files
    with pytest.raises(EmbeddingError, match="holds a HTSAT-tiny audio encoder, not HTSAT-base"):
        ClapBackbone(checkpoint=plain, model="HTSAT-base")
    base = {k: v for k, v in ClapAudioEncoder("HTSAT-base").state_dict().items()}
    assert detect_model(base) == "HTSAT-base" and MODELS["HTSAT-base"].num_features == 1024
    assert base["audio_projection.0.weight"].shape == (512, 1024)


def test_fad_builds_clap_from_backbone_options(tmp_path, own_state):
    from benchmark.metrics.fad import FAD

    ckpt = tmp_path / "630k-audioset-best.pt"
    torch.save({"state_dict": own_state}, ckpt)
    fad = FAD(backbone="clap", backbone_options={"checkpoint": str(ckpt), "hop_seconds": 5.0}, cache=False)
    assert isinstance(fad.backbone, ClapBackbone) and fad.backbone.config()["hop_seconds"] == 5.0
    assert fad.embed_clip(_music(4.0, sr=44100), 44100).shape == (1, 512)  # the end-to-end run: test_evaluate


def test_clear_errors(tmp_path, own_state):
    with pytest.raises(EmbeddingError, match="needs a local checkpoint"):
        create_backbone("clap")
    with pytest.raises(EmbeddingError, match=r"630k-audioset-best\.pt: LAION-CLAP checkpoint not found.*"
                                             r"huggingface\.co/lukewys/laion_clap"):
        create_backbone("clap", checkpoint=tmp_path / "630k-audioset-best.pt")
    wrong = tmp_path / "vggish.pt"
    torch.save({"features.0.weight": torch.zeros(3)}, wrong)
    with pytest.raises(EmbeddingError, match="not a LAION-CLAP checkpoint.*features.0.weight"):
        ClapBackbone(checkpoint=wrong)
    incomplete = tmp_path / "incomplete.pt"
    torch.save({k: v for k, v in own_state.items() if not k.startswith("audio_projection.2")}, incomplete)
    with pytest.raises(EmbeddingError, match=r"missing \['audio_projection.2.bias'"):
        ClapBackbone(checkpoint=incomplete)
    fusion = tmp_path / "630k-fusion-best.pt"
    torch.save({**own_state, "audio_branch.patch_embed.mel_conv2d.weight": torch.zeros(1)}, fusion)
    with pytest.raises(EmbeddingError, match="fusion LAION-CLAP checkpoint"):
        ClapBackbone(checkpoint=fusion)
    reshaped = tmp_path / "reshaped.pt"
    torch.save({**own_state, "audio_projection.0.weight": torch.zeros(512, 10)}, reshaped)
    with pytest.raises(EmbeddingError, match="size mismatch"):
        ClapBackbone(checkpoint=reshaped)
    bad_mel = tmp_path / "bad_mel.pt"
    torch.save({**own_state, "audio_branch.logmel_extractor.melW": 2 * mel_basis()}, bad_mel)
    with pytest.raises(EmbeddingError, match="mel filterbank"):
        ClapBackbone(checkpoint=bad_mel)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(EmbeddingError, match="cannot read"):
        ClapBackbone(checkpoint=garbage)
