"""nbgrader's execute step, made safe: the student's cells run in a sandboxed kernel, the checks in the grader.

``nbgrader_config.py`` puts :class:`SandboxedExecute` first in
``Autograde.autograde_preprocessors``, so plain ``nbgrader autograde`` and
``ftlab grade`` grade the same way:

* the student's kernel runs in a :class:`~ftlab.grading.sandbox.Sandbox` (no network,
  read-only environment, no course files, limits), started by :class:`SandboxKernelManager`;
* setup cells (locked, from the instructor) run in the kernel *and*, from the instructor's
  source notebook, in the grader before the first cell;
  answer cells and anything the student added run in the kernel only;
* test cells -- with their hidden tests -- run only in the grader
  (:class:`~ftlab.grading.session.GraderSession`), so nothing the student's code does
  to its own interpreter (patched ``torch``, ``assert`` helpers, input transformers,
  ``showtraceback``) can change a check, and the hidden tests never reach the sandbox;
* whether the student did their own work is decided here too, from their code, before
  it runs (:mod:`~ftlab.grading.policy`): a check whose rules the code breaks is not
  run and scores 0, with the reason in its output;
* the link to the kernel (:mod:`~ftlab.grading.link`) and the messages on it
  (:mod:`~ftlab.grading.protocol`) bound what a hostile kernel can send;
* :class:`RobustExecute` (the base) keeps one bad cell from costing the whole notebook:
  dead or unresponsive kernels are replaced, a notebook has a time budget.
"""

from __future__ import annotations

import math
import time
from math import inf
from pathlib import Path

import nbformat
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import run_sync
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Bool, Dict, Integer, List, Unicode

from . import policy, stages
from . import sandbox as sb
from .link import KernelLink, SandboxKernelManager
from .protocol import CELL_TIMEOUT, KERNEL_DIED, NOTEBOOK_TIMEOUT, POLICY
from .session import GraderSession

__all__ = ["RobustExecute", "SandboxedExecute", "SandboxKernelManager"]


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

    A misspelt override stops grading before any kernel starts:

    >>> execute = RobustExecute(notebook_timeout=900, overrides={"finetune": {"time_limit": 600}})
    >>> execute.preprocess(nbformat.v4.new_notebook(), {"nbgrader": {"notebook": "finetune"}})
    Traceback (most recent call last):
    ...
    ValueError: RobustExecute.overrides['finetune'] has unknown keys ['time_limit']
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
        self.fresh_kernel()
        return cell, resources

    async def _async_fresh_kernel(self) -> None:
        await self._async_cleanup_kernel()  # also drops self.km and self.kc
        self.km = self.create_kernel_manager()
        await self.async_start_new_kernel()
        await self.async_start_new_kernel_client()

    def fresh_kernel(self) -> None:
        run_sync(self._async_fresh_kernel)()


# --------------------------------------------------------------------------- the sandboxed kernel


