"""The GPU check: run it whenever a session has a CUDA GPU, and record the table it prints.

1. ``fit`` against a hand-written loop with AMP and channels-last (as in
   ``bench_fit.py``), in the dtype :func:`ftlab.train.amp_dtype` picks for this
   GPU -- bf16 on compute capability >= 8.0, fp16 with a GradScaler below;
2. ``fit`` with each precision it can be asked for (``amp=False``, ``"fp16"``,
   ``"bf16"`` where native), to show they all train;
3. ``ftlab compare --device cuda`` (all strategies, ``--seeds``), end to end.

Refuses to run without CUDA. Run::

    .venv/bin/python benchmarks/gpu.py [--seeds 3] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fit import compare_trainers, make_data  # noqa: E402

from ftlab.cli import main as ftlab_main  # noqa: E402
from ftlab.train import amp_dtype, fit  # noqa: E402


def precision_rows(device: torch.device) -> list[str]:
    """fit on a small CNN with each precision: final train loss and throughput."""
    import timm

    rows = []
    data = make_data(1024, 64)
    native_bf16 = amp_dtype(device, True) is torch.bfloat16
    for amp in (False, "fp16", "bf16") if native_bf16 else (False, "fp16"):
        torch.manual_seed(0)
        model = timm.create_model("tf_efficientnet_lite0", num_classes=10)
        h = fit(
            model,
            data,
            epochs=2,
            lr=1e-3,
            batch_size=128,
            amp=amp,
            channels_last=True,
            device=device,
            grad_clip=1.0,
            progress=False,
        )
        loss = h.column("train_loss")
        rows.append(
            f"| fit amp={amp!s:<5} | loss {loss[0]:.3f} -> {loss[-1]:.3f} | {h.epochs[-1]['samples_per_s']:8.0f} img/s |"
        )
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description="ftlab on a CUDA GPU: fit vs a hand loop with AMP, and ftlab compare.")
    p.add_argument("--seeds", type=int, default=3, help="seeds for ftlab compare")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--size", type=int, default=64, help="image side for the fit vs hand-loop throughput")
    p.add_argument("--out", default="runs/gpu", help="folder for compare's results.csv/png and the table")
    p.add_argument("--skip-compare", action="store_true")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print(
            "benchmarks/gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); nothing was run.", file=sys.stderr
        )
        return 2
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    cap = torch.cuda.get_device_capability(device)
    dtype = amp_dtype(device, True)
    lines = [
        f"GPU: {name} (compute capability {cap[0]}.{cap[1]}), torch {torch.__version__}, "
        f"fit's AMP dtype: {dtype} {'(+ GradScaler)' if dtype is torch.float16 else ''}",
        "",
    ]
    rates = compare_trainers(device, args.size, 4096, 128, 2, args.repeats)
    hand, ours = statistics.median(rates["hand"]), statistics.median(rates["fit"])
    lines += [
        f"| trainer (EfficientNet-Lite0, {args.size} px, batch 128, AMP + channels-last) | img/s (median of {args.repeats}) |",
        "|---|---|",
        f"| hand-written loop | {hand:.0f} |",
        f"| ftlab fit | {ours:.0f} |",
        f"| ratio fit / hand | {ours / hand:.3f} |",
        "",
        "| precision | train loss | throughput |",
        "|---|---|---|",
        *precision_rows(device),
        "",
    ]
    print("\n".join(lines), flush=True)
    if not args.skip_compare:
        buf = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(buf):
            code = ftlab_main(
                ["compare", "--device", "cuda", "--seeds", str(args.seeds), "--out", args.out, "--no-progress"]
            )
        table = buf.getvalue()
        lines += [
            f"ftlab compare --device cuda --seeds {args.seeds}: exit {code}, {time.perf_counter() - start:.0f} s",
            "```",
            table.strip(),
            "```",
        ]
        print("\n".join(lines[-4:]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'gpu.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
