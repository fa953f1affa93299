"""The probe protocol end to end on synthetic embeddings with known class structure."""

import numpy as np
import pytest

import benchmark.probes.probe as probe_module
from benchmark.probes import (ProbeConfig, ProbeError, ProbePredictions, paired_test, pooled_matrix, run_probe,
                              run_probes)
from benchmark.probes.pooling import PoolingError
from benchmark.probes.train import Standardizer, predict_scores, train_probe
from tasks import create_task

from .conftest import class_embeddings, make_items, make_splits

FAST = ProbeConfig(seeds=(0, 1), max_epochs=80, patience=10, bootstrap=300, lr=3e-3)


def test_informative_features_beat_chance_clearly(multiclass_data):
    items, emb, _ = multiclass_data
    for head in ("linear", "mlp"):
        out = run_probe("instrument", emb, items, head, FAST)
        acc = next(r for r in out.rows if r["metric"] == "accuracy")
        assert acc["value"] > 0.9, head
        assert acc["ci_low"] > 0.8  # far above chance 0.25


def test_shuffled_labels_give_chance_level():
    n, k = 700, 4
    rng = np.random.default_rng(5)
    labels = rng.integers(0, k, n)
    splits = make_splits(n, seed=5, fractions=(0.4, 0.2, 0.4))
    emb_list = class_embeddings(labels, k, seed=5)  # features carry the true labels ...
    shuffled = rng.permutation(labels)              # ... but the probe sees permuted ones
    items = make_items([f"c{j}" for j in shuffled], splits)
    emb = {it.id: e for it, e in zip(items, emb_list)}
    out = run_probe("instrument", emb, items, "linear", FAST)
    acc = out.value("accuracy")
    assert abs(acc - 1 / k) < 0.08
    row = next(r for r in out.rows if r["metric"] == "accuracy")
    assert row["ci_low"] < 1 / k < row["ci_high"] + 0.02


def test_tagging_probe_informative_and_shuffled():
    n, n_tags = 500, 5
    rng = np.random.default_rng(7)
    tags = rng.random((n, n_tags)) < 0.3
    dirs = rng.normal(size=(n_tags, 12)) * 1.5
    emb_list = [(t @ dirs)[:, None] + rng.normal(size=(12, 4)) for t in tags]
    splits = make_splits(n, seed=7, fractions=(0.5, 0.2, 0.3))

    def as_items(tag_matrix):
        return make_items([tuple(f"t{j}" for j in np.flatnonzero(t)) for t in tag_matrix], splits, field="tags")

    items = as_items(tags)
    emb = {it.id: e for it, e in zip(items, emb_list)}
    out = run_probe("tagging", emb, items, "linear", FAST)
    assert out.value("roc_auc_macro") > 0.9 and out.value("pr_auc_macro") > 0.7
    assert out.rows[0]["n_classes_scored"] == n_tags and out.rows[0]["n_classes_skipped"] == 0
    shuffled = as_items(tags[rng.permutation(n)])
    out = run_probe("tagging", {it.id: e for it, e in zip(shuffled, emb_list)}, shuffled, "linear", FAST)
    assert abs(out.value("roc_auc_macro") - 0.5) < 0.07


def test_rows_carry_seed_statistics_and_provenance(multiclass_data):
    items, emb, _ = multiclass_data
    out = run_probe("instrument", emb, items, "mlp", FAST)
    n = {s: sum(it.split == s for it in items) for s in ("train", "valid", "test")}
    assert [r["metric"] for r in out.rows] == ["accuracy", "balanced_accuracy"]
    for row in out.rows:
        seeds = [p["value"] for p in out.per_seed if p["metric"] == row["metric"]]
        assert len(seeds) == 2
        assert row["value"] == pytest.approx(np.mean(seeds))
        assert row["std"] == pytest.approx(np.std(seeds, ddof=1))
        assert row["ci_low"] <= row["value"] <= row["ci_high"]
        assert (row["n_train"], row["n_valid"], row["n_test"]) == (n["train"], n["valid"], n["test"])
        assert row["head"] == "mlp" and row["pooling"] == "mean_std" and row["seeds"] == [0, 1]
        assert row["feature_dim"] == 32 and row["n_classes"] == 4 and row["n_boot"] == 300
    assert out.rows[0]["primary"] and not out.rows[1]["primary"]
    assert out.settings["config"]["seeds"] == [0, 1]
    assert {p["selection"] for p in out.per_seed} == {"valid_accuracy"}
    assert out.test_item_scores.scores.shape == (2, n["test"], 4)


