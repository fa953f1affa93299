"""EnCodec 24 kHz (Défossez et al., 2022) from the released checkpoint file on disk.

Wraps the ``encodec`` package (0.1.1; ``pip install --no-deps encodec==0.1.1 einops``). The
weights are read from a local copy of ``encodec_24khz-d7cc33bc.th``
(https://dl.fbaipublicfiles.com/encodec/v0/encodec_24khz-d7cc33bc.th) and are never
downloaded. The file's SHA-256 is checked against the prefix in its official name: a file
that does not match is used, but ``info.description`` says it is not the released one.

Conventions
-----------
- **Latents** (``encode``) are the SEANet encoder's continuous output *before* quantisation,
  ``[batch, 128, ceil(samples / 320)]`` at 75 Hz (compression ratio 2.5).
- **Decoding** is the codec's real reconstruction path at ``bandwidth`` kbps: residual vector
  quantisation with the first ``bandwidth / 0.75`` codebooks (8 at the default 6 kbps; 2, 4,
  8, 16 or 32 at 1.5, 3, 6, 12, 24 kbps), then the decoder - the same calls as the package's
  ``EncodecModel.encode`` / ``decode``. ``decode`` returns ``frames * 320`` samples; the
  pipeline trims to the input length. Decoding is deterministic.
- The 24 kHz model is mono and causal (no segmenting, no loudness normalisation); the
  pipeline resamples to 24 kHz and back and codes channels separately, as for every codec.
- The 48 kHz stereo model (``encodec_48khz-7e698e3e.th``) is not supported: it codes 1 s
  segments with 1 % overlap, each with its own loudness scale, which has no single continuous
  latent sequence, and it models two channels jointly where the protocol folds channels
  into the batch.

Licence: ``encodec`` 0.1.1 as published on PyPI (code and the v0 weights released with it)
is CC BY-NC 4.0; the GitHub repository later relicensed its *code* to MIT. Treat the weights
as non-commercial.
"""

from __future__ import annotations

import sys
import types
import warnings
from pathlib import Path

import torch

from benchmark.codecs.protocol import Codec, CodecError, CodecInfo, check_audio_batch, check_latents
from benchmark.data.audio import file_hash

CHECKPOINT_24KHZ = "encodec_24khz-d7cc33bc.th"
CHECKPOINT_48KHZ = "encodec_48khz-7e698e3e.th"
ROOT_URL = "https://dl.fbaipublicfiles.com/encodec/v0/"
INSTALL = "pip install --no-deps encodec==0.1.1 einops"
LICENSE = "CC BY-NC 4.0 (encodec 0.1.1 release; repo code later MIT)"
WEIGHTS_LICENSE = "CC BY-NC 4.0 (released with encodec 0.1.x)"


class _TorchaudioPlaceholder(types.ModuleType):
    """Stands in for ``torchaudio`` while ``encodec`` is imported; any use raises."""

    def __getattr__(self, name: str):
        raise AttributeError(f"torchaudio.{name}: torchaudio is not available to encodec here "
                             "(only convert_audio/save_audio and the CLI use it, never this codec)")


def import_encodec_model() -> type:
    """The package's ``EncodecModel`` class, imported without torchaudio.

    ``encodec/utils.py`` imports torchaudio at module level, but the model path used here
    (encoder, quantiser, decoder) never calls it: only ``convert_audio``/``save_audio`` and
    the CLI do. torchaudio wheels that do not match the installed torch fail at import (the
    CUDA builds on CPU-only machines), so while ``encodec`` is imported - and only then - a
    placeholder module stands in for torchaudio in ``sys.modules``. It is removed afterwards,
    so any other code still sees the real torchaudio, or its absence. A torchaudio that is
    already imported is left alone.
    """
    loaded = sys.modules.get("encodec.model")
    if loaded is not None:
        return loaded.EncodecModel
    stub = "torchaudio" not in sys.modules
    if stub:
        sys.modules["torchaudio"] = _TorchaudioPlaceholder("torchaudio")
    try:
        from encodec.model import EncodecModel
    except ImportError as exc:
        raise CodecError(f"encodec: the 'encodec' package is needed ({exc}); install it with "
                         f"`{INSTALL}` (its torchaudio dependency is not needed)") from exc
    finally:
        if stub and isinstance(sys.modules.get("torchaudio"), _TorchaudioPlaceholder):
            del sys.modules["torchaudio"]
    return EncodecModel


