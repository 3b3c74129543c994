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
nbgrader failed / killed  previous grades kept (else 0); ``autograde-failed`` / ``wall-clock``
========================  ==========================================================
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import fnmatch
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode
from nbgrader.utils import compute_checksum

from .executor import CELL_TIMEOUT, KERNEL_DIED, NOTEBOOK_TIMEOUT, RobustExecute
from .sandbox import check_available

__all__ = ["NotebookResult", "Job", "JobResult", "run_job", "grade_class", "default_wall_clock", "main"]

# --------------------------------------------------------------------------- driver


@dataclass
class NotebookResult:
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


_STATUS_OF_ERROR = {KERNEL_DIED: "kernel-died", CELL_TIMEOUT: "timeout", NOTEBOOK_TIMEOUT: "timeout"}


def _label(cell: NotebookNode, index: int) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {index + 1}"


def _check_submission(path: Path) -> str | None:
    """None if ``path`` is a readable, valid notebook, else what is wrong with it."""
    try:
        nbformat.read(path, as_version=4)
    except Exception as exc:  # not JSON, not a notebook, unreadable
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"{type(exc).__name__}: {first[:200]}"
    return None


def _test_cell_notes(submitted: Path, test_cells: list[str]) -> list[str]:
    """Notes on graded (locked) cells the student edited or deleted."""
    nb = nbformat.read(submitted, as_version=4)
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


def _read_outcome(autograded: Path, result: NotebookResult) -> None:
    """Set status/details from the errors recorded in an autograded notebook."""
    nb = nbformat.read(autograded, as_version=4)
    errors = []  # (cell label, ename, evalue), first error of each cell
    special = None
    for i, cell in enumerate(nb.cells):
        found = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if found:
            errors.append((_label(cell, i), found[0].get("ename", ""), str(found[0].get("evalue", ""))))
        for out in found:
            if special is None and out.get("ename") in _STATUS_OF_ERROR:
                special = (_label(cell, i), out["ename"], str(out.get("evalue", "")))
    if special:
        label, ename, evalue = special
        result.status = _STATUS_OF_ERROR[ename]
        result.details.insert(0, f"{ename} in {label}: {evalue or 'no reply before the timeout, interrupted'}")
    elif errors:
        result.status = "errors"
        label, ename, evalue = errors[0]
        what = f"{ename}: {evalue[:120]}" if evalue else ename
        more = f" (and {len(errors) - 1} more cells)" if len(errors) > 1 else ""
        result.details.insert(0, f"{what} in {label}{more}")


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill nbgrader and every kernel it started (kernels run in their own sessions)."""
    try:
        import psutil

        children = psutil.Process(proc.pid).children(recursive=True)
    except Exception:
        children = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child in children:
        try:
            child.kill()
        except Exception:
            pass
    proc.wait()


def _die_with_parent() -> None:
    """In the child: SIGKILL when the process that started it dies (a Dask worker killed mid-grade)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        pass


def _run_nbgrader(args: list[str], cwd: Path, env: dict[str, str], wall_clock: float) -> tuple[int | None, str]:
    """Run nbgrader; (returncode, output), returncode None when the wall clock ran out."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    try:
        out, _ = proc.communicate(timeout=wall_clock)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # a grandchild still holds the pipe
            out = ""
        rc = None
    else:
        rc = proc.returncode
    return rc, out


def _zero_notebook(gb, assignment: str, student: str, notebook: str) -> None:
    """0 on every graded cell of a notebook nbgrader could not grade (as nbgrader does for a missing one)."""
    from nbgrader.api import MissingEntry

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


def _has_grades(gb, assignment: str, student: str, notebook: str) -> bool:
    from nbgrader.api import MissingEntry

    try:
        gb.find_submission_notebook(notebook, assignment, student)
    except MissingEntry:
        return False
    return True


def _merge(gb, job_db: str, assignment: str, student: str, notebooks: list[str]) -> None:
    """Copy one student's freshly autograded submission from a job's gradebook into the real one."""
    from nbgrader.api import Gradebook

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


def default_wall_clock(root: Path, notebooks: list[str]) -> float:
    """Seconds per student: each notebook's RobustExecute budget from the course config, plus 120 s."""
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
    """Raise ValueError for anything that is not a known ``--Class.trait=value`` setting."""
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


