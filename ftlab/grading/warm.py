"""Grading jobs started warm: forked from a process that has already imported nbgrader, the executor and torch.

A grading job's process (:mod:`.jobproc`) spends its first seconds importing: Python,
nbgrader, nbconvert, jupyter_client, torch and ftlab -- the same modules every time,
several seconds of CPU for each submission, before the notebook's first cell. On a small
machine grading submissions as they arrive that is a large share of a student's wait.

:func:`run_warm` runs the job in a child of a fork server (``multiprocessing``'s
``forkserver``, started once per grading process, :data:`PRELOAD` imported before its
first fork). What the child inherits is the state of a process that has imported the
grader's own code and done nothing else -- no submission, no config, no kernel -- so it
grades exactly as a fresh ``python -m ftlab.grading.jobproc`` would:

* its own session (the wall clock kills its process group and every process it started),
  and ``PDEATHSIG``: it dies when the fork server does, which dies with the grading process;
* its own working folder (the job's private course) and environment (the job's);
* its output (stdout and stderr, the job's log) goes to a file in the job's course,
  which the sandboxed kernel does not see.

The student's kernel is started by the job as before: a fresh process in a fresh sandbox.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from pathlib import Path

from .process import _die_with_parent, kill_process_tree

__all__ = ["PRELOAD", "run_warm", "start"]

PRELOAD = ["ftlab.grading.jobproc", "nbgrader.apps.nbgraderapp", "ftlab.grading.executor", "nbconvert.exporters"]

_lock = threading.Lock()
_context: multiprocessing.context.ForkServerContext | None = None


def _forkserver() -> multiprocessing.context.ForkServerContext:
    global _context
    with _lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            _context = context
        return _context


def start() -> None:
    """Start the fork server now: it imports :data:`PRELOAD` while nothing waits for it, not at the first job.

    The service calls it once, at start-up. Here the server itself is not started:

    >>> from unittest import mock
    >>> with mock.patch("multiprocessing.forkserver.ensure_running") as ensure_running:
    ...     start()
    >>> ensure_running.call_count, PRELOAD[:2]
    (1, ['ftlab.grading.jobproc', 'nbgrader.apps.nbgraderapp'])
    """
    from multiprocessing import forkserver

    _forkserver()
    with _lock:
        forkserver.ensure_running()


def _child(argv: list[str], cwd: str, env: dict[str, str], log: str) -> None:
    """In the forked child: its own session, its own folder, environment and log; then the job."""
    os.setsid()
    _die_with_parent()
    if os.getppid() == 1:  # the fork server died before PDEATHSIG was set: nobody waits for this job
        os._exit(1)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    from .jobproc import main

    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    raise SystemExit(code)


def run_warm(argv: list[str], cwd: Path, env: dict[str, str], wall_clock: float) -> tuple[int | None, str]:
    """``python -m ftlab.grading.jobproc ARGV`` in ``cwd``, warm; (returncode, output), None when killed on time.

    Here the fork server's process is a stand-in that is still running when the wall
    clock runs out (nothing is forked):

    >>> import tempfile
    >>> from unittest import mock
    >>> with tempfile.TemporaryDirectory() as course, mock.patch.object(_forkserver(), "Process") as process:
    ...     job = process.return_value
    ...     job.exitcode, job.pid = None, 4194305  # no such process: killing it is harmless
    ...     run_warm(["--", "autograde", "ps1_parameters", "--student=alice"], Path(course), {}, wall_clock=600)
    (None, '')
    >>> process.call_args.kwargs["target"] is _child, job.join.call_args_list  # 600 s, killed, 30 s more
    (True, [call(600), call(30)])
    """
    log = Path(cwd) / ".ftlab-job.log"
    context = _forkserver()
    proc = context.Process(target=_child, args=(argv, str(cwd), env, str(log)), name="ftlab-job")
    with _lock:  # the service's grading threads start jobs at the same time: one start at a time
        proc.start()
    proc.join(wall_clock)
    rc: int | None = proc.exitcode
    if rc is None:
        kill_process_tree(proc.pid)
        proc.join(30)
    try:
        out = log.read_text(errors="replace")
    except OSError:
        out = ""
    return rc, out
