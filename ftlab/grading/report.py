"""``ftlab report ASSIGNMENT``: a graded class at a glance, for the instructor.

    ftlab grade ps1_parameters --jobs 2
    ftlab report ps1_parameters            # -> reports/ps1_parameters.html and .png

``ftlab grade`` leaves two records: the gradebook (nbgrader's, every cell's score)
and ``reports/<assignment>.csv`` (the driver's, how each submission's grading went).
Neither answers the questions a teacher asks after a deadline -- which question
did the class not get, which check fails most, whose grading went wrong, who is
stuck -- so this reads both and writes one page and one figure:

* points per question: how many students got full marks, some, none (or wait for a
  person to grade a written answer);
* the checks failed most: students whose autograded score on a cell is below its points;
* statuses (``graded``, ``errors``, ``policy``, ``timeout``, ``missing``, ...) from the CSV;
* who is stuck: below a share of the points (default half), with what failed and when
  they submitted. nbgrader's gradebook keeps one submission per student (the last one
  collected), so attempts over time cannot be shown; the page says so.

The figure is drawn on a standalone matplotlib ``Figure`` with the Agg canvas: the
user's pyplot backend and state are never touched.

The examples below use a class of three: alice (full marks on the check, her written
answer waiting for a person), bob (the check failed) and carol (no submission).
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import statistics
import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .protocol import GradingError

__all__ = ["Question", "Student", "ClassResults", "read_class", "draw", "render", "write", "build_parser", "run_cli"]

ATTEMPTS_NOTE = (
    "nbgrader's gradebook keeps one submission per student (the last one collected), so attempts over time "
    "cannot be shown; the submission time of each is."
)


@dataclass
class Question:
    """A graded cell of the assignment.

    >>> Question("count_params", "explain_freezing", 1.0, auto=False)  # a written answer, graded by a person
    Question(notebook='count_params', grade_id='explain_freezing', points=1.0, auto=False)
    """

    notebook: str
    grade_id: str
    points: float
    auto: bool  # an autograded check (False: a written answer graded by a person)


@dataclass
class Student:
    """One student's scores (None: a written answer not graded yet) and how their grading went.

    >>> alice = Student("alice", scores={"check_count": 2.0, "explain": None}, statuses=["graded"])
    >>> alice.score  # what is graded so far
    2.0
    """

    student: str
    timestamp: str = ""
    scores: dict[str, float | None] = field(default_factory=dict)  # grade id -> score (None: not graded yet)
    auto_scores: dict[str, float | None] = field(default_factory=dict)
    statuses: list[str] = field(default_factory=list)  # one per notebook, from the CSV
    details: list[str] = field(default_factory=list)
    submitted: bool = True

    @property
    def score(self) -> float:
        return sum(s or 0 for s in self.scores.values())


@dataclass
class ClassResults:
    """The class on one assignment: its questions and its students; what the page and the figure count.

    >>> check = Question("count_params", "check_count", 2.0, auto=True)
    >>> explain = Question("count_params", "explain", 1.0, auto=False)
    >>> students = [
    ...     Student("alice", scores={"check_count": 2.0, "explain": None}, auto_scores={"check_count": 2.0}),
    ...     Student("bob", scores={"check_count": 0.0, "explain": 1.0}, auto_scores={"check_count": 0.0}),
    ...     Student("carol", submitted=False),
    ... ]
    >>> results = ClassResults("ps1_parameters", [check, explain], students)
    >>> results.buckets(explain), results.failed(check), [s.student for s in results.stuck(0.5)]
    ({'full': 1, 'some': 0, 'none': 0, 'to grade by hand': 1}, 1, ['carol', 'bob'])
    """

    assignment: str
    questions: list[Question]
    students: list[Student]

    @property
    def max_score(self) -> float:
        return sum(q.points for q in self.questions)

    def submitted(self) -> list[Student]:
        return [s for s in self.students if s.submitted]

    def buckets(self, q: Question) -> dict[str, int]:
        """Students with full marks, some, none, or waiting for a person, on one question."""
        counts = Counter()
        for s in self.submitted():
            score = s.scores.get(q.grade_id)
            if score is None:
                counts["to grade by hand"] += 1
            else:
                counts["full" if score >= q.points else "some" if score > 0 else "none"] += 1
        return {k: counts[k] for k in ("full", "some", "none", "to grade by hand")}

    def failed(self, q: Question) -> int:
        """Students whose autograded score on this check is below its points (never graded counts as failed)."""
        return sum(1 for s in self.submitted() if (s.auto_scores.get(q.grade_id) or 0) < q.points)

    def failed_most(self) -> list[tuple[Question, int]]:
        ranked = [(q, self.failed(q)) for q in self.questions if q.auto]
        return sorted(ranked, key=lambda qn: -qn[1])

    def statuses(self) -> Counter:
        return Counter(st for s in self.students for st in (s.statuses or ["no report row"]))

    def stuck(self, below: float) -> list[Student]:
        """Students under ``below`` of the points, lowest first."""
        limit = below * self.max_score
        return sorted((s for s in self.students if s.score < limit), key=lambda s: (s.score, s.student))


def _order(root: Path, assignment: str, notebook: str, names: list[str]) -> list[str]:
    """Grade ids in the source notebook's order (the gradebook keeps none), by name where there is no source."""
    from .driver import _config

    source_dir = _config(root).get("CourseDirectory", {}).get("source_directory", "source")
    path = root / source_dir / assignment / f"{notebook}.ipynb"
    try:
        cells = nbformat.read(path, as_version=4).cells
        order = [c.metadata.get("nbgrader", {}).get("grade_id") for c in cells]
    except (OSError, ValueError):
        order = []
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def _questions(gb, root: Path, assignment: str) -> list[Question]:
    from nbgrader.api import MissingEntry

    try:
        source = gb.find_assignment(assignment)
    except MissingEntry:
        raise GradingError(f"no assignment {assignment!r} in the gradebook") from None
    found = []
    for nb in sorted(source.notebooks, key=lambda n: n.name):
        locked = {c.name for c in nb.source_cells if c.locked}
        cells = {g.name: g for g in nb.grade_cells}
        for name in _order(root, assignment, nb.name, list(cells)):
            found.append(Question(nb.name, name, float(cells[name].max_score), name in locked))
    return found


