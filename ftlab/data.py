"""Data sets by name, split into train/val/test, ready for a pretrained model.

:func:`load_dataset` returns :class:`Splits`: three ``torch`` datasets and the
class names. Image items are ``(x, y)`` with ``x`` already resized and
normalised for the chosen model (pass ``preprocess=model.preprocess``), so a
grayscale 8x8 digit becomes an RGB image of whatever size the network wants.
Text items are ``(text, y)``; :func:`text_collate` tokenizes a batch.

Offline data sets ship inside installed packages: ``digits`` (scikit-learn),
``lfw_faces`` (scikit-image), ``photo_patches`` (scikit-image's and scikit-learn's
sample photographs) and ``vader_words`` (the VADER sentiment lexicon).
Their tensors are computed once, in memory, so training epochs are fast.
Online ones (``oxford_pets``, ``eurosat``, ``flowers102``, ``cifar10`` through
torchvision; ``sst2`` through the optional ``datasets`` package) live under
``root`` (default ``$FTLAB_DATA`` or ``~/.cache/ftlab/data``) and are fetched
only with ``download=True``.

Splits are stratified (every class in the same proportions in each split) and
depend only on ``seed``; ``photo_patches`` is split by blocks of each photo, so
no test patch overlaps a training patch. Where a data set has an official test split it is used
as the test set (comparable with published numbers) and validation is carved
out of the training data.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from .models import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocess, num_outputs

__all__ = [
    "Splits",
    "ImageTensorDataset",
    "TextDataset",
    "load_dataset",
    "available_datasets",
    "dataset_kind",
    "text_collate",
    "stratified_split",
    "default_root",
]

# Above this many bytes of preprocessed images, offline data sets are resized
# per item instead of all at once (digits at 224 px would need 1.1 GB).
_PRECOMPUTE_LIMIT_BYTES = 512 * 2**20
_VADER_WORD = re.compile(r"[a-z][a-z'-]*")


# --------------------------------------------------------------------------- containers


@dataclass(repr=False)
class Splits:
    """Train/validation/test datasets of one task and its class names (index = label).

    >>> from torch.utils.data import TensorDataset
    >>> part = TensorDataset(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))
    >>> splits = Splits(train=part, val=part, test=part, classes=["cat", "dog"])
    >>> splits
    Splits(train=4, val=4, test=4, num_classes=2)
    >>> splits.check_model(nn.Linear(3, 5))
    Traceback (most recent call last):
        ...
    ValueError: the model has 5 outputs but the data has 2 classes; load it with load_pretrained(name, num_classes=2)
    """

    train: Dataset
    val: Dataset
    test: Dataset
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def check_model(self, model: nn.Module) -> None:
        """Raise if ``model`` does not predict exactly :attr:`num_classes` classes.

        A 1000-way ImageNet head trained on 10 labels "works" -- the loss just
        never touches 990 outputs -- so the mismatch is better caught up front.
        """
        got = num_outputs(model)
        if got != self.num_classes:
            raise ValueError(
                f"the model has {got} outputs but the data has {self.num_classes} classes; "
                f"load it with load_pretrained(name, num_classes={self.num_classes})"
            )

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(getattr(self, k))}" for k in ("train", "val", "test"))
        return f"Splits({sizes}, num_classes={self.num_classes})"


class ImageTensorDataset(Dataset):
    """In-memory images with integer labels; items are ``(x, y)``, ``x`` float32 (3, size, size).

    With ``preprocess=None`` the images are stored ready to use. Otherwise they
    are kept as they came (small raw images in [0, 1]) and ``preprocess`` is
    applied per item -- for when the resized copies would not fit in memory.

    >>> data = ImageTensorDataset(torch.zeros(2, 3, 32, 32), torch.tensor([0, 1]))
    >>> data, data[1][0].shape, data[1][1]
    (ImageTensorDataset(n=2, precomputed=True), torch.Size([3, 32, 32]), 1)
    >>> preprocess = ImagePreprocess(32, IMAGENET_MEAN, IMAGENET_STD)
    >>> raw = ImageTensorDataset(torch.rand(2, 1, 8, 8), torch.tensor([0, 1]), preprocess)  # 8 x 8 grayscale
    >>> raw[0][0].shape  # made RGB 32 x 32 when the item is read
    torch.Size([3, 32, 32])
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, preprocess: ImagePreprocess | None = None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.long()
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i]
        if self.preprocess is not None:
            x = self.preprocess(x)
        return x, int(self.labels[i])

    def __repr__(self) -> str:
        return f"ImageTensorDataset(n={len(self)}, precomputed={self.preprocess is None})"


