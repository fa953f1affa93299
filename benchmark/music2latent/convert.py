"""Load the released Music2Latent checkpoint into our implementation.

The official checkpoint (``music2latent.pt``, 233 MB, CC BY-NC 4.0, from the Hugging Face
repository ``SonyCSLParis/music2latent``) is a pickled dict whose ``"gen_state_dict"`` holds
the weights of the official ``UNet`` module (encoder, decoder and consistency network). Our
module tree is organised differently (per-level lists instead of one flat list per path), so
the converter maps every official name to ours. Three things are not a pure renaming:

1. The decoder's 1-D -> 2-D projection ``conv_out_bottleneck`` (8192 rows) is reshaped by the
   official code with row index ``freq * channels + channel``; ours uses the encoder's order
   ``channel * freq_rows + freq``. The rows of weight and bias are permuted accordingly.
2. The decoder's bottleneck blocks carry noise-conditioning layers (``proj_emb``, 0.53 M
   parameters) that the official forward pass never uses; we do not build them and drop them.
3. The encoder's per-frequency gain is stored as ``[1, 1, bins, 1]``; ours is ``[bins]``.

Everything else (attention ``in_proj`` = our fused ``qkv`` in q, k, v order) is copied as is.
The mapping is generated from a :class:`Music2LatentConfig`, so it also serves any config the
official code can express; it is checked for completeness and shapes before anything loads.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch

from benchmark.errors import BenchmarkError
from benchmark.music2latent.config import Music2LatentConfig, PRESETS
from benchmark.music2latent.model import Music2Latent

OFFICIAL_URL = "https://huggingface.co/SonyCSLParis/music2latent/resolve/main/music2latent.pt"
WEIGHTS_LICENSE = "CC BY-NC 4.0"

_RESBLOCK = {"conv1": "conv1", "conv2": "conv2", "norm1": "norm1", "norm2": "norm2",
             "res_conv": "skip", "proj_emb": "cond", "att.norm": "attention.norm",
             "att.mha.out_proj": "attention.out"}


class ConversionError(BenchmarkError, ValueError):
    """The official state dict does not fit the expected architecture."""


def _resblock_map(off: str, ours: str) -> dict[str, str]:
    """Module-prefix map of one residual block (parameter suffixes appended later)."""
    m = {f"{off}.{a}": f"{ours}.{b}" for a, b in _RESBLOCK.items()}
    m[f"{off}.att.mha.in_proj"] = f"{ours}.attention.qkv"
    return m


def module_map(config: Music2LatentConfig) -> dict[str, str]:
    """Official module prefix -> our module prefix, generated from ``config``."""
    c = config
    top = c.levels - 1
    m: dict[str, str] = {"encoder.conv_inp": "encoder.stem",
                         "encoder.prenorm_1d_to_2d": "encoder.norm",
                         "encoder.bottleneck_layers.0": "encoder.bottleneck_in",
                         "encoder.norm_out": "encoder.bottleneck_norm",
                         "encoder.conv_out": "encoder.to_latent",
                         "decoder.conv_inp": "decoder.from_latent",
                         "decoder.conv_out_bottleneck": "decoder.to_2d",
                         "conv_inp": "unet.stem", "conv_decoded": "unet.head_cross",
                         "norm_out": "unet.head_norm", "conv_out": "unet.head_conv"}
    for i in range(c.bottleneck_blocks):
        m.update(_resblock_map(f"encoder.bottleneck_layers.{i + 1}", f"encoder.bottleneck.{i}"))
        m.update(_resblock_map(f"decoder.bottleneck_layers.{i}", f"decoder.bottleneck.{i}"))
    for mlp_name, ours in (("emb_proj", "cond_mlp"), ("scale_inp", "scale_in"),
                           ("scale_out", "scale_out")):
        for k in range(0, 5, 2):
            m[f"{mlp_name}.{k}"] = f"unet.{ours}.{k}"
    # Encoder: [blocks of level 0, down 0, blocks of level 1, down 1, ...]
    idx = 0
    for lvl in range(c.levels):
        for j in range(c.encoder_layers[lvl]):
            m.update(_resblock_map(f"encoder.down_layers.{idx}", f"encoder.levels.{lvl}.{j}"))
            idx += 1
        if lvl < top:
            m[f"encoder.down_layers.{idx}.norm"] = f"encoder.downs.{lvl}.norm"
            m[f"encoder.down_layers.{idx}.c"] = f"encoder.downs.{lvl}.conv"
            idx += 1
    # Decoder: [blocks of the top level, up, ..., blocks of level 0]
    idx = 0
    for lvl in range(top, -1, -1):
        for j in range(c.encoder_layers[lvl]):
            m.update(_resblock_map(f"decoder.up_layers.{idx}", f"decoder.levels.{lvl}.{j}"))
            idx += 1
        if lvl > 0:
            m[f"decoder.up_layers.{idx}.c"] = f"decoder.ups.{lvl}.conv"
            idx += 1
    # UNet down: per level [cross 1x1, block] * n, then the downsampler.
    idx = 0
    for lvl in range(c.levels):
        for j in range(c.unet_layers[lvl]):
            m[f"down_layers.{idx}"] = f"unet.down_cross.{lvl}.{j}"
            m.update(_resblock_map(f"down_layers.{idx + 1}", f"unet.down_blocks.{lvl}.{j}"))
            idx += 2
        if lvl < top:
            m[f"down_layers.{idx}.c"] = f"unet.downs.{lvl}.conv"
            idx += 1
    idx = 0
    for lvl in range(top, -1, -1):
        for j in range(c.unet_layers[lvl]):
            m[f"up_layers.{idx}"] = f"unet.up_cross.{lvl}.{j}"
            m.update(_resblock_map(f"up_layers.{idx + 1}", f"unet.up_blocks.{lvl}.{j}"))
            idx += 2
        if lvl > 0:
            m[f"up_layers.{idx}.c"] = f"unet.ups.{lvl - 1}.conv"
            idx += 1
    return m


def _is_dead(name: str) -> bool:
    """Official parameters that the official forward pass never uses."""
    return name.startswith("decoder.bottleneck_layers.") and ".proj_emb." in name


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor],
                                config: Music2LatentConfig | None = None
                                ) -> dict[str, torch.Tensor]:
    """Official ``UNet`` state dict -> state dict of our :class:`Music2Latent`.

    Parameters
    ----------
    state_dict: ``checkpoint["gen_state_dict"]`` of ``music2latent.pt`` (keys may carry a
        ``module.`` or ``_orig_mod.`` prefix from DDP / torch.compile; it is stripped).
    config: architecture the weights belong to (default: the ``paper`` preset).

    Raises
    ------
    ConversionError: on unknown or missing parameters, or shape mismatches.
    """
    config = config or PRESETS["paper"]
    prefixes = module_map(config)
    expected = _expected_shapes(config)
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for raw_name, tensor in state_dict.items():
        name = raw_name
        for strip in ("module.", "_orig_mod."):
            name = name.removeprefix(strip)
        if _is_dead(name):
            continue
        module, _, leaf = name.rpartition(".")
        if name == "encoder.gain.scale":
            out["encoder.gain.gain"] = tensor.reshape(-1)
            continue
        if module.endswith("att.mha") and leaf.startswith("in_proj_"):
            module, leaf = f"{module}.in_proj", leaf.removeprefix("in_proj_")
        target = prefixes.get(module)
        if target is None:
            unknown.append(raw_name)
            continue
        ours = f"{target}.{leaf}"
        if target == "decoder.to_2d":
            # official row = f * C + c  ->  ours row = c * Fb + f
            fb, ch = config.latent_freq_bins, config.channels[-1]
            tensor = tensor.reshape(fb, ch, *tensor.shape[1:]).transpose(0, 1).reshape(
                tensor.shape)
        out[ours] = tensor
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} unknown official parameters, e.g. {unknown[:5]}")
    missing = sorted(set(expected) - set(out))
    if missing:
        problems.append(f"{len(missing)} parameters missing, e.g. {missing[:5]}")
    bad = [f"{k}: official {tuple(out[k].shape)} vs ours {tuple(expected[k])}"
           for k in sorted(set(out) & set(expected)) if out[k].shape != expected[k]]
    if bad:
        problems.append(f"{len(bad)} shape mismatches, e.g. {bad[:5]}")
    extra = sorted(set(out) - set(expected))
    if extra:
        problems.append(f"{len(extra)} mapped names that our model lacks, e.g. {extra[:5]}")
    if problems:
        raise ConversionError("official state dict does not match the Music2Latent config: "
                              + "; ".join(problems))
    # no copies: load_state_dict copies into the model's own storage anyway
    return {k: v.detach().float() for k, v in out.items()}


def _expected_shapes(config: Music2LatentConfig) -> dict[str, torch.Size]:
    with torch.device("meta"):
        model = Music2Latent(config)
    return {k: v.shape for k, v in model.state_dict().items()}


def read_official_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The ``gen_state_dict`` of an official checkpoint file, with a clear error if absent."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"official Music2Latent weights not found at {path}. Download music2latent.pt "
            f"(233 MB, {WEIGHTS_LICENSE}) from {OFFICIAL_URL} on a machine with internet "
            "access and pass its local path")
    try:
        checkpoint: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - the released file pickles more than tensors
        warnings.warn(f"{path}: not loadable with weights_only=True; loading the full pickle "
                      "(only do this for files from a source you trust)", stacklevel=2)
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(checkpoint, Mapping) and "gen_state_dict" in checkpoint:
        return dict(checkpoint["gen_state_dict"])
    keys = list(checkpoint)[:10] if isinstance(checkpoint, Mapping) else type(checkpoint)
    raise ConversionError(f"{path} is not an official Music2Latent checkpoint: no "
                          f"'gen_state_dict' key (found {keys})")


def load_official_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu"
                             ) -> Music2Latent:
    """Build our :class:`Music2Latent` (``paper`` config) with the released weights, in eval
    mode on ``device``."""
    config = PRESETS["paper"]
    state = convert_official_state_dict(read_official_checkpoint(path), config)
    model = Music2Latent(config)
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)