def _students(gb, assignment: str) -> list[Student]:
    found = {}
    for sub in gb.find_assignment(assignment).submissions:
        s = Student(sub.student.id, sub.timestamp.strftime("%Y-%m-%d %H:%M") if sub.timestamp else "")
        for nb in sub.notebooks:
            for g in nb.grades:
                waiting = g.needs_manual_grade and g.manual_score is None
                s.scores[g.name] = None if waiting else float(g.score)
                s.auto_scores[g.name] = g.auto_score
        found[s.student] = s
    for student in gb.students:
        found.setdefault(student.id, Student(student.id, submitted=False))
    return [found[k] for k in sorted(found)]


def read_class(assignment: str, root: str | Path = ".") -> ClassResults:
    """The gradebook's scores and the driver's report rows of one assignment.

    Run where the class was graded (``ftlab grade``): anywhere else it says so.

    >>> read_class("ps1_parameters", root="/nonexistent")
    Traceback (most recent call last):
    ...
    ftlab.grading.protocol.GradingError: /nonexistent has no gradebook.db: run it in the course root (or --root)
    """
    root = Path(root).resolve()
    if not (root / "gradebook.db").is_file():
        raise GradingError(f"{root} has no gradebook.db: run it in the course root (or --root)")
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning  # nbgrader's score properties warn about their own sessions

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)
        results = ClassResults(assignment, _questions(gb, root, assignment), _students(gb, assignment))
    by_id = {s.student: s for s in results.students}
    csv_path = root / "reports" / f"{assignment}.csv"
    if csv_path.is_file():
        with open(csv_path, newline="") as fh:
            for row in csv.DictReader(fh):
                s = by_id.setdefault(row["student"], Student(row["student"], submitted=False))
                if s not in results.students:
                    results.students.append(s)
                s.statuses.append(row["status"])
                if row.get("detail"):
                    s.details.append(row["detail"])
    for s in results.students:
        if not s.submitted and not s.statuses:
            s.statuses = ["no submission"]
    return results


# --------------------------------------------------------------------------- the figure

_COLOURS = {"full": "#2e8b57", "some": "#e0a800", "none": "#c0392b", "to grade by hand": "#9aa0aa"}


