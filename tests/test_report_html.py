"""The HTML report: example selection, loudness, the page on a tiny run with real FLAC files, and
the page in a real browser (headless Chromium: no console error, every audio file decodes, the
tables sort). The browser test skips, saying why, only where Chromium, its driver or selenium is
missing; ``scripts/install.sh test`` installs them (CI)."""

from __future__ import annotations

import contextlib
import html.parser
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

from benchmark.html.examples import (
    ExampleOptions,
    disagreement,
    example_entry,
    integrated_loudness,
    matching_gains,
    non_commercial,
    select_items,
    write_manifest,
)
from benchmark.report import build_report
from benchmark.results import ResultsStore

SR = 16000
#: codec -> (SNR of the added noise in dB or None for none, low-pass cut-off in Hz or None, weights licence)
CODECS = {"identity": (None, None, "n/a"), "clean": (30.0, None, "MIT"), "dull": (None, 600.0, "MIT"),
          "noisy": (0.0, None, "CC BY-NC 4.0")}
ITEMS = ("tone-a", "tone-b", "tone-c")


def _decode(reference: np.ndarray, codec: str, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    snr, cutoff, _ = CODECS[codec]
    out = reference.copy()
    if cutoff is not None:
        out = sosfiltfilt(butter(8, cutoff, fs=SR, output="sos"), out, axis=1).astype(np.float32)
    if snr is not None:
        noise = rng.standard_normal(out.shape).astype(np.float32)
        out = out + noise * np.sqrt(np.mean(reference ** 2) / np.mean(noise ** 2) / 10 ** (snr / 10))
    return out.astype(np.float32)


def _sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    error = estimate - reference
    return float(10 * np.log10(np.sum(reference ** 2) / max(np.sum(error ** 2), 1e-12)))


def make_tiny_run(root: Path, name: str = "tiny-run") -> Path:
    """A run folder as ``benchmark run`` writes it (results.csv, items.csv, config.yaml) for four
    codecs on three 1 s harmonic tones, with real examples (FLAC, spectrograms, examples.json).
    Per-item values: ``si_sdr`` (the true SDR of the decode, dB, higher better) and ``mel_distance``
    (lower better; made to disagree with si_sdr on ``tone-b``: it prefers ``dull`` to ``clean``)."""
    run_dir = root / name
    store = ResultsStore(run_dir, name, "cafe0123")
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    examples, entries = run_dir / "report" / "examples", []
    per_item: dict[tuple[str, str], dict[str, float]] = {}
    for i, item in enumerate(ITEMS):
        f0 = 220.0 * 2 ** (i / 4)
        reference = (0.3 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8)))[None, :].astype(np.float32)
        decodes = {c: (reference.copy() if c == "identity" else _decode(reference, c, rng)) for c in CODECS}
        metrics = {}
        for codec, audio in decodes.items():
            sdr = min(_sdr(reference, audio), 150.0)
            mel = {"identity": 0.0, "clean": 2.0, "dull": 1.0 if item == "tone-b" else 4.0, "noisy": 6.0}[codec]
            metrics[codec] = {"si_sdr": sdr, "mel_distance": mel + 0.1 * i, "fad_contribution": 0.5}
            per_item[(codec, item)] = metrics[codec]
            for metric, value in metrics[codec].items():
                store.add_item(codec_label=codec, codec_id=codec, split="test", item=item, metric=metric, value=value,
                               status="ok")
        choice = {"id": item, "why": "random sample (seed 0)", "score": None}
        entries.append(example_entry(examples, choice, reference, {c: a for c, a in decodes.items()}, SR,
                                     metrics=metrics, kind="note", labels={"pitch": 57 + i}))
    for codec, (_, _, license_) in CODECS.items():
        columns = dict(codec=codec, codec_label=codec, codec_id=f"{codec}-id", weights_id="w", dataset="builtin",
                       dataset_id="d", split="test")
        for metric, unit, higher in (("si_sdr", "dB", True), ("mel_distance", "log-mel L1", False)):
            values = np.array([per_item[(codec, it)][metric] for it in ITEMS])
            store.add(**columns, stage="reconstruction", metric=metric, value=float(values.mean()),
                      ci_low=float(values.min()), ci_high=float(values.max()), n=len(ITEMS),
                      n_failed=1 if codec == "noisy" and metric == "si_sdr" else 0, unit=unit,
                      higher_is_better=higher, convention="test", implementation="numpy", metric_version="1")
        store.add(**columns, stage="cost", metric="decode_speed", value=100.0, unit="x realtime",
                  settings={"license": f"code MIT; weights {license_}"})
    store.write()
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"preset": "tiny", "codecs": list(CODECS)}))
    codecs = [{"label": c, "source": c, "note": "", "code_license": "MIT", "weights_license": lic,
               "non_commercial": non_commercial(lic)} for c, (_, _, lic) in CODECS.items()]
    write_manifest(examples, run=name, codecs=codecs, items=entries, options=ExampleOptions(),
                   directions={"si_sdr": True, "mel_distance": False}, key="test")
    return run_dir


