"""The Stable Audio Open VAE ("oobleck", Evans et al., 2024) from the released weights on disk.

Our own implementation of the oobleck autoencoder of ``stable-audio-tools`` (0.0.20, MIT): the
package cannot be a runtime dependency here (its wheel declares Python < 3.11, pins
torch/torchaudio 2.7.1, and ``models/autoencoders.py`` imports torchaudio and the whole
diffusion stack). The network is plain (weight-normed convolutions, SnakeBeta activations, a
VAE bottleneck), so it is written out below with the package's module layout and parameter
names and loads the released tensors *strictly*. ``tests/baselines/test_stable_audio_oobleck.py``
checks it against the package's own ``AudioAutoencoder`` with the same random weights.

Weights: the Stable Audio Open 1.0 model file ``model.safetensors`` (4.85 GB; only the VAE's
tensors, prefixed ``pretransform.model.``, are read) from
https://huggingface.co/stabilityai/stable-audio-open-1.0 - gated: log in and accept the
**Stability AI Community License** (research and non-commercial use; commercial use only
for organisations under USD 1 M annual revenue, see the licence). Never downloaded here. A
file holding only the VAE (keys ``encoder.*``/``decoder.*``, or ``pretransform.model.*``), as
safetensors or a torch state dict, loads too. The architecture defaults to Stable Audio Open
1.0's; ``config=model_config.json`` (the repository's file) reads it from the pretransform's
config instead.

Conventions
-----------
- Stereo, coded jointly (``info.channels = 2``): the engine hands the codec one item per call,
  the rows being its channels. A stereo item's latent is one ``[64, frames]`` sequence at
  44100 / 2048 = 21.5 Hz, repeated on both rows (so that rows stay channels; probing averages
  them, which leaves it unchanged); ``decode`` reads the first row. A mono item is coded as
  the stereo pair (mono, mono) - what the package's ``prepare_audio`` does - and decoded to the
  mean of the two output channels.
- **Latents** (``encode``) are the VAE posterior's **mean** (deterministic): the encoder's
  128 channels are (mean, scale), and decoding the mean is the usual deterministic use.
  ``sample=True`` draws ``mean + (softplus(scale) + 1e-4) * noise`` as the package's
  ``VAEBottleneck`` does, with noise from ``seed`` (the same item gives the same draw);
  the codec is then ``stochastic``.
- The input is zero-padded at the end to a multiple of 2048 samples (the package does not pad
  in ``encode``; its ``preprocess_audio_for_encoder`` does); ``decode`` returns
  ``frames * 2048`` samples and the pipeline trims to the input length. The decoder has no
  final tanh (Stable Audio Open's config): its output is not bounded to [-1, 1].
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from baselines.dac_codec import WNConv1d
from benchmark.codecs.protocol import Codec, CodecError, CodecInfo, check_audio_batch, check_latents, check_one_item
from benchmark.data.audio import file_hash
from baselines.weights_file import load_named_file

REPO_URL = "https://huggingface.co/stabilityai/stable-audio-open-1.0"
WEIGHTS_URL = f"{REPO_URL}/blob/main/model.safetensors"
PREFIX = "pretransform.model."
CODE_LICENSE = "MIT (stable-audio-tools; our implementation of its oobleck autoencoder)"
WEIGHTS_LICENSE = ("Stability AI Community License (gated; non-commercial, commercial use only "
                   "under USD 1 M annual revenue)")

#: The VAE of Stable Audio Open 1.0 (its model_config.json, ``model.pretransform.config``).
SAO_CONFIG: dict[str, Any] = {
    "encoder": {"type": "oobleck", "config": {
        "in_channels": 2, "channels": 128, "c_mults": [1, 2, 4, 8, 16], "strides": [2, 4, 4, 8, 8],
        "latent_dim": 128, "use_snake": True}},
    "decoder": {"type": "oobleck", "config": {
        "out_channels": 2, "channels": 128, "c_mults": [1, 2, 4, 8, 16], "strides": [2, 4, 4, 8, 8],
        "latent_dim": 64, "use_snake": True, "final_tanh": False}},
    "bottleneck": {"type": "vae"}, "latent_dim": 64, "downsampling_ratio": 2048, "io_channels": 2,
}
SAMPLE_RATE = 44100


# ------------------------------------------------------------------------------------------
# the architecture (module names follow stable-audio-tools', so its tensors load as they are)
# ------------------------------------------------------------------------------------------
class SnakeBeta(nn.Module):
    """``x + sin(e^alpha x)^2 / (e^beta + 1e-9)``, log-scale ``alpha``, ``beta`` per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha[None, :, None].exp()
        beta = self.beta[None, :, None].exp()
        return x + (1.0 / (beta + 1e-9)) * torch.sin(x * alpha).pow(2)


