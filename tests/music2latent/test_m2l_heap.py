""":func:`benchmark.music2latent.heap.reuse_freed_memory`: the glibc ``mallopt`` calls it makes
(on a fake libc), its switch-off, the real allocator inside it, and its use by the inference
API."""

from __future__ import annotations

import ctypes
import os
import threading

import pytest
import torch

from benchmark.music2latent import heap, kernels
from benchmark.music2latent.config import get_preset
from benchmark.music2latent.frontend import SpectralFrontend
from benchmark.music2latent.heap import heap_reuse_available, reuse_freed_memory
from benchmark.music2latent.inference import decode_latents, encode_audio
from benchmark.music2latent.model import Music2Latent, randomize_parameters

ENTRY = [("mallopt", heap.M_MMAP_MAX, 0), ("mallopt", heap.M_TRIM_THRESHOLD, (1 << 31) - 1)]
RESTORE = [("mallopt", heap.M_MMAP_MAX, 65536), ("mallopt", heap.M_MMAP_THRESHOLD, 32 << 20),
           ("mallopt", heap.M_TRIM_THRESHOLD, 64 << 20), ("malloc_trim", 0)]


class FakeLibc:
    """Records ``mallopt`` / ``malloc_trim`` calls instead of making them."""

    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


@pytest.fixture
def fake_libc(monkeypatch):
    monkeypatch.delenv("BENCHMARK_HEAP_REUSE", raising=False)
    libc = FakeLibc()
    monkeypatch.setattr(heap, "_libc", lambda: libc)
    assert heap._depth == 0
    yield libc
    assert heap._depth == 0  # every test leaves the depth balanced


def test_mallopt_parameters_are_glibcs():
    assert (heap.M_TRIM_THRESHOLD, heap.M_MMAP_THRESHOLD, heap.M_MMAP_MAX) == (-1, -3, -4)
    assert heap.UNBOUNDED_TRIM == 2 ** 31 - 1  # fits mallopt's int


def test_nested_contexts_set_once_and_restore_once(fake_libc):
    assert heap_reuse_available()
    with reuse_freed_memory():
        assert fake_libc.calls == ENTRY
        with reuse_freed_memory():
            with reuse_freed_memory():
                assert heap._depth == 3
            assert fake_libc.calls == ENTRY  # inner exits restore nothing
        assert fake_libc.calls == ENTRY
    assert fake_libc.calls == ENTRY + RESTORE
    # a second outermost use sets and restores again
    with reuse_freed_memory():
        pass
    assert fake_libc.calls == 2 * (ENTRY + RESTORE)


def test_restores_when_the_body_raises(fake_libc):
    with pytest.raises(KeyError, match="boom"):
        with reuse_freed_memory():
            with reuse_freed_memory():
                raise KeyError("boom")
    assert fake_libc.calls == ENTRY + RESTORE
    with pytest.raises(ValueError):
        with reuse_freed_memory():
            with pytest.raises(KeyError):  # inner failure handled inside the outer context
                with reuse_freed_memory():
                    raise KeyError("inner")
            assert fake_libc.calls == ENTRY + RESTORE + ENTRY
            raise ValueError("outer")
    assert fake_libc.calls == 2 * (ENTRY + RESTORE)


def test_threads_share_one_setting(fake_libc):
    inside, release = threading.Barrier(3), threading.Event()

    def worker():
        with reuse_freed_memory():
            inside.wait(timeout=10)
            release.wait(timeout=10)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait(timeout=10)  # both workers are inside
    assert fake_libc.calls == ENTRY and heap._depth == 2
    release.set()
    for t in threads:
        t.join(timeout=10)
    assert fake_libc.calls == ENTRY + RESTORE


def test_switched_off_by_environment(fake_libc, monkeypatch):
    monkeypatch.setenv("BENCHMARK_HEAP_REUSE", "0")
    assert not heap_reuse_available()
    with reuse_freed_memory():
        with reuse_freed_memory():
            assert heap._depth == 0
    with pytest.raises(RuntimeError):
        with reuse_freed_memory():
            raise RuntimeError
    assert fake_libc.calls == []
    monkeypatch.setenv("BENCHMARK_HEAP_REUSE", "1")
    with reuse_freed_memory():
        pass
    assert fake_libc.calls == ENTRY + RESTORE


def test_no_op_without_glibc(monkeypatch):
    monkeypatch.delenv("BENCHMARK_HEAP_REUSE", raising=False)
    monkeypatch.setattr(heap, "_libc", lambda: None)
    assert not heap_reuse_available()
    with reuse_freed_memory():
        assert heap._depth == 0


# -- the real allocator ----------------------------------------------------------------------
class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _mallinfo():
    mallinfo2 = getattr(heap._libc(), "mallinfo2", None)
    if mallinfo2 is None:
        return None
    mallinfo2.restype = _MallInfo2
    return mallinfo2()


def _mmapped_bytes():
    """glibc's count of bytes in mmap-ed chunks (None if ``mallinfo2`` is missing)."""
    info = _mallinfo()
    return None if info is None else info.hblkhd


