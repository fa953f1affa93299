"""musicnn (Pons & Serra, 2019) in PyTorch, with the weights of the ``musicnn`` wheel.

The default offline music backbone for FAD. The ``musicnn`` 0.1.0 wheel (ISC licence) ships
TF1 checkpoints; we read them with numpy (:mod:`benchmark.embeddings.tf_checkpoint`), convert
them once to a PyTorch state dict cached as ``<cache>/weights/musicnn/<model>-<hash>.pt``
and run this port. TensorFlow is never needed.

Preprocessing (as musicnn's extractor does it)
----------------------------------------------
1. mono audio resampled to 16 kHz (soxr);
2. power mel spectrogram: STFT with a 512-sample periodic Hann window, hop 256 (16 ms),
   centred frames with zero padding (librosa >= 0.10 defaults), 96 Slaney mel bands
   (librosa's default filterbank, 0-8 kHz);
3. cast to float16 (as musicnn does; values clamped to the float16 range), then
   ``log10(10000 x + 1)``;
4. non-overlapping patches of 187 frames (3 s); the incomplete tail is dropped. A clip
   shorter than one patch is repeat-padded (the ``pad_short: repeat-pad`` rule of musicnn's
   training configuration) - musicnn itself cannot tag clips shorter than 3 s.

Network (``MTT_musicnn`` / ``MSD_musicnn``; BatchNorm eps 1e-3, inference mode)
--------------------------------------------------------------------------------
input BN -> front end: two timbral convs (7 x 38 and 7 x 67 mel bins, 204 filters each) and
three temporal convs (128, 64, 32 frames x 1 band, 51 filters each, TF "same" padding), each
ReLU -> BN -> max over frequency; concatenated to 561 features per frame -> mid end: three
1-D convs (kernel 7, 64 filters, ReLU -> BN) with residual connections, dense concatenation
of front end and mid-end outputs (753 features per frame) -> back end: max and mean over time
(interleaved, 1506) -> BN -> dense 200 + ReLU -> BN = **penultimate layer (the 200-d
embedding)** -> dense 50 -> sigmoid = tag probabilities.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data.audio import file_hash
from benchmark.embeddings.base import EmbeddingBackbone, EmbeddingError
from benchmark.embeddings.tf_checkpoint import read_tf_checkpoint

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # librosa.time_to_frames(3 s) + 1, as musicnn computes it
_BN_EPS = 1e-3  # TF1 layers.batch_normalization default
_FLOAT16_MAX = float(np.finfo(np.float16).max)

MTT_LABELS = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice",
    "weird", "country", "metal", "female voice", "choral",
)
MSD_LABELS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill",
    "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
    "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock",
    "60s", "rnb", "indie pop", "sad", "House", "happy",
)
MODELS = {"MTT_musicnn": MTT_LABELS, "MSD_musicnn": MSD_LABELS}
LAYER_DIMS = {"penultimate": 200, "mean_pool": 753, "max_pool": 753, "tags": 50}


# ---------------------------------------------------------------------------------------------
# preprocessing
# ---------------------------------------------------------------------------------------------
_MEL_BASIS: torch.Tensor | None = None


def _mel_basis() -> torch.Tensor:
    global _MEL_BASIS
    if _MEL_BASIS is None:
        _MEL_BASIS = torch.from_numpy(
            librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32))
    return _MEL_BASIS


def log_mel(audio: np.ndarray) -> np.ndarray:
    """musicnn's input representation of 16 kHz mono audio ``[samples]`` -> ``[frames, 96]``.

    ``frames = 1 + samples // 256`` (centred STFT). float32 values ``log10(10000 x + 1)`` of
    the float16-rounded mel power ``x``.
    """
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    window = torch.hann_window(N_FFT, periodic=True)
    spec = torch.stft(x, N_FFT, HOP, window=window, center=True, pad_mode="constant",
                      return_complex=True)
    power = spec.real.square() + spec.imag.square()  # [257, frames]
    mel = (_mel_basis() @ power).T.numpy()  # [frames, 96]
    mel = np.minimum(mel, _FLOAT16_MAX).astype(np.float16)
    return np.log10(10000.0 * mel.astype(np.float32) + 1.0)


def patches(spectrogram: np.ndarray, n_frames: int = PATCH_FRAMES) -> np.ndarray:
    """Cut ``[frames, 96]`` into non-overlapping ``[patches, n_frames, 96]`` (tail dropped;
    a spectrogram shorter than one patch is repeat-padded to one patch)."""
    frames = spectrogram.shape[0]
    if frames < n_frames:
        reps = -(-n_frames // frames)
        return np.tile(spectrogram, (reps, 1))[None, :n_frames]
    count = frames // n_frames
    return spectrogram[:count * n_frames].reshape(count, n_frames, spectrogram.shape[1])


# ---------------------------------------------------------------------------------------------
# network
# ---------------------------------------------------------------------------------------------
def _bn(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=_BN_EPS)


class _TimbralBlock(nn.Module):
    """Conv over (7 frames x ``bands`` mel bins), valid in frequency, 'same' in time."""

    def __init__(self, bands: int, filters: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, filters, (7, bands))
        self.bn = _bn(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 1, T, 96] -> [B, filters, T]
        y = F.relu(self.conv(F.pad(x, (0, 0, 3, 3))))  # [B, F, T, 96 - bands + 1]
        y = self.bn(y.flatten(2)).view_as(y)
        return y.amax(dim=3)


class _TemporalBlock(nn.Module):
    """Conv over (``frames`` x 1 band) with TF 'same' padding (extra pad after for even k)."""

    def __init__(self, frames: int, filters: int) -> None:
        super().__init__()
        self.pad = ((frames - 1) // 2, frames - 1 - (frames - 1) // 2)
        self.conv = nn.Conv2d(1, filters, (frames, 1))
        self.bn = _bn(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 1, T, 96] -> [B, filters, T]
        y = F.relu(self.conv(F.pad(x, (0, 0, *self.pad))))
        y = self.bn(y.flatten(2)).view_as(y)
        return y.amax(dim=3)


class MusiCNN(nn.Module):
    """The musicnn tagger. ``forward(x [B, frames, 96])`` returns a dict of
    ``logits`` / ``tags`` ``[B, classes]``, ``penultimate`` ``[B, 200]``, ``mean_pool`` and
    ``max_pool`` ``[B, 753]``."""

    def __init__(self, num_classes: int = 50, filters_midend: int = 64, units_backend: int = 200) -> None:
        super().__init__()
        self.input_bn = _bn(1)
        timbral, temporal = int(1.6 * 128), int(1.6 * 32)
        self.timbral = nn.ModuleList([_TimbralBlock(int(0.4 * N_MELS), timbral),
                                      _TimbralBlock(int(0.7 * N_MELS), timbral)])
        self.temporal = nn.ModuleList([_TemporalBlock(k, temporal) for k in (128, 64, 32)])
        front = 2 * timbral + 3 * temporal  # 561
        self.mid_convs = nn.ModuleList([nn.Conv1d(front, filters_midend, 7, padding=3),
                                        nn.Conv1d(filters_midend, filters_midend, 7, padding=3),
                                        nn.Conv1d(filters_midend, filters_midend, 7, padding=3)])
        self.mid_bns = nn.ModuleList([_bn(filters_midend) for _ in range(3)])
        pooled = 2 * (front + 3 * filters_midend)  # 1506
        self.pool_bn = _bn(pooled)
        self.dense = nn.Linear(pooled, units_backend)
        self.dense_bn = _bn(units_backend)
        self.output = nn.Linear(units_backend, num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b, t, f = x.shape
        x = self.input_bn(x.reshape(b, 1, t * f)).view(b, 1, t, f)
        front = torch.cat([blk(x) for blk in self.timbral] + [blk(x) for blk in self.temporal], 1)
        h1 = self.mid_bns[0](F.relu(self.mid_convs[0](front)))
        h2 = self.mid_bns[1](F.relu(self.mid_convs[1](h1))) + h1
        h3 = self.mid_bns[2](F.relu(self.mid_convs[2](h2))) + h2
        features = torch.cat([front, h1, h2, h3], 1)  # [B, 753, T]
        max_pool, mean_pool = features.amax(dim=2), features.mean(dim=2)
        flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # TF flatten of [753, 2]
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(flat))))
        logits = self.output(penultimate)
        return {"logits": logits, "tags": torch.sigmoid(logits), "penultimate": penultimate,
                "mean_pool": mean_pool, "max_pool": max_pool}


# ---------------------------------------------------------------------------------------------
# weights: TF checkpoint -> state dict
# ---------------------------------------------------------------------------------------------
def _tf_layer_map() -> list[tuple[str, str, str]]:
    """(torch prefix, TF layer, kind) in the creation order of musicnn's TF graph."""
    order = [("input_bn", "batch_normalization", "bn")]
    convs = ["timbral.0", "timbral.1", "temporal.0", "temporal.1", "temporal.2"]
    for i, name in enumerate(convs):
        order += [(f"{name}.conv", "conv2d" + (f"_{i}" if i else ""), "conv2d"),
                  (f"{name}.bn", f"batch_normalization_{i + 1}", "bn")]
    for j in range(3):
        order += [(f"mid_convs.{j}", f"conv2d_{5 + j}", "conv1d"),
                  (f"mid_bns.{j}", f"batch_normalization_{6 + j}", "bn")]
    order += [("pool_bn", "batch_normalization_9", "bn"), ("dense", "dense", "dense"),
              ("dense_bn", "batch_normalization_10", "bn"), ("output", "dense_1", "dense")]
    return order


