"""External codec adapters (``snac``, ``encodec``) against the packages' own calls.

Each model is built with random weights by the package itself, saved in the official file
format under tmp_path and loaded through our codec by path, so the loading code is tested
without any download. Parity and pipeline tests are skipped when the package is missing; the
error-message tests always run.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys

import numpy as np
import pytest
import torch

from benchmark.codecs import CodecError, create_codec
from benchmark.config import CodecSpec, DatasetSpec, RunConfig
from benchmark.engine.run import Pipeline

HAS_EINOPS = importlib.util.find_spec("einops") is not None
needs_snac = pytest.mark.skipif(importlib.util.find_spec("snac") is None or not HAS_EINOPS,
                                reason="pip install --no-deps snac==1.2.1 einops")
needs_encodec = pytest.mark.skipif(importlib.util.find_spec("encodec") is None or not HAS_EINOPS,
                                   reason="pip install --no-deps encodec==0.1.1 einops")

#: A small SNAC with the 44.1 kHz model's structure (hop 384, strides 8/4/2/1, attention
#: window 32) at 16 kHz, so that the pipeline test needs no resampling.
SNAC_CONFIG = {"sampling_rate": 16000, "encoder_dim": 8, "encoder_rates": [2, 3, 8, 8],
               "decoder_dim": 64, "decoder_rates": [8, 8, 3, 2], "attn_window_size": 32,
               "codebook_size": 64, "codebook_dim": 8, "vq_strides": [8, 4, 2, 1],
               "noise": True, "depthwise": True}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small convolutions


def signals(sample_rate: int, seconds: float = 0.5) -> torch.Tensor:
    """Two different items ``[2, samples]``: a harmonic tone with a rising envelope, and noise."""
    t = torch.arange(int(sample_rate * seconds)) / sample_rate
    tone = sum(torch.sin(2 * math.pi * 220 * k * t) / k for k in range(1, 5)) * t / seconds
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal(t.numel())).float()
    return torch.stack([0.4 * tone / tone.abs().max(), 0.2 * noise])


def read(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def check_pipeline_run(root, spec: CodecSpec, tmp_path) -> None:
    """Run the pipeline on the six-file folder: no errors, six finite per-item SI-SDRs and
    one summary row carrying the codec's weights hash."""
    cfg = RunConfig(preset="test", dataset=DatasetSpec(name="folder", root=str(root)),
                    codecs=[spec], metrics=["si_sdr"], tasks=[])
    run_dir = Pipeline(cfg, tmp_path / "results", tmp_path / "cache", progress=False,
                       log=lambda m: None).run()
    assert read(run_dir / "errors.csv") == []
    items = [r for r in read(run_dir / "items.csv") if r["metric"] == "si_sdr"]
    assert len(items) == 6 and all(math.isfinite(float(r["value"])) for r in items)
    summary = [r for r in read(run_dir / "results.csv") if r["metric"] == "si_sdr"]
    assert summary and all(r["weights_id"] == create_codec(spec.name, **spec.options).info.weights_id
                           for r in summary)


# ------------------------------------------------------------------------------------------
# errors (no package needed)
# ------------------------------------------------------------------------------------------
def test_snac_missing_weights_say_what_to_download(tmp_path):
    with pytest.raises(CodecError, match="weights needed") as err:
        create_codec("snac")
    for needed in ("https://huggingface.co/hubertsiuzdak/snac_44khz", "config.json",
                   "pytorch_model.bin", "weights="):
        assert needed in str(err.value)
    with pytest.raises(CodecError, match="not found") as err:
        create_codec("snac", weights=str(tmp_path))
    assert str(tmp_path / "config.json") in str(err.value)
    assert str(tmp_path / "pytorch_model.bin") in str(err.value)


def test_snac_missing_package_says_how_to_install(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps(SNAC_CONFIG))
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "snac", None)  # makes `import snac` raise ImportError
    with pytest.raises(CodecError, match=r"pip install --no-deps snac==1\.2\.1 einops"):
        create_codec("snac", weights=str(tmp_path))


def test_encodec_missing_weights_say_what_to_download(tmp_path):
    for weights in (None, str(tmp_path / "encodec_24khz-d7cc33bc.th")):
        with pytest.raises(CodecError, match="weights needed") as err:
            create_codec("encodec", weights=weights)
        assert ("https://dl.fbaipublicfiles.com/encodec/v0/encodec_24khz-d7cc33bc.th"
                in str(err.value))


def test_encodec_missing_package_says_how_to_install(tmp_path, monkeypatch):
    path = tmp_path / "encodec_24khz-d7cc33bc.th"
    path.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "encodec", None)
    monkeypatch.setitem(sys.modules, "encodec.model", None)
    with pytest.raises(CodecError, match=r"pip install --no-deps encodec==0\.1\.1 einops"):
        create_codec("encodec", weights=str(path))


