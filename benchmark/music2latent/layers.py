"""Building blocks of Music2Latent (2-D over ``[batch, channels, freq, time]``, 1-D over
``[batch, channels, time]``).

- :class:`ResBlock`: pre-activation residual block (GroupNorm -> SiLU -> conv 3, optional
  additive noise conditioning, GroupNorm -> SiLU -> dropout -> zero-initialised conv 3, plus a
  1x1 skip when the channel count changes), optionally followed by frequency attention.
- :class:`FreqAttention`: self-attention along the frequency axis only, one sequence per
  (batch, time frame), tokens = channel vectors, no positional encoding, zero-initialised
  output projection. Uses ``scaled_dot_product_attention`` (fused kernels).
- Resamplers: frequency-only (÷4 / ×4 by a (5, 1) conv) and time+frequency (÷2 / ×2 by a
  3x3 conv); upsampling is nearest-neighbour then conv.
- :class:`FreqGain` (static per-frequency gain of the encoder), :class:`NoiseEmbedding`
  (sinusoidal embedding of ``ln(sigma) / 4``).

GroupNorm uses ``min(channels // 4, 32)`` groups everywhere (:class:`AccurateGroupNorm`: the
same module and parameters, with accurate statistics for channels-last CPU inference).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.music2latent.config import norm_groups
from benchmark.music2latent.kernels import Conv2d, conv2d


class AccurateGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` whose statistics stay accurate on long channels-last CPU inputs.

    PyTorch's CPU GroupNorm kernel for channels-last float32 tensors accumulates each group's
    statistics in long float32 runs: on a ``[1, 64, 1024, 5168]`` map (60 s of audio at the
    paper settings) its output is off by up to 1e-2 (8e-4 at 10 s), against 1e-6 for the
    contiguous kernel, which made our long encodes drift from the official model's. So in
    inference (no gradients) on channels-last CPU tensors the statistics are computed here:
    per-channel sums of the shifted values and of their squares over blocks of
    :attr:`BLOCK_ROWS` positions (float32 within a block, float64 across blocks; the shift,
    the first block's channel means, avoids cancellation when the mean dominates), combined
    per group in float64, then applied as one ``x * a + b`` pass with per-channel ``a, b``.
    Error vs float64 ~1e-6 at any length, for ~20 % more time than the native kernel.
    Training and every other layout or device use the native kernel. Parameters and
    state-dict keys are those of ``nn.GroupNorm``.
    """

    BLOCK_ROWS = 1 << 13

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (torch.is_grad_enabled() or x.device.type != "cpu" or x.ndim != 4
                or x.dtype != torch.float32 or x.is_contiguous()
                or not x.is_contiguous(memory_format=torch.channels_last)):
            return super().forward(x)
        b, c, h, w = x.shape
        g = self.num_groups
        rows = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view of channels-last memory
        shift = rows[:, :self.BLOCK_ROWS].mean(1, keepdim=True)  # [b, 1, c]
        total = torch.zeros(b, c, dtype=torch.float64)
        total_sq = torch.zeros(b, c, dtype=torch.float64)
        for start in range(0, h * w, self.BLOCK_ROWS):
            block = rows[:, start:start + self.BLOCK_ROWS] - shift
            total += block.sum(1)
            total_sq += block.square_().sum(1)
        n = h * w
        mean_c = shift[:, 0].double() + total / n  # [b, c]
        m2_c = total_sq - total * total / n  # sum of squared deviations per channel
        mean_c, m2_c = mean_c.view(b, g, -1), m2_c.view(b, g, -1)
        mean_g = mean_c.mean(-1, keepdim=True)
        var_g = (m2_c.sum(-1, keepdim=True)
                 + n * (mean_c - mean_g).square().sum(-1, keepdim=True)) / (n * (c // g))
        scale = torch.rsqrt(var_g.clamp_min(0) + self.eps).expand(b, g, c // g)
        if self.affine:
            scale = scale * self.weight.double().view(1, g, -1)
        shift_out = -mean_g * scale
        if self.affine:
            shift_out = shift_out + self.bias.double().view(1, g, -1)
        return torch.addcmul(shift_out.float().reshape(b, c, 1, 1), x,
                             scale.float().reshape(b, c, 1, 1))


def group_norm(channels: int) -> nn.GroupNorm:
    return AccurateGroupNorm(norm_groups(channels), channels)


def zero_init(module: nn.Module) -> nn.Module:
    """Set every parameter of ``module`` to zero (identity-at-init residual branches)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _conv(dims: int, cin: int, cout: int, kernel: int) -> nn.Module:
    cls = Conv2d if dims == 2 else nn.Conv1d
    return cls(cin, cout, kernel, padding=kernel // 2)


class FreqAttention(nn.Module):
    """Multi-head self-attention along frequency, residual.

    ``x [B, C, F, T] -> x + Attn(GN(x))`` where every (b, t) column ``[F, C]`` attends over
    its F frequency rows independently of all other frames.
    """

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"FreqAttention: {channels} channels not divisible by {heads} heads")
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = zero_init(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape
        d = c // self.heads
        # tokens = channel vectors; [B, F, T, C] is a free view of channels-last tensors
        h = self.norm(x).permute(0, 2, 3, 1)
        qkv = self.qkv(h).reshape(b, f, t, 3, self.heads, d)
        # each [B*T, heads, F, head_dim]: 4-D inputs get the fused (flash) CPU kernel
        q, k, v = qkv.permute(3, 0, 2, 4, 1, 5).reshape(3, b * t, self.heads, f, d).unbind(0)
        h = F.scaled_dot_product_attention(q, k, v)  # [B*T, heads, F, d]
        h = h.reshape(b, t, self.heads, f, d).permute(0, 3, 1, 2, 4).reshape(b, f, t, c)
        h = self.out(h).permute(0, 3, 1, 2)  # [B, C, F, T], channels-last strides
        if not torch.is_grad_enabled() and h.stride() == x.stride():
            return h.add_(x)  # channels-last model: h is fresh and already in x's layout
        return x + h  # in x's layout


class ResBlock(nn.Module):
    """Pre-activation residual block, 2-D (3x3) or 1-D (3).

    Parameters
    ----------
    cin, cout: input/output channels (a 1x1 conv skip is added when they differ).
    dims: 2 for ``[B, C, F, T]`` inputs, 1 for ``[B, C, T]``.
    cond_dim: width of the conditioning vector ``[B, cond_dim]`` added (through a zero-init
        linear layer) after the first conv; None for unconditioned blocks.
    attention_heads: if given, :class:`FreqAttention` follows the residual sum (2-D only).
    """

    def __init__(self, cin: int, cout: int, dims: int = 2, cond_dim: int | None = None,
                 attention_heads: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(cin)
        self.conv1 = _conv(dims, cin, cout, 3)
        self.cond = zero_init(nn.Linear(cond_dim, cout)) if cond_dim else None
        self.norm2 = group_norm(cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(_conv(dims, cout, cout, 3))
        self.skip = _conv(dims, cin, cout, 1) if cin != cout else nn.Identity()
        if attention_heads and dims != 2:
            raise ValueError("frequency attention needs 2-D blocks")
        self.attention = FreqAttention(cout, attention_heads) if attention_heads else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, cin, (F,) T]``, ``cond [B or 1, cond_dim]`` -> ``[B, cout, (F,) T]``."""
        inplace = not torch.is_grad_enabled()  # in-place activations only when not training
        h = F.silu(self.norm1(x), inplace=inplace)
        if self.cond is not None:
            if cond is None:
                raise ValueError("this ResBlock is noise-conditioned: pass cond [B, cond_dim]")
            e = self.cond(cond)
            if e.shape[0] == 1:
                # one noise level for the whole batch: fold the embedding into conv1's bias
                # (saves a full pass over the feature map)
                h = self._conv(self.conv1, h, self.conv1.bias + e[0])
            else:
                h = self.conv1(h) + e.reshape(*e.shape, *([1] * (h.ndim - 2)))
        else:
            h = self.conv1(h)
        h = self.conv2(self.dropout(F.silu(self.norm2(h), inplace=inplace)))
        x = h.add_(self.skip(x)) if inplace else h + self.skip(x)
        if self.attention is not None:
            x = self.attention(x)
        return x

    @staticmethod
    def _conv(conv: nn.Module, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if isinstance(conv, nn.Conv2d):
            return conv2d(x, conv.weight, bias, conv.stride, conv.padding)
        return F.conv1d(x, conv.weight, bias, conv.stride, conv.padding)


class Downsample(nn.Module):
    """Level transition down: ``freq_only`` (÷factor in frequency, (5, 1) conv, stride
    (factor, 1)) or ÷2 in frequency and time (3x3 conv, stride 2); optional GroupNorm first."""

    def __init__(self, cin: int, cout: int, freq_only: bool, factor: int = 4,
                 prenorm: bool = False) -> None:
        super().__init__()
        self.norm = group_norm(cin) if prenorm else nn.Identity()
        if freq_only:
            k = factor + 1
            self.conv = Conv2d(cin, cout, (k, 1), stride=(factor, 1), padding=(k // 2, 0))
        else:
            self.conv = Conv2d(cin, cout, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(x))


def _phase_taps(scale: int, kernel: int) -> tuple[torch.Tensor, list[int], int]:
    """Sub-pixel decomposition of "nearest ×scale, then a 'same' conv of ``kernel`` taps" along
    one axis.

    Output row ``scale * i + a`` reads input rows ``i + offsets[a] + t`` for
    ``t < width``; ``taps[a, t, d]`` is 1 where kernel tap ``d`` lands on that row.
    Returns ``(taps [scale, width, kernel], offsets, width)``.
    """
    pad = kernel // 2
    rows = [[(a + d - pad) // scale for d in range(kernel)] for a in range(scale)]
    offsets = [min(r) for r in rows]
    width = max(max(r) - min(r) for r in rows) + 1
    taps = torch.zeros(scale, width, kernel)
    for a in range(scale):
        for d, row in enumerate(rows[a]):
            taps[a, row - offsets[a], d] = 1.0
    return taps, offsets, width


class Upsample(nn.Module):
    """Level transition up: nearest ×factor in frequency then (5, 1) conv (``freq_only``), or
    nearest ×2 in frequency and time then 3x3 conv.

    Computed in the equivalent sub-pixel form: every output phase is a small conv (2 taps per
    axis) on the *low*-resolution input, so the conv costs 16/36 (×2) or 8/20 (×4 freq) of the
    naive nearest-then-conv; the phases are then interleaved. Parameters and results are those
    of the naive form (up to float rounding).
    """

    def __init__(self, cin: int, cout: int, freq_only: bool, factor: int = 4) -> None:
        super().__init__()
        self.scale = (factor, 1) if freq_only else (2, 2)
        k = (factor + 1, 1) if freq_only else (3, 3)
        self.conv = Conv2d(cin, cout, k, padding=(k[0] // 2, k[1] // 2))
        (th, self._off_h, self._wh), (tw, self._off_w, self._ww) = (
            _phase_taps(s, kk) for s, kk in zip(self.scale, k))
        self.register_buffer("_taps_h", th, persistent=False)
        self.register_buffer("_taps_w", tw, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sh, sw = self.scale
        b, _, h, w = x.shape
        co = self.conv.out_channels
        kernels = self._phase_kernels(x)
        pads = (-min(self._off_w), max(o + self._ww - 1 for o in self._off_w),
                -min(self._off_h), max(o + self._wh - 1 for o in self._off_h))
        if pads[0] == pads[1] and pads[2] == pads[3]:  # zero padding inside the conv: no copy
            y = conv2d(x, kernels, self.conv.bias.repeat(sh * sw), padding=(pads[2], pads[0]))
        else:
            y = conv2d(F.pad(x, pads), kernels, self.conv.bias.repeat(sh * sw))
        oh = [o + pads[2] for o in self._off_h]
        ow = [o + pads[0] for o in self._off_w]
        if y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous():
            # physical [b, H', W', (sh, sw, co)] -> out physical [b, h, sh, w, sw, co]
            yp = y.permute(0, 2, 3, 1).reshape(b, y.shape[2], y.shape[3], sh, sw, co)
            out = y.new_empty(b, h, sh, w, sw, co)
            for a in range(sh):
                for c in range(sw):
                    out[:, :, a, :, c] = yp[:, oh[a]:oh[a] + h, ow[c]:ow[c] + w, a, c]
            return out.reshape(b, h * sh, w * sw, co).permute(0, 3, 1, 2)
        yp = y.reshape(b, sh, sw, co, y.shape[2], y.shape[3])
        out = y.new_empty(b, co, h, sh, w, sw)
        for a in range(sh):
            for c in range(sw):
                out[:, :, :, a, :, c] = yp[:, a, c, :, oh[a]:oh[a] + h, ow[c]:ow[c] + w]
        return out.reshape(b, co, h * sh, w * sw)

    def _phase_kernels(self, x: torch.Tensor) -> torch.Tensor:
        """Phase kernels ``[sh * sw * co, ci, wh, ww]`` from the conv's own weights; cached
        while gradients are off (inference), recomputed (differentiably) otherwise."""
        w = self.conv.weight
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and x.ndim == 4
        key = (w._version, w.data_ptr(), w.dtype, w.device, channels_last)
        if not torch.is_grad_enabled() and getattr(self, "_cached", (None,))[0] == key:
            return self._cached[1]
        th, tw = self._taps_h.to(w.dtype), self._taps_w.to(w.dtype)
        # sums of the weights' own taps, in their dtype: under autocast the products would
        # otherwise come back in bf16/fp16 (and the two contractions in different dtypes)
        no_autocast = (torch.autocast(device_type=w.device.type, enabled=False)
                       if w.device.type in ("cpu", "cuda") else contextlib.nullcontext())
        with no_autocast:
            k = torch.tensordot(w, tw, dims=([3], [2]))  # [co, ci, kh, sw, ww]
            k = torch.tensordot(th, k, dims=([2], [2]))  # [sh, wh, co, ci, sw, ww]
        k = k.permute(0, 4, 2, 3, 1, 5).reshape(-1, w.shape[1], th.shape[1], tw.shape[1])
        if channels_last:
            k = k.contiguous(memory_format=torch.channels_last)
        if not torch.is_grad_enabled():
            self._cached = (key, k)
        return k

    def forward_naive(self, x: torch.Tensor) -> torch.Tensor:
        """Reference form (nearest upsampling, then the conv); used by the tests."""
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))


class FreqGain(nn.Module):
    """Static learned gain per frequency row (init 1): ``x [B, C, F, T] * g[F]``."""

    def __init__(self, freq_bins: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(freq_bins))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain[:, None]


class NoiseEmbedding(nn.Module):
    """Sinusoidal embedding of the noise level: ``sigma [B] -> [B, dim]``.

    The scalar ``ln(sigma) / 4`` is multiplied by ``dim / 2`` frequencies
    ``10000^(-k / (dim/2 - 1))``, k = 0 .. dim/2 - 1; the output is ``[sin, cos]``.
    """

    def __init__(self, dim: int, max_period: float = 10000.0) -> None:
        super().__init__()
        half = dim // 2
        freqs = max_period ** (-torch.arange(half, dtype=torch.float64) / max(half - 1, 1))
        self.register_buffer("freqs", freqs.float(), persistent=False)

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        arg = (torch.log(sigma.float()) / 4.0)[:, None] * self.freqs.to(sigma.device)
        return torch.cat((torch.sin(arg), torch.cos(arg)), dim=-1)


def mlp(dims: list[int], last_activation: bool, zero_last: bool = False) -> nn.Sequential:
    """Linear-SiLU stack; ``last_activation`` appends a SiLU after the last Linear."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        layers.append(zero_init(nn.Linear(a, b)) if last and zero_last else nn.Linear(a, b))
        if not last or last_activation:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


INV_SQRT2 = 1.0 / math.sqrt(2.0)
INV_SQRT3 = 1.0 / math.sqrt(3.0)
