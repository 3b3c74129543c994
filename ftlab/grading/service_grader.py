"""The grading service's real grader: one submission through the driver's machinery, feedback to its student.

:class:`NbgraderGrader` is what ``ftlab serve`` plugs into :class:`~.service.GradingService`
(the unit tests plug in fakes). For each submission of a batch it

1. reads the assignment's files from the inbound folder with :func:`~.intake.read_submission`
   (regular single-link files, no link followed, size caps) into a private staging
   course, with the trusted receipt time as ``timestamp.txt`` (the name's timestamp is
   the student's to write; the folder's ctime is not);
2. plans it with :func:`~.driver.prepare` and runs the jobs on the runner (threads with
   ``--jobs N``, or Dask), each in its sandbox;
3. merges the grades with :func:`~.driver.finish` -- into the real course, or, for a late
   submission under the keep-on-time rule, into a throw-away copy of the gradebook;
4. makes that student's feedback (:func:`~.release.generate_feedback`) and releases it to
   that submission (:func:`~.release.release`).

A submission whose notebook was missing or not a notebook gets a page saying so instead.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from .driver import Course, Plan, finish, open_course, prepare
from .intake import read_submission
from .jobs import Job, JobResult
from .protocol import GradingError
from .release import generate_feedback, read_secret, release, status_page
from .runners import DaskRunner, LocalRunner
from .sandbox import check_available
from .service import MAX_TRIES

__all__ = ["NbgraderGrader", "Prepared"]


@dataclasses.dataclass
class Prepared:
    """One submission ready to grade: its plan, where its grades go, and what its feedback needs."""

    work: object  # service.Work
    plan: Plan
    secret: str
    staged: Path  # staging/view/submitted/<student>/<assignment>: the accepted files
    target: Course  # the real course, or a throw-away copy for a late submission kept out of the gradebook
    staging: Path
    runs: list[tuple[Job, JobResult | None]] = dataclasses.field(default_factory=list)


def nbgrader_timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


class NbgraderGrader:
    """Grades with ``nbgrader autograde`` in the sandbox; releases feedback into the exchange."""

    def __init__(
        self, root: Path, exchange_course: Path, jobs: int = 1, scheduler: str | None = None, log=print
    ) -> None:
        self.root, self.exchange_course, self.log = Path(root).resolve(), Path(exchange_course), log
        self.inbound = self.exchange_course / "inbound"
        self.runner = LocalRunner(jobs) if scheduler is None else DaskRunner(scheduler)
        shutil.rmtree(self.root / "service" / "staging", ignore_errors=True)  # a killed service's leftovers
        if scheduler is None:
            problem = check_available()
            if problem:
                raise GradingError(f"cannot sandbox the submissions: {problem}")

    # ------------------------------------------------------------------ pages that are not grades

    def _notebooks(self, assignment: str) -> list[str]:
        from nbgrader.api import Gradebook

        with Gradebook(f"sqlite:///{self.root / 'gradebook.db'}") as gb:
            return sorted(nb.name for nb in gb.find_assignment(assignment).notebooks)

    def notify(self, work, title: str, message: str) -> None:
        sub = work.sub
        secret = read_secret(self.inbound, sub.name)
        pages = {nb: status_page(title, message, sub.assignment, nb) for nb in self._notebooks(sub.assignment)}
        release(self.exchange_course, secret, pages)

    # ------------------------------------------------------------------ grading

    def _prepare(self, course: Course, work) -> Prepared:
        sub = work.sub
        staging_root = self.root / "service" / "staging"
        staging_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{sub.student}-", dir=staging_root))
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
        for job in plan.jobs:  # nbgrader records the submission time (and applies late penalties) from it
            job.files[f"{course.submission(sub.student)}/timestamp.txt"] = stamp.encode()
        target = course
        if sub.late and work.rules.late == "keep-on-time":
            shadow = staging / "shadow"
            (shadow / "reports").mkdir(parents=True)
            shutil.copy(course.root / "gradebook.db", shadow / "gradebook.db")
            shutil.copy(course.root / "nbgrader_config.py", shadow / "nbgrader_config.py")
            target = dataclasses.replace(course, root=shadow)
        return Prepared(work, plan, secret, staged, target, staging)

    def _install(self, p: Prepared) -> None:
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

    def _complete(self, p: Prepared) -> str | None:
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
        finish(course, p.plan, p.runs, log=self.log)
        if why:
            return why
        graded = {name for job, _ in p.runs for name in job.notebooks}
        pages = {}
        if graded:
            made = generate_feedback(
                course.root, sub.assignment, sub.student, p.work.rules.hidden_checks == "pass-fail"
            )
            pages = {name: page for name, page in made.items() if name in graded}
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
        return None

    def grade(self, batch: list) -> dict[str, str | None]:
        """Grade a batch of submissions at once on the runner; name -> None (feedback released) or why not."""
        errors: dict[str, str | None] = {}
        prepared: list[Prepared] = []
        try:
            for assignment in sorted({w.sub.assignment for w in batch}):
                works = [w for w in batch if w.sub.assignment == assignment]
                try:
                    course = open_course(assignment, self.root, force=True)
                except Exception as exc:
                    errors.update({w.sub.name: f"cannot open the course: {exc}" for w in works})
                    continue
                for work in works:
                    try:
                        prepared.append(self._prepare(course, work))
                    except Exception as exc:
                        errors[work.sub.name] = f"{type(exc).__name__}: {exc}"
            self._run(prepared, errors)
        finally:
            for p in prepared:
                shutil.rmtree(p.staging, ignore_errors=True)
        return errors

    def _run(self, prepared: list[Prepared], errors: dict[str, str | None]) -> None:
        owner = {id(job): p for p in prepared for job in p.plan.jobs}

        def settle(p: Prepared) -> None:
            try:
                errors[p.work.sub.name] = self._complete(p)
            except Exception as exc:
                errors[p.work.sub.name] = f"{type(exc).__name__}: {exc}"

        def collect(job: Job, result: JobResult | None) -> None:
            p = owner[id(job)]
            p.runs.append((job, result))
            if len(p.runs) == len(p.plan.jobs):
                settle(p)

        for p in prepared:
            if not p.plan.jobs:  # nothing to run (no readable notebook): its page says why
                settle(p)
        stopped = self.runner.run([job for p in prepared for job in p.plan.jobs], collect)
        for p in prepared:
            errors.setdefault(p.work.sub.name, stopped or "not graded")
