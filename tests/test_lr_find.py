"""ftlab.lr_find (module ftlab.lr_finder): the learning-rate range test sweeps what it says, suggests a usable rate, and changes nothing."""

import copy
import math
import os
import random

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import ftlab
from ftlab import lr_finder
from ftlab.examples import worked_example_mlp
from ftlab.layers import freeze, unfreeze_top
from ftlab.lr_finder import LRFindResult, suggest_lr
from ftlab.optim import param_groups


def _blobs(n=512, dim=8, classes=3, seed=0, noise=0.5):
    """Well-separated Gaussian blobs: a well-conditioned classification problem."""
    g = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(classes, dim, generator=g)
    y = torch.arange(n) % classes
    x = centres[y] + noise * torch.randn(n, dim, generator=g)
    return TensorDataset(x, y)


def _bn_net(dim=8, classes=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Sequential(nn.Linear(dim, 16), nn.BatchNorm1d(16), nn.ReLU()),
        nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2)),
        nn.Linear(16, classes),
    )


def _record_steps(monkeypatch, cls=torch.optim.AdamW):
    """Patch ``cls.step`` to record every group's lr at every optimizer step (what really trained)."""
    seen = []
    original = cls.step

    def step(self, *args, **kwargs):
        seen.append([g["lr"] for g in self.param_groups])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "step", step)
    return seen


