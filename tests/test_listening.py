"""Listening-test round trip: export a run's examples as a webMUSHRA test, fake the ratings CSV that
webMUSHRA's service/write.php writes, import it (post-screening, MUSHRA means with intervals, rank
correlations) and find it in the report's tables and page."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

from benchmark.cli import main
from benchmark.listening import (
    ListeningError,
    crossed_bootstrap_ci,
    export_webmushra,
    import_ratings,
    post_screen,
    read_ratings,
)
from benchmark.report import build_report
from tests.test_report_html import ITEMS, make_tiny_run, parse_page

#: what a listener thinks of each condition (webMUSHRA's names for the built-in ones)
TRUE_SCORE = {"reference": 98.0, "anchor35": 20.0, "anchor70": 45.0, "clean": 85.0, "dull": 60.0, "noisy": 30.0}
HEADER = ["session_test_id", "email", "session_uuid", "trial_id", "rating_stimulus", "rating_score", "rating_time",
          "rating_comment"]


def fake_ratings(path, listening: dict, listeners: int = 5, bad: int = 1, seed: int = 0, uuid: bool = True) -> None:
    """webMUSHRA's mushra.csv for ``listeners`` careful listeners and ``bad`` ones who rate the hidden
    reference 40 (they fail post-screening), each rating every trial of the export."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in range(listeners + bad):
        careless = n >= listeners
        for trial in listening["trials"]:
            stimuli = {"reference": "reference", "anchor35": "anchor35", "anchor70": "anchor70",
                       **{key: c["codec"] for key, c in listening["conditions"].items()}}
            for stimulus, condition in stimuli.items():
                if stimulus == "reference":  # careful listeners find the hidden reference
                    score = 40.0 if careless else 100.0 - abs(rng.normal(0, 2))
                else:
                    score = TRUE_SCORE[condition] + rng.normal(0, 4)
                rows.append([listening["test_id"], f"listener{n}@example.org", f"uuid-{n}", trial, stimulus,
                             int(np.clip(round(score), 0, 100)), 12345, ""])
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        header = HEADER if uuid else [h for h in HEADER if h != "session_uuid"]
        writer.writerow(header)
        for row in rows:
            writer.writerow(row if uuid else [v for h, v in zip(HEADER, row) if h != "session_uuid"])


@pytest.fixture
def run_dir(tmp_path):
    run = make_tiny_run(tmp_path)
    build_report([run], run / "report")
    return run


def test_export_writes_a_webmushra_test_with_hidden_reference_and_anchors(run_dir):
    manifest_path = export_webmushra(run_dir)
    listening = json.loads(manifest_path.read_text())
    folder = manifest_path.parent
    text = (folder / "configs" / f"{listening['test_id']}.yaml").read_text()
    config = yaml.safe_load(text)
    assert "- - " not in text  # webMUSHRA's YAML parser reads a compact nested list as a string
    assert config["testId"] == listening["test_id"] and config["remoteService"] == "service/write.php"
    assert config["pages"][0]["type"] == "generic" and config["pages"][-1]["type"] == "finish"
    trials = config["pages"][1]
    assert trials[0] == "random" and len(trials) == 1 + len(ITEMS)
    # identity decodes equal the reference: a second hidden reference, left out
    assert listening["excluded_codecs"] == {"identity": "decodes equal the reference on every item"}
    assert [c["codec"] for c in listening["conditions"].values()] == ["clean", "dull", "noisy"]
    for page in trials[1:]:
        assert page["type"] == "mushra" and page["createAnchor35"] is True and page["createAnchor70"] is True
        assert set(page["stimuli"]) == {"C1", "C2", "C3"}  # opaque names; the map is in listening.json
        reference, rate = sf.read(folder / page["reference"])
        assert rate == 16000 and len(reference) == 16000
        for path in page["stimuli"].values():
            audio, _ = sf.read(folder / path)
            assert audio.shape == reference.shape  # webMUSHRA requires equal lengths
        assert listening["trials"][page["id"]] in ITEMS
    with pytest.raises(ListeningError, match="not among the run's examples"):
        export_webmushra(run_dir, items=["nope"])


