"""A small, honest trainer: the loop every fine-tuning strategy in the course shares.

The loop is four pieces a student can read top to bottom, and :func:`fit` is
exactly those pieces plus the extras (argument checks, seeding, gradual
unfreezing, a progress bar, a :class:`History`)::

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

:func:`train_epoch` is the plain PyTorch loop (forward, loss, backward, step);
the schedule scales each param group's *real* ``lr`` (so layer-wise rates
survive it); :func:`amp_dtype` picks mixed precision from the device actually
used. Training is seeded and reproducible on CPU, and Ctrl-C stops :func:`fit`
but keeps the best model so far.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from .layers import LayerGroup, count_parameters, resolve_groups, unfreeze_top
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

SCHEDULES = ("constant", "cosine", "onecycle", "step", "linear")


# --------------------------------------------------------------------------- schedules


def schedule_factor(
    name: str,
    step: int,
    total_steps: int,
    warmup_steps: int = 0,
    step_every: int | None = None,
    step_gamma: float = 0.1,
) -> float:
    """Multiplier of every group's base ``lr`` at optimizer step ``step`` (0-based).

    ``constant``, ``cosine`` (to 0), ``linear`` (to 0), ``step`` (x ``step_gamma``
    every ``step_every`` steps) -- each after an optional linear warm-up from 0 --
    and ``onecycle`` (torch's OneCycleLR shape: cosine warm-up from lr/25 over
    30% of the steps, cosine down to lr/25e4; ``warmup_steps`` is ignored).
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {SCHEDULES}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if name == "onecycle":
        up = 0.3 * total_steps - 1  # torch.optim.lr_scheduler.OneCycleLR's phase boundary
        if up > 0 and step <= up:
            return _cos(1 / 25, 1.0, step / up)
        return _cos(1.0, 1 / 25e4, min(1.0, (step - up) / max(1e-9, total_steps - 1 - up)))
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    t = step - warmup_steps
    rest = max(1, total_steps - warmup_steps)
    if name == "constant":
        return 1.0
    if name == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t / rest)))
    if name == "linear":
        return max(0.0, 1 - t / rest)
    every = step_every or max(1, rest // 3)
    return step_gamma ** (t // every)


def _cos(start: float, end: float, frac: float) -> float:
    return end + (start - end) / 2 * (1 + math.cos(math.pi * frac))


# --------------------------------------------------------------------------- history


@dataclass
class History:
    """Per-epoch record of a :func:`fit` run."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    interrupted: bool = False
    device: str = "cpu"

    def column(self, key: str) -> list[float]:
        return [e[key] for e in self.epochs if key in e]

    @property
    def best_val_accuracy(self) -> float | None:
        if self.best_epoch is None:
            return None
        return self.epochs[self.best_epoch - 1].get("val_accuracy")

    @property
    def total_time(self) -> float:
        return sum(self.column("seconds"))

    def __str__(self) -> str:
        keys = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
        keys = [k for k in keys if any(k in e for e in self.epochs)]
        lines = ["  ".join(f"{k:>14}" for k in keys)]
        for e in self.epochs:
            mark = " *" if e["epoch"] == self.best_epoch else ""
            lines.append("  ".join(_fmt(e.get(k)) for k in keys) + mark)
        return "\n".join(lines)

    def plot(self, axes: Sequence[Any] | None = None):
        """Loss and accuracy curves (train and validation) on two matplotlib axes."""
        import matplotlib.pyplot as plt

        if axes is None:
            _, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        ep = self.column("epoch")
        for ax, key in zip(axes, ("loss", "accuracy")):
            ax.plot(ep, self.column(f"train_{key}"), "o-", label="train")
            if self.column(f"val_{key}"):
                ax.plot(ep, self.column(f"val_{key}"), "o-", label="validation")
            if self.best_epoch is not None:
                ax.axvline(self.best_epoch, color="grey", ls=":", label="best")
            ax.set_xlabel("epoch")
            ax.set_ylabel(key)
            ax.legend()
        return axes


def _fmt(v: float | None) -> str:
    if v is None:
        return f"{'':>14}"
    if isinstance(v, int):
        return f"{v:>14d}"
    return f"{v:>14.3e}" if abs(v) < 1e-2 and v != 0 else f"{v:>14.4f}"


# --------------------------------------------------------------------------- batches


def to_device(x: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move a batch input (a tensor, or a dict of tensors for Hugging Face models) to ``device``."""
    if isinstance(x, torch.Tensor):
        x = x.to(device, non_blocking=True)
        if channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x
    if isinstance(x, Mapping):
        return {k: to_device(v, device) for k, v in x.items()}
    return x


def logits_of(model: nn.Module, x: Any) -> torch.Tensor:
    """The model's class scores: Hugging Face models take keyword inputs and return an object with ``.logits``."""
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
    """``data`` itself if it is a DataLoader, else a seeded one over it."""
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


def _max_label(data: Dataset | DataLoader) -> int | None:
    """The largest label of a data set when it can be read without loading the inputs, else None."""
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


# --------------------------------------------------------------------------- precision


def amp_dtype(device: str | torch.device, amp: bool | str = True) -> torch.dtype | None:
    """The autocast dtype for ``device`` (``None``: plain float32).

    ``amp=True`` means bfloat16 on a CUDA GPU that computes it natively (compute
    capability >= 8.0: A100, H100, RTX 30xx/40xx) and float16 -- with a
    GradScaler in :func:`fit` -- on older GPUs (T4, V100), whose bfloat16 is
    only emulated: slow, and some convolutions fail. (``torch.cuda.is_bf16_supported()``
    alone counts emulation as support.) On the CPU ``amp=True`` keeps float32.
    ``amp="bf16"`` or ``"fp16"`` forces that dtype on any device, CPU autocast
    included; ``amp=False`` is float32.
    """
    device = torch.device(device)
    if amp is False:
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if amp is not True:
        raise ValueError(f"amp must be True, False, 'bf16' or 'fp16', got {amp!r}")
    if device.type != "cuda":
        return None
    return torch.bfloat16 if _native_bf16(device) else torch.float16


def _native_bf16(device: torch.device) -> bool:
    index = device.index if device.index is not None else torch.cuda.current_device()
    if torch.cuda.get_device_capability(index) < (8, 0):
        return False
    with torch.cuda.device(index):
        return torch.cuda.is_bf16_supported(including_emulation=False)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


# --------------------------------------------------------------------------- evaluation


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
            with _autocast(device, dtype):
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


# --------------------------------------------------------------------------- the loop, in pieces


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
    """
    if optimizer not in ("adamw", "sgd"):
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
    for name, value in (("lr", lr), ("weight_decay", weight_decay)):
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
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


def _copy_group(group: Mapping[str, Any], i: int) -> dict[str, Any]:
    if "lr" not in group:
        raise ValueError(f"param group {i} ({group.get('name', 'unnamed')}) has no 'lr'")
    params = group["params"]
    params = [params] if isinstance(params, torch.Tensor) else list(params)
    return {**group, "params": params, "weight_decay": group.get("weight_decay", 0.0)}


def build_schedule(
    opt: torch.optim.Optimizer,
    schedule: str,
    total_steps: int,
    warmup_steps: int = 0,
    step_every: int | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler that multiplies every group's own ``lr`` by :func:`schedule_factor`."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: schedule_factor(schedule, step, total_steps, warmup_steps, step_every)
    )


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
    """
    device = get_device(device)
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    n = 0
    for x, y in loader:
        x = to_device(x, device, channels_last)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
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


# --------------------------------------------------------------------------- fit


@dataclass(frozen=True)
class FitConfig:
    """:func:`fit`'s hyperparameters with fit's own defaults (a test keeps the two in agreement).

    Settings objects that run ``fit`` (e.g. :class:`ftlab.strategies.Settings`)
    extend this instead of re-declaring fit's arguments; :meth:`fit_kwargs` turns
    one back into keyword arguments.
    """

    epochs: int = 5
    lr: float | None = None
    weight_decay: float | None = None
    optimizer: str = "adamw"
    batch_size: int = 64
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    step_every_epochs: int | None = None
    patience: int | None = None
    restore_best: bool = True
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    amp: bool | str = True
    channels_last: bool = False
    num_workers: int = 0

    def fit_kwargs(self, exclude: Iterable[str] = ()) -> dict[str, Any]:
        skip = set(exclude)
        return {f.name: getattr(self, f.name) for f in fields(FitConfig) if f.name not in skip}


def _check_fit_args(
    epochs, schedule, warmup_epochs, step_every_epochs, patience, val_data, unfreeze, label_smoothing, grad_clip
):
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    if not (isinstance(warmup_epochs, (int, float)) and math.isfinite(warmup_epochs) and 0 <= warmup_epochs <= epochs):
        raise ValueError(f"warmup_epochs must be in [0, epochs={epochs}], got {warmup_epochs!r}")
    if warmup_epochs and schedule == "onecycle":
        raise ValueError("warmup_epochs would be ignored: the 'onecycle' schedule has its own warm-up")
    if step_every_epochs is not None and (schedule != "step" or step_every_epochs < 1):
        raise ValueError(f"step_every_epochs needs schedule='step' and a value >= 1, got {step_every_epochs!r}")
    if patience is not None and val_data is None:
        raise ValueError("patience needs val_data: early stopping watches the validation accuracy")
    if unfreeze is not None and len(unfreeze) < epochs:
        raise ValueError(f"unfreeze plan has {len(unfreeze)} entries for {epochs} epochs")
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be > 0 or None, got {grad_clip!r}")


def _check_plan_covered(groups: Sequence[LayerGroup], plan: Sequence[int], opt: torch.optim.Optimizer) -> None:
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    top = groups[len(groups) - max(plan) :]
    missing = [g.name for g in top if any(id(p) not in in_opt for p in g.parameters())]
    if missing:
        raise ValueError(
            f"the unfreeze plan trains groups {missing} but param_groups lacks their parameters "
            "(build them with ftlab.optim.param_groups(..., trainable_only=False))"
        )


def fit(
    model: nn.Module,
    train_data: Dataset | DataLoader,
    val_data: Dataset | DataLoader | None = None,
    *,
    epochs: int = 5,
    lr: float | None = None,
    weight_decay: float | None = None,
    param_groups: Iterable[dict[str, Any]] | None = None,
    optimizer: str = "adamw",
    batch_size: int = 64,
    schedule: str = "cosine",
    warmup_epochs: float = 0.0,
    step_every_epochs: int | None = None,
    patience: int | None = None,
    restore_best: bool = True,
    unfreeze: Sequence[int] | None = None,
    groups: Sequence[LayerGroup] | None = None,
    label_smoothing: float = 0.0,
    grad_clip: float | None = None,
    device: str | torch.device | None = None,
    amp: bool | str = True,
    channels_last: bool = False,
    seed: int | None = 0,
    collate_fn: Callable | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> History:
    """Train ``model`` with cross-entropy; return a :class:`History`.

    The loop of this module's docstring with the extras. Learning rates come
    from ``param_groups`` (e.g. :func:`ftlab.optim.param_groups` for layer-wise
    rates) or ``lr`` (default 1e-3) for every trainable parameter -- not both.
    ``schedule`` (see :func:`schedule_factor`) multiplies each group's own rate
    every step, after ``warmup_epochs`` of linear warm-up. With ``val_data``,
    the epoch with the best validation accuracy is remembered; ``patience``
    stops after that many epochs without improvement and ``restore_best`` loads
    the best weights at the end. ``amp``: see :func:`amp_dtype`; float16 trains
    with a GradScaler.

    ``unfreeze`` is a gradual-unfreezing plan: the number of top layer groups to
    make trainable in each epoch (see :func:`ftlab.optim.unfreeze_schedule`).
    """
    _check_fit_args(
        epochs, schedule, warmup_epochs, step_every_epochs, patience, val_data, unfreeze, label_smoothing, grad_clip
    )
    if seed is not None:
        seed_everything(seed)
    device = get_device(device)
    dtype = amp_dtype(device, amp)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)

    if unfreeze is not None:
        groups = resolve_groups(model, groups)
        unfreeze_top(model, unfreeze[0], groups)
    opt = build_optimizer(
        model,
        lr=lr,
        weight_decay=weight_decay,
        param_groups=param_groups,
        optimizer=optimizer,
        include_frozen=unfreeze is not None,
    )
    if unfreeze is not None:
        _check_plan_covered(groups, unfreeze, opt)
    loader = make_loader(train_data, batch_size, True, collate_fn, 0 if seed is None else seed, num_workers)
    steps = len(loader)
    if steps == 0:
        raise ValueError("training data is empty")
    every = None if step_every_epochs is None else step_every_epochs * steps
    sched = build_schedule(opt, schedule, epochs * steps, int(round(warmup_epochs * steps)), every)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    stopper = EarlyStopping(patience, restore_best)
    max_label = _max_label(train_data)

    history = History(device=str(device))
    bar = tqdm(total=epochs * steps, desc="fit", disable=not progress, leave=False)
    try:
        for epoch in range(1, epochs + 1):
            if unfreeze is not None:
                unfreeze_top(model, unfreeze[epoch - 1], groups)
            start = time.perf_counter()
            stats = train_epoch(
                model,
                loader,
                opt,
                sched,
                loss_fn=loss_fn,
                device=device,
                dtype=dtype,
                scaler=scaler,
                grad_clip=grad_clip,
                channels_last=channels_last,
                max_label=max_label,
                on_step=bar.update,
            )
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            record: dict[str, float] = {
                "epoch": epoch,
                "train_loss": stats["train_loss"],
                "train_accuracy": stats["train_accuracy"],
                "lr": max(g["lr"] for g in opt.param_groups),
                "seconds": seconds,
                "samples_per_s": stats["samples"] / seconds,
                "trainable": count_parameters(model).trainable,
            }
            stop = False
            if val_data is not None:
                val = evaluate(
                    model, val_data, batch_size=max(batch_size, 128), device=device, collate_fn=collate_fn, amp=amp
                )
                record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
                stop = stopper.update(model, val["accuracy"], epoch)
                history.best_epoch = stopper.best_epoch
            history.epochs.append(record)
            bar.set_postfix(epoch=epoch, loss=f"{record['train_loss']:.3f}", val_acc=record.get("val_accuracy"))
            if stop:
                history.stopped_early = True
                break
    except KeyboardInterrupt:
        history.interrupted = True
    finally:
        bar.close()
    stopper.restore(model)
    return history


def __getattr__(name: str) -> Any:
    # cached_features and head_module live in ftlab.features (which imports this
    # module); the lessons import them from here too.
    if name in ("cached_features", "head_module"):
        from . import features

        return getattr(features, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
