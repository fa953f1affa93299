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

both with one consistency step from a fixed decoding seed, exactly as the benchmark codes an
item: read at the native rate, resample (soxr VHQ) to the codec's rate, encode, decode,
resample back, trim both to the shorter length. Scores per item, then the mean with a
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

from benchmark.data.audio import read_audio, resample  # noqa: E402
from benchmark.metrics.align import align_pair  # noqa: E402
from benchmark.metrics.sisdr import si_sdr  # noqa: E402
from benchmark.metrics.spectral import mel_distance, mrstft_distance  # noqa: E402
from benchmark.music2latent.codec import Music2LatentCodec  # noqa: E402
from benchmark.music2latent.config import Music2LatentConfig  # noqa: E402
from benchmark.music2latent.model import Music2Latent  # noqa: E402
from benchmark.probes.stats import bootstrap_interval, paired_bootstrap  # noqa: E402
from benchmark.training.validation import log_spectral_distance, lsd_n_fft  # noqa: E402

#: name -> (function(reference, estimate, rate) -> float, higher_is_better)
METRICS: dict[str, tuple[Callable[[np.ndarray, np.ndarray, int], float], bool]] = {
    "si_sdr": (lambda r, e, sr: si_sdr(r, e), True),
    "mel_distance": (mel_distance, False),
    "mrstft_distance": (mrstft_distance, False),
    "lsd": (lambda r, e, sr: float(log_spectral_distance(torch.from_numpy(r)[None], torch.from_numpy(e)[None],
                                                         min(lsd_n_fft(sr), 2 ** int(np.log2(r.size))))[0]),
            False),
}


def untrained_checkpoint(config: Music2LatentConfig, seed: int, path: Path) -> Path:
    """Write the step-0 model of a training run (``torch.manual_seed(seed)``, then the model is
    built, as the trainer does) as a checkpoint the codec can load."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Music2Latent(config)
    torch.save({"config": config.to_dict(), "model": model.state_dict(), "ema": None, "step": 0}, path)
    return path


def score_items(code: Callable[[np.ndarray, int], np.ndarray], items: list) -> dict[str, np.ndarray]:
    """Code every item with ``code(audio [channels, samples], rate) -> audio`` and score it
    as the pipeline does (per channel at the native rate, then the mean over channels).
    Returns ``{metric: [n_items]}``."""
    scores: dict[str, list[float]] = {name: [] for name in METRICS}
    for item in items:
        reference, native = read_audio(item.path)
        estimate = code(reference, native)
        pairs = [align_pair(r, e, item=item.id)[:2] for r, e in zip(reference, estimate)]
        for name, (fn, _) in METRICS.items():
            scores[name].append(float(np.mean([fn(r, e, native) for r, e in pairs])))
    return {k: np.asarray(v, dtype=np.float64) for k, v in scores.items()}


def codec_coder(codec: Music2LatentCodec) -> Callable[[np.ndarray, int], np.ndarray]:
    rate = codec.info.sample_rate

    def code(audio: np.ndarray, native: int) -> np.ndarray:
        x = torch.from_numpy(resample(audio, native, rate))
        with torch.no_grad():
            y = codec.decode(codec.encode(x)).cpu().numpy()
        return resample(y, rate, native)

    return code


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
        line += f"{d['delta']:+10.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] p={d['p_value']:.3f}  {row['verdict']} {arrow}"
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
        results = {name: score_items(codec_coder(codec), items) for name, codec in codecs.items()}
    rate = config.sample_rate
    if args.anchors:
        results["silence"] = score_items(lambda a, sr: np.zeros_like(a), items)
        results["band-limit"] = score_items(lambda a, sr: resample(resample(a, sr, rate), rate, sr), items)

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
