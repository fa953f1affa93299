"""Training checkpoints: atomic writes, RNG capture, and loading weights for inference.

A checkpoint is a ``torch.save``-d dict with the keys

=============  =====================================================================
``format``     ``"m2l-benchmark-train/1"``
``codec``      training-task name (e.g. ``"music2latent"``)
``config``     model configuration dict (``task.config_dict()``), enough to rebuild it
``train``      the resolved :class:`~benchmark.training.config.TrainConfig` as a dict
``run``        run hash (train config + data identity); resume refuses a mismatch
``model``      online weights (``state_dict``)
``ema``        EMA weights (``state_dict``): the weights to use for evaluation/export
``ema_state``  EMA bookkeeping (``updates``, ``decay``)
``optimizer``  optimiser state; ``scaler``: GradScaler state; ``scheduler``: LR schedule
``step``       optimiser steps done
``rng``        per-rank RNG states (python, numpy, torch CPU, torch CUDA)
``sampler``    crop-sampler identity (seed, files, crop length)
``best``       ``{"metric", "higher_is_better", "value", "step"}`` of the best validation
``metrics``    validation metrics at this step (if validated)
``provenance`` torch version, git commit, time, world size, device
=============  =====================================================================

Files are written to a temporary name in the same folder and moved into place with
``os.replace``, so a crash never leaves a truncated checkpoint. Checkpoints hold only tensors,
numbers, strings and containers, so they load with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import functools
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "m2l-benchmark-train/1"

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "inference_weights", "capture_rng",
           "restore_rng", "git_commit"]


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write ``payload`` to ``path`` atomically (temp file + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a training checkpoint (any device -> ``map_location``) and check its format."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found; train first (python -m benchmark "
                                "train ...) or point to an existing .pt file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"checkpoint {path} cannot be read ({exc}); it is corrupt or not a "
                           "torch file - delete it and train again") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise RuntimeError(f"{path} is not a benchmark training checkpoint (format "
                           f"{ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt)!r}, "
                           f"expected {FORMAT!r})")
    return ckpt


def inference_weights(ckpt: dict[str, Any], use_ema: bool = True) -> dict[str, torch.Tensor]:
    """The weights to evaluate: the EMA copy (default) or the online model."""
    return ckpt["ema"] if use_ema and ckpt.get("ema") is not None else ckpt["model"]


def capture_rng() -> dict[str, Any]:
    """RNG states of this process: python, numpy (global), torch CPU and every CUDA device.

    Stored as tensors, ints and tuples only, so that checkpoints load with
    ``torch.load(..., weights_only=True)``.
    """
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (CUDA states only if the device count matches)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npy = state["numpy"]
    np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


@functools.lru_cache(maxsize=None)
def git_commit(repo: Path | None = None) -> str:
    """Current git commit of the code (``"unknown"`` outside a checkout)."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