class TextDataset(Dataset):
    """Strings with integer labels; items are ``(text, y)``. Batch them with :func:`text_collate`.

    >>> data = TextDataset(["great", "awful", "fine"], [1, 0, 1])
    >>> data, data[0], data.labels
    (TextDataset(n=3), ('great', 1), tensor([1, 0, 1]))
    """

    def __init__(self, texts: Sequence[str], labels: Sequence[int]):
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        self.texts = list(texts)
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> tuple[str, int]:
        return self.texts[i], int(self.labels[i])

    def __repr__(self) -> str:
        return f"TextDataset(n={len(self)})"


class _PILImages(Dataset):
    """A torchvision data set restricted to ``indices``, its PIL images turned into model inputs."""

    def __init__(self, base: Any, indices: np.ndarray, labels: np.ndarray, preprocess: ImagePreprocess):
        self.base = base
        self.indices = [int(i) for i in indices]
        self.labels = torch.as_tensor(labels[indices], dtype=torch.long)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from torchvision.transforms.functional import pil_to_tensor

        image, _ = self.base[self.indices[i]]
        x = pil_to_tensor(image.convert("RGB")).float().div_(255)
        return self.preprocess(x), int(self.labels[i])

    def __repr__(self) -> str:
        return f"{type(self.base).__name__}Split(n={len(self)})"


