"""Class throughput of ``ftlab grade``: submissions per minute at 1 and N jobs and on a Dask cluster.

    python benchmarks/grading.py                        # ps1, 20 submissions: 1 job, 2 jobs, 2 Dask workers
    python benchmarks/grading.py --assignment ps4_bert_head --submissions 12 --jobs 1 2 4 --dask-workers 0

Builds a throw-away course from this repository (generate_assignment), puts N
copies of the instructor's solution in ``submitted/``, grades them with
``ftlab grade --fast`` at each job count and prints a table. Every run must grade
every submission with full marks, or the benchmark stops.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def make_course(parent: Path, assignment: str, n: int) -> Path:
    course = parent / "course"
    course.mkdir()
    shutil.copytree(ROOT / "solutions", course / "solutions")
    shutil.copy(ROOT / "nbgrader_config.py", course)
    cmd = [sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force"]
    subprocess.run(cmd, cwd=course, env=_env(), check=True, capture_output=True)
    source = next((course / "solutions" / assignment).glob("*.ipynb"))
    release = nbformat.read(course / "exercises" / assignment / source.name, as_version=4)
    answers = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in nbformat.read(source, as_version=4).cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }
    for cell in release.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") in answers:
            cell.source = answers[cell.metadata["nbgrader"]["grade_id"]]
    for i in range(n):
        folder = course / "submitted" / f"student{i:03d}" / assignment
        folder.mkdir(parents=True)
        nbformat.write(release, folder / source.name)
    return course


def grade(course: Path, assignment: str, *options: str) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "ftlab", "grade", assignment, "--fast", "--force", *options]
    proc = subprocess.run(cmd, cwd=course, env=_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stdout + proc.stderr)
    with open(course / "reports" / f"{assignment}.csv") as fh:
        return seconds, list(csv.DictReader(fh))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assignment", default="ps1_parameters")
    parser.add_argument("--submissions", type=int, default=20)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dask-workers", type=int, default=2, help="local Dask cluster size (0: skip)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # for the Dask workers too: kernels share the cores
    with tempfile.TemporaryDirectory() as tmp:
        course = make_course(Path(tmp), args.assignment, args.submissions)
        print(f"{args.assignment}: {args.submissions} submissions, {os.cpu_count()} CPU cores, FTLAB_FAST=1")
        print(f"{'how':<16}  {'seconds':>8}  {'per minute':>10}  {'s / submission':>14}")
        runs = [(f"{jobs} local job(s)", [f"--jobs={jobs}"]) for jobs in args.jobs]
        cluster = None
        if args.dask_workers:
            from distributed import LocalCluster

            cluster = LocalCluster(n_workers=args.dask_workers, threads_per_worker=1, dashboard_address=None)
            runs.append((f"Dask, {args.dask_workers} workers", [f"--scheduler={cluster.scheduler_address}"]))
        try:
            for how, options in runs:
                seconds, rows = grade(course, args.assignment, *options)
                bad = [r for r in rows if r["status"] != "graded" or r["score"] != r["max_score"]]
                if bad or len(rows) != args.submissions:
                    raise SystemExit(f"not every submission got full marks: {bad[:3]}")
                rate = 60 * args.submissions / seconds
                print(f"{how:<16}  {seconds:>8.1f}  {rate:>10.1f}  {seconds / args.submissions:>14.1f}")
        finally:
            if cluster is not None:
                cluster.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
