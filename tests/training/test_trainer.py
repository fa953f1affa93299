"""Generic trainer: schedule, EMA, exact resume, accumulation, DDP, checkpoints and logs."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmark.training.checkpoint import FORMAT, load_checkpoint
from benchmark.training.command import prepare_run, run_training
from benchmark.training.config import TrainConfig, resolve_train_config
from benchmark.training.optim import ModelEMA, WarmupCosine
from benchmark.training.trainer import RunMismatchError
from tests.training.toy import register, write_tones

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _toy_registered():
    register()


@pytest.fixture
def tones(tmp_path):
    return write_tones(tmp_path / "audio")


def _state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _optimizer_equal(a: dict, b: dict) -> bool:
    if a["param_groups"] != b["param_groups"] or a["state"].keys() != b["state"].keys():
        return False
    return all(torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(b["state"][i][k]))
               for i, sa in a["state"].items() for k in sa)


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# -- schedule and EMA -----------------------------------------------------------------------
def test_warmup_cosine_closed_form():
    f = WarmupCosine(warmup=10, total=110, final_ratio=0.01)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.01 + 0.99 * 0.5)  # half-way through the cosine
    assert f(110) == pytest.approx(0.01)
    assert f(500) == pytest.approx(0.01)
    values = [f(k) for k in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_ema_warmup_decay_closed_form():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = ModelEMA(model, decay=0.5)
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # 0.1 * 0 + 0.9 * 1
    assert float(ema.module.weight) == pytest.approx(0.9)
    assert ema.current_decay() == pytest.approx(2 / 11)
    ema.update(model)  # 2/11 * 0.9 + 9/11 * 1
    assert float(ema.module.weight) == pytest.approx(2 / 11 * 0.9 + 9 / 11)
    for _ in range(20):
        ema.update(model)
    assert ema.current_decay() == 0.5  # capped at the configured decay


def test_train_config_validation_and_overrides():
    config = resolve_train_config("music2latent", "paper", ["lr=3e-4", "model.latent_dim=16", "betas=[0.8, 0.9]"])
    assert config.lr == 3e-4 and config.model == {"latent_dim": 16} and config.betas == (0.8, 0.9)
    assert config.steps == 800_000 and config.warmup_steps == 10_000 and config.final_lr == 1e-6
    assert config.ema_decay == 0.9999 and config.batch_size == 16
    with pytest.raises(ValueError, match="unknown training setting"):
        resolve_train_config("music2latent", "paper", ["lrr=1"])
    with pytest.raises(ValueError, match="unknown training preset"):
        resolve_train_config("music2latent", "gpu-huge")
    with pytest.raises(ValueError, match="divisible"):
        TrainConfig(batch_size=6, grad_accum=4)
    assert TrainConfig(seed=1).hash() != TrainConfig(seed=2).hash()
    assert TrainConfig(log_every=1).hash() == TrainConfig(log_every=7).hash()  # bookkeeping only


# -- training runs --------------------------------------------------------------------------
def test_training_reduces_loss_and_writes_everything(tones, tmp_path):
    run = prepare_run("toy", "tiny", str(tones), run_dir=tmp_path / "run", steps=30, val_every=10,
                      save_every=10, tensorboard=True)
    result = run_training(run)
    assert result.step == 30
    rows = _csv(tmp_path / "run" / "train_log.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 31))
    assert {"step", "time_s", "lr", "loss", "grad_norm", "mse"} <= rows[0].keys()
    first, last = float(rows[0]["loss"]), float(rows[-1]["loss"])
    assert last < 0.5 * first
    valid = _csv(tmp_path / "run" / "valid_log.csv")
    assert [int(r["step"]) for r in valid] == [0, 10, 20, 30]
    lsd = {int(r["step"]): float(r["lsd"]) for r in valid}
    sdr = {int(r["step"]): float(r["si_sdr"]) for r in valid}
    # the EMA model reconstructs the held-out tone better than the untrained one
    assert lsd[30] < lsd[0] - 1.0 and sdr[30] > sdr[0] + 2.0
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert {"format", "codec", "config", "train", "run", "model", "ema", "optimizer", "scaler",
            "scheduler", "step", "rng", "sampler", "best", "provenance"} <= ckpt.keys()
    assert ckpt["format"] == FORMAT and ckpt["codec"] == "toy" and ckpt["step"] == 30
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    best_step = min(lsd, key=lambda s: (lsd[s], s))
    assert best["step"] == best["best"]["step"] == best_step
    assert best["best"]["value"] == pytest.approx(lsd[best_step], rel=1e-5)
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]
    assert (tmp_path / "run" / "config.yaml").exists()
    assert (tmp_path / "run" / "best.json").exists() and run.finished()
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_is_bitwise_exact(tones, tmp_path):
    straight = prepare_run("toy", "tiny", str(tones), run_dir=tmp_path / "a")
    run_training(straight)
    split = prepare_run("toy", "tiny", str(tones), run_dir=tmp_path / "b")
    run_training(split, max_steps=3)
    assert not split.finished()
    with pytest.raises(FileExistsError, match="resume"):
        run_training(split, resume=False)
    run_training(prepare_run("toy", "tiny", str(tones), run_dir=tmp_path / "b"), resume=True)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert a["step"] == b["step"] == 6
    assert _state_equal(a["model"], b["model"])
    assert _state_equal(a["ema"], b["ema"])
    assert _optimizer_equal(a["optimizer"], b["optimizer"])
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"]
    assert a["best"] == b["best"]
    steps = [int(r["step"]) for r in _csv(tmp_path / "b" / "train_log.csv")]
    assert steps == [1, 2, 3, 4, 5, 6]  # no duplicated rows after the resume


def test_resume_refuses_another_configuration(tones, tmp_path):
    run_training(prepare_run("toy", "tiny", str(tones), run_dir=tmp_path / "r"), max_steps=3)
    other = prepare_run("toy", "tiny", str(tones), run_dir=tmp_path / "r", lr=1e-2)
    with pytest.raises(RunMismatchError, match="different"):
        run_training(other, resume=True)


def test_gradient_accumulation_matches_the_full_batch(tones, tmp_path):
    full = run_training(prepare_run("toy", "tiny", str(tones), run_dir=tmp_path / "full"))
    accum = run_training(prepare_run("toy", "tiny", str(tones), run_dir=tmp_path / "acc", grad_accum=2))
    for (name, p), q in zip(full.model.state_dict().items(), accum.model.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    changed = [not torch.equal(p, q) for p, q in zip(full.model.state_dict().values(),
                                                    _fresh_toy_state().values())]
    assert all(changed)


def _fresh_toy_state():
    from tests.training.toy import ToyTask
    torch.manual_seed(0)
    return ToyTask(None, torch.device("cpu")).model.state_dict()


def test_nan_loss_stops_with_a_clear_error(tones, tmp_path):
    run = prepare_run("toy", "tiny", str(tones), run_dir=tmp_path / "nan", lr=1e30, warmup_steps=0)
    with pytest.raises(FloatingPointError, match="loss is"):
        run_training(run)


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tones, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "tests" / "training" / "ddp_worker.py"), str(tones), str(tmp_path / "ddp"), "steps=4"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0 = torch.load(tmp_path / "ddp" / "rank0.pt")
    rank1 = torch.load(tmp_path / "ddp" / "rank1.pt")
    assert rank0["world"] == 2 and rank0["step"] == 4
    assert _state_equal(rank0["model"], rank1["model"])  # both ranks hold the same weights
    single = run_training(prepare_run("toy", "tiny", str(tones), run_dir=tmp_path / "one", steps=4))
    for name, p in single.model.state_dict().items():
        # 2 ranks x 2 examples == 1 process x 4 examples (same crops, same noise)
        torch.testing.assert_close(rank0["model"][name], p, rtol=1e-5, atol=1e-6, msg=name)
    ckpt = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert ckpt["provenance"]["world_size"] == 2 and len(ckpt["rng"]) == 2


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    from benchmark.training.checkpoint import capture_rng, restore_rng, save_checkpoint

    save_checkpoint({"rng": capture_rng()}, tmp_path / "rng.pt")
    first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == first


def test_precision_choices_on_cpu(tones, tmp_path):
    from benchmark.training.trainer import resolve_precision

    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"
    with pytest.raises(ValueError, match="CUDA"):
        resolve_precision("fp16", torch.device("cpu"))
    result = run_training(prepare_run("toy", "tiny", str(tones), run_dir=tmp_path / "bf16", precision="bf16",
                                      steps=2))
    assert result.step == 2 and all(torch.isfinite(p).all() for p in result.model.parameters())
