"""KAD and FAD-inf, the distribution distances that hold at small N: the unbiased MMD^2 against
a double loop and a closed form, unbiasedness at small N (where FAD is not), the bandwidth taken
from the reference set only, FAD-inf against the closed-form Frechet distance, and one pipeline
run. Synthetic embeddings go through ``from_embeddings``: no audio, no network."""

from __future__ import annotations

import csv
import json
import math
import statistics

import numpy as np
import pytest

from benchmark.config import CodecSpec, DatasetSpec, RunConfig
from benchmark.engine.run import Pipeline
from benchmark.metrics import METRICS, comparability_problems, create_metric
from benchmark.metrics.base import MetricError
from benchmark.metrics.fad import FADInf, fit_inverse_n, subset_sizes
from benchmark.metrics.frechet import frechet_distance, gaussian_stats
from benchmark.metrics.kad import KAD, SCALE, median_pairwise_distance, mmd2_unbiased

TOY = "tests.plugins:BandEnergyBackbone"  # only names the backbone in the settings here


def clips(x: np.ndarray, sizes: list[int] | None = None) -> list[np.ndarray]:
    """Rows of ``x`` as clips of ``sizes`` patches each (one patch per clip by default)."""
    sizes = sizes or [1] * len(x)
    return np.split(x, np.cumsum(sizes)[:-1])


def _standard_error(values):
    return np.std(values, ddof=1) / math.sqrt(len(values))


def _mean_cov(x):
    stats = gaussian_stats(x)
    return stats.mean, stats.cov


def kad(x_clips, y_clips, **options):
    metric = KAD(backbone=TOY, cache=False, **options)
    return metric.from_embeddings(x_clips, y_clips, [f"e{i}" for i in range(len(y_clips))])


# -- (a) the estimator equals a straightforward double loop --------------------------------------
def loop_mmd2(x, y, sigma, x_groups=None, y_groups=None):
    """Unbiased MMD^2 by loops over pairs: a pair of embeddings with the same group label is left
    out; without labels each embedding is its own group (the paper's U-statistic: within-set
    pairs a != b, every cross pair)."""
    x_groups = list(range(len(x))) if x_groups is None else list(x_groups)
    y_groups = [len(x) + j for j in range(len(y))] if y_groups is None else list(y_groups)

    def k(a, b):
        return math.exp(-sum((float(p) - float(q)) ** 2 for p, q in zip(a, b)) / (2 * sigma ** 2))

    def mean(pairs):
        values = [k(a, b) for a, b in pairs]
        return sum(values) / len(values)

    xx = [(x[i], x[j]) for i in range(len(x)) for j in range(len(x)) if x_groups[i] != x_groups[j]]
    yy = [(y[i], y[j]) for i in range(len(y)) for j in range(len(y)) if y_groups[i] != y_groups[j]]
    xy = [(x[i], y[j]) for i in range(len(x)) for j in range(len(y)) if x_groups[i] != y_groups[j]]
    return mean(xx) + mean(yy) - 2 * mean(xy)


def loop_median_distance(x):
    distances = [math.dist(x[i], x[j]) for i in range(len(x)) for j in range(i + 1, len(x))]
    return statistics.median(d for d in distances if d > 0)


@pytest.fixture
def small_sets():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 3))
    x[4] = x[1]  # a repeated patch: its zero distance is left out of the bandwidth's median
    y = rng.standard_normal((7, 3)) + [0.7, 0.0, -0.3]
    return x, y


def test_estimator_equals_double_loop(small_sets):
    x, y = small_sets
    assert mmd2_unbiased(x, y, 1.3) == pytest.approx(loop_mmd2(x, y, 1.3), rel=1e-11)
    xg, yg = [0, 0, 1, 2, 2, 2, 3, 4, 4], [0, 1, 1, 2, 3, 3, 5]  # label 4 only in x, 5 only in y
    assert mmd2_unbiased(x, y, 0.8, xg, yg) == pytest.approx(loop_mmd2(x, y, 0.8, xg, yg), rel=1e-11)
    assert median_pairwise_distance(x) == pytest.approx(loop_median_distance(x), rel=1e-12)


