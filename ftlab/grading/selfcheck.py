"""``ftlab check NOTEBOOK``: a self-paced student grades their own copy, with the class's grader.

    ftlab check exercises/ps4_bert_head/bert_head.ipynb      # -> bert_head.feedback.html next to it
    ftlab check exercises/ps4_bert_head --no-open --fast

A student working alone has no hub and no instructor, but deserves the same verdict
the class gets: the full checks (hidden ones included, where this checkout has the
instructor's sources), run in the sandbox, with the own-work policy. So this builds a
private, temporary nbgrader course -- the repository's ``nbgrader_config.py``, the
assignment's source notebook, ``nbgrader generate_assignment`` -- puts the copy in
``submitted/you/<assignment>/`` and grades it with :func:`ftlab.grading.driver.grade_class`,
the very path ``ftlab grade`` takes. The graded notebook then goes through nbgrader's
feedback preprocessors (``GetGrades``, ``ClearHiddenTests``) and becomes a page
(:mod:`.feedback_page`) that holds the student's cells, each check's points and
failure message, and no test code and no solution.

Without the instructor's sources (a student bundle with ``exercises/`` only) the
copy is graded with the checks it shows, and the page and the summary say so: the
hidden checks that decide the grade did not run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import warnings
import webbrowser
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

from .driver import NotebookResult, _config, grade_class
from .feedback import Outcome, fix_first, outcomes, state_of, totals
from .feedback_page import Page, render
from .jobs import run_nbgrader
from .protocol import GradingError

__all__ = [
    "Located",
    "CheckResult",
    "locate",
    "check",
    "build_parser",
    "run_cli",
    "feedback_notebook",
    "summary_text",
    "open_page",
]

STUDENT = "you"  # the student id inside the private course
CHECKOUT = Path(__file__).resolve().parents[2]  # this ftlab checkout: solutions/ and nbgrader_config.py
NO_SOURCE = (
    "No instructor's source was found for this assignment (this copy of the course has no solutions/): "
    "graded with the visible checks of your copy only. The hidden checks, which decide the grade, did not run."
)


@dataclass
class Located:
    r"""Where a student's notebook belongs: its assignment, and the course files to grade it with.

    A student bundle has the released exercise, not the instructor's source (``instructor`` is False):

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     course = Path(tmp)
    ...     _ = (course / "nbgrader_config.py").write_text("c = get_config()\n")
    ...     (course / "release" / "ps1_parameters").mkdir(parents=True)
    ...     nbformat.write(nbformat.v4.new_notebook(), course / "release" / "ps1_parameters" / "count_params.ipynb")
    ...     found = locate(course / "release" / "ps1_parameters" / "count_params.ipynb", course=course)
    >>> found.assignment, found.name, found.source.relative_to(course).as_posix(), found.instructor
    ('ps1_parameters', 'count_params', 'release/ps1_parameters/count_params.ipynb', False)
    """

    notebook: Path  # the student's copy
    assignment: str
    name: str  # the notebook's name in the assignment (without .ipynb)
    config: Path  # nbgrader_config.py
    source: Path  # the notebook nbgrader makes the assignment from
    instructor: bool  # whether ``source`` is the instructor's (with hidden tests)


@dataclass
class CheckResult:
    """What ``ftlab check`` made of one notebook: the page it wrote, the report row, each check's outcome.

    >>> located = Located(Path("work/count_params.ipynb"), "ps1_parameters", "count_params",
    ...                   Path("nbgrader_config.py"), Path("source/ps1_parameters/count_params.ipynb"), True)
    >>> outcomes = [Outcome("check_count", "", 0.0, 2.0, "AssertionError: 10"), Outcome("check_lrs", "", 1.0, 1.0)]
    >>> row = NotebookResult("you", "count_params", "errors")
    >>> result = CheckResult(Path("work/count_params.feedback.html"), located, row, outcomes)
    >>> totals(result.outcomes), result.notes
    ((1.0, 3.0), [])
    """

    page: Path
    located: Located
    row: NotebookResult
    outcomes: list[Outcome]
    notes: list[str] = field(default_factory=list)


def _notebook(path: Path) -> Path:
    """The notebook a path names: the file, or the one notebook in a folder."""
    if path.is_dir():
        found = sorted(p for p in path.glob("*.ipynb") if not p.name.startswith("."))
        if len(found) != 1:
            raise GradingError(f"{path} holds {len(found)} notebooks; name the one to check")
        return found[0]
    if path.suffix != ".ipynb" or not path.is_file():
        raise GradingError(f"{path} is not a notebook (.ipynb) or a folder with one")
    return path


def _roots(notebook: Path, course: Path | None) -> list[Path]:
    """Course folders to look in: the one asked for, else those above the notebook, then this checkout."""
    if course is not None:
        return [course.resolve()]
    above = [p for p in notebook.resolve().parents if (p / "nbgrader_config.py").is_file()]
    return [*above, CHECKOUT] if CHECKOUT not in above else above


def _match(folder: Path, notebook: Path, assignment_hint: str | None) -> tuple[str, str] | None:
    """(assignment, notebook name) in a course's source or release folder, from folder name or notebook name."""
    for assignment in filter(None, [assignment_hint, notebook.parent.name]):
        names = sorted(p.stem for p in (folder / assignment).glob("*.ipynb"))
        if notebook.stem in names or len(names) == 1:
            return assignment, notebook.stem if notebook.stem in names else names[0]
    hits = sorted(folder.glob(f"*/{notebook.name}"))
    return (hits[0].parent.name, notebook.stem) if len(hits) == 1 else None