def _free_heap_bytes():
    """Bytes glibc holds free in its main arena, ready for reuse (None without ``mallinfo2``)."""
    info = _mallinfo()
    return None if info is None else info.fordblks


def _rss_bytes():
    """Resident set size of this process (None where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


@pytest.mark.skipif(not heap_reuse_available(), reason="no glibc / switched off")
def test_real_allocator_inside_and_after():
    n = 16 << 20  # 64 MiB of float32
    mib64 = n * 4
    small = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    before = small.clone()
    mmapped0 = _mmapped_bytes()
    with reuse_freed_memory():
        with reuse_freed_memory():
            rss0 = _rss_bytes()
            maps = []
            for i in range(3):
                maps.append(torch.full((n,), float(i)))
                if mmapped0 is not None:  # taken from the heap, not a fresh mmap
                    assert _mmapped_bytes() - mmapped0 < mib64
            for i, t in enumerate(maps):
                u = t * 2 + 1
                assert u[0].item() == u[-1].item() == 2 * i + 1
                assert int(u.sum().item()) == n * (2 * i + 1)
                del u
            del maps, t
            rss_freed = _rss_bytes()
            free_bytes = _free_heap_bytes()
            if free_bytes is not None:  # freed maps stay in the heap for reuse, not unmapped
                assert free_bytes >= 3 * mib64
        kept = torch.arange(n, dtype=torch.float32)
    rss_exit = _rss_bytes()
    if rss0 is not None:  # the outermost exit hands the unused heap back (malloc_trim)
        assert rss_freed - rss_exit > mib64
    assert torch.equal(small, before)
    assert kept[-1].item() == n - 1 and kept[12345].item() == 12345
    del kept
    # after exit the process still allocates (and frees) big blocks
    t = torch.ones(2 * n)
    assert t.sum().item() == 2 * n
    del t
    assert heap._depth == 0


# -- use by the inference API ----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    config = get_preset("smoke")
    return config, randomize_parameters(Music2Latent(config), seed=2).eval(), SpectralFrontend(config)


def _record_depth(monkeypatch, model, name, seen):
    real = getattr(model, name)

    def wrapped(*args, **kwargs):
        seen.append(heap._depth)
        return real(*args, **kwargs)

    monkeypatch.setattr(model, name, wrapped)


@pytest.fixture
def as_wide(monkeypatch):
    """Make the tiny model count as wide (the heap policy is for models the Winograd path pays
    off for)."""
    if not kernels.winograd_available():
        pytest.skip("NNPACK not available: no model counts as wide")
    monkeypatch.setattr(kernels, "WINOGRAD_MIN_CHANNELS", 1)


def test_encode_and_decode_run_inside_the_context(tiny, fake_libc, monkeypatch, as_wide):
    config, model, frontend = tiny
    seen = []
    for name in ("encode", "decode_pyramid", "denoise"):
        _record_depth(monkeypatch, model, name, seen)
    wave = 0.3 * torch.randn(1, frontend.samples_for_latents(3), generator=torch.Generator().manual_seed(0))
    z = encode_audio(model, frontend, wave, chunk_seconds=None)
    assert fake_libc.calls == ENTRY + RESTORE
    assert seen == [1]  # the model ran inside it
    fake_libc.calls.clear()
    seen.clear()
    audio = decode_latents(model, frontend, z, steps=2, chunk_latents=None)
    assert fake_libc.calls == ENTRY + RESTORE
    assert seen == [1, 1, 1]  # decode_pyramid, denoise x 2
    assert audio.shape == (1, frontend.samples_for_latents(3))

    # with the context switched off the results are identical
    monkeypatch.setenv("BENCHMARK_HEAP_REUSE", "0")
    fake_libc.calls.clear()
    torch.testing.assert_close(encode_audio(model, frontend, wave, chunk_seconds=None), z,
                               rtol=0, atol=0)
    torch.testing.assert_close(decode_latents(model, frontend, z, steps=2, chunk_latents=None),
                               audio, rtol=0, atol=0)
    assert fake_libc.calls == []


def test_narrow_models_leave_the_allocator_alone(tiny, fake_libc):
    config, model, frontend = tiny
    assert not kernels.winograd_pays_off(config.channels)
    wave = 0.3 * torch.randn(1, frontend.samples_for_latents(3), generator=torch.Generator().manual_seed(0))
    decode_latents(model, frontend, encode_audio(model, frontend, wave, chunk_seconds=None))
    assert fake_libc.calls == []


def test_encode_and_decode_enter_the_context_manager(tiny, monkeypatch, as_wide):
    config, model, frontend = tiny
    entered = []
    real = heap.reuse_freed_memory

    def counting():
        entered.append(1)
        return real()

    monkeypatch.setattr(heap, "reuse_freed_memory", counting)
    wave = 0.3 * torch.randn(1, frontend.samples_for_latents(3), generator=torch.Generator().manual_seed(1))
    z = encode_audio(model, frontend, wave, chunk_seconds=None)
    assert len(entered) == 1
    decode_latents(model, frontend, z, chunk_latents=None)
    assert len(entered) == 2