def test_ratings_round_trip_into_results_tables_and_page(run_dir, tmp_path):
    listening = json.loads(export_webmushra(run_dir).read_text())
    ratings_csv = tmp_path / "mushra.csv"
    fake_ratings(ratings_csv, listening)
    rows = import_ratings(run_dir, ratings_csv)
    mushra = {r["codec_label"]: r for r in rows if r["stage"] == "listening" and r["metric"] == "mushra"}
    assert list(mushra) == ["clean", "dull", "noisy", "hidden reference", "anchor 7 kHz", "anchor 3.5 kHz"]
    settings = mushra["clean"]["settings"]
    assert settings["listeners"] == 5 and settings["excluded_listeners"] == 1  # the careless one is out
    assert mushra["hidden reference"]["value"] > 95  # ... so their 40s do not pull the reference down
    for label, row in mushra.items():
        true = TRUE_SCORE.get(label) or {"hidden reference": 98.0, "anchor 7 kHz": 45.0, "anchor 3.5 kHz": 20.0}[label]
        assert row["value"] == pytest.approx(true, abs=4)
        assert row["ci_low"] < row["value"] < row["ci_high"] and row["n"] == 5 * len(ITEMS)
    objective = {(r["codec_label"], r["metric"]): r for r in rows
                 if r["stage"] == "listening" and r["metric"] != "mushra"}
    assert objective[("clean", "si_sdr")]["value"] > objective[("noisy", "si_sdr")]["value"] + 20
    correlation = {r["task"]: r for r in rows if r["stage"] == "listening_correlation"}
    assert set(correlation) == {"si_sdr", "mel_distance"}
    assert correlation["si_sdr"]["value"] > 0.8  # SI-SDR orders the decodes as the listeners do
    assert correlation["mel_distance"]["settings"]["negated"] is True
    assert correlation["mel_distance"]["value"] < correlation["si_sdr"]["value"]  # it prefers `dull` on tone-b
    assert correlation["si_sdr"]["n"] == 3 * len(ITEMS)
    ratings = pd.read_csv(run_dir / "listening" / "ratings.csv")
    assert set(ratings[ratings["excluded"]]["listener"]) == {"uuid-5"}

    files = {p.name for p in build_report([run_dir], run_dir / "report")}
    assert {"listening.md", "listening.tex", "listening_correlation.md"} <= files
    table = (run_dir / "report" / "listening.md").read_text()
    assert "MUSHRA (0-100) ↑" in table and "si_sdr (dB) ↑" in table and "hidden reference" in table
    assert "| si_sdr |" in (run_dir / "report" / "listening_correlation.md").read_text()
    parsed = parse_page(run_dir / "report" / "index.html")
    assert {"table-listening", "table-listening_correlation", "table-reconstruction"} <= set(parsed.tables)


def test_listeners_without_uuid_are_told_apart_by_their_answers(run_dir, tmp_path):
    listening = json.loads(export_webmushra(run_dir).read_text())
    path = tmp_path / "old.csv"
    fake_ratings(path, listening, listeners=3, bad=0, uuid=False)  # webMUSHRA < 1.4.3
    ratings = read_ratings(path, listening)
    assert ratings["listener"].nunique() == 3
    pd.DataFrame({"trial_id": ["trial9"], "rating_stimulus": ["C1"], "rating_score": [50]}).assign(
        session_uuid="u").to_csv(path, index=False)
    with pytest.raises(ListeningError, match="trial9"):
        read_ratings(path, listening)
    pd.DataFrame({"trial_id": ["trial1"], "score": [50]}).to_csv(path, index=False)
    with pytest.raises(ListeningError, match="rating_stimulus"):
        read_ratings(path, listening)


def test_post_screening_excludes_above_fifteen_percent():
    rows = []
    for listener, low in (("ok", 1), ("out", 2)):  # 1 of 10 trials (10 %) vs 2 of 10 (20 %) below 90
        for trial in range(10):
            rows.append({"listener": listener, "trial_id": f"t{trial}", "stimulus": "reference",
                         "score": 70.0 if trial < low else 100.0})
    assert post_screen(pd.DataFrame(rows)) == {"out": pytest.approx(0.2)}


def test_crossed_bootstrap_interval():
    assert crossed_bootstrap_ci(np.full((4, 3), 70.0)) == (70.0, 70.0)
    low, high = crossed_bootstrap_ci(np.array([[60.0, 80.0], [70.0, 90.0], [65.0, np.nan]]))
    assert low < 73.0 < high
    assert all(np.isnan(crossed_bootstrap_ci(np.array([[50.0]]))))


def test_listening_command_line_round_trip(run_dir, tmp_path, capsys):
    assert main(["listening", "export", str(run_dir), "--out", str(tmp_path / "test")]) == 0
    listening = json.loads((tmp_path / "test" / "listening.json").read_text())
    assert "index.html?config=" in capsys.readouterr().out
    fake_ratings(tmp_path / "mushra.csv", listening)
    assert main(["listening", "import", str(run_dir), str(tmp_path / "mushra.csv"), "--export",
                 str(tmp_path / "test")]) == 0
    assert "hidden reference" in capsys.readouterr().out
    assert (run_dir / "report" / "listening.md").exists()
