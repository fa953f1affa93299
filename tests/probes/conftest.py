"""Synthetic labelled embeddings for probe tests (small: each probe trains in well under 1 s)."""

from pathlib import Path

import numpy as np
import pytest

from benchmark.data.dataset import Item


def make_items(labels, splits, field="instrument"):
    return [Item(id=f"it{i:04d}", path=Path(f"/synthetic/{i}.wav"), split=str(s), labels={field: lab})
            for i, (lab, s) in enumerate(zip(labels, splits))]


def make_splits(n, seed=0, fractions=(0.6, 0.2, 0.2)):
    rng = np.random.default_rng([seed, 2024])  # a stream independent of default_rng(seed) in the tests
    u = rng.random(n)
    return np.where(u < fractions[0], "train", np.where(u < fractions[0] + fractions[1], "valid", "test"))


def class_embeddings(labels, n_classes, dim=16, frames=6, signal=1.5, seed=0):
    """``[dim, frames]`` embeddings whose frame mean sits at a class centre (+ noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * signal
    return [centres[k][:, None] + rng.normal(size=(dim, frames)) for k in labels]


@pytest.fixture
def multiclass_data():
    n, k = 300, 4
    rng = np.random.default_rng(0)
    labels = rng.integers(0, k, n)
    names = [f"c{j}" for j in labels]
    items = make_items(names, make_splits(n))
    emb = {it.id: e for it, e in zip(items, class_embeddings(labels, k))}
    return items, emb, labels


@pytest.fixture(autouse=True)
def _probe_heads_on_one_thread(one_torch_thread):
    """Probe heads are tiny (see ``tests/conftest.py:one_torch_thread``)."""
