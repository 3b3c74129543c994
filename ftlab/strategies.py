"""Fine-tuning strategies side by side: final accuracy against computational cost.

Each strategy starts from a fresh copy of the same pretrained model (or, for
``scratch``, the same architecture randomly initialised), trains on the same
splits with the same seed, and is scored on the same held-out test set. With
a few hundred test images one image is ~0.4 %, so single-seed differences are
noise: :func:`compare` runs each strategy over several seeds,
:func:`summarize` reports mean +- standard deviation, and :func:`select_strategy`
picks on *validation* accuracy -- the test accuracy of the pick is reported once.

================== ============================================================
strategy           what trains
================== ============================================================
feature_extraction the classifier only, on features computed once (cached)
fine_tune_top      the top ``k`` layer groups, at ``Settings.lr``
fine_tune_all      every layer, one rate (``Settings.lr``)
layerwise          every layer, rates decayed by ``gamma`` per group downwards
gradual            head first, then more groups each epoch (ULMFiT)
scratch            every layer of a randomly initialised network
================== ============================================================

Each row is one :class:`Strategy` in :data:`STRATEGY_TABLE` -- which groups
train, at which rates, for how long, from which weights -- and
:func:`run_strategy` carries any row out the same way: a new strategy is a new
row, not a new branch.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

from torch import nn

from .config import FitConfig
from .evaluation import evaluate
from .features import fit_head_on_features, head_module
from .history import History
from .layers import LayerGroup, count_parameters, layer_groups, unfreeze, unfreeze_top
from .optim import check_gamma, param_groups, unfreeze_schedule
from .train import fit
from .utils import seed_everything

__all__ = [
    "STRATEGIES",
    "SMALL_DATA",
    "STRATEGY_TABLE",
    "Strategy",
    "StrategyResult",
    "Settings",
    "StrategySummary",
    "compare",
    "get_strategy",
    "run_strategy",
    "summarize",
    "select_strategy",
    "recommend_strategy",
    "results_table",
    "plot_results",
    "save_results",
]


@dataclass(frozen=True)
class Settings(FitConfig):
    """Hyperparameters of a comparison. Defaults suit EfficientNet-Lite0 on small images.

    Every :func:`ftlab.train.fit` hyperparameter (:class:`ftlab.config.FitConfig`:
    ``batch_size``, ``schedule``, ``warmup_epochs``, ``label_smoothing``,
    ``grad_clip``, ...) is a field and reaches every strategy's ``fit``; the
    fields below are the strategies' own, and the defaults this comparison
    changes. ``lr`` is the fine-tuning rate (top/all/layerwise/gradual);
    ``weight_decay`` applies alike to every strategy, biases and norm weights
    excluded (:func:`ftlab.optim.param_groups`).

    >>> settings = Settings(epochs=1, top_k=2)
    >>> settings.epochs, settings.top_k, settings.lr, settings.schedule, settings.head_lr
    (1, 2, 0.002, 'onecycle', 0.01)
    >>> Settings(gamma=2.0)
    Traceback (most recent call last):
        ...
    ValueError: gamma must be in (0, 1], got 2.0
    """

    epochs: int = 3
    # One stage from a new head, BatchNorm statistics following the data: only 1.5x below scratch_lr, not the
    # syllabus's "10-100x lower" 1e-5...1e-4 (which wants the head trained first). For AdamW on EfficientNet-Lite0,
    # digits at 64 px, the two recipes measured alike over 3 seeds (lessons/measured/lr_story.json, lesson 3).
    lr: float = 2e-3  # fine-tuning rate (top/all/layerwise/gradual)
    weight_decay: float = 1e-4
    schedule: str = "onecycle"
    head_lr: float = 1e-2  # feature extraction trains a linear model: a larger step is safe
    scratch_lr: float = 3e-3  # random init: what a fine-tuning rate is "low" against
    head_epochs: int = 30  # feature extraction epochs are almost free once features are cached
    gamma: float = 0.8
    top_k: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("head_lr", "scratch_lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("head_epochs", "top_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        check_gamma(self.gamma)


TEXT_SETTINGS = Settings(
    epochs=3, batch_size=32, lr=5e-5, head_lr=1e-2, head_epochs=30, gamma=0.8, weight_decay=0.01, schedule="linear"
)


# --------------------------------------------------------------------------- the strategies


@dataclass(frozen=True)
class Strategy:
    """One way to fine-tune, as data: which layer groups train, at which rates, for how long, from what.

    ``top(settings, n_groups)``: how many top groups train (``None``: all of
    them); ``lr(settings)`` and ``gamma(settings)``: the top group's rate and
    the decay per group below it (:func:`ftlab.optim.param_groups`; the head
    trains at ``lr``); ``plan(settings, n_groups)``: a gradual-unfreezing plan
    for :func:`ftlab.train.fit`, or ``None``; ``pretrained=False`` starts from
    random weights; ``on_features`` trains the classifier alone on features
    computed once (:func:`ftlab.features.fit_head_on_features`), so ``top``,
    ``gamma`` and ``plan`` do not apply; ``for_text``: in the default set for
    text models, where the others cost much and add little.

    >>> head_only = Strategy("head_only", "the head alone, at head_lr", top=lambda s, n: 1, lr=attrgetter("head_lr"))
    >>> head_only.top(Settings(), 5), head_only.lr(Settings()), head_only.plan, head_only.pretrained
    (1, 0.01, None, True)
    """

    name: str
    description: str
    top: Callable[[Settings, int], int] | None = None
    lr: Callable[[Settings], float] = attrgetter("lr")
    gamma: Callable[[Settings], float] = lambda s: 1.0
    plan: Callable[[Settings, int], list[int]] | None = None
    epochs: Callable[[Settings], int] = attrgetter("epochs")
    pretrained: bool = True
    on_features: bool = False
    for_text: bool = False


def _gradual_plan(s: Settings, n_groups: int) -> list[int]:
    # Head first, then enough groups per epoch that every group trains by the last epoch.
    step = 1 if s.epochs == 1 else max(1, math.ceil((n_groups - 1) / (s.epochs - 1)))
    return unfreeze_schedule(n_groups, s.epochs, step=step)


STRATEGY_TABLE: tuple[Strategy, ...] = (
    Strategy(
        "feature_extraction",
        "classifier only, on cached frozen features",
        lr=attrgetter("head_lr"),
        epochs=attrgetter("head_epochs"),
        on_features=True,
        for_text=True,
    ),
    Strategy("fine_tune_top", "top k groups, one rate (lr)", top=lambda s, n: min(s.top_k, n)),
    Strategy("fine_tune_all", "all layers, one rate (lr)", for_text=True),
    Strategy("layerwise", "all layers, LR decayed by gamma per group", gamma=attrgetter("gamma"), for_text=True),
    Strategy("gradual", "head first, then more groups each epoch", plan=_gradual_plan),
    Strategy("scratch", "random init, all layers", lr=attrgetter("scratch_lr"), pretrained=False),
)
STRATEGIES: dict[str, str] = {s.name: s.description for s in STRATEGY_TABLE}
TEXT_STRATEGIES = tuple(s.name for s in STRATEGY_TABLE if s.for_text)


def get_strategy(name: str) -> Strategy:
    """The :class:`Strategy` called ``name``.

    >>> strategy = get_strategy("fine_tune_top")
    >>> strategy.description, strategy.top(Settings(top_k=3), 5)  # 3 of 5 groups train
    ('top k groups, one rate (lr)', 3)
    """
    for strategy in STRATEGY_TABLE:
        if strategy.name == name:
            return strategy
    raise ValueError(f"unknown strategy {name!r}; choose from {list(STRATEGIES)}")


# --------------------------------------------------------------------------- results


@dataclass
class StrategyResult:
    """One strategy trained with one seed.

    >>> result = StrategyResult("fine_tune_all", 0.91234, 4000, 4000, 30.0, 80.0, History(), val_accuracy=0.9)
    >>> row = result.as_row()  # a row of results.csv: rounded, without the history
    >>> row["strategy"], row["test_accuracy"], len(row)
    ('fine_tune_all', 0.9123, 8)
    """

    name: str
    test_accuracy: float
    trainable_params: int
    total_params: int
    seconds: float
    samples_per_s: float
    history: History = field(repr=False)
    val_accuracy: float | None = None
    seed: int = 0

    def as_row(self) -> dict[str, Any]:
        return {
            "strategy": self.name,
            "seed": self.seed,
            "val_accuracy": None if self.val_accuracy is None else round(self.val_accuracy, 4),
            "test_accuracy": round(self.test_accuracy, 4),
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
            "seconds": round(self.seconds, 2),
            "samples_per_s": round(self.samples_per_s, 1),
        }


@dataclass(frozen=True)
class StrategySummary:
    """One strategy over its seeds: means and sample standard deviations (0 for one seed).

    >>> runs = [StrategyResult("layerwise", test, 4000, 4000, 30.0, 80.0, History(), val, seed)
    ...         for seed, val, test in [(0, 0.92, 0.88), (1, 0.90, 0.90)]]
    >>> summary = summarize(runs)[0]
    >>> summary.name, summary.seeds, summary.val_accuracy, round(summary.val_std, 4)
    ('layerwise', 2, 0.91, 0.0141)
    """

    name: str
    seeds: int
    val_accuracy: float
    val_std: float
    test_accuracy: float
    test_std: float
    seconds: float
    seconds_std: float
    trainable_params: int
    total_params: int


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
    """Train ``model`` (already loaded; ``scratch`` wants a randomly initialised one) by strategy ``name``.

    Freezes, sets the rates and trains as the strategy's row of
    :data:`STRATEGY_TABLE` says, then scores the model on ``splits.test``.

    >>> import torch
    >>> from ftlab.data import Splits
    >>> data = torch.utils.data.TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,)))
    >>> splits = Splits(train=data, val=data, test=data, classes=["a", "b"])
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> result = run_strategy("fine_tune_top", model, splits, Settings(epochs=1, top_k=1), progress=False)
    >>> result.name, result.trainable_params, result.total_params  # top_k=1: the head's 18 of 58 parameters
    ('fine_tune_top', 18, 58)
    """
    strategy = get_strategy(name)
    seed_everything(seed)
    # The strategy's param groups carry every rate and weight decay: fit gets neither on its own.
    config = dataclasses.replace(settings, epochs=strategy.epochs(settings), lr=None, weight_decay=None)
    call = dict(device=device, seed=seed, progress=progress)
    start = time.perf_counter()
    if strategy.on_features:
        head = head_module(model)
        head.requires_grad_(True)
        groups = _rates(strategy, head, settings, groups=[LayerGroup("head", (head,))])
        features = dict(head=head, param_groups=groups, collate_fn=collate_fn, **call)
        history, accuracy = fit_head_on_features(model, splits.train, splits.val, splits.test, config, **features)
        passes = 1 + len(history.epochs)  # one pass through the network, then cheap epochs
    else:
        n_groups = len(layer_groups(model))
        if strategy.top is None:
            unfreeze(model)
        else:
            unfreeze_top(model, strategy.top(settings, n_groups))
        plan = None if strategy.plan is None else strategy.plan(settings, n_groups)
        groups = _rates(strategy, model, settings)
        history = fit(
            model, splits.train, splits.val, config, param_groups=groups, unfreeze=plan, collate_fn=collate_fn, **call
        )
        accuracy = evaluate(model, splits.test, device=device, collate_fn=collate_fn)["accuracy"]
        passes = len(history.epochs)
    seconds = time.perf_counter() - start
    counts = count_parameters(model)
    trainable = max(h for h in history.column("trainable")) if history.epochs else counts.trainable
    seen = len(splits.train) * passes
    return StrategyResult(
        name, accuracy, int(trainable), counts.total, seconds, seen / seconds, history, history.best_val_accuracy, seed
    )


def _rates(strategy: Strategy, model: nn.Module, s: Settings, **kw: Any) -> list[dict[str, Any]]:
    # One weight-decay policy for every strategy: ``s.weight_decay`` on weights,
    # none on biases and norm parameters; the head trains at the strategy's top rate.
    lr = strategy.lr(s)
    return param_groups(model, lr, strategy.gamma(s), head_lr=lr, weight_decay=s.weight_decay, **kw)


def compare(
    model: str = "efficientnet_lite0",
    dataset: str = "digits",
    *,
    strategies: Sequence[str] | None = None,
    settings: Settings | None = None,
    overrides: Mapping[str, Any] | None = None,
    image_size: int = 48,
    max_per_class: int | None = None,
    seed: int = 0,
    seeds: int = 1,
    device=None,
    progress: bool = True,
) -> list[StrategyResult]:
    """Run several strategies on one model and data set, each over ``seeds`` seeds; one result per run.

    The data split is fixed by ``seed``; the runs use training seeds ``seed``,
    ``seed + 1``, ... (weight init of the new head, shuffling, dropout).
    ``settings`` defaults to :data:`TEXT_SETTINGS` for a text model and
    :class:`Settings` otherwise -- the model's kind in the registry
    (:func:`ftlab.models.model_kind`), not a guess from its name; ``overrides``
    replaces fields of that default. Every argument is checked before any
    model or data is loaded.

    >>> compare("efficientnet_lite0", "digits", strategies=["fine_tune_everything"])  # fails at once
    Traceback (most recent call last):
        ...
    ValueError: unknown strategies ['fine_tune_everything']; choose from ['feature_extraction', ...]
    """
    from .data import dataset_kind, load_dataset, text_collate
    from .models import ImagePreprocess, load_pretrained, model_kind

    is_text = model_kind(model) == "text"
    if dataset_kind(dataset) != ("text" if is_text else "image"):
        raise ValueError(f"{model} takes {model_kind(model)} inputs but {dataset} holds {dataset_kind(dataset)} examples")
    chosen = _check_compare_args(strategies, is_text, seed, seeds, image_size)
    settings = settings or (TEXT_SETTINGS if is_text else Settings())
    if not isinstance(settings, Settings):
        raise TypeError(f"settings must be a Settings, got {type(settings).__name__}")
    if overrides:
        settings = dataclasses.replace(settings, **overrides)
    probe = load_pretrained(model)
    if is_text:
        splits = load_dataset(dataset, seed=seed, max_per_class=max_per_class)
        collate = text_collate(probe.tokenizer)
    else:
        pre = probe.preprocess
        preprocess = ImagePreprocess(image_size, pre.mean, pre.std)
        splits = load_dataset(dataset, preprocess=preprocess, seed=seed, max_per_class=max_per_class)
        collate = None
    results = []
    for strategy in chosen:
        for run_seed in range(seed, seed + seeds):
            # Seed before building: the new head's random init must not depend on
            # which strategies ran before this one.
            seed_everything(run_seed)
            net = load_pretrained(model, num_classes=splits.num_classes, pretrained=strategy.pretrained)
            r = run_strategy(
                strategy.name,
                net,
                splits,
                settings,
                collate_fn=collate,
                device=device,
                seed=run_seed,
                progress=progress,
            )
            results.append(r)
            if progress:
                print(
                    f"{r.name:>18} seed {r.seed}: val {r.val_accuracy:.4f}  test {r.test_accuracy:.4f}  "
                    f"in {r.seconds:.1f} s",
                    flush=True,
                )
    return results


def _check_compare_args(
    strategies: Sequence[str] | None, is_text: bool, seed: int, seeds: int, image_size: int
) -> list[Strategy]:
    """The strategies to run, once every argument that costs nothing to check has been checked."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an int >= 1, got {seeds!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if isinstance(strategies, str):
        raise TypeError(f"strategies must be a list of names, got the string {strategies!r}")
    names = list(strategies or (TEXT_STRATEGIES if is_text else STRATEGIES))
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
    return [get_strategy(n) for n in names]


