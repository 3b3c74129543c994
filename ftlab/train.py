"""A small, honest trainer: the loop every fine-tuning strategy in the course shares.

The loop is four pieces a student can read top to bottom, and :func:`fit` is
exactly those pieces plus the extras (seeding, gradual unfreezing, a progress
bar, a :class:`~ftlab.history.History`)::

    loader = make_loader(train_data, batch_size=64, shuffle=True)
    opt = build_optimizer(model, lr=1e-3)                     # AdamW over the trainable params
    sched = build_schedule(opt, "cosine", total_steps=epochs * len(loader))
    stopper = EarlyStopping(patience=3)                       # best weights + when to stop
    for epoch in range(1, epochs + 1):
        stats = train_epoch(model, loader, opt, sched)        # forward, loss, backward, step
        val = evaluate(model, val_data)
        if stopper.update(model, val["accuracy"], epoch):     # True: stop now
            break
    stopper.restore(model)

This module is that loop and nothing else. Its settings are one
:class:`~ftlab.config.FitConfig`, checked when it is made; the helpers live in
modules named for what they are: :mod:`ftlab.batches` (loaders, moving
batches, label checks), :mod:`ftlab.precision` (:func:`amp_dtype`),
:mod:`ftlab.schedules`, :mod:`ftlab.evaluation` (:func:`evaluate`,
:func:`predict`) and :mod:`ftlab.history`. They are importable from here too.
Training is seeded and reproducible on CPU, and Ctrl-C stops :func:`fit` but
keeps the best model so far.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .batches import check_targets, logits_of, make_loader, max_label, to_device
from .config import OPTIMIZERS, SCHEDULES, FitConfig, check_rate, resolve
from .evaluation import evaluate, inference, predict
from .history import History
from .layers import LayerGroup, count_parameters, resolve_groups, unfreeze_top
from .precision import amp_dtype, autocast
from .schedules import build_schedule, schedule_factor
from .utils import get_device, seed_everything

__all__ = [
    "History",
    "SCHEDULES",
    "FitConfig",
    "schedule_factor",
    "amp_dtype",
    "build_optimizer",
    "build_schedule",
    "train_epoch",
    "EarlyStopping",
    "fit",
    "evaluate",
    "predict",
    "inference",
    "make_loader",
    "to_device",
    "logits_of",
    "check_targets",
]


# --------------------------------------------------------------------------- the loop


def fit(
    model: nn.Module,
    train_data: Dataset | DataLoader,
    val_data: Dataset | DataLoader | None = None,
    config: FitConfig | None = None,
    *,
    param_groups: Iterable[dict[str, Any]] | None = None,
    unfreeze: Sequence[int] | None = None,
    groups: Sequence[LayerGroup] | None = None,
    device: str | torch.device | None = None,
    seed: int | None = 0,
    collate_fn: Callable | None = None,
    progress: bool = True,
    **settings: Any,
) -> History:
    """Train ``model`` with cross-entropy; return a :class:`~ftlab.history.History`.

    The loop of this module's docstring with the extras. The hyperparameters
    are a :class:`~ftlab.config.FitConfig` -- ``config``, or keyword
    ``settings`` (``fit(model, train, val, epochs=3, lr=1e-3)``), or both, the
    keywords replacing the config's fields. Learning rates come from
    ``param_groups`` (e.g. :func:`ftlab.optim.param_groups` for layer-wise
    rates) or ``lr`` (default 1e-3) for every trainable parameter -- not both.
    The schedule multiplies each group's own rate every step. With
    ``val_data``, the epoch with the best validation accuracy is remembered;
    ``patience`` stops early and ``restore_best`` loads the best weights at the
    end. float16 (see :func:`amp_dtype`) trains with a GradScaler.

    ``unfreeze`` is a gradual-unfreezing plan: the number of top layer groups
    (``groups``, default the model's) to make trainable in each epoch (see
    :func:`ftlab.optim.unfreeze_schedule`).

    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from ftlab.examples import worked_example_mlp
    >>> data = TensorDataset(torch.randn(64, 32), torch.randint(0, 2, (64,)))
    >>> history = fit(worked_example_mlp(width=32), data, data, epochs=2, lr=1e-3, progress=False)
    >>> len(history.column("val_accuracy"))
    2
    """
    cfg = resolve(config, settings)
    if cfg.patience is not None and val_data is None:
        raise ValueError("patience needs val_data: early stopping watches the validation accuracy")
    if unfreeze is not None and len(unfreeze) < cfg.epochs:
        raise ValueError(f"unfreeze plan has {len(unfreeze)} entries for {cfg.epochs} epochs")
    if seed is not None:
        seed_everything(seed)
    device = get_device(device)
    dtype = amp_dtype(device, cfg.amp)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)

    if unfreeze is not None:
        groups = resolve_groups(model, groups)
        unfreeze_top(model, unfreeze[0], groups)
    opt = build_optimizer(
        model,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        param_groups=param_groups,
        optimizer=cfg.optimizer,
        include_frozen=unfreeze is not None,
    )
    if unfreeze is not None:
        _check_plan_covered(groups, unfreeze, opt)
    loader = make_loader(train_data, cfg.batch_size, True, collate_fn, 0 if seed is None else seed, cfg.num_workers)
    sched = _schedule(opt, cfg, steps=len(loader))
    stopper = EarlyStopping(cfg.patience, cfg.restore_best)
    history = History(device=str(device))
    bar = tqdm(total=cfg.epochs * len(loader), desc="fit", disable=not progress, leave=False)
    step_kw = dict(
        loss_fn=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
        device=device,
        dtype=dtype,
        scaler=torch.amp.GradScaler(device.type, enabled=dtype is torch.float16),
        grad_clip=cfg.grad_clip,
        channels_last=cfg.channels_last,
        max_label=max_label(train_data),
        on_step=bar.update,
    )
    val_kw = dict(batch_size=max(cfg.batch_size, 128), device=device, collate_fn=collate_fn, amp=cfg.amp)
    try:
        for epoch in range(1, cfg.epochs + 1):
            if unfreeze is not None:
                unfreeze_top(model, unfreeze[epoch - 1], groups)
            record = _timed_epoch(model, loader, opt, sched, epoch, step_kw)
            if val_data is not None:
                val = evaluate(model, val_data, **val_kw)
                record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
                history.stopped_early = stopper.update(model, val["accuracy"], epoch)
                history.best_epoch = stopper.best_epoch
            history.epochs.append(record)
            bar.set_postfix(epoch=epoch, loss=f"{record['train_loss']:.3f}", val_acc=record.get("val_accuracy"))
            if history.stopped_early:
                break
    except KeyboardInterrupt:
        history.interrupted = True
    finally:
        bar.close()
    stopper.restore(model)
    return history


# --------------------------------------------------------------------------- the pieces


def build_optimizer(
    model: nn.Module,
    *,
    lr: float | None = None,
    weight_decay: float | None = None,
    param_groups: Iterable[dict[str, Any]] | None = None,
    optimizer: str = "adamw",
    include_frozen: bool = False,
) -> torch.optim.Optimizer:
    """AdamW (or SGD with momentum 0.9) over ``param_groups`` or the model's trainable parameters.

    Without ``param_groups`` every trainable parameter trains at ``lr`` (default
    1e-3) with ``weight_decay`` (default 0). With them, each group carries its
    own ``lr`` and ``weight_decay``, so passing either here too is an error (it
    would be ignored). The caller's group dicts are copied: the optimizer and
    the schedule write into their own copies. ``include_frozen`` also adds
    frozen parameters -- for gradual unfreezing, where they get gradients later.

    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> unfreeze_top(model, 1)  # only the head trains
    ['2']
    >>> opt = build_optimizer(model, lr=1e-2)
    >>> type(opt).__name__, opt.param_groups[0]["lr"], [tuple(p.shape) for p in opt.param_groups[0]["params"]]
    ('AdamW', 0.01, [(2, 8), (2,)])
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
    check_rate("lr", lr)
    check_rate("weight_decay", weight_decay)
    if param_groups is None:
        params = [p for p in model.parameters() if include_frozen or p.requires_grad]
        if not any(p.requires_grad for p in params):
            raise ValueError("model has no trainable parameters: unfreeze something first")
        groups = [{"params": params, "lr": 1e-3 if lr is None else lr, "weight_decay": weight_decay or 0.0}]
    else:
        given = [n for n, v in (("lr", lr), ("weight_decay", weight_decay)) if v is not None]
        if given:
            raise ValueError(
                f"{' and '.join(given)} would be ignored: with param_groups, each group sets its own "
                f"{' and '.join(repr(g) for g in given)}"
            )
        groups = [_copy_group(g, i) for i, g in enumerate(param_groups)]
        if not groups:
            raise ValueError("param_groups is empty")
    if optimizer == "adamw":
        return torch.optim.AdamW(groups)
    return torch.optim.SGD(groups, momentum=0.9)


