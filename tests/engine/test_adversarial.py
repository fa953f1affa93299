"""Adversarial codecs through the real pipeline: no codec may gain by returning less audio, by
crashing on hard items, by diverging, or by a delay it does not declare. Each score is checked
against what an honest codec doing the same work gets, or against a closed form."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from benchmark.config import CodecSpec, DatasetSpec, RunConfig
from benchmark.engine.run import Pipeline

SR = 16000
METRICS = ["si_sdr", "mel_distance", "fad"]
FAD_OPTIONS = {"fad": {"backbone": "tests.plugins:BandEnergyBackbone", "cache": False}}
TRUNCATING = "tests.plugins:TruncatingCodec"
CRASH = "tests.plugins:LongItemCrashCodec"     # fails on inputs over 0.6 s: long.wav
QUIET_NAN = "tests.plugins:QuietNaNCodec"      # NaN for channels under 0.4 peak: tone0, tone1
DECLARED = CodecSpec(name="tests.plugins:DelayCodec", options={"delay": 160, "declare": True}, label="delay declared")
UNDECLARED = CodecSpec(name="tests.plugins:DelayCodec", options={"delay": 160, "declare": False},
                       label="delay undeclared")
# (seconds, channel peaks)
FILES = {"tone0.wav": (0.5, [0.3]), "tone1.wav": (0.5, [0.35]), "tone2.wav": (0.5, [0.5]),
         "tone3.wav": (0.5, [0.6, 0.45]), "long.wav": (1.5, [0.5])}


def _signal(seconds: float, peaks: list[float], seed: int) -> np.ndarray:
    """Harmonic tone plus a little noise, ``[channels, samples]`` with the given peaks."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * SR))) / SR
    out = []
    for ch, peak in enumerate(peaks):
        f0 = 110.0 * 2 ** ((seed + ch) / 3)
        y = sum(np.sin(2 * np.pi * f0 * k * t + k) / k for k in range(1, 6)) + 0.3 * rng.standard_normal(t.size)
        out.append(peak * y / np.abs(y).max())
    return np.array(out, np.float32)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small STFTs are fastest on one torch thread (and do not fight other jobs for the cores)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("adversarial") / "audio"
    root.mkdir()
    for seed, (name, (seconds, peaks)) in enumerate(FILES.items()):
        sf.write(root / name, _signal(seconds, peaks, seed).T, SR, subtype="FLOAT")
    return root


@pytest.fixture(scope="module")
def references(folder):
    return {name: sf.read(folder / name, dtype="float32", always_2d=True)[0].T for name in FILES}


