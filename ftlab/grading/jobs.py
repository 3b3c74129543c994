"""One submission's grading run as plain data: build it, run it (here or on a Dask worker), kill it.

A :class:`Job` carries a private course -- the config, a gradebook snapshot, the
assignment's sources and the accepted bytes of one submission -- so a worker needs
the course environment but no shared file system. :func:`run_job` grades it with
``nbgrader autograde`` (in its own process, :mod:`.jobproc`; with ``Job.feedback``
also that student's feedback) in a temporary folder under a wall clock and returns a
:class:`JobResult`: files, never the student's objects, and where the time went
(:mod:`.stages`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import stages
from .process import _die_with_parent, kill_process_tree
from .protocol import GradingError

__all__ = ["Job", "JobResult", "run_job", "course_files", "nbgrader_env", "run_nbgrader"]


@dataclass
class Job:
    """One ``nbgrader autograde`` run; the hidden tests travel with it to the worker, never into the sandbox.

    >>> job = Job(
    ...     "ps1_parameters", "alice", ["count_params"], "*",
    ...     files={"submitted/alice/ps1_parameters/count_params.ipynb": b"{...}"},
    ...     common={"nbgrader_config.py": b"...", "gradebook.db": b"..."},
    ...     args=["--Execute.timeout=30"], env={"FTLAB_FAST": "1"}, wall_clock=720.0,
    ... )
    >>> job.student, job.pattern, job.feedback
    ('alice', '*', None)
    """

    assignment: str
    student: str
    notebooks: list[str]  # what this run grades
    pattern: str  # nbgrader's --notebook ("*": all of them)
    files: dict[str, bytes]  # the accepted submission, by path in the course
    common: dict[str, bytes]  # config, gradebook snapshot, sources: one dict shared by every job of a run
    args: list[str]
    env: dict[str, str]
    wall_clock: float
    feedback: str | None = None  # "pass-fail" / "as-graded": also make the student's feedback (the service)


@dataclass
class JobResult:
    r"""What a job sends back: the exit status, its log, and the files it made (never the student's objects).

    >>> result = JobResult.failed("the grading job failed: OSError(28, 'No space left on device')")
    >>> result.rc, result.gradebook, result.log
    (-1, None, "the grading job failed: OSError(28, 'No space left on device')\n")
    """

    rc: int | None  # None: killed by the wall clock
    log: str
    gradebook: bytes | None  # the job's gradebook after a successful run
    autograded: dict[str, bytes]  # autograded/<student>/<assignment>/ after a successful run
    host: str = ""
    feedback: dict[str, bytes] = field(default_factory=dict)  # notebook -> HTML page, when the job made them
    marks: stages.Marks = field(default_factory=list)  # where the job's time went (:mod:`.stages`)

    @classmethod
    def failed(cls, why: str) -> JobResult:
        return cls(-1, why if why.endswith("\n") else why + "\n", None, {})


def _read_tree(folder: Path, prefix: str = "") -> dict[str, bytes]:
    """Files below a folder this process made (a job's own output): links are not followed."""
    return {
        f"{prefix}{p.relative_to(folder).as_posix()}": p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def course_files(root: Path, assignment: str, source_dir: str) -> dict[str, bytes]:
    """What every job of one assignment shares: the config, a gradebook snapshot and the instructor's sources.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as course:
    ...     for rel in ["nbgrader_config.py", "gradebook.db", "source/ps1_parameters/count_params.ipynb"]:
    ...         Path(course, rel).parent.mkdir(parents=True, exist_ok=True)
    ...         _ = Path(course, rel).write_bytes(b"...")
    ...     sorted(course_files(Path(course), "ps1_parameters", "source"))
    ['gradebook.db', 'nbgrader_config.py', 'source/ps1_parameters/count_params.ipynb']
    """
    files = {"nbgrader_config.py": (root / "nbgrader_config.py").read_bytes()}
    files["gradebook.db"] = (root / "gradebook.db").read_bytes()
    files.update(_read_tree(root / source_dir / assignment, f"{source_dir}/{assignment}/"))
    return files


def nbgrader_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with this interpreter's bin first on PATH: nbgrader
    calls its own console scripts (alembic), which must come from the same environment.

    >>> env = nbgrader_env({"PATH": "/usr/bin", "LANG": "C.UTF-8"})
    >>> env["PATH"].split(os.pathsep) == [str(Path(sys.executable).parent), "/usr/bin"], env["LANG"]
    (True, 'C.UTF-8')
    """
    env = dict(os.environ if base is None else base)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def run_nbgrader(args: list[str], cwd: Path, timeout: float = 600) -> None:
    """Run one nbgrader command to its end; a failure raises GradingError with the end of its output.

    Here with ``subprocess.run`` replaced by a failed run (nothing is started):

    >>> from unittest import mock
    >>> failed = subprocess.CompletedProcess([], 1, "", "[GenerateAssignmentApp | ERROR] No notebooks were matched")
    >>> with mock.patch("subprocess.run", return_value=failed) as run:
    ...     run_nbgrader(["generate_assignment", "ps1_parameters"], Path("course"))
    Traceback (most recent call last):
    ...
    ftlab.grading.protocol.GradingError: nbgrader generate_assignment failed:
    [GenerateAssignmentApp | ERROR] No notebooks were matched
    >>> run.call_args.args[0][1:]
    ['-m', 'nbgrader', 'generate_assignment', 'ps1_parameters']
    """
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=cwd,
        env=nbgrader_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise GradingError(f"nbgrader {args[0]} failed:\n{(proc.stdout + proc.stderr)[-2000:]}")


def _run_guarded(argv: list[str], cwd: Path, env: dict[str, str], wall_clock: float) -> tuple[int | None, str]:
    """Run a grading process; (returncode, output), returncode None when the wall clock ran out."""
    proc = subprocess.Popen(
        argv,
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
        kill_process_tree(proc.pid)
        proc.wait()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # a grandchild still holds the pipe
            out = ""
        return None, out
    return proc.returncode, out


def run_job(job: Job, common: dict[str, bytes] | None = None, warm: bool = False) -> JobResult:
    """Grade one job in a temporary course; ``common`` replaces ``job.common`` (sent to a worker once).

    ``warm``: fork the job's process from a process with its imports done (:mod:`.warm`), not a new interpreter.

    A job's files are data: none may land outside the job's temporary course.

    >>> job = Job("ps1_parameters", "alice", ["count_params"], "*", {"../../.bashrc": b"curl ... | sh"}, {}, [], {}, 60)
    >>> run_job(job)
    Traceback (most recent call last):
    ...
    ValueError: job file '../../.bashrc' is outside the job's course
    """
    with tempfile.TemporaryDirectory(prefix="ftlab-job-") as tmp:
        course = Path(tmp)
        for rel, data in {**(job.common if common is None else common), **job.files}.items():
            path = (course / rel).resolve()
            if course.resolve() not in path.parents:
                raise ValueError(f"job file {rel!r} is outside the job's course")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        env = nbgrader_env({**os.environ, **job.env})
        args = ["autograde", job.assignment, f"--student={job.student}", f"--notebook={job.pattern}", "--force"]
        marked = course / ".ftlab-stages"  # the job's own folder: the sandboxed kernel never sees it
        argv = ["--stages", str(marked), *(["--feedback", job.feedback] if job.feedback else []), "--", *args]
        argv += job.args
        marks = [("job files", time.time())]
        if warm:
            from .warm import run_warm

            rc, out = run_warm(argv, course, env, job.wall_clock)
        else:
            rc, out = _run_guarded([sys.executable, "-m", "ftlab.grading.jobproc", *argv], course, env, job.wall_clock)
        graded = course / "autograded" / job.student / job.assignment
        ok = rc == 0 and all((graded / f"{n}.ipynb").exists() for n in job.notebooks)
        feedback = course / "feedback" / job.student / job.assignment
        pages = {p.stem: p.read_bytes() for p in sorted(feedback.glob("*.html"))} if ok and job.feedback else {}
        marks += stages.read(marked)
        marks.append(("process exit", time.time()))
        return JobResult(
            rc,
            out,
            (course / "gradebook.db").read_bytes() if ok else None,
            _read_tree(graded) if ok else {},
            socket.gethostname(),
            pages,
            marks,
        )
