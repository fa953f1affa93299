"""Converter tests that need no official package (parity against it is in test_parity.py)."""

import pytest
import torch

from benchmark.music2latent.config import PRESETS
from benchmark.music2latent.convert import (ConversionError, convert_official_state_dict,
                                            module_map, read_official_checkpoint)
from benchmark.music2latent.model import Music2Latent

# Official module names (from the released model's module tree) -> ours.
GOLDEN = {
    "encoder.down_layers.4.att.mha.in_proj": "encoder.levels.2.0.attention.qkv",
    "encoder.down_layers.7.c": "encoder.downs.3.conv",
    "encoder.bottleneck_layers.0": "encoder.bottleneck_in",
    "encoder.bottleneck_layers.4.conv2": "encoder.bottleneck.3.conv2",
    "decoder.up_layers.7.c": "decoder.ups.1.conv",
    "decoder.up_layers.8.norm1": "decoder.levels.0.0.norm1",
    "down_layers.9.c": "unet.downs.1.conv",
    "down_layers.22": "unet.down_cross.4.1",
    "up_layers.19.c": "unet.ups.0.conv",
    "up_layers.23.proj_emb": "unet.up_blocks.0.1.cond",
    "up_layers.1.att.mha.out_proj": "unet.up_blocks.4.0.attention.out",
    "scale_out.4": "unet.scale_out.4",
}


def _official_like_state(config, seed=0):
    """A state dict with the official names and shapes, built through the module map."""
    with torch.device("meta"):
        ours = Music2Latent(config).state_dict()
    inverse = {v: k for k, v in module_map(config).items()}
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, t in ours.items():
        module, _, leaf = name.rpartition(".")
        if name == "encoder.gain.gain":
            state["encoder.gain.scale"] = torch.randn(1, 1, t.numel(), 1, generator=g)
            continue
        off = inverse[module]
        if off.endswith(".in_proj"):
            off, leaf = off.removesuffix(".in_proj"), f"in_proj_{leaf}"
        state[f"{off}.{leaf}"] = torch.randn(t.shape, generator=g)
    return state


def test_golden_names():
    m = module_map(PRESETS["paper"])
    for official, ours in GOLDEN.items():
        assert m[official] == ours


def test_every_parameter_is_mapped_once():
    config = PRESETS["paper"]
    with torch.device("meta"):
        ours = {k.rpartition(".")[0] for k in Music2Latent(config).state_dict()}
    targets = list(module_map(config).values())
    assert len(targets) == len(set(targets))  # injective
    # every module of ours is reachable (the gain is handled separately: it is reshaped)
    assert sorted(ours - {"encoder.gain"} - set(targets)) == []


def test_conversion_permutes_the_decoder_projection_and_drops_dead_weights():
    config = PRESETS["smoke"]
    state = _official_like_state(config)
    rows = torch.arange(config.feature_dim, dtype=torch.float32)
    state["decoder.conv_out_bottleneck.bias"] = rows  # official row = f * C + c
    state["decoder.bottleneck_layers.0.proj_emb.weight"] = torch.zeros(7, 7)  # dead: dropped
    ours = convert_official_state_dict(state, config)
    ch, fb = config.channels[-1], config.latent_freq_bins
    bias = ours["decoder.to_2d.bias"]
    for c, f in ((0, 0), (1, 0), (0, 1), (ch - 1, fb - 1), (3, 2)):
        assert bias[c * fb + f] == f * ch + c  # ours row = c * Fb + f
    assert ours["encoder.gain.gain"].shape == (config.freq_bins,)
    model = Music2Latent(config)
    model.load_state_dict(ours, strict=True)


def test_conversion_rejects_mismatches():
    config = PRESETS["smoke"]
    state = _official_like_state(config)
    with pytest.raises(ConversionError, match="unknown official parameters"):
        convert_official_state_dict({**state, "extra_layer.weight": torch.zeros(1)}, config)
    missing = dict(state)
    missing.pop("conv_out.weight")
    with pytest.raises(ConversionError, match="missing.*unet.head_conv.weight"):
        convert_official_state_dict(missing, config)
    with pytest.raises(ConversionError, match="shape mismatches"):
        convert_official_state_dict({**state, "conv_out.bias": torch.zeros(3)}, config)
    prefixed = {f"module.{k}": v for k, v in state.items()}  # DDP prefix is stripped
    assert convert_official_state_dict(prefixed, config).keys() == \
        convert_official_state_dict(state, config).keys()


def test_reading_checkpoints_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="huggingface.co/SonyCSLParis/music2latent"):
        read_official_checkpoint(tmp_path / "music2latent.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"model": {}}, bad)
    with pytest.raises(ConversionError, match="no 'gen_state_dict'"):
        read_official_checkpoint(bad)
    good = tmp_path / "good.pt"
    torch.save({"gen_state_dict": {"conv_out.bias": torch.ones(2)}}, good)
    assert read_official_checkpoint(good)["conv_out.bias"].tolist() == [1.0, 1.0]
