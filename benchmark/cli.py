"""Command-line interface: ``python -m benchmark <command>``.

Commands
--------
run all|reconstruction|probes   run the pipeline (preset + overrides), resumable and cached
codecs                          list registered codecs with their metadata
models                          list trained models (checkpoints) and their short names
report RUN_DIR [RUN_DIR ...]    tables (Markdown, LaTeX, CSV), figures and index.html from one or more runs
eval                            evaluate a codec on any folder, or score paired folders
train                           train a learned codec (consistency autoencoder, baselines)
listening export|import RUN     a webMUSHRA listening test of a run's examples; its ratings into the report
presets                         list run presets
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import warnings
from pathlib import Path

from benchmark.config import (CodecSpec, ConfigError, RunConfig, apply_overrides, available_presets, default_cache_dir,
                              load_preset)

DEFAULT_RESULTS = Path("results")


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="run the benchmark pipeline",
                       description="Run data -> encode -> decode -> metrics -> probes -> report. Every "
                                   "artefact is cached; re-running recomputes nothing that is unchanged.")
    p.add_argument("what", nargs="?", default="all", choices=["all", "reconstruction", "probes"],
                   help="all stages, only reconstruction metrics, or only probes (default: all)")
    p.add_argument("--preset", default="default", help=f"run preset ({', '.join(available_presets())}) or a YAML path")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config value, e.g. --set probe.seeds=[0,1,2] (repeatable)")
    p.add_argument("--codecs", help="comma-separated codec names or import paths (replaces the preset's list)")
    p.add_argument("--tasks", help="comma-separated probe tasks")
    p.add_argument("--metrics", help="comma-separated reconstruction metrics")
    p.add_argument("--dataset", help="dataset name (builtin, folder, nsynth, ...)")
    p.add_argument("--dataset-root", help="dataset folder")
    p.add_argument("--max-items", type=int, help="cap items per split (quick looks)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--workers", type=int, help="worker processes for data generation and metrics")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results folder (default: results/)")
    p.add_argument("--cache", type=Path, default=None,
                   help="cache folder (default: $BENCHMARK_CACHE or ~/.cache/m2l-benchmark)")
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="RUN_DIR",
                   help="continue an interrupted run (its saved config) - the latest unfinished one by default")
    p.add_argument("--dry-run", action="store_true", help="print the plan and what is cached, compute nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_command)


def build_config(args) -> RunConfig:
    from benchmark.engine.run import find_resumable_run

    if args.resume:
        run_dir = find_resumable_run(args.results) if args.resume == "latest" else Path(args.resume)
        if run_dir is None:
            raise ConfigError(f"--resume: no unfinished run found under {args.results}")
        if not (run_dir / "config.yaml").exists():
            raise ConfigError(f"--resume: {run_dir}/config.yaml not found; is it a run folder?")
        import yaml

        print(f"resuming {run_dir}")
        return RunConfig.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    config = load_preset(args.preset)
    overrides = list(args.overrides)
    if args.codecs:
        # keep the preset's options/training for codecs it already lists; add the others bare
        known = {c.name: c for c in config.codecs} | {c.display: c for c in config.codecs}
        config.codecs = [known.get(n, CodecSpec(name=n)) for n in args.codecs.split(",") if n]
    if args.tasks is not None:
        config.tasks = [t for t in args.tasks.split(",") if t]
    if args.metrics is not None:
        config.metrics = [m for m in args.metrics.split(",") if m]
    if args.dataset:
        config.dataset.name = args.dataset
        config.dataset.options = {}
    if args.dataset_root:
        config.dataset.root = args.dataset_root
    if args.max_items is not None:
        config.max_items = args.max_items
    if args.device:
        config.device = args.device
    if args.workers:
        config.workers = args.workers
    if args.what == "reconstruction":
        config.tasks = []
    elif args.what == "probes":
        config.metrics = []
    return apply_overrides(config, overrides)


def run_command(args) -> int:
    from benchmark.engine.distributed import Ranks, process_group
    from benchmark.engine.run import Pipeline

    ranks = Ranks.from_environment()  # torchrun: every rank computes its share, rank 0 the rest
    config = build_config(args)
    cache = args.cache or default_cache_dir()
    log = print if ranks.main else (lambda m: print(f"[{ranks.name}] {m}", flush=True))
    pipeline = Pipeline(config, args.results, cache, progress=not args.quiet and ranks.main, log=log, ranks=ranks)
    if args.dry_run:
        if ranks.main:
            print("\n".join(pipeline.plan()))
        return 0
    t0 = time.perf_counter()
    with process_group(ranks):
        run_dir = pipeline.run()
    elapsed = time.perf_counter() - t0
    if not ranks.main:
        print(f"[{ranks.name}] shard done in {elapsed:.1f} s; rank 0 writes the results")
        return 0
    n_err = len(pipeline.store.errors)
    print(f"\nrun {config.run_name} finished in {elapsed:.1f} s "
          f"(cache: {pipeline.cache.hits} hits, {pipeline.cache.misses} misses)")
    print(f"results: {run_dir}/results.csv   report: {run_dir}/report/report.md")
    if n_err:
        print(f"{n_err} item(s) failed; see {run_dir}/errors.csv")
    print("\n" + pipeline.timer.table())
    report = run_dir / "report" / "reconstruction.md"
    if report.exists():
        print("\n" + report.read_text())
    return 0


def codecs_command(args) -> int:
    from benchmark.codecs.registry import available_codecs, create_codec

    rows = []
    for name in available_codecs():
        try:
            info = create_codec(name).info
            # size: the bitrate of a real bitstream, else latent floats per second (mono audio)
            size = (f"{info.bitrate_kbps:g} kbps" if info.bitrate_kbps else
                    f"{info.latent_floats_per_second():.0f} floats/s")
            rows.append((name, info.sample_rate, "joint" if info.channels > 1 else "each", size, info.latent_dim,
                         f"{info.latent_rate_hz:.2f}", f"{info.compression_ratio:.1f}", _count(info.parameters),
                         "yes" if info.stochastic else "no", info.decode_steps or "-",
                         "yes" if info.can_decode else "no", f"{info.code_license} / {info.weights_license}",
                         info.description))
        except Exception as exc:  # a codec whose weights or tools are missing is still listed
            rows.append((name, *["?"] * 11, f"(not buildable with defaults: {exc})"))
    header = ("name", "rate Hz", "channels", "size", "dim", "frames/s", "compr.", "params", "stoch.", "steps",
              "decodes", "licence code/weights", "description")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header) - 1)]
    for row in [header] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)) + "  " + str(row[-1]))
    return 0


def _count(n: int) -> str:
    """A parameter count for listings: ``57.66 M``, ``12.3 k``, ``0``."""
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e3 else str(n)


def models_command(args) -> int:
    from benchmark.checkpoints import default_checkpoints_dir, list_models

    folder = args.folder or default_checkpoints_dir()
    models = list_models(folder)
    if not models:
        print(f"no trained models in {folder}; train one with "
              "`python -m benchmark train --codec music2latent --preset smoke`")
        return 0
    header = ("name", "codec", "preset", "steps", "train s", "validation (best step)", "trained", "checkpoint")
    rows = [(m.name, m.codec, m.preset, m.steps if m.steps is not None else "-",
             f"{m.train_seconds:.0f}" if m.train_seconds is not None else "-",
             f"{m.metric} {m.value:.4g} ({m.best_step})" if m.value is not None else "-",
             m.trained_at or "-", m.path) for m in models]
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header) - 1)]
    for row in [header] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)) + "  " + str(row[-1]))
    print("\nuse a name as a checkpoint: eval --codec CODEC --codec-option checkpoint=NAME, or "
          "options: {checkpoint: NAME} in a run config")
    return 0


def report_command(args) -> int:
    from benchmark.report import build_report

    out = args.out or (Path(args.runs[0]) / "report" if len(args.runs) == 1 else Path("results") / "combined-report")
    files = build_report([Path(r) for r in args.runs], out)
    for f in files:
        print(f)
    return 0


def presets_command(args) -> int:
    for name in available_presets():
        cfg = load_preset(name)
        print(f"{name:10s} dataset={cfg.dataset.name} {cfg.dataset.options} codecs="
              f"{','.join(c.display for c in cfg.codecs)} tasks={','.join(cfg.tasks)}")
    return 0


def build_parser(wanted: str | None = None) -> argparse.ArgumentParser:
    """The CLI parser; ``wanted`` is the sub-command about to run (optional ones load lazily)."""
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    p = sub.add_parser("codecs", help="list registered codecs and their metadata")
    p.set_defaults(func=codecs_command)
    p = sub.add_parser("models", help="list trained models (checkpoints) and their short names")
    p.add_argument("--folder", type=Path, default=None,
                   help="checkpoints folder (default: <cache>/checkpoints, where `train` writes)")
    p.set_defaults(func=models_command)
    p = sub.add_parser("report", help="build tables and figures from run folders")
    p.add_argument("runs", nargs="+", help="run folders (results/<run>)")
    p.add_argument("--out", type=Path, help="output folder (default: <run>/report)")
    p.set_defaults(func=report_command)
    p = sub.add_parser("presets", help="list run presets")
    p.set_defaults(func=presets_command)
    _add_optional_commands(sub, wanted)
    return parser


# Commands whose modules pull in heavier stacks: (module, add-arguments function, command
# function, help). They are imported only when invoked, so `run` starts fast.
OPTIONAL_COMMANDS = {
    "eval": ("benchmark.evaluate", "add_eval_arguments", "eval_command",
             "evaluate a codec on any audio folder, or score paired folders"),
    "train": ("benchmark.training.command", "add_train_arguments", "train_command", "train a learned codec"),
    "listening": ("benchmark.listening", "add_listening_arguments", "listening_command",
                  "export a run's examples as a webMUSHRA test, or import its ratings"),
}


def _add_optional_commands(sub, wanted: str | None) -> None:
    for name, (module_name, add_arguments, command, help_text) in OPTIONAL_COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == wanted:
            module = importlib.import_module(module_name)
            getattr(module, add_arguments)(p)
            p.set_defaults(func=getattr(module, command))


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Python warnings from libraries reach the terminal as one clear line, without source
    paths (metric warnings travel with their values into the report instead)."""
    text = " ".join(str(message).split())
    print(f"warning [{category.__name__}]: {text}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    from benchmark.errors import BenchmarkError  # root of ConfigError, DatasetError, CodecError...

    shown, warnings.showwarning = warnings.showwarning, _one_line_warning
    try:
        return args.func(args)
    except BenchmarkError as exc:  # expected failures: one line that names the fix; bugs keep their traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; everything finished so far is cached - continue with "
              "`python -m benchmark run --resume`", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown
