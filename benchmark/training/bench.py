"""Speed of a training preset: seconds per optimiser step and a projection for the whole run.

Runs the real :meth:`Trainer.train_step` (loss, backward, RAdam, EMA) on random-noise crops
(the cost does not depend on the audio) and prints wall and CPU seconds per step::

    python -m benchmark.training.bench --preset cpu --steps 20
    python -m benchmark.training.bench --preset paper --device cuda --steps 50

CPU seconds per step divided by the cores really available is the wall time to expect on an
idle machine; the projection adds the validations (one-step reconstructions).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import torch

from benchmark.training.config import resolve_train_config
from benchmark.training.distributed import DistContext, resolve_device
from benchmark.training.tasks import Batch, build_task
from benchmark.training.trainer import Trainer


class _NoiseSampler:
    """Stands in for the crop sampler: Gaussian noise crops, deterministic per step."""

    def __init__(self, crop_samples: int) -> None:
        self.crop_samples = crop_samples

    def batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> Batch:
        gen = torch.Generator().manual_seed(step)
        n = batch_size // world_size
        return Batch(0.1 * torch.randn(n, self.crop_samples, generator=gen), torch.arange(n, dtype=torch.int64))

    def state_dict(self) -> dict:
        return {}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(codec: str, preset: str, steps: int, device: str | None, overrides: list[str]) -> dict[str, float]:
    """Time ``steps`` training steps (after 2 warm-up steps) and one validation."""
    config = resolve_train_config(codec, preset, overrides)
    dev = resolve_device(device)
    torch.manual_seed(0)
    task = build_task(codec, config, dev)
    sampler = _NoiseSampler(task.crop_samples)
    val_audio = sampler.batch(10**6, config.val_crops or 1).audio
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(task, config, sampler, tmp, val_audio=val_audio, ctx=DistContext(device=dev))  # type: ignore[arg-type]
        for k in range(2):
            trainer.train_step(sampler.batch(k, config.batch_size))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), _cpu_seconds()
        for k in range(steps):
            trainer.train_step(sampler.batch(k, config.batch_size))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        step_wall, step_cpu = (time.perf_counter() - wall) / steps, (_cpu_seconds() - cpu) / steps
        wall = time.perf_counter()
        trainer.validate()
        val_wall = time.perf_counter() - wall
    validations = 1 + (config.steps // config.val_every if config.val_every else 1)
    return {"step_wall_s": step_wall, "step_cpu_s": step_cpu, "validation_wall_s": val_wall,
            "threads": torch.get_num_threads(), "total_steps": config.steps, "batch_size": config.batch_size,
            "projected_run_wall_s": step_wall * config.steps + val_wall * validations}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codec", default="music2latent")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    r = measure(args.codec, args.preset, args.steps, args.device, args.overrides)
    print(f"{args.codec}/{args.preset}: batch {r['batch_size']}, {r['threads']} threads: "
          f"{r['step_wall_s']:.3f} s/step wall, {r['step_cpu_s']:.3f} CPU-s/step; validation "
          f"{r['validation_wall_s']:.2f} s; projected run ({r['total_steps']} steps): "
          f"{r['projected_run_wall_s'] / 60:.1f} min wall on this machine")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
