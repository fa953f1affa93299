"""Run configuration: typed dataclasses, YAML presets and ``key=value`` CLI overrides.

The resolved configuration is saved with every run (``results/<run>/config.yaml``); its hash
names the run directory (``<preset>-<hash8>``). Presets live in ``benchmark/presets/*.yaml``.

Override syntax (``--set``): dotted paths, values parsed as YAML, e.g.
``--set dataset.options.preset=smoke --set probe.seeds=[0,1,2] --set max_items=20``.

Files the user supplies (released weights, trained checkpoints, backbone checkpoints) are named
in presets through variables, ``${NAME}`` or ``${NAME:-default}`` inside any string value,
expanded when a config is read (:func:`expand_variables`; presets, overrides and saved configs
alike): ``NAME`` is read from the environment, else from :func:`path_variables`
(``BENCHMARK_CACHE`` = :func:`default_cache_dir`, ``BENCHMARK_WEIGHTS`` =
:func:`default_weights_dir`, i.e. ``<cache>/weights``), else the ``default``; a variable with
none of them is a :class:`ConfigError`. The saved config holds the expanded paths (the files
a run used).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from benchmark.errors import BenchmarkError

PRESET_DIR = Path(__file__).parent / "presets"


class ConfigError(BenchmarkError, ValueError):
    """Bad preset name, override or config value."""


@dataclasses.dataclass
class CodecSpec:
    """One codec of a run.

    name: registry name or ``"module:Class"`` import path.
    options: constructor keyword arguments.
    label: display name in tables (default: ``name``).
    train: if set, the codec is trained first with these options (``preset``, ``steps``...)
        and the resulting checkpoint is passed as ``options["checkpoint"]``. ``seeds: [0, 1, 2]``
        trains one model per seed: the codec is then summarised and compared over its training
        runs (:meth:`replicates`).
    """

    name: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    label: str | None = None
    train: dict[str, Any] | None = None

    @property
    def display(self) -> str:
        return self.label or self.name

    @property
    def train_seeds(self) -> list[int] | None:
        """The training seeds of a replicated codec (``train.seeds``), else None."""
        if not self.train or self.train.get("seeds") is None:
            return None
        seeds = self.train["seeds"]
        if (not isinstance(seeds, (list, tuple)) or not seeds or len(set(seeds)) != len(seeds)
                or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
            raise ConfigError(f"codec {self.display!r}: train.seeds must be a list of distinct integers, e.g. "
                              f"[0, 1, 2]; got {seeds!r}")
        if "seed" in self.train:
            raise ConfigError(f"codec {self.display!r}: give train.seed or train.seeds, not both")
        return list(seeds)

    def replicates(self) -> list[tuple["CodecSpec", int | None]]:
        """``(spec, training seed)`` per training run: one per ``train.seeds`` entry, labelled
        ``<label>@seed<s>`` and trained with ``seed: s``; a codec without ``seeds`` is its own
        only replicate (seed None)."""
        seeds = self.train_seeds
        if seeds is None:
            return [(self, None)]
        out = []
        for seed in seeds:
            train = {k: v for k, v in self.train.items() if k != "seeds"}
            out.append((dataclasses.replace(self, label=f"{self.display}@seed{seed}", train=dict(train, seed=seed)),
                        seed))
        return out


@dataclasses.dataclass
class DatasetSpec:
    name: str = "builtin"
    root: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RunConfig:
    """Everything a run depends on.

    reconstruction_split: split whose items are encoded+decoded for the reconstruction metrics.
    max_items: cap on items per split (None = all), for quick looks.
    reconstruction_per_kind: cap on the reconstruction items of each item kind (notes, clips: the
        first N of each in dataset order, a balanced sample for the built-in dataset, whose order
        rotates families, pitches and keys); None = all. The probes still test on the whole split.
    examples: the report's listening examples (:class:`benchmark.html.examples.ExampleOptions`,
        e.g. ``{count: 3, random: 2}``; ``count: 0`` switches them off). Changes no number, so it
        is left out of :meth:`hash`.
    batch_items: items encoded per codec call (same-length items are batched).
    precision: ``fp32`` (default) or ``bf16``: the learned codecs' forward passes under bfloat16
        autocast (:mod:`benchmark.codecs.precision`); part of the codec sources' identity.
    steps_study: quality vs decoding steps of the stochastic codecs, e.g. ``{steps: [1, 2, 4, 8],
        seeds: [0, 1, 2], metrics: [si_sdr, mel_distance], max_items: 16}``; empty = skipped.
    segment_seconds: items are scored in segments of this length, the item's value being the
        length-weighted mean (``benchmark.engine.segments``); None = whole items. Same default
        as ``eval``, so both give the same number for the same file.
    chunk_seconds, overlap_seconds: codec calls of at most ``chunk_seconds`` (at the codec's
        rate), overlapping and cross-faded by ``overlap_seconds`` (``benchmark.engine.sources``).
    failure_policy: ``common`` (codecs are summarised on the items all of them scored) or
        ``worst`` (a failed item counts as the worst value any codec got on it).
    reference_codec: label of the codec every other codec is compared with (paired tests of
        the reconstruction metrics and of the probes' primary metric, ``benchmark.engine.compare``);
        declared here, never chosen on the test set. If no codec of the run has this label, the
        first decoding codec is the reference, and the rows' settings and the log say so.
    alpha: family-wise error rate of those comparisons: a difference is "significant" when its
        Holm-corrected p-value (over all comparisons of its table) is below ``alpha``.
    """

    preset: str = "default"
    dataset: DatasetSpec = dataclasses.field(default_factory=DatasetSpec)
    codecs: list[CodecSpec] = dataclasses.field(default_factory=list)
    metrics: list[str] = dataclasses.field(default_factory=lambda: ["si_sdr"])
    metric_options: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    tasks: list[str] = dataclasses.field(default_factory=lambda: ["tagging", "key", "instrument", "pitch"])
    probe: dict[str, Any] = dataclasses.field(default_factory=dict)
    representations: list[str] = dataclasses.field(default_factory=lambda: ["latents", "features"])
    steps_study: dict[str, Any] = dataclasses.field(default_factory=dict)
    reconstruction_split: str = "test"
    segment_seconds: float | None = 30.0
    chunk_seconds: float = 60.0
    overlap_seconds: float = 1.0
    failure_policy: str = "common"
    reference_codec: str = "music2latent"
    alpha: float = 0.05
    max_items: int | None = None
    reconstruction_per_kind: int | None = None
    examples: dict[str, Any] = dataclasses.field(default_factory=dict)
    batch_items: int = 8
    precision: str = "fp32"
    device: str = "cpu"
    seed: int = 0
    workers: int = 2

    # -- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        data = expand_variables(dict(data))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}; known: {sorted(known)}")
        if "dataset" in data:
            data["dataset"] = DatasetSpec(**data["dataset"])
        if "codecs" in data:
            data["codecs"] = [CodecSpec(**c) if isinstance(c, dict) else CodecSpec(name=str(c))
                              for c in data["codecs"]]
        config = cls(**data)
        labels = []
        for spec in config.codecs:
            labels += [spec.display] + [r.display for r, seed in spec.replicates() if seed is not None]
        if duplicated := sorted({label for label in labels if labels.count(label) > 1}):
            raise ConfigError(f"codec labels {duplicated} occur more than once; give each codec entry its own "
                              "`label:`")
        if config.failure_policy not in ("common", "worst"):
            raise ConfigError(f"failure_policy {config.failure_policy!r}: choose 'common' or 'worst'")
        if not 0.0 < float(config.alpha) < 1.0:
            raise ConfigError(f"alpha {config.alpha!r}: a family-wise error rate in (0, 1), e.g. 0.05")
        from benchmark.codecs.precision import PRECISIONS

        if config.precision not in PRECISIONS:
            raise ConfigError(f"precision {config.precision!r}: choose one of {', '.join(PRECISIONS)}")
        return config

    def hash(self) -> str:
        """16-hex hash of everything that affects results (not of ``workers``/``device``/``examples``)."""
        payload = self.to_dict()
        for key in ("workers", "device", "examples"):
            payload.pop(key, None)
        if payload.get("precision") == "fp32":  # the default: the hashes of earlier runs stay as they were
            payload.pop("precision")
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def run_name(self) -> str:
        return f"{self.preset}-{self.hash()[:8]}"


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> RunConfig:
    """Load ``benchmark/presets/<name>.yaml`` (or a path to a YAML file)."""
    path = Path(name)
    if not path.suffix:
        path = PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(available_presets())} "
                          "(or give a path to a YAML file)")
    data = yaml.safe_load(path.read_text()) or {}
    data.setdefault("preset", path.stem)
    return RunConfig.from_dict(data)


def apply_overrides(config: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``dotted.key=yaml_value`` overrides and return a new config."""
    data = config.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. probe.seeds=[0,1,2])")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else None
        target = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if isinstance(target, list):
                target = target[_list_index(target, part, key)]
            else:
                if part not in target or target[part] is None:
                    target[part] = {}
                target = target[part]
        last = parts[-1]
        if isinstance(target, list):
            target[_list_index(target, last, key)] = value
        else:
            target[last] = value
    return RunConfig.from_dict(data)