def _draw_questions(ax, results: ClassResults) -> None:
    labels = [f"{q.grade_id} ({q.points:g})" + ("" if q.auto else " *") for q in results.questions][::-1]
    left = [0] * len(labels)
    for bucket, colour in _COLOURS.items():
        counts = [results.buckets(q)[bucket] for q in results.questions][::-1]
        if any(counts):
            ax.barh(labels, counts, left=left, color=colour, label=bucket)
            left = [a + b for a, b in zip(left, counts, strict=True)]
    ax.set_xlabel("students")
    written = " (* written, graded by a person)" if not all(q.auto for q in results.questions) else ""
    ax.set_title(f"Points per question{written}", loc="left", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=4, fontsize=8, frameon=False)  # off the bars
    ax.xaxis.get_major_locator().set_params(integer=True)


def _draw_totals(ax, results: ClassResults) -> None:
    scores = [s.score for s in results.submitted()]
    top = results.max_score or 1
    ax.hist(scores, bins=[x - 0.5 for x in range(int(top) + 2)], color="#4062bb", edgecolor="white")
    ax.set_xlim(-0.5, top + 0.5)
    ax.set_xlabel(f"total points (of {top:g})")
    ax.set_ylabel("students")
    ax.set_title(f"Totals ({len(scores)} submissions)", loc="left", fontsize=10)
    ax.yaxis.get_major_locator().set_params(integer=True)


def _draw_statuses(ax, results: ClassResults) -> None:
    counts = results.statuses().most_common()
    names = [n for n, _ in counts][::-1]
    colours = ["#2e8b57" if n == "graded" else "#e0a800" if n == "errors" else "#c0392b" for n in names]
    ax.barh(names, [c for _, c in counts][::-1], color=colours)
    ax.set_xlabel("notebooks")
    ax.set_title("How grading went (reports/*.csv)", loc="left", fontsize=10)
    ax.xaxis.get_major_locator().set_params(integer=True)


def draw(results: ClassResults) -> bytes:
    r"""The three panels as PNG bytes, on a Figure of its own (pyplot is not imported).

    >>> questions = [Question("count_params", "check_count", 2.0, True)]
    >>> students = [Student("alice", scores={"check_count": 2.0}), Student("bob", statuses=["errors"])]
    >>> png = draw(ClassResults("ps1_parameters", questions, students))
    >>> png[:8]
    b'\x89PNG\r\n\x1a\n'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height = max(3.6, 0.35 * len(results.questions) + 2.0)
    fig = Figure(figsize=(13, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.4, 1, 1]})
    _draw_questions(axes[0], results)
    _draw_totals(axes[1], results)
    _draw_statuses(axes[2], results)
    fig.suptitle(f"{results.assignment}: {len(results.submitted())} submissions, {len(results.students)} students")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# --------------------------------------------------------------------------- the page

_CSS = """body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#1d2330}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.2rem .6rem;border-bottom:1px solid #e4e6ee;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%}.note{color:#555;font-style:italic}"""