def test_probe_is_deterministic(multiclass_data):
    items, emb, _ = multiclass_data
    a = run_probe("instrument", emb, items, "mlp", FAST)
    b = run_probe("instrument", emb, items, "mlp", FAST)
    assert a.rows == b.rows
    np.testing.assert_array_equal(a.test_item_scores.scores, b.test_item_scores.scores)


def test_standardisation_is_fitted_on_train_only(multiclass_data, monkeypatch):
    items, emb, _ = multiclass_data
    emb = dict(emb)
    for it in items:  # extreme values outside train would move any statistic that saw them
        if it.split != "train":
            emb[it.id] = emb[it.id] + 1e4
    seen = []
    original = Standardizer.fit.__func__

    def spy(cls, x, eps=1e-8):
        seen.append(np.array(x))
        return original(cls, x, eps)

    monkeypatch.setattr(Standardizer, "fit", classmethod(spy))
    out = run_probe("instrument", emb, items, "linear", FAST)
    train_ids = [it.id for it in items if it.split == "train"]
    x_train, _ = pooled_matrix(emb, train_ids, "mean_std")
    assert len(seen) == 1 and seen[0].shape == x_train.shape
    np.testing.assert_allclose(out.standardizer.mean, x_train.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(out.standardizer.std, x_train.std(axis=0), rtol=1e-5)
    assert np.abs(out.standardizer.mean).max() < 100  # the +1e4 items never entered the fit


def test_standardizer_keeps_constant_features_finite():
    s = Standardizer.fit(np.array([[1.0, 5.0], [3.0, 5.0]]))
    np.testing.assert_allclose(s.mean, [2.0, 5.0])
    np.testing.assert_allclose(s.std, [1.0, 1.0])
    np.testing.assert_allclose(s.transform(np.array([[3.0, 6.0]])), [[1.0, 1.0]])


def test_checkpoint_is_the_best_validation_epoch():
    task = create_task("instrument")
    rng = np.random.default_rng(0)

    def make(n):  # one weakly informative feature among 100: the MLP overfits the rest
        y = rng.integers(0, 2, n)
        x = rng.normal(size=(n, 100)).astype(np.float32)
        x[:, 0] += 2 * y - 1
        return x, y

    (xt, yt), (xv, yv) = make(40), make(200)
    tp = train_probe(task, "mlp", xt, yt, xv, yv, ["a", "b"], seed=0, max_epochs=200, patience=200)
    history = np.array(tp.history)
    assert tp.epochs_run == 200 and len(history) == 200
    assert tp.best_valid == history.max() and tp.best_epoch == int(np.argmax(history)) + 1
    assert tp.best_epoch < tp.epochs_run and history[-1] < tp.best_valid  # training went past it
    restored = task.metrics(yv, predict_scores(task, tp.model, xv), ["a", "b"])["accuracy"]
    assert restored == pytest.approx(tp.best_valid)  # the returned weights are that epoch's


def test_early_stopping_stops_after_patience(multiclass_data):
    items, emb, _ = multiclass_data
    out = run_probe("instrument", emb, items, "linear", ProbeConfig(seeds=(0,), max_epochs=500, patience=5,
                                                                     bootstrap=0, lr=3e-3))
    p = out.per_seed[0]
    assert p["epochs_run"] < 500 and p["epochs_run"] - p["best_epoch"] == 5
    assert np.isnan(out.rows[0]["ci_low"])  # bootstrap disabled


def test_test_split_is_scored_once_per_seed(multiclass_data, monkeypatch):
    items, emb, _ = multiclass_data
    n_test = sum(it.split == "test" for it in items)
    calls = []

    def spy(task, model, x, device="cpu"):
        calls.append(x.shape[0])
        return predict_scores(task, model, x, device)

    monkeypatch.setattr(probe_module, "predict_scores", spy)
    run_probe("instrument", emb, items, "linear", ProbeConfig(seeds=(0, 1, 2), max_epochs=20, bootstrap=10))
    assert calls == [n_test] * 3


def test_pre_pooled_embeddings_are_used_as_given(multiclass_data):
    items, emb, _ = multiclass_data
    pooled = {k: v.mean(axis=1) for k, v in emb.items()}
    out = run_probe("instrument", pooled, items, "linear", FAST)
    assert out.pooling == "given" and out.rows[0]["feature_dim"] == 16
    assert out.value("accuracy") > 0.9


def test_missing_split_or_embedding_is_a_clear_error(multiclass_data):
    items, emb, _ = multiclass_data
    no_valid = [it for it in items if it.split != "valid"]
    with pytest.raises(ProbeError, match="split\\(s\\) \\['valid'\\]"):
        run_probe("instrument", emb, no_valid, "linear", FAST)
    partial = {k: v for k, v in list(emb.items())[5:]}
    with pytest.raises(PoolingError, match="instrument: 5 of 300 labelled items have no embedding"):
        run_probe("instrument", partial, items, "linear", FAST)
    with pytest.raises(ProbeError, match="unknown probe head"):
        run_probe("instrument", emb, items, "svm", FAST)
    with pytest.raises(ProbeError, match="unknown pooling"):
        ProbeConfig(pooling="attention")


def test_valid_loss_selects_when_the_metric_is_undefined_on_valid():
    n = 200
    rng = np.random.default_rng(30)
    splits = make_splits(n, seed=3)
    has_tag = (rng.random(n) < 0.5) & (splits != "valid")  # no validation item has a tag
    items = make_items([("t0",) if h else () for h in has_tag], splits, field="tags")
    emb = {it.id: rng.normal(size=(8, 3)) + 2.0 * h for it, h in zip(items, has_tag)}
    out = run_probe("tagging", emb, items, "linear", FAST)
    assert {p["selection"] for p in out.per_seed} == {"valid_loss"}
    assert out.value("roc_auc_macro") > 0.9


def test_paired_test_between_two_codecs(multiclass_data, tmp_path):
    items, emb, labels = multiclass_data
    rng = np.random.default_rng(11)
    weak = {k: v + rng.normal(scale=5.0, size=v.shape) for k, v in emb.items()}  # a worse codec
    a = run_probe("instrument", emb, items, "linear", FAST)
    b = run_probe("instrument", weak, items, "linear", FAST)
    res = paired_test(a, b, "accuracy", n_boot=500)
    assert res["delta"] == pytest.approx(a.value("accuracy") - b.value("accuracy"))
    assert res["delta"] > 0.1 and res["p_value"] < 0.01 and res["ci_low"] > 0
    same = paired_test(a, a, "accuracy", n_boot=200)
    assert same["delta"] == 0.0 and same["p_value"] == 1.0
    perm = paired_test(a, b, "balanced_accuracy", method="permutation", n_boot=200)
    assert perm["p_value"] < 0.01 and "permutation" in perm["method"]
    # round trip through the results store format, with the items in another order
    path = tmp_path / "preds" / "b.npz"
    b.test_item_scores.save(path)
    loaded = ProbePredictions.load(path)
    assert loaded.ids == b.test_item_scores.ids and loaded.classes == b.classes
    order = np.random.default_rng(0).permutation(len(loaded.ids))
    shuffled = ProbePredictions(task=loaded.task, ids=[loaded.ids[i] for i in order], y_true=loaded.y_true[order],
                               scores=loaded.scores[:, order], classes=loaded.classes, seeds=loaded.seeds)
    assert paired_test(a, shuffled, "accuracy", n_boot=500) == res


def test_paired_test_refuses_unpaired_inputs(multiclass_data):
    items, emb, _ = multiclass_data
    a = run_probe("instrument", emb, items, "linear", FAST)
    fewer = [it for it in items if not (it.split == "test" and it.id.endswith("1"))]
    b = run_probe("instrument", emb, fewer, "linear", FAST)
    with pytest.raises(ProbeError, match="test items differ"):
        paired_test(a, b, "accuracy")
    with pytest.raises(ProbeError, match="no metric 'f1'"):
        paired_test(a, a, "f1")


def test_mini_batches_and_every_configured_head(multiclass_data):
    items, emb, _ = multiclass_data
    config = ProbeConfig(heads=("linear", "mlp"), seeds=(3,), max_epochs=40, patience=8, bootstrap=50,
                         batch_size=32, lr=3e-3)
    outcomes = run_probes("instrument", emb, items, config)
    assert [o.head for o in outcomes] == ["linear", "mlp"]
    for o in outcomes:
        assert o.value("accuracy") > 0.9 and o.per_seed[0]["seed"] == 3
    again = run_probe("instrument", emb, items, "mlp", config)
    assert again.rows == outcomes[1].rows  # shuffled mini-batches are seeded too
