"""ftlab.models: real pretrained weights offline, new heads, preprocessing, and fail-fast online loading.

Nothing here touches the network: the online models are loaded from caches
built in a temp dir with the real on-disk layout, and every "no network" path
is forced with FTLAB_OFFLINE=1 or a patched reachability probe.
"""

import pytest
import torch
import torchvision
from safetensors.torch import load_file
from skimage import data as skdata
from torch import nn
from transformers import AutoTokenizer, BertConfig, BertForPreTraining, BertForSequenceClassification

import ftlab.checkpoints as checkpoints
import ftlab.models as models
from ftlab.layers import layer_groups, unfreeze_top
from ftlab.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImagePreprocess,
    available_models,
    lite0_checkpoint_path,
    load_pretrained,
    map_lite0_state_dict,
    minilm_path,
    model_kind,
    num_outputs,
)

CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = (967, 968)  # espresso, cup


@pytest.fixture
def no_network(monkeypatch):
    """Offline, and any attempt to probe the network fails the test."""
    monkeypatch.setenv("FTLAB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")

    def forbidden(host, timeout=0):
        raise AssertionError(f"tried to reach {host}")

    monkeypatch.setattr(models, "_reachable", forbidden)


@pytest.fixture(scope="module")
def lite0():
    return load_pretrained().eval()


def photo(name: str) -> torch.Tensor:
    return torch.from_numpy(getattr(skdata, name)()).permute(2, 0, 1).float() / 255


# ------------------------------------------------------------------ EfficientNet-Lite0 (offline)


def test_lite0_weights_are_real_imagenet_weights(lite0):
    x = torch.stack([lite0.preprocess(photo(n)) for n in ("chelsea", "coffee")])
    with torch.no_grad():
        probs = lite0(x).softmax(-1)
    top = probs.argmax(-1).tolist()
    assert top[0] in CAT_CLASSES, f"chelsea classified as ImageNet class {top[0]}"
    assert top[1] in COFFEE_CLASSES, f"coffee classified as ImageNet class {top[1]}"
    # Confident, not lucky: most of the probability mass is on the right kind of thing.
    assert probs[0, list(CAT_CLASSES)].sum() > 0.8
    assert probs[1, list(COFFEE_CLASSES)].sum() > 0.8


def test_random_lite0_is_not_a_cat_detector(no_network):
    torch.manual_seed(0)
    model = load_pretrained(pretrained=False).eval()
    with torch.no_grad():
        probs = model(model.preprocess(photo("chelsea"))[None]).softmax(-1)
    assert probs[0, list(CAT_CLASSES)].sum() < 0.05


