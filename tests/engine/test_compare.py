"""Comparisons against a declared reference codec: Holm, calibration under the null, power, MDD,
the reference fallback, and the pipeline's ``reconstruction_paired`` rows and report."""

from __future__ import annotations

import csv
import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy import stats

from benchmark.cache import ArtifactCache
from benchmark.config import CodecSpec, ConfigError, DatasetSpec, RunConfig
from benchmark.engine.compare import (
    compare_to_reference,
    correct_family,
    holm,
    mdd_from_se,
    minimum_detectable_difference,
    paired_difference,
    replicate_difference,
    resolve_reference,
    sign_flip_min_p,
    sign_flip_p_value,
)
from benchmark.engine.probing import _paired_tests, probe_difference
from benchmark.engine.run import Pipeline
from benchmark.metrics.sisdr import si_sdr
from benchmark.probes import ProbeConfig, ProbeError, ProbePredictions
from benchmark.report import paired_caption, paired_table, power_notes
from benchmark.results import ResultsStore
from tasks import create_task

ALPHA = 0.05
# Under a valid procedure the number of repeats (out of R) that reject is at most Binomial(R, 0.05);
# its 99th percentile keeps a correct procedure from failing this test more than 1 % of the time
# (R = 200: 18, i.e. 9 %; "<= 9/200" would fail a correct 5 % procedure about half the time).
NULL_BOUND_200 = int(stats.binom.ppf(0.99, 200, ALPHA))


# -- Holm ---------------------------------------------------------------------------------------
def holm_rejects(p, alpha):
    """Holm's procedure as published: step down through the sorted p-values, rejecting while
    p_(k) <= alpha / (m - k + 1)."""
    m = len(p)
    rejected = set()
    for k, i in enumerate(sorted(range(m), key=lambda j: p[j])):
        if p[i] > alpha / (m - k):
            break
        rejected.add(i)
    return rejected


def holm_reference(p):
    """Adjusted p-values straight from the definition: max over the smaller-or-equal-ranked."""
    m = len(p)
    order = sorted(range(m), key=lambda j: p[j])
    out = [0.0] * m
    for rank, i in enumerate(order):
        out[i] = min(1.0, max((m - k) * p[order[k]] for k in range(rank + 1)))
    return out


def test_holm_hand_worked_example():
    # sorted: 0.005 (x4) 0.01 (x3) 0.03 (x2) 0.04 (x1) -> 0.02, 0.03, 0.06, 0.04 -> monotone: 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    assert holm_rejects([0.01, 0.04, 0.03, 0.005], 0.05) == {0, 3}
    np.testing.assert_allclose(holm([0.01, 0.01]), [0.02, 0.02])  # ties share their value
    np.testing.assert_allclose(holm([0.3, 0.6, 0.9]), [0.9, 1.0, 1.0])  # capped at 1
    np.testing.assert_allclose(holm([0.01, float("nan")]), [0.02, 1.0])  # untestable counts as 1
    assert holm([]).size == 0
    with pytest.raises(ValueError):
        holm([1.5])


def test_holm_matches_the_step_down_procedure_and_the_definition():
    rng = np.random.default_rng(0)
    for trial in range(300):
        m = int(rng.integers(1, 12))
        p = rng.random(m) ** 3
        if trial % 3 == 0:
            p = np.round(p, 2)  # ties
        adjusted = holm(p)
        np.testing.assert_allclose(adjusted, holm_reference(list(p)), rtol=0, atol=1e-15)
        assert np.all(adjusted >= p) and np.all(adjusted <= 1)
        order = np.argsort(p, kind="stable")
        assert np.all(np.diff(adjusted[order]) >= 0)  # monotone in p
        for alpha in (0.01, 0.05, 0.1, 0.2):
            assert set(np.flatnonzero(adjusted <= alpha)) == holm_rejects(list(p), alpha)


# -- the single paired comparison ------------------------------------------------------------------
def test_sign_flip_exact_values():
    # 3 positive differences: of the 8 sign patterns only +++ and --- reach |sum| = 6
    assert sign_flip_p_value(np.array([1.0, 2.0, 3.0])) == pytest.approx(2 / 8)
    assert sign_flip_p_value(np.array([1.0, -1.0, 2.0, -2.0])) == 1.0  # sum 0: every pattern ties
    assert sign_flip_p_value(np.zeros(5)) == 1.0
    assert math.isnan(sign_flip_p_value(np.array([])))
    assert sign_flip_min_p(6, 2000) == 2 ** -5 and sign_flip_min_p(40, 999) == pytest.approx(1e-3)


