"""What the instructor sees of grading on submit: ``reports/index.html`` and each assignment's report, kept fresh.

``ftlab serve`` writes ``reports/index.html`` in the course root whenever its queue
changes: what waits, what is being graded, what failed, and a link to each graded-on-submit
assignment's class report. The report itself (``ftlab report``, :mod:`.report`:
``reports/<assignment>.html`` and ``.png``) is rewritten after feedback is released --
once the service has nothing left to grade, or at most every ``every`` seconds while it
is busy -- in a thread of its own, so that no submission waits for a figure to be drawn.

The course root is the instructor's course server's folder (the hub's ``ftlab``
service, deploy/jupyterhub_config.py), so the page is at
``/services/ftlab/files/reports/index.html`` on the hub, and in the file browser there;
students cannot open that service. Every name on the page is escaped: a student names
their own submission folder.
"""

from __future__ import annotations

import html
import os
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["ServicePage", "render_index"]

REFRESH_EVERY = 120.0  # seconds between a busy service's report refreshes of one assignment


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` whole: the instructor's browser never reads half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_index(root: Path, assignments: list[str], status: dict, failures: list[str]) -> str:
    """The index page: the queue now, the last failures, and one row per assignment with its report's link.

    >>> import tempfile
    >>> status = {"updated": "2024-05-01T12:00:00+00:00", "waiting": ["alice+ps1_parameters+2024-05-01 12:00:00 UTC"]}
    >>> with tempfile.TemporaryDirectory() as root:
    ...     page = render_index(Path(root), ["ps1_parameters"], status, ["<bob>+ps1_parameters+...: grading failed"])
    >>> "<td>ps1_parameters</td><td>not yet written</td><td>–</td><td>1</td><td>0</td>" in page
    True
    >>> "<li><code>&lt;bob&gt;+ps1_parameters+...: grading failed</code></li>" in page  # a student's name, escaped
    True
    """
    esc = html.escape
    rows = []
    for name in assignments:
        report = root / "reports" / f"{name}.html"
        link = f'<a href="{esc(name)}.html">{esc(name)}.html</a>' if report.is_file() else "not yet written"
        updated = _when(report.stat().st_mtime) if report.is_file() else "–"
        waiting = sum(1 for n in status.get("waiting", []) if n.split("+")[1:2] == [name])
        grading = sum(1 for n in status.get("in_flight", []) if n.split("+")[1:2] == [name])
        cells = [esc(name), link, updated, str(waiting), str(grading)]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    failed = "".join(f"<li><code>{esc(line)}</code></li>" for line in failures) or "<li>none</li>"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>ftlab: graded on submit</title>'
        "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
        "td,th{padding:.2rem .6rem;border-bottom:1px solid #e4e6ee;text-align:left}</style></head><body>"
        "<h1>Graded on submit</h1>"
        f"<p>Updated {esc(status.get('updated', '–'))} by <code>ftlab serve</code>: "
        f"{len(status.get('waiting', []))} waiting, {len(status.get('in_flight', []))} being graded. "
        "Class reports are rewritten after feedback is released (<code>ftlab report ASSIGNMENT</code> "
        "writes the same page by hand).</p>"
        "<table><tr><th>assignment</th><th>class report</th><th>report written</th><th>waiting</th>"
        f"<th>being graded</th></tr>{''.join(rows)}</table>"
        "<h2>Last failures</h2><p>(<code>service/failures.log</code>: the student was told; grade these by hand)</p>"
        f"<ul>{failed}</ul>"
        "</body></html>\n"
    )


class ServicePage:
    """Keeps ``reports/index.html`` and the graded assignments' reports up to date (reports in a worker thread).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as root:
    ...     page = ServicePage(Path(root))
    ...     page.write_index(["ps1_parameters"], {"updated": "2024-05-01T12:00:00+00:00", "waiting": []})
    ...     page.released("ps1_parameters")  # its report is due: refresh() writes it, in a thread of its own
    ...     sorted(p.name for p in Path(root, "reports").iterdir())
    ['index.html']
    """

    def __init__(self, root: Path, log: Callable[[str], None] = print, every: float = REFRESH_EVERY) -> None:
        self.root, self.log, self.every = Path(root), log, every
        self._due: set[str] = set()  # assignments with feedback released since their report was written
        self._written: dict[str, float] = {}  # assignment -> monotonic time its report was last written
        self._thread: threading.Thread | None = None
        self._errors: set[str] = set()

    def released(self, assignment: str) -> None:
        """Feedback of ``assignment`` was released: its report is out of date."""
        self._due.add(assignment)

    def refresh(self, idle: bool) -> None:
        """Start writing the reports that are due (all of them when ``idle``); at most one writer at a time."""
        if self._thread is not None and self._thread.is_alive():
            return
        now = time.monotonic()
        ready = sorted(a for a in self._due if idle or now - self._written.get(a, -self.every) >= self.every)
        if not ready:
            return
        self._due -= set(ready)
        for assignment in ready:
            self._written[assignment] = now
        self._thread = threading.Thread(target=self._write_reports, args=(ready,), name="ftlab-report", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Until the reports being written are written (``ftlab serve --once`` ends after them)."""
        if self._thread is not None:
            self._thread.join()

    def _write_reports(self, assignments: list[str]) -> None:
        from . import report

        for assignment in assignments:
            try:
                report.write(assignment, self.root)
            except Exception as exc:  # the index says "not yet written"; the log says why, once per kind
                key = f"{assignment}: {type(exc).__name__}"
                if key not in self._errors:
                    self._errors.add(key)
                    self.log(f"could not write reports/{assignment}.html: {exc!r}")

    def write_index(self, assignments: list[str], status: dict) -> None:
        """``reports/index.html`` for the assignments graded on submit, from the queue's status now."""
        try:
            lines = (self.root / "service" / "failures.log").read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        text = render_index(self.root, assignments, status, lines[-10:][::-1])
        _write_atomically(self.root / "reports" / "index.html", text)