def test_metric_equals_double_loop_with_reference_bandwidth(small_sets):
    x, y = small_sets
    sigma = loop_median_distance(x)
    xs, ys = [2, 1, 3, 1, 2], [1, 2, 1, 2, 1]  # five items of several patches each
    xg, yg = np.repeat(np.arange(5), xs), np.repeat(np.arange(5), ys)
    paired = kad(clips(x, xs), clips(y, ys))
    assert paired.value == pytest.approx(SCALE * loop_mmd2(x, y, sigma, xg, yg), rel=1e-10)
    assert paired.settings["bandwidth"] == pytest.approx(sigma, rel=1e-12)
    independent = kad(clips(x, xs), clips(y, ys), paired=False)
    assert independent.value == pytest.approx(SCALE * loop_mmd2(x, y, sigma), rel=1e-10)
    # leave-one-out contributions equal recomputing without the estimate clip (reference whole)
    for i in range(5):
        keep = yg != i
        loo = SCALE * loop_mmd2(x, y[keep], sigma, xg, yg[keep])
        assert paired.per_item[f"e{i}"] == pytest.approx(paired.value - loo, rel=1e-9, abs=1e-9)
        loo = SCALE * loop_mmd2(x, y[keep], sigma)
        assert independent.per_item[f"e{i}"] == pytest.approx(independent.value - loo, rel=1e-9, abs=1e-9)


# -- (b) closed form for two Gaussians ---------------------------------------------------------------
def gaussian_mmd2(mu1, mu2, s, sigma):
    """Population MMD^2 of N(mu1, s^2 I_d) and N(mu2, s^2 I_d) under
    k(a, b) = exp(-||a - b||^2 / (2 sigma^2)).

    For independent a ~ N(m_a, s^2 I), b ~ N(m_b, s^2 I): z = a - b ~ N(delta, t^2 I) with
    delta = m_a - m_b, t^2 = 2 s^2. Per coordinate, exp(-z^2 / (2 sigma^2)) =
    sqrt(2 pi sigma^2) N(z; 0, sigma^2), and the integral of a product of two Gaussian densities
    is a Gaussian density of the difference of their means with the summed variance:
    E exp(-z^2 / (2 sigma^2)) = sqrt(2 pi sigma^2) N(delta; 0, sigma^2 + t^2)
                              = sqrt(sigma^2 / (sigma^2 + t^2)) exp(-delta^2 / (2 (sigma^2 + t^2))).
    The coordinates are independent, so E k(a, b) = c exp(-||delta||^2 / (2 (sigma^2 + 2 s^2)))
    with c = (sigma^2 / (sigma^2 + 2 s^2))^(d/2). Hence E k(x, x') = E k(y, y') = c and
    MMD^2 = 2 c (1 - exp(-||mu1 - mu2||^2 / (2 (sigma^2 + 2 s^2)))).
    """
    d = len(mu1)
    c = (sigma ** 2 / (sigma ** 2 + 2 * s ** 2)) ** (d / 2)
    return 2 * c * (1 - math.exp(-float(np.sum((np.subtract(mu1, mu2)) ** 2)) / (2 * (sigma ** 2 + 2 * s ** 2))))


