"""ftlab.layers: groups of real architectures, freezing (BatchNorm included), counting."""

import pytest
import timm
import torch
import torchvision
from timm.models._manipulate import group_parameters
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, BertModel

from ftlab.examples import worked_example_mlp
from ftlab.layers import (
    count_parameters,
    format_parameter_table,
    freeze,
    layer_groups,
    make_groups,
    parameter_table,
    trainable_group_names,
    unfreeze,
    unfreeze_top,
)


def tiny_bert_config(**kw):
    return BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        **kw,
    )


def assert_partition(model, groups):
    """Every parameter belongs to exactly one group."""
    ids = [id(p) for g in groups for p in g.parameters()]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}


# ------------------------------------------------------------------ the worked example


def test_worked_example_parameter_counts():
    model = worked_example_mlp()
    rows = {r.name: r.params for r in parameter_table(model)}
    backbone = sum(rows[f"layer{i}"] for i in range(1, 5))
    assert backbone == 4 * (512 * 512 + 512) == 1_050_624
    assert rows["head"] == (512 * 128 + 128) + (128 * 2 + 2) == 65_922
    assert count_parameters(model).total == 1_116_546

    unfreeze_top(model, 1)  # feature extraction: only the head
    fe = count_parameters(model)
    assert fe.trainable == 65_922
    assert round(fe.trainable / backbone, 3) == 0.063  # the "~6%" relative to the backbone
    assert round(fe.trainable_fraction, 3) == 0.059  # ... and of all parameters

    unfreeze_top(model, 3)  # layers 3-4 + head
    ft = count_parameters(model)
    assert ft.trainable == 591_234
    assert ft.frozen == 2 * 262_656
    assert round(ft.trainable / backbone, 3) == 0.563  # the "~56%" is relative to the backbone
    assert round(ft.trainable_fraction, 3) == 0.530  # of all 1,116,546 parameters it is 53%
    assert trainable_group_names(model) == ["layer3", "layer4", "head"]


def test_count_parameters_matches_torch_and_dedups_tied_weights():
    model = torchvision.models.resnet18(weights=None)
    c = count_parameters(model)
    assert c.total == sum(p.numel() for p in model.parameters()) == 11_689_512
    assert (c.trainable, c.frozen) == (c.total, 0)
    tied = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    tied[1].weight = tied[0].weight
    assert count_parameters(tied).total == 40


def test_parameter_table_rows_sum_to_total_and_format():
    model = worked_example_mlp()
    unfreeze_top(model, 2)
    rows = parameter_table(model)
    assert [r.name for r in rows] == ["layer1", "layer2", "layer3", "layer4", "head"]
    assert sum(r.params for r in rows) == count_parameters(model).total
    assert sum(r.trainable for r in rows) == count_parameters(model).trainable
    text = format_parameter_table(rows)
    assert "1,116,546" in text and "328,578" in text  # total, trainable (layer4 + head)


# ------------------------------------------------------------------ real architectures


def test_timm_efficientnet_groups_agree_with_timm_group_matcher():
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=10)
    groups = layer_groups(model)
    assert [g.name for g in groups] == ["stem"] + [f"blocks.{i}" for i in range(7)] + ["conv_head", "classifier"]
    assert_partition(model, groups)
    # timm's own coarse grouping (stem, one group per stage, head, classifier) must
    # agree: each of our groups lies inside exactly one of timm's, in the same order.
    # (timm merges conv_head into the last stage; we keep it separate.)
    timm_groups = group_parameters(model, model.group_matcher(coarse=True))
    named = dict(model.named_parameters())
    timm_sets = [{id(named[n]) for n in names} for names in timm_groups.values()]
    owner = []
    for g in groups:
        ids = {id(p) for p in g.parameters()}
        matches = [i for i, s in enumerate(timm_sets) if ids <= s]
        assert len(matches) == 1, g.name
        owner.append(matches[0])
    assert owner == sorted(owner) and set(owner) == set(range(len(timm_sets)))
    assert owner[-3:] == [len(timm_sets) - 2, len(timm_sets) - 2, len(timm_sets) - 1]


