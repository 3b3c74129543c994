"""Feedback that explains: ``ftlab check`` (a self-paced student's page), the feedback summary, ``ftlab report``.

The ``slow`` tests grade real copies of ps4 (no model, FTLAB_FAST=1) in the sandbox
through ``ftlab check``, the same driver ``ftlab grade`` uses; the others read a small
gradebook built directly (as ``tests/test_driver.py`` does) or a notebook in memory.
"""

from __future__ import annotations

import csv
import html
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import matplotlib
import nbformat
import pytest
from course import ROOT, answers, env, meta, work_on
from nbgrader.api import Gradebook

from ftlab.grading import report, selfcheck
from ftlab.grading.feedback import FeedbackSummary, fix_first, outcomes

PS4 = "ps4_bert_head"
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")  # nbgrader's own sessions


# --------------------------------------------------------------------------- ftlab check (real grading)


def _secrets(assignment: str) -> dict[str, list[str]]:
    """Distinctive lines of the instructor's hidden tests and solution cells: none may reach a student's page."""
    (path,) = (ROOT / "solutions" / assignment).glob("*.ipynb")
    nb = nbformat.read(path, as_version=4)
    hidden, solution = [], []
    for cell in nb.cells:
        lines = cell.source.splitlines()
        if "### BEGIN HIDDEN TESTS" in cell.source:
            inside = lines[lines.index(next(x for x in lines if "BEGIN HIDDEN" in x)) + 1 :]
            hidden += [x.strip() for x in inside if len(x.strip()) > 25 and "END HIDDEN" not in x][:2]
        if meta(cell).get("solution") and "### BEGIN SOLUTION" in cell.source:
            inside = cell.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
            solution += [x.strip() for x in inside.splitlines() if len(x.strip()) > 12][:2]
    assert hidden and solution, "the assignment should have hidden tests and solutions to look for"
    return {"hidden": hidden, "solution": solution}


