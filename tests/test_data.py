"""ftlab.data: offline data sets, deterministic stratified splits, and the real torchvision loaders.

Online data sets are tested by writing the on-disk layout torchvision expects,
with a few tiny generated images, into a temp dir and loading it with
download=False -- the real torchvision classes do the reading.
"""

import os
import pickle
import socket
import sys
import types
from collections import Counter

import numpy as np
import pytest
import scipy.io
import torch
import torchvision.datasets.cifar
import torchvision.datasets.flowers102
from PIL import Image
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader
from transformers import AutoTokenizer

import ftlab.data as data
from ftlab.data import Splits, available_datasets, dataset_kind, load_dataset, stratified_split, text_collate
from ftlab.models import ImagePreprocess, minilm_path

RAW = ImagePreprocess(8, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # no resize, no normalisation: pixels as they are
SMALL = ImagePreprocess(16, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
COLOURS = [(230, 20, 20), (20, 230, 20), (20, 20, 230)]  # one solid colour per class in the fake data sets


def class_counts(ds) -> Counter:
    return Counter(int(y) for y in ds.labels)


def all_items(splits: Splits):
    return [item for ds in (splits.train, splits.val, splits.test) for item in ds]


# ------------------------------------------------------------------ splitting


def test_stratified_split_is_a_deterministic_stratified_partition():
    labels = np.repeat(np.arange(4), [100, 40, 20, 7])
    train, val, test = stratified_split(labels, [0.15, 0.15], seed=3)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(len(labels)))  # a partition
    assert Counter(labels[test].tolist()) == {0: 15, 1: 6, 2: 3, 3: 1}  # rounded per class, at least one
    again = stratified_split(labels, [0.15, 0.15], seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    other = stratified_split(labels, [0.15, 0.15], seed=4)
    assert not np.array_equal(test, other[2])


def test_stratified_split_caps_classes_and_refuses_empty_splits():
    labels = np.repeat(np.arange(3), 50)
    train, val, test = stratified_split(labels, [0.2, 0.2], seed=0, max_per_class=10)
    assert Counter(labels[train].tolist()) == {0: 6, 1: 6, 2: 6}
    assert Counter(labels[test].tolist()) == {0: 2, 1: 2, 2: 2}
    with pytest.raises(ValueError, match="class 'a' has 2 examples"):
        stratified_split(labels, [0.2, 0.2], max_per_class=2, classes=["a", "b", "c"])


# ------------------------------------------------------------------ digits


def test_digits_are_the_real_images_split_stratified():
    splits = load_dataset("digits", preprocess=RAW)
    assert splits.classes == [str(i) for i in range(10)] and splits.num_classes == 10
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1259, 269, 269)
    items = all_items(splits)
    x, y = items[0]
    assert x.dtype == torch.float32 and x.shape == (3, 8, 8) and isinstance(y, int)
    # Every sklearn image appears exactly once, with its label, gray -> 3 equal channels.
    ours = Counter((tuple(np.round(x[0].numpy().ravel() * 16).astype(int)), y) for x, y in items)
    d = load_digits()
    theirs = Counter((tuple(img.ravel().astype(int)), int(t)) for img, t in zip(d.images, d.target))
    assert ours == theirs
    assert all(torch.equal(x[0], x[2]) for x, _ in items[:50])
    for ds in (splits.val, splits.test):
        assert min(class_counts(ds).values()) >= 25  # ~15% of each ~180-image class


def test_digits_resized_for_a_model_and_deterministic():
    pre = ImagePreprocess(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    a = load_dataset("digits", preprocess=pre, seed=1, max_per_class=20)
    b = load_dataset("digits", preprocess=pre, seed=1, max_per_class=20)
    c = load_dataset("digits", preprocess=pre, seed=2, max_per_class=20)
    assert a.train.images.shape == (10 * 14, 3, 32, 32)
    assert a.train.images.min() >= -1 and a.train.images.max() <= 1
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.train.images, c.train.images)
    assert class_counts(a.train) == dict.fromkeys(range(10), 14) and class_counts(a.test) == dict.fromkeys(range(10), 3)


def test_too_large_to_precompute_gives_the_same_items(monkeypatch):
    pre = ImagePreprocess(24, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    eager = load_dataset("digits", preprocess=pre, max_per_class=5)
    monkeypatch.setattr(data, "_PRECOMPUTE_LIMIT_BYTES", 0)
    lazy = load_dataset("digits", preprocess=pre, max_per_class=5)
    assert eager.train.preprocess is None and lazy.train.preprocess is pre
    for i in range(len(eager.train)):
        assert torch.allclose(eager.train[i][0], lazy.train[i][0], atol=1e-6)
        assert eager.train[i][1] == lazy.train[i][1]


def test_digits_train_a_pretrained_model_batch():
    from ftlab.models import load_pretrained

    model = load_pretrained(num_classes=10, pretrained=False)
    splits = load_dataset(
        "digits", preprocess=ImagePreprocess(32, model.preprocess.mean, model.preprocess.std), max_per_class=5
    )
    splits.check_model(model)
    x, y = next(iter(DataLoader(splits.train, batch_size=8)))
    assert model(x).shape == (8, 10) and y.dtype == torch.long


# ------------------------------------------------------------------ lfw faces, photo patches, vader words


def test_lfw_faces():
    splits = load_dataset("lfw_faces", preprocess=SMALL, seed=0)
    assert splits.classes == ["face", "non-face"]
    assert len(all_items(splits)) == 200
    assert class_counts(splits.test) == {0: 15, 1: 15}
    x, _ = splits.train[0]
    assert x.shape == (3, 16, 16) and 0 <= x.min() and x.max() <= 1


def _patch_keys(ds):
    # A patch's identity: its raw pixels (RAW-like preprocessing keeps them as they are).
    return {x.numpy().tobytes() for x, _ in ds}


def test_photo_patch_grid_cuts_whole_blocks_into_disjoint_patches():
    image = np.arange(200 * 300 * 3).reshape(200, 300, 3)
    patches, blocks = data.photo_patch_grid(image, patch=48, block=96)
    assert patches.shape == (2 * 3 * 4, 48, 48, 3)  # 2 x 3 whole blocks (the ragged edge dropped), 4 patches each
    assert Counter(blocks.tolist()) == dict.fromkeys(range(6), 4)
    values = [set(p.ravel().tolist()) for p in patches]
    assert all(not (a & b) for i, a in enumerate(values) for b in values[i + 1 :])  # no pixel in two patches
    assert np.array_equal(patches[0], image[:48, :48]) and np.array_equal(patches[-1], image[144:192, 240:288])


def test_photo_patches_are_the_seven_photos_split_by_block():
    raw = ImagePreprocess(48, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    splits = load_dataset("photo_patches", preprocess=raw, seed=0)
    assert splits.classes == ["astronaut", "coffee", "chelsea", "rocket", "china", "flower", "motorcycle"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (456, 108, 108)
    x, y = splits.train[0]
    assert x.shape == (3, 48, 48) and 0 <= x.min() and x.max() <= 1 and isinstance(y, int)
    # Stratified over blocks: each photo's blocks split 70/15/15, 4 patches a block (chelsea has 12 blocks).
    assert class_counts(splits.test) == {0: 16, 1: 16, 2: 8, 3: 16, 4: 16, 5: 16, 6: 20}
    assert class_counts(splits.val) == class_counts(splits.test)
    # No patch in two splits: the blocks are disjoint, so are the pixels.
    train, val, test = (_patch_keys(d) for d in (splits.train, splits.val, splits.test))
    assert len(train) + len(val) + len(test) == 672 and not (train & test or train & val or val & test)


def test_photo_patches_capped_balanced_and_deterministic():
    kw = dict(preprocess=SMALL, max_per_class=45, val_fraction=1 / 3, test_fraction=1 / 3)
    a, b = load_dataset("photo_patches", seed=1, **kw), load_dataset("photo_patches", seed=1, **kw)
    c = load_dataset("photo_patches", seed=2, **kw)
    for ds in (a.train, a.val, a.test):
        assert class_counts(ds) == dict.fromkeys(range(7), 15)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.test.images, c.test.images)
    assert not (_patch_keys(a.train) & _patch_keys(a.test))


def test_vader_words_labelled_by_the_sign_of_their_rating():
    splits = load_dataset("vader_words", seed=0)
    assert splits.classes == ["negative", "positive"]
    labelled = dict(all_items(splits))
    assert len(labelled) == sum(len(s) for s in (splits.train, splits.val, splits.test)) == 5586
    assert labelled["love"] == 1 and labelled["good"] == 1 and labelled["ok"] == 1  # ok: mean of 1.6 and 1.2
    assert labelled["hate"] == 0 and labelled["bad"] == 0
    assert "okay" not in labelled and "fine" not in labelled  # |rating| < 1: no clear sentiment
    assert not any(":" in w or " " in w for w in labelled)  # emoticons and phrases are left out
    assert isinstance(splits.train[0][0], str) and isinstance(splits.train[0][1], int)


def test_text_collate_tokenizes_batches():
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    splits = load_dataset("vader_words", max_per_class=20)
    loader = DataLoader(splits.train, batch_size=5, collate_fn=text_collate(tokenizer, max_length=4))
    inputs, labels = next(iter(loader))
    assert set(inputs) == {"input_ids", "attention_mask"}
    assert inputs["input_ids"].shape[0] == 5 and inputs["input_ids"].shape[1] <= 4
    assert (inputs["input_ids"][:, 0] == tokenizer.cls_token_id).all()
    assert labels.dtype == torch.long and labels.shape == (5,)
    with pytest.raises(ValueError, match="max_length"):
        text_collate(tokenizer, max_length=1)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"name": "mnist"}, ValueError, "unknown data set 'mnist'"),
        ({"name": "digits", "val_fraction": 0.6, "test_fraction": 0.5}, ValueError, "< 1"),
        ({"name": "digits", "test_fraction": -0.1}, ValueError, "test_fraction"),
        ({"name": "digits", "max_per_class": 0}, ValueError, "max_per_class"),
        ({"name": "digits", "max_per_class": 2}, ValueError, "too few"),
        ({"name": "digits", "seed": -1}, ValueError, "seed"),
        ({"name": "vader_words", "preprocess": SMALL}, ValueError, "text_collate"),
        ({"name": "digits", "preprocess": lambda x: x}, TypeError, "ImagePreprocess"),
    ],
)
def test_bad_arguments_are_explained(kwargs, error, message):
    name = kwargs.pop("name")
    with pytest.raises(error, match=message):
        load_dataset(name, **kwargs)


