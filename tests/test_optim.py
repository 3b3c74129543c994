"""ftlab.optim: layer-wise learning rates reach the optimizer as real `lr`s."""

import math

import pytest
import timm
import torch
from timm.optim import param_groups_layer_decay

from ftlab.examples import worked_example_mlp
from ftlab.layers import make_groups, unfreeze_top
from ftlab.optim import layerwise_lrs, param_groups, unfreeze_schedule


def test_worked_example_gamma_01():
    # base 1e-3, gamma 0.1, L = 4: top layer 1e-3 ... bottom layer 1e-6
    lrs = layerwise_lrs(1e-3, 0.1, 4)
    assert lrs[::-1] == pytest.approx([1e-3, 1e-4, 1e-5, 1e-6], rel=1e-12)


def test_factor_2_to_3_per_group():
    # ULMFiT's gamma = 1/2.6: each group trains 2.6x slower than the one above
    lrs = layerwise_lrs(1e-3, 1 / 2.6, 4)
    ratios = [hi / lo for lo, hi in zip(lrs, lrs[1:])]
    assert ratios == pytest.approx([2.6] * 3)
    assert lrs[0] == pytest.approx(1e-3 / 2.6**3)
    assert layerwise_lrs(1e-3, 0.5, 3) == [0.00025, 0.0005, 0.001]


def test_gamma_one_is_uniform():
    assert layerwise_lrs(3e-4, 1.0, 5) == [3e-4] * 5


@pytest.mark.parametrize("gamma", [0, -0.1, 1.5, float("nan"), True])
def test_bad_gamma(gamma):
    with pytest.raises(ValueError, match=r"gamma must be in \(0, 1\], got"):
        layerwise_lrs(1e-3, gamma, 4)


@pytest.mark.parametrize("lr", [0, -1e-3, float("inf")])
def test_bad_lr(lr):
    with pytest.raises(ValueError, match="base_lr must be a positive number"):
        layerwise_lrs(lr, 0.5, 4)


def test_bad_num_layers():
    with pytest.raises(ValueError, match="num_layers must be a positive int, got 0"):
        layerwise_lrs(1e-3, 0.5, 0)


def test_param_groups_give_each_group_its_real_lr():
    model = worked_example_mlp()
    groups = param_groups(model, base_lr=1e-3, gamma=0.1, head_lr=1e-2, weight_decay=0.01)
    by_name = {g["name"]: g for g in groups}
    assert by_name["layer4"]["lr"] == pytest.approx(1e-3)
    assert by_name["layer1"]["lr"] == pytest.approx(1e-6)
    assert by_name["head"]["lr"] == pytest.approx(1e-2)
    assert by_name["layer1"]["weight_decay"] == 0.01 and by_name["layer1/no_decay"]["weight_decay"] == 0.0
    assert all(p.ndim == 1 for p in by_name["layer1/no_decay"]["params"])  # biases
    opt = torch.optim.AdamW(groups)
    # the optimizer really uses these rates: a torch scheduler scales them, not a stored lr_scale
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([g["lr"] for g in groups])
    torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["layer2"] == pytest.approx(0.5 * 1e-5)
    n_params = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_params == sum(p.numel() for p in model.parameters())


def test_one_sgd_step_moves_each_group_by_its_own_lr():
    torch.manual_seed(0)
    model = worked_example_mlp(width=8, hidden=4)
    opt = torch.optim.SGD(param_groups(model, base_lr=1.0, gamma=0.1))
    before = {n: p.clone() for n, p in model.named_parameters()}
    model(torch.randn(16, 8)).logsumexp(1).mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt.step()
    for name, p in model.named_parameters():
        group = name.split(".")[0]
        lr = {"layer1": 1e-3, "layer2": 1e-2, "layer3": 1e-1, "layer4": 1.0, "head": 1.0}[group]
        torch.testing.assert_close(p, before[name] - lr * grads[name])


def test_param_groups_skip_frozen_unless_asked():
    model = worked_example_mlp()
    unfreeze_top(model, 2)
    names = {g["name"].split("/")[0] for g in param_groups(model, 1e-3, 0.5)}
    assert names == {"layer4", "head"}
    all_groups = param_groups(model, 1e-3, 0.5, trainable_only=False)
    assert sum(p.numel() for g in all_groups for p in g["params"]) == 1_116_546
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(model, 1e-3, 0.5)


def test_matches_timm_layer_decay_scales_times_base_lr():
    # timm computes the same decay but stores it as lr_scale; ours is the real lr.
    model = timm.create_model("tf_efficientnet_lite0", num_classes=5)
    timm_groups = param_groups_layer_decay(model, weight_decay=0.0, layer_decay=0.5)
    named = {id(p): n for n, p in model.named_parameters()}
    scale_of = {named[id(p)]: g["lr_scale"] for g in timm_groups for p in g["params"]}
    # timm decays per block (stem, blocks.i.j, last block + head conv, classifier) and
    # its classifier is one level above the top block: our head_lr = base_lr / gamma.
    blocks = [f"blocks.{i}.{j}" for i, stage in enumerate(model.blocks) for j in range(len(stage))]
    spec = [["conv_stem", "bn1"], *blocks[:-1], [blocks[-1], "conv_head", "bn2"], "classifier"]
    fine = make_groups(model, spec)
    got = param_groups(model, base_lr=1e-3 * 0.5, gamma=0.5, head_lr=1e-3, groups=fine)
    assert len({g["lr"] for g in got}) == len(set(scale_of.values())) == 18
    for g in got:
        for p in g["params"]:
            assert g["lr"] == pytest.approx(1e-3 * scale_of[named[id(p)]]), named[id(p)]


def test_unfreeze_schedule():
    assert unfreeze_schedule(4, 6) == [1, 2, 3, 4, 4, 4]
    assert unfreeze_schedule(10, 5, every=2) == [1, 1, 2, 2, 3]
    assert unfreeze_schedule(3, 3, start=2) == [2, 3, 3]
    assert unfreeze_schedule(10, 3, step=5) == [1, 6, 10]
    with pytest.raises(ValueError, match="every must be a positive int, got 0"):
        unfreeze_schedule(4, 6, every=0)
    with pytest.raises(ValueError, match=r"start \(5\) is larger than the number of groups \(4\)"):
        unfreeze_schedule(4, 6, start=5)


def test_layerwise_formula_exact():
    for L in range(1, 8):
        lrs = layerwise_lrs(2e-5, 0.7, L)
        for l, lr in enumerate(lrs, start=1):
            assert math.isclose(lr, 2e-5 * 0.7 ** (L - l))