def _ftlab_check(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ftlab", "check", str(path), "--no-open", "--fast", *args],
        cwd=path.parent,
        env=env(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _copy(tmp_path: Path, replaced: dict[str, str]) -> Path:
    """A student's copy of the ps4 exercise, in a folder named after the assignment, with some answers."""
    folder = tmp_path / "work" / PS4
    folder.mkdir(parents=True)
    copy = folder / "bert_head.ipynb"
    shutil.copy(ROOT / "exercises" / PS4 / "bert_head.ipynb", copy)
    work_on(copy, replaced)
    return copy


def _page(copy: Path) -> str:
    """The feedback page's text, entities decoded (a secret must not hide behind &quot;)."""
    return html.unescape(copy.with_name("bert_head.feedback.html").read_text())


def _answers() -> dict[str, str]:
    """The instructor's answers as a student would type them: without nbgrader's solution markers."""
    return {
        gid: "\n".join(x for x in src.splitlines() if "### BEGIN SOLUTION" not in x and "### END SOLUTION" not in x)
        for gid, src in answers(PS4).items()
    }


def _no_secrets(page: str, solutions_too: bool = True) -> None:
    assert "### BEGIN" not in page and "HIDDEN" not in page
    secrets = _secrets(PS4)
    for line in secrets["hidden"] + (secrets["solution"] if solutions_too else []):
        assert line not in page, line
    for cell in nbformat.read(ROOT / "solutions" / PS4 / "bert_head.ipynb", as_version=4).cells:
        if meta(cell).get("grade") and not meta(cell).get("solution"):  # no test code, visible part included
            code = [x for x in cell.source.splitlines()[1:] if len(x.strip()) > 20]
            assert not any(x in page for x in code), meta(cell)["grade_id"]


@pytest.mark.slow
def test_check_a_blank_copy_scores_0_and_says_what_to_fix(tmp_path):
    copy = _copy(tmp_path, {})
    proc = _ftlab_check(copy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "bert_head.ipynb (ps4_bert_head): 0 / 10 points" in proc.stdout
    assert (
        "What to fix first:\n  1. test_cls_logits: StudentError: cls_logits raised NotImplementedError" in proc.stdout
    )
    page = _page(copy)
    assert "0 / 10 points" in page and "What to fix first" in page
    assert page.count("(not answered yet)") == 2 * 4  # in the list and at each check
    assert "visible checks" not in page  # the instructor's sources were found: every check ran
    _no_secrets(page)


@pytest.mark.slow
def test_check_a_partial_copy_and_a_wrong_answer_message(tmp_path):
    given = _answers()
    wrong = "def softmax(z):\n    return torch.zeros(0, 1, 1)"
    copy = _copy(tmp_path, {"cls_logits": given["cls_logits"], "softmax": wrong})
    proc = _ftlab_check(copy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(ps4_bert_head): 2 / 10 points" in proc.stdout
    assert re.search(r"test_cls_logits\s+2 / 2\s+passed", proc.stdout), proc.stdout
    page = _page(copy)
    fix = page[page.index("What to fix first") : page.index("Your notebook")]
    assert fix.index("test_softmax") < fix.index("test_cross_entropy") < fix.index("test_ce_grad")
    assert "test_cls_logits" not in fix
    assert "CheckFailed: softmax" in fix and "shape (0, 1, 1)" in fix  # the check's own words
    _no_secrets(page.replace(given["cls_logits"], ""), solutions_too=False)
    for line in _secrets(PS4)["solution"]:
        if line not in given["cls_logits"]:
            assert line not in page, line


@pytest.mark.slow
def test_check_the_instructors_answers_get_full_marks(tmp_path):
    copy = _copy(tmp_path, _answers())
    proc = _ftlab_check(copy.parent)  # the folder names the notebook too
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(ps4_bert_head): 10 / 10 points" in proc.stdout and "Every autograded check passed." in proc.stdout
    page = _page(copy)
    assert "10 / 10 points" in page and "Every autograded check passed." in page
    assert "HIDDEN" not in page and "### BEGIN" not in page


@pytest.mark.slow
def test_check_without_the_instructors_sources_says_so(tmp_path):
    bundle = tmp_path / "bundle"  # what a student may have: the config and the exercises, no solutions/
    (bundle / "exercises").mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", bundle)
    shutil.copytree(ROOT / "exercises" / PS4, bundle / "exercises" / PS4)
    copy = bundle / "exercises" / PS4 / "bert_head.ipynb"
    work_on(copy, _answers())
    proc = _ftlab_check(copy, "--course", str(bundle))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "visible checks of your copy only" in proc.stdout
    page = _page(copy)
    assert "visible checks of your copy only" in page and "10 / 10 points" in page


def test_check_refuses_what_is_not_a_notebook(tmp_path, capsys):
    (tmp_path / "a.ipynb").write_text("{}")
    (tmp_path / "b.ipynb").write_text("{}")
    assert selfcheck.run_cli(selfcheck.build_parser().parse_args([str(tmp_path), "--no-open"])) == 2
    assert "holds 2 notebooks" in capsys.readouterr().err


def test_locate_finds_the_assignment_by_folder_or_by_notebook_name(tmp_path):
    copy = tmp_path / "renamed-folder" / "bert_head.ipynb"
    copy.parent.mkdir()
    shutil.copy(ROOT / "exercises" / PS4 / "bert_head.ipynb", copy)
    found = selfcheck.locate(copy)
    assert (found.assignment, found.name, found.instructor) == (PS4, "bert_head", True)
    assert found.source == ROOT / "solutions" / PS4 / "bert_head.ipynb"


def test_opening_the_page_never_blocks_without_a_display(tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert selfcheck.open_page(tmp_path / "page.html") is False


# --------------------------------------------------------------------------- the summary on the class's feedback


def _graded_notebook() -> nbformat.NotebookNode:
    """A feedback notebook as GetGrades leaves it: scores in the grade cells' metadata, errors in the outputs."""
    cells = []
    for gid, score, points, error in [
        ("test_a", 2, 2, None),
        ("test_b", 0, 3, ("CheckFailed", "b(z): shape (0, 1, 1) where (2,) was expected")),
        ("test_c", 0, 1, ("PolicyViolation", "cell c, line 2: torch.softmax is the function to write")),
    ]:
        cell = nbformat.v4.new_code_cell(f'"""{gid}: what it checks."""\nexpect(True, "x")')
        cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "grade_id": gid}
        cell.metadata["nbgrader"].update(score=score, points=points)
        if error:
            cell.outputs = [nbformat.v4.new_output("error", ename=error[0], evalue=error[1], traceback=[])]
        cells.append(cell)
    return nbformat.v4.new_notebook(cells=cells)


def test_the_feedback_summary_lists_points_and_puts_the_policy_first():
    nb = _graded_notebook()
    assert [o.grade_id for o in fix_first(outcomes(nb))] == ["test_c", "test_b"]
    nb, _ = FeedbackSummary().preprocess(nb, {})
    nb, _ = FeedbackSummary().preprocess(nb, {})  # made again: still one summary
    summary = [c for c in nb.cells if c.cell_type == "markdown"]
    assert len(summary) == 1 and nb.cells[0] is summary[0]
    text = summary[0].source
    assert "## Your result: 2 / 6 points" in text
    assert "| `test_b` | 0 | 3 | failed |" in text and "| `test_a` | 2 | 2 | passed |" in text
    assert text.index("1. `test_c`") < text.index("2. `test_b`") and "shape (0, 1, 1)" in text


def test_the_course_config_puts_the_summary_in_the_class_feedback():
    config = (ROOT / "nbgrader_config.py").read_text()
    block = config[config.index("c.GenerateFeedback.preprocessors") :]
    assert block.index("GetGrades") < block.index("ftlab.grading.feedback.FeedbackSummary")
    assert "ClearHiddenTests" in block


# --------------------------------------------------------------------------- ftlab report (a gradebook built here)

QUESTIONS = {"t1": 2, "t2": 3, "essay": 5}  # essay: a written answer, graded by a person
CLASS = {  # student -> (t1, t2, essay manual score or None), status
    "ann": ((2, 3, 5), "graded"),
    "bob": ((2, 0, None), "errors"),
    "cat": ((0, 0, 1), "policy"),
}


@pytest.fixture
def course(tmp_path) -> Path:
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # alembic
    root = tmp_path / "course"
    (root / "reports").mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", root)
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        gb.add_assignment("ps0")
        gb.add_notebook("nb", "ps0")
        for name, points in QUESTIONS.items():
            kind = "markdown" if name == "essay" else "code"
            gb.add_grade_cell(name, "nb", "ps0", max_score=points, cell_type=kind)
            gb.add_source_cell(name, "nb", "ps0", cell_type=kind, locked=name != "essay", source="", checksum="x")
        for i, (student, (scores, _)) in enumerate(CLASS.items()):
            gb.add_student(student)
            gb.add_submission("ps0", student, timestamp=datetime(2026, 3, 1, 9 + i, 30))
            for name, score in zip(QUESTIONS, scores, strict=True):
                grade = gb.find_grade(name, "nb", "ps0", student)
                if name == "essay":
                    grade.auto_score, grade.manual_score, grade.needs_manual_grade = None, score, score is None
                else:
                    grade.auto_score, grade.needs_manual_grade = score, False
        gb.add_student("dan")  # enrolled, never submitted
        gb.db.commit()
    with open(root / "reports" / "ps0.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["assignment", "student", "notebook", "status", "score", "max_score", "sandbox", "detail"])
        for student, (_, status) in CLASS.items():
            out.writerow(["ps0", student, "nb", status, 0, 10, "bubblewrap", f"{status} detail of {student}"])
        out.writerow(["ps0", "dan", "nb", "missing", 0, 10, "bubblewrap", "no such notebook submitted"])
    return root


def _row(page: str, first: str) -> list[str]:
    """The cells of the table row that starts with ``first``."""
    match = re.search(rf"<tr><td>{re.escape(first)}</td>(.*?)</tr>", page)
    assert match, first
    return [first, *re.findall(r"<td[^>]*>(.*?)</td>", match.group(1))]


def test_report_numbers_match_the_gradebook(course):
    backend = matplotlib.get_backend()
    html_path, png_path, _ = report.write("ps0", course)
    assert matplotlib.get_backend() == backend  # the user's pyplot backend is left alone
    page = html_path.read_text()
    assert "3 submissions of 4 students; max 10 points; mean 4.33, median 2" in page  # 10, 2, 1
    assert _row(page, "t1") == ["t1", "nb", "check", "2", "1.33", "2", "0", "1", "0"]
    assert _row(page, "t2") == ["t2", "nb", "check", "3", "1.00", "1", "0", "2", "0"]
    assert _row(page, "essay") == ["essay", "nb", "written", "5", "3.00", "1", "1", "0", "1"]
    failed = page[page.index("Checks failed most") : page.index("How grading went")]
    assert failed.index("<td>t2</td>") < failed.index("<td>t1</td>")  # most failed first
    assert re.search(r"<td>t2</td><td class=\"n\">2</td><td class=\"n\">3</td>", failed)
    for status in ("graded", "errors", "policy", "missing"):
        assert re.search(rf"<td>{status}</td><td class=\"n\">1</td>", page), status
    stuck = page[page.index("Who is stuck") :]
    assert "one submission per student" in stuck
    assert stuck.index("<td>dan</td>") < stuck.index("<td>cat</td>") < stuck.index("<td>bob</td>")
    assert "<td>ann</td>" not in stuck and "2026-03-01 10:30" in stuck  # bob's submission time


def test_report_png_is_an_image(course):
    from PIL import Image

    _, png_path, _ = report.write("ps0", course)
    with Image.open(png_path) as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] >= 1000


def test_report_cli_and_errors(course, capsys, tmp_path):
    from ftlab.cli import main

    assert main(["report", "ps0", "--root", str(course)]) == 0
    assert "3 submissions; 3 below 50%" in capsys.readouterr().out
    assert report.run_cli(report.build_parser().parse_args(["nope", "--root", str(course)])) == 2
    assert "no assignment 'nope'" in capsys.readouterr().err
    assert report.run_cli(report.build_parser().parse_args(["ps0", "--root", str(tmp_path)])) == 2
