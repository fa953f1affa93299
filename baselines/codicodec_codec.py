"""CoDiCodec (Pasini et al., Sony CSL, 2025) from the released checkpoint file on disk.

A thin adapter over the ``codicodec`` package (0.1.2; ``pip install --no-deps codicodec==0.1.2
einops``; plain torch, plus numpy, soundfile and librosa, which this project already has). The
package's ``EncoderDecoder`` always calls ``download_model()`` first (it fetches
``codicodec.pt`` from the Hugging Face Hub into the package folder); this adapter never calls
it: it builds the package's ``UNet`` itself, loads a user-given local ``codicodec.pt``
(https://huggingface.co/SonyCSLParis/codicodec, **CC BY-NC 4.0**, non-commercial) strictly, and
then uses the package's own ``EncoderDecoder.encode``/``decode``.

Conventions
-----------
- 48 kHz stereo, coded jointly (``info.channels = 2``): one item per call, the rows being its
  channels. A mono item is coded as (mono, mono), as the package does, and decoded to the mean
  of the two output channels. The latents of an item are repeated on each of its rows (rows
  stay channels; probing averages them, which leaves them unchanged); ``decode`` reads the
  first row.
- **Latents** (default): the continuous latents of ``EncoderDecoder.encode`` (64 channels;
  8 frames per chunk of 32 STFT frames of hop 1024, i.e. 48000 / 32768 x 8 = 11.7 Hz).
  ``tokens=True``: the FSQ tokens of ``encode(discrete=True)`` instead (128 per chunk, each one
  of 11^4 = 14641 codes: 128 x log2(14641) bits x 1.46 chunks/s = 2.6 kbps at 48 kHz), stored
  as ``[rows, 128, chunks]`` integer-valued floats; ``decode`` decodes them as tokens.
- **Decoding** is the package's consistency decoder: ``mode="parallel"`` (default; all chunks
  at once) or ``"autoregressive"`` (chunk after chunk, with ``time_prompt``), ``steps``
  denoising steps (default the package's: 5 parallel, 2 autoregressive). It draws noise, so
  the codec is ``stochastic``; every ``decode`` draws it from ``seed``. The package's
  autoregressive decoder needs at least two chunks: a single chunk is padded with a blank one
  (zero latents, as its parallel decoder pads), and the output cut back to one chunk.
- The input is padded to whole chunks by the package (32768 samples); ``decode`` returns the
  padded length and the pipeline trims it.
- ``fp16``: the package runs its networks under float16 autocast by default, also on CPU,
  where it is ~10x slower than float32. Default here: float16 on CUDA only.
- Importing ``codicodec`` sets global torch flags (cuDNN benchmark, TF32, fp16 reduced-precision
  reductions) and ``TORCHINDUCTOR_CACHE_DIR`` (inside site-packages); :func:`import_codicodec`
  restores all of them after the import.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import torch

from benchmark.codecs.protocol import Codec, CodecError, CodecInfo, check_audio_batch, check_latents, check_one_item
from benchmark.data.audio import file_hash
from baselines.weights_file import load_named_file

WEIGHTS_URL = "https://huggingface.co/SonyCSLParis/codicodec/blob/main/codicodec.pt"
INSTALL = "pip install --no-deps codicodec==0.1.2 einops"
LICENSE = "CC BY-NC 4.0 (codicodec package)"
WEIGHTS_LICENSE = "CC BY-NC 4.0 (SonyCSLParis/codicodec; non-commercial)"
MODES = ("parallel", "autoregressive")

#: Global torch settings that ``import codicodec`` changes: (object path, attribute).
_FLAGS = (("backends.cudnn", "benchmark"), ("backends.cudnn", "allow_tf32"),
          ("backends.cuda.matmul", "allow_tf32"),
          ("backends.cuda.matmul", "allow_fp16_reduced_precision_reduction"))


def _resolve(path: str) -> Any:
    obj: Any = torch
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


@contextlib.contextmanager
def _torch_state_restored() -> Iterator[None]:
    """Restore the global torch flags and ``TORCHINDUCTOR_CACHE_DIR`` after the block."""
    saved = []
    for path, name in _FLAGS:
        with contextlib.suppress(AttributeError, RuntimeError):
            saved.append((path, name, getattr(_resolve(path), name)))
    env = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    try:
        yield
    finally:
        for path, name, value in saved:
            setattr(_resolve(path), name, value)
        if env is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = env


def import_codicodec() -> ModuleType:
    """``codicodec.inference``, imported with the global torch state it changes restored."""
    loaded = sys.modules.get("codicodec.inference")
    if loaded is not None:
        return loaded
    try:
        with _torch_state_restored():
            import codicodec.inference as inference
    except ImportError as exc:
        raise CodecError(f"codicodec: the 'codicodec' package is needed ({exc}); install it with "
                         f"`{INSTALL}` (its huggingface_hub dependency is only used for downloads, "
                         "which this codec never does)") from exc
    return inference


@contextlib.contextmanager
def _precision(fp16: bool) -> Iterator[None]:
    """The package's autocast switch (a module global of ``codicodec.utils``), set for the block."""
    utils = sys.modules["codicodec.utils"]
    old = utils.mixed_precision
    utils.mixed_precision = fp16
    try:
        yield
    finally:
        utils.mixed_precision = old


