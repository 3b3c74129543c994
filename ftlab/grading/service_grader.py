"""The grading service's real grader: one submission through the driver's machinery, feedback to its student.

:class:`NbgraderGrader` is what ``ftlab serve`` plugs into :class:`~.service.GradingService`
(the unit tests plug in fakes). The service calls :meth:`NbgraderGrader.grade` from up to
``jobs`` worker threads at once, one submission each. For a submission it

1. reads the assignment's files from the inbound folder with :func:`~.intake.read_submission`
   (regular single-link files, no link followed, size caps) into a private staging
   course, with the trusted receipt time as ``timestamp.txt`` (the name's timestamp is
   the student's to write; the folder's ctime is not);
2. plans it with :func:`~.driver.prepare` and runs its job (here or on Dask), in the
   sandbox; the job's process also makes the student's feedback (:mod:`.jobproc`);
3. merges the grades with :func:`~.driver.finish` -- into the real course, or, for a late
   submission under the keep-on-time rule, into a throw-away copy of the gradebook;
4. releases the feedback to that submission (:func:`~.release.release`).

The course's gradebook is read (a snapshot for the job) and written (the merge) under
one lock: two gradings never touch it at once.

A submission whose notebook was missing or not a notebook gets a page saying so instead.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

from .driver import Course, Plan, finish, open_course, prepare, update_report
from .intake import read_submission
from .jobs import Job, JobResult
from .protocol import GradingError
from .release import read_secret, release, status_page
from .runners import DaskRunner, LocalRunner
from .sandbox import check_available
from .work import MAX_TRIES, Work

__all__ = ["NbgraderGrader", "nbgrader_timestamp"]


@dataclasses.dataclass
class _Prepared:
    """One submission ready to grade: its plan, where its grades go, and what its feedback needs."""

    work: Work
    plan: Plan
    secret: str
    staged: Path  # staging/view/submitted/<student>/<assignment>: the accepted files
    target: Course  # the real course, or a throw-away copy for a late submission kept out of the gradebook
    staging: Path
    runs: list[tuple[Job, JobResult | None]] = dataclasses.field(default_factory=list)


def nbgrader_timestamp(seconds: float) -> str:
    """A time as nbgrader writes a submission's ``timestamp.txt`` (UTC, microseconds).

    >>> nbgrader_timestamp(1714564800.25)
    '2024-05-01 12:00:00.250000 UTC'
    """
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


class NbgraderGrader:
    """Grades with ``nbgrader autograde`` in the sandbox; releases feedback into the exchange.

    Here a Dask cluster would grade (its scheduler stood in for: nothing is checked or started here), and
    the one page released is a status page: ``notify`` for a submission over its limits.

    >>> import tempfile
    >>> from ftlab.grading import gradebook
    >>> from ftlab.grading.queue import StudentState, Submission
    >>> from ftlab.grading.service_settings import AssignmentRules
    >>> tmp = tempfile.TemporaryDirectory()
    >>> root, exchange = Path(tmp.name), Path(tmp.name, "exchange", "ftlab")
    >>> gradebook._example(root).close()  # the gradebook: ps1_parameters, one notebook (count_params)
    >>> sub = Submission("alice+ps1_parameters+2024-05-01 12:00:00 UTC", "alice", "ps1_parameters", received=0.0)
    >>> (exchange / "inbound" / sub.name).mkdir(parents=True)
    >>> _ = (exchange / "inbound" / sub.name / "submission_secret.txt").write_text("ab12" * 8)
    >>> from unittest import mock
    >>> from ftlab.grading.runners import DaskRunner
    >>> with mock.patch.object(DaskRunner, "_connect"):  # the scheduler, stood in for
    ...     grader = NbgraderGrader(root, exchange, scheduler="tcp://grader:8786")
    >>> work = Work(StudentState("alice", "ps1_parameters"), AssignmentRules(), sub)
    >>> grader.notify(work, "Not graded", "3 graded attempts an hour: the next after 13:00 UTC.")
    >>> [page.name for page in (exchange / "feedback").iterdir()]  # for alice's Fetch Feedback alone
    ['bf6c6e8357fa629610d3c1e25f9f6b48.html']
    >>> tmp.cleanup()
    """

    def __init__(
        self,
        root: Path,
        exchange_course: Path,
        scheduler: str | None = None,
        log=print,
        warm: bool = True,
    ) -> None:
        self.root, self.exchange_course, self.log = Path(root).resolve(), Path(exchange_course), log
        self.inbound = self.exchange_course / "inbound"
        # The service runs `jobs` gradings at once, each with its own runner call: one process per submission
        # here (a submission with an unreadable notebook has a job per notebook, run one after the other),
        # forked warm (:mod:`.warm`): a student waits for their notebook, not for imports.
        self.runner = LocalRunner(1, warm=warm) if scheduler is None else DaskRunner(scheduler)
        self._gradebook = threading.Lock()  # the course's gradebook: snapshots and merges, one at a time
        shutil.rmtree(self.root / "service" / "staging", ignore_errors=True)  # a killed service's leftovers
        if scheduler is not None:
            self.runner.client()  # an unreachable scheduler stops the start, where the instructor sees it
        else:
            problem = check_available()
            if problem:
                raise GradingError(f"cannot sandbox the submissions: {problem}")
            if warm:
                from .warm import start

                start()

    def close(self) -> None:
        """Let go of the runner's resources (a Dask client); the service calls it when it stops."""
        self.runner.close()

    # ------------------------------------------------------------------ pages that are not grades

    def _notebooks(self, assignment: str) -> list[str]:
        from nbgrader.api import Gradebook

        with self._gradebook, Gradebook(f"sqlite:///{self.root / 'gradebook.db'}") as gb:
            return sorted(nb.name for nb in gb.find_assignment(assignment).notebooks)

    def notify(self, work, title: str, message: str) -> None:
        sub = work.sub
        secret = read_secret(self.inbound, sub.name)
        pages = {nb: status_page(title, message, sub.assignment, nb) for nb in self._notebooks(sub.assignment)}
        release(self.exchange_course, secret, pages)

    # ------------------------------------------------------------------ grading

    def _prepare(self, course: Course, work: Work, staging: Path) -> _Prepared:
        sub = work.sub
        secret = read_secret(self.inbound, sub.name)
        intake = read_submission(self.inbound, sub.name, course.notebooks, course.extra_files)
        if intake.problem:
            raise ValueError(f"the submission cannot be read: {intake.problem}")
        staged = staging / "view" / course.submission(sub.student)
        for rel, data in intake.files.items():
            (staged / rel).parent.mkdir(parents=True, exist_ok=True)
            (staged / rel).write_bytes(data)
        staged.mkdir(parents=True, exist_ok=True)
        stamp = nbgrader_timestamp(sub.received)
        (staged / "timestamp.txt").write_text(stamp)
        (staged / "submission_secret.txt").write_text(secret)
        plan = prepare(dataclasses.replace(course, root=staging / "view"), sub.student)
        if intake.left_out and plan.rows:
            plan.rows[course.notebooks[0]].details += intake.notes()
        for job in plan.jobs:
            # nbgrader records the submission time (and applies late penalties) from it
            job.files[f"{course.submission(sub.student)}/timestamp.txt"] = stamp.encode()
            job.feedback = work.rules.hidden_checks  # the job's process makes the feedback too
        target = course
        if sub.late and work.rules.late == "keep-on-time":
            shadow = staging / "shadow"
            (shadow / "reports").mkdir(parents=True)
            (shadow / "gradebook.db").write_bytes(course.common["gradebook.db"])  # the job's own snapshot
            shutil.copy(course.root / "nbgrader_config.py", shadow / "nbgrader_config.py")
            target = dataclasses.replace(course, root=shadow)
        return _Prepared(work, plan, secret, staged, target, staging)

    def _install(self, p: _Prepared) -> None:
        """The accepted files become the course's ``submitted/<student>/<assignment>`` (swapped in whole)."""
        dest = self.root / p.target.submission(p.plan.student)
        dest.parent.mkdir(parents=True, exist_ok=True)
        new, old = dest.parent / f".{dest.name}.new", dest.parent / f".{dest.name}.old"
        for leftover in (new, old):
            shutil.rmtree(leftover, ignore_errors=True)
        shutil.copytree(p.staged, new)
        if dest.exists():
            os.rename(dest, old)
        os.rename(new, dest)
        shutil.rmtree(old, ignore_errors=True)

    def _complete(self, p: _Prepared) -> str | None:
        """Merge, make and release the feedback of one submission whose jobs are done; None, or why it failed."""
        sub, course = p.work.sub, p.target
        broken = [r for _, r in p.runs if r is None or r.gradebook is None]
        why = None
        if broken:
            last = broken[0]
            why = "nbgrader did not finish: " + ("not run" if last is None else f"rc {last.rc}: {last.log[-300:]}")
            if p.work.state.failures.get(sub.name, 0) + 1 < MAX_TRIES:
                return why  # tried again before anything is recorded
        kept_out = p.target.root != self.root
        if not kept_out:
            self._install(p)
        (course.root / "reports").mkdir(exist_ok=True)
        with self._gradebook:
            finish(course, p.plan, p.runs, log=self.log)
            if not kept_out:  # `ftlab report`'s statuses: how this student's grading went
                update_report(
                    course.root / "reports" / f"{sub.assignment}.csv", sub.assignment, list(p.plan.rows.values())
                )
        p.work.mark("merge")
        if why:
            return why
        graded = {name for job, _ in p.runs for name in job.notebooks}
        pages = {
            name: page for job, result in p.runs for name, page in result.feedback.items() if name in job.notebooks
        }
        if graded - set(pages):
            log = "".join(result.log for _, result in p.runs)[-1500:]
            missing = ", ".join(sorted(graded - set(pages)))
            raise GradingError(f"nbgrader generate_feedback wrote no page for {sub.student}'s {missing}:\n{log}")
        for name, row in p.plan.rows.items():
            if name not in graded:
                pages[name] = status_page("Not graded", row.detail or row.status, sub.assignment, name)
        if not kept_out:
            out = self.root / "feedback" / sub.student / sub.assignment
            out.mkdir(parents=True, exist_ok=True)
            for name, page in pages.items():
                (out / f"{name}.html").write_bytes(page)
            (out / "timestamp.txt").write_text(nbgrader_timestamp(sub.received))
            (out / "submission_secret.txt").write_text(p.secret)
        release(self.exchange_course, p.secret, pages)
        p.work.mark("release")
        return None

    def grade(self, work: Work) -> str | None:
        """Grade one submission and release its feedback; None, or why it failed (said in the service's log)."""
        sub = work.sub
        with self._gradebook:  # the job's gradebook snapshot is read here
            try:
                course = open_course(sub.assignment, self.root, force=True)
            except Exception as exc:
                return f"cannot open the course: {exc}"
        staging_root = self.root / "service" / "staging"
        staging_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{sub.student}-", dir=staging_root))
        try:
            p = self._prepare(course, work, staging)
            work.mark("intake")
            if p.plan.jobs:  # none: no readable notebook, its page says why
                stopped = self.runner.run(p.plan.jobs, lambda job, result: p.runs.append((job, result)))
                if stopped:
                    return stopped
                for _, result in p.runs:
                    work.marks += result.marks if result is not None else []
            return self._complete(p)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            shutil.rmtree(staging, ignore_errors=True)
