#!/usr/bin/env python
"""Benchmark: time to probe all four tasks for one codec from cached embeddings.

Synthetic embeddings of the default preset's size (about 600 items, Music2Latent latents
``[64, 107]`` per 10 s clip) carry a weak class signal for every task, so the probes train
for a realistic number of epochs. Prints the time per (task, head) and in total, with both
heads and three seeds, bootstrap included. Target: <= 120 s on 2 CPU cores.

    python scripts/bench_probes.py [--items 600 --dim 64 --frames 107 --threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.data.canonical import KEY_LABELS  # noqa: E402
from benchmark.data.dataset import Item  # noqa: E402
from benchmark.probes import ProbeConfig, run_probe  # noqa: E402
from tasks import create_task  # noqa: E402


def synthetic(n: int, dim: int, frames: int, n_tags: int, n_instruments: int, n_pitches: int,
              signal: float, seed: int = 0) -> tuple[dict[str, np.ndarray], list[Item]]:
    """Items with all four labels and embeddings ``[dim, frames]`` = label signal + noise."""
    rng = np.random.default_rng(seed)
    key = rng.integers(0, 24, n)
    inst = rng.integers(0, n_instruments, n)
    pitch = rng.integers(0, n_pitches, n)
    tags = rng.random((n, n_tags)) < 0.15
    dirs = {name: rng.normal(size=(k, dim)) / np.sqrt(dim)
            for name, k in [("key", 24), ("inst", n_instruments), ("pitch", n_pitches), ("tags", n_tags)]}
    split = np.where(np.arange(n) % 20 < 14, "train", np.where(np.arange(n) % 20 < 17, "valid", "test"))
    emb, items = {}, []
    for i in range(n):
        mean = signal * (dirs["key"][key[i]] + dirs["inst"][inst[i]] + dirs["pitch"][pitch[i]]
                         + tags[i] @ dirs["tags"])
        emb[f"item{i:05d}"] = (mean[:, None] + rng.normal(size=(dim, frames))).astype(np.float32)
        labels = {"key": KEY_LABELS[key[i]], "instrument": f"inst{inst[i]}", "pitch": 36 + int(pitch[i]),
                  "tags": tuple(f"tag{t}" for t in np.flatnonzero(tags[i]))}
        items.append(Item(id=f"item{i:05d}", path=Path(f"/synthetic/{i}.wav"), split=str(split[i]), labels=labels))
    return emb, items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=600)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--frames", type=int, default=107)
    ap.add_argument("--tags", type=int, default=20)
    ap.add_argument("--instruments", type=int, default=12)
    ap.add_argument("--pitches", type=int, default=48)
    ap.add_argument("--signal", type=float, default=3.0, help="class signal strength (per frame)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads while probing (0: torch's default)")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    emb, items = synthetic(args.items, args.dim, args.frames, args.tags, args.instruments, args.pitches, args.signal)
    print(f"synthetic embeddings: {len(items)} items x [{args.dim}, {args.frames}] "
          f"({time.perf_counter() - t0:.1f} s)")
    config = ProbeConfig(seeds=tuple(range(args.seeds)), bootstrap=args.bootstrap, num_threads=args.threads or None)
    import torch
    print(f"torch {torch.__version__}, threads={config.num_threads or torch.get_num_threads()}; "
          f"config: heads={config.heads} "
          f"seeds={config.seeds} pooling={config.pooling} max_epochs={config.max_epochs} "
          f"patience={config.patience} bootstrap={config.bootstrap}")
    total = time.perf_counter()
    for name in ("tagging", "key", "instrument", "pitch"):
        task = create_task(name)
        for head in config.heads:
            t = time.perf_counter()
            out = run_probe(task, emb, items, head, config)
            primary = next(r for r in out.rows if r["primary"])
            epochs = [p["epochs_run"] for p in out.per_seed if p["metric"] == task.primary_metric]
            print(f"  {name:10s} {head:6s} {time.perf_counter() - t:6.1f} s  {primary['metric']} = "
                  f"{primary['value']:.3f} [{primary['ci_low']:.3f}, {primary['ci_high']:.3f}]  "
                  f"epochs {epochs}")
    elapsed = time.perf_counter() - total
    print(f"total probing time (4 tasks x {len(config.heads)} heads x {len(config.seeds)} seeds): "
          f"{elapsed:.1f} s (target <= 120 s on 2 cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