def summarize(results: Sequence[StrategyResult]) -> list[StrategySummary]:
    """Mean and standard deviation over seeds, one summary per strategy (in order of first appearance).

    >>> runs = [StrategyResult(name, test, 4000, 4000, 30.0, 80.0, History(), seed=seed)
    ...         for name, seed, test in [("layerwise", 0, 0.88), ("layerwise", 1, 0.90), ("scratch", 0, 0.70)]]
    >>> [(s.name, s.seeds, round(s.test_accuracy, 4), round(s.test_std, 4)) for s in summarize(runs)]
    [('layerwise', 2, 0.89, 0.0141), ('scratch', 1, 0.7, 0.0)]
    """
    by_name: dict[str, list[StrategyResult]] = {}
    for r in results:
        by_name.setdefault(r.name, []).append(r)

    def mean_std(values: list[float]) -> tuple[float, float]:
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    out = []
    for name, runs in by_name.items():
        val = [r.val_accuracy for r in runs if r.val_accuracy is not None]
        v, v_sd = mean_std(val) if val else (math.nan, math.nan)
        t, t_sd = mean_std([r.test_accuracy for r in runs])
        sec, sec_sd = mean_std([r.seconds for r in runs])
        trainable = max(r.trainable_params for r in runs)
        out.append(StrategySummary(name, len(runs), v, v_sd, t, t_sd, sec, sec_sd, trainable, runs[0].total_params))
    return out


