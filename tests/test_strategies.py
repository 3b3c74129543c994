"""ftlab.strategies: each strategy trains what it says; the decision tree; reports."""

import csv
import dataclasses
import math
from operator import attrgetter
from types import SimpleNamespace

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

import ftlab.features
import ftlab.models
import ftlab.strategies
from ftlab.config import FitConfig
from ftlab.history import History
from ftlab.strategies import (
    SMALL_DATA,
    STRATEGIES,
    STRATEGY_TABLE,
    Settings,
    Strategy,
    StrategyResult,
    compare,
    plot_results,
    recommend_strategy,
    results_table,
    run_strategy,
    save_results,
    select_strategy,
    summarize,
)
from ftlab.train import fit

FAST = Settings(epochs=3, batch_size=64, lr=3e-3, head_lr=1e-2, head_epochs=20, scratch_lr=3e-3, top_k=2)


@pytest.fixture(scope="module")
def splits():
    x, y = load_digits(return_X_y=True)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = torch.tensor(x / 16.0, dtype=torch.float32)[perm], torch.tensor(y)[perm]
    part = lambda a, b: TensorDataset(x[a:b], y[a:b])  # noqa: E731
    return SimpleNamespace(train=part(0, 1000), val=part(1000, 1300), test=part(1300, 1797), num_classes=10)


def net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)
    )


@pytest.fixture(scope="module")
def pretrained_state(splits):
    """A backbone 'pretrained' on the first half of the training split, as a stand-in for ImageNet."""
    model = net()
    fit(model, TensorDataset(*splits.train[:500]), epochs=5, lr=3e-3, progress=False)
    return model.state_dict()


@pytest.fixture
def pretrained(pretrained_state):
    """Fresh copies of the pretrained net with a new, randomly initialised head."""

    def make():
        model = net()
        model.load_state_dict(pretrained_state)
        model[6].reset_parameters()
        return model

    return make


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_each_strategy_trains_what_it_says(name, splits, pretrained):
    model = net(seed=1) if name == "scratch" else pretrained()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = run_strategy(name, model, splits, FAST, progress=False)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    expected_trainable = {
        "feature_extraction": 32 * 10 + 10,
        "fine_tune_top": 32 * 10 + 10 + 64 * 32 + 32,
        "fine_tune_all": r.total_params,
        "layerwise": r.total_params,
        "gradual": r.total_params,
        "scratch": r.total_params,
    }[name]
    assert r.trainable_params == expected_trainable
    assert r.total_params == sum(p.numel() for p in model.parameters())
    if name == "feature_extraction":
        assert changed == {"6.weight", "6.bias"}
    elif name == "fine_tune_top":
        assert changed == {"4.weight", "4.bias", "6.weight", "6.bias"}
    else:
        assert "0.weight" in changed
    assert r.test_accuracy > 0.5 and r.seconds > 0  # chance: 0.1 and r.samples_per_s > 0
    assert len(r.history.epochs) == (FAST.head_epochs if name == "feature_extraction" else FAST.epochs)


def test_gradual_unfreezes_head_first_then_all(splits, pretrained):
    r = run_strategy("gradual", pretrained(), splits, FAST, progress=False)
    trainable = r.history.column("trainable")
    assert trainable[0] == 32 * 10 + 10 and trainable[-1] == r.total_params
    assert trainable == sorted(trainable)


def test_unknown_strategy(splits):
    with pytest.raises(ValueError, match="unknown strategy 'finetune'"):
        run_strategy("finetune", net(), splits, FAST)


@pytest.mark.parametrize(
    ("n", "similarity", "expected"),
    [
        (500, "similar", "feature_extraction"),  # small, similar: feature extraction
        (500, "different", "fine_tune_top"),  # small, different: fine-tune the top layers carefully
        (50_000, "similar", "fine_tune_all"),  # large, similar: fine-tune all layers
        (50_000, "different", "fine_tune_all"),  # large, different: fine-tune aggressively ...
        (1_400_000, "different", "scratch"),  # ... or, with ImageNet-scale data, train from scratch
        (1_400_000, "similar", "fine_tune_all"),
        (5_000, "different", "fine_tune_top"),  # the syllabus's hospital: 5,000 X-rays are small data
        (1_000, "different", "fine_tune_top"),  # ... and so are 1,000 examples for 591,234 parameters
        (9_999, 0.9, "feature_extraction"),
        (9_999, 0.2, "fine_tune_top"),
        (10_000, 0.2, "fine_tune_all"),  # the threshold itself is large
        (10_000, 0.9, "fine_tune_all"),
    ],
)
def test_decision_tree(n, similarity, expected):
    assert recommend_strategy(n, similarity) == expected


