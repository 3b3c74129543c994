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
    """Model on ``device`` in eval mode, without gradients, for the block; its train/eval mode is restored after.

    Eval mode switches dropout off and BatchNorm to its running statistics;
    without gradients no graph is kept, so a forward pass needs far less memory.

    >>> model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train()
    >>> with inference(model, "cpu") as device:
    ...     out = model(torch.ones(1, 2))
    >>> device, out.requires_grad, model.training
    (device(type='cpu'), False, True)
    """
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
    """Mean cross-entropy loss and accuracy of ``model`` on ``data``.

    Runs under :func:`inference`, in batches of ``batch_size``; ``amp`` as in
    :func:`ftlab.train.fit`.

    >>> from torch.utils.data import TensorDataset
    >>> scores = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])  # nn.Identity: inputs are logits
    >>> evaluate(nn.Identity(), TensorDataset(scores, torch.tensor([0, 1, 1, 1])), device="cpu")
    {'loss': 0.6269..., 'accuracy': 0.75}
    """
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
    """Class probabilities (softmax of the logits) for every item of ``data``, on CPU.

    >>> from torch.utils.data import TensorDataset
    >>> scores = torch.tensor([[0.0, 0.0], [0.0, 1.0986]])  # nn.Identity: inputs are logits; 1.0986 = log 3
    >>> predict(nn.Identity(), TensorDataset(scores, torch.tensor([0, 1])), device="cpu")
    tensor([[0.5000, 0.5000],
            [0.2500, 0.7500]])
    """
    with inference(model, device) as device:
        probs = [
            logits_of(model, to_device(x, device)).float().softmax(1).cpu()
            for x, _ in make_loader(data, batch_size, False, collate_fn)
        ]
    return torch.cat(probs)