def test_paired_difference_numbers():
    rng = np.random.default_rng(1)
    b = rng.normal(10, 3, 40)
    a = b - 1.0 + rng.normal(0, 0.5, 40)
    a[3] = np.nan  # undefined for one codec: not a pair
    d = (a - b)[np.isfinite(a)]
    res = paired_difference(a, b, higher_is_better=True, seed=0, n_boot=2000)
    assert res.n == 39 and res.delta == pytest.approx(d.mean())
    assert res.ci_low < res.delta < res.ci_high and res.ci_high < 0
    assert res.effect_size == pytest.approx(d.mean() / d.std(ddof=1))
    assert res.effect_ci_low < res.effect_size < res.effect_ci_high
    assert res.se == pytest.approx(d.std(ddof=0) / math.sqrt(39), rel=0.1)  # bootstrap SE of a mean
    assert res.p_value < 1e-3 and res.direction == "worse"
    assert paired_difference(a, b, higher_is_better=False).direction == "better"  # e.g. a distance
    same = paired_difference(b, b)
    assert (same.delta, same.p_value, same.effect_size, same.direction) == (0.0, 1.0, 0.0, "equal")
    with pytest.raises(ValueError, match="aligned"):
        paired_difference(a, b[:5])


def test_null_family_is_calibrated():
    """200 repeats of two exchangeable codecs (per-item base + independent N(0, 1) each) on 24
    items and 3 metrics: the Holm-corrected family rejects in at most ~5 % of repeats, and the
    uncorrected p-values are uniform."""
    rng = np.random.default_rng(2024)
    rejections, p_values = 0, []
    for repeat in range(200):
        values = {}
        for metric in ("m1", "m2", "m3"):
            base = rng.normal(0, 5, 24)
            values[metric] = {"reference": base + rng.normal(size=24), "codec": base + rng.normal(size=24)}
        rows = compare_to_reference(values, "reference", higher_is_better=dict.fromkeys(values, True),
                                    alpha=ALPHA, seed=repeat, n_boot=500)
        assert [r["family_size"] for r in rows] == [3, 3, 3]
        rejections += any(r["significant"] for r in rows)
        p_values += [r["p_value"] for r in rows]
    assert rejections <= NULL_BOUND_200, rejections
    assert stats.kstest(p_values, "uniform").pvalue > 0.01


def _clip(i, sr=16000, seconds=0.5):
    t = np.arange(int(sr * seconds)) / sr
    f0 = 110 * 2 ** (i / 7)
    return sum(np.sin(2 * np.pi * f0 * k * t + i) / k for k in range(1, 6))


def _at_snr(x, snr_db, rng):
    noise = rng.standard_normal(x.size)
    return x + noise * np.sqrt(np.mean(x ** 2) / np.mean(noise ** 2)) * 10 ** (-snr_db / 20)


def test_white_noise_at_20_vs_26_db_is_detected_and_mdd_below_the_gap():
    rng = np.random.default_rng(7)
    clips = [_clip(i) for i in range(24)]
    scores = {name: np.array([si_sdr(c, _at_snr(c, snr, rng)) for c in clips])
              for name, snr in (("snr26", 26), ("snr20", 20), ("snr26_again", 26))}
    rows = {r["codec"]: r for r in compare_to_reference({"si_sdr": scores}, "snr26",
                                                        higher_is_better={"si_sdr": True}, seed=0)}
    worse = rows["snr20"]
    assert worse["delta"] == pytest.approx(-6.0, abs=0.2) and worse["ci_high"] < -5.5
    assert worse["significant"] and worse["p_holm"] < 0.01 and worse["direction"] == "worse"
    assert worse["family_size"] == 2 and worse["alpha_corrected"] == pytest.approx(0.025)
    assert 0 < worse["mdd"] < 6.0  # the design could see a gap well below the true one
    same = rows["snr26_again"]  # another noise draw at the same SNR
    assert not same["significant"] and abs(same["delta"]) < 0.1


def test_mdd_formula_and_power():
    assert mdd_from_se(1.0, 0.05, 0.8) == pytest.approx(1.959964 + 0.841621, rel=1e-5)
    assert mdd_from_se(1.0, 0.05, 0.8, min_p=0.1) == math.inf
    rng = np.random.default_rng(3)
    d = rng.normal(0, 2, 50)
    mdd = minimum_detectable_difference(d, 0.01, 0.8, seed=0, n_boot=4000)
    se = d.std(ddof=0) / math.sqrt(50)
    assert mdd == pytest.approx((stats.norm.ppf(0.995) + stats.norm.ppf(0.8)) * se, rel=0.08)
    assert minimum_detectable_difference(d[:6], 0.025) == math.inf  # smallest sign-flip p: 2^-5 > 0.025
    # the MDD means what it says: a true shift of one MDD is detected in about 80 % of repeats
    # (the normal approximation; the exact test has t-like tails at n = 60, so a little less)
    n, level = 60, 0.05 / 3
    shift = (stats.norm.ppf(1 - level / 2) + stats.norm.ppf(0.8)) / math.sqrt(n)
    hits = sum(sign_flip_p_value(rng.normal(shift, 1, n), 1000, seed=k) < level for k in range(200))
    assert 0.65 <= hits / 200 <= 0.92, hits


def test_family_holm_significance_and_mdd_level():
    tests = [paired_difference(np.arange(20.0) + 3, np.arange(20.0)), paired_difference(np.ones(20), np.ones(20))]
    rows = correct_family(tests, alpha=0.05)
    assert [r["p_holm"] for r in rows] == pytest.approx(list(holm([t.p_value for t in tests])))
    assert rows[0]["significant"] and not rows[1]["significant"]
    assert rows[0]["alpha_corrected"] == 0.025 and rows[0]["mdd"] == mdd_from_se(rows[0]["se"], 0.025)


def test_reference_fallback():
    assert resolve_reference("music2latent", ["music2latent", "dac"]) == ("music2latent", None)
    label, note = resolve_reference("music2latent", ["lowpass", "identity"])
    assert label == "lowpass" and "'music2latent' is not in this run" in note and "'lowpass'" in note
    with pytest.raises(ValueError):
        resolve_reference("x", [])
    with pytest.raises(ValueError, match="no values for the reference"):
        compare_to_reference({"m": {"a": np.ones(3)}}, "b", higher_is_better={"m": True})
    assert RunConfig().reference_codec == "music2latent" and RunConfig().alpha == 0.05
    with pytest.raises(ConfigError, match="alpha"):
        RunConfig.from_dict({"alpha": 1.5})


