"""Report: tables, figures, and warnings (settings that differ, values stored with a warning)."""

import json

import numpy as np
import pandas as pd
import pytest

from benchmark.metrics.fad import FAD
from benchmark.metrics.signals import mixture
from benchmark.metrics.sisdr import SISDR
from benchmark.report import (
    ReportError,
    build_report,
    probe_table,
    reconstruction_table,
    setting_warnings,
    value_warnings,
)
from benchmark.results import ResultsStore

SR = 16000
FAD_SETTINGS = {"backbone": "musicnn-MTT_musicnn", "backbone_id": "b", "reference_set": "builtin/test",
                "reference_hash": "0123456789abcdef", "n_reference_clips": 10, "n_estimate_clips": 10,
                "clip_seconds": 10.0}


def fake_run(tmp_path, name="run-a", fad_backbone="musicnn-MTT_musicnn"):
    store = ResultsStore(tmp_path / name, name, "hash")
    for codec, sdr, failed in (("identity", 150.0, 0), ("lowpass", 20.5, 2)):
        store.add(codec=codec, codec_label=codec, codec_id=codec, dataset="builtin", dataset_id="d",
                  stage="reconstruction",
                  metric="si_sdr", value=sdr, ci_low=sdr - 1, ci_high=sdr + 1, n=10 - failed, n_failed=failed,
                  unit="dB", higher_is_better=True, convention="zero-mean", implementation="numpy", metric_version="1")
        store.add(codec=codec, codec_label=codec, codec_id=codec, dataset="builtin", dataset_id="d",
                  stage="reconstruction",
                  metric="fad", value=0.1, n=10, unit="", higher_is_better=False, implementation="fad",
                  metric_version="1", settings=dict(FAD_SETTINGS, backbone=fad_backbone))
        store.add(codec=codec, codec_label=codec, codec_id=codec, stage="cost", metric="decode_speed", value=100.0,
                  unit="x realtime", settings={"license": "code MIT; weights n/a"})
        store.add(codec=codec, codec_label=codec, codec_id=codec, stage="cost", metric="kbps", value=64.0, unit="kbps")
        for padded in (0.25, 0.5):  # one row per split: summed in the table
            store.add(codec=codec, codec_label=codec, codec_id=codec, stage="cost", metric="padded_seconds",
                      value=padded, unit="s")
        for task, metric, value in (("key", "accuracy", 0.6), ("pitch", "accuracy", 0.9)):
            store.add(codec=codec, codec_label=codec, codec_id=codec, stage="probe", task=task, metric=metric,
                      representation="latents", head="linear", value=value, ci_low=value - 0.1, ci_high=value + 0.05)
        store.add_item(codec_label=codec, codec_id=codec, item="x", metric="si_sdr", value=sdr)
    store.write()
    return tmp_path / name


def test_results_store_rejects_unknown_columns(tmp_path):
    with pytest.raises(KeyError):
        ResultsStore(tmp_path, "r", "h").add(bogus=1)


def test_build_report_writes_tables_and_figures(tmp_path):
    files = {p.name for p in build_report([fake_run(tmp_path)], tmp_path / "out")}
    assert {"reconstruction.md", "reconstruction.tex", "reconstruction.csv", "probes.md", "probes.tex",
            "codecs.md", "probes.png", "si_sdr_per_item.png", "report.md"} <= files
    text = (tmp_path / "out" / "reconstruction.md").read_text()
    assert "20.500 [19.500, 21.500]" in text and "si_sdr (dB) ↑" in text
    tex = (tmp_path / "out" / "probes.tex").read_text()
    assert "\\toprule" in tex and "key: accuracy" in tex
    assert "MIT" in (tmp_path / "out" / "codecs.md").read_text()
    assert "## Warnings" not in (tmp_path / "out" / "report.md").read_text()


