"""``ftlab grade``: autograde a whole class, N submissions at a time, and report on each.

    ftlab grade ps1_parameters                     # every submitted student, sandboxed
    ftlab grade ps5_finetune --fast --jobs 2       # FTLAB_FAST=1 in the kernels, two at a time
    ftlab grade ps1_parameters --student alice --student 'b*'
    ftlab grade ps1_parameters --no-sandbox        # only where bubblewrap cannot run; every row says so
    ftlab grade ps5_finetune --scheduler tcp://grader:8786   # on a Dask cluster's workers

Run it in the course root (where ``nbgrader_config.py``, ``solutions/``, ``submitted/``
and ``gradebook.db`` live). It writes ``reports/<assignment>.csv`` -- one row per
student and notebook: ``status``, ``score``, ``max_score``, ``sandbox`` and ``detail``
-- and prints the same table. Exit status 0 means every student was processed,
whatever their notebooks did; 2 means the driver itself could not run.

Each submission is graded by its own ``nbgrader autograde`` process in a private
copy of the course (the gradebook snapshot, the instructor's sources for that
assignment and that one submission), under a wall-clock guard. Only this process
writes the real gradebook, after a run has succeeded: a run that fails, is killed or
runs out of time leaves the student's previous autograded notebook and grades --
hand grades included -- exactly as they were, and the row says so. Inside nbgrader,
:class:`~ftlab.grading.executor.SandboxedExecute` runs the student's cells in a
sandboxed kernel and the test cells in the grader.

Every byte of a submission is hostile data (:mod:`~ftlab.grading.intake`): only the
assignment's notebooks and declared files are read, as regular single-link files,
without following any link; the instructor's cell metadata replaces the student's;
what was left out is named in the row. Whether the student did their own work is the
grader's decision (:mod:`~ftlab.grading.policy`, status ``policy``).

The pieces: :func:`open_course` (what every job of a run shares), :func:`prepare` (one
student's rows and jobs), a runner (:mod:`~ftlab.grading.runners`: threads or Dask)
that runs the jobs (:mod:`~ftlab.grading.jobs`), and :func:`finish`, the only writer of
the real gradebook (:mod:`~ftlab.grading.gradebook`).

The examples below run on a small course of their own (``_example_course(folder)``:
the assignment ``ps1_parameters``, its notebook ``count_params`` with the 2-point check
``check_count``, and alice's submission); nothing in them starts nbgrader or a kernel.

A submission already graded completely, with the same files, instructor sources,
config and options, is not graded again (``--force`` does). With ``--scheduler`` each
submission is a task on a Dask cluster (``dask.distributed``: a DaskHub/Dask Gateway
cluster or ``dask-jobqueue`` on Slurm alike): the worker grades it in its own sandbox
and sends back the job's gradebook and autograded files; this process alone merges
them. A worker killed mid-grade costs a re-run of that task elsewhere, never a double
entry; a scheduler that goes away stops the run with what was graded kept.

========================  ==========================================================
submission                outcome
========================  ==========================================================
infinite loop             cell interrupted after ``Execute.timeout`` s; status ``timeout``
loop ignoring Ctrl-C      kernel replaced after the timeout; status ``timeout``
kernel crash (os._exit)   kernel replaced, later cells run fresh; status ``kernel-died``
slow notebook overall     cells past the per-notebook budget not run (0); ``timeout``
raises on import / error  that cell's error is kept, dependent tests 0; ``errors``
edited test cell          nbgrader restores the instructor's test (checksums); noted
deleted test cell         re-added from the gradebook and graded; noted
not valid JSON            not run, every graded cell 0; status ``invalid-notebook``
link / hard link / FIFO   left out (named in the row); a notebook left out is ``missing``
tampered cell metadata    the instructor's metadata is used, the answers graded; noted
library call, eval, ...   the checks the code breaks score 0; status ``policy``
nbgrader failed / killed  previous grades kept (else 0); ``autograde-failed`` / ``wall-clock``
========================  ==========================================================
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode
from nbgrader.utils import compute_checksum

from . import gradebook
from .executor import RobustExecute
from .intake import read_submission, restore_instructor_cells
from .jobs import Job, JobResult, course_files, run_job
from .protocol import STATUS_OF_ERROR, GradingError
from .runners import DaskRunner, LocalRunner
from .sandbox import check_available

__all__ = [
    "NotebookResult",
    "Course",
    "Plan",
    "Job",
    "JobResult",
    "run_job",
    "open_course",
    "prepare",
    "finish",
    "grade_class",
    "default_wall_clock",
    "main",
    "check_nbgrader_args",
    "fingerprint",
    "write_report",
    "update_report",
    "build_parser",
    "run_cli",
]

STAMP = ".ftlab-grade.json"  # in autograded/<student>/<assignment>/: what the last complete grading was of


def _example_course(folder: str | Path) -> Path:
    """For the examples: a course in ``folder`` with the assignment ``ps1_parameters``; its root.

    The gradebook is :mod:`.gradebook`'s example (the notebook ``count_params``: the answer
    cell ``count_params`` and the 2-point check ``check_count``; alice has submitted); the
    source notebook holds the instructor's answer and the check, with a hidden test; alice's
    submission answers 10.
    """
    root = Path(folder)
    (root / "nbgrader_config.py").write_text("c = get_config()\n")
    gradebook._example(root).close()
    cell = nbformat.v4.new_code_cell
    answer = cell("", metadata={"nbgrader": {"grade_id": "count_params", "solution": True, "grade": False}})
    test = '"""count_params counts every parameter."""\nassert count_params(model) == 12\n'
    hidden = "### BEGIN HIDDEN TESTS\nassert count_params(other) == 6\n### END HIDDEN TESTS"
    meta = {"grade_id": "check_count", "grade": True, "solution": False, "locked": True, "points": 2}
    check = cell(test + hidden, metadata={"nbgrader": meta})
    check.metadata.nbgrader["checksum"] = compute_checksum(check)
    for where, returns in [("source", 12), ("submitted/alice", 10)]:
        answer.source = f"def count_params(model):\n    return {returns}"
        (root / where / "ps1_parameters").mkdir(parents=True)
        notebook = nbformat.v4.new_notebook(cells=[answer, check])
        nbformat.write(notebook, root / where / "ps1_parameters" / "count_params.ipynb")
    return root


@dataclass
class NotebookResult:
    """One row of the report: a student's notebook, how grading went, and the score.

    >>> row = NotebookResult("alice", "count_params", "errors", 1.0, 3.0, "bubblewrap")
    >>> row.details += ["CheckFailed: count_params(model): 10, not 12 in check_count", "the metadata of ... was edited"]
    >>> row.detail
    'CheckFailed: count_params(model): 10, not 12 in check_count; the metadata of ... was edited'
    """

    student: str
    notebook: str
    status: str = "graded"
    score: float = 0.0
    max_score: float = 0.0
    sandbox: str = ""
    details: list[str] = field(default_factory=list)

    @property
    def detail(self) -> str:
        return "; ".join(self.details)


def _label(cell: NotebookNode, index: int) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {index + 1}"


def _test_cell_notes(nb: NotebookNode, test_cells: list[str]) -> list[str]:
    """Notes on graded (locked) cells the student edited or deleted."""
    seen = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade_id"):
            seen[meta["grade_id"]] = cell
    notes = []
    for grade_id in test_cells:
        if grade_id not in seen:
            notes.append(f"test cell {grade_id} was deleted; restored and graded")
        elif compute_checksum(seen[grade_id]) != seen[grade_id].metadata["nbgrader"].get("checksum"):
            notes.append(f"test cell {grade_id} was edited; the instructor's version was graded")
    return notes


def _read_outcome(nb: NotebookNode, result: NotebookResult) -> None:
    """Set status/details from the errors recorded in an autograded notebook."""
    errors = []  # (cell label, ename, evalue), first error of each cell
    special = None
    for i, cell in enumerate(nb.cells):
        found = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if found:
            errors.append((_label(cell, i), found[0].get("ename", ""), str(found[0].get("evalue", ""))))
        for out in found:
            if special is None and out.get("ename") in STATUS_OF_ERROR:
                special = (_label(cell, i), out["ename"], str(out.get("evalue", "")))
    if special:
        label, ename, evalue = special
        result.status = STATUS_OF_ERROR[ename]
        result.details.insert(0, f"{ename} in {label}: {evalue or 'no reply before the timeout, interrupted'}")
    elif errors:
        result.status = "errors"
        label, ename, evalue = errors[0]
        what = f"{ename}: {evalue[:120]}" if evalue else ename
        more = f" (and {len(errors) - 1} more cells)" if len(errors) > 1 else ""
        result.details.insert(0, f"{what} in {label}{more}")


def default_wall_clock(root: Path, notebooks: list[str]) -> float:
    r"""Seconds per student: each notebook's RobustExecute budget from the course config, plus 120 s.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as root:
    ...     config = 'c = get_config()\nc.RobustExecute.overrides = {"finetune": {"notebook_timeout": 900}}\n'
    ...     _ = Path(root, "nbgrader_config.py").write_text(config)
    ...     default_wall_clock(Path(root), ["count_params", "finetune"])  # (600 + 120) + (900 + 120)
    1740.0
    """
    config = _config(root)
    robust = config.get("RobustExecute", {})
    default = robust.get("notebook_timeout", RobustExecute.notebook_timeout.default_value)
    overrides = robust.get("overrides", {})
    return float(sum(overrides.get(nb, {}).get("notebook_timeout", default) + 120 for nb in notebooks))


def _config(root: Path):
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()


# The classes whose settings `ftlab grade` passes on to nbgrader (--Class.trait=value).
_PASSABLE = {
    "Execute",
    "RobustExecute",
    "SandboxedExecute",
    "Autograde",
    "LimitOutput",
    "OverwriteCells",
    "ClearOutput",
    "ExecutePreprocessor",
}


def check_nbgrader_args(args: list[str]) -> None:
    """Raise ValueError for anything that is not a known ``--Class.trait=value`` setting.

    >>> check_nbgrader_args(["--Execute.timeout=30", "--SandboxedExecute.memory_mb=4096"])
    >>> check_nbgrader_args(["--SandboxedExecute.memory=4096"])
    Traceback (most recent call last):
    ...
    ValueError: unknown option '--SandboxedExecute.memory=4096': SandboxedExecute has no setting 'memory'
    """
    from . import executor

    classes = {"SandboxedExecute": executor.SandboxedExecute, "RobustExecute": executor.RobustExecute}
    for arg in args:
        m = re.fullmatch(r"--([A-Za-z_]\w*)\.([A-Za-z_]\w*)=(.*)", arg)
        if not m or m.group(1) not in _PASSABLE:
            raise ValueError(
                f"unknown option {arg!r}: ftlab grade takes its own options (see --help) and nbgrader settings "
                f"of the form --Class.trait=value for {', '.join(sorted(_PASSABLE))}"
            )
        cls = classes.get(m.group(1))
        if cls is not None and not cls.class_traits(config=True).get(m.group(2)):
            raise ValueError(f"unknown option {arg!r}: {m.group(1)} has no setting {m.group(2)!r}")


# --------------------------------------------------------------------------- the run's context


@dataclass
class Course:
    """What every job of one ``ftlab grade`` run shares: the course, the assignment's sources, the options.

    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> course = open_course("ps1_parameters", root=_example_course(tmp.name))
    >>> course.notebooks, course.submission("alice"), course.log_path.relative_to(course.root)
    (['count_params'], 'submitted/alice/ps1_parameters', PosixPath('reports/ps1_parameters.log'))
    >>> sorted(course.common)  # what each job's private course is made of
    ['gradebook.db', 'nbgrader_config.py', 'source/ps1_parameters/count_params.ipynb']
    >>> tmp.cleanup()
    """

    root: Path
    assignment: str
    sources: dict[str, NotebookNode]  # the instructor's notebooks, by name
    test_cells: dict[str, list[str]]  # notebook -> grade ids of its autograded tests
    extra_files: list[str]  # the other files the assignment's source has: a submission may bring them back
    source_dir: str
    nbgrader_args: list[str]
    env: dict[str, str]
    wall_clock: float
    isolation: str
    force: bool = False
    common: dict[str, bytes] = field(default_factory=dict)
    released: dict[str, NotebookNode] = field(default_factory=dict)  # as students got them (metadata reference)

    @property
    def notebooks(self) -> list[str]:
        return sorted(self.sources)

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.root / 'gradebook.db'}"

    @property
    def log_path(self) -> Path:
        return self.root / "reports" / f"{self.assignment}.log"

    def submission(self, student: str) -> str:
        return f"submitted/{student}/{self.assignment}"


def open_course(
    assignment: str,
    root: str | Path = ".",
    wall_clock: float | None = None,
    fast: bool | None = None,
    sandbox: bool = True,
    nbgrader_args: list[str] | None = None,
    force: bool = False,
) -> Course:
    """Check the course root and the options and read the assignment's sources; :class:`GradingError` if wrong.

    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> course = open_course("ps1_parameters", root=_example_course(tmp.name), fast=True)
    >>> course.test_cells, course.wall_clock, course.env, course.isolation
    ({'count_params': ['check_count']}, 720.0, {'FTLAB_FAST': '1'}, 'bubblewrap')
    >>> open_course("ps2_layerwise_lr", root=tmp.name)
    Traceback (most recent call last):
    ...
    ftlab.grading.protocol.GradingError: no assignment 'ps2_layerwise_lr': run `nbgrader generate_assignment` first
    >>> tmp.cleanup()
    """
    from nbgrader.api import Gradebook, MissingEntry

    nbgrader_args = list(nbgrader_args or [])
    check_nbgrader_args(nbgrader_args)
    root = Path(root).resolve()
    if not (root / "gradebook.db").exists() or not (root / "nbgrader_config.py").exists():
        raise GradingError(f"{root} is not a course root (no gradebook.db or nbgrader_config.py): run it there")
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        try:
            source = gb.find_assignment(assignment)
        except MissingEntry:
            raise GradingError(f"no assignment {assignment!r}: run `nbgrader generate_assignment` first") from None
        # the autograder tests: locked grade cells (written answers are unlocked)
        test_cells = {
            nb.name: sorted(c.name for c in nb.source_cells if c.locked and c.name in {g.name for g in nb.grade_cells})
            for nb in source.notebooks
        }
    directories = _config(root).get("CourseDirectory", {})
    source_dir = directories.get("source_directory", "source")
    folder = root / source_dir / assignment
    sources = {name: nbformat.read(folder / f"{name}.ipynb", as_version=4) for name in test_cells}
    release = root / directories.get("release_directory", "release") / assignment
    released = {  # generate_assignment adds metadata (checksums, cell types) the sources do not have
        name: nbformat.read(release / f"{name}.ipynb", as_version=4) if (release / f"{name}.ipynb").is_file() else nb
        for name, nb in sources.items()
    }
    extra = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix != ".ipynb"
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    env: dict[str, str] = {}
    if fast is not None:
        env["FTLAB_FAST"] = "1" if fast else "0"
    if not sandbox:
        nbgrader_args.append("--SandboxedExecute.sandbox=False")
    return Course(
        root=root,
        assignment=assignment,
        sources=sources,
        test_cells=test_cells,
        extra_files=extra,
        source_dir=source_dir,
        nbgrader_args=nbgrader_args,
        env=env,
        wall_clock=wall_clock if wall_clock is not None else default_wall_clock(root, sorted(test_cells)),
        isolation="bubblewrap" if sandbox else "NONE (--no-sandbox)",
        force=force,
        common=course_files(root, assignment, source_dir),
        released=released,
    )


# --------------------------------------------------------------------------- one student


@dataclass
class Plan:
    """One student's report rows and the nbgrader runs their submission needs (none if unchanged).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     plan = prepare(open_course("ps1_parameters", root=_example_course(tmp)), "bob")  # bob submitted nothing
    >>> plan.jobs, plan.rows["count_params"].status, plan.rows["count_params"].details
    ([], 'missing', ['not graded: no submission folder'])
    """

    student: str
    rows: dict[str, NotebookResult]
    jobs: list[Job]
    stamp: str


def fingerprint(course: Course, files: dict[str, bytes], left_out: list[str]) -> str:
    """What a grade depends on: the accepted submission, the instructor's sources, the config and the options.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     course = open_course("ps1_parameters", root=_example_course(tmp))
    >>> stamp = fingerprint(course, {"count_params.ipynb": b"{...}"}, [])
    >>> stamp == fingerprint(course, {"count_params.ipynb": b"{...}"}, []), len(stamp)
    (True, 64)
    >>> stamp == fingerprint(course, {"count_params.ipynb": b"{...}"}, ["data.csv: a symbolic link"])
    False
    """
    digest = hashlib.sha256()
    for rel, data in sorted({**files, **course.common}.items()):
        if rel != "gradebook.db":
            digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
    digest.update(json.dumps([course.nbgrader_args, sorted(course.env.items()), left_out]).encode())
    return digest.hexdigest()


def _unchanged(course: Course, plan: Plan) -> bool:
    """True (and the rows filled from the stamp) when this submission was graded completely with the same inputs."""
    try:
        previous = json.loads((course.root / "autograded" / plan.student / course.assignment / STAMP).read_text())
    except (OSError, ValueError):
        return False
    if course.force or previous.get("fingerprint") != plan.stamp or set(previous.get("rows", {})) != set(plan.rows):
        return False
    for name, row in plan.rows.items():
        row.status = previous["rows"][name]["status"]
        row.sandbox = previous["rows"][name].get("sandbox", course.isolation)
        row.details = ["unchanged since it was last graded; not graded again", *previous["rows"][name]["details"]]
    return True


def prepare(course: Course, student: str) -> Plan:
    """Read one submission safely and plan its grading: report rows, and the jobs to run.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     plan = prepare(open_course("ps1_parameters", root=_example_course(tmp)), "alice")
    >>> [(job.student, job.notebooks, job.pattern, sorted(job.files)) for job in plan.jobs]
    [('alice', ['count_params'], '*', ['submitted/alice/ps1_parameters/count_params.ipynb'])]
    """
    rows = {name: NotebookResult(student, name, sandbox=course.isolation) for name in course.notebooks}
    intake = read_submission(course.root, course.submission(student), course.notebooks, course.extra_files)
    plan = Plan(student, rows, [], fingerprint(course, intake.files, intake.left_out))
    if intake.problem:
        for row in rows.values():
            row.status, row.details = "missing", [f"not graded: {intake.problem}"]
        return plan
    if _unchanged(course, plan):
        return plan
    prefix = course.submission(student) + "/"
    files = {prefix + rel: data for rel, data in intake.files.items() if not rel.endswith(".ipynb")}
    runnable = []
    for name, row in rows.items():
        row.details = [note for note in intake.notes() if note.startswith(f"left out {name}.ipynb")]
        data = intake.files.get(f"{name}.ipynb")
        if data is None:
            row.status = "missing"
            row.details.insert(0, "no such notebook submitted; nbgrader gives 0")
            continue
        try:
            nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        except Exception as exc:  # not UTF-8, not JSON, not a notebook
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            row.status, row.details = "invalid-notebook", [f"not graded: {type(exc).__name__}: {first[:200]}"]
            continue
        row.details += restore_instructor_cells(nb, course.released.get(name, course.sources[name]))
        row.details += _test_cell_notes(nb, course.test_cells[name])
        files[f"{prefix}{name}.ipynb"] = nbformat.writes(nb).encode()
        runnable.append(name)
    others = [note for note in intake.notes() if not note.startswith(tuple(f"left out {n}.ipynb" for n in rows))]
    if others and rows:
        rows[course.notebooks[0]].details += others
    # One nbgrader run for the whole submission when every notebook is readable,
    # else one per readable notebook (nbgrader would drop them all on the bad one).
    batches = [(runnable, "*")] if len(runnable) == len(rows) else [([n], n) for n in runnable]
    plan.jobs = [
        Job(
            course.assignment,
            student,
            names,
            pattern,
            files,
            course.common,
            course.nbgrader_args,
            course.env,
            course.wall_clock,
        )
        for names, pattern in batches
    ]
    return plan


def _failed(course: Course, gb, row: NotebookResult, result: JobResult | None) -> None:
    """A run that did not produce grades: say why; keep the previous grades, or 0 where there were none."""
    if result is None:
        row.status = "not-graded"
        row.details.insert(0, "the grading cluster went away before this submission was graded")
    elif result.rc is None:
        row.status = "wall-clock"
        row.details.insert(0, f"nbgrader killed after {course.wall_clock:g} s")
    else:
        row.status = "autograde-failed"
        row.details.insert(0, f"nbgrader exited with {result.rc} (see {course.log_path.name})")
    if gradebook.has_grades(gb, course.assignment, row.student, row.notebook):
        row.details.insert(1, "previous grades kept")
    elif result is not None:
        gradebook.zero_notebook(gb, course.assignment, row.student, row.notebook)
        row.details.insert(1, "every graded cell 0")


def finish(course: Course, plan: Plan, runs: list[tuple[Job, JobResult | None]], log=print) -> None:
    """Merge one student's results into the real gradebook -- the only place it is written.

    Here bob's plan, with no runs (he submitted nothing): 0 in the gradebook, and the row says why.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     course = open_course("ps1_parameters", root=_example_course(tmp))
    ...     (course.root / "reports").mkdir()
    ...     plan = prepare(course, "bob")
    ...     finish(course, plan, [])
    checked bob: count_params missing 0/2
    """
    from nbgrader.api import Gradebook

    rows, student = plan.rows, plan.student
    complete = bool(runs)
    with Gradebook(course.db_url) as gb:
        for job, result in runs:
            if result is None or result.gradebook is None:
                complete = False
                for name in job.notebooks:
                    _failed(course, gb, rows[name], result)
                continue
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "gradebook.db").write_bytes(result.gradebook)
                gradebook.merge(
                    gb, f"sqlite:///{Path(tmp) / 'gradebook.db'}", course.assignment, student, job.notebooks
                )
            target = course.root / "autograded" / student / course.assignment
            for rel, data in result.autograded.items():
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                (target / rel).write_bytes(data)
            for name in job.notebooks:
                _read_outcome(nbformat.reads(result.autograded[f"{name}.ipynb"].decode(), as_version=4), rows[name])
        for name, row in rows.items():
            if row.status in ("missing", "invalid-notebook"):
                complete = False
                gradebook.zero_notebook(gb, course.assignment, student, name)
            got = gradebook.scores(gb, course.assignment, student, name)
            if got is None:
                row.details.append("no gradebook entry")
            else:
                row.score, row.max_score = got
    if complete:  # every notebook graded: a re-run with the same inputs has nothing to do
        stamp = {
            "fingerprint": plan.stamp,
            "rows": {
                r.notebook: {"status": r.status, "sandbox": r.sandbox, "details": r.details} for r in rows.values()
            },
        }
        (course.root / "autograded" / student / course.assignment / STAMP).write_text(json.dumps(stamp, indent=1))
    with open(course.log_path, "a") as fh:
        for job, result in runs:
            fh.write(
                f"\n===== {student} / {course.assignment} / {job.pattern} ({result.host if result else '-'}) =====\n"
            )
            fh.write(result.log if result else "not run\n")
    summary = ", ".join(f"{r.notebook} {r.status} {r.score:g}/{r.max_score:g}" for r in rows.values())
    log(f"{'graded' if runs else 'checked'} {student}: {summary}")


# --------------------------------------------------------------------------- a class


REPORT_COLUMNS = ["assignment", "student", "notebook", "status", "score", "max_score", "sandbox", "detail"]


def write_report(path: Path, assignment: str, rows: list[NotebookResult]) -> None:
    """``reports/<assignment>.csv``: one row per student and notebook (what ``ftlab report`` reads back).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     rows = [NotebookResult("alice", "count_params", "graded", 2.0, 2.0)]
    ...     write_report(Path(tmp, "ps1.csv"), "ps1_parameters", rows)
    ...     print(Path(tmp, "ps1.csv").read_text(), end="")
    assignment,student,notebook,status,score,max_score,sandbox,detail
    ps1_parameters,alice,count_params,graded,2.0,2.0,,
    """
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(REPORT_COLUMNS)
        for r in rows:
            writer.writerow([assignment, r.student, r.notebook, r.status, r.score, r.max_score, r.sandbox, r.detail])


def update_report(path: Path, assignment: str, rows: list[NotebookResult]) -> None:
    """Replace these students' rows in the report CSV, keeping everyone else's (the service grades one at a time).

    Written to a temporary file and renamed: ``ftlab report`` never reads half a file.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     report = Path(tmp, "ps1.csv")
    ...     write_report(report, "ps1", [NotebookResult(student, "count_params") for student in ("alice", "bob")])
    ...     update_report(report, "ps1", [NotebookResult("bob", "count_params", "errors", 1.0, 2.0)])
    ...     print(report.read_text(), end="")
    assignment,student,notebook,status,score,max_score,sandbox,detail
    ps1,alice,count_params,graded,0.0,0.0,,
    ps1,bob,count_params,errors,1.0,2.0,,
    """
    students = {r.student for r in rows}
    kept: list[list[str]] = []
    if path.is_file():
        with open(path, newline="") as fh:
            kept = [
                [row.get(c, "") for c in REPORT_COLUMNS] for row in csv.DictReader(fh) if row["student"] not in students
            ]
    tmp = path.with_name(f".{path.name}.new")
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(REPORT_COLUMNS)
        writer.writerows(kept)
        for r in rows:
            writer.writerow([assignment, r.student, r.notebook, r.status, r.score, r.max_score, r.sandbox, r.detail])
    os.replace(tmp, path)


def grade_class(
    assignment: str,
    root: str | Path = ".",
    students: list[str] | None = None,
    jobs: int = 1,
    wall_clock: float | None = None,
    fast: bool | None = None,
    sandbox: bool = True,
    nbgrader_args: list[str] | None = None,
    report: str | Path | None = None,
    scheduler: str | None = None,
    force: bool = False,
    log=print,
    warm: bool = True,
) -> list[NotebookResult]:
    """Autograde ``assignment`` for each student in ``submitted/``; return and write the report rows.

    ``jobs`` submissions at a time on this machine, or, with ``scheduler`` (a Dask
    scheduler address), on the cluster's workers -- each in its own sandbox either way.
    ``wall_clock`` bounds each submission's nbgrader run (seconds; default: the
    notebooks' time budgets from ``nbgrader_config.py`` plus 120 s each); ``fast`` sets
    ``FTLAB_FAST`` for the kernels (None: inherit); ``sandbox=False`` grades without
    isolation (refused unless asked for; every row says so); ``nbgrader_args`` go to
    every ``nbgrader autograde`` call (e.g. ``["--Execute.timeout=30"]``). A submission
    graded completely before, with the same files, sources and options, is not graded
    again unless ``force``. ``warm``: each local job forks from a process that has done its
    imports once (:mod:`.warm`), not a new interpreter -- a class pays nbgrader's and
    torch's start-up once, not per submission. Writes ``report`` (default ``reports/<assignment>.csv``).
    Raises :class:`GradingError` when the run cannot start, or stopped early (the
    report of what was graded is written first).

    Here carol's folder holds no notebook, so nothing runs (hence no sandbox is needed):

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     root = _example_course(tmp)
    ...     (root / "submitted" / "carol" / "ps1_parameters").mkdir(parents=True)
    ...     [row] = grade_class("ps1_parameters", root=root, students=["c*"], sandbox=False)
    checked carol: count_params missing 0/2
    >>> row.status, row.score, row.max_score, row.detail
    ('missing', 0.0, 2.0, 'no such notebook submitted; nbgrader gives 0')
    """
    local = LocalRunner(jobs, warm=warm)  # checks jobs even when a cluster grades
    if wall_clock is not None and not wall_clock > 0:  # also NaN: a guard that can never fire, or always does
        raise ValueError(f"wall_clock must be a positive number of seconds, got {wall_clock}")
    runner = local if scheduler is None else DaskRunner(scheduler)
    if sandbox and scheduler is None:  # a cluster's workers check their own machines
        problem = check_available()
        if problem:
            raise GradingError(f"cannot sandbox the submissions: {problem}")
    course = open_course(assignment, root, wall_clock, fast, sandbox, nbgrader_args, force)
    found = sorted(p.parent.name for p in (course.root / "submitted").glob(f"*/{assignment}"))
    wanted = [s for s in found if students is None or any(fnmatch.fnmatch(s, pat) for pat in students)]
    (course.root / "reports").mkdir(exist_ok=True)
    course.log_path.write_text("")

    plans = {student: prepare(course, student) for student in wanted}
    done: dict[str, list[tuple[Job, JobResult | None]]] = {}
    handed_back: set[int] = set()

    def collect(job: Job, result: JobResult | None) -> None:
        handed_back.add(id(job))
        runs = done.setdefault(job.student, [])
        runs.append((job, result))
        if len(runs) == len(plans[job.student].jobs):
            finish(course, plans[job.student], runs, log)

    for plan in plans.values():
        if not plan.jobs:  # nothing to run: missing, unreadable or unchanged
            finish(course, plan, [], log)
    all_jobs = [job for plan in plans.values() for job in plan.jobs]
    try:
        stopped = runner.run(all_jobs, collect)
    finally:
        runner.close()
    for job in all_jobs:  # what a cluster did not grade: marked, previous grades kept
        if id(job) not in handed_back:
            collect(job, None)

    rows = [row for plan in plans.values() for row in plan.rows.values()]
    report = Path(report) if report else course.root / "reports" / f"{assignment}.csv"
    write_report(report, assignment, rows)
    if stopped:
        graded = sum(1 for p in plans.values() if all(r.status != "not-graded" for r in p.rows.values()))
        raise GradingError(
            f"{stopped}; {graded} of {len(wanted)} submissions are graded and kept (report: {report}); "
            "run the same command again to grade the rest"
        )
    return rows


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """``ftlab grade``'s options; nbgrader's ``--Class.trait=value`` settings are left over for nbgrader.

    >>> args, extra = build_parser().parse_known_args(["ps5_finetune", "--fast", "--jobs=2", "--Execute.timeout=600"])
    >>> args.assignment, args.fast, args.jobs, args.student, extra
    ('ps5_finetune', True, 2, None, ['--Execute.timeout=600'])
    """
    parser = parser or argparse.ArgumentParser(prog="ftlab grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("assignment")
    parser.add_argument("--root", default=".", help="course root (default: current directory)")
    parser.add_argument("--student", action="append", help="student id or glob; repeat for several (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded at once, each in its own sandbox")
    parser.add_argument(
        "--wall-clock", type=float, help="seconds per submission (default: the notebook budgets in the config + 120 s)"
    )
    parser.add_argument("--fast", action="store_true", help="grade with FTLAB_FAST=1 (small data, few epochs)")
    parser.add_argument("--no-sandbox", action="store_true", help="grade without isolation (rows say so)")
    parser.add_argument("--report", help="CSV path (default reports/<assignment>.csv)")
    parser.add_argument("--scheduler", help="Dask scheduler address: grade on the cluster's workers (tcp://host:8786)")
    parser.add_argument("--force", action="store_true", help="grade again what is unchanged since it was graded")
    parser.add_argument(
        "--cold-start",
        action="store_true",
        help="start each grading process as a new interpreter, not forked warm (slower; for comparison)",
    )
    return parser


def run_cli(args: argparse.Namespace, extra: list[str]) -> int:
    """Grade the class and print the report; 2 (and why, on stderr) when the run cannot start.

    >>> import contextlib
    >>> with contextlib.redirect_stderr(sys.stdout):
    ...     run_cli(build_parser().parse_args(["ps1_parameters", "--no-sandbox"]), ["--SandboxedExecute.memory=4096"])
    ftlab grade: error: unknown option '--SandboxedExecute.memory=4096': SandboxedExecute has no setting 'memory'
    2
    """
    try:
        results = grade_class(
            args.assignment,
            root=args.root,
            students=args.student,
            jobs=args.jobs,
            wall_clock=args.wall_clock,
            fast=True if args.fast else None,
            sandbox=not args.no_sandbox,
            nbgrader_args=extra,
            report=args.report,
            scheduler=args.scheduler,
            force=args.force,
            log=lambda line: print(line, file=sys.stderr),
            warm=not args.cold_start,
        )
    except (GradingError, ValueError) as exc:
        print(f"ftlab grade: error: {exc}", file=sys.stderr)
        return 2
    width = max([len(r.student) for r in results] + [7])
    print(f"{'student':<{width}}  {'notebook':<14} {'status':<17} {'score':>11}  detail")
    for r in results:
        print(f"{r.student:<{width}}  {r.notebook:<14} {r.status:<17} {r.score:>5g} / {r.max_score:<3g}  {r.detail}")
    if args.no_sandbox:
        print("WARNING: graded without a sandbox (--no-sandbox): submissions ran with your rights.", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m ftlab.grading.driver``: ``ftlab grade``'s command line.

    >>> import contextlib
    >>> with contextlib.redirect_stderr(sys.stdout):
    ...     main(["ps1_parameters", "--jobs", "0"])
    ftlab grade: error: jobs must be a positive integer, got 0
    2
    >>> with contextlib.redirect_stderr(sys.stdout):
    ...     main(["ps1_parameters", "--wall-clock", "0"])
    ftlab grade: error: wall_clock must be a positive number of seconds, got 0.0
    2
    """
    args, extra = build_parser().parse_known_args(argv)
    return run_cli(args, extra)


if __name__ == "__main__":
    sys.exit(main())
