"""The plan of a run (``run --dry-run``): what would run and what is cached, computing nothing.

The dataset is described, not loaded (:func:`benchmark.data.registry.describe_dataset`: nothing
rendered, decoded or hashed), codecs that train first are listed with their training settings,
and codecs are not built (a build can load weights or start a training). Cached work is looked
up item by item only where the dataset's items are known without computing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchmark.data.registry import describe_dataset

if TYPE_CHECKING:
    from benchmark.engine.run import Pipeline


def describe_plan(pipe: "Pipeline") -> list[str]:
    cfg = pipe.config
    name, root, options = pipe._dataset_args()
    options.pop("progress", None)
    options.pop("workers", None)
    plan = describe_dataset(name, root, **options)
    lines = [f"run {cfg.run_name} -> {pipe.run_dir}", f"cache {pipe.cache_dir}",
             f"dataset {name} {dict(cfg.dataset.options)}: {plan.status}; {plan.work}"]
    if plan.problem:
        lines.append(f"  problem: {plan.problem}")
    if plan.identity:
        lines.append(f"  identity {plan.identity}")
    if plan.splits:
        capped = {s: min(n, cfg.max_items) if cfg.max_items is not None else n for s, n in plan.splits.items()}
        lines.append(f"  items per split: {capped} (reconstruction on {cfg.reconstruction_split!r})")
    from benchmark.engine.run import cap_per_kind

    recon = [it for it in (plan.items or []) if it.split == cfg.reconstruction_split]
    recon = cap_per_kind(recon[: cfg.max_items] if cfg.max_items is not None else recon, cfg.reconstruction_per_kind)
    if cfg.reconstruction_per_kind is not None:
        lines.append(f"  reconstruction on at most {cfg.reconstruction_per_kind} items of each kind")
    for spec in cfg.codecs:
        if spec.train is not None:
            lines.append(f"codec {spec.display} [{spec.name}]: trains first ({dict(spec.train)}); a cached "
                         "checkpoint is reused")
            continue
        lines.append(f"codec {spec.display} [{spec.name}]: {_cache_state(pipe, spec, recon)}")
    lines.append(f"metrics: {', '.join(cfg.metrics) or 'none'} (segments of {cfg.segment_seconds or 'whole'} s, "
                 f"codec chunks of {cfg.chunk_seconds:g} s with {cfg.overlap_seconds:g} s overlap, "
                 f"failure policy {cfg.failure_policy})")
    lines.append(f"probes: tasks {', '.join(cfg.tasks) or 'none'}; {cfg.probe or 'default probe settings'}")
    if cfg.steps_study:
        lines.append(f"steps study: {cfg.steps_study}")
    lines.append("nothing was computed (dry run)")
    return lines


def _cache_state(pipe: "Pipeline", spec, items) -> str:
    """Cached reconstruction records of a codec that needs no training (built, not run)."""
    import soundfile as sf

    from benchmark.codecs.registry import create_codec, resolve_factory
    from benchmark.engine.reconstruct import is_scored
    from benchmark.engine.run import _accepts, _parameter_free
    from benchmark.engine.score import describe

    options = dict(spec.options)
    try:
        factory = resolve_factory(spec.name)
        if items and "sample_rate" not in options and _accepts(factory, "sample_rate") and _parameter_free(factory):
            rates = {sf.info(str(it.path)).samplerate for it in items if it.path.exists()}  # headers only
            if len(rates) == 1:
                options["sample_rate"] = rates.pop()
        codec = create_codec(spec.name, **options)
    except Exception as exc:
        return f"cannot be built: {describe(exc)}"
    if not codec.info.can_decode:
        return "feature-only (probes)"
    known = [it for it in items if it.content_hash]
    if not items:
        return "cache state known once the dataset is listed"
    if len(known) < len(items):
        return f"cache state not checked: {len(items) - len(known)} items have no recorded content hash " \
               "(a dry run reads no audio)"
    done = sum(is_scored(pipe.cache, pipe.source_for(codec, spec.display), it, it.content_hash,
                         pipe.config.segment_seconds) for it in known)
    return f"reconstruction {done}/{len(known)} items cached"