# -- probes ----------------------------------------------------------------------------------------
def _predictions(correct, seed, n_classes=3):
    """Instrument-task predictions [1 seed] that are right exactly where ``correct`` is True."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, correct.size)
    guess = np.where(correct, y, (y + 1 + rng.integers(0, n_classes - 1, y.size)) % n_classes)
    scores = np.full((1, y.size, n_classes), 0.1)
    scores[0, np.arange(y.size), guess] = 0.8
    return ProbePredictions(task="instrument", ids=[f"i{k}" for k in range(y.size)], y_true=y,
                            scores=scores, classes=[f"c{k}" for k in range(n_classes)], seeds=(0,))


def test_probe_difference_null_and_effect():
    task = create_task("instrument")
    rng = np.random.default_rng(0)
    rejections = 0
    for repeat in range(200):  # two exchangeable probes: 70 % right, independently per item
        a = _predictions(rng.random(120) < 0.7, seed=repeat)
        b = _predictions(rng.random(120) < 0.7, seed=repeat)
        rejections += probe_difference(a, b, task, "accuracy", n_boot=300, seed=repeat).p_value < ALPHA
    assert rejections <= NULL_BOUND_200, rejections
    good, bad = _predictions(rng.random(120) < 0.9, 1), _predictions(rng.random(120) < 0.5, 1)
    res = probe_difference(good, bad, task, "accuracy", n_boot=500)
    assert res.delta == pytest.approx(good.metric_values(task)["accuracy"] - bad.metric_values(task)["accuracy"])
    assert res.p_value < 1e-4 and res.ci_low > 0 and res.effect_size > 0.5 and res.direction == "better"
    same = probe_difference(good, good, task, "accuracy", n_boot=200)
    assert (same.delta, same.p_value) == (0.0, 1.0)
    fewer = ProbePredictions(task="instrument", ids=bad.ids[:-1], y_true=bad.y_true[:-1], scores=bad.scores[:, :-1],
                             classes=bad.classes, seeds=(0,))
    with pytest.raises(ProbeError, match="test items differ"):
        probe_difference(good, fewer, task, "accuracy")
    # the same difference from replicates alone: a mean metric gives the paired t test
    d = rng.normal(0.2, 1, 60)
    t = replicate_difference(d.mean(), rng.choice(d, (4000, 60)).mean(axis=1), 60)
    assert t.p_value == pytest.approx(stats.ttest_1samp(d, 0).pvalue, rel=0.15)


class _FakePipe:
    """What ``_paired_tests`` uses of a Pipeline: config, cache, store, columns, log."""

    def __init__(self, tmp_path, reference):
        self.config = SimpleNamespace(reference_codec=reference, alpha=ALPHA)
        self.cache = ArtifactCache(tmp_path / "cache")
        self.store = ResultsStore(tmp_path / "run", "run", "hash")
        self.messages = []

    def log(self, message):
        self.messages.append(message)

    def columns(self, run, split):
        return dict(codec=run.label, codec_label=run.label, codec_id=run.label, split=split)

    def group_columns(self, label, split):
        return dict(codec=label, codec_label=label, codec_id=label, split=split)


def _run(label, decodes=True):
    return SimpleNamespace(label=label, group=None, seed=None,
                           codec=SimpleNamespace(info=SimpleNamespace(can_decode=decodes)))


def test_probe_family_is_every_codec_task_representation_head_vs_the_reference(tmp_path):
    rng = np.random.default_rng(5)
    runs = [_run("features", decodes=False), _run("ref"), _run("good"), _run("same")]
    tasks = {"instrument": create_task("instrument")}
    ref = _predictions(rng.random(150) < 0.6, 0)
    preds = {"features": _predictions(rng.random(150) < 0.6, 0), "ref": ref,
             "good": _predictions(rng.random(150) < 0.95, 0), "same": ref}
    groups = {("instrument", rep, head): [(run.label, [preds[run.label]], [f"{run.label}-{rep}-{head}"])
                                          for run in runs]
              for rep in ("latents", "features") for head in ("linear", "mlp")}
    pipe = _FakePipe(tmp_path, "ref")
    _paired_tests(pipe, runs, tasks, groups, ProbeConfig(bootstrap=300))
    rows = [r for r in pipe.store.rows if r["stage"] == "probe_paired"]
    assert len(rows) == 12 and {r["codec_label"] for r in rows} == {"features", "good", "same"}
    assert {r["settings"]["family_size"] for r in rows} == {12}
    assert all(r["metric"] == "accuracy_minus_ref" and r["settings"]["metric"] == "accuracy" for r in rows)
    assert all(r["settings"]["significant"] for r in rows if r["codec_label"] == "good")
    assert not any(r["settings"]["significant"] for r in rows if r["codec_label"] == "same")
    assert all(r["settings"]["p_holm"] >= r["settings"]["p_value"] for r in rows)
    # a re-run reads every comparison from the cache; an absent reference falls back (decoders first)
    again = _FakePipe(tmp_path, "music2latent")
    _paired_tests(again, runs, tasks, groups, ProbeConfig(bootstrap=300))
    assert {r["settings"]["reference"] for r in again.store.rows} == {"ref"}
    assert any("'music2latent' is not in this run" in m for m in again.messages)
    assert again.cache.misses == 0 and again.cache.hits == 12
    frame = pd.DataFrame([dict(r, settings=json.dumps(r["settings"])) for r in pipe.store.rows])
    table = paired_table(frame, "probe_paired")
    assert table.shape == (12, 1) and table.index.names == ["codec", "representation", "head"]
    assert table.loc[("good", "latents", "linear")].iloc[0].endswith("significant (better)")
    assert "n.s. (MDD" in table.loc[("same", "latents", "linear")].iloc[0]
    caption = paired_caption(frame, "probe_paired")
    assert "reference codec ref, family of 12 comparisons, alpha = 0.05, Holm-corrected" in caption
    assert power_notes(frame)[0].startswith("instrument: accuracy: smallest detectable difference")


# -- the pipeline ------------------------------------------------------------------------------------
def read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def twelve_clips(tmp_path):
    """Twelve 0.5 s harmonic clips with some noise (the lowpass loses a different share of each)."""
    root = tmp_path / "twelve"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        x = _clip(i) * 0.1 + 0.003 * (1 + i % 4) * rng.standard_normal(8000)
        sf.write(root / f"clip{i:02d}.wav", x.astype(np.float32), 16000)
    return root


def pipeline_run(root, tmp_path, codecs, **kw):
    cfg = RunConfig(preset="test", dataset=DatasetSpec(name="folder", root=str(root)), codecs=codecs,
                    metrics=["si_sdr"], tasks=[], **kw)
    messages = []
    run_dir = Pipeline(cfg, tmp_path / "results", tmp_path / "cache", progress=False, log=messages.append).run()
    return run_dir, messages


def test_pipeline_compares_every_codec_with_the_reference(twelve_clips, tmp_path):
    codecs = [CodecSpec(name="identity"), CodecSpec(name="lowpass"),
              CodecSpec(name="tests.plugins:CountingCodec", label="counting")]
    run_dir, messages = pipeline_run(twelve_clips, tmp_path, codecs, reference_codec="identity")
    rows = {r["codec_label"]: r for r in read(run_dir / "results.csv") if r["stage"] == "reconstruction_paired"}
    assert set(rows) == {"lowpass", "counting"}  # the reference is not compared with itself
    settings = {k: json.loads(r["settings"]) for k, r in rows.items()}
    assert all(s["reference"] == "identity" and s["family_size"] == 2 and "reference_note" not in s
               for s in settings.values())
    items = [r for r in read(run_dir / "items.csv") if r["metric"] == "si_sdr"]
    per = {(r["codec_label"], r["item"]): float(r["value"]) for r in items}
    gap = np.mean([per[("lowpass", item)] - per[("identity", item)] for label, item in per if label == "identity"])
    low = rows["lowpass"]
    assert low["metric"] == "si_sdr_minus_identity" and settings["lowpass"]["metric"] == "si_sdr"
    assert float(low["value"]) == pytest.approx(gap) and int(low["n"]) == 12
    assert float(low["ci_high"]) < 0 and low["unit"] == "dB"
    assert settings["lowpass"]["significant"] and settings["lowpass"]["direction"] == "worse"
    assert settings["lowpass"]["p_holm"] == pytest.approx(min(1, 2 * settings["lowpass"]["p_value"]))
    assert float(rows["counting"]["value"]) == 0.0 and settings["counting"]["p_holm"] == 1.0
    assert not settings["counting"]["significant"]
    assert not any("[compare]" in m for m in messages)
    table = pd.read_csv(run_dir / "report" / "reconstruction_paired.csv", index_col="codec", dtype=str)
    assert list(table.index) == ["lowpass", "counting"] and list(table.columns) == ["si_sdr (dB) ↑"]
    assert table.loc["lowpass"].iloc[0].endswith("significant (worse)") and "d_z=" in table.loc["lowpass"].iloc[0]
    assert "n.s. (MDD" in table.loc["counting"].iloc[0]
    report = (run_dir / "report" / "report.md").read_text()
    assert "reference codec identity, family of 2 comparisons, alpha = 0.05, Holm-corrected" in report
    assert "## Power" in report and "- si_sdr: smallest detectable difference" in report
    assert " *" not in report.replace("**", "")  # no star for an uncorrected p


def test_pipeline_reference_fallback_is_said(audio_folder, tmp_path):
    run_dir, messages = pipeline_run(audio_folder, tmp_path, [CodecSpec(name="lowpass"), CodecSpec(name="identity")])
    (row,) = [r for r in read(run_dir / "results.csv") if r["stage"] == "reconstruction_paired"]
    settings = json.loads(row["settings"])
    assert row["codec_label"] == "identity" and settings["reference"] == "lowpass"
    assert settings["reference_requested"] == "music2latent" and "not in this run" in settings["reference_note"]
    assert any(m.startswith("[compare] reference codec 'music2latent' is not in this run") for m in messages)
    # 6 items, all better: exactly 2 of the 64 sign patterns reach the observed sum
    assert settings["p_value"] == pytest.approx(2 / 64) and settings["significant"]
    assert "not in this run" in (run_dir / "report" / "report.md").read_text()
