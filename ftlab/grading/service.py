"""``ftlab serve``: the course's grading service -- every submission graded, and its feedback released, on submit.

    ftlab serve --course /home/grader-ftlab --jobs 2        # run by JupyterHub as a managed service
    ftlab serve --once                                     # grade what is waiting, then exit

The instructor turns it on per assignment in ``grading_service.toml``
(:mod:`.service_settings`: attempt limits, hidden checks, late rule). The service polls
the exchange's inbound folder (``{exchange}/{course}/inbound/{student}+{assignment}+{timestamp}+{random}``):
polling survives a restarted exchange, NFS and a service that was down, where file
events would not. Each folder there is hostile: a name that is not exactly nbgrader's,
anything that is not a plain folder, or -- with ``check_owner`` -- a folder not owned
by the account it names is ignored with a log line, and nothing in it is followed.

What was submitted waits in an on-disk queue (:mod:`.queue`): the newest submission per
student wins, students are served oldest-waiting first, and a submission leaves the
queue only once its feedback is released; a restarted service grades again what was in
flight. ``--jobs N`` submissions are graded at once, pipelined: a slot that frees takes
the longest-waiting student's submission at once (a student has at most one in
flight), while the others go on. A grading that fails (an exception, nbgrader failing)
is tried once more; a second failure releases a page saying grading failed and that
the instructor was told, and appends to ``service/failures.log``. Over the attempt
limits, the submission is not graded and its feedback says when the next attempt can be.

Grading one submission (:class:`~.service_grader.NbgraderGrader`) is ``ftlab grade`` for one student:
the accepted files only (:func:`~.intake.read_submission`, never a copy of the folder),
graded in the sandbox by the driver's job (here, or on a Dask cluster with
``--scheduler``), whose process also makes that student's feedback
(:mod:`.jobproc`), merged by :func:`~.driver.finish` (hand grades kept), then released
to that submission alone (:mod:`.release`). Where each submission's time went, stage by
stage (:mod:`.stages`), is a line of ``service/stages.jsonl`` and of the log. The gradebook follows nbgrader's deadline (the assignment's
``duedate``): a late submission gets feedback, but under the default ``keep-on-time``
rule it is graded against a throw-away copy of the gradebook, so the last on-time grade
stands -- and ``submitted/`` keeps the on-time files, so a later ``ftlab grade`` agrees.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from . import stages
from .queue import Queue, Submission, attempt_refusal, parse_inbound_name
from .service_page import ServicePage
from .service_settings import AssignmentRules, SettingsError, load_settings
from .work import MAX_TRIES, Work

__all__ = [
    "Grader",
    "GradingService",
    "course_duedate",
    "exchange_location",
    "main",
    "hold_course_lock",
    "build_parser",
    "run_cli",
]

STAGES_LOG_BYTES = 8 << 20  # service/stages.jsonl is rotated (to stages.jsonl.1) past this size


class Grader(Protocol):
    """What grades a submission for :class:`GradingService`: :class:`~.service_grader.NbgraderGrader`, or a fake.

    >>> class Fake:  # grades nothing, as in the unit tests
    ...     def grade(self, work):
    ...         return None
    ...     def notify(self, work, title, message):
    ...         print(f"{work.sub.name}: {title}")
    >>> from ftlab.grading.queue import StudentState
    >>> sub = Submission("alice+ps1_parameters+2024-05-01 12:00:00 UTC", "alice", "ps1_parameters", received=100.0)
    >>> grader: Grader = Fake()
    >>> grader.notify(Work(StudentState("alice", "ps1_parameters"), AssignmentRules(), sub), "Grading failed", "...")
    alice+ps1_parameters+2024-05-01 12:00:00 UTC: Grading failed
    """

    def grade(self, work: Work) -> str | None:
        """Grade one submission and release its feedback; None, or why it failed.

        Called from the service's worker threads, up to ``jobs`` at once (never two of one student's
        submissions of an assignment); may add its stages to ``work.marks``.
        """

    def notify(self, work: Work, title: str, message: str) -> None:
        """Release a page (not a grade) to that submission: over the limit, or grading failed."""


class GradingService:
    r"""The loop: take in new submissions, keep ``jobs`` of them grading, record what happened -- state on disk.

    Only this (the main) thread changes the queue; the worker threads run the grader.

    One poll of the inbound folder (a course with ``ps1_parameters`` graded on submit):

    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> course = Path(tmp.name)
    >>> _ = (course / "grading_service.toml").write_text("[service]\ncheck_owner = false\n[assignments.ps1_parameters]")
    >>> for name in ("alice+ps1_parameters+2024-05-01 12:00:00 UTC", "alice+ps1_parameters+tomorrow"):
    ...     (course / "inbound" / name).mkdir(parents=True)
    ...     _ = (course / "inbound" / name / "submission_secret.txt").write_text("0123456789abcdef")
    >>> service = GradingService(course, grader=None, inbound=course / "inbound", duedate=lambda a, s: None, settle=0)
    >>> service.scan()
    queued alice+ps1_parameters+2024-05-01 12:00:00 UTC
    ignored inbound/'alice+ps1_parameters+tomorrow': not a submission name
    1
    >>> tmp.cleanup()
    """

    def __init__(
        self,
        root: str | Path,
        grader: Grader,
        inbound: str | Path,
        jobs: int = 1,
        log: Callable[[str], None] = print,
        duedate: Callable[[str, str], float | None] | None = None,
        settle: float = 1.0,
    ) -> None:
        self.root = Path(root).resolve()
        self.grader, self.inbound, self.jobs, self.log = grader, Path(inbound), jobs, log
        self.queue = Queue(self.root)
        self.settings = load_settings(self.root)  # a broken file stops the start: the instructor sees it at once
        # (assignment, student) -> that student's due date: the assignment's, plus any extension they were given
        self.duedate = duedate or (lambda assignment, student: course_duedate(self.root, assignment, student))
        self._ignored: set[str] = set()
        self._taken: set[str] | None = None  # inbound names already in the queue (loaded on the first scan)
        self.settle = settle  # seconds a submission folder must be unchanged before it is taken in
        self.page = ServicePage(self.root, log)  # reports/index.html and the class reports, for the instructor

    def _reload(self) -> None:
        try:
            self.settings = load_settings(self.root)
        except SettingsError as exc:  # an edit gone wrong while running: keep grading with the last good settings
            self._once(f"settings: {exc}", f"settings error (keeping the previous settings): {exc}")

    def _once(self, key: str, line: str) -> None:
        if key not in self._ignored:
            self._ignored.add(key)
            self.log(line)

    def _owner_ok(self, student: str, uid: int) -> bool:
        if not self.settings.check_owner:
            return True
        try:
            return pwd.getpwuid(uid).pw_name == student
        except KeyError:
            return False

    def _written(self, name: str, ctime: float) -> bool:
        """Whether ``nbgrader submit`` is done with a folder: it writes ``submission_secret.txt`` last.

        A folder taken in half-copied would be graded without its notebook. The secret
        alone is not enough (a student's own tools may write in any order), so the folder
        must also have been unchanged for ``settle`` seconds.
        """
        if time.time() - ctime < self.settle:
            return False
        try:
            os.lstat(self.inbound / name / "submission_secret.txt")
        except OSError:
            return False
        return True

    def scan(self) -> int:
        """Take in the inbound folder's new submissions; how many were new.

        A name already taken in is skipped before anything else (a set in memory, filled from the
        queue's ``seen`` lists at the first scan): nbgrader never empties ``inbound/``, and a poll
        every second must not read every student's state file again.
        """
        self._reload()
        if self.inbound.is_symlink() or not self.inbound.is_dir():
            self._once(f"inbound {self.inbound}", f"no inbound folder at {self.inbound} (or it is a link): waiting")
            return 0
        if self._taken is None:
            self._taken = {name for state in self.queue.states() for name in state.seen}
        dues: dict[tuple[str, str], float | None] = {}
        new = 0
        for entry in sorted(os.scandir(self.inbound), key=lambda e: e.name):
            if entry.name in self._taken:
                continue
            parsed = parse_inbound_name(entry.name)
            if parsed is None:
                self._once(entry.name, f"ignored inbound/{entry.name!r}: not a submission name")
                continue
            student, assignment = parsed
            rules = self.settings.rules(assignment)
            if rules is None:
                continue  # not graded on submit: collected and graded by the instructor as before
            info = entry.stat(follow_symlinks=False)
            if not entry.is_dir(follow_symlinks=False):
                self._once(entry.name, f"ignored inbound/{entry.name}: not a folder (a link or a file)")
                continue
            if not self._owner_ok(student, info.st_uid):
                self._once(entry.name, f"ignored inbound/{entry.name}: not owned by {student}")
                continue
            if not self._written(entry.name, info.st_ctime):
                continue  # the student's `nbgrader submit` is still writing it: the next poll takes it
            if (assignment, student) not in dues:
                dues[assignment, student] = self.duedate(assignment, student)
            due = dues[assignment, student]
            late = due is not None and info.st_ctime > due
            sub = Submission(entry.name, student, assignment, info.st_ctime, late, queued=time.time())
            if self.queue.add(sub, keep_on_time=rules.late == "keep-on-time"):
                new += 1
                self.log(f"queued {entry.name}{' (late)' if sub.late else ''}")
            self._taken.add(entry.name)
        return new

    def _refuse_over_limit(self, work: Work) -> bool:
        """True when the submission is over the attempt limits: its page is released and it leaves the queue."""
        state, rules = work.state, work.rules
        others = [a for a in state.attempts if a[0] != work.sub.name]
        why = attempt_refusal(others, work.sub.received, rules.attempts_per_hour, rules.attempts_per_day)
        if why is None:
            return False
        self.grader.notify(work, "Not graded: attempt limit reached", why)
        self.queue.done(state, "not graded: attempt limit")
        self.log(f"not graded (attempt limit): {work.sub.name}")
        return True

    def _failed(self, work: Work, why: str) -> None:
        tries = self.queue.failed(work.state, why)
        if tries < MAX_TRIES:
            self.log(f"grading failed, trying once more: {work.sub.name}: {why}")
            self.queue.retry(work.state)
            return
        self.log(f"grading failed twice, reported: {work.sub.name}: {why}")
        with open(self.root / "service" / "failures.log", "a") as fh:
            fh.write(f"{datetime.now(UTC).isoformat()} {work.sub.name}: {why}\n")
        try:
            self.grader.notify(
                work,
                "Grading failed",
                "Your submission could not be graded (twice). Your instructor has been told and will look at it; "
                "you do not need to submit again.",
            )
        except Exception as exc:  # the page could not be released: the instructor's log says so
            self.log(f"could not tell the student of {work.sub.name}: {exc!r}")
        self.queue.done(work.state, f"grading failed twice; reported: {why}")

    def _start(self, pool: ThreadPoolExecutor, running: dict[Future, Work]) -> int:
        """Fill the free slots: the longest-waiting students first, one submission each; how many were taken."""
        count = 0
        while len(running) < self.jobs:
            states = self.queue.next_batch(self.jobs - len(running))
            if not states:
                break
            for state in states:
                count += 1
                work = Work(state, self.settings.rules(state.assignment) or AssignmentRules(), state.in_flight)
                sub = work.sub
                work.marks = [("submitted", sub.received), ("poll", sub.queued or sub.received)]
                work.mark("queue")
                try:
                    if self._refuse_over_limit(work):
                        continue
                except Exception as exc:
                    self._failed(work, f"could not release the attempt-limit page: {exc!r}")
                    continue
                self.queue.count_attempt(state)
                running[pool.submit(self.grader.grade, work)] = work
        return count

    def _finish(self, work: Work, future: Future) -> None:
        """Record a grading's outcome (a BaseException -- the process dying -- goes on up)."""
        try:
            why = future.result()
        except Exception as exc:  # the grader itself broke
            why = f"{type(exc).__name__}: {exc}"
        if why is None:
            self.queue.done(work.state, "graded; feedback released")
            work.mark("record")
            seconds = stages.durations(work.marks)
            total = sum(seconds.values())
            self.log(
                f"graded, feedback released: {work.sub.name} in {total:.1f} s ({stages.format_durations(seconds)})"
            )
            self._write_stages(work, seconds, total)
            self.page.released(work.sub.assignment)
        else:
            self._failed(work, why)

    def _write_stages(self, work: Work, seconds: dict[str, float], total: float) -> None:
        """One line of ``service/stages.jsonl``: where this submission's time went, submit to released."""
        path = self.root / "service" / "stages.jsonl"
        line = {
            "name": work.sub.name,
            "student": work.sub.student,
            "assignment": work.sub.assignment,
            "released": datetime.now(UTC).isoformat(),
            "total": round(total, 3),
            "seconds": {label: round(value, 3) for label, value in seconds.items()},
        }
        try:
            if path.stat().st_size > STAGES_LOG_BYTES:
                os.replace(path, path.with_name("stages.jsonl.1"))
        except FileNotFoundError:
            pass
        with open(path, "a") as fh:
            fh.write(json.dumps(line) + "\n")

    def _write_status(self) -> None:
        """``service/status.json`` (what waits, what is in flight) and the instructor's ``reports/index.html``."""
        states = self.queue.states()
        status = {
            "updated": datetime.now(UTC).isoformat(),
            "waiting": sorted(p.name for s in states for p in s.pending),
            "in_flight": sorted(s.in_flight.name for s in states if s.in_flight),
        }
        path = self.root / "service" / "status.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(status, indent=1))
        graded = sorted(name for name, rules in self.settings.assignments.items() if rules.enabled)
        self.page.write_index(graded, status)

    def _loop(self, poll: float, until_idle: bool) -> None:
        """Take in, start, collect: a slot that frees is refilled at once, the inbound folder read every ``poll`` s."""
        for state in self.queue.recover():
            self.log(f"grading again after a restart: {state.pending[0].name}")
        self._write_status()
        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="ftlab-grade")
        running: dict[Future, Work] = {}
        try:
            while True:
                self.scan()
                changed = self._start(pool, running)
                self.page.refresh(idle=not running)
                if not running:
                    if changed:
                        self._write_status()
                    if until_idle:
                        self.page.wait()
                        return
                    time.sleep(poll)
                    continue
                if changed:
                    self._write_status()
                done, _ = wait(running, timeout=poll, return_when=FIRST_COMPLETED)
                for future in done:
                    self._finish(running.pop(future), future)
                if done:
                    self._write_status()
        finally:
            # A normal end has nothing running. Anything else (the process dying, Ctrl-C): do not wait for
            # gradings -- what is in flight stays in flight on disk, and a restart grades it again.
            pool.shutdown(wait=not running, cancel_futures=True)

    def run_once(self) -> None:
        """Grade everything waiting (what a killed service left in flight first), then return."""
        self._loop(poll=0.05, until_idle=True)

    def serve(self, poll: float = 1.0) -> None:
        """Run until killed: every ``poll`` seconds (and whenever a grading ends), take in and grade what arrived."""
        self.log(f"ftlab serve: watching {self.inbound}, {self.jobs} at a time")
        self._loop(poll, until_idle=False)


def course_duedate(root: Path, assignment: str, student: str | None = None) -> float | None:
    """The assignment's due date (nbgrader's gradebook, UTC) in seconds since the epoch; None when it has none.

    With ``student``, that student's due date: nbgrader keeps a per-student extension on the
    student's submission record (``Gradebook.grant_extension``, the Formgrader), and its own
    late penalty counts from the extended date, so "late" here must too.

    nbgrader keeps due dates as naive datetimes in UTC. Here with a stand-in for nbgrader's gradebook, in which
    bob was given a day more:

    >>> from datetime import datetime, timedelta
    >>> from unittest import mock
    >>> gradebook = mock.MagicMock()
    >>> gradebook.__enter__.return_value.find_assignment.return_value.duedate = datetime(2024, 5, 1, 12, 0)
    >>> gradebook.__enter__.return_value.find_submission.return_value.extension = timedelta(days=1)
    >>> api = mock.Mock(Gradebook=mock.Mock(return_value=gradebook), MissingEntry=LookupError)
    >>> with mock.patch.dict("sys.modules", {"nbgrader.api": api}):
    ...     course_duedate(Path("/srv/course"), "ps1"), course_duedate(Path("/srv/course"), "ps1", "bob")
    (1714564800.0, 1714651200.0)
    """
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        try:
            due = gb.find_assignment(assignment).duedate
        except MissingEntry:
            return None
        if due is not None and student is not None:
            try:
                extension = gb.find_submission(assignment, student).extension
            except MissingEntry:  # nothing recorded for this student yet: no extension
                extension = None
            due = due + extension if extension else due
    return None if due is None else due.replace(tzinfo=UTC).timestamp()


def exchange_location(root: Path) -> tuple[Path, str]:
    r"""(exchange root, course id) as the course's nbgrader sees them: system-wide config, then the course's.

    >>> import tempfile
    >>> from unittest import mock
    >>> config = 'c = get_config()\nc.CourseDirectory.course_id = "ftlab"\nc.Exchange.root = "/srv/exchange"\n'
    >>> with tempfile.TemporaryDirectory() as course, mock.patch("jupyter_core.paths.jupyter_config_path", list):
    ...     _ = Path(course, "nbgrader_config.py").write_text(config)  # (no system-wide config here)
    ...     exchange_location(Path(course))
    (PosixPath('/srv/exchange'), 'ftlab')
    """
    from jupyter_core.paths import jupyter_config_path
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = Config()
    for folder in [*reversed(jupyter_config_path()), str(root)]:
        if (Path(folder) / "nbgrader_config.py").is_file():
            config.merge(PyFileConfigLoader("nbgrader_config.py", path=folder).load_config())
    exchange = config.get("Exchange", {}).get("root", "/srv/nbgrader/exchange")
    course_id = config.get("CourseDirectory", {}).get("course_id", "")
    if not course_id:
        raise SettingsError("no CourseDirectory.course_id in the course's nbgrader_config.py")
    return Path(exchange), course_id


def hold_course_lock(root: Path):
    """One service per course: a second one would grade the same queue twice. The lock goes with the process.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as course:
    ...     lock = hold_course_lock(Path(course))
    ...     try:
    ...         hold_course_lock(Path(course))
    ...     except ValueError as exc:
    ...         print(exc)
    ...     lock.close()
    another ftlab serve is running for /... (it holds /.../service/lock)
    """
    import fcntl

    folder = root / "service"
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / "lock", "w")  # noqa: SIM115 -- held open for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ValueError(f"another ftlab serve is running for {root} (it holds {folder / 'lock'})") from None
    return handle


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """``ftlab serve``'s options (``parser``: the subcommand's, from ``ftlab``'s own).

    >>> args = build_parser().parse_args(["--course", "/home/grader-ftlab", "--jobs", "2"])
    >>> args.course, args.jobs, args.once, args.poll, args.cold_start
    ('/home/grader-ftlab', 2, False, 1.0, False)
    """
    parser = parser or argparse.ArgumentParser(prog="ftlab serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--course", default=".", help="course root (default: current directory)")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded at once, each in its own sandbox")
    parser.add_argument("--scheduler", help="Dask scheduler address: grade on the cluster's workers")
    parser.add_argument("--once", action="store_true", help="grade what is waiting, then exit")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between looks at the inbound folder")
    parser.add_argument("--exchange", help="exchange root (default: nbgrader's Exchange.root from the config)")
    parser.add_argument(
        "--cold-start",
        action="store_true",
        help="start each grading process as a new interpreter, not forked warm (slower; for comparison)",
    )
    return parser