def test_class_count_mismatch_with_the_model_is_caught():
    splits = load_dataset("lfw_faces", preprocess=SMALL, max_per_class=5)
    splits.check_model(nn.Sequential(nn.Linear(4, 2)))
    with pytest.raises(ValueError, match="1000 outputs but the data has 2 classes.*num_classes=2"):
        splits.check_model(nn.Sequential(nn.Linear(4, 1000)))


@pytest.mark.parametrize("name", list(available_datasets()))
def test_each_data_set_is_what_the_registry_says(name, tmp_path, monkeypatch):
    """An "offline" data set loads from installed packages with no network and an empty data folder;
    an "online" one, without its files, fails and says what to fetch; items are images or texts by kind."""

    def no_network(*args, **kwargs):
        raise AssertionError(f"{name} tried to open a network connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    kind = dataset_kind(name)
    if available_datasets()[name].endswith("online"):
        with pytest.raises((FileNotFoundError, ImportError), match="download=True|pip install datasets"):
            load_dataset(name, root=tmp_path)
        return
    splits = load_dataset(name, preprocess=SMALL if kind == "image" else None, max_per_class=4, root=tmp_path)
    x, y = splits.train[0]
    assert isinstance(y, int) and 0 <= y < splits.num_classes
    if kind == "image":
        assert isinstance(x, torch.Tensor) and x.shape == (3, 16, 16)
    else:
        assert isinstance(x, str) and x


def test_default_root_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FTLAB_DATA", str(tmp_path))
    assert data.default_root() == tmp_path
    monkeypatch.delenv("FTLAB_DATA")
    assert data.default_root() == data.Path("~/.cache/ftlab/data").expanduser()


# ------------------------------------------------------------------ online data sets from their real layouts


def write_jpeg(path, colour, size=(20, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, quality=95)


def assert_colours_match_labels(splits: Splits):
    """Each fake image is a solid colour chosen by its class: images and labels stayed paired."""
    for x, y in all_items(splits):
        assert x.shape == (3, 16, 16)
        assert torch.allclose(x.mean(dim=(1, 2)), torch.tensor(COLOURS[y]) / 255, atol=0.03), y


@pytest.fixture
def md5_checks_skipped(monkeypatch):
    # torchvision compares the md5 of CIFAR's batches and of Flowers-102's .mat
    # files with the published ones; our tiny stand-ins cannot match. Only that
    # comparison is replaced -- the files must still exist and are really read.
    def exists_only(fpath, md5=None):
        return os.path.isfile(fpath)

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", exists_only)
    monkeypatch.setattr(torchvision.datasets.flowers102, "check_integrity", exists_only)


def make_cifar10(root, test_labels=(0, 1, 2, 0, 1, 2)):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def batch(labels):
        pixels = np.stack([np.repeat(np.array(COLOURS[y % 3], np.uint8), 32 * 32) for y in labels])  # CHW flattened
        return {"data": pixels, "labels": list(labels)}

    for k in range(1, 6):
        (folder / f"data_batch_{k}").write_bytes(pickle.dumps(batch([0, 1, 2])))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(list(test_labels))))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))