@pytest.fixture
def tiny_run(tmp_path):
    run_dir = make_tiny_run(tmp_path)
    build_report([run_dir], run_dir / "report")
    return run_dir


class _PageParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.audio, self.images, self.links, self.tables = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "audio":
            self.audio.append(attrs.get("src"))
        elif tag == "img":
            self.images.append(attrs.get("src"))
        elif tag in ("a", "link", "script"):
            self.links.append(attrs.get("href") or attrs.get("src") or "")
        elif tag == "table" and attrs.get("id"):
            self.tables.append(attrs["id"])


def parse_page(page: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(page.read_text())
    return parser


# -- selection, loudness --------------------------------------------------------------------------------
def test_select_items_takes_disagreement_first_then_a_seeded_random_sample():
    rows = []
    for i in range(8):
        for codec, (a, b) in {"x": (3.0, 1.0), "y": (2.0, 2.0), "z": (1.0, 3.0)}.items():
            # item3 and item6: mel_distance (lower better) ranks the codecs the opposite way from si_sdr
            mel = {"x": 3.0, "y": 2.0, "z": 1.0}[codec] if i in (3, 6) else b
            row = {"codec_label": codec, "item": f"item{i}", "status": "ok"}
            rows += [dict(row, metric="si_sdr", value=a + 0.01 * i), dict(row, metric="mel_distance", value=mel)]
    items = pd.DataFrame(rows)
    directions = {"si_sdr": True, "mel_distance": False}
    chosen = select_items(items, directions, ExampleOptions(disagree=2, random=3, seed=1))
    assert [c["id"] for c in chosen[:2]] == ["item3", "item6"]
    assert chosen[0]["score"] == pytest.approx(1.0)  # opposite rankings: the largest disagreement
    random_ids = [c["id"] for c in chosen[2:]]
    assert len(set(random_ids)) == 3 and not {"item3", "item6"} & set(random_ids)
    assert [c["id"] for c in select_items(items, directions, ExampleOptions(disagree=2, random=3, seed=1))] == \
        [c["id"] for c in chosen]  # seeded: the same sample every time
    scores = disagreement(items.assign(value=items["value"]).pivot_table(
        index="item", columns=["metric", "codec_label"], values="value").drop(columns="mel_distance", level=0))
    assert scores.isna().all()  # one metric: nothing to disagree about
    # item kinds take turns
    kinds = {f"item{i}": ("clip" if i == 6 else "note") for i in range(8)}
    kinds["item3"] = "note"
    chosen = select_items(items, directions, ExampleOptions(disagree=2, random=0), kinds=kinds)
    assert {c["id"] for c in chosen} == {"item3", "item6"}
    # where the metrics agree everywhere, the seeded sample takes every place
    agreeing = items[~items["item"].isin(["item3", "item6"])]
    chosen = select_items(agreeing, directions, ExampleOptions(disagree=2, random=1))
    assert len(chosen) == 3 and all(c["why"].startswith("random sample") for c in chosen)


def test_integrated_loudness_follows_bs1770_and_gains_only_attenuate():
    t = np.arange(48000 * 3) / 48000
    sine = np.sin(2 * np.pi * 997 * t)[None, :].astype(np.float32)
    assert integrated_loudness(sine, 48000) == pytest.approx(-3.01, abs=0.05)  # BS.1770-4's reference point
    assert integrated_loudness(0.1 * sine, 48000) == pytest.approx(-23.01, abs=0.05)
    t16 = np.arange(16000 * 3) / 16000
    assert integrated_loudness(0.1 * np.sin(2 * np.pi * 997 * t16)[None, :], 16000) == pytest.approx(-23.01, abs=0.1)
    assert integrated_loudness(np.zeros((1, 48000), np.float32), 48000) == float("-inf")
    gains = matching_gains({"reference": -20.0, "a": -26.0, "b": -14.0, "silent": float("-inf")})
    assert gains == {"reference": -6.0, "a": 0.0, "b": -12.0, "silent": 0.0}


def test_non_commercial_licences_are_recognised():
    assert non_commercial("CC BY-NC 4.0") and non_commercial("non-commercial research") and non_commercial("NC")
    assert not non_commercial("MIT") and not non_commercial("n/a") and not non_commercial(None)


# -- the page ---------------------------------------------------------------------------------------
def test_index_html_has_players_tables_and_provenance(tiny_run):
    page = tiny_run / "report" / "index.html"
    parsed = parse_page(page)
    assert len(parsed.audio) == len(ITEMS) * (1 + len(CODECS))
    for src in parsed.audio + parsed.images:
        assert (page.parent / src).is_file(), src
    text = page.read_text()
    assert not [link for link in parsed.links if link.startswith(("http:", "https:", "//"))]  # works offline
    assert "table-reconstruction" in parsed.tables and "table-codecs" in parsed.tables
    assert "<script>" in text and "sortable" in text
    assert 'class="ci"' in text  # intervals shown beside the values
    assert '<td data-sort="1" class="failed">1</td>' in text  # a failure count above zero stands out
    assert '<td data-sort="0">0</td>' in text
    nc_rows = [line for line in text.split("<tr>") if "noisy" in line and "badge" in line]
    assert nc_rows, "the non-commercial codec is labelled"
    assert not [line for line in text.split("<tr>") if ">clean<" in line and "badge" in line]
    assert "config.yaml of tiny-run" in text and "git_commit" in text
    manifest = json.loads((tiny_run / "report" / "examples" / "examples.json").read_text())
    first = manifest["items"][0]
    assert first["decodes"]["identity"]["metrics"]["si_sdr"] == pytest.approx(150.0)
    assert "fad_contribution" not in first["decodes"]["clean"]["metrics"]
    audio, rate = sf.read(tiny_run / "report" / "examples" / first["decodes"]["clean"]["audio"])
    assert rate == SR and audio.shape == (SR,)
    # the louder (noisy) decode is attenuated when loudness matching is on, the quietest file is not
    gains = {k: v["gain_db"] for k, v in first["decodes"].items()}
    assert gains["noisy"] < 0 and max([*gains.values(), first["reference"]["gain_db"]]) <= 0
    assert 0.0 in [*gains.values(), first["reference"]["gain_db"]]


def test_report_written_elsewhere_copies_the_examples(tiny_run, tmp_path):
    out = tmp_path / "elsewhere"
    files = build_report([tiny_run], out)
    assert out / "index.html" in files
    parsed = parse_page(out / "index.html")
    assert parsed.audio and all(src.startswith("examples/") and (out / src).is_file() for src in parsed.audio)


def test_html_failure_never_loses_the_other_outputs(tiny_run, monkeypatch, tmp_path):
    import benchmark.html

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(benchmark.html, "build_html", broken)
    files = {p.name for p in build_report([tiny_run], tmp_path / "out")}
    assert {"reconstruction.md", "report.md"} <= files and "index.html" not in files


# -- a real browser -----------------------------------------------------------------------------------
def _browser() -> tuple[str | None, str | None, str | None]:
    """(chromium, chromedriver, reason to skip)."""
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if Path(p).exists()), None)
    if chromium is None or driver is None:
        return None, None, ("headless Chromium not available (Debian: apt-get install chromium chromium-driver; "
                            "`bash scripts/install.sh test` installs it, as CI does)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None, None, "selenium not installed (pip install selenium; part of the test extras)"
    return chromium, driver, None


def browser_skip_reason() -> str | None:
    return _browser()[2]


@contextlib.contextmanager
def headless_chromium():
    """A headless Chromium driven by the system chromedriver (no download, no selenium-manager)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path, reason = _browser()
    if reason:
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--mute-audio",
                "--window-size=1280,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


AUDIO_STATE = """
return Array.from(document.querySelectorAll('audio')).map(a => ({
  src: a.getAttribute('src'), ready: a.readyState, duration: a.duration,
  error: a.error ? a.error.code + ' ' + a.error.message : null}));
"""
IMAGE_STATE = "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);"


def page_problems(driver, page: Path, timeout: float = 30.0) -> list[str]:
    """Load ``page`` and return what is wrong with it: console errors, audio that does not decode
    (every ``<audio>`` is loaded fully and must reach HAVE_CURRENT_DATA with a duration), images
    that do not load."""
    driver.get(page.resolve().as_uri())
    driver.execute_script("document.querySelectorAll('audio').forEach(a => { a.preload = 'auto'; a.load(); });")
    deadline = time.monotonic() + timeout
    while True:
        state = driver.execute_script(AUDIO_STATE)
        if all(s["error"] or s["ready"] >= 2 for s in state) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    problems = [f"audio {s['src']}: error {s['error']}, readyState {s['ready']}, duration {s['duration']}"
                for s in state if s["error"] or s["ready"] < 2 or not (s["duration"] or 0) > 0]
    problems += [f"image not loaded: {src}" for src in driver.execute_script(IMAGE_STATE)]
    problems += [f"console {e['level']}: {e['message']}" for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return problems


def column_values(driver, table_id: str, column: int) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0] + ' tbody tr'))"
        ".map(r => r.cells[arguments[1]].getAttribute('data-sort') || r.cells[arguments[1]].textContent);",
        f"#{table_id}", column)


@pytest.mark.skipif(browser_skip_reason() is not None, reason=str(browser_skip_reason()))
def test_page_renders_plays_and_sorts_in_headless_chromium(tiny_run):
    from selenium.webdriver.common.by import By

    page = tiny_run / "report" / "index.html"
    with headless_chromium() as driver:
        assert page_problems(driver, page) == []
        durations = {round(s["duration"], 2) for s in driver.execute_script(AUDIO_STATE)}
        assert durations == {1.0}
        headers = driver.find_elements(By.CSS_SELECTOR, "#table-reconstruction thead th")
        column = next(i for i, h in enumerate(headers) if h.text.startswith("si_sdr"))
        headers[column].click()
        values = [float(v) for v in column_values(driver, "table-reconstruction", column)]
        assert values == sorted(values) and headers[column].get_attribute("aria-sort") == "ascending"
        headers[column].click()
        values = [float(v) for v in column_values(driver, "table-reconstruction", column)]
        assert values == sorted(values, reverse=True) and headers[column].get_attribute("aria-sort") == "descending"
        names = column_values(driver, "table-reconstruction", 0)
        assert names[0] == "identity"  # the best SI-SDR first
        driver.find_element(By.ID, "loudness-match").click()
        volumes = driver.execute_script("return Array.from(document.querySelectorAll('audio')).map(a => a.volume);")
        assert min(volumes) < 1.0 and max(volumes) == 1.0
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
