"""Test-session settings shared by every test file."""

from __future__ import annotations

import os

# One OpenMP thread in every process of the run (the workers, their kernels, nbgrader, Dask, the hub), unless the
# caller chose: `make test` keeps both cores busy with three workers, and a torch process that spreads its ops over
# two threads on a saturated machine spends the extra CPU waiting for the other (the unit files' training took
# 39 CPU-seconds with two threads and 26 with one, on an idle machine). Set before any test module imports torch.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The longest files first: `make test` runs files on three workers (pytest-xdist, --dist loadfile), handing each
# worker the next file when it frees up (pytest_xdist_make_scheduler below), so the long poles must start at once,
# not last. The class is two files (tests/classroom.py), built at the same time.
LONGEST_FIRST = [
    "test_nbgrader.py",  # half a class through nbgrader and `ftlab grade`, hostile students (minutes)
    "test_nbgrader_training.py",  # the other half: the assignments that train (minutes)
    "test_hub.py",  # a real JupyterHub: the class, graded on submit in a browser (minutes)
    "test_lessons.py",  # the lessons headless, two at a time, then their site pages (minutes)
    "test_exercises.py",  # nbgrader validate on every notebook
    "test_cluster.py",
    "test_service.py",  # before check_report: about twice as long (4 min against 2 in a full run)
    "test_check_report.py",
    "test_grading.py",
    "test_cli.py",
]


def pytest_collection_modifyitems(session, config, items):
    """Run the long files first; the order of tests within a file is kept."""

    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items[:] = [item for _, item in sorted(enumerate(items), key=lambda pair: (rank(pair[1]), pair[0]))]


def pytest_xdist_make_scheduler(config, log):
    """`make test` (--dist loadfile): bind a file to a worker only when the worker has nothing else left to run.

    xdist's loadfile queues a worker's next file while its current one still has two tests to go; when those are
    slow, that file waits behind them while another worker sits idle, and the run ends with one file alone. Bound at
    the last moment, the files go out in LONGEST_FIRST order to whichever worker frees up first.
    """
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class WhenIdle(LoadFileScheduling):
        def _reschedule(self, node) -> None:
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
                return
            # A worker holds back its last test until it knows the next one (pytest tears a module's fixtures down
            # by looking at `nextitem`), so one pending test already means an idle worker; waiting for none would
            # hang the run.
            if self._pending_of(self.assigned_work[node]) <= 1:
                self._assign_work_unit(node)

    return WhenIdle(config, log)
