"""Learning-rate schedules as one multiplier of every param group's own rate.

A schedule here never sets a rate: it scales each group's *real* ``lr`` (see
:mod:`ftlab.optim`) by the same factor, so layer-wise rates keep their ratios
through warm-up and decay. The shapes match torch's schedulers (a test compares
them) but are one pure function, :func:`schedule_factor`, that a lesson can plot.
"""

from __future__ import annotations

import math

import torch

from .config import SCHEDULES

__all__ = ["SCHEDULES", "schedule_factor", "build_schedule"]


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

    >>> [round(schedule_factor("cosine", step, total_steps=4), 3) for step in range(4)]
    [1.0, 0.854, 0.5, 0.146]
    >>> [schedule_factor("constant", step, total_steps=4, warmup_steps=2) for step in range(4)]
    [0.5, 1.0, 1.0, 1.0]
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


def build_schedule(
    opt: torch.optim.Optimizer,
    schedule: str,
    total_steps: int,
    warmup_steps: int = 0,
    step_every: int | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler that multiplies every group's own ``lr`` by :func:`schedule_factor`.

    Call its ``step()`` after each optimizer step; layer-wise rates keep their ratios.

    >>> weights = [torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)]
    >>> opt = torch.optim.SGD([{"params": [weights[0]], "lr": 0.1}, {"params": [weights[1]], "lr": 0.01}])
    >>> sched = build_schedule(opt, "linear", total_steps=4)
    >>> opt.step()
    >>> sched.step()
    >>> [round(group["lr"], 6) for group in opt.param_groups]  # both at 3/4 of their own rate
    [0.075, 0.0075]
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: schedule_factor(schedule, step, total_steps, warmup_steps, step_every)
    )