@pytest.mark.parametrize("mu", [[3.0, 0.0, 0.0], [2.0, 2.0, 0.0, 0.0, 0.0]])
def test_estimate_matches_gaussian_closed_form(mu):
    """The mean of 16 estimates on independent samples of 500 (its standard deviation: under 1 %
    of the value) within 3 % of the closed form; samples of one distribution give about 0."""
    rng = np.random.default_rng(1)
    mu, s, sigma, n = np.array(mu), 1.0, 2.0, 500
    d = mu.size
    expected = gaussian_mmd2(np.zeros(d), mu, s, sigma)  # 0.574 and 0.353
    shifted = [mmd2_unbiased(rng.normal(0.0, s, (n, d)), rng.normal(mu, s, (n, d)), sigma) for _ in range(16)]
    same = [mmd2_unbiased(rng.normal(0.0, s, (n, d)), rng.normal(0.0, s, (n, d)), sigma) for _ in range(16)]
    assert np.mean(shifted) == pytest.approx(expected, rel=0.03)
    assert abs(np.mean(same)) < 0.01 * expected


# -- (c) unbiased at small N, where FAD measures N ------------------------------------------------
def test_unbiased_at_small_n_where_fad_is_not():
    """300 pairs of independent sets of 16 draws of one 8-d Gaussian: KAD averages 0 (within 3
    standard errors, both signs occur); FAD is positive every time."""
    rng = np.random.default_rng(2)
    repeats, n, d = 300, 16, 8
    kads, fads = [], []
    for _ in range(repeats):
        x, y = rng.standard_normal((n, d)), rng.standard_normal((n, d))
        kads.append(kad(clips(x), clips(y), paired=False, per_item=False).value)
        fads.append(frechet_distance(*_mean_cov(x), *_mean_cov(y)))
    assert abs(np.mean(kads)) < 3 * _standard_error(kads)
    assert min(kads) < 0 < max(kads)  # an unbiased estimate of 0 goes both ways
    assert min(fads) > 0 and np.mean(fads) > 30 * _standard_error(fads)


def test_paired_estimator_unbiased_for_an_item_and_its_decode():
    """Each estimate depends on its reference (a decode), yet has the reference's distribution:
    MMD^2 = 0. The paired estimator leaves the dependent pairs out and averages to 0; the paper's
    estimator, built for independent sets, averages below 0."""
    rng = np.random.default_rng(3)
    repeats, n, d, rho = 300, 16, 4, 0.9
    paired, independent = [], []
    for _ in range(repeats):
        x = rng.standard_normal((n, d))
        y = rho * x + math.sqrt(1 - rho ** 2) * rng.standard_normal((n, d))  # N(0, I) too
        paired.append(kad(clips(x), clips(y), per_item=False).value)
        independent.append(kad(clips(x), clips(y), paired=False, per_item=False).value)
    assert abs(np.mean(paired)) < 3 * _standard_error(paired)
    assert np.mean(independent) < -10 * _standard_error(independent)
    assert kad(clips(x), clips(x)).value == 0.0  # identical sets: exactly 0 when paired


# -- (d) bandwidth from the reference set only ---------------------------------------------------
def test_bandwidth_depends_only_on_the_reference_set():
    rng = np.random.default_rng(4)
    ref, est_a, est_b = rng.standard_normal((40, 5)), rng.standard_normal((40, 5)), 3 * rng.standard_normal((40, 5))
    a, b = kad(clips(ref), clips(est_a)), kad(clips(ref), clips(est_b))
    assert a.settings["bandwidth"] == b.settings["bandwidth"] == median_pairwise_distance(ref)
    assert kad(clips(est_b), clips(ref)).settings["bandwidth"] == median_pairwise_distance(est_b)
    assert b.value == pytest.approx(SCALE * mmd2_unbiased(ref, est_b, median_pairwise_distance(ref),
                                                          np.arange(40), np.arange(40)), rel=1e-10)
    # the bandwidth follows from backbone and reference set, which the comparability keys cover
    sa, sb = dict(a.settings, reference_hash="r1"), dict(b.settings, reference_hash="r1")
    assert "bandwidth" not in KAD.comparable_on and comparability_problems("kad", sa, sb) == []
    assert comparability_problems("kad", sa, dict(sb, reference_hash="r2")) == ["reference_hash: 'r1' vs 'r2'"]
    assert comparability_problems("kad", sa, dict(sb, estimator="independent sets: diagonal left out")) != []


