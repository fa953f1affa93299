"""MusicCaps (Agostinelli et al., "MusicLM", 2023): 5,521 ten-second music excerpts, an
evaluation set for reconstruction (codec papers report SI-SDR, ViSQOL and FAD on it).

Official metadata: ``musiccaps-public.csv`` (https://www.kaggle.com/datasets/googleai/musiccaps,
also https://huggingface.co/datasets/google/MusicCaps; CC BY-SA 4.0). Google distributes no
audio: each row names a YouTube video (``ytid``) and a window ``[start_s, end_s]`` of it
(10 s), and fetching the audio is the user's job (``docs/musiccaps.md`` gives the usual
``yt-dlp`` command; some videos are no longer available, so copies differ in size).

Layout under ``root`` (assumptions)
-----------------------------------
- ``musiccaps-public.csv`` (``csv_path=`` for another path; relative paths are taken under
  ``root``): comma-separated with a header holding at least ``ytid``, ``start_s``, ``end_s``,
  ``is_balanced_subset`` and ``is_audioset_eval`` (``True``/``False``); the other columns
  (``audioset_positive_labels``, ``aspect_list``, ``caption``, ``author_id``) are not read.
- the audio in ``root/audio/`` (``audio_dir=``), one file per clip named ``<ytid>.<ext>`` (no
  sub-folders), ``ext`` one that :func:`benchmark.data.audio.read_audio` decodes: ``.wav``,
  ``.flac``, ``.ogg``, ``.mp3``, ``.aiff``/``.aif``, ``.opus`` (``.m4a``/``.webm`` are not:
  convert them). When a clip has several files the first extension in that order is used.
- each file holds **only its excerpt** ``[start_s, end_s]``, the layout the common downloaders
  write (``yt-dlp --download-sections``). Full-length videos cut on the fly are NOT supported:
  an item is a whole file (:class:`benchmark.data.dataset.Item` has no offset or duration), so
  ``excerpts=False`` raises, saying how to cut the files once.

Subsets (``subset=``): ``all`` (default, 5,521 clips), ``balanced`` (``is_balanced_subset``:
1,000 clips, genre-balanced) or ``audioset_eval`` (``is_audioset_eval``: 2,858 clips from the
AudioSet evaluation split).

Splits (``split=``): ``"test"`` (default): MusicCaps is an evaluation set, every clip is in
``test``. ``"audioset"``: clips of the AudioSet evaluation split in ``test``, the others in
``train`` (e.g. to fit something on the train part).

No labels: captions and aspect lists are free text, not the label vocabulary of
:mod:`benchmark.data.dataset`, so the items have none (reconstruction only). Item ids are the
``ytid`` values. The files' sample rate depends on how they were fetched, so
``Dataset.sample_rate`` is None.

Missing audio raises one :class:`DatasetError` with the count, the first ytids, the folder
searched and how to fetch them; ``allow_missing=True`` evaluates the clips that are present and
logs the number skipped (also in the description). Zero-byte files are always dropped and
counted (:func:`benchmark.data.canonical.check_files`).
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Mapping

from benchmark.data.audio import AUDIO_EXTENSIONS
from benchmark.data.canonical import (check_files, describe, layout_identity, limit_per_split, require_paths,
                                      resolve_root)
from benchmark.data.dataset import Dataset, DatasetError, Item

NAME = "musiccaps"
VERSION = "1"
URL = "https://www.kaggle.com/datasets/googleai/musiccaps"
CSV_NAME = "musiccaps-public.csv"
AUDIO_DIR = "audio"
REQUIRED_COLUMNS = ("ytid", "start_s", "end_s", "is_balanced_subset", "is_audioset_eval")
#: subset -> the row flag that selects it (None: every row)
SUBSETS = {"all": None, "balanced": "balanced", "audioset_eval": "audioset_eval"}
SPLITS = ("test", "audioset")
#: how many missing ytids a :class:`DatasetError` names
SHOW_MISSING = 10
#: the command that fetches one excerpt (``docs/musiccaps.md``)
YT_DLP = ('yt-dlp -x --audio-format flac --download-sections "*{start}-{end}" '
          '-o "{audio}/%(id)s.%(ext)s" "https://www.youtube.com/watch?v={ytid}"')

log = logging.getLogger(__name__)
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def read_musiccaps_csv(path: Path) -> list[dict]:
    """Rows ``{"ytid", "start_s", "end_s", "balanced", "audioset_eval", "line"}`` of
    ``musiccaps-public.csv``; a missing column, a bad value or a repeated ``ytid`` raises
    :class:`DatasetError` naming the file, the line and the column."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames
        if not header:
            raise DatasetError(f"{NAME}: {path} is empty; download {CSV_NAME} again from {URL}")
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise DatasetError(f"{NAME}: {path} has no column {', '.join(repr(c) for c in missing)} (header: "
                               f"{','.join(header)}); expected {CSV_NAME} from {URL}, comma-separated, with "
                               f"columns {','.join(REQUIRED_COLUMNS)}, ...")
        rows, seen = [], {}
        for row in reader:
            line = reader.line_num
            values = {}
            for column in REQUIRED_COLUMNS:
                raw = row.get(column)
                if raw is None:
                    raise DatasetError(f"{NAME}: {path} line {line} has fewer fields than the header "
                                       f"(no value for column {column!r})")
                values[column] = raw.strip()
            ytid = values["ytid"]
            if not ytid:
                raise DatasetError(f"{NAME}: {path} line {line}: column 'ytid' is empty")
            if ytid in seen:
                raise DatasetError(f"{NAME}: {path} line {line}: ytid {ytid!r} repeats line {seen[ytid]} "
                                   "(column 'ytid' must be unique)")
            seen[ytid] = line
            start, end = (_number(path, line, c, values[c]) for c in ("start_s", "end_s"))
            if not 0 <= start < end:
                raise DatasetError(f"{NAME}: {path} line {line}: columns 'start_s'..'end_s' = {start:g}..{end:g} "
                                   "is not a window of the video (need 0 <= start_s < end_s)")
            rows.append({"ytid": ytid, "start_s": start, "end_s": end, "line": line,
                         "balanced": _boolean(path, line, "is_balanced_subset", values["is_balanced_subset"]),
                         "audioset_eval": _boolean(path, line, "is_audioset_eval", values["is_audioset_eval"])})
    return rows


