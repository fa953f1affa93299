"""Integration: the real CLI runs the whole smoke preset on the built-in dataset, then re-runs
from the cache without computing anything."""

import csv
import json

import pytest

from benchmark.cli import main
from tests.test_report_html import browser_skip_reason, headless_chromium, page_problems, parse_page


@pytest.mark.slow
def test_run_all_smoke_then_cached_rerun(tmp_path, capsys):
    args = ["run", "all", "--preset", "smoke", "--results", str(tmp_path / "res"), "--cache", str(tmp_path / "cache"),
            "--quiet"]
    assert main(args) == 0
    run_dir = next((tmp_path / "res").iterdir())
    with open(run_dir / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    stages = {r["stage"] for r in rows}
    assert {"reconstruction", "probe", "cost"} <= stages
    probed = {(r["codec_label"], r["task"]) for r in rows if r["stage"] == "probe"}
    for codec in ("logmel", "chroma", "mfcc"):
        for task in ("tagging", "key", "instrument", "pitch"):
            assert (codec, task) in probed
    # music2latent is trained with two seeds: one row per run, one pooled row per item kind whose
    # interval covers the training seed, probes pooled too, and seed-aware comparisons against it
    pooled = [r for r in rows if r["stage"] == "reconstruction" and r["codec_label"] == "music2latent"]
    assert {r["subset"] for r in pooled} == {"note", "clip"}
    assert all("training seed x item" in json.loads(r["settings"])["ci_covers"] for r in pooled)
    assert {r["seed"] for r in rows if r["stage"] == "reconstruction_seed"} == {"0", "1"}
    assert {r["codec_label"] for r in rows if r["stage"] == "probe_seed"} == {"music2latent@seed0",
                                                                           "music2latent@seed1"}
    assert any(r["codec_label"] == "music2latent" for r in rows if r["stage"] == "probe")
    paired = [json.loads(r["settings"]) for r in rows if r["stage"] == "reconstruction_paired"]
    assert paired and all(s["reference"] == "music2latent" and s["seeds"] == [1, 2] for s in paired)
    for name in ("reconstruction.md", "probes.tex", "probes.png", "report.md"):
        assert (run_dir / "report" / name).exists()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "complete"
    # the report page: players for the examples, every file there, and (where a browser is) no
    # console error and every audio file decoding in headless Chromium
    page = run_dir / "report" / "index.html"
    parsed = parse_page(page)
    assert len(parsed.audio) >= 6
    for src in parsed.audio + parsed.images:
        assert (page.parent / src).is_file(), src
    if browser_skip_reason() is None:
        with headless_chromium() as driver:
            assert page_problems(driver, page) == []

    assert main(args) == 0
    status = json.loads((run_dir / "status.json").read_text())
    assert status["cache_misses"] == 0, "an immediate re-run must be served entirely from the cache"
