"""Layer hierarchies of real models, freezing, and parameter counting.

Fine-tuning strategies all speak about *groups* of layers ordered from the
input (general features: edges, textures, sub-words) to the output
(task-specific features and the classifier head). :func:`layer_groups` returns
that ordering for the architectures used in the course; everything else here
(freezing, counting, layer-wise learning rates in :mod:`ftlab.optim`) works on
those groups.

BatchNorm policy (deliberately different from fastai's ``train_bn=True``):
a frozen group is frozen *entirely* -- its BatchNorm weights get no gradient and
its running mean/variance are not updated, even while the model is in
``train()`` mode. Two reasons: (1) small target datasets and small batches give
noisy batch statistics that silently overwrite the ImageNet statistics, and
(2) a frozen backbone must be a fixed function so that feature extraction can
cache its outputs. Pass ``train_bn=True`` to :func:`freeze` for fastai's
behaviour.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from torch import nn

__all__ = [
    "LayerGroup",
    "ParamCount",
    "GroupRow",
    "layer_groups",
    "make_groups",
    "freeze",
    "unfreeze",
    "unfreeze_top",
    "count_parameters",
    "parameter_table",
    "format_parameter_table",
    "trainable_group_names",
    "resolve_groups",
]

_BN_TYPES = (nn.modules.batchnorm._BatchNorm,)
_HOOK_ATTR = "_ftlab_frozen_bn_hook"


@dataclass(frozen=True)
class LayerGroup:
    """A named, ordered unit of a network that is frozen or given an LR together.

    >>> shared = nn.Linear(4, 2)
    >>> group = LayerGroup("head", (shared,))
    >>> group.name, group.num_parameters()
    ('head', 10)
    >>> LayerGroup("tied", (shared, shared)).num_parameters()  # a parameter in two modules counts once
    10
    """

    name: str
    modules: tuple[nn.Module, ...]

    def parameters(self) -> Iterator[nn.Parameter]:
        """Unique parameters of the group (tied weights are yielded once)."""
        seen: set[int] = set()
        for module in self.modules:
            for p in module.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield p

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class ParamCount(NamedTuple):
    """Parameters of a model: all of them, those that train, those frozen (see :func:`count_parameters`).

    >>> count = ParamCount(total=1000, trainable=250, frozen=750)
    >>> count.trainable, count.trainable_fraction
    (250, 0.25)
    """

    total: int
    trainable: int
    frozen: int

    @property
    def trainable_fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0


class GroupRow(NamedTuple):
    """One layer group's row of :func:`parameter_table`: its parameters and how many train.

    >>> row = GroupRow("layer1", params=262656, trainable=0)
    >>> row.name, row.frozen
    ('layer1', 262656)
    """

    name: str
    params: int
    trainable: int

    @property
    def frozen(self) -> int:
        return self.params - self.trainable


# --------------------------------------------------------------------------- groups


def make_groups(
    model: nn.Module, spec: Sequence[str | Sequence[str]], names: Sequence[str] | None = None
) -> list[LayerGroup]:
    """Build groups from submodule names, input to output.

    ``make_groups(net, [["conv1", "bn1"], "layer1", "layer2", "fc"])`` -- the way
    to describe an architecture :func:`layer_groups` does not know. ``names``
    labels the groups (default: the submodule names joined by ``+``).

    >>> from ftlab.examples import worked_example_mlp
    >>> [group.name for group in make_groups(worked_example_mlp(), [["layer1", "layer2"], "layer3", "layer4", "head"])]
    ['layer1+layer2', 'layer3', 'layer4', 'head']
    """
    if names is not None and len(names) != len(spec):
        raise ValueError(f"got {len(names)} names for {len(spec)} groups")
    if not spec:
        raise ValueError("spec must name at least one group")
    named = dict(model.named_modules())
    groups = []
    for i, item in enumerate(spec):
        parts = [item] if isinstance(item, str) else list(item)
        missing = [n for n in parts if n not in named]
        if missing:
            raise ValueError(
                f"{type(model).__name__} has no submodule named {missing}; "
                f"top-level children are {[n for n, _ in model.named_children()]}"
            )
        label = names[i] if names is not None else "+".join(parts)
        groups.append(LayerGroup(label, tuple(named[n] for n in parts)))
    return groups


def _timm_efficientnet(model: nn.Module) -> list[LayerGroup]:
    spec: list[str | list[str]] = [["conv_stem", "bn1"]]
    spec += [f"blocks.{i}" for i in range(len(model.blocks))]
    spec += [["conv_head", "bn2"], "classifier"]
    names = ["stem"] + spec[1:-2] + ["conv_head", "classifier"]
    return make_groups(model, spec, names)


def _torchvision_resnet(model: nn.Module) -> list[LayerGroup]:
    spec = [["conv1", "bn1"], "layer1", "layer2", "layer3", "layer4", "fc"]
    return make_groups(model, spec, ["stem", "layer1", "layer2", "layer3", "layer4", "fc"])


def _torchvision_features_classifier(model: nn.Module) -> list[LayerGroup]:
    # torchvision EfficientNet / MobileNetV2/V3: `features` is a Sequential of
    # stages (stem first, 1x1 head conv last), then `classifier`.
    groups = [LayerGroup(f"features.{i}", (m,)) for i, m in enumerate(model.features)]
    groups.append(LayerGroup("classifier", (model.classifier,)))
    return groups


def _hf_bert(model: nn.Module) -> list[LayerGroup]:
    # BertModel, or BertFor* wrapping one in `.bert`; the task head is whatever
    # top-level module is not the encoder (classifier, cls, qa_outputs, ...).
    bert = model.bert if hasattr(model, "bert") else model
    groups = [LayerGroup("embeddings", (bert.embeddings,))]
    groups += [LayerGroup(f"encoder.layer.{i}", (m,)) for i, m in enumerate(bert.encoder.layer)]
    top: list[nn.Module] = []
    if getattr(bert, "pooler", None) is not None:
        top.append(bert.pooler)
    if bert is not model:
        top += [m for n, m in model.named_children() if n != "bert" and any(True for _ in m.parameters())]
    if top:
        groups.append(LayerGroup("head", tuple(top)))
    return groups


def _sequential(model: nn.Sequential) -> list[LayerGroup]:
    # Parameter-free modules (ReLU, Dropout, Flatten) belong to no group: they
    # have nothing to freeze and no learning rate.
    return [LayerGroup(n, (m,)) for n, m in model.named_children() if any(True for _ in m.parameters())]


def layer_groups(model: nn.Module) -> list[LayerGroup]:
    """Ordered input->output layer groups of a known architecture.

    Supported: timm EfficientNet (incl. ``tf_efficientnet_lite0``), torchvision
    ResNet / EfficientNet / MobileNetV2/V3, Hugging Face BERT-family encoders
    (``BertModel`` and ``BertFor*``), and plain ``nn.Sequential`` (one group per
    child with parameters). The last group is always the head (classifier), so
    ``unfreeze_top(model, 1)`` is feature extraction.

    >>> from ftlab.examples import worked_example_mlp
    >>> [group.name for group in layer_groups(worked_example_mlp())]
    ['layer1', 'layer2', 'layer3', 'layer4', 'head']
    """
    cls = type(model)
    module = cls.__module__
    if module.startswith("timm.") and hasattr(model, "blocks") and hasattr(model, "conv_stem"):
        return _timm_efficientnet(model)
    if module.startswith("torchvision.") and hasattr(model, "layer4") and hasattr(model, "fc"):
        return _torchvision_resnet(model)
    if module.startswith("torchvision.") and hasattr(model, "features") and hasattr(model, "classifier"):
        return _torchvision_features_classifier(model)
    if module.startswith("transformers.") and (hasattr(model, "bert") or cls.__name__ == "BertModel"):
        return _hf_bert(model)
    if isinstance(model, nn.Sequential):
        groups = _sequential(model)
        if groups:
            return groups
    raise ValueError(
        f"don't know the layer hierarchy of {cls.__name__} ({module}); pass groups "
        "explicitly, e.g. groups=ftlab.layers.make_groups(model, "
        "[['conv1', 'bn1'], 'layer1', 'layer2', 'fc']) listing submodule names "
        "from input to output"
    )


def resolve_groups(model: nn.Module, groups: Sequence[LayerGroup] | None = None) -> list[LayerGroup]:
    """``groups`` as a list, or the model's :func:`layer_groups` when ``None``.

    Every function that takes an optional ``groups=`` argument calls this, so a
    custom grouping (:func:`make_groups`) works wherever the built-in one does.

    >>> from ftlab.examples import worked_example_mlp
    >>> mlp = worked_example_mlp()
    >>> [group.name for group in resolve_groups(mlp)]
    ['layer1', 'layer2', 'layer3', 'layer4', 'head']
    >>> two = make_groups(mlp, [["layer1", "layer2", "layer3", "layer4"], "head"], names=["backbone", "head"])
    >>> [group.name for group in resolve_groups(mlp, two)]
    ['backbone', 'head']
    """
    groups = list(layer_groups(model) if groups is None else groups)
    if not groups:
        raise ValueError("groups is empty")
    return groups


# --------------------------------------------------------------------------- freezing


def _keep_eval(module: nn.Module, _inputs: object) -> None:
    module.train(False)


def _freeze_bn_stats(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, _BN_TYPES) and not hasattr(m, _HOOK_ATTR):
            # A forward pre-hook, not a one-off m.eval(): a later model.train()
            # would otherwise switch the frozen statistics back to updating.
            handle = m.register_forward_pre_hook(_keep_eval)
            setattr(m, _HOOK_ATTR, handle)
            m.train(False)


def _unfreeze_bn_stats(module: nn.Module, training: bool) -> None:
    for m in module.modules():
        handle = getattr(m, _HOOK_ATTR, None)
        if handle is not None:
            handle.remove()
            delattr(m, _HOOK_ATTR)
            m.train(training)


def _modules_of(target: nn.Module | LayerGroup | Iterable[LayerGroup]) -> list[nn.Module]:
    if isinstance(target, nn.Module):
        return [target]
    if isinstance(target, LayerGroup):
        return list(target.modules)
    return [m for g in target for m in g.modules]


def freeze(target: nn.Module | LayerGroup | Iterable[LayerGroup], train_bn: bool = False) -> None:
    """Stop gradients (and BatchNorm statistic updates) in a model or groups.

    ``train_bn=True`` keeps BatchNorm affine weights trainable and its running
    statistics updating (fastai's default); the default freezes them too.

    >>> from ftlab.examples import worked_example_mlp
    >>> mlp = worked_example_mlp()
    >>> freeze(mlp)
    >>> count_parameters(mlp).trainable
    0
    """
    for module in _modules_of(target):
        for m in module.modules():
            is_bn = isinstance(m, _BN_TYPES)
            for p in m.parameters(recurse=False):
                p.requires_grad_(train_bn and is_bn)
        if train_bn:
            _unfreeze_bn_stats(module, training=module.training)
        else:
            _freeze_bn_stats(module)


def unfreeze(target: nn.Module | LayerGroup | Iterable[LayerGroup]) -> None:
    """Make a model or groups trainable again, BatchNorm statistics included.

    >>> from ftlab.examples import worked_example_mlp
    >>> mlp = worked_example_mlp()
    >>> freeze(mlp)
    >>> unfreeze(layer_groups(mlp)[-1])  # the head
    >>> count_parameters(mlp).trainable
    65922
    """
    for module in _modules_of(target):
        for p in module.parameters():
            p.requires_grad_(True)
        _unfreeze_bn_stats(module, training=module.training)


def unfreeze_top(
    model: nn.Module, k: int, groups: Sequence[LayerGroup] | None = None, train_bn: bool = False
) -> list[str]:
    """Freeze everything, then unfreeze the top ``k`` groups (head included).

    The syllabus's Keras-style recipe ``for layer in base.layers[-k:]: layer.trainable = True``
    on groups: ``k=1`` trains only the head (feature extraction), ``k=len(groups)``
    trains everything. Returns the names of the trainable groups.

    >>> from ftlab.examples import worked_example_mlp
    >>> unfreeze_top(worked_example_mlp(), 3)
    ['layer3', 'layer4', 'head']
    """
    groups = resolve_groups(model, groups)
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if not 1 <= k <= len(groups):
        raise ValueError(
            f"k must be between 1 and the number of groups ({len(groups)}), got {k}; "
            f"groups are {[g.name for g in groups]}"
        )
    freeze(model, train_bn=train_bn)
    unfreeze(groups[-k:])
    return [g.name for g in groups[-k:]]


def trainable_group_names(model: nn.Module, groups: Sequence[LayerGroup] | None = None) -> list[str]:
    """Names of groups with at least one trainable parameter.

    What a check after freezing wants to see: which parts of the network will
    change when training starts.

    >>> from ftlab.examples import worked_example_mlp
    >>> mlp = worked_example_mlp()
    >>> freeze(layer_groups(mlp)[0])
    >>> trainable_group_names(mlp)
    ['layer2', 'layer3', 'layer4', 'head']
    """
    return [g.name for g in resolve_groups(model, groups) if any(p.requires_grad for p in g.parameters())]


# --------------------------------------------------------------------------- counting


def count_parameters(model: nn.Module) -> ParamCount:
    """Total, trainable and frozen parameter counts (tied weights counted once).

    >>> from ftlab.examples import worked_example_mlp
    >>> mlp = worked_example_mlp()
    >>> unfreeze_top(mlp, 1)  # feature extraction: the head trains
    ['head']
    >>> count_parameters(mlp)
    ParamCount(total=1116546, trainable=65922, frozen=1050624)
    """
    total = trainable = 0
    for p in model.parameters():  # nn.Module.parameters() de-duplicates tied weights
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return ParamCount(total, trainable, total - trainable)


def parameter_table(model: nn.Module, groups: Sequence[LayerGroup] | None = None) -> list[GroupRow]:
    """One row per group: parameters and how many of them are trainable.

    >>> from ftlab.examples import worked_example_mlp
    >>> parameter_table(worked_example_mlp())[0]
    GroupRow(name='layer1', params=262656, trainable=262656)
    """
    rows = []
    for g in resolve_groups(model, groups):
        params = list(g.parameters())
        rows.append(
            GroupRow(g.name, sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad))
        )
    return rows


def format_parameter_table(rows: Sequence[GroupRow]) -> str:
    """Plain-text table of :func:`parameter_table` rows with a total line.

    >>> from ftlab.examples import worked_example_mlp
    >>> mlp = worked_example_mlp()
    >>> unfreeze_top(mlp, 1)
    ['head']
    >>> print(format_parameter_table(parameter_table(mlp)))
    group         params     trainable
    layer1       262,656             0
    layer2       262,656             0
    layer3       262,656             0
    layer4       262,656             0
    head          65,922        65,922
    total      1,116,546        65,922
    """
    width = max([len(r.name) for r in rows] + [5])
    lines = [f"{'group':<{width}}  {'params':>12}  {'trainable':>12}"]
    for r in rows:
        lines.append(f"{r.name:<{width}}  {r.params:>12,}  {r.trainable:>12,}")
    total, train = sum(r.params for r in rows), sum(r.trainable for r in rows)
    lines.append(f"{'total':<{width}}  {total:>12,}  {train:>12,}")
    return "\n".join(lines)