def build_model_24khz() -> torch.nn.Module:
    """The package's 24 kHz EnCodec architecture with untrained weights, in eval mode."""
    encodec_model = import_encodec_model()
    with warnings.catch_warnings():  # encodec uses the deprecated torch.nn.utils.weight_norm
        warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)
        return encodec_model.encodec_model_24khz(pretrained=False)


class EnCodecCodec(Codec):
    """EnCodec 24 kHz from a local checkpoint.

    Parameters
    ----------
    weights: path of ``encodec_24khz-d7cc33bc.th`` (download it from
        https://dl.fbaipublicfiles.com/encodec/v0/encodec_24khz-d7cc33bc.th; CC BY-NC 4.0).
    bandwidth: target bitrate in kbps, one of 1.5, 3, 6, 12, 24 (codebooks used in decoding).
    device: torch device.
    """

    name = "encodec"
    version = "1"

    def __init__(self, weights: str | None = None, bandwidth: float = 6.0,
                 device: str = "cpu") -> None:
        if weights is None or not Path(weights).is_file():
            where = "no path given" if weights is None else f"{weights} does not exist"
            raise CodecError(
                f"encodec: weights needed ({where}). Download {CHECKPOINT_24KHZ} ("
                f"{WEIGHTS_LICENSE}, non-commercial) from {ROOT_URL}{CHECKPOINT_24KHZ} and pass "
                f"weights=/local/path/{CHECKPOINT_24KHZ}")
        weights = Path(weights)
        super().__init__(bandwidth=float(bandwidth))
        model = build_model_24khz()
        if float(bandwidth) not in model.target_bandwidths:
            raise CodecError(f"encodec: bandwidth {bandwidth} kbps is not one of the model's "
                             f"{model.target_bandwidths}")
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
        except Exception as exc:  # noqa: BLE001 - unpickling or key/shape mismatch: name the file
            hint = (" (the 48 kHz stereo model is not supported, see this module's docstring)"
                    if "48khz" in weights.name else "")
            raise CodecError(f"encodec: cannot load {weights} as the 24 kHz model "
                             f"({CHECKPOINT_24KHZ}){hint}: {exc}") from exc
        model.set_target_bandwidth(float(bandwidth))
        self.model = model.eval()
        self.bandwidth = float(bandwidth)
        self.n_q = model.quantizer.get_num_quantizers_for_bandwidth(model.frame_rate, self.bandwidth)
        self.hop = int(model.encoder.hop_length)
        self.device = torch.device("cpu")
        self.to(device)

        sha = file_hash(weights)
        expected = CHECKPOINT_24KHZ.split("-")[1].split(".")[0]
        origin = (f"released weights, SHA-256 prefix {expected} verified" if sha.startswith(expected) else
                  f"weights {weights.name}, NOT the released file (SHA-256 {sha[:8]} != {expected})")
        self.info = CodecInfo(
            name=self.name, sample_rate=int(model.sample_rate),
            latent_dim=int(model.encoder.dimension),
            latent_rate_hz=model.sample_rate / self.hop, stochastic=False,
            code_license=LICENSE, weights_license=WEIGHTS_LICENSE, weights_id=sha,
            parameters=sum(p.numel() for p in model.parameters()),
            description=f"EnCodec 24 kHz ({origin}) at {self.bandwidth:g} kbps ({self.n_q} "
                        f"codebooks x {model.bits_per_codebook} bits at {model.frame_rate} Hz); "
                        "latents = encoder output before quantisation")

    def to(self, device: str | torch.device) -> "EnCodecCodec":
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    # -- protocol -----------------------------------------------------------------------------
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """``[batch, samples]`` -> continuous latents ``[batch, 128, ceil(samples / 320)]``."""
        audio = torch.as_tensor(audio)
        check_audio_batch(audio, self.info.name, allow_empty=False)
        with torch.inference_mode():
            return self.model.encoder(audio.float().to(self.device)[:, None, :])

    def codes(self, latents: torch.Tensor) -> torch.Tensor:
        """The discrete codes of ``latents`` at ``bandwidth``: ``[batch, n_q, frames]``
        indices (the layout of the package's ``EncodecModel.encode`` frames)."""
        check_latents(latents, self.info.name, self.info.latent_dim)
        with torch.inference_mode():
            z = latents.float().to(self.device)
            return self.model.quantizer.encode(z, self.model.frame_rate, self.bandwidth).transpose(0, 1)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Quantise ``[batch, 128, frames]`` at ``bandwidth`` and decode: ``[batch, frames * 320]``."""
        codes = self.codes(latents)
        with torch.inference_mode():
            return self.model.decoder(self.model.quantizer.decode(codes.transpose(0, 1)))[:, 0]
