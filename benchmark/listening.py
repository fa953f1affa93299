"""Listening tests: the report's examples as a webMUSHRA test, and its ratings back into the results.

Export (:func:`export_webmushra`, ``python -m benchmark listening export RUN``) turns a run's
examples (:mod:`benchmark.html.examples`) into a MUSHRA test (ITU-R BS.1534-3) for webMUSHRA
(https://github.com/audiolabs/webMUSHRA, format of ``configs/*.yaml`` as in its
``doc/experimenter.md``): one ``mushra`` page per item, in random order, with the item's reference,
the hidden reference and the two low-pass anchors that webMUSHRA itself builds from the reference
(``createAnchor35`` / ``createAnchor70``: FIR low-pass at 3.5 and 7 kHz; we rely on them rather
than writing our own), and every decoding codec under an opaque name (``C1``, ``C2``, ... in the
same order on every page, so listeners cannot tell which codec is which; the map stays in
``listening.json``). Audio is written as 16-bit WAV, the format webMUSHRA documents. A codec whose
decodes equal the reference on every item (``identity``) is left out: it would be a second hidden
reference. Written under ``<run>/listening/webmushra/`` (or ``--out``)::

    configs/<test id>.yaml                                  the test
    configs/resources/audio/<test id>/<item>/reference.wav  and C1.wav, C2.wav, ...
    listening.json                                          trial -> item, C<k> -> codec, options

Copy ``configs/`` into a webMUSHRA folder served by PHP and open ``index.html?config=<test id>.yaml``;
its ``service/write.php`` appends every session to ``results/<test id>/mushra.csv``.

Import (:func:`import_ratings`, ``python -m benchmark listening import RUN mushra.csv``) reads that
CSV (columns ``session_test_id``, the questionnaire's columns, ``session_uuid`` (webMUSHRA >= 1.4.3;
older versions identify a listener by the questionnaire's answers), ``trial_id``,
``rating_stimulus`` (``reference``, ``anchor35``, ``anchor70``, ``C1``...), ``rating_score``
(0-100), ``rating_time``, ``rating_comment``), then:

- post-screening (ITU-R BS.1534-3, section 4.1.2): a listener who rates the hidden reference below
  90 on more than 15 % of the trials they rated is excluded from every statistic (kept in
  ``ratings.csv`` with ``excluded = True``);
- per condition (codecs, hidden reference, anchors) the mean rating with a 95 % percentile
  bootstrap interval that resamples listeners and items as crossed random factors (2000 draws);
- per codec the mean of each item metric on the rated items, so the ratings sit beside the
  objective numbers of exactly the same audio;
- per item metric, Spearman's rank correlation between its value and the mean rating over the
  (item, codec) pairs, signed so that a positive value means the metric ranks like the listeners
  (lower-is-better metrics are negated), with a bootstrap interval over items (pairs of one item
  are not independent; the p-value, from ``scipy.stats.spearmanr``, assumes they are).

The rows (stages ``listening`` and ``listening_correlation``, schema of
:data:`benchmark.results.RESULT_COLUMNS`) are written to ``<run>/listening/results.csv`` beside
the run's own ``results.csv`` (a cached re-run rewrites that one, never the ratings), the report
reads both, and :func:`listening_tables` gives the report (Markdown, LaTeX, HTML) its tables.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
import yaml

from benchmark.data.audio import write_audio
from benchmark.errors import BenchmarkError
from benchmark.provenance import atomic_write, git_commit, hardware, now, write_csv
from benchmark.results import RESULT_COLUMNS

LISTENING_FOLDER = "listening"
LISTENING_VERSION = "1"
#: webMUSHRA's names of the conditions it adds itself -> our labels
BUILT_IN = {"reference": "hidden reference", "anchor70": "anchor 7 kHz", "anchor35": "anchor 3.5 kHz"}
MAX_CONDITIONS = 12   # webMUSHRA refuses more stimuli on a page (MushraValidator.checkNumConditions)
MAX_SECONDS = 12.0    # ... and longer stimuli (MushraValidator.checkStimulusDuration)
SCORE_UNIT = "MUSHRA points (0-100)"
INSTRUCTIONS = ("Rate the <b>basic audio quality</b> of each condition against the reference on the 0-100 scale: "
                "any audible difference from the reference is an impairment. One condition is the reference "
                "itself; rate it 100 when you find it. Listen over headphones in a quiet room.")


class ListeningError(BenchmarkError, ValueError):
    """A listening-test export or import that cannot be done; the message says why and the fix."""


# -- export ----------------------------------------------------------------------------------------
def _examples(run_dir: Path) -> tuple[dict[str, Any], Path]:
    folder = Path(run_dir) / "report" / "examples"
    path = folder / "examples.json"
    if not path.exists():
        raise ListeningError(f"{path} not found: the run has no examples. Re-run it (`python -m benchmark run ...`; "
                             "examples are on by default) or rebuild its report.")
    return json.loads(path.read_text()), folder


def _test_id(run_dir: Path) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", f"m2l-{Path(run_dir).name}".lower()).strip("-")


def export_webmushra(run_dir: Path, out_dir: Path | None = None, *, test_id: str | None = None,
                     items: list[str] | None = None, codecs: list[str] | None = None,
                     loudness_match: bool = False) -> Path:
    """Write a webMUSHRA test of ``run_dir``'s examples (module docstring); returns ``listening.json``.

    items, codecs: the example items / codec labels to include (default: all of them).
    loudness_match: apply the examples' matching gains (every file of an item attenuated to the
        loudness of its quietest file, ITU-R BS.1770-4) to the WAV files; off by default, since a
        level change is part of what a codec does to the audio.
    """
    run_dir = Path(run_dir)
    manifest, folder = _examples(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / LISTENING_FOLDER / "webmushra"
    test_id = test_id or _test_id(run_dir)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", test_id):
        raise ListeningError(f"test id {test_id!r}: use letters, digits, '-' and '_' (it names webMUSHRA's "
                             "results folder)")
    chosen = [it for it in manifest["items"] if items is None or it["id"] in items]
    if items is not None and (missing := sorted(set(items) - {it["id"] for it in chosen})):
        raise ListeningError(f"items {missing} are not among the run's examples "
                             f"({', '.join(it['id'] for it in manifest['items'])})")
    if not chosen:
        raise ListeningError(f"{run_dir}: no example items to export")
    labels = [c["label"] for c in manifest["codecs"] if codecs is None or c["label"] in codecs]
    if codecs is not None and (missing := sorted(set(codecs) - set(labels))):
        raise ListeningError(f"codecs {missing} have no examples; known: {[c['label'] for c in manifest['codecs']]}")
    audio = {it["id"]: {key: _read(folder / entry["audio"], entry.get("gain_db", 0.0) if loudness_match else 0.0)
                        for key, entry in [("reference", it["reference"]), *it["decodes"].items()]}
             for it in chosen}
    excluded = [label for label in labels if all(
        label in files and np.array_equal(files[label][0], files["reference"][0]) for files in audio.values())]
    labels = [label for label in labels if label not in excluded]
    if not labels:
        raise ListeningError("no codec to rate: every decode equals the reference")
    if len(labels) > MAX_CONDITIONS:
        raise ListeningError(f"{len(labels)} codecs: webMUSHRA takes at most {MAX_CONDITIONS} conditions per page "
                             "(plus the hidden reference and anchors); choose some with --codecs")
    conditions = {f"C{k + 1}": label for k, label in enumerate(labels)}
    resources = f"configs/resources/audio/{test_id}"
    trials, pages = {}, []
    for index, item in enumerate(chosen):
        files = audio[item["id"]]
        reference, rate = files["reference"]
        if reference.shape[1] / rate > MAX_SECONDS:
            raise ListeningError(f"item {item['id']}: {reference.shape[1] / rate:.1f} s; webMUSHRA plays at most "
                                 f"{MAX_SECONDS:g} s: re-run with `--set examples.seconds=10`")
        trial = f"trial{index + 1}"
        trials[trial] = item["id"]
        folder_name = f"{resources}/{trial}"
        write_audio(out_dir / folder_name / "reference.wav", reference, rate)
        stimuli = {}
        for key, label in conditions.items():
            if label not in files:
                continue  # this codec failed on this item: the page has one condition fewer
            write_audio(out_dir / folder_name / f"{key}.wav", files[label][0], rate)
            stimuli[key] = f"{folder_name}/{key}.wav"
        pages.append({"type": "mushra", "id": trial, "name": "Basic audio quality",  # pages are shuffled
                      "content": INSTRUCTIONS, "showWaveform": True, "enableLooping": True,
                      "reference": f"{folder_name}/reference.wav", "createAnchor35": True, "createAnchor70": True,
                      "randomize": True, "stimuli": stimuli})
    config = {"testname": f"Audio autoencoders ({Path(run_dir).name})", "testId": test_id, "bufferSize": 2048,
              "stopOnErrors": True, "showButtonPreviousPage": True, "remoteService": "service/write.php",
              "pages": [{"type": "generic", "id": "instructions", "name": "Instructions", "content": INSTRUCTIONS},
                        ["random", *pages],
                        {"type": "finish", "name": "Thank you", "content": "Thank you for taking part.",
                         "showResults": False, "writeResults": True}]}
    atomic_write(out_dir / "configs" / f"{test_id}.yaml", webmushra_yaml(config))
    codec_facts = {c["label"]: c for c in manifest["codecs"]}
    listening = {"version": LISTENING_VERSION, "test_id": test_id, "run": manifest.get("run"),
                 "examples_key": manifest.get("key"), "written": now(), "loudness_match": loudness_match,
                 "trials": trials,
                 "conditions": {key: {"codec": label, "source": codec_facts[label].get("source", label)}
                                for key, label in conditions.items()},
                 "excluded_codecs": {label: "decodes equal the reference on every item" for label in excluded},
                 "anchors": "webMUSHRA's own (createAnchor35, createAnchor70)"}
    path = out_dir / "listening.json"
    atomic_write(path, json.dumps(listening, indent=1))
    return path


def webmushra_yaml(config: dict[str, Any]) -> str:
    """``config`` as YAML that webMUSHRA's parser (yaml.js) reads as PyYAML does: no line folding,
    and a nested page list opened on a line of its own (``-`` then its entries, as in webMUSHRA's
    ``configs/default.yaml``): yaml.js reads the compact ``- - random`` as one string."""
    def dump(value: Any) -> list[str]:
        return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, width=1 << 30).rstrip("\n").splitlines()

    def entry(value: Any, indent: int) -> list[str]:
        if not isinstance(value, dict):
            return [" " * indent + "- " + dump(value)[0]]
        lines = dump(value)
        return [" " * indent + "- " + lines[0]] + [" " * (indent + 2) + line for line in lines[1:]]

    lines = dump({k: v for k, v in config.items() if k != "pages"}) + ["", "pages:"]
    for page in config["pages"]:
        if isinstance(page, list):
            lines.append("    -")
            for value in page:
                lines += entry(value, 8)
        else:
            lines += entry(page, 4)
    return "\n".join(lines) + "\n"


def _read(path: Path, gain_db: float) -> tuple[np.ndarray, int]:
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    audio = np.ascontiguousarray(data.T)
    if gain_db:
        audio = audio * np.float32(10 ** (gain_db / 20))
    return audio, int(rate)


# -- import ----------------------------------------------------------------------------------------
def read_ratings(csv_path: Path, listening: dict[str, Any]) -> pd.DataFrame:
    """webMUSHRA's ``mushra.csv`` as ``listener, trial_id, item, stimulus, condition, score`` rows of
    this test (``session_test_id``); the listener is ``session_uuid``, else the questionnaire's
    answers (the columns between ``session_test_id`` and ``trial_id``)."""
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    needed = {"trial_id", "rating_stimulus", "rating_score"}
    if missing := sorted(needed - set(frame.columns)):
        raise ListeningError(f"{csv_path}: columns {missing} missing; expected webMUSHRA's mushra.csv "
                             "(session_test_id, ..., trial_id, rating_stimulus, rating_score, ...)")
    if "session_test_id" in frame and listening.get("test_id"):
        frame = frame[frame["session_test_id"] == listening["test_id"]]
    if "session_uuid" in frame:
        listener = frame["session_uuid"]
    else:
        columns = list(frame.columns)
        start = columns.index("session_test_id") + 1 if "session_test_id" in columns else 0
        answers = columns[start:columns.index("trial_id")]
        if not answers:
            raise ListeningError(f"{csv_path}: no session_uuid column (webMUSHRA < 1.4.3) and no questionnaire "
                                 "columns: the listeners cannot be told apart. Use webMUSHRA >= 1.4.3 or ask for "
                                 "a name/e-mail on the finish page.")
        listener = frame[answers].agg(" | ".join, axis=1)
    trials, conditions = listening["trials"], listening["conditions"]
    out = pd.DataFrame({"listener": listener.values, "trial_id": frame["trial_id"].values,
                        "stimulus": frame["rating_stimulus"].values,
                        "score": pd.to_numeric(frame["rating_score"], errors="coerce").values})
    unknown = sorted(set(out["trial_id"]) - set(trials))
    if unknown:
        raise ListeningError(f"{csv_path}: trials {unknown} are not in this export's listening.json (trials "
                             f"{sorted(trials)}); is it the ratings of another test?")
    out["item"] = out["trial_id"].map(trials)
    out["condition"] = out["stimulus"].map(lambda s: BUILT_IN.get(s) or conditions.get(s, {}).get("codec"))
    if out["condition"].isna().any():
        raise ListeningError(f"{csv_path}: unknown stimuli {sorted(set(out[out['condition'].isna()]['stimulus']))}")
    if out["score"].isna().any() or not out["score"].between(0, 100).all():
        raise ListeningError(f"{csv_path}: rating_score must be numbers from 0 to 100")
    return out


def post_screen(ratings: pd.DataFrame, threshold: float = 90.0, max_fraction: float = 0.15) -> dict[str, float]:
    """Listeners to exclude (ITU-R BS.1534-3, 4.1.2): listener -> the fraction of their trials on which
    they rated the hidden reference below ``threshold``, for those above ``max_fraction``."""
    reference = ratings[ratings["stimulus"] == "reference"]
    low = (reference["score"] < threshold).groupby(reference["listener"]).mean()
    return {str(k): float(v) for k, v in low.items() if v > max_fraction}


def crossed_bootstrap_ci(cells: np.ndarray, seed: int = 0, n_boot: int = 2000,
                         level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of a listener x item table ``cells [L, I]`` (NaN = not rated),
    resampling listeners and items independently (crossed random factors); NaN when both are single."""
    cells = np.asarray(cells, dtype=np.float64)
    n_listeners, n_items = cells.shape
    if n_listeners * n_items < 2 or np.isfinite(cells).sum() < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        drawn = cells[np.ix_(rng.integers(0, n_listeners, n_listeners), rng.integers(0, n_items, n_items))]
        reps[b] = np.nanmean(drawn) if np.isfinite(drawn).any() else np.nan
    reps = reps[np.isfinite(reps)]
    alpha = (1 - level) / 2
    return float(np.quantile(reps, alpha)), float(np.quantile(reps, 1 - alpha))


