"""ftlab: the library behind the fine-tuning course.

Modules are named for concepts: :mod:`ftlab.layers` (layer groups, freezing,
parameter counts), :mod:`ftlab.optim` (layer-wise learning rates, gradual
unfreezing), :mod:`ftlab.lr_finder` (the learning-rate range test), :mod:`ftlab.memory` (the memory a training
step needs), :mod:`ftlab.utils` (seeding, device); :mod:`ftlab.train` is the
training loop, its settings one :class:`ftlab.config.FitConfig`, its helpers
:mod:`ftlab.batches`, :mod:`ftlab.precision`, :mod:`ftlab.schedules`,
:mod:`ftlab.evaluation` and :mod:`ftlab.history`; :mod:`ftlab.models` is a
registry of loaders (foreign checkpoints mapped in :mod:`ftlab.checkpoints`)
and :mod:`ftlab.strategies` a table of fine-tuning strategies.

The most used names are importable from the package itself:

>>> import ftlab
>>> ftlab.layerwise_lrs is ftlab.optim.layerwise_lrs
True
>>> ftlab.layerwise_lrs(1e-3, 0.5, 3)
[0.00025, 0.0005, 0.001]
"""

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> the module that defines it. Loaded on first use (PEP 562), so that a process that needs only a
# corner of the package -- a sandboxed grading kernel, ``ftlab grade`` -- does not pay torch's import
# (about 2 CPU-s) for nothing.
_EXPORTS = {
    "LayerGroup": "layers",
    "count_parameters": "layers",
    "format_parameter_table": "layers",
    "freeze": "layers",
    "layer_groups": "layers",
    "make_groups": "layers",
    "parameter_table": "layers",
    "unfreeze": "layers",
    "unfreeze_top": "layers",
    "LRFindResult": "lr_finder",
    "lr_find": "lr_finder",
    "MemoryEstimate": "memory",
    "memory_estimate": "memory",
    "layerwise_lrs": "optim",
    "param_groups": "optim",
    "unfreeze_schedule": "optim",
    "fast_mode": "utils",
    "get_device": "utils",
    "seed_everything": "utils",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """``ftlab.freeze`` and the other exported names, imported from their module when first asked for."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