def convert_tf_weights(tf_vars: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map musicnn TF variables to a :class:`MusiCNN` state dict (TF layouts transposed:
    conv ``[kh, kw, in, out]`` -> ``[out, in, kh, kw]``, dense ``[in, out]`` -> ``[out, in]``)."""
    state: dict[str, torch.Tensor] = {}

    def get(name: str) -> np.ndarray:
        if name not in tf_vars:
            raise EmbeddingError(f"musicnn checkpoint lacks variable {name!r}; is it an "
                                 "MTT_musicnn / MSD_musicnn checkpoint?")
        return tf_vars[name]

    for prefix, layer, kind in _tf_layer_map():
        if kind == "bn":
            state[f"{prefix}.weight"] = torch.from_numpy(get(f"{layer}/gamma").copy())
            state[f"{prefix}.bias"] = torch.from_numpy(get(f"{layer}/beta").copy())
            state[f"{prefix}.running_mean"] = torch.from_numpy(get(f"{layer}/moving_mean").copy())
            state[f"{prefix}.running_var"] = torch.from_numpy(get(f"{layer}/moving_variance").copy())
            state[f"{prefix}.num_batches_tracked"] = torch.tensor(0)
            continue
        kernel, bias = get(f"{layer}/kernel"), get(f"{layer}/bias")
        if kind == "conv2d":
            weight = kernel.transpose(3, 2, 0, 1)
        elif kind == "conv1d":  # TF conv2d [7, C_in, 1, C_out] over a [T, C_in, 1] map
            weight = kernel[:, :, 0, :].transpose(2, 1, 0)
        else:
            weight = kernel.T
        state[f"{prefix}.weight"] = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32))
        state[f"{prefix}.bias"] = torch.from_numpy(bias.astype(np.float32))
    return state


def packaged_checkpoint_dir(model: str = "MTT_musicnn") -> Path:
    """Folder of ``model``'s TF checkpoint inside the installed ``musicnn`` wheel."""
    spec = importlib.util.find_spec("musicnn")
    if spec is None or spec.origin is None:
        raise EmbeddingError("the musicnn backbone needs the weights shipped in the 'musicnn' "
                             "wheel: pip install --no-deps musicnn==0.1.0 (TensorFlow is NOT "
                             "needed), or pass checkpoint_dir=")
    return Path(spec.origin).parent / model


def load_musicnn(model: str = "MTT_musicnn", checkpoint_dir: str | Path | None = None,
                 cache_dir: str | Path | None = None) -> tuple[MusiCNN, str]:
    """Build :class:`MusiCNN` with converted weights; returns ``(network, weights_id)``.

    The converted state dict is cached at ``<cache_dir>/weights/musicnn/<model>-<id>.pt``
    (``cache_dir`` defaults to ``$BENCHMARK_CACHE`` or ``~/.cache/m2l-benchmark``), where
    ``<id>`` is the first 16 hex digits of the SHA-256 of the TF data file.
    """
    if model not in MODELS:
        raise EmbeddingError(f"unknown musicnn model {model!r}; known: {', '.join(MODELS)}")
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else packaged_checkpoint_dir(model)
    data_file = folder / ".data-00000-of-00001"
    if not data_file.is_file():
        raise EmbeddingError(f"{data_file}: musicnn checkpoint data not found; reinstall "
                             "musicnn (pip install --no-deps musicnn==0.1.0)")
    weights_id = file_hash(data_file)[:16]
    if cache_dir is None:
        from benchmark.config import default_cache_dir
        cache_dir = default_cache_dir()
    cached = Path(cache_dir) / "weights" / "musicnn" / f"{model}-{weights_id}.pt"
    net = MusiCNN(num_classes=len(MODELS[model]))
    state = None
    if cached.is_file():
        try:
            state = torch.load(cached, map_location="cpu", weights_only=True)
        except Exception:  # a damaged conversion is redone, never trusted
            state = None
    if state is None:
        state = convert_tf_weights(read_tf_checkpoint(str(folder) + os.sep))
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, cached)
    net.load_state_dict(state)
    return net.eval(), weights_id


