"""Test codecs registered by import path (``tests.plugins:Name``), exercising the plugin route."""

from __future__ import annotations

import numpy as np
import torch

from benchmark.codecs.protocol import Codec, CodecError, CodecInfo
from benchmark.metrics.base import MetricCard, SetMetric, SetMetricResult


class CountingCodec(Codec):
    """Identity-like codec that counts calls (class-level, so tests can read them)."""

    encode_calls = 0
    decode_calls = 0

    def __init__(self, sample_rate: int = 16000, gain: float = 1.0) -> None:
        super().__init__(sample_rate=sample_rate, gain=gain)
        self.gain = gain
        self.info = CodecInfo(name="counting", sample_rate=sample_rate, latent_dim=1,
                              latent_rate_hz=float(sample_rate))

    def encode(self, audio):
        type(self).encode_calls += audio.shape[0]
        return audio[:, None, :] * self.gain

    def decode(self, latents):
        type(self).decode_calls += latents.shape[0]
        return latents[:, 0, :]


class NaNCodec(CountingCodec):
    """Encoder that diverges: NaN latents for every item louder than 0.5 peak."""

    def encode(self, audio):
        z = super().encode(audio)
        loud = audio.abs().amax(dim=1) > 0.5
        z[loud] = float("nan")
        return z


class CrashingCodec(CountingCodec):
    """Decoder raising for every item (a codec that crashes)."""

    def decode(self, latents):
        raise CodecError("decoder exploded")


class InterruptingCodec(CountingCodec):
    """Raises KeyboardInterrupt once ``limit`` items were encoded (simulates a killed run)."""

    limit = 3

    def encode(self, audio):
        if type(self).encode_calls >= type(self).limit:
            raise KeyboardInterrupt
        return super().encode(audio)


class CroppingCodec(CountingCodec):
    """Decoder that drops the last ``crop`` samples (like Music2Latent's frame crop)."""

    def __init__(self, sample_rate: int = 16000, crop: int = 100) -> None:
        super().__init__(sample_rate=sample_rate)
        self._config["crop"] = crop
        self.crop = crop
        self.info = CodecInfo(name="cropping", sample_rate=sample_rate, latent_dim=1,
                              latent_rate_hz=float(sample_rate))

    def decode(self, latents):
        return super().decode(latents)[:, :-self.crop]


class ReferenceLengthMetric(SetMetric):
    """Set metric recording the lengths it was given (to test what set metrics receive)."""

    card = MetricCard(name="reference_length", unit="samples", higher_is_better=True,
                      convention="total reference samples", implementation="tests.plugins",
                      version="1")

    def compute(self, references, estimates, sample_rate, ids=None):
        assert all(r.shape == e.shape for r, e in zip(references, estimates))
        tails = [float(np.abs(e[-50:]).max()) for e in estimates]
        return SetMetricResult(value=float(sum(r.size for r in references)),
                               settings={"reference_lengths": [int(r.size) for r in references],
                                         "max_tail": max(tails)})


# -- adversarial codecs: each must score no better than an honest codec doing the same work ------
class TruncatingCodec(CountingCodec):
    """Returns only the first ``keep`` fraction of its input, perfectly (a decoder that drops audio)."""

    def __init__(self, sample_rate: int = 16000, keep: float = 0.55) -> None:
        super().__init__(sample_rate=sample_rate)
        self._config["keep"] = keep
        self.keep = keep

    def decode(self, latents):
        audio = super().decode(latents)
        return audio[:, : int(audio.shape[1] * self.keep)]


class LongItemCrashCodec(CountingCodec):
    """Raises on inputs longer than ``max_seconds`` (fails exactly on the hard, long items)."""

    def __init__(self, sample_rate: int = 16000, max_seconds: float = 0.6) -> None:
        super().__init__(sample_rate=sample_rate)
        self._config["max_seconds"] = max_seconds
        self.max_samples = int(max_seconds * sample_rate)

    def encode(self, audio):
        if audio.shape[1] > self.max_samples:
            raise CodecError(f"input of {audio.shape[1]} samples is too long for this codec")
        return super().encode(audio)


class QuietNaNCodec(CountingCodec):
    """Returns NaN audio for every input quieter than ``level`` peak (the codec diverges)."""

    def __init__(self, sample_rate: int = 16000, level: float = 0.4) -> None:
        super().__init__(sample_rate=sample_rate)
        self._config["level"] = level
        self.level = level

    def decode(self, latents):
        audio = super().decode(latents).clone()
        audio[audio.abs().amax(dim=1) < self.level] = float("nan")
        return audio


