"""VGGish (Hershey et al., ICASSP 2017) from a user-supplied PyTorch checkpoint.

The paper-standard FAD backbone (Kilgour et al., 2019). Nothing is downloaded: pass the path
of the torchvggish state dict ``vggish-10086976.pth`` (keys ``features.{0,3,6,8,11,13}.*``,
``embeddings.{0,2,4}.*``) and optionally the PCA parameters ``vggish_pca_params-970ea276.pth``
(keys ``pca_eigen_vectors`` [128, 128], ``pca_means`` [128]). Checkpoints saved from a whole
torchvggish ``VGGish`` module (``pproc.pca_matrix`` / ``pproc.pca_means`` inside the same file)
and ``module.``-prefixed (DataParallel) keys are accepted too.

Preprocessing (the AudioSet ``vggish_input`` recipe)
----------------------------------------------------
mono audio at 16 kHz (soxr) -> frames of 400 samples (25 ms) every 160 samples (10 ms), no
centring -> periodic Hann window -> |rFFT| with 512 points (257 bins) -> 64 mel bands
125-7500 Hz (HTK mel scale ``1127 ln(1 + f/700)``, triangles evaluated on the linear bin
frequencies, DC bin zeroed) -> ``ln(mel + 0.01)`` -> non-overlapping examples of 96 frames
(0.96 s), the incomplete tail dropped (a clip shorter than 0.96 s is zero-padded to one
example).

Embedding (FAD convention)
--------------------------
The 128-d output of the last fully connected layer *before* its ReLU and without PCA or
quantisation: the embedding Google's FAD and the Music2Latent training code use
(``postprocess=False``, final ReLU removed). ``final_relu=True`` and ``pca=True`` reproduce
torchvggish's other outputs (``pca=True`` gives AudioSet-release style 8-bit values).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data.audio import file_hash
from benchmark.embeddings.base import EmbeddingBackbone, EmbeddingError

SAMPLE_RATE = 16000
WINDOW = 400
HOP = 160
N_FFT = 512
N_MELS = 64
FMIN, FMAX = 125.0, 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96
EMBEDDING_SIZE = 128
QUANTIZE_RANGE = (-2.0, 2.0)

_CONV_CHANNELS = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")


def hertz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: ``1127 ln(1 + f / 700)``."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def mel_matrix(num_bins: int = N_FFT // 2 + 1, sample_rate: int = SAMPLE_RATE, n_mels: int = N_MELS,
               fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """``[num_bins, n_mels]`` weights: triangles spaced uniformly in HTK mel between ``fmin``
    and ``fmax``, evaluated at the bins' linear frequencies; the DC bin gets no weight."""
    bins_mel = hertz_to_mel(np.linspace(0.0, sample_rate / 2.0, num_bins))
    edges = np.linspace(hertz_to_mel(fmin), hertz_to_mel(fmax), n_mels + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (center - lower)
    falling = (upper - bins_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


def log_mel_examples(audio: np.ndarray) -> np.ndarray:
    """16 kHz mono ``[samples]`` -> VGGish input examples ``[examples, 96, 64]`` (float32)."""
    x = np.asarray(audio, dtype=np.float64)
    if x.size < WINDOW + HOP * (EXAMPLE_FRAMES - 1):
        x = np.pad(x, (0, WINDOW + HOP * (EXAMPLE_FRAMES - 1) - x.size))
    n_frames = 1 + (x.size - WINDOW) // HOP
    frames = np.lib.stride_tricks.as_strided(
        x, shape=(n_frames, WINDOW), strides=(x.strides[0] * HOP, x.strides[0]), writeable=False)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)  # periodic Hann
    magnitude = np.abs(np.fft.rfft(frames * window, N_FFT))
    log_mel = np.log(magnitude @ mel_matrix() + LOG_OFFSET)
    count = n_frames // EXAMPLE_FRAMES
    return log_mel[:count * EXAMPLE_FRAMES].reshape(count, EXAMPLE_FRAMES, N_MELS).astype(np.float32)


class VGGish(nn.Module):
    """VGG-style network: ``[B, 1, 96, 64]`` log-mel -> ``[B, 128]`` (pre-ReLU by default).

    Layer names follow torchvggish so its state dicts load directly.
    """

    def __init__(self, final_relu: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for v in _CONV_CHANNELS:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                channels = int(v)
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 4 * 6, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, EMBEDDING_SIZE))
        self.final_relu = final_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)  # [B, 512, 6, 4]
        h = h.permute(0, 2, 3, 1).flatten(1)  # TF's NHWC flatten order
        out = self.embeddings(h)
        return F.relu(out) if self.final_relu else out


