"""Layer-wise (gamma-decayed) learning rates and gradual unfreezing.

Early layers hold general features that a target task should barely move; late
layers are task-specific. Discriminative fine-tuning gives group ``l`` of ``L``
(1 = bottom) the rate ``lr_l = base_lr * gamma ** (L - l)``: the top group trains
at ``base_lr``, each group below at ``gamma`` times the one above.

Each optimizer param group gets its *real* ``lr``. (timm's layer decay stores an
``lr_scale`` that only timm's own schedulers multiply in; with a plain torch
optimizer or scheduler every group would silently train at the same rate.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import nn

from .layers import LayerGroup, resolve_groups

__all__ = ["layerwise_lrs", "param_groups", "unfreeze_schedule", "check_gamma"]

_NO_DECAY_TYPES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.Embedding)


def check_gamma(gamma: float) -> float:
    """``gamma`` as a float, if it is a valid decay per layer group: ``0 < gamma <= 1``.

    ``gamma = 1`` gives every group the same rate; above 1 the bottom layers
    would train faster than the top ones, the opposite of what discriminative
    fine-tuning is for.

    >>> check_gamma(0.5)
    0.5
    >>> check_gamma(1.5)
    Traceback (most recent call last):
        ...
    ValueError: gamma must be in (0, 1], got 1.5
    """
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not (0 < gamma <= 1):
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
    return float(gamma)


def _check_lr(name: str, lr: float) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"{name} must be a positive number, got {lr!r}")
    return float(lr)


def layerwise_lrs(base_lr: float, gamma: float, num_layers: int) -> list[float]:
    """Learning rates bottom->top: ``lr_l = base_lr * gamma ** (L - l)``, l = 1..L.

    >>> layerwise_lrs(1e-3, 0.5, 3)
    [0.00025, 0.0005, 0.001]
    """
    base_lr = _check_lr("base_lr", base_lr)
    gamma = check_gamma(gamma)
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
    return [base_lr * gamma ** (num_layers - layer) for layer in range(1, num_layers + 1)]


def _no_decay(module: nn.Module, param_name: str) -> bool:
    # Biases and normalisation/embedding weights are not decayed: shrinking a
    # LayerNorm gain or a bias towards 0 is a change of function, not a prior.
    return param_name.endswith("bias") or isinstance(module, _NO_DECAY_TYPES)


def param_groups(
    model: nn.Module,
    base_lr: float,
    gamma: float = 1.0,
    head_lr: float | None = None,
    weight_decay: float = 0.0,
    groups: Sequence[LayerGroup] | None = None,
    trainable_only: bool = True,
) -> list[dict[str, Any]]:
    """Optimizer param groups with gamma-decayed learning rates per layer group.

    The last group of :func:`ftlab.layers.layer_groups` is the head and trains at
    ``head_lr`` (default ``base_lr``); the ``L`` groups below it get
    :func:`layerwise_lrs` ``(base_lr, gamma, L)``. Biases and norm weights get no
    weight decay (they go to a ``name/no_decay`` group when ``weight_decay > 0``).
    ``trainable_only=False`` also includes frozen parameters --
    needed for gradual unfreezing, where they start receiving gradients later
    (optimizers skip parameters whose ``grad`` is ``None``).

    Each dict has ``params``, ``lr``, ``weight_decay`` and ``name`` -- ready for
    ``torch.optim.AdamW(param_groups(...))``.

    >>> from ftlab.examples import worked_example_mlp
    >>> groups = param_groups(worked_example_mlp(), base_lr=1e-3, gamma=0.1, head_lr=1e-2)
    >>> [(group["name"], f"{group['lr']:.0e}") for group in groups]
    [('layer1', '1e-06'), ('layer2', '1e-05'), ('layer3', '1e-04'), ('layer4', '1e-03'), ('head', '1e-02')]
    """
    groups = resolve_groups(model, groups)
    base_lr = _check_lr("base_lr", base_lr)
    head_lr = base_lr if head_lr is None else _check_lr("head_lr", head_lr)
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if len(groups) == 1:
        lrs = [head_lr]
    else:
        lrs = layerwise_lrs(base_lr, gamma, len(groups) - 1) + [head_lr]

    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for group, lr in zip(groups, lrs):
        decay, no_decay = [], []
        for module in group.modules:
            for mod in module.modules():
                for p_name, p in mod.named_parameters(recurse=False):
                    if id(p) in seen or (trainable_only and not p.requires_grad):
                        continue
                    seen.add(id(p))
                    split = weight_decay > 0 and _no_decay(mod, p_name)
                    (no_decay if split else decay).append(p)
        for params, wd, suffix in ((decay, weight_decay, ""), (no_decay, 0.0, "/no_decay")):
            if params:
                out.append({"params": params, "lr": lr, "weight_decay": wd, "name": group.name + suffix})
    if not out:
        raise ValueError("no trainable parameters in any group: unfreeze something first")
    return out


def unfreeze_schedule(num_groups: int, num_epochs: int, every: int = 1, start: int = 1, step: int = 1) -> list[int]:
    """How many top groups are trainable in each epoch of gradual unfreezing.

    ULMFiT-style: train the head (``start=1`` group) first, then unfreeze
    ``step`` more groups every ``every`` epochs until all ``num_groups`` train.

    >>> unfreeze_schedule(4, 6)
    [1, 2, 3, 4, 4, 4]
    >>> unfreeze_schedule(10, 3, step=5)
    [1, 6, 10]
    """
    checks = (("num_groups", num_groups), ("num_epochs", num_epochs), ("every", every), ("start", start), ("step", step))
    for name, v in checks:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if start > num_groups:
        raise ValueError(f"start ({start}) is larger than the number of groups ({num_groups})")
    return [min(num_groups, start + step * (epoch // every)) for epoch in range(num_epochs)]
