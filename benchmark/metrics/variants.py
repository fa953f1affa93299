"""FAD and KAD with a fixed paper-standard backbone and per-clip pooling, each under its own name.

A run holds each metric once (results are keyed by the metric's name), so FAD over two
backbones in one run needs two names: ``fad_vggish``, ``kad_vggish``, ``fad_clap`` and
``kad_clap`` are :class:`~benchmark.metrics.fad.FAD` / :class:`~benchmark.metrics.kad.KAD`
with the backbone fixed (:data:`BACKBONES`) and the codec-paper convention of **one embedding
per clip**: the mean of the clip's patch embeddings (VGGish: 0.96 s patches; CLAP: 10 s
windows, so a 10 s clip is one window and the mean changes nothing). The set statistics are
then over clips, N = number of clips (MusicCaps: 5,521 > 128 or 512 dimensions). The engine
feeds an item segment by segment (``segment_seconds``); the mean is over all of the item's
patches, whatever the segmenting.

The backbone checkpoint is a local file: ``checkpoint=`` (a path), by default
``<weights>/<file>`` with ``<weights>`` = :func:`benchmark.config.default_weights_dir`
(``$BENCHMARK_WEIGHTS`` or ``<cache>/weights``). Building the metric checks that the file
exists (a :class:`MetricError` naming it and its download address otherwise), so a run stops
when its reconstruction stage starts rather than failing every clip hours later; the network is
read when the first clip is embedded. ``device="auto"`` (default) puts the backbone on this
process's GPU when there is one (``cuda:$LOCAL_RANK`` under torchrun); the device is not part
of the embedding cache key.

Each value's settings add ``pooling`` (compared, with the keys of the base metric) and the
card's convention says it; values of ``fad`` (patch-pooled musicnn) and ``fad_vggish`` are
different metrics and never compared.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from benchmark.metrics.base import EmbeddingSetMetric, MetricCard, MetricError, SetMetricResult
from benchmark.metrics.fad import FAD
from benchmark.metrics.kad import KAD

#: the pooling of every variant: one embedding per clip, the mean of its patches
CLIP_MEAN = "clip_mean"


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A fixed backbone: registry name, the checkpoint file expected in the weights folder and
    where to download it by hand."""

    name: str
    checkpoint_file: str
    url: str


BACKBONES: dict[str, Backbone] = {
    "vggish": Backbone("vggish", "vggish-10086976.pth",
                       "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"),
    "clap": Backbone("clap", "630k-audioset-best.pt",
                     "https://huggingface.co/lukewys/laion_clap/resolve/main/630k-audioset-best.pt"),
}


def clip_mean(embeddings: list[np.ndarray]) -> list[np.ndarray]:
    """``[patches, dim]`` per clip -> ``[1, dim]`` per clip (float64 mean)."""
    return [np.asarray(e, dtype=np.float64).mean(axis=0, keepdims=True) for e in embeddings]


def _device(device: str) -> str:
    """``"auto"``: this process's GPU (``cuda:$LOCAL_RANK`` under torchrun, else ``cuda:0``) when
    there is one, else ``"cpu"``; any other value is kept."""
    if device != "auto":
        return device
    import torch

    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"


class _FixedBackbone(EmbeddingSetMetric):
    """Mixin for an :class:`EmbeddingSetMetric`: fixed backbone, per-clip mean pooling, own name.

    Parameters
    ----------
    checkpoint: the backbone's checkpoint (default ``<weights>/<BACKBONE.checkpoint_file>``);
        it must exist.
    backbone_options: further backbone options (``batch_size``; ``checkpoint`` and ``device``
        given here win).
    device: the backbone's torch device; ``"auto"``: this process's GPU if there is one, else CPU.
    reference_name, clip_seconds, per_item, cache, and the base metric's own options (KAD's
    ``paired``): as for the base metric.
    """

    NAME: ClassVar[str]
    BACKBONE: ClassVar[Backbone]

    def __init__(self, checkpoint: str | Path | None = None, backbone_options: dict[str, Any] | None = None,
                 device: str = "auto", reference_name: str = "", clip_seconds: float | None = None,
                 per_item: bool = True, cache: bool | str = True, **options: Any) -> None:
        from benchmark.config import default_weights_dir

        if checkpoint is None:
            checkpoint = default_weights_dir() / self.BACKBONE.checkpoint_file
        if not Path(checkpoint).expanduser().is_file():
            raise MetricError(
                f"{self.NAME}: {self.BACKBONE.name} checkpoint {checkpoint} not found. Download "
                f"{self.BACKBONE.checkpoint_file} once from {self.BACKBONE.url} and put it there (the weights "
                "folder is $BENCHMARK_WEIGHTS, default <cache>/weights), or pass checkpoint=PATH "
                f"(--set metric_options.{self.NAME}.checkpoint=PATH); or leave {self.NAME} out of the metrics. "
                "Nothing is downloaded at run time")
        backbone_options = {**(backbone_options or {}), "checkpoint": str(checkpoint), "device": _device(device)}
        super().__init__(backbone=self.BACKBONE.name, backbone_options=backbone_options,
                         reference_name=reference_name, clip_seconds=clip_seconds, per_item=per_item, cache=cache,
                         **options)
        base = self.card
        self.card = MetricCard(
            name=self.NAME, unit=base.unit, higher_is_better=base.higher_is_better,
            convention=base.convention.replace(
                f"pooled per-patch {self.BACKBONE.name} embeddings",
                f"per-clip means of the {self.BACKBONE.name} patch embeddings ({CLIP_MEAN}; checkpoint "
                f"{Path(checkpoint).name})"),
            implementation=f"benchmark.metrics.variants + {base.implementation}", version=base.version)

    def _fixed_settings(self) -> dict[str, Any]:
        return {**super()._fixed_settings(), "pooling": CLIP_MEAN}

    def from_embeddings(self, ref_emb: list[np.ndarray], est_emb: list[np.ndarray], ids: list[str],
                        reference_seconds: list[float] | None = None,
                        estimate_seconds: list[float] | None = None,
                        reference_hash: str | None = None) -> SetMetricResult:
        """The base metric over per-clip means of ``[patches, dim]`` embeddings."""
        return super().from_embeddings(clip_mean(ref_emb), clip_mean(est_emb), ids, reference_seconds,
                                       estimate_seconds, reference_hash)


class FADVGGish(_FixedBackbone, FAD):
    """``fad_vggish``: FAD over per-clip mean VGGish embeddings (``vggish-10086976.pth``)."""

    NAME, BACKBONE = "fad_vggish", BACKBONES["vggish"]
    comparable_on = (*FAD.comparable_on, "pooling")


class KADVGGish(_FixedBackbone, KAD):
    """``kad_vggish``: KAD over per-clip mean VGGish embeddings (``vggish-10086976.pth``)."""

    NAME, BACKBONE = "kad_vggish", BACKBONES["vggish"]
    comparable_on = (*KAD.comparable_on, "pooling")


class FADClap(_FixedBackbone, FAD):
    """``fad_clap``: FAD over per-clip mean LAION-CLAP embeddings (``630k-audioset-best.pt``)."""

    NAME, BACKBONE = "fad_clap", BACKBONES["clap"]
    comparable_on = (*FAD.comparable_on, "pooling")


class KADClap(_FixedBackbone, KAD):
    """``kad_clap``: KAD over per-clip mean LAION-CLAP embeddings (``630k-audioset-best.pt``)."""

    NAME, BACKBONE = "kad_clap", BACKBONES["clap"]
    comparable_on = (*KAD.comparable_on, "pooling")
