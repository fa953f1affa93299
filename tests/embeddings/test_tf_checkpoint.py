"""Numpy reader of TF checkpoints, on the checkpoints shipped in the musicnn wheel."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.embeddings.musicnn import packaged_checkpoint_dir
from benchmark.embeddings.tf_checkpoint import CheckpointError, read_tf_checkpoint


@pytest.fixture(scope="module")
def variables():
    return read_tf_checkpoint(str(packaged_checkpoint_dir("MTT_musicnn")) + "/")


def test_reads_every_layer_with_its_shape(variables):
    # 11 batch norms x 4 + 8 convs x 2 + 2 dense x 2 + 2 Adam beta powers
    assert len(variables) == 44 + 16 + 4 + 2
    assert variables["conv2d/kernel"].shape == (7, 38, 1, 204)      # timbral 7 x 0.4*96
    assert variables["conv2d_1/kernel"].shape == (7, 67, 1, 204)    # timbral 7 x 0.7*96
    assert variables["conv2d_2/kernel"].shape == (128, 1, 1, 51)    # temporal 128 frames
    assert variables["conv2d_5/kernel"].shape == (7, 561, 1, 64)    # mid-end over 561 features
    assert variables["dense/kernel"].shape == (1506, 200)
    assert variables["dense_1/kernel"].shape == (200, 50)
    assert not any("Adam" in k for k in variables)                  # optimiser slots skipped


def test_values_are_trained_weights(variables):
    n_params = sum(v.size for k, v in variables.items() if "power" not in k)
    assert n_params == 792079
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in variables.values())
    var = variables["batch_normalization_10/moving_variance"]
    assert (var > 0).all() and var.std() > 0  # not an initialisation (ones)
    # the input batch norm's running mean is that of log10(10000 x + 1) mel values
    assert variables["batch_normalization/moving_mean"][0] == pytest.approx(1.594, abs=1e-3)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_tf_checkpoint(tmp_path / "missing")
    (tmp_path / "junk.index").write_bytes(b"\0" * 100)
    with pytest.raises(CheckpointError, match=r"junk\.index.*magic"):
        read_tf_checkpoint(tmp_path / "junk")
