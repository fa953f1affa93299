"""Training one probe head: standardisation, Adam, early stopping, checkpoint selection.

Protocol (convention 5 of the house style):

1. standardise features with the mean and standard deviation of the *train* split only;
2. train with Adam (full batch, or shuffled mini-batches) on the task's loss;
3. after every epoch score the validation split with the task's primary metric and keep a
   copy of the best weights (ties keep the earlier epoch); stop after ``patience`` epochs
   without improvement;
4. restore the best weights. The caller evaluates that checkpoint once on test.

If the primary metric is undefined on the validation split (e.g. no tag has a positive
validation item), the checkpoint is chosen by the lowest validation loss instead, and the
result says so.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Sequence

import numpy as np
import torch

from benchmark.probes.heads import build_head


@dataclasses.dataclass
class Standardizer:
    """Per-feature affine map ``(x - mean) / std`` fitted on train features ``[n, dim]``.

    A feature that is constant on train (std below ``eps``) keeps scale 1, so it cannot
    blow up on other splits.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x_train: np.ndarray, eps: float = 1e-8) -> "Standardizer":
        x = np.asarray(x_train, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"Standardizer.fit needs [n >= 1, dim] features, got {x.shape}")
        std = x.std(axis=0)
        return cls(mean=x.mean(axis=0), std=np.where(std < eps, 1.0, std))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.std).astype(np.float32)


@dataclasses.dataclass
class TrainedProbe:
    """A trained head (best checkpoint restored) and its training record."""

    model: torch.nn.Module
    best_epoch: int
    best_valid: float
    selection: str              # "valid_<metric>" or "valid_loss"
    epochs_run: int
    history: list[float]        # validation criterion per epoch (higher is better)
    train_time_s: float


def _batches(n: int, batch_size: int | None, gen: torch.Generator):
    if batch_size is None or batch_size >= n:
        yield None
        return
    perm = torch.randperm(n, generator=gen)
    for start in range(0, n, batch_size):
        yield perm[start:start + batch_size]


def train_probe(task, head: str, x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray,
                y_valid: np.ndarray, classes: Sequence, seed: int, *, lr: float = 1e-3,
                weight_decay: float = 0.0, max_epochs: int = 300, patience: int = 30,
                batch_size: int | None = None, hidden: int = 512, dropout: float = 0.5,
                min_delta: float = 0.0, device: str = "cpu") -> TrainedProbe:
    """Train head ``head`` on standardised features and return the best validation checkpoint.

    Parameters
    ----------
    task: a :class:`tasks.base.Task` (loss, scores, metrics, primary metric).
    x_train, x_valid: ``[n, dim]`` float32, already standardised.
    y_train, y_valid: targets from ``task.targets``.
    seed: seeds the head's initialisation, dropout and batch order (torch's global RNG is
        left as it was).
    """
    t0 = time.perf_counter()
    dev = torch.device(device)
    xt = torch.as_tensor(x_train, device=dev)
    xv = torch.as_tensor(x_valid, device=dev)
    yt = torch.as_tensor(y_train, device=dev)
    yv = torch.as_tensor(y_valid, device=dev)
    loss_fn = task.loss()
    with torch.random.fork_rng(devices=[] if dev.type == "cpu" else [dev]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = build_head(head, xt.shape[1], len(classes), hidden=hidden, dropout=dropout).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        best, best_state, best_epoch, wait = -math.inf, None, 0, 0
        history: list[float] = []
        selection = f"valid_{task.primary_metric}"
        epoch = 0
        for epoch in range(1, max_epochs + 1):
            model.train()
            for idx in _batches(len(xt), batch_size, gen):
                xb, yb = (xt, yt) if idx is None else (xt[idx], yt[idx])
                loss = loss_fn(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                logits = model(xv)
                criterion = float("nan")
                if selection != "valid_loss":
                    scores = task.scores(logits).cpu().numpy()
                    criterion = float(task.metrics(y_valid, scores, classes)[task.primary_metric])
                    if not math.isfinite(criterion) and epoch == 1:
                        selection = "valid_loss"
                if selection == "valid_loss":
                    criterion = -float(loss_fn(logits, yv))
            if not math.isfinite(criterion):
                raise RuntimeError(f"probe {head} diverged at epoch {epoch} (non-finite validation "
                                   "criterion); lower the learning rate")
            history.append(criterion)
            if criterion > best + min_delta:
                best, best_epoch, wait = criterion, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                wait += 1
                if wait >= patience:
                    break
        model.load_state_dict(best_state)
        model.eval()
    return TrainedProbe(model=model, best_epoch=best_epoch, best_valid=best, selection=selection,
                        epochs_run=epoch, history=history, train_time_s=time.perf_counter() - t0)


def predict_scores(task, model: torch.nn.Module, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Task scores (probabilities) ``[n, n_classes]`` float32 of a trained head on ``x``."""
    model.eval()
    with torch.no_grad():
        logits = model(torch.as_tensor(x, device=torch.device(device)))
        return task.scores(logits).cpu().numpy().astype(np.float32)

