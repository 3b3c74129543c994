"""Interactive controls of the lessons: move a slider, see the numbers and the chart change.

Each explorer holds ipywidgets controls (``.controls``, name -> widget), the
state they compute (plain attributes), and ``update(**values)``. The controls
call ``update`` through ``observe``; code and tests call it directly -- it moves
the controls, recomputes, and redraws. Nothing blocks: the state for the
default values is computed and drawn at construction, so a notebook executed
headless (nbclient, CI) shows the default state and never waits for input.
Display an explorer by leaving it last in a cell (or ``display(explorer)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from IPython.display import display
from torch import nn

from .layers import LayerGroup, count_parameters, parameter_table, resolve_groups, unfreeze_top
from .optim import layerwise_lrs
from .plots import lr_plot, trainable_bars

__all__ = ["Explorer", "UnfreezeExplorer", "LayerwiseLRExplorer", "SoftmaxExplorer", "StrategyExplorer"]


class Explorer:
    """Base: controls -> ``compute(**values)`` -> ``text`` and ``draw()``, shown in an Output.

    A subclass builds its controls and writes ``compute`` (and ``draw`` for a chart).
    Outside a notebook the Output widget shows nothing, so ``text`` goes to
    stdout; the examples here catch it.

    >>> import contextlib, io
    >>> class Square(Explorer):
    ...     def __init__(self):
    ...         super().__init__({"n": widgets.IntSlider(value=3, min=0, max=10)}, draw=False)
    ...     def compute(self, n):
    ...         self.square, self.text = n * n, f"{n} squared is {n * n}"
    >>> with contextlib.redirect_stdout(io.StringIO()):
    ...     explorer = Square().update(n=4)
    >>> explorer.values, explorer.square, explorer.text
    ({'n': 4}, 16, '4 squared is 16')
    """

    def __init__(self, controls: dict[str, widgets.ValueWidget], draw: bool = True):
        self.controls = controls
        self.out = widgets.Output()
        self.widget = widgets.VBox([widgets.HBox(list(controls.values())), self.out])
        self.text = ""
        self.fig = None
        self._draw = draw
        self._moving = False
        for control in controls.values():
            control.observe(self._changed, names="value")
        self.update()

    @property
    def values(self) -> dict[str, Any]:
        return {name: control.value for name, control in self.controls.items()}

    def update(self, **values: Any) -> Explorer:
        """Set some controls (as a user would), then recompute and redraw once."""
        unknown = sorted(set(values) - set(self.controls))
        if unknown:
            raise ValueError(f"unknown control(s) {unknown}; controls are {list(self.controls)}")
        self._moving = True
        try:
            for name, value in values.items():
                control = self.controls[name]
                control.value = value
                if not _same(control.value, value):  # sliders clip silently; say so instead
                    lo, hi = getattr(control, "min", None), getattr(control, "max", None)
                    raise ValueError(f"{name}={value!r} is outside the control's range [{lo}, {hi}]")
        finally:
            self._moving = False
        self.compute(**self.values)
        self._render()
        return self

    def compute(self, **values: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def draw(self):
        """A matplotlib Figure of the current state (or None)."""
        return None

    def _changed(self, _change: dict) -> None:
        if self._moving:
            return
        try:
            self.update()
        except ValueError as e:  # a value typed into a box that the computation rejects
            self.out.clear_output(wait=True)
            with self.out:
                print(f"not a valid input: {e}")

    def _render(self) -> None:
        self.out.clear_output(wait=True)
        with self.out:
            print(self.text)
            if self._draw:
                fig = self.draw()
                if fig is not None:
                    self.fig = fig
                    display(fig)
                    plt.close(fig)

    def _ipython_display_(self) -> None:
        display(self.widget)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.values.items())})\n{self.text}"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-15)
        except (TypeError, ValueError):
            return False
    return a == b


# --------------------------------------------------------------------------- freezing


class UnfreezeExplorer(Explorer):
    """Slider "groups unfrozen" k: ``unfreeze_top(model, k)``, then count and chart.

    Moving the slider really freezes and unfreezes ``model`` (k=1 trains only the
    head: feature extraction). State: ``k``, ``trainable_groups``, ``count``
    (:class:`ftlab.layers.ParamCount`), ``rows`` (per-group table),
    ``backbone`` (parameters outside the head group), ``share_of_all`` and
    ``share_of_backbone`` (trainable / backbone, the ratio course notes quote).

    >>> import contextlib, io
    >>> from ftlab.examples import worked_example_mlp
    >>> with contextlib.redirect_stdout(io.StringIO()):  # outside a notebook the text goes to stdout
    ...     explorer = UnfreezeExplorer(worked_example_mlp(), k=1, draw=False).update(k=2)
    >>> explorer.trainable_groups, f"{explorer.share_of_all:.1%}", explorer.controls["k"].max
    (['layer4', 'head'], '29.4%', 5)
    """

    def __init__(self, model: nn.Module, k: int = 1, groups: Sequence[LayerGroup] | None = None, draw: bool = True):
        self.model = model
        self.groups = resolve_groups(model, groups)
        n = len(self.groups)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
            raise ValueError(f"k must be an int between 1 and the number of groups ({n}), got {k!r}")
        slider = widgets.IntSlider(
            value=k, min=1, max=n, description="groups unfrozen", style={"description_width": "initial"}
        )
        super().__init__({"k": slider}, draw=draw)

    def compute(self, k: int) -> None:
        self.k = k
        self.trainable_groups = unfreeze_top(self.model, k, self.groups)
        self.count = count_parameters(self.model)
        self.rows = parameter_table(self.model, self.groups)
        self.backbone = sum(r.params for r in self.rows[:-1])
        self.share_of_all = self.count.trainable_fraction
        self.share_of_backbone = self.count.trainable / self.backbone if self.backbone else math.nan
        self.text = (
            f"top {k} of {len(self.groups)} groups trainable ({', '.join(self.trainable_groups)}): "
            f"{self.count.trainable:,} of {self.count.total:,} parameters = {self.share_of_all:.1%} of all, "
            f"{self.share_of_backbone:.1%} of the backbone's {self.backbone:,}"
        )

    def draw(self):
        ax = trainable_bars(self.rows)
        return ax.figure


# --------------------------------------------------------------------------- learning rates


class LayerwiseLRExplorer(Explorer):
    """Sliders for base LR, gamma and depth L: ``lr_l = base_lr * gamma ** (L - l)`` on a log scale.

    State: ``lrs`` bottom->top (:func:`ftlab.optim.layerwise_lrs`) and ``text``,
    a table top->bottom.

    >>> import contextlib, io
    >>> with contextlib.redirect_stdout(io.StringIO()):  # outside a notebook the text goes to stdout
    ...     explorer = LayerwiseLRExplorer(base_lr=1e-3, gamma=0.5, depth=3, draw=False)
    >>> explorer.lrs, explorer.controls["gamma"].value
    ([0.00025, 0.0005, 0.001], 0.5)
    """

    YLIM = (1e-10, 1.0)  # learning rates below 1e-10 are frozen in all but name

    def __init__(self, base_lr: float = 1e-3, gamma: float = 0.1, depth: int = 4, draw: bool = True):
        style = {"description_width": "initial"}
        controls = {
            "base_lr": widgets.FloatLogSlider(
                value=base_lr, base=10, min=-6, max=-1, step=0.25, description="base LR", readout_format=".1e",
                style=style,
            ),
            "gamma": widgets.FloatSlider(
                value=gamma, min=0.05, max=1.0, step=0.05, description="γ", readout_format=".2f", style=style
            ),
            "depth": widgets.IntSlider(value=depth, min=1, max=12, description="depth L", style=style),
        }
        super().__init__(controls, draw=draw)

    def compute(self, base_lr: float, gamma: float, depth: int) -> None:
        self.lrs = layerwise_lrs(base_lr, gamma, depth)
        lines = [f"base LR {base_lr:.1e}, γ = {gamma:.2f}, L = {depth} (top -> bottom):"]
        for layer in range(depth, 0, -1):
            top = " (top)" if layer == depth else " (bottom)" if layer == 1 else ""
            lines.append(f"  layer {layer}{top}: lr = {base_lr:.1e} x {gamma:.2f}^{depth - layer} = {self.lrs[layer - 1]:.2e}")
        self.text = "\n".join(lines)

    def draw(self):
        # A fixed y range: fitted to the data, gamma = 0.1 and gamma = 0.5 drew the same-looking line.
        ax = lr_plot({f"γ = {self.values['gamma']:.2f}": self.lrs}, annotate=False, ylim=self.YLIM)
        return ax.figure


# --------------------------------------------------------------------------- classification head


class SoftmaxExplorer(Explorer):
    """Editable logits z and true label: softmax probabilities, cross-entropy, gradient.

    State (torch tensors and floats): ``z``, ``probs`` = softmax(z), ``loss`` =
    -log p[label] (``torch.nn.functional.cross_entropy``) and ``grad`` =
    dloss/dz = p - onehot(label), taken by autograd.

    >>> import contextlib, io
    >>> with contextlib.redirect_stdout(io.StringIO()):  # outside a notebook the text goes to stdout
    ...     explorer = SoftmaxExplorer(logits=(0.10, 0.04), label=0, classes=["positive", "negative"], draw=False)
    >>> explorer.probs, round(explorer.loss, 4), explorer.grad
    (tensor([0.5150, 0.4850], dtype=torch.float64), 0.6636, tensor([-0.4850,  0.4850], dtype=torch.float64))
    """

    def __init__(
        self,
        logits: Sequence[float] = (0.10, 0.04),
        label: int = 0,
        classes: Sequence[str] | None = None,
        draw: bool = True,
    ):
        logits = [float(v) for v in logits]
        if len(logits) < 2:
            raise ValueError(f"need at least two logits, got {logits!r}")
        self.classes = list(classes) if classes is not None else [f"class {i}" for i in range(len(logits))]
        if len(self.classes) != len(logits):
            raise ValueError(f"got {len(self.classes)} class names for {len(logits)} logits")
        if not 0 <= label < len(logits):
            raise ValueError(f"label must be in [0, {len(logits)}), got {label!r}")
        controls: dict[str, widgets.ValueWidget] = {
            f"z{i}": widgets.FloatText(value=v, step=0.01, description=f"z{i} ({c})", style={"description_width": "initial"})
            for i, (v, c) in enumerate(zip(logits, self.classes))
        }
        controls["label"] = widgets.Dropdown(
            options=[(c, i) for i, c in enumerate(self.classes)], value=label, description="true label"
        )
        super().__init__(controls, draw=draw)

    def compute(self, label: int, **zs: float) -> None:
        z = torch.tensor([zs[f"z{i}"] for i in range(len(self.classes))], dtype=torch.float64, requires_grad=True)
        loss = torch.nn.functional.cross_entropy(z[None], torch.tensor([label]))
        loss.backward()
        self.label = label
        self.z = z.detach()
        self.probs = torch.softmax(self.z, 0)
        self.loss = loss.item()
        self.grad = z.grad.detach()

        def vec(t: torch.Tensor) -> str:
            return "[" + ", ".join(f"{v:.4f}" for v in t.tolist()) + "]"

        self.text = (
            f"z = {vec(self.z)}\np = softmax(z) = {vec(self.probs)}\n"
            f"loss = -log p[{label}] = {self.loss:.4f}\ndloss/dz = p - y = {vec(self.grad)}"
        )

    def draw(self):
        fig, ax = plt.subplots(figsize=(3.5 + 0.4 * len(self.classes), 2.8))
        colors = ["tab:green" if i == self.label else "tab:grey" for i in range(len(self.classes))]
        ax.bar(self.classes, self.probs.tolist(), color=colors)
        ax.set_ylim(0, 1)
        ax.set_ylabel("probability")
        ax.set_title(f"loss = {self.loss:.4f}")
        return fig


# --------------------------------------------------------------------------- choosing a strategy


class StrategyExplorer(Explorer):
    """Labelled examples and domain similarity -> the decision tree's strategy.

    State: ``strategy`` from :func:`ftlab.strategies.recommend_strategy`; ``small_data``
    defaults to its threshold, :data:`ftlab.strategies.SMALL_DATA`.

    >>> import contextlib, io
    >>> with contextlib.redirect_stdout(io.StringIO()):  # outside a notebook the text goes to stdout
    ...     explorer = StrategyExplorer(n_samples=500, domain_similarity="different")
    ...     small = explorer.strategy
    ...     large = explorer.update(n_samples=50_000).strategy
    >>> small, large
    ('fine_tune_top', 'fine_tune_all')
    """

    def __init__(self, n_samples: int = 500, domain_similarity: str = "similar", small_data: int | None = None):
        from .strategies import SMALL_DATA, STRATEGIES

        self._strategies = STRATEGIES
        self.small_data = SMALL_DATA if small_data is None else small_data
        style = {"description_width": "initial"}
        controls = {
            "n_samples": widgets.IntText(value=n_samples, description="labelled examples", style=style),
            "domain_similarity": widgets.ToggleButtons(
                options=["similar", "different"], value=domain_similarity, description="target vs pretraining data"
            ),
        }
        super().__init__(controls, draw=False)

    def compute(self, n_samples: int, domain_similarity: str) -> None:
        from .strategies import recommend_strategy

        self.strategy = recommend_strategy(n_samples, domain_similarity, small_data=self.small_data)
        size = "small" if n_samples < self.small_data else "large"
        self.text = (
            f"{n_samples:,} examples ({size}), {domain_similarity} domain -> {self.strategy}: "
            f"{self._strategies[self.strategy]}"
        )
