"""Training data: audio sources and a deterministic random-crop sampler.

Sources (:func:`resolve_training_data`)
    - a :class:`~benchmark.data.dataset.Dataset` (its ``train`` split trains, ``valid``
      validates), e.g. the built-in synthetic dataset (spec string ``"builtin"``);
    - a folder of audio files (spec: the folder path), searched recursively, with a
      deterministic hold-out of ``val_fraction`` of the files for validation;
    - MTG-Jamendo in its canonical layout (spec ``"jamendo:ROOT"``): ``ROOT/<NN>/<id>.mp3``
      listed by a TSV (``splits/split-0/autotagging-train.tsv`` and its ``-validation.tsv``,
      or ``autotagging.tsv``; columns TRACK_ID, ARTIST_ID, ALBUM_ID, PATH, DURATION, TAGS...).

Sampler (:class:`CropSampler`)
    Crops of ``crop_samples`` samples at the model's rate, one random channel per example,
    crops with RMS < ``rms_threshold`` redrawn. Files are drawn with probability proportional
    to their duration (uniform over audio time). Every example is a pure function of
    ``(seed, step, index in the global batch)``, so

    - a resumed run sees exactly the crops the uninterrupted run would have seen, and
    - DDP ranks shard a global batch by index (rank r takes its contiguous slice), so N
      processes see the same examples as one process with the N-times larger batch.

    Files whose decoded audio fits the memory budget are decoded (and resampled) once and kept
    in memory; larger ones are read crop by crop with soundfile ``start``/``frames``. Files that
    cannot be read are skipped with a warning naming the file.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import math
import threading
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import soundfile as sf
import torch

from benchmark.data.audio import AUDIO_EXTENSIONS, AudioError, read_audio, resample
from benchmark.data.dataset import Dataset, DatasetError, Item
from benchmark.training.tasks import Batch

log = logging.getLogger(__name__)

__all__ = ["AudioFile", "TrainingData", "CropSampler", "files_from_items", "folder_files",
           "jamendo_files", "resolve_training_data"]

# Domains keep the random streams of training examples and validation crops apart.
_TRAIN_DOMAIN = 0
_VALID_DOMAIN = 1
_RESAMPLE_MARGIN = 64  # native samples read on each side of a crop before resampling it


@dataclasses.dataclass(frozen=True)
class AudioFile:
    """One training file. ``duration`` (seconds) if known without opening it (e.g. a TSV)."""

    path: Path
    id: str
    duration: float | None = None


@dataclasses.dataclass
class TrainingData:
    """Files to train and validate on, and an identity that changes with the file list."""

    train: list[AudioFile]
    valid: list[AudioFile]
    identity: str
    description: str


# -- sources ---------------------------------------------------------------------------------
def files_from_items(items: Iterable[Item | str | Path]) -> list[AudioFile]:
    """Dataset items or plain paths -> :class:`AudioFile` list."""
    out = []
    for it in items:
        if isinstance(it, Item):
            out.append(AudioFile(Path(it.path), it.id))
        else:
            out.append(AudioFile(Path(it), Path(it).stem))
    return out


def folder_files(root: str | Path) -> list[AudioFile]:
    """Every audio file under ``root`` (recursive, sorted), ids relative to ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; give a folder of audio files, 'builtin' or "
                           "'jamendo:ROOT'")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if not paths:
        raise DatasetError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    return [AudioFile(p, p.relative_to(root).as_posix()) for p in paths]


_JAMENDO_TSVS = ("splits/split-0/autotagging-train.tsv", "data/splits/split-0/autotagging-train.tsv",
                 "autotagging-train.tsv", "autotagging.tsv", "data/autotagging.tsv")


def _read_jamendo_tsv(tsv: Path, root: Path) -> tuple[list[AudioFile], list[str]]:
    files, missing = [], []
    with open(tsv, newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader, None)
        if not header or "PATH" not in header:
            raise DatasetError(f"{tsv}: not an MTG-Jamendo TSV (no PATH column in the header "
                               f"{header}); expected TRACK_ID, ARTIST_ID, ALBUM_ID, PATH, DURATION, TAGS")
        col_path, col_id = header.index("PATH"), header.index("TRACK_ID") if "TRACK_ID" in header else None
        col_dur = header.index("DURATION") if "DURATION" in header else None
        for row in reader:
            if len(row) <= col_path:
                continue
            rel = row[col_path]
            path = root / rel
            if not path.exists():  # the "audio-low" release names files <id>.low.mp3
                low = path.with_name(path.name.replace(".mp3", ".low.mp3"))
                path = low if low.exists() else path
            if not path.exists():
                missing.append(rel)
                continue
            duration = float(row[col_dur]) if col_dur is not None and row[col_dur] else None
            track = row[col_id] if col_id is not None else Path(rel).stem
            files.append(AudioFile(path, track, duration))
    return files, missing