def _same(a, b):
    """Deep, bit-exact equality of optimizer state dicts / nested containers of tensors."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


# --------------------------------------------------------------------------- nothing changes


def test_model_optimizer_and_rngs_are_restored_bit_identically():
    data = _blobs()
    model = _bn_net()
    freeze(model[0])  # frozen group: no grad and BatchNorm kept in eval mode by a hook
    model.train()
    model[1][1].eval()  # an odd mode the test must see come back
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for x, y in DataLoader(data, batch_size=64):  # real optimizer state: moments and step counts
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    grads = {name: p.grad for name, p in model.named_parameters()}
    state = copy.deepcopy(model.state_dict())
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    modes = {name: m.training for name, m in model.named_modules()}
    opt_state = copy.deepcopy(opt.state_dict())
    rngs = (random.getstate(), np.random.get_state(), torch.get_rng_state(), os.environ.get("PYTHONHASHSEED"))

    result = ftlab.lr_find(model, data, optimizer=opt, batch_size=16, end_lr=10, progress=False)

    assert len(result.lrs) >= 10  # it really trained, at rates up to 10
    after = model.state_dict()
    assert after.keys() == state.keys()
    for k in state:  # weights, running means/variances and num_batches_tracked
        assert torch.equal(after[k], state[k]) and after[k].dtype == state[k].dtype, k
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert all(p.grad is grads[n] for n, p in model.named_parameters())
    assert _same(opt.state_dict(), opt_state)
    assert random.getstate() == rngs[0]
    assert all(_same(torch.as_tensor(a), torch.as_tensor(b)) for a, b in zip(np.random.get_state()[1:3], rngs[1][1:3]))
    assert torch.equal(torch.get_rng_state(), rngs[2]) and os.environ.get("PYTHONHASHSEED") == rngs[3]
    # the frozen group's BatchNorm still refuses to update its statistics in train mode
    before = model[0][1].running_mean.clone()
    model(torch.randn(32, 8))
    assert torch.equal(model[0][1].running_mean, before)


def test_model_is_restored_when_the_test_fails_midway():
    data = _blobs()
    model = _bn_net()
    state = copy.deepcopy(model.state_dict())
    calls = []

    def loss_fn(logits, y):  # trains five steps, then fails like a bad batch would
        calls.append(1)
        if len(calls) > 5:
            raise RuntimeError("bad batch")
        return nn.functional.cross_entropy(logits, y)

    with pytest.raises(RuntimeError, match="bad batch"):
        ftlab.lr_find(model, data, loss_fn=loss_fn, start_lr=1e-2, end_lr=10, batch_size=16, progress=False)
    assert len(calls) == 6
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------- the sweep


def test_same_seed_same_curve_and_suggestion_other_seed_other_curve():
    data = _blobs()
    model = _bn_net()  # with dropout: the seed must cover it, not only the data order
    a = ftlab.lr_find(model, data, batch_size=16, seed=3, progress=False)
    torch.manual_seed(123)  # the caller's RNG state must not matter
    b = ftlab.lr_find(model, data, batch_size=16, seed=3, progress=False)
    c = ftlab.lr_find(model, data, batch_size=16, seed=4, progress=False)
    assert a.losses == b.losses and a.raw_losses == b.raw_losses and a.lrs == b.lrs
    assert a.suggestion == b.suggestion and a.minimum == b.minimum
    assert a.raw_losses != c.raw_losses


def test_rates_rise_exponentially_from_start_to_end_and_are_the_ones_trained_with(monkeypatch):
    seen = _record_steps(monkeypatch)
    data = _blobs(n=640)
    r = ftlab.lr_find(_bn_net(), data, start_lr=1e-6, end_lr=1e-2, num_iter=30, batch_size=16, progress=False)
    assert not r.diverged and r.stop_lr is None
    assert len(r.lrs) == len(r.losses) == len(r.raw_losses) == 30  # 40 batches available, 30 asked
    assert r.lrs[0] == 1e-6 and r.lrs[-1] == 1e-2
    ratios = np.array(r.lrs[1:]) / np.array(r.lrs[:-1])
    assert np.allclose(ratios, (1e-2 / 1e-6) ** (1 / 29), rtol=1e-9)
    assert [s[0] for s in seen] == r.lrs  # the optimizer really stepped at these rates
    assert all(math.isfinite(v) for v in r.losses)


def test_at_most_one_pass_the_range_still_covered():
    data = _blobs(n=160)  # 10 batches of 16
    r = ftlab.lr_find(_bn_net(), data, start_lr=1e-5, end_lr=1e-3, num_iter=100, batch_size=16, progress=False)
    assert len(r.lrs) == 10 and r.lrs[0] == 1e-5 and math.isclose(r.lrs[-1], 1e-3)


def test_smoothed_loss_is_the_bias_corrected_moving_average():
    r = ftlab.lr_find(_bn_net(), _blobs(), end_lr=1e-2, batch_size=16, beta=0.8, progress=False)
    avg = 0.0
    for i, (raw, smooth) in enumerate(zip(r.raw_losses, r.losses)):
        avg = 0.8 * avg + 0.2 * raw
        assert math.isclose(smooth, avg / (1 - 0.8 ** (i + 1)), rel_tol=1e-12)
    assert r.losses[0] == r.raw_losses[0]  # bias correction: the first value is not pulled towards 0


def test_stops_early_when_the_loss_diverges():
    data = _blobs(n=1600)  # 100 batches
    r = ftlab.lr_find(_bn_net(), data, start_lr=1e-5, end_lr=1e4, num_iter=100, batch_size=16, progress=False)
    assert r.diverged and r.stop_lr is not None and r.stop_lr > r.minimum
    assert len(r.losses) < 100
    best = min(r.losses)
    # stopped at the first point past 4x the best so far (or at a non-finite loss, not recorded)
    assert all(v <= 4 * min(r.losses[: i + 1]) for i, v in enumerate(r.losses[:-1]))
    assert r.losses[-1] > 4 * best or r.stop_lr > r.lrs[-1]
    assert r.lrs[0] <= r.suggestion < r.minimum < r.stop_lr  # inside the range, below the blow-up
    assert r.lrs[0] <= r.steepest <= r.minimum


def test_suggestion_is_a_rate_that_trains():
    """On a well-conditioned problem, a few AdamW steps at the suggestion lower the loss -- clearly more than at
    the bottom of the range, where nothing moves."""
    data = _blobs(n=1024, noise=0.8)
    model = _bn_net()
    r = ftlab.lr_find(model, data, start_lr=1e-7, end_lr=100, batch_size=16, progress=False)
    assert r.lrs[0] < r.suggestion < r.minimum <= r.lrs[-1]
    assert r.suggestion > 100 * r.lrs[0]  # not the flat start of the curve

    x, y = data.tensors

    def drop(lr, steps=20):
        net = copy.deepcopy(model)
        opt = torch.optim.AdamW(net.parameters(), lr=lr)
        net.eval()
        with torch.no_grad():
            start = nn.functional.cross_entropy(net(x), y).item()
        net.train()
        for i in range(steps):
            idx = torch.arange(i * 32, (i + 1) * 32) % len(y)
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            return start - nn.functional.cross_entropy(net(x), y).item()

    assert drop(r.suggestion) > 0.2
    assert drop(r.suggestion) > 10 * abs(drop(r.lrs[0]))


def test_suggest_lr_reads_the_curve():
    lrs = list(np.logspace(-6, 0, 61))
    # flat, a fall centred on 1e-3, a minimum at 1e-2, then a rise
    losses = [
        2.0 - 1.5 / (1 + math.exp(-4 * (math.log10(lr) + 3))) + 10 * max(0.0, math.log10(lr) + 2) ** 2 for lr in lrs
    ]
    suggestion, minimum, steepest = suggest_lr(lrs, losses)
    assert math.isclose(minimum, 1e-2, rel_tol=0.3)
    assert math.isclose(suggestion, minimum / 10)
    assert 3e-4 < steepest < 3e-3
    flat = suggest_lr(lrs, [1.0 + 0.01 * i for i in range(len(lrs))])  # never falls: the first rate considered
    assert flat[0] >= lrs[0] and flat[0] == flat[1] == flat[2]
    early = suggest_lr([1e-3, 1e-2, 1e-1], [2.0, 1.0, 3.0])  # minimum/10 below the range: clamped to it
    assert early[0] == 1e-3 and early[1] == 1e-2


# --------------------------------------------------------------------------- per-group use


def test_per_group_sweeps_only_the_chosen_group(monkeypatch):
    seen = _record_steps(monkeypatch)
    model = worked_example_mlp(width=8, depth=3, hidden=8, num_classes=3)
    groups = param_groups(model, base_lr=1e-3, gamma=0.5, head_lr=5e-3)
    names = [g["name"] for g in groups]
    given = [g["lr"] for g in groups]
    r = ftlab.lr_find(
        model, _blobs(), param_groups=groups, group="head", start_lr=1e-5, end_lr=1e-1, batch_size=16, progress=False
    )
    assert r.groups == ["head"] and len(seen) == len(r.lrs)
    head = names.index("head")
    for step, lr in zip(seen, r.lrs):
        assert step[head] == lr
        assert [v for i, v in enumerate(step) if i != head] == [v for i, v in enumerate(given) if i != head]
    assert [g["lr"] for g in groups] == given  # the caller's dicts are not touched

    # by index, the same
    seen.clear()
    ftlab.lr_find(model, _blobs(), param_groups=groups, group=0, end_lr=1e-2, batch_size=16, progress=False)
    assert all(step[1:] == given[1:] for step in seen) and len({step[0] for step in seen}) == len(seen)


def test_per_group_backbone_groups_keep_their_ratios_head_fixed(monkeypatch):
    seen = _record_steps(monkeypatch)
    model = worked_example_mlp(width=8, depth=3, hidden=8, num_classes=3)
    groups = param_groups(model, base_lr=1e-3, gamma=0.5, head_lr=2e-2)
    backbone = [g["name"] for g in groups if g["name"] != "head"]
    r = ftlab.lr_find(
        model, _blobs(), param_groups=groups, group=backbone, start_lr=1e-5, end_lr=1e-2, batch_size=16, progress=False
    )
    assert r.groups == ["layer1", "layer2", "layer3"]
    for step, lr in zip(seen, r.lrs):
        assert np.allclose(step[:3], [lr * 0.25, lr * 0.5, lr], rtol=1e-12)  # γ-decay kept, top = the swept rate
        assert step[3] == 2e-2  # the head at its own rate throughout


def test_a_group_name_selects_its_no_decay_part_too(monkeypatch):
    seen = _record_steps(monkeypatch)
    model = worked_example_mlp(width=8, depth=2, hidden=8, num_classes=3)
    groups = param_groups(model, base_lr=1e-3, weight_decay=0.01)
    names = [g["name"] for g in groups]
    assert "head" in names and "head/no_decay" in names
    r = ftlab.lr_find(model, _blobs(), param_groups=groups, group="head", end_lr=1e-2, batch_size=16, progress=False)
    assert r.groups == ["head", "head/no_decay"]
    for step, lr in zip(seen, r.lrs):
        assert [v for v, n in zip(step, names) if n.startswith("head")] == [lr, lr]
        assert all(v == 1e-3 for v, n in zip(step, names) if not n.startswith("head"))


def test_head_only_with_the_backbone_frozen():
    model = worked_example_mlp(width=8, depth=3, hidden=8, num_classes=3)
    unfreeze_top(model, 1)
    backbone = copy.deepcopy([p.detach().clone() for p in model[:-1].parameters()])
    r = ftlab.lr_find(model, _blobs(), batch_size=16, progress=False)
    assert len(r.lrs) > 10 and r.groups == []
    assert all(torch.equal(a, b) for a, b in zip(backbone, model[:-1].parameters()))


def test_dict_inputs_like_text_models():
    class Words(Dataset):
        def __len__(self):
            return 96

        def __getitem__(self, i):
            return (i % 7, i % 2)

    def collate(batch):
        ids = torch.tensor([[t] for t, _ in batch])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, torch.tensor([y for _, y in batch])

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.out = nn.Embedding(7, 4), nn.Linear(4, 2)

        def forward(self, input_ids, attention_mask):
            return self.out(self.emb(input_ids).mean(1) * attention_mask.float())

    r = ftlab.lr_find(Tiny(), Words(), collate_fn=collate, batch_size=8, end_lr=1.0, progress=False)
    assert len(r.lrs) == 12 and all(math.isfinite(v) for v in r.losses)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])  # CUDA where the machine has it, as test_train


@pytest.mark.parametrize("device", DEVICES)
def test_the_sweep_runs_on_a_device_and_the_model_comes_back_to_its_own(device):
    model = _bn_net()
    state = copy.deepcopy(model.state_dict())
    r = ftlab.lr_find(model, _blobs(), device=device, batch_size=16, progress=False)
    assert next(model.parameters()).device.type == "cpu"
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert len(r.lrs) > 10 and all(math.isfinite(v) for v in r.losses)
    again = ftlab.lr_find(model.to(device), _blobs(), batch_size=16, progress=False)  # default: the model's device
    assert next(model.parameters()).device.type == device and again.lrs == r.lrs


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(start_lr=1e-2, end_lr=1e-2), "start_lr must be below end_lr, got start_lr=0.01 >= end_lr=0.01"),
        (dict(start_lr=1.0, end_lr=1e-3), "start_lr=1.0 >= end_lr=0.001"),
        (dict(start_lr=0), "start_lr must be a positive finite number, got 0"),
        (dict(start_lr=-1e-3), "start_lr must be a positive finite number, got -0.001"),
        (dict(end_lr=float("nan")), "end_lr must be a positive finite number, got nan"),
        (dict(end_lr=float("inf")), "end_lr must be a positive finite number, got inf"),
        (dict(num_iter=1), "num_iter must be an int >= 2 .*got 1"),
        (dict(num_iter=2.5), "num_iter must be an int >= 2 .*got 2.5"),
        (dict(diverge=1.0), "diverge must be a number > 1 .*got 1.0"),
        (dict(beta=1.0), r"beta must be in \[0, 1\), got 1.0"),
        (dict(group="head"), "group='head' needs param_groups"),
        (dict(batch_size=0), "batch_size must be >= 1, got 0"),
        (dict(batch_size=512), "only 1 batch of 512"),
        (dict(optimizer="lamb"), "optimizer must be 'adamw' or 'sgd', got 'lamb'"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ftlab.lr_find(_bn_net(), _blobs(n=256), progress=False, **kwargs)


def test_empty_data_and_nothing_to_train():
    with pytest.raises(ValueError, match="train_data is empty: 0 items"):
        ftlab.lr_find(_bn_net(), TensorDataset(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long)), progress=False)
    frozen = _bn_net()
    freeze(frozen)
    with pytest.raises(ValueError, match="no trainable parameters"):
        ftlab.lr_find(frozen, _blobs(), progress=False)


def test_bad_groups_are_named():
    model = worked_example_mlp(width=8, depth=2, hidden=8, num_classes=3)
    groups = param_groups(model, base_lr=1e-3, trainable_only=False)
    data = _blobs()
    with pytest.raises(ValueError, match=r"no param group named 'neck'; the groups are \['layer1', 'layer2', 'head'\]"):
        ftlab.lr_find(model, data, param_groups=groups, group="neck", progress=False)
    with pytest.raises(ValueError, match="group index 7 is out of range: there are 3 param groups"):
        ftlab.lr_find(model, data, param_groups=groups, group=7, progress=False)
    with pytest.raises(ValueError, match="group is empty"):
        ftlab.lr_find(model, data, param_groups=groups, group=[], progress=False)
    freeze(model[0])
    with pytest.raises(ValueError, match=r"param group\(s\) \['layer1'\] have no trainable parameter"):
        ftlab.lr_find(model, data, param_groups=groups, group="layer1", progress=False)
    opt = torch.optim.AdamW(model.parameters())
    with pytest.raises(ValueError, match="param_groups or an optimizer, not both"):
        ftlab.lr_find(model, data, param_groups=groups, optimizer=opt, progress=False)
    with pytest.raises(ValueError, match="weight_decay would be ignored"):
        ftlab.lr_find(model, data, param_groups=groups, weight_decay=0.1, progress=False)


# --------------------------------------------------------------------------- the plot


def test_plot_is_log_x_marks_the_suggestion_and_leaves_pyplot_alone():
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    backend = matplotlib.get_backend()
    open_figures = plt.get_fignums()
    r = ftlab.lr_find(_bn_net(), _blobs(n=1600), start_lr=1e-5, end_lr=1e3, batch_size=16, progress=False)
    fig = r.plot()
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert any(list(line.get_xdata()) == [r.suggestion] for line in ax.lines)  # the suggestion is marked
    assert any(list(line.get_xdata()) == r.lrs and list(line.get_ydata()) == r.losses for line in ax.lines)
    assert matplotlib.get_backend() == backend and plt.get_fignums() == open_figures

    given = Figure().add_subplot()
    assert r.plot(ax=given) is given.figure and given.get_xscale() == "log"
    assert plt.get_fignums() == open_figures
    assert isinstance(r, LRFindResult)


def test_module_function_is_exported():
    assert ftlab.lr_find is lr_finder.lr_find and "lr_find" in ftlab.__all__
