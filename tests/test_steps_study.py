"""Quality versus decoding steps and seed variance (benchmark.engine.steps), on a codec whose
decoding noise has a known closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from benchmark.codecs.protocol import Codec, CodecInfo
from benchmark.data.dataset import Item
from benchmark.engine.steps import steps_study, summarize_steps_study

RATE = 16000


class NoisyCodec(Codec):
    """Identity codec whose decoder adds white noise of std ``0.1 / steps`` drawn from ``seed``:
    SI-SDR rises by 20 log10(2) = 6.02 dB per doubling of the steps."""

    encodes = 0

    def __init__(self, steps: int = 1, seed: int = 0) -> None:
        super().__init__(steps=steps, seed=seed)
        self.steps, self.seed = steps, seed
        self.info = CodecInfo(name="noisy", sample_rate=RATE, latent_dim=1,
                              latent_rate_hz=float(RATE), stochastic=True, decode_steps=steps,
                              weights_id="fixed")

    def encode(self, audio):
        type(self).encodes += 1
        return audio[:, None, :]

    def decode(self, latents):
        g = torch.Generator().manual_seed(self.seed)
        return latents[:, 0] + 0.1 / self.steps * torch.randn(latents[:, 0].shape, generator=g)


class SeedOnlyCodec(NoisyCodec):
    """A single-pass stochastic decoder: seeded noise of std 0.1, no ``steps`` option."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(steps=1, seed=seed)
        self.info = CodecInfo(name="seed_only", sample_rate=RATE, latent_dim=1,
                              latent_rate_hz=float(RATE), stochastic=True, weights_id="fixed")


@pytest.fixture
def items(tmp_path):
    out = []
    t = np.arange(RATE // 2) / RATE
    for i in range(3):
        y = 0.5 * np.sin(2 * np.pi * 220 * (i + 1) * t)
        path = tmp_path / f"tone{i}.wav"
        sf.write(path, y.astype(np.float32), RATE, subtype="FLOAT")
        out.append(Item(id=f"tone{i}", path=path, split="test"))
    return out


def test_steps_study_rows_summary_and_closed_form(items):
    NoisyCodec.encodes = 0
    specs = [{"name": "tests.test_steps_study:NoisyCodec", "label": "noisy"},
             {"name": "baselines.identity:IdentityCodec", "options": {"sample_rate": RATE}}]
    rows = steps_study(specs, items, steps=(1, 2, 4), seeds=(0, 1, 2), metrics=["si_sdr"])
    assert len(rows) == 3 * 3 * 3 + 3  # noisy: steps x seeds x items; identity: items
    assert NoisyCodec.encodes == 3  # latents computed once per (weights, item)
    summary = {(r["codec"], r["steps"]): r for r in summarize_steps_study(rows)}
    ident = summary["baselines.identity:IdentityCodec", None]
    assert ident["mean"] == 150.0 and ident["nfe"] is None and math.isnan(ident["seed_std"])
    means = [summary["noisy", s]["mean"] for s in (1, 2, 4)]
    # signal power 0.125, noise power (0.1 / steps)^2 -> 10 log10(12.5 steps^2) dB
    for s, m in zip((1, 2, 4), means):
        assert m == pytest.approx(10 * math.log10(12.5 * s * s), abs=0.3)
    assert summary["noisy", 4]["nfe"] == 4 and summary["noisy", 1]["n_seeds"] == 3
    # seed_std: std (ddof 1) over seeds of the per-seed item mean, recomputed by hand
    per_seed = [np.mean([r["value"] for r in rows if r["codec"] == "noisy" and r["steps"] == 2
                         and r["seed"] == seed]) for seed in (0, 1, 2)]
    assert summary["noisy", 2]["seed_std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert 0 < summary["noisy", 2]["seed_std"] < 0.5


def test_errors(items):
    with pytest.raises(ValueError, match="set metric"):
        steps_study(["tests.test_steps_study:NoisyCodec"], items, metrics=["fad"])
    with pytest.raises(ValueError, match="unique"):
        steps_study(["tests.test_steps_study:NoisyCodec"] * 2, items)
    with pytest.raises(ValueError, match="steps >= 1"):
        steps_study(["tests.test_steps_study:NoisyCodec"], items, steps=(0,))


def test_single_pass_stochastic_decoder_varies_the_seed_only(items):
    rows = steps_study(["tests.test_steps_study:SeedOnlyCodec"], items, steps=(1, 2, 4),
                       seeds=(0, 1, 2), metrics=["si_sdr"])
    assert len(rows) == 3 * 3  # seeds x items, no steps axis
    assert {r["steps"] for r in rows} == {None} and {r["seed"] for r in rows} == {0, 1, 2}
    (summary,) = summarize_steps_study(rows)
    assert summary["steps"] is None and summary["n_seeds"] == 3
    assert summary["mean"] == pytest.approx(10 * math.log10(12.5), abs=0.3)  # noise std 0.1
    assert 0 < summary["seed_std"] < 0.5
