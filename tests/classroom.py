"""A class of three students (alice right, bob partly, carol blank) through nbgrader, for the two class tests.

The class is built in two halves, one per test file, so that ``make test``'s two workers build them at the same
time: ``test_nbgrader.py`` grades ps1-ps4 with the broken and hostile submissions, ``test_nbgrader_training.py``
grades ps5-ps9 (the assignments that train a network). Each solution is graded once per run, as alice's copy.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from course import ASSIGNMENTS, WRITTEN, nbgrader
from course import answers as _answers
from course import make_course as _make_course
from course import work_on as _work_on

EXPECTED = {  # final scores after the written answers were graded by hand
    "alice": {a: total for a, (_, total) in ASSIGNMENTS.items()},  # everything right
    "bob": {
        "ps1_parameters": 5,
        "ps2_layerwise_lr": 4,
        "ps3_freezing": 6,
        "ps4_bert_head": 5,
        "ps5_finetune": 2,
        "ps6_strategy_choice": 6,
        "ps7_domain_shift": 2,
        "ps8_minilm_polarity": 0,
        "ps9_pipeline": 4,
    },
    "carol": dict.fromkeys(ASSIGNMENTS, 0),  # submitted the notebooks untouched
}
BOB_SOLVES = {  # the partial student's answered cells
    "ps1_parameters": ["count_params", "linear_params"],  # 3 + 2
    "ps2_layerwise_lr": ["layerwise_lrs", "why_smaller_lr"],  # 3 + 1 by hand
    "ps3_freezing": ["freeze_bottom", "unfreeze_plan", "which_layers_first"],  # 3 + 2 + 1 by hand
    "ps4_bert_head": ["cls_logits", "softmax"],  # 2 + 3
    "ps5_finetune": ["freeze"],  # 2: froze the bottom, never trained
    "ps6_strategy_choice": ["choose_strategy", "justify_strategy"],  # 4 + 2 by hand
    "ps7_domain_shift": ["features"],  # 2
    "ps8_minilm_polarity": [],  # never trained
    "ps9_pipeline": ["prepare", "metrics"],  # 2 + 2: never trained
}
BOB_WRITES = {  # bob's written answers (worth the hand grades below)
    "why_smaller_lr": "Smaller steps keep the pretrained weights.",
    "which_layers_first": "The head, because it is new.",
    "justify_strategy": "Fine-tune the top layers: little data, and X-rays are not photos.",
}
HAND_GRADES = {
    "alice": {k: p for k, (_, p) in WRITTEN.items()},
    "bob": {"why_smaller_lr": 1, "which_layers_first": 1, "justify_strategy": 2},
}
# nbgrader's assignment glob for each half (its source folders are matched with glob)
HALVES = {"ps[1-4]_*": list(ASSIGNMENTS)[:4], "ps[5-9]_*": list(ASSIGNMENTS)[4:]}


def class_test(test):
    """Slow, and the first to run builds its half of the class (several minutes): a longer timeout."""
    return pytest.mark.slow(pytest.mark.timeout(2400)(test))


def exchange_step(step: str, course: Path, exchange: Path, assignment: str, student: str = "", workspace=None):
    """One exchange step, in process: the classes behind `nbgrader release_assignment`,
    `fetch_assignment`, `submit` and `collect` (each CLI call would cost seconds of imports)."""
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange.default import (
        ExchangeFetchAssignment,
        ExchangeReleaseAssignment,
        ExchangeSubmit,
    )
    from traitlets.config.loader import PyFileConfigLoader

    from ftlab.grading.intake import SafeExchangeCollect

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    config.CourseDirectory.root = str(course)
    config.CourseDirectory.assignment_id = assignment
    config.Exchange.root = str(exchange)
    config.ExchangeCollect.check_owner = False  # all simulated students are this OS user
    if student:
        config.CourseDirectory.student_id = student
    if workspace is not None:
        config.Exchange.assignment_dir = str(workspace)
    assert config.ExchangeFactory.collect == "ftlab.grading.intake.SafeExchangeCollect"  # the course's setting
    cls = {
        "release": ExchangeReleaseAssignment,
        "fetch": ExchangeFetchAssignment,
        "submit": ExchangeSubmit,
        "collect": SafeExchangeCollect,
    }[step]
    cls(coursedir=CourseDirectory(config=config), authenticator=Authenticator(config=config), config=config).start()


def hand_in(room: SimpleNamespace, student: str, assignment: str, edit) -> None:
    """A student fetches the released copy, edits it (``edit(path)``) and submits it."""
    workspace = room.workspaces / student
    workspace.mkdir(exist_ok=True)
    exchange_step("fetch", room.course, room.exchange, assignment, workspace=workspace)
    edit(workspace / assignment / f"{ASSIGNMENTS[assignment][0]}.ipynb")
    exchange_step("submit", room.course, room.exchange, assignment, student=student, workspace=workspace)


def open_class(tmp: Path, half: str) -> SimpleNamespace:
    """A course with the half's assignments generated, released, done by alice, bob and carol, and collected."""
    room = SimpleNamespace(course=_make_course(tmp), exchange=tmp / "exchange", workspaces=tmp / "students")
    room.exchange.mkdir()
    room.workspaces.mkdir()
    room.assignments = HALVES[half]
    nbgrader("generate_assignment", half, "--force", cwd=room.course)
    for assignment in room.assignments:
        exchange_step("release", room.course, room.exchange, assignment)
        full = _answers(assignment)
        partial = {k: BOB_WRITES.get(k, v) for k, v in full.items() if k in BOB_SOLVES[assignment]}
        for student, answers in (("alice", full), ("bob", partial), ("carol", {})):
            hand_in(room, student, assignment, lambda p, a=answers: _work_on(p, a))
        exchange_step("collect", room.course, room.exchange, assignment)
    return room