def test_decision_tree_threshold():
    """Small below SMALL_DATA = 10,000 (the syllabus's small examples: 500, 1,000, 5,000), or the caller's own."""
    assert SMALL_DATA == 10_000
    assert recommend_strategy(999, "different", small_data=1000) == "fine_tune_top"
    assert recommend_strategy(1000, "different", small_data=1000) == "fine_tune_all"


def test_decision_tree_bad_input():
    with pytest.raises(
        ValueError, match="domain_similarity must be 'similar', 'different' or in \\[0, 1\\], got 'close'"
    ):
        recommend_strategy(100, "close")
    with pytest.raises(ValueError, match="domain_similarity must be .* got 1.5"):
        recommend_strategy(100, 1.5)
    with pytest.raises(ValueError, match="n_samples must be a positive int, got 0"):
        recommend_strategy(0, "similar")
    with pytest.raises(ValueError, match="need 1 <= small_data < scratch_data, got 5000 and 5000"):
        recommend_strategy(100, "similar", small_data=5000, scratch_data=5000)


def test_reports(splits, pretrained, tmp_path):
    results = [
        run_strategy(n, pretrained(), splits, FAST, progress=False) for n in ("feature_extraction", "fine_tune_all")
    ]
    text = results_table(results)
    assert "feature_extraction" in text and f"{results[1].test_accuracy:.4f} (1 run)" in text and "330" in text
    assert "±" not in text  # one seed: no spread is claimed
    assert all(r.val_accuracy == r.history.best_val_accuracy is not None for r in results)
    csv_path, png_path = save_results(results, tmp_path / "out")
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["strategy"] for r in rows] == ["feature_extraction", "fine_tune_all"]
    assert float(rows[1]["test_accuracy"]) == round(results[1].test_accuracy, 4)
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gradual_with_a_single_group(splits):
    model = nn.Sequential(nn.Linear(64, 10))
    r = run_strategy("gradual", model, splits, FAST, progress=False)
    assert r.history.column("trainable") == [650] * FAST.epochs and r.test_accuracy > 0.5


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_uses_the_same_weight_decay_policy(name, splits, pretrained, monkeypatch):
    """Weights decay by settings.weight_decay, biases not at all -- whichever strategy trains them."""
    seen = _recorded_fit_calls(monkeypatch)
    s = dataclasses.replace(FAST, epochs=1, head_epochs=1, weight_decay=0.05)
    run_strategy(name, net(seed=1) if name == "scratch" else pretrained(), splits, s, progress=False)
    ((config, kwargs),) = seen
    assert config.lr is None and config.weight_decay is None
    decays = {p.ndim: g["weight_decay"] for g in kwargs["param_groups"] for p in g["params"]}
    assert decays == {2: 0.05, 1: 0.0}


def _recorded_fit_calls(monkeypatch):
    """Every fit() call a strategy makes, as (config, keyword arguments)."""
    seen = []

    def recording_fit(model, train, val=None, config=None, **kwargs):
        seen.append((config, kwargs))
        return fit(model, train, val, config, **kwargs)

    monkeypatch.setattr(ftlab.strategies, "fit", recording_fit)
    monkeypatch.setattr(ftlab.features, "fit", recording_fit)
    return seen


def test_settings_are_the_fit_config_every_strategy_trains_with(splits, pretrained, monkeypatch):
    """Settings extends FitConfig: its fit settings reach fit unchanged, its own fields stay with the strategies."""
    assert issubclass(Settings, FitConfig)
    seen = _recorded_fit_calls(monkeypatch)
    s = dataclasses.replace(FAST, epochs=1, head_epochs=2, label_smoothing=0.1, grad_clip=1.0, batch_size=50)
    for name in ("feature_extraction", "fine_tune_all"):
        run_strategy(name, pretrained(), splits, s, progress=False)
    (fe, _), (full, _) = seen
    for config in (fe, full):
        assert (config.label_smoothing, config.grad_clip, config.batch_size) == (0.1, 1.0, 50)
        assert config.lr is None and config.weight_decay is None  # the param groups carry the rates
    assert (fe.epochs, full.epochs) == (2, 1)
    with pytest.raises(ValueError, match="gamma must be in"):
        Settings(gamma=1.5)
    with pytest.raises(ValueError, match="head_epochs must be an int >= 1, got 0"):
        dataclasses.replace(FAST, head_epochs=0)
    with pytest.raises(ValueError, match="epochs must be >= 1"):  # FitConfig's own checks run for Settings too
        Settings(epochs=0)