def rank_correlation(frame: pd.DataFrame, seed: int = 0, n_boot: int = 2000,
                     level: float = 0.95) -> tuple[float, float, float, float]:
    """``(rho, p, ci_low, ci_high)``: Spearman's rho between ``frame["value"]`` and ``frame["rating"]``
    (one row per item x codec), its p-value, and a percentile bootstrap interval over items."""
    from scipy.stats import rankdata, spearmanr

    if len(frame) < 3 or frame["value"].nunique() < 2 or frame["rating"].nunique() < 2:
        return float("nan"), float("nan"), float("nan"), float("nan")
    rho, p = spearmanr(frame["value"], frame["rating"])
    groups = [(g["value"].to_numpy(float), g["rating"].to_numpy(float)) for _, g in frame.groupby("item")]
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        drawn = rng.integers(0, len(groups), len(groups))
        value = np.concatenate([groups[i][0] for i in drawn])
        rating = np.concatenate([groups[i][1] for i in drawn])
        if np.ptp(value) > 0 and np.ptp(rating) > 0:
            reps.append(np.corrcoef(rankdata(value), rankdata(rating))[0, 1])  # Spearman = Pearson of ranks
    alpha = (1 - level) / 2
    low, high = np.quantile(reps, [alpha, 1 - alpha]) if len(reps) > 1 else (np.nan, np.nan)
    return float(rho), float(p), float(low), float(high)


