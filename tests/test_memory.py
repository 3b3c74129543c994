"""ftlab.memory: the memory a training step needs, checked against what torch itself allocates and saves."""

import pytest
import torch
from torch import nn

from ftlab.layers import count_parameters, freeze, unfreeze_top
from ftlab.memory import OPTIMIZER_STATES, memory_estimate, probe
from ftlab.models import load_pretrained


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3))


@pytest.fixture(scope="module")
def lite0():
    return load_pretrained("efficientnet_lite0", num_classes=10, pretrained=False)


def test_weights_gradients_and_optimizer_state_are_counted_as_torch_stores_them(lite0):
    unfreeze_top(lite0, 3)
    trainable = [p for p in lite0.parameters() if p.requires_grad]
    for optimizer, states in OPTIMIZER_STATES.items():
        est = memory_estimate(lite0, (3, 32, 32), 4, optimizer=optimizer)
        assert est.parameters == _bytes(lite0.parameters())
        assert est.buffers == _bytes(lite0.buffers())
        assert est.trainable == count_parameters(lite0).trainable == sum(p.numel() for p in trainable)
        assert est.gradients == _bytes(trainable)
        assert est.optimizer_state == states * est.gradients


def test_gradients_and_adamw_state_match_a_real_step():
    model = _mlp()
    freeze(model[0])  # the first layer frozen: neither gradient nor state
    est = memory_estimate(model, (12,), 8, optimizer="adamw")
    opt = torch.optim.AdamW(p for p in model.parameters() if p.requires_grad)
    model(torch.randn(8, 12)).sum().backward()
    opt.step()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert est.gradients == _bytes(grads) and model[0].weight.grad is None
    states = [t for s in opt.state.values() for k, t in s.items() if k != "step"]  # exp_avg, exp_avg_sq
    assert est.optimizer_state == _bytes(states)


def _linear_inputs_and_largest_module(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """Forward hooks: bytes entering each nn.Linear (what a Linear saves for its weight's gradient), and the
    largest input + output of one module."""
    inputs, largest = [], [0]

    def hook(module, args, out):
        if isinstance(module, nn.Linear):
            inputs.append(args[0])
        ptrs = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in (args[0], out)}
        largest[0] = max(largest[0], sum(ptrs.values()))

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    model(x)
    for h in handles:
        h.remove()
    return _bytes(inputs), largest[0]


def test_activations_are_what_the_linear_layers_saw():
    """Each Linear saves its input; each ReLU its output, which is the next Linear's input (counted once)."""
    model = _mlp()
    saved, largest = _linear_inputs_and_largest_module(model, torch.randn(10, 12))
    est = memory_estimate(model, (12,), 10)
    assert est.activations == saved == 10 * (12 + 32 + 16) * 4
    assert est.workspace == largest


def test_a_frozen_part_keeps_nothing_for_backward():
    model = _mlp()
    freeze(model[:4])  # only the last Linear trains: it keeps its input, the network keeps the batch
    est = memory_estimate(model, (12,), 10)
    assert est.activations == 10 * (12 + 16) * 4
    freeze(model)
    assert memory_estimate(model, (12,), 10).activations == 10 * 12 * 4  # the input batch alone
    assert memory_estimate(model, (12,), 10).gradients == 0


def test_activations_grow_linearly_with_the_batch(lite0):
    """Measured on batches of 2 and 4, extrapolated: exactly what a batch of 8 saves (BatchNorm included)."""
    for k in (1, 10):
        unfreeze_top(lite0, k)
        est = memory_estimate(lite0, (3, 32, 32), 8)
        assert (est.activations, est.workspace) == probe(lite0, torch.randn(8, 3, 32, 32))
    assert est.activations > 10 * memory_estimate(lite0.requires_grad_(False), (3, 32, 32), 8).activations


def test_the_model_is_left_as_it_was(lite0):
    unfreeze_top(lite0, 10)
    lite0.eval()
    before = {k: v.clone() for k, v in lite0.state_dict().items()}
    memory_estimate(lite0, (3, 32, 32), 16)
    assert not lite0.training and not any(m.training for m in lite0.modules())
    assert all(torch.equal(before[k], v) for k, v in lite0.state_dict().items())  # BatchNorm statistics too
    assert all(p.grad is None for p in lite0.parameters())
    lite0.train()
    memory_estimate(lite0, (3, 32, 32), 16)
    assert all(m.training for m in lite0.modules())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(batch_size=0), "batch_size must be positive, got 0"),
        (dict(batch_size=-3), "batch_size must be positive, got -3"),
        (dict(batch_size=2.5), "batch_size must be an int, got 2.5"),
        (dict(batch_size=True), "batch_size must be an int, got True"),
        (dict(input_shape=()), "input_shape must be the shape of one example"),
        (dict(input_shape=(12, 0)), "input_shape must be the shape of one example"),
        (dict(input_shape=12), "input_shape must be the shape of one example"),
        (dict(optimizer="rmsprop"), r"optimizer must be one of \['adam', 'adamw', 'sgd', 'sgd_no_momentum'\]"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    args = dict(input_shape=(12,), batch_size=4) | kwargs
    with pytest.raises(ValueError, match=message):
        memory_estimate(_mlp(), **args)