def _strip(state: dict) -> dict:
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_vggish_state(checkpoint: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Read a torchvggish checkpoint; returns ``(network state, pca params or {})``."""
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise EmbeddingError(f"{path}: VGGish checkpoint not found. Download torchvggish's "
                             "vggish-10086976.pth once (github.com/harritaylor/torchvggish "
                             "releases) and pass its path (eval --fad-checkpoint, or backbone option checkpoint=)")
    try:
        state = _strip(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:
        raise EmbeddingError(f"{path}: cannot read as a PyTorch state dict ({exc})") from exc
    pca = {}
    if "pproc.pca_matrix" in state:
        pca = {"pca_eigen_vectors": state.pop("pproc.pca_matrix"), "pca_means": state.pop("pproc.pca_means")}
    return state, pca


def load_pca(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise EmbeddingError(f"{path}: VGGish PCA parameters not found (torchvggish's "
                             "vggish_pca_params-970ea276.pth)")
    params = torch.load(path, map_location="cpu", weights_only=False)
    missing = {"pca_eigen_vectors", "pca_means"} - set(params)
    if missing:
        raise EmbeddingError(f"{path}: PCA file lacks {sorted(missing)}; expected keys "
                             "'pca_eigen_vectors' [128, 128] and 'pca_means' [128]")
    return {k: torch.as_tensor(np.asarray(params[k]), dtype=torch.float32) for k in ("pca_eigen_vectors", "pca_means")}


class VGGishBackbone(EmbeddingBackbone):
    """FAD backbone: VGGish 128-d embeddings, one per 0.96 s example.

    Parameters
    ----------
    checkpoint: path of the torchvggish state dict (required; nothing is downloaded).
    pca: apply the AudioSet PCA + 8-bit quantisation (needs ``pca_params`` or PCA keys in the
        checkpoint). Off for FAD.
    pca_params: path of ``vggish_pca_params-970ea276.pth``.
    final_relu: keep the ReLU after the last layer (off for FAD).
    batch_size: examples per forward pass.
    """

    name = "vggish"
    sample_rate = SAMPLE_RATE
    dim = EMBEDDING_SIZE
    patch_seconds = EXAMPLE_FRAMES * HOP / SAMPLE_RATE  # 0.96 s

    def __init__(self, checkpoint: str | Path | None = None, pca: bool = False,
                 pca_params: str | Path | None = None, final_relu: bool = False,
                 batch_size: int = 64, device: str = "cpu") -> None:
        if checkpoint is None:
            raise EmbeddingError("the VGGish backbone needs a local checkpoint: pass checkpoint="
                                 "'/path/to/vggish-10086976.pth' (torchvggish state dict); nothing "
                                 "is downloaded at run time")
        super().__init__(device=device, pca=pca, final_relu=final_relu)
        state, pca_state = load_vggish_state(checkpoint)
        self.net = VGGish(final_relu=final_relu)
        try:
            self.net.load_state_dict(state)
        except RuntimeError as exc:
            raise EmbeddingError(f"{checkpoint}: not a torchvggish VGGish state dict ({exc})") from exc
        self.net.eval().to(self.device)
        weight_files = [Path(checkpoint)]
        self.pca = None
        if pca:
            if pca_params is not None:
                pca_state = load_pca(pca_params)
                weight_files.append(Path(pca_params))
            if not pca_state:
                raise EmbeddingError("pca=True needs pca_params='vggish_pca_params-970ea276.pth' "
                                     "or a checkpoint holding pproc.pca_matrix / pproc.pca_means")
            self.pca = (pca_state["pca_eigen_vectors"].float().reshape(EMBEDDING_SIZE, EMBEDDING_SIZE),
                        pca_state["pca_means"].float().reshape(EMBEDDING_SIZE))
        self.weights_id = "+".join(file_hash(p)[:16] for p in weight_files)
        self.batch_size = int(batch_size)

    def postprocess(self, emb: torch.Tensor) -> torch.Tensor:
        """AudioSet PCA (with whitening), clip to [-2, 2], quantise to 0..255."""
        matrix, means = self.pca  # type: ignore[misc]
        projected = (emb - means) @ matrix.T
        lo, hi = QUANTIZE_RANGE
        return torch.round((projected.clamp(lo, hi) - lo) * (255.0 / (hi - lo)))

    @torch.no_grad()
    def embed_at_rate(self, audio: np.ndarray) -> np.ndarray:
        examples = torch.from_numpy(log_mel_examples(audio))[:, None]
        outs = []
        for i in range(0, examples.shape[0], self.batch_size):
            emb = self.net(examples[i:i + self.batch_size].to(self.device)).float().cpu()
            outs.append(self.postprocess(emb) if self.pca is not None else emb)
        return torch.cat(outs).numpy().astype(np.float32)
