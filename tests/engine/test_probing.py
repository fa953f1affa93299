"""Probes run in worker processes give exactly the numbers of a serial run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.data.dataset import Item
from benchmark.engine.probing import run_probe_jobs
from benchmark.probes import ProbeConfig
from benchmark.probes.probe import create_task


def _jobs() -> list[tuple]:
    rng = np.random.default_rng(0)
    task = create_task("instrument")
    families = ["brass", "keyboard", "string"]
    items, embeddings = [], {}
    for i in range(60):
        label = families[i % 3]
        split = "train" if i < 36 else "valid" if i < 48 else "test"
        items.append(Item(id=f"n{i}", path=Path(f"/nonexistent/n{i}.wav"), split=split,
                          labels={"instrument": label}))
        center = np.eye(8)[i % 3] * 4.0
        embeddings[f"n{i}"] = (center[:, None] + rng.standard_normal((8, 5))).astype(np.float32)
    config = ProbeConfig(heads=["linear", "mlp"], seeds=[0, 1], max_epochs=60, patience=20, lr=1e-2)
    return [(task, embeddings, items, head, config) for head in ("linear", "mlp")]


def _untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.endswith("time_s")} for row in rows]


def test_parallel_probes_equal_serial_probes():
    serial = run_probe_jobs(_jobs(), workers=1)
    parallel = run_probe_jobs(_jobs(), workers=2)
    assert all(error is None for _, error in serial + parallel)
    for (a, _), (b, _) in zip(serial, parallel):
        assert _untimed(a.rows) == _untimed(b.rows) and _untimed(a.per_seed) == _untimed(b.per_seed)
        np.testing.assert_array_equal(a.test_item_scores.scores, b.test_item_scores.scores)
    accuracy = next(r["value"] for r in serial[0][0].rows if r["metric"] == serial[0][0].rows[0]["metric"])
    assert accuracy > 0.5  # separable classes: above chance (three classes, 1/3)


def test_a_failing_probe_is_an_error_not_a_crash():
    task, embeddings, items, head, config = _jobs()[0]
    broken = (task, {}, items, head, config)  # no embeddings at all
    (outcome, error), = run_probe_jobs([broken], workers=2)
    assert outcome is None and error
