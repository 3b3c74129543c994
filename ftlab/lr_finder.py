"""The learning-rate range test: find a rate in one short pass instead of a grid of training runs.

Smith (2015, "Cyclical Learning Rates for Training Neural Networks") and fastai's
``lr_find`` made this standard: train for a few dozen steps while the rate grows
exponentially from tiny to huge, record the loss at every step, and read the
rate off the curve. At tiny rates the loss stays flat (nothing moves), then it
falls, then it blows up. A good rate sits where it falls fastest.

:func:`lr_find` leaves everything as it found it -- weights and BatchNorm
buffers, ``requires_grad`` flags, train/eval mode of every module, the device,
gradients, the optimizer's state when one is passed, and the global random
number generators -- so it can be called at any point of a notebook.
"""

from __future__ import annotations

import copy
import math
import os
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .batches import check_targets, logits_of, make_loader, max_label, to_device
from .precision import amp_dtype
from .train import build_optimizer
from .utils import get_device, seed_everything

__all__ = ["LRFindResult", "lr_find", "suggest_lr"]


@dataclass
class LRFindResult:
    """What :func:`lr_find` recorded, and the rates read off it.

    ``lrs[i]`` is the rate of step ``i`` (in per-group mode: of the selected
    group with the largest rate), ``raw_losses[i]`` the loss of that step's
    batch and ``losses[i]`` the exponentially smoothed, bias-corrected loss.
    ``minimum`` is the rate of the lowest smoothed loss, ``steepest`` the rate of
    its steepest descent, ``suggestion`` = ``minimum / 10`` (see
    :func:`suggest_lr` for why). ``diverged`` says whether the run stopped early
    because the loss blew up, ``stop_lr`` the rate at which it did; ``groups``
    the names of the param groups swept (empty: the whole trainable model).

    >>> lrs, losses = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1], [2.30, 2.25, 1.90, 1.10, 4.00]
    >>> suggestion, minimum, steepest = suggest_lr(lrs, losses)
    >>> result = LRFindResult(lrs, losses, losses, suggestion, minimum, steepest, False, None, [])
    >>> fig = result.plot()  # a standalone Figure: no window opens
    >>> len(fig.axes), fig.axes[0].get_xscale()
    (1, 'log')
    """

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    suggestion: float
    minimum: float
    steepest: float
    diverged: bool
    stop_lr: float | None
    groups: list[str]

    def plot(self, ax=None):
        """Loss against the rate on a log-x axis, the suggestion marked; returns the Figure.

        Without ``ax`` it draws on a new standalone :class:`matplotlib.figure.Figure`
        (not registered with pyplot, so no backend is touched and no window opens;
        a notebook shows it when it is a cell's value). The y range fits the
        curve up to its minimum, so the descent fills the plot.
        """
        if ax is None:
            from matplotlib.figure import Figure

            ax = Figure(figsize=(5.5, 3.4), layout="tight").add_subplot()
        ax.plot(self.lrs, self.raw_losses, color="0.75", lw=0.8, label="batch loss")
        ax.plot(self.lrs, self.losses, color="C0", label="smoothed loss")
        at = float(np.interp(math.log(self.suggestion), np.log(self.lrs), self.losses))
        ax.plot([self.suggestion], [at], "o", color="C3", ms=8, label=f"suggestion {self.suggestion:.1e} (minimum/10)")
        ax.axvline(self.minimum, color="0.4", ls=":", lw=1, label=f"minimum {self.minimum:.1e}")
        ax.set_xscale("log")
        best = self.lrs.index(self.minimum)
        low, top = self.losses[best], max(self.losses[: best + 1])
        span = (top - low) or abs(top) or 1.0
        ax.set_ylim(low - 0.15 * span, top + 0.5 * span)
        swept = self.groups if len(self.groups) <= 2 else [f"{self.groups[0]} ... {self.groups[-1]}"]
        ax.set_xlabel("learning rate" + (f" of {', '.join(swept)}" if swept else ""))
        ax.set_ylabel("training loss")
        ax.legend(fontsize=8)
        return ax.figure


