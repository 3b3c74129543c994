"""The README's worked numbers are the ones the library computes (the lessons assert the same values)."""

import math
import re
from pathlib import Path

import torch

from ftlab.examples import worked_example_mlp
from ftlab.layers import count_parameters, unfreeze_top
from ftlab.optim import layerwise_lrs
from ftlab.strategies import recommend_strategy

ROOT = Path(__file__).resolve().parents[1]


def _section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## The worked numbers")
    return readme[start : readme.index("\n## ", start + 1)]


def test_parameter_counts_in_readme():
    text = _section()
    mlp = worked_example_mlp()
    backbone = sum(p.numel() for name, p in mlp.named_parameters() if not name.startswith("head"))
    for k, label in [(1, "feature extraction (head only)"), (3, "unfreeze layers 3–4 + head")]:
        unfreeze_top(mlp, k)
        c = count_parameters(mlp)
        row = f"| {label} | {c.trainable:,} | {c.trainable / backbone:.1%} | {c.trainable / c.total:.1%} |"
        assert row in text, row
    assert f"share of backbone ({backbone:,})" in text and f"share of all ({c.total:,})" in text


def test_learning_rates_in_readme():
    text = _section()
    top_down = ", ".join(f"{v:.0e}".replace("e-0", "e-") for v in reversed(layerwise_lrs(1e-3, 0.1, 4)))
    assert f"top → bottom: {top_down}." in text
    stems = ", ".join(f"{layerwise_lrs(1e-3, g, 9)[0]:.1e} at γ = {g}" for g in (0.1, 0.5))
    assert stems in text.replace("\n", " ")
    assert f"{layerwise_lrs(1e-3, 0.7, 9)[0]:.1e} at γ = 0.7" in text.replace("\n", " ")


def test_cls_example_in_readme():
    text = _section().replace("\n", " ")
    nums = [float(v.replace("−", "-")) for v in re.findall(r"[−-]?\d+\.\d+", text[text.index("[CLS] head") :])][:14]
    h, w, b = torch.tensor(nums[:4]), torch.tensor(nums[4:12]).reshape(4, 2), torch.tensor(nums[12:14])
    z = h @ w + b
    p = z.softmax(0)
    expected = (
        f"z = hW + b = [{z[0]:.2f}, {z[1]:.2f}], p = softmax(z) = [{p[0]:.4f}, {p[1]:.4f}], "
        f"loss = −ln {p[0]:.4f} = {-math.log(p[0]):.3f}"
    )
    assert expected in text, expected


def test_label_smoothing_and_decision_tree_in_readme():
    text = _section()
    eps, k = 0.1, 10
    assert f"target {1 - eps + eps / k:.2f} on the true class, {eps / k:.2f} on each other" in text
    for label, n in [("small", 500), ("large", 50_000), ("huge", 2_000_000)]:
        row = f"| {label} ({n:,}) | `{recommend_strategy(n, 'similar')}` | `{recommend_strategy(n, 'different')}` |"
        assert row in text, row