def train_epoch(
    model: nn.Module,
    loader: Iterable,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler | None = None,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float | None = None,
    channels_last: bool = False,
    max_label: int | None = None,
    on_step: Callable[[], Any] | None = None,
) -> dict[str, float]:
    """One pass over ``loader``: forward, loss, backward, step. Returns mean train loss and accuracy.

    ``dtype`` runs the forward pass under autocast (see :func:`amp_dtype`);
    ``scaler`` (for float16) scales the loss so small gradients do not
    underflow; ``grad_clip`` caps the gradient norm. The running sums stay on
    the device: a ``.item()`` per step would make the CPU wait for the GPU.

    >>> from torch.utils.data import TensorDataset
    >>> model = nn.Linear(4, 2)
    >>> loader = make_loader(TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,))), batch_size=8, shuffle=True)
    >>> stats = train_epoch(model, loader, build_optimizer(model, lr=1e-2), device="cpu")  # 4 steps
    >>> sorted(stats), stats["samples"]
    (['samples', 'train_accuracy', 'train_loss'], 32)
    """
    device = get_device(device)
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    n = 0
    for x, y in loader:
        x = to_device(x, device, channels_last)
        with autocast(device, dtype):
            logits = logits_of(model, x)
            check_targets(logits, y, max_label)  # y is still on the CPU: no GPU sync
            y = y.to(device, non_blocking=True)
            loss = loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip is not None:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(opt)
        scaler.update()
        if sched is not None:
            sched.step()
        loss_sum += loss.detach() * y.shape[0]
        correct += (logits.detach().argmax(1) == y).sum()
        n += int(y.shape[0])
        if on_step is not None:
            on_step()
    if n == 0:
        raise ValueError("training data is empty")
    return {"train_loss": loss_sum.item() / n, "train_accuracy": correct.item() / n, "samples": n}


