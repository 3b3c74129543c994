"""Seeding and device selection -- the only process-wide state ftlab touches."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["seed_everything", "get_device", "fast_mode"]


def seed_everything(seed: int = 0, deterministic: bool = False) -> int:
    """Seed Python, NumPy and torch (CPU and all GPUs); return the seed.

    ``deterministic=True`` also asks torch for deterministic kernels -- slower on
    GPU, and only needed to reproduce a GPU run bit for bit. CPU runs are
    reproducible without it.

    >>> seed_everything(0)
    0
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    return seed


def get_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when present, else CPU.

    >>> get_device("cpu")
    device(type='cpu')
    """
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device} requested but CUDA is not available on this machine")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fast_mode() -> bool:
    """True when ``FTLAB_FAST=1``: notebooks shrink data and epochs.

    The test suite executes every lesson and exercise headless with this set, so
    a notebook reads it once at the top (``FAST = fast_mode()``) and picks small
    settings; students and instructors run the full versions.

    >>> FAST = fast_mode()  # the first cell of every lesson
    >>> epochs = 1 if FAST else 5
    """
    return os.environ.get("FTLAB_FAST", "0") not in ("", "0", "false", "False")
