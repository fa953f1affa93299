#!/usr/bin/env python
"""Before/after table: Music2Latent untrained vs trained, on held-out items of a dataset.

Trains (or reuses the cached run of) the training preset that ``python -m benchmark run all``
uses for Music2Latent (default: ``cpu`` cut to 300 steps, on the built-in dataset), then codes
every item of a held-out split (default ``test``) with

- **untrained**: the same model at step 0 (the trainer's seeded initialisation; its output head
  is zero-initialised, so one-step decoding returns ``c_skip(sigma_max) sigma_max z``, a
  near-silent noise), and
- **trained**: the run's EMA weights (``best.pt``, as the benchmark uses; ``--which last``
  for the last step),

both with one consistency step from a fixed decoding seed, scored through the benchmark's own
engine (:func:`benchmark.engine.reconstruct.reconstruct`: the same source, alignment policy,
segments and scorer as ``run`` and ``eval``, so the trained row equals ``run all``'s numbers).
Scores per item, then the mean with a
percentile bootstrap 95 % interval over items, and the paired trained - untrained difference
with its interval and a paired-bootstrap p-value:

- ``si_sdr`` (dB, higher is better; :mod:`benchmark.metrics.sisdr`),
- ``mel_distance`` and ``mrstft_distance`` (lower is better; :mod:`benchmark.metrics.spectral`,
  at 44.1 kHz, the numbers of the benchmark report),
- ``lsd`` (dB, lower is better; :func:`benchmark.training.validation.log_spectral_distance`
  at the item's rate; logged by the trainer's validation, no longer its selection metric),

plus, with ``--anchors``, two rows that bound what the numbers can mean: ``silence`` (an
all-zero estimate; on the clean built-in test items LSD scores it better than both the
untrained and the 300-step model) and ``band-limit`` (the reference resampled to the codec's rate and back:
the best any codec at that rate can score).

    python scripts/m2l_before_after.py                       # cpu preset, 300 steps, test split
    python scripts/m2l_before_after.py --set lr=3e-3 --split valid --max-items 40
    python scripts/m2l_before_after.py --checkpoint path/to/best.pt

Training runs go to ``<cache>/checkpoints`` (where ``run all`` puts them), so a finished
``run all`` with the same cache makes this a pure evaluation (a few minutes on 2 cores for the
104 test items; training 300 steps adds about 2 minutes on 2 idle cores).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.codecs.protocol import Codec, CodecInfo  # noqa: E402
from benchmark.codecs.registry import create_codec  # noqa: E402
from benchmark.engine.reconstruct import reconstruct  # noqa: E402
from benchmark.engine.sources import CodecSource  # noqa: E402
from benchmark.metrics import ItemMetric, MetricCard, create_metric  # noqa: E402
from benchmark.music2latent.codec import Music2LatentCodec  # noqa: E402
from benchmark.music2latent.config import Music2LatentConfig  # noqa: E402
from benchmark.music2latent.model import Music2Latent  # noqa: E402
from benchmark.probes.stats import bootstrap_interval, paired_bootstrap  # noqa: E402
from benchmark.training.validation import log_spectral_distance, lsd_n_fft  # noqa: E402


class LogSpectralDistance(ItemMetric):
    """The trainer's validation LSD as an item metric (dB, lower is better), for this study only."""

    card = MetricCard(name="lsd", unit="dB", higher_is_better=False, convention="benchmark.training.validation",
                      implementation="scripts/m2l_before_after.py", version="1")

    def __call__(self, reference, estimate, sample_rate):
        n_fft = min(lsd_n_fft(sample_rate), 2 ** int(np.log2(reference.size)))
        return float(log_spectral_distance(torch.from_numpy(reference)[None], torch.from_numpy(estimate)[None],
                                           n_fft)[0])


