"""The pictures of the lessons: what pretrained layers see, and how fine-tuning treats them.

Grids (:func:`filter_grid`, :func:`feature_map_grid`, :func:`image_grid`) return
the matplotlib ``Figure``; charts (:func:`lr_plot`, :func:`trainable_bars`,
:func:`depth_plot`) draw on an ``Axes`` (a new one unless ``ax=`` is given) and
return it -- so a notebook shows them, and a test can read back what was drawn.

What the grids show (each layer group's output) is collected by
:func:`ftlab.features.group_outputs` and :func:`ftlab.features.group_features`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .layers import GroupRow

__all__ = [
    "filter_grid",
    "feature_map_grid",
    "image_grid",
    "lr_plot",
    "trainable_bars",
    "depth_plot",
]

TRAINABLE_COLOR = "tab:blue"
FROZEN_COLOR = "lightgrey"


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)


def _unit(a: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] (a constant array becomes 0.5 everywhere)."""
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.full_like(a, 0.5)


def _grid(n: int, ncols: int, cell: float, rows_extra: float = 0.0):
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows + rows_extra), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes


# --------------------------------------------------------------------------- grids


def filter_grid(weight: torch.Tensor, ncols: int = 8, cell: float = 0.9, title: str | None = None):
    """Convolution filters ``(out, in, k, k)`` as small pictures, one per output channel.

    Three input channels are drawn as an RGB image (the filter's colour
    preference), otherwise the first input channel in grey. Each filter is
    min-max scaled on its own, so the pattern shows whatever its magnitude.
    Returns the Figure; its first ``out`` axes hold one picture each, in order.

    >>> fig = filter_grid(torch.randn(6, 3, 3, 3), ncols=3, title="first conv layer")
    >>> len(fig.axes), fig.axes[0].images[0].get_array().shape  # 6 filters, each a 3 x 3 RGB picture
    (6, (3, 3, 3))
    >>> plt.close(fig)
    """
    w = _numpy(weight)
    if w.ndim != 4:
        raise ValueError(f"expected a conv weight shaped (out, in, k, k), got shape {w.shape}")
    fig, axes = _grid(w.shape[0], ncols, cell, rows_extra=0.4 if title else 0.0)
    for f, ax in zip(w, axes.flat):
        if f.shape[0] == 3:
            ax.imshow(_unit(f.transpose(1, 2, 0)), interpolation="nearest")
        else:
            ax.imshow(_unit(f[0]), cmap="gray", interpolation="nearest")
    if title:
        fig.suptitle(title)
    return fig


def feature_map_grid(maps: Mapping[str, torch.Tensor], n: int = 8, cell: float = 1.0, cmap: str = "viridis"):
    """One row per layer group: the ``n`` most active channels of its feature map.

    ``maps`` is name -> activation ``(C, H, W)`` (or ``(1, C, H, W)``), e.g. from
    :func:`ftlab.features.group_outputs`. Channels are ranked by mean activation; each map is
    min-max scaled on its own. The row label gives the name and the map's shape,
    so the shrinking resolution and growing depth with depth are visible.
    Returns the Figure; ``fig.channels`` maps each row name to the channels shown.

    >>> maps = {"stem": torch.rand(16, 12, 12), "block": torch.arange(8.0).view(8, 1, 1).expand(8, 3, 3)}
    >>> fig = feature_map_grid(maps, n=4)
    >>> len(fig.axes), fig.channels["block"]  # channel 7 has the largest mean activation
    (8, [7, 6, 5, 4])
    >>> plt.close(fig)
    """
    if not maps:
        raise ValueError("maps is empty")
    fig, axes = plt.subplots(len(maps), n, figsize=(cell * n + 1.5, cell * len(maps)), squeeze=False)
    fig.channels = {}
    for row, (name, fmap) in zip(axes, maps.items()):
        a = _numpy(fmap)
        if a.ndim == 4:
            a = a[0]
        if a.ndim != 3:
            raise ValueError(f"{name}: expected a feature map shaped (C, H, W), got shape {a.shape}")
        top = np.argsort(-a.mean(axis=(1, 2)), kind="stable")[:n]
        fig.channels[name] = [int(c) for c in top]
        for ax, c in zip(row, top):
            ax.imshow(_unit(a[c]), cmap=cmap, interpolation="nearest")
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        row[0].set_ylabel(f"{name}\n{a.shape[0]}x{a.shape[1]}x{a.shape[2]}", rotation=0, ha="right", va="center")
    fig.tight_layout()
    return fig


