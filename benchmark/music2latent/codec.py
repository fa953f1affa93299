"""Music2Latent as benchmark codecs.

- ``music2latent`` -> :class:`Music2LatentCodec`: our implementation with one of OUR
  checkpoints (saved by the trainer), or a randomly initialised model of a preset (flagged in
  ``info.description`` and ``info.weights_id``; useful for pipeline tests only).
- ``music2latent_official`` -> :class:`OfficialMusic2LatentCodec`: the same implementation
  loaded with the released weights (``music2latent.pt``, CC BY-NC 4.0) through
  :mod:`benchmark.music2latent.convert`; the official package itself is not needed.

Both are stochastic decoders: decoding draws noise, seeded per call from ``seed`` so that the
same latents always give the same audio. Latents are the encoder's tanh outputs divided by
``latent_scale`` (1 for ours; the official codec defaults to 0.06 like the official pip API,
whose latents then have roughly unit standard deviation). ``features()`` returns the
pre-bottleneck features (8192-d for the paper config), never rescaled.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from benchmark.codecs.protocol import (Codec, CodecError, CodecInfo, check_audio_batch,
                                       check_latents)
from benchmark.music2latent.config import Music2LatentConfig, get_preset
from benchmark.music2latent.convert import (OFFICIAL_URL, WEIGHTS_LICENSE,
                                            load_official_checkpoint)
from benchmark.music2latent.frontend import SpectralFrontend
from benchmark.music2latent.inference import (DEFAULT_CHUNK_SECONDS, decode_latents,
                                              encode_audio, prepare_for_inference)
from benchmark.music2latent.model import Music2Latent

#: Latent scale of the official pip API (``sigma_rescale``): latents = tanh output / 0.06.
OFFICIAL_LATENT_SCALE = 0.06


def file_sha256(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def resolve_checkpoint_option(codec: str, checkpoint: str | os.PathLike) -> Path:
    """The file meant by a codec's ``checkpoint`` option: a path, a training run folder, or the
    short name of a trained model (``<codec>-<preset>-<hash8>``, listed by
    ``python -m benchmark models``; see :mod:`benchmark.checkpoints`)."""
    from benchmark.checkpoints import CheckpointError, resolve_checkpoint

    try:
        return resolve_checkpoint(checkpoint, codec=codec)
    except CheckpointError as exc:
        raise CodecError(f"{codec}: {exc}") from exc


def _strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        for prefix in ("module.", "_orig_mod."):
            k = k.removeprefix(prefix)
        out[k] = v
    return out


def load_checkpoint(path: str | os.PathLike) -> tuple[Music2Latent, dict[str, Any]]:
    """Load one of our checkpoints: a dict with ``"config"`` (``Music2LatentConfig.to_dict()``),
    ``"model"`` (state dict) and optionally ``"ema"`` (state dict or None; preferred when
    present). Returns ``(model in eval mode, info)`` with info keys ``weights`` ("ema" or
    "model") and any ``"step"`` stored in the checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CodecError(f"music2latent: checkpoint {path} not found; train one with the "
                         "trainer (it writes checkpoints with 'config', 'model' and 'ema') or "
                         "pass preset=... for a random-weight model")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any unpickling failure with the path
        raise CodecError(f"music2latent: cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(ckpt, Mapping) or "config" not in ckpt or "model" not in ckpt:
        found = sorted(ckpt)[:10] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CodecError(f"music2latent: {path} is not a Music2Latent training checkpoint "
                         f"(need keys 'config' and 'model', found {found}); for the released "
                         "official weights use the music2latent_official codec")
    if ckpt.get("codec", "music2latent") != "music2latent":  # the trainer records the codec
        raise CodecError(f"music2latent: {path} is a checkpoint of {ckpt['codec']!r}; evaluate it "
                         f"with the {ckpt['codec']} codec")
    try:
        config = Music2LatentConfig.from_dict(ckpt["config"])
    except (TypeError, ValueError) as exc:
        raise CodecError(f"music2latent: bad 'config' in {path}: {exc}") from exc
    use_ema = ckpt.get("ema") is not None
    state = _strip_prefixes(ckpt["ema"] if use_ema else ckpt["model"])
    model = Music2Latent(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CodecError(f"music2latent: weights in {path} do not fit its config: {exc}") from exc
    return model.eval(), {"weights": "ema" if use_ema else "model", "step": ckpt.get("step")}


class SpectralModelCodec(Codec):
    """Shared plumbing of codecs built on the Music2Latent network (ours and the baselines).

    Subclasses set ``self.model`` (a :class:`Music2Latent`), ``self.frontend`` and ``self.info``.
    """

    def to(self, device: str | torch.device) -> "SpectralModelCodec":
        self.model.to(device)
        self.frontend.to(device)
        prepare_for_inference(self.model)
        return self

    def _check_audio(self, audio: torch.Tensor) -> torch.Tensor:
        audio = torch.as_tensor(audio)
        check_audio_batch(audio, self.info.name)
        need = self.frontend.samples_for_latents(1)
        if audio.shape[-1] < need:
            raise CodecError(f"{self.info.name}: {audio.shape[-1]} samples is too short; need "
                             f"at least {need} ({need / self.info.sample_rate:.3f} s at "
                             f"{self.info.sample_rate} Hz) for one latent frame")
        return audio


class Music2LatentCodec(SpectralModelCodec):
    """Our Music2Latent as a codec.

    Parameters
    ----------
    checkpoint: one of our training checkpoints (EMA weights used if present): a path, a
        training run folder, or a trained model's short name (``python -m benchmark models``).
    preset: without a checkpoint, a RANDOMLY initialised model of this preset
        (``paper``, ``cpu``, ``smoke``); for pipeline tests only.
    steps: consistency sampling steps for decoding (1 = the paper's single step).
    seed: decoding noise seed (each ``decode`` call restarts from it) and the random-init seed.
    device: torch device.
    chunk_seconds: longest audio per forward pass (longer inputs are chunked with cross-fades).
    latent_scale: latents are the encoder's tanh outputs divided by this.
    """

    name = "music2latent"
    version = "3"  # 2: noise addressed by the rows' names (input audio); 3: Winograd CPU convolutions

    def __init__(self, checkpoint: str | None = None, preset: str = "paper", steps: int = 1,
                 seed: int = 0, device: str = "cpu",
                 chunk_seconds: float = DEFAULT_CHUNK_SECONDS, latent_scale: float = 1.0
                 ) -> None:
        # The checkpoint enters the identity through info.weights_id (its hash), not its path.
        super().__init__(preset=None if checkpoint else preset, steps=steps, seed=seed,
                         chunk_seconds=chunk_seconds, latent_scale=latent_scale)
        if steps < 1:
            raise CodecError(f"{self.name}: steps must be >= 1, got {steps}")
        if latent_scale <= 0:
            raise CodecError(f"{self.name}: latent_scale must be > 0, got {latent_scale}")
        self.steps, self.seed = int(steps), int(seed)
        self.chunk_seconds, self.latent_scale = chunk_seconds, float(latent_scale)
        model, weights_id, description, license_ = self._build(checkpoint, preset, seed)
        self._finish(model, device, weights_id, description, license_)

    # -- construction -------------------------------------------------------------------------
    def _build(self, checkpoint: str | None, preset: str, seed: int
               ) -> tuple[Music2Latent, str, str, str]:
        if checkpoint is not None:
            path = resolve_checkpoint_option(self.name, checkpoint)
            model, meta = load_checkpoint(path)
            step = f", step {meta['step']}" if meta.get("step") is not None else ""
            return (model, file_sha256(path),
                    f"Music2Latent (our implementation), {meta['weights']} weights of "
                    f"{path.parent.name}/{path.name}{step}", "see training data")
        try:
            config = get_preset(preset)
        except ValueError as exc:
            raise CodecError(f"{self.name}: {exc}") from exc
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Music2Latent(config).eval()
        return (model, f"random-init:{preset}:seed{seed}",
                f"Music2Latent '{preset}' preset, RANDOM UNTRAINED WEIGHTS (no checkpoint "
                "given): numbers are meaningless", "n/a")

    def _finish(self, model: Music2Latent, device: str, weights_id: str, description: str,
                weights_license: str) -> None:
        self.model = model.to(device)
        prepare_for_inference(self.model)
        self.frontend = SpectralFrontend(model.config).to(device)
        c = model.config
        self.info = CodecInfo(
            name=self.name, sample_rate=c.sample_rate, latent_dim=c.latent_dim,
            latent_rate_hz=c.latent_rate_hz, stochastic=True, decode_steps=self.steps,
            batch_invariant=True,  # noise addressed by each item's name or latents (inference.BlockNoise)
            has_features=True, code_license="MIT", weights_license=weights_license,
            weights_id=weights_id, parameters=model.num_parameters(),
            description=description)

    # -- protocol -----------------------------------------------------------------------------
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """``[batch, samples]`` at ``info.sample_rate`` -> ``[batch, latent_dim, K]`` with
        ``K = (samples - (n_fft - hop)) // samples_per_latent``."""
        audio = self._check_audio(audio)
        z = encode_audio(self.model, self.frontend, audio, chunk_seconds=self.chunk_seconds)
        return z / self.latent_scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[batch, latent_dim, K]`` -> ``[batch, K * samples_per_latent + n_fft - hop]``;
        deterministic given ``seed``. The noise of a row is addressed by its name
        (:meth:`~benchmark.codecs.protocol.Codec.rows_named`: the engine names rows by their
        input audio) or else by its latents' content."""
        check_latents(latents, self.info.name, self.info.latent_dim)
        chunk = max(4, round(self.chunk_seconds * self.info.latent_rate_hz))
        return decode_latents(self.model, self.frontend, latents.float() * self.latent_scale,
                              steps=self.steps, seed=self.seed, chunk_latents=chunk,
                              keys=self.row_names(latents.shape[0]) if latents.ndim == 3 else None)

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """Pre-bottleneck features ``[batch, feature_dim, K]`` (8192-d for the paper config)."""
        audio = self._check_audio(audio)
        return encode_audio(self.model, self.frontend, audio, chunk_seconds=self.chunk_seconds,
                            features=True)

    def encode_with_features(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(encode(audio), features(audio))`` from one encoder pass."""
        z, features = encode_audio(self.model, self.frontend, self._check_audio(audio),
                                   chunk_seconds=self.chunk_seconds, features="both")
        return z / self.latent_scale, features


class OfficialMusic2LatentCodec(Music2LatentCodec):
    """The released Music2Latent weights in our implementation (parity-tested).

    Parameters
    ----------
    weights: local path of ``music2latent.pt`` (download it from the Hugging Face repository
        ``SonyCSLParis/music2latent``; CC BY-NC 4.0, non-commercial use only).
    latent_scale: 0.06 (default) reproduces the official pip API's latents; 1.0 gives the
        paper's raw tanh latents.
    steps, seed, device, chunk_seconds: as for :class:`Music2LatentCodec`.
    """

    name = "music2latent_official"

    def __init__(self, weights: str | None = None, steps: int = 1, seed: int = 0,
                 device: str = "cpu", chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
                 latent_scale: float = OFFICIAL_LATENT_SCALE) -> None:
        if weights is None or not Path(weights).is_file():
            where = "no path given" if weights is None else f"{weights} does not exist"
            raise CodecError(
                f"{self.name}: official weights needed ({where}). Download music2latent.pt "
                f"(233 MB, {WEIGHTS_LICENSE}, non-commercial) from {OFFICIAL_URL} and pass "
                "weights=/local/path/music2latent.pt")
        Codec.__init__(self, steps=steps, seed=seed, chunk_seconds=chunk_seconds,
                       latent_scale=latent_scale)
        if steps < 1:
            raise CodecError(f"{self.name}: steps must be >= 1, got {steps}")
        self.steps, self.seed = int(steps), int(seed)
        self.chunk_seconds, self.latent_scale = chunk_seconds, float(latent_scale)
        try:
            model = load_official_checkpoint(weights)
        except Exception as exc:  # noqa: BLE001 - name the file in every failure
            raise CodecError(f"{self.name}: cannot load {weights}: {exc}") from exc
        self._finish(model, device, file_sha256(weights),
                     "Music2Latent released weights (Pasini et al., ISMIR 2024) in our "
                     "implementation", WEIGHTS_LICENSE)
