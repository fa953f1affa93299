"""Training of learned codecs: a generic trainer, crop sampling, and per-codec tasks.

- :func:`train` (``benchmark.training.command``): train a codec with a preset and return the
  best checkpoint (cached by a hash of config and data); also ``python -m benchmark train``.
- :class:`~benchmark.training.trainer.Trainer`: RAdam, warm-up + cosine LR, EMA, mixed
  precision, gradient accumulation, DDP (torchrun), CSV/TensorBoard logs, atomic checkpoints,
  exact resume.
- :class:`~benchmark.training.tasks.TrainingTask` and :data:`~benchmark.training.tasks.TASKS`:
  what a codec implements to be trainable. Each model's recipe (task + presets) lives next to
  the model (:mod:`benchmark.music2latent.recipe`, :mod:`baselines.autoencoders.recipes`) and is
  imported through the registry's ``"module:function"`` strings only: this package imports no
  model.
- :class:`~benchmark.training.data.CropSampler`: deterministic random crops of audio files.
"""

from benchmark.training.command import train
from benchmark.training.config import TRAIN_PRESETS, TrainConfig, register_train_presets, resolve_train_config
from benchmark.training.tasks import TASKS, Batch, TrainingTask, register_task
from benchmark.training.trainer import Trainer, TrainResult

__all__ = ["train", "Trainer", "TrainResult", "TrainConfig", "TRAIN_PRESETS", "register_train_presets",
           "resolve_train_config", "TASKS", "TrainingTask", "Batch", "register_task"]
