"""Throughput of ftlab.train.fit against a hand-written PyTorch loop.

Same model (timm tf_efficientnet_lite0), same data, batch size, optimizer and
schedule; the only difference is the trainer. On CUDA both use autocast in
the dtype :func:`ftlab.train.amp_dtype` picks for the GPU (bf16 where native,
else fp16 with a GradScaler) and channels-last. Run:

    .venv/bin/python benchmarks/bench_fit.py [--size 32] [--n 1024] [--repeats 3]

and record the printed ratio (fit / hand loop, higher is better) in the issue.
Not a test: timings vary with the machine's load.
"""

from __future__ import annotations

import argparse
import statistics
import time

import timm
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ftlab.train import amp_dtype, fit, schedule_factor
from ftlab.utils import get_device, seed_everything


def make_data(n: int, size: int, classes: int = 10) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, size, size, generator=g), torch.randint(0, classes, (n,), generator=g))


def hand_loop(model, data, epochs, batch_size, lr, device, amp, channels_last) -> float:
    """The loop a tutorial would write, with the same optimizer and per-step schedule."""
    seed_everything(0)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    loader = DataLoader(
        data,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
        pin_memory=device.type == "cuda",
    )
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    total = epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: schedule_factor("onecycle", s, total))
    dtype = amp_dtype(device, amp)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = nn.functional.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return epochs * len(data) / (time.perf_counter() - start)


def ftlab_fit(model, data, epochs, batch_size, lr, device, amp, channels_last) -> float:
    h = fit(
        model,
        data,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        schedule="onecycle",
        device=device,
        amp=amp,
        channels_last=channels_last,
        progress=False,
    )
    return epochs * len(data) / h.total_time


def compare_trainers(device, size: int, n: int, batch_size: int, epochs: int, repeats: int) -> dict[str, list[float]]:
    """Images per second of each trainer, ``repeats`` runs each, interleaved."""
    cuda = device.type == "cuda"
    data = make_data(n, size)
    rates: dict[str, list[float]] = {"hand": [], "fit": []}
    # one untimed warm-up (allocator, kernels, caches) so the first timed run is not penalised
    hand_loop(timm.create_model("tf_efficientnet_lite0", num_classes=10), data, 1, batch_size, 1e-3, device, cuda, cuda)
    # interleave the two so that drifting machine load hits both alike
    for _ in range(repeats):
        for name, run in (("hand", hand_loop), ("fit", ftlab_fit)):
            torch.manual_seed(0)
            model = timm.create_model("tf_efficientnet_lite0", num_classes=10)
            rates[name].append(run(model, data, epochs, batch_size, 1e-3, device, cuda, cuda))
    return rates


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device")
    args = p.parse_args()
    device = get_device(args.device)
    cuda = device.type == "cuda"
    rates = compare_trainers(device, args.size, args.n, args.batch_size, args.epochs, args.repeats)
    hand, ours = statistics.median(rates["hand"]), statistics.median(rates["fit"])
    print(
        f"device={device} size={args.size} n={args.n} batch={args.batch_size} epochs={args.epochs} "
        f"amp+channels_last={cuda} threads={torch.get_num_threads()}"
    )
    print(f"hand loop : {hand:8.1f} img/s  (runs: {', '.join(f'{r:.1f}' for r in rates['hand'])})")
    print(f"ftlab fit : {ours:8.1f} img/s  (runs: {', '.join(f'{r:.1f}' for r in rates['fit'])})")
    print(f"ratio fit/hand = {ours / hand:.3f}")


if __name__ == "__main__":
    main()
