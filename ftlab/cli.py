"""Command line: ``ftlab compare`` (the strategy comparison), ``ftlab grade`` (autograde a class),
``ftlab collect`` (collect submissions without following links), ``ftlab policy`` (a student's
own-work check before submitting), ``ftlab check`` (a self-paced student grades their copy: a feedback
page), ``ftlab serve`` (the grading service: graded on submit) and ``ftlab report`` (an instructor's overview of a graded assignment)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from .strategies import STRATEGIES, compare, results_table, save_results

# --quick: a smoke run in well under a minute (CI, first try on a new machine).
QUICK = dict(epochs=1, head_epochs=5)
QUICK_MAX_PER_CLASS = 20


def build_parser() -> argparse.ArgumentParser:
    """The ``ftlab`` command's parser: one subcommand per tool, each grading tool's options from its own module.

    >>> args = build_parser().parse_args(["compare", "--dataset", "lfw_faces", "--quick"])
    >>> args.command, args.model, args.dataset, args.quick, args.image_size
    ('compare', 'efficientnet_lite0', 'lfw_faces', True, 48)
    """
    parser = argparse.ArgumentParser(prog="ftlab", description="Fine-tuning lab tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="compare fine-tuning strategies: accuracy vs compute")
    c.add_argument("--model", default="efficientnet_lite0", help="efficientnet_lite0 (default) or minilm")
    c.add_argument("--dataset", default="digits", help="digits (default), photo_patches, lfw_faces, vader_words, ...")
    c.add_argument("--strategies", help=f"comma-separated subset of {','.join(STRATEGIES)}")
    c.add_argument("--epochs", type=int, help="fine-tuning epochs per strategy")
    c.add_argument("--lr", type=float, help="fine-tuning learning rate")
    c.add_argument("--image-size", type=int, default=48, help="input side in pixels (default 48)")
    c.add_argument("--max-per-class", type=int, help="subsample the data set (small-data experiments)")
    c.add_argument("--seed", type=int, default=0, help="data split seed, and the first training seed")
    c.add_argument(
        "--seeds", type=int, default=1, help="train each strategy with N seeds: mean ± std, selection on validation"
    )
    c.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    c.add_argument("--out", default="runs/compare", help="folder for results.csv and results.png")
    c.add_argument("--quick", action="store_true", help="tiny smoke run: 1 epoch, 20 images per class")
    c.add_argument("--no-progress", action="store_true", help="no progress bars")
    g = sub.add_parser("grade", help="autograde a class: sandboxed, N submissions at a time (ftlab.grading.driver)")
    from .grading.driver import build_parser as grade_parser

    grade_parser(g)
    k = sub.add_parser("collect", help="nbgrader collect that never follows a link in the exchange")
    k.add_argument("assignment")
    p = sub.add_parser("policy", help="check your notebook against the exercise's rules before you submit")
    from .grading.policy import build_parser as policy_parser

    policy_parser(p)
    s = sub.add_parser("check", help="grade your copy of an exercise (full checks, sandboxed) into a feedback page")
    from .grading.selfcheck import build_parser as check_parser

    check_parser(s)
    r = sub.add_parser("report", help="an assignment's graded class at a glance: reports/ASSIGNMENT.html and .png")
    from .grading.report import build_parser as report_parser

    report_parser(r)
    v = sub.add_parser("serve", help="the grading service: grade each submission on submit, release its feedback")
    from .grading.service import build_parser as serve_parser

    serve_parser(v)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ftlab`` command on ``argv`` (default ``sys.argv[1:]``); return its exit status.

    ``compare`` prints the results table and writes ``results.csv`` and
    ``results.png`` under ``--out``; the other subcommands hand over to the
    grading engine. A bad argument is an error message on stderr and status 2,
    found before any model or data is loaded.

    >>> main(["compare", "--model", "vgg16"])  # stderr: ftlab compare: error: unknown model 'vgg16'; ...
    2
    """
    args, extra = build_parser().parse_known_args(argv)
    if args.command == "grade":
        from .grading.driver import run_cli

        return run_cli(args, extra)
    if args.command == "collect":
        from .grading.intake import collect

        return collect(args.assignment, extra)
    if args.command == "serve":
        if extra:
            build_parser().error(f"unrecognized arguments: {' '.join(extra)}")
        from .grading.service import run_cli as run_serve

        return run_serve(args)
    if args.command == "policy":
        from .grading.policy import run_cli as run_policy

        return run_policy(args)
    if args.command in ("check", "report"):
        if extra:
            build_parser().error(f"unrecognized arguments: {' '.join(extra)}")
        from .grading import report, selfcheck

        return (selfcheck if args.command == "check" else report).run_cli(args)
    if extra:
        build_parser().error(f"unrecognized arguments: {' '.join(extra)}")
    # compare() picks image or text defaults from the model it loads; these replace some of them.
    overrides = dict(QUICK) if args.quick else {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.lr is not None:
        overrides["lr"] = args.lr
    try:
        strategies = args.strategies.split(",") if args.strategies else None
        start = time.perf_counter()
        results = compare(
            args.model,
            args.dataset,
            strategies=strategies,
            overrides=overrides,
            image_size=args.image_size,
            max_per_class=args.max_per_class or (QUICK_MAX_PER_CLASS if args.quick else None),
            seed=args.seed,
            seeds=args.seeds,
            device=args.device,
            progress=not args.no_progress,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"ftlab compare: error: {e}", file=sys.stderr)
        return 2
    print()
    print(results_table(results))
    csv_path, png_path = save_results(results, args.out)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    print(f"wrote {csv_path} and {png_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