def test_cifar10_from_its_pickles(tmp_path, md5_checks_skipped):
    make_cifar10(tmp_path)
    splits = load_dataset("cifar10", root=tmp_path, preprocess=SMALL, seed=0)
    assert splits.classes[:3] == ["airplane", "automobile", "bird"] and splits.num_classes == 10
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 3, 6)  # 5 per class: 1 to val
    assert class_counts(splits.test) == {0: 2, 1: 2, 2: 2}  # the official test batch
    assert_colours_match_labels(splits)
    capped = load_dataset("cifar10", root=tmp_path, preprocess=SMALL, max_per_class=3)
    assert (len(capped.train), len(capped.val), len(capped.test)) == (6, 3, 6)


def test_missing_files_say_what_to_download(tmp_path):
    for name, folder in (
        ("cifar10", "cifar-10-batches-py"),
        ("oxford_pets", "oxford-iiit-pet"),
        ("eurosat", "eurosat"),
        ("flowers102", "flowers-102"),
    ):
        with pytest.raises(FileNotFoundError) as err:
            load_dataset(name, root=tmp_path)
        msg = str(err.value)
        assert "download=True" in msg and str(tmp_path) in msg and folder in msg


def test_labels_beyond_the_class_list_are_refused(tmp_path, md5_checks_skipped):
    make_cifar10(tmp_path, test_labels=(0, 1, 10))
    with pytest.raises(ValueError, match="10 class names"):
        load_dataset("cifar10", root=tmp_path, preprocess=SMALL)