def image_grid(
    images: torch.Tensor | Sequence[torch.Tensor],
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    cell: float = 1.3,
    denormalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
):
    """Images ``(N, 3, H, W)``, ``(N, H, W)`` or a list of ``(3, H, W)`` in a grid.

    ``denormalize`` maps a normalised model input back to [0, 1] first (e.g.
    ``model.preprocess.denormalize``); otherwise each image is min-max scaled.
    Returns the Figure.

    >>> fig = image_grid(torch.rand(4, 3, 8, 8), titles=["cat", "dog", "cat", "dog"], ncols=2)
    >>> len(fig.axes), [ax.get_title() for ax in fig.axes]
    (4, ['cat', 'dog', 'cat', 'dog'])
    >>> plt.close(fig)
    """
    items = list(images)
    if not items:
        raise ValueError("no images to show")
    if titles is not None and len(titles) != len(items):
        raise ValueError(f"got {len(titles)} titles for {len(items)} images")
    fig, axes = _grid(len(items), ncols, cell, rows_extra=0.3 if titles is not None else 0.0)
    for i, (img, ax) in enumerate(zip(items, axes.flat)):
        img = torch.as_tensor(img)
        img = denormalize(img) if denormalize is not None else img
        a = _numpy(img)
        a = a.transpose(1, 2, 0) if a.ndim == 3 and a.shape[0] in (1, 3) else a
        a = a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a
        ax.imshow(a.clip(0, 1) if denormalize is not None else _unit(a), cmap="gray" if a.ndim == 2 else None)
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- charts


