"""VGGish from a local checkpoint: key layout, NHWC flatten order, preprocessing, PCA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.embeddings import create_backbone
from benchmark.embeddings.base import EmbeddingError
from benchmark.embeddings.vggish import (
    EXAMPLE_FRAMES,
    VGGishBackbone,
    hertz_to_mel,
    log_mel_examples,
    mel_matrix,
)
from benchmark.metrics.signals import chord_progression

CONVS = {0: (1, 64), 3: (64, 128), 6: (128, 256), 8: (256, 256), 11: (256, 512), 13: (512, 512)}
FCS = {0: (12288, 4096), 2: (4096, 4096), 4: (4096, 128)}


def _random(shape: tuple[int, ...], g: torch.Generator, scale: float) -> torch.Tensor:
    """Random ``shape`` tensor whose rows are shifted windows of one random vector: every row
    differs and varies along the input axis, yet the saved file stays small (torch.save stores
    the ~50k-element storage, not the 50M-element view of the 12288 x 4096 layer)."""
    rows, cols = shape[0], int(np.prod(shape[1:]))
    base = torch.randn(cols + 7 * (rows - 1), generator=g) * scale
    return torch.as_strided(base, (rows, cols), (7, 1)).view(shape) if len(shape) == 2 else \
        torch.as_strided(base, (rows, cols), (7, 1)).reshape(shape)


def _torchvggish_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in torchvggish's key layout (what vggish-10086976.pth holds)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for i, (cin, cout) in CONVS.items():
        state[f"features.{i}.weight"] = _random((cout, cin, 3, 3), g, (2 / (9 * cin)) ** 0.5)
        state[f"features.{i}.bias"] = torch.randn(cout, generator=g) * 0.01
    for i, (fin, fout) in FCS.items():
        state[f"embeddings.{i}.weight"] = _random((fout, fin), g, (2 / fin) ** 0.5)
        state[f"embeddings.{i}.bias"] = torch.randn(fout, generator=g) * 0.01
    return state


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("vggish") / "vggish-10086976.pth"
    torch.save(_torchvggish_state(), path)
    assert path.stat().st_size < 30e6  # conv weights are materialised; the big FC views are not
    return path


def _reference_forward(state, x: torch.Tensor) -> torch.Tensor:
    """Independent functional VGGish: conv/ReLU (+2x2 max pool after 0, 3, 8, 13), NHWC flatten."""
    h = x
    for i in CONVS:
        h = F.relu(F.conv2d(h, state[f"features.{i}.weight"], state[f"features.{i}.bias"], padding=1))
        if i in (0, 3, 8, 13):
            h = F.max_pool2d(h, 2)
    h = h.transpose(1, 3).transpose(1, 2).contiguous().view(h.shape[0], -1)  # as torchvggish: [B, H, W, C]
    h = F.relu(F.linear(h, state["embeddings.0.weight"], state["embeddings.0.bias"]))
    h = F.relu(F.linear(h, state["embeddings.2.weight"], state["embeddings.2.bias"]))
    return F.linear(h, state["embeddings.4.weight"], state["embeddings.4.bias"])


def test_mel_matrix_properties():
    m = mel_matrix()
    assert m.shape == (257, 64)
    assert (m[0] == 0).all()                                   # DC bin carries no weight
    freqs = np.linspace(0, 8000, 257)
    assert (m[(freqs < 125) | (freqs > 7500)] == 0).all()      # 125-7500 Hz only
    assert m.max() <= 1.0 and (m.max(axis=0) > 0.5).all()      # unit-peak triangles, none empty
    centers = np.linspace(hertz_to_mel(125), hertz_to_mel(7500), 66)[1:-1]
    peak_mel = hertz_to_mel(freqs[m.argmax(axis=0)])
    assert (np.diff(peak_mel) > 0).all() and np.abs(peak_mel - centers).max() < 60  # near their centres
    assert hertz_to_mel(700.0) == pytest.approx(1127 * np.log(2))


def test_examples_framing_and_log_offset():
    sr = 16000
    x = chord_progression(sr, 3.0, seed=0)
    ex = log_mel_examples(x)
    n_frames = 1 + (x.size - 400) // 160                       # 298 frames of 25 ms every 10 ms
    assert ex.shape == (n_frames // EXAMPLE_FRAMES, 96, 64) == (3, 96, 64)
    assert log_mel_examples(np.zeros(4000)).shape == (1, 96, 64)  # 0.25 s -> one padded example
    assert np.allclose(log_mel_examples(np.zeros(sr)), np.log(0.01))  # silence = log offset
    # a 1 kHz tone peaks in the mel band around 1 kHz
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(sr) / sr)
    band = int(log_mel_examples(tone)[0].mean(0).argmax())
    centers_hz = 700 * np.expm1(np.linspace(hertz_to_mel(125), hertz_to_mel(7500), 66)[1:-1] / 1127)
    assert abs(centers_hz[band] - 1000) < 60


def test_loads_torchvggish_layout_and_matches_reference_forward(checkpoint):
    bb = VGGishBackbone(checkpoint=checkpoint)
    x = chord_progression(16000, 2.0, seed=1)
    emb = bb.embed(x, 16000)
    assert emb.shape == (2, 128) and emb.dtype == np.float32
    examples = torch.from_numpy(log_mel_examples(x))[:, None]
    want = _reference_forward(_torchvggish_state(), examples).numpy()
    np.testing.assert_allclose(emb, want, rtol=1e-4, atol=1e-4)
    assert (emb < 0).any()                                     # FAD: pre-ReLU output
    relu = VGGishBackbone(checkpoint=checkpoint, final_relu=True).embed(x, 16000)
    np.testing.assert_allclose(relu, np.maximum(want, 0), rtol=1e-4, atol=1e-4)
    assert bb.identity != VGGishBackbone(checkpoint=checkpoint, final_relu=True).identity


def test_pca_postprocessing(tmp_path, checkpoint):
    pca_path = tmp_path / "vggish_pca_params-970ea276.pth"
    torch.save({"pca_eigen_vectors": np.eye(128) * 0.5, "pca_means": np.full(128, 0.1)}, pca_path)
    raw = VGGishBackbone(checkpoint=checkpoint)
    pca = VGGishBackbone(checkpoint=checkpoint, pca=True, pca_params=pca_path)
    x = chord_progression(16000, 1.0, seed=2)
    expected = np.round((np.clip(0.5 * (raw.embed(x, 16000) - 0.1), -2, 2) + 2) * 255 / 4)
    np.testing.assert_array_equal(pca.embed(x, 16000), expected)
    with pytest.raises(EmbeddingError, match="pca_params"):
        VGGishBackbone(checkpoint=checkpoint, pca=True)


def test_prefixed_and_whole_module_checkpoints(tmp_path):
    state = {f"module.{k}": v for k, v in _torchvggish_state(1).items()}
    state["module.pproc.pca_matrix"] = torch.eye(128)
    state["module.pproc.pca_means"] = torch.zeros(128, 1)
    path = tmp_path / "wrapped.pth"
    torch.save(state, path)
    bb = VGGishBackbone(checkpoint=path, pca=True)
    assert bb.embed(chord_progression(16000, 1.0), 16000).shape == (1, 128)


def test_clear_errors(tmp_path):
    with pytest.raises(EmbeddingError, match="needs a local checkpoint"):
        create_backbone("vggish")
    with pytest.raises(EmbeddingError, match="not found"):
        VGGishBackbone(checkpoint=tmp_path / "nope.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, wrong)
    with pytest.raises(EmbeddingError, match="not a torchvggish"):
        VGGishBackbone(checkpoint=wrong)
