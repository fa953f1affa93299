import numpy as np
import pytest
import torch

from benchmark.probes.heads import HEADS, build_head, n_parameters
from benchmark.probes.pooling import GIVEN, PoolingError, pool, pooled_matrix


def test_pooling_values():
    x = np.array([[1.0, 3.0], [2.0, 2.0]])  # [dim=2, frames=2]
    np.testing.assert_allclose(pool(x, "mean"), [2.0, 2.0])
    np.testing.assert_allclose(pool(x, "mean_std"), [2.0, 2.0, 1.0, 0.0])
    np.testing.assert_allclose(pool(x, "max"), [3.0, 2.0])
    np.testing.assert_allclose(pool(np.array([[5.0], [7.0]]), "mean_std"), [5.0, 7.0, 0.0, 0.0])
    np.testing.assert_allclose(pool(np.array([4.0, 5.0]), "mean_std"), [4.0, 5.0])  # already pooled


def test_pooled_matrix_records_given_and_rejects_bad_inputs():
    emb = {"a": np.ones((3, 4)), "b": np.zeros((3, 2))}
    m, applied = pooled_matrix(emb, ["b", "a"], "mean_std")
    assert m.shape == (2, 6) and m.dtype == np.float32 and applied == "mean_std"
    np.testing.assert_allclose(m[1], [1, 1, 1, 0, 0, 0])
    m, applied = pooled_matrix({"a": np.ones(5)}, ["a"], "mean_std")
    assert applied == GIVEN and m.shape == (1, 5)
    with pytest.raises(PoolingError, match="no embedding.*'c'"):
        pooled_matrix(emb, ["a", "c"], "mean")
    with pytest.raises(PoolingError, match="some embeddings are \\[dim\\] vectors"):
        pooled_matrix({"a": np.ones(3), "b": np.ones((3, 2))}, ["a", "b"], "mean")
    with pytest.raises(PoolingError, match="item 'b'.*differs"):
        pooled_matrix({"a": np.ones((3, 2)), "b": np.ones((4, 2))}, ["a", "b"], "mean")
    with pytest.raises(PoolingError, match="item 'a'.*NaN"):
        pooled_matrix({"a": np.full((3, 2), np.nan)}, ["a"], "mean")
    with pytest.raises(PoolingError, match="frames >= 1"):
        pool(np.ones((3, 0)), "mean")
    with pytest.raises(PoolingError, match="unknown pooling"):
        pool(np.ones((3, 2)), "median")


def test_heads_shapes_and_sizes():
    assert set(HEADS) == {"linear", "mlp"}
    lin = build_head("linear", 10, 3)
    mlp = build_head("mlp", 10, 3, hidden=512, dropout=0.5)
    assert n_parameters(lin) == 10 * 3 + 3
    assert n_parameters(mlp) == 10 * 512 + 512 + 512 * 3 + 3
    x = torch.randn(7, 10)
    assert lin(x).shape == (7, 3) and mlp(x).shape == (7, 3)
    drop = [m for m in mlp.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(drop) == 1 and drop[0].p == 0.5
    with pytest.raises(ValueError, match="unknown probe head"):
        build_head("transformer", 10, 3)