def _activation(use_snake: bool, channels: int) -> nn.Module:
    return SnakeBeta(channels) if use_snake else nn.ELU()


class ResidualUnit(nn.Module):
    def __init__(self, channels: int, dilation: int, use_snake: bool) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            _activation(use_snake, channels),
            WNConv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation),
            _activation(use_snake, channels), WNConv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class EncoderBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, use_snake: bool) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *(ResidualUnit(in_channels, d, use_snake) for d in (1, 3, 9)),
            _activation(use_snake, in_channels),
            WNConv1d(in_channels, out_channels, 2 * stride, stride=stride,
                     padding=math.ceil(stride / 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DecoderBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, use_snake: bool) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            _activation(use_snake, in_channels),
            WNConv1d(in_channels, out_channels, 2 * stride, stride=stride,
                     padding=math.ceil(stride / 2), transpose=True),
            *(ResidualUnit(out_channels, d, use_snake) for d in (1, 3, 9)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _check_options(config: dict[str, Any], where: str) -> None:
    unsupported = {k: v for k, v in config.items()
                   if k in ("antialias_activation", "use_nearest_upsample") and v}
    if unsupported:
        raise CodecError(f"stable_audio_vae: {where} options {unsupported} are not implemented "
                         "(Stable Audio Open does not use them)")


class OobleckEncoder(nn.Module):
    def __init__(self, in_channels: int = 2, channels: int = 128, latent_dim: int = 32,
                 c_mults: Sequence[int] = (1, 2, 4, 8), strides: Sequence[int] = (2, 4, 8, 8),
                 use_snake: bool = False, **options: Any) -> None:
        super().__init__()
        _check_options(options, "encoder")
        mults = [1, *c_mults]
        layers: list[nn.Module] = [WNConv1d(in_channels, channels, 7, padding=3)]
        for i in range(len(mults) - 1):
            layers.append(EncoderBlock(mults[i] * channels, mults[i + 1] * channels, strides[i],
                                       use_snake))
        layers += [_activation(use_snake, mults[-1] * channels),
                   WNConv1d(mults[-1] * channels, latent_dim, 3, padding=1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class OobleckDecoder(nn.Module):
    def __init__(self, out_channels: int = 2, channels: int = 128, latent_dim: int = 32,
                 c_mults: Sequence[int] = (1, 2, 4, 8), strides: Sequence[int] = (2, 4, 8, 8),
                 use_snake: bool = False, final_tanh: bool = True, **options: Any) -> None:
        super().__init__()
        _check_options(options, "decoder")
        mults = [1, *c_mults]
        layers: list[nn.Module] = [WNConv1d(latent_dim, mults[-1] * channels, 7, padding=3)]
        for i in range(len(mults) - 1, 0, -1):
            layers.append(DecoderBlock(mults[i] * channels, mults[i - 1] * channels,
                                       strides[i - 1], use_snake))
        layers += [_activation(use_snake, channels),
                   WNConv1d(channels, out_channels, 7, padding=3, bias=False),
                   nn.Tanh() if final_tanh else nn.Identity()]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class OobleckVAE(nn.Module):
    """Encoder, VAE bottleneck and decoder of a stable-audio-tools ``AudioAutoencoder`` with
    oobleck encoder and decoder (``config``: its ``model`` section, e.g. :data:`SAO_CONFIG`)."""

    def __init__(self, config: dict[str, Any] = SAO_CONFIG) -> None:
        super().__init__()
        for part in ("encoder", "decoder"):
            if config.get(part, {}).get("type") != "oobleck":
                raise CodecError(f"stable_audio_vae: only oobleck encoders/decoders are supported, "
                                 f"the config's {part} is {config.get(part, {}).get('type')!r}")
        if (config.get("bottleneck") or {}).get("type") != "vae":
            raise CodecError(f"stable_audio_vae: only the VAE bottleneck is supported, got "
                             f"{config.get('bottleneck')!r}")
        self.encoder = OobleckEncoder(**config["encoder"]["config"])
        self.decoder = OobleckDecoder(**config["decoder"]["config"])
        self.latent_dim = int(config["latent_dim"])
        self.ratio = int(config["downsampling_ratio"])
        self.io_channels = int(config["io_channels"])

    def posterior(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[batch, io_channels, samples]`` (a multiple of the ratio) -> the posterior's mean
        and standard deviation, each ``[batch, latent_dim, samples / ratio]``."""
        mean, scale = self.encoder(audio).chunk(2, dim=1)
        return mean, F.softplus(scale) + 1e-4


# ------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------
_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def read_safetensors(path: Path, keep=lambda key: True) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file whose names pass ``keep``, read one by one (a
    4.85 GB Stable Audio Open file costs only its VAE's 0.6 GB). The format: an 8-byte
    little-endian header length, a JSON header ``{name: {dtype, shape, data_offsets}}``,
    then the raw little-endian data."""
    out = {}
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        if size > 100_000_000:
            raise ValueError("not a safetensors file (header length out of range)")
        header = json.loads(fh.read(size))
        for name, entry in header.items():
            if name == "__metadata__" or not keep(name):
                continue
            dtype = _DTYPES.get(entry["dtype"])
            if dtype is None:
                raise ValueError(f"tensor {name}: dtype {entry['dtype']} not supported")
            begin, end = entry["data_offsets"]
            fh.seek(8 + size + begin)
            data = bytearray(fh.read(end - begin))
            out[name] = torch.frombuffer(data, dtype=dtype).reshape(entry["shape"]).clone() \
                if end > begin else torch.zeros(entry["shape"], dtype=dtype)
    return out


def read_vae_state(path: Path) -> dict[str, torch.Tensor]:
    """The VAE's tensors (``encoder.*``, ``decoder.*``) from a full Stable Audio Open model file
    (``pretransform.model.*``) or a VAE-only file, safetensors or a torch state dict."""
    with open(path, "rb") as fh:
        is_zip = fh.read(2) == b"PK"
    if is_zip or path.suffix in (".ckpt", ".pt", ".pth", ".bin"):
        state: Any = load_named_file(path)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    else:
        state = read_safetensors(path, keep=lambda k: k.startswith(PREFIX) or
                                 k.startswith(("encoder.", "decoder.")))
    if not isinstance(state, dict):
        raise ValueError(f"expected a state dict, got {type(state).__name__}")
    if any(k.startswith(PREFIX) for k in state):
        state = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    return {k: v.float() for k, v in state.items() if k.startswith(("encoder.", "decoder."))}


def read_config(path: Path) -> dict[str, Any]:
    """The autoencoder section of a stable-audio-tools ``model_config.json`` (the pretransform's
    ``config`` of a diffusion model, or the ``model`` of an autoencoder config) and its rate."""
    config = json.loads(path.read_text())
    model = config.get("model", {})
    ae = model.get("pretransform", {}).get("config", model)
    return {"model": ae, "sample_rate": int(config.get("sample_rate", SAMPLE_RATE))}


class StableAudioVAECodec(Codec):
    """The Stable Audio Open VAE from a local weights file.

    Parameters
    ----------
    weights: path of Stable Audio Open 1.0's ``model.safetensors`` (gated, Stability AI
        Community License: https://huggingface.co/stabilityai/stable-audio-open-1.0), or of a
        file holding only the VAE.
    config: optional ``model_config.json`` (the architecture; default Stable Audio Open 1.0's).
    sample: draw the latents from the VAE posterior (seeded by ``seed``) instead of its mean.
    seed: seed of the posterior's noise when ``sample``.
    device: torch device.
    """

    name = "stable_audio_vae"
    version = "1"

    def __init__(self, weights: str | None = None, config: str | None = None,
                 sample: bool = False, seed: int = 0, device: str = "cpu") -> None:
        if weights is None or not Path(weights).is_file():
            where = "no path given" if weights is None else f"{weights} does not exist"
            raise CodecError(
                f"stable_audio_vae: weights needed ({where}). Download model.safetensors of "
                f"Stable Audio Open 1.0 from {WEIGHTS_URL} (gated: log in and accept the "
                f"{WEIGHTS_LICENSE}) and pass weights=/local/path/model.safetensors; nothing is "
                "downloaded at run time")
        weights = Path(weights)
        if config is not None:
            try:
                spec = read_config(Path(config))
            except (OSError, ValueError) as exc:
                raise CodecError(f"stable_audio_vae: cannot read {config}: {exc}") from exc
        else:
            spec = {"model": SAO_CONFIG, "sample_rate": SAMPLE_RATE}
        super().__init__(sample=bool(sample), seed=int(seed), model_config=spec)
        model = OobleckVAE(spec["model"])
        try:
            state = read_vae_state(weights)
            if not state:
                raise ValueError(f"no VAE tensors ({PREFIX}encoder.* or encoder.*) in the file")
            model.load_state_dict(state, strict=True)
        except Exception as exc:  # noqa: BLE001 - unreadable file or key/shape mismatch: name it
            raise CodecError(f"stable_audio_vae: cannot load {weights} as the Stable Audio Open "
                             f"VAE: {exc}") from exc
        if model.io_channels != 2:
            raise CodecError("stable_audio_vae: only stereo (io_channels 2) models are supported")
        self.model = model.eval()
        self.sample, self.seed = bool(sample), int(seed)
        self.device = torch.device("cpu")
        self.to(device)
        sr = spec["sample_rate"]
        self.info = CodecInfo(
            name=self.name, sample_rate=sr, channels=2, latent_dim=model.latent_dim,
            latent_rate_hz=sr / model.ratio, stochastic=self.sample,
            code_license=CODE_LICENSE, weights_license=WEIGHTS_LICENSE,
            weights_id=file_hash(weights),
            parameters=sum(p.numel() for p in model.parameters()),
            description=f"Stable Audio Open VAE ({weights.name}): stereo, {model.latent_dim}-d at "
                        f"{sr / model.ratio:.2f} Hz; latents = the posterior's "
                        + (f"sample (seed {self.seed})" if self.sample else "mean"))

    def to(self, device: str | torch.device) -> "StableAudioVAECodec":
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    # -- protocol -----------------------------------------------------------------------------
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """One item's channels ``[channels (1 or 2), samples]`` -> its latent
        ``[channels, 64, ceil(samples / 2048)]`` (the same joint latent on every row)."""
        audio = torch.as_tensor(audio)
        check_audio_batch(audio, self.info.name, allow_empty=False)
        rows = check_one_item(audio, self.info.name)
        x = audio.float().to(self.device)[None].expand(1, 2, -1)  # mono -> (mono, mono)
        x = F.pad(x, (0, -x.shape[-1] % self.model.ratio))
        with torch.inference_mode():
            mean, std = self.model.posterior(x)
            z = mean
            if self.sample:
                noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(self.seed))
                z = mean + std * noise.to(self.device)
        return z.expand(rows, -1, -1).clone()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[rows, 64, frames]`` (rows: the item's channels; the first row is decoded) ->
        ``[rows, frames * 2048]``: the stereo pair, or its mean for a mono item."""
        check_latents(latents, self.info.name, self.info.latent_dim)
        rows = check_one_item(latents, self.info.name, "latent rows")
        with torch.inference_mode():
            y = self.model.decoder(latents[:1].float().to(self.device))[0]
        return y if rows == 2 else y.mean(0, keepdim=True)

