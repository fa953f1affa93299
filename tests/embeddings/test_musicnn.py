"""PyTorch musicnn: golden values from the TensorFlow original, preprocessing against librosa,
weight cache, patching, and tags that make sense on rendered instruments."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from benchmark.embeddings.base import EmbeddingError
from benchmark.embeddings.musicnn import (
    MTT_LABELS,
    PATCH_FRAMES,
    MusicnnBackbone,
    log_mel,
    patches,
)
from benchmark.metrics.signals import chord_progression, drum_loop, render_midi

# Outputs of musicnn's original TF graph (TF 2.21 + tf_keras, musicnn 0.1.0 MTT_musicnn
# checkpoint) on the patches below; produced once with tests/embeddings/test_musicnn_tf_parity.py's
# graph code. (top-5 tag indices, their probabilities, penultimate[:6], sum of penultimate)
GOLDEN = {
    "chords": ([0, 9, 2, 1, 32], [0.5574501, 0.3055025, 0.2804354, 0.0954996, 0.0817761],
               [1.2050097, -0.0328787, 2.4075346, -0.1860576, 0.1402818, 1.2165266], 52.483479),
    "drums": ([11, 5, 0, 3, 41], [0.3462501, 0.2746831, 0.2217322, 0.1381392, 0.1326683],
              [0.2396807, -0.0328787, 0.3095368, -0.1860576, -0.0787033, 0.1535423], 18.858200),
}


@pytest.mark.parametrize("name, make", [("chords", chord_progression), ("drums", drum_loop)])
def test_golden_values_from_tensorflow(musicnn, name, make):
    batch = patches(log_mel(make(16000, 3.2, seed=0)))
    assert batch.shape == (1, PATCH_FRAMES, 96)
    out = musicnn.forward_patches(batch)
    top, probs, pen6, pen_sum = GOLDEN[name]
    assert np.argsort(-out["tags"][0])[:5].tolist() == top
    np.testing.assert_allclose(out["tags"][0][top], probs, atol=2e-5)
    np.testing.assert_allclose(out["penultimate"][0][:6], pen6, atol=1e-4)
    assert float(out["penultimate"][0].sum()) == pytest.approx(pen_sum, abs=2e-3)


def test_log_mel_matches_librosa_recipe():
    # musicnn: librosa.feature.melspectrogram (defaults) -> float16 -> log10(10000 x + 1)
    y = chord_progression(16000, 2.0, seed=1)
    ref = librosa.feature.melspectrogram(y=y, sr=16000, hop_length=256, n_fft=512, n_mels=96).T
    ref = np.log10(10000 * ref.astype(np.float16).astype(np.float32) + 1)
    ours = log_mel(y)
    assert ours.shape == ref.shape == (1 + y.size // 256, 96)
    np.testing.assert_allclose(ours, ref, atol=2e-3)  # float16 rounding of near-tie values


def test_patching_rules():
    spec = np.arange(500 * 96, dtype=np.float32).reshape(500, 96)
    p = patches(spec)
    assert p.shape == (2, PATCH_FRAMES, 96)             # tail of 126 frames dropped
    np.testing.assert_array_equal(p[1, 0], spec[PATCH_FRAMES])
    short = patches(spec[:50])                          # shorter than 3 s: repeat-padded
    assert short.shape == (1, PATCH_FRAMES, 96)
    np.testing.assert_array_equal(short[0, 50:100], spec[:50])


def test_embed_shapes_and_resampling(musicnn):
    x16 = chord_progression(16000, 6.5, seed=2)
    emb = musicnn.embed(x16, 16000)
    assert emb.shape == (2, 200) and emb.dtype == np.float32
    x44 = librosa.resample(x16, orig_sr=16000, target_sr=44100)
    assert musicnn.embed(x44, 44100).shape == (2, 200)
    assert musicnn.embed(x16[:8000], 16000).shape == (1, 200)  # 0.5 s clip still embeds
    with pytest.raises(EmbeddingError, match="NaN"):
        musicnn.embed(np.full(16000, np.nan, np.float32), 16000)


def test_converted_weights_cached_once(tmp_path):
    a = MusicnnBackbone(cache_dir=tmp_path)
    files = list((tmp_path / "weights" / "musicnn").glob("MTT_musicnn-*.pt"))
    assert len(files) == 1 and a.weights_id in files[0].name
    mtime = files[0].stat().st_mtime_ns
    b = MusicnnBackbone(cache_dir=tmp_path)
    assert files[0].stat().st_mtime_ns == mtime and a.identity == b.identity
    files[0].write_bytes(b"corrupt")                   # a damaged conversion is redone
    c = MusicnnBackbone(cache_dir=tmp_path)
    x = chord_progression(16000, 3.2)
    np.testing.assert_array_equal(a.embed(x, 16000), c.embed(x, 16000))


def test_layers_and_identity(tmp_path):
    pooled = MusicnnBackbone(layer="mean_pool", cache_dir=tmp_path)
    default = MusicnnBackbone(cache_dir=tmp_path)
    assert pooled.dim == 753 and pooled.identity != default.identity
    with pytest.raises(EmbeddingError, match="layer"):
        MusicnnBackbone(layer="logits", cache_dir=tmp_path)
    with pytest.raises(EmbeddingError, match="unknown musicnn model"):
        MusicnnBackbone(model="MSD_musicnn_big", cache_dir=tmp_path)


@pytest.mark.parametrize("program, is_drum, expected", [
    (0, False, {"piano"}),                      # acoustic grand piano
    (40, False, {"violin", "strings"}),         # violin
    (52, False, {"choir", "choral"}),           # choir aahs
    (104, False, {"sitar", "indian"}),          # sitar
    (0, True, {"drums", "beat", "beats"}),      # GM drum kit
])
def test_tags_of_rendered_instruments(musicnn, program, is_drum, expected):
    pytest.importorskip("fluidsynth")
    if is_drum:
        audio = render_midi(0, [36, 42, 38, 42] * 6, 16000, note_seconds=0.25, is_drum=True)
    else:
        melody = [int(p) for p in np.random.default_rng(0).integers(55, 79, 24)]
        audio = render_midi(program, melody, 16000, note_seconds=0.4, polyphony=2)
    tags, labels = musicnn.tags(audio, 16000)
    assert labels == MTT_LABELS
    top3 = {labels[i] for i in np.argsort(-tags.mean(0))[:3]}
    assert top3 & expected, f"top-3 tags {top3} miss {expected}"
