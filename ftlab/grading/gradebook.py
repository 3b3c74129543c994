"""The real gradebook, written in one place: merge a job's grades, or keep what was there.

Only :func:`ftlab.grading.driver.finish` calls these, in the driver's own thread
(nbgrader's single writer of grades): a job's gradebook is a private snapshot, and
what it graded is copied in; a run that failed leaves the student's previous grades,
hand grades included, untouched -- or 0 where there were none.
"""

from __future__ import annotations

from nbgrader.api import Gradebook, MissingEntry

__all__ = ["merge", "zero_notebook", "has_grades", "scores"]


def merge(gb: Gradebook, job_db: str, assignment: str, student: str, notebooks: list[str]) -> None:
    """Copy one student's freshly autograded notebooks from a job's gradebook into the real one."""
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
    """0 on every graded cell of a notebook nbgrader could not grade (as nbgrader does for a missing one)."""
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
    try:
        gb.find_submission_notebook(notebook, assignment, student)
    except MissingEntry:
        return False
    return True


def scores(gb: Gradebook, assignment: str, student: str, notebook: str) -> tuple[float, float] | None:
    """(score, max score) of one student's notebook, or None where the gradebook has no entry."""
    try:
        nb = gb.find_submission_notebook(notebook, assignment, student)
    except MissingEntry:
        return None
    return nb.score, nb.max_score