@pytest.mark.parametrize("name", ["layerwise", "fine_tune_all", "gradual"])
def test_layerwise_decays_each_group_by_gamma_and_the_others_do_not(name, splits, pretrained, monkeypatch):
    seen = _recorded_fit_calls(monkeypatch)
    s = dataclasses.replace(FAST, epochs=1, gamma=0.5, lr=4e-3, weight_decay=0.0)
    run_strategy(name, pretrained(), splits, s, progress=False)
    ((_, kwargs),) = seen
    rates = [g["lr"] for g in kwargs["param_groups"]]  # one group per layer group, input to output
    assert len(rates) == 4 and rates[-1] == pytest.approx(s.lr)  # the head trains at the top rate
    gamma = s.gamma if name == "layerwise" else 1.0
    assert [lo / hi for lo, hi in zip(rates, rates[1:-1])] == pytest.approx([gamma] * 2)
    assert rates[-2] == pytest.approx(s.lr)  # the top body group too


def test_a_seventh_strategy_is_one_row_of_the_table(splits, pretrained, monkeypatch):
    """A new strategy is data: its row says which groups train at which rates, run_strategy does the rest."""
    top_layerwise = Strategy(
        "top_layerwise", "top 3 groups, gamma-decayed", top=lambda s, n: 3, gamma=attrgetter("gamma")
    )
    monkeypatch.setattr(ftlab.strategies, "STRATEGY_TABLE", (*STRATEGY_TABLE, top_layerwise))
    seen = _recorded_fit_calls(monkeypatch)
    model = pretrained()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = run_strategy(
        "top_layerwise", model, splits, dataclasses.replace(FAST, gamma=0.5, weight_decay=0.0), progress=False
    )
    changed = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"2", "4", "6"} and r.test_accuracy > 0.5
    ((_, kwargs),) = seen
    assert [g["lr"] for g in kwargs["param_groups"]] == pytest.approx([FAST.lr * 0.5, FAST.lr, FAST.lr])


def test_compare_checks_its_arguments_before_loading_anything(monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("compare loaded a model before checking its arguments")

    monkeypatch.setattr(ftlab.models, "load_pretrained", no_loading)
    with pytest.raises(ValueError, match=r"unknown strategies \['finetune'\]"):
        compare("efficientnet_lite0", "digits", strategies=["fine_tune_all", "finetune"])
    with pytest.raises(ValueError, match="seeds must be an int >= 1, got 0"):
        compare("minilm", "vader_words", seeds=0)
    with pytest.raises(ValueError, match="minilm takes text inputs but digits holds image examples"):
        compare("minilm", "digits")
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        compare("vgg", "digits")
    with pytest.raises(ValueError, match="image_size must be a positive int, got 0"):
        compare("efficientnet_lite0", "digits", image_size=0)
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        compare("efficientnet_lite0", "digits", overrides={"epochs": 0})


def fake(name, seed, val, test, seconds=1.0):
    return StrategyResult(name, test, 10, 100, seconds, 1.0, History(), val, seed)


def test_summary_over_seeds_selects_on_validation_and_reports_test_once(tmp_path):
    import matplotlib

    results = [
        fake("a", 0, 0.90, 0.99), fake("a", 1, 0.92, 0.97),  # best on test, worse on validation
        fake("b", 0, 0.95, 0.93), fake("b", 1, 0.97, 0.95),
    ]  # fmt: skip
    a, b = summarize(results)
    assert (a.name, a.seeds, a.val_accuracy, a.test_accuracy) == ("a", 2, pytest.approx(0.91), pytest.approx(0.98))
    assert a.val_std == pytest.approx(math.sqrt(2) * 0.01) and b.test_std == pytest.approx(math.sqrt(2) * 0.01)
    assert select_strategy(results).name == "b"
    text = results_table(results)
    assert "0.9100 ± 0.0141" in text
    assert text.splitlines()[-1] == "selected on validation: b -- test accuracy 94.00% ± 1.41% over 2 seeds"
    axes = plot_results(results)
    ys = [c.lines[0].get_ydata()[0] for c in axes[0].containers]  # one error-bar set per strategy
    assert ys == [pytest.approx(0.91), pytest.approx(0.96)]
    backend = matplotlib.get_backend()
    csv_path, _ = save_results(results, tmp_path)
    assert matplotlib.get_backend() == backend  # the caller's (notebook's) backend is left alone
    assert [r["seed"] for r in csv.DictReader(csv_path.open())] == ["0", "1", "0", "1"]
