"""What a network computes on the way to its classifier, collected once.

Feature extraction trains only the classifier on a fixed backbone, so the
backbone's output for each example never changes: :func:`cached_features` runs
the frozen network once and keeps what enters the classifier, and
:func:`fit_head_on_features` is the whole recipe (cache -> fit the head ->
evaluate) in one place. :func:`group_outputs` and :func:`group_features` collect
what each layer group (:func:`ftlab.layers.layer_groups`) produces, with forward
hooks: the feature maps the lessons draw, and the per-depth features of linear
probes and representation-change measurements.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .batches import logits_of, make_loader, to_device
from .config import SETTING_NAMES, FitConfig, resolve
from .evaluation import evaluate, inference
from .history import History
from .layers import LayerGroup, resolve_groups
from .train import fit

__all__ = ["head_module", "cached_features", "fit_head_on_features", "group_outputs", "group_features"]


def head_module(model: nn.Module, groups: Sequence[LayerGroup] | None = None) -> nn.Module:
    """The final classifier module (last module of the last layer group).

    Feature extraction trains this module alone, on what enters it.

    >>> from ftlab.examples import worked_example_mlp
    >>> head_module(worked_example_mlp())  # the MLP's "head" group is a small network of its own
    Sequential(
      (0): Linear(in_features=512, out_features=128, bias=True)
      (1): ReLU()
      (2): Linear(in_features=128, out_features=2, bias=True)
    )
    """
    return resolve_groups(model, groups)[-1].modules[-1]


def cached_features(
    model: nn.Module,
    data: Dataset | DataLoader,
    *,
    head: nn.Module | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    collate_fn: Callable | None = None,
) -> TensorDataset:
    """Run the frozen network once and keep what enters its classifier, with the labels.

    Computing the backbone's output once turns every later epoch of feature
    extraction into a tiny linear-model fit. (Dropout before the classifier is
    skipped -- features are taken in eval mode.)

    >>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> features = cached_features(model, TensorDataset(torch.randn(10, 4), torch.arange(10)), device="cpu")
    >>> features.tensors[0].shape, features.tensors[1][:3]  # what enters the last Linear, and the labels
    (torch.Size([10, 3]), tensor([0, 1, 2]))
    """
    head = head_module(model) if head is None else head
    captured: list[torch.Tensor] = []
    labels = []
    handle = head.register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0].detach().float().cpu()))
    try:
        with inference(model, device) as device:
            for x, y in make_loader(data, batch_size, False, collate_fn):
                logits_of(model, to_device(x, device))
                labels.append(y.cpu())
    finally:
        handle.remove()
    if not captured:
        raise ValueError("the head module was never called: is `head` part of the model's forward?")
    return TensorDataset(torch.cat(captured), torch.cat(labels))


def fit_head_on_features(
    model: nn.Module,
    train_data: Dataset | DataLoader,
    val_data: Dataset | DataLoader | None = None,
    test_data: Dataset | DataLoader | None = None,
    config: FitConfig | None = None,
    *,
    head: nn.Module | None = None,
    device: str | torch.device | None = None,
    collate_fn: Callable | None = None,
    **fit_kwargs: Any,
) -> tuple[History, float | None]:
    """Feature extraction, start to end: freeze, cache features, fit the head, score it.

    Freezes ``model`` except its ``head`` (default :func:`head_module`), runs
    :func:`cached_features` on each split, trains the head with
    :func:`ftlab.train.fit` (``config`` and ``fit_kwargs``: ``epochs``, ``lr``
    or ``param_groups``, ...) and returns its history and test accuracy
    (``None`` without ``test_data``). The head is trained in place: ``model``
    is the fine-tuned network afterwards.

    >>> x = torch.randn(64, 4)
    >>> data = TensorDataset(x, (x[:, 0] > 0).long())
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> history, accuracy = fit_head_on_features(model, data, data, data, epochs=2, lr=1e-2, progress=False)
    >>> len(history.epochs), 0 <= accuracy <= 1
    (2, True)
    >>> [name for name, p in model.named_parameters() if p.requires_grad]  # the head alone trained
    ['2.weight', '2.bias']
    """
    config = resolve(config, {k: fit_kwargs.pop(k) for k in list(fit_kwargs) if k in SETTING_NAMES})
    head = head_module(model) if head is None else head
    model.requires_grad_(False)
    head.requires_grad_(True)
    batch = max(128, config.batch_size)
    train, val, test = (
        None
        if d is None
        else cached_features(model, d, head=head, batch_size=batch, device=device, collate_fn=collate_fn)
        for d in (train_data, val_data, test_data)
    )
    history = fit(head, train, val, config, device=device, **fit_kwargs)
    accuracy = None if test is None else evaluate(head, test, device=device)["accuracy"]
    return history, accuracy


# --------------------------------------------------------------------------- per-group outputs


def _pool(out: torch.Tensor | tuple) -> torch.Tensor:
    out = out[0] if isinstance(out, tuple) else out
    if out.ndim == 4:  # (N, C, H, W) -> global average
        return out.mean(dim=(2, 3))
    if out.ndim == 3:  # (N, T, D) token states -> the first ([CLS]) token
        return out[:, 0]
    return out


def _hooked(model: nn.Module, groups: Sequence[LayerGroup], pool: bool, store: dict[str, list[torch.Tensor]]):
    def hook(name: str):
        def fn(_module: nn.Module, _inputs: tuple, out: torch.Tensor | tuple) -> None:
            t = _pool(out) if pool else (out[0] if isinstance(out, tuple) else out)
            store[name].append(t.detach().float().cpu())

        return fn

    return [g.modules[-1].register_forward_hook(hook(g.name)) for g in groups]


def group_outputs(
    model: nn.Module,
    x: torch.Tensor,
    groups: Sequence[LayerGroup] | None = None,
    pool: bool = False,
    device: str | torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """What each layer group outputs for the batch ``x``, name -> tensor (on CPU).

    A forward hook on each group's last module records its output during one
    forward pass in eval mode. ``pool=True`` reduces each output to one vector
    per example: the spatial mean of a feature map, the first ([CLS]) token of
    a sequence.

    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    >>> outputs = group_outputs(model, torch.randn(1, 3, 8, 8), device="cpu")
    >>> {name: tuple(t.shape) for name, t in outputs.items()}  # one group per layer with parameters
    {'0': (1, 4, 6, 6), '2': (1, 2, 4, 4)}
    """
    groups = resolve_groups(model, groups)
    store: dict[str, list[torch.Tensor]] = {g.name: [] for g in groups}
    handles = _hooked(model, groups, pool, store)
    try:
        with inference(model, device) as device:
            logits_of(model, to_device(x, device))
    finally:
        for h in handles:
            h.remove()
    return {name: ts[0] for name, ts in store.items() if ts}


def group_features(
    model: nn.Module,
    data: Dataset | DataLoader,
    groups: Sequence[LayerGroup] | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    collate_fn: Callable | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Pooled outputs of every group for a whole data set, and its labels.

    ``(features, labels)`` with ``features[name]`` shaped ``(N, channels)`` --
    the input of a per-depth linear probe. Items of ``data`` are ``(x, y)``.

    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    >>> features, labels = group_features(model, TensorDataset(torch.randn(5, 3, 8, 8), torch.arange(5)), device="cpu")
    >>> {name: tuple(t.shape) for name, t in features.items()}, labels.tolist()
    ({'0': (5, 4), '2': (5, 2)}, [0, 1, 2, 3, 4])
    """
    groups = resolve_groups(model, groups)
    store: dict[str, list[torch.Tensor]] = {g.name: [] for g in groups}
    labels: list[torch.Tensor] = []
    handles = _hooked(model, groups, True, store)
    try:
        with inference(model, device) as device:
            for x, y in make_loader(data, batch_size, False, collate_fn):
                logits_of(model, to_device(x, device))
                labels.append(torch.as_tensor(y).cpu())
    finally:
        for h in handles:
            h.remove()
    if not labels:
        raise ValueError("data is empty")
    return {name: torch.cat(ts) for name, ts in store.items() if ts}, torch.cat(labels)
