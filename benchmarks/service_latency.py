"""Graded on submit: how long a student waits from *Submit* to feedback they can fetch.

    python benchmarks/service_latency.py                         # ps1 and ps4, 10 students at once, 2 jobs
    python benchmarks/service_latency.py --assignments ps1_parameters --students 20 --jobs 4

Builds a throw-away course from this repository (generate_assignment), turns grading on
submit on for the assignments (no attempt limits, owner check off: every submission is
this account's), starts ``ftlab serve --jobs N --poll 0.5`` (``FTLAB_FAST=1``), waits until
it is up (its "watching" line, then 10 s), then for each assignment puts ``--students`` copies of the instructor's answers into the exchange's
inbound folder at once, as ``nbgrader submit`` leaves them (the folder renamed into place
whole). A submission's latency ends when its feedback page is in the exchange's
``feedback/`` folder under its own hash -- what the student's *Fetch Feedback* finds.
Every page must give full marks, or the benchmark stops. Prints p50 / p95 / max per
assignment, then where the time went: the service's per-stage seconds of each submission
(``service/stages.jsonl``, :mod:`ftlab.grading.stages`), median and mean per stage. It
grades for minutes on all cores: run it on an otherwise idle machine (it prints the load
average before and after; other work on the machine shows there).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from grading import _env, answered_release  # noqa: E402 -- as in the class-throughput benchmark

POINTS = {"ps1_parameters": 10, "ps4_bert_head": 10}


def make_course(parent: Path, assignments: list[str]) -> Path:
    course = parent / "course"
    course.mkdir(parents=True)
    for name in assignments:
        shutil.copytree(ROOT / "solutions" / name, course / "solutions" / name)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    for name in assignments:
        cmd = [sys.executable, "-m", "nbgrader", "generate_assignment", name, "--force"]
        subprocess.run(cmd, cwd=course, env=_env(), check=True, capture_output=True)
    settings = "[service]\ncheck_owner = false\n[defaults]\nattempts_per_hour = 'unlimited'\n"
    settings += "attempts_per_day = 'unlimited'\n" + "".join(f"[assignments.{a}]\n" for a in assignments)
    (course / "grading_service.toml").write_text(settings)
    return course


def answered(course: Path, assignment: str) -> tuple[str, bytes]:
    """The released notebook with the instructor's answers in it: (notebook name, bytes)."""
    source, nb = answered_release(course, assignment)
    return source.stem, nbformat.writes(nb).encode()


def submit_all(
    exchange: Path, assignment: str, notebook: str, data: bytes, n: int
) -> dict[str, tuple[str, float, str]]:
    """``n`` submissions at once; student -> (feedback file name, time submitted, submission name)."""
    from nbgrader.utils import notebook_hash

    inbound = exchange / "ftlab" / "inbound"
    staging = exchange / "staging"
    inbound.mkdir(parents=True, exist_ok=True)
    staging.mkdir(exist_ok=True)
    out = {}
    for i in range(n):
        student = f"student{i:03d}"
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
        name = f"{student}+{assignment}+{stamp}+{secrets.token_urlsafe(6)}"
        secret = secrets.token_hex(64)
        folder = staging / name
        folder.mkdir()
        (folder / f"{notebook}.ipynb").write_bytes(data)
        (folder / "timestamp.txt").write_text(stamp)
        (folder / "submission_secret.txt").write_text(secret)
        os.rename(folder, inbound / name)
        out[student] = (f"{notebook_hash(secret=secret, notebook_id=notebook)}.html", time.monotonic(), name)
    return out


def wait_for_feedback(exchange: Path, pending: dict[str, tuple[str, float, str]], timeout: float) -> dict[str, float]:
    feedback = exchange / "ftlab" / "feedback"
    latency: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(latency) < len(pending):
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(latency)} of {len(pending)} feedback pages after {timeout:.0f} s")
        for student, (page, t0, _) in pending.items():
            if student not in latency and (feedback / page).exists():
                latency[student] = time.monotonic() - t0
        time.sleep(0.1)
    return latency