def _number(path: Path, line: int, column: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise DatasetError(f"{NAME}: {path} line {line}: column {column!r} must be seconds (a number), "
                           f"got {raw!r}") from None


def _boolean(path: Path, line: int, column: str, raw: str) -> bool:
    try:
        return _BOOLEANS[raw.lower()]
    except KeyError:
        raise DatasetError(f"{NAME}: {path} line {line}: column {column!r} must be True or False, "
                           f"got {raw!r}") from None


def list_audio(folder: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """The audio files of ``folder`` (not recursive, hidden files skipped): ``(ytid -> file``
    of the first readable extension in :data:`AUDIO_EXTENSIONS` order, ``ytid -> extension``
    of the files no readable one exists for, e.g. ``.m4a``)."""
    readable: dict[str, dict[str, Path]] = {}
    other: dict[str, str] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or entry.is_dir():
                continue
            path = Path(entry.path)
            suffix = path.suffix.lower()
            if suffix in AUDIO_EXTENSIONS:
                readable.setdefault(path.stem, {})[suffix] = path
            elif suffix:
                other.setdefault(path.stem, suffix)
    chosen = {ytid: next(by[e] for e in AUDIO_EXTENSIONS if e in by) for ytid, by in readable.items()}
    return chosen, {ytid: suffix for ytid, suffix in other.items() if ytid not in chosen}


def _missing_error(missing: list[dict], total: int, audio: Path, unreadable: dict[str, str]) -> DatasetError:
    shown = ", ".join(r["ytid"] for r in missing[:SHOW_MISSING])
    more = f", ... ({len(missing) - SHOW_MISSING} more)" if len(missing) > SHOW_MISSING else ""
    odd = sorted({unreadable[r["ytid"]] for r in missing if r["ytid"] in unreadable})
    n_odd = sum(r["ytid"] in unreadable for r in missing)
    convert = (f"\n{n_odd} of them are there in a format the audio reader cannot decode ({', '.join(odd)}): "
               "convert them, e.g. `ffmpeg -i YTID.m4a YTID.flac`." if n_odd else "")
    first = missing[0]
    example = YT_DLP.format(start=f"{first['start_s']:g}", end=f"{first['end_s']:g}", audio=audio, ytid=first["ytid"])
    return DatasetError(
        f"{NAME}: {len(missing)} of {total} clips have no audio file in {audio} (expected <ytid>"
        f"{'|'.join(AUDIO_EXTENSIONS)}, each holding just its [start_s, end_s] excerpt): {shown}{more}.{convert}\n"
        "MusicCaps ships no audio: fetch each excerpt from YouTube yourself (some videos are gone), e.g.\n"
        f"  {example}\n"
        "for every row of the CSV (docs/musiccaps.md), or pass allow_missing=True "
        "(--set dataset.options.allow_missing=true) to evaluate the clips that are present.")


def load_musiccaps(root: Path | None, *, csv_path: str | Path | None = None, audio_dir: str | Path | None = None,
                   excerpts: bool = True, subset: str = "all", split: str = "test", allow_missing: bool = False,
                   max_per_split: int | Mapping[str, int] | None = None) -> Dataset:
    """Load MusicCaps from ``root`` (see the module docstring for layout, subsets and splits).

    Parameters
    ----------
    csv_path: the metadata table (default ``root/musiccaps-public.csv``).
    audio_dir: folder of ``<ytid>.<ext>`` files (default ``root/audio``).
    excerpts: the files hold just their 10 s excerpts (True, the only layout supported).
    subset: ``"all"``, ``"balanced"`` or ``"audioset_eval"``.
    split: ``"test"`` (every clip in ``test``) or ``"audioset"`` (AudioSet eval clips in
        ``test``, the others in ``train``).
    allow_missing: skip clips without audio (their number is logged) instead of raising.
    max_per_split: keep at most this many clips per split (stable hash choice).
    """
    if subset not in SUBSETS:
        raise DatasetError(f"{NAME}: unknown subset {subset!r}; use one of {', '.join(SUBSETS)}")
    if split not in SPLITS:
        raise DatasetError(f"{NAME}: unknown split {split!r}; use 'test' (every clip in test) or 'audioset' "
                           "(AudioSet eval clips in test, the others in train)")
    if not excerpts:
        raise DatasetError(
            f"{NAME}: excerpts=False (full-length videos cut at start_s..end_s when read) is not supported: an "
            "item is a whole file (Item has no offset or duration), so each file must hold just its 10 s "
            "excerpt. Cut the files once, e.g. `ffmpeg -ss START_S -to END_S -i full/YTID.wav audio/YTID.flac`, "
            "or fetch only the excerpts (yt-dlp --download-sections, docs/musiccaps.md)")
    root = resolve_root(NAME, root, URL, f"{CSV_NAME} and {AUDIO_DIR}/<ytid>.wav|flac|...")
    table = _under(root, csv_path, CSV_NAME)
    audio = _under(root, audio_dir, AUDIO_DIR).resolve()
    require_paths(NAME, root, [table], URL, f"the metadata table {CSV_NAME}")
    if not audio.is_dir():
        raise DatasetError(f"{NAME}: audio folder {audio} does not exist; put the excerpts there as <ytid>.flac "
                           "(or .wav, .mp3, ...; see docs/musiccaps.md for fetching them), or pass audio_dir=")
    rows = read_musiccaps_csv(table)
    if SUBSETS[subset] is not None:
        rows = [r for r in rows if r[SUBSETS[subset]]]
    files, unreadable = list_audio(audio)

    def split_of(row: dict) -> str:
        return "test" if split == "test" or row["audioset_eval"] else "train"

    planned = limit_per_split([Item(id=r["ytid"], path=files.get(r["ytid"], audio / r["ytid"]), split=split_of(r))
                               for r in rows], max_per_split)
    chosen = {it.id for it in planned}
    rows = [r for r in rows if r["ytid"] in chosen]
    missing = [r for r in rows if r["ytid"] not in files]
    if missing and not allow_missing:
        raise _missing_error(missing, len(rows), audio, unreadable)
    if missing:
        log.warning("%s: %d of %d clips have no audio file in %s; skipped (allow_missing)",
                    NAME, len(missing), len(rows), audio)
    items = [Item(id=it.id, path=it.path.resolve(), split=it.split) for it in planned if it.id in files]
    items, counts = check_files(NAME, root, items, URL, allow_missing=True)
    counts["missing"] += len(missing)
    options = {"subset": subset, "split": split, "excerpts": excerpts, "max_per_split": max_per_split}
    return Dataset(name=NAME, identity=layout_identity(NAME, VERSION, root, items, [table], options, audio),
                   root=root, items=items, sample_rate=None,
                   description=f"MusicCaps {subset} ({len(rows)} clips listed), split {split!r}: "
                               f"{describe(counts, items)}")


def _under(root: Path, path: str | Path | None, default: str) -> Path:
    chosen = Path(path).expanduser() if path is not None else Path(default)
    return chosen if chosen.is_absolute() else root / chosen
