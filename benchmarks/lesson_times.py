"""Each lesson's run time, top to bottom: the seconds the lessons' first cells cite.

``lessons/measured/lesson_times.json`` holds, per mode (``full``: the lessons' real settings; ``fast``:
``FTLAB_FAST=1``) and per lesson (its file name without ``.ipynb``), the seconds of one run with the machine,
the date and where the number came from. A lesson is timed the way the website build and ``make lessons-full``
run it (``docs/build_site.py``: nbclient, kernel ``python3``, one torch thread), from the first cell to the
last. :func:`record` merges one lesson's entry and keeps the others, so timing one lesson rewrites one entry:

* ``make lessons-full`` (``tests/test_lessons.py`` with ``FTLAB_LESSONS_FULL=1``) records every lesson it ran
  in full mode, ``make lessons-full K=...`` the one it ran;
* ``python benchmarks/lesson_times.py [--fast] [LESSON ...]`` runs lessons (default: all) and records them.

``tests/test_measured.py`` then fails wherever a lesson's first cell no longer agrees with the file. The seconds
depend on the machine and on what else loads it: the entries say which machine, and its load average after the
run (the 1-minute mean; above the core count means the lesson shared the CPU).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "lessons" / "measured" / "lesson_times.json"
MODES = ("full", "fast")
HEADER = {
    "what": "each lesson's run time top to bottom in seconds, one run per entry (benchmarks/lesson_times.py)",
    "how": "nbclient, kernel python3, one torch thread (OMP_NUM_THREADS=1), as docs/build_site.py and "
    "make lessons-full run them; full: the lessons' settings, fast: FTLAB_FAST=1",
    "gpu": "not measured",
}


def machine() -> str:
    return f"{platform.machine()} {platform.processor() or ''}".strip() + f", {os.cpu_count()} CPUs"


def load(path: Path = OUT) -> dict:
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    return {**HEADER, **data, **{m: data.get(m, {}) for m in MODES}}


def record(lesson: str, mode: str, seconds: float, source: str, path: Path = OUT) -> dict:
    """Merge one lesson's run time into ``path`` (other lessons and modes kept); the entry written."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if lesson.endswith(".ipynb") or not (ROOT / "lessons" / f"{lesson}.ipynb").exists():
        raise ValueError(f"{lesson!r} is not the name of a lesson in lessons/ (without .ipynb)")
    entry = {
        "seconds": round(float(seconds), 1),
        "machine": machine(),
        "load_average": round(os.getloadavg()[0], 2),
        "date": datetime.date.today().isoformat(),
        "source": source,
    }
    data = load(path)
    data[mode] = dict(sorted({**data[mode], lesson: entry}.items()))
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return entry


def _build_site():
    spec = importlib.util.spec_from_file_location("build_site", ROOT / "docs" / "build_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("lessons", nargs="*", help="lesson names (default: every lesson), e.g. 03b_layerwise_rates")
    p.add_argument("--fast", action="store_true", help="FTLAB_FAST=1 (default: the full settings)")
    p.add_argument("--note", default="", help="a remark stored with each entry (what else loaded the machine)")
    p.add_argument("--keep", type=Path, help="also write each executed notebook into this folder")
    a = p.parse_args(argv)
    build_site = _build_site()
    names = a.lessons or sorted(q.stem for q in (ROOT / "lessons").glob("*.ipynb"))
    mode = "fast" if a.fast else "full"
    failed = 0
    for name in names:
        path = ROOT / "lessons" / f"{name.removesuffix('.ipynb')}.ipynb"
        try:
            ran, seconds = build_site.execute_lesson(path, fast=a.fast)
        except Exception as e:  # the others still run; a failed run records nothing
            print(f"{path.stem}: FAILED\n{e}", flush=True)
            failed += 1
            continue
        if a.keep:
            a.keep.mkdir(parents=True, exist_ok=True)
            nbformat.write(ran, a.keep / path.name)
        source = "benchmarks/lesson_times.py" + (f"; {a.note}" if a.note else "")
        entry = record(path.stem, mode, seconds, source)
        print(f"{path.stem}: {entry['seconds']} s ({mode}, load average {entry['load_average']})", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