def _is_test(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def _is_setup(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and bool(meta.get("locked")) and not meta.get("grade") and not meta.get("solution")


def _guard_names(sources: list[str]) -> list[str]:
    """Dotted torch/ftlab names in the instructor's cells: functions that a check may forbid."""
    import ast

    found = set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                if text.startswith(("torch.", "ftlab.")) and all(p.isidentifier() for p in text.split(".")):
                    found.add(text)
    return sorted(found)


class SandboxedExecute(RobustExecute):
    """Student cells in a sandboxed kernel, test cells (hidden tests included) in the grader.

    Configured as nbgrader's other preprocessors are (``nbgrader_config.py``, or
    ``ftlab grade ... --SandboxedExecute.memory_mb=4096``); constructing one starts nothing:

    >>> from traitlets.config import Config
    >>> c = Config()
    >>> c.SandboxedExecute.memory_mb, c.Execute.timeout = 4096, 60
    >>> execute = SandboxedExecute(config=c)
    >>> execute.memory_mb, execute.timeout, execute.kernel_manager_class.__name__, execute.shutdown_kernel
    (4096, 60, 'SandboxKernelManager', 'immediate')
    """

    sandbox = Bool(True, help="Run the student's kernel in a bubblewrap sandbox (False: no isolation).").tag(
        config=True
    )
    memory_mb = Integer(sb.Limits.memory_mb, help="Sandbox memory limit (MiB).").tag(config=True)
    processes = Integer(sb.Limits.processes, help="Sandbox process/thread limit.").tag(config=True)
    file_size_mb = Integer(sb.Limits.file_size_mb, help="Largest file the sandbox may write (MiB).").tag(config=True)
    disk_mb = Integer(sb.Limits.disk_mb, help="Size of the sandbox's home and /tmp (MiB each).").tag(config=True)
    extra_ro_binds = List(Unicode(), help="More host folders the kernel may read (read-only).").tag(config=True)
    max_output_kb = Integer(1024, help="Output kept per cell (KiB); the rest is dropped.").tag(config=True)
    max_reply_mb = Integer(
        128,
        help="Largest value the grader accepts from the student's kernel (MiB): the largest model a check takes "
        "back (MiniLM-L6, ps8) is 91 MB; a hostile reply at the cap costs the grader about 3x this in memory.",
    ).tag(config=True)
    policy = Bool(True, help="Score 0 the checks whose rules the student's code breaks (ftlab.grading.policy).").tag(
        config=True
    )
    source_notebook = Unicode("", help="The instructor's source notebook (default: from the course directory).").tag(
        config=True
    )

    _session: GraderSession | None = None
    _ran: list[str] = []  # the notebook's code cells that ran to the end in the kernel, in order
    _assessment: policy.Assessment | None = None
    _output_left, _output_dropped = 1 << 62, False  # set per cell in preprocess_cell

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxKernelManager)
        # A graded kernel's state is thrown away: a graceful shutdown (shutdown request, wait for the kernel
        # to exit) only waited -- 1.5 to 2 s a submission, measured. It is killed, with its whole sandbox.
        kwargs.setdefault("shutdown_kernel", "immediate")
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ set-up

    def _source(self, resources: dict) -> nbformat.NotebookNode:
        if self.source_notebook:
            return nbformat.read(self.source_notebook, as_version=4)
        from nbgrader.coursedir import CourseDirectory

        info = resources["nbgrader"]
        coursedir = CourseDirectory(config=self.config)
        path = Path(coursedir.format_path(coursedir.source_directory, ".", info["assignment"]))
        return nbformat.read(path / f"{info['notebook']}.ipynb", as_version=4)

    def preprocess(self, nb, resources=None, km=None):
        stages.mark("nbgrader set-up")
        resources = resources or {}
        source = self._source(resources)
        self._by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in source.cells}
        solutions = [c.source for c in source.cells if c.metadata.get("nbgrader", {}).get("solution")]
        setups = [c.source for c in source.cells if _is_setup(c)]
        self._ran = []
        tests = [c.source for c in source.cells if _is_test(c)]
        self._guards = _guard_names(setups + tests)
        self._sandbox = None
        if self.sandbox:
            problem = sb.check_available()
            if problem:
                raise sb.SandboxUnavailable(problem)
            limits = sb.Limits(self.memory_mb, self.processes, self.file_size_mb, disk_mb=self.disk_mb)
            self._sandbox = sb.Sandbox(limits, extra_ro_binds=tuple(self.extra_ro_binds))
        self._submission = (resources.get("metadata") or {}).get("path")
        # Did the student do their own work? Decided here, from their code, before any of it runs.
        self._assessment = policy.assess(nb, source) if self.policy else None
        link = KernelLink(self, self.max_reply_mb << 20, self._keep_student_output, self._async_fresh_kernel)
        self._session = GraderSession(
            solutions, setups, lambda request, modules: link.transport(request, modules, self._session.deadline_left())
        )
        try:
            for setup in setups:  # the instructor's setup, in the grader, whatever the submission did to its copy
                self._session.run_setup(setup)
            stages.mark("grader set-up")
            done = super().preprocess(nb, resources, km)
            stages.mark("kernel stop")
            return done
        finally:
            self._session.close()
            self._session = None

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        km.sandbox, km.guards, km.submission_dir = self._sandbox, self._guards, self._submission
        return km

    async def _async_fresh_kernel(self) -> None:
        """A replaced kernel gets the notebook's state back: the cells that ran to the end run again, in order.

        The cell that hung or killed the kernel is not among them (it never ended), nor is a check's call
        that did; answers further down are graded on their own merits, with the setup's imports and data
        and the earlier answers they use. Outputs of the replay are dropped; it counts against the budget.
        """
        await super()._async_fresh_kernel()
        for source in self._ran:
            left = min(self.timeout or 600, self._deadline - time.monotonic())
            if left <= 0:
                return
            try:
                await self.kc.execute_interactive(
                    source, silent=True, store_history=False, allow_stdin=False, timeout=left,
                    output_hook=lambda msg: None,
                )  # fmt: skip
            except Exception as exc:  # a replay that does not end: the later cells report what is missing
                self.log.warning("Replaying the notebook in the fresh kernel stopped: %s", exc)
                return

    async def async_start_new_kernel_client(self):
        kc = await super().async_start_new_kernel_client()
        sb.seal(self.km.channel_dir)  # the sockets exist: the sandbox may not add files any more
        stages.mark("kernel start")
        return kc

    # nbclient's setup_kernel starts the first kernel through this sync wrapper, which it binds to its own
    # coroutine: without this line the first kernel's channel folder was never sealed (a replaced kernel's was).
    start_new_kernel_client = run_sync(async_start_new_kernel_client)

    # ------------------------------------------------------------------ cells

    def preprocess_cell(self, cell, resources, index):
        self._output_left, self._output_dropped = self.max_output_kb * 1024, False
        if cell.cell_type == "code" and cell.source.strip() and time.monotonic() < self._deadline:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            own = self._by_id.get(grade_id) if grade_id else None
            # Only the instructor's test cells run in the grader, and only as the instructor wrote them: a
            # student's cell that claims to be a test (edited metadata) runs in the sandbox like any other.
            if own is not None and _is_test(own):
                reason = self._assessment.reason(grade_id) if self._assessment else None
                if reason:
                    cell.outputs = [_error(POLICY, reason)]
                    cell.execution_count = None
                else:
                    self._run_test(cell, own.source, grade_id)
                stages.mark("checks")
                return cell, resources
        cell, resources = super().preprocess_cell(cell, resources, index)
        ended = not any(
            o.get("ename") in (KERNEL_DIED, CELL_TIMEOUT, NOTEBOOK_TIMEOUT) for o in cell.get("outputs", [])
        )
        if cell.cell_type == "code" and cell.source.strip() and ended:
            self._ran.append(cell.source)
        stages.mark("cells")
        return cell, resources

    def _run_test(self, cell, source: str, label: str) -> None:
        timeout = self._get_timeout(cell) or 600
        start = time.monotonic()
        self._student_output: list[dict] = []
        self._session.deadline_left = lambda: max(1.0, timeout - (time.monotonic() - start))
        outputs = self._session.run_test(source, label, self._student_output)
        cell.outputs = [nbformat.from_dict(o) for o in outputs]
        cell.execution_count = None

    def _keep_student_output(self, name: str, text: str) -> None:
        kept = sum(len(o["text"]) for o in self._student_output)
        room = self.max_output_kb * 1024 - kept
        if room > 0:
            self._student_output.append({"output_type": "stream", "name": name, "text": text[:room]})

    # ------------------------------------------------------------------ output of the student's own cells

    def output(self, outs, msg, display_id, cell_index):
        """Keep at most ``max_output_kb`` of output per cell: a flood must not fill the grader's memory."""
        if msg["msg_type"] != "error":
            content = msg.get("content", {})
            self._output_left -= len(str(content.get("text", ""))) + len(str(content.get("data", "")))
            if self._output_left < 0:
                if not self._output_dropped:
                    self._output_dropped = True
                    note = f"\n[output past {self.max_output_kb} KiB dropped by the grader]\n"
                    outs.append(nbformat.v4.new_output("stream", name="stdout", text=note))
                return None
        return super().output(outs, msg, display_id, cell_index)
