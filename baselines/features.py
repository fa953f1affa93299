"""Non-learned feature baselines for probing (feature-only, ``can_decode=False``).

- ``logmel``: 128-band log-mel spectrogram (librosa, natural log, floor 1e-5).
- ``mfcc``: 20 MFCCs with first and second deltas (60 dims).
- ``chroma``: 12-bin STFT chromagram.
All at 22050 Hz, hop 512 (43 frames/s). The probes pool them over time like any latent.
"""

from __future__ import annotations

from typing import Callable

import librosa
import numpy as np
import torch

from benchmark.codecs.protocol import Codec, CodecInfo, check_audio_batch

SAMPLE_RATE = 22050
HOP = 512


class _FeatureExtractor(Codec):
    name: str
    dim: int
    describe: str

    def __init__(self, sample_rate: int = SAMPLE_RATE, hop: int = HOP) -> None:
        super().__init__(sample_rate=sample_rate, hop=hop)
        self.hop = hop
        self.info = CodecInfo(name=self.name, sample_rate=sample_rate, latent_dim=self.dim,
                              latent_rate_hz=sample_rate / hop, can_decode=False, description=self.describe)

    def _extract(self, y: np.ndarray) -> np.ndarray:  # [samples] -> [dim, frames]
        raise NotImplementedError

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        check_audio_batch(audio, self.info.name)
        feats = [self._extract(y) for y in audio.numpy()]
        return torch.from_numpy(np.stack(feats).astype(np.float32))


class LogMelFeatures(_FeatureExtractor):
    name, dim, describe = "logmel", 128, "128-band log-mel spectrogram (probing only)"

    def _extract(self, y):
        mel = librosa.feature.melspectrogram(y=y, sr=self.info.sample_rate, n_fft=2048, hop_length=self.hop,
                                             n_mels=self.dim)
        return np.log(np.maximum(mel, 1e-5))


class MFCCFeatures(_FeatureExtractor):
    name, dim, describe = "mfcc", 60, "20 MFCCs + deltas + delta-deltas (probing only)"

    def _extract(self, y):
        mfcc = librosa.feature.mfcc(y=y, sr=self.info.sample_rate, n_mfcc=20, hop_length=self.hop)
        width = min(9, mfcc.shape[1] - (1 - mfcc.shape[1] % 2))
        if width < 3:  # clips shorter than 3 frames: no meaningful deltas
            return np.concatenate([mfcc, np.zeros_like(mfcc), np.zeros_like(mfcc)])
        return np.concatenate([mfcc, librosa.feature.delta(mfcc, width=width),
                               librosa.feature.delta(mfcc, order=2, width=width)])


class ChromaFeatures(_FeatureExtractor):
    name, dim, describe = "chroma", 12, "12-bin STFT chromagram (probing only)"

    def _extract(self, y):
        return librosa.feature.chroma_stft(y=y, sr=self.info.sample_rate, n_fft=2048, hop_length=self.hop)


FEATURES: dict[str, Callable[..., Codec]] = {c.name: c for c in (LogMelFeatures, MFCCFeatures, ChromaFeatures)}