class MusicnnBackbone(EmbeddingBackbone):
    """FAD backbone: musicnn's 200-d penultimate layer, one vector per 3 s patch.

    Parameters
    ----------
    model: ``"MTT_musicnn"`` (MagnaTagATune, default) or ``"MSD_musicnn"`` (Million Song).
    layer: ``"penultimate"`` (200-d, default), ``"mean_pool"`` / ``"max_pool"`` (753-d) or
        ``"tags"`` (50 sigmoid probabilities).
    batch_size: patches per forward pass.
    checkpoint_dir, cache_dir: see :func:`load_musicnn`.
    """

    sample_rate = SAMPLE_RATE
    patch_seconds = PATCH_FRAMES * HOP / SAMPLE_RATE  # 2.992 s

    def __init__(self, model: str = "MTT_musicnn", layer: str = "penultimate", batch_size: int = 16,
                 device: str = "cpu", checkpoint_dir: str | Path | None = None,
                 cache_dir: str | Path | None = None) -> None:
        if layer not in LAYER_DIMS:
            raise EmbeddingError(f"musicnn layer {layer!r} unknown; choose from {', '.join(LAYER_DIMS)}")
        super().__init__(device=device, model=model, layer=layer)
        self.name = f"musicnn-{model}"
        self.layer = layer
        self.dim = LAYER_DIMS[layer]
        self.labels = MODELS.get(model, ())
        self.batch_size = int(batch_size)
        self.net, self.weights_id = load_musicnn(model, checkpoint_dir, cache_dir)
        self.net.to(self.device)

    @torch.no_grad()
    def forward_patches(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run the network on spectrogram patches ``[patches, 187, 96]`` -> dict of arrays."""
        outs: dict[str, list[np.ndarray]] = {}
        for i in range(0, len(batch), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(batch[i:i + self.batch_size], np.float32))
            for k, v in self.net(x.to(self.device)).items():
                outs.setdefault(k, []).append(v.float().cpu().numpy())
        return {k: np.concatenate(v) for k, v in outs.items()}

    def embed_at_rate(self, audio: np.ndarray) -> np.ndarray:
        return self.forward_patches(patches(log_mel(audio)))[self.layer].astype(np.float32)

    def tags(self, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, tuple[str, ...]]:
        """Tag probabilities ``[patches, 50]`` (the taggram) and the tag names."""
        audio = np.asarray(audio, dtype=np.float32)
        if sample_rate != self.sample_rate:
            from benchmark.data.audio import resample
            audio = resample(audio[None], sample_rate, self.sample_rate)[0]
        return self.forward_patches(patches(log_mel(audio)))["tags"], self.labels
