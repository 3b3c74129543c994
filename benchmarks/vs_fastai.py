"""ftlab against fastai's one-line recipe, ``Learner.fine_tune``, on the same task.

Same EfficientNet-Lite0 (same pretrained weights, same seeded new head), the
same digits split at the same input size, the same seeds; both are scored by
:func:`ftlab.train.evaluate` on the same test set. Rows:

* ftlab ``fine_tune_all`` with :class:`ftlab.strategies.Settings` (3 epochs, one-cycle, 2e-3);
* fastai ``fine_tune(3)`` at its defaults: 1 frozen epoch at 2e-3, then 3 epochs
  with discriminative rates ``slice(1e-5, 1e-3)`` (``lr_mult=100``) -- the
  low-rate recipe for a near domain;
* fastai ``fine_tune(3, lr_mult=2)``: the body at ``5e-4``, the head at ``1e-3``.

Each run is timed in the same process, runs interleaved per seed so that the
machine's load hits all alike; the table gives mean ± std over seeds and each
row's time relative to ftlab. fastai is an optional *benchmark* dependency
(never a runtime one). Run it from an environment that has fastai, e.g.::

    python3.11 -m venv /tmp/venv-fastai
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/venv-fastai/lib/python3.11/site-packages/ftlab_venv.pth
    /tmp/venv-fastai/bin/pip install fastai
    PYTHONPATH=$PWD /tmp/venv-fastai/bin/python benchmarks/vs_fastai.py --seeds 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ftlab.features import head_module
from ftlab.models import ImagePreprocess, load_pretrained
from ftlab.strategies import Settings, run_strategy
from ftlab.train import evaluate
from ftlab.utils import seed_everything

try:
    from fastai.callback.schedule import fine_tune  # noqa: F401  (patches Learner.fine_tune)
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader as FastaiLoader
    from fastai.learner import Learner
    from fastai.metrics import accuracy
    from torch import nn
except ImportError as e:  # pragma: no cover - depends on the environment
    raise SystemExit(f"vs_fastai.py needs fastai (an optional benchmark dependency): {e}") from e


def fresh_model(num_classes: int, seed: int) -> nn.Module:
    seed_everything(seed)
    return load_pretrained("efficientnet_lite0", num_classes=num_classes)


def run_ftlab(splits, seed: int) -> tuple[float, float]:
    net = fresh_model(splits.num_classes, seed)
    r = run_strategy("fine_tune_all", net, splits, Settings(), seed=seed, progress=False)
    return r.test_accuracy, r.seconds


def run_fastai(splits, seed: int, epochs: int, lr_mult: float, batch_size: int) -> tuple[float, float]:
    net = fresh_model(splits.num_classes, seed)
    head = head_module(net)
    head_ids = {id(p) for p in head.parameters()}

    def splitter(model: nn.Module) -> list[list[nn.Parameter]]:
        return [[p for p in model.parameters() if id(p) not in head_ids], list(head.parameters())]

    seed_everything(seed)
    train = FastaiLoader(splits.train, bs=batch_size, shuffle=True, drop_last=False)
    valid = FastaiLoader(splits.val, bs=256)
    dls = DataLoaders(train, valid, device=torch.device("cpu"))
    learn = Learner(dls, net, loss_func=nn.CrossEntropyLoss(), metrics=accuracy, splitter=splitter)
    start = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(epochs, lr_mult=lr_mult)
    seconds = time.perf_counter() - start
    return evaluate(net, splits.test, device="cpu")["accuracy"], seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--image-size", type=int, default=48)
    p.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (fastai adds its 1 frozen epoch)")
    p.add_argument("--max-per-class", type=int, help="subsample the data (a quick check of the script itself)")
    args = p.parse_args()
    from ftlab.data import load_dataset

    pre = load_pretrained("efficientnet_lite0").preprocess
    splits = load_dataset(
        "digits",
        preprocess=ImagePreprocess(args.image_size, pre.mean, pre.std),
        seed=0,
        max_per_class=args.max_per_class,
    )
    bs = Settings().batch_size
    rows = {
        "ftlab fine_tune_all (2e-3, one-cycle)": lambda s: run_ftlab(splits, s),
        "fastai fine_tune defaults (body 1e-5, head 1e-3)": lambda s: run_fastai(splits, s, args.epochs, 100, bs),
        "fastai fine_tune lr_mult=2 (body 5e-4, head 1e-3)": lambda s: run_fastai(splits, s, args.epochs, 2, bs),
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
    for seed in range(args.seeds):
        for name, run in rows.items():
            runs[name].append(run(seed))
            acc, sec = runs[name][-1]
            print(f"seed {seed}  {name:<52} test {acc:.4f}  {sec:6.1f} s", flush=True)

    def ms(values):
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    base = ms([s for _, s in runs[next(iter(rows))]])[0]
    print(
        f"\nEfficientNet-Lite0, digits, {args.image_size} px, {args.seeds} seeds, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(f"| {'recipe':<52} | {'test accuracy':>15} | {'time (s)':>12} | {'time / ftlab':>12} |")
    print(f"|{'-' * 54}|{'-' * 17}|{'-' * 14}|{'-' * 14}|")
    for name, values in runs.items():
        acc, acc_sd = ms([a for a, _ in values])
        sec, sec_sd = ms([s for _, s in values])
        print(f"| {name:<52} | {acc:7.2%} ± {acc_sd:5.2%} | {sec:6.1f} ± {sec_sd:3.1f} | {sec / base:12.2f} |")


if __name__ == "__main__":
    main()
