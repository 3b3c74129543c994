"""Lesson 4's near vs far targets over several seeds: the numbers its domain-shift prose cites.

EfficientNet-Lite0 pretrained on ImageNet at 224 px, a new head, three strategies
(``ftlab.strategies.run_strategy`` with the course's :class:`~ftlab.strategies.Settings`,
batches of 32, ``--epochs`` epochs, every other field the defaults) on two small targets:

* **near** -- ``photo_patches``: 48 x 48 colour patches of seven everyday photographs,
  which photo a patch comes from; train/val/test from disjoint blocks of each photo;
* **far** -- ``digits``: scikit-learn's 8 x 8 grayscale scans of handwritten digits.

Both are given 15 training, 15 validation and 15 test images per class
(``max_per_class=45``, ``val_fraction = test_fraction = 1/3``): 105 of each on the
near target (7 classes), 150 on the far one (10). Small data on both: the tree's
upper row, where it and the domain-shift table disagree -- the tree says top layers
only for a small far target (``fine_tune_top``, k = ``Settings.top_k`` = 3 groups),
the table says most or all (``fine_tune_all``), same rates and epochs. The far
target's two rows *are* that comparison (``tree_vs_table``).

Inputs are resized to ``--size`` (96) px: the network was pretrained at 224, and a
32-px input is a domain shift of its own. ``feature_extraction_32px`` measures how
much: the same frozen features and head, inputs at 32 px.

Each seed ``s`` draws its own split (``load_dataset(..., seed=s)``) and trains with
``s`` (the new head's init, shuffling), so the spread covers both. Nothing is chosen
on test: on each target the arm with the best mean *validation* accuracy is chosen,
and its test accuracy is the one to quote; the others' test accuracies are stored
for reference. ``python benchmarks/near_far.py`` prints the table; ``--write``
rewrites ``lessons/measured/near_far.json``, which lesson 4 cites
(``tests/test_measured.py`` keeps them in step). ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from measured import provenance, stats, write

from ftlab.data import load_dataset
from ftlab.models import ImagePreprocess, load_pretrained
from ftlab.strategies import Settings, run_strategy
from ftlab.utils import seed_everything

OUT = Path(__file__).resolve().parents[1] / "lessons" / "measured" / "near_far.json"
TARGETS = {"near": "photo_patches", "far": "digits"}
STRATEGIES = ("feature_extraction", "fine_tune_top", "fine_tune_all")
LOW_RES = 32  # lesson 4's old input size, for the resolution arm

ARMS = {
    "feature_extraction": "new head only, on cached frozen features (Settings.head_epochs at Settings.head_lr)",
    "fine_tune_top": "top Settings.top_k (3) groups incl. the head, at Settings.lr, one-cycle (the tree's answer)",
    "fine_tune_all": "every layer at Settings.lr, one-cycle (the domain-shift table's answer for a far target)",
    "feature_extraction_32px": "feature_extraction with inputs at 32 px instead of --size: resolution alone",
}


def _splits(name: str, size: int, seed: int, per_class: int):
    pre = load_pretrained("efficientnet_lite0").preprocess
    third = 1 / 3  # 15 / 15 / 15 per class from max_per_class=45
    return load_dataset(
        name,
        preprocess=ImagePreprocess(size, pre.mean, pre.std),
        seed=seed,
        max_per_class=3 * per_class,
        val_fraction=third,
        test_fraction=third,
    )


def _run(name: str, splits, s: Settings, seed: int) -> tuple[float, float, float]:
    seed_everything(seed)  # the new head's init depends on the seed only, not on what ran before
    net = load_pretrained("efficientnet_lite0", num_classes=splits.num_classes)
    r = run_strategy(name, net, splits, s, seed=seed, progress=False)
    return r.val_accuracy, r.test_accuracy, r.seconds


def run_seed(seed: int, s: Settings, size: int, per_class: int) -> dict[str, dict[str, tuple[float, float, float]]]:
    """``{target: {arm: (val accuracy, test accuracy, seconds)}}`` for one seed."""
    out: dict[str, dict] = {}
    for target, name in TARGETS.items():
        splits = _splits(name, size, seed, per_class)
        out[target] = {"_sizes": (len(splits.train), len(splits.val), len(splits.test))}
        for arm in STRATEGIES:
            out[target][arm] = _run(arm, splits, s, seed)
            val, test, sec = out[target][arm]
            print(f"seed {seed} {target} {arm:24} val {val:.4f} test {test:.4f} {sec:6.1f} s", flush=True)
        low = _splits(name, LOW_RES, seed, per_class)
        out[target]["feature_extraction_32px"] = _run("feature_extraction", low, s, seed)
        print(f"seed {seed} {target} {'feature_extraction_32px':24} val {out[target]['feature_extraction_32px'][0]:.4f}",
              flush=True)
    return out


def _summary(per_seed: list[dict], target: str) -> dict:
    arms = {}
    for arm in (*STRATEGIES, "feature_extraction_32px"):
        rows = [r[target][arm] for r in per_seed]
        arms[arm] = {
            "what": ARMS[arm],
            "val_accuracy": stats([v for v, _, _ in rows]),
            "test_accuracy_for_reference": stats([t for _, t, _ in rows]),
            "seconds": stats([sec for _, _, sec in rows], 1),
        }
    chosen = max(STRATEGIES, key=lambda arm: arms[arm]["val_accuracy"]["mean"])  # on validation only
    return {
        "data": TARGETS[target],
        "train_val_test": list(per_seed[0][target]["_sizes"]),
        "arms": arms,
        "chosen": chosen,
        "chosen_test_accuracy": arms[chosen]["test_accuracy_for_reference"],
    }


def _paired(per_seed: list[dict], target: str, a: str, b: str) -> dict:
    """``b`` minus ``a``, seed by seed (same split, same seed), on validation and on test."""
    out = {}
    for key, i in (("val", 0), ("test", 1)):
        diffs = [r[target][b][i] - r[target][a][i] for r in per_seed]
        diff = stats(diffs)
        diff["within_spread"] = abs(diff["mean"]) <= diff["std"]  # |mean difference| <= its std over seeds
        out[key] = diff
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--per-class", type=int, default=15, help="training images per class (as many for val and test)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 32 px, 5 per class, 1 epoch")
    p.add_argument("--note", default="", help="a remark stored with the numbers (e.g. what else loaded the machine)")
    p.add_argument("--write", action="store_true", help=f"rewrite {OUT.relative_to(OUT.parents[2])}")
    a = p.parse_args(argv)
    if a.quick:
        a.seeds, a.size, a.per_class, a.epochs = 1, 32, 5, 1
    s = Settings(epochs=a.epochs, batch_size=32)  # every other field the course's defaults
    start = time.perf_counter()
    per_seed = [run_seed(seed, s, a.size, a.per_class) for seed in range(a.seeds)]
    targets = {t: _summary(per_seed, t) for t in TARGETS}
    total = time.perf_counter() - start
    result = {
        "what": "lesson 4's near vs far targets over seeds (benchmarks/near_far.py)",
        "task": {
            "model": "efficientnet_lite0 (ImageNet-pretrained at 224 px, timm, offline), new head",
            "image_size": a.size,
            "low_res_image_size": LOW_RES,
            "per_class": {"train": a.per_class, "val": a.per_class, "test": a.per_class},
            "epochs": a.epochs,
            "batch_size": s.batch_size,
            "optimizer": "AdamW",
            "lr": s.lr,
            "schedule": s.schedule,
            "weight_decay": s.weight_decay,
            "head_lr": s.head_lr,
            "head_epochs": s.head_epochs,
            "top_k": s.top_k,
        },
        "seeds": list(range(a.seeds)),
        "seed_means": "seed s: data split seed s and training seed s (head init, shuffling)",
        "selection": "per target, the strategy with the best mean validation accuracy; its test accuracy is quoted",
        "targets": targets,
        # The tree (small data, different domain -> top layers) against the domain-shift table (far -> all layers).
        "tree_vs_table": {
            "data": "far",
            "tree": "fine_tune_top",
            "table": "fine_tune_all",
            "all_minus_top": _paired(per_seed, "far", "fine_tune_top", "fine_tune_all"),
        },
        # What the tree says for a small near target: feature extraction; is fine-tuning everything better there?
        "near_all_minus_feature_extraction": _paired(per_seed, "near", "feature_extraction", "fine_tune_all"),
        "far_all_minus_feature_extraction": _paired(per_seed, "far", "feature_extraction", "fine_tune_all"),
        **provenance(total, a.note, a.quick),
    }
    for t, summary in targets.items():
        print(f"\n{t} ({summary['data']}, train/val/test {summary['train_val_test']}, {a.size} px, {a.seeds} seeds)")
        print(f"{'arm':24} {'val mean ± std':>16} {'test mean ± std':>16} {'s/run':>6}")
        for arm, row in summary["arms"].items():
            v, te = row["val_accuracy"], row["test_accuracy_for_reference"]
            print(f"{arm:24} {v['mean']:8.3f} ± {v['std']:.3f} {te['mean']:8.3f} ± {te['std']:.3f} "
                  f"{row['seconds']['mean']:6.1f}")
        c = summary["chosen_test_accuracy"]
        print(f"chosen on validation: {summary['chosen']} -> test {c['mean']:.3f} ± {c['std']:.3f}")
    d = result["tree_vs_table"]["all_minus_top"]["val"]
    print(f"\nfar, all minus top (table minus tree), validation: {d['mean']:+.3f} ± {d['std']:.3f}; {total:.0f} s in all")
    if a.write:
        write(OUT, result)
    return result


if __name__ == "__main__":
    main()
