"""Process helpers shared by grading jobs started cold (:mod:`.jobs`) and warm (:mod:`.warm`).

A job's process must not outlive the process that started it, and a job stopped for its time limit must take every
process it started with it. In a module of their own, :mod:`.jobs` and :mod:`.warm` both use them and neither
imports the other for them.
"""

from __future__ import annotations

import os
import signal

__all__ = ["kill_process_tree"]


def kill_process_tree(pid: int) -> None:
    """Kill a job's process (a session leader), its process group and every process it started (kernels run in
    sessions of their own).

    A job that has ended already is no error (Linux numbers processes below 4194304, so none is 4194305):

    >>> kill_process_tree(4194305)
    """
    try:
        import psutil

        children = psutil.Process(pid).children(recursive=True)
    except Exception:
        children = []
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child in children:
        try:
            child.kill()
        except Exception:
            pass


def _die_with_parent() -> None:
    """In the child: SIGKILL when the process that started it dies (a Dask worker killed mid-grade)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        pass
