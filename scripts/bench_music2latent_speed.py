#!/usr/bin/env python
"""Speed and memory of our Music2Latent against the official package (same random weights).

For each duration (default 10 s and 60 s of 44.1 kHz mono audio) this measures, in one
process, with the paper configuration and the same random weights:

- encode: official ``EncoderDecoder.encode`` vs our ``encode_audio``;
- one-step decode: official ``EncoderDecoder.decode`` vs our ``decode_latents``, both fed
  the same initial noise (drawn from the global generator after the same seed),

asserts that the outputs agree (max |difference| below 1e-3 for the tanh-scale latents and
for the audio: float32 summation-order differences grow with length, about 1e-4 at 10 s), and
prints wall time, process CPU time and peak RSS increase for each, with official/ours
ratios. Our runs use the public API with its inference settings (on CPU: NCHW weights and
Winograd convolutions, :mod:`benchmark.music2latent.kernels`, and heap reuse); "ours,
chunked" additionally uses the default overlapping chunking for long inputs
(its output then differs slightly from a one-pass decode, so it is not compared).

The official package is only called (CC BY-NC 4.0); it needs ``huggingface_hub`` importable
(a stub is installed when it is missing) and never downloads anything here: its weights are a
temporary random checkpoint.

Usage::

    python scripts/bench_music2latent_speed.py               # 10 s and 60 s, 2 repeats
    python scripts/bench_music2latent_speed.py --seconds 10 --repeats 3

    python scripts/bench_music2latent_speed.py --device cuda --dtype bf16   # on a GPU

Timings on a shared machine are noisy: each figure is the minimum over repeats; the load
average is printed for context. For each duration all official runs come first: ours switch
glibc's allocator to reuse freed memory while they run (:mod:`benchmark.music2latent.heap`), and
``mallopt`` settings outlive that (they freeze glibc's dynamic mmap threshold), so an official
run after ours would not run under the allocator it gets by default. With several durations
that holds for the first one only: time one duration per process for that comparison.
``--official-heap-reuse`` runs the official code inside the same heap policy instead, which
compares the code alone.

Last, the script prints the roofline of ours for the first duration
(:mod:`benchmark.music2latent.roofline`): time, GFLOP, achieved GFLOP/s and its share of this
machine's measured fp32 and bf16 matmul peaks, per stage (encoder, decoder pyramid, UNet step,
STFT/iSTFT) and per kind of operation (convolutions, norms, attention, the rest). CPU only.

On CPU, ``--dtype bf16`` runs ours under CPU bf16 autocast (the official code runs fp32); the
output differences are printed, not asserted. It only pays off on CPUs with native bf16
(AVX512-BF16 / AMX); the roofline's bf16 peak shows whether this one has it.

On CUDA, times are taken after ``torch.cuda.synchronize()`` (after one untimed warm-up call
per case, which also absorbs cuDNN autotuning) and the memory column is the peak GPU memory
allocated during the call. The official package autocasts its CUDA encode/decode to fp16
(``mixed_precision = True`` in its hparams): ``--dtype fp32`` switches that off and disables
TF32, so both run true fp32 and outputs are compared; ``--dtype fp16`` runs ours under fp16
autocast too (the official default); ``--dtype bf16`` runs ours under bf16 autocast (the
official code stays fp16). In half precision, outputs are only compared loosely (the difference is printed, not
asserted), since half-precision rounding differs with operation order.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.util
import os
import platform
import sys
import tempfile
import threading
import time
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.music2latent.config import PRESETS  # noqa: E402
from benchmark.music2latent.convert import convert_official_state_dict  # noqa: E402
from benchmark.music2latent.frontend import SpectralFrontend  # noqa: E402
from benchmark.music2latent.inference import (decode_latents, encode_audio,  # noqa: E402
                                              prepare_for_inference)
from benchmark.music2latent.heap import reuse_freed_memory  # noqa: E402
from benchmark.music2latent.model import Music2Latent, randomize_parameters  # noqa: E402
from benchmark.music2latent.roofline import (format_roofline, measure_peaks,  # noqa: E402
                                             profile_inference)

SAMPLE_RATE = 44100
OFFICIAL_SCALE = 0.06


def import_official() -> types.SimpleNamespace:
    if importlib.util.find_spec("music2latent") is None:
        sys.exit("the official package is needed: pip install --no-deps music2latent")
    if importlib.util.find_spec("huggingface_hub") is None:
        stub = types.ModuleType("huggingface_hub")
        stub.hf_hub_download = lambda *a, **k: (_ for _ in ()).throw(
            RuntimeError("downloads disabled"))
        sys.modules["huggingface_hub"] = stub
    import music2latent.inference as inference
    import music2latent.models as models
    inference.download_model = lambda *a, **k: None  # weights come from our temp file
    import music2latent.utils as utils
    return types.SimpleNamespace(inference=inference, models=models, utils=utils)


class PeakRSS:
    """Peak resident-set increase (MiB) during a block, sampled every 2 ms from /proc."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._libc = ctypes.CDLL("libc.so.6") if platform.system() == "Linux" else None

    @staticmethod
    def rss_mib() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20

    def __enter__(self) -> "PeakRSS":
        if self._libc is not None:
            self._libc.malloc_trim(0)  # return freed heap to the OS so the baseline is honest
        self.base = self.rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss_mib() - self.base)
            time.sleep(0.002)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss_mib() - self.base)


