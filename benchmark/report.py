"""Turn one or more runs' ``results.csv`` into Markdown, LaTeX and CSV tables and figures.

Tables (each as ``.md``, ``.tex`` and ``.csv``):
- ``reconstruction``: codec x reconstruction metric (mean with 95 % bootstrap CI), plus
  parameters, compression ratio, decode steps and decode speed (x realtime);
- ``probes``: codec x representation x head rows, task/metric columns (mean over seeds with
  95 % CI over test items);
- ``reconstruction_paired`` / ``probes_paired``: each codec minus the run's reference codec
  (``RunConfig.reference_codec``) on the same items: difference [CI], effect size, Holm-corrected
  p over the table's family, "significant" or "n.s. (MDD x)"; a Power section gives, per metric,
  the smallest difference the run could detect (:mod:`benchmark.engine.compare`);
- ``codecs``: the cost/metadata facts per codec.
- ``listening`` / ``listening_correlation``: imported MUSHRA ratings (:mod:`benchmark.listening`).
``index.html``: all of it as one offline page with audio examples (:mod:`benchmark.html`).
Figures (PNG + PDF): probe scores per task with CI error bars; per-item SI-SDR distribution;
quality vs bitrate when a codec has a real bitstream (:func:`bitrate_figure`).

Values computed under different settings are never silently mixed: for every reconstruction
metric the report asks the metric (:func:`benchmark.metrics.base.comparability_problems`) whether
its rows, across codecs and runs, are comparable, and lists each difference under Warnings; a
value stored with a warning of its own (rank-deficient FAD covariance, clipping, padded samples)
gets a ``†`` in the table and its text under Warnings. Every run's provenance (commit, hardware,
dataset identity) is listed.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmark.errors import BenchmarkError
from benchmark.metrics.base import ItemMetric, comparability_problems, format_warning, metric_class

PRIMARY_METRICS = ("si_sdr", "visqol", "fad")  # the paper's columns first, others after
COST_COLUMNS = ("parameters", "compression_ratio", "kbps", "kbps_nominal", "joint_channels", "latent_rate_hz",
                "latent_floats_per_second",
                "decode_steps", "encode_speed", "decode_speed", "train_seconds")
# cost-stage facts shown in the reconstruction table (those present), with their decimals
RECON_COST_COLUMNS = (("parameters", 0), ("latent_floats_per_second", 0), ("kbps", 2), ("compression_ratio", 1),
                      ("decode_steps", 0), ("decode_speed", 1))
# alignment facts (cost stage), summed per codec: metric -> column
ALIGNMENT_COLUMNS = (("padded_seconds", "padded s"), ("cut_seconds", "cut s"))
WARNING_MARK = "†"


class ReportError(BenchmarkError, ValueError):
    pass


def load_runs(run_dirs: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Concatenate ``results.csv`` and ``items.csv`` of the given run folders."""
    frames, items = [], []
    for run_dir in run_dirs:
        path = Path(run_dir) / "results.csv"
        if not path.exists():
            raise ReportError(f"{path} not found: is {run_dir} a run folder written by `benchmark run`?")
        frames.append(pd.read_csv(path, dtype={"metric_version": str, "seed": "Int64"}))
        ratings = Path(run_dir) / "listening" / "results.csv"  # imported listening test (benchmark.listening)
        if ratings.exists():
            frames.append(pd.read_csv(ratings, dtype={"metric_version": str, "seed": "Int64"}))
        if (Path(run_dir) / "items.csv").exists():
            items.append(pd.read_csv(Path(run_dir) / "items.csv"))
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    per_item = pd.concat(items, ignore_index=True) if items else pd.DataFrame()
    return results, per_item


