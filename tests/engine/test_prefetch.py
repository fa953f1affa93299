"""Work ahead in a background thread: same items, same order, errors where they happened."""

import threading
import time

import pytest

from benchmark.engine.prefetch import prefetched


def test_items_come_in_order_and_are_computed_ahead_in_another_thread():
    threads, started = [], []

    def work():
        for k in range(6):
            threads.append(threading.current_thread().name)
            started.append(k)
            yield k * k

    got = []
    for value in prefetched(work(), depth=2):
        time.sleep(0.02)  # the consumer is slow: the producer runs ahead, at most depth + 1
        got.append(value)
        assert len(started) <= len(got) + 3
    assert got == [k * k for k in range(6)]
    assert set(threads) == {"prefetch"}


def test_an_error_is_raised_at_its_position_and_the_thread_stops_when_the_consumer_does():
    def failing():
        yield 1
        yield 2
        raise ValueError("item 3 is corrupt")

    got = []
    with pytest.raises(ValueError, match="item 3"):
        for value in prefetched(failing()):
            got.append(value)
    assert got == [1, 2]

    produced = []

    def endless():
        k = 0
        while True:
            produced.append(k)
            yield k
            k += 1

    for value in prefetched(endless(), depth=2):
        if value == 3:
            break
    time.sleep(0.3)
    assert len(produced) <= 8  # it stopped soon after the consumer left
    assert not any(t.name == "prefetch" and t.is_alive() for t in threading.enumerate())
