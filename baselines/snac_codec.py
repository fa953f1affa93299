"""SNAC (Siuzdak et al., 2024), the multi-scale neural audio codec, from released weights on disk.

Wraps the ``snac`` package (MIT; ``pip install --no-deps snac==1.2.1 einops``). The weights
are read from a local copy of a Hugging Face model repository - ``config.json`` and
``pytorch_model.bin`` - and are never downloaded:

================================  ========  ==========================================
repository                        rate      use (model card)
================================  ========  ==========================================
``hubertsiuzdak/snac_44khz``      44.1 kHz  music / sound effects, 2.6 kbps (default)
``hubertsiuzdak/snac_32khz``      32 kHz    music / sound effects, 1.9 kbps
``hubertsiuzdak/snac_24khz``      24 kHz    speech, 0.98 kbps
================================  ========  ==========================================

Conventions
-----------
- **Latents** (``encode``) are the encoder's continuous output *before* quantisation,
  ``[batch, latent_dim, frames]`` at ``sample_rate / hop`` Hz (44.1 kHz model: 1024-d at
  44100 / 384 = 114.8 Hz). They are larger than the waveform (compression ratio 0.375 for the
  44.1 kHz model): the codec's compression lives in its discrete codes (``codes()``), 12-bit
  indices at ``frame rate / stride`` for each level (strides 8, 4, 2, 1).
- **Decoding** is the codec's real reconstruction path: the latents are quantised to codes
  (``model.quantizer``) and the codes are decoded by the package's own ``SNAC.decode``. So
  ``decode(encode(x))`` is the package's ``decode(encode(x))``.
- The input is zero-padded at the end to a multiple of ``hop * lcm(stride[0], attention
  window)`` samples (12 288 for the 44.1 kHz model) as the package does; ``decode`` returns
  ``frames * hop`` samples and the pipeline trims to the input length.
- SNAC's decoder adds Gaussian noise (``NoiseBlock``) at inference, so the codec is flagged
  ``stochastic``. Every ``decode`` draws that noise from ``seed``, per batch item, so the same
  latents always give the same audio whatever the batch.
- Sample rate: the pipeline resamples to ``info.sample_rate`` and back, and codes channels
  separately (all SNAC models are mono), as for every codec.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Iterator

import torch

from benchmark.codecs.protocol import Codec, CodecError, CodecInfo, check_audio_batch, check_latents
from benchmark.data.audio import file_hash

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "pytorch_model.bin"
#: Released models by sample rate (Hugging Face repository ids).
HF_REPOS = {44100: "hubertsiuzdak/snac_44khz", 32000: "hubertsiuzdak/snac_32khz",
            24000: "hubertsiuzdak/snac_24khz"}
#: SHA-256 of released ``pytorch_model.bin`` files (Git LFS ids shown on the repository pages).
RELEASED_SHA256 = {
    "b0a676cbdc8d1cc53186f6d777bc956fb7932ceacdc657a4c3741646e9e7ead0": "hubertsiuzdak/snac_44khz",
}
INSTALL = "pip install --no-deps snac==1.2.1 einops"
CODE_LICENSE = "MIT (snac package)"
WEIGHTS_LICENSE = "MIT (Hugging Face model cards of hubertsiuzdak/snac_*)"


def _download_hint() -> str:
    repo = HF_REPOS[44100]
    return (f"download {CONFIG_FILE} and {WEIGHTS_FILE} from https://huggingface.co/{repo} "
            f"(https://huggingface.co/{repo}/resolve/main/{WEIGHTS_FILE}, and the same for "
            f"{CONFIG_FILE}; or snac_32khz / snac_24khz) into one folder and pass "
            "weights=/path/to/folder")


def resolve_files(weights: str | os.PathLike | None, config: str | os.PathLike | None = None
                  ) -> tuple[Path, Path]:
    """``(config.json, pytorch_model.bin)`` paths from a model folder or the weights file.

    ``weights`` is a folder holding both files (a local copy of the Hugging Face repository)
    or the path of ``pytorch_model.bin``; ``config`` overrides where ``config.json`` is read.
    Raises a :class:`CodecError` that names every missing file and where to download it.
    """
    if weights is None:
        raise CodecError(f"snac: weights needed (no path given); {_download_hint()}")
    weights = Path(weights)
    if weights.is_dir():
        weights_file = weights / WEIGHTS_FILE
        config_file = Path(config) if config is not None else weights / CONFIG_FILE
    else:
        weights_file = weights
        config_file = Path(config) if config is not None else weights.parent / CONFIG_FILE
    missing = [str(p) for p in (config_file, weights_file) if not p.is_file()]
    if missing:
        raise CodecError(f"snac: weights not found: {', '.join(missing)} does not exist; "
                         f"{_download_hint()}")
    return config_file, weights_file


def import_snac() -> type:
    """The package's ``SNAC`` class, or a :class:`CodecError` that says how to install it."""
    try:
        from snac import SNAC
    except ImportError as exc:
        raise CodecError(f"snac: the 'snac' package is needed ({exc}); install it with "
                         f"`{INSTALL}` (its huggingface-hub dependency is only used for "
                         "downloads, which this codec never does)") from exc
    return SNAC


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with the global RNG seeded, restoring the caller's RNG state afterwards
    (SNAC's ``NoiseBlock`` draws from the global generator, so no generator can be passed)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class SNACCodec(Codec):
    """SNAC from a local model folder.

    Parameters
    ----------
    weights: folder with ``config.json`` and ``pytorch_model.bin`` (a local copy of e.g.
        https://huggingface.co/hubertsiuzdak/snac_44khz), or the path of ``pytorch_model.bin``.
    config: path of ``config.json`` when it is not next to the weights.
    seed: seed of the decoder's noise; every ``decode`` call restarts from it.
    device: torch device.
    """

    name = "snac"
    version = "1"

    def __init__(self, weights: str | None = None, config: str | None = None, seed: int = 0,
                 device: str = "cpu") -> None:
        config_file, weights_file = resolve_files(weights, config)
        snac_cls = import_snac()
        try:
            model_config = json.loads(config_file.read_text())
        except (OSError, ValueError) as exc:
            raise CodecError(f"snac: cannot read {config_file}: {exc}") from exc
        # The architecture enters the identity through the config, the weights through their hash.
        super().__init__(seed=seed, model_config=model_config)
        self.seed = int(seed)
        try:
            model = snac_cls(**model_config)
        except (TypeError, ValueError) as exc:
            raise CodecError(f"snac: {config_file} is not a SNAC config: {exc}") from exc
        try:
            state = torch.load(weights_file, map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
        except Exception as exc:  # noqa: BLE001 - unpickling or key/shape mismatch: name the files
            raise CodecError(f"snac: cannot load {weights_file} into the model of {config_file}: "
                             f"{exc}") from exc
        self.model = model.eval()
        self.device = torch.device("cpu")
        self.to(device)

        sr, hop = int(model.sampling_rate), int(model.hop_length)
        # frames must be a multiple of the coarsest stride (avg-pooling) and of the attention
        # window (the local attention folds time into windows); the package pads to this.
        self.frame_multiple = math.lcm(model.vq_strides[0], model.attn_window_size or 1)
        frame_rate = sr / hop
        bits = math.log2(model.codebook_size)
        kbps = sum(bits * frame_rate / s for s in model.vq_strides) / 1000
        sha = file_hash(weights_file)
        origin = (f"released {RELEASED_SHA256[sha]} weights, SHA-256 verified"
                  if sha in RELEASED_SHA256 else
                  f"weights {weights_file.parent.name}/{weights_file.name}, SHA-256 {sha[:8]}, "
                  "not recognised as a release")
        self.info = CodecInfo(
            name=self.name, sample_rate=sr, latent_dim=int(model.latent_dim),
            latent_rate_hz=frame_rate, stochastic=bool(model_config.get("noise", True)),
            code_license=CODE_LICENSE, weights_license=WEIGHTS_LICENSE,
            weights_id=sha, parameters=sum(p.numel() for p in model.parameters()),
            description=f"SNAC {sr / 1000:g} kHz ({origin}): {len(model.vq_strides)} code "
                        f"levels, {kbps:.2f} kbps; latents = encoder output before quantisation")

    def to(self, device: str | torch.device) -> "SNACCodec":
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    # -- protocol -----------------------------------------------------------------------------
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """``[batch, samples]`` -> continuous latents ``[batch, latent_dim, frames]``, with
        ``frames = ceil(samples / (hop * frame_multiple)) * frame_multiple``."""
        audio = torch.as_tensor(audio)
        check_audio_batch(audio, self.info.name, allow_empty=False)
        with torch.inference_mode():
            x = self.model.preprocess(audio.float().to(self.device)[:, None, :])
            return self.model.encoder(x)

    def codes(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """The discrete codes of ``latents``: one ``[batch, frames / stride]`` tensor of
        indices per level, coarsest first (what the package's ``SNAC.encode`` returns)."""
        self._check_latents(latents)
        with torch.inference_mode():
            return self.model.quantizer(latents.float().to(self.device))[1]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Quantise ``[batch, latent_dim, frames]`` and decode: ``[batch, frames * hop]``."""
        codes = self.codes(latents)
        out = []
        with torch.inference_mode():
            for i in range(latents.shape[0]):
                with _seeded(self.seed, self.device):
                    out.append(self.model.decode([c[i:i + 1] for c in codes])[:, 0])
        return torch.cat(out)

    def _check_latents(self, latents: torch.Tensor) -> None:
        check_latents(latents, self.info.name, self.info.latent_dim)
        if latents.shape[2] % self.frame_multiple:
            raise CodecError(f"{self.info.name}: {latents.shape[2]} latent frames is not a "
                             f"multiple of {self.frame_multiple} (coarsest stride x attention "
                             "window); use latents from encode()")
