"""Where jobs run: threads on this machine, or a Dask cluster's workers -- one interface for both.

A runner takes the jobs and a callback, hands each job's :class:`~.jobs.JobResult`
to the callback as it arrives (in the caller's thread), and returns ``None`` or why
it stopped early. Results collected until then stand.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Protocol

from .jobs import Job, JobResult, run_job
from .protocol import GradingError

__all__ = ["Runner", "LocalRunner", "DaskRunner", "Collect"]

Collect = Callable[[Job, JobResult | None], None]  # None: the job was never run (the cluster went away)


class Runner(Protocol):
    """Runs jobs and hands each one's result to ``collect``; returns None, or why it stopped early.

    >>> def grade(runner: Runner, jobs: list[Job]) -> str | None:
    ...     return runner.run(jobs, lambda job, result: print(job.student, result.rc))
    >>> print(grade(LocalRunner(jobs=2), []))
    None
    """

    def run(self, jobs: list[Job], collect: Collect) -> str | None: ...

    def close(self) -> None: ...


@dataclasses.dataclass
class LocalRunner:
    """``jobs`` submissions at a time, each in its own nbgrader process and sandbox (``warm``: :mod:`.warm`).

    >>> LocalRunner(jobs=2, warm=True)
    LocalRunner(jobs=2, warm=True)
    >>> LocalRunner(jobs=0)
    Traceback (most recent call last):
    ...
    ValueError: jobs must be a positive integer, got 0
    """

    jobs: int = 1
    warm: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 1:
            raise ValueError(f"jobs must be a positive integer, got {self.jobs!r}")

    def run(self, jobs: list[Job], collect: Collect) -> str | None:
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            futures = {pool.submit(run_job, job, None, self.warm): job for job in jobs}
            for future in as_completed(futures):
                try:
                    result = future.result()
                except Exception as exc:  # the driver could not even start nbgrader
                    result = JobResult.failed(f"the grading job failed: {exc!r}")
                collect(futures[future], result)
        return None

    def close(self) -> None:
        """Nothing to release: each run's threads end with it."""


def _shared(files: dict[str, bytes]) -> dict[str, bytes]:
    """A task that returns what every job shares: unlike scattered data, Dask recomputes it if a worker dies."""
    return files


@dataclasses.dataclass
class DaskRunner:
    """Each job a task on a ``dask.distributed`` cluster; a worker killed mid-grade costs a re-run elsewhere.

    A result is collected once. The scheduler gone for ``grace`` seconds stops the run.
    One client serves every run until :meth:`close`: the grading service runs one small
    job set per submission, often several at once from its threads, and a connection per
    submission would cost each student a handshake with the scheduler (a client is
    thread-safe). A client that lost its scheduler is replaced at the next run.
    Nothing connects before :meth:`run`:

    >>> DaskRunner("tcp://grader:8786", grace=60)
    DaskRunner(address='tcp://grader:8786', grace=60, connect_timeout=20.0)
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"FTLAB_SCHEDULER_GRACE": "120"}):  # the default grace
    ...     DaskRunner("tcp://grader:8786").grace
    120.0
    """

    address: str
    grace: float = dataclasses.field(default_factory=lambda: float(os.environ.get("FTLAB_SCHEDULER_GRACE", "30")))
    connect_timeout: float = dataclasses.field(
        default_factory=lambda: float(os.environ.get("FTLAB_SCHEDULER_TIMEOUT", "20"))
    )
    _client: Any = dataclasses.field(default=None, init=False, repr=False)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, init=False, repr=False)

    def _connect(self):
        try:
            from distributed import Client
        except ImportError:
            raise GradingError("--scheduler needs dask.distributed: pip install 'ftlab[cluster]'") from None
        try:
            return Client(self.address, timeout=self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise GradingError(f"cannot reach the Dask scheduler at {self.address}: {exc}") from None

    def client(self):
        """The runner's client, connected at the first run (or again, when the last one lost its scheduler)."""
        with self._lock:
            if self._client is not None and self._client.status not in ("running", "connecting"):
                _close_quietly(self._client)
                self._client = None
            if self._client is None:
                self._client = self._connect()
            return self._client

    def run(self, jobs: list[Job], collect: Collect) -> str | None:
        return self._run(self.client(), jobs, collect)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                _close_quietly(self._client)
                self._client = None

    def _run(self, client, jobs: list[Job], collect: Collect) -> str | None:
        shared = {}  # the files every job shares go to the cluster once
        for job in jobs:
            if id(job.common) not in shared:
                shared[id(job.common)] = client.submit(_shared, job.common, pure=False)
        futures = {
            client.submit(
                run_job, dataclasses.replace(job, common={}), shared[id(job.common)], pure=False, retries=1
            ): job
            for job in jobs
        }
        remaining = set(futures)
        lost_since = None
        while remaining:
            connected = client.status == "running"
            for future in [f for f in remaining if f.status in ("finished", "error", "cancelled")]:
                job = futures[future]
                if future.status == "cancelled" and not connected:
                    continue  # cancelled because the scheduler went away: not done
                remaining.discard(future)
                if future.status == "cancelled":  # its inputs were lost for good
                    collect(job, None)
                    continue
                try:
                    result = future.result()
                except Exception as exc:  # the job failed on every worker it ran on (KilledWorker, ...)
                    result = JobResult.failed(f"failed on the Dask cluster: {exc!r}")
                collect(job, result)
            if connected:
                lost_since = None
            else:
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since >= self.grace:
                    return f"the Dask scheduler at {self.address} went away"
            time.sleep(0.5)
        return None


def _close_quietly(client) -> None:
    try:
        client.close(timeout=5)
    except Exception:  # the scheduler is gone already
        pass