def locate(notebook: Path, course: Path | None = None) -> Located:
    """Find the assignment of a student's copy, and the instructor's source for it where there is one.

    >>> import tempfile
    >>> from ftlab.grading.driver import _example_course
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     course = _example_course(tmp)
    ...     found = locate(course / "submitted" / "alice" / "ps1_parameters" / "count_params.ipynb", course=course)
    >>> found.assignment, found.name, found.source.relative_to(course).as_posix(), found.instructor
    ('ps1_parameters', 'count_params', 'source/ps1_parameters/count_params.ipynb', True)
    """
    meta = nbformat.read(notebook, as_version=4).metadata.get("nbgrader", {})
    hint = meta.get("assignment") or meta.get("assignment_id")
    roots = [r for r in _roots(notebook, course) if (r / "nbgrader_config.py").is_file()]
    if not roots:
        raise GradingError("no nbgrader_config.py found above the notebook or in this ftlab checkout (--course)")
    for root in roots:  # the instructor's sources first, wherever they are
        cd = _config(root).get("CourseDirectory", {})
        found = _match(root / cd.get("source_directory", "source"), notebook, hint)
        if found:
            path = root / cd.get("source_directory", "source") / found[0] / f"{found[1]}.ipynb"
            return Located(notebook, found[0], found[1], root / "nbgrader_config.py", path, True)
    for root in roots:  # else the released exercise, else the student's own copy stands in
        cd = _config(root).get("CourseDirectory", {})
        found = _match(root / cd.get("release_directory", "release"), notebook, hint)
        if found:
            path = root / cd.get("release_directory", "release") / found[0] / f"{found[1]}.ipynb"
            return Located(notebook, found[0], found[1], roots[0] / "nbgrader_config.py", path, False)
    assignment = hint or notebook.parent.name
    return Located(notebook, assignment, notebook.stem, roots[0] / "nbgrader_config.py", notebook, False)


def _private_course(tmp: Path, found: Located) -> Path:
    """A course of one assignment and one student: config, source, generated release, the copy submitted."""
    root = tmp / "course"
    root.mkdir()
    shutil.copy(found.config, root / "nbgrader_config.py")
    source_dir = _config(root).get("CourseDirectory", {}).get("source_directory", "source")
    target = root / source_dir / found.assignment
    if found.instructor:  # the assignment's other files (data) travel with its notebook
        shutil.copytree(found.source.parent, target, ignore=shutil.ignore_patterns(".*", "__pycache__"))
    else:
        target.mkdir(parents=True)
        source = nbformat.read(found.source, as_version=4)
        source.cells = [
            c
            for c in source.cells
            if c.metadata.get("nbgrader", {}).get("grade_id")  # instructor cells only
            or c.cell_type == "markdown"
            and not c.metadata.get("nbgrader")
        ]
        nbformat.write(source, target / f"{found.name}.ipynb")
    run_nbgrader(["generate_assignment", found.assignment, "--force"], root)
    submitted = root / "submitted" / STUDENT / found.assignment
    submitted.mkdir(parents=True)
    shutil.copyfile(found.notebook, submitted / f"{found.name}.ipynb")
    return root


