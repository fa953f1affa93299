"""LAION-CLAP audio encoder (Wu, Chen et al., ICASSP 2023) from a user-supplied checkpoint.

The second paper-standard FAD backbone (``FAD_clap``). Nothing is downloaded: pass the path of
a non-fusion LAION-CLAP checkpoint from https://huggingface.co/lukewys/laion_clap:

========================================  ===========  ==========================================
file                                      audio model  use
========================================  ===========  ==========================================
``630k-audioset-best.pt``                 HTSAT-tiny   the usual FAD-CLAP checkpoint
``630k-best.pt``                          HTSAT-tiny   trained on LAION-Audio-630K only
``music_audioset_epoch_15_esc_90.14.pt``  HTSAT-base   LAION's music checkpoint
========================================  ===========  ==========================================

The audio model is read off the checkpoint (``model=None``) or checked against ``model``.
Checkpoints as LAION releases them (``{"state_dict": {"module.audio_branch....": ...}}``),
without the ``state_dict`` wrapper or without the ``module.`` prefix all load; the text branch
and the unused classification head in them are ignored. Fusion checkpoints (``*-fusion-*``)
are refused: their audio path differs and FAD-CLAP uses the non-fusion model. Files are read
with ``torch.load(weights_only=True)``, and with ``weights_only=False`` when they pickle more
than tensors (as ``laion_clap`` always does): load only checkpoints you trust.

This is our own PyTorch implementation of the audio path of ``laion_clap`` 1.1.7
(``CLAP_Module(enable_fusion=False).get_audio_embedding_from_data``), written from the HTSAT
and Swin Transformer architectures; ``tests/embeddings/test_clap.py`` checks it against the
package with the same random weights. The package itself is not needed at run time (its
imports pull torchvision, transformers and hub downloads).

Preprocessing (per clip)
------------------------
1. mono audio resampled to 48 kHz (soxr);
2. 16-bit quantisation, ``int16(clip(x, -1, 1) * 32767) / 32767`` (as ``laion_clap`` does to
   every input; ``quantize=False`` skips it);
3. windows of 10 s (480 000 samples) every ``hop_seconds`` (default 10 s: non-overlapping, as
   the other backbones' patches), the incomplete tail dropped; a clip shorter than 10 s gives
   one window, repeat-padded as LAION pads short clips (tiled ``floor(480000 / n)`` times,
   then zero-padded to 10 s).

Network (per window)
--------------------
power STFT (1024-sample periodic Hann window, hop 480, centred with reflect padding; 1001
frames) -> 64 Slaney mel bands 50-14 000 Hz (librosa's filterbank; the copy stored in the
checkpoint when there is one, as ``laion_clap`` uses it) -> ``10 log10(max(., 1e-10))``
-> batch norm per mel band -> bicubic stretch of time to 1024 frames -> fold the four 256-frame
quarters on top of each other (a 256 x 256 image, quarter ``k`` in rows ``64k .. 64k + 63``) ->
4 x 4 patch embedding + layer norm -> four Swin stages (window 8, shifted windows in every
second block, relative position bias, patch merging between stages; HTSAT-tiny: width 96,
depths 2-2-6-2; HTSAT-base: width 128, depths 2-2-12-2; heads 4-8-16-32) -> layer norm ->
mean over all tokens -> audio projection (linear, ReLU, linear to 512) -> L2 normalisation.

Embedding: the 512-d L2-normalised joint-space vector of each window (what FAD-CLAP uses).
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data.audio import file_hash
from benchmark.embeddings.base import EmbeddingBackbone, EmbeddingError

SAMPLE_RATE = 48000
CLIP_SAMPLES = 480000  # 10 s
N_FFT = 1024
HOP = 480
N_MELS = 64
FMIN, FMAX = 50.0, 14000.0
AMIN = 1e-10
SPEC_SIZE = 256  # the Swin input is SPEC_SIZE x SPEC_SIZE
FREQ_RATIO = SPEC_SIZE // N_MELS  # 4 time quarters stacked along frequency
PATCH = 4
WINDOW = 8
MASK_VALUE = -100.0  # added to attention logits across shifted-window regions (as HTSAT)
JOINT_DIM = 512

RELEASE_URL = "https://huggingface.co/lukewys/laion_clap"


@dataclass(frozen=True)
class HTSATConfig:
    """Width of the first stage, blocks per stage and heads per stage."""

    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...] = (4, 8, 16, 32)

    @property
    def num_features(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)


MODELS: dict[str, HTSATConfig] = {
    "HTSAT-tiny": HTSATConfig(96, (2, 2, 6, 2)),
    "HTSAT-base": HTSATConfig(128, (2, 2, 12, 2)),
    "HTSAT-large": HTSATConfig(256, (2, 2, 12, 2)),
}

# audio-branch entries of LAION checkpoints that this implementation computes itself
# (STFT and mel matrices, attention indices and masks) or does not use (the AudioSet tagging head)
_IGNORED = re.compile(r"^audio_branch\.(spectrogram_extractor\.|logmel_extractor\.|tscam_conv\.|head\.)"
                      r"|\.(relative_position_index|attn_mask)$")
_FUSION = re.compile(r"^audio_branch\.(patch_embed\.(mel_conv2d|fusion_model)|mel_conv1d|fusion_model)\.")


# ---------------------------------------------------------------------------------------------
# preprocessing
# ---------------------------------------------------------------------------------------------
def quantize_int16(audio: np.ndarray) -> np.ndarray:
    """Round trip through 16-bit PCM as ``laion_clap`` does (clip to [-1, 1], truncate)."""
    x = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    return ((x * 32767.0).astype(np.int16) / 32767.0).astype(np.float32)


def repeat_pad(audio: np.ndarray, length: int = CLIP_SAMPLES) -> np.ndarray:
    """A clip shorter than ``length``, tiled ``floor(length / n)`` times then zero-padded."""
    n = audio.shape[-1]
    tiled = np.tile(audio, length // n)
    return np.pad(tiled, (0, length - tiled.shape[-1]))


def clip_windows(audio: np.ndarray, hop: int = CLIP_SAMPLES) -> np.ndarray:
    """48 kHz ``[samples]`` -> ``[windows, 480000]``: 10 s windows every ``hop`` samples, the
    incomplete tail dropped; a clip shorter than 10 s gives one repeat-padded window."""
    if audio.shape[-1] < CLIP_SAMPLES:
        return repeat_pad(audio)[None]
    starts = range(0, audio.shape[-1] - CLIP_SAMPLES + 1, hop)
    return np.stack([audio[s:s + CLIP_SAMPLES] for s in starts])


_MEL_BASIS: torch.Tensor | None = None


def mel_basis() -> torch.Tensor:
    """``[513, 64]`` Slaney mel filterbank, 50-14 000 Hz at 48 kHz (librosa's default norm)."""
    global _MEL_BASIS
    if _MEL_BASIS is None:
        fb = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)
        _MEL_BASIS = torch.from_numpy(fb.T.astype(np.float32))
    return _MEL_BASIS


