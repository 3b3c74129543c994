"""A small, honest trainer: the loop every fine-tuning strategy in the course shares.

``fit`` is the plain PyTorch loop (forward, loss, backward, step) plus what a
practitioner adds around it -- a per-step LR schedule that scales each param
group's *real* ``lr`` (so layer-wise rates survive the schedule), mixed
precision and channels-last on GPU, early stopping on validation accuracy with
the best weights restored, and a :class:`History` of what happened. It is
seeded and reproducible on CPU, and Ctrl-C stops training but keeps the best
model so far.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from .layers import LayerGroup, _resolve, count_parameters, unfreeze_top
from .utils import get_device, seed_everything

__all__ = [
    "History",
    "SCHEDULES",
    "schedule_factor",
    "fit",
    "evaluate",
    "predict",
    "cached_features",
    "head_module",
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


def _to_device(x: Any, device: torch.device, channels_last: bool = False) -> Any:
    if isinstance(x, torch.Tensor):
        x = x.to(device, non_blocking=True)
        if channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x
    if isinstance(x, Mapping):
        return {k: _to_device(v, device) for k, v in x.items()}
    return x


def _logits(model: nn.Module, x: Any) -> torch.Tensor:
    # Hugging Face models take keyword inputs and return an object with .logits.
    out = model(**x) if isinstance(x, Mapping) else model(x)
    return out.logits if hasattr(out, "logits") else out


def _batch_size_of(y: torch.Tensor) -> int:
    return int(y.shape[0])


def _loader(data: Dataset | DataLoader, batch_size: int, shuffle: bool, collate_fn, seed: int, num_workers: int):
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


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


# --------------------------------------------------------------------------- evaluation


@contextlib.contextmanager
def _inference(model: nn.Module, device: str | torch.device | None) -> Iterator[torch.device]:
    """Model on ``device`` in eval mode for the block; its train/eval mode is restored after."""
    device = get_device(device)
    model.to(device)
    was_training = model.training
    model.eval()
    try:
        yield device
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Dataset | DataLoader,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    collate_fn: Callable | None = None,
    amp: bool = True,
) -> dict[str, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``data``."""
    total_loss, correct, n = 0.0, 0, 0
    with _inference(model, device) as device:
        for x, y in _loader(data, batch_size, False, collate_fn, 0, 0):
            x, y = _to_device(x, device), y.to(device)
            with _autocast(device, amp):
                logits = _logits(model, x)
            total_loss += nn.functional.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            n += _batch_size_of(y)
    if n == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    return {"loss": total_loss / n, "accuracy": correct / n}


@torch.no_grad()
def predict(
    model: nn.Module,
    data: Dataset | DataLoader,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    collate_fn: Callable | None = None,
) -> torch.Tensor:
    """Class probabilities (softmax of the logits) for every item of ``data``, on CPU."""
    with _inference(model, device) as device:
        probs = [
            _logits(model, _to_device(x, device)).float().softmax(1).cpu()
            for x, _ in _loader(data, batch_size, False, collate_fn, 0, 0)
        ]
    return torch.cat(probs)


# --------------------------------------------------------------------------- feature caching


def head_module(model: nn.Module, groups: Sequence[LayerGroup] | None = None) -> nn.Module:
    """The final classifier module (last module of the last layer group)."""
    return _resolve(model, groups)[-1].modules[-1]


@torch.no_grad()
def cached_features(
    model: nn.Module,
    data: Dataset | DataLoader,
    *,
    head: nn.Module | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    collate_fn: Callable | None = None,
) -> TensorDataset:
    """Run the frozen network once and keep what enters its classifier.

    Feature extraction trains only the classifier on a fixed backbone, so the
    backbone's output for each example never changes: computing it once turns
    every later epoch into a tiny linear-model fit. (Dropout before the
    classifier is skipped -- features are taken in eval mode.)
    """
    head = head_module(model) if head is None else head
    captured: list[torch.Tensor] = []
    labels = []
    handle = head.register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0].detach().float().cpu()))
    try:
        with _inference(model, device) as device:
            for x, y in _loader(data, batch_size, False, collate_fn, 0, 0):
                _logits(model, _to_device(x, device))
                labels.append(y.cpu())
    finally:
        handle.remove()
    if not captured:
        raise ValueError("the head module was never called: is `head` part of the model's forward?")
    return TensorDataset(torch.cat(captured), torch.cat(labels))


# --------------------------------------------------------------------------- fit