def test_torchvision_resnet_and_features_models():
    resnet = torchvision.models.resnet18(weights=None)
    groups = layer_groups(resnet)
    assert [g.name for g in groups] == ["stem", "layer1", "layer2", "layer3", "layer4", "fc"]
    assert_partition(resnet, groups)
    for ctor in (
        torchvision.models.efficientnet_b0,
        torchvision.models.mobilenet_v3_small,
        torchvision.models.mobilenet_v2,
    ):
        m = ctor(weights=None)
        groups = layer_groups(m)
        assert groups[-1].name == "classifier" and groups[0].name == "features.0"
        assert len(groups) == len(m.features) + 1
        assert_partition(m, groups)


def test_hf_bert_groups():
    clf = BertForSequenceClassification(tiny_bert_config(num_labels=2))
    groups = layer_groups(clf)
    assert [g.name for g in groups] == ["embeddings", "encoder.layer.0", "encoder.layer.1", "encoder.layer.2", "head"]
    assert_partition(clf, groups)
    assert clf.classifier in groups[-1].modules and clf.bert.pooler in groups[-1].modules
    bare = BertModel(tiny_bert_config())
    assert [g.name for g in layer_groups(bare)][-1] == "head"  # the pooler
    assert_partition(bare, layer_groups(bare))


def test_unknown_architecture_error_says_how_to_pass_groups():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

    with pytest.raises(ValueError, match=r"don't know the layer hierarchy of Net.*make_groups"):
        layer_groups(Net())
    net = Net()
    groups = make_groups(net, ["conv1", "fc"])
    assert unfreeze_top(net, 1, groups=groups) == ["fc"]
    assert not net.conv1.weight.requires_grad and net.fc.weight.requires_grad
    with pytest.raises(ValueError, match="no submodule named \\['conv9'\\]"):
        make_groups(net, ["conv9"])
    with pytest.raises(ValueError, match="2 names for 1 groups"):
        make_groups(net, ["fc"], names=["a", "b"])


# ------------------------------------------------------------------ freezing


@pytest.mark.parametrize("k", [0, 6, -1])
def test_unfreeze_top_rejects_bad_k(k):
    with pytest.raises(ValueError, match=r"k must be between 1 and the number of groups \(5\), got"):
        unfreeze_top(worked_example_mlp(), k)


def test_unfreeze_top_rejects_non_int_k():
    with pytest.raises(TypeError, match="k must be an int"):
        unfreeze_top(worked_example_mlp(), 2.0)


def test_frozen_batchnorm_keeps_running_stats_in_train_mode():
    model = torchvision.models.resnet18(weights=None, num_classes=3)
    unfreeze_top(model, 2)  # layer4 + fc trainable; stem..layer3 frozen
    stem_bn, top_bn = model.bn1, model.layer4[0].bn1
    before_stem = stem_bn.running_mean.clone()
    before_top = top_bn.running_mean.clone()
    model.train()  # a plain train() must not wake the frozen statistics
    model(torch.randn(4, 3, 64, 64))
    assert torch.equal(stem_bn.running_mean, before_stem)
    assert not stem_bn.weight.requires_grad
    assert not torch.equal(top_bn.running_mean, before_top)
    assert top_bn.weight.requires_grad and top_bn.training

    unfreeze(model)
    model.train()
    model(torch.randn(4, 3, 64, 64))
    assert not torch.equal(stem_bn.running_mean, before_stem)
    assert count_parameters(model).frozen == 0


def test_freeze_train_bn_option_is_fastai_style():
    model = torchvision.models.resnet18(weights=None)
    freeze(model, train_bn=True)
    c = count_parameters(model)
    bn_params = sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    assert c.trainable == bn_params > 0
    before = model.bn1.running_mean.clone()
    model.train()
    model(torch.randn(2, 3, 32, 32))
    assert not torch.equal(model.bn1.running_mean, before)


def test_frozen_backbone_gets_no_gradient_and_does_not_change():
    torch.manual_seed(0)
    model = worked_example_mlp()
    unfreeze_top(model, 1)
    before = model.layer1[0].weight.clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = nn.functional.cross_entropy(model(torch.randn(8, 512)), torch.randint(0, 2, (8,)))
    loss.backward()
    opt.step()
    assert model.layer1[0].weight.grad is None
    assert torch.equal(model.layer1[0].weight, before)