def measure(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float, float, float]:
    """Run ``fn``; return (result, wall s, process CPU s, peak memory increase MiB): RSS on
    CPU, allocated GPU memory on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        torch.cuda.synchronize(device)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        return out, wall, cpu, (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20
    with PeakRSS() as mem:
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return out, wall, cpu, mem.peak


def music_like(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    out = np.zeros(n)
    for i in range(int(seconds * 3)):
        f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
        env = np.where(t >= i / 3, np.exp(-(t - i / 3) * 4), 0.0)
        out += sum(env * np.sin(2 * np.pi * f0 * h * (t - i / 3)) / h for h in range(1, 5))
    out += 0.01 * rng.standard_normal(n)
    return (0.5 * out / np.abs(out).max()).astype(np.float32)[None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--no-chunked", action="store_true",
                        help="skip the 'ours, chunked' rows")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32",
                        help="ours under torch.autocast(dtype) (fp16: CUDA only); the official "
                             "code autocasts to fp16 on CUDA unless fp32 and runs fp32 on CPU")
    parser.add_argument("--no-roofline", action="store_true",
                        help="skip the per-stage roofline of ours (one more encode + decode "
                             "of the first duration, profiled)")
    parser.add_argument("--official-heap-reuse", action="store_true",
                        help="run the official code inside the same heap policy as ours "
                             "(benchmark.music2latent.heap): the code-only comparison")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        # fp32 means fp32: TF32 tensor-core rounding (PyTorch's default for convolutions)
        # would make the two implementations differ by ~3e-3 on the latents.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    official_pkg = import_official()
    if args.dtype == "fp16" and device.type != "cuda":
        sys.exit("--dtype fp16 is for CUDA (on CPU: fp32 or bf16)")
    if args.dtype == "fp32":
        # the official package autocasts to fp16 on CUDA (hparams.mixed_precision = True)
        for module in (official_pkg.inference, official_pkg.utils):
            module.mixed_precision = False
    config = PRESETS["paper"]

    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else platform.processor() or platform.machine())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {where}, "
          f"{args.dtype}, load average {os.getloadavg()[0]:.1f}")
    official_model = randomize_parameters(official_pkg.models.UNet(), seed=0).eval()
    ours = Music2Latent(config)
    ours.load_state_dict(convert_official_state_dict(official_model.state_dict(), config))
    prepare_for_inference(ours.to(device))
    frontend = SpectralFrontend(config)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "music2latent.pt"
        torch.save({"gen_state_dict": official_model.state_dict()}, path)
        del official_model
        api = official_pkg.inference.EncoderDecoder(load_path_inference=str(path),
                                                    device=str(device))
    amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.dtype)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) \
        if amp_dtype is not None else contextlib.nullcontext

    official_heap = reuse_freed_memory if args.official_heap_reuse else contextlib.nullcontext
    rows = []
    for seconds in args.seconds:
        audio = music_like(seconds)
        k = frontend.latents_for_samples(audio.shape[-1])
        frames = k * config.downsample_time
        noise_shape = (1, 2, config.freq_bins, frames)

        # the closures run within this iteration; defaults bind its values all the same
        def enc_official(audio=audio):
            with official_heap():
                return api.encode(audio)

        def enc_ours(audio=audio):
            return encode_audio(ours, frontend, audio, chunk_seconds=None)

        def enc_ours_chunked(audio=audio):
            return encode_audio(ours, frontend, audio)

        z_holder: dict[str, torch.Tensor] = {}

        def dec_official(z_holder=z_holder):
            torch.manual_seed(1)
            with official_heap():
                return api.decode(z_holder["z"] / OFFICIAL_SCALE)

        def dec_ours(z_holder=z_holder, noise_shape=noise_shape):
            torch.manual_seed(1)
            return decode_latents(ours, frontend, z_holder["z"], chunk_latents=None,
                                  noise_fn=lambda step, a, b: torch.randn(noise_shape)
                                  .to(device))

        def dec_ours_chunked(z_holder=z_holder):
            return decode_latents(ours, frontend, z_holder["z"])

        cases = [("encode", "official", enc_official), ("encode", "ours", enc_ours)]
        if not args.no_chunked and seconds > 20:
            cases.append(("encode", "ours, chunked", enc_ours_chunked))
        cases += [("decode", "official", dec_official), ("decode", "ours", dec_ours)]
        if not args.no_chunked and seconds > 20:
            cases.append(("decode", "ours, chunked", dec_ours_chunked))
        results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
        outputs: dict[tuple[str, str], torch.Tensor] = {}
        warm_up = device.type == "cuda"
        # every official run first: ours change glibc's allocator settings (heap reuse, see
        # benchmark.music2latent.heap), which would otherwise carry over into the official runs
        order = [(rep, case) for who_first in (True, False)
                 for rep in range(-1 if warm_up else 0, args.repeats)
                 for case in cases if (case[1] == "official") == who_first]
        for rep, (task, who, fn) in order:
            if task == "decode" and "z" not in z_holder:  # both decoders get the same latents
                z_holder["z"] = outputs[("encode", "official")] * OFFICIAL_SCALE
            # --dtype is ours: the official code runs as it would (its own fp16 autocast on CUDA)
            with autocast() if who != "official" else contextlib.nullcontext():
                out, wall, cpu, mem = measure(fn, device)
            outputs[(task, who)] = torch.as_tensor(out).float().cpu()
            if rep < 0:  # untimed warm-up (CUDA context, cuDNN autotuning)
                continue
            results.setdefault((task, who), []).append((wall, cpu, mem))
            print(f"  {seconds:5.1f} s  {task}  {who:14s} repeat {rep}: wall {wall:7.2f} s, "
                  f"cpu {cpu:7.2f} s, peak +{mem:7.0f} MiB", flush=True)
        # identical outputs
        z_off = outputs[("encode", "official")] * OFFICIAL_SCALE
        z_ours = outputs[("encode", "ours")]
        enc_err = float((z_off - z_ours).abs().max())
        dec_err = float((outputs[("decode", "official")] - outputs[("decode", "ours")])
                        .abs().max())
        assert z_ours.shape == (1, config.latent_dim, k), z_ours.shape
        if args.dtype == "fp32":
            assert enc_err < 1e-3, f"encoder outputs differ by {enc_err}"
            assert dec_err < 1e-3, f"decoded audio differs by {dec_err}"
        for task in ("encode", "decode"):
            off = results[(task, "official")]
            for who in [w for t, w, _ in cases if t == task and w != "official"]:
                mine = results[(task, who)]
                rows.append((seconds, task, who, min(r[0] for r in off), min(r[0] for r in mine),
                             min(r[1] for r in off), min(r[1] for r in mine),
                             max(r[2] for r in off), max(r[2] for r in mine)))
        print(f"  {seconds:5.1f} s: latents {tuple(z_ours.shape)}, max |diff| latents "
              f"{enc_err:.2e}, audio {dec_err:.2e}")

    mem_kind = "GPU memory" if device.type == "cuda" else "RSS"
    print(f"\nmin over repeats; ratio = official / ours (higher is better for ours); "
          f"MiB = peak {mem_kind} increase")
    print(f"{'audio':>6} {'task':6} {'ours':14} {'wall off':>9} {'wall ours':>9} {'ratio':>6} "
          f"{'cpu off':>8} {'cpu ours':>8} {'ratio':>6} {'MiB off':>8} {'MiB ours':>8}")
    for s, task, who, w_off, w_ours, c_off, c_ours, m_off, m_ours in rows:
        print(f"{s:5.0f}s {task:6} {who:14} {w_off:9.2f} {w_ours:9.2f} {w_off / w_ours:6.2f} "
              f"{c_off:8.2f} {c_ours:8.2f} {c_off / c_ours:6.2f} {m_off:8.0f} {m_ours:8.0f}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if not args.no_roofline and device.type == "cpu":  # per-op timing needs a synchronous device
        seconds = args.seconds[0]
        audio = torch.as_tensor(music_like(seconds)).to(device)
        with autocast():
            timer, wall, _ = profile_inference(ours, frontend, audio)
        print()
        print(format_roofline(timer, wall, measure_peaks(),
                              title=f"roofline of ours, {seconds:.0f} s of audio, {args.dtype}: "
                                    "one encode + one decode, every ATen call timed"))


if __name__ == "__main__":
    main()
