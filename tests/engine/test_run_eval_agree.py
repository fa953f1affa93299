"""``run`` (folder dataset) and ``eval`` are front ends of one engine: for the same files and
codec they give the same numbers.

Done-when of the engine: one folder through ``run`` and through ``eval`` gives identical
per-item values (to 1e-9) and the same FAD reference hash, for two codecs that crop their output
and a file longer than one segment. Run and eval use separate cache folders, so neither can
read the other's numbers.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import soundfile as sf

from benchmark.cli import main
from benchmark.config import CodecSpec, DatasetSpec, RunConfig
from benchmark.engine.run import Pipeline
from benchmark.metrics.signals import chord_progression, mixture

SR = 16000
# two codecs that return less audio than they were given, on every chunk
CODECS = {"tests.plugins:CroppingCodec": {"crop": 240},     # drops the last 240 samples
          "tests.plugins:TruncatingCodec": {"keep": 0.9}}   # drops the last 10 %
METRICS = ["si_sdr", "mel_distance", "fad"]
SEGMENT_SECONDS, CHUNK_SECONDS, OVERLAP_SECONDS = 1.0, 0.5, 0.1
ITEM_COLUMNS = ("codec_id", "dataset_id", "split", "status", "note", "segments", "seconds", "sample_rate",
                "padded_samples", "cut_samples")


def _read(path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _items(rows: list[dict[str, str]], label: str) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["item"], r["metric"]): r for r in rows if r["codec_label"] == label}


def _fad(rows: list[dict[str, str]], label: str) -> tuple[float, dict]:
    row = next(r for r in rows if r["codec_label"] == label and r["metric"] == "fad")
    return float(row["value"]), json.loads(row["settings"])


@pytest.fixture
def folder(tmp_path):
    """16 kHz files: three short ones (one stereo) and one of 2.5 s (three 1 s segments)."""
    root = tmp_path / "audio"
    root.mkdir()
    sf.write(root / "a.wav", mixture(SR, 1.0, seed=0), SR)
    sf.write(root / "b.wav", chord_progression(SR, 1.3, seed=1), SR)
    sf.write(root / "c.flac", np.stack([mixture(SR, 1.2, seed=2), chord_progression(SR, 1.2, seed=3)], axis=1), SR)
    sf.write(root / "long.wav", mixture(SR, 2.5, seed=4), SR)
    return root


def test_run_and_eval_give_identical_item_values_and_fad_reference(folder, tmp_path, one_torch_thread):
    config = RunConfig(preset="agree", dataset=DatasetSpec(name="folder", root=str(folder)),
                       codecs=[CodecSpec(name=name, options=options) for name, options in CODECS.items()],
                       metrics=METRICS, tasks=[], segment_seconds=SEGMENT_SECONDS, chunk_seconds=CHUNK_SECONDS,
                       overlap_seconds=OVERLAP_SECONDS)
    run_dir = Pipeline(config, tmp_path / "results", tmp_path / "run-cache", progress=False,
                       log=lambda message: None).run()
    run_items, run_results = _read(run_dir / "items.csv"), _read(run_dir / "results.csv")
    assert _read(run_dir / "errors.csv") == []

    hashes = set()
    for i, (name, options) in enumerate(CODECS.items()):
        out = tmp_path / f"eval-{i}"
        codec_options = [arg for key, value in options.items() for arg in ("--codec-option", f"{key}={value}")]
        assert main(["eval", "--codec", name, *codec_options, "--audio", str(folder), "--metrics", ",".join(METRICS),
                     "--segment-seconds", str(SEGMENT_SECONDS), "--chunk-seconds", str(CHUNK_SECONDS),
                     "--overlap-seconds", str(OVERLAP_SECONDS), "--cache", str(tmp_path / f"eval-cache-{i}"),
                     "--out", str(out), "--quiet"]) == 0
        label = name.replace(":", "_")
        by_run, by_eval = _items(run_items, name), _items(_read(out / "items.csv"), label)

        # every per-item value (item metrics and FAD contributions), and how it was obtained
        assert set(by_eval) == set(by_run)
        assert {item for item, _ in by_run} == {"a.wav", "b.wav", "c.flac", "long.wav"}
        assert {metric for _, metric in by_run} == {"si_sdr", "mel_distance", "fad_contribution"}
        for key, expected in by_run.items():
            got = by_eval[key]
            a, b = float(expected["value"]), float(got["value"])
            assert math.isfinite(a) and abs(a - b) <= 1e-9, (name, key, a, b)
            assert {c: got[c] for c in ITEM_COLUMNS} == {c: expected[c] for c in ITEM_COLUMNS}, (name, key)
        # the codecs did crop (missing samples scored as silence) and the long file was segmented
        assert all(int(r["padded_samples"]) > 0 for (_, m), r in by_run.items() if m == "si_sdr")
        assert by_run["long.wav", "si_sdr"]["segments"] == "3"
        assert {(r["item"], r["metric"]) for r in _read(out / "segments.csv")} == {
            ("long.wav", "si_sdr"), ("long.wav", "mel_distance")}

        # FAD over the same reference set (content hash), hence the same value
        run_fad, run_settings = _fad(run_results, name)
        eval_fad, eval_settings = _fad(_read(out / "results.csv"), label)
        assert eval_settings["reference_hash"] == run_settings["reference_hash"]
        assert abs(eval_fad - run_fad) <= 1e-9 and math.isfinite(run_fad)
        assert eval_settings["n_estimate_clips"] == run_settings["n_estimate_clips"] == 4
        hashes.add(run_settings["reference_hash"])

    # both codecs are compared with one reference set
    assert len(hashes) == 1
    # ... and they are different codecs: the comparison above is not between copies of one number
    first, second = (_items(run_items, name)["a.wav", "si_sdr"]["value"] for name in CODECS)
    assert first != second