def _list_index(seq: list, part: str, key: str) -> int:
    """Index a list by position or, for codec lists, by codec name/label."""
    if part.isdigit():
        return int(part)
    for i, entry in enumerate(seq):
        if isinstance(entry, dict) and part in (entry.get("name"), entry.get("label")):
            return i
    raise ConfigError(f"override {key!r}: no list entry named {part!r}")


def save_config(config: RunConfig, path: Path) -> None:
    from benchmark.provenance import atomic_write

    atomic_write(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def default_cache_dir() -> Path:
    """``$BENCHMARK_CACHE`` or ``~/.cache/m2l-benchmark``."""
    return Path(os.environ.get("BENCHMARK_CACHE", Path.home() / ".cache" / "m2l-benchmark")).expanduser()


def default_weights_dir() -> Path:
    """``$BENCHMARK_WEIGHTS`` or ``<cache>/weights``: where presets look for the files a user
    supplies (released weights, trained checkpoints, FAD backbone checkpoints)."""
    folder = os.environ.get("BENCHMARK_WEIGHTS")
    return Path(folder).expanduser() if folder else default_cache_dir() / "weights"


def path_variables() -> dict[str, str]:
    """The variables every config may use without setting them, with their current values."""
    return {"BENCHMARK_CACHE": str(default_cache_dir()), "BENCHMARK_WEIGHTS": str(default_weights_dir())}


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_variables(value: Any, where: str = "") -> Any:
    """``value`` (a config dict, list or scalar) with every ``${NAME}`` / ``${NAME:-default}``
    in its strings replaced: by ``$NAME`` if set and not empty, else by :func:`path_variables`,
    else by ``default``. Raises :class:`ConfigError` naming the key and the variable otherwise."""
    if isinstance(value, dict):
        return {k: expand_variables(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(expand_variables(v, f"{where}[{i}]") for i, v in enumerate(value))
    if not isinstance(value, str) or "${" not in value:
        return value
    known = path_variables()

    def replace(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name) or known.get(name) or default
        if found is None:
            raise ConfigError(f"config value {where or '(top level)'} = {value!r} uses ${{{name}}}, which is not "
                              f"set: export {name}=..., or write ${{{name}:-DEFAULT}}")
        return found

    return _VARIABLE.sub(replace, value)
