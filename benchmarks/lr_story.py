"""Lesson 3a's learning-rate arms over several seeds: the numbers the course's rate story cites.

Same task as lesson 3a in full mode (EfficientNet-Lite0 pretrained on ImageNet,
a new 10-class head, digits at 64 px with 60 images per class, 3 epochs of
full-network training, batches of 32). Each seed ``s`` draws its own split
(``load_dataset(..., seed=s)``) and trains with ``s`` (new head's init,
shuffling), so the spread covers both the ~90-image validation set and the
training noise. Every arm runs on every seed; nothing is selected on test: the
arm with the best mean *validation* accuracy is the chosen one, and only its
models are scored on the test set, once.

Arms (rates are AdamW's; weight decay ``Settings.weight_decay`` on weights only):

* ``syllabus``: the syllabus's staged recipe -- the new head trained first on
  cached frozen features (``Settings.head_epochs`` epochs at ``Settings.head_lr``),
  then every layer for 3 epochs at 1e-4, BatchNorm statistics fixed at ImageNet's;
* ``syllabus_1e-5``: the same from the same trained head, second stage at 1e-5;
* ``syllabus_same_steps``: the staged recipe inside the others' 3 epochs --
  1 epoch of the head alone (backbone frozen, 1e-2), then 2 epochs of every
  layer at 1e-4, BatchNorm fixed;
* ``fine_tune_all``: ftlab's strategy, every layer from a new head at
  ``Settings.lr`` (2e-3), one-cycle, BatchNorm statistics following the new data;
* ``new_head_1e-4``: every layer from a new head at 1e-4, BatchNorm live
  (lesson 3a's old arm: a low rate without the head-first stage);
* ``bn_fixed_2e-3``: as ``fine_tune_all`` but BatchNorm statistics fixed;
* ``scratch``: ftlab's strategy, random init at ``Settings.scratch_lr`` (3e-3).

``python benchmarks/lr_story.py`` prints the table; ``--write`` also rewrites
``lessons/measured/lr_story.json``, which the lessons' prose cites
(``tests/test_measured.py`` keeps them in step). ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time
from pathlib import Path

from measured import provenance, stats, write

from ftlab.data import load_dataset
from ftlab.features import cached_features, head_module
from ftlab.layers import freeze, unfreeze, unfreeze_top
from ftlab.models import ImagePreprocess, load_pretrained
from ftlab.optim import param_groups
from ftlab.strategies import Settings, run_strategy
from ftlab.train import evaluate, fit
from ftlab.utils import seed_everything

OUT = Path(__file__).resolve().parents[1] / "lessons" / "measured" / "lr_story.json"
LOW = 1e-4

ARMS = {
    "syllabus": "head first (cached features, 30 epochs at 1e-2), then all layers 3 epochs at 1e-4, BN fixed",
    "syllabus_1e-5": "head first (the same trained head), then all layers 3 epochs at 1e-5, BN fixed",
    "syllabus_same_steps": "head 1 epoch at 1e-2 (backbone frozen), then all layers 2 epochs at 1e-4, BN fixed",
    "fine_tune_all": "ftlab fine_tune_all: new head, all layers at Settings.lr (2e-3), one-cycle, BN live",
    "new_head_1e-4": "new head, all layers at 1e-4, cosine, BN live (no head-first stage)",
    "bn_fixed_2e-3": "new head, all layers at 2e-3, one-cycle, BN statistics fixed at ImageNet's",
    "scratch": "ftlab scratch: random init, all layers at Settings.scratch_lr (3e-3), one-cycle",
}


def _all_layers(net, splits, s: Settings, lr: float, epochs: int, schedule: str, seed: int) -> None:
    groups = param_groups(net, lr, 1.0, head_lr=lr, weight_decay=s.weight_decay)
    cfg = dataclasses.replace(s, epochs=epochs, lr=None, weight_decay=None, schedule=schedule)
    fit(net, splits.train, splits.val, cfg, param_groups=groups, seed=seed, progress=False)


def _fix_bn_train_all(net) -> None:
    freeze(net)  # fixes the BatchNorm statistics ...
    net.requires_grad_(True)  # ... then every weight trains


def _new(splits, seed: int, pretrained: bool = True):
    seed_everything(seed)  # the new head's init depends on the seed only
    return load_pretrained("efficientnet_lite0", num_classes=splits.num_classes, pretrained=pretrained)


def run_seed(
    seed: int, s: Settings, size: int, per_class: int, arms: list[str]
) -> dict[str, tuple[float, float, dict]]:
    """``{arm: (val accuracy, seconds, state_dict)}`` for one seed (its own split and training seed)."""
    pre = load_pretrained("efficientnet_lite0").preprocess
    splits = load_dataset(
        "digits", preprocess=ImagePreprocess(size, pre.mean, pre.std), seed=seed, max_per_class=per_class
    )
    out = {}

    def record(arm, net, t0):
        out[arm] = (evaluate(net, splits.val)["accuracy"], time.perf_counter() - t0, copy.deepcopy(net.state_dict()))
        print(f"seed {seed} {arm:20} val {out[arm][0]:.4f}  {out[arm][1]:6.1f} s", flush=True)

    started = None
    if {"syllabus", "syllabus_1e-5"} & set(arms):
        t0 = time.perf_counter()
        started = _new(splits, seed)
        unfreeze_top(started, 1)  # stage 1: the head alone, on features computed once
        train_f, val_f = cached_features(started, splits.train), cached_features(started, splits.val)
        fit(head_module(started), train_f, val_f, epochs=s.head_epochs, lr=s.head_lr, seed=seed, progress=False)
        _fix_bn_train_all(started)
        head_seconds = time.perf_counter() - t0
        out["_head_only"] = (evaluate(started, splits.val)["accuracy"], head_seconds, None)
        for arm, lr in (("syllabus", LOW), ("syllabus_1e-5", 1e-5)):
            if arm in arms:
                t0 = time.perf_counter() - head_seconds  # the shared first stage counts for each
                net = copy.deepcopy(started)
                _all_layers(net, splits, s, lr, s.epochs, "cosine", seed)
                record(arm, net, t0)
    if "syllabus_same_steps" in arms:
        t0 = time.perf_counter()
        net = _new(splits, seed)
        unfreeze_top(net, 1)  # backbone frozen, BatchNorm statistics fixed
        fit(
            net,
            splits.train,
            splits.val,
            epochs=1,
            lr=s.head_lr,
            weight_decay=s.weight_decay,
            batch_size=s.batch_size,
            seed=seed,
            progress=False,
        )
        _fix_bn_train_all(net)
        _all_layers(net, splits, s, LOW, s.epochs - 1, "cosine", seed)
        record("syllabus_same_steps", net, t0)
    for arm, name in (("fine_tune_all", "fine_tune_all"), ("scratch", "scratch")):
        if arm in arms:
            t0 = time.perf_counter()
            net = _new(splits, seed, pretrained=name != "scratch")
            run_strategy(name, net, splits, s, seed=seed, progress=False)
            record(arm, net, t0)
    if "new_head_1e-4" in arms:
        t0 = time.perf_counter()
        net = _new(splits, seed)
        unfreeze(net)
        _all_layers(net, splits, s, LOW, s.epochs, "cosine", seed)
        record("new_head_1e-4", net, t0)
    if "bn_fixed_2e-3" in arms:
        t0 = time.perf_counter()
        net = _new(splits, seed)
        _fix_bn_train_all(net)
        _all_layers(net, splits, s, s.lr, s.epochs, s.schedule, seed)
        record("bn_fixed_2e-3", net, t0)
    out["_splits"] = splits
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--per-class", type=int, default=60)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 32 px, 20 per class, 2 epochs")
    p.add_argument("--note", default="", help="a remark stored with the numbers (e.g. what else loaded the machine)")
    p.add_argument("--write", action="store_true", help=f"rewrite {OUT.relative_to(OUT.parents[2])}")
    a = p.parse_args(argv)
    if a.quick:
        a.seeds, a.size, a.per_class, a.epochs = 1, 32, 20, 2
    s = Settings(epochs=a.epochs, batch_size=32)  # lesson 3a's batches of 32; every other field Settings'
    start = time.perf_counter()
    per_seed = [run_seed(seed, s, a.size, a.per_class, a.arms) for seed in range(a.seeds)]
    val = {arm: stats([r[arm][0] for r in per_seed]) for arm in a.arms}
    secs = {arm: stats([r[arm][1] for r in per_seed]) for arm in a.arms}
    chosen = max(a.arms, key=lambda arm: val[arm]["mean"])  # on validation only
    test = []
    for r in per_seed:  # the chosen arm's models, scored on test once
        net = load_pretrained(
            "efficientnet_lite0", num_classes=r["_splits"].num_classes, pretrained=chosen != "scratch"
        )
        net.load_state_dict(r[chosen][2])
        test.append(evaluate(net, r["_splits"].test)["accuracy"])
    total = time.perf_counter() - start
    arms = {
        arm: {
            "what": ARMS[arm],
            "val_accuracy": val[arm],
            "seconds": {k: round(v, 1) if k != "per_seed" else [round(x, 1) for x in v] for k, v in secs[arm].items()},
        }
        for arm in a.arms
    }
    if "_head_only" in per_seed[0]:
        head_only = stats([r["_head_only"][0] for r in per_seed])
    else:
        head_only = None
    sp = per_seed[0]["_splits"]
    result = {
        "what": "lesson 3a's learning-rate arms over seeds (benchmarks/lr_story.py)",
        "task": {
            "model": "efficientnet_lite0 (ImageNet-pretrained, timm, offline), new 10-class head",
            "data": "digits",
            "image_size": a.size,
            "max_per_class": a.per_class,
            "train_val_test": [len(sp.train), len(sp.val), len(sp.test)],
            "epochs": a.epochs,
            "batch_size": s.batch_size,
            "optimizer": "AdamW",
            "weight_decay": s.weight_decay,
            "head_lr": s.head_lr,
            "head_epochs": s.head_epochs,
            "fine_tune_lr": s.lr,
            "scratch_lr": s.scratch_lr,
            "low_lr": LOW,
        },
        "seeds": list(range(a.seeds)),
        "seed_means": "seed s: data split seed s and training seed s (head init, shuffling)",
        "selection": "arm with the best mean validation accuracy; only its models scored on test",
        "arms": arms,
        "head_only_val_accuracy": head_only,
        "chosen": chosen,
        "chosen_test_accuracy": stats(test),
        **provenance(total, a.note, a.quick),
    }
    print(f"{'arm':20} {'val mean':>8} {'std':>6}  {'s/run':>6}")
    for arm in a.arms:
        print(f"{arm:20} {val[arm]['mean']:8.3f} {val[arm]['std']:6.3f}  {secs[arm]['mean']:6.1f}")
    if head_only:
        print(f"{'(head only)':20} {head_only['mean']:8.3f} {head_only['std']:6.3f}")
    print(
        f"chosen on validation: {chosen} -> test {result['chosen_test_accuracy']['mean']:.3f} "
        f"± {result['chosen_test_accuracy']['std']:.3f}; {total:.0f} s in all"
    )
    if a.write:
        write(OUT, result)
    return result


if __name__ == "__main__":
    main()