def feedback_notebook(root: Path, assignment: str, name: str, student: str = STUDENT) -> NotebookNode:
    """The autograded notebook through nbgrader's feedback preprocessors: scores in, hidden tests out.

    >>> import shutil, tempfile
    >>> from ftlab.grading.driver import _example_course
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     course = _example_course(tmp)
    ...     (course / "autograded" / "alice" / "ps1_parameters").mkdir(parents=True)
    ...     _ = shutil.copy(course / "submitted" / "alice" / "ps1_parameters" / "count_params.ipynb",
    ...                     course / "autograded" / "alice" / "ps1_parameters")  # as if autograded
    ...     check = feedback_notebook(course, "ps1_parameters", "count_params", student="alice").cells[1]
    >>> check.metadata.nbgrader.score, check.metadata.nbgrader.points, "HIDDEN" in check.source
    (0.0, 2.0, False)
    """
    from nbgrader.preprocessors import ClearHiddenTests, GetGrades

    nb = nbformat.read(root / "autograded" / student / assignment / f"{name}.ipynb", as_version=4)
    resources = {
        "nbgrader": {
            "notebook": name,
            "assignment": assignment,
            "student": student,
            "db_url": f"sqlite:///{root / 'gradebook.db'}",
        }
    }
    nb, resources = GetGrades().preprocess(nb, resources)
    nb, _ = ClearHiddenTests().preprocess(nb, resources)
    return nb


def _notes(found: Located, row: NotebookResult, sandbox: bool) -> list[str]:
    notes = [] if found.instructor else [NO_SOURCE]
    if not sandbox:
        notes.append("Graded without a sandbox (--no-sandbox): your code ran with your own rights.")
    # graded / errors / policy: the checks' own messages say it all. (The row's metadata notes are left out:
    # the driver compares a released copy with the source, which lacks the release's cell_type and checksums.)
    if row.status not in ("graded", "errors", "policy"):
        notes.append(f"Grading status: {row.status}. {row.details[0] if row.details else ''}".strip())
    return notes


def check(
    path: str | Path,
    *,
    course: str | Path | None = None,
    out: str | Path | None = None,
    fast: bool | None = None,
    sandbox: bool = True,
) -> CheckResult:
    """Grade a student's copy as the class is graded and write its feedback page; see the module docstring.

    It grades in the sandbox, as the class is graded. What it takes is a notebook, or a folder with one:

    >>> check("notes.txt")
    Traceback (most recent call last):
    ...
    ftlab.grading.protocol.GradingError: notes.txt is not a notebook (.ipynb) or a folder with one
    """
    notebook = _notebook(Path(path))
    found = locate(notebook, Path(course) if course else None)
    with tempfile.TemporaryDirectory(prefix="ftlab-check-") as tmp:
        root = _private_course(Path(tmp), found)
        rows = grade_class(
            found.assignment, root=root, students=[STUDENT], fast=fast, sandbox=sandbox, log=lambda line: None
        )
        row = next(r for r in rows if r.notebook == found.name)
        graded = root / "autograded" / STUDENT / found.assignment / f"{found.name}.ipynb"
        if not graded.exists():
            raise GradingError(f"{notebook} was not graded: {row.status}: {row.detail}")
        nb = feedback_notebook(root, found.assignment, found.name)
    result = CheckResult(
        Path(out) if out else notebook.with_name(f"{notebook.stem}.feedback.html"),
        found,
        row,
        outcomes(nb),
        _notes(found, row, sandbox),
    )
    title = f"Feedback on {notebook.name} ({found.assignment})"
    result.page.write_text(render(Page(title, result.outcomes, result.notes), nb), encoding="utf-8")
    return result


