"""Autograde a whole class with nbgrader, one student at a time, and report on each.

    python scripts/autograde_class.py ps1_parameters            # every submitted student
    python scripts/autograde_class.py ps5_finetune --fast       # FTLAB_FAST=1 in the kernels
    python scripts/autograde_class.py ps1_parameters --student alice --student bob

Run it in the course root (the repository root, or wherever ``nbgrader_config.py``,
``solutions/``, ``submitted/`` and ``gradebook.db`` live) with the venv's ``bin``
first on ``PATH``. It writes ``reports/<assignment>.csv`` -- one row per student
and notebook: ``status``, ``score``, ``max_score`` and ``detail`` -- and prints the
same table. Exit status 0 means every student was processed, whatever their
notebooks did; 2 means the driver itself could not run (no such assignment).

Why not plain ``nbgrader autograde``? It grades everyone too, but a notebook it
cannot grade (not valid JSON; a kernel that never answers) only shows up as a
traceback in a long log, the student's gradebook entries stay empty, and nothing
bounds the total time. Here each student runs in its own ``nbgrader`` process
under a wall-clock guard; a notebook nbgrader could not grade gets 0 on every
graded cell in the gradebook (what nbgrader itself does for a missing notebook)
and a status saying why. Inside nbgrader, :class:`RobustExecute` (enabled in
``nbgrader_config.py``) keeps one bad cell from costing the whole notebook:

========================  ==========================================================
submission                outcome
========================  ==========================================================
infinite loop             cell interrupted after ``Execute.timeout`` s; status ``timeout``
loop ignoring Ctrl-C      kernel restarted after the timeout; status ``timeout``
kernel crash (os._exit)   kernel restarted, later cells run fresh; status ``kernel-died``
slow notebook overall     cells past the per-notebook budget not run (0); ``timeout``
raises on import / error  that cell's error is kept, dependent tests 0; ``errors``
edited test cell          nbgrader restores the instructor's test (checksums); noted
deleted test cell         re-added from the gradebook and graded; noted
not valid JSON            not run, every graded cell 0; status ``invalid-notebook``
nbgrader failed / killed  every graded cell 0; ``autograde-failed`` / ``wall-clock``
========================  ==========================================================
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from math import inf
from pathlib import Path

import nbformat
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import run_sync
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute
from nbgrader.utils import compute_checksum
from traitlets import Dict, Integer

__all__ = ["RobustExecute", "NotebookResult", "autograde_class", "default_wall_clock", "main"]

KERNEL_DIED = "DeadKernelError"
NOTEBOOK_TIMEOUT = "NotebookTimeoutError"
CELL_TIMEOUT = "CellTimeoutError"


def _error(ename: str, evalue: str) -> NotebookNode:
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


class RobustExecute(Execute):
    """nbgrader's ``Execute`` that survives dead and unresponsive kernels and bounds a notebook's time.

    * A kernel that dies (``os._exit``, segfault, out of memory) or ignores the
      timeout interrupt is replaced by a fresh one; the cell gets an error output
      (so a test cell scores 0) and grading goes on with the next cell.
    * ``notebook_timeout`` caps the whole notebook: each cell gets at most what is
      left, and cells after the budget is spent are not run but get an error output
      -- an unrun test cell would otherwise score full marks.
    * ``overrides`` sets ``timeout`` (per cell) and ``notebook_timeout`` per notebook
      name, e.g. ``{"finetune": {"timeout": 600, "notebook_timeout": 900}}``.
    """

    notebook_timeout = Integer(
        600, help="Seconds the whole notebook may run; later cells are not run and score 0."
    ).tag(config=True)
    overrides = Dict({}, help="Per-notebook settings: {notebook name: {'timeout': s, 'notebook_timeout': s}}.").tag(
        config=True
    )

    _deadline = inf

    def preprocess(self, nb, resources=None, km=None):
        name = ((resources or {}).get("nbgrader") or {}).get("notebook", "")
        settings = self.overrides.get(name, {})
        unknown = set(settings) - {"timeout", "notebook_timeout"}
        if unknown:
            raise ValueError(f"RobustExecute.overrides[{name!r}] has unknown keys {sorted(unknown)}")
        if "timeout" in settings:
            self.timeout = int(settings["timeout"])
        budget = settings.get("notebook_timeout", self.notebook_timeout)
        self._deadline = time.monotonic() + budget if budget and budget > 0 else inf
        return super().preprocess(nb, resources, km)

    def _get_timeout(self, cell):
        timeout = super()._get_timeout(cell)
        left = self._deadline - time.monotonic()
        if left == inf:
            return timeout
        return max(1, math.ceil(min(timeout or inf, left)))

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or not cell.source.strip():
            return cell, resources
        if time.monotonic() >= self._deadline:
            cell.outputs = [_error(NOTEBOOK_TIMEOUT, "not run: the notebook used up its grading time")]
            return cell, resources
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            message = "the kernel died in this cell; later cells ran in a fresh kernel without this notebook's state"
            cell.outputs.append(_error(KERNEL_DIED, message))
        except CellTimeoutError:
            message = "the cell did not stop when interrupted; later cells ran in a fresh kernel"
            cell.outputs.append(_error(CELL_TIMEOUT, message))
        self.log.warning("Cell %d: %s; starting a fresh kernel", index, message)
        run_sync(self._async_fresh_kernel)()
        return cell, resources

    async def _async_fresh_kernel(self) -> None:
        await self._async_cleanup_kernel()  # also drops self.km and self.kc
        self.km = self.create_kernel_manager()
        await self.async_start_new_kernel()
        await self.async_start_new_kernel_client()


# --------------------------------------------------------------------------- driver


@dataclass
class NotebookResult:
    student: str
    notebook: str
    status: str = "graded"
    score: float = 0.0
    max_score: float = 0.0
    details: list[str] = field(default_factory=list)

    @property
    def detail(self) -> str:
        return "; ".join(self.details)


_STATUS_OF_ERROR = {KERNEL_DIED: "kernel-died", CELL_TIMEOUT: "timeout", NOTEBOOK_TIMEOUT: "timeout"}


def _label(cell: NotebookNode, index: int) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {index + 1}"


def _check_submission(path: Path) -> str | None:
    """None if ``path`` is a readable, valid notebook, else what is wrong with it."""
    try:
        nbformat.read(path, as_version=4)
    except Exception as exc:  # not JSON, not a notebook, unreadable
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"{type(exc).__name__}: {first[:200]}"
    return None


def _test_cell_notes(submitted: Path, test_cells: list[str]) -> list[str]:
    """Notes on graded (locked) cells the student edited or deleted."""
    nb = nbformat.read(submitted, as_version=4)
    seen = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade_id"):
            seen[meta["grade_id"]] = cell
    notes = []
    for grade_id in test_cells:
        if grade_id not in seen:
            notes.append(f"test cell {grade_id} was deleted; restored and graded")
        elif compute_checksum(seen[grade_id]) != seen[grade_id].metadata["nbgrader"].get("checksum"):
            notes.append(f"test cell {grade_id} was edited; the instructor's version was graded")
    return notes


def _read_outcome(autograded: Path, result: NotebookResult) -> None:
    """Set status/details from the errors recorded in an autograded notebook."""
    nb = nbformat.read(autograded, as_version=4)
    errors = []  # (cell label, ename, evalue), first error of each cell
    special = None
    for i, cell in enumerate(nb.cells):
        found = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if found:
            errors.append((_label(cell, i), found[0].get("ename", ""), str(found[0].get("evalue", ""))))
        for out in found:
            if special is None and out.get("ename") in _STATUS_OF_ERROR:
                special = (_label(cell, i), out["ename"], str(out.get("evalue", "")))
    if special:
        label, ename, evalue = special
        result.status = _STATUS_OF_ERROR[ename]
        result.details.insert(0, f"{ename} in {label}: {evalue or 'no reply before the timeout, interrupted'}")
    elif errors:
        result.status = "errors"
        label, ename, evalue = errors[0]
        what = f"{ename}: {evalue[:120]}" if evalue else ename
        more = f" (and {len(errors) - 1} more cells)" if len(errors) > 1 else ""
        result.details.insert(0, f"{what} in {label}{more}")


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill nbgrader and every kernel it started (kernels run in their own sessions)."""
    try:
        import psutil

        children = psutil.Process(proc.pid).children(recursive=True)
    except Exception:
        children = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child in children:
        try:
            child.kill()
        except Exception:
            pass
    proc.wait()


