"""``scripts/bench_throughput.py`` on a tiny generated folder: every stage is timed and reported."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stages_table_and_json(bench, tmp_path, capsys, one_torch_thread):
    out = tmp_path / "figures.json"
    # 3 built-in clips of 2 s (hours = 6 s), lowpass codec, SI-SDR only, no torchrun launch
    assert bench.main(["--hours", str(6 / 3600), "--clip-seconds", "2", "--codec", "lowpass", "--metrics", "si_sdr",
                       "--work", str(tmp_path / "work"), "--no-scaling", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    stages = ("read + resample", "encode", "decode", "si_sdr", "total")
    table = {line.split("  ")[0].strip(): line for line in printed.splitlines()
             if line.split("  ")[0].strip() in stages}
    assert set(table) == set(stages)
    assert "3 files, 6.0 s of audio" in printed
    assert "scaling" not in printed

    figures = json.loads(out.read_text())
    rows = {r["stage"]: r for r in figures["stages"]}
    assert set(stages) <= set(rows)
    assert figures["items_scored"] == 3 and not figures["failures"]
    assert figures["material"]["files"] == 3
    assert figures["material"]["audio_seconds"] == pytest.approx(6.0, abs=0.01)
    for name in stages:
        row = rows[name]
        assert row["seconds"] > 0 and row["items_per_second"] > 0 and row["real_time_factor"] > 0, row
        assert math.isclose(row["real_time_factor"], 6.0 / row["seconds"], rel_tol=1e-3)
        assert math.isclose(row["items_per_second"], 3 / row["seconds"], rel_tol=1e-6)
    shares = [r["share"] for r in figures["stages"] if r["stage"] != "total"]
    assert sum(shares) == pytest.approx(1.0, abs=1e-6)
    assert figures["machine"]["cores"] >= 1 and figures["machine"]["torch"]
    assert figures["scaling"] is None
