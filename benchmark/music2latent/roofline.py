"""Where Music2Latent's inference time goes, against what the machine can do (a roofline).

:func:`profile_inference` runs one encode and one decode through the public API
(:func:`~benchmark.music2latent.inference.encode_audio`,
:func:`~benchmark.music2latent.inference.decode_latents`) under :class:`OpTimer`, a
``TorchDispatchMode`` that times every ATen operation and counts its arithmetic, and books each
operation to a *stage* (encoder, decoder pyramid, UNet step, STFT/iSTFT, the rest: noise and
chunk assembly) and a *kind* (convolutions, norms, attention, elementwise and other).
:func:`measure_peaks` measures the machine's own fp32 and bf16 matrix-product rates (the
ceiling the convolutions are held against), and :func:`format_roofline` prints one table: time,
share, GFLOP, achieved GFLOP/s and its share of each peak, per stage and per kind.

Conventions:

- FLOPs are those of the direct computation (``2 * C_out * C_in * kh * kw`` per output
  position of a convolution, ``4 * L^2 * d`` per attention head, PyTorch's ``flop_registry``
  for matrix products). The Winograd convolutions of :mod:`benchmark.music2latent.kernels` do
  about 5x fewer products, so their *effective* rate can pass the matmul peak: that is the
  point of them, not a measuring error.
- Norms are the GroupNorm modules (statistics and affine); attention is everything inside the
  frequency-attention modules except their GroupNorm (projections, products, softmax).
- Timing each operation adds a few microseconds of Python per call (~1,400 calls for an encode
  and a decode of 10 s at the paper settings); the table also prints the profiled run's wall
  time so it can be set against the plain timings.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from benchmark.music2latent.frontend import SpectralFrontend
from benchmark.music2latent.inference import decode_latents, encode_audio
from benchmark.music2latent.layers import FreqAttention
from benchmark.music2latent.model import Music2Latent

__all__ = ["OpTimer", "Peaks", "measure_peaks", "profile_inference", "format_roofline",
           "STAGES", "KINDS"]

aten = torch.ops.aten
STAGES = ("encoder", "decoder pyramid", "UNet step", "STFT/iSTFT", "noise, chunks, glue")
KINDS = ("convolutions", "norms", "attention", "elementwise & other")
_CONVOLUTIONS = {aten.convolution, aten._convolution, aten.mkldnn_convolution,
                 aten._nnpack_spatial_convolution, aten.conv2d, aten.conv1d}
_MATMULS = {aten.mm, aten.addmm, aten.bmm, aten.baddbmm, aten.linear, aten.matmul}


def _conv_flops(x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor) -> int:
    """Direct-convolution arithmetic: 2 * C_in/groups * prod(kernel) per output element."""
    return 2 * weight.shape[1] * math.prod(weight.shape[2:]) * out.numel()


def op_flops(func, args: tuple, kwargs: dict, out) -> int:
    """Arithmetic of one ATen call (0 for elementwise and data movement)."""
    packet = func._overloadpacket
    if packet in _CONVOLUTIONS:
        return _conv_flops(args[0], args[1], out)
    if packet in (aten.scaled_dot_product_attention,
                  aten._scaled_dot_product_flash_attention_for_cpu):
        q, k = args[0], args[1]  # [B, heads, L, d]
        return 4 * q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * q.shape[3]
    if packet is aten.linear:  # seen whole under inference mode (not as addmm)
        return 2 * args[1].shape[1] * out.numel()
    if packet in flop_registry:
        return int(flop_registry[packet](*args, **kwargs, out_val=out))
    return 0


@dataclass
class Cost:
    seconds: float = 0.0
    flops: int = 0
    calls: int = 0


class OpTimer(TorchDispatchMode):
    """Times every ATen operation run under it and books it to ``(stage, kind)`` in
    :attr:`costs`.

    ``stage`` and ``kind`` come from :meth:`within` (a stack of labels set by module hooks or
    by the caller); operations outside every stage go to the last of :data:`STAGES`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.costs: dict[tuple[str, str], Cost] = defaultdict(Cost)
        self._stages: list[str] = []
        self._kinds: list[str] = []

    @contextlib.contextmanager
    def within(self, stage: str | None = None, kind: str | None = None) -> Iterator[None]:
        if stage:
            self._stages.append(stage)
        if kind:
            self._kinds.append(kind)
        try:
            yield
        finally:
            if stage:
                self._stages.pop()
            if kind:
                self._kinds.pop()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        start = time.perf_counter()
        out = func(*args, **kwargs)
        seconds = time.perf_counter() - start
        packet = func._overloadpacket
        if self._kinds:
            kind = self._kinds[-1]
        elif packet in _CONVOLUTIONS or packet in _MATMULS:
            kind = "convolutions"  # 1x1 convolutions run as matrix products
        else:
            kind = "elementwise & other"
        cost = self.costs[(self._stages[-1] if self._stages else STAGES[-1], kind)]
        cost.seconds += seconds
        cost.flops += op_flops(func, args, kwargs, out)
        cost.calls += 1
        return out

    def hook(self, module: torch.nn.Module, stage: str | None = None, kind: str | None = None
             ) -> list:
        """Book everything ``module``'s forward runs to ``stage`` / ``kind`` (forward hooks;
        returns their handles)."""
        entered: list = []  # one open ``within`` per active call (re-entrant modules)

        def pre(_module, _inputs):
            entered.append(self.within(stage, kind))
            entered[-1].__enter__()

        def post(_module, _inputs, _output):
            entered.pop().__exit__(None, None, None)

        return [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]


