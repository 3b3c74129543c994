"""Batches: from a data set to what a model eats, and the label check that saves a crash.

Every loop in ftlab (training, evaluation, feature caching, hooks) goes through
the same three steps -- :func:`make_loader`, :func:`to_device`,
:func:`logits_of` -- so an image tensor and a Hugging Face token dict are
handled alike everywhere. :func:`check_targets` turns a head that is too narrow
for the labels into a readable error before the first step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

__all__ = ["to_device", "logits_of", "make_loader", "max_label", "check_targets"]


def to_device(x: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move a batch input (a tensor, or a dict of tensors for Hugging Face models) to ``device``.

    ``channels_last`` stores a 4-d image batch channels-last, the layout
    convolutions run fastest in on recent GPUs.

    >>> batch = {"input_ids": torch.tensor([[101, 2204, 102]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    >>> to_device(batch, torch.device("cpu"))["input_ids"]
    tensor([[ 101, 2204,  102]])
    >>> to_device(torch.zeros(2, 3, 8, 8), torch.device("cpu"), channels_last=True).is_contiguous(
    ...     memory_format=torch.channels_last
    ... )
    True
    """
    if isinstance(x, torch.Tensor):
        x = x.to(device, non_blocking=True)
        if channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x
    if isinstance(x, Mapping):
        return {k: to_device(v, device) for k, v in x.items()}
    return x


def logits_of(model: nn.Module, x: Any) -> torch.Tensor:
    """The model's class scores: Hugging Face models take keyword inputs and return an object with ``.logits``.

    >>> logits_of(nn.Linear(4, 3), torch.ones(2, 4)).shape
    torch.Size([2, 3])
    >>> from types import SimpleNamespace
    >>> hf_like = lambda input_ids: SimpleNamespace(logits=input_ids * 2)  # keyword inputs, an output object
    >>> logits_of(hf_like, {"input_ids": torch.tensor([[1, 2]])})
    tensor([[2, 4]])
    """
    out = model(**x) if isinstance(x, Mapping) else model(x)
    return out.logits if hasattr(out, "logits") else out


def make_loader(
    data: Dataset | DataLoader,
    batch_size: int,
    shuffle: bool = False,
    collate_fn: Callable | None = None,
    seed: int = 0,
    num_workers: int = 0,
) -> DataLoader:
    """``data`` itself if it is a DataLoader, else a seeded one over it.

    The seed fixes the shuffling, so two runs see the batches in the same order.

    >>> loader = make_loader(TensorDataset(torch.arange(10.0), torch.zeros(10)), batch_size=4, shuffle=True)
    >>> [len(y) for _, y in loader]
    [4, 4, 2]
    >>> make_loader(loader, batch_size=99) is loader  # a DataLoader is used as it is
    True
    """
    if isinstance(data, DataLoader):
        return data
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collate_fn,
        generator=generator,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
    )


def max_label(data: Dataset | DataLoader) -> int | None:
    """The largest label of a data set when it can be read without loading the inputs, else None.

    :func:`check_targets` compares it with the head's width before the first
    step, so a label that only appears late in an epoch still fails at once.

    >>> max_label(TensorDataset(torch.randn(5, 3), torch.tensor([0, 2, 1, 2, 0])))
    2
    >>> max_label(TensorDataset(torch.randn(5, 3))) is None  # no labels to read
    True
    """
    data = data.dataset if isinstance(data, DataLoader) else data
    labels = getattr(data, "labels", None)
    if labels is None and isinstance(data, TensorDataset) and len(data.tensors) > 1:
        labels = data.tensors[1]
    if isinstance(labels, torch.Tensor) and labels.numel() and not labels.is_floating_point():
        return int(labels.max())
    return None


def check_targets(logits: torch.Tensor, y: torch.Tensor, max_label: int | None = None) -> None:
    """Raise unless the model's ``logits`` have a column for every class label in ``y``.

    Cross-entropy with a single output is always 0 (nothing is learned), and a
    label beyond the last column crashes a CUDA kernel with an unreadable
    device-side assert. ``y`` is checked while it is still on the CPU, so this
    costs no GPU synchronisation.

    >>> check_targets(torch.zeros(4, 3), torch.tensor([0, 1, 2, 1]))  # 3 columns for labels 0..2: fine
    >>> check_targets(torch.zeros(4, 2), torch.tensor([0, 1, 2, 1]))
    Traceback (most recent call last):
        ...
    ValueError: the model's head has 2 outputs but the labels go up to 2: build the head with num_classes >= 3
    """
    width = logits.shape[-1]
    if logits.ndim != 2 or width < 2:
        raise ValueError(
            f"the model outputs {tuple(logits.shape)} scores per batch; classification needs one column per class "
            "(at least 2): build the head with num_classes = the number of classes"
        )
    if y.is_floating_point() or y.numel() == 0:
        return
    top = max(int(y.max()), -1 if max_label is None else max_label)
    if top >= width or int(y.min()) < 0:
        raise ValueError(
            f"the model's head has {width} outputs but the labels go up to {top}: "
            f"build the head with num_classes >= {top + 1}"
        )
