"""DAC, the Descript Audio Codec (Kumar et al., 2023), from a released ``.pth`` file on disk.

Our own implementation of the DAC architecture (``descript-audio-codec`` 1.0.0, MIT): the
package cannot be a runtime dependency here, because ``import dac`` imports
``descript-audiotools``, which imports torchaudio (broken CUDA wheels on CPU machines),
tensorboard, ffmpy, IPython and more. The network is small and plain, so it is written out
below with the package's module layout and parameter names, and loads the released state dict
*strictly* (every key, every shape). ``tests/baselines/test_dac.py`` checks it against the
package's own ``dac.DAC`` with the same random weights.

Weights (code and weights MIT), from the package's release page
https://github.com/descriptinc/descript-audio-codec/releases, never downloaded here:

- ``0.0.1/weights.pth``: 44.1 kHz, 9 codebooks of 1024 (7.75 kbps), the package's default;
- ``1.0.0/weights_44khz_16kbps.pth``, ``0.0.4/weights_24khz.pth``, ``0.0.5/weights_16khz.pth``.

The architecture (rates, widths, codebooks) is read from the file's ``metadata["kwargs"]``, as
the package's ``DAC.load`` does.

Conventions
-----------
- **Latents** (``encode``) are the encoder's continuous output *before* quantisation,
  ``[batch, latent_dim, frames]`` (44.1 kHz model: 1024-d at 44100 / 512 = 86.13 Hz,
  compression ratio 0.5): the standard choice for probing a quantised codec, as for
  ``snac`` and ``encodec``. The input is zero-padded at the end to a multiple of the hop
  (512), as the package's ``DAC.preprocess`` does.
- **Decoding** is the codec's real reconstruction path: residual vector quantisation with the
  first ``n_codebooks`` codebooks (the bitrate: ``n_codebooks`` x 10 bits x 86.13 Hz =
  0.86 kbps per codebook at 44.1 kHz; default all of them), then the decoder - the
  package's ``DAC.encode(x, n_quantizers)`` / ``DAC.decode(z)`` in eval mode. ``decode``
  returns ``frames * hop`` samples; the pipeline trims to the input length. Deterministic.
- The package's ``compress``/``decompress`` (chunked inference with loudness normalisation
  to -16 LUFS, for files) are not used: the model is applied to the whole item, like DAC's
  ``forward`` and its own evaluation.
- DAC is mono: the pipeline resamples to ``info.sample_rate`` and back and codes channels
  separately, as for every mono codec.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.codecs.protocol import Codec, CodecError, CodecInfo, check_audio_batch, check_latents
from benchmark.data.audio import file_hash
from baselines.weights_file import load_named_file

RELEASES = "https://github.com/descriptinc/descript-audio-codec/releases"
DEFAULT_URL = f"{RELEASES}/download/0.0.1/weights.pth"
CODE_LICENSE = "MIT (descript-audio-codec 1.0.0; our implementation of its architecture)"
WEIGHTS_LICENSE = "MIT (descript-audio-codec releases)"

#: ``dac.DAC`` constructor arguments (and their defaults: the 44.1 kHz 8 kbps model).
DEFAULT_CONFIG: dict[str, Any] = {
    "encoder_dim": 64, "encoder_rates": [2, 4, 8, 8], "latent_dim": None, "decoder_dim": 1536,
    "decoder_rates": [8, 8, 4, 2], "n_codebooks": 9, "codebook_size": 1024, "codebook_dim": 8,
    "sample_rate": 44100,
}


# ------------------------------------------------------------------------------------------
# the architecture (module names follow the package's, so its state dict loads as it is)
# ------------------------------------------------------------------------------------------
class WNConv1d(nn.Module):
    """A weight-normalised (transposed) 1-d convolution: ``weight = g * v / ||v||``, the norm
    taken over every axis but the first, as ``torch.nn.utils.weight_norm(conv)`` (``dim=0``),
    whose parameter names (``weight_g``, ``weight_v``, ``bias``) it keeps."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, transpose: bool = False,
                 bias: bool = True) -> None:
        super().__init__()
        shape = (in_channels, out_channels, kernel_size) if transpose else (
            out_channels, in_channels, kernel_size)
        v = torch.randn(shape) * 0.02
        self.weight_g = nn.Parameter(v.norm(dim=(1, 2), keepdim=True))
        self.weight_v = nn.Parameter(v)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.stride, self.padding, self.dilation, self.transpose = stride, padding, dilation, transpose

    def weight(self) -> torch.Tensor:
        v = self.weight_v
        return v * (self.weight_g / v.norm(dim=(1, 2), keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = F.conv_transpose1d if self.transpose else F.conv1d
        return conv(x, self.weight(), self.bias, stride=self.stride, padding=self.padding,
                    dilation=self.dilation)


class Snake1d(nn.Module):
    """Snake activation ``x + sin(alpha x)^2 / (alpha + 1e-9)``, one ``alpha`` per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(dim), WNConv1d(dim, dim, 7, dilation=dilation, padding=3 * dilation),
            Snake1d(dim), WNConv1d(dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)  # "same" padding: no crop needed


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, stride: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            *(ResidualUnit(dim // 2, d) for d in (1, 3, 9)), Snake1d(dim // 2),
            WNConv1d(dim // 2, dim, 2 * stride, stride=stride, padding=math.ceil(stride / 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Encoder(nn.Module):
    """``[batch, 1, samples]`` -> ``[batch, d_latent, samples / prod(strides)]``."""

    def __init__(self, d_model: int, strides: Sequence[int], d_latent: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [WNConv1d(1, d_model, 7, padding=3)]
        for stride in strides:
            d_model *= 2
            layers.append(EncoderBlock(d_model, stride))
        layers += [Snake1d(d_model), WNConv1d(d_model, d_latent, 3, padding=1)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DecoderBlock(nn.Module):
    def __init__(self, input_dim: int, output_dim: int, stride: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(input_dim),
            WNConv1d(input_dim, output_dim, 2 * stride, stride=stride,
                     padding=math.ceil(stride / 2), transpose=True),
            *(ResidualUnit(output_dim, d) for d in (1, 3, 9)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Decoder(nn.Module):
    """``[batch, latent_dim, frames]`` -> ``[batch, 1, frames * prod(rates)]`` in [-1, 1]."""

    def __init__(self, input_channel: int, channels: int, rates: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = [WNConv1d(input_channel, channels, 7, padding=3)]
        for i, stride in enumerate(rates):
            layers.append(DecoderBlock(channels // 2 ** i, channels // 2 ** (i + 1), stride))
        out = channels // 2 ** len(rates)
        layers += [Snake1d(out), WNConv1d(out, 1, 7, padding=3), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class VectorQuantize(nn.Module):
    """One factorised, l2-normalised codebook (ViT-VQGAN): project to ``codebook_dim``, pick
    the codeword of highest cosine similarity, project back."""

    def __init__(self, input_dim: int, codebook_size: int, codebook_dim: int) -> None:
        super().__init__()
        self.in_proj = WNConv1d(input_dim, codebook_dim, 1)
        self.out_proj = WNConv1d(codebook_dim, input_dim, 1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def codes(self, residual: torch.Tensor) -> torch.Tensor:
        """``[batch, input_dim, frames]`` -> indices ``[batch, frames]``."""
        z_e = self.in_proj(residual)
        e = F.normalize(z_e.transpose(1, 2).reshape(-1, z_e.shape[1]))
        c = F.normalize(self.codebook.weight)
        # the package's distance expression, so that near-ties break the same way
        dist = e.pow(2).sum(1, keepdim=True) - 2 * e @ c.t() + c.pow(2).sum(1, keepdim=True).t()
        return (-dist).max(1)[1].reshape(z_e.shape[0], z_e.shape[2])

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """Indices ``[batch, frames]`` -> ``[batch, input_dim, frames]``."""
        return self.out_proj(F.embedding(codes, self.codebook.weight).transpose(1, 2))


class ResidualVectorQuantize(nn.Module):
    def __init__(self, input_dim: int, n_codebooks: int, codebook_size: int,
                 codebook_dim: int | Sequence[int]) -> None:
        super().__init__()
        dims = [codebook_dim] * n_codebooks if isinstance(codebook_dim, int) else list(codebook_dim)
        self.quantizers = nn.ModuleList(VectorQuantize(input_dim, codebook_size, d) for d in dims)

    def encode(self, z: torch.Tensor, n_q: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantised ``z`` (sum of the first ``n_q`` levels) and codes ``[batch, n_q, frames]``."""
        residual, z_q, codes = z, torch.zeros_like(z), []
        for quantizer in self.quantizers[:n_q]:
            idx = quantizer.codes(residual)
            z_q_i = quantizer.dequantize(idx)
            z_q, residual = z_q + z_q_i, residual - z_q_i
            codes.append(idx)
        return z_q, torch.stack(codes, 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[batch, n_q, frames]`` -> the quantised latent ``[batch, input_dim, frames]``."""
        return sum(self.quantizers[i].dequantize(codes[:, i]) for i in range(codes.shape[1]))


class DACModel(nn.Module):
    """The DAC generator (encoder, residual VQ, decoder); arguments as ``dac.DAC``'s."""

    def __init__(self, encoder_dim: int = 64, encoder_rates: Sequence[int] = (2, 4, 8, 8),
                 latent_dim: int | None = None, decoder_dim: int = 1536,
                 decoder_rates: Sequence[int] = (8, 8, 4, 2), n_codebooks: int = 9,
                 codebook_size: int = 1024, codebook_dim: int | Sequence[int] = 8,
                 sample_rate: int = 44100) -> None:
        super().__init__()
        self.latent_dim = latent_dim or encoder_dim * 2 ** len(encoder_rates)
        self.hop_length = math.prod(encoder_rates)
        self.sample_rate, self.n_codebooks, self.codebook_size = sample_rate, n_codebooks, codebook_size
        self.encoder = Encoder(encoder_dim, encoder_rates, self.latent_dim)
        self.quantizer = ResidualVectorQuantize(self.latent_dim, n_codebooks, codebook_size,
                                                codebook_dim)
        self.decoder = Decoder(self.latent_dim, decoder_dim, decoder_rates)

    def preprocess(self, audio: torch.Tensor) -> torch.Tensor:
        """Zero-pad ``[..., samples]`` at the end to a multiple of the hop."""
        return F.pad(audio, (0, -audio.shape[-1] % self.hop_length))


# ------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------
def _missing(weights: str | None) -> CodecError:
    where = "no path given" if weights is None else f"{weights} does not exist"
    return CodecError(
        f"dac: weights needed ({where}). Download a DAC weights file ({WEIGHTS_LICENSE}), e.g. "
        f"the 44.1 kHz model {DEFAULT_URL} (others: {RELEASES}), and pass "
        "weights=/local/path/weights.pth; nothing is downloaded at run time")


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(model kwargs, state dict)`` of a DAC ``.pth`` file (``{"state_dict", "metadata":
    {"kwargs"}}``, as written by the package's ``DAC.save``)."""
    ckpt = load_named_file(path)  # the released files' metadata may pickle training logs
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CodecError(f"dac: {path} is not a DAC weights file (no 'state_dict'; expected "
                         "the {'state_dict', 'metadata'} dict that dac.DAC.save writes)")
    kwargs = dict((ckpt.get("metadata") or {}).get("kwargs") or {})
    config = {k: kwargs.get(k, v) for k, v in DEFAULT_CONFIG.items()}
    return config, ckpt["state_dict"]


def load_model(path: str | Path) -> tuple[DACModel, dict[str, Any]]:
    """Our :class:`DACModel` with the weights of a DAC ``.pth`` file, in eval mode, and its
    config. Raises a :class:`CodecError` naming the file on any key or shape mismatch."""
    path = Path(path)
    try:
        config, state = read_checkpoint(path)
        model = DACModel(**config)
        model.load_state_dict(state, strict=True)
    except CodecError:
        raise
    except Exception as exc:  # noqa: BLE001 - unpickling or key/shape mismatch: name the file
        raise CodecError(f"dac: cannot load {path} as a DAC model: {exc}") from exc
    return model.eval(), config


class DACCodec(Codec):
    """DAC from a local ``.pth`` file.

    Parameters
    ----------
    weights: path of a DAC weights file (e.g. ``weights.pth`` from
        https://github.com/descriptinc/descript-audio-codec/releases/download/0.0.1/weights.pth;
        MIT).
    n_codebooks: codebooks used in decoding (the bitrate: 0.86 kbps each at 44.1 kHz); default
        all of the model's.
    device: torch device.
    """

    name = "dac"
    version = "1"

    def __init__(self, weights: str | None = None, n_codebooks: int | None = None,
                 device: str = "cpu") -> None:
        if weights is None or not Path(weights).is_file():
            raise _missing(weights)
        weights = Path(weights)
        model, config = load_model(weights)
        n_q = model.n_codebooks if n_codebooks is None else int(n_codebooks)
        if not 1 <= n_q <= model.n_codebooks:
            raise CodecError(f"dac: n_codebooks={n_codebooks} must be between 1 and the "
                             f"model's {model.n_codebooks}")
        super().__init__(n_codebooks=n_q, model_config=config)
        self.model, self.n_q, self.hop = model, n_q, model.hop_length
        self.device = torch.device("cpu")
        self.to(device)

        sr = int(model.sample_rate)
        frame_rate = sr / self.hop
        kbps = n_q * math.log2(model.codebook_size) * frame_rate / 1000
        self.info = CodecInfo(
            name=self.name, sample_rate=sr, latent_dim=int(model.latent_dim),
            latent_rate_hz=frame_rate, stochastic=False, bitrate_kbps=kbps,
            code_license=CODE_LICENSE, weights_license=WEIGHTS_LICENSE,
            weights_id=file_hash(weights),
            parameters=sum(p.numel() for p in model.parameters()),
            description=f"DAC {sr / 1000:g} kHz ({weights.name}) at {kbps:.2f} kbps ({n_q} of "
                        f"{model.n_codebooks} codebooks x {math.log2(model.codebook_size):g} bits "
                        f"at {frame_rate:.2f} Hz); latents = encoder output before quantisation")

    def to(self, device: str | torch.device) -> "DACCodec":
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    # -- protocol -----------------------------------------------------------------------------
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """``[batch, samples]`` -> continuous latents ``[batch, latent_dim, ceil(samples / hop)]``."""
        audio = torch.as_tensor(audio)
        check_audio_batch(audio, self.info.name, allow_empty=False)
        with torch.inference_mode():
            return self.model.encoder(self.model.preprocess(audio.float().to(self.device)[:, None]))

    def codes(self, latents: torch.Tensor) -> torch.Tensor:
        """The codes of ``latents`` with ``n_codebooks`` codebooks: ``[batch, n_q, frames]``
        (the ``codes`` of the package's ``DAC.encode(x, n_quantizers)``)."""
        check_latents(latents, self.info.name, self.info.latent_dim)
        with torch.inference_mode():
            return self.model.quantizer.encode(latents.float().to(self.device), self.n_q)[1]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Quantise ``[batch, latent_dim, frames]`` with ``n_codebooks`` codebooks and decode:
        ``[batch, frames * hop]``."""
        check_latents(latents, self.info.name, self.info.latent_dim)
        with torch.inference_mode():
            z_q, _ = self.model.quantizer.encode(latents.float().to(self.device), self.n_q)
            return self.model.decoder(z_q)[:, 0]

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[batch, n_q, frames]`` -> audio ``[batch, frames * hop]``."""
        with torch.inference_mode():
            return self.model.decoder(self.model.quantizer.decode(codes.to(self.device)))[:, 0]
