import dataclasses

import pytest

from benchmark.music2latent.config import PRESETS, Music2LatentConfig, get_preset, norm_groups


def test_paper_derived_values():
    c = PRESETS["paper"]
    assert (c.sample_rate, c.hop, c.n_fft, c.freq_bins) == (44100, 512, 2048, 1024)
    assert c.channels == (64, 128, 256, 256, 256)
    assert c.downsample_time == 8 and c.downsample_freq == 32 and c.latent_freq_bins == 32
    assert c.samples_per_latent == 4096 and c.edge_samples == 1536
    assert c.feature_dim == 8192
    assert c.latent_rate_hz == pytest.approx(10.7666, abs=1e-4)
    assert c.crop_samples == 34304  # 64 frames = 0.78 s, the official training crop
    # 64x fewer numbers than the waveform
    assert c.sample_rate / (c.latent_dim * c.latent_rate_hz) == pytest.approx(64.0)


def test_cpu_preset_keeps_the_paper_compression_ratio():
    for name in ("paper", "cpu"):
        c = PRESETS[name]
        assert c.samples_per_latent / c.latent_dim == pytest.approx(64.0), name
    assert PRESETS["cpu"].latent_rate_hz == pytest.approx(31.25)


def test_norm_groups_rule():
    assert [norm_groups(c) for c in (4, 8, 64, 128, 256, 512)] == [1, 2, 16, 32, 32, 32]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_dict_round_trip(name):
    c = PRESETS[name]
    assert Music2LatentConfig.from_dict(c.to_dict()) == c
    assert Music2LatentConfig.from_dict(c.to_dict(derived=True)) == c


def test_from_dict_rejects_unknown_and_contradicting_keys():
    d = PRESETS["paper"].to_dict()
    with pytest.raises(ValueError, match="unknown keys"):
        Music2LatentConfig.from_dict({**d, "hop_size": 256})
    with pytest.raises(ValueError, match="freq_bins"):
        Music2LatentConfig.from_dict({**d, "freq_bins": 1025})


@pytest.mark.parametrize("changes, message", [
    ({"freq_downsample": (1, 0, 0)}, "freq_downsample needs 4"),
    ({"unet_layers": (2, 2, 2, 2)}, "unet_layers needs 5"),
    ({"attention_levels": (5,)}, "attention_levels"),
    ({"heads": 3}, "heads=3"),
    ({"n_fft": 2000}, "multiple"),
    ({"crop_frames": 60}, "crop_frames"),
])
def test_invalid_configs_raise(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(PRESETS["paper"], **changes)


def test_get_preset():
    assert get_preset("paper", latent_dim=32).latent_dim == 32
    with pytest.raises(ValueError, match="known presets: cpu, paper, smoke"):
        get_preset("huge")
