"""Fine-tuning strategies side by side: final accuracy against computational cost.

Each strategy starts from a fresh copy of the same pretrained model (or, for
``scratch``, the same architecture randomly initialised), trains on the same
splits with the same seed, and is scored on the same held-out test set.

================== ============================================================
strategy           what trains
================== ============================================================
feature_extraction the classifier only, on features computed once (cached)
fine_tune_top      the top ``k`` layer groups, low learning rate
fine_tune_all      every layer, one low learning rate
layerwise          every layer, rates decayed by ``gamma`` per group downwards
gradual            head first, then more groups each epoch (ULMFiT)
scratch            every layer of a randomly initialised network
================== ============================================================
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .layers import count_parameters, layer_groups, unfreeze, unfreeze_top
from .optim import param_groups, unfreeze_schedule
from .train import History, cached_features, evaluate, fit, head_module
from .utils import seed_everything

__all__ = [
    "STRATEGIES",
    "StrategyResult",
    "Settings",
    "compare",
    "run_strategy",
    "recommend_strategy",
    "results_table",
    "plot_results",
    "save_results",
]

STRATEGIES: dict[str, str] = {
    "feature_extraction": "classifier only, on cached frozen features",
    "fine_tune_top": "top k groups, low LR",
    "fine_tune_all": "all layers, low LR",
    "layerwise": "all layers, LR decayed by gamma per group",
    "gradual": "head first, then more groups each epoch",
    "scratch": "random init, all layers",
}
TEXT_STRATEGIES = ("feature_extraction", "fine_tune_all", "layerwise")


@dataclass(frozen=True)
class Settings:
    """Hyperparameters of a comparison. Defaults suit EfficientNet-Lite0 on small images."""

    epochs: int = 3
    batch_size: int = 64
    lr: float = 2e-3  # fine-tuning rate (top/all/layerwise/gradual) for Adam on a CNN
    head_lr: float = 1e-2  # feature extraction trains a linear model: a larger step is safe
    scratch_lr: float = 3e-3
    head_epochs: int = 30  # feature extraction epochs are almost free once features are cached
    gamma: float = 0.8
    top_k: int = 3
    weight_decay: float = 1e-4
    schedule: str = "onecycle"


TEXT_SETTINGS = Settings(
    epochs=3, batch_size=32, lr=5e-5, head_lr=1e-2, head_epochs=30, gamma=0.8, weight_decay=0.01, schedule="linear"
)


@dataclass
class StrategyResult:
    name: str
    test_accuracy: float
    trainable_params: int
    total_params: int
    seconds: float
    samples_per_s: float
    history: History = field(repr=False)

    def as_row(self) -> dict[str, Any]:
        return {
            "strategy": self.name,
            "test_accuracy": round(self.test_accuracy, 4),
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
            "seconds": round(self.seconds, 2),
            "samples_per_s": round(self.samples_per_s, 1),
        }


# --------------------------------------------------------------------------- running


def run_strategy(
    name: str,
    model: nn.Module,
    splits: Any,
    settings: Settings = Settings(),
    *,
    collate_fn=None,
    device=None,
    seed: int = 0,
    progress: bool = True,
) -> StrategyResult:
    """Train ``model`` (already loaded; ``scratch`` wants a randomly initialised one) by strategy ``name``."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {list(STRATEGIES)}")
    seed_everything(seed)
    s = settings
    common = dict(batch_size=s.batch_size, device=device, seed=seed, progress=progress, schedule=s.schedule)
    n_train = len(splits.train)
    start = time.perf_counter()

    if name == "feature_extraction":
        head = head_module(model)
        model.requires_grad_(False)
        head.requires_grad_(True)
        kw = dict(device=device, collate_fn=collate_fn, batch_size=max(128, s.batch_size))
        train, val, test = (cached_features(model, d, head=head, **kw) for d in (splits.train, splits.val, splits.test))
        history = fit(head, train, val, epochs=s.head_epochs, lr=s.head_lr, weight_decay=s.weight_decay, **common)
        accuracy = evaluate(head, test, device=device)["accuracy"]
        seen = n_train * (1 + s.head_epochs)  # one pass through the network, then cheap epochs
    else:
        fit_kw: dict[str, Any] = dict(epochs=s.epochs, collate_fn=collate_fn, weight_decay=s.weight_decay, **common)
        if name == "fine_tune_top":
            unfreeze_top(model, min(s.top_k, len(layer_groups(model))))
            fit_kw["lr"] = s.lr
        elif name == "fine_tune_all":
            unfreeze(model)
            fit_kw["lr"] = s.lr
        elif name == "layerwise":
            unfreeze(model)
            fit_kw["param_groups"] = param_groups(model, s.lr, s.gamma, head_lr=s.lr, weight_decay=s.weight_decay)
        elif name == "gradual":
            n = len(layer_groups(model))
            step = 1 if s.epochs == 1 else math.ceil((n - 1) / (s.epochs - 1))
            fit_kw.update(lr=s.lr, unfreeze=unfreeze_schedule(n, s.epochs, step=step))
        else:  # scratch
            unfreeze(model)
            fit_kw["lr"] = s.scratch_lr
        history = fit(model, splits.train, splits.val, **fit_kw)
        accuracy = evaluate(model, splits.test, device=device, collate_fn=collate_fn)["accuracy"]
        seen = n_train * len(history.epochs)
    seconds = time.perf_counter() - start
    counts = count_parameters(model)
    trainable = max(h for h in history.column("trainable")) if history.epochs else counts.trainable
    return StrategyResult(name, accuracy, int(trainable), counts.total, seconds, seen / seconds, history)


