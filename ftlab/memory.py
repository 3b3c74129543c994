"""How much memory a fine-tuning job needs: weights, gradients, optimizer state and activations.

Training keeps four kinds of tensors on the device. The **weights** (every
parameter, frozen or not, and buffers such as BatchNorm's running statistics)
are there whatever trains. Each *trainable* parameter adds a **gradient** of its
own size and the optimizer's **state**: AdamW keeps two running averages per
parameter, SGD with momentum (as :func:`ftlab.train.build_optimizer` builds it)
one. The **activations** are what the forward pass keeps for the backward pass;
they grow with the batch, and a frozen part of the network keeps none, because
autograd saves nothing that no gradient will need. On top of what is kept, each
layer needs its input and output at the same time while it runs (the
**workspace**): that is all a frozen network needs beyond its weights.

:func:`memory_estimate` counts weights, gradients and optimizer state from the
parameters and measures the rest (:func:`probe`): it runs the model forward on a
batch of 2 and a batch of 4 (on the model's own device), records the tensors
autograd saves (:class:`torch.autograd.graph.saved_tensors_hooks`) and each
layer's input and output (forward hooks), and extrapolates linearly to
``batch_size``. The model's weights, buffers and train/eval modes are left as
they were. Not counted: the CUDA context, the allocator's caching and kernel
workspaces; size a device with headroom above :attr:`MemoryEstimate.total`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from .layers import count_parameters

__all__ = ["OPTIMIZER_STATES", "MemoryEstimate", "memory_estimate", "probe", "MIB"]

MIB = 2**20

# Per-parameter state each optimizer keeps for a trainable parameter (tensors of the parameter's size).
OPTIMIZER_STATES: dict[str, int] = {"adamw": 2, "adam": 2, "sgd": 1, "sgd_no_momentum": 0}

_PROBE_BATCHES = (2, 4)  # two batch sizes fit the line; 2, not 1: BatchNorm on (N, C) rejects a batch of 1


class MemoryEstimate(NamedTuple):
    """Bytes a training step needs, by kind (see :func:`memory_estimate`).

    >>> est = memory_estimate(nn.Linear(256, 256), (256,), batch_size=64)
    >>> est.parameters, est.optimizer_state, est.total  # AdamW keeps two states per trainable parameter
    (263168, 526336, 1249280)
    >>> {kind: round(mib, 3) for kind, mib in est.mib().items() if kind in ("parameters", "total")}
    {'parameters': 0.251, 'total': 1.191}
    """

    parameters: int  # every parameter, frozen or trainable
    buffers: int  # BatchNorm running statistics and other buffers
    gradients: int  # one per trainable parameter
    optimizer_state: int  # the optimizer's per-parameter state, trainable parameters only
    activations: int  # the input batch and what autograd keeps from the forward pass for backward
    workspace: int  # the largest input + output of one module, alive together while it runs
    trainable: int  # how many parameters train (count_parameters(model).trainable)
    batch_size: int

    @property
    def total(self) -> int:
        kept = self.parameters + self.buffers + self.gradients + self.optimizer_state
        return kept + self.activations + self.workspace

    def mib(self) -> dict[str, float]:
        """Each kind and the total in MiB (2**20 bytes)."""
        kinds = ("parameters", "buffers", "gradients", "optimizer_state", "activations", "workspace", "total")
        return {k: getattr(self, k) / MIB for k in kinds}


def _check(input_shape: Sequence[int], batch_size: int, optimizer: str) -> tuple[int, ...]:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise ValueError(f"batch_size must be an int, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list, torch.Size)) else ()
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(
            f"input_shape must be the shape of one example as positive ints, without the batch dimension "
            f"(e.g. (3, 224, 224)), got {input_shape!r}"
        )
    if optimizer not in OPTIMIZER_STATES:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZER_STATES)}, got {optimizer!r}")
    return shape


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _storage_bytes(tensors) -> int:
    """Bytes of the storages behind ``tensors``, each once (an in-place result shares its input's)."""
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values())