def _axes(ax, figsize: tuple[float, float]):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def lr_plot(
    lrs: Sequence[float] | Mapping[str, Sequence[float]],
    names: Sequence[str] | None = None,
    ax=None,
    annotate: bool = True,
    ylim: tuple[float, float] | None = None,
):
    """Learning rate per layer, bottom (input) to top, on a log scale.

    ``lrs`` is one list bottom->top (e.g. :func:`ftlab.optim.layerwise_lrs`) or
    label -> list to compare several (e.g. one per gamma). One line per list, in
    order; ``annotate`` writes each value of a single list next to its point.
    ``ylim`` fixes the y range: without it matplotlib fits the range to the data,
    so a steep and a shallow decay fill the same height and look alike.

    >>> ax = lr_plot({"gamma 0.5": [2.5e-4, 5e-4, 1e-3], "gamma 0.1": [1e-5, 1e-4, 1e-3]}, ylim=(1e-6, 1e-2))
    >>> ax.get_yscale(), [line.get_label() for line in ax.get_lines()]
    ('log', ['gamma 0.5', 'gamma 0.1'])
    >>> plt.close(ax.figure)
    """
    series = dict(lrs) if isinstance(lrs, Mapping) else {"": list(lrs)}
    if not series or any(len(v) == 0 for v in series.values()):
        raise ValueError("lrs is empty")
    width = max(len(v) for v in series.values())
    if any(v <= 0 for vals in series.values() for v in vals):
        raise ValueError("learning rates must be positive to plot on a log scale")
    names = list(names) if names is not None else [f"layer {i}" for i in range(1, width + 1)]
    if len(names) != width:
        raise ValueError(f"got {len(names)} names for {width} layers")
    ax = _axes(ax, (max(4.0, 0.7 * width + 2), 3.2))
    x = np.arange(1, width + 1)
    for label, vals in series.items():
        ax.plot(x[: len(vals)], vals, "o-", label=label or None)
    if annotate and len(series) == 1:
        for xi, v in zip(x, next(iter(series.values()))):
            ax.annotate(f"{v:.0e}", (xi, v), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    ax.set_yscale("log")
    if ylim is not None:
        if not 0 < ylim[0] < ylim[1]:
            raise ValueError(f"ylim must be (low, high) with 0 < low < high, got {ylim!r}")
        ax.set_ylim(*ylim)
    ax.set_xticks(x, names, rotation=30 if width > 6 else 0)
    ax.set_xlabel("layer (input -> output)")
    ax.set_ylabel("learning rate")
    if len(series) > 1 or next(iter(series)):
        ax.legend()
    ax.grid(True, which="major", axis="y", alpha=0.3)
    return ax


def trainable_bars(rows: Sequence[GroupRow], ax=None, log: bool = False):
    """Parameters per layer group as stacked bars: trainable (blue) under frozen (grey).

    ``rows`` come from :func:`ftlab.layers.parameter_table`. The title gives the
    trainable total and its share. ``ax.containers`` holds the two bar sets in
    the order trainable, frozen.

    >>> ax = trainable_bars([GroupRow("backbone", 900, 0), GroupRow("head", 100, 100)])
    >>> ax.get_title(), [int(bar.get_height()) for bar in ax.containers[1]]  # the frozen bars
    ('trainable: 100 of 1,000 (10.0%)', [900, 0])
    >>> plt.close(ax.figure)
    """
    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty")
    ax = _axes(ax, (max(4.0, 0.6 * len(rows) + 2), 3.2))
    names = [r.name for r in rows]
    trainable = [r.trainable for r in rows]
    frozen = [r.params - r.trainable for r in rows]
    ax.bar(names, trainable, color=TRAINABLE_COLOR, label="trainable")
    ax.bar(names, frozen, bottom=trainable, color=FROZEN_COLOR, label="frozen")
    total, train = sum(r.params for r in rows), sum(trainable)
    ax.set_title(f"trainable: {train:,} of {total:,} ({train / total:.1%})" if total else "no parameters")
    ax.set_ylabel("parameters")
    if log:
        ax.set_yscale("log")
    ax.tick_params(axis="x", rotation=30 if len(rows) > 5 else 0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside the axes: inside, it hid a bar
    ax.figure.tight_layout()
    return ax


def depth_plot(
    names: Sequence[str],
    series: Mapping[str, Sequence[float]],
    ylabel: str,
    ax=None,
    logy: bool = False,
    title: str | None = None,
):
    """One line per series across layer groups (input -> output).

    For per-depth measurements: linear-probe accuracy of each group's features,
    or how far each group's weights moved for several learning rates.

    >>> ax = depth_plot(["layer1", "layer2", "head"], {"probe": [0.61, 0.78, 0.93]}, ylabel="probe accuracy")
    >>> ax.get_ylabel(), [tick.get_text() for tick in ax.get_xticklabels()]
    ('probe accuracy', ['layer1', 'layer2', 'head'])
    >>> plt.close(ax.figure)
    """
    names = list(names)
    if not series:
        raise ValueError("series is empty")
    for label, vals in series.items():
        if len(vals) != len(names):
            raise ValueError(f"series {label!r} has {len(vals)} values for {len(names)} groups")
    ax = _axes(ax, (max(4.5, 0.6 * len(names) + 2), 3.2))
    x = np.arange(len(names))
    for label, vals in series.items():
        ax.plot(x, list(vals), "o-", label=label)
    ax.set_xticks(x, names, rotation=30 if len(names) > 5 else 0)
    ax.set_xlabel("layer group (input -> output)")
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(True, alpha=0.3)
    return ax