def run_cli(args: argparse.Namespace) -> int:
    """Serve until killed (or, with ``--once``, until nothing waits); 2 when it cannot start, with why.

    >>> import contextlib
    >>> with contextlib.redirect_stderr(sys.stdout):
    ...     run_cli(build_parser().parse_args(["--poll", "0"]))
    ftlab serve: error: --poll must be a positive number of seconds, got 0.0
    2
    """

    def log(line: str) -> None:
        print(f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} {line}", file=sys.stderr, flush=True)

    from .protocol import GradingError

    try:
        if args.poll <= 0:
            raise ValueError(f"--poll must be a positive number of seconds, got {args.poll}")
        root = Path(args.course).resolve()
        if not (root / "nbgrader_config.py").is_file():
            raise ValueError(f"{root} is not a course root (no nbgrader_config.py)")
        lock = hold_course_lock(root)  # noqa: F841 -- held until the process ends
        exchange, course_id = exchange_location(root)
        if args.exchange:
            exchange = Path(args.exchange)
        from .service_grader import NbgraderGrader  # the grading stack (nbgrader, torch): once the options are good

        grader = NbgraderGrader(root, exchange / course_id, args.scheduler, log, warm=not args.cold_start)
        try:
            service = GradingService(root, grader, exchange / course_id / "inbound", args.jobs, log)
            service.run_once() if args.once else service.serve(args.poll)
        finally:
            grader.close()
    except (GradingError, SettingsError, ValueError, OSError) as exc:
        print(f"ftlab serve: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m ftlab.grading.service``: ``ftlab serve``'s command line.

    >>> import contextlib, tempfile
    >>> with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stderr(sys.stdout):
    ...     main(["--course", folder, "--once"])
    ftlab serve: error: /... is not a course root (no nbgrader_config.py)
    2
    """
    return run_cli(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