def log_mel(wave: torch.Tensor, basis: torch.Tensor | None = None) -> torch.Tensor:
    """``[batch, samples]`` at 48 kHz -> log-mel power in dB ``[batch, frames, 64]``
    (``frames = samples // 480 + 1``); ``basis``: ``[513, 64]`` filterbank (default
    :func:`mel_basis`)."""
    spec = torch.stft(wave, N_FFT, HOP, window=torch.hann_window(N_FFT, device=wave.device),
                      center=True, pad_mode="reflect", return_complex=True)
    power = spec.real.square() + spec.imag.square()  # [batch, 513, frames]
    mel = power.transpose(1, 2) @ (mel_basis() if basis is None else basis).to(wave.device)
    return 10.0 * torch.log10(mel.clamp_min(AMIN))


# ---------------------------------------------------------------------------------------------
# network (module names follow laion_clap so its state dicts load directly)
# ---------------------------------------------------------------------------------------------
def _to_windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """``[B, H, W, C]`` -> ``[B * windows, w * w, C]`` (windows in row-major order)."""
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, c)


def _from_windows(x: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    """Inverse of :func:`_to_windows`: ``[B * windows, w * w, C]`` -> ``[B, H, W, C]``."""
    c = x.shape[-1]
    x = x.view(-1, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, wd, c)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ``w x w`` windows with a learned relative position
    bias (one value per head and 2-D offset, ``(2w - 1)^2`` offsets)."""

    def __init__(self, dim: int, window: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        rows, cols = rows.flatten(), cols.flatten()
        span = 2 * window - 1  # offsets per axis
        offset = (rows[:, None] - rows[None] + window - 1) * span + (cols[:, None] - cols[None] + window - 1)
        self.register_buffer("offset_index", offset, persistent=False)  # [w*w, w*w]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x``: ``[B * windows, N, C]``; ``mask``: ``[windows, N, N]`` (0 or -100) or None."""
        bw, n, c = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        logits = (q * self.scale) @ k.transpose(-2, -1)  # [B*nW, heads, N, N]
        logits = logits + self.relative_position_bias_table[self.offset_index].permute(2, 0, 1)
        if mask is not None:
            nw = mask.shape[0]
            logits = logits.view(bw // nw, nw, self.num_heads, n, n) + mask[None, :, None]
            logits = logits.view(bw, self.num_heads, n, n)
        out = logits.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm transformer block on a ``resolution x resolution`` token grid, attention in
    windows cyclically shifted by ``shift`` tokens (0: regular windows)."""

    def __init__(self, dim: int, resolution: int, num_heads: int, shift: bool) -> None:
        super().__init__()
        self.resolution = resolution
        self.window = min(WINDOW, resolution)
        self.shift = WINDOW // 2 if shift and resolution > WINDOW else 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, self.window, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)
        self.register_buffer("shift_mask", self._shift_mask() if self.shift else None, persistent=False)

    def _shift_mask(self) -> torch.Tensor:
        """``[windows, N, N]``: -100 between tokens that the cyclic shift brought together from
        different regions of the grid, 0 elsewhere."""
        r, w, s = self.resolution, self.window, self.shift
        bands = torch.zeros(r, dtype=torch.long)
        bands[r - w:r - s], bands[r - s:] = 1, 2  # along each axis: bulk, last window, wrapped part
        region = (bands[:, None] * 3 + bands[None, :]).float()[None, :, :, None]
        ids = _to_windows(region, w)[..., 0]  # [windows, N]
        return (ids[:, None, :] != ids[:, :, None]).float() * MASK_VALUE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        r, w, s = self.resolution, self.window, self.shift
        h = self.norm1(x).view(b, r, r, c)
        if s:
            h = torch.roll(h, shifts=(-s, -s), dims=(1, 2))
        h = _from_windows(self.attn(_to_windows(h, w), self.shift_mask), w, r, r)
        if s:
            h = torch.roll(h, shifts=(s, s), dims=(1, 2))
        x = x + h.reshape(b, n, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2 x 2 neighbouring tokens concatenated (Swin order: (0,0), (1,0), (0,1), (1,1)),
    layer-normed and projected to twice the width; halves the grid."""

    def __init__(self, dim: int, resolution: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        g = x.view(b, self.resolution, self.resolution, c)
        g = torch.cat([g[:, 0::2, 0::2], g[:, 1::2, 0::2], g[:, 0::2, 1::2], g[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(g.reshape(b, -1, 4 * c)))


class SwinStage(nn.Module):
    def __init__(self, dim: int, resolution: int, depth: int, num_heads: int, merge: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(SwinBlock(dim, resolution, num_heads, shift=i % 2 == 1) for i in range(depth))
        self.downsample = PatchMerging(dim, resolution) if merge else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=PATCH, stride=PATCH)
        self.norm = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(image).flatten(2).transpose(1, 2))  # [B, tokens, dim]


class HTSAT(nn.Module):
    """HTSAT audio encoder (Chen et al., ICASSP 2022) as CLAP uses it: log-mel of 10 s at
    48 kHz -> ``[batch, num_features]`` (mean of the final tokens). Inference only."""

    def __init__(self, config: HTSATConfig) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(N_MELS)
        self.patch_embed = PatchEmbed(config.embed_dim)
        grid = SPEC_SIZE // PATCH
        self.layers = nn.ModuleList(
            SwinStage(config.embed_dim * 2 ** i, grid // 2 ** i, depth, config.num_heads[i],
                      merge=i < len(config.depths) - 1)
            for i, depth in enumerate(config.depths))
        self.norm = nn.LayerNorm(config.num_features)

    @staticmethod
    def to_image(mel: torch.Tensor) -> torch.Tensor:
        """``[B, frames, 64]`` -> ``[B, 1, 256, 256]``: time stretched (bicubic) to 1024 frames,
        cut into four 256-frame quarters stacked along frequency (quarter ``k`` in rows
        ``64k .. 64k + 63``, time along columns)."""
        b = mel.shape[0]
        x = F.interpolate(mel[:, None], size=(SPEC_SIZE * FREQ_RATIO, N_MELS), mode="bicubic", align_corners=True)
        x = x[:, 0].transpose(1, 2).reshape(b, N_MELS, FREQ_RATIO, SPEC_SIZE)  # [B, mel, quarter, time]
        return x.transpose(1, 2).reshape(b, 1, SPEC_SIZE, SPEC_SIZE)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.bn0(mel.transpose(1, 2)[..., None])[..., 0].transpose(1, 2)  # normalise each mel band
        x = self.patch_embed(self.to_image(x))
        for stage in self.layers:
            x = stage(x)
        return self.norm(x).mean(dim=1)


class ClapAudioEncoder(nn.Module):
    """CLAP audio tower: 10 s windows at 48 kHz ``[batch, 480000]`` -> L2-normalised
    ``[batch, 512]`` embeddings."""

    def __init__(self, model: str = "HTSAT-tiny") -> None:
        super().__init__()
        config = MODELS[model]
        self.audio_branch = HTSAT(config)
        self.audio_projection = nn.Sequential(nn.Linear(config.num_features, JOINT_DIM), nn.ReLU(),
                                              nn.Linear(JOINT_DIM, JOINT_DIM))
        self.register_buffer("mel_fb", mel_basis().clone(), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        features = self.audio_branch(log_mel(wave, self.mel_fb))
        return F.normalize(self.audio_projection(features), dim=-1)


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------
def _missing_message(path: Path) -> str:
    return (f"{path}: LAION-CLAP checkpoint not found. Download a non-fusion checkpoint once from "
            f"{RELEASE_URL} (630k-audioset-best.pt, the usual FAD-CLAP model; or "
            "music_audioset_epoch_15_esc_90.14.pt for music) and pass its path (eval "
            "--fad-checkpoint, or backbone option checkpoint=); nothing is downloaded at run time")


def _torch_load(path: Path):
    mmap = zipfile.is_zipfile(path)  # the 630k files are ~2 GB, mostly text branch: map, don't read
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        # LAION's training checkpoints may pickle more than tensors (``laion_clap`` itself loads
        # them with weights_only=False); the user named this file explicitly
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)


def load_clap_state(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """The audio-tower entries (``audio_branch.*``, ``audio_projection.*``) of a LAION-CLAP
    checkpoint, with any ``state_dict`` wrapper and ``module.`` prefix removed."""
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise EmbeddingError(_missing_message(path))
    try:
        obj = _torch_load(path)
    except Exception as exc:
        raise EmbeddingError(f"{path}: cannot read as a PyTorch checkpoint ({exc})") from exc
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict):
        raise EmbeddingError(f"{path}: expected a state dict, got {type(state).__name__}")
    state = {str(k).removeprefix("module."): v for k, v in state.items()}
    audio = {k: v for k, v in state.items() if k.startswith(("audio_branch.", "audio_projection."))}
    if "audio_branch.patch_embed.proj.weight" not in audio:
        sample = ", ".join(list(state)[:4]) or "none"
        raise EmbeddingError(f"{path}: not a LAION-CLAP checkpoint: no audio_branch.patch_embed.proj.weight "
                             f"(keys start: {sample}); expected a file from {RELEASE_URL}")
    fusion = sorted(k for k in audio if _FUSION.match(k))
    if fusion:
        raise EmbeddingError(f"{path}: a fusion LAION-CLAP checkpoint ({fusion[0]}, ...); only non-fusion "
                             "checkpoints are supported (630k-audioset-best.pt, 630k-best.pt, "
                             "music_audioset_epoch_15_esc_90.14.pt)")
    return audio


def detect_model(state: dict[str, torch.Tensor]) -> str:
    """The HTSAT variant of an audio state dict, from its width and number of stage-3 blocks."""
    width = state["audio_branch.patch_embed.proj.weight"].shape[0]
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"audio_branch\.layers\.2\.blocks\.(\d+)\.", k))}
    for name, cfg in MODELS.items():
        if cfg.embed_dim == width and len(blocks) == cfg.depths[2]:
            return name
    raise EmbeddingError(f"unknown HTSAT variant (patch width {width}, {len(blocks)} blocks in stage 3); "
                         f"supported: {', '.join(MODELS)}")


def build_encoder(checkpoint: str | Path, model: str | None = None) -> tuple[ClapAudioEncoder, str]:
    """Load the audio tower of a LAION-CLAP checkpoint; returns ``(encoder in eval mode, model name)``."""
    state = load_clap_state(checkpoint)
    found = detect_model(state)
    if model is not None and model != found:
        if model not in MODELS:
            raise EmbeddingError(f"unknown CLAP audio model {model!r}; choose from {', '.join(MODELS)}")
        raise EmbeddingError(f"{checkpoint}: holds a {found} audio encoder, not {model} "
                             f"(pass model={found!r} or leave model unset)")
    encoder = ClapAudioEncoder(found)
    wanted = encoder.state_dict()
    unknown = sorted(k for k in state if k not in wanted and not _IGNORED.search(k))
    missing = sorted(k for k in wanted if k not in state)
    if unknown or missing:
        raise EmbeddingError(f"{checkpoint}: not a LAION-CLAP {found} audio encoder: "
                             f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}, "
                             f"unexpected {unknown[:3]}{' ...' if len(unknown) > 3 else ''}")
    try:
        encoder.load_state_dict({k: state[k] for k in wanted})
    except RuntimeError as exc:
        raise EmbeddingError(f"{checkpoint}: not a LAION-CLAP {found} audio encoder ({exc})") from exc
    stored_mel = state.get("audio_branch.logmel_extractor.melW")
    if stored_mel is not None:
        # laion_clap filters with the matrix stored in the checkpoint: use it, once we know
        # it is the filterbank we compute (up to the float rounding of other librosa versions)
        if stored_mel.shape != encoder.mel_fb.shape or not torch.allclose(
                stored_mel.float(), encoder.mel_fb, rtol=1e-3, atol=1e-6):
            raise EmbeddingError(f"{checkpoint}: its mel filterbank (logmel_extractor.melW) is not the 64-band "
                                 "50-14000 Hz Slaney filterbank of LAION-CLAP's HTSAT at 48 kHz")
        encoder.mel_fb.copy_(stored_mel.float())
    return encoder.eval(), found