def suggest_lr(lrs: Sequence[float], losses: Sequence[float], skip_start: float = 0.1) -> tuple[float, float, float]:
    """``(suggestion, minimum, steepest)`` read off a range test's smoothed loss curve.

    ``minimum`` is the rate of the lowest loss and ``steepest`` the rate of the
    fastest fall (slope against ``log lr`` between neighbouring points, only up
    to the minimum; the smaller rate of the steepest pair). The suggestion is
    ``minimum / 10``: at the minimum the loss is about to turn up (the edge of
    stability), and the smoothed curve lags the rate, so the real edge is
    lower still; one decade below is a rate that trains fast for many steps,
    not just one. The steepest point is the other classic reading but sits
    close to the minimum when the descent is sharp just before the loss blows
    up. Both are starting points for a real run, not answers. The first
    ``skip_start`` fraction of the points is left out (fastai does the same):
    there the smoothed loss averages only a few batches. The suggestion is
    kept inside the recorded range; if the loss never fell, all three are the
    first rate considered.

    >>> lrs = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    >>> suggest_lr(lrs, [2.30, 2.25, 1.90, 1.10, 4.00])  # lowest at 1e-2, steepest fall from 1e-3
    (0.001, 0.01, 0.001)
    >>> suggest_lr(lrs, [2.3, 2.4, 2.6, 3.0, 5.0])  # never fell: the first rate
    (1e-05, 1e-05, 1e-05)
    """
    values = np.asarray(losses, dtype=float)
    rates = np.asarray(lrs, dtype=float)
    if len(values) != len(rates) or len(values) < 2:
        raise ValueError(f"need at least 2 (lr, loss) points of equal length, got {len(rates)} and {len(values)}")
    first = min(int(len(values) * skip_start), len(values) - 2)
    values, rates = values[first:], rates[first:]
    best = int(np.argmin(np.where(np.isfinite(values), values, np.inf)))
    if best == 0:
        return float(rates[0]), float(rates[0]), float(rates[0])
    slopes = np.diff(values[: best + 1]) / np.diff(np.log(rates[: best + 1]))
    minimum, steepest = float(rates[best]), float(rates[int(np.argmin(slopes))])
    return max(minimum / 10, float(np.asarray(lrs, dtype=float)[0])), minimum, steepest


# --------------------------------------------------------------------------- argument checks


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _check_args(start_lr, end_lr, num_iter, diverge, beta) -> tuple[float, float]:
    start_lr, end_lr = _positive("start_lr", start_lr), _positive("end_lr", end_lr)
    if start_lr >= end_lr:
        raise ValueError(f"start_lr must be below end_lr, got start_lr={start_lr!r} >= end_lr={end_lr!r}")
    if isinstance(num_iter, bool) or not isinstance(num_iter, int) or num_iter < 2:
        raise ValueError(f"num_iter must be an int >= 2 (a curve needs two points), got {num_iter!r}")
    if isinstance(diverge, bool) or not isinstance(diverge, (int, float)) or not diverge > 1:
        raise ValueError(
            f"diverge must be a number > 1 (stop when the loss exceeds diverge x its best), got {diverge!r}"
        )
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    return start_lr, end_lr


def _select(groups: list[dict[str, Any]], group: Any) -> list[int]:
    """Indices of the optimizer groups selected by an index, a name (``name`` and ``name/...``), or a list of those."""
    names = [g.get("name", f"group {i}") for i, g in enumerate(groups)]
    if group is None:
        return list(range(len(groups)))
    wanted = list(group) if isinstance(group, (list, tuple)) else [group]
    if not wanted:
        raise ValueError("group is empty: name at least one param group")
    picked: list[int] = []
    for w in wanted:
        if isinstance(w, bool) or not isinstance(w, (int, str)):
            raise ValueError(f"group must be an int index, a name or a list of them, got {w!r}")
        if isinstance(w, int):
            if not -len(groups) <= w < len(groups):
                raise ValueError(f"group index {w} is out of range: there are {len(groups)} param groups {names}")
            hits = [w % len(groups)]
        else:
            hits = [i for i, n in enumerate(names) if n == w or n.startswith(w + "/")]
            if not hits:
                raise ValueError(f"no param group named {w!r}; the groups are {names}")
        picked += [i for i in hits if i not in picked]
    return sorted(picked)


