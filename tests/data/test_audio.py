"""``benchmark.data.audio``: the streaming resampler FIFO."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from benchmark.data.audio import AudioError, ResampleFifo, resample


@pytest.mark.parametrize("rate_in,rate_out", [(44100, 16000), (16000, 44100), (22050, 24000)])
def test_resample_fifo_pieces_equal_whole_file_resampling(rate_in, rate_out):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3 * rate_in + 17)).astype(np.float32)
    fifo = ResampleFifo(2, rate_in, rate_out)
    cuts = [0, 1, 5000, 5001, 20000, 41000, x.shape[1]]
    popped = []
    for a, b in itertools.pairwise(cuts):
        fifo.push(x[:, a:b], last=b == x.shape[1])
        while fifo.size:
            popped.append(fifo.pop(777))  # pops of another size than the pushes
    assert fifo.closed and fifo.size == 0 and all(p.shape[1] <= 777 for p in popped)
    np.testing.assert_array_equal(np.concatenate(popped, axis=1), resample(x, rate_in, rate_out))


def test_resample_fifo_at_equal_rates_passes_audio_through():
    x = np.arange(10, dtype=np.float32).reshape(1, 10)
    fifo = ResampleFifo(1, 16000, 16000)
    fifo.push(x[:, :4])
    fifo.push(x[:, 4:], last=True)
    np.testing.assert_array_equal(fifo.pop(3), x[:, :3])
    np.testing.assert_array_equal(fifo.pop(100), x[:, 3:])
    assert fifo.pop(5).shape == (1, 0)
    with pytest.raises(AudioError, match="after the last"):
        fifo.push(x)
    with pytest.raises(AudioError, match=r"expected \[2, samples\]"):
        ResampleFifo(2, 16000, 8000).push(x)