def fit(
    model: nn.Module,
    train_data: Dataset | DataLoader,
    val_data: Dataset | DataLoader | None = None,
    *,
    epochs: int = 5,
    lr: float = 1e-3,
    param_groups: Iterable[dict[str, Any]] | None = None,
    weight_decay: float = 0.0,
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
    amp: bool = True,
    channels_last: bool = False,
    seed: int | None = 0,
    collate_fn: Callable | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> History:
    """Train ``model`` with cross-entropy; return a :class:`History`.

    Learning rates come from ``param_groups`` (e.g. :func:`ftlab.optim.param_groups`
    for layer-wise rates) or, if not given, ``lr`` for every trainable parameter.
    ``schedule`` (see :func:`schedule_factor`) multiplies each group's own rate
    every step. With ``val_data``, the epoch with the best validation accuracy is
    remembered; ``patience`` stops after that many epochs without improvement and
    ``restore_best`` loads the best weights at the end.

    ``unfreeze`` is a gradual-unfreezing plan: the number of top layer groups to
    make trainable in each epoch (see :func:`ftlab.optim.unfreeze_schedule`).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be >= 1 or None, got {patience}")
    if optimizer not in ("adamw", "sgd"):
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    if unfreeze is not None and len(unfreeze) < epochs:
        raise ValueError(f"unfreeze plan has {len(unfreeze)} entries for {epochs} epochs")
    if seed is not None:
        seed_everything(seed)
    device = get_device(device)
    model.to(device)
    if channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)

    if unfreeze is not None:
        groups = _resolve(model, groups)
        unfreeze_top(model, unfreeze[0], groups)
    if param_groups is None:
        # Gradual unfreezing: put every parameter in the optimizer now; frozen ones
        # have grad None and are skipped until they are unfrozen.
        params = (
            list(model.parameters()) if unfreeze is not None else [p for p in model.parameters() if p.requires_grad]
        )
        if not params:
            raise ValueError("model has no trainable parameters: unfreeze something first")
        param_groups = [{"params": params, "lr": lr, "weight_decay": weight_decay}]
    param_groups = list(param_groups)
    if optimizer == "adamw":
        opt = torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(param_groups, lr=lr, momentum=0.9, weight_decay=weight_decay)

    loader = _loader(train_data, batch_size, True, collate_fn, 0 if seed is None else seed, num_workers)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError("training data is empty")
    total = epochs * steps_per_epoch
    warmup = int(round(warmup_epochs * steps_per_epoch))
    every = None if step_every_epochs is None else step_every_epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: schedule_factor(schedule, s, total, warmup, every))
    use_scaler = amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    history = History(device=str(device))
    best_acc, best_state, since_best = -1.0, None, 0
    bar = tqdm(total=total, desc="fit", disable=not progress, leave=False)
    try:
        for epoch in range(1, epochs + 1):
            if unfreeze is not None:
                unfreeze_top(model, unfreeze[epoch - 1], groups)
            model.train()
            start = time.perf_counter()
            # Running sums stay on the device: a .item() per step would make the
            # CPU wait for the GPU every batch.
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.long, device=device)
            n = 0
            for x, y in loader:
                x, y = _to_device(x, device, channels_last and device.type == "cuda"), y.to(device)
                with _autocast(device, amp):
                    logits = _logits(model, x)
                    loss = loss_fn(logits.float(), y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if grad_clip is not None:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                scaler.step(opt)
                scaler.update()
                sched.step()
                b = _batch_size_of(y)
                loss_sum += loss.detach() * b
                correct += (logits.detach().argmax(1) == y).sum()
                n += b
                bar.update(1)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            record: dict[str, float] = {
                "epoch": epoch,
                "train_loss": loss_sum.item() / n,
                "train_accuracy": correct.item() / n,
                "lr": max(g["lr"] for g in opt.param_groups),
                "seconds": seconds,
                "samples_per_s": n / seconds,
                "trainable": count_parameters(model).trainable,
            }
            if val_data is not None:
                val = evaluate(
                    model, val_data, batch_size=max(batch_size, 128), device=device, collate_fn=collate_fn, amp=amp
                )
                record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
                if val["accuracy"] > best_acc:
                    best_acc, since_best, history.best_epoch = val["accuracy"], 0, epoch
                    if restore_best:
                        best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                else:
                    since_best += 1
            history.epochs.append(record)
            bar.set_postfix(epoch=epoch, loss=f"{record['train_loss']:.3f}", val_acc=record.get("val_accuracy"))
            if patience is not None and val_data is not None and since_best >= patience:
                history.stopped_early = True
                break
    except KeyboardInterrupt:
        history.interrupted = True
    finally:
        bar.close()
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    return history
