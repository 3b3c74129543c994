"""ftlab.plots and ftlab.widgets: the charts draw the numbers they are given, the controls recompute them."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from ftlab.examples import worked_example_mlp  # noqa: E402
from ftlab.features import group_features, group_outputs  # noqa: E402
from ftlab.layers import GroupRow, make_groups, parameter_table, unfreeze_top  # noqa: E402
from ftlab.optim import layerwise_lrs  # noqa: E402
from ftlab.plots import (  # noqa: E402
    depth_plot,
    feature_map_grid,
    filter_grid,
    image_grid,
    lr_plot,
    trainable_bars,
)
from ftlab.widgets import LayerwiseLRExplorer, SoftmaxExplorer, StrategyExplorer, UnfreezeExplorer  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def tiny_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, padding=1),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 3),
    )


# --------------------------------------------------------------------------- plots


def test_lr_plot_draws_each_rate_on_a_log_axis():
    lrs = layerwise_lrs(1e-3, 0.1, 4)
    ax = lr_plot(lrs)
    assert ax.get_yscale() == "log"
    (line,) = ax.lines
    assert np.allclose(line.get_ydata(), [1e-6, 1e-5, 1e-4, 1e-3])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["layer 1", "layer 2", "layer 3", "layer 4"]
    assert [t.get_text() for t in ax.texts] == ["1e-06", "1e-05", "1e-04", "1e-03"]

    series = {f"g={g}": layerwise_lrs(1e-3, g, 9) for g in (0.1, 0.5, 0.7)}
    ax = lr_plot(series, names=[f"g{i}" for i in range(9)])
    assert len(ax.lines) == 3 and not ax.texts
    assert np.allclose(ax.lines[1].get_ydata(), series["g=0.5"])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(series)
    with pytest.raises(ValueError, match="positive"):
        lr_plot([1e-3, 0.0])
    with pytest.raises(ValueError, match="2 names for 4 layers"):
        lr_plot(lrs, names=["a", "b"])
    assert lr_plot(lrs, ylim=(1e-10, 1.0)).get_ylim() == pytest.approx((1e-10, 1.0))
    with pytest.raises(ValueError, match="ylim must be"):
        lr_plot(lrs, ylim=(1.0, 1e-3))


def test_trainable_bars_stack_trainable_under_frozen():
    mlp = worked_example_mlp()
    unfreeze_top(mlp, 3)
    rows = parameter_table(mlp)
    ax = trainable_bars(rows)
    trainable, frozen = ax.containers
    assert len(trainable) == len(frozen) == 5
    assert [b.get_height() for b in trainable] == [0, 0, 262_656, 262_656, 65_922]
    assert [b.get_height() for b in frozen] == [262_656, 262_656, 0, 0, 0]
    assert [b.get_y() for b in frozen] == [0, 0, 262_656, 262_656, 65_922]
    assert ax.get_title() == "trainable: 591,234 of 1,116,546 (53.0%)"
    assert trainable_bars([GroupRow("a", 10, 10)], log=True).get_yscale() == "log"

    # The legend covers no bar (inside the axes it hid the tall frozen bar of layer1)
    ax.figure.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert not any(legend.overlaps(b.get_window_extent()) for b in [*trainable, *frozen] if b.get_height() > 0)


def test_depth_plot_one_line_per_series():
    ax = depth_plot(["stem", "b0", "head"], {"lr=1e-3": [0.1, 0.2, 0.3], "lr=1e-1": [1, 2, 3]}, "change", logy=True)
    assert len(ax.lines) == 2 and ax.get_yscale() == "log"
    assert list(ax.lines[1].get_ydata()) == [1, 2, 3]
    with pytest.raises(ValueError, match="2 values for 3 groups"):
        depth_plot(["a", "b", "c"], {"x": [1, 2]}, "y")


def test_filter_grid_shows_every_filter_scaled_to_unit_range():
    w = torch.randn(10, 3, 3, 3) * 5
    fig = filter_grid(w, ncols=4)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 10 and len(fig.axes) == 12  # 3 rows of 4, two left blank
    first = images[0].get_array()
    assert first.shape == (3, 3, 3) and first.min() == pytest.approx(0) and first.max() == pytest.approx(1)
    expected = w[0].permute(1, 2, 0).numpy()
    assert np.allclose(first, (expected - expected.min()) / (expected.max() - expected.min()), atol=1e-6)
    gray = filter_grid(torch.randn(4, 8, 5, 5))
    assert gray.axes[0].images[0].get_array().shape == (5, 5)
    with pytest.raises(ValueError, match="conv weight"):
        filter_grid(torch.randn(4, 3))


def test_feature_map_grid_rows_are_groups_and_picks_the_most_active_channels():
    a = torch.zeros(5, 4, 4)
    a[3] += 2.0
    a[1] += 1.0
    fig = feature_map_grid({"early": a, "late": torch.rand(1, 7, 2, 2)}, n=2)
    assert len(fig.axes) == 4
    assert fig.channels["early"] == [3, 1]
    assert fig.axes[0].get_ylabel().startswith("early\n5x4x4")


def test_image_grid_denormalizes_and_labels():
    imgs = torch.rand(3, 3, 8, 8)
    fig = image_grid(imgs * 2 - 1, titles=["a", "b", "c"], denormalize=lambda x: (x + 1) / 2)
    shown = fig.axes[0].images[0].get_array()
    assert np.allclose(shown, imgs[0].permute(1, 2, 0).numpy(), atol=1e-6)
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c"]
    assert fig.axes[0].images[0].get_array().shape == (8, 8, 3)
    assert image_grid(torch.rand(2, 8, 8)).axes[0].images[0].get_array().shape == (8, 8)


def test_group_outputs_and_features_capture_every_group():
    net = tiny_cnn()
    groups = make_groups(net, ["0", "2", "4"], names=["conv1", "conv2", "fc"])
    x = torch.rand(5, 3, 8, 8)
    out = group_outputs(net, x, groups)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"conv1": (5, 4, 8, 8), "conv2": (5, 6, 4, 4), "fc": (5, 3)}
    assert torch.allclose(out["fc"], net(x))
    pooled = group_outputs(net, x, groups, pool=True)
    assert torch.allclose(pooled["conv2"], out["conv2"].mean(dim=(2, 3)))
    assert not any(m._forward_hooks for m in net.modules())  # hooks are removed

    data = TensorDataset(x, torch.tensor([0, 1, 2, 0, 1]))
    feats, labels = group_features(net, data, groups, batch_size=2)
    assert labels.tolist() == [0, 1, 2, 0, 1]
    assert all(torch.allclose(feats[k], pooled[k], atol=1e-6) for k in pooled)
    assert not any(m._forward_hooks for m in net.modules())


# --------------------------------------------------------------------------- widgets


def test_unfreeze_explorer_slider_freezes_the_model_and_counts():
    mlp = worked_example_mlp()
    ex = UnfreezeExplorer(mlp, k=1)
    assert ex.controls["k"].description == "groups unfrozen" and ex.controls["k"].max == 5
    assert (ex.count.trainable, ex.count.total, ex.backbone) == (65_922, 1_116_546, 1_050_624)
    assert f"{ex.share_of_backbone:.1%} {ex.share_of_all:.1%}" == "6.3% 5.9%"
    assert [b.get_height() for b in ex.fig.axes[0].containers[0]] == [0, 0, 0, 0, 65_922]

    ex.controls["k"].value = 3  # what a user moving the slider does
    assert ex.count.trainable == 591_234 and ex.trainable_groups == ["layer3", "layer4", "head"]
    assert f"{ex.share_of_backbone:.1%} {ex.share_of_all:.1%}" == "56.3% 53.0%"
    assert not mlp.layer2[0].weight.requires_grad and mlp.layer3[0].weight.requires_grad
    assert [b.get_height() for b in ex.fig.axes[0].containers[0]] == [0, 0, 262_656, 262_656, 65_922]
    assert "591,234 of 1,116,546" in ex.text

    ex.update(k=5)
    assert ex.controls["k"].value == 5 and ex.count.trainable == ex.count.total
    with pytest.raises(ValueError, match="outside the control's range"):
        ex.update(k=6)
    with pytest.raises(ValueError, match="unknown control"):
        ex.update(gamma=0.5)
    with pytest.raises(ValueError, match="between 1 and"):
        UnfreezeExplorer(mlp, k=0)


def test_layerwise_lr_explorer_recomputes_on_every_slider():
    ex = LayerwiseLRExplorer()
    assert ex.values == {"base_lr": pytest.approx(1e-3), "gamma": pytest.approx(0.1), "depth": 4}
    assert ex.lrs == pytest.approx([1e-6, 1e-5, 1e-4, 1e-3])
    assert "layer 4 (top): lr = 1.0e-03" in ex.text and "layer 1 (bottom)" in ex.text
    assert np.allclose(ex.fig.axes[0].lines[0].get_ydata(), ex.lrs) and ex.fig.axes[0].get_yscale() == "log"

    ax = ex.fig.axes[0]
    steep = np.ptp(
        (ax.transData + ax.transAxes.inverted()).transform(np.c_[[1, 4], ax.lines[0].get_ydata()[[0, -1]]])[:, 1]
    )
    ex.controls["gamma"].value = 0.5
    assert ex.lrs == pytest.approx([1.25e-4, 2.5e-4, 5e-4, 1e-3])
    # A fixed y range: the slope shows (fitted to the data, γ = 0.1 and 0.5 filled the same height)
    ax = ex.fig.axes[0]
    assert ax.get_ylim() == pytest.approx(LayerwiseLRExplorer.YLIM)
    shallow = np.ptp(
        (ax.transData + ax.transAxes.inverted()).transform(np.c_[[1, 4], ax.lines[0].get_ydata()[[0, -1]]])[:, 1]
    )
    assert steep > 2.5 * shallow
    ex.controls["depth"].value = 6
    assert len(ex.lrs) == 6 and ex.lrs[0] == pytest.approx(1e-3 * 0.5**5)
    ex.update(base_lr=1e-2, gamma=0.7, depth=3)
    assert ex.lrs == pytest.approx([1e-2 * 0.49, 1e-2 * 0.7, 1e-2])
    assert len(ex.fig.axes[0].lines[0].get_ydata()) == 3


def test_softmax_explorer_reproduces_the_cls_head_example():
    ex = SoftmaxExplorer(logits=(0.10, 0.04), label=0, classes=["positive", "negative"])
    assert [round(p, 4) for p in ex.probs.tolist()] == [0.5150, 0.4850]
    assert ex.loss == pytest.approx(-math.log(ex.probs[0].item())) and round(ex.loss, 3) == 0.664
    assert ex.grad.tolist() == pytest.approx([ex.probs[0].item() - 1, ex.probs[1].item()])
    assert [b.get_height() for b in ex.fig.axes[0].patches] == pytest.approx(ex.probs.tolist())
    assert "p = softmax(z) = [0.5150, 0.4850]" in ex.text

    ex.controls["label"].value = 1
    assert ex.loss == pytest.approx(-math.log(0.4850), abs=1e-4)
    ex.update(z0=2.0, z1=2.0)
    assert ex.probs.tolist() == pytest.approx([0.5, 0.5]) and ex.loss == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="class names"):
        SoftmaxExplorer(logits=(1.0, 2.0), classes=["a"])


def test_strategy_explorer_follows_the_decision_tree():
    ex = StrategyExplorer(n_samples=500, domain_similarity="similar")
    assert ex.strategy == "feature_extraction"
    ex.controls["n_samples"].value = 50_000
    assert ex.strategy == "fine_tune_all"
    ex.controls["domain_similarity"].value = "different"
    assert ex.strategy == "fine_tune_all"
    ex.update(n_samples=200)
    assert ex.strategy == "fine_tune_top" and "200 examples (small), different domain -> fine_tune_top" in ex.text
    ex.update(n_samples=2_000_000)
    assert ex.strategy == "scratch"
    ex.controls["n_samples"].value = 0  # typed into the box: reported, not raised into the widget machinery
    assert ex.strategy == "scratch"
