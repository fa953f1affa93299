"""Optional checks against TensorFlow (skipped without TF; never a CI dependency).

- musicnn: runs musicnn's own graph-building code (``musicnn.models.define_model``) on the
  checkpoint in the installed wheel and compares every output on the same spectrogram patches.
- VGGish preprocessing: our mel matrix and log-mel frames against ``tf.signal`` (the same
  HTK-mel, DC-zeroed construction the AudioSet ``mel_features`` code uses).

The musicnn part needs
TensorFlow with the legacy ``tf.compat.v1.layers`` (TF <= 2.15, or TF >= 2.16 with
``tf_keras`` and ``TF_USE_LEGACY_KERAS=1``). Not a CI dependency; run it once when the
port changes::

    TF_USE_LEGACY_KERAS=1 python -m pytest tests/embeddings/test_tf_parity.py
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from benchmark.embeddings.musicnn import (  # noqa: E402
    MusicnnBackbone,
    log_mel,
    packaged_checkpoint_dir,
    patches,
)
from benchmark.metrics.signals import chord_progression, drum_loop  # noqa: E402


def _tf_outputs(batch: np.ndarray) -> dict[str, np.ndarray]:
    try:
        tf.compat.v1.layers.conv2d  # noqa: B018 - legacy layers removed with Keras 3
    except AttributeError:
        pytest.skip("tf.compat.v1.layers unavailable (install tf_keras, set TF_USE_LEGACY_KERAS=1)")
    from musicnn import models

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, batch.shape[1], 96])
        with tf.name_scope("model"):
            out = models.define_model(x, False, "MTT_musicnn", 50)
        logits, _, _, _, _, _, mean_pool, max_pool, penultimate = out
        with tf.compat.v1.Session(graph=graph) as sess:
            tf.compat.v1.train.Saver().restore(sess, str(packaged_checkpoint_dir("MTT_musicnn")) + "/")
            vals = sess.run([tf.nn.sigmoid(logits), penultimate, mean_pool, max_pool], {x: batch})
    return dict(zip(["tags", "penultimate", "mean_pool", "max_pool"], vals))


@pytest.mark.parametrize("make", [chord_progression, drum_loop])
def test_port_matches_tensorflow(make, tmp_path):
    audio = make(16000, seconds=7.0)
    batch = patches(log_mel(audio))
    ref = _tf_outputs(batch)
    ours = MusicnnBackbone(cache_dir=tmp_path).forward_patches(batch)
    for key, tol in [("tags", 1e-5), ("penultimate", 1e-4), ("mean_pool", 1e-4), ("max_pool", 1e-3)]:
        scale = max(1.0, float(np.abs(ref[key]).max()))
        np.testing.assert_allclose(ours[key], ref[key], atol=tol * scale, err_msg=key)


def test_vggish_mel_matrix_matches_tf_signal():
    from benchmark.embeddings.vggish import mel_matrix

    ref = tf.signal.linear_to_mel_weight_matrix(num_mel_bins=64, num_spectrogram_bins=257, sample_rate=16000,
                                                lower_edge_hertz=125.0, upper_edge_hertz=7500.0,
                                                dtype=tf.float64).numpy()
    np.testing.assert_allclose(mel_matrix(), ref, atol=1e-9)


def test_vggish_log_mel_matches_tf_signal():
    from benchmark.embeddings.vggish import log_mel_examples

    x = chord_progression(16000, 2.0, seed=3).astype(np.float64)
    stft = tf.signal.stft(x, frame_length=400, frame_step=160, fft_length=512,
                          window_fn=tf.signal.hann_window, pad_end=False)
    mel = tf.signal.linear_to_mel_weight_matrix(64, 257, 16000, 125.0, 7500.0, dtype=tf.float64)
    ref = np.log(np.abs(stft.numpy()) @ mel.numpy() + 0.01)
    ours = log_mel_examples(x)
    assert ours.shape == (ref.shape[0] // 96, 96, 64)
    np.testing.assert_allclose(ours.reshape(-1, 64), ref[: ours.shape[0] * 96], atol=1e-4)