def test_settings_and_errors():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 8))
    s = kad(clips(x, [2, 2, 2]), clips(x + 0.1, [2, 2, 2])).settings
    assert (s["n_reference_clips"], s["n_estimate_clips"], s["n_reference_embeddings"]) == (3, 3, 6)
    assert (s["backbone_rate_hz"], s["backbone_dim"], s["scale"]) == (8000, 8, 1000.0)
    assert s["kernel"] == "gaussian-rbf" and set(KAD.comparable_on) <= set(s)
    with pytest.raises(MetricError, match="one estimate per reference clip"):
        kad(clips(x), clips(x[:4]))
    assert np.isfinite(kad(clips(x), clips(x[:4]), paired=False).value)
    with pytest.raises(MetricError, match="bandwidth is undefined"):
        kad(clips(np.ones((4, 8))), clips(x[:4]))
    with pytest.raises(MetricError, match="at least 2 clips"):
        kad([x[:3]], [x[3:]])  # one item: no independent pair when paired


# -- (e) FAD-inf ---------------------------------------------------------------------------------------
def test_inverse_n_fit_and_grid():
    assert fit_inverse_n([10, 20, 40], [3 + 7 / 10, 3 + 7 / 20, 3 + 7 / 40]) == pytest.approx((3.0, 7.0, 1.0))
    assert subset_sizes(104) == [50, 58, 65, 73, 81, 89, 96, 104]
    assert subset_sizes(30) == [15, 17, 19, 21, 24, 26, 28, 30]  # min(50, N/2)
    assert subset_sizes(3) == [2, 3] and subset_sizes(2) == [2]


def _fad_inf(ref, est, **options):
    metric = FADInf(backbone=TOY, cache=False, **options)
    return metric.from_embeddings(clips(ref), clips(est), [f"e{i}" for i in range(len(est))])


def test_fad_inf_recovers_the_frechet_distance_of_independent_sets():
    """The papers' recipe (estimate subsets against a large, whole reference set of 10 000), over
    16 estimate sets of 600: FAD at N = 600 is biased up, FAD-inf is not (within 3 standard errors)
    and is closer to the closed-form Frechet distance."""
    rng = np.random.default_rng(6)
    d, n = 16, 600
    scale = np.linspace(0.6, 1.6, d)
    true = frechet_distance(np.zeros(d), np.eye(d), np.zeros(d), np.diag(scale ** 2))  # 1.671
    errors_inf, errors_fad = [], []
    for _ in range(16):  # independent (reference, estimate) pairs: the standard errors hold
        result = _fad_inf(rng.standard_normal((10000, d)), rng.standard_normal((n, d)) * scale, paired=False)
        errors_inf.append(result.value - true)
        errors_fad.append(result.settings["fad_at_size"][-1] - true)
    assert np.mean(errors_fad) > 3 * _standard_error(errors_fad)  # about +0.14
    assert abs(np.mean(errors_inf)) < 3 * _standard_error(errors_inf)
    assert abs(np.mean(errors_inf)) < np.mean(errors_fad)