def load_encoder_decoder(path: Path, device: torch.device) -> Any:
    """The package's ``EncoderDecoder`` with the weights of a local ``codicodec.pt``, without
    its ``download_model()`` call."""
    inference = import_codicodec()
    try:
        ckpt: Any = load_named_file(path)
        if not isinstance(ckpt, dict) or "gen_state_dict" not in ckpt:
            raise ValueError("no 'gen_state_dict' in the file")
        gen = inference.UNet()
        gen.load_state_dict(ckpt["gen_state_dict"], strict=True)
    except Exception as exc:  # noqa: BLE001 - unpickling or key/shape mismatch: name the file
        raise CodecError(f"codicodec: cannot load {path} as the CoDiCodec model: {exc}") from exc
    coder = inference.EncoderDecoder.__new__(inference.EncoderDecoder)  # skips download_model()
    coder.device, coder.load_path_inference = device, str(path)
    coder.gen = gen.to(device).eval()
    coder.latents_per_timestep = inference.num_latents
    coder.bottleneck_channels = inference.bottleneck_channels
    coder.past_spec = coder.past_latents = None
    return coder


class CoDiCodecCodec(Codec):
    """CoDiCodec from a local ``codicodec.pt``.

    Parameters
    ----------
    weights: path of ``codicodec.pt`` (https://huggingface.co/SonyCSLParis/codicodec; CC BY-NC 4.0).
    mode: ``"parallel"`` or ``"autoregressive"`` decoding.
    steps: denoising steps (default the package's: 5 parallel, 2 autoregressive).
    tokens: latents are the FSQ tokens (the discrete codec) instead of the continuous latents.
    time_prompt: noise level of the past chunk in autoregressive decoding (default the package's).
    seed: seed of the decoder's noise; every ``decode`` restarts from it.
    fp16: float16 autocast (the package's default); default on CUDA only.
    device: torch device.
    """

    name = "codicodec"
    version = "1"

    def __init__(self, weights: str | None = None, mode: str = "parallel", steps: int | None = None,
                 tokens: bool = False, time_prompt: float | None = None, seed: int = 0,
                 fp16: bool | None = None, device: str = "cpu") -> None:
        if weights is None or not Path(weights).is_file():
            where = "no path given" if weights is None else f"{weights} does not exist"
            raise CodecError(f"codicodec: weights needed ({where}). Download codicodec.pt "
                             f"({WEIGHTS_LICENSE}) from {WEIGHTS_URL} and pass "
                             "weights=/local/path/codicodec.pt; nothing is downloaded at run time")
        if mode not in MODES:
            raise CodecError(f"codicodec: mode must be one of {MODES}, got {mode!r}")
        inference = import_codicodec()
        default_steps = (inference.default_denoising_steps_parallel if mode == "parallel"
                         else inference.default_denoising_steps_ar)
        steps = default_steps if steps is None else int(steps)
        if steps < 1:
            raise CodecError(f"codicodec: steps must be >= 1, got {steps}")
        weights = Path(weights)
        super().__init__(mode=mode, steps=steps, tokens=bool(tokens), time_prompt=time_prompt,
                         seed=int(seed), fp16=fp16)
        self.mode, self.steps, self.tokens, self.seed = mode, steps, bool(tokens), int(seed)
        self.time_prompt = time_prompt
        self.device = torch.device(device)
        self.fp16 = self.device.type == "cuda" if fp16 is None else bool(fp16)
        self.coder = load_encoder_decoder(weights, self.device)

        sr = int(inference.sample_rate)
        chunk = inference.spec_length * inference.hop  # samples per chunk (32 x 1024)
        per_chunk = inference.num_latents * inference.bottleneck_channels // 64
        bits = math.log2(self.coder.gen.fsq.codebook_size)
        kbps = inference.num_latents * bits * sr / chunk / 1000
        self.info = CodecInfo(
            name=self.name, sample_rate=sr, channels=2,
            latent_dim=inference.num_latents if self.tokens else 64,
            latent_rate_hz=sr / chunk * (1 if self.tokens else per_chunk),
            stochastic=True, decode_steps=steps, bitrate_kbps=kbps if self.tokens else None,
            code_license=LICENSE, weights_license=WEIGHTS_LICENSE, weights_id=file_hash(weights),
            parameters=sum(p.numel() for p in self.coder.gen.parameters()),
            description=f"CoDiCodec 48 kHz stereo ({weights.name}), {mode} decoding, {steps} steps; "
                        + (f"latents = FSQ tokens ({kbps:.2f} kbps)" if self.tokens else
                           "latents = continuous (64-d)"))
        self.chunk, self.coder_hop = chunk, int(inference.hop)

    def to(self, device: str | torch.device) -> "CoDiCodecCodec":
        self.device = torch.device(device)
        self.coder.device = self.device
        self.coder.gen.to(self.device)
        return self

    # -- protocol -----------------------------------------------------------------------------
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """One item's channels ``[rows (1 or 2), samples]`` -> ``[rows, 64, 8 x chunks]``
        continuous latents (or ``[rows, 128, chunks]`` tokens)."""
        audio = torch.as_tensor(audio)
        check_audio_batch(audio, self.info.name, allow_empty=False)
        rows = check_one_item(audio, self.info.name)
        x = audio.float().to(self.device).expand(2, -1).contiguous()  # mono -> (mono, mono)
        with _precision(self.fp16), torch.inference_mode():
            z = self.coder.encode(x, discrete=self.tokens)
        if self.tokens:  # [chunks, 128] indices
            z = z.T.float()
        else:  # [chunks, 8, 64]
            z = z.reshape(-1, z.shape[-1]).T.float()
        return z[None].expand(rows, -1, -1).clone()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[rows, dim, frames]`` (the first row is decoded) -> ``[rows, samples]``: the stereo
        pair, or its mean for a mono item (``samples``: whole chunks)."""
        check_latents(latents, self.info.name, self.info.latent_dim)
        rows = check_one_item(latents, self.info.name, "latent rows")
        z = latents[0].to(self.device)
        if self.tokens:
            z = z.round().long().T.contiguous()
        else:
            if z.shape[1] % 8:
                raise CodecError(f"{self.info.name}: {z.shape[1]} latent frames is not a multiple of 8 "
                                 "(frames per chunk); use latents from encode()")
            z = z.float().T.reshape(-1, 8, z.shape[0]).contiguous()
        single = self.mode == "autoregressive" and z.shape[0] == 1
        if single:  # the package's autoregressive decoder needs 2 chunks: pad as its parallel one does
            blank = (torch.zeros_like(z) if not self.tokens else
                     self.coder.gen.fsq.codes_to_indexes(torch.zeros(1, z.shape[1], 4, device=self.device)).long())
            z = torch.cat([z, blank])
        devices = [self.device] if self.device.type == "cuda" else []
        with _precision(self.fp16), torch.inference_mode(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            y = self.coder.decode(z, mode=self.mode, denoising_steps=self.steps,
                                  time_prompt=self.time_prompt)
        y = torch.as_tensor(y).float()
        if single:  # the first chunk's STFT frames and the last frame's tail, as for one chunk in parallel
            y = y[:, :self.chunk + self.coder_hop]
        return y if rows == 2 else y.mean(0, keepdim=True)