class EarlyStopping:
    """Keeps the weights of the best epoch (by validation score) and says when to stop.

    ``update`` returns True once ``patience`` epochs in a row brought no
    improvement (never, with ``patience=None``); ``restore`` loads the best
    weights back (if ``restore_best``).

    >>> model = nn.Linear(2, 2)
    >>> stopper = EarlyStopping(patience=2)
    >>> [stopper.update(model, accuracy, epoch) for epoch, accuracy in enumerate([0.6, 0.8, 0.7, 0.75], start=1)]
    [False, False, False, True]
    >>> stopper.best_epoch, stopper.best_score
    (2, 0.8)
    >>> stopper.restore(model)  # the weights of epoch 2 are back
    """

    def __init__(self, patience: int | None = None, restore_best: bool = True):
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
            raise ValueError(f"patience must be an int >= 1 or None, got {patience!r}")
        self.patience, self.restore_best = patience, restore_best
        self.best_score, self.best_epoch, self.since_best = -math.inf, None, 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def update(self, model: nn.Module, score: float, epoch: int) -> bool:
        if score > self.best_score:
            self.best_score, self.best_epoch, self.since_best = score, epoch, 0
            if self.restore_best:
                self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            self.since_best += 1
        return self.patience is not None and self.since_best >= self.patience

    def restore(self, model: nn.Module) -> None:
        if self.restore_best and self.best_state is not None:
            model.load_state_dict(self.best_state)


# --------------------------------------------------------------------------- fit's helpers


def _schedule(opt: torch.optim.Optimizer, cfg: FitConfig, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The config's schedule in optimizer steps (its settings are in epochs)."""
    if steps == 0:
        raise ValueError("training data is empty")
    every = None if cfg.step_every_epochs is None else cfg.step_every_epochs * steps
    return build_schedule(opt, cfg.schedule, cfg.epochs * steps, int(round(cfg.warmup_epochs * steps)), every)


def _timed_epoch(
    model: nn.Module, loader: Iterable, opt: torch.optim.Optimizer, sched: Any, epoch: int, step_kw: Mapping[str, Any]
) -> dict[str, float]:
    """One :func:`train_epoch` and the numbers a History row keeps about it."""
    start = time.perf_counter()
    stats = train_epoch(model, loader, opt, sched, **step_kw)
    if step_kw["device"].type == "cuda":
        torch.cuda.synchronize()  # the GPU's queued work belongs to this epoch's time
    seconds = time.perf_counter() - start
    return {
        "epoch": epoch,
        "train_loss": stats["train_loss"],
        "train_accuracy": stats["train_accuracy"],
        "lr": max(g["lr"] for g in opt.param_groups),
        "seconds": seconds,
        "samples_per_s": stats["samples"] / seconds,
        "trainable": count_parameters(model).trainable,
    }


def _copy_group(group: Mapping[str, Any], i: int) -> dict[str, Any]:
    if "lr" not in group:
        raise ValueError(f"param group {i} ({group.get('name', 'unnamed')}) has no 'lr'")
    params = group["params"]
    params = [params] if isinstance(params, torch.Tensor) else list(params)
    return {**group, "params": params, "weight_decay": group.get("weight_decay", 0.0)}


def _check_plan_covered(groups: Sequence[LayerGroup], plan: Sequence[int], opt: torch.optim.Optimizer) -> None:
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    top = groups[len(groups) - max(plan) :]
    missing = [g.name for g in top if any(id(p) not in in_opt for p in g.parameters())]
    if missing:
        raise ValueError(
            f"the unfreeze plan trains groups {missing} but param_groups lacks their parameters "
            "(build them with ftlab.optim.param_groups(..., trainable_only=False))"
        )