class ClapBackbone(EmbeddingBackbone):
    """FAD backbone: LAION-CLAP 512-d audio embeddings, one per 10 s window.

    Parameters
    ----------
    checkpoint: path of a non-fusion LAION-CLAP checkpoint (required; nothing is downloaded).
    model: ``"HTSAT-tiny"`` or ``"HTSAT-base"`` (None: read off the checkpoint; if given, it
        must match the checkpoint).
    hop_seconds: seconds between window starts (10: non-overlapping windows).
    quantize: 16-bit round trip of the input, as ``laion_clap`` does.
    batch_size: windows per forward pass.
    """

    name = "clap"
    sample_rate = SAMPLE_RATE
    dim = JOINT_DIM
    patch_seconds = CLIP_SAMPLES / SAMPLE_RATE  # 10 s

    def __init__(self, checkpoint: str | Path | None = None, model: str | None = None,
                 hop_seconds: float = 10.0, quantize: bool = True, batch_size: int = 4,
                 device: str = "cpu") -> None:
        if checkpoint is None:
            raise EmbeddingError("the CLAP backbone needs a local checkpoint: pass checkpoint="
                                 f"'/path/to/630k-audioset-best.pt' (from {RELEASE_URL}); nothing is "
                                 "downloaded at run time")
        if hop_seconds <= 0:
            raise EmbeddingError(f"hop_seconds must be positive, got {hop_seconds}")
        self.encoder, model = build_encoder(checkpoint, model)
        super().__init__(device=device, model=model, hop_seconds=float(hop_seconds), quantize=bool(quantize))
        self.encoder.to(self.device)
        self.model = model
        self.hop = round(hop_seconds * SAMPLE_RATE)
        self.quantize = bool(quantize)
        self.batch_size = int(batch_size)
        self.weights_id = file_hash(Path(checkpoint).expanduser())[:16]

    def windows(self, audio: np.ndarray) -> np.ndarray:
        """48 kHz ``[samples]`` -> the network's input windows ``[windows, 480000]``."""
        audio = quantize_int16(audio) if self.quantize else np.asarray(audio, dtype=np.float32)
        return clip_windows(audio, self.hop)

    @torch.no_grad()
    def embed_at_rate(self, audio: np.ndarray) -> np.ndarray:
        windows = torch.from_numpy(self.windows(audio))
        outs = [self.encoder(windows[i:i + self.batch_size].to(self.device)).float().cpu()
                for i in range(0, windows.shape[0], self.batch_size)]
        return torch.cat(outs).numpy().astype(np.float32)
