"""The driver's decisions with fake job results: what reaches the real gradebook, and what is kept.

`finish` is the only writer of the real gradebook. These tests hand it the results a
job can come back with -- graded, killed by the wall clock, nbgrader failed, never run
-- on a small real gradebook, with no nbgrader run and no kernel.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from ftlab.grading.driver import Course, NotebookResult, Plan, finish, prepare
from ftlab.grading.jobs import Job, JobResult

ASSIGNMENT, NOTEBOOK, STUDENT = "ps0", "nb", "alice"


@pytest.fixture(scope="module", autouse=True)
def _venv_on_path():
    """nbgrader's Gradebook runs its own `alembic` script: the environment's bin first."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        yield


@pytest.fixture(scope="module")
def template(tmp_path_factory, _venv_on_path) -> bytes:
    """A gradebook with one assignment of two 2-point checks (made once: nbgrader migrates each new one)."""
    path = tmp_path_factory.mktemp("gradebook") / "gradebook.db"
    with Gradebook(f"sqlite:///{path}") as gb:
        gb.add_assignment(ASSIGNMENT)
        gb.add_notebook(NOTEBOOK, ASSIGNMENT)
        for name in ("t1", "t2"):
            gb.add_grade_cell(name, NOTEBOOK, ASSIGNMENT, max_score=2, cell_type="code")
            gb.add_source_cell(name, NOTEBOOK, ASSIGNMENT, cell_type="code", locked=True, source="", checksum="x")
    return path.read_bytes()


def _gradebook(path: Path, template: bytes, scores: dict[str, float] | None = None) -> str:
    """The template gradebook at ``path``; with ``scores``, alice's autograded scores in it."""
    path.write_bytes(template)
    url = f"sqlite:///{path}"
    with Gradebook(url) as gb:
        if scores is not None:
            gb.add_student(STUDENT)
            gb.add_submission(ASSIGNMENT, STUDENT)
            for name, score in scores.items():
                gb.find_grade(name, NOTEBOOK, ASSIGNMENT, STUDENT).auto_score = score
            gb.db.commit()
    return url


def _course(root: Path, template: bytes) -> Course:
    (root / "reports").mkdir(parents=True, exist_ok=True)
    _gradebook(root / "gradebook.db", template)
    return Course(
        root=root,
        assignment=ASSIGNMENT,
        sources={NOTEBOOK: nbformat.v4.new_notebook()},
        test_cells={NOTEBOOK: ["t1", "t2"]},
        extra_files=[],
        source_dir="source",
        nbgrader_args=[],
        env={},
        wall_clock=30,
        isolation="bubblewrap",
    )


def _plan() -> tuple[Plan, Job]:
    job = Job(ASSIGNMENT, STUDENT, [NOTEBOOK], "*", {}, {}, [], {}, 30)
    return Plan(STUDENT, {NOTEBOOK: NotebookResult(STUDENT, NOTEBOOK, sandbox="bubblewrap")}, [job], "stamp"), job


def _graded(tmp_path: Path, template: bytes, scores: dict[str, float]) -> JobResult:
    """What a successful job returns: its gradebook and the autograded notebook (an error in t2 if it lost points)."""
    _gradebook(tmp_path / "job.db", template, scores)
    cell = nbformat.v4.new_code_cell("check()")
    cell.metadata["nbgrader"] = {"grade_id": "t2"}
    if scores["t2"] < 2:
        cell.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="nope", traceback=[])]
    nb = nbformat.v4.new_notebook(cells=[cell])
    return JobResult(0, "ok", (tmp_path / "job.db").read_bytes(), {f"{NOTEBOOK}.ipynb": nbformat.writes(nb).encode()})


def _scores(course: Course) -> dict[str, tuple[float | None, float | None]]:
    with Gradebook(course.db_url) as gb:
        nb = gb.find_submission_notebook(NOTEBOOK, ASSIGNMENT, STUDENT)
        return {g.name: (g.auto_score, g.manual_score) for g in nb.grades}