def _run_nbgrader(args: list[str], cwd: Path, env: dict[str, str], wall_clock: float, log) -> tuple[int | None, str]:
    """Run nbgrader; (returncode, output), returncode None when the wall clock ran out."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=wall_clock)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # a grandchild still holds the pipe
            out = ""
        rc = None
    else:
        rc = proc.returncode
    log.write(out)
    return rc, out


def _zero_notebook(gb, assignment: str, student: str, notebook: str) -> None:
    """0 on every graded cell of a notebook nbgrader could not grade (as nbgrader does for a missing one)."""
    from nbgrader.api import MissingEntry

    try:
        submission = gb.find_submission_notebook(notebook, assignment, student)
    except MissingEntry:  # nbgrader stopped before registering the submission
        gb.update_or_create_student(student)
        gb.update_or_create_submission(assignment, student)
        submission = gb.find_submission_notebook(notebook, assignment, student)
    for grade in submission.grades:
        grade.auto_score = 0
        grade.manual_score = None
        grade.needs_manual_grade = False
    gb.db.commit()


def default_wall_clock(root: Path, notebooks: list[str]) -> float:
    """Seconds per student: each notebook's RobustExecute budget from the course config, plus 120 s."""
    from traitlets.config.loader import PyFileConfigLoader

    try:
        config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    except Exception:
        return 1800.0
    robust = config.get("RobustExecute", {})
    default = robust.get("notebook_timeout", RobustExecute.notebook_timeout.default_value)
    overrides = robust.get("overrides", {})
    return float(sum(overrides.get(nb, {}).get("notebook_timeout", default) + 120 for nb in notebooks))


