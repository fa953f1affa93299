"""Reuse of freed activation memory during CPU inference (glibc's malloc).

A 10 s decode at the paper settings allocates and frees some 100 maps of 50-230 MiB. glibc
serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and
returns it to the kernel on ``free``, so each new map is first-touched page by page: the
kernel's page faults and zeroing cost about as much as two or three elementwise passes over the
map, and on 2 cores they were ~30 % of a decode's wall time. (PyTorch's CPU performance guide
recommends swapping in jemalloc or tcmalloc for this reason; this module does the equivalent
without a preloaded library.)

:func:`reuse_freed_memory` is a context manager that, while it is open, makes ``malloc`` take
big blocks from the process heap (``M_MMAP_MAX = 0``) and keep freed ones there for the next
allocation (``M_TRIM_THRESHOLD`` unbounded). On exit it hands the unused heap back to the
kernel (``malloc_trim``) and leaves the allocator in the state glibc's own dynamic threshold
converges to for large allocations (mmap above 32 MiB, trim above 64 MiB; a ``mallopt`` call
switches the dynamic adjustment off for good, so the exit state is set explicitly). The values
computed are identical; the price is memory: freed blocks wait in the heap for reuse, and the
peak resident set of a 10 s paper-configuration encode / decode grows by ~25 % / ~10 % (see
``docs/speed.md``). On other C libraries, or with ``BENCHMARK_HEAP_REUSE=0`` in the
environment, it does nothing.

:func:`~benchmark.music2latent.inference.encode_audio` and
:func:`~benchmark.music2latent.inference.decode_latents` run inside it on CPU for wide models
(the paper configuration; see ``_heap_policy`` there): small models' maps gain nothing from it,
and handing the heap back after every call made their many small encodes slower.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import threading
from typing import Iterator

__all__ = ["reuse_freed_memory", "heap_reuse_available"]

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
#: glibc's defaults / converged dynamic values restored on exit
DEFAULT_MMAP_MAX = 65536
CONVERGED_MMAP_THRESHOLD = 32 << 20
CONVERGED_TRIM_THRESHOLD = 64 << 20
UNBOUNDED_TRIM = (1 << 31) - 1  # mallopt takes an int

_lock = threading.Lock()
_depth = 0


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()  # glibc only (musl and others lack it)
    except (OSError, AttributeError):
        return None
    return libc


def heap_reuse_available() -> bool:
    """Whether :func:`reuse_freed_memory` acts here (glibc, not switched off by
    ``BENCHMARK_HEAP_REUSE=0``)."""
    return os.environ.get("BENCHMARK_HEAP_REUSE", "1") != "0" and _libc() is not None


@contextlib.contextmanager
def reuse_freed_memory() -> Iterator[None]:
    """Keep freed memory in the heap for reuse while the block runs (see the module docstring).
    Re-entrant and thread-safe: the outermost exit restores the allocator."""
    global _depth
    libc = _libc() if heap_reuse_available() else None
    if libc is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            libc.mallopt(M_MMAP_MAX, 0)
            libc.mallopt(M_TRIM_THRESHOLD, UNBOUNDED_TRIM)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
                libc.mallopt(M_MMAP_THRESHOLD, CONVERGED_MMAP_THRESHOLD)
                libc.mallopt(M_TRIM_THRESHOLD, CONVERGED_TRIM_THRESHOLD)
                libc.malloc_trim(0)
