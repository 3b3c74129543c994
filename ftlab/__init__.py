"""ftlab: the library behind the fine-tuning course.

Modules are named for concepts: :mod:`ftlab.layers` (layer groups, freezing,
parameter counts), :mod:`ftlab.optim` (layer-wise learning rates, gradual
unfreezing), :mod:`ftlab.lr_find` (the learning-rate range test), :mod:`ftlab.memory` (the memory a training
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

from .layers import (
    LayerGroup,
    count_parameters,
    format_parameter_table,
    freeze,
    layer_groups,
    make_groups,
    parameter_table,
    unfreeze,
    unfreeze_top,
)
from .lr_find import LRFindResult, lr_find
from .memory import MemoryEstimate, memory_estimate
from .optim import layerwise_lrs, param_groups, unfreeze_schedule
from .utils import fast_mode, get_device, seed_everything

__version__ = "0.1.0"

__all__ = [
    "LRFindResult",
    "LayerGroup",
    "MemoryEstimate",
    "count_parameters",
    "fast_mode",
    "format_parameter_table",
    "freeze",
    "get_device",
    "layer_groups",
    "layerwise_lrs",
    "lr_find",
    "make_groups",
    "memory_estimate",
    "param_groups",
    "parameter_table",
    "seed_everything",
    "unfreeze",
    "unfreeze_schedule",
    "unfreeze_top",
]