def probe(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """``(activations, workspace)`` in bytes for one training forward pass ``model(x)``.

    *activations*: ``x`` and every tensor autograd saves for the backward pass,
    weights and buffers excluded, each storage once (a saved view of a tensor
    already counted adds nothing). *workspace*: the largest input + output of any
    one module, which exist at the same time even where nothing is saved. Runs
    in ``train()`` mode, as training does (ftlab's frozen BatchNorm layers stay
    in eval); the model's buffers and modes are restored afterwards.

    >>> model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> probe(model, torch.randn(16, 8))  # input + ReLU output kept; first Linear's input + output at once
    (768, 768)
    """
    state = [(b, b.detach().clone()) for b in model.buffers()]
    modes = [(m, m.training) for m in model.modules()]
    owned = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    saved = {x.untyped_storage().data_ptr(): x.untyped_storage().nbytes()}
    largest = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in owned:
            saved.setdefault(storage.data_ptr(), storage.nbytes())
        return t

    def in_and_out(_module: nn.Module, inputs: tuple, output: object) -> None:
        tensors = [t for t in (*inputs, *(output if isinstance(output, tuple) else (output,))) if torch.is_tensor(t)]
        largest[0] = max(largest[0], _storage_bytes(tensors))

    handles = [m.register_forward_hook(in_and_out) for m in model.modules()]
    try:
        model.train()
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(x)
        del out
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for buffer, value in state:
                buffer.copy_(value)
        for module, training in modes:
            module.training = training
    return sum(saved.values()), largest[0]


def memory_estimate(
    model: nn.Module, input_shape: Sequence[int], batch_size: int, optimizer: str = "adamw"
) -> MemoryEstimate:
    """What one training step of ``model`` needs, in bytes, for batches of ``batch_size`` inputs.

    ``input_shape`` is one example's shape, e.g. ``(3, 224, 224)`` (the probe
    batches are random floats: for image models and others fed floats, not
    token ids); the trainable parameters are those with ``requires_grad``
    (freeze first, then estimate); ``optimizer`` is a key of
    :data:`OPTIMIZER_STATES`. Parameters,
    gradients and optimizer state are counted; activations and workspace are
    measured on batches of 2 and 4 and extrapolated linearly (module docstring).

    >>> est = memory_estimate(nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2)), (8,), 16)
    >>> est.parameters, est.gradients, est.optimizer_state  # 46 float32 parameters, all trainable, AdamW
    (184, 184, 368)
    >>> est.activations  # the input (16 x 8) and the ReLU's output (16 x 4), 4 bytes each
    768
    >>> est.workspace  # the largest input + output of one module: the first Linear's, 16 x (8 + 4) x 4 bytes
    768
    """
    shape = _check(input_shape, batch_size, optimizer)
    params = list(model.parameters())  # de-duplicates tied weights, as count_parameters does
    trainable = [p for p in params if p.requires_grad]
    first = params[0] if params else torch.empty(0)
    dtype = first.dtype if first.is_floating_point() else torch.float32
    (act_small, work_small), (act_large, work_large) = (
        probe(model, torch.randn(n, *shape, dtype=dtype, device=first.device)) for n in _PROBE_BATCHES
    )

    def at_batch_size(small: int, large: int) -> int:  # a line through the two probes
        per_example = (large - small) / (_PROBE_BATCHES[1] - _PROBE_BATCHES[0])
        return max(0, round(small + per_example * (batch_size - _PROBE_BATCHES[0])))

    grads = _tensor_bytes(trainable)
    return MemoryEstimate(
        parameters=_tensor_bytes(params),
        buffers=_tensor_bytes(model.buffers()),
        gradients=grads,
        optimizer_state=OPTIMIZER_STATES[optimizer] * grads,
        activations=at_batch_size(act_small, act_large),
        workspace=at_batch_size(work_small, work_large),
        trainable=count_parameters(model).trainable,
        batch_size=batch_size,
    )