def test_oxford_pets_from_its_folders(tmp_path):
    base = tmp_path / "oxford-iiit-pet"
    breeds = [("Abyssinian", 1, 1), ("american_bulldog", 2, 2), ("Bengal", 3, 1)]  # name, class id, species
    for split, ids in (("trainval", range(1, 6)), ("test", range(6, 8))):
        lines = []
        for breed, label, species in breeds:
            for i in ids:
                write_jpeg(base / "images" / f"{breed}_{i}.jpg", COLOURS[label - 1])
                lines.append(f"{breed}_{i} {label} {species} {i}")
        (base / "annotations").mkdir(parents=True, exist_ok=True)
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    splits = load_dataset("oxford_pets", root=tmp_path, preprocess=SMALL)
    assert splits.classes == ["Abyssinian", "American Bulldog", "Bengal"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 3, 6)
    assert_colours_match_labels(splits)


def test_eurosat_from_its_folders(tmp_path):
    classes = ["AnnualCrop", "Forest", "River"]
    for c, name in enumerate(classes):
        for i in range(7):
            write_jpeg(tmp_path / "eurosat" / "2750" / name / f"{name}_{i}.jpg", COLOURS[c], size=(64, 64))
    splits = load_dataset("eurosat", root=tmp_path, preprocess=SMALL, seed=5)
    assert splits.classes == classes
    assert class_counts(splits.train) == {0: 5, 1: 5, 2: 5} and class_counts(splits.test) == {0: 1, 1: 1, 2: 1}
    assert_colours_match_labels(splits)