def test_tables_shape(tmp_path):
    results = pd.read_csv(fake_run(tmp_path) / "results.csv")
    table = reconstruction_table(results)
    assert list(table.index) == ["identity", "lowpass"]
    assert table.loc["lowpass", "n"] == "8" and table.loc["lowpass", "n_failed"] == "2"
    assert table.loc["identity", "n_failed"] == "0"
    assert table.loc["lowpass", "kbps"] == "64.00" and table.loc["lowpass", "padded s"] == "0.750"
    assert "latent_floats_per_second" not in table.columns and "cut s" not in table.columns
    assert probe_table(results).shape == (2, 2)


def test_settings_mismatch_names_metric_codecs_and_settings(tmp_path):
    a = pd.read_csv(fake_run(tmp_path, "a") / "results.csv")
    b = pd.read_csv(fake_run(tmp_path, "b", "vggish") / "results.csv")
    warnings = setting_warnings(pd.concat([a, b]))
    assert len(warnings) == 1
    assert warnings[0].startswith("fad: b/identity, b/lowpass computed") and "from a/identity (" in warnings[0]
    assert "backbone: 'musicnn-MTT_musicnn' vs 'vggish'" in warnings[0]
    assert not setting_warnings(a)


def test_version_mismatch_warns_for_any_metric(tmp_path):
    results = pd.read_csv(fake_run(tmp_path) / "results.csv", dtype={"metric_version": str})
    results.loc[(results["metric"] == "si_sdr") & (results["codec_label"] == "lowpass"), "metric_version"] = "2"
    (warning,) = setting_warnings(results)
    assert warning.startswith("si_sdr: lowpass computed under different settings from identity")
    assert "version: '1' vs '2'" in warning


def _noisy(x, snr_db, seed):
    n = np.random.default_rng(seed).standard_normal(x.size).astype(np.float32)
    return x + n * np.sqrt(np.mean(x ** 2) / np.mean(n ** 2)) * 10 ** (-snr_db / 20)


@pytest.fixture(scope="module")
def fad_runs(tmp_path_factory):
    """Three runs of two codecs scored by the real FAD (musicnn): reference set = 6 clips of 3 s
    (runs "six" and "six_again") or the same 6 clips twice (run "six_twice")."""
    root = tmp_path_factory.mktemp("fad_runs")
    clips = [mixture(SR, 3.0, seed=s) for s in range(6)]
    codecs = {f"noise_{snr}dB": [_noisy(c, snr, i) for i, c in enumerate(clips)] for snr in (30, 10)}
    fad = FAD(backbone="musicnn", backbone_options={"cache_dir": root}, cache=root / "embeddings",
              reference_name="mixtures")
    sisdr = SISDR()

    def write(name, references):
        store = ResultsStore(root / name, name, "hash")
        for codec, estimates in codecs.items():
            provenance = dict(codec=codec, codec_label=codec, codec_id=codec, dataset="mixtures", dataset_id="m",
                              stage="reconstruction")
            scores = [sisdr(r, e, SR) for r, e in zip(clips, estimates)]
            store.add(**provenance, metric="si_sdr", value=float(np.mean(scores)), n=len(scores), n_failed=0,
                      unit=sisdr.card.unit, higher_is_better=True, convention=sisdr.card.convention,
                      implementation=sisdr.card.implementation,
                      metric_version=sisdr.card.version)
            result = fad.compute(references, estimates, SR, ids=[f"clip{i}" for i in range(6)])
            store.add(**provenance, metric="fad", value=result.value, n=len(estimates), unit=fad.card.unit,
                      higher_is_better=False, convention=fad.card.convention,
                      implementation=fad.card.implementation, metric_version=fad.card.version,
                      settings=result.settings)
        store.write()
        return root / name

    return {"six": write("six", clips), "six_twice": write("six_twice", clips + clips),
            "six_again": write("six_again", clips)}


