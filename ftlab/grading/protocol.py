"""The words grading is spoken in: the grader ↔ kernel messages, error names, statuses.

One module, so that the executor, the session, the kernel and the driver agree by
import rather than by repeating string literals.

A check that calls into the student's kernel sends a :class:`Request` (written by the
grader with ``torch.save`` into a folder the kernel may only read) and gets a
:class:`Reply`: the kernel writes the encoded value (:mod:`.codec`: JSON + safetensors,
never a pickle) into the one **reply file** the sandbox may write -- a file the grader
made, bound into the sandbox on its own, so the kernel cannot replace it with a link
or fill the disk beyond the sandbox's file-size limit -- and announces it with a small
display message of type :data:`MIME`. The grader reads at most ``max_bytes`` of it
(:func:`read_reply`): a forged or huge reply costs bounded memory and fails that check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .safefile import read_regular_file

__all__ = [
    "MIME",
    "KERNEL_DIED",
    "CELL_TIMEOUT",
    "NOTEBOOK_TIMEOUT",
    "POLICY",
    "GRADING_ERROR",
    "STATUS_OF_ERROR",
    "Request",
    "Reply",
    "GradingError",
    "read_reply",
    "MAX_MESSAGE_BYTES",
]

MIME = "application/x-ftlab-grading-reply"

# error names written into a graded cell's output (nbgrader scores a cell with an error 0)
KERNEL_DIED = "DeadKernelError"  # the kernel died in this cell
CELL_TIMEOUT = "CellTimeoutError"  # the cell did not finish in its time
NOTEBOOK_TIMEOUT = "NotebookTimeoutError"  # not run: the notebook's time was used up
POLICY = "PolicyViolation"  # not run: the student's code breaks the exercise's rules (.policy)
GRADING_ERROR = "GradingError"  # the grader could not read the notebook's answer

# the report's status for a notebook whose first special error is one of these
STATUS_OF_ERROR = {KERNEL_DIED: "kernel-died", CELL_TIMEOUT: "timeout", NOTEBOOK_TIMEOUT: "timeout", POLICY: "policy"}

# Largest single message the grader accepts from a kernel (ZMQ_MAXMSGSIZE on its sockets): a bigger one
# drops the connection instead of filling the grader's memory. Outputs are capped far lower per cell.
MAX_MESSAGE_BYTES = 64 << 20


class GradingError(Exception):
    """The grader itself cannot go on (not a course root, no such assignment, no sandbox, ...).

    Not a student's failure: the commands report it and exit with status 2.

    >>> try:
    ...     raise GradingError("no assignment 'ps9': run `nbgrader generate_assignment` first")
    ... except GradingError as exc:
    ...     print(f"ftlab grade: error: {exc}")
    ftlab grade: error: no assignment 'ps9': run `nbgrader generate_assignment` first
    """


@dataclass
class Request:
    """A check's call into the student's kernel: ``get`` a name, or ``call`` a function the student wrote.

    >>> Request("call", "count_params", args=(3,)).to_dict()  # what the kernel reads: plain data
    {'op': 'call', 'name': 'count_params', 'reply': '', 'args': (3,), 'kwargs': {}, 'forbid': []}
    >>> Request("exec", "count_params")
    Traceback (most recent call last):
    ...
    ValueError: op must be 'get' or 'call', got 'exec'
    """

    op: str  # "get" | "call"
    name: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    forbid: list[str] = field(default_factory=list)  # runtime guards, a second layer: no grade depends on them
    reply_path: str = ""  # where the kernel writes its reply (set by the link)

    def __post_init__(self) -> None:
        if self.op not in ("get", "call"):
            raise ValueError(f"op must be 'get' or 'call', got {self.op!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "name": self.name,
            "reply": self.reply_path,
            "args": self.args,
            "kwargs": self.kwargs,
            "forbid": list(self.forbid),
        }


@dataclass
class Reply:
    """What came back, decoded: a value, or that the name is missing / a function, or the student's error.

    :meth:`from_decoded` takes what :func:`~.codec.decode` made of the kernel's bytes and
    bounds what it keeps of an error (the student's process wrote it):

    >>> Reply.from_decoded({"value": 12})
    Reply(value=12, missing=False, callable=False, error=None, internal=False, modules=[])
    >>> reply = Reply.from_decoded({"value": None, "error": ("ZeroDivisionError", "x" * 5000, ["line"] * 100)})
    >>> reply.error[0], len(reply.error[1]), len(reply.error[2])
    ('ZeroDivisionError', 2000, 40)
    """

    value: Any = None
    missing: bool = False
    callable: bool = False
    error: tuple[str, str, list[str]] | None = None  # (exception name, message, traceback lines)
    internal: bool = False  # the error is the kernel's, not the student's function's
    modules: list = field(default_factory=list)  # states of modules passed to a call, after it

    @classmethod
    def from_decoded(cls, doc: dict[str, Any]) -> Reply:
        error = doc.get("error")
        if error is not None:
            if not (isinstance(error, list | tuple) and len(error) == 3):
                raise ValueError("malformed error in the reply")
            name, message, lines = error
            error = (str(name)[:200], str(message)[:2000], [str(x)[:500] for x in list(lines or [])[:40]])
        return cls(
            value=doc.get("value"),
            missing=doc.get("missing") is True,
            callable=doc.get("callable") is True,
            error=error,
            internal=doc.get("internal") is True,
            modules=list(doc.get("modules") or []),
        )


def read_reply(path: str, max_bytes: int) -> bytes:
    """The reply file's bytes, at most ``max_bytes`` (over that: :class:`ValueError`), never through a link.

    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> with open(f"{tmp.name}/reply.bin", "wb") as fh:
    ...     _ = fh.write(b"x" * 100)
    >>> len(read_reply(f"{tmp.name}/reply.bin", 1000))
    100
    >>> read_reply(f"{tmp.name}/reply.bin", 10)
    Traceback (most recent call last):
    ...
    ValueError: reply.bin is 100 bytes, over the limit of 10
    >>> tmp.cleanup()
    """
    folder, name = os.path.split(path)
    fd = os.open(folder or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        return read_regular_file(name, max_bytes, dir_fd=fd)
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
