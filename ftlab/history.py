"""What a training run leaves behind: one row of numbers per epoch, and which epoch was best.

:func:`ftlab.train.fit` returns a :class:`History` rather than printing, so a
lesson can plot it, a test can read it, and a strategy comparison can report
the trainable parameters and throughput each epoch really had.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["History"]


@dataclass
class History:
    """Per-epoch record of a :func:`ftlab.train.fit` run.

    ``epochs`` holds one dict per epoch (``epoch``, ``train_loss``,
    ``val_accuracy``, ``lr``, ``seconds``, ...); ``best_epoch`` is the epoch of
    the best validation accuracy, starred when printed.

    >>> history = History(epochs=[{"epoch": 1, "train_loss": 0.9, "val_accuracy": 0.6},
    ...                           {"epoch": 2, "train_loss": 0.5, "val_accuracy": 0.8}], best_epoch=2)
    >>> history.column("val_accuracy"), history.best_val_accuracy
    ([0.6, 0.8], 0.8)
    >>> print(history)
             epoch      train_loss    val_accuracy
                 1          0.9000          0.6000
                 2          0.5000          0.8000 *
    """

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