def test_report_warns_on_fad_reference_sets_that_differ(fad_runs, tmp_path):
    build_report([fad_runs["six"], fad_runs["six_twice"]], tmp_path / "out")
    report = (tmp_path / "out" / "report.md").read_text()
    comparability = [line for line in report.splitlines() if "different settings" in line]
    assert len(comparability) == 1 and comparability[0].startswith("- fad: ")
    line = comparability[0]
    assert "six_twice/noise_30dB, six_twice/noise_10dB" in line and "from six/noise_30dB (" in line
    assert "n_reference_clips: 6 vs 12" in line and "reference_hash: " in line
    assert "clip_seconds" not in line and "backbone" not in line  # the same clip length and backbone
    stored = pd.read_csv(fad_runs["six_twice"] / "results.csv").query("metric == 'fad'")
    settings = json.loads(stored["settings"].iloc[0])
    assert settings["n_reference_clips"] == 12 and settings["clip_seconds"] == "whole (mean 3.00 s)"


def test_report_same_fad_settings_no_comparability_warning(fad_runs, tmp_path):
    results = pd.concat([pd.read_csv(fad_runs[name] / "results.csv", dtype={"metric_version": str})
                         for name in ("six", "six_again")])
    assert setting_warnings(results) == []


def test_stored_fad_warning_is_marked_and_listed(fad_runs, tmp_path):
    # 6 clips of 3 s: 6 musicnn embeddings for 200 dimensions, a rank-deficient covariance
    build_report([fad_runs["six"]], tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "reconstruction.csv", index_col="codec", dtype=str)
    fad_column = next(c for c in table.columns if c.startswith("fad"))
    assert table[fad_column].str.endswith("†").all()
    assert not table[next(c for c in table.columns if c.startswith("si_sdr"))].str.contains("†").any()
    report = (tmp_path / "out" / "report.md").read_text()
    assert "- warning [fad]: only 6 embeddings for 200 dimensions: covariances are rank-deficient" in report
    assert "(noise_10dB)" in report and "different settings" not in report
    assert "$^\\dagger$" in (tmp_path / "out" / "reconstruction.tex").read_text()
    assert len(value_warnings(pd.read_csv(fad_runs["six"] / "results.csv"))) == 2  # one per codec


def test_missing_run_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match="results.csv"):
        build_report([tmp_path / "nope"], tmp_path / "out")


def test_report_of_two_real_runs_with_different_fad_reference_sets_warns(tmp_path):
    """Two `run reconstruction` invocations on different folders (6 clips vs the same 6 twice):
    the FAD reference sets differ, and the report says so; one run alone does not warn."""
    import soundfile as sf

    from benchmark.config import CodecSpec, DatasetSpec, RunConfig
    from benchmark.engine.run import Pipeline

    sr, rng = 16000, np.random.default_rng(0)
    six, twice = tmp_path / "six", tmp_path / "twice"
    for folder in (six, twice):
        folder.mkdir()
    for i in range(6):
        clip = (0.2 * np.sin(2 * np.pi * 220 * (i + 1) * np.arange(sr) / sr)
                + 0.02 * rng.standard_normal(sr)).astype(np.float32)
        sf.write(six / f"c{i}.wav", clip, sr)
        sf.write(twice / f"c{i}.wav", clip, sr)
        sf.write(twice / f"d{i}.wav", clip, sr)
    runs = []
    for folder in (six, twice):
        cfg = RunConfig(preset=folder.name, dataset=DatasetSpec(name="folder", root=str(folder)),
                        codecs=[CodecSpec(name="lowpass")], metrics=["si_sdr", "fad"], tasks=[],
                        metric_options={"fad": {"backbone": "tests.plugins:BandEnergyBackbone"}})
        runs.append(Pipeline(cfg, tmp_path / "results", tmp_path / "cache", progress=False,
                             log=lambda m: None).run())
    alone = (runs[0] / "report" / "report.md").read_text()
    assert "computed under different settings" not in alone
    build_report(runs, tmp_path / "both")
    text = (tmp_path / "both" / "report.md").read_text()
    fad_lines = [line for line in text.splitlines() if "different settings" in line and "fad" in line]
    assert fad_lines and "reference_hash" in fad_lines[0] and "n_reference_clips" in fad_lines[0]
    assert not any("si_sdr" in line and "different settings" in line for line in text.splitlines())