def _read(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


class Run:
    """The tables of one pipeline run."""

    def __init__(self, run_dir):
        self.dir = run_dir
        self.results = _read(run_dir / "results.csv")
        self.items = _read(run_dir / "items.csv")
        errors = run_dir / "errors.csv"
        self.errors = _read(errors) if errors.exists() else []

    def summary(self, codec: str, metric: str) -> dict:
        rows = [r for r in self.results if r["codec_label"] == codec and r["metric"] == metric
                and r["stage"] == "reconstruction"]
        assert len(rows) == 1, (codec, metric, rows)
        return rows[0]

    def mean(self, codec: str, metric: str) -> float:
        return float(self.summary(codec, metric)["value"])

    def item_rows(self, codec: str, metric: str | None = None) -> dict[str, dict]:
        return {r["item"]: r for r in self.items
                if r["codec_label"] == codec and (metric is None or r["metric"] == metric)}

    def values(self, codec: str, metric: str) -> dict[str, float]:
        return {i: float(r["value"]) for i, r in self.item_rows(codec, metric).items() if r["status"] == "ok"}


def _run(folder, tmp_path_factory, codecs, **kw) -> Run:
    cfg = RunConfig(preset="adversarial", dataset=DatasetSpec(name="folder", root=str(folder)),
                    codecs=[CodecSpec(name=c) if isinstance(c, str) else c for c in codecs], metrics=METRICS,
                    metric_options=FAD_OPTIONS, tasks=[], **kw)
    tmp = tmp_path_factory.mktemp("run")
    return Run(Pipeline(cfg, tmp / "results", tmp / "cache", progress=False, log=lambda m: None).run())


@pytest.fixture(scope="module")
def honest_failures(folder, tmp_path_factory):
    """Codecs that score every item: identity, truncating, delay declared / undeclared."""
    return _run(folder, tmp_path_factory, ["identity", TRUNCATING, DECLARED, UNDECLARED])


@pytest.fixture(scope="module")
def crash_common(folder, tmp_path_factory):
    return _run(folder, tmp_path_factory, ["identity", "tests.plugins:CountingCodec", CRASH])


def _hand_si_sdr(s: np.ndarray, e: np.ndarray) -> float:
    """10 log10(||a s||^2 / ||e - a s||^2), zero-meaned s and e, a = <s, e> / ||s||^2."""
    s = s.astype(np.float64) - s.mean()
    e = e.astype(np.float64) - e.mean()
    a = (s @ e) / (s @ s)
    return float(10 * np.log10((a * a * (s @ s)) / ((e - a * s) @ (e - a * s))))


def _tail_zeroed(x: np.ndarray, keep: int) -> np.ndarray:
    y = x.copy()
    y[:, keep:] = 0.0
    return y


# -- (a) a codec that returns 55 % of its input ----------------------------------------------------
def test_truncating_codec_scores_as_if_the_missing_audio_were_silence(honest_failures, references):
    run = honest_failures
    values = run.values(TRUNCATING, "si_sdr")
    assert set(values) == set(FILES)
    for name, x in references.items():
        keep = int(x.shape[1] * 0.55)
        expected = np.mean([_hand_si_sdr(x[c], _tail_zeroed(x, keep)[c]) for c in range(x.shape[0])])
        assert values[name] == pytest.approx(expected, abs=1e-3), name
        assert values[name] < 5.0
    assert run.mean("identity", "si_sdr") == 150.0
    assert run.mean(TRUNCATING, "si_sdr") < 5.0
    assert run.mean(TRUNCATING, "mel_distance") > run.mean("identity", "mel_distance") + 1.0
    assert run.mean("identity", "fad") == pytest.approx(0.0, abs=1e-6)
    assert run.mean(TRUNCATING, "fad") > 1.0
    for metric in METRICS:
        assert run.summary(TRUNCATING, metric)["n_failed"] == "0"


def test_truncated_items_say_they_were_padded(honest_failures, references):
    rows = honest_failures.item_rows(TRUNCATING, "si_sdr")
    for name, x in references.items():
        n = x.shape[1]
        row = rows[name]
        assert int(row["padded_samples"]) == n - int(n * 0.55)
        assert f"estimate {(n - int(n * 0.55)) / SR:.3f} s short: zero-padded (scored as silence)" in row["note"]
    identity = honest_failures.item_rows("identity", "si_sdr")
    assert all(int(r["padded_samples"]) == 0 and "zero-padded" not in r["note"] for r in identity.values())


def test_reconstruction_table_shows_the_padded_seconds(honest_failures, references):
    padded = sum(x.shape[1] - int(x.shape[1] * 0.55) for x in references.values()) / SR
    table = (honest_failures.dir / "report" / "reconstruction.md").read_text().splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    rows = {cells[0]: dict(zip(header, cells)) for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in table[2:])}
    assert float(rows[TRUNCATING]["padded s"]) == pytest.approx(padded, abs=1e-3)
    assert float(rows["identity"]["padded s"]) == 0.0
    assert float(rows["delay declared"]["padded s"]) == pytest.approx(160 * len(FILES) / SR, abs=1e-3)


# -- (b) a codec that crashes on the long item -----------------------------------------------------
def test_crashing_codec_is_compared_on_the_common_items_only(crash_common):
    run = crash_common
    short = set(FILES) - {"long.wav"}
    assert set(run.values("identity", "si_sdr")) == set(FILES)  # identity did score long.wav
    assert set(run.values(CRASH, "si_sdr")) == short
    for metric in ("si_sdr", "mel_distance"):
        crash, identity = run.summary(CRASH, metric), run.summary("identity", metric)
        honest = run.summary("tests.plugins:CountingCodec", metric)
        assert crash["n_failed"] == "1" and identity["n_failed"] == honest["n_failed"] == "0"
        assert crash["n"] == identity["n"] == honest["n"] == str(len(short))
        # the honest codec doing the same work gets the same values on those items
        assert run.values(CRASH, metric) == {i: v for i, v in run.values("tests.plugins:CountingCodec", metric).items()
                                             if i in short}
        assert float(crash["value"]) == float(honest["value"])
    fad = {c: run.summary(c, "fad") for c in ("identity", "tests.plugins:CountingCodec", CRASH)}
    clips = {c: json.loads(r["settings"])["n_estimate_clips"] for c, r in fad.items()}
    assert len(set(clips.values())) == 1  # the same reference and estimate sets for everyone
    assert float(fad[CRASH]["value"]) == float(fad["tests.plugins:CountingCodec"]["value"])


