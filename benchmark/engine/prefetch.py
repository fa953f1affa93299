"""Work ahead in a background thread: audio is read and resampled while the codec runs.

:func:`prefetched` drives a generator (reading files, resampling them with soxr: both release
the GIL) in one thread, ``depth`` results ahead of the consumer (the codec call in the main
thread), in order; an exception is raised in the consumer at the position where it happened.
The thread stops when the consumer stops early.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


def prefetched(work: Iterable[T], depth: int = 2) -> Iterator[T]:
    """The items of ``work``, computed up to ``depth`` ahead in a background thread."""
    out: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                out.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for value in work:
                if not put((value, None)):
                    return
        except BaseException as exc:  # handed to the consumer, in order
            put((None, exc))
            return
        put((_DONE, None))

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            value, exc = out.get()
            if exc is not None:
                raise exc
            if value is _DONE:
                return
            yield value
    finally:
        stop.set()
        thread.join(timeout=5)