class _TextCollate:
    # A class, not a closure, so DataLoader workers can pickle it.
    def __init__(self, tokenizer: Any, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, batch: Sequence[tuple[str, int]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        texts, labels = zip(*batch)
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        return inputs, torch.as_tensor(labels, dtype=torch.long)


def text_collate(tokenizer: Any, max_length: int = 16) -> Callable[[Sequence[tuple[str, int]]], Any]:
    """A ``collate_fn`` turning ``(text, y)`` items into ``({input_ids, attention_mask}, labels)``.

    Padding happens per batch (to the longest text in it, at most
    ``max_length`` tokens): single words need 3-5 tokens, and padding all of
    them to 512 would make a CPU epoch a hundred times slower.

    >>> def tokenizer(texts, **kwargs):  # a stand-in for model.tokenizer: [CLS] len(text) [SEP]
    ...     ids = torch.tensor([[101, len(text), 102] for text in texts])
    ...     return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    >>> inputs, labels = text_collate(tokenizer)([("good", 1), ("bad", 0)])
    >>> inputs["input_ids"].tolist(), labels
    ([[101, 4, 102], [101, 3, 102]], tensor([1, 0]))
    """
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be a Hugging Face tokenizer (callable), got {type(tokenizer).__name__}")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an int >= 2 (room for [CLS] and [SEP]), got {max_length!r}")
    return _TextCollate(tokenizer, max_length)


# --------------------------------------------------------------------------- splitting


def _check_fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def _check_labels(labels: np.ndarray, classes: Sequence[str], name: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise ValueError(
            f"{name}: labels range over [{labels.min()}, {labels.max()}] but there are {len(classes)} class names; "
            "the files on disk do not match each other (a partial or mixed download?)"
        )


def stratified_split(
    labels: Sequence[int] | np.ndarray,
    fractions: Sequence[float],
    seed: int = 0,
    max_per_class: int | None = None,
    classes: Sequence[str] | None = None,
) -> list[np.ndarray]:
    """Split indices class by class into ``1 + len(fractions)`` sorted parts.

    Part ``k + 1`` gets ``round(fractions[k] * n_c)`` (at least 1 when the
    fraction is positive) of each class's ``n_c`` examples and part 0 the rest,
    so every class appears in every split -- also in tiny "10 images per class"
    experiments. ``max_per_class`` first keeps a random ``max_per_class``
    examples of each class. Depends only on ``seed``.

    >>> labels = [0, 0, 0, 0, 1, 1, 1, 1]
    >>> train, val = stratified_split(labels, [0.25], seed=0)
    >>> [labels[i] for i in train], [labels[i] for i in val]  # one of each class in validation
    ([0, 0, 0, 1, 1, 1], [0, 1])
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if max_per_class is not None:
            idx = idx[:max_per_class]
        n = len(idx)
        counts = [0 if f == 0 else max(1, int(np.floor(f * n + 0.5))) for f in fractions]
        if n - sum(counts) < 1:
            label = classes[int(c)] if classes is not None else int(c)
            raise ValueError(
                f"class {label!r} has {n} examples, too few to put at least one in each split "
                f"(fractions {list(fractions)}); raise max_per_class or lower the fractions"
            )
        bounds = np.cumsum([n - sum(counts)] + counts)
        for k, chunk in enumerate(np.split(idx, bounds[:-1])):
            parts[k].append(chunk)
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, dtype=np.int64) for p in parts]


# --------------------------------------------------------------------------- offline data sets


def _array_splits(
    images: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    preprocess: ImagePreprocess,
    seed: int,
    fractions: tuple[float, float],
    max_per_class: int | None,
) -> Splits:
    """Splits of small in-memory images (N, H, W) or (N, H, W, 3) with values in [0, 1]."""
    _check_labels(labels, classes, "images")
    parts = stratified_split(labels, fractions, seed, max_per_class, classes)
    return _index_splits(images, labels, classes, preprocess, parts)


def _index_splits(
    images: np.ndarray, labels: np.ndarray, classes: list[str], preprocess: ImagePreprocess, parts: list[np.ndarray]
) -> Splits:
    """Splits of in-memory images (as :func:`_array_splits`) at given train/val/test indices."""
    raw = torch.as_tensor(images, dtype=torch.float32)
    raw = raw.unsqueeze(1) if raw.ndim == 3 else raw.permute(0, 3, 1, 2)
    y = torch.as_tensor(labels, dtype=torch.long)
    train, val, test = parts
    total = (len(train) + len(val) + len(test)) * 3 * preprocess.size**2 * 4
    precompute = total <= _PRECOMPUTE_LIMIT_BYTES

    def make(idx: np.ndarray) -> ImageTensorDataset:
        part = raw[torch.as_tensor(idx, dtype=torch.long)]
        if not precompute:
            return ImageTensorDataset(part, y[idx], preprocess)
        ready = torch.cat([preprocess(chunk) for chunk in part.split(256)]) if len(part) else part
        return ImageTensorDataset(ready.contiguous(), y[idx])

    return Splits(make(train), make(val), make(test), classes)


def _digits(preprocess, seed, fractions, max_per_class, root, download) -> Splits:
    from sklearn.datasets import load_digits

    d = load_digits()
    return _array_splits(
        d.images / 16.0, d.target, [str(i) for i in range(10)], preprocess, seed, fractions, max_per_class
    )


def _lfw_faces(preprocess, seed, fractions, max_per_class, root, download) -> Splits:
    from skimage.data import lfw_subset

    images = lfw_subset()  # 200 grayscale 25x25 crops: the first 100 are faces, the rest are not
    labels = np.repeat([0, 1], [100, len(images) - 100])
    return _array_splits(images, labels, ["face", "non-face"], preprocess, seed, fractions, max_per_class)


# Seven everyday colour photographs shipped with scikit-image and scikit-learn: the classes of ``photo_patches``.
_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "china", "flower", "motorcycle")
_PATCH, _BLOCK = 48, 96  # a patch's side; the side of the blocks the split is made of (4 patches per block)


def _photos() -> dict[str, np.ndarray]:
    import skimage.data
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    images = {
        "astronaut": skimage.data.astronaut(),  # 512 x 512
        "coffee": skimage.data.coffee(),  # 400 x 600
        "chelsea": skimage.data.chelsea(),  # 300 x 451, a tabby cat
        "rocket": skimage.data.rocket(),  # 427 x 640, a launch pad at dusk
        "china": china,  # 427 x 640, a temple on a lake (scikit-learn)
        "flower": flower,  # 427 x 640, a dahlia (scikit-learn)
        "motorcycle": skimage.data.stereo_motorcycle()[0],  # 500 x 741, the left view only
    }
    return {name: images[name] for name in _PHOTOS}


def photo_patch_grid(image: np.ndarray, patch: int = _PATCH, block: int = _BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``image`` (H, W, 3) into whole ``block`` x ``block`` blocks on a grid (the ragged edge is dropped),
    each block into non-overlapping ``patch`` x ``patch`` patches; return the patches and each one's block number.

    Splitting by block keeps every patch of one block in one split, so no test patch overlaps a training patch.

    >>> image = np.arange(100 * 200 * 3).reshape(100, 200, 3)  # two whole 96-px blocks side by side
    >>> patches, blocks = photo_patch_grid(image, patch=48, block=96)
    >>> patches.shape, blocks.tolist()
    ((8, 48, 48, 3), [0, 0, 0, 0, 1, 1, 1, 1])
    """
    rows, cols = image.shape[0] // block, image.shape[1] // block
    patches, blocks = [], []
    for b in range(rows * cols):
        top, left = (b // cols) * block, (b % cols) * block
        for r in range(top, top + block - patch + 1, patch):
            for c in range(left, left + block - patch + 1, patch):
                patches.append(image[r : r + patch, c : c + patch])
                blocks.append(b)
    return np.stack(patches), np.asarray(blocks)


def _photo_patches(preprocess, seed, fractions, max_per_class, root, download) -> Splits:
    """Which photograph a 48 x 48 colour patch was cut from; train/val/test from disjoint 96-px blocks.

    A *near* target for an ImageNet network: everyday colour photographs (a person, a coffee cup, a tabby cat, a
    rocket, a temple, a flower, a motorcycle), the kind of picture ImageNet is made of, several of them close to
    its classes. It replaced ``lfw_faces`` as lesson 4's near target because frozen ImageNet features do not
    solve it outright -- feature extraction stays well below 1.0 on validation at 96 px, far above chance (1/7),
    in ``lessons/measured/near_far.json`` -- while on faces it scored 1.000 on validation and test.
    Limits: each class is one photograph, so this is recognising a scene from a small part of it -- colour,
    texture and object parts -- not recognising a category in new photos; a test patch comes from a block no
    training patch touches, but neighbouring blocks of one photo look alike, so it is easier than a new photo.
    The photos give different numbers of blocks (``chelsea`` 12, ``motorcycle`` 35), so the classes are not
    balanced unless ``max_per_class`` caps them.

    The split is drawn over blocks, class by class (:func:`stratified_split` of the blocks with ``fractions``);
    ``max_per_class`` then keeps, in each split, at most the share of ``max_per_class`` patches that
    :func:`stratified_split` would give it (with fractions 1/3, 1/3 and ``max_per_class=45``: 15 patches per
    class in each split), drawn at random from that split's blocks.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    images, labels, offset = [], [], 0
    for label, image in enumerate(_photos().values()):
        patches, blocks = photo_patch_grid(image)
        n_blocks = int(blocks.max()) + 1
        block_parts = stratified_split(np.zeros(n_blocks, dtype=np.int64), fractions, seed + 1000 * label)
        if max_per_class is not None:
            caps = [0 if f == 0 else max(1, int(np.floor(f * max_per_class + 0.5))) for f in fractions]
            caps = [max_per_class - sum(caps), *caps]
        for k, chosen in enumerate(block_parts):
            idx = np.flatnonzero(np.isin(blocks, chosen))
            if max_per_class is not None and len(idx) > caps[k]:
                idx = np.sort(rng.choice(idx, caps[k], replace=False))
            parts[k].append(idx + offset)
        images.append(patches)
        labels.append(np.full(len(patches), label))
        offset += len(patches)
    x = np.concatenate(images).astype(np.float32) / 255.0
    y = np.concatenate(labels)
    return _index_splits(x, y, list(_PHOTOS), preprocess, [np.concatenate(p) for p in parts])


def vader_lexicon_words(min_abs_rating: float = 1.0) -> tuple[list[str], list[int]]:
    """Words of the VADER lexicon with a clear sentiment: label 1 if the mean human rating is >= +1, 0 if <= -1.

    Only plain words (letters, ``'`` and ``-``) are kept: emoticons such as
    ``:-)`` tokenize to punctuation a word model knows nothing about. The few
    words listed twice get the mean of their ratings.

    >>> words, labels = vader_lexicon_words()
    >>> polarity = dict(zip(words, labels))
    >>> len(words), polarity["good"], polarity["awful"]
    (5586, 1, 0)
    """
    text = (resources.files("vaderSentiment") / "vader_lexicon.txt").read_text(encoding="utf-8")
    ratings: dict[str, list[float]] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and _VADER_WORD.fullmatch(fields[0]):
            ratings.setdefault(fields[0], []).append(float(fields[1]))
    words, labels = [], []
    for word, values in ratings.items():
        mean = sum(values) / len(values)
        if abs(mean) >= min_abs_rating:
            words.append(word)
            labels.append(int(mean > 0))
    return words, labels


def _vader_words(preprocess, seed, fractions, max_per_class, root, download) -> Splits:
    words, labels = vader_lexicon_words()
    parts = stratified_split(labels, fractions, seed, max_per_class)
    y = np.asarray(labels)
    return Splits(*(TextDataset([words[i] for i in idx], y[idx]) for idx in parts), ["negative", "positive"])


# --------------------------------------------------------------------------- online data sets


def default_root() -> Path:
    """Where online data sets live: ``$FTLAB_DATA``, else ``~/.cache/ftlab/data``.

    A course server points ``$FTLAB_DATA`` at one shared copy, so each
    student does not download the same data sets again.

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"FTLAB_DATA": "/srv/course-data"}):
    ...     print(default_root())
    /srv/course-data
    """
    return Path(os.environ.get("FTLAB_DATA") or "~/.cache/ftlab/data").expanduser()


@contextlib.contextmanager
def _explained_errors(name: str, root: Path, folder: str, source: str, download: bool) -> Iterator[None]:
    try:
        yield
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted. You can use download=True ..."
        if download:
            raise
        raise FileNotFoundError(
            f"{name} is not under {root} (torchvision: {e}). Fetch it with load_dataset({name!r}, download=True) "
            f"-- {source} -- or copy the {folder!r} folder from a machine that has it into {root} "
            "(or pass root=, or set $FTLAB_DATA)."
        ) from None
    except OSError as e:  # URLError, DNS failure, refused connection ... while downloading
        if not download or isinstance(e, FileNotFoundError):
            raise
        raise ConnectionError(
            f"downloading {name} ({source}) into {root} failed: {e}. Without a network, download it on another "
            f"machine with load_dataset({name!r}, download=True, root=DIR) and copy DIR/{folder} into {root}."
        ) from e


def _labels_of(ds: Any) -> np.ndarray:
    # Every torchvision class keeps its labels in a list, so splitting never decodes an image.
    for attr in ("targets", "_labels"):
        if hasattr(ds, attr):
            return np.asarray(getattr(ds, attr), dtype=np.int64)
    raise TypeError(f"don't know where {type(ds).__name__} keeps its labels")


def _pool_and_test(
    pool: Any, test: Any, classes: list[str], preprocess, seed, val_fraction, max_per_class, name
) -> Splits:
    pool_y, test_y = _labels_of(pool), _labels_of(test)
    _check_labels(pool_y, classes, name)
    _check_labels(test_y, classes, name)
    train_idx, val_idx = stratified_split(pool_y, [val_fraction], seed, max_per_class, classes)
    (test_idx,) = stratified_split(test_y, [], seed, max_per_class, classes)
    return Splits(
        _PILImages(pool, train_idx, pool_y, preprocess),
        _PILImages(pool, val_idx, pool_y, preprocess),
        _PILImages(test, test_idx, test_y, preprocess),
        list(classes),
    )


def _oxford_pets(preprocess, seed, fractions, max_per_class, root, download) -> Splits:
    from torchvision.datasets import OxfordIIITPet

    source = "images and annotations from robots.ox.ac.uk/~vgg/data/pets, about 800 MB"
    with _explained_errors("oxford_pets", root, "oxford-iiit-pet", source, download):
        pool = OxfordIIITPet(root, split="trainval", download=download)
        test = OxfordIIITPet(root, split="test", download=download)
    return _pool_and_test(pool, test, pool.classes, preprocess, seed, fractions[0], max_per_class, "oxford_pets")


def _cifar10(preprocess, seed, fractions, max_per_class, root, download) -> Splits:
    from torchvision.datasets import CIFAR10

    source = "cifar-10-python.tar.gz from cs.toronto.edu/~kriz, 163 MB"
    with _explained_errors("cifar10", root, "cifar-10-batches-py", source, download):
        pool = CIFAR10(root, train=True, download=download)
        test = CIFAR10(root, train=False, download=download)
    return _pool_and_test(pool, test, pool.classes, preprocess, seed, fractions[0], max_per_class, "cifar10")


def _flowers102(preprocess, seed, fractions, max_per_class, root, download) -> Splits:
    from torchvision.datasets import Flowers102

    # The official split (10 training and 10 validation images per class) is
    # the point of this data set, so val_fraction/test_fraction do not apply.
    source = "102flowers.tgz and two .mat files from robots.ox.ac.uk/~vgg/data/flowers/102, about 330 MB"
    with _explained_errors("flowers102", root, "flowers-102", source, download):
        parts = [Flowers102(root, split=s, download=download) for s in ("train", "val", "test")]
    # `classes` arrived in torchvision 0.20; older releases only number them.
    classes = list(getattr(parts[0], "classes", [str(i + 1) for i in range(102)]))
    out = []
    for ds in parts:
        y = _labels_of(ds)
        _check_labels(y, classes, "flowers102")
        (idx,) = stratified_split(y, [], seed, max_per_class, classes)
        out.append(_PILImages(ds, idx, y, preprocess))
    return Splits(*out, classes)


def _eurosat(preprocess, seed, fractions, max_per_class, root, download) -> Splits:
    from torchvision.datasets import EuroSAT

    source = "EuroSAT.zip (RGB) from the torchgeo/eurosat Hugging Face repo, about 90 MB"
    with _explained_errors("eurosat", root, "eurosat", source, download):
        ds = EuroSAT(root, download=download)
    y = _labels_of(ds)
    classes = list(ds.classes)
    _check_labels(y, classes, "eurosat")
    parts = stratified_split(y, fractions, seed, max_per_class, classes)
    return Splits(*(_PILImages(ds, idx, y, preprocess) for idx in parts), classes)


def _sst2(preprocess, seed, fractions, max_per_class, root, download) -> Splits:
    try:
        import datasets as hf_datasets
    except ImportError:
        raise ImportError("sst2 needs the optional Hugging Face `datasets` package: pip install datasets") from None
    cache = root / "huggingface"
    try:
        with _hf_datasets_offline(hf_datasets, not download):
            dd = hf_datasets.load_dataset("nyu-mll/glue", "sst2", cache_dir=str(cache))
    except Exception as e:  # datasets raises ConnectionError, FileNotFoundError or ValueError depending on version
        if download:
            raise
        raise FileNotFoundError(
            f"GLUE SST-2 is not in the datasets cache at {cache} ({type(e).__name__}: {e}). Fetch it with "
            "load_dataset('sst2', download=True), or copy that folder from a machine that has it."
        ) from None
    # GLUE hides the test labels, so the official validation set is our test set.
    pool_texts, pool_y = list(dd["train"]["sentence"]), np.asarray(list(dd["train"]["label"]), dtype=np.int64)
    test_texts, test_y = list(dd["validation"]["sentence"]), np.asarray(list(dd["validation"]["label"]), dtype=np.int64)
    classes = ["negative", "positive"]
    _check_labels(pool_y, classes, "sst2")
    _check_labels(test_y, classes, "sst2")
    train_idx, val_idx = stratified_split(pool_y, [fractions[0]], seed, max_per_class, classes)
    (test_idx,) = stratified_split(test_y, [], seed, max_per_class, classes)

    def make(texts: list[str], y: np.ndarray, idx: np.ndarray) -> TextDataset:
        return TextDataset([texts[i] for i in idx], y[idx])

    return Splits(
        make(pool_texts, pool_y, train_idx), make(pool_texts, pool_y, val_idx), make(test_texts, test_y, test_idx),
        classes,
    )


@contextlib.contextmanager
def _hf_datasets_offline(module: Any, offline: bool) -> Iterator[None]:
    # `datasets` reads HF_HUB_OFFLINE at import time into its config; set both
    # the environment and the imported flags so a missing cache fails at once
    # instead of retrying the network.
    if not offline:
        yield
        return
    config = getattr(module, "config", None)
    flags = {f: getattr(config, f) for f in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if hasattr(config, f)}
    old_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    os.environ.update({k: "1" for k in old_env})
    for f in flags:
        setattr(config, f, True)
    try:
        yield
    finally:
        for f, v in flags.items():
            setattr(config, f, v)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _DataSpec:
    kind: str  # "image" or "text"
    description: str
    load: Callable[..., Splits]


_DATASETS: dict[str, _DataSpec] = {
    "digits": _DataSpec("image", "handwritten digits, 1,797 grayscale 8x8 images, 10 classes (scikit-learn); offline",
                        _digits),
    "lfw_faces": _DataSpec("image", "200 grayscale 25x25 crops, face vs non-face (scikit-image lfw_subset); offline",
                           _lfw_faces),
    "photo_patches": _DataSpec("image", "48x48 colour patches of 7 photographs, which photo (scikit-image, "
                               "scikit-learn); splits from disjoint blocks; offline", _photo_patches),
    "vader_words": _DataSpec("text", "5,586 English words, negative vs positive by their VADER rating; offline",
                             _vader_words),
    "oxford_pets": _DataSpec("image", "Oxford-IIIT Pet, 7,349 photos of 37 cat and dog breeds (torchvision); online",
                             _oxford_pets),
    "eurosat": _DataSpec("image", "EuroSAT RGB, 27,000 64x64 satellite tiles, 10 land-use classes (torchvision); "
                         "online", _eurosat),
    "flowers102": _DataSpec("image", "Oxford Flowers-102, 8,189 photos, 102 species, official splits (torchvision); "
                            "online", _flowers102),
    "cifar10": _DataSpec("image", "CIFAR-10, 60,000 32x32 images, 10 classes (torchvision); online", _cifar10),
    "sst2": _DataSpec("text", "GLUE SST-2, 68,221 movie-review sentences, negative vs positive (needs `pip install "
                      "datasets`); online", _sst2),
}


def _spec(name: str) -> _DataSpec:
    if not isinstance(name, str):
        raise TypeError(f"data set name must be a str, got {type(name).__name__}")
    spec = _DATASETS.get(name.strip().lower().replace("-", "_"))
    if spec is None:
        raise ValueError(f"unknown data set {name!r}; available: {sorted(_DATASETS)} (see available_datasets())")
    return spec


def dataset_kind(name: str) -> str:
    """``"image"`` or ``"text"``: what a data set's items are, known without loading it.

    >>> dataset_kind("digits"), dataset_kind("sst2")
    ('image', 'text')
    """
    return _spec(name).kind


def available_datasets() -> dict[str, str]:
    """Data set name -> one-line description (size, classes, source, offline/online).

    >>> sorted(available_datasets())
    ['cifar10', 'digits', 'eurosat', 'flowers102', 'lfw_faces', 'oxford_pets', 'photo_patches', 'sst2', 'vader_words']
    >>> available_datasets()["lfw_faces"]
    '200 grayscale 25x25 crops, face vs non-face (scikit-image lfw_subset); offline'
    """
    return {name: spec.description for name, spec in _DATASETS.items()}


def load_dataset(
    name: str,
    *,
    preprocess: ImagePreprocess | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    max_per_class: int | None = None,
    root: str | Path | None = None,
    download: bool = False,
) -> Splits:
    """Train/val/test splits of a named data set (see :func:`available_datasets`).

    Image items are ``(x, y)``: ``x`` a float32 (3, size, size) tensor made by
    ``preprocess`` (default: 224 px, ImageNet mean/std -- pass
    ``model.preprocess`` to match a model from :func:`ftlab.models.load_pretrained`).
    Text items are ``(text, y)``; batch them with :func:`text_collate`.

    ``val_fraction``/``test_fraction`` split the data class by class; data sets
    with an official test split use it instead of ``test_fraction`` (and
    Flowers-102 uses its official validation split too). ``max_per_class``
    keeps at most that many examples of each class -- of the whole data before
    splitting, and of an official test split separately -- for small-data
    experiments and quick runs. Everything depends only on ``seed``.
    Online data sets are read from ``root`` and downloaded only if ``download=True``.

    >>> splits = load_dataset("lfw_faces", preprocess=ImagePreprocess(32, IMAGENET_MEAN, IMAGENET_STD))
    >>> splits, splits.classes
    (Splits(train=140, val=30, test=30, num_classes=2), ['face', 'non-face'])
    >>> x, y = splits.train[0]
    >>> x.shape, splits.classes[y]  # 25 x 25 grayscale, now RGB at the model's size
    (torch.Size([3, 32, 32]), 'face')
    """
    spec = _spec(name)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    fractions = (_check_fraction("val_fraction", val_fraction), _check_fraction("test_fraction", test_fraction))
    if sum(fractions) >= 1:
        raise ValueError(f"val_fraction + test_fraction must be < 1 to leave training data, got {sum(fractions)}")
    if max_per_class is not None and (
        isinstance(max_per_class, bool) or not isinstance(max_per_class, int) or max_per_class < 1
    ):
        raise ValueError(f"max_per_class must be a positive int or None, got {max_per_class!r}")
    if spec.kind == "text":
        if preprocess is not None:
            raise ValueError(
                f"{name} is a text data set: preprocess is for images. Tokenize batches with "
                "text_collate(model.tokenizer) instead"
            )
    elif preprocess is None:
        preprocess = ImagePreprocess(224, IMAGENET_MEAN, IMAGENET_STD)
    elif not isinstance(preprocess, ImagePreprocess):
        raise TypeError(f"preprocess must be an ImagePreprocess (e.g. model.preprocess), got {type(preprocess).__name__}")
    folder = Path(root).expanduser() if root is not None else default_root()
    return spec.load(preprocess, seed, fractions, max_per_class, folder, bool(download))
