"""Convolution kernels for Music2Latent inference on CPU.

Nearly all of Music2Latent's arithmetic is 3x3 convolutions over long ``[B, C, 1024, F]``
maps (~2.8 TFLOP to decode 10 s of audio at the paper settings), and oneDNN's direct
convolution already runs them at ~80-100 % of this CPU's fp32 matmul peak. What is left is to
do less arithmetic: :func:`conv2d` runs

- stride-1 3x3 convolutions with NNPACK's Winograd transform (``F(6x6, 3x3)`` on 8x8 tiles: 64
  products per 6x6 output tile and channel pair instead of 324, ~5x fewer; 1.3-4x faster than
  oneDNN here, the transforms being memory-bound),
  one batch item at a time, which is both NNPACK's fastest mode and keeps every item's result
  independent of the batch it is in;
- 1x1 convolutions as one matrix product per item (``[C_out, C_in] @ [C_in, H*W]``) on the
  NCHW map, 2.5x faster than oneDNN's NCHW 1x1 kernel;

when the input and the weights are contiguous (NCHW) float32 CPU tensors, gradients are off, CPU
autocast is off and NNPACK is available; anything else (training, channels-last or GPU tensors,
bf16 autocast, strided or other kernels) goes to ``torch.nn.functional.conv2d``. Winograd's transforms round
differently: a convolution's error against float64 grows from ~1e-6 to ~1e-5 of its output's
size (measured in ``tests/music2latent/test_m2l_kernels.py``), which the decoded audio keeps within
the official implementation's parity tolerance (``scripts/bench_music2latent_speed.py`` asserts it).

:func:`~benchmark.music2latent.inference.prepare_for_inference` picks the NCHW layout on CPU
when :func:`winograd_pays_off` for the model (NNPACK available, every level at least
:data:`WINOGRAD_MIN_CHANNELS` wide: the paper configuration, not the small CPU presets), so
every encode and decode of such a model through the public API and the benchmark's codecs
takes this path; :class:`Conv2d` is the ``nn.Conv2d`` the model is built of.
"""

from __future__ import annotations

import functools
import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Conv2d", "conv2d", "winograd_available", "winograd_pays_off", "uses_fast_path",
           "WINOGRAD_MIN_CHANNELS"]


#: Narrowest level (channels) from which the Winograd kernels beat oneDNN's channels-last
#: direct convolution on 2 AVX2 cores (measured: 0.3x at 8 channels, 0.9x at 16-32, 1.3x at 48,
#: 1.5x at 64, up to 4x at 256); below it a model keeps the channels-last layout.
WINOGRAD_MIN_CHANNELS = 48


def winograd_pays_off(channels: Sequence[int]) -> bool:
    """Whether a model whose levels have ``channels`` should run the NCHW Winograd path."""
    return winograd_available() and min(channels) >= WINOGRAD_MIN_CHANNELS


@functools.cache
def winograd_available() -> bool:
    """Whether this PyTorch build has NNPACK and it initialises on this CPU (it needs AVX2 on
    x86). Also initialises NNPACK, which ``torch._nnpack_spatial_convolution`` needs first."""
    try:
        return bool(torch._nnpack_available())
    except (AttributeError, RuntimeError):
        return False


def uses_fast_path(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """True when :func:`conv2d` may run ``x`` through the inference kernels of this module."""
    return (not torch.is_grad_enabled() and x.device.type == "cpu" and x.ndim == 4
            and x.numel() > 0
            and x.dtype == torch.float32 and weight.dtype == torch.float32
            # NCHW activations *and* weights: a channels-last model stays on oneDNN even
            # where one of its maps happens to be NCHW (e.g. right after a reshape)
            and x.is_contiguous() and weight.is_contiguous()
            and not torch.is_autocast_enabled("cpu")
            and winograd_available())


def _pair(v: int | str | tuple[int, ...] | list[int]) -> tuple[int, int] | None:
    if isinstance(v, str):  # 'same' / 'valid': left to F.conv2d
        return None
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[-1]))


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
           dilation: int | tuple[int, int] = 1, groups: int = 1) -> torch.Tensor:
    """``torch.nn.functional.conv2d`` (zero padding), with the fast inference kernels for
    stride-1 3x3 'same' and 1x1 convolutions (see the module docstring).

    Parameters and result as ``F.conv2d``: ``x [B, C_in, H, W]``, ``weight [C_out, C_in, kh,
    kw]``, ``bias [C_out]`` -> ``[B, C_out, H', W']``.
    """
    if (groups == 1 and _pair(stride) == (1, 1) and _pair(dilation) == (1, 1)
            and uses_fast_path(x, weight)):
        kernel, pad = tuple(weight.shape[-2:]), _pair(padding)
        if kernel == (3, 3) and pad == (1, 1):
            out = _winograd_3x3(x, weight, bias)
            if out is not None:
                return out
        elif kernel == (1, 1) and pad == (0, 0):
            return _pointwise(x, weight, bias)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


def _winograd_3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
                  ) -> torch.Tensor | None:
    """NNPACK 3x3 'same' convolution, one item at a time; None if NNPACK refuses the call."""
    if bias is None:
        bias = weight.new_zeros(weight.shape[0])
    try:
        rows = [torch._nnpack_spatial_convolution(x[i:i + 1], weight, bias, [1, 1])
                for i in range(x.shape[0])]
    except RuntimeError as exc:  # e.g. a shape NNPACK does not take: the direct kernel
        warnings.warn(f"NNPACK convolution failed ({exc}); using the direct kernel",
                      RuntimeWarning, stacklevel=3)
        return None
    return rows[0] if len(rows) == 1 else torch.cat(rows)


def _pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
               ) -> torch.Tensor:
    """1x1 convolution as ``W @ x_i`` per item on the ``[C_in, H*W]`` view of NCHW memory."""
    b, ci, h, w = x.shape
    mat = weight.reshape(weight.shape[0], ci)
    out = x.new_empty(b, mat.shape[0], h * w)
    for i in range(b):
        if bias is None:
            torch.mm(mat, x[i].view(ci, h * w), out=out[i])
        else:
            torch.addmm(bias[:, None], mat, x[i].view(ci, h * w), out=out[i])
    return out.view(b, mat.shape[0], h, w)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and state-dict keys) whose forward goes through
    :func:`conv2d`, so that inference takes the fast kernels where they apply."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            return super()._conv_forward(input, weight, bias)
        return conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)
