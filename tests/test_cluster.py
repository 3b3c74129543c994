"""Grading a class on a real dask.distributed cluster: a scheduler and two worker processes on this machine.

A worker is killed in the middle of a grade (the submission is graded elsewhere,
once), the scheduler goes away in the middle of a run (it stops with a clear message
and keeps what was graded), and a re-run grades only what changed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from course import env, make_toy_course, report, submit_copies
from procs import command_lines

ASSIGNMENT = "toy"
FULL = ["student000", "student001", "student002"]
UNTOUCHED = "student003"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _grade(course: Path, *args: str, extra_env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ftlab", "grade", ASSIGNMENT, *args],
        cwd=course,
        env=env(**(extra_env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _report(course: Path) -> dict[str, dict]:
    return report(course / "reports" / f"{ASSIGNMENT}.csv")


def _verbs(err: str) -> dict[str, int]:
    """How many submissions the driver graded and how many it only checked (unchanged)."""
    verbs = [line.split()[0] for line in err.splitlines() if line.startswith(("graded student", "checked student"))]
    return {v: verbs.count(v) for v in sorted(set(verbs))}


def _cluster():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    return cluster, Client(cluster)


def _nbgrader_processes() -> list[str]:
    return [cmd for cmd in command_lines().values() if "ftlab.grading.jobproc" in cmd and "--student=student" in cmd]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A toy course (a check that takes 4 s) with three right answers and one untouched copy; each test copies it."""
    from ftlab.grading.sandbox import check_available

    assert check_available() is None, check_available()
    course = make_toy_course(tmp_path_factory.mktemp("cluster"))
    submit_copies(course, ASSIGNMENT, {s: {} for s in FULL})  # the released copy + the solution cell's body
    (solution,) = (course / "source" / ASSIGNMENT).glob("*.ipynb")
    for student in FULL:  # the instructor's answer
        shutil.copy(solution, course / "submitted" / student / ASSIGNMENT / solution.name)
    submit_copies(course, ASSIGNMENT, {UNTOUCHED: {}})
    return course


@pytest.fixture
def course(template, tmp_path):
    """A fresh copy of the toy course: no test depends on what another one graded."""
    copy = tmp_path / "course"
    shutil.copytree(template, copy)
    return copy


def test_a_killed_worker_costs_a_regrade_elsewhere_never_a_double_entry(course):
    from nbgrader.api import Gradebook

    cluster, client = _cluster()
    try:
        proc = _grade(course, f"--scheduler={cluster.scheduler_address}")
        killed = None
        deadline = time.monotonic() + 300
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy:
                time.sleep(3)  # inside a grade: nbgrader is starting the kernel, or the 4 s check runs
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed = pid
            time.sleep(0.5)
        out, err = proc.communicate(timeout=900)
    finally:
        client.close()
        cluster.close()
    assert killed is not None, "no task was ever running on the cluster"
    assert proc.returncode == 0, out[-2000:] + err[-4000:]
    report = _report(course)
    assert sorted(report) == [*FULL, UNTOUCHED]
    assert [float(report[s]["score"]) for s in FULL] == [2.0] * 3 and float(report[UNTOUCHED]["score"]) == 0
    for student in report:
        assert err.count(f"graded {student}:") == 1, err  # merged into the gradebook exactly once
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assert len(gb.find_assignment(ASSIGNMENT).submissions) == 4
    time.sleep(2)
    assert _nbgrader_processes() == [], "the killed worker's nbgrader outlived it"


def test_a_rerun_grades_only_what_changed(course):
    proc = _grade(course, "--jobs=2")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert _verbs(err) == {"graded": 4}, err
    proc = _grade(course, "--jobs=2")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert _verbs(err) == {"checked": 4}, err
    assert all("not graded again" in r["detail"] for r in _report(course).values())
    full = course / "submitted" / FULL[0] / ASSIGNMENT
    notebook = next(full.glob("*.ipynb"))
    shutil.copy(notebook, course / "submitted" / UNTOUCHED / ASSIGNMENT / notebook.name)  # a new submission
    proc = _grade(course, "--jobs=2")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert f"graded {UNTOUCHED}:" in err and _verbs(err) == {"checked": 3, "graded": 1}, err
    assert float(_report(course)[UNTOUCHED]["score"]) == 2.0


def test_the_scheduler_going_away_stops_the_run_and_keeps_what_was_graded(course):
    proc = _grade(course, "--jobs=2")  # graded once before: what the lost run does not reach keeps these grades
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-3000:]
    cluster, client = _cluster()
    try:
        proc = _grade(
            course,
            "--force",
            f"--scheduler={cluster.scheduler_address}",
            extra_env={"FTLAB_SCHEDULER_GRACE": "5"},
        )
        first = proc.stderr.readline()
        while first and not first.startswith("graded "):
            first = proc.stderr.readline()
        client.close()
        cluster.close()
        out, rest = proc.communicate(timeout=300)
    finally:
        client.close()
        cluster.close()
    assert first.startswith("graded "), "nothing was graded before the scheduler went away"
    assert proc.returncode == 2 and "the Dask scheduler at" in rest and "went away" in rest, rest[-2000:]
    assert "run the same command again" in rest
    report = _report(course)
    lost = [s for s, r in report.items() if r["status"] == "not-graded"]
    assert lost and len(lost) < 4, report
    for student in lost:
        assert "previous grades kept" in report[student]["detail"], report[student]
        assert float(report[student]["score"]) == (0.0 if student == UNTOUCHED else 2.0)