def test_a_graded_job_is_merged_and_stamped(tmp_path, template):
    course, (plan, job) = _course(tmp_path / "course", template), _plan()
    finish(course, plan, [(job, _graded(tmp_path, template, {"t1": 2, "t2": 0}))], log=lambda line: None)
    row = plan.rows[NOTEBOOK]
    assert (row.status, row.score, row.max_score) == ("errors", 2, 4), row
    assert "AssertionError: nope in t2" in row.detail
    assert _scores(course) == {"t1": (2, None), "t2": (0, None)}
    stamp = json.loads((course.root / "autograded" / STUDENT / ASSIGNMENT / ".ftlab-grade.json").read_text())
    assert stamp["fingerprint"] == "stamp" and stamp["rows"][NOTEBOOK]["status"] == "errors"


@pytest.mark.parametrize(
    ("result", "status", "said"),
    [
        (JobResult(None, "killed", None, {}), "wall-clock", "nbgrader killed after 30 s"),
        (JobResult(1, "Traceback", None, {}), "autograde-failed", "nbgrader exited with 1"),
        (None, "not-graded", "the grading cluster went away"),
    ],
)
def test_a_failed_regrade_keeps_the_previous_grades_hand_grades_included(tmp_path, template, result, status, said):
    course, (plan, job) = _course(tmp_path / "course", template), _plan()
    finish(course, plan, [(job, _graded(tmp_path, template, {"t1": 2, "t2": 2}))], log=lambda line: None)
    with Gradebook(course.db_url) as gb:
        gb.find_grade("t2", NOTEBOOK, ASSIGNMENT, STUDENT).manual_score = 1.5  # graded by hand since
        gb.db.commit()
    again, job = _plan()
    finish(course, again, [(job, result)], log=lambda line: None)
    row = again.rows[NOTEBOOK]
    assert row.status == status and said in row.detail and "previous grades kept" in row.detail, row
    assert _scores(course) == {"t1": (2, None), "t2": (2, 1.5)}
    assert (row.score, row.max_score) == (3.5, 4)


@pytest.mark.parametrize(("result", "zeroed"), [(JobResult(1, "Traceback", None, {}), True), (None, False)])
def test_a_first_grade_that_fails_is_zero_unless_it_never_ran(tmp_path, template, result, zeroed):
    course, (plan, job) = _course(tmp_path / "course", template), _plan()
    finish(course, plan, [(job, result)], log=lambda line: None)
    row = plan.rows[NOTEBOOK]
    if zeroed:
        assert "every graded cell 0" in row.detail and _scores(course) == {"t1": (0, None), "t2": (0, None)}
    else:  # the cluster went away: nothing to say about this student yet
        assert "no gradebook entry" in row.detail
    assert not (course.root / "autograded" / STUDENT / ASSIGNMENT / ".ftlab-grade.json").exists()


def test_prepare_reads_the_submission_and_plans_one_job(tmp_path, template):
    course = _course(tmp_path / "course", template)
    source = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("assert True")
    cell.metadata["nbgrader"] = {"grade_id": "t1", "grade": True, "solution": False, "locked": True, "points": 2}
    source.cells = [cell]
    course.sources = {NOTEBOOK: source}
    folder = course.root / "submitted" / STUDENT / ASSIGNMENT
    folder.mkdir(parents=True)
    tampered = nbformat.from_dict(json.loads(json.dumps(source)))
    tampered.cells[0].metadata["nbgrader"]["points"] = 200
    nbformat.write(tampered, folder / f"{NOTEBOOK}.ipynb")
    (folder / "secret.txt").symlink_to(tmp_path / "elsewhere")
    plan = prepare(course, STUDENT)
    (job,) = plan.jobs
    graded = nbformat.reads(job.files[f"submitted/{STUDENT}/{ASSIGNMENT}/{NOTEBOOK}.ipynb"].decode(), as_version=4)
    assert graded.cells[0].metadata.nbgrader["points"] == 2  # the instructor's
    assert "the metadata of t1 was edited (points)" in plan.rows[NOTEBOOK].detail
    assert list(job.files) == [f"submitted/{STUDENT}/{ASSIGNMENT}/{NOTEBOOK}.ipynb"]  # nothing else travels
