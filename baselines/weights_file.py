"""Reading a weights file the user named: one place for the ``torch.load`` safety fallback."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch


def load_named_file(path: str | Path) -> Any:
    """``torch.load`` of a file the user named explicitly: ``weights_only=True`` first; released
    files whose metadata pickles more than plain containers (training logs, configs) are then
    loaded in full, with a warning saying to do that only for files from a trusted source."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        warnings.warn(f"{path}: not loadable with weights_only=True; loading the full pickle "
                      "(only do this for files from a source you trust)", stacklevel=3)
        return torch.load(path, map_location="cpu", weights_only=False)
