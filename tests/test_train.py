"""ftlab.train: schedules agree with torch's, fit is reproducible, stops early, keeps the best model."""

import contextlib
import dataclasses
import re

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import Dataset, TensorDataset
from transformers import BertConfig, BertForSequenceClassification

from ftlab.features import cached_features, head_module
from ftlab.layers import count_parameters, layer_groups, unfreeze_top
from ftlab.optim import param_groups, unfreeze_schedule
from ftlab.train import (
    EarlyStopping,
    FitConfig,
    amp_dtype,
    build_optimizer,
    build_schedule,
    evaluate,
    fit,
    make_loader,
    predict,
    schedule_factor,
    train_epoch,
)
from ftlab.utils import seed_everything

# Every device this machine has: the CPU variants always run, the CUDA ones where a GPU is present.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def digits_tensors():
    x, y = load_digits(return_X_y=True)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x = torch.tensor(x / 16.0, dtype=torch.float32)[perm]
    y = torch.tensor(y)[perm]
    return (
        TensorDataset(x[:1200], y[:1200]),
        TensorDataset(x[1200:1500], y[1200:1500]),
        TensorDataset(x[1500:], y[1500:]),
    )


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def _torch_lrs(make_sched, total, base=1.0):
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    sched = make_sched(opt)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_schedules_match_torch():
    total = 50
    ours = [schedule_factor("cosine", s, total) for s in range(total)]
    ref = _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total), total)
    assert ours == pytest.approx(ref, abs=1e-12)
    ours = [schedule_factor("onecycle", s, total) for s in range(total)]
    ref = _torch_lrs(lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1.0, total_steps=total), total)
    assert ours == pytest.approx(ref, abs=1e-9)
    ours = [schedule_factor("step", s, total, step_every=10, step_gamma=0.5) for s in range(total)]
    ref = _torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=10, gamma=0.5), total)
    assert ours == pytest.approx(ref)
    warm = [schedule_factor("cosine", s, total, warmup_steps=5) for s in range(total)]
    assert warm[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0]) and warm[5] == 1.0 and warm[-1] < 0.01
    with pytest.raises(ValueError, match="unknown schedule 'cosin'"):
        schedule_factor("cosin", 0, 10)


def test_fit_learns_and_is_reproducible_on_cpu():
    train, val, test = digits_tensors()
    m1 = mlp()
    h1 = fit(m1, train, val, epochs=8, lr=3e-3, batch_size=32, progress=False, seed=0)
    assert evaluate(m1, test)["accuracy"] > 0.9
    assert [e["epoch"] for e in h1.epochs] == list(range(1, 9))
    assert h1.column("train_loss")[-1] < h1.column("train_loss")[0]
    m3 = mlp()
    h3 = fit(m3, train, val, epochs=8, lr=3e-3, batch_size=32, progress=False, seed=0)
    for a, b in zip(m1.state_dict().values(), m3.state_dict().values()):
        assert torch.equal(a, b)
    assert h1.column("val_accuracy") == h3.column("val_accuracy")
    m4 = mlp()
    fit(m4, train, epochs=1, lr=3e-3, batch_size=32, progress=False, seed=1)  # another shuffling order
    m5 = mlp()
    fit(m5, train, epochs=1, lr=3e-3, batch_size=32, progress=False, seed=0)
    assert not torch.equal(m4[0].weight, m5[0].weight)
    probs = predict(m1, test)
    assert probs.shape == (len(test), 10) and torch.allclose(probs.sum(1), torch.ones(len(test)))


def test_early_stopping_restores_best_weights():
    train, val, _ = digits_tensors()
    # a validation set with shuffled labels: accuracy peaks by chance, then stalls
    g = torch.Generator().manual_seed(0)
    noisy_val = TensorDataset(val.tensors[0], val.tensors[1][torch.randperm(len(val), generator=g)])
    model = mlp()
    h = fit(model, train, noisy_val, epochs=30, lr=3e-3, patience=2, progress=False)
    assert h.stopped_early and len(h.epochs) < 30
    assert len(h.epochs) - h.best_epoch == 2
    assert evaluate(model, noisy_val)["accuracy"] == pytest.approx(h.best_val_accuracy)


