from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread: small models are fastest that way, and it does not
    fight other jobs for the cores."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def audio_folder(tmp_path):
    """Six 0.5 s mono 16 kHz WAVs: harmonic tones of different pitch and level."""
    root = tmp_path / "audio"
    root.mkdir()
    sr = 16000
    t = np.arange(sr // 2) / sr
    for i in range(6):
        f0 = 110.0 * 2 ** (i / 3)
        y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
        y = (0.3 + 0.05 * i) * y / np.abs(y).max()
        sf.write(root / f"tone{i}.wav", y.astype(np.float32), sr)
    return root