# --------------------------------------------------------------------------- saving and restoring


class _Snapshot:
    """Everything lr_find may change, taken before it runs and put back after."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer | None):
        self.model, self.opt = model, opt
        self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        tensors = list(model.parameters()) + list(model.buffers())
        devices = {t.device for t in tensors}
        self.device = devices.pop() if len(devices) == 1 else None
        self.requires_grad = [(p, p.requires_grad, p.grad) for p in model.parameters()]
        self.training = [(m, m.training) for m in model.modules()]
        self.opt_state = copy.deepcopy(opt.state_dict()) if opt is not None else None
        self.rng = (random.getstate(), np.random.get_state(), os.environ.get("PYTHONHASHSEED"))

    def restore(self) -> None:
        if self.device is not None:
            self.model.to(self.device)
        self.model.load_state_dict(self.state)
        for p, flag, grad in self.requires_grad:
            p.requires_grad_(flag)
            p.grad = grad
        for m, flag in self.training:
            m.training = flag
        if self.opt is not None:
            self.opt.load_state_dict(self.opt_state)
        py, np_state, hashseed = self.rng
        random.setstate(py)
        np.random.set_state(np_state)
        if hashseed is None:
            os.environ.pop("PYTHONHASHSEED", None)
        else:
            os.environ["PYTHONHASHSEED"] = hashseed


# --------------------------------------------------------------------------- the test


def _loader(train_data, batch_size: int, collate_fn, seed: int | None, num_iter: int) -> tuple[DataLoader, int]:
    """The shuffled loader of the sweep and its number of steps (at most one pass), or why there are too few."""
    items = len(train_data.dataset if isinstance(train_data, DataLoader) else train_data)
    if items == 0:
        raise ValueError("train_data is empty: 0 items, no batch to train on")
    loader = make_loader(train_data, batch_size, True, collate_fn, 0 if seed is None else seed)
    batches = len(loader)
    if batches == 0:
        raise ValueError(f"train_data gives no batch: {items} items with drop_last and batch size {loader.batch_size}")
    steps = min(num_iter, batches)
    if steps < 2:
        raise ValueError(
            f"train_data gives only {batches} batch of {batch_size}: the test needs at least 2 steps "
            "(use a smaller batch_size or more data)"
        )
    return loader, steps


def _swept(opt: torch.optim.Optimizer, group: Any) -> tuple[list[int], list[str], list[float]]:
    """The swept param groups: their indices, names, and rates relative to the largest (kept during the sweep)."""
    selected = _select(opt.param_groups, group)
    names = [opt.param_groups[i].get("name", f"group {i}") for i in selected]
    if not any(p.requires_grad for i in selected for p in opt.param_groups[i]["params"]):
        raise ValueError(f"param group(s) {names} have no trainable parameter: unfreeze them first")
    base = [opt.param_groups[i]["lr"] for i in selected]
    top = max(base)
    return selected, names, [b / top if top > 0 else 1.0 for b in base]


def lr_find(
    model: nn.Module,
    train_data: Dataset | DataLoader,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iter: int = 100,
    param_groups: Iterable[dict[str, Any]] | None = None,
    group: int | str | Sequence[int | str] | None = None,
    optimizer: str | torch.optim.Optimizer = "adamw",
    weight_decay: float | None = None,
    batch_size: int = 64,
    diverge: float = 4.0,
    beta: float = 0.9,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy,
    device: str | torch.device | None = None,
    amp: bool | str = True,
    seed: int | None = 0,
    collate_fn: Callable | None = None,
    progress: bool = True,
) -> LRFindResult:
    """The learning-rate range test: sweep the rate exponentially, record the loss, suggest a rate.

    Over at most one pass of ``train_data`` (shuffled, ``batch_size`` per step),
    step ``i`` of ``n = min(num_iter, number of batches)`` trains at
    ``start_lr * (end_lr / start_lr) ** (i / (n - 1))`` -- a constant ratio per
    step, from ``start_lr`` exactly to ``end_lr`` exactly. Each step's batch loss
    is smoothed (``avg = beta*avg + (1-beta)*loss``, divided by
    ``1 - beta**(i+1)`` to remove the bias towards the zero start), and the run
    stops early once the smoothed loss exceeds ``diverge`` times its best so far
    (or a loss is not finite): past that point the curve says nothing new.
    ``diverge=4`` is fastai's; ``beta`` is 0.9 here, not fastai's 0.98, because
    an average lags its input by about ``beta / (1 - beta)`` steps -- 9 rather
    than up to 49, which is half of a 100-step run and all of a short one (the
    test here never takes more steps than there are batches).

    **The suggestion** is ``minimum / 10``: one decade below the rate of the
    lowest smoothed loss (``result.minimum``). At the minimum the loss is about
    to turn up -- the edge of stability, and the lagging average puts it a
    little too high -- so a rate one decade lower still trains fast but stays
    stable over many steps. ``result.steepest``, the rate of the steepest
    descent of the smoothed loss, is the other classic reading; it lies close
    to the minimum when the loss falls sharply just before blowing up (common
    when every layer trains). See :func:`suggest_lr`. Both are starting points
    for a real run, not answers.

    **What is swept.** Without ``param_groups`` every trainable parameter of
    ``model`` gets the swept rate (a model with nothing trainable is an error).
    With ``param_groups`` (e.g. :func:`ftlab.optim.param_groups`) every group
    trains at its own ``lr`` except the ``group`` selected -- an index, a name
    (``"head"`` also selects ``"head/no_decay"``), or a list of them --
    whose rate is swept; several selected groups keep their ratios to each other
    and ``lrs`` is the rate of the largest (so for γ-decayed backbone groups it
    is the ``base_lr`` to pass back to ``param_groups``). ``group=None`` sweeps
    all groups together. ``optimizer`` is ``"adamw"`` (default, like
    :func:`ftlab.train.fit`) or ``"sgd"`` (momentum 0.9) built here, or an
    existing ``torch.optim.Optimizer``: its groups and state are used, and its
    state (moments, step counts, rates) is put back afterwards.

    **Two steps for a new head** (fastai's ``fine_tune`` order)::

        unfreeze_top(model, 1)                        # 1. backbone frozen: the head's rate
        head_lr = lr_find(model, train).suggestion
        fit(model, train, epochs=1, lr=head_lr)       #    train the head at it
        unfreeze(model)                               # 2. everything trains:
        lr = lr_find(model, train).suggestion         #    one rate for the whole network, or
        groups = param_groups(model, base_lr=lr, head_lr=head_lr / 10)
        backbone = [g.name for g in layer_groups(model)[:-1]]
        base_lr = lr_find(model, train, param_groups=groups, group=backbone).suggestion  # the backbone's, head held

    Train the head between the two steps: a random head's first gradients would
    dominate the second curve. When the head is held at a fixed rate in step 2,
    choose one it can sustain while the features under it change (``unfreeze``
    also lets BatchNorm statistics follow the new data): the step-1 suggestion is
    a rate for a fresh head's first pass. On EfficientNet-Lite0 with digits,
    holding the head at it left the second curve without a descent; a tenth of
    it gave a usable one.

    Afterwards the model is exactly as before: weights and buffers (BatchNorm
    running statistics included), ``requires_grad`` flags, each module's
    train/eval mode, its device, its gradients; so are the optimizer's state
    and Python's, NumPy's and torch's random number generators. ``seed`` fixes
    the data order and dropout (the same seed gives the same curve and
    suggestion on the same machine); ``seed=None`` does not seed dropout (a
    ``Dataset`` is still shuffled by :func:`ftlab.train.make_loader`'s fixed seed). ``device`` defaults to :func:`ftlab.utils.get_device`; ``amp`` as in
    :func:`ftlab.train.fit`. Text models: pass ``collate_fn`` as to ``fit``.

    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from ftlab.examples import worked_example_mlp
    >>> data = TensorDataset(torch.randn(256, 32), torch.randint(0, 2, (256,)))
    >>> result = lr_find(worked_example_mlp(width=32), data, num_iter=16, batch_size=16, progress=False)
    >>> len(result.lrs) <= 16 and 1e-7 <= result.suggestion <= 10
    True
    """
    start_lr, end_lr = _check_args(start_lr, end_lr, num_iter, diverge, beta)
    given_opt = optimizer if isinstance(optimizer, torch.optim.Optimizer) else None
    if given_opt is not None and param_groups is not None:
        raise ValueError("pass param_groups or an optimizer, not both: the optimizer already has its groups")
    if group is not None and param_groups is None and given_opt is None:
        raise ValueError(f"group={group!r} needs param_groups (or an optimizer) to choose from")
    device = get_device(device)
    dtype = amp_dtype(device, amp)
    loader, steps = _loader(train_data, batch_size, collate_fn, seed, num_iter)
    snapshot = _Snapshot(model, given_opt)
    try:
        opt = given_opt or build_optimizer(
            model,
            lr=None if param_groups is not None else start_lr,
            weight_decay=weight_decay,
            param_groups=param_groups,
            optimizer=optimizer,
        )
        if given_opt is not None and weight_decay is not None:
            raise ValueError("weight_decay would be ignored: the optimizer passed sets its own")
        selected, names, scale = _swept(opt, group)
        model.to(device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            if seed is not None:
                seed_everything(seed)
            result = _sweep(
                model, loader, opt, selected, scale, start_lr, end_lr, steps, diverge, beta, loss_fn, device,
                dtype, max_label(train_data), progress,
            )  # fmt: skip
    finally:
        snapshot.restore()
    lrs, smooth, raw, stop_lr = result
    suggestion, minimum, steepest = suggest_lr(lrs, smooth)
    return LRFindResult(
        lrs=lrs,
        losses=smooth,
        raw_losses=raw,
        suggestion=suggestion,
        minimum=minimum,
        steepest=steepest,
        diverged=stop_lr is not None,
        stop_lr=stop_lr,
        groups=names if param_groups is not None or given_opt is not None else [],
    )


def _sweep(
    model,
    loader,
    opt,
    selected,
    scale,
    start_lr,
    end_lr,
    steps,
    diverge,
    beta,
    loss_fn,
    device,
    dtype,
    max_label,
    progress,
):
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    model.train()
    ratio = (end_lr / start_lr) ** (1 / (steps - 1))
    lrs: list[float] = []
    smooth: list[float] = []
    raw: list[float] = []
    avg, best, stop_lr = 0.0, math.inf, None
    batches = iter(loader)
    for i in tqdm(range(steps), desc="lr_find", disable=not progress, leave=False):
        lr = end_lr if i == steps - 1 else start_lr * ratio**i
        for k, s in zip(selected, scale):
            opt.param_groups[k]["lr"] = lr * s
        x, y = next(batches)
        x = to_device(x, device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = logits_of(model, x)
            check_targets(logits, y, max_label)
            y = y.to(device, non_blocking=True)
            loss = loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        value = loss.item()
        if not math.isfinite(value):
            stop_lr = lr
            break
        avg = beta * avg + (1 - beta) * value
        smoothed = avg / (1 - beta ** (i + 1))
        lrs.append(lr)
        smooth.append(smoothed)
        raw.append(value)
        best = min(best, smoothed)
        if smoothed > diverge * best:
            stop_lr = lr
            break
    if len(lrs) < 2:
        raise ValueError(f"the loss diverged within {len(lrs) + 1} steps (at lr={stop_lr:.3g}): lower start_lr")
    return lrs, smooth, raw, stop_lr