def summary_text(result: CheckResult) -> str:
    """The few lines a terminal shows: points per question and what to fix first.

    >>> located = Located(Path("work/count_params.ipynb"), "ps1_parameters", "count_params",
    ...                   Path("nbgrader_config.py"), Path("source/ps1_parameters/count_params.ipynb"), True)
    >>> outcomes = [Outcome("check_count", "", 0.0, 2.0, "AssertionError: 10"), Outcome("check_lrs", "", 1.0, 1.0)]
    >>> row = NotebookResult("you", "count_params", "errors")
    >>> result = CheckResult(Path("work/count_params.feedback.html"), located, row, outcomes)
    >>> print(summary_text(result))
    count_params.ipynb (ps1_parameters): 1 / 3 points
      check_count    0 / 2   failed
      check_lrs      1 / 1   passed
    What to fix first:
      1. check_count: AssertionError: 10
    Feedback page: work/count_params.feedback.html
    """
    got, possible = totals(result.outcomes)
    lines = [f"{result.located.notebook.name} ({result.located.assignment}): {got:g} / {possible:g} points"]
    lines += [f"  note: {n}" for n in result.notes]
    width = max([len(o.grade_id) for o in result.outcomes] + [8])
    for o in result.outcomes:
        score = "–" if o.score is None else f"{o.score:g}"
        lines.append(f"  {o.grade_id:<{width}}  {score:>3} / {o.points:<3g} {state_of(o)}")
    todo = fix_first(result.outcomes)
    lines.append("What to fix first:" if todo else "Every autograded check passed.")
    lines += [f"  {i}. {o.grade_id}: {o.message or 'failed'}" for i, o in enumerate(todo, 1)]
    lines.append(f"Feedback page: {result.page}")
    return "\n".join(lines)


def open_page(page: Path) -> bool:
    """Show the page in a graphical browser if there is one; never wait for it, never fail.

    >>> from unittest import mock
    >>> with mock.patch("webbrowser.get", side_effect=webbrowser.Error("could not locate runnable browser")):
    ...     open_page(Path("count_params.feedback.html"))  # no browser here: no page opened, no error
    False
    """
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False  # a terminal-only machine: a text browser would take over the terminal
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return False
    if isinstance(browser, webbrowser.GenericBrowser) and not isinstance(browser, webbrowser.BackgroundBrowser):
        return False  # a console browser would block
    threading.Thread(target=browser.open, args=(page.resolve().as_uri(),), daemon=True).start()
    return True


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """``ftlab check PATH [--no-open] [--fast] [--out PAGE] [--course FOLDER] [--no-sandbox]``.

    >>> args = build_parser().parse_args(["exercises/ps4_bert_head", "--no-open", "--fast"])
    >>> args.path, args.no_open, args.fast, args.out, args.no_sandbox
    ('exercises/ps4_bert_head', True, True, None, False)
    """
    parser = parser or argparse.ArgumentParser(prog="ftlab check")
    parser.description = "Grade your copy of an exercise with the full checks, sandboxed, and write a feedback page."
    parser.add_argument("path", help="your notebook, or its folder")
    parser.add_argument("--no-open", action="store_true", help="do not open the page in a browser")
    parser.add_argument("--fast", action="store_true", help="FTLAB_FAST=1: small data, few epochs (quick try)")
    parser.add_argument("--out", help="where to write the page (default: NOTEBOOK.feedback.html next to it)")
    parser.add_argument("--course", help="the course folder with nbgrader_config.py (default: found)")
    parser.add_argument("--no-sandbox", action="store_true", help="where bubblewrap cannot run (the page says so)")
    return parser


def run_cli(args: argparse.Namespace) -> int:
    """Print the summary; 0 when the notebook was graded (whatever it scored), 2 when it could not be.

    >>> import contextlib
    >>> with contextlib.redirect_stderr(sys.stdout):
    ...     run_cli(build_parser().parse_args(["notes.txt", "--no-open"]))
    ftlab check: error: notes.txt is not a notebook (.ipynb) or a folder with one
    2
    """
    from sqlalchemy.exc import SAWarning  # nbgrader's gradebook warns about its own sessions: noise to a student

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SAWarning)
            result = check(
                args.path,
                course=args.course,
                out=args.out,
                fast=True if args.fast else None,
                sandbox=not args.no_sandbox,
            )
    except (GradingError, OSError, ValueError) as exc:
        print(f"ftlab check: error: {exc}", file=sys.stderr)
        return 2
    print(summary_text(result))
    if not args.no_open:
        open_page(result.page)
    return 0