class DelayCodec(CountingCodec):
    """Output lags the input by ``delay`` samples (the output keeps the input's length);
    ``declare=True`` states the delay in ``CodecInfo.delay_samples``."""

    def __init__(self, sample_rate: int = 16000, delay: int = 160, declare: bool = True) -> None:
        super().__init__(sample_rate=sample_rate)
        self._config.update(delay=delay, declare=declare)
        self.delay = delay
        self.info = CodecInfo(name="delay", sample_rate=sample_rate, latent_dim=1, latent_rate_hz=float(sample_rate),
                              delay_samples=delay if declare else 0)

    def decode(self, latents):
        audio = super().decode(latents)
        return torch.nn.functional.pad(audio, (self.delay, 0))[:, : audio.shape[1]]


class LateCrashCodec(CountingCodec):
    """Raises on every call after its first ``after`` encode calls (a codec that dies mid-item,
    when some of the item's chunks were already decoded)."""

    def __init__(self, sample_rate: int = 16000, after: int = 10) -> None:
        super().__init__(sample_rate=sample_rate)
        self._config["after"] = after
        self.after = after
        self.calls = 0

    def encode(self, audio):
        self.calls += 1
        if self.calls > self.after:
            raise CodecError(f"crashed on call {self.calls}")
        return super().encode(audio)


from benchmark.embeddings.base import EmbeddingBackbone  # noqa: E402  (appended section)


class BandEnergyBackbone(EmbeddingBackbone):
    """Cheap deterministic FAD backbone for pipeline tests: per 0.1 s frame at 8 kHz, log energy
    in 8 FFT bands (no weights, no downloads)."""

    name = "band-energy"
    sample_rate = 8000
    dim = 8
    patch_seconds = 0.1

    def embed_at_rate(self, audio):
        frames = audio[: audio.size // 800 * 800].reshape(-1, 800)
        spec = np.abs(np.fft.rfft(frames, axis=1))[:, 1:401] ** 2
        return np.log10(spec.reshape(len(frames), 8, 50).sum(2) + 1e-6).astype(np.float32)


class ChunkOffsetCodec(CountingCodec):
    """Identity plus ``step`` x (its call index): every decoded sample tells which codec call
    (chunk) it came from, so a cross-fade can be checked sample by sample."""

    def __init__(self, sample_rate: int = 16000, step: float = 0.01) -> None:
        super().__init__(sample_rate=sample_rate)
        self._config["step"] = step
        self.step = step
        self.calls = 0

    def decode(self, latents):
        audio = super().decode(latents) + self.step * self.calls
        self.calls += 1
        return audio


class NoisyCodec(CountingCodec):
    """Adds white noise at ``snr_db`` below each channel's RMS: a codec of known quality whose
    "training runs" (seeds, SNR offsets) are cheap to replicate. ``per_item``: each item's noise
    comes from ``(seed, its content)`` (batch-invariant, declared); otherwise one draw from ``seed``
    for the whole batch, so an item's noise depends on its row (not declared invariant)."""

    def __init__(self, sample_rate: int = 16000, snr_db: float = 20.0, seed: int = 0, per_item: bool = True) -> None:
        super().__init__(sample_rate=sample_rate)
        self._config.update(snr_db=snr_db, seed=seed, per_item=per_item)
        self.snr_db, self.seed, self.per_item = snr_db, seed, per_item
        self.info = CodecInfo(name="noisy", sample_rate=sample_rate, latent_dim=1, latent_rate_hz=float(sample_rate),
                              stochastic=True, batch_invariant=True if per_item else None)

    def decode(self, latents):
        audio = latents[:, 0, :]
        rows = audio.numpy()
        if self.per_item:
            keys = [int.from_bytes(r.tobytes()[:64].ljust(8, b"0")[:8], "little") for r in rows]
            noise = np.stack([np.random.default_rng([self.seed, k]).standard_normal(r.shape)
                              for k, r in zip(keys, rows)])
        else:
            noise = np.random.default_rng(self.seed).standard_normal(rows.shape)
        rms = audio.pow(2).mean(dim=-1, keepdim=True).sqrt()
        return audio + torch.from_numpy(noise.astype(np.float32)) * rms * 10 ** (-self.snr_db / 20)