def _table(head: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    def cell(i: int, v) -> str:
        text = f"{v:g}" if isinstance(v, float) else str(v)
        return f'<td class="n">{html.escape(text)}</td>' if i in numeric else f"<td>{html.escape(text)}</td>"

    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(cell(i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{header}</tr>{body}</table>"


def _question_rows(results: ClassResults) -> list[list]:
    rows = []
    for q in results.questions:
        got = [s.scores.get(q.grade_id) for s in results.submitted()]
        graded = [g for g in got if g is not None]
        b = results.buckets(q)
        mean = f"{statistics.mean(graded):.2f}" if graded else "–"
        kind = "check" if q.auto else "written"
        rows.append(
            [q.grade_id, q.notebook, kind, q.points, mean, b["full"], b["some"], b["none"], b["to grade by hand"]]
        )
    return rows


def _stuck_rows(results: ClassResults, below: float) -> list[list]:
    rows = []
    for s in results.stuck(below):
        failed = [q.grade_id for q in results.questions if q.auto and (s.auto_scores.get(q.grade_id) or 0) < q.points]
        status = ", ".join(s.statuses) or "–"
        rows.append(
            [
                s.student,
                s.score,
                status,
                ", ".join(failed) or "–",
                s.timestamp or "–",
                "; ".join(d.split("; ")[0] for d in s.details)[:200],
            ]
        )
    return rows


def render(results: ClassResults, png: bytes, below: float = 0.5) -> str:
    """The report page, self-contained (the figure is embedded as well as written next to it).

    >>> questions = [Question("count_params", "check_count", 2.0, True)]
    >>> students = [Student("alice", scores={"check_count": 2.0}), Student("<bob>", scores={"check_count": 0.0})]
    >>> page = render(ClassResults("ps1_parameters", questions, students), png=b"...", below=0.5)
    >>> "<p>2 submissions of 2 students; max 2 points; mean 1.00, median 1</p>" in page
    True
    >>> "<td>&lt;bob&gt;</td>" in page  # under "Who is stuck", escaped
    True
    """
    sub = results.submitted()
    totals = [s.score for s in sub]
    overview = f"{len(sub)} submissions of {len(results.students)} students; max {results.max_score:g} points; " + (
        f"mean {statistics.mean(totals):.2f}, median {statistics.median(totals):g}" if totals else "no scores"
    )
    failed = [[q.grade_id, n, len(sub)] for q, n in results.failed_most()]
    statuses = [[name, n] for name, n in results.statuses().most_common()]
    image = base64.b64encode(png).decode()
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{results.assignment}</title>'
        f"<style>{_CSS}</style></head><body><h1>{html.escape(results.assignment)}</h1><p>{overview}</p>"
        f'<img alt="score distribution" src="data:image/png;base64,{image}">'
        "<h2>Points per question</h2>"
        + _table(
            ["question", "notebook", "kind", "points", "mean", "full", "some", "none", "to grade by hand"],
            _question_rows(results),
            {3, 4, 5, 6, 7, 8},
        )
        + "<h2>Checks failed most</h2><p class=note>students whose autograded score is below the check's points</p>"
        + _table(["check", "students failed", "of"], failed, {1, 2})
        + "<h2>How grading went</h2>"
        + _table(["status", "notebooks"], statuses, {1})
        + f"<h2>Who is stuck (below {below:.0%} of the points)</h2><p class=note>{html.escape(ATTEMPTS_NOTE)}</p>"
        + _table(
            ["student", "points", "status", "failed checks", "submitted", "detail"], _stuck_rows(results, below), {1}
        )
        + "</body></html>\n"
    )


def write(assignment: str, root: str | Path = ".", below: float = 0.5) -> tuple[Path, Path, ClassResults]:
    """Write ``reports/<assignment>.html`` and ``.png``; return their paths and what they were made from.

    It reads the course's gradebook (:func:`read_class`); a folder without one is not a course:

    >>> write("ps1_parameters", root="/nonexistent")
    Traceback (most recent call last):
    ...
    ftlab.grading.protocol.GradingError: /nonexistent has no gradebook.db: run it in the course root (or --root)
    """
    results = read_class(assignment, root)
    folder = Path(root).resolve() / "reports"
    folder.mkdir(exist_ok=True)
    png = draw(results)
    (folder / f"{assignment}.png").write_bytes(png)
    (folder / f"{assignment}.html").write_text(render(results, png, below), encoding="utf-8")
    return folder / f"{assignment}.html", folder / f"{assignment}.png", results


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """``ftlab report ASSIGNMENT [--root ROOT] [--stuck-below SHARE]``.

    >>> build_parser().parse_args(["ps1_parameters", "--stuck-below", "0.3"])
    Namespace(assignment='ps1_parameters', root='.', stuck_below=0.3)
    """
    parser = parser or argparse.ArgumentParser(prog="ftlab report")
    parser.description = "A graded assignment at a glance: reports/ASSIGNMENT.html and reports/ASSIGNMENT.png."
    parser.add_argument("assignment")
    parser.add_argument("--root", default=".", help="course root (default: current directory)")
    parser.add_argument(
        "--stuck-below", type=float, default=0.5, help="share of the points under which a student is listed as stuck"
    )
    return parser


def run_cli(args: argparse.Namespace) -> int:
    """Write the page and the figure and say how many are stuck; 2 (and why, on stderr) when it cannot.

    >>> import contextlib
    >>> with contextlib.redirect_stderr(sys.stdout):
    ...     run_cli(build_parser().parse_args(["ps1_parameters", "--root", "/nonexistent"]))
    ftlab report: error: /nonexistent has no gradebook.db: run it in the course root (or --root)
    2
    """
    try:
        page, png, results = write(args.assignment, args.root, args.stuck_below)
    except GradingError as exc:
        print(f"ftlab report: error: {exc}", file=sys.stderr)
        return 2
    stuck = results.stuck(args.stuck_below)
    print(f"{len(results.submitted())} submissions; {len(stuck)} below {args.stuck_below:.0%}; wrote {page} and {png}")
    return 0
