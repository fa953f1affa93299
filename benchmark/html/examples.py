"""The examples stage: audio people can listen to, written once per item and codec.

Which items: ``disagree`` items where the reconstruction metrics disagree most about the codecs
(per item, every metric ranks the codecs, better first; the item's disagreement is the mean over
metric pairs of ``(1 - Spearman rho) / 2`` between two rankings, 0 when all metrics rank the
codecs alike, 1 when two rank them in opposite orders), taken in turn from each item kind, then
``random`` items drawn with ``seed`` from the rest. With a single metric, the items on which the
codecs differ most (range of the metric across codecs) are taken instead, and the reason says so;
where no item has any disagreement, the random sample takes the free places.

What is written, under ``<run>/report/examples/`` (paths in ``examples.json`` are relative to it):

- ``audio/<item>/reference.flac`` and ``audio/<item>/<codec>.flac``: the first ``seconds`` of the
  item at its native rate (16-bit FLAC) and of its decode, aligned to the reference by the engine's
  one policy (:mod:`benchmark.engine.sources`): the very audio the metrics scored, streamed as the
  reconstruction stage streamed it (from the chunk cache);
- ``audio/<item>/<name>.png``: a linear-frequency magnitude spectrogram (0 Hz to Nyquist, the
  top 80 dB of the item's reference on one colour scale for all of its files);
- ``examples.json``: the items with why they were chosen, each file's integrated loudness (ITU-R
  BS.1770-4, LUFS) and the playback gain that matches every file of an item to its quietest one
  (attenuation only, so the page can apply it as ``HTMLMediaElement.volume``), the per-item metric
  values, and per codec its licences (weights marked non-commercial where they are).

A codec trained with several seeds is represented by its first training run (``name@seed0``):
examples are for listening, not for statistics, and ``examples.json`` says which run it is. The
stage costs a few seconds: the decodes come from the run's cache and nothing is re-scored; an
unchanged run rewrites nothing (``examples.json`` keeps the key of what it was made from).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import traceback
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from benchmark.cache import cache_key
from benchmark.data.audio import resample, write_audio
from benchmark.provenance import atomic_write

EXAMPLES_VERSION = "1"
EXAMPLES_FOLDER = "examples"
#: playback of an item's files is matched to its quietest file; quieter than this is "silent"
SILENT_LUFS = -70.0
SPECTROGRAM_RANGE_DB = 80.0
_NON_COMMERCIAL = re.compile(r"\bNC\b|non[- ]?commercial", re.IGNORECASE)


@dataclasses.dataclass
class ExampleOptions:
    """What the examples stage writes (run config ``examples: {...}``; ``count`` 0 switches it off).

    disagree: items where the metrics disagree most between codecs.
    random: items drawn at random (with ``seed``) from the other reconstruction items.
    seconds: excerpt length, from the start of the item (webMUSHRA accepts at most 12 s).
    metrics: item metrics used to rank the codecs (default: every item metric of the run).
    """

    disagree: int = 3
    random: int = 2
    seed: int = 0
    seconds: float = 10.0
    metrics: tuple[str, ...] | None = None

    @classmethod
    def from_config(cls, value: dict[str, Any] | None) -> "ExampleOptions":
        known = {f.name for f in dataclasses.fields(cls)}
        value = dict(value or {})
        if unknown := set(value) - known:
            raise ValueError(f"examples: unknown options {sorted(unknown)}; known: {sorted(known)}")
        if value.get("metrics") is not None:
            value["metrics"] = tuple(value["metrics"])
        options = cls(**value)
        if options.disagree < 0 or options.random < 0 or not options.seconds > 0:
            raise ValueError(f"examples: counts must be >= 0 and seconds > 0, got {options}")
        return options

    @property
    def count(self) -> int:
        return self.disagree + self.random


def non_commercial(license_text: str | None) -> bool:
    """Whether a licence string restricts use to non-commercial purposes (CC BY-NC, "NC", ...)."""
    return bool(license_text) and bool(_NON_COMMERCIAL.search(str(license_text)))


def safe_name(text: str) -> str:
    """A file-system name for an item id or codec label (letters, digits, ``._-``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or "x"
    return name if name == str(text) else f"{name}-{cache_key(str(text))[:6]}"


# -- which items --------------------------------------------------------------------------------
def _oriented(items: pd.DataFrame, directions: dict[str, bool], metrics: Iterable[str] | None) -> pd.DataFrame:
    """item x (metric, codec) table of finite ``ok`` values, signed so that higher is better."""
    status = items["status"].fillna("ok") if "status" in items else pd.Series("ok", index=items.index)
    ok = items[(status == "ok") & items["metric"].isin(list(directions))]
    if metrics is not None:
        ok = ok[ok["metric"].isin(list(metrics))]
    ok = ok.assign(value=pd.to_numeric(ok["value"], errors="coerce"))
    ok = ok[np.isfinite(ok["value"])]
    sign = ok["metric"].map(lambda m: 1.0 if directions[m] else -1.0)
    ok = ok.assign(value=ok["value"] * sign)
    return ok.pivot_table(index="item", columns=["metric", "codec_label"], values="value", aggfunc="mean")


def disagreement(values: pd.DataFrame) -> pd.Series:
    """Per item (rows of ``values``: item x (metric, codec), higher is better) the mean over
    metric pairs of ``(1 - Spearman rho) / 2`` between their rankings of the codecs that every
    metric scored; NaN where fewer than two metrics or two codecs remain."""
    from scipy.stats import rankdata

    metrics = list(dict.fromkeys(values.columns.get_level_values(0)))
    out = {}
    for item, row in values.iterrows():
        table = row.unstack(0)[metrics].dropna()  # codec x metric
        if table.shape[0] < 2 or table.shape[1] < 2:
            out[item] = float("nan")
            continue
        ranks = np.stack([rankdata(table[m].to_numpy()) for m in metrics])
        pairs = []
        for a in range(len(metrics)):
            for b in range(a + 1, len(metrics)):
                if ranks[a].std() > 0 and ranks[b].std() > 0:
                    pairs.append((1.0 - float(np.corrcoef(ranks[a], ranks[b])[0, 1])) / 2.0)
                else:  # a metric that cannot tell the codecs apart neither agrees nor disagrees
                    pairs.append(0.5)
        out[item] = float(np.mean(pairs))
    return pd.Series(out, dtype=float)


def select_items(items: pd.DataFrame, directions: dict[str, bool], options: ExampleOptions,
                 kinds: dict[str, str] | None = None, candidates: list[str] | None = None) -> list[dict[str, Any]]:
    """The examples: ``[{"id", "why", "score"}]``, the disagreeing items first (taken in turn from
    each item kind of ``kinds``), then the random ones.

    items: per-item rows (``items.csv`` columns ``codec_label, item, metric, value, status``).
    directions: item metric -> higher is better (metrics not listed are ignored).
    candidates: the items that may be chosen, in order (default: every item of ``items``).
    """
    candidates = list(dict.fromkeys(candidates if candidates is not None else items["item"].astype(str)))
    kinds = kinds or {}
    values = _oriented(items.assign(item=items["item"].astype(str)), directions, options.metrics)
    values = values.reindex([c for c in candidates if c in values.index])
    metrics = list(dict.fromkeys(values.columns.get_level_values(0))) if values.shape[1] else []
    if len(metrics) >= 2:
        score, why = disagreement(values), "the metrics disagree most about the codecs here"
    elif len(metrics) == 1:
        score, why = values.max(axis=1) - values.min(axis=1), f"the codecs differ most here ({metrics[0]} range)"
    else:
        score, why = pd.Series(dtype=float), ""
    chosen: list[dict[str, Any]] = []
    by_kind: dict[str, list[str]] = {}
    for item in score[score > 0].sort_values(ascending=False, kind="stable").index:  # NaN and 0: no disagreement
        by_kind.setdefault(kinds.get(item, ""), []).append(item)
    queues = list(by_kind.values())
    while len(chosen) < options.disagree and any(queues):
        for queue in queues:
            if queue and len(chosen) < options.disagree:
                item = queue.pop(0)
                chosen.append({"id": item, "why": why, "score": round(float(score[item]), 4)})
    taken = {c["id"] for c in chosen}
    rest = [c for c in candidates if c not in taken]
    rng = np.random.default_rng(options.seed)
    wanted = options.random + options.disagree - len(chosen)  # slots no disagreement filled go to the sample
    picks = rng.choice(len(rest), size=min(wanted, len(rest)), replace=False) if rest else []
    for index in sorted(int(i) for i in picks):
        chosen.append({"id": rest[index], "why": f"random sample (seed {options.seed})", "score": None})
    return chosen


# -- loudness and spectrograms ------------------------------------------------------------------
# ITU-R BS.1770-4 K-weighting at 48 kHz: high shelf (head), then the RLB high-pass
_K_SHELF = ([1.53512485958697, -2.69169618940638, 1.19839281085285], [1.0, -1.69065929318241, 0.73248077421585])
_K_HIGHPASS = ([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621])


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness (LUFS) of ``audio [channels, samples]`` by ITU-R BS.1770-4: K-weighting
    (at 48 kHz, after resampling), 400 ms blocks with 75 % overlap, absolute gate at -70 LUFS and
    relative gate 10 LU below; channel weights 1 (mono, stereo). A 997 Hz sine at 0 dBFS in one
    channel reads -3.01 LUFS. ``-inf`` for silence or audio with no block above the gates; a signal
    shorter than one block is measured as one block."""
    from scipy.signal import lfilter

    x = resample(np.asarray(audio, dtype=np.float32), int(sample_rate), 48000).astype(np.float64)
    x = lfilter(*_K_HIGHPASS, lfilter(*_K_SHELF, x, axis=1), axis=1)
    block, step = 19200, 4800  # 400 ms, 100 ms at 48 kHz
    n = x.shape[1]
    starts = range(0, max(n - block, 0) + 1, step)
    power = np.array([(x[:, s:s + block] ** 2).mean(axis=1).sum() for s in starts])  # sum over channels
    with np.errstate(divide="ignore"):
        loudness = -0.691 + 10 * np.log10(power)
    gated = power[loudness > -70.0]
    if gated.size == 0:
        return float("-inf")
    relative = -0.691 + 10 * np.log10(gated.mean()) - 10.0
    with np.errstate(divide="ignore"):
        kept = power[(loudness > -70.0) & (loudness > relative)]
    return float(-0.691 + 10 * np.log10(kept.mean()))


def matching_gains(loudness: dict[str, float]) -> dict[str, float]:
    """Playback gain (dB, <= 0) per file that brings every audible file to the loudness of the
    quietest audible one; 0 dB for silent files (below ``SILENT_LUFS``)."""
    audible = [v for v in loudness.values() if math.isfinite(v) and v > SILENT_LUFS]
    if not audible:
        return {k: 0.0 for k in loudness}
    target = min(audible)
    return {k: round(target - v, 2) if math.isfinite(v) and v > SILENT_LUFS else 0.0 for k, v in loudness.items()}


def spectrogram_db(audio: np.ndarray, sample_rate: int, max_frames: int = 480) -> np.ndarray:
    """Magnitude spectrogram ``[bins, frames]`` in dB (channels averaged; Hann window of 23-46 ms,
    hop chosen so that there are at most ``max_frames`` frames), low frequencies first."""
    x = np.asarray(audio, dtype=np.float64).mean(axis=0)
    n_fft = 1024 if sample_rate > 24000 else 512
    hop = max(n_fft // 4, int(math.ceil(max(x.size - n_fft, 1) / max_frames)))
    x = np.pad(x, (n_fft // 2, n_fft // 2 + hop))
    count = 1 + (x.size - n_fft) // hop
    frames = np.lib.stride_tricks.as_strided(x, (count, n_fft), (x.strides[0] * hop, x.strides[0]))
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)).T
    return 20 * np.log10(spectrum + 1e-10)


def write_spectrogram(db: np.ndarray, top_db: float, path: Path) -> None:
    """``db`` as an 8-bit palette PNG (magma), ``top_db - SPECTROGRAM_RANGE_DB``..``top_db`` mapped to
    the colour scale, high frequencies at the top."""
    from matplotlib import colormaps
    from PIL import Image

    scaled = (db - (top_db - SPECTROGRAM_RANGE_DB)) / SPECTROGRAM_RANGE_DB
    index = np.clip(np.round(scaled * 255), 0, 255).astype(np.uint8)[::-1]
    image = Image.fromarray(np.ascontiguousarray(index))  # mode L; a palette makes it P
    image.putpalette((colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8).ravel().tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG", optimize=True)
    tmp.replace(path)


def write_item_files(folder: Path, name: str, reference: np.ndarray, decodes: dict[str, np.ndarray],
                     sample_rate: int, *, base: Path) -> dict[str, Any]:
    """Write one item's reference and decodes (``[channels, samples]`` each) as FLAC + spectrogram
    PNG under ``folder/name/``; returns the ``reference`` and ``decodes`` entries of ``examples.json``
    (paths relative to ``base``), with loudness, matching gain and clipped-sample counts."""
    files = {"reference": reference, **decodes}
    top_db = float(np.max(spectrogram_db(reference, sample_rate)))
    entries: dict[str, dict[str, Any]] = {}
    for key, audio in files.items():
        stem = "reference" if key == "reference" else safe_name(key)
        audio_path, image_path = folder / name / f"{stem}.flac", folder / name / f"{stem}.png"
        clipped = int(np.count_nonzero(np.abs(audio) > 1.0))
        write_audio(audio_path, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16")
        write_spectrogram(spectrogram_db(audio, sample_rate), top_db, image_path)
        entries[key] = {"audio": audio_path.relative_to(base).as_posix(),
                        "spectrogram": image_path.relative_to(base).as_posix(),
                        "loudness_lufs": _finite(integrated_loudness(audio, sample_rate)),
                        "clipped_samples": clipped}
    gains = matching_gains({k: (v["loudness_lufs"] if v["loudness_lufs"] is not None else float("-inf"))
                            for k, v in entries.items()})
    for key, entry in entries.items():
        entry["gain_db"] = gains[key]
    return {"reference": entries.pop("reference"), "decodes": entries}


def _finite(value: float) -> float | None:
    return round(float(value), 2) if math.isfinite(value) else None


# -- the stage ----------------------------------------------------------------------------------
def _directions(rows: list[dict[str, Any]]) -> dict[str, bool]:
    """Item metric -> higher is better, from the run's reconstruction rows."""
    out = {}
    for row in rows:
        if row.get("stage") == "reconstruction" and row.get("higher_is_better") not in (None, ""):
            out.setdefault(str(row["metric"]), str(row["higher_is_better"]).lower() in ("true", "1", "1.0"))
    return out


def codec_entry(run, replicates: int) -> dict[str, Any]:
    """A codec's ``examples.json`` entry: display label, the run it plays, licences."""
    info = run.codec.info
    label = run.group or run.label
    note = (f"first of {replicates} training runs ({run.label}, training seed {run.seed})"
            if run.group is not None else "")
    return {"label": label, "source": run.label, "note": note, "code_license": info.code_license,
            "weights_license": info.weights_license, "non_commercial": non_commercial(info.weights_license)}


def write_examples(pipeline, runs: list, out_dir: Path | None = None,
                   options: ExampleOptions | None = None) -> Path | None:
    """The examples stage of ``pipeline`` (a :class:`benchmark.engine.run.Pipeline` after its
    reconstruction) for the decoding codecs of ``runs``; returns ``examples.json`` or None when
    there is nothing to write. A failure is logged and never stops the run (the numbers do not
    depend on it)."""
    try:
        return _write_examples(pipeline, runs, out_dir, options)
    except Exception as exc:  # examples are an extra; the results are safe on disk
        pipeline.log(f"[examples] not written: {type(exc).__name__}: {exc}")
        traceback.print_exc()
        return None


def _write_examples(pipeline, runs: list, out_dir: Path | None, options: ExampleOptions | None) -> Path | None:
    config = pipeline.config
    options = options or ExampleOptions.from_config(getattr(config, "examples", None))
    decoding = [r for r in runs if r.codec.info.can_decode and r.replicate_index == 0]
    if options.count == 0 or not decoding or not pipeline.store.items:
        return None
    out_dir = Path(out_dir or pipeline.run_dir / "report" / EXAMPLES_FOLDER)
    recon_items = {it.id: it for it in pipeline.reconstruction_items()}
    items = pd.DataFrame(pipeline.store.items)
    items = items[items["codec_label"].isin([r.label for r in decoding])]
    chosen = select_items(items, _directions(pipeline.store.rows), options,
                          kinds={i: it.kind for i, it in recon_items.items()}, candidates=list(recon_items))
    if not chosen:
        return None
    key = cache_key("examples", EXAMPLES_VERSION, dataclasses.asdict(options), chosen,
                    [(r.label, r.codec.identity) for r in decoding],
                    [pipeline.hashes(recon_items[c["id"]]) for c in chosen],
                    config.segment_seconds, config.chunk_seconds, config.overlap_seconds)
    manifest_path = out_dir / "examples.json"
    if _up_to_date(manifest_path, key):
        return manifest_path
    replicates = {r.group: sum(1 for x in runs if x.group == r.group) for r in decoding if r.group is not None}
    codecs = [codec_entry(r, replicates.get(r.group, 1)) for r in decoding]
    values = items.assign(value=pd.to_numeric(items["value"], errors="coerce"))
    shutil.rmtree(out_dir / "audio", ignore_errors=True)  # files of an earlier selection
    entries, errors = [], []
    for choice in chosen:
        item = recon_items[choice["id"]]
        reference, decodes, rate = None, {}, None
        for run, codec in zip(decoding, codecs):
            try:
                ref, estimate, rate = _round_trip(pipeline, run, item, options.seconds)
            except Exception as exc:
                errors.append(f"{codec['label']} on {item.id}: {type(exc).__name__}: {exc}")
                pipeline.log(f"[examples] {errors[-1]}")
                continue
            reference = ref if reference is None else reference
            decodes[codec["label"]] = estimate
        if reference is None:
            continue
        metrics = {}
        for codec in codecs:
            rows = values[(values["item"] == item.id) & (values["codec_label"] == codec["source"])]
            metrics[codec["label"]] = dict(zip(rows["metric"], rows["value"]))
        entries.append(example_entry(out_dir, choice, reference, decodes, rate, metrics=metrics, kind=item.kind,
                                     labels=dict(item.labels)))
    write_manifest(out_dir, run=config.run_name, codecs=codecs, items=entries, options=options,
                   directions=_directions(pipeline.store.rows), key=key, errors=errors)
    pipeline.log(f"[examples] {len(entries)} item(s) x {len(codecs)} codec(s) written to {out_dir}")
    return manifest_path


def example_entry(out_dir: Path, choice: dict[str, Any], reference: np.ndarray, decodes: dict[str, np.ndarray],
                  sample_rate: int, *, metrics: dict[str, dict[str, float]] | None = None, kind: str = "",
                  labels: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write one item's files under ``out_dir/audio/`` and return its ``examples.json`` entry.

    choice: ``{"id", "why", "score"}`` (:func:`select_items`); reference, decodes: ``[channels,
    samples]`` arrays at ``sample_rate`` (decodes by codec label); metrics: codec label -> item
    metric -> value (set-metric contributions are left out)."""
    files = write_item_files(out_dir / "audio", safe_name(choice["id"]), reference, decodes, sample_rate, base=out_dir)
    for label, entry in files["decodes"].items():
        entry["metrics"] = {str(m): (float(v) if v is not None and math.isfinite(float(v)) else None)
                            for m, v in (metrics or {}).get(label, {}).items() if not str(m).endswith("_contribution")}
    labels = {k: (list(v) if isinstance(v, (tuple, list)) else v) for k, v in (labels or {}).items()}
    return {**choice, "kind": kind, "labels": labels, "sample_rate": int(sample_rate),
            "seconds": round(reference.shape[1] / sample_rate, 3), "channels": int(reference.shape[0]), **files}


def write_manifest(out_dir: Path, *, run: str, codecs: list[dict[str, Any]], items: list[dict[str, Any]],
                   options: ExampleOptions, directions: dict[str, bool], key: str = "",
                   errors: list[str] | None = None) -> Path:
    """Write ``out_dir/examples.json`` (module docstring); ``codecs`` as :func:`codec_entry` makes them."""
    manifest = {"version": EXAMPLES_VERSION, "key": key, "run": run, "options": dataclasses.asdict(options),
                "excerpt": f"the first {options.seconds:g} s of each item (the metrics scored whole items)",
                "metrics": {m: {"higher_is_better": h} for m, h in directions.items()},
                "codecs": codecs, "items": items, "errors": list(errors or [])}
    path = Path(out_dir) / "examples.json"
    atomic_write(path, json.dumps(manifest, indent=1, default=str))
    return path


def _round_trip(pipeline, run, item, seconds: float) -> tuple[np.ndarray, np.ndarray, int]:
    """``(reference, decode, rate)``: the first ``seconds`` of ``item`` and of its decode through
    ``run``'s source, streamed as the reconstruction stage streamed it (so the decode comes from the
    chunk cache) and cut; the stream stops at the first segment that reaches ``seconds``."""
    references, estimates, rate, length = [], [], 0, 0
    for piece in pipeline.source(run).stream(item, pipeline.config.segment_seconds):
        rate = int(piece.segment.sample_rate)
        references.append(piece.segment.audio)
        estimates.append(piece.estimate)
        length += piece.segment.samples
        if length >= seconds * rate:
            break
    if not references:
        raise ValueError("the item produced no audio")
    keep = int(round(seconds * rate))
    return (np.concatenate(references, axis=1)[:, :keep], np.concatenate(estimates, axis=1)[:, :keep], rate)


def _up_to_date(manifest_path: Path, key: str) -> bool:
    """Whether ``manifest_path`` was made from ``key`` and every file it names still exists."""
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if manifest.get("key") != key:
        return False
    folder = manifest_path.parent
    for item in manifest.get("items", []):
        for entry in [item["reference"], *item["decodes"].values()]:
            if not (folder / entry["audio"]).exists() or not (folder / entry["spectrogram"]).exists():
                return False
    return True

