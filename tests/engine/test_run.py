"""End-to-end pipeline behaviour on a folder dataset: caching, resume, bad input, results."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import soundfile as sf

from benchmark.config import CodecSpec, DatasetSpec, RunConfig
from benchmark.engine.run import Pipeline, find_resumable_run
from tests import plugins


def make_config(root, codecs, **kw) -> RunConfig:
    return RunConfig(preset="test", dataset=DatasetSpec(name="folder", root=str(root)),
                     codecs=[CodecSpec(name=c) if isinstance(c, str) else c for c in codecs],
                     metrics=["si_sdr"], tasks=[], **kw)


def read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def run(cfg, tmp_path):
    pipe = Pipeline(cfg, tmp_path / "results", tmp_path / "cache", progress=False, log=lambda m: None)
    return pipe, pipe.run()


@pytest.fixture(autouse=True)
def reset_counters():
    for cls in (plugins.CountingCodec, plugins.NaNCodec, plugins.CrashingCodec, plugins.InterruptingCodec):
        cls.encode_calls = cls.decode_calls = 0


def test_identity_and_lowpass_rows(audio_folder, tmp_path):
    cfg = make_config(audio_folder, ["identity", "lowpass"])
    pipe, run_dir = run(cfg, tmp_path)
    rows = read(run_dir / "results.csv")
    sdr = {r["codec_label"]: float(r["value"]) for r in rows if r["metric"] == "si_sdr"}
    assert sdr["identity"] == 150.0  # exact reconstruction hits the documented cap
    assert 10 < sdr["lowpass"] < 150  # harmonics above 2 kHz... only a little energy is lost
    provenance = rows[0]
    for col in ("git_commit", "hardware", "config_hash", "dataset_id", "codec_id", "timestamp"):
        assert provenance[col]
    assert (run_dir / "config.yaml").exists() and (run_dir / "report" / "report.md").exists()
    items = read(run_dir / "items.csv")
    assert len([i for i in items if i["codec_label"] == "lowpass"]) == 6


def test_rerun_is_a_cache_hit(audio_folder, tmp_path):
    cfg = make_config(audio_folder, ["tests.plugins:CountingCodec"])
    run(cfg, tmp_path)
    assert plugins.CountingCodec.encode_calls == 6 and plugins.CountingCodec.decode_calls == 6
    first = read(tmp_path / "results" / cfg.run_name / "results.csv")
    run(cfg, tmp_path)
    assert plugins.CountingCodec.encode_calls == 6 and plugins.CountingCodec.decode_calls == 6
    second = read(tmp_path / "results" / cfg.run_name / "results.csv")
    assert [r["value"] for r in first] == [r["value"] for r in second]


def test_changed_codec_config_invalidates_cache(audio_folder, tmp_path):
    run(make_config(audio_folder, ["tests.plugins:CountingCodec"]), tmp_path)
    cfg = make_config(audio_folder, [CodecSpec(name="tests.plugins:CountingCodec", options={"gain": 0.5})])
    _, run_dir = run(cfg, tmp_path)
    assert plugins.CountingCodec.encode_calls == 12
    sdr = [float(r["value"]) for r in read(run_dir / "results.csv") if r["metric"] == "si_sdr"]
    assert sdr == [150.0]  # SI-SDR is scale invariant


def test_changed_audio_invalidates_only_that_item(audio_folder, tmp_path):
    cfg = make_config(audio_folder, ["tests.plugins:CountingCodec"])
    run(cfg, tmp_path)
    y, sr = sf.read(audio_folder / "tone0.wav")
    sf.write(audio_folder / "tone0.wav", y * 0.5, sr)
    run(make_config(audio_folder, ["tests.plugins:CountingCodec"]), tmp_path)
    assert plugins.CountingCodec.encode_calls == 7


def test_resume_after_interruption_recomputes_nothing_done(audio_folder, tmp_path):
    cfg = make_config(audio_folder, ["tests.plugins:InterruptingCodec"], batch_items=1)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path)
    assert plugins.InterruptingCodec.encode_calls == 3
    assert find_resumable_run(tmp_path / "results") == tmp_path / "results" / cfg.run_name
    plugins.InterruptingCodec.limit = 100
    try:
        _, run_dir = run(cfg, tmp_path)
    finally:
        plugins.InterruptingCodec.limit = 3
    assert plugins.InterruptingCodec.encode_calls == 6  # 3 before + only the 3 missing ones
    assert find_resumable_run(tmp_path / "results") is None
    assert len([r for r in read(run_dir / "items.csv") if r["metric"] == "si_sdr"]) == 6


def test_bad_files_become_error_rows_and_the_run_goes_on(audio_folder, tmp_path):
    (audio_folder / "corrupt.wav").write_bytes(b"RIFF....not really a wav")
    (audio_folder / "notes.mp3").write_text("hello")
    sf.write(audio_folder / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    sf.write(audio_folder / "silent.wav", np.zeros(8000, dtype=np.float32), 16000)
    _, run_dir = run(make_config(audio_folder, ["identity"]), tmp_path)
    errors = {r["item"]: r["error"] for r in read(run_dir / "errors.csv")}
    assert set(errors) == {"corrupt.wav", "notes.mp3", "empty.wav"}
    assert "corrupt.wav" in errors["corrupt.wav"] or "cannot decode" in errors["corrupt.wav"]
    assert "no samples" in errors["empty.wav"]
    items = {r["item"]: r for r in read(run_dir / "items.csv") if r["metric"] == "si_sdr"}
    assert math.isnan(float(items["silent.wav"]["value"])) and items["silent.wav"]["note"]
    assert len(items) == 7  # 6 tones + the silent file
    summary = next(r for r in read(run_dir / "results.csv") if r["metric"] == "si_sdr")
    # failures are counted; the silent file is undefined (NaN), not a failure
    assert int(summary["n"]) == 6 and int(summary["n_failed"]) == 3
    assert '"n_undefined": 1' in summary["settings"]


def test_nan_latents_and_crashing_decoder_are_per_item_errors(audio_folder, tmp_path):
    cfg = make_config(audio_folder, ["tests.plugins:NaNCodec", "tests.plugins:CrashingCodec", "identity"])
    _, run_dir = run(cfg, tmp_path)
    errors = read(run_dir / "errors.csv")
    nan_errors = [e for e in errors if e["codec_label"] == "tests.plugins:NaNCodec"]
    assert nan_errors and all("NaN" in e["error"] and e["stage"] == "reconstruct" for e in nan_errors)
    # quiet items (peak <= 0.5) still got through the NaN codec, loud ones failed individually
    ok = [r for r in read(run_dir / "items.csv") if r["codec_label"] == "tests.plugins:NaNCodec"
          and r["status"] == "ok"]
    assert len(ok) + len(nan_errors) == 6 and ok
    crash = [e for e in errors if e["codec_label"] == "tests.plugins:CrashingCodec"]
    assert len(crash) == 6 and all("decoder exploded" in e["error"] for e in crash)
    assert any(r["codec_label"] == "identity" for r in read(run_dir / "results.csv"))


def test_unbuildable_codec_is_reported_and_skipped(audio_folder, tmp_path):
    _, run_dir = run(make_config(audio_folder, ["no_such_codec", "identity"]), tmp_path)
    errors = read(run_dir / "errors.csv")
    assert errors[0]["stage"] == "build" and "unknown codec" in errors[0]["error"]
    assert any(r["codec_label"] == "identity" for r in read(run_dir / "results.csv"))


def test_dry_run_computes_nothing_and_names_the_codecs(audio_folder, tmp_path):
    cfg = make_config(audio_folder, ["identity", "no_such_codec"])
    pipe = Pipeline(cfg, tmp_path / "results", tmp_path / "cache", progress=False, log=lambda m: None)
    plan = "\n".join(pipe.plan())
    assert "codec identity [identity]" in plan and "no_such_codec" in plan and "cannot be built" in plan
    assert "nothing was computed" in plan
    assert not (tmp_path / "cache").exists() and not (tmp_path / "results").exists()


def test_set_metrics_see_whole_references_whatever_the_codec_crops(audio_folder, tmp_path):
    """FAD-like set metrics must compare every codec with the same reference set: references
    are never trimmed to a codec's shorter output; the estimate is zero-padded instead."""
    cfg = make_config(audio_folder, ["identity", "tests.plugins:CroppingCodec"])
    cfg.metrics = ["si_sdr", "tests.plugins:ReferenceLengthMetric"]
    _, run_dir = run(cfg, tmp_path)
    rows = [r for r in read(run_dir / "results.csv") if r["metric"] == "reference_length"]
    by_codec = {r["codec_label"]: r for r in rows}
    cropping = by_codec.pop("tests.plugins:CroppingCodec")
    assert set(by_codec) == {"identity"}
    assert by_codec["identity"]["value"] == cropping["value"]
    assert '"max_tail": 0.0' in cropping["settings"]  # padded with zeros
    assert '"max_tail": 0.0' not in by_codec["identity"]["settings"]
