"""Scoring a model: loss and accuracy, class probabilities, and the no-grad mode both need.

Evaluation is kept apart from training because every part of the course uses
it -- after ``fit``, on cached features, on a test set touched once -- and it
must leave the model as it found it (train/eval mode included).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .batches import check_targets, logits_of, make_loader, to_device
from .precision import amp_dtype, autocast
from .utils import get_device

__all__ = ["inference", "evaluate", "predict"]


@contextlib.contextmanager
def inference(model: nn.Module, device: str | torch.device | None = None) -> Iterator[torch.device]:
    """Model on ``device`` in eval mode, without gradients, for the block; its train/eval mode is restored after."""
    device = get_device(device)
    model.to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield device
    finally:
        model.train(was_training)


def evaluate(
    model: nn.Module,
    data: Dataset | DataLoader,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    collate_fn: Callable | None = None,
    amp: bool | str = True,
) -> dict[str, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``data``."""
    total_loss, correct, n = 0.0, 0, 0
    with inference(model, device) as device:
        dtype = amp_dtype(device, amp)
        for x, y in make_loader(data, batch_size, False, collate_fn):
            with autocast(device, dtype):
                logits = logits_of(model, to_device(x, device))
            check_targets(logits, y)
            y = y.to(device)
            total_loss += nn.functional.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            n += int(y.shape[0])
    if n == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    return {"loss": total_loss / n, "accuracy": correct / n}


def predict(
    model: nn.Module,
    data: Dataset | DataLoader,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    collate_fn: Callable | None = None,
) -> torch.Tensor:
    """Class probabilities (softmax of the logits) for every item of ``data``, on CPU."""
    with inference(model, device) as device:
        probs = [
            logits_of(model, to_device(x, device)).float().softmax(1).cpu()
            for x, _ in make_loader(data, batch_size, False, collate_fn)
        ]
    return torch.cat(probs)