def stage_seconds(course: Path, pending: dict[str, tuple[str, float, str]]) -> list[dict[str, float]]:
    """The service's stage seconds of these submissions (service/stages.jsonl), one dict each."""
    names = {name for _, _, name in pending.values()}
    path = course / "service" / "stages.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []  # a service older than the stage log: none
    found = [json.loads(line) for line in lines]
    return [x["seconds"] for x in found if x["name"] in names]


def stage_table(per_submission: list[dict[str, float]]) -> list[tuple[str, float, float]]:
    """(stage, median, mean) over the submissions, in the order the stages happen; a missing stage counts 0."""
    order: list[str] = []
    for seconds in per_submission:
        order += [label for label in seconds if label not in order]
    return [
        (label, statistics.median(v), statistics.mean(v))
        for label in order
        for v in [[seconds.get(label, 0.0) for seconds in per_submission]]
    ]


def full_marks(exchange: Path, pending: dict[str, tuple[str, float, str]], points: int) -> None:
    for student, (page, _, _) in pending.items():
        text = (exchange / "ftlab" / "feedback" / page).read_text()
        if f"Your result: {points} / {points} points" not in text:
            raise SystemExit(f"{student}'s feedback is not full marks: the benchmark measured something else")


def wait_until_up(log: Path, service: subprocess.Popen, warm_up: float = 10.0) -> None:
    """Until the service says it is watching, then ``warm_up`` s more: in a class it has been running for hours."""
    deadline = time.monotonic() + 300
    while "ftlab serve: watching" not in log.read_text():
        if service.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"ftlab serve did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    time.sleep(warm_up)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assignments", nargs="+", default=list(POINTS))
    parser.add_argument("--students", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--cold-start", action="store_true", help="ftlab serve --cold-start (for comparison)")
    args = parser.parse_args()
    rows, stages = [], {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ftlab-service-bench-") as tmp:
        course, exchange = make_course(Path(tmp), args.assignments), Path(tmp) / "exchange"
        env = {**_env(), "FTLAB_FAST": "1"}
        cmd = [sys.executable, "-m", "ftlab", "serve", f"--course={course}", f"--exchange={exchange}"]
        log = open(Path(tmp) / "serve.log", "w")  # noqa: SIM115 -- open for the service's life
        cmd += [f"--jobs={args.jobs}", "--poll=0.5", *(["--cold-start"] if args.cold_start else [])]
        service = subprocess.Popen(cmd, env=env, stderr=log, stdout=log)
        try:
            wait_until_up(Path(tmp) / "serve.log", service)
            for assignment in args.assignments:
                notebook, data = answered(course, assignment)
                pending = submit_all(exchange, assignment, notebook, data, args.students)
                latency = list(wait_for_feedback(exchange, pending, args.timeout).values())
                full_marks(exchange, pending, POINTS.get(assignment, 10))
                rows.append((assignment, percentile(latency, 0.5), percentile(latency, 0.95), max(latency)))
                stages[assignment] = stage_table(stage_seconds(course, pending))
        except SystemExit:
            log.flush()
            print("".join((Path(tmp) / "serve.log").read_text().splitlines(keepends=True)[-40:]), file=sys.stderr)
            raise
        finally:
            service.terminate()
            service.wait(30)
            log.close()
    cold = " --cold-start" if args.cold_start else ""
    print(f"\n{args.students} students submitting at once, ftlab serve --jobs {args.jobs}{cold}, FTLAB_FAST=1")
    print(f"load average (1 min) before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs")
    print(f"{'assignment':<16} {'p50 s':>7} {'p95 s':>7} {'max s':>7}")
    for assignment, p50, p95, worst in rows:
        print(f"{assignment:<16} {p50:>7.0f} {p95:>7.0f} {worst:>7.0f}")
    for assignment, table in stages.items():
        if not table:
            print(f"\n{assignment}: no per-stage seconds (the service writes no service/stages.jsonl)")
            continue
        print(f"\n{assignment}: seconds per stage of one submission (median, mean over {args.students})")
        for label, median, mean in table:
            print(f"  {label:<18} {median:>6.1f} {mean:>6.1f}")
        print(f"  {'total':<18} {'':>6} {sum(mean for _, _, mean in table):>6.1f}")


if __name__ == "__main__":
    main()
