"""What the measured-number benchmarks share: seed statistics, where and when they ran, writing the file.

``lr_story.py`` and ``near_far.py`` write ``lessons/measured/*.json``, which the lessons' prose cites
(``tests/test_measured.py``); the fields below are the ones that test requires of every such file.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
from pathlib import Path

import torch


def stats(values: list[float], digits: int = 4) -> dict:
    """Per-seed values, mean and sample std (0 for a single seed), rounded as the JSON keeps them."""
    return {
        "per_seed": [round(v, digits) for v in values],
        "mean": round(statistics.mean(values), digits),
        "std": round(statistics.stdev(values), digits) if len(values) > 1 else 0.0,
    }


def provenance(total: float, note: str, quick: bool) -> dict:
    """Wall time, machine, torch and its threads, date and load: a number is read with where it came from."""
    return {
        "wall_seconds": round(total, 1),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", {os.cpu_count()} CPUs",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "date": datetime.date.today().isoformat(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "note": note,
        "quick": quick,
    }


def write(out: Path, result: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