def test_lite0_preprocessing_is_timms_for_these_weights(lite0):
    assert lite0.preprocess == ImagePreprocess(224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert lite0.pretrained_cfg["mean"] == lite0.preprocess.mean
    assert num_outputs(lite0) == 1000


def test_lite0_mapping_uses_every_tensor_exactly():
    source = torch.load(lite0_checkpoint_path(), map_location="cpu", weights_only=True)
    model = load_pretrained()
    target = model.state_dict()
    mapped = map_lite0_state_dict(source, target)
    assert len(mapped) == len(source) == len(target) == 296
    assert torch.equal(target["conv_stem.weight"], source["_conv_stem.weight"])
    assert torch.equal(target["blocks.0.0.conv_dw.weight"], source["_blocks.0._depthwise_conv.weight"])
    assert torch.equal(target["blocks.5.3.conv_pwl.weight"], source["_blocks.14._project_conv.weight"])
    assert torch.equal(target["bn2.running_var"], source["_bn1.running_var"])
    assert torch.equal(target["classifier.bias"], source["_fc.bias"])


@pytest.mark.parametrize(
    "corrupt, problem",
    [
        (lambda s: s.pop("_blocks.3._bn1.bias"), "not filled"),
        (lambda s: s.__setitem__("_blocks.16._bn1.bias", torch.zeros(3)), "no timm counterpart"),
        (lambda s: s.__setitem__("_fc.weight", torch.zeros(10, 1280)), "shape mismatch"),
    ],
)
def test_lite0_mapping_is_strict(corrupt, problem):
    source = dict(torch.load(lite0_checkpoint_path(), map_location="cpu", weights_only=True))
    target = load_pretrained(pretrained=False).state_dict()
    corrupt(source)
    with pytest.raises(ValueError, match=problem):
        map_lite0_state_dict(source, target)


def test_lite0_new_head_keeps_the_backbone_and_each_call_is_a_fresh_model(lite0):
    checkpoints.lite0_imagenet_state_dict.cache_clear()
    a = load_pretrained(num_classes=7)
    b = load_pretrained(num_classes=7)
    assert checkpoints.lite0_imagenet_state_dict.cache_info().hits == 1  # mapped once, reused
    assert a is not b and a.conv_stem.weight.data_ptr() != b.conv_stem.weight.data_ptr()
    assert torch.equal(a.conv_stem.weight, lite0.conv_stem.weight)
    with torch.no_grad():
        a.conv_stem.weight.zero_()
    assert not torch.equal(b.conv_stem.weight, a.conv_stem.weight)  # the cache was not written through

    assert num_outputs(a) == 7 and a.classifier.out_features == 7
    assert a(torch.zeros(2, 3, 64, 64)).shape == (2, 7)
    groups = layer_groups(a)
    assert groups[0].name == "stem" and groups[-1].name == "classifier"
    assert groups[-1].modules == (a.classifier,)
    assert unfreeze_top(a, 1) == ["classifier"]


def test_pretrained_false_reads_no_weights(monkeypatch, no_network):
    def no_file():
        raise AssertionError("pretrained=False must not read the checkpoint")

    monkeypatch.setattr(models, "lite0_checkpoint_path", no_file)
    model = load_pretrained("efficientnet_lite0", num_classes=3, pretrained=False)
    assert num_outputs(model) == 3 and isinstance(model.preprocess, ImagePreprocess)


# ------------------------------------------------------------------ preprocessing


def test_image_preprocess_resizes_and_normalizes():
    pre = ImagePreprocess(32, IMAGENET_MEAN, IMAGENET_STD)
    x = torch.full((2, 3, 100, 60), 0.5)
    y = pre(x)
    assert y.shape == (2, 3, 32, 32)
    expected = (0.5 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(y[0, :, 5, 5], expected, atol=1e-6)
    assert pre(x[0]).shape == (3, 32, 32)  # a single image stays unbatched
    assert torch.allclose(pre.denormalize(y), torch.full_like(y, 0.5), atol=1e-6)


def test_image_preprocess_turns_grayscale_into_rgb():
    gray = torch.rand(4, 1, 8, 8)
    y = ImagePreprocess(16, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))(gray)
    assert y.shape == (4, 3, 16, 16)
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])
    assert abs(y.mean().item() - gray.mean().item()) < 0.02  # resizing keeps the brightness


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.zeros(3, 8, 8, dtype=torch.uint8), "float"),
        (torch.full((3, 8, 8), 255.0), "divide by 255"),
        (torch.zeros(2, 4, 8, 8), "shaped"),
        (torch.zeros(8, 8), "shaped"),
    ],
)
def test_image_preprocess_rejects_wrong_inputs(images, message):
    with pytest.raises(ValueError, match=message):
        ImagePreprocess(8, IMAGENET_MEAN, IMAGENET_STD)(images)


def test_image_preprocess_validates_itself():
    with pytest.raises(ValueError, match="size"):
        ImagePreprocess(0, IMAGENET_MEAN, IMAGENET_STD)
    with pytest.raises(ValueError, match="3"):
        ImagePreprocess(8, (0.5, 0.5), IMAGENET_STD)
    with pytest.raises(ValueError, match="positive"):
        ImagePreprocess(8, IMAGENET_MEAN, (0.2, 0.0, 0.2))


# ------------------------------------------------------------------ names and arguments


@pytest.mark.parametrize("name", list(available_models()))
def test_each_model_is_what_the_registry_says(name, no_network, tmp_path):
    """An "offline" model loads its pretrained weights with no network; an "online" one, not cached, fails at once
    saying what to download; the kind is known before loading and is the model's (tokenizer or preprocessing)."""
    if available_models()[name].endswith("offline"):
        model = load_pretrained(name, num_classes=3)
    else:
        with pytest.raises(FileNotFoundError, match="no network"):
            load_pretrained(name, cache_dir=tmp_path)
        model = load_pretrained(name, num_classes=3, pretrained=False)
    assert num_outputs(model) == 3
    assert hasattr(model, "tokenizer") == (model_kind(name) == "text")
    assert isinstance(getattr(model, "preprocess", None), ImagePreprocess) == (model_kind(name) == "vision")


def test_bad_names_and_class_counts_are_explained():
    with pytest.raises(ValueError, match=r"unknown model 'vgg16'.*efficientnet_lite0"):
        load_pretrained("vgg16")
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="num_classes"):
            load_pretrained(num_classes=bad, pretrained=False)


def test_num_outputs_of_a_plain_network():
    assert num_outputs(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 5))) == 5
    with pytest.raises(ValueError, match="no nn.Linear"):
        num_outputs(nn.Sequential(nn.ReLU()))


# ------------------------------------------------------------------ torchvision ResNet (online)