def jamendo_files(root: str | Path, tsv: str | Path | None = None) -> tuple[list[AudioFile], list[AudioFile]]:
    """MTG-Jamendo files under ``root`` listed by ``tsv`` (default: the first of the canonical
    split/metadata TSVs found under ``root``). Returns (train, valid); valid comes from the
    matching ``-validation.tsv`` and is empty if there is none."""
    root = Path(root)
    if tsv is None:
        candidates = [root / c for c in _JAMENDO_TSVS]
        found = [c for c in candidates if c.exists()]
        if not found:
            raise DatasetError(f"MTG-Jamendo: no track list under {root}; expected one of "
                               f"{', '.join(_JAMENDO_TSVS)} (from github.com/MTG/mtg-jamendo-dataset) "
                               "next to the audio folders 00/ ... 99/")
        tsv = found[0]
    tsv = Path(tsv)
    train, missing = _read_jamendo_tsv(tsv, root)
    valid: list[AudioFile] = []
    valid_tsv = tsv.with_name(tsv.name.replace("-train.tsv", "-validation.tsv"))
    if valid_tsv != tsv and valid_tsv.exists():
        valid, missing_valid = _read_jamendo_tsv(valid_tsv, root)
        missing += missing_valid
    if missing:
        log.warning("MTG-Jamendo: %d files listed in %s are not under %s and are skipped "
                    "(first: %s)", len(missing), tsv.name, root, ", ".join(missing[:3]))
    if not train:
        raise DatasetError(f"MTG-Jamendo: none of the files listed in {tsv} exist under {root}; "
                           "download the audio (e.g. raw_30s or audio-low) into ROOT/<NN>/")
    return train, valid


def _holdout(files: list[AudioFile], fraction: float, seed: int) -> tuple[list[AudioFile], list[AudioFile]]:
    if len(files) < 2 or fraction <= 0:
        log.warning("training data: %d file(s) and no validation split; validating on training "
                    "files", len(files))
        return files, list(files)
    order = np.random.default_rng([seed, 7]).permutation(len(files))
    n_valid = min(max(1, round(fraction * len(files))), len(files) - 1)
    valid_idx = set(order[:n_valid].tolist())
    return ([f for i, f in enumerate(files) if i not in valid_idx],
            [f for i, f in enumerate(files) if i in valid_idx])


def _files_identity(kind: str, files: Sequence[AudioFile], extra: Any = None) -> str:
    h = hashlib.sha256(kind.encode())
    for f in files:
        try:
            size = f.path.stat().st_size
        except OSError:
            size = -1
        h.update(f"{f.id}\0{size}\0".encode())
    h.update(str(extra).encode())
    return h.hexdigest()[:16]


def resolve_training_data(source: Dataset | str | Path, val_fraction: float = 0.05, seed: int = 0
                          ) -> TrainingData:
    """Turn a data source (Dataset, ``"builtin"``, folder, ``"jamendo:ROOT"``) into files."""
    if isinstance(source, Dataset):
        train, valid = files_from_items(source.split("train")), files_from_items(source.split("valid"))
        if not train:
            raise DatasetError(f"dataset {source.name!r} has no 'train' split items to train on")
        if not valid:
            train, valid = _holdout(train, val_fraction, seed)
        return TrainingData(train, valid, identity=f"{source.name}:{source.identity}",
                            description=f"dataset {source.name} ({len(train)} train / {len(valid)} valid files)")
    spec = str(source)
    if spec == "builtin":
        from benchmark.data.registry import load_dataset
        return resolve_training_data(load_dataset("builtin"), val_fraction, seed)
    if spec.startswith("jamendo:"):
        root = Path(spec[len("jamendo:"):]).expanduser()
        train, valid = jamendo_files(root)
        if not valid:
            train, valid = _holdout(train, val_fraction, seed)
        return TrainingData(train, valid, identity=_files_identity("jamendo", train + valid),
                            description=f"MTG-Jamendo at {root} ({len(train)} train / {len(valid)} valid files)")
    path = Path(spec).expanduser()
    if not path.exists():
        raise DatasetError(f"training data {spec!r}: no such folder; use 'builtin', a folder of "
                           "audio files or 'jamendo:ROOT'")
    files = folder_files(path)
    train, valid = _holdout(files, val_fraction, seed)
    return TrainingData(train, valid, identity=_files_identity("folder", files, val_fraction),
                        description=f"folder {path} ({len(train)} train / {len(valid)} valid files)")


# -- sampler ---------------------------------------------------------------------------------
@dataclasses.dataclass
class _Entry:
    file: AudioFile
    length: int  # samples at the target rate (estimated for files not probed)
    channels: int | None
    native_rate: int | None
    resident: bool