# ------------------------------------------------------------------------------------------
# SNAC
# ------------------------------------------------------------------------------------------
def save_snac(root, config: dict, seed: int = 0):
    """A random-weight SNAC saved as a Hugging Face model folder; returns ``root``.

    Random codebooks are barely used (the untrained encoder's output is dominated by its
    biases, and SNAC matches codes by cosine), so each level's codebook is filled with its
    own projected frames of noise, as a data initialisation would: every level then picks
    varied codes and the parity checks below are not trivially met.
    """
    from snac import SNAC

    torch.manual_seed(seed)
    model = SNAC(**config).eval()
    with torch.no_grad():
        residual = model.encoder(model.preprocess(0.3 * torch.randn(2, 1, 16000)))
        for q in model.quantizer.quantizers:
            pooled = torch.nn.functional.avg_pool1d(residual, q.stride, q.stride)
            frames = q.in_proj(pooled).transpose(1, 2).reshape(-1, q.codebook_dim)
            q.codebook.weight.copy_(frames[torch.randint(len(frames), (q.codebook_size,))])
            residual = residual - q(residual)[0]
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(config))
    torch.save(model.state_dict(), root / "pytorch_model.bin")
    return root


@pytest.fixture(scope="module")
def snac_dir(tmp_path_factory):
    return save_snac(tmp_path_factory.mktemp("snac") / "snac_small", SNAC_CONFIG)


@needs_snac
def test_snac_matches_the_package(snac_dir):
    from snac import SNAC

    codec = create_codec("snac", weights=str(snac_dir), seed=3)
    reference = SNAC.from_pretrained(str(snac_dir))  # the package's own local-folder loader
    x = signals(16000)  # 8000 samples -> padded to 12288 = 384 x 32
    z = codec.encode(x)
    assert z.shape == (2, 128, 32)
    assert codec.info.latent_rate_hz == pytest.approx(16000 / 384)
    assert codec.info.stochastic and codec.info.parameters == sum(
        p.numel() for p in reference.parameters())
    with torch.inference_mode():
        ref_z = reference.encoder(reference.preprocess(x[:, None]))
        ref_codes = reference.encode(x[:, None])
    torch.testing.assert_close(z, ref_z, rtol=0, atol=1e-6)
    codes = codec.codes(z)
    assert [c.shape for c in codes] == [(2, 4), (2, 8), (2, 16), (2, 32)]
    for ours, theirs in zip(codes, ref_codes):
        assert torch.equal(ours, theirs)
    assert all(len(torch.unique(c)) > 1 for c in codes)  # the random codebooks are really used

    y = codec.decode(z)
    assert y.shape == (2, 32 * 384)
    for i in range(2):  # the package's decode with the same noise seed, item by item
        with torch.inference_mode():
            torch.manual_seed(3)
            ref_y = reference.decode([c[i:i + 1] for c in ref_codes])[:, 0]
        torch.testing.assert_close(y[i:i + 1], ref_y, rtol=0, atol=1e-6)
    torch.testing.assert_close(codec.decode(z[1:]), y[1:], rtol=0, atol=1e-6)  # batch-independent
    other_seed = create_codec("snac", weights=str(snac_dir), seed=4)
    assert (other_seed.decode(z[:1]) - y[:1]).abs().max() > 1e-4
    assert other_seed.identity != codec.identity


@needs_snac
def test_snac_loads_explicit_files_and_rejects_bad_latents(snac_dir, tmp_path):
    moved = tmp_path / "elsewhere.json"
    moved.write_text((snac_dir / "config.json").read_text())
    codec = create_codec("snac", weights=str(snac_dir / "pytorch_model.bin"), config=str(moved))
    assert codec.identity == create_codec("snac", weights=str(snac_dir)).identity
    assert "not recognised as a release" in codec.info.description
    assert codec.info.weights_license.startswith("MIT")
    with pytest.raises(CodecError, match="multiple of 32"):
        codec.decode(torch.zeros(1, 128, 31))
    with pytest.raises(CodecError, match="channels"):
        codec.decode(torch.zeros(1, 64, 32))


@needs_snac
def test_snac_speech_layout_without_attention(tmp_path):
    """The 24 kHz release's layout: 3 levels (strides 4/2/1), no attention, hop 512."""
    from snac import SNAC

    config = dict(SNAC_CONFIG, sampling_rate=24000, encoder_rates=[2, 4, 8, 8],
                  decoder_rates=[8, 8, 4, 2], attn_window_size=None, vq_strides=[4, 2, 1])
    root = save_snac(tmp_path / "snac_speech", config, seed=1)
    codec = create_codec("snac", weights=str(root))
    x = signals(24000, seconds=0.25)[:1]  # 6000 samples -> 12 frames of 512, padded to 12
    z = codec.encode(x)
    assert z.shape == (1, 128, 12) and codec.frame_multiple == 4
    assert codec.info.latent_rate_hz == pytest.approx(24000 / 512)
    ref_codes = SNAC.from_pretrained(str(root)).encode(x[:, None])
    assert all(torch.equal(a, b) for a, b in zip(codec.codes(z), ref_codes))
    assert codec.decode(z).shape == (1, 12 * 512)


