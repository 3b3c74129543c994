"""The grading service's queue: files under the course, one per (assignment, student), that lose nothing.

Why files, one per student: the service may be killed at any moment (a restart of the
hub, the machine); what was submitted and not yet answered must survive it, and a
student's state is only ever changed by one writer at a time. Each file is replaced
whole (write a temporary file, fsync, rename), so a crash leaves the old state or the
new one, never half of each.

A student's file says:

* ``pending``: submissions waiting, oldest first. The newest wins: a newer submission
  drops the older ones waiting -- except that, under the keep-on-time rule, a late
  submission does not push out the last on-time one (that one decides the gradebook);
* ``in_flight``: the submission being graded. A service that starts finds it there and
  grades it again (:meth:`Queue.recover`); it leaves only when its feedback is released;
* ``failures``: failed gradings per submission (one retry, then the student and the
  instructor are told); a restart is not a failure;
* ``attempts``: the graded submissions (name, time received), for the attempt limits;
* ``seen``: every submission name already taken in, so a poll does not take it twice.

Fairness across students: :meth:`Queue.next_batch` takes the students who have waited
longest first (``waiting_since``: when their current wait began), one submission each.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["Submission", "StudentState", "Queue", "parse_inbound_name", "attempt_refusal"]

# nbgrader's inbound name: {student}+{assignment}+{timestamp}[+{random}], e.g.
# "alice+ps1_parameters+2024-05-01 12:00:00.123456 UTC+AbC_d-9xYz12"
_ID = r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}"
_INBOUND = re.compile(
    rf"(?P<student>{_ID})\+(?P<assignment>{_ID})"
    r"\+(?P<timestamp>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,6})? ?[A-Za-z]{0,5})"
    r"(?:\+(?P<random>[A-Za-z0-9_=-]{1,64}))?"
)
HISTORY = 50  # outcomes kept per student, newest last


@dataclass
class Submission:
    """One folder in the exchange's inbound: who, what, and when the service saw it arrive.

    >>> name = "alice+ps1_parameters+2024-05-01 12:00:00.123456 UTC+AbC_d-9xYz12"
    >>> sub = Submission(name, *parse_inbound_name(name), received=1714564800.0)
    >>> sub.student, sub.assignment, sub.late
    ('alice', 'ps1_parameters', False)
    """

    name: str  # the folder name in inbound/
    student: str
    assignment: str
    received: float  # seconds since the epoch: the folder's ctime (a student cannot set it back)
    late: bool = False
    queued: float = 0.0  # when the service took it in (seconds since the epoch; 0: not recorded)


def parse_inbound_name(name: str) -> tuple[str, str] | None:
    """(student, assignment) of a well-formed inbound folder name, or None for anything else.

    A student names their own folder: only nbgrader's exact pattern is taken.

    >>> parse_inbound_name("alice+ps1_parameters+2024-05-01 12:00:00.123456 UTC+AbC_d-9xYz12")
    ('alice', 'ps1_parameters')
    >>> print(parse_inbound_name("../bob+ps1_parameters+2024-05-01 12:00:00 UTC"))
    None
    """
    m = _INBOUND.fullmatch(name)
    return (m["student"], m["assignment"]) if m else None


@dataclass
class StudentState:
    """One student's file in the queue, for one assignment (see the module docstring for its fields).

    >>> state = StudentState("alice", "ps1_parameters", seen=["alice+ps1_parameters+2024-05-01 12:00:00 UTC"])
    >>> StudentState.from_json(json.loads(json.dumps(state.to_json()))) == state
    True
    """

    student: str
    assignment: str
    pending: list[Submission] = field(default_factory=list)
    in_flight: Submission | None = None
    failures: dict[str, int] = field(default_factory=dict)
    waiting_since: float | None = None
    attempts: list[list] = field(default_factory=list)  # [name, received]
    seen: list[str] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict) -> StudentState:
        data = dict(data)
        data["pending"] = [Submission(**s) for s in data.get("pending", [])]
        data["in_flight"] = Submission(**data["in_flight"]) if data.get("in_flight") else None
        return cls(**data)

    def to_json(self) -> dict:
        return asdict(self)


def _write_atomically(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _when(seconds: float) -> str:
    """A time to the minute, rounded up: "after 14:33" must not be a minute too early."""
    seconds = -(-seconds // 60) * 60
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def attempt_refusal(attempts: list[list], received: float, per_hour: int | None, per_day: int | None) -> str | None:
    """Why a submission received at ``received`` is over the limits, with when the next one can be graded; else None.

    Sliding windows over the graded submissions' receipt times: with 3 per hour, a
    fourth within an hour of the first waits until that hour has passed.

    >>> noon = 1714564800.0  # 2024-05-01 12:00 UTC
    >>> graded = [["a", noon], ["b", noon + 600], ["c", noon + 1200]]
    >>> print(attempt_refusal(graded, noon + 1800, per_hour=3, per_day=None))
    This submission was not graded: you have used all 3 graded attempts allowed per hour for this assignment. \