def _fmt(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if abs(value) >= 1e5:
        return f"{value:.3g}"
    return f"{value:.{digits}f}"


def _with_ci(row: pd.Series, digits: int = 3) -> str:
    text = _fmt(row["value"], digits)
    if pd.notna(row.get("ci_low")) and pd.notna(row.get("ci_high")):
        text += f" [{_fmt(row['ci_low'], digits)}, {_fmt(row['ci_high'], digits)}]"
    return text


def _arrow(higher_is_better) -> str:
    if pd.isna(higher_is_better) or higher_is_better == "":
        return ""
    return " ↑" if str(higher_is_better).lower() in ("true", "1", "1.0") else " ↓"


def _settings(row: pd.Series) -> dict:
    """A row's ``settings`` JSON as a dict (empty when absent or not a JSON object)."""
    text = row.get("settings")
    if not isinstance(text, str) or not text.startswith("{"):
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {}


def _blank_to_none(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) or value == "" else value


def stored_warnings(row: pd.Series) -> list[str]:
    """The warnings a value was stored with: ``settings["warnings"]`` (a list, or one string),
    else the older single ``settings["warning"]``."""
    settings = _settings(row)
    texts = settings.get("warnings") or settings.get("warning") or []
    return [str(t) for t in ([texts] if isinstance(texts, str) else texts) if t]


def _last_run_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Per codec, only the rows of the last run that has it (the run whose values are shown)."""
    if rows.empty or "run" not in rows:
        return rows
    last_run = rows.groupby("codec_label", sort=False)["run"].last()
    return rows[rows["run"].astype(str).values == rows["codec_label"].map(last_run).astype(str).values]


def _counts(recon: pd.DataFrame) -> pd.DataFrame:
    """Per codec ``n`` and ``n_failed`` of its first item metric (0 failures when none recorded)."""
    rows = _last_run_rows(recon)
    if "n_failed" not in rows:
        rows = rows.assign(n_failed=np.nan)
    kinds = {m: metric_class(m) for m in rows["metric"].unique()}
    is_item = rows["metric"].map(lambda m: kinds[m] is not None and issubclass(kinds[m], ItemMetric))
    # metrics the registry does not know count as item metrics when they record failures
    is_item |= rows["metric"].map(lambda m: kinds[m] is None) & rows["n_failed"].notna()
    first = rows[is_item].drop_duplicates("codec_label", keep="first").set_index("codec_label")
    seeds = first.apply(lambda row: len(_settings(row).get("seeds") or [0]), axis=1) if len(first) else []
    return pd.DataFrame({"n": first["n"].map(lambda v: _fmt(v, 0)),
                         "n_failed": first["n_failed"].fillna(0).map(lambda v: _fmt(v, 0)),
                         "runs": pd.Series(seeds, index=first.index, dtype=object).map(lambda v: _fmt(v, 0))})


def _row_label(codec: str, subset: Any) -> str:
    """A table row: the codec, and the item kind when the dataset has several (``codec · clips``)."""
    return f"{codec} · {subset}s" if isinstance(subset, str) and subset else str(codec)


def _with_rows(frame: pd.DataFrame) -> pd.DataFrame:
    subsets = frame["subset"] if "subset" in frame else [None] * len(frame)
    return frame.assign(row=[_row_label(c, s) for c, s in zip(frame["codec_label"], subsets)])


def reconstruction_table(results: pd.DataFrame) -> pd.DataFrame:
    """Codec (x item kind) x reconstruction metric (``WARNING_MARK`` on a value stored with a
    warning), with ``n`` / ``n_failed`` of the first item metric, cost facts and alignment totals."""
    recon = _with_rows(results[results["stage"] == "reconstruction"])
    cost = results[results["stage"] == "cost"]
    if recon.empty and cost.empty:
        return pd.DataFrame()
    # codecs that decode: those with reconstruction rows (feature-only extractors have none)
    rows = list(dict.fromkeys(recon["row"])) or list(dict.fromkeys(cost["codec_label"]))
    codec_of = dict(zip(recon["row"], recon["codec_label"])) or {r: r for r in rows}
    table = pd.DataFrame(index=pd.Index(rows, name="codec"))
    if not recon.empty:
        table = table.join(_counts(recon.assign(codec_label=recon["row"])))
    order = {m: i for i, m in enumerate(PRIMARY_METRICS)}
    groups = sorted(recon.groupby("metric", sort=False), key=lambda g: order.get(g[0], len(order)))
    for metric, group in groups:
        unit = str(group["unit"].iloc[0])
        header = f"{metric}{f' ({unit})' if len(unit) <= 8 else ''}{_arrow(group['higher_is_better'].iloc[0])}"
        table[header] = group.drop_duplicates("row", keep="last").set_index("row").apply(
            lambda row: _with_ci(row) + (f" {WARNING_MARK}" if stored_warnings(row) else ""), axis=1)
    for metric, digits in RECON_COST_COLUMNS:
        group = cost[cost["metric"] == metric].drop_duplicates("codec_label", keep="last").set_index("codec_label")
        if not group.empty:
            unit = _blank_to_none(group["unit"].iloc[0])
            header = metric if unit in (None, metric) else f"{metric} ({unit})"
            values = group["value"].map(lambda v, d=digits: _fmt(v, d))
            table[header] = [values.get(codec_of.get(r, r)) for r in table.index]
    for metric, header in ALIGNMENT_COLUMNS:
        found = _last_run_rows(cost[cost["metric"] == metric])
        if not found.empty:
            totals = found.groupby("codec_label", sort=False)["value"].sum().map(lambda v: _fmt(v, 3))
            table[header] = [totals.get(codec_of.get(r, r)) for r in table.index]
    return table.astype(object).fillna("–")


def probe_table(results: pd.DataFrame) -> pd.DataFrame:
    probes = results[(results["stage"] == "probe") & (results["seed"].isna() | (results["seed"] == ""))]
    if probes.empty:
        probes = results[results["stage"] == "probe"]
    if probes.empty:
        return pd.DataFrame()
    probes = probes.assign(column=probes["task"] + ": " + probes["metric"],
                           row=list(zip(probes["codec_label"], probes["representation"], probes["head"])))
    cells = probes.drop_duplicates(["row", "column"], keep="last").assign(cell=lambda d: d.apply(_with_ci, axis=1))
    table = cells.pivot(index="row", columns="column", values="cell")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["codec", "representation", "head"])
    order = list(dict.fromkeys(cells["row"]))
    return table.loc[order].astype(object).fillna("–")


#: What the intervals of the summary tables cover, in words (the ``runs`` column counts training runs).
CI_COVERS = ("A codec with several training runs (runs > 1) is the mean over its runs, and its interval covers "
             "training seed and test item (crossed bootstrap); a codec run once has an interval over test items "
             "only, which does not cover the seed-to-seed spread of its training.")

PAIRED_STAGES = {"reconstruction_paired": "reconstruction metric", "probe_paired": "task's primary metric"}


def _fmt_p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _compared_metric(row: pd.Series) -> str:
    """The metric a paired row compares (its ``metric`` column is ``<name>_minus_<reference>``)."""
    return str(_settings(row).get("metric") or row["metric"])


def _paired_cell(row: pd.Series) -> str:
    """``delta [CI]; d_z=e [CI]; p_holm=p; significant (better|worse)`` or ``...; n.s. (MDD x)``."""
    settings = _settings(row)
    text = _with_ci(row)
    effect, effect_ci = settings.get("effect_size"), settings.get("effect_ci") or [None, None]
    if effect is not None:
        text += f"; d_z={_fmt(effect, 2)}"
        if all(v is not None and math.isfinite(v) for v in effect_ci):
            text += f" [{_fmt(effect_ci[0], 2)}, {_fmt(effect_ci[1], 2)}]"
    if "p_holm" not in settings:  # a row of an older run: uncorrected, against another comparator
        return f"{text}; p={_fmt_p(settings.get('p_value'))} (uncorrected)"
    text += f"; p_holm={_fmt_p(settings['p_holm'])}; "
    if settings.get("significant"):
        direction = settings.get("direction")
        return text + "significant" + (f" ({direction})" if direction in ("better", "worse") else "")
    mdd = settings.get("mdd")
    if isinstance(mdd, float) and math.isinf(mdd):
        return text + "n.s. (too few items to detect any difference)"
    return text + f"n.s. (MDD {_fmt(mdd)})"


def paired_table(results: pd.DataFrame, stage: str = "probe_paired") -> pd.DataFrame:
    """Each codec vs the reference codec (``stage``: ``probe_paired`` or ``reconstruction_paired``):
    difference [95 % CI] in the metric's unit, effect size d_z [CI], Holm-corrected p and the
    verdict, "significant" only after the correction, else "n.s." with the minimum detectable
    difference. Reconstruction: codec x metric; probes: (codec, representation, head) x task."""
    if stage not in PAIRED_STAGES:
        raise ReportError(f"paired_table: stage {stage!r} is not one of {sorted(PAIRED_STAGES)}")
    paired = results[results["stage"] == stage] if "stage" in results else results.iloc[0:0]
    if paired.empty:
        return pd.DataFrame()
    paired = paired.assign(cell=paired.apply(_paired_cell, axis=1), metric=paired.apply(_compared_metric, axis=1))
    if stage == "reconstruction_paired":
        units = paired["unit"].map(lambda u: _blank_to_none(u))
        column = [f"{m}{f' ({u})' if isinstance(u, str) and len(u) <= 8 else ''}{_arrow(h)}"
                  for m, u, h in zip(paired["metric"], units, paired["higher_is_better"])]
        paired = _with_rows(paired.assign(column=column))
        table = paired.drop_duplicates(["row", "column"], keep="last").pivot(
            index="row", columns="column", values="cell")
        table = table.loc[list(dict.fromkeys(paired["row"])), list(dict.fromkeys(column))]
        table.index.name = "codec"
        return table.astype(object).fillna("–")
    paired = paired.assign(column=paired["task"] + ": " + paired["metric"],
                           row=list(zip(paired["codec_label"], paired["representation"], paired["head"])))
    table = paired.drop_duplicates(["row", "column"], keep="last").pivot(index="row", columns="column", values="cell")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["codec", "representation", "head"])
    table = table.loc[list(dict.fromkeys(paired["row"])), list(dict.fromkeys(paired["column"]))]
    return table.astype(object).fillna("–")


def _families(rows: pd.DataFrame) -> list[dict]:
    """The distinct (reference, family size, alpha, test) of paired rows, in order."""
    seen = {}
    for _, row in rows.iterrows():
        s = _settings(row)
        key = (s.get("reference", s.get("best")), s.get("family_size"), s.get("alpha"), s.get("method"),
               s.get("reference_note"))
        seen.setdefault(key, {"reference": key[0], "family_size": key[1], "alpha": key[2], "method": key[3],
                              "note": key[4], "runs": []})
        run = row.get("run")
        if isinstance(run, str) and run not in seen[key]["runs"]:
            seen[key]["runs"].append(run)
    return list(seen.values())


def paired_caption(results: pd.DataFrame, stage: str = "probe_paired") -> str:
    """Caption of :func:`paired_table`: the reference codec, the family size, alpha, the test and
    the correction (one clause per distinct family when several runs are reported)."""
    rows = results[results["stage"] == stage] if "stage" in results else results.iloc[0:0]
    families = _families(rows)
    several = len(families) > 1
    clauses = []
    for f in families:
        if f["family_size"] is None:
            clauses.append(f"vs {f['reference']} (older run: uncorrected p, not comparable)")
            continue
        clause = (f"reference codec {f['reference']}, family of {f['family_size']} comparisons, "
                  f"alpha = {f['alpha']}, Holm-corrected; test: {f['method']}")
        if f["note"]:
            clause += f" ({f['note']})"
        if several and f["runs"]:
            clause += f" [{', '.join(f['runs'])}]"
        clauses.append(clause)
    what = PAIRED_STAGES.get(stage, "metric")
    return (f"Each codec minus the reference codec on each {what}, on the same test items: mean difference "
            "[95% bootstrap CI] in the metric's unit; d_z = standardised effect size (mean / SD of the paired "
            "differences) [95% CI]; p_holm = p-value after Holm's correction over the family. \"significant\" "
            "means p_holm < alpha; otherwise n.s. with the minimum detectable difference (MDD: 80% power at "
            "alpha / family size): n.s. is not \"equal\". " + "; ".join(clauses) + ".")


def power_notes(results: pd.DataFrame) -> list[str]:
    """Per compared metric: the smallest difference the run could detect (80 % power at the Holm
    level alpha / m, from the bootstrap SE of each comparison), as the range over the codecs."""
    if "stage" not in results:
        return []
    notes = []
    for stage in PAIRED_STAGES:
        rows = results[results["stage"] == stage]
        if rows.empty:
            continue
        metrics = rows.apply(_compared_metric, axis=1)
        if stage == "reconstruction_paired":
            subsets = rows["subset"] if "subset" in rows else pd.Series([None] * len(rows), index=rows.index)
            names = pd.Series([f"{m} ({k}s)" if isinstance(k, str) and k else m for m, k in zip(metrics, subsets)],
                              index=rows.index)
        else:
            names = rows["task"] + ": " + metrics
        for name, group in rows.groupby(names, sort=False):
            settings = [_settings(row) for _, row in group.iterrows()]
            mdds = [s["mdd"] for s in settings if s.get("mdd") is not None]
            if not mdds:
                continue
            unit = _blank_to_none(group["unit"].iloc[0]) if "unit" in group else None
            unit = f" {unit}" if isinstance(unit, str) else ""
            finite = [m for m in mdds if math.isfinite(m)]
            n = sorted({int(v) for v in group["n"] if pd.notna(v)})
            level = settings[0].get("alpha_corrected")
            power = settings[0].get("power", 0.8)
            n_text = "?" if not n else str(n[0]) if len(n) == 1 else f"{n[0]}-{n[-1]}"
            where = f"{len(mdds)} comparison{'s' if len(mdds) > 1 else ''}, n = {n_text} items"
            if not finite:
                notes.append(f"{name}: no difference is detectable ({where}): too few items for a test at the "
                             f"corrected level {_fmt(level, 4)}")
                continue
            lo, hi = min(finite), max(finite)
            span = f"{_fmt(lo)}{unit}" if math.isclose(lo, hi) else f"{_fmt(lo)}-{_fmt(hi)}{unit}"
            notes.append(f"{name}: smallest detectable difference {span} ({power:.0%} power, two-sided, at the "
                         f"Holm level alpha/m = {_fmt(level, 4)}; {where}"
                         + (f"; {len(mdds) - len(finite)} with too few items" if len(finite) < len(mdds) else "")
                         + ")")
    return notes


def _steps_rows(results: pd.DataFrame) -> pd.DataFrame:
    study = results[results["stage"] == "steps_study"]
    if study.empty:
        return study
    steps = study["settings"].map(lambda s: json.loads(s).get("steps") if isinstance(s, str) else None)
    return study.assign(steps=steps)[steps.notna()]


def steps_table(results: pd.DataFrame) -> pd.DataFrame:
    """Quality vs decoding steps: mean over items and seeds (± std across seeds)."""
    study = _steps_rows(results)
    if study.empty:
        return pd.DataFrame()
    study = study.assign(cell=study.apply(lambda r: f"{_fmt(r['value'])} ± {_fmt(r['std'])}", axis=1),
                         column=study["metric"] + " @ " + study["steps"].astype(int).astype(str) + " steps")
    table = study.drop_duplicates(["codec_label", "column"], keep="last").pivot(
        index="codec_label", columns="column", values="cell")
    table.index.name = "codec"
    return table.astype(object).fillna("–")


def steps_figure(results: pd.DataFrame, out: Path) -> Path | None:
    study = _steps_rows(results)
    if study.empty:
        return None
    metrics = list(dict.fromkeys(study["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        sub = study[study["metric"] == metric]
        for label, group in sub.groupby("codec_label", sort=False):
            group = group.sort_values("steps")
            ax.errorbar(group["steps"], group["value"], yerr=group["std"].fillna(0), marker="o", capsize=2, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("decoding steps")
        ax.set_title(f"{metric}{_arrow(sub['higher_is_better'].iloc[0])}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Quality vs decoding steps (mean ± std across seeds)", fontsize=10)
    fig.tight_layout()
    return _save_figure(fig, out, "steps")


def cost_table(results: pd.DataFrame) -> pd.DataFrame:
    cost = results[results["stage"] == "cost"]
    if cost.empty:
        return pd.DataFrame()
    table = cost.drop_duplicates(["codec_label", "metric"], keep="last").pivot(
        index="codec_label", columns="metric", values="value")
    table = table[[c for c in COST_COLUMNS if c in table.columns]]
    licenses = cost.assign(license=cost.apply(lambda row: _settings(row).get("license", ""), axis=1))
    licenses = licenses[licenses["license"] != ""].drop_duplicates("codec_label", keep="last")
    table = table.map(lambda v: _fmt(v, 2))
    table["license"] = licenses.set_index("codec_label")["license"].reindex(table.index).fillna("")
    table.index.name = "codec"
    return table


def to_latex(table: pd.DataFrame, caption: str) -> str:
    """A booktabs LaTeX table (no jinja2 needed)."""
    def esc(text) -> str:
        text = str(text)
        for a, b in (("\\", "\\textbackslash{}"), ("&", "\\&"), ("%", "\\%"), ("_", "\\_"), ("#", "\\#"),
                     ("↑", "$\\uparrow$"), ("↓", "$\\downarrow$"), ("–", "--"), (WARNING_MARK, "$^\\dagger$")):
            text = text.replace(a, b)
        return text

    index_names = [n or "" for n in (table.index.names if table.index.nlevels > 1 else [table.index.name])]
    header = [esc(n) for n in index_names] + [esc(c) for c in table.columns]
    lines = ["\\begin{table}[t]", "\\centering", "\\small",
             "\\begin{tabular}{" + "l" * len(index_names) + "r" * len(table.columns) + "}", "\\toprule",
             " & ".join(header) + " \\\\", "\\midrule"]
    for idx, row in table.iterrows():
        idx = idx if isinstance(idx, tuple) else (idx,)
        lines.append(" & ".join([esc(i) for i in idx] + [esc(v) for v in row.values]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{esc(caption)}}}", "\\end{table}", ""]
    return "\n".join(lines)


def to_markdown(table: pd.DataFrame) -> str:
    flat = table.reset_index()
    header = "| " + " | ".join(str(c) for c in flat.columns) + " |"
    rule = "|" + "|".join("---" for _ in flat.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in flat.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _where(row: pd.Series, several_runs: bool) -> str:
    return f"{row['run']}/{row['codec_label']}" if several_runs else str(row["codec_label"])


def setting_warnings(results: pd.DataFrame) -> list[str]:
    """One warning per group of reconstruction values that cannot be compared with the first
    value of their metric (across codecs and runs), naming the metric, where the values come
    from and the differing settings; the metric decides what must match
    (:func:`benchmark.metrics.base.comparability_problems`)."""
    recon = results[results["stage"] == "reconstruction"]
    several_runs = recon["run"].nunique() > 1 if "run" in recon else False
    warnings = []
    for metric, group in recon.groupby("metric", sort=False):
        rows = [row for _, row in group.iterrows()]
        compared = [{**_settings(row), "implementation": _blank_to_none(row.get("implementation")),
                     "version": _blank_to_none(row.get("metric_version"))} for row in rows]
        differing: dict[str, list[str]] = {}
        for row, settings in zip(rows[1:], compared[1:]):
            problems = comparability_problems(metric, compared[0], settings)
            if problems:
                differing.setdefault("; ".join(problems), []).append(_where(row, several_runs))
        for problems, where in differing.items():
            warnings.append(f"{metric}: {', '.join(where)} computed under different settings from "
                            f"{_where(rows[0], several_runs)} ({problems}); do not compare them directly")
    return warnings


def value_warnings(results: pd.DataFrame) -> list[str]:
    """The warnings stored with values (:func:`stored_warnings`), one line each
    (:func:`benchmark.metrics.base.format_warning`) naming where the value comes from."""
    several_runs = results["run"].nunique() > 1 if "run" in results else False
    lines = []
    for _, row in results.iterrows():
        for text in stored_warnings(row):
            lines.append(f"{format_warning(str(row['metric']), text)} ({_where(row, several_runs)})")
    return list(dict.fromkeys(lines))


def probe_figure(results: pd.DataFrame, out: Path) -> Path | None:
    probes = results[(results["stage"] == "probe") & (results["seed"].isna() | (results["seed"] == ""))]
    if probes.empty:
        return None
    # one primary metric per task: the first metric listed for that task
    primary = probes.groupby("task")["metric"].first()
    probes = probes[probes.apply(lambda r: primary[r["task"]] == r["metric"], axis=1)]
    head = probes["head"].iloc[0]
    probes = probes[probes["head"] == head]
    suffix = np.where(probes["representation"] == "features", " (feat.)", "")
    probes = probes.assign(label=probes["codec_label"] + suffix)
    tasks = list(dict.fromkeys(probes["task"]))
    labels = list(dict.fromkeys(probes["label"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.4), squeeze=False)
    colors = plt.cm.tab20(np.linspace(0, 1, max(len(labels), 2)))
    for ax, task in zip(axes[0], tasks):
        sub = probes[probes["task"] == task].drop_duplicates("label", keep="last").set_index("label")
        vals = [sub["value"].get(l, np.nan) for l in labels]
        low = [v - sub["ci_low"].get(l, v) if pd.notna(sub["ci_low"].get(l, np.nan)) else 0
               for l, v in zip(labels, vals)]
        high = [sub["ci_high"].get(l, v) - v if pd.notna(sub["ci_high"].get(l, np.nan)) else 0
                for l, v in zip(labels, vals)]
        ax.bar(range(len(labels)), vals, color=colors[: len(labels)], yerr=[low, high], capsize=2)
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{task}: {primary[task]}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Probe scores ({head} head, 95% CI)", fontsize=10)
    fig.tight_layout()
    return _save_figure(fig, out, "probes")


def item_figure(items: pd.DataFrame, out: Path, metric: str = "si_sdr") -> Path | None:
    if items.empty or metric not in set(items["metric"]):
        return None
    sub = items[(items["metric"] == metric) & np.isfinite(items["value"].astype(float))]
    labels = list(dict.fromkeys(sub["codec_label"]))
    if not labels:
        return None
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 3.4))
    ax.boxplot([sub[sub["codec_label"] == l]["value"].astype(float) for l in labels], showfliers=True)
    ax.set_xticks(range(1, len(labels) + 1), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{metric} per item")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save_figure(fig, out, f"{metric}_per_item")


#: metrics shown against bitrate (the first three a run has)
BITRATE_METRICS = ("si_sdr", "visqol", "mel_distance", "mrstft_distance", "fad")
FLOAT_BITS = 32  # a continuous latent placed on the bitrate axis as float32 numbers (an upper bound)


def bitrate_figure(results: pd.DataFrame, out: Path) -> Path | None:
    """Quality vs bitrate, drawn when some codec has a real bitstream (a ``kbps`` cost row: the
    bitrate obtained, files' bytes). Every decoding codec is placed: at its obtained kbps
    (filled circles; the rungs of one codec joined by a line), else at its nominal bitrate
    (``kbps_nominal``, quantised codes: filled squares), else, for continuous latents, at
    latent floats/s x 32 bit (hollow circles: an upper bound, float32 storage, no entropy
    coding). One panel per metric (the first three of :data:`BITRATE_METRICS`) and item kind."""
    cost = _last_run_rows(results[results["stage"] == "cost"])
    recon = _last_run_rows(results[results["stage"] == "reconstruction"])
    if recon.empty or not (cost["metric"] == "kbps").any():
        return None

    def per_codec(metric: str, scale: float = 1.0) -> dict[str, float]:
        rows = cost[cost["metric"] == metric].drop_duplicates("codec_label", keep="last")
        return {label: float(v) * scale for label, v in zip(rows["codec_label"], rows["value"]) if pd.notna(v)}

    place: dict[str, tuple[float, str]] = {}  # label -> (kbit/s, marker style)
    for style, values in (("o", per_codec("latent_floats_per_second", FLOAT_BITS / 1000)),
                          ("s", per_codec("kbps_nominal")), ("o-filled", per_codec("kbps"))):
        place.update({label: (v, style) for label, v in values.items() if v > 0})
    metrics = [m for m in BITRATE_METRICS if m in set(recon["metric"])][:3] or list(dict.fromkeys(recon["metric"]))[:3]
    subsets = (list(dict.fromkeys(recon["subset"].dropna())) if "subset" in recon else []) or [None]
    fig, axes = plt.subplots(len(subsets), len(metrics), figsize=(4.2 * len(metrics), 3.4 * len(subsets)),
                             squeeze=False)
    family_of = recon["codec"].fillna(recon["codec_label"]) if "codec" in recon else recon["codec_label"]
    families = list(dict.fromkeys(family_of))
    colors = {f: plt.cm.tab10(i % 10) for i, f in enumerate(families)}
    for row, subset in enumerate(subsets):
        for ax, metric in zip(axes[row], metrics):
            chosen = (recon["metric"] == metric) & (recon["subset"] == subset if subset else True)
            rows = recon[chosen & recon["codec_label"].isin(place)].drop_duplicates("codec_label", keep="last")
            for family, group in rows.groupby(family_of.loc[rows.index], sort=False):
                points = sorted((place[label][0], float(value), place[label][1], label)
                                for label, value in zip(group["codec_label"], group["value"]))
                style, color = points[0][2], colors[family]
                ax.plot([p[0] for p in points], [p[1] for p in points], "-" if len(points) > 1 else "",
                        marker="s" if style == "s" else "o", color=color, markersize=5,
                        markerfacecolor="none" if style == "o" else color,
                        label=family if len(points) > 1 else points[0][3])
            ax.set_xscale("log")
            ax.set_xlabel("kbit/s", fontsize=8)
            ax.set_title(f"{metric}{_arrow(rows['higher_is_better'].iloc[0]) if len(rows) else ''}"
                         + (f" · {subset}s" if subset else ""), fontsize=9)
            ax.grid(alpha=0.3, which="both")
    if axes[0][-1].get_legend_handles_labels()[0]:
        axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle("Quality vs bitrate. Filled circles: bitrate obtained (file bytes); squares: nominal bitrate; "
                 f"hollow: continuous latents at floats/s x {FLOAT_BITS} bit (an upper bound)", fontsize=8)
    fig.tight_layout()
    return _save_figure(fig, out, "bitrate")


def _save_figure(fig, out: Path, stem: str) -> Path:
    """Write ``fig`` as ``stem.png`` (150 dpi, for Markdown) and ``stem.pdf`` (for papers), close
    it and return the PNG path."""
    png = out / f"{stem}.png"
    fig.savefig(png, dpi=150)
    fig.savefig(out / f"{stem}.pdf")
    plt.close(fig)
    return png


def build_report(run_dirs: list[Path], out_dir: Path) -> list[Path]:
    """Write tables and figures for ``run_dirs`` into ``out_dir``; returns the files written."""
    results, items = load_runs([Path(r) for r in run_dirs])
    warnings = (setting_warnings(results) + value_warnings(results)) if not results.empty else []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    sections = ["# Benchmark report", ""]
    from benchmark.listening import listening_tables  # here: it imports this module

    tables = (
        ("reconstruction", reconstruction_table(results),
         "Reconstruction quality (mean [95% bootstrap CI]; n scored, n_failed failed items) and cost. "
         + CI_COVERS + f"{' ' + WARNING_MARK + ' = value with a warning (see Warnings).' if warnings else ''}"),
        ("probes", probe_table(results), "Probe scores on test (mean [95% bootstrap CI]). " + CI_COVERS
         + " A codec run once is probed with every probe seed (their mean); a codec with several training runs "
         "is probed once per run, run k with probe seed k."),
        ("reconstruction_paired", paired_table(results, "reconstruction_paired"),
         paired_caption(results, "reconstruction_paired")),
        ("probes_paired", paired_table(results, "probe_paired"), paired_caption(results, "probe_paired")),
        ("steps", steps_table(results), "Quality vs decoding steps of the stochastic decoders "
         "(mean over items and seeds ± std across seeds)."),
        ("codecs", cost_table(results), "Codec facts: parameters, compression, speed (x realtime), licences."),
        *listening_tables(results),
    )
    for name, table, caption in tables:
        if table.empty:
            continue
        for suffix, text in ((".md", to_markdown(table)), (".tex", to_latex(table, caption))):
            path = out_dir / f"{name}{suffix}"
            path.write_text(text + "\n")
            written.append(path)
        table.to_csv(out_dir / f"{name}.csv")
        written.append(out_dir / f"{name}.csv")
        sections += [f"## {name.replace('_', ' ').capitalize()}", "", caption, "", to_markdown(table), ""]
    power = power_notes(results) if not results.empty else []
    if power:
        sections += ["## Power", "", "What \"n.s.\" can and cannot rule out: per metric, the smallest difference "
                     "to the reference codec this run detects with 80% power after the correction.", ""]
        sections += [f"- {line}" for line in power] + [""]
    if warnings:
        sections += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    for fig in (probe_figure(results, out_dir), item_figure(items, out_dir), steps_figure(results, out_dir),
                bitrate_figure(results, out_dir)):
        if fig is not None:
            written.append(fig)
            sections += [f"![{fig.stem}]({fig.name})", ""]
    if not results.empty:
        prov = results.drop_duplicates("run")[["run", "git_commit", "hardware", "dataset", "dataset_id", "config_hash"]]
        sections += ["## Provenance", "", to_markdown(prov.set_index("run")), ""]
        cards = results[results["stage"] == "reconstruction"].drop_duplicates("metric")
        if not cards.empty:
            sections += ["## Metric cards", ""]
            for _, c in cards.iterrows():
                sections.append(f"- **{c['metric']}** ({c['unit']}{_arrow(c['higher_is_better'])}): "
                                f"{c['convention']}; {c['implementation']} v{c['metric_version']}")
            sections.append("")
    readme = out_dir / "report.md"
    readme.write_text("\n".join(sections))
    written.append(readme)
    try:  # the same as one HTML page with audio examples: an extra, whose failure loses none of the above
        from benchmark.html import build_html

        written += build_html(run_dirs, out_dir, results=results, tables=tables, figures=written, warnings=warnings,
                              power=power)
    except Exception as exc:
        print(f"report: index.html not written ({type(exc).__name__}: {exc})", file=sys.stderr)
    return written
