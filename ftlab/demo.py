"""`make demo`: a short smoke run of the core library on a real architecture.

Replaced by the strategy comparison (``ftlab compare``) once the trainer lands.
"""

from __future__ import annotations

import timm

from .examples import worked_example_mlp
from .layers import count_parameters, format_parameter_table, parameter_table, unfreeze_top
from .optim import layerwise_lrs, param_groups


def main() -> None:
    mlp = worked_example_mlp()
    for k, label in ((1, "feature extraction"), (3, "layers 3-4 + head")):
        unfreeze_top(mlp, k)
        c = count_parameters(mlp)
        print(f"{label:>20}: {c.trainable:,} of {c.total:,} trainable ({c.trainable_fraction:.1%})")
    print("layer-wise LRs, base 1e-3, gamma 0.1, L=4 (top->bottom):", layerwise_lrs(1e-3, 0.1, 4)[::-1])

    model = timm.create_model("tf_efficientnet_lite0", num_classes=10)
    unfreeze_top(model, 3)
    print(format_parameter_table(parameter_table(model)))
    for g in param_groups(model, base_lr=1e-3, gamma=0.5):
        print(f"{g['name']:>24}  lr={g['lr']:.2e}  params={sum(p.numel() for p in g['params']):,}")


if __name__ == "__main__":
    main()