Your next attempt can be graded if you submit after 2024-05-01 13:00 UTC.
    >>> print(attempt_refusal(graded, noon + 3601, per_hour=3, per_day=None))
    None
    """
    for limit, window, label in ((per_hour, 3600.0, "hour"), (per_day, 86400.0, "24 hours")):
        if limit is None:
            continue
        recent = sorted(t for _, t in attempts if received - window < t <= received)
        if len(recent) >= limit:
            next_at = recent[-limit] + window
            return (
                f"This submission was not graded: you have used all {limit} graded attempts allowed per {label} "
                f"for this assignment. Your next attempt can be graded if you submit after {_when(next_at)}."
            )
    return None


class Queue:
    """The service's state for one course: ``<course>/service/queue/<assignment>/<student>.json``.

    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> queue = Queue(tmp.name)
    >>> for minute in (0, 5):  # two submissions; the newer one wins
    ...     name = f"alice+ps1_parameters+2024-05-01 12:0{minute}:00 UTC"
    ...     _ = queue.add(Submission(name, "alice", "ps1_parameters", received=minute * 60.0))
    >>> [state] = queue.next_batch(2)
    >>> state.in_flight.name, state.history[-1]["outcome"]
    ('alice+ps1_parameters+2024-05-01 12:05:00 UTC', 'superseded')
    >>> queue.done(state, "graded; feedback released")
    >>> queue.load("ps1_parameters", "alice").in_flight, tmp.cleanup()
    (None, None)
    """

    def __init__(self, root: str | Path) -> None:
        self.folder = Path(root) / "service" / "queue"

    def path(self, assignment: str, student: str) -> Path:
        return self.folder / assignment / f"{student}.json"

    def load(self, assignment: str, student: str) -> StudentState:
        try:
            return StudentState.from_json(json.loads(self.path(assignment, student).read_text()))
        except FileNotFoundError:
            return StudentState(student, assignment)

    def save(self, state: StudentState) -> None:
        _write_atomically(self.path(state.assignment, state.student), state.to_json())

    def states(self) -> list[StudentState]:
        return [
            StudentState.from_json(json.loads(p.read_text()))
            for p in sorted(self.folder.glob("*/*.json"))
            if not p.name.startswith(".")
        ]

    def add(self, sub: Submission, keep_on_time: bool = True, now: float | None = None) -> bool:
        """Take in a submission (once); the newest wins. True if it was new."""
        state = self.load(sub.assignment, sub.student)
        if sub.name in state.seen:
            return False
        state.seen.append(sub.name)
        newer = [p for p in state.pending if p.received > sub.received]
        if newer:  # arrived out of order: an even newer one is already waiting
            state.history = (state.history + [{"name": sub.name, "outcome": "superseded"}])[-HISTORY:]
            self.save(state)
            return True
        on_time = [p for p in state.pending if not p.late]
        keep = on_time[-1:] if keep_on_time and sub.late and on_time else []
        for dropped in state.pending:
            if dropped not in keep:
                state.history.append({"name": dropped.name, "outcome": "superseded"})
        state.history = state.history[-HISTORY:]
        state.pending = [*keep, sub]
        if state.waiting_since is None:
            state.waiting_since = time.time() if now is None else now
        self.save(state)
        return True

    def recover(self) -> list[StudentState]:
        """At start: what was being graded when the service stopped goes back to the front, to be graded again."""
        recovered = []
        for state in self.states():
            if state.in_flight is not None:
                if state.in_flight.name not in [p.name for p in state.pending]:
                    state.pending.insert(0, state.in_flight)
                state.in_flight = None
                if state.waiting_since is None:
                    state.waiting_since = state.pending[0].received
                self.save(state)
                recovered.append(state)
        return recovered

    def next_batch(self, size: int) -> list[StudentState]:
        """Up to ``size`` students with work waiting, the longest-waiting first; their first submission in flight."""
        waiting = [s for s in self.states() if s.pending and s.in_flight is None]
        waiting.sort(key=lambda s: (s.waiting_since or 0.0, s.student, s.assignment))
        batch = waiting[:size]
        for state in batch:
            state.in_flight = state.pending.pop(0)
            self.save(state)
        return batch

    def count_attempt(self, state: StudentState) -> None:
        """Record the in-flight submission as a graded attempt (once, even when it is graded again)."""
        sub = state.in_flight
        if sub is not None and sub.name not in [a[0] for a in state.attempts]:
            state.attempts.append([sub.name, sub.received])
            state.attempts = state.attempts[-500:]
            self.save(state)

    def failed(self, state: StudentState, why: str) -> int:
        """A failed grading of the in-flight submission: how many times it has failed now.

        It stays in flight: the caller retries it (:meth:`retry`) or reports it (:meth:`done`).
        """
        name = state.in_flight.name
        state.failures[name] = state.failures.get(name, 0) + 1
        state.history = (state.history + [{"name": name, "outcome": f"grading failed: {why}"}])[-HISTORY:]
        self.save(state)
        return state.failures[name]

    def retry(self, state: StudentState) -> None:
        """Back to the front of the student's queue, to be graded once more."""
        state.pending.insert(0, state.in_flight)
        state.in_flight = None
        self.save(state)

    def done(self, state: StudentState, outcome: str, now: float | None = None) -> None:
        """The in-flight submission's answer is released: it leaves the queue."""
        name = state.in_flight.name if state.in_flight else "?"
        state.history = (state.history + [{"name": name, "outcome": outcome}])[-HISTORY:]
        state.failures.pop(name, None)
        state.in_flight = None
        state.waiting_since = (time.time() if now is None else now) if state.pending else None
        self.save(state)
