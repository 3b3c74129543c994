"""The other half of the class: ps5-ps9, the assignments that train a network, through nbgrader and ``ftlab grade``.

Offline on CPU with ``FTLAB_FAST=1``: alice (the instructor's answers), bob (some answers) and carol (a blank
copy) through generate, release, submit, collect, ``ftlab grade`` (sandboxed, two at a time), grading by hand,
feedback and export. Built apart from ``test_nbgrader.py`` (ps1-ps4, broken and hostile submissions) so that
the two halves are graded at the same time on ``make test``'s two workers.
"""

from __future__ import annotations

import pytest
from classroom import (
    HALVES,
    autograded,
    check_feedback,
    check_full_partial_and_zero_marks,
    check_solution_autogrades_to_full_marks,
    class_test,
    grade_by_hand,
    open_class,
    release_feedback_and_export,
)
from course import ftlab_grade

TRAINING_HALF = "ps[5-9]_*"


@pytest.fixture(scope="module")
def graded_half(tmp_path_factory):
    """ps5-ps9: generate -> release -> submit -> collect -> ftlab grade -> grade by hand -> feedback -> export."""
    from ftlab.grading.sandbox import check_available

    problem = check_available()
    assert problem is None, f"the grading tests need a working sandbox: {problem}"
    room = open_class(tmp_path_factory.mktemp("class"), TRAINING_HALF)
    for assignment in room.assignments:  # long per-notebook budgets: they train
        ftlab_grade(room.course, assignment, "--fast", "--jobs=2")
    alice_autograded = autograded(room, "alice")  # before anything is graded by hand
    grade_by_hand(room)
    return room, alice_autograded, release_feedback_and_export(room)


@class_test
@pytest.mark.parametrize("assignment", HALVES[TRAINING_HALF])
def test_solution_autogrades_to_full_marks(graded_half, assignment):
    """The instructor's answers in a student's copy (alice), autograded in the class (sandboxed, hidden tests in
    the grader): every autograded point, and the written answers left for grading by hand."""
    check_solution_autogrades_to_full_marks(graded_half[1], assignment)


@class_test
def test_class_gets_full_partial_and_zero_marks(graded_half):
    room, _, grades = graded_half
    check_full_partial_and_zero_marks(room, grades)


@class_test
def test_feedback_for_every_graded_notebook(graded_half):
    check_feedback(graded_half[0])
