"""The ``dac`` codec (our implementation of DAC) against the package's own ``dac.DAC``.

The package builds a small DAC with random weights (the 44.1 kHz model's strides and hop, fewer
channels and codebooks), saves it with its own ``save`` in the released ``.pth`` format, and our
codec loads that file by path; the package reloads it with its own ``DAC.load``. Both must give
the same latents, codes and audio. ``import dac`` needs ``descript-audiotools``, which imports
torchaudio and tensorboard at module level: both are replaced by narrow placeholders for that
import only (nothing on the model path uses them). The error-message tests need no package.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
import warnings

import pytest
import torch

from baselines.dac_codec import DACModel
from benchmark.codecs import CodecError, create_codec
from benchmark.config import CodecSpec
from tests.baselines.test_external_codecs import check_pipeline_run, signals

needs_dac = pytest.mark.skipif(
    importlib.util.find_spec("dac") is None or importlib.util.find_spec("audiotools") is None,
    reason="pip install --no-deps descript-audio-codec==1.0.0 descript-audiotools==0.7.2 "
           "(and its small dependencies, see scripts/install.sh test)")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: The 44.1 kHz model's layout (hop 512, rates 2/4/8/8 and 8/8/4/2) with 1/8 of the encoder's
#: and 1/24 of the decoder's channels and 4 codebooks of 64, at 16 kHz (no resampling in the
#: pipeline test).
SMALL = {"encoder_dim": 8, "encoder_rates": [2, 4, 8, 8], "decoder_dim": 64,
         "decoder_rates": [8, 8, 4, 2], "n_codebooks": 4, "codebook_size": 64, "codebook_dim": 8,
         "sample_rate": 16000}


class _Placeholder(types.ModuleType):
    def __getattr__(self, name: str):
        raise AttributeError(f"{self.__name__}.{name}: a test placeholder (not installed here)")


@contextlib.contextmanager
def _stubbed_imports():
    """``torchaudio`` (and ``torch.utils.tensorboard`` where tensorboard is missing) as
    placeholders while ``dac`` is imported: audiotools imports both at module level, but the
    model path uses neither (torchaudio's wheels here are CUDA builds that do not load;
    ``SummaryWriter`` is only named at import)."""
    stubs: dict[str, types.ModuleType] = {"torchaudio": _Placeholder("torchaudio")}
    try:
        import torch.utils.tensorboard  # noqa: F401 - the test extras install tensorboard
    except ImportError:
        board = types.ModuleType("torch.utils.tensorboard")
        board.SummaryWriter = type("SummaryWriter", (), {})
        stubs["torch.utils.tensorboard"] = board
    added = [name for name in stubs if name not in sys.modules]
    for name in added:
        sys.modules[name] = stubs[name]
    try:
        yield
    finally:
        for name in added:
            if sys.modules.get(name) is stubs[name]:
                del sys.modules[name]


def import_dac():
    with _stubbed_imports(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation warnings of audiotools' dependencies
        import dac
    return dac


def random_dac(dac, config: dict, seed: int = 0):
    """The package's DAC with every parameter random: its own init, then Snake alphas in
    [0.5, 1.5] and small random biases (the package initialises both to constants)."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.nn.utils.weight_norm is deprecated
        model = dac.DAC(**config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("alpha"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                p.normal_(0, 0.01)
    return model


@pytest.fixture(scope="module")
def dac_file(tmp_path_factory):
    dac = import_dac()
    path = tmp_path_factory.mktemp("dac") / "weights.pth"
    random_dac(dac, SMALL).save(str(path), package=False)  # {"state_dict", "metadata": {"kwargs"}}
    return path


# ------------------------------------------------------------------------------------------
# errors (no package needed)
# ------------------------------------------------------------------------------------------
def test_dac_missing_weights_say_what_to_download(tmp_path):
    for weights in (None, str(tmp_path / "weights.pth")):
        with pytest.raises(CodecError, match="weights needed") as err:
            create_codec("dac", weights=weights)
        message = str(err.value)
        assert "https://github.com/descriptinc/descript-audio-codec/releases/download/0.0.1/weights.pth" in message
        assert "MIT" in message and "weights=" in message


def test_dac_rejects_a_file_that_is_not_dac(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(CodecError, match="not a DAC weights file"):
        create_codec("dac", weights=str(path))
    torch.save({"state_dict": {"x": torch.zeros(1)}, "metadata": {"kwargs": SMALL}}, path)
    with pytest.raises(CodecError, match=r"cannot load .*other\.pth"):
        create_codec("dac", weights=str(path))


# ------------------------------------------------------------------------------------------
# parity with the package
# ------------------------------------------------------------------------------------------
@needs_dac
def test_dac_matches_the_package(dac_file):
    dac = import_dac()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = dac.DAC.load(str(dac_file)).eval()  # the package's own loader
    codec = create_codec("dac", weights=str(dac_file))
    x = signals(16000)  # 8000 samples -> padded to 8192 = 16 frames of 512
    z = codec.encode(x)
    assert z.shape == (2, 128, 16)
    assert codec.info.latent_rate_hz == pytest.approx(16000 / 512)
    assert codec.info.bitrate_kbps == pytest.approx(4 * 6 * 16000 / 512 / 1000)
    assert codec.info.parameters == sum(p.numel() for p in reference.parameters())
    assert "MIT" in codec.info.weights_license and not codec.info.stochastic

    differences = {}
    with torch.inference_mode():
        audio = reference.preprocess(x[:, None], 16000)
        ref_z = reference.encoder(audio)
        differences["latents"] = (z - ref_z).abs().max().item()
        for n_q in (4, 2):
            ours = create_codec("dac", weights=str(dac_file), n_codebooks=n_q)
            ref_zq, ref_codes = reference.encode(audio, n_quantizers=n_q)[:2]
            codes = ours.codes(z)
            assert codes.shape == (2, n_q, 16) and torch.equal(codes, ref_codes)
            assert all(len(torch.unique(codes[:, k])) > 4 for k in range(n_q))  # varied codes
            y = ours.decode(z)
            assert y.shape == (2, 16 * 512)
            differences[f"decode, {n_q} codebooks"] = (y - reference.decode(ref_zq)[:, 0]).abs().max().item()
            differences[f"decode_codes, {n_q} codebooks"] = (
                ours.decode_codes(codes) - reference.decode(ref_zq)[:, 0]).abs().max().item()
        # the package's forward (pad, encode with all codebooks, decode, trim)
        full = reference(x[:, None], 16000)["audio"][:, 0]
        differences["forward"] = (codec.decode(z)[:, :x.shape[1]] - full).abs().max().item()
    print("dac parity, max |ours - package|:", differences)
    assert max(differences.values()) < 1e-5, differences
    assert (y - codec.decode(z)).abs().max() > 1e-3  # 2 codebooks are not 4


@needs_dac
def test_dac_default_architecture_matches_the_release_layout():
    """The default config (the 44.1 kHz release): the same state-dict keys and shapes as the
    package's ``dac.DAC()``, so the released file loads strictly, and its 76.7 M parameters."""
    dac = import_dac()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = dac.DAC()
    ours = DACModel()
    assert ({k: tuple(v.shape) for k, v in ours.state_dict().items()}
            == {k: tuple(v.shape) for k, v in reference.state_dict().items()})
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in reference.parameters())
    assert round(count / 1e6, 1) == 76.7
    assert (ours.hop_length, ours.latent_dim, ours.n_codebooks) == (512, 1024, 9)


@needs_dac
def test_dac_rejects_bad_options_and_latents(dac_file):
    with pytest.raises(CodecError, match="n_codebooks=5"):
        create_codec("dac", weights=str(dac_file), n_codebooks=5)
    codec = create_codec("dac", weights=str(dac_file), n_codebooks=3)
    assert codec.identity != create_codec("dac", weights=str(dac_file)).identity
    with pytest.raises(CodecError, match="channels"):
        codec.decode(torch.zeros(1, 64, 4))


@needs_dac
def test_dac_runs_through_the_pipeline(audio_folder, dac_file, tmp_path):
    check_pipeline_run(audio_folder, CodecSpec(name="dac", options={"weights": str(dac_file)}), tmp_path)
