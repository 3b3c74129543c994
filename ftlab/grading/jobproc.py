"""A grading job's own process: ``nbgrader autograde``, then (for the service) that student's feedback.

    python -m ftlab.grading.jobproc --stages FILE [--feedback pass-fail|as-graded] -- autograde ARGS...

:func:`~.jobs.run_job` starts this in the job's private course folder instead of
``python -m nbgrader``. It runs nbgrader's own application in-process (as nbgrader's
test suite does: ``NbGraderApp.instance()``, ``initialize``, ``start``, ``reset``), so
the command line, the config files read and the exit status are nbgrader's.

Why a process of our own:

* **one start-up for two commands.** Graded on submit, a submission's feedback was a
  second ``nbgrader generate_feedback`` process: Python, nbgrader, nbconvert and (the
  course's preprocessors import ftlab) torch started again, several seconds of CPU for
  a second of work. With ``--feedback`` it runs here after a successful autograde, in
  the same private course: the gradebook there is the one whose grades the service
  merges (:func:`~.gradebook.merge` copies them as they are), so the page shows exactly
  the grades recorded. It runs outside the sandbox, as it did before: it renders the
  graded notebook (the student's outputs are data, escaped by nbconvert) and runs none
  of its code. ``pass-fail`` puts :class:`~.feedback.HiddenChecksPassFail` in the chain
  (:func:`~.release.feedback_config`);
* **where the time goes.** It marks its stages (:mod:`.stages`): start-up (Python and
  imports), nbgrader's set-up, the executor's own marks, nbgrader's save, feedback.

The exit status is autograde's; a feedback step that fails leaves no page, and the
service reports the submission as failed (and tries it again), as before.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from . import stages
from .service_settings import HIDDEN_CHOICES

__all__ = ["main", "run_nbgrader_app"]


def run_nbgrader_app(argv: list[str]) -> int:
    """One nbgrader command in this process; its exit status. The application is reset after it.

    nbgrader's applications end a failed command with ``sys.exit(1)``; that becomes the
    status. Here with a stand-in for nbgrader's application (the real one is not run):

    >>> from unittest import mock
    >>> app = mock.Mock(**{"start.side_effect": SystemExit(1)})
    >>> nbgrader = mock.Mock(**{"NbGraderApp.instance.return_value": app})
    >>> with mock.patch.dict("sys.modules", {"nbgrader.apps.nbgraderapp": nbgrader}):
    ...     run_nbgrader_app(["autograde", "ps1_parameters", "--student=alice"])
    1
    >>> app.initialize.call_args.args, app.reset.called
    ((['autograde', 'ps1_parameters', '--student=alice'],), True)
    """
    from jupyter_core.application import NoStart
    from nbgrader.apps.nbgraderapp import NbGraderApp

    app = NbGraderApp.instance()
    try:
        app.initialize(argv)
        app.start()
    except NoStart:  # how a Jupyter application says its subcommand ran (launch_instance ignores it)
        return 0
    except SystemExit as exc:  # nbgrader's apps end a failed command with sys.exit(1)
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        app.reset()
    return 0


def _feedback(args: list[str], hidden: str) -> None:
    """``nbgrader generate_feedback`` for the student autograde just graded, with the service's hidden-check view."""
    from .release import feedback_config

    assignment = args[1]
    student = next(a.split("=", 1)[1] for a in args if a.startswith("--student="))
    config = Path("nbgrader_config.py")
    config.write_text(feedback_config(config.read_text(), hidden == "pass-fail"))  # this job's own copy
    code = run_nbgrader_app(["generate_feedback", assignment, f"--student={student}", "--force"])
    if code != 0:
        print(f"ftlab: nbgrader generate_feedback exited with {code}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """The job's process: ``--stages FILE [--feedback pass-fail|as-graded] -- autograde ...``; autograde's status.

    A command that is not ``-- autograde ASSIGNMENT ...`` (with ``--student=`` when it makes feedback) stops
    before nbgrader is imported:

    >>> import contextlib, io
    >>> with contextlib.redirect_stderr(io.StringIO()) as err:
    ...     try:
    ...         main(["--feedback", "pass-fail", "--", "autograde", "ps1_parameters"])
    ...     except SystemExit as exc:
    ...         print(exc.code)
    2
    >>> err.getvalue().splitlines()[-1]
    "python -m ftlab.grading.jobproc: error: --feedback needs autograde's --student=STUDENT"
    """
    parser = argparse.ArgumentParser(prog="python -m ftlab.grading.jobproc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", help="file for this process's stage marks")
    parser.add_argument("--feedback", choices=HIDDEN_CHOICES, help="after autograde, make the student's feedback")
    parser.add_argument("nbgrader", nargs=argparse.REMAINDER, help="-- autograde ASSIGNMENT --student=S ...")
    args = parser.parse_args(argv)
    command = args.nbgrader[1:] if args.nbgrader[:1] == ["--"] else args.nbgrader
    if not command or command[0] != "autograde" or len(command) < 2:
        parser.error("expected -- autograde ASSIGNMENT --student=STUDENT ...")
    if args.feedback and not any(a.startswith("--student=") for a in command):
        parser.error("--feedback needs autograde's --student=STUDENT")
    stages.record_to(args.stages)
    import nbgrader.apps.nbgraderapp  # noqa: F401 -- what a bare `nbgrader` start-up costs, marked as such

    from . import executor  # noqa: F401 -- the course's execute step (and torch), which its config names

    stages.mark("process start-up")
    code = run_nbgrader_app(command)
    stages.mark("nbgrader save")
    if code == 0 and args.feedback:
        try:
            _feedback(command, args.feedback)
        except Exception:  # the page is missing; the service says so and grades again
            print("ftlab: generate_feedback failed:\n" + traceback.format_exc(), flush=True)
        stages.mark("feedback")
    return code


if __name__ == "__main__":
    sys.exit(main())