def test_crash_is_an_error_row_naming_the_file(crash_common):
    errors = [e for e in crash_common.errors if e["codec_label"] == CRASH]
    assert len(errors) == 1
    (error,) = errors
    assert error["item"] == "long.wav" and error["path"].endswith("long.wav") and error["stage"] == "reconstruct"
    assert "long.wav" in error["error"] and "too long" in error["error"]
    row = crash_common.item_rows(CRASH)["long.wav"]
    assert row["status"] == "error" and row["metric"] == "*" and math.isnan(float(row["value"]))
    assert not [e for e in crash_common.errors if e["codec_label"] != CRASH]


def test_worst_policy_counts_the_failed_item_as_the_worst_value(folder, tmp_path_factory):
    run = _run(folder, tmp_path_factory, ["identity", TRUNCATING, CRASH], failure_policy="worst")
    for metric, worst in (("si_sdr", min), ("mel_distance", max)):
        crash = run.summary(CRASH, metric)
        assert crash["n"] == str(len(FILES)) and crash["n_failed"] == "1"
        values = run.values(CRASH, metric)
        values["long.wav"] = worst(run.values(c, metric)["long.wav"] for c in ("identity", TRUNCATING))
        assert float(crash["value"]) == pytest.approx(np.mean(list(values.values())), rel=1e-9)
        # the failure costs what the worst codec lost on that item: never a gain
        identity = run.mean("identity", metric)
        assert float(crash["value"]) < identity if metric == "si_sdr" else float(crash["value"]) > identity


# -- (c) a codec that diverges on quiet items ------------------------------------------------------
def test_diverging_codec_rows_say_nan_and_the_failures_are_counted(folder, tmp_path_factory):
    run = _run(folder, tmp_path_factory, ["identity", QUIET_NAN])
    quiet = {"tone0.wav", "tone1.wav"}
    rows = run.item_rows(QUIET_NAN)
    for name in quiet:
        assert rows[name]["status"] == "error"
        assert "NaN" in rows[name]["note"] and "diverged" in rows[name]["note"] and name in rows[name]["note"]
    errors = {e["item"]: e for e in run.errors if e["codec_label"] == QUIET_NAN}
    assert set(errors) == quiet
    assert all(e["path"].endswith(name) and name in e["error"] for name, e in errors.items())
    for metric in ("si_sdr", "mel_distance"):
        nan_codec, identity = run.summary(QUIET_NAN, metric), run.summary("identity", metric)
        assert nan_codec["n_failed"] == "2" and identity["n_failed"] == "0"
        assert nan_codec["n"] == identity["n"] == str(len(FILES) - 2)
    assert run.mean(QUIET_NAN, "si_sdr") == 150.0  # the loud items came back intact


# -- (d) a delay, declared or not ------------------------------------------------------------------
def test_declared_delay_scores_like_identity_except_the_padded_tail(honest_failures, references):
    values = honest_failures.values("delay declared", "si_sdr")
    rows = honest_failures.item_rows("delay declared", "si_sdr")
    for name, x in references.items():
        keep = x.shape[1] - 160
        expected = np.mean([_hand_si_sdr(x[c], _tail_zeroed(x, keep)[c]) for c in range(x.shape[0])])
        assert values[name] == pytest.approx(expected, abs=1e-3), name
        assert int(rows[name]["padded_samples"]) == 160
        assert "declared delay removed (160 codec samples per chunk)" in rows[name]["note"]


def test_undeclared_delay_scores_clearly_worse(honest_failures):
    declared = honest_failures.values("delay declared", "si_sdr")
    undeclared = honest_failures.values("delay undeclared", "si_sdr")
    assert set(undeclared) == set(FILES)
    for name in FILES:
        assert undeclared[name] < declared[name] - 10.0, name
    assert honest_failures.mean("delay undeclared", "si_sdr") < honest_failures.mean("delay declared", "si_sdr") - 10
    assert all(int(r["padded_samples"]) == 0 for r in honest_failures.item_rows("delay undeclared", "si_sdr").values())
