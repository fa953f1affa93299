"""A tiny training task and audio fixtures for the trainer tests (also used by the DDP worker).

``ToyTask``: a strided-conv autoencoder on 8 kHz crops of 512 samples, trained with MSE on a
noisy input (the noise comes from the per-example generators, so the DDP/accumulation
invariance of the trainer is exercised exactly as Music2Latent uses it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from benchmark.training.config import register_train_presets
from benchmark.training.tasks import Batch, example_generators, register_task
from benchmark.training.validation import reconstruction_metrics

SAMPLE_RATE = 8000
CROP = 512


class ToyTask:
    name = "toy"
    select_metric = "lsd"
    higher_is_better = False

    def __init__(self, config, device) -> None:
        self.model = nn.Sequential(
            nn.Conv1d(1, 8, 9, stride=4, padding=4), nn.Tanh(),
            nn.ConvTranspose1d(8, 1, 8, stride=4, padding=2),
        ).to(device)
        self.sample_rate = SAMPLE_RATE
        self.crop_samples = CROP
        self.device = device

    def loss(self, batch: Batch, step: int):
        gens = example_generators(batch.seeds)
        noise = torch.stack([torch.randn(batch.audio.shape[1], generator=g) for g in gens]).to(self.device)
        recon = self.model((batch.audio + 0.01 * noise)[:, None])[:, 0]
        per_example = (recon - batch.audio).pow(2).mean(dim=1)
        return per_example.mean(), {"mse": per_example.detach().mean()}

    @torch.no_grad()
    def validate(self, model, audio):
        recon = model(audio.to(self.device)[:, None])[:, 0]
        return reconstruction_metrics(audio, recon, SAMPLE_RATE)

    def config_dict(self):
        return {"kind": "toy", "sample_rate": SAMPLE_RATE}


def build_toy_task(config, device) -> ToyTask:
    return ToyTask(config, device)


TOY_PRESET = {
    "codec": "toy", "model_preset": "toy", "steps": 6, "batch_size": 4, "lr": 3e-2,
    "final_lr": 3e-3, "warmup_steps": 2, "ema_decay": 0.9, "val_every": 3, "save_every": 3,
    "val_crops": 4, "val_batch": 4, "log_every": 1, "progress": False, "tensorboard": False,
}


def register() -> None:
    register_task("toy", build_toy_task)
    register_train_presets("toy", {"tiny": TOY_PRESET})


def write_tones(root: Path, count: int = 4, seconds: float = 0.5, rate: int = SAMPLE_RATE) -> Path:
    """``count`` harmonic tones (mono WAV, different pitch and level) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    for i in range(count):
        f0 = 110.0 * 2 ** (i / 3)
        y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
        y = (0.2 + 0.1 * i) * y / np.abs(y).max()
        sf.write(root / f"tone{i}.wav", y.astype(np.float32), rate)
    return root
