"""Class throughput of ``ftlab grade``, and the grader's memory under hostile submissions.

    python benchmarks/grading.py                        # ps1, 20 submissions: 1 job, 2 jobs, 2 Dask workers
    python benchmarks/grading.py --assignment ps4_bert_head --submissions 12 --jobs 1 2 4 --dask-workers 0
    python benchmarks/grading.py --memory-only          # only the memory table

Memory: one honest ps1 submission and hostile ones are graded one at a time while the
peak resident memory of the grading process (``nbgrader autograde``, where the checks
run; the student's kernel is a separate sandboxed process) is sampled every 50 ms.

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


def answered_release(course: Path, assignment: str) -> tuple[Path, nbformat.NotebookNode]:
    """The released notebook with the instructor's answers in it, and the source notebook it came from."""
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
    return source, release


def make_course(parent: Path, assignment: str, n: int, hostile: dict[str, dict[str, str]] | None = None) -> Path:
    """A course with ``n`` copies of the instructor's answers, and ``hostile`` students' (answers replaced)."""
    course = parent / "course"
    course.mkdir(parents=True)
    shutil.copytree(ROOT / "solutions", course / "solutions")
    shutil.copy(ROOT / "nbgrader_config.py", course)
    cmd = [sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force"]
    subprocess.run(cmd, cwd=course, env=_env(), check=True, capture_output=True)
    source, release = answered_release(course, assignment)
    students = {f"student{i:03d}": {} for i in range(n)} | (hostile or {})
    for student, replaced in students.items():
        nb = nbformat.from_dict(release)
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in replaced:
                cell.source = replaced[grade_id]
        folder = course / "submitted" / student / assignment
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / source.name)
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


# ps1 answers that attack the grader's memory (with the instructor's answers for the rest)
HOSTILE = {
    # a reply just under the grader's read cap (128 MiB): 128 MB of float32 it must decode before the check fails
    "huge_reply": {"count_params": "import torch\ndef count_params(model):\n    return torch.zeros(32_000_000)\n"},
    # 200 MB: the sandbox may write it (256 MiB file limit), the grader refuses it unread (over its cap)
    "over_cap": {"count_params": "import torch\ndef count_params(model):\n    return torch.zeros(50_000_000)\n"},
    # one 400 MB output message: over the socket's message limit, dropped before it is read
    "huge_message": {
        "linear_params": "print('x' * 400_000_000)\ndef linear_params(n_in, n_out, bias=True):\n"
        "    return n_in * n_out + (n_out if bias else 0)\n"
    },
}


def peak_rss_while(proc: subprocess.Popen) -> float:
    """Peak RSS (MiB) of the `nbgrader autograde` processes under ``proc`` until it exits."""
    import psutil

    peak = 0
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            for child in root.children(recursive=True):
                try:
                    cmd = " ".join(child.cmdline())
                    if "nbgrader" in cmd and "autograde" in cmd:
                        peak = max(peak, child.memory_info().rss)
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        time.sleep(0.05)
    return peak / (1 << 20)


def memory_table(parent: Path) -> None:
    course = make_course(parent, "ps1_parameters", 1, hostile=HOSTILE)
    print("\nGrader memory, ps1 (one submission at a time, FTLAB_FAST=1):")
    print(f"{'submission':<14}  {'status':<10} {'score':>6}  {'peak MiB':>9}  {'above honest':>12}")
    honest = None
    for student in ["student000", *HOSTILE]:
        cmd = [sys.executable, "-m", "ftlab", "grade", "ps1_parameters", "--fast", "--force", f"--student={student}"]
        proc = subprocess.Popen(cmd, cwd=course, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak = peak_rss_while(proc)
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(out + err)
        with open(course / "reports" / "ps1_parameters.csv") as fh:
            (row,) = [r for r in csv.DictReader(fh) if r["student"] == student]
        honest = peak if honest is None else honest
        print(f"{student:<14}  {row['status']:<10} {float(row['score']):>6g}  {peak:>9.0f}  {peak - honest:>12.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assignment", default="ps1_parameters")
    parser.add_argument("--submissions", type=int, default=20)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dask-workers", type=int, default=2, help="local Dask cluster size (0: skip)")
    parser.add_argument("--memory-only", action="store_true", help="only the grader-memory table")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # for the Dask workers too: kernels share the cores
    with tempfile.TemporaryDirectory() as tmp:
        memory_table(Path(tmp) / "memory")
    if args.memory_only:
        return 0
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