def select_strategy(results: Sequence[StrategyResult]) -> StrategySummary:
    """The strategy with the best mean *validation* accuracy (the test set plays no part in choosing).

    >>> runs = [StrategyResult("layerwise", 0.88, 4000, 4000, 31.0, 80.0, History(), val_accuracy=0.92),
    ...         StrategyResult("fine_tune_all", 0.91, 4000, 4000, 25.0, 96.0, History(), val_accuracy=0.89)]
    >>> best = select_strategy(runs)
    >>> best.name, best.test_accuracy  # chosen on validation; its test accuracy is the number to report
    ('layerwise', 0.88)
    """
    summaries = summarize(results)
    if not summaries:
        raise ValueError("no results to select from")
    if any(math.isnan(s.val_accuracy) for s in summaries):
        raise ValueError("every strategy needs a validation accuracy to select on")
    return max(summaries, key=lambda s: s.val_accuracy)


# --------------------------------------------------------------------------- choosing


# Below this many labelled examples a data set is small (why 10,000: recommend_strategy's docstring).
SMALL_DATA = 10_000


def recommend_strategy(
    n_samples: int, domain_similarity: str | float, small_data: int = SMALL_DATA, scratch_data: int = 1_000_000
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
    set counts as small. Its default, :data:`SMALL_DATA` = 10,000, follows the
    syllabus's own examples of small data -- a startup's 500 defect photos, a
    hospital's 5,000 X-rays, the 1,000 examples that 591,234 trainable
    parameters memorise -- and puts the largest of them (5,000) a factor of two
    below the line; its large data is ImageNet's 1.28M images. A rule of thumb,
    not a law: the domain-shift table (lesson 4) unfreezes most layers for a far
    target even with little data, and lesson 4 measures both on digits (far) and
    photo patches (near), 3 seeds (``lessons/measured/near_far.json``).

    >>> recommend_strategy(500, "similar"), recommend_strategy(500, "different"), recommend_strategy(50_000, 0.2)
    ('feature_extraction', 'fine_tune_top', 'fine_tune_all')
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
    """Plain-text table over seeds: validation and test accuracy (mean +- std), trainable share, wall time.

    The last line names the strategy selected on validation accuracy and its
    test accuracy -- the one number to quote.

    >>> runs = [StrategyResult("layerwise", 0.88, 4000, 4000, 31.0, 80.0, History(), val_accuracy=0.92),
    ...         StrategyResult("fine_tune_all", 0.91, 4000, 4000, 25.0, 96.0, History(), val_accuracy=0.89)]
    >>> print(results_table(runs))  # doctest: +NORMALIZE_WHITESPACE
    strategy             seeds          val acc         test acc    trainable of total      time (s)
    ------------------------------------------------------------------------------------------------
    layerwise                1  0.9200 (1 run)  0.8800 (1 run)        4,000   100.0%    31.0
    fine_tune_all            1  0.8900 (1 run)  0.9100 (1 run)        4,000   100.0%    25.0
    selected on validation: layerwise -- test accuracy 88.00%
    """
    summaries = summarize(results)
    head = (
        f"{'strategy':<20}{'seeds':>6}{'val acc':>17}{'test acc':>17}{'trainable':>13}{'of total':>9}{'time (s)':>14}"
    )
    lines = [head, "-" * len(head)]
    for s in summaries:
        share = s.trainable_params / s.total_params
        lines.append(
            f"{s.name:<20}{s.seeds:>6}{_pm(s.val_accuracy, s.val_std, s.seeds):>17}"
            f"{_pm(s.test_accuracy, s.test_std, s.seeds):>17}{s.trainable_params:>13,}{share:>9.1%}{s.seconds:>8.1f}"
            + (f" ± {s.seconds_std:<4.1f}" if s.seeds > 1 else "")
        )
    if summaries and not any(math.isnan(s.val_accuracy) for s in summaries):
        best = select_strategy(results)
        lines.append(
            f"selected on validation: {best.name} -- test accuracy {best.test_accuracy:.2%}"
            + (f" ± {best.test_std:.2%} over {best.seeds} seeds" if best.seeds > 1 else "")
        )
    return "\n".join(lines)


def _pm(mean: float, std: float, seeds: int) -> str:
    # One run has no spread: printing "± 0.0000" would claim one.
    return f"{mean:.4f} ± {std:.4f}" if seeds > 1 else f"{mean:.4f} (1 run)"


def plot_results(results: Sequence[StrategyResult], axes=None):
    """Accuracy against compute: validation accuracy (mean, error bar = std over seeds)
    against wall time and against trainable parameters (log scale), one point per strategy.

    ``axes``: two matplotlib axes (new ones from pyplot if not given). Returns them.

    >>> import matplotlib.pyplot as plt
    >>> runs = [StrategyResult("layerwise", 0.88, 4000, 4000, 31.0, 80.0, History(), val_accuracy=0.92),
    ...         StrategyResult("fine_tune_all", 0.91, 4000, 4000, 25.0, 96.0, History(), val_accuracy=0.89)]
    >>> axes = plot_results(runs)
    >>> [ax.get_xlabel() for ax in axes], axes[1].get_xscale()
    (['wall time (s)', 'trainable parameters'], 'log')
    >>> plt.close(axes[0].figure)
    """
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, 2, figsize=(11, 4))
    summaries = summarize(results)
    use_val = not any(math.isnan(s.val_accuracy) for s in summaries)
    label = "validation accuracy" if use_val else "test accuracy"
    for i, s in enumerate(summaries):
        acc, sd = (s.val_accuracy, s.val_std) if use_val else (s.test_accuracy, s.test_std)
        color = f"C{i}"
        for ax, x, xerr in ((axes[0], s.seconds, s.seconds_std), (axes[1], s.trainable_params, None)):
            ax.errorbar(x, acc, yerr=sd, xerr=xerr, fmt="o", color=color, capsize=3, label=s.name)
            ax.annotate(s.name, (x, acc), textcoords="offset points", xytext=(5, 4), fontsize=8)
    seeds = max((s.seeds for s in summaries), default=1)
    axes[0].set(xlabel="wall time (s)", ylabel=label)
    axes[1].set(xlabel="trainable parameters", ylabel=label, xscale="log")
    axes[0].set_title(f"accuracy vs compute (mean ± std over {seeds} seed{'s' if seeds > 1 else ''})", fontsize=10)
    axes[0].figure.tight_layout()
    return axes


def save_results(results: Sequence[StrategyResult], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``results.csv`` (one row per run) and ``results.png`` into ``out_dir``; return both paths.

    The figure is drawn on a standalone matplotlib ``Figure``: pyplot and the
    caller's backend (a notebook's inline one) are left alone.

    >>> import tempfile
    >>> runs = [StrategyResult("layerwise", 0.88, 4000, 4000, 31.0, 80.0, History(), val_accuracy=0.92),
    ...         StrategyResult("fine_tune_all", 0.91, 4000, 4000, 25.0, 96.0, History(), val_accuracy=0.89)]
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     csv_path, png_path = save_results(runs, folder)
    ...     header = csv_path.read_text().splitlines()[0]
    >>> png_path.name, header
    ('results.png', 'strategy,seed,val_accuracy,test_accuracy,trainable_params,total_params,seconds,samples_per_s')
    """
    from matplotlib.figure import Figure

    if not results:
        raise ValueError("no results to save")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out / "results.csv", out / "results.png"
    rows = [r.as_row() for r in results]
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    fig = Figure(figsize=(11, 4))
    plot_results(results, axes=fig.subplots(1, 2))
    fig.savefig(png_path, dpi=120)
    return csv_path, png_path