def _run_rows(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    results_path, items_path = Path(run_dir) / "results.csv", Path(run_dir) / "items.csv"
    if not results_path.exists():
        raise ListeningError(f"{results_path} not found: is {run_dir} a run folder?")
    results = pd.read_csv(results_path, dtype={"metric_version": str})
    items = pd.read_csv(items_path) if items_path.exists() else pd.DataFrame(columns=["codec_label", "item", "metric"])
    return results, items


def import_ratings(run_dir: Path, ratings_csv: Path, export_dir: Path | None = None, *, threshold: float = 90.0,
                   max_fraction: float = 0.15, seed: int = 0) -> list[dict[str, Any]]:
    """Import webMUSHRA ratings into ``run_dir`` (module docstring): writes ``listening/results.csv``
    and ``listening/ratings.csv`` and returns the result rows. The report is not rebuilt here
    (``python -m benchmark listening import`` does it)."""
    run_dir = Path(run_dir)
    export_dir = Path(export_dir) if export_dir is not None else run_dir / LISTENING_FOLDER / "webmushra"
    if not (export_dir / "listening.json").exists():
        raise ListeningError(f"{export_dir / 'listening.json'} not found: give the folder the test was exported to "
                             "(--export DIR)")
    listening = json.loads((export_dir / "listening.json").read_text())
    ratings = read_ratings(Path(ratings_csv), listening)
    if ratings.empty:
        raise ListeningError(f"{ratings_csv}: no ratings of test {listening.get('test_id')!r}")
    excluded = post_screen(ratings, threshold, max_fraction)
    ratings["excluded"] = ratings["listener"].isin(list(excluded))
    kept = ratings[~ratings["excluded"]]
    if kept.empty:
        raise ListeningError(f"every listener failed post-screening (hidden reference < {threshold:g} on more than "
                             f"{max_fraction:.0%} of their trials): nothing to report")
    results, item_values = _run_rows(run_dir)
    provenance = {"run": run_dir.name, "config_hash": _first(results, "config_hash"), "git_commit": git_commit(),
                  "hardware": hardware(), "timestamp": now()}
    shared = {"test_id": listening.get("test_id"), "listeners": int(kept["listener"].nunique()),
              "excluded_listeners": len(excluded), "items": sorted(kept["item"].unique()),
              "post_screening": f"ITU-R BS.1534-3 4.1.2: hidden reference < {threshold:g} on > {max_fraction:.0%} "
                                "of a listener's trials excludes the listener",
              "loudness_match": listening.get("loudness_match", False)}
    sources = {v["codec"]: v.get("source", v["codec"]) for v in listening["conditions"].values()}
    rows = []
    order = [*sources, *BUILT_IN.values()]
    for condition in [c for c in order if c in set(kept["condition"])]:
        sub = kept[kept["condition"] == condition]
        cells = sub.pivot_table(index="listener", columns="item", values="score", aggfunc="mean").to_numpy()
        low, high = crossed_bootstrap_ci(cells, seed=seed)
        rows.append(dict(provenance, **_codec_columns(results, sources.get(condition), condition), stage="listening",
                         metric="mushra", value=float(sub["score"].mean()), std=float(sub["score"].std(ddof=1))
                         if len(sub) > 1 else None, ci_low=low, ci_high=high, n=len(sub), n_failed=0,
                         unit=SCORE_UNIT, higher_is_better=True,
                         convention="MUSHRA (ITU-R BS.1534-3) mean over screened listeners x items; 95% bootstrap "
                                    "CI resampling listeners and items (crossed)",
                         implementation="webMUSHRA + benchmark.listening", metric_version=LISTENING_VERSION,
                         settings=dict(shared, condition=condition)))
    directions = _directions(results)
    means = kept.groupby(["item", "condition"])["score"].mean().rename("rating").reset_index()
    rated = sorted(kept["item"].unique())
    from benchmark.engine.summarise import bootstrap_ci

    for codec, source in sources.items():
        values = item_values[(item_values["codec_label"] == source) & item_values["item"].astype(str).isin(rated)]
        for metric, group in values.groupby("metric", sort=False):
            if metric not in directions:
                continue
            v = pd.to_numeric(group["value"], errors="coerce").to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            if not v.size:
                continue
            low, high = bootstrap_ci(v, seed=seed)
            card = results[(results["stage"] == "reconstruction") & (results["metric"] == metric)].iloc[0]
            rows.append(dict(provenance, **_codec_columns(results, source, codec), stage="listening", metric=metric,
                             value=float(v.mean()), ci_low=low, ci_high=high, n=int(v.size), unit=card.get("unit"),
                             higher_is_better=directions[metric],
                             convention=f"mean on the rated items; {card.get('convention')}",
                             implementation=card.get("implementation"), metric_version=card.get("metric_version"),
                             settings={"items": rated, "source": source}))
    for metric, higher in directions.items():
        pairs = []
        for codec, source in sources.items():
            values = item_values[(item_values["codec_label"] == source) & (item_values["metric"] == metric)]
            values = values.assign(item=values["item"].astype(str),
                                   value=pd.to_numeric(values["value"], errors="coerce"))
            joined = values[["item", "value"]].merge(means[means["condition"] == codec], on="item")
            pairs.append(joined)
        frame = pd.concat(pairs, ignore_index=True) if pairs else pd.DataFrame(columns=["item", "value", "rating"])
        frame = frame[np.isfinite(frame["value"].astype(float))]
        rho, p, low, high = rank_correlation(frame, seed=seed)
        sign = 1.0 if higher else -1.0
        lows = sorted([sign * low, sign * high])
        rows.append(dict(provenance, codec="*", codec_label="all rated codecs", stage="listening_correlation",
                         task=metric, metric="spearman_rho", value=sign * rho, ci_low=lows[0], ci_high=lows[1],
                         n=len(frame), unit="rank correlation", higher_is_better=True,
                         convention="Spearman rho between the metric and the mean rating over (item, codec) pairs, "
                                    "negated for lower-is-better metrics (positive = ranks like the listeners); "
                                    "95% bootstrap CI over items",
                         implementation="scipy.stats.spearmanr", metric_version=LISTENING_VERSION,
                         settings=dict(shared, raw_rho=rho, p_value=p, negated=not higher)))
    folder = run_dir / LISTENING_FOLDER
    write_csv(folder / "results.csv", RESULT_COLUMNS, rows)
    write_csv(folder / "ratings.csv", ("listener", "trial_id", "item", "stimulus", "condition", "score", "excluded"),
              ratings.to_dict("records"))
    return rows


def _first(results: pd.DataFrame, column: str) -> Any:
    values = results[column].dropna() if column in results else []
    return values.iloc[0] if len(values) else None


def _codec_columns(results: pd.DataFrame, source: str | None, label: str) -> dict[str, Any]:
    """The run's columns of a codec (its id, weights, dataset), or just the label for built-in conditions."""
    match = results[results["codec_label"] == source] if source else results.iloc[0:0]
    if match.empty:
        return {"codec": label, "codec_label": label, "dataset": _first(results, "dataset"),
                "dataset_id": _first(results, "dataset_id"), "split": _first(results, "split")}
    row = match.iloc[0]
    return {"codec": row.get("codec"), "codec_label": label, "codec_id": row.get("codec_id"),
            "weights_id": row.get("weights_id"), "dataset": row.get("dataset"), "dataset_id": row.get("dataset_id"),
            "split": row.get("split")}


def _directions(results: pd.DataFrame) -> dict[str, bool]:
    """Item metrics of the run (those with per-item values) -> higher is better."""
    from benchmark.metrics.base import ItemMetric, metric_class

    recon = results[results["stage"] == "reconstruction"].drop_duplicates("metric")
    out = {}
    for _, row in recon.iterrows():
        cls = metric_class(str(row["metric"]))
        if cls is not None and not issubclass(cls, ItemMetric):
            continue  # set metrics (FAD, KAD) have no value per item
        out[str(row["metric"])] = str(row["higher_is_better"]).lower() in ("true", "1", "1.0")
    return out


# -- tables ----------------------------------------------------------------------------------------
def listening_tables(results: pd.DataFrame) -> list[tuple[str, pd.DataFrame, str]]:
    """``(name, table, caption)`` of the listening test for the report (none before an import):
    ``listening`` (condition x MUSHRA [CI] and the item metrics on the rated items) and
    ``listening_correlation`` (item metric x rank correlation with the ratings)."""
    from benchmark.report import _arrow, _fmt, _fmt_p, _settings, _with_ci

    if results.empty or "stage" not in results:
        return []
    rows = results[results["stage"] == "listening"]
    if rows.empty:
        return []
    mushra = rows[rows["metric"] == "mushra"]
    settings = _settings(mushra.iloc[0]) if not mushra.empty else {}
    labels = list(dict.fromkeys(mushra["codec_label"])) + [c for c in dict.fromkeys(rows["codec_label"])
                                                           if c not in set(mushra["codec_label"])]
    table = pd.DataFrame(index=pd.Index(labels, name="condition"))
    for metric, group in rows.groupby("metric", sort=False):
        unit = str(group["unit"].iloc[0]) if pd.notna(group["unit"].iloc[0]) else ""
        unit_text = f" ({unit})" if unit and len(unit) <= 8 else ""
        header = ("MUSHRA (0-100) ↑" if metric == "mushra"
                  else f"{metric}{unit_text}{_arrow(group['higher_is_better'].iloc[0])}")
        table[header] = group.drop_duplicates("codec_label", keep="last").set_index("codec_label").apply(
            _with_ci, axis=1)
        if metric == "mushra":
            table["ratings"] = group.drop_duplicates("codec_label", keep="last").set_index("codec_label")["n"].map(
                lambda v: _fmt(v, 0))
    caption = (f"Listening test {settings.get('test_id', '')}: MUSHRA scores (mean [95% CI], bootstrap over "
               f"listeners and items) of {settings.get('listeners', '?')} listener(s) on "
               f"{len(settings.get('items', []))} item(s) ({settings.get('excluded_listeners', 0)} excluded by "
               f"post-screening: {settings.get('post_screening', '')}); beside them, each item metric's mean "
               "[95% CI] on the same rated items.")
    out = [("listening", table.astype(object).fillna("–"), caption)]
    corr = results[results["stage"] == "listening_correlation"]
    if not corr.empty:
        corr = corr.drop_duplicates("task", keep="last").set_index("task")
        table = pd.DataFrame({
            "rank correlation with MUSHRA [95% CI]": corr.apply(_with_ci, axis=1),
            "p": corr.apply(lambda r: _fmt_p(_settings(r).get("p_value")), axis=1),
            "pairs (item x codec)": corr["n"].map(lambda v: _fmt(v, 0))})
        table.index.name = "metric"
        caption = ("Spearman rank correlation between each item metric and the mean MUSHRA rating over (item, codec) "
                   "pairs, negated for lower-is-better metrics so that positive means the metric orders the audio "
                   "as listeners do; 95% bootstrap CI over items; p from scipy.stats.spearmanr (assumes independent "
                   "pairs).")
        out.append(("listening_correlation", table.astype(object).fillna("–"), caption))
    return out


# -- command line ----------------------------------------------------------------------------------
def add_listening_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("export", help="write the run's examples as a webMUSHRA test")
    p.add_argument("run", type=Path, help="run folder (results/<run>)")
    p.add_argument("--out", type=Path, help="output folder (default: <run>/listening/webmushra)")
    p.add_argument("--test-id", help="webMUSHRA testId (default: m2l-<run>)")
    p.add_argument("--items", help="comma-separated example items (default: all)")
    p.add_argument("--codecs", help="comma-separated codec labels (default: every decoding codec)")
    p.add_argument("--loudness-match", action="store_true",
                   help="attenuate every file of an item to its quietest one (ITU-R BS.1770-4)")
    p = sub.add_parser("import", help="add webMUSHRA ratings (mushra.csv) to the run's results and report")
    p.add_argument("run", type=Path, help="run folder (results/<run>)")
    p.add_argument("ratings", type=Path, help="webMUSHRA's results/<test id>/mushra.csv")
    p.add_argument("--export", type=Path, help="folder the test was exported to (default: <run>/listening/webmushra)")
    p.add_argument("--threshold", type=float, default=90.0, help="post-screening: hidden-reference score (90)")
    p.add_argument("--max-fraction", type=float, default=0.15,
                   help="post-screening: largest share of trials below the threshold (0.15)")
    parser.set_defaults(func=listening_command)


def listening_command(args) -> int:
    def names(text):
        return [n for n in text.split(",") if n] if text else None

    if args.action == "export":
        path = export_webmushra(args.run, args.out, test_id=args.test_id, items=names(args.items),
                                codecs=names(args.codecs), loudness_match=args.loudness_match)
        test = json.loads(path.read_text())
        conditions = ", ".join(f"{key}={value['codec']}" for key, value in test["conditions"].items())
        print(f"webMUSHRA test {test['test_id']}: {len(test['trials'])} trial(s), conditions {conditions} "
              "+ hidden reference + anchors")
        print(f"copy {path.parent / 'configs'} into your webMUSHRA folder and open "
              f"index.html?config={test['test_id']}.yaml; then: python -m benchmark listening import {args.run} "
              f"<webMUSHRA>/results/{test['test_id']}/mushra.csv")
        return 0
    rows = import_ratings(args.run, args.ratings, args.export, threshold=args.threshold, max_fraction=args.max_fraction)
    from benchmark.report import build_report

    build_report([args.run], Path(args.run) / "report")
    for row in rows:
        if row["stage"] == "listening" and row["metric"] == "mushra":
            print(f"{row['codec_label']:24s} MUSHRA {row['value']:6.1f} [{row['ci_low']:.1f}, {row['ci_high']:.1f}]")
    print(f"written {Path(args.run) / LISTENING_FOLDER / 'results.csv'}; report rebuilt: "
          f"{Path(args.run) / 'report' / 'index.html'}")
    return 0