def compare(
    model: str = "efficientnet_lite0",
    dataset: str = "digits",
    *,
    strategies: Sequence[str] | None = None,
    settings: Settings | None = None,
    image_size: int = 48,
    max_per_class: int | None = None,
    seed: int = 0,
    device=None,
    progress: bool = True,
) -> list[StrategyResult]:
    """Run several strategies on one model and data set; one result per strategy."""
    from .data import load_dataset, text_collate
    from .models import ImagePreprocess, load_pretrained

    probe = load_pretrained(model)
    is_text = hasattr(probe, "tokenizer")
    strategies = list(strategies or (TEXT_STRATEGIES if is_text else STRATEGIES))
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
    settings = settings or (TEXT_SETTINGS if is_text else Settings())
    if is_text:
        splits = load_dataset(dataset, seed=seed, max_per_class=max_per_class)
        collate = text_collate(probe.tokenizer)
    else:
        pre = probe.preprocess
        preprocess = ImagePreprocess(image_size, pre.mean, pre.std)
        splits = load_dataset(dataset, preprocess=preprocess, seed=seed, max_per_class=max_per_class)
        collate = None
    results = []
    for name in strategies:
        # Seed before building: the new head's random init must not depend on
        # which strategies ran before this one.
        seed_everything(seed)
        net = load_pretrained(model, num_classes=splits.num_classes, pretrained=name != "scratch")
        results.append(
            run_strategy(name, net, splits, settings, collate_fn=collate, device=device, seed=seed, progress=progress)
        )
        if progress:
            r = results[-1]
            print(f"{r.name:>18}: test accuracy {r.test_accuracy:.4f} in {r.seconds:.1f} s", flush=True)
    return results


# --------------------------------------------------------------------------- choosing


def recommend_strategy(
    n_samples: int, domain_similarity: str | float, small_data: int = 1000, scratch_data: int = 1_000_000
) -> str:
    """The syllabus's decision tree: labelled data size x similarity to the pretraining data.

    ============ ================ =====================================================
    data         target domain    strategy
    ============ ================ =====================================================
    small        similar          ``feature_extraction`` -- the top features already
                                  fit, and few labels would overfit anything bigger
    small        different        ``fine_tune_top`` -- adapt the top layers, carefully
                                  (a very low backbone rate), keep the rest frozen
    large        similar          ``fine_tune_all`` -- enough data to move every layer
    large        different        ``fine_tune_all`` -- aggressively (longer, a higher
                                  rate); ``scratch`` from ``scratch_data`` examples on
                                  (ImageNet has 1.28M for ResNet-50's 25M parameters)
    ============ ================ =====================================================

    ``domain_similarity`` is ``"similar"``/``"different"`` or a number in [0, 1]
    (>= 0.5 counts as similar); ``small_data`` is the size below which a data
    set counts as small. A rule of thumb, not a law: the domain-shift table
    (lesson 4) unfreezes most layers for a far target even with little data, and
    lesson 4 measures both on digits (far) and faces (near).
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    if not 1 <= small_data < scratch_data:
        raise ValueError(f"need 1 <= small_data < scratch_data, got {small_data!r} and {scratch_data!r}")
    if isinstance(domain_similarity, str):
        if domain_similarity not in ("similar", "different"):
            raise ValueError(
                f"domain_similarity must be 'similar', 'different' or in [0, 1], got {domain_similarity!r}"
            )
        similar = domain_similarity == "similar"
    elif isinstance(domain_similarity, (int, float)) and 0 <= domain_similarity <= 1:
        similar = domain_similarity >= 0.5
    else:
        raise ValueError(f"domain_similarity must be 'similar', 'different' or in [0, 1], got {domain_similarity!r}")
    if n_samples < small_data:
        return "feature_extraction" if similar else "fine_tune_top"
    if similar or n_samples < scratch_data:
        return "fine_tune_all"
    return "scratch"


# --------------------------------------------------------------------------- reporting


def results_table(results: Sequence[StrategyResult]) -> str:
    """Plain-text table: accuracy, trainable parameters, wall time, throughput."""
    head = f"{'strategy':<20}{'test acc':>10}{'trainable':>14}{'of total':>10}{'time (s)':>10}{'samples/s':>11}"
    lines = [head, "-" * len(head)]
    for r in results:
        share = r.trainable_params / r.total_params
        lines.append(
            f"{r.name:<20}{r.test_accuracy:>10.4f}{r.trainable_params:>14,}{share:>10.1%}"
            f"{r.seconds:>10.1f}{r.samples_per_s:>11.1f}"
        )
    return "\n".join(lines)


def plot_results(results: Sequence[StrategyResult], axes=None):
    """Two bar charts: test accuracy and wall time per strategy."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    names = [r.name for r in results]
    axes[0].bar(names, [r.test_accuracy for r in results], color="tab:blue")
    axes[0].set_ylabel("test accuracy")
    axes[0].set_ylim(0, 1)
    axes[1].bar(names, [r.seconds for r in results], color="tab:orange")
    axes[1].set_ylabel("wall time (s)")
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    axes[0].figure.tight_layout()
    return axes


def save_results(results: Sequence[StrategyResult], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.png`` into ``out_dir``; return both paths."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out / "results.csv", out / "results.png"
    rows = [r.as_row() for r in results]
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    axes = plot_results(results)
    axes[0].figure.savefig(png_path, dpi=120)
    plt.close(axes[0].figure)
    return csv_path, png_path