class CropSampler:
    """Deterministic random crops of a list of audio files.

    Parameters
    ----------
    files: :class:`AudioFile` list (or dataset items / paths).
    sample_rate: rate (Hz) of the crops; files at other rates are resampled (soxr).
    crop_samples: samples per crop.
    seed: seeds every draw (with the step and example index).
    rms_threshold: crops whose RMS (full scale = 1) is below this are redrawn.
    memory_budget_mb: decoded audio (float32, at ``sample_rate``) kept in memory; files beyond
        the budget are read crop by crop.
    max_tries: redraws per example before the loudest candidate is used (with a warning).
    name: label used in warnings (e.g. ``"train"``).
    """

    def __init__(self, files: Sequence[AudioFile | Item | str | Path], sample_rate: int,
                 crop_samples: int, seed: int = 0, rms_threshold: float = 1e-3,
                 memory_budget_mb: float = 2048, max_tries: int = 100, name: str = "train") -> None:
        self.sample_rate = int(sample_rate)
        self.crop_samples = int(crop_samples)
        self.seed = int(seed)
        self.rms_threshold = float(rms_threshold)
        self.max_tries = int(max_tries)
        self.name = name
        audio_files = [f if isinstance(f, AudioFile) else files_from_items([f])[0] for f in files]
        self._bad: set[int] = set()
        self._cache: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()
        self._warned_quiet = False
        self.entries = self._probe(audio_files, memory_budget_mb * 2**20)
        if not self.entries:
            raise DatasetError(f"{name} data: none of the {len(audio_files)} files is readable and "
                               f"at least one crop long ({crop_samples} samples at {sample_rate} Hz)")
        lengths = np.array([e.length for e in self.entries], dtype=np.float64)
        self._cdf = np.cumsum(lengths / lengths.sum())
        self._cdf[-1] = 1.0

    # -- probing ---------------------------------------------------------------------------------
    def _probe(self, files: list[AudioFile], budget_bytes: float) -> list[_Entry]:
        entries, used = [], 0.0
        for f in files:
            channels = native = None
            if f.duration is not None:
                length = int(f.duration * self.sample_rate)
            else:
                try:
                    info = sf.info(str(f.path))
                except Exception as exc:  # libsndfile raises several types
                    log.warning("%s data: skipping %s: cannot read it (%s)", self.name, f.path, exc)
                    continue
                channels, native = info.channels, info.samplerate
                length = int(info.frames * self.sample_rate // info.samplerate)
            if length < self.crop_samples:
                log.warning("%s data: skipping %s: %d samples at %d Hz, shorter than one crop "
                            "(%d)", self.name, f.path, length, self.sample_rate, self.crop_samples)
                continue
            size = 4.0 * length * (channels or 2)
            resident = used + size <= budget_bytes
            used += size if resident else 0.0
            entries.append(_Entry(f, length, channels, native, resident))
        return entries

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def total_seconds(self) -> float:
        return sum(e.length for e in self.entries) / self.sample_rate

    def state_dict(self) -> dict[str, Any]:
        """Identity of the sampler (stored in checkpoints; the draws need no other state)."""
        h = hashlib.sha256()
        for e in self.entries:
            h.update(f"{e.file.id}\0{e.length}\0".encode())
        return {"seed": self.seed, "files": len(self.entries), "files_hash": h.hexdigest()[:16],
                "sample_rate": self.sample_rate, "crop_samples": self.crop_samples,
                "rms_threshold": self.rms_threshold}

    # -- reading ---------------------------------------------------------------------------------
    def _mark_bad(self, idx: int, exc: Exception) -> None:
        with self._lock:
            if idx not in self._bad:
                self._bad.add(idx)
                log.warning("%s data: skipping %s from now on: %s", self.name,
                            self.entries[idx].file.path, exc)

    def _resident_audio(self, idx: int) -> np.ndarray:
        audio = self._cache.get(idx)
        if audio is None:
            audio, _ = read_audio(self.entries[idx].file.path, sample_rate=self.sample_rate)
            with self._lock:
                self._cache[idx] = audio
        return audio

    def _disk_crop(self, idx: int, channel_u: float, offset: int) -> np.ndarray:
        entry = self.entries[idx]
        path = str(entry.file.path)
        if entry.native_rate is None or entry.channels is None:
            info = sf.info(path)
            entry.native_rate, entry.channels = info.samplerate, info.channels
        rate = entry.native_rate
        if rate == self.sample_rate:
            data, _ = sf.read(path, start=offset, frames=self.crop_samples, dtype="float32", always_2d=True)
            audio = data.T
        else:
            ratio = rate / self.sample_rate
            start = max(int(math.floor(offset * ratio)) - _RESAMPLE_MARGIN, 0)
            frames = int(math.ceil(self.crop_samples * ratio)) + 2 * _RESAMPLE_MARGIN
            data, _ = sf.read(path, start=start, frames=frames, dtype="float32", always_2d=True)
            audio = resample(np.ascontiguousarray(data.T), rate, self.sample_rate)
            skip = int(round((offset * ratio - start) / ratio))
            audio = audio[:, skip:skip + self.crop_samples]
        channel = min(int(channel_u * audio.shape[0]), audio.shape[0] - 1)
        return audio[channel]

    def _crop(self, idx: int, channel_u: float, offset_u: float) -> np.ndarray | None:
        """Crop of file ``idx`` (None if unreadable), channel and offset from uniforms."""
        if idx in self._bad:
            return None
        entry = self.entries[idx]
        try:
            if entry.resident:
                audio = self._resident_audio(idx)
                length = audio.shape[1]
                if length < self.crop_samples:
                    raise AudioError(f"decoded to {length} samples, shorter than one crop")
                offset = int(offset_u * (length - self.crop_samples + 1))
                channel = min(int(channel_u * audio.shape[0]), audio.shape[0] - 1)
                crop = audio[channel, offset:offset + self.crop_samples]
            else:
                offset = int(offset_u * (entry.length - self.crop_samples + 1))
                crop = self._disk_crop(idx, channel_u, offset)
        except Exception as exc:  # any decoding failure: skip the file, keep training
            self._mark_bad(idx, exc)
            return None
        if crop.shape[0] != self.crop_samples:  # estimated duration longer than the file
            crop = np.pad(crop, (0, self.crop_samples - crop.shape[0]))
        if not np.isfinite(crop).all():
            self._mark_bad(idx, AudioError("contains NaN or inf samples"))
            return None
        return np.ascontiguousarray(crop, dtype=np.float32)

    def _draw(self, rng: np.random.Generator, file_idx: int | None = None) -> np.ndarray:
        """One crop above the RMS threshold (file from the duration-weighted draw unless fixed)."""
        best, best_rms = None, -1.0
        for _ in range(self.max_tries):
            u_file, u_channel, u_offset = rng.random(3)
            idx = file_idx if file_idx is not None else int(np.searchsorted(self._cdf, u_file, side="right"))
            idx = min(idx, len(self.entries) - 1)
            crop = self._crop(idx, u_channel, u_offset)
            if crop is None:
                if file_idx is not None:
                    break
                continue
            rms = float(np.sqrt(np.mean(crop.astype(np.float64) ** 2)))
            if rms >= self.rms_threshold:
                return crop
            if rms > best_rms:
                best, best_rms = crop, rms
        if best is None:
            if len(self._bad) == len(self.entries):
                raise DatasetError(f"{self.name} data: every file failed to decode; see the "
                                   "warnings above for the files and reasons")
            raise DatasetError(f"{self.name} data: no readable crop after {self.max_tries} tries")
        if not self._warned_quiet:
            self._warned_quiet = True
            log.warning("%s data: no crop above RMS %.1e after %d tries (silent files?); using the "
                        "loudest candidate (RMS %.1e)", self.name, self.rms_threshold,
                        self.max_tries, best_rms)
        return best

    # -- public draws ----------------------------------------------------------------------------
    def example(self, step: int, index: int) -> tuple[np.ndarray, int]:
        """Example ``index`` of the global batch of ``step``: (crop ``[samples]``, noise seed)."""
        rng = np.random.default_rng([self.seed, _TRAIN_DOMAIN, int(step), int(index)])
        noise_seed = int(rng.integers(0, 2**63 - 1))
        return self._draw(rng), noise_seed

    def batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> Batch:
        """This rank's slice of the global batch of ``step`` (CPU tensors).

        The global batch holds ``batch_size`` examples; rank ``r`` takes examples
        ``[r * b, (r + 1) * b)`` with ``b = batch_size // world_size``.
        """
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not divisible by {world_size} processes")
        per_rank = batch_size // world_size
        examples = [self.example(step, j) for j in range(rank * per_rank, (rank + 1) * per_rank)]
        audio = torch.from_numpy(np.stack([e[0] for e in examples]))
        seeds = torch.tensor([e[1] for e in examples], dtype=torch.int64)
        return Batch(audio, seeds)

    def fixed_crops(self, count: int, seed: int) -> torch.Tensor:
        """``count`` deterministic validation crops ``[count, samples]``: file ``j % files``
        for crop ``j`` (every file represented), random non-silent position."""
        crops = []
        for j in range(count):
            rng = np.random.default_rng([int(seed), _VALID_DOMAIN, j])
            idx = j % len(self.entries)
            try:
                crops.append(self._draw(rng, file_idx=idx))
            except DatasetError:
                continue
        if not crops:
            raise DatasetError(f"{self.name} data: no validation crop could be read")
        return torch.from_numpy(np.stack(crops))
