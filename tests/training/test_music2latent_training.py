"""Music2Latent through the training entry points (smoke preset, seconds on CPU)."""

from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from benchmark.music2latent.config import Music2LatentConfig
from benchmark.music2latent.consistency import curriculum_delta
from benchmark.music2latent.model import Music2Latent
from benchmark.music2latent.recipe import build_task
from benchmark.training import command, train
from benchmark.training.checkpoint import inference_weights, load_checkpoint
from benchmark.training.command import add_train_arguments, prepare_run, train_command
from benchmark.training.config import resolve_train_config
from benchmark.training.tasks import Batch

RATE = 16000  # the smoke model's rate


@pytest.fixture
def music(tmp_path):
    """Three 1.5 s mono clips at 16 kHz: chords with decaying notes and a little noise."""
    root = tmp_path / "music"
    root.mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(int(1.5 * RATE)) / RATE
    for i in range(3):
        y = sum(np.sin(2 * np.pi * 220 * 2 ** ((i + k * 4) / 12) * t) * np.exp(-2 * t) for k in range(3))
        y = 0.3 * y / np.abs(y).max() + 0.01 * rng.standard_normal(t.size)
        sf.write(root / f"clip{i}.wav", y.astype(np.float32), RATE)
    return root


def test_smoke_training_checkpoint_loads_and_is_cached(music, tmp_path, monkeypatch):
    best = train("music2latent", "smoke", dataset=str(music), out_dir=tmp_path / "runs", device="cpu",
                 progress=False, tensorboard=False)
    run_dir = best.parent
    assert run_dir.parent == tmp_path / "runs" and run_dir.name.startswith("music2latent-smoke-")
    for name in ("last.pt", "best.pt", "best.json", "train_log.csv", "valid_log.csv", "config.yaml"):
        assert (run_dir / name).exists(), name
    ckpt = load_checkpoint(best)
    config = Music2LatentConfig.from_dict(ckpt["config"])
    model = Music2Latent(config)
    model.load_state_dict(inference_weights(ckpt))  # strict: the EMA weights fit the model
    # the codec loads the checkpoint (weights_only) and round-trips audio through it
    from benchmark.codecs.registry import create_codec
    codec = create_codec("music2latent", checkpoint=str(best))
    audio = torch.from_numpy(sf.read(music / "clip0.wav", dtype="float32")[0][None])
    decoded = codec.decode(codec.encode(audio))
    assert decoded.ndim == 2 and torch.isfinite(decoded).all()
    record = json.loads((run_dir / "best.json").read_text())
    assert record["train_steps"] == 4 and record["train_seconds"] > 0
    assert set(record["initial_metrics"]) == {"si_sdr", "mel", "lsd", "ltas"}
    assert record["best"]["metric"] == "mel" and not record["best"]["higher_is_better"]
    with open(run_dir / "valid_log.csv", newline="") as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == [0, 2, 4]
    with open(run_dir / "train_log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["delta"]) for r in rows] == pytest.approx([0.1 ** (1 + 2 * k / 4) for k in range(4)], rel=1e-4)
    # same config and data: cache hit, nothing rewritten
    stamp = best.stat().st_mtime_ns
    t0 = time.time()
    assert train("music2latent", "smoke", dataset=str(music), out_dir=tmp_path / "runs",
                 progress=False, tensorboard=False) == best
    assert time.time() - t0 < 5 and best.stat().st_mtime_ns == stamp
    # another setting names another run, and so does another validation protocol (it picks best.pt)
    assert prepare_run("music2latent", "smoke", str(music), tmp_path / "runs", lr=5e-4).run_dir != run_dir
    assert prepare_run("music2latent", "smoke", str(music), tmp_path / "runs").run_dir == run_dir
    monkeypatch.setattr(command, "VALIDATION_VERSION", command.VALIDATION_VERSION + 1)
    assert prepare_run("music2latent", "smoke", str(music), tmp_path / "runs").run_dir != run_dir


def test_loss_uses_per_example_noise_seeds(music):
    config = resolve_train_config("music2latent", "smoke")
    torch.manual_seed(0)
    task = build_task(config, torch.device("cpu"))
    audio = torch.randn(4, task.crop_samples) * 0.1
    seeds = torch.arange(4, dtype=torch.int64) + 10
    with torch.no_grad():
        full, _ = task.loss(Batch(audio, seeds), step=1)
        halves = [task.loss(b, step=1)[0] for b in Batch(audio, seeds).split(2)]
    assert float(full) == pytest.approx(float(sum(halves) / 2), rel=1e-5)
    assert task.crop_samples == 15 * 64 + 256  # 16 smoke frames at hop 64, n_fft 256


def test_cpu_preset_cuts_the_discretisation_curriculum():
    """Short CPU runs follow the paper's exponential curriculum only down to delta 0.03 (see
    the preset's comment); the paper preset keeps the whole 0.1 -> 0.001 one."""
    config = resolve_train_config("music2latent", "cpu", {"steps": 300})
    schedule = build_task(config, torch.device("cpu")).schedule
    assert (schedule.curriculum, schedule.delta_max, schedule.delta_min) == ("exponential", 0.1, 0.03)
    assert [curriculum_delta(k, 300, schedule) for k in (0, 150, 300)] == pytest.approx(
        [0.1, 0.1 * 0.3 ** 0.5, 0.03])
    paper = resolve_train_config("music2latent", "paper")
    assert paper.loss == {} and curriculum_delta(800_000, 800_000) == pytest.approx(1e-3)


def test_cli_train_and_errors(music, tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    out = tmp_path / "cli"
    args = parser.parse_args(["--preset", "smoke", "--data", str(music), "--out", str(out), "--steps", "2",
                              "--device", "cpu", "--no-progress", "--set", "tensorboard=false"])
    assert train_command(args) == 0
    assert (out / "best.pt").exists() and load_checkpoint(out / "last.pt")["step"] == 2
    assert "untrained" in capsys.readouterr().out
    assert train_command(args) == 0 and "cache hit" in capsys.readouterr().out
    # a different config in a folder holding a run: refuse unless --resume
    args3 = parser.parse_args(["--preset", "smoke", "--data", str(music), "--out", str(out), "--steps", "3",
                               "--no-progress"])
    assert train_command(args3) == 2 and "--resume" in capsys.readouterr().err
    bad = parser.parse_args(["--preset", "nope", "--data", str(music), "--out", str(tmp_path / "x")])
    assert train_command(bad) == 2 and "unknown training preset" in capsys.readouterr().err


def test_speed_benchmark_runs_the_real_step():
    from benchmark.training.bench import measure

    r = measure("music2latent", "smoke", steps=1, device="cpu", overrides=[])
    assert r["step_wall_s"] > 0 and r["step_cpu_s"] > 0 and r["total_steps"] == 4
    assert r["projected_run_wall_s"] >= 4 * r["step_wall_s"]