@dataclass
class Job:
    """One ``nbgrader autograde`` run as plain data: it runs in a thread here or on a Dask worker alike.

    ``files`` is a private course -- the config, a gradebook snapshot, the assignment's
    sources and one submission -- so a worker needs the course environment but no
    shared file system. The hidden tests travel with it to the worker (the instructor's
    machine); they never enter the student's sandbox there.
    """

    assignment: str
    student: str
    notebooks: list[str]  # what this run grades ("*" below means all of them)
    pattern: str  # nbgrader's --notebook
    files: dict[str, bytes]  # the submission
    common: dict[str, bytes]  # config, gradebook snapshot, sources: one dict shared by every job of a run
    args: list[str]
    env: dict[str, str]
    wall_clock: float


@dataclass
class JobResult:
    rc: int | None  # None: killed by the wall clock
    log: str
    gradebook: bytes | None  # the job's gradebook after a successful run
    autograded: dict[str, bytes]  # autograded/<student>/<assignment>/ after a successful run
    host: str = ""


def _read_tree(folder: Path, prefix: str = "") -> dict[str, bytes]:
    return {
        f"{prefix}{p.relative_to(folder).as_posix()}": p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def course_files(root: Path, assignment: str, source_dir: str) -> dict[str, bytes]:
    """What every job of one assignment shares: the config, a gradebook snapshot and the instructor's sources."""
    files = {"nbgrader_config.py": (root / "nbgrader_config.py").read_bytes()}
    files["gradebook.db"] = (root / "gradebook.db").read_bytes()
    files.update(_read_tree(root / source_dir / assignment, f"{source_dir}/{assignment}/"))
    return files


def run_job(job: Job, common: dict[str, bytes] | None = None) -> JobResult:
    """Grade one job in a temporary course; what comes back is files, never the student's objects.

    ``common`` replaces ``job.common`` (on a cluster it is sent to each worker once).
    """
    import socket

    with tempfile.TemporaryDirectory(prefix="ftlab-job-") as tmp:
        course = Path(tmp)
        for rel, data in {**(job.common if common is None else common), **job.files}.items():
            path = (course / rel).resolve()
            if course.resolve() not in path.parents:
                raise ValueError(f"job file {rel!r} is outside the job's course")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        env = {**os.environ, **job.env}
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        args = ["autograde", job.assignment, f"--student={job.student}", f"--notebook={job.pattern}", "--force"]
        rc, out = _run_nbgrader(args + job.args, course, env, job.wall_clock)
        graded = course / "autograded" / job.student / job.assignment
        ok = rc == 0 and all((graded / f"{n}.ipynb").exists() for n in job.notebooks)
        return JobResult(
            rc,
            out,
            (course / "gradebook.db").read_bytes() if ok else None,
            _read_tree(graded) if ok else {},
            socket.gethostname(),
        )


def fingerprint(root: Path, assignment: str, student: str, source_dir: str, args: list[str], env: dict) -> str:
    """What a grade depends on: the submission, the instructor's sources, the config and the options."""
    digest = hashlib.sha256()
    for folder in (root / "submitted" / student / assignment, root / source_dir / assignment):
        for rel, data in _read_tree(folder).items():
            digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
    digest.update((root / "nbgrader_config.py").read_bytes())
    digest.update(json.dumps([args, sorted(env.items())]).encode())
    return digest.hexdigest()


STAMP = ".ftlab-grade.json"  # in autograded/<student>/<assignment>/: what the last complete grading was of


SCHEDULER_GRACE = float(os.environ.get("FTLAB_SCHEDULER_GRACE", "30"))  # seconds without a scheduler = gone


def _shared(files: dict[str, bytes]) -> dict[str, bytes]:
    """A task that returns what every job shares: unlike scattered data, Dask recomputes it if a worker dies."""
    return files


def _run_on_cluster(address: str, jobs: list[Job], collected) -> str | None:
    """Run ``jobs`` on a Dask cluster, handing each result to ``collected`` as it arrives.

    A worker that dies mid-grade costs nothing: Dask runs its task again elsewhere, and
    a result is collected once. Returns None, or why the run stopped (the scheduler went
    away); the results collected until then stand.
    """
    try:
        from distributed import Client
    except ImportError:
        raise SystemExit("--scheduler needs dask.distributed: pip install 'ftlab[cluster]'") from None
    try:
        client = Client(address, timeout=20)
    except (OSError, TimeoutError) as exc:
        raise SystemExit(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        shared = {}  # the files every job shares go to the cluster once
        for job in jobs:
            if id(job.common) not in shared:
                shared[id(job.common)] = client.submit(_shared, job.common, pure=False)
        futures = {
            client.submit(
                run_job, dataclasses.replace(job, common={}), shared[id(job.common)], pure=False, retries=1
            ): job
            for job in jobs
        }
        remaining = set(futures)
        lost_since = None
        while remaining:
            connected = client.status == "running"
            done = [f for f in remaining if f.status in ("finished", "error", "cancelled")]
            for future in done:
                job = futures[future]
                if future.status == "cancelled" and not connected:
                    continue  # cancelled because the scheduler went away: not done
                remaining.discard(future)
                if future.status == "cancelled":  # its inputs were lost for good
                    collected(job.student, job, None)
                    continue
                try:
                    result = future.result()
                except Exception as exc:  # the job failed on every worker it ran on (KilledWorker, ...)
                    result = JobResult(-1, f"failed on the Dask cluster: {exc!r}\n", None, {})
                collected(job.student, job, result)
            if connected:
                lost_since = None
            else:
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since >= SCHEDULER_GRACE:
                    return f"the Dask scheduler at {address} went away"
            time.sleep(0.5)
        return None
    finally:
        try:
            client.close(timeout=5)
        except Exception:  # the scheduler is gone already
            pass


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
    again unless ``force``. Writes ``report`` (default ``reports/<assignment>.csv``).
    """
    from nbgrader.api import Gradebook, MissingEntry

    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    nbgrader_args = list(nbgrader_args or [])
    check_nbgrader_args(nbgrader_args)
    if sandbox and scheduler is None:  # a cluster's workers check their own machines
        problem = check_available()
        if problem:
            raise SystemExit(f"cannot sandbox the submissions: {problem}")
    root = Path(root).resolve()
    if not (root / "gradebook.db").exists() or not (root / "nbgrader_config.py").exists():
        raise SystemExit(f"{root} is not a course root (no gradebook.db or nbgrader_config.py): run it there")
    db_url = f"sqlite:///{root / 'gradebook.db'}"
    with Gradebook(db_url) as gb:
        try:
            source = gb.find_assignment(assignment)
        except MissingEntry:
            raise SystemExit(
                f"no assignment {assignment!r} in {db_url}: run `nbgrader generate_assignment` first"
            ) from None
        # the autograder tests: locked grade cells (written answers are unlocked)
        test_cells = {
            nb.name: sorted(c.name for c in nb.source_cells if c.locked and c.name in {g.name for g in nb.grade_cells})
            for nb in source.notebooks
        }
    notebooks = sorted(test_cells)
    if wall_clock is None:
        wall_clock = default_wall_clock(root, notebooks)
    source_dir = _config(root).get("CourseDirectory", {}).get("source_directory", "source")

    submitted = root / "submitted"
    found = sorted(p.parent.name for p in submitted.glob(f"*/{assignment}"))
    wanted = [s for s in found if students is None or any(fnmatch.fnmatch(s, pat) for pat in students)]

    env: dict[str, str] = {}
    if fast is not None:
        env["FTLAB_FAST"] = "1" if fast else "0"
    if not sandbox:
        nbgrader_args.append("--SandboxedExecute.sandbox=False")
    reports = root / "reports"
    reports.mkdir(exist_ok=True)
    log_path = reports / f"{assignment}.log"
    log_path.write_text("")
    isolation = "bubblewrap" if sandbox else "NONE (--no-sandbox)"
    results: dict[str, dict[str, NotebookResult]] = {}
    stamps: dict[str, str] = {}
    common = course_files(root, assignment, source_dir)
    pending_runs: dict[str, int] = {}
    done_runs: dict[str, list[tuple[Job, JobResult | None]]] = {}

    def prepare(student: str) -> list[Job]:
        """The report rows of one student and the nbgrader runs their submission needs (none if unchanged)."""
        sub_dir = submitted / student / assignment
        rows = results[student] = {name: NotebookResult(student, name, sandbox=isolation) for name in notebooks}
        graded = root / "autograded" / student / assignment
        stamp = stamps[student] = fingerprint(root, assignment, student, source_dir, nbgrader_args, env)
        try:
            previous = json.loads((graded / STAMP).read_text())
        except (OSError, ValueError):
            previous = {}
        if not force and previous.get("fingerprint") == stamp and set(previous.get("rows", {})) == set(notebooks):
            for name, row in rows.items():
                row.status = previous["rows"][name]["status"]
                row.sandbox = previous["rows"][name].get("sandbox", isolation)
                row.details = [
                    "unchanged since it was last graded; not graded again",
                    *previous["rows"][name]["details"],
                ]
            return []
        runnable = []
        for name, row in rows.items():
            path = sub_dir / f"{name}.ipynb"
            if not path.exists():
                row.status, row.details = "missing", ["no such notebook submitted; nbgrader gives 0"]
                continue
            problem = _check_submission(path)
            if problem:
                row.status, row.details = "invalid-notebook", [f"not graded: {problem}"]
                continue
            row.details = _test_cell_notes(path, test_cells[name])
            runnable.append(name)
        # One nbgrader run for the whole submission when every notebook is readable,
        # else one per readable notebook (nbgrader would drop them all on the bad one).
        batches = [(runnable, "*")] if len(runnable) == len(notebooks) else [([n], n) for n in runnable]
        files = _read_tree(sub_dir, f"submitted/{student}/{assignment}/")
        return [
            Job(assignment, student, names, pattern, files, common, nbgrader_args, env, wall_clock)
            for names, pattern in batches
        ]

    def finish(student: str, runs: list[tuple[Job, JobResult | None]]) -> None:
        """Only here, in the driver's own thread, is the real gradebook written."""
        rows = results[student]
        complete = bool(runs)
        with Gradebook(db_url) as gb:
            for job, result in runs:
                if result is not None and result.gradebook is not None:
                    with tempfile.TemporaryDirectory() as tmp:
                        (Path(tmp) / "gradebook.db").write_bytes(result.gradebook)
                        _merge(gb, f"sqlite:///{Path(tmp) / 'gradebook.db'}", assignment, student, job.notebooks)
                    target = root / "autograded" / student / assignment
                    for rel, data in result.autograded.items():
                        (target / rel).parent.mkdir(parents=True, exist_ok=True)
                        (target / rel).write_bytes(data)
                    for name in job.notebooks:
                        _read_outcome(target / f"{name}.ipynb", rows[name])
                    continue
                complete = False
                for name in job.notebooks:
                    row = rows[name]
                    if result is None:
                        row.status = "not-graded"
                        row.details.insert(0, "the grading cluster went away before this submission was graded")
                    elif result.rc is None:
                        row.status = "wall-clock"
                        row.details.insert(0, f"nbgrader killed after {wall_clock:.0f} s")
                    else:
                        row.status = "autograde-failed"
                        row.details.insert(0, f"nbgrader exited with {result.rc} (see {log_path.name})")
                    if _has_grades(gb, assignment, student, name):
                        row.details.insert(1, "previous grades kept")
                    elif result is not None:
                        _zero_notebook(gb, assignment, student, name)
                        row.details.insert(1, "every graded cell 0")
            for name, row in rows.items():
                if row.status in ("missing", "invalid-notebook"):
                    complete = False
                    _zero_notebook(gb, assignment, student, name)
                try:
                    nb_sub = gb.find_submission_notebook(name, assignment, student)
                    row.score, row.max_score = nb_sub.score, nb_sub.max_score
                except MissingEntry:
                    row.details.append("no gradebook entry")
        if complete:  # every notebook graded: a re-run with the same inputs has nothing to do
            stamp = {
                "fingerprint": stamps[student],
                "rows": {
                    r.notebook: {"status": r.status, "sandbox": r.sandbox, "details": r.details} for r in rows.values()
                },
            }
            (root / "autograded" / student / assignment / STAMP).write_text(json.dumps(stamp, indent=1))
        with open(log_path, "a") as fh:
            for job, result in runs:
                fh.write(f"\n===== {student} / {assignment} / {job.pattern} ({result.host if result else '-'}) =====\n")
                fh.write(result.log if result else "not run\n")
        summary = ", ".join(f"{r.notebook} {r.status} {r.score:g}/{r.max_score:g}" for r in rows.values())
        log(f"{'graded' if runs else 'checked'} {student}: {summary}")

    handed_back: set[int] = set()

    def collected(student: str, job: Job, result: JobResult | None) -> None:
        handed_back.add(id(job))
        done_runs.setdefault(student, []).append((job, result))
        if len(done_runs[student]) == pending_runs[student]:
            finish(student, done_runs.pop(student))

    all_jobs: list[Job] = []
    for student in wanted:
        student_jobs = prepare(student)
        pending_runs[student] = len(student_jobs)
        if student_jobs:
            all_jobs.extend(student_jobs)
        else:  # nothing to run: missing, unreadable or unchanged
            finish(student, [])
    if scheduler is None:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(run_job, job): job for job in all_jobs}
            for future in as_completed(futures):
                job = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # the driver could not even start nbgrader
                    result = JobResult(-1, f"the grading job failed: {exc!r}\n", None, {})
                collected(job.student, job, result)
        lost = None
    else:
        lost = _run_on_cluster(scheduler, all_jobs, collected)
        for job in all_jobs:  # what the cluster did not grade: marked, previous grades kept
            if id(job) not in handed_back:
                collected(job.student, job, None)

    rows = [row for student in wanted for row in results[student].values()]
    report = Path(report) if report else reports / f"{assignment}.csv"
    with open(report, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["assignment", "student", "notebook", "status", "score", "max_score", "sandbox", "detail"])
        for r in rows:
            writer.writerow([assignment, r.student, r.notebook, r.status, r.score, r.max_score, r.sandbox, r.detail])
    if lost:
        graded = sum(1 for s in wanted if all(r.status != "not-graded" for r in results[s].values()))
        raise SystemExit(
            f"{lost}; {graded} of {len(wanted)} submissions are graded and kept (report: {report}); "
            "run the same command again to grade the rest"
        )
    return rows


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
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
    return parser


def run_cli(args: argparse.Namespace, extra: list[str]) -> int:
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
        )
    except (SystemExit, ValueError) as exc:
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
    args, extra = build_parser().parse_known_args(argv)
    return run_cli(args, extra)


if __name__ == "__main__":
    sys.exit(main())