def test_flowers102_from_its_files_with_the_official_splits(tmp_path, md5_checks_skipped):
    base = tmp_path / "flowers-102"
    labels = [1, 2, 3] * 6  # image_00001 .. image_00018, 1-based class ids
    for image_id, label in enumerate(labels, 1):
        write_jpeg(base / "jpg" / f"image_{image_id:05d}.jpg", COLOURS[label - 1])
    scipy.io.savemat(base / "imagelabels.mat", {"labels": np.array(labels)})
    scipy.io.savemat(
        base / "setid.mat", {"trnid": np.arange(1, 7), "valid": np.arange(7, 13), "tstid": np.arange(13, 19)}
    )
    splits = load_dataset("flowers102", root=tmp_path, preprocess=SMALL)
    assert splits.num_classes == 102 and splits.classes[0] == "pink primrose"
    assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 6, 6)
    assert_colours_match_labels(splits)


# ------------------------------------------------------------------ sst2 through the optional `datasets`


def test_sst2_without_datasets_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(ImportError, match="pip install datasets"):
        load_dataset("sst2")


def fake_datasets_module(calls, fail=None):
    module = types.ModuleType("datasets")
    module.config = types.SimpleNamespace(HF_HUB_OFFLINE=False, HF_DATASETS_OFFLINE=False)

    def load(path, name, cache_dir):
        calls.append((path, name, cache_dir, module.config.HF_DATASETS_OFFLINE, os.environ.get("HF_HUB_OFFLINE")))
        if fail:
            raise fail
        return {
            "train": {"sentence": [f"train {i}" for i in range(20)], "label": [i % 2 for i in range(20)]},
            "validation": {"sentence": ["nice", "dull", "fun"], "label": [1, 0, 1]},
            "test": {"sentence": ["hidden"], "label": [-1]},
        }

    module.load_dataset = load
    return module


def test_sst2_uses_the_official_validation_set_as_test(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets_module(calls))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    splits = load_dataset("sst2", root=tmp_path)
    assert calls == [("nyu-mll/glue", "sst2", str(tmp_path / "huggingface"), True, "1")]  # offline: cache only
    assert os.environ.get("HF_HUB_OFFLINE") is None  # ... and restored afterwards
    assert splits.classes == ["negative", "positive"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (16, 4, 3)
    assert sorted(splits.test) == [("dull", 0), ("fun", 1), ("nice", 1)]


def test_sst2_missing_from_the_cache(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets_module([], fail=ConnectionError("offline")))
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_dataset("sst2", root=tmp_path)