def test_restore_best_false_keeps_the_last_epochs_weights():
    """restore_best decides which weights fit leaves in the model: the best epoch's, or the last one's."""
    train, val, _ = digits_tensors()
    g = torch.Generator().manual_seed(0)
    noisy_val = TensorDataset(val.tensors[0], val.tensors[1][torch.randperm(len(val), generator=g)])
    runs = {}
    for restore in (True, False):
        model = mlp()
        runs[restore] = model, fit(model, train, noisy_val, epochs=6, lr=3e-3, restore_best=restore, progress=False)
    (best, h), (last, h_last) = runs[True], runs[False]
    assert h.column("val_accuracy") == h_last.column("val_accuracy")  # the same training either way
    assert h.best_epoch < len(h.epochs)  # the best epoch is not the last, so the two must differ
    assert evaluate(best, noisy_val)["accuracy"] == pytest.approx(h.best_val_accuracy)
    assert evaluate(last, noisy_val)["accuracy"] == pytest.approx(h_last.column("val_accuracy")[-1])
    assert not torch.equal(best[0].weight, last[0].weight)


class InterruptAt(Dataset):
    """Raises KeyboardInterrupt (as Ctrl-C would) on the n-th item fetched."""

    def __init__(self, base, n):
        self.base, self.n, self.calls = base, n, 0

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.base[i]


def test_ctrl_c_keeps_best_model():
    train, val, _ = digits_tensors()
    model = mlp()
    h = fit(model, InterruptAt(train, 3 * len(train) + 10), val, epochs=10, lr=3e-3, progress=False)
    assert h.interrupted and len(h.epochs) == 3
    assert evaluate(model, val)["accuracy"] == pytest.approx(h.best_val_accuracy)


def test_layerwise_rates_survive_the_schedule():
    train, _, _ = digits_tensors()
    model = mlp()
    groups = param_groups(model, base_lr=1e-2, gamma=0.1)
    ratios0 = [g["lr"] / groups[-1]["lr"] for g in groups]
    assert ratios0 == pytest.approx([0.1, 1.0, 1.0])  # layer1, layer2 (top body group), head
    snapshot = [{k: v for k, v in g.items() if k != "params"} for g in groups]
    h = fit(model, train, epochs=1, param_groups=groups, schedule="onecycle", progress=False)
    # fit trains on copies: the caller's dicts keep the rates they asked for
    assert [{k: v for k, v in g.items() if k != "params"} for g in groups] == snapshot
    assert h.column("lr")[-1] == pytest.approx(1e-2 / 25e4, rel=1e-3)
    # the schedule scales every group alike: the real rates stay gamma-decayed relative to the head
    opt = build_optimizer(model, param_groups=groups)
    sched = build_schedule(opt, "onecycle", total_steps=20)
    for _ in range(7):
        opt.step()
        sched.step()
    assert [g["lr"] / opt.param_groups[-1]["lr"] for g in opt.param_groups] == pytest.approx(ratios0)
    assert opt.param_groups[-1]["lr"] == pytest.approx(1e-2 * schedule_factor("onecycle", 7, 20))


