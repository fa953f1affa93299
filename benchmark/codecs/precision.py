"""Numerical precision of a learned codec's forward passes: ``fp32`` (default, where results are
reported) or ``bf16`` (``torch.autocast`` to bfloat16: matrix products and convolutions in
bfloat16, norms and reductions in float32; AVX512-BF16/AMX on recent CPUs, tensor cores on GPUs).

Precision is part of a codec source's identity, so bf16 values are cached and reported apart
from fp32 ones. Codecs without torch weights (Opus, MP3, the reference codecs) run as they are.
The measured effect of bf16 on the metrics is in ``docs/precision.md``.
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import torch

from benchmark.errors import BenchmarkError


class PrecisionError(BenchmarkError, ValueError):
    """An unknown precision name."""


def _autocast(dtype: torch.dtype) -> Callable[[str], ContextManager]:
    def enter(device: str) -> ContextManager:
        return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
    return enter


#: name -> ``device -> context manager`` around a codec's encode and decode calls.
PRECISIONS: dict[str, Callable[[str], ContextManager]] = {
    "fp32": lambda device: contextlib.nullcontext(),
    "bf16": _autocast(torch.bfloat16),
}


def check_precision(name: str) -> str:
    if name not in PRECISIONS:
        raise PrecisionError(f"precision {name!r} is not one of {', '.join(PRECISIONS)}")
    return name


def inference_precision(name: str, device: str) -> ContextManager:
    """The context that runs a codec's forward passes at precision ``name`` on ``device``."""
    return PRECISIONS[check_precision(name)](device)