def autograde_class(
    assignment: str,
    root: str | Path = ".",
    students: list[str] | None = None,
    wall_clock: float | None = None,
    fast: bool | None = None,
    nbgrader_args: list[str] | None = None,
    report: str | Path | None = None,
) -> list[NotebookResult]:
    """Autograde ``assignment`` for each student in ``submitted/``, one nbgrader run each.

    ``wall_clock`` bounds each student's nbgrader run (seconds; default: the
    notebooks' time budgets from ``nbgrader_config.py`` plus 120 s each); ``fast`` sets
    ``FTLAB_FAST`` for the kernels (None: inherit); ``nbgrader_args`` go to every
    ``nbgrader autograde`` call (e.g. ``["--Execute.timeout=30"]``). Writes
    ``report`` (default ``reports/<assignment>.csv``) and returns the rows.
    """
    from nbgrader.api import Gradebook, MissingEntry

    root = Path(root).resolve()
    db_url = f"sqlite:///{root / 'gradebook.db'}"
    with Gradebook(db_url) as gb:
        try:
            source = gb.find_assignment(assignment)
        except MissingEntry:
            raise SystemExit(
                f"no assignment {assignment!r} in {db_url}: run `nbgrader generate_assignment` first"
            ) from None
        # the autograder tests: locked grade cells (written answers are unlocked)
        test_cells = {
            nb.name: sorted(c.name for c in nb.source_cells if c.locked and c.name in {g.name for g in nb.grade_cells})
            for nb in source.notebooks
        }
    notebooks = sorted(test_cells)
    if wall_clock is None:
        wall_clock = default_wall_clock(root, notebooks)

    submitted = root / "submitted"
    found = sorted(p.parent.name for p in submitted.glob(f"*/{assignment}"))
    wanted = [s for s in found if students is None or any(fnmatch.fnmatch(s, pat) for pat in students)]

    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if fast is not None:
        env["FTLAB_FAST"] = "1" if fast else "0"
    reports = root / "reports"
    reports.mkdir(exist_ok=True)
    log_path = reports / f"{assignment}.log"

    results: list[NotebookResult] = []
    with open(log_path, "w") as log:
        for student in wanted:
            sub_dir = submitted / student / assignment
            rows = {name: NotebookResult(student, name) for name in notebooks}
            runnable = []
            for name, row in rows.items():
                path = sub_dir / f"{name}.ipynb"
                if not path.exists():
                    row.status, row.details = "missing", ["no such notebook submitted; nbgrader gives 0"]
                    continue
                problem = _check_submission(path)
                if problem:
                    row.status, row.details = "invalid-notebook", [f"not graded: {problem}"]
                    continue
                row.details = _test_cell_notes(path, test_cells[name])
                runnable.append(name)

            # One nbgrader run for the whole submission when every notebook is readable,
            # else one per readable notebook (nbgrader would drop them all on the bad one).
            batches = [["*"]] if len(runnable) == len(notebooks) else [[n] for n in runnable]
            if not runnable:
                batches = [["*"]]  # still registers the submission (and zeros missing notebooks)
            for batch in batches:
                args = ["autograde", assignment, f"--student={student}", f"--notebook={batch[0]}", "--force"]
                log.write(f"\n===== {student} / {assignment} / {batch[0]} =====\n")
                log.flush()
                rc, _ = _run_nbgrader(args + list(nbgrader_args or []), root, env, wall_clock, log)
                names = runnable if batch == ["*"] else batch
                for name in names:
                    out_nb = root / "autograded" / student / assignment / f"{name}.ipynb"
                    row = rows[name]
                    if rc is None:
                        row.status = "wall-clock"
                        row.details.insert(0, f"nbgrader killed after {wall_clock:.0f} s; every graded cell 0")
                    elif rc != 0 or not out_nb.exists():
                        row.status = "autograde-failed"
                        row.details.insert(0, f"nbgrader exited with {rc}; every graded cell 0 (see {log_path.name})")
                    else:
                        _read_outcome(out_nb, row)
                if rc is None:
                    shutil.rmtree(root / "autograded" / student / assignment, ignore_errors=True)

            with Gradebook(db_url) as gb:
                for name, row in rows.items():
                    try:
                        if row.status in ("missing", "invalid-notebook", "autograde-failed", "wall-clock"):
                            _zero_notebook(gb, assignment, student, name)
                        nb_sub = gb.find_submission_notebook(name, assignment, student)
                        row.score, row.max_score = nb_sub.score, nb_sub.max_score
                    except MissingEntry:
                        row.details.append("no gradebook entry")
            results.extend(rows.values())

    report = Path(report) if report else reports / f"{assignment}.csv"
    with open(report, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["assignment", "student", "notebook", "status", "score", "max_score", "detail"])
        for r in results:
            writer.writerow([assignment, r.student, r.notebook, r.status, r.score, r.max_score, r.detail])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("assignment")
    parser.add_argument("--root", default=".", help="course root (default: current directory)")
    parser.add_argument("--student", action="append", help="student id or glob; repeat for several (default: all)")
    parser.add_argument(
        "--wall-clock", type=float, help="seconds per student (default: the notebook budgets in the config + 120 s)"
    )
    parser.add_argument("--fast", action="store_true", help="grade with FTLAB_FAST=1 (small data, few epochs)")
    parser.add_argument("--report", help="CSV path (default reports/<assignment>.csv)")
    args, extra = parser.parse_known_args(argv)
    try:
        results = autograde_class(
            args.assignment,
            root=args.root,
            students=args.student,
            wall_clock=args.wall_clock,
            fast=True if args.fast else None,
            nbgrader_args=extra,
            report=args.report,
        )
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    width = max([len(r.student) for r in results] + [7])
    print(f"{'student':<{width}}  {'notebook':<14} {'status':<17} {'score':>11}  detail")
    for r in results:
        print(f"{r.student:<{width}}  {r.notebook:<14} {r.status:<17} {r.score:>5g} / {r.max_score:<3g}  {r.detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
