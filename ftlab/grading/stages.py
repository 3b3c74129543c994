"""Where a submission's grading time goes: named marks on one clock, turned into seconds per stage.

A mark ``(label, t)`` says that the stage ``label`` ended at ``t`` (``time.time()``, so
marks made by the service, the grading job's process and the executor inside it line
up). The time between two marks belongs to the later one's label: a list of marks is a
timeline from the first mark, and :func:`durations` sums it per label -- a label marked
more than once (``cells``: one mark per cell) gets the sum of its gaps.

Inside a grading job's nbgrader process the executor marks its stages too
(:func:`mark`): they go to the file :func:`record_to` names -- the job's private
course folder, which the sandboxed kernel does not see -- and :func:`read` brings them
back to the process that started the job. Outside a job (plain ``nbgrader autograde``)
nothing is recorded.
"""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["Marks", "mark", "record_to", "read", "durations", "format_durations"]

Marks = list[tuple[str, float]]

_file: Path | None = None


def record_to(path: str | Path | None) -> None:
    """Record this process's marks in ``path`` (None: record nothing).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     record_to(f"{tmp}/marks")
    ...     mark("kernel start")
    ...     record_to(None)
    ...     [label for label, _ in read(f"{tmp}/marks")]
    ['kernel start']
    """
    global _file
    _file = None if path is None else Path(path)


def mark(label: str) -> None:
    """The stage ``label`` ends now (recorded only where :func:`record_to` named a file).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     record_to(f"{tmp}/marks")
    ...     for label in ("nbgrader set-up", "cells", "cells"):
    ...         mark(label)
    ...     record_to(None)
    ...     mark("checks")  # nothing records it
    ...     [label for label, _ in read(f"{tmp}/marks")]
    ['nbgrader set-up', 'cells', 'cells']
    """
    if _file is not None:
        with open(_file, "a") as fh:
            fh.write(f"{label}\t{time.time()!r}\n")


def read(path: str | Path) -> Marks:
    """The marks a job's process recorded; a line that is not ``label<TAB>seconds`` is skipped.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = Path(tmp, "marks").write_text("intake\\t100.0\\ngarbage\\ncells\\t102.5\\n")
    ...     read(Path(tmp, "marks"))
    [('intake', 100.0), ('cells', 102.5)]
    >>> read("/no/such/file")
    []
    """
    try:
        text = Path(path).read_text()
    except OSError:
        return []
    marks = []
    for line in text.splitlines():
        label, _, value = line.partition("\t")
        try:
            marks.append((label, float(value)))
        except ValueError:
            continue
    return marks


def durations(marks: Marks) -> dict[str, float]:
    """Seconds per stage, in the order the stages first ended; the first mark is the origin.

    >>> durations([("submitted", 100.0), ("intake", 100.5), ("cells", 102.0), ("checks", 103.0), ("cells", 104.0)])
    {'intake': 0.5, 'cells': 2.5, 'checks': 1.0}
    """
    ordered = sorted(marks, key=lambda m: m[1])
    out: dict[str, float] = {}
    for (_, before), (label, at) in zip(ordered, ordered[1:], strict=False):
        out[label] = out.get(label, 0.0) + (at - before)
    return out


def format_durations(seconds: dict[str, float]) -> str:
    """``intake 0.1, kernel start 2.3, ...`` (one decimal).

    >>> format_durations({"intake": 0.12, "kernel start": 2.345, "cells": 7.0})
    'intake 0.1, kernel start 2.3, cells 7.0'
    """
    return ", ".join(f"{label} {value:.1f}" for label, value in seconds.items())