def test_frozen_groups_unchanged_and_gradual_unfreezing():
    train, val, _ = digits_tensors()
    model = mlp()
    before = {n: p.clone() for n, p in model.named_parameters()}
    unfreeze_top(model, 1)
    fit(model, train, val, epochs=2, lr=3e-3, progress=False)
    assert torch.equal(model[0].weight, before["0.weight"]) and torch.equal(model[2].weight, before["2.weight"])
    assert not torch.equal(model[4].weight, before["4.weight"])

    model = mlp()
    plan = unfreeze_schedule(len(layer_groups(model)), 3)
    h = fit(model, train, val, epochs=3, lr=3e-3, unfreeze=plan, progress=False, restore_best=False)
    assert plan == [1, 2, 3]
    assert h.column("trainable") == [32 * 10 + 10, 32 * 10 + 10 + 64 * 32 + 32, count_parameters(model).total]
    with pytest.raises(ValueError, match="unfreeze plan has 2 entries for 3 epochs"):
        fit(model, train, epochs=3, unfreeze=[1, 2], progress=False)


def test_cached_features_feed_the_head_exactly():
    _, val, _ = digits_tensors()
    model = mlp()
    feats = cached_features(model, val)
    assert feats.tensors[0].shape == (len(val), 32)
    head = head_module(model)
    with torch.no_grad():
        torch.testing.assert_close(head(feats.tensors[0]), model(val.tensors[0]))
    assert torch.equal(feats.tensors[1], val.tensors[1])


def test_fit_trains_a_hugging_face_model_on_token_batches():
    cfg = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, num_labels=2
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg)
    ids = torch.randint(5, 50, (64, 6))
    labels = (ids[:, 0] > 27).long()  # label readable from the first token

    class Tok(Dataset):
        def __len__(self):
            return len(ids)

        def __getitem__(self, i):
            return ids[i], labels[i]

    def collate(batch):
        x = torch.stack([b[0] for b in batch])
        return {"input_ids": x, "attention_mask": torch.ones_like(x)}, torch.stack([b[1] for b in batch])

    h = fit(model, Tok(), Tok(), epochs=15, lr=3e-3, batch_size=16, collate_fn=collate, progress=False)
    assert h.best_val_accuracy > 0.8
    feats = cached_features(model, Tok(), collate_fn=collate)
    assert feats.tensors[0].shape == (64, 16)


def test_bad_arguments():
    train, _, _ = digits_tensors()
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        fit(mlp(), train, epochs=0)
    with pytest.raises(ValueError, match="unknown schedule 'warp'"):
        fit(mlp(), train, schedule="warp")
    frozen = mlp().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(frozen, train)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            fit(mlp(), train, device="cuda")


def test_the_loop_pieces_are_fit():
    """build_optimizer + build_schedule + train_epoch + EarlyStopping, written out, give fit's exact weights."""
    train, val, _ = digits_tensors()
    by_fit = mlp()
    h = fit(by_fit, train, val, epochs=3, lr=3e-3, batch_size=32, schedule="cosine", patience=5, progress=False)

    model = mlp()
    seed_everything(0)
    loader = make_loader(train, batch_size=32, shuffle=True, seed=0)
    opt = build_optimizer(model, lr=3e-3)
    sched = build_schedule(opt, "cosine", total_steps=3 * len(loader))
    stopper = EarlyStopping(patience=5)
    for epoch in range(1, 4):
        stats = train_epoch(model, loader, opt, sched)
        if stopper.update(model, evaluate(model, val)["accuracy"], epoch):
            break
    stopper.restore(model)
    assert stats["train_loss"] == pytest.approx(h.column("train_loss")[-1])
    assert stopper.best_epoch == h.best_epoch
    for a, b in zip(model.state_dict().values(), by_fit.state_dict().values()):
        assert torch.equal(a, b)


def conv_net(seed=0, classes=10):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, classes),
    )


def digit_images(n=256):
    train, _, _ = digits_tensors()
    x, y = train.tensors
    return TensorDataset(x[:n].reshape(-1, 1, 8, 8), y[:n])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("amp", ["bf16", "fp16", True])
