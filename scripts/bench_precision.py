#!/usr/bin/env python
"""What bf16 costs in accuracy and buys in time: one codec, fp32 vs bf16 autocast, same items.

    python scripts/bench_precision.py [--codec music2latent] [--codec-option checkpoint=PATH ...]
        [--audio DIR | --per-kind 24] [--metrics si_sdr,visqol,mel_distance] [--device cpu|cuda]
        [--json out.json]

Material: every file under ``--audio DIR``, or by default the first ``--per-kind`` notes and
clips of the built-in dataset's ``default`` test split (rendered once into the cache). Each
precision codes the items through the engine's codec source (``CodecSource(precision=...)``,
no cache, so both compute everything) and scores them with the engine (:func:`reconstruct`).

Printed per item kind: the wall time of each precision and their ratio; the error of the bf16
decode against the fp32 decode (SNR in dB: fp32 decode energy over the energy of the
difference, per item; median and worst); and for every metric the fp32 and bf16 means and the
paired difference bf16 - fp32 with its 95 % bootstrap interval and sign-flip p
(:func:`benchmark.engine.compare.paired_difference`). The difference is the effect of bf16 on
the reported number; fp32 stays the default where results are reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.codecs.registry import create_codec  # noqa: E402
from benchmark.config import default_cache_dir  # noqa: E402
from benchmark.engine.compare import paired_difference  # noqa: E402
from benchmark.engine.reconstruct import reconstruct  # noqa: E402
from benchmark.engine.run import build_metrics, cap_per_kind, item_kinds  # noqa: E402
from benchmark.engine.sources import CodecSource  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def load_items(args: argparse.Namespace) -> list:
    if args.audio is not None:
        from benchmark.data.dataset import Item
        from benchmark.data.folder import list_audio_files

        return [Item(id=p.relative_to(args.audio).as_posix(), path=p, split="test")
                for p in list_audio_files(args.audio)]
    from benchmark.data.registry import load_dataset

    dataset = load_dataset("builtin", default_cache_dir(), preset="default")
    return cap_per_kind([it for it in dataset.items if it.split == "test"], args.per_kind)


def decode_snr(sources: dict[str, CodecSource], item) -> float:
    """SNR (dB) of the bf16 estimate against the fp32 estimate of one item."""
    estimates = {}
    for name, source in sources.items():
        estimates[name] = np.concatenate([p.estimate for p in source.stream(item, None)], axis=1)
    ref, err = estimates["fp32"], estimates["bf16"] - estimates["fp32"]
    return float(10 * np.log10(max((ref ** 2).sum(), 1e-30) / max((err ** 2).sum(), 1e-30)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codec", default="music2latent")
    parser.add_argument("--codec-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--audio", type=Path, default=None)
    parser.add_argument("--per-kind", type=int, default=24, help="built-in items per kind (default 24)")
    parser.add_argument("--metrics", default="si_sdr,visqol,mel_distance")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--snr-items", type=int, default=8, help="items per kind for the decode SNR (default 8)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from benchmark.evaluate import parse_options

    options = parse_options(args.codec_option, "--codec-option")
    codec = create_codec(args.codec, **options).to(args.device)
    items = load_items(args)
    metrics = build_metrics([m for m in args.metrics.split(",") if m], {}, cache_dir=None, reference_name="precision",
                            workers=args.workers)
    print(f"# codec {args.codec} {options}: {codec.info.description}")
    print(f"# {len(items)} items, device {args.device}")
    figures: dict = {"codec": args.codec, "options": options, "device": args.device, "kinds": {}}
    for kind, ids in item_kinds(items):
        chosen = [it for it in items if it.id in set(ids)]
        sources = {p: CodecSource(codec, precision=p, device=args.device) for p in PRECISIONS}
        outcomes, seconds = {}, {}
        for name, source in sources.items():
            t0 = time.perf_counter()
            outcomes[name] = reconstruct(source, chosen, metrics, segment_seconds=30.0)
            seconds[name] = time.perf_counter() - t0
        snrs = [decode_snr(sources, it) for it in chosen[: args.snr_items]]
        row = {"items": len(chosen), "seconds": seconds, "speedup": seconds["fp32"] / seconds["bf16"],
               "decode_snr_db_median": float(np.median(snrs)), "decode_snr_db_worst": float(np.min(snrs)),
               "metrics": {}}
        print(f"\n## {kind or 'items'}: {len(chosen)} items; fp32 {seconds['fp32']:.1f} s, "
              f"bf16 {seconds['bf16']:.1f} s "
              f"(x{row['speedup']:.2f}, coding and scoring); bf16 vs fp32 decode SNR median "
              f"{row['decode_snr_db_median']:.1f} dB, worst {row['decode_snr_db_worst']:.1f} dB "
              f"({len(snrs)} items)")
        print(f"{'metric':14s} {'fp32':>9s} {'bf16':>9s} {'bf16 - fp32 [95 % CI]':>30s} {'p':>7s} {'max |d|':>9s}")
        for metric in outcomes["fp32"].scorer.item_metrics:
            name = metric.card.name
            values = {p: np.array([r.values.get(name, np.nan) if r.ok else np.nan for r in outcomes[p].results])
                      for p in PRECISIONS}
            diff = paired_difference(values["bf16"], values["fp32"], metric.card.higher_is_better)
            max_abs = float(np.nanmax(np.abs(values["bf16"] - values["fp32"])))
            row["metrics"][name] = {"fp32": float(np.nanmean(values["fp32"])),
                                    "bf16": float(np.nanmean(values["bf16"])), "delta": diff.delta,
                                    "ci": [diff.ci_low, diff.ci_high], "p": diff.p_value,
                                    "max_abs": max_abs, "n": diff.n}
            interval = f"{diff.delta:+.4f} [{diff.ci_low:+.4f}, {diff.ci_high:+.4f}]"
            print(f"{name:14s} {np.nanmean(values['fp32']):9.4f} {np.nanmean(values['bf16']):9.4f} {interval:>30s} "
                  f"{diff.p_value:7.3f} {max_abs:9.4f}")
        figures["kinds"][kind or "items"] = row
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
