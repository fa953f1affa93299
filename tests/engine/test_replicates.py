"""Training-seed replicates: the crossed bootstrap, the seed-aware comparison (calibrated under
the null of two seed sets of one recipe, where an item-only test is not), and the pipeline's
grouped rows for reconstruction and probes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
from scipy import stats

from benchmark.cache import ArtifactCache
from benchmark.codecs.registry import create_codec
from benchmark.data.dataset import Item
from benchmark.engine.compare import (compare_to_reference, correct_family, paired_difference,
                                      seeded_paired_difference)
from benchmark.engine.probing import group_difference, group_probe_rows, merge_predictions
from benchmark.engine.run import Grouping, build_metrics, score_sources
from benchmark.engine.sources import CodecSource
from benchmark.engine.summarise import bootstrap_ci, crossed_bootstrap, crossed_ci, seed_effects
from benchmark.probes import ProbePredictions
from benchmark.results import ResultsStore
from tasks import create_task

ALPHA = 0.05
NULL_BOUND_200 = int(stats.binom.ppf(0.99, 200, ALPHA))


def recipe(rng, n_seeds, n_items, item_effects, mean=0.0, seed_sd=0.3, noise_sd=0.5):
    """A seed x item table: mean + training-seed effect + item effect (shared by every codec on
    the same test set) + seed x item noise."""
    return (mean + rng.normal(0, seed_sd, (n_seeds, 1)) + item_effects[None, :]
            + rng.normal(0, noise_sd, (n_seeds, n_items)))


# -- the crossed bootstrap ---------------------------------------------------------------------
def test_one_seed_is_the_item_bootstrap():
    v = np.random.default_rng(0).normal(size=40)
    assert crossed_ci(v[None, :], seed=3) == bootstrap_ci(v, seed=3)


def test_crossed_bootstrap_variance_is_item_plus_seed_part():
    rng = np.random.default_rng(1)
    cells = recipe(rng, 3, 200, rng.normal(0, 1.0, 200))
    reps = crossed_bootstrap(cells, seed=0, n_boot=20000)
    item_part = cells.mean(axis=0).var(ddof=1) / cells.shape[1]
    seed_part = cells.mean(axis=1).var(ddof=1) / cells.shape[0]
    assert reps.var() == pytest.approx(item_part * (199 / 200) + seed_part, rel=0.05)
    assert seed_effects(np.array([1.0, 2.0, 3.0])) == pytest.approx(np.array([-1, 0, 1]) * math.sqrt(1.5))


def test_crossed_interval_covers_the_recipe_mean_more_often_than_an_item_interval():
    """Over many draws of 3 training runs, the item-only interval misses the recipe's true mean
    most of the time when seeds spread; the crossed interval covers it far more often (with 3
    seeds it still under-covers: the docs say so, and the comparisons use t with few df)."""
    rng = np.random.default_rng(2)
    items = rng.normal(0, 0.5, 60)
    true = items.mean()
    covered_item = covered_crossed = 0
    for r in range(200):
        cells = recipe(rng, 3, 60, items, seed_sd=0.6, noise_sd=0.3)
        lo, hi = bootstrap_ci(cells.mean(axis=0), seed=r)
        covered_item += lo <= true <= hi
        lo, hi = crossed_ci(cells, seed=r)
        covered_crossed += lo <= true <= hi
    assert covered_item / 200 < 0.5
    assert covered_crossed / 200 > 0.75


# -- the seed-aware comparison -----------------------------------------------------------------
def test_two_seed_sets_of_one_recipe_are_flagged_at_most_alpha():
    rng = np.random.default_rng(3)
    seeded = naive = 0
    for r in range(200):
        items = rng.normal(0, 1.0, 80)
        a, b = recipe(rng, 3, 80, items), recipe(rng, 3, 80, items)
        seeded += seeded_paired_difference(a, b, seed=r, n_boot=300).p_value < ALPHA
        naive += paired_difference(a[0], b[0], seed=r, n_boot=300).p_value < ALPHA  # one run each
    assert seeded <= NULL_BOUND_200
    assert naive > 100, "one run per codec reads the seed spread as a difference: why seeds are needed"


def test_a_real_gap_between_recipes_is_detected_with_three_seeds():
    """A gap of 10 seed SDs passes a 6-comparison Holm level nearly always; with 3 seeds per side
    (about 4 df) a gap of ~6 seed SDs would be found only ~80 % of the time: the price of few seeds."""
    rng = np.random.default_rng(4)
    hits = 0
    for r in range(50):
        items = rng.normal(0, 1.0, 80)
        a, b = recipe(rng, 3, 80, items, mean=3.0), recipe(rng, 3, 80, items)
        test = seeded_paired_difference(a, b, seed=r, n_boot=300)
        hits += test.p_value < ALPHA / 6  # a family of 6 comparisons
        assert test.seeds_a == 3 and test.seeds_b == 3 and 2 <= test.df < 200
    assert hits >= 45


def test_a_seeded_codec_against_a_deterministic_reference():
    rng = np.random.default_rng(5)
    items = rng.normal(0, 1.0, 50)
    a, b = recipe(rng, 3, 50, items, mean=0.1), items + rng.normal(0, 0.5, 50)
    test = seeded_paired_difference(a, b)
    assert test.seeds_a == 3 and test.seeds_b == 1
    assert test.delta == pytest.approx(a.mean() - b.mean())
    assert test.ci_low < test.delta < test.ci_high
    row = correct_family([test])[0]
    assert row["mdd"] > 0 and math.isfinite(row["mdd"])
    rows = compare_to_reference({"m": {"a": a, "b": b}}, "b", higher_is_better={"m": True})
    assert rows[0]["method"].startswith("training seed x item")


# -- probes ------------------------------------------------------------------------------------
def _predictions(y, correct, seed):
    rng = np.random.default_rng(seed)
    guess = np.where(correct, y, (y + 1 + rng.integers(0, 2, y.size)) % 3)
    scores = np.full((1, y.size, 3), 0.1)
    scores[0, np.arange(y.size), guess] = 0.8
    return ProbePredictions(task="instrument", ids=[f"i{k}" for k in range(y.size)], y_true=y, scores=scores,
                            classes=["a", "b", "c"], seeds=(seed,))


def test_group_probe_rows_pool_replicates_and_compare_with_seed_spread():
    task = create_task("instrument")
    rng = np.random.default_rng(6)
    y = rng.integers(0, 3, 120)
    good = [_predictions(y, rng.random(120) < p, s) for s, p in enumerate((0.85, 0.9, 0.95))]
    weak = [_predictions(y, rng.random(120) < p, s) for s, p in enumerate((0.5, 0.55, 0.6))]
    rows = {r["metric"]: r for r in group_probe_rows(task, good, n_boot=400, boot_seed=0)}
    per_run = [p.metric_values(task)["accuracy"] for p in good]
    assert rows["accuracy"]["value"] == pytest.approx(np.mean(per_run))
    assert rows["accuracy"]["ci_low"] < rows["accuracy"]["value"] < rows["accuracy"]["ci_high"]
    assert merge_predictions(good).scores.shape == (3, 120, 3)
    diff = group_difference(good, weak, task, "accuracy", n_boot=400)
    assert diff.delta == pytest.approx(np.mean(per_run) - np.mean([p.metric_values(task)["accuracy"] for p in weak]))
    assert diff.p_value < 0.05 and diff.seeds_a == 3 and diff.effect_size > 0
    other = _predictions(y[:100], np.ones(100, bool), 0)
    with pytest.raises(ValueError, match="different test items"):
        merge_predictions([good[0], other])


# -- the pipeline's grouped rows ---------------------------------------------------------------
def test_score_sources_summarises_replicates_as_one_codec(tmp_path):
    sr = 16000
    rng = np.random.default_rng(7)
    items = []
    for k in range(8):
        path = tmp_path / f"x{k}.wav"
        sf.write(path, (0.3 * rng.standard_normal(sr // 2)).astype(np.float32), sr)
        items.append(Item(id=f"x{k}", path=path, split="test", labels={}))
    codecs = {f"noisy@seed{s}": create_codec("tests.plugins:NoisyCodec", snr_db=20.0 + s, seed=s) for s in range(3)}
    codecs["clean"] = create_codec("tests.plugins:NoisyCodec", snr_db=40.0)
    sources = [(CodecSource(c, label), {"codec_label": label, "codec_id": c.identity}) for label, c in codecs.items()]
    grouping = Grouping({"noisy": [f"noisy@seed{s}" for s in range(3)], "clean": ["clean"]},
                        seeds={f"noisy@seed{s}": s for s in range(3)},
                        columns={"noisy": {"codec_label": "noisy", "codec_id": "group"}})
    store = ResultsStore(tmp_path / "run", "run", "h")
    metrics = build_metrics(["si_sdr"], {}, cache_dir=None, reference_name="r", workers=1)
    outcomes = score_sources(sources, items, metrics, store, segment_seconds=None, cache=ArtifactCache(tmp_path / "c"),
                             reference_codec="clean", grouping=grouping, log=lambda m: None)
    per_seed = [np.mean([r.values["si_sdr"] for r in o.results]) for o in outcomes[:3]]
    rows = [r for r in store.rows if r["metric"] == "si_sdr"]
    group = next(r for r in rows if r["stage"] == "reconstruction" and r["codec_label"] == "noisy")
    assert group["value"] == pytest.approx(np.mean(per_seed))
    assert per_seed == pytest.approx([20, 21, 22], abs=0.3)
    assert group["settings"]["seed_std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert "training seed x item" in group["settings"]["ci_covers"]
    assert group["ci_low"] < np.mean(per_seed) < group["ci_high"]
    assert sorted(r["seed"] for r in rows if r["stage"] == "reconstruction_seed") == [0, 1, 2]
    paired = [r for r in store.rows if r["stage"] == "reconstruction_paired"]
    assert [r["codec_label"] for r in paired] == ["noisy"]
    assert paired[0]["settings"]["seeds"] == [3, 1] and "training seeds (3 vs 1)" in paired[0]["settings"]["covers"]
