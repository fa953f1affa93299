import json

import pandas as pd
import pytest

from benchmark.report import ReportError, build_report, probe_table, reconstruction_table, setting_warnings
from benchmark.results import RESULT_COLUMNS, ResultsStore


def fake_run(tmp_path, name="run-a", fad_backbone="musicnn"):
    store = ResultsStore(tmp_path / name, name, "hash")
    for codec, sdr in (("identity", 150.0), ("lowpass", 20.5)):
        store.add(codec=codec, codec_label=codec, codec_id=codec, dataset="builtin", dataset_id="d", stage="reconstruction",
                  metric="si_sdr", value=sdr, ci_low=sdr - 1, ci_high=sdr + 1, n=10, unit="dB", higher_is_better=True,
                  convention="zero-mean", implementation="numpy", metric_version="1")
        store.add(codec=codec, codec_label=codec, codec_id=codec, dataset="builtin", dataset_id="d", stage="reconstruction",
                  metric="fad", value=0.1, unit="", higher_is_better=False, settings={"backbone": fad_backbone, "n_clips": 10})
        store.add(codec=codec, codec_label=codec, codec_id=codec, stage="cost", metric="decode_speed", value=100.0,
                  unit="x realtime", settings={"license": "code MIT; weights n/a"})
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


def test_tables_shape(tmp_path):
    results = pd.read_csv(fake_run(tmp_path) / "results.csv")
    assert list(reconstruction_table(results).index) == ["identity", "lowpass"]
    assert probe_table(results).shape == (2, 2)


def test_fad_settings_mismatch_warns(tmp_path):
    a = pd.read_csv(fake_run(tmp_path, "a", "musicnn") / "results.csv")
    b = pd.read_csv(fake_run(tmp_path, "b", "vggish") / "results.csv")
    warnings = setting_warnings(pd.concat([a, b]))
    assert warnings and "backbone" in warnings[0]
    assert not setting_warnings(a)


def test_missing_run_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match="results.csv"):
        build_report([tmp_path / "nope"], tmp_path / "out")