@needs_snac
def test_snac_runs_through_the_pipeline(audio_folder, snac_dir, tmp_path):
    check_pipeline_run(audio_folder, CodecSpec(name="snac", options={"weights": str(snac_dir)}),
                       tmp_path)


# ------------------------------------------------------------------------------------------
# EnCodec
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def encodec_file(tmp_path_factory):
    """The package's 24 kHz model with random weights, saved as ``encodec_24khz-d7cc33bc.th``.

    Untrained EnCodec codebooks are all zero (they are k-means initialised on the first
    training batch), so each level's codebook is filled with encoder frames (level 1) or
    shrinking centred frames (the residual levels); every level then picks varied codes.
    """
    from baselines.encodec_codec import CHECKPOINT_24KHZ, build_model_24khz

    torch.manual_seed(0)
    model = build_model_24khz()
    with torch.inference_mode():
        frames = model.encoder(0.3 * torch.randn(2, 1, 24000)).transpose(1, 2).reshape(-1, 128)
    centred = frames - frames.mean(0)
    for k, layer in enumerate(model.quantizer.vq.layers):
        idx = torch.randint(len(frames), (layer._codebook.embed.shape[0],))
        layer._codebook.embed.copy_(frames[idx] if k == 0 else centred[idx] * 0.5 ** k)
    path = tmp_path_factory.mktemp("encodec") / CHECKPOINT_24KHZ
    torch.save(model.state_dict(), path)
    return path


def load_reference(path):
    from baselines.encodec_codec import build_model_24khz

    model = build_model_24khz()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


@needs_encodec
def test_encodec_matches_the_package(encodec_file):
    codec = create_codec("encodec", weights=str(encodec_file))  # 6 kbps: 8 codebooks
    reference = load_reference(encodec_file)
    reference.set_target_bandwidth(6.0)
    x = signals(24000)  # 12000 samples -> 38 frames of 320
    z = codec.encode(x)
    assert z.shape == (2, 128, 38)
    assert (codec.info.latent_rate_hz, codec.info.compression_ratio) == (75.0, 2.5)
    assert not codec.info.stochastic
    with torch.inference_mode():
        frames = reference.encode(x[:, None])
        ref_y = reference.decode(frames)[:, 0]
        ref_z = reference.encoder(x[:, None])
    torch.testing.assert_close(z, ref_z, rtol=0, atol=1e-6)
    codes = codec.codes(z)
    assert codes.shape == (2, 8, 38) and torch.equal(codes, frames[0][0])
    assert all(len(torch.unique(codes[0, k])) > 4 for k in range(8))
    y = codec.decode(z)
    assert y.shape == (2, 38 * 320)
    torch.testing.assert_close(y, ref_y, rtol=0, atol=1e-6)

    low = create_codec("encodec", weights=str(encodec_file), bandwidth=1.5)
    assert low.codes(z).shape == (2, 2, 38) and torch.equal(low.codes(z), codes[:, :2])
    assert not torch.equal(low.decode(z), y) and low.identity != codec.identity


@needs_encodec
def test_encodec_provenance_and_errors(encodec_file, tmp_path):
    codec = create_codec("encodec", weights=str(encodec_file))
    assert "NOT the released file" in codec.info.description
    assert "CC BY-NC" in codec.info.weights_license
    with pytest.raises(CodecError, match="bandwidth 5"):
        create_codec("encodec", weights=str(encodec_file), bandwidth=5)
    wrong = tmp_path / "encodec_48khz-7e698e3e.th"
    torch.save({"not": torch.zeros(1)}, wrong)
    with pytest.raises(CodecError, match="48 kHz stereo model is not supported"):
        create_codec("encodec", weights=str(wrong))


@needs_encodec
def test_encodec_import_leaves_no_torchaudio_behind():
    from baselines.encodec_codec import _TorchaudioPlaceholder, import_encodec_model

    import_encodec_model()
    assert not isinstance(sys.modules.get("torchaudio"), _TorchaudioPlaceholder)
    import encodec.utils  # bound to the placeholder at import: any use says why it fails

    with pytest.raises(AttributeError, match="torchaudio is not available"):
        encodec.utils.torchaudio.load  # noqa: B018 - the attribute access is what raises


@needs_encodec
def test_encodec_runs_through_the_pipeline(audio_folder, encodec_file, tmp_path):
    check_pipeline_run(audio_folder,
                       CodecSpec(name="encodec", options={"weights": str(encodec_file)}), tmp_path)