def autograded(room: SimpleNamespace, student: str) -> dict[str, tuple]:
    """Per assignment: (score, max score, needs grading by hand, the autograded cells that lost points)."""
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(f"sqlite:///{room.course / 'gradebook.db'}") as gb:
        for assignment in room.assignments:
            submission = gb.find_submission(assignment, student)
            grades = [g for notebook in submission.notebooks for g in notebook.grades]
            failed = {g.name: g.auto_score for g in grades if g.auto_score is not None and g.auto_score < g.max_score}
            out[assignment] = (submission.score, submission.max_score, submission.needs_manual_grade, failed)
    return out


def grade_by_hand(room: SimpleNamespace) -> None:
    """The instructor's hand grades (``HAND_GRADES``) for the written answers of this half's assignments."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{room.course / 'gradebook.db'}") as gb:
        for student, grades in HAND_GRADES.items():
            for grade_id, points in grades.items():
                assignment, _ = WRITTEN[grade_id]
                if assignment in room.assignments:
                    grade = gb.find_grade(grade_id, ASSIGNMENTS[assignment][0], assignment, student)
                    grade.manual_score = points
        gb.db.commit()


def release_feedback_and_export(room: SimpleNamespace) -> dict[tuple[str, str], dict]:
    """`nbgrader generate_feedback` and `export`: the grades, keyed by (student, assignment)."""
    nbgrader("generate_feedback", "*", cwd=room.course)
    nbgrader("export", "--to", "grades.csv", cwd=room.course)
    with open(room.course / "grades.csv") as fh:
        return {(r["student_id"], r["assignment"]): r for r in csv.DictReader(fh)}


# --------------------------------------------------------------------------- checks both halves make


def check_solution_autogrades_to_full_marks(alice_autograded: dict, assignment: str) -> None:
    score, max_score, needs_manual_grade, failed = alice_autograded[assignment]
    by_hand = sum(points for a, points in WRITTEN.values() if a == assignment)
    total = ASSIGNMENTS[assignment][1]
    assert (score, max_score) == (total - by_hand, total), failed
    assert needs_manual_grade == (by_hand > 0)


def check_full_partial_and_zero_marks(room: SimpleNamespace, grades: dict) -> None:
    for student, scores in EXPECTED.items():
        for assignment in room.assignments:
            row = grades[(student, assignment)]
            assert float(row["score"]) == scores[assignment], (student, assignment, row)
            assert float(row["max_score"]) == ASSIGNMENTS[assignment][1]


def check_feedback(room: SimpleNamespace) -> None:
    feedback = room.course / "feedback"
    for student, scores in EXPECTED.items():
        for assignment in room.assignments:
            name, total = ASSIGNMENTS[assignment]
            html = (feedback / student / assignment / f"{name}.html").read_text()
            first = re.search(r"Score: ([\d.]+) / ([\d.]+)", html).groups()  # the notebook total comes first
            assert tuple(map(float, first)) == (scores[assignment], total), (student, assignment)
            assert "BEGIN HIDDEN TESTS" not in html and "END HIDDEN TESTS" not in html, (student, assignment)
