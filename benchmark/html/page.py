"""``index.html``: the report as one static page that works offline from the file system.

The page shows what :func:`benchmark.report.build_report` computed, never anything else: its
tables (each column sortable by a click; a cell's interval is set smaller beside its value, and
failure counts above zero stand out), its figures, warnings and power notes, the provenance of
every run (commit, hardware, dataset, the resolved ``config.yaml``, the metric cards), the
examples written by :mod:`benchmark.html.examples` as ``<audio>`` players with spectrograms and
per-item metric values, and, once ratings are imported (:mod:`benchmark.listening`), the
listening test's tables.

Self-contained: the hand-written script and style sheet of ``assets/`` are inlined, audio and
images are relative links (a run's examples are copied next to the page when the report is
written elsewhere), nothing is fetched from a network and no server is needed. Codecs whose
weights are licensed for non-commercial use only carry an ``NC`` badge wherever they are named.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from benchmark.html.examples import EXAMPLES_FOLDER, non_commercial
from benchmark.provenance import atomic_write, now

ASSETS = Path(__file__).parent / "assets"
TITLES = {"reconstruction": "Reconstruction", "listening": "Listening test (MUSHRA)",
          "listening_correlation": "Objective metrics vs listeners", "probes": "Probes",
          "reconstruction_paired": "Reconstruction: each codec vs the reference codec",
          "probes_paired": "Probes: each codec vs the reference codec", "steps": "Decoding steps", "codecs": "Codecs"}
FIRST_TABLES = ("reconstruction", "listening", "listening_correlation")  # the examples follow them
_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")
_CI = re.compile(r"^(.*?)(\s\[[^\]]*\])(.*)$")
NC_BADGE = '<span class="badge" title="weights licensed for non-commercial use only">NC</span>'


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def sort_key(text: str) -> str:
    """The number a cell sorts by (its leading number, e.g. the mean of ``"1.5 [1.2, 1.8]"``), or ""."""
    match = _NUMBER.match(str(text))
    return match.group(1) if match else ""


def _cell(text: Any, column: str) -> str:
    text = str(text)
    match = _CI.match(text)
    body = (esc(match.group(1)) + f'<span class="ci">{esc(match.group(2))}</span>' + esc(match.group(3))
            if match else esc(text))
    key = sort_key(text)
    attributes = f' data-sort="{esc(key)}"' if key else (' data-missing=""' if text.strip() in ("", "–", "nan") else "")
    if column == "n_failed" and key not in ("", "0"):
        attributes += ' class="failed"'
    return f"<td{attributes}>{body}</td>"


def table_html(table: pd.DataFrame, name: str, nc_codecs: Iterable[str] = ()) -> str:
    """A report table as a sortable HTML table (index levels first, as text columns)."""
    nc_codecs = set(nc_codecs)
    flat = table.reset_index()
    labels = [str(c) for c in flat.columns]
    levels = table.index.nlevels
    label_class = ' class="label"'
    head = "".join(f'<th scope="col"{label_class if i < levels else ""}>{esc(c)}</th>' for i, c in enumerate(labels))
    rows = []
    for values in flat.itertuples(index=False):
        cells = []
        for i, (value, column) in enumerate(zip(values, labels)):
            if i < levels:
                badge = NC_BADGE if _codec_of(str(value)) in nc_codecs else ""
                cells.append(f'<td class="label">{esc(value)}{badge}</td>')
            else:
                cells.append(_cell(value, column))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="table-wrap"><table class="sortable" id="table-{esc(name)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _codec_of(label: str) -> str:
    """``music2latent · notes`` -> ``music2latent``; ``music2latent@seed0`` -> ``music2latent``."""
    return label.split(" · ")[0].split("@")[0]


def nc_codecs(results: pd.DataFrame) -> set[str]:
    """Codec labels whose cost rows record non-commercial weights (``settings.license``)."""
    if results.empty or "stage" not in results:
        return set()
    out = set()
    for _, row in results[results["stage"] == "cost"].drop_duplicates("codec_label").iterrows():
        try:
            license_text = json.loads(row.get("settings") or "{}").get("license", "")
        except (TypeError, json.JSONDecodeError):
            continue
        weights = license_text.split("weights", 1)[-1] if "weights" in license_text else license_text
        if non_commercial(weights):
            out.add(_codec_of(str(row["codec_label"])))
    return out


# -- examples -------------------------------------------------------------------------------------
def collect_examples(run_dirs: list[Path], out_dir: Path) -> list[tuple[dict[str, Any], str]]:
    """``(examples.json, its folder relative to out_dir)`` per run that has examples; a run's
    examples folder outside ``out_dir`` is copied into it (``examples`` or ``examples-<run>``)."""
    found = []
    for run_dir in run_dirs:
        folder = Path(run_dir) / "report" / EXAMPLES_FOLDER
        manifest_path = folder / "examples.json"
        if not manifest_path.exists():
            continue
        manifest = json.loads(manifest_path.read_text())
        if not _inside(folder, out_dir):
            target = out_dir / (EXAMPLES_FOLDER if len(run_dirs) == 1 else f"{EXAMPLES_FOLDER}-{Path(run_dir).name}")
            shutil.copytree(folder, target, dirs_exist_ok=True)
            folder = target
        found.append((manifest, Path(os.path.relpath(folder, out_dir)).as_posix()))
    return found


def _inside(path: Path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def examples_html(examples: list[tuple[dict[str, Any], str]]) -> str:
    parts = ['<p><label><input type="checkbox" id="loudness-match"> Loudness-matched playback</label> '
             '<span class="muted">(each file attenuated to the loudness of its item\'s quietest file, '
             'ITU-R BS.1770-4 integrated loudness; off = the files as decoded)</span></p>']
    for manifest, base in examples:
        codecs = {c["label"]: c for c in manifest.get("codecs", [])}
        directions = {m: v.get("higher_is_better") for m, v in manifest.get("metrics", {}).items()}
        notes = [f"{esc(c['label'])}: {esc(c['note'])}" for c in codecs.values() if c.get("note")]
        parts.append(f'<p class="muted">Run {esc(manifest.get("run", ""))}: {esc(manifest.get("excerpt", ""))}. '
                     f'Spectrograms: linear frequency from 0 Hz to Nyquist, the top 80 dB of the item\'s reference. '
                     + (" ".join(n + "." for n in notes)) + "</p>")
        if any(c.get("non_commercial") for c in codecs.values()):
            parts.append(f'<p class="muted">{NC_BADGE} weights licensed for non-commercial use only.</p>')
        for item in manifest.get("items", []):
            parts.append(_example_html(item, codecs, directions, base))
        for error in manifest.get("errors", []):
            parts.append(f'<p class="muted">Not written: {esc(error)}</p>')
    return "\n".join(parts)


def _example_html(item: dict[str, Any], codecs: dict[str, dict], directions: dict[str, Any], base: str) -> str:
    metrics = list(dict.fromkeys(m for d in item["decodes"].values() for m in d.get("metrics", {})))
    arrows = {m: (" ↑" if directions.get(m) else " ↓") if directions.get(m) is not None else "" for m in metrics}
    head = "".join(f"<th>{esc(m)}{arrows[m]}</th>" for m in metrics)
    rows = [_example_row("reference", item["reference"], base, "", metrics)]
    for label, entry in item["decodes"].items():
        codec = codecs.get(label, {})
        badge = NC_BADGE if codec.get("non_commercial") else ""
        rows.append(_example_row(label, entry, base, badge, metrics))
    labels = ", ".join(f"{k}: {v if not isinstance(v, list) else ' '.join(map(str, v))}"
                       for k, v in item.get("labels", {}).items())
    kind = f' <span class="muted">({esc(item["kind"])})</span>' if item.get("kind") else ""
    return (f'<article class="example" id="example-{esc(item["id"])}"><h3>{esc(item["id"])}{kind}</h3>'
            f'<p class="muted">Chosen because: {esc(item.get("why", ""))}'
            + (f' (disagreement {item["score"]:.2f})' if item.get("score") is not None else "")
            + f'. {item.get("seconds", 0):g} s at {item.get("sample_rate", "?")} Hz. {esc(labels)}</p>'
            f'<div class="table-wrap"><table><thead><tr><th class="label">condition</th><th class="label">audio</th>'
            f'<th class="label">spectrogram</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
            "</article>")


def _example_row(label: str, entry: dict[str, Any], base: str, badge: str, metrics: list[str]) -> str:
    src, image = f"{base}/{entry['audio']}", f"{base}/{entry['spectrogram']}"
    loudness = entry.get("loudness_lufs")
    facts = f"{loudness:.1f} LUFS" if loudness is not None else "silent"
    if entry.get("clipped_samples"):
        facts += f", {entry['clipped_samples']} samples clipped to ±1"
    values = entry.get("metrics", {})
    cells = "".join(f'<td>{esc(_number(values.get(m)))}</td>' for m in metrics)
    return (f'<tr><td class="label">{esc(label)}{badge}<div class="note">{esc(facts)}</div></td>'
            f'<td class="label"><audio controls preload="metadata" src="{esc(src)}" '
            f'data-gain="{entry.get("gain_db", 0.0)}"></audio></td>'
            f'<td class="label"><img class="spec" src="{esc(image)}" alt="spectrogram: {esc(label)}"></td>'
            f"{cells}</tr>")


def _number(value: Any) -> str:
    if value is None:
        return "–"
    value = float(value)
    return f"{value:.3g}" if abs(value) >= 1e5 else f"{value:.3f}"


# -- provenance -----------------------------------------------------------------------------------
def provenance_html(run_dirs: list[Path], results: pd.DataFrame) -> str:
    parts = []
    columns = [c for c in ("run", "git_commit", "hardware", "dataset", "dataset_id", "config_hash") if c in results]
    if not results.empty and columns:
        runs = results.drop_duplicates("run")[columns].set_index(columns[0])
        parts.append(table_html(runs, "provenance"))
    if not results.empty and "stage" in results:
        cards = results[results["stage"] == "reconstruction"].drop_duplicates("metric")
        if not cards.empty:
            parts.append("<h3>Metric cards</h3><ul>")
            for _, c in cards.iterrows():
                arrow = {"true": " ↑", "false": " ↓"}.get(str(c.get("higher_is_better")).lower(), "")
                parts.append(f"<li><b>{esc(c['metric'])}</b> ({esc(c.get('unit', ''))}{arrow}): "
                             f"{esc(c.get('convention', ''))}; {esc(c.get('implementation', ''))} "
                             f"v{esc(c.get('metric_version', ''))}</li>")
            parts.append("</ul>")
    for run_dir in run_dirs:
        config = Path(run_dir) / "config.yaml"
        if config.exists():
            parts.append(f"<details><summary>config.yaml of {esc(Path(run_dir).name)}</summary>"
                         f"<pre>{esc(config.read_text())}</pre></details>")
    return "\n".join(parts)


# -- the page -------------------------------------------------------------------------------------
def build_html(run_dirs: list[Path], out_dir: Path, *, results: pd.DataFrame,
               tables: Iterable[tuple[str, pd.DataFrame, str]], figures: Iterable[Path] = (),
               warnings: Iterable[str] = (), power: Iterable[str] = ()) -> list[Path]:
    """Write ``out_dir/index.html`` (and copy runs' examples next to it); returns the files written.

    tables: ``(name, table, caption)`` as :func:`benchmark.report.build_report` writes them (empty
    tables are skipped); figures: PNG files in ``out_dir``; warnings, power: lines of the report.
    """
    out_dir = Path(out_dir)
    run_dirs = [Path(r) for r in run_dirs]
    nc = nc_codecs(results)
    sections: list[tuple[str, str, str]] = []  # (anchor, title, html)
    for name, table, caption in tables:
        if table is None or table.empty:
            continue
        sections.append((name, TITLES.get(name, name.replace("_", " ").capitalize()),
                         f'<p class="caption">{esc(caption)}</p>{table_html(table, name, nc)}'))
    power, warnings = list(power), list(warnings)
    if power:
        sections.append(("power", "Power", "<ul>" + "".join(f"<li>{esc(p)}</li>" for p in power) + "</ul>"))
    figures = [Path(f) for f in figures if Path(f).suffix == ".png"]
    if figures:
        sections.append(("figures", "Figures", "".join(
            f'<figure><img src="{esc(Path(os.path.relpath(f, out_dir)).as_posix())}" alt="{esc(f.stem)}">'
            f"<figcaption>{esc(f.stem)}</figcaption></figure>" for f in figures)))
    examples = collect_examples(run_dirs, out_dir)
    if examples:  # right after the quality tables: what the numbers sound like
        after = max([i + 1 for i, (a, _, _) in enumerate(sections) if a in FIRST_TABLES], default=0)
        how = ('<p class="muted">Run a listening test on these items: <code>python -m benchmark listening export '
               'RUN</code> writes a webMUSHRA test (hidden reference, 3.5 and 7 kHz anchors, the codecs); '
               '<code>python -m benchmark listening import RUN mushra.csv</code> adds its ratings to this report.</p>')
        sections.insert(after, ("examples", "Examples", how + examples_html(examples)))
    if warnings:
        sections.append(("warnings", "Warnings", '<ul class="warnings">'
                         + "".join(f"<li>{esc(w)}</li>" for w in warnings) + "</ul>"))
    sections.append(("provenance", "Provenance", provenance_html(run_dirs, results)))
    runs = ", ".join(esc(r.name) for r in run_dirs)
    nav = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in sections)
    body = "\n".join(f'<section id="{esc(a)}"><h2>{esc(t)}</h2>\n{h}\n</section>' for a, t, h in sections)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>Benchmark report: {runs}</title>'
            f'<style>{(ASSETS / "report.css").read_text()}</style></head>\n<body>'
            f'<header><h1>Benchmark report</h1><p class="muted">{runs} · written {esc(now())}</p>'
            f'<nav>{nav}</nav></header>\n{body}\n<script>{(ASSETS / "report.js").read_text()}</script>\n'
            "</body></html>\n")
    path = out_dir / "index.html"
    atomic_write(path, page)
    return [path]