def test_mixed_precision_gradscaler_channels_last_and_clipping(device, amp):
    """The GPU extras run (and learn) on every device: autocast, a GradScaler for fp16, channels-last, clipping."""
    data = digit_images()
    model = conv_net()
    h = fit(
        model,
        data,
        data,
        epochs=6,
        lr=1e-2,
        batch_size=32,
        amp=amp,
        channels_last=True,
        grad_clip=1.0,
        device=device,
        progress=False,
    )
    assert h.column("train_loss")[-1] < h.column("train_loss")[0]
    assert h.best_val_accuracy > 0.3  # chance: 0.1
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)

    # one epoch by hand: the scaler really scales (fp16), clipping caps the unscaled gradient norm
    dtype = amp_dtype(device, amp)
    scaler = torch.amp.GradScaler(device, init_scale=2.0**10, enabled=dtype is torch.float16)
    opt = build_optimizer(model, lr=1e-3)
    train_epoch(model, make_loader(data, 64), opt, device=device, dtype=dtype, scaler=scaler, grad_clip=1e-3)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.float().norm() for p in model.parameters()]))
    assert norm <= 1e-3 * 1.01
    assert scaler.is_enabled() == (dtype is torch.float16)
    if scaler.is_enabled():
        assert scaler.get_scale() > 0


def test_amp_dtype_decides_from_the_real_device(monkeypatch):
    """bf16 only where the GPU computes it natively (capability >= 8.0); emulated bf16 (T4, V100) gets fp16."""
    assert amp_dtype("cpu") is None and amp_dtype("cpu", False) is None
    assert amp_dtype("cpu", "bf16") is torch.bfloat16 and amp_dtype("cpu", "fp16") is torch.float16
    with pytest.raises(ValueError, match="amp must be True, False, 'bf16' or 'fp16', got 'fp8'"):
        amp_dtype("cpu", "fp8")
    if torch.cuda.is_available():
        native = torch.cuda.get_device_capability() >= (8, 0)
        assert amp_dtype("cuda") is (torch.bfloat16 if native else torch.float16)
    # a simulated T4 (7.5) whose bf16 torch counts as supported through emulation, and an A100 (8.0)
    emulating = lambda including_emulation=True: including_emulation  # noqa: E731
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", emulating)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device", lambda i: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=None: (7, 5))
    assert torch.cuda.is_bf16_supported() and amp_dtype("cuda") is torch.float16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert amp_dtype("cuda:0") is torch.bfloat16


@pytest.mark.parametrize("device", DEVICES)
def test_head_narrower_than_the_labels_fails_before_training(device):
    train, val, _ = digits_tensors()
    for width, match in ((1, "at least 2"), (5, "head has 5 outputs but the labels go up to 9")):
        model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, width))
        before = [p.clone() for p in model.parameters()]
        with pytest.raises(ValueError, match=match):
            fit(model, train, val, epochs=1, device=device, progress=False)
        assert all(torch.equal(a, b.cpu()) for a, b in zip(before, model.parameters()))
        with pytest.raises(ValueError, match=match):
            evaluate(model, val, device=device)


def test_fit_does_not_ignore_what_it_is_given():
    train, val, _ = digits_tensors()
    model = mlp()
    groups = param_groups(model, base_lr=1e-2)
    with pytest.raises(ValueError, match="lr would be ignored: with param_groups, each group sets its own 'lr'"):
        fit(model, train, lr=1e-3, param_groups=groups, progress=False)
    with pytest.raises(ValueError, match="weight_decay would be ignored"):
        fit(model, train, weight_decay=0.1, param_groups=groups, progress=False)
    with pytest.raises(ValueError, match="param group 0 .* has no 'lr'"):
        fit(model, train, param_groups=[{"params": model.parameters()}], progress=False)
    with pytest.raises(ValueError, match="patience needs val_data"):
        fit(model, train, patience=2, progress=False)
    for bad in (-1, 3, float("nan")):
        with pytest.raises(ValueError, match="warmup_epochs must be in \\[0, epochs=2\\]"):
            fit(model, train, epochs=2, warmup_epochs=bad, progress=False)
    with pytest.raises(ValueError, match="'onecycle' schedule has its own warm-up"):
        fit(model, train, epochs=2, warmup_epochs=1, schedule="onecycle", progress=False)
    with pytest.raises(ValueError, match="step_every_epochs needs schedule='step'"):
        fit(model, train, epochs=2, step_every_epochs=1, progress=False)
    # gradual unfreezing with param groups that lack the groups the plan will unfreeze
    unfreeze_top(model, 1)
    head_only = param_groups(model, base_lr=1e-2)
    with pytest.raises(ValueError, match="unfreeze plan trains groups \\['0', '2'\\] but param_groups lacks"):
        fit(model, train, epochs=3, unfreeze=[1, 2, 3], param_groups=head_only, progress=False)
    every = param_groups(model, base_lr=1e-2, trainable_only=False)
    h = fit(model, train, epochs=3, unfreeze=[1, 2, 3], param_groups=every, progress=False)
    assert h.column("trainable")[-1] == count_parameters(model).total


