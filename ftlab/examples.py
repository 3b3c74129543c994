"""The small networks behind the course's worked examples.

The parameter-counting example of the course: a "pretrained" backbone of four
512->512 linear layers and a new head 512->128->2. Kept as plain
``nn.Sequential`` so that ``layer_groups`` sees ``layer1..layer4, head``.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

__all__ = ["worked_example_mlp"]


def worked_example_mlp(width: int = 512, depth: int = 4, hidden: int = 128, num_classes: int = 2) -> nn.Sequential:
    """Backbone of ``depth`` Linear(width, width)+ReLU layers, head width->hidden->num_classes.

    Small enough to build in a blink, big enough that the parameter counts of
    feature extraction and fine-tuning differ by a factor of 17.

    >>> import torch
    >>> mlp = worked_example_mlp()
    >>> [name for name, _ in mlp.named_children()]
    ['layer1', 'layer2', 'layer3', 'layer4', 'head']
    >>> mlp(torch.zeros(3, 512)).shape
    torch.Size([3, 2])
    """
    for name, v in (("width", width), ("depth", depth), ("hidden", hidden), ("num_classes", num_classes)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(1, depth + 1):
        layers[f"layer{i}"] = nn.Sequential(nn.Linear(width, width), nn.ReLU())
    layers["head"] = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
    return nn.Sequential(layers)
