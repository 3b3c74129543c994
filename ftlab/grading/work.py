"""A submission in flight through the grading service, and how many times a failed grading is tried.

:class:`Work` is what the service (:mod:`.service`: queues, attempt limits, scheduling) hands its grader
(:mod:`.service_grader`: nbgrader in the sandbox, feedback, release). In a module of its own, the grader does not
import the service for it, and the service imports the grader only to start it.
"""

from __future__ import annotations

import dataclasses
import time

from . import stages
from .queue import StudentState, Submission
from .service_settings import AssignmentRules

__all__ = ["MAX_TRIES", "Work"]

MAX_TRIES = 2  # a failed grading is tried once more, then reported


@dataclasses.dataclass
class Work:
    """A submission in flight, with its student's queue state, its assignment's rules and its timeline.

    >>> sub = Submission("alice+ps1_parameters+2024-05-01 12:00:00 UTC", "alice", "ps1_parameters", received=100.0)
    >>> work = Work(StudentState("alice", "ps1_parameters"), AssignmentRules(), sub, marks=[("submitted", 100.0)])
    >>> work.mark("intake")  # the stage "intake" ends now
    >>> [label for label, _ in work.marks]
    ['submitted', 'intake']
    """

    state: StudentState
    rules: AssignmentRules
    sub: Submission  # the state's in-flight submission when it was taken
    marks: stages.Marks = dataclasses.field(default_factory=list)  # (stage that ended, when): :mod:`.stages`

    def mark(self, label: str) -> None:
        self.marks.append((label, time.time()))
