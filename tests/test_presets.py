"""The `paper` and `musiccaps` presets: every learned codec and FAD backbone is a file in the weights
folder ($BENCHMARK_WEIGHTS); without it, building the codec (or metric) fails naming the file and
where to get it, and a run goes on with the other codecs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from benchmark.codecs.protocol import CodecError
from benchmark.codecs.registry import create_codec
from benchmark.config import load_preset
from benchmark.metrics import MetricError, create_metric
from tests.data.test_loaders_musiccaps import musiccaps_tree

FILE_OPTIONS = ("checkpoint", "weights")
#: learned codec -> the file each preset names for it (relative to the weights folder)
LEARNED = {
    "music2latent": "music2latent-paper.pt",
    "music2latent_official": "music2latent.pt",
    "spectral_ae": "spectral_ae-paper.pt",
    "vae": "vae-paper.pt",
    "diffusion_ae": "diffusion_ae-paper.pt",
    "dac": "weights_44khz_8kbps_0.0.1.pth",
    "stable_audio_vae": "stable-audio-open-1.0/model.safetensors",
    "codicodec": "codicodec.pt",
}
#: what each missing-file message must say besides the path: where to get the file or how to train it
HINT = {name: "python -m benchmark train --codec " + name for name in ("music2latent", "spectral_ae", "vae",
                                                                         "diffusion_ae")}
HINT.update(music2latent_official="huggingface.co/SonyCSLParis/music2latent",
            dac="github.com/descriptinc/descript-audio-codec/releases",
            stable_audio_vae="huggingface.co/stabilityai/stable-audio-open-1.0",
            codicodec="huggingface.co/SonyCSLParis/codicodec")


@pytest.fixture
def weights(tmp_path, monkeypatch):
    """An empty weights folder, and a cache without trained models."""
    monkeypatch.setenv("BENCHMARK_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("BENCHMARK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "weights"


def file_codecs(preset: str) -> dict[str, tuple[str, str]]:
    """codec label -> (option, path) of the preset's codecs that need a file."""
    out = {}
    for spec in load_preset(preset).codecs:
        for option in FILE_OPTIONS:
            if option in spec.options:
                out[spec.display] = (option, spec.options[option])
    return out


@pytest.mark.parametrize("preset", ["paper", "musiccaps"])
def test_presets_name_each_learned_codec_in_the_weights_folder(preset, weights):
    cfg = load_preset(preset)
    assert cfg.preset == preset and cfg.device == "cuda"
    assert {label: Path(path) for label, (_, path) in file_codecs(preset).items()} == {
        name: weights / rel for name, rel in LEARNED.items()}
    assert not any(spec.train for spec in cfg.codecs)  # paper size: trained once, given as files
    assert {"identity", "opus-6k", "mp3-64k"} <= {spec.display for spec in cfg.codecs}
    assert cfg.reference_codec in {spec.display for spec in cfg.codecs}


def test_musiccaps_preset_settings(weights):
    cfg = load_preset("musiccaps")
    assert cfg.dataset.name == "musiccaps" and cfg.dataset.options == {"subset": "all", "split": "test"}
    assert cfg.metrics == ["si_sdr", "visqol", "fad_vggish", "kad_vggish", "fad_clap", "kad_clap"]
    assert cfg.metric_options["visqol"] == {"mode": "audio"} and cfg.tasks == []
    for name, file in [("fad_vggish", "vggish-10086976.pth"), ("kad_vggish", "vggish-10086976.pth"),
                       ("fad_clap", "630k-audioset-best.pt"), ("kad_clap", "630k-audioset-best.pt")]:
        assert cfg.metric_options[name] == {"checkpoint": str(weights / file), "clip_seconds": 10.0}
    # one codec list for both presets (paper adds the probing-only feature baselines and Griffin-Lim)
    paper = [(c.name, c.label, c.options) for c in load_preset("paper").codecs]
    assert [(c.name, c.label, c.options) for c in cfg.codecs] == [
        c for c in paper if c[0] not in ("mel_griffinlim", "logmel", "mfcc", "chroma")]


@pytest.mark.parametrize("name", sorted(LEARNED))
def test_learned_codec_without_its_file_names_it(name, weights):
    option, path = file_codecs("musiccaps")[name]
    assert not Path(path).exists()
    with pytest.raises(CodecError) as err:
        create_codec(name, **{option: path})
    assert path in str(err.value) and HINT[name] in str(err.value)


@pytest.mark.parametrize("name", ["fad_vggish", "kad_vggish", "fad_clap", "kad_clap"])
def test_backbone_metric_without_its_checkpoint_names_it(name, weights):
    options = load_preset("musiccaps").metric_options[name]
    with pytest.raises(MetricError, match=f"checkpoint {options['checkpoint']} not found. Download"):
        create_metric(name, cache=False, **options)


def test_run_goes_on_without_the_learned_codecs_files(tmp_path, weights):
    from benchmark.cli import main

    root = musiccaps_tree(tmp_path / "musiccaps")
    code = main(["run", "reconstruction", "--preset", "musiccaps", "--dataset-root", str(root), "--device", "cpu",
                 "--codecs", "identity,music2latent,dac,mp3-64k", "--metrics", "si_sdr", "--cache",
                 str(tmp_path / "cache"), "--results", str(tmp_path / "results"), "--quiet"])
    assert code == 0
    run_dir = next((tmp_path / "results").glob("musiccaps-*"))
    with open(run_dir / "errors.csv", newline="") as fh:
        errors = {row["codec_label"]: row for row in csv.DictReader(fh)}
    assert set(errors) == {"music2latent", "dac"} and {e["stage"] for e in errors.values()} == {"build"}
    assert str(weights / "music2latent-paper.pt") in errors["music2latent"]["error"]
    with open(run_dir / "results.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["metric"] == "si_sdr" and r["stage"] == "reconstruction"]
    scored = {r["codec_label"]: r for r in rows}
    assert set(scored) == {"identity", "mp3-64k"} and all(int(float(r["n"])) == 5 for r in rows)