def test_a_config_and_keywords_are_the_same_settings():
    train, val, _ = digits_tensors()
    config = FitConfig(epochs=3, lr=3e-3, batch_size=32, label_smoothing=0.1, grad_clip=1.0)
    by_config, by_keywords = mlp(), mlp()
    h1 = fit(by_config, train, val, config, progress=False)
    h2 = fit(by_keywords, train, val, progress=False, **dataclasses.asdict(config))
    for a, b in zip(by_config.state_dict().values(), by_keywords.state_dict().values()):
        assert torch.equal(a, b)
    assert h1.column("train_loss") == h2.column("train_loss")
    # the settings reach the loop: without label smoothing the same run has another loss
    plain = fit(mlp(), train, val, dataclasses.replace(config, label_smoothing=0.0), progress=False)
    assert plain.column("train_loss")[0] != h1.column("train_loss")[0]
    # keywords replace the config's fields; the config itself is left as it was
    h3 = fit(mlp(), train, val, config, epochs=1, progress=False)
    assert len(h3.epochs) == 1 and config.epochs == 3
    with pytest.raises(TypeError, match=r"unknown training settings \['learning_rate'\]"):
        fit(mlp(), train, learning_rate=1e-3, progress=False)
    with pytest.raises(TypeError, match="config must be a FitConfig, got dict"):
        fit(mlp(), train, val, {"epochs": 3}, progress=False)


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("epochs", 0, "epochs must be >= 1, got 0"),
        ("epochs", 2.5, "epochs must be >= 1, got 2.5"),
        ("lr", -1e-3, "lr must be a finite number >= 0, got -0.001"),
        ("weight_decay", float("nan"), "weight_decay must be a finite number >= 0, got nan"),
        ("optimizer", "adam", "optimizer must be 'adamw' or 'sgd', got 'adam'"),
        ("batch_size", 0, "batch_size must be >= 1, got 0"),
        ("schedule", "warp", "unknown schedule 'warp'"),
        ("warmup_epochs", 6, "warmup_epochs must be in [0, epochs=5], got 6"),
        ("step_every_epochs", 1, "step_every_epochs needs schedule='step' and a value >= 1, got 1"),
        ("patience", 0, "patience must be an int >= 1 or None, got 0"),
        ("restore_best", "yes", "restore_best must be True or False, got 'yes'"),
        ("label_smoothing", 1.0, "label_smoothing must be in [0, 1), got 1.0"),
        ("grad_clip", 0, "grad_clip must be > 0 or None, got 0"),
        ("amp", "fp8", "amp must be True, False, 'bf16' or 'fp16', got 'fp8'"),
        ("num_workers", -1, "num_workers must be an int >= 0, got -1"),
    ],
)
def test_fit_config_rejects_a_bad_value_where_it_is_written(setting, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        FitConfig(**{setting: value})
    with pytest.raises(ValueError, match=re.escape(message)):  # replace() checks again
        dataclasses.replace(FitConfig(), **{setting: value})