@dataclass
class Peaks:
    """Measured matrix-product rates of this machine (GFLOP/s), with the threads used."""

    fp32: float
    bf16: float
    threads: int


def _matmul_rate(dtype: torch.dtype, n: int, budget_s: float) -> float:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b  # warm-up (and packing)
    best = float("inf")
    deadline = time.perf_counter() + budget_s
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
        if time.perf_counter() > deadline:
            break
    return 2 * n ** 3 / best / 1e9


def measure_peaks(budget_s: float = 2.0) -> Peaks:
    """The best fp32 and bf16 ``n x n`` matrix-product rates in a short trial (n = 2048 for
    fp32; for bf16 the size is cut until one product takes under 0.5 s, since CPUs without
    bf16 instructions emulate it at ~1 GFLOP/s)."""
    with torch.inference_mode():
        fp32 = _matmul_rate(torch.float32, 2048, budget_s)
        n = 256
        probe = _matmul_rate(torch.bfloat16, n, budget_s)
        while n < 2048 and 2 * (2 * n) ** 3 / (probe * 1e9) < 0.5:
            n *= 2
            probe = _matmul_rate(torch.bfloat16, n, budget_s)
    return Peaks(fp32=fp32, bf16=probe, threads=torch.get_num_threads())


@contextlib.contextmanager
def _instrumented(timer: OpTimer, model: Music2Latent, frontend: SpectralFrontend
                  ) -> Iterator[None]:
    """Label stages by wrapping the methods the inference API calls (instance attributes, taken
    away afterwards) and kinds by forward hooks on the norm and attention modules."""
    staged = [(model.encoder, "features", "encoder"), (model.encoder, "head", "encoder"),
              (model.decoder, "forward", "decoder pyramid"), (model.unet, "forward", "UNet step"),
              (frontend, "wave_to_spec", "STFT/iSTFT"), (frontend, "spec_to_wave", "STFT/iSTFT")]
    handles = []
    for module in model.modules():
        if isinstance(module, FreqAttention):
            handles += timer.hook(module, kind="attention")
        elif isinstance(module, torch.nn.GroupNorm):
            handles += timer.hook(module, kind="norms")  # inside attention too: norms

    def wrap(fn: Callable, stage: str) -> Callable:
        def run(*args, **kwargs):
            with timer.within(stage=stage):
                return fn(*args, **kwargs)
        return run

    for owner, name, stage in staged:
        setattr(owner, name, wrap(getattr(owner, name), stage))
    try:
        with timer:
            yield
    finally:
        for handle in handles:
            handle.remove()
        for owner, name, _ in staged:
            if name in vars(owner):
                delattr(owner, name)  # back to the class's method


def profile_inference(model: Music2Latent, frontend: SpectralFrontend, audio: torch.Tensor,
                      steps: int = 1) -> tuple[OpTimer, float, torch.Tensor]:
    """Encode ``audio`` ``[1, samples]`` and decode its latents (one pass each, no chunking)
    under an :class:`OpTimer`. Returns ``(timer, wall seconds, latents)``."""
    timer = OpTimer()
    with _instrumented(timer, model, frontend):
        start = time.perf_counter()
        z = encode_audio(model, frontend, audio, chunk_seconds=None)
        decode_latents(model, frontend, z, steps=steps, chunk_latents=None)
        wall = time.perf_counter() - start
    return timer, wall, z


def format_roofline(timer: OpTimer, wall: float, peaks: Peaks, title: str = "") -> str:
    """The roofline table: per stage, then per kind of operation."""
    by_stage: dict[str, Cost] = defaultdict(Cost)
    by_kind: dict[str, Cost] = defaultdict(Cost)
    for (stage, kind), cost in timer.costs.items():
        for table, key in ((by_stage, stage), (by_kind, kind)):
            table[key].seconds += cost.seconds
            table[key].flops += cost.flops
            table[key].calls += cost.calls
    total = Cost(sum(c.seconds for c in by_stage.values()),
                 sum(c.flops for c in by_stage.values()),
                 sum(c.calls for c in by_stage.values()))
    head = (f"{'':24} {'time s':>8} {'share':>6} {'GFLOP':>9} {'GFLOP/s':>8} "
            f"{'% fp32 pk':>9} {'% bf16 pk':>9}")
    lines = [title or "roofline (one encode + one decode)",
             f"peaks measured here ({peaks.threads} threads): fp32 matmul {peaks.fp32:.0f} "
             f"GFLOP/s, bf16 matmul {peaks.bf16:.1f} GFLOP/s", head]

    def row(name: str, cost: Cost) -> str:
        rate = cost.flops / cost.seconds / 1e9 if cost.seconds else 0.0
        return (f"{name:24} {cost.seconds:8.2f} {cost.seconds / total.seconds:6.1%} "
                f"{cost.flops / 1e9:9.1f} {rate:8.1f} {rate / peaks.fp32:9.1%} "
                f"{rate / peaks.bf16:9.0%}")

    lines += [row(s, by_stage[s]) for s in STAGES if s in by_stage]
    lines.append(row("total (ops timed)", total))
    lines.append("by kind of operation:")
    lines += [row("  " + k, by_kind[k]) for k in KINDS if k in by_kind]
    lines.append(f"profiled wall {wall:.2f} s ({total.calls} ATen calls); GFLOP = direct "
                 "arithmetic, so Winograd convolutions show effective rates (see "
                 "benchmark.music2latent.roofline)")
    if peaks.bf16 < peaks.fp32:
        lines.append("bf16 products run slower than fp32 on this CPU (no native bf16 "
                     "instructions): the bf16 path cannot pay off here")
    return "\n".join(lines)
