"""The real gradebook, written in one place: merge a job's grades, or keep what was there.

Only :func:`ftlab.grading.driver.finish` calls these, in the driver's own thread
(nbgrader's single writer of grades): a job's gradebook is a private snapshot, and
what it graded is copied in; a run that failed leaves the student's previous grades,
hand grades included, untouched -- or 0 where there were none.

The examples run on a small gradebook of their own (``_example(folder)``): the
assignment ``ps1_parameters``, its notebook ``count_params`` with an answer cell
``count_params`` and one 2-point check ``check_count``, and alice's submission, not
graded yet.
"""

from __future__ import annotations

import sqlite3
import warnings
from contextlib import closing
from functools import lru_cache
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

__all__ = ["merge", "zero_notebook", "has_grades", "scores"]


def _example(folder: str | Path) -> Gradebook:
    """For the examples: ``folder/gradebook.db`` with ps1_parameters, its notebook count_params (one 2-point
    check) and alice's submission, not graded yet."""
    path = Path(folder) / "gradebook.db"
    path.write_bytes(_example_bytes())
    return Gradebook(f"sqlite:///{path}")


@lru_cache(maxsize=1)
def _example_bytes() -> bytes:
    """Made once, in memory: each change nbgrader makes is a commit, and on disk each commit waits for it.

    A new gradebook asks the ``alembic`` command (a process) for the schema's version; an empty version
    table is enough for what the examples do.
    """
    name = "file:ftlab-gradebook-example?mode=memory&cache=shared"
    with closing(sqlite3.connect(name, uri=True)) as db:  # open: the memory database lives as long as this
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        with Gradebook(f"sqlite:///{name}&uri=true") as gb, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nbgrader's own session warnings
            gb.add_assignment("ps1_parameters")
            gb.add_notebook("count_params", "ps1_parameters")
            gb.add_grade_cell("check_count", "count_params", "ps1_parameters", max_score=2, cell_type="code")
            gb.add_solution_cell("count_params", "count_params", "ps1_parameters")
            gb.add_source_cell("count_params", "count_params", "ps1_parameters", cell_type="code", locked=False)
            gb.add_source_cell("check_count", "count_params", "ps1_parameters", cell_type="code", locked=True)
            gb.add_student("alice")
            gb.add_submission("ps1_parameters", "alice")
        return db.serialize()


def merge(gb: Gradebook, job_db: str, assignment: str, student: str, notebooks: list[str]) -> None:
    """Copy one student's freshly autograded notebooks from a job's gradebook into the real one.

    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     os.mkdir(f"{tmp}/job")
    ...     with _example(f"{tmp}/job") as job:  # the job's snapshot, graded there
    ...         job.find_grade("check_count", "count_params", "ps1_parameters", "alice").auto_score = 2
    ...         job.db.commit()
    ...     with _example(tmp) as gb:  # the real gradebook: alice's earlier submission, 0 points
    ...         merge(gb, f"sqlite:///{tmp}/job/gradebook.db", "ps1_parameters", "alice", ["count_params"])
    ...         scores(gb, "ps1_parameters", "alice", "count_params")
    (2.0, 2.0)
    """
    with Gradebook(job_db) as jb:
        jsub = jb.find_submission(assignment, student)
        jstudent = jb.find_student(student)
        gb.update_or_create_student(
            student, first_name=jstudent.first_name, last_name=jstudent.last_name, email=jstudent.email
        )
        gb.update_or_create_submission(assignment, student, timestamp=jsub.timestamp)
        sub = gb.find_submission(assignment, student)
        sub.extension = jsub.extension
        for name in notebooks:
            jnb = jb.find_submission_notebook(name, assignment, student)
            nb = gb.find_submission_notebook(name, assignment, student)
            nb.flagged, nb.late_submission_penalty = jnb.flagged, jnb.late_submission_penalty
            for jgrade in jnb.grades:
                grade = gb.find_grade(jgrade.name, name, assignment, student)
                grade.auto_score, grade.manual_score = jgrade.auto_score, jgrade.manual_score
                grade.extra_credit, grade.needs_manual_grade = jgrade.extra_credit, jgrade.needs_manual_grade
            for jcomment in jnb.comments:
                comment = gb.find_comment(jcomment.name, name, assignment, student)
                comment.auto_comment, comment.manual_comment = jcomment.auto_comment, jcomment.manual_comment
        gb.db.commit()


def zero_notebook(gb: Gradebook, assignment: str, student: str, notebook: str) -> None:
    """0 on every graded cell of a notebook nbgrader could not grade (as nbgrader does for a missing one).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp, _example(tmp) as gb:
    ...     zero_notebook(gb, "ps1_parameters", "bob", "count_params")  # never graded before: entered with 0
    ...     scores(gb, "ps1_parameters", "bob", "count_params")
    (0.0, 2.0)
    """
    try:
        submission = gb.find_submission_notebook(notebook, assignment, student)
    except MissingEntry:  # never graded before
        gb.update_or_create_student(student)
        gb.update_or_create_submission(assignment, student)
        submission = gb.find_submission_notebook(notebook, assignment, student)
    for grade in submission.grades:
        grade.auto_score = 0
        grade.manual_score = None
        grade.needs_manual_grade = False
    gb.db.commit()


def has_grades(gb: Gradebook, assignment: str, student: str, notebook: str) -> bool:
    """Whether the gradebook has an entry for this notebook: a failed run then keeps it rather than enter 0.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp, _example(tmp) as gb:
    ...     [has_grades(gb, "ps1_parameters", student, "count_params") for student in ("alice", "bob")]
    [True, False]
    """
    try:
        gb.find_submission_notebook(notebook, assignment, student)
    except MissingEntry:
        return False
    return True


def scores(gb: Gradebook, assignment: str, student: str, notebook: str) -> tuple[float, float] | None:
    """(score, max score) of one student's notebook, or None where the gradebook has no entry.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp, _example(tmp) as gb:
    ...     gb.find_grade("check_count", "count_params", "ps1_parameters", "alice").auto_score = 1.5
    ...     [scores(gb, "ps1_parameters", student, "count_params") for student in ("alice", "bob")]
    [(1.5, 2.0), None]
    """
    try:
        nb = gb.find_submission_notebook(notebook, assignment, student)
    except MissingEntry:
        return None
    return nb.score, nb.max_score