def test_resnet_loads_from_a_torch_cache_dir(tmp_path, no_network):
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    saved = torchvision.models.resnet18().state_dict()  # stands in for the downloaded file
    torch.save(saved, tmp_path / weights.url.rsplit("/", 1)[1])
    model = load_pretrained("resnet18", num_classes=4, cache_dir=tmp_path)
    assert torch.equal(model.conv1.weight, saved["conv1.weight"])
    assert torch.equal(model.layer4[1].bn2.running_mean, saved["layer4.1.bn2.running_mean"])
    assert model.fc.out_features == 4 and num_outputs(model) == 4
    assert model.preprocess == ImagePreprocess(224, IMAGENET_MEAN, IMAGENET_STD)
    assert [g.name for g in layer_groups(model)] == ["stem", "layer1", "layer2", "layer3", "layer4", "fc"]


def test_resnet_fails_fast_offline_with_what_to_download(tmp_path, no_network):
    with pytest.raises(FileNotFoundError) as err:
        load_pretrained("resnet50", cache_dir=tmp_path)
    msg = str(err.value)
    assert "https://download.pytorch.org/models/resnet50-" in msg and str(tmp_path) in msg


def test_resnet_probe_failure_also_fails_fast(tmp_path, monkeypatch):
    monkeypatch.delenv("FTLAB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    probed = []
    monkeypatch.setattr(models, "_reachable", lambda host, timeout=0: probed.append(host) or False)
    with pytest.raises(FileNotFoundError, match="no network"):
        load_pretrained("resnet18", cache_dir=tmp_path)
    assert probed == ["download.pytorch.org"]


def test_resnet_from_scratch_needs_no_files(no_network):
    model = load_pretrained("resnet50", num_classes=3, pretrained=False)
    assert model.fc.out_features == 3 and model.preprocess.size == 224
    assert len(layer_groups(model)) == 6


# ------------------------------------------------------------------ text: MiniLM (offline), BERT (online)


@pytest.fixture(scope="module")
def minilm():
    return load_pretrained("minilm", num_classes=3)


def test_minilm_has_the_wheels_weights_and_tokenizer(minilm):
    assert isinstance(minilm, BertForSequenceClassification)
    assert minilm.config.num_labels == 3 and num_outputs(minilm) == 3
    saved = load_file(minilm_path() / "model.safetensors")
    assert torch.equal(minilm.bert.embeddings.word_embeddings.weight, saved["embeddings.word_embeddings.weight"])
    assert torch.equal(minilm.bert.encoder.layer[5].output.dense.weight, saved["encoder.layer.5.output.dense.weight"])
    batch = minilm.tokenizer(["a wonderful film", "awful"], padding=True, return_tensors="pt")
    assert batch["input_ids"][0, 0].item() == minilm.tokenizer.cls_token_id
    minilm.eval()
    with torch.no_grad():
        assert minilm(**batch).logits.shape == (2, 3)
    names = [g.name for g in layer_groups(minilm)]
    assert names == ["embeddings"] + [f"encoder.layer.{i}" for i in range(6)] + ["head"]


def test_minilm_from_scratch_is_the_same_architecture(minilm, no_network):
    torch.manual_seed(0)
    scratch = load_pretrained("minilm", num_classes=3, pretrained=False)
    a, b = minilm.state_dict(), scratch.state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert not torch.equal(a["bert.embeddings.word_embeddings.weight"], b["bert.embeddings.word_embeddings.weight"])
    assert scratch.tokenizer("hello")["input_ids"] == minilm.tokenizer("hello")["input_ids"]


def test_text_model_default_head_has_two_labels(no_network):
    assert load_pretrained("minilm", pretrained=False).config.num_labels == 2


def _hf_cache_with_tiny_bert(cache_dir, repo_id="google-bert/bert-base-uncased"):
    """The Hugging Face hub cache layout (models--org--name/refs/main -> snapshots/<commit>/)."""
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64
    )
    torch.manual_seed(0)
    model = BertForPreTraining(config)  # what bert-base-uncased's checkpoint is: encoder + pre-training heads
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    model.save_pretrained(repo / "snapshots" / commit)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return model


@pytest.mark.parametrize("repo_id", ["google-bert/bert-base-uncased", "bert-base-uncased"])
def test_bert_loads_from_a_hugging_face_cache_dir(tmp_path, no_network, repo_id):
    saved = _hf_cache_with_tiny_bert(tmp_path, repo_id)
    model = load_pretrained("bert-base-uncased", num_classes=4, cache_dir=tmp_path)
    assert isinstance(model, BertForSequenceClassification) and model.config.num_labels == 4
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, saved.bert.embeddings.word_embeddings.weight)
    assert torch.equal(model.bert.pooler.dense.weight, saved.bert.pooler.dense.weight)
    assert model.tokenizer("hello world")["input_ids"] == [101, 7592, 2088, 102]
    assert [g.name for g in layer_groups(model)][-1] == "head"


def test_bert_fails_fast_offline_with_what_to_download(tmp_path, no_network):
    with pytest.raises(FileNotFoundError) as err:
        load_pretrained("bert-base-uncased", cache_dir=tmp_path)
    msg = str(err.value)
    assert "hf download google-bert/bert-base-uncased" in msg and str(tmp_path) in msg
