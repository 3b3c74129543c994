"""ftlab.train: schedules agree with torch's, fit is reproducible, stops early, keeps the best model."""

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import Dataset, TensorDataset
from transformers import BertConfig, BertForSequenceClassification

from ftlab.layers import count_parameters, layer_groups, unfreeze_top
from ftlab.optim import param_groups, unfreeze_schedule
from ftlab.train import cached_features, evaluate, fit, head_module, predict, schedule_factor


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
    h = fit(model, train, epochs=1, param_groups=groups, schedule="onecycle", progress=False)
    # the optimizer updated these very dicts: after the schedule ran, each group's real lr
    # is still gamma-decayed relative to the head (the schedule scales every group alike)
    assert [g["lr"] / groups[-1]["lr"] for g in groups] == pytest.approx(ratios0)
    assert groups[-1]["lr"] == pytest.approx(1e-2 / 25e4, rel=1e-3) == h.column("lr")[-1]


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
    with (
        pytest.raises(ValueError, match="CUDA is not available")
        if not torch.cuda.is_available()
        else pytest.raises(Exception)
    ):
        fit(mlp(), train, device="cuda")
