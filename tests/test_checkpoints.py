"""One checkpoints folder, one listing, one resolver: train -> list -> load by short name."""

from __future__ import annotations

import argparse
import hashlib
import json

import numpy as np
import pytest
import soundfile as sf

from benchmark import cli
from benchmark.checkpoints import (CheckpointError, default_checkpoints_dir, list_models,
                                   resolve_checkpoint, short_name)
from benchmark.codecs.protocol import CodecError
from benchmark.codecs.registry import create_codec
from benchmark.training import train
from benchmark.training.command import add_train_arguments, prepare_run, train_command

RATE = 16000  # the smoke model's rate


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A smoke-preset Music2Latent trained by the `train` command into the default checkpoints
    folder of a fresh cache (``$BENCHMARK_CACHE``); seconds on CPU."""
    root = tmp_path_factory.mktemp("ckpt")
    music = root / "music"
    music.mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(int(1.2 * RATE)) / RATE
    for i in range(3):
        y = np.sin(2 * np.pi * 220 * 2 ** (i / 12) * t) * np.exp(-2 * t) + 0.01 * rng.standard_normal(t.size)
        sf.write(music / f"clip{i}.wav", (0.3 * y).astype(np.float32), RATE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCHMARK_CACHE", str(root / "cache"))
        parser = argparse.ArgumentParser()
        add_train_arguments(parser)
        args = parser.parse_args(["--codec", "music2latent", "--preset", "smoke", "--data", str(music),
                                  "--device", "cpu", "--no-progress", "--set", "tensorboard=false"])
        assert train_command(args) == 0
        run = prepare_run("music2latent", "smoke", str(music), overrides=["tensorboard=false"])
        yield {"root": root, "music": music, "cache": root / "cache", "run": run}


@pytest.fixture
def cache(trained, monkeypatch):
    monkeypatch.setenv("BENCHMARK_CACHE", str(trained["cache"]))
    return trained["cache"]


def test_train_writes_to_the_checkpoints_folder_and_lists_the_model(trained, cache):
    run = trained["run"]
    assert default_checkpoints_dir() == cache / "checkpoints"
    name = short_name("music2latent", "smoke", run.run_id)
    assert name == f"music2latent-smoke-{run.run_id[:8]}" and run.run_dir == cache / "checkpoints" / name
    (model,) = list_models()
    assert model.name == name and model.codec == "music2latent" and model.preset == "smoke"
    assert model.path == run.run_dir / "best.pt" and model.path.is_file()
    record = json.loads((run.run_dir / "best.json").read_text())
    assert model.steps == record["train_steps"] == 4 and model.train_seconds == record["train_seconds"] > 0
    assert model.metric == "mel" and model.higher_is_better is False
    assert model.value == pytest.approx(record["best"]["value"]) and 0 < model.best_step <= 4
    assert model.trained_at == record["finished_at"] and model.run == run.run_id
    assert list_models(trained["root"] / "nowhere") == []


def test_a_model_trained_by_train_is_reused_by_run(trained, cache):
    """`run` trains into <cache>/checkpoints too: same recipe and data -> the same run, no training."""
    run = trained["run"]
    stamp = (run.run_dir / "best.pt").stat().st_mtime_ns
    best = train("music2latent", "smoke", dataset=str(trained["music"]), out_dir=cache / "checkpoints",
                 progress=False, tensorboard=False)
    assert best == run.run_dir / "best.pt" and best.stat().st_mtime_ns == stamp


def test_codecs_load_a_model_by_short_name(trained, cache):
    model = list_models()[0]
    by_name = create_codec("music2latent", checkpoint=model.name)
    by_path = create_codec("music2latent", checkpoint=str(model.path))
    by_folder = create_codec("music2latent", checkpoint=str(model.run_dir))
    digest = hashlib.sha256(model.path.read_bytes()).hexdigest()
    assert by_name.info.weights_id == by_path.info.weights_id == by_folder.info.weights_id == digest
    assert by_name.identity == by_path.identity  # the name is not part of the cache key, the weights are
    assert model.name in by_name.info.description


def test_unknown_names_list_the_trained_models(trained, cache):
    name = list_models()[0].name
    with pytest.raises(CheckpointError, match=f"neither a file nor the short name.*{name}"):
        resolve_checkpoint("music2latent-smoke-00000000")
    expected = f"music2latent: .*trained music2latent models in .*: {name}.*benchmark models"
    with pytest.raises(CodecError, match=expected):
        create_codec("music2latent", checkpoint="music2latent-smoke-00000000")
    with pytest.raises(CodecError, match=r"nope\.pt not found.*" + name):
        create_codec("music2latent", checkpoint=str(trained["root"] / "nope.pt"))
    # a music2latent model is not a spectral_ae one, and the listing for spectral_ae is empty
    with pytest.raises(CodecError, match=f"{name} is a music2latent model, not a spectral_ae one"):
        create_codec("spectral_ae", checkpoint=name)
    with pytest.raises(CodecError, match="no trained spectral_ae models .*--codec spectral_ae"):
        create_codec("spectral_ae", checkpoint="spectral_ae-smoke-00000000")


def test_models_command_lists_names(trained, cache, capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    model = list_models()[0]
    assert model.name in out and str(model.path) in out and "mel" in out
    assert cli.main(["models", "--folder", str(trained["root"] / "empty")]) == 0
    assert "no trained models" in capsys.readouterr().out


def test_short_names_are_folder_safe():
    assert short_name("my_pkg.recipe:build_task", "tiny", "0123456789abcdef") == \
        "my_pkg.recipe_build_task-tiny-01234567"
    with pytest.raises(ValueError):
        short_name("vae", "cpu", "abc")
