"""Every training setting of :func:`ftlab.train.fit`, declared and checked in one place.

A setting lives here once: as a field of :class:`FitConfig`, with its default
and the rule it must obey (checked in ``__post_init__``, so a bad value fails
where it is written, not epochs later). ``fit`` takes a config, keyword
overrides, or both (:func:`resolve`), and settings objects that run ``fit``
(:class:`ftlab.strategies.Settings`) extend this class instead of repeating it.

What to train and where (the model, the data, ``param_groups``, an unfreezing
plan, the device, the seed) are arguments of ``fit`` itself: they are objects
of one call, not hyperparameters to record or compare.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["SCHEDULES", "OPTIMIZERS", "FitConfig", "SETTING_NAMES", "resolve", "check_rate"]

SCHEDULES = ("constant", "cosine", "onecycle", "step", "linear")
OPTIMIZERS = ("adamw", "sgd")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_rate(name: str, value: float | None) -> None:
    """``value`` is ``None`` or a finite number >= 0 (a learning rate or a weight decay).

    ``None`` means "not given" (the caller's default applies); a NaN or
    negative rate would train nonsense without an error.

    >>> check_rate("lr", 3e-4)  # fine: nothing happens
    >>> check_rate("weight_decay", -0.01)
    Traceback (most recent call last):
        ...
    ValueError: weight_decay must be a finite number >= 0, got -0.01
    """
    if value is not None and not (_is_number(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class FitConfig:
    """:func:`ftlab.train.fit`'s hyperparameters, with their defaults.

    ``lr`` (default 1e-3 in ``fit``) and ``weight_decay`` apply to every
    trainable parameter unless ``fit`` gets ``param_groups``; ``schedule`` is one
    of :data:`SCHEDULES`, after ``warmup_epochs`` of linear warm-up;
    ``patience`` stops after that many epochs without a better validation
    accuracy and ``restore_best`` loads the best epoch's weights at the end;
    ``amp``: see :func:`ftlab.precision.amp_dtype`.

    >>> config = FitConfig(epochs=3, lr=1e-3)
    >>> config.epochs, config.lr, config.schedule, config.batch_size
    (3, 0.001, 'cosine', 64)
    >>> FitConfig(schedule="exponential")
    Traceback (most recent call last):
        ...
    ValueError: unknown schedule 'exponential'; choose one of ('constant', 'cosine', 'onecycle', 'step', 'linear')
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

    def __post_init__(self) -> None:
        # One rule per setting, in field order; the message names the value that broke it.
        if not _is_int(self.epochs) or self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs!r}")
        check_rate("lr", self.lr)
        check_rate("weight_decay", self.weight_decay)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {SCHEDULES}")
        if not (_is_number(self.warmup_epochs) and 0 <= self.warmup_epochs <= self.epochs):
            raise ValueError(f"warmup_epochs must be in [0, epochs={self.epochs}], got {self.warmup_epochs!r}")
        if self.warmup_epochs and self.schedule == "onecycle":
            raise ValueError("warmup_epochs would be ignored: the 'onecycle' schedule has its own warm-up")
        every = self.step_every_epochs
        if every is not None and (self.schedule != "step" or not _is_int(every) or every < 1):
            raise ValueError(f"step_every_epochs needs schedule='step' and a value >= 1, got {every!r}")
        if self.patience is not None and (not _is_int(self.patience) or self.patience < 1):
            raise ValueError(f"patience must be an int >= 1 or None, got {self.patience!r}")
        for name in ("restore_best", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not (_is_number(self.label_smoothing) and 0 <= self.label_smoothing < 1):
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.grad_clip is not None and not (_is_number(self.grad_clip) and self.grad_clip > 0):
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip!r}")
        if not (self.amp is True or self.amp is False or self.amp in ("bf16", "fp16")):
            raise ValueError(f"amp must be True, False, 'bf16' or 'fp16', got {self.amp!r}")
        if not _is_int(self.num_workers) or self.num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {self.num_workers!r}")


SETTING_NAMES: frozenset[str] = frozenset(f.name for f in dataclasses.fields(FitConfig))


def resolve(config: FitConfig | None = None, overrides: Mapping[str, Any] | None = None) -> FitConfig:
    """``config`` (default :class:`FitConfig()`) with ``overrides`` replacing some of its fields.

    Only :class:`FitConfig`'s own fields can be overridden: a subclass's extra
    fields (``Settings.head_lr``) mean nothing to ``fit``, and a misspelt
    setting must not be dropped silently. The result is validated again.

    >>> resolve(FitConfig(epochs=3), {"lr": 1e-4})
    FitConfig(epochs=3, lr=0.0001, ...)
    >>> resolve(None, {"learning_rate": 1e-4})
    Traceback (most recent call last):
        ...
    TypeError: unknown training settings ['learning_rate']; FitConfig has ['amp', 'batch_size', ...]
    """
    config = FitConfig() if config is None else config
    if not isinstance(config, FitConfig):
        raise TypeError(f"config must be a FitConfig, got {type(config).__name__}")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - SETTING_NAMES)
    if unknown:
        raise TypeError(f"unknown training settings {unknown}; FitConfig has {sorted(SETTING_NAMES)}")
    return dataclasses.replace(config, **overrides) if overrides else config