class SilenceCodec(Codec):
    """The all-zero estimate (an anchor: what silence scores)."""

    def __init__(self, sample_rate: int = 44100) -> None:
        super().__init__(sample_rate=sample_rate)
        self.info = CodecInfo(name="silence", sample_rate=sample_rate, latent_dim=1, latent_rate_hz=float(sample_rate))

    def encode(self, audio):
        return audio[:, None, :]

    def decode(self, latents):
        return torch.zeros_like(latents[:, 0, :])


#: metric name -> (metric object, higher_is_better)
METRICS: dict[str, tuple[ItemMetric, bool]] = {
    name: (metric, metric.card.higher_is_better) for name, metric in
    ((n, create_metric(n)) for n in ("si_sdr", "mel_distance", "mrstft_distance"))}
METRICS["lsd"] = (LogSpectralDistance(), False)


def untrained_checkpoint(config: Music2LatentConfig, seed: int, path: Path) -> Path:
    """Write the step-0 model of a training run (``torch.manual_seed(seed)``, then the model is
    built, as the trainer does) as a checkpoint the codec can load."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Music2Latent(config)
    torch.save({"config": config.to_dict(), "model": model.state_dict(), "ema": None, "step": 0}, path)
    return path


def score_items(codec: Codec, items: list, device: str = "cpu") -> dict[str, np.ndarray]:
    """Every item through ``codec`` and the engine; returns ``{metric: [n_items]}`` (NaN where
    an item failed: the failure is printed)."""
    outcome = reconstruct(CodecSource(codec, codec.info.name, device=device), items, [m for m, _ in METRICS.values()],
                          segment_seconds=30.0)
    for result in outcome.results:
        if not result.ok:
            print(f"warning: {codec.info.name}: {result.error}", file=sys.stderr)
    by_id = {r.item.id: r for r in outcome.results}
    return {name: np.array([by_id[it.id].values.get(name, np.nan) if it.id in by_id and by_id[it.id].ok else np.nan
                            for it in items], dtype=np.float64) for name in METRICS}


def _weighted_mean(values: np.ndarray) -> Callable[[np.ndarray | None], Any]:
    def metric(w: np.ndarray | None):
        return float(values.mean()) if w is None else (w @ values) / values.size
    return metric


def summarise(results: dict[str, dict[str, np.ndarray]], before: str, after: str, n_boot: int = 2000
              ) -> list[dict[str, Any]]:
    """Rows of the table: per metric, each system's mean [CI] and the paired difference."""
    rows = []
    for name, (_, higher) in METRICS.items():
        row: dict[str, Any] = {"metric": name, "higher_is_better": higher}
        for system, scores in results.items():
            v = scores[name]
            ok = np.isfinite(v)
            row[system] = bootstrap_interval(_weighted_mean(v[ok]), int(ok.sum()), n_boot)
        a, b = results[after][name], results[before][name]
        ok = np.isfinite(a) & np.isfinite(b)
        test = paired_bootstrap(_weighted_mean(a[ok]), _weighted_mean(b[ok]), int(ok.sum()), n_boot)
        better = test["delta"] > 0 if higher else test["delta"] < 0
        significant = (test["ci_low"] > 0 or test["ci_high"] < 0)
        row["delta"] = test
        row["verdict"] = ("better" if better else "worse") + ("" if significant else " (n.s.)")
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]], systems: list[str], before: str, after: str) -> None:
    def cell(t):
        return f"{t[0]:8.3f} [{t[1]:.3f}, {t[2]:.3f}]"

    head = f"{'metric':16s}" + "".join(f"{s:>30s}" for s in systems) + f"{after + ' - ' + before:>34s}  verdict"
    print(head)
    print("-" * len(head))
    for row in rows:
        arrow = "(higher better)" if row["higher_is_better"] else "(lower better)"
        d = row["delta"]
        line = f"{row['metric']:16s}" + "".join(f"{cell(row[s]):>30s}" for s in systems)
        line += (f"{d['delta']:+10.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] p={d['p_value']:.3f}  "
                 f"{row['verdict']} {arrow}")
        print(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu", help="training preset (default: cpu)")
    ap.add_argument("--steps", type=int, default=300, help="training steps (default: 300, as run all)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="training overrides, as for `python -m benchmark train --set`")
    ap.add_argument("--dataset-preset", default="default", help="built-in dataset preset")
    ap.add_argument("--cache", default=None, help="benchmark cache root (default: $BENCHMARK_CACHE "
                    "or ~/.cache/m2l-benchmark); runs go to <cache>/checkpoints")
    ap.add_argument("--checkpoint", default=None, help="evaluate this checkpoint instead of training")
    ap.add_argument("--which", choices=("best", "last"), default="best",
                    help="checkpoint of the run to evaluate (default: best.pt, as the benchmark)")
    ap.add_argument("--split", default="test", help="held-out split to code (default: test)")
    ap.add_argument("--max-items", type=int, default=None, help="first N items of the split")
    ap.add_argument("--seed", type=int, default=0, help="decoding-noise seed")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--anchors", action="store_true", help="add the silence and band-limit rows")
    ap.add_argument("--json", default=None, help="also write the per-item scores and the table here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    from benchmark.config import default_cache_dir
    from benchmark.data.registry import load_dataset

    cache = Path(args.cache) if args.cache else default_cache_dir()
    dataset = load_dataset("builtin", cache, preset=args.dataset_preset, progress=False)
    items = dataset.split(args.split)[: args.max_items]
    if not items:
        print(f"error: split {args.split!r} of the dataset is empty", file=sys.stderr)
        return 2

    t0 = time.time()
    if args.checkpoint:
        checkpoint = Path(args.checkpoint)
        train_seed = int(torch.load(checkpoint, map_location="cpu", weights_only=True).get("train", {}).get("seed", 0))
    else:
        from benchmark.training import train
        from benchmark.training.config import resolve_train_config
        overrides = list(args.overrides) + [f"steps={args.steps}"]
        best = train(codec="music2latent", preset=args.preset, dataset=dataset,
                     out_dir=cache / "checkpoints", overrides=overrides, device=args.device, progress=False)
        checkpoint = best if args.which == "best" else best.with_name("last.pt")
        train_seed = resolve_train_config("music2latent", args.preset, overrides).seed
    train_seconds = time.time() - t0
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    config = Music2LatentConfig.from_dict(ckpt["config"])

    with tempfile.TemporaryDirectory() as tmp:
        init = untrained_checkpoint(config, train_seed, Path(tmp) / "untrained.pt")
        codecs = {"untrained": Music2LatentCodec(checkpoint=str(init), seed=args.seed, device=args.device),
                  "trained": Music2LatentCodec(checkpoint=str(checkpoint), seed=args.seed, device=args.device)}
        results = {name: score_items(codec, items, args.device) for name, codec in codecs.items()}
    rate = config.sample_rate
    if args.anchors:
        results["silence"] = score_items(SilenceCodec(rate), items)
        results["band-limit"] = score_items(create_codec("identity", sample_rate=rate), items)

    systems = list(results)
    rows = summarise(results, "untrained", "trained")
    train_info = ckpt.get("train", {})
    print(f"Music2Latent before/after: {len(items)} '{args.split}' items of builtin:{dataset.identity}; "
          f"one-step decoding, seed {args.seed}")
    print(f"trained: {checkpoint} (EMA weights: {ckpt.get('ema') is not None}, step {ckpt.get('step')} of "
          f"{train_info.get('steps')}; preset {args.preset}; lr {train_info.get('lr')}, batch "
          f"{train_info.get('batch_size')}, loss {train_info.get('loss')}; training/cache {train_seconds:.0f} s)")
    print(f"untrained: the same model at step 0 (seed {train_seed}). Means over items, bootstrap 95 % intervals.\n")
    print_table(rows, systems, "untrained", "trained")
    if args.json:
        payload = {"checkpoint": str(checkpoint), "split": args.split, "items": [it.id for it in items],
                   "scores": {s: {m: v.tolist() for m, v in sc.items()} for s, sc in results.items()},
                   "table": rows, "train": train_info}
        Path(args.json).write_text(json.dumps(payload, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