def test_fad_inf_paired_recovers_the_frechet_distance_and_is_deterministic():
    """Each estimate is a noisy decode of its reference (300 items, 16 dimensions, 16 sets):
    paired FAD-inf is unbiased within 3 standard errors, FAD is biased up, and the papers'
    recipe, blind to the pairing, is biased down."""
    rng = np.random.default_rng(7)
    d, n = 16, 300
    true = frechet_distance(np.zeros(d), np.eye(d), np.full(d, 0.2), 1.09 * np.eye(d))
    errors_inf, errors_fad, errors_unpaired = [], [], []
    for _ in range(16):
        x = rng.standard_normal((n, d))
        y = x + 0.3 * rng.standard_normal((n, d)) + 0.2
        result = _fad_inf(x, y)
        errors_inf.append(result.value - true)
        errors_fad.append(result.settings["fad_at_size"][-1] - true)
        errors_unpaired.append(_fad_inf(x, y, paired=False).value - true)
    assert abs(np.mean(errors_inf)) < 3 * _standard_error(errors_inf)
    assert np.mean(errors_fad) > 3 * _standard_error(errors_fad)  # about +0.05
    assert np.mean(errors_unpaired) < -3 * _standard_error(errors_unpaired)  # about -0.26
    again = _fad_inf(x, y)
    assert again.value == result.value and again.settings == result.settings
    assert _fad_inf(x, y, seed=1).value != result.value
    s = result.settings
    assert s["subset_sizes"] == subset_sizes(n) and len(s["fad_at_size"]) == 8 and 0 < s["r2"] <= 1
    full = frechet_distance(*_mean_cov(x), *_mean_cov(y))
    assert s["fad_at_size"][-1] == pytest.approx(full, rel=1e-9)  # the largest subset is the whole set
    assert result.warnings == [] and set(FADInf.comparable_on) <= set(s)
    assert _fad_inf(x, x).value == pytest.approx(0.0, abs=1e-9)


def test_fad_inf_warns_and_refuses_when_the_fit_is_ill_posed():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 2))
    result = _fad_inf(x, x + 0.1 * rng.standard_normal((3, 2)))
    assert any("line through 2 points" in w for w in result.warnings)
    assert any("2 embeddings for 2 dimensions" in w for w in result.warnings)
    with pytest.raises(MetricError, match="need at least 2"):
        _fad_inf(x[:2], x[:2])
    with pytest.raises(MetricError, match="per-track"):
        FADInf(backbone=TOY, per_item=True)


def test_registered_and_built_without_a_backbone():
    for name in ("kad", "fad_inf"):
        metric = create_metric(name, cache=False)
        assert METRICS[name] and metric.card.name == name and metric._backbone is None
        assert set(metric.settings) == set(type(metric).comparable_on)


# -- one pipeline run ----------------------------------------------------------------------------------
def test_pipeline_rows_state_n_dim_and_rate_and_identity_scores_zero(audio_folder, tmp_path):
    options = {"backbone": TOY, "cache": False}
    cfg = RunConfig(preset="test", dataset=DatasetSpec(name="folder", root=str(audio_folder)),
                    codecs=[CodecSpec(name="identity"),
                            CodecSpec(name="tests.plugins:CountingCodec", options={"gain": 0.5}, label="half")],
                    metrics=["kad", "fad_inf"], tasks=[], metric_options={"kad": options, "fad_inf": options})
    run_dir = Pipeline(cfg, tmp_path / "results", tmp_path / "cache", progress=False, log=lambda m: None).run()
    with open(run_dir / "results.csv", newline="") as fh:
        rows = {(r["metric"], r["codec_label"]): r for r in csv.DictReader(fh) if r["stage"] == "reconstruction"}
    identity, half = rows["kad", "identity"], rows["kad", "half"]
    settings = json.loads(identity["settings"])
    assert (settings["n_reference_clips"], settings["n_estimate_clips"]) == (6, 6)
    assert settings["n_estimate_embeddings"] == 30  # 6 clips x 0.5 s / 0.1 s patches
    assert (settings["backbone_dim"], settings["backbone_rate_hz"]) == (8, 8000) and settings["bandwidth"] > 0
    assert abs(float(identity["value"])) < 1e-9 and float(half["value"]) > 10  # -6 dB: every band moves
    fad_inf = {codec: float(rows["fad_inf", codec]["value"]) for codec in ("identity", "half")}
    assert abs(fad_inf["identity"]) < 1e-9 and fad_inf["half"] > 1
    assert json.loads(rows["fad_inf", "identity"]["settings"])["subset_sizes"] == subset_sizes(6)
