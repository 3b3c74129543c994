"""Test cells run in the grader's own interpreter; the student's names are proxies into their kernel.

A :class:`GraderSession` holds the grader's namespace for one notebook. The
instructor's setup cells run in it (and, separately, in the student's kernel), so
``torch``, ``ftlab``, data sets, expected values and comparisons in a test cell are
the grader's own, untouched by anything the student did. When a test cell reads a
name the student's answer cells define, the session fetches it from the student's
kernel: a function becomes a :class:`StudentFunction` (calling it runs the student's
code in their kernel with the test's inputs and brings back the result), a value
comes back through :mod:`ftlab.grading.codec`, and a torch module the setup cell
made (the model the student trains) is loaded, as state, into the grader's own copy.

Which names are the student's is read from the instructor's source notebook: every
name bound at the top level of a solution cell, plus every torch module created by a
setup cell and used in a solution cell.
"""

from __future__ import annotations

import ast
import contextlib
import io
import traceback
import warnings
from collections.abc import Callable
from typing import Any

from torch import nn

from . import guards
from .codec import ModuleState, apply_module_state
from .protocol import CELL_TIMEOUT, KERNEL_DIED, Reply, Request

__all__ = [
    "GraderSession",
    "StudentFunction",
    "StudentError",
    "KernelTimeout",
    "KernelDied",
    "bound_names",
    "loaded_names",
]


class StudentError(Exception):
    r"""The student's code raised while a check called it (its traceback is in the cell output).

    >>> def kernel(request, modules):  # a student's function that divides by zero
    ...     if request.op == "get":
    ...         return Reply(callable=True)
    ...     return Reply(error=("ZeroDivisionError", "division by zero", ['  File "<cell 3>", line 2, in mean']))
    >>> session = GraderSession(["def mean(xs): ..."], [], kernel)
    >>> [error] = session.run_test("mean([])", "check_mean")
    >>> print("\n".join(error["traceback"]))
    Traceback (most recent call last):
      test cell, line 1
      in the student's code:
      File "<cell 3>", line 2, in mean
    StudentError: mean raised ZeroDivisionError: division by zero
    >>> session.close()
    """


class KernelTimeout(Exception):
    """The student's code did not return within the cell's time.

    The link raises it; the test cell's output names it as nbgrader's cell timeout:

    >>> def kernel(request, modules):
    ...     raise KernelTimeout("the notebook's code did not return within 30 s")
    >>> session = GraderSession(["model = ..."], [], kernel)
    >>> [error] = session.run_test("model", "check_model")
    >>> error["ename"], error["evalue"]
    ('CellTimeoutError', "the notebook's code did not return within 30 s")
    >>> session.close()
    """


class KernelDied(Exception):
    """The student's kernel died while a check called into it.

    >>> def kernel(request, modules):
    ...     raise KernelDied("the kernel died while a check called into it")
    >>> session = GraderSession(["model = ..."], [], kernel)
    >>> [error] = session.run_test("model", "check_model")
    >>> error["ename"]
    'DeadKernelError'
    >>> session.close()
    """


# A request goes to the kernel and its decoded reply comes back: set by the executor.
Transport = Callable[[Request, list[nn.Module]], Reply]


def bound_names(source: str) -> set[str]:
    r"""Names a cell binds at its top level (assignments, defs, classes, imports, loop targets).

    >>> sorted(bound_names("import torch.nn as nn\ndef head(d): ...\nfor epoch in range(3): loss = [x for x in ()]"))
    ['epoch', 'head', 'loss', 'nn']
    >>> bound_names("def broken(:")
    set()
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        if isinstance(node, ast.Lambda | ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def loaded_names(source: str) -> set[str]:
    """Names a cell reads, anywhere in it: those a test cell may need from the student's kernel.

    >>> sorted(loaded_names("expect_equal(count_params(model), 12)"))
    ['count_params', 'expect_equal', 'model']
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


class StudentFunction:
    """A function defined in the student's notebook: calling it runs it there, on copies of the arguments.

    >>> session = GraderSession([], [], lambda request, modules: Reply(value=2 * request.args[0]))
    >>> double = StudentFunction(session, "double")
    >>> double, double(21)
    (<function double from the student's notebook>, 42)
    >>> session.close()
    """

    def __init__(self, session: GraderSession, name: str):
        self._session, self.__name__ = session, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._session.call(self.__name__, args, kwargs)

    def __repr__(self) -> str:
        return f"<function {self.__name__} from the student's notebook>"


class GraderSession:
    r"""The grader's namespace for one notebook and the link to the student's kernel.

    Here the student's kernel is a function that answers requests (the executor's is :class:`~.link.KernelLink`):

    >>> def kernel(request, modules):
    ...     if request.op == "get":  # what is `count_params` in the notebook? a function
    ...         return Reply(callable=True)
    ...     return Reply(value=10)  # count_params(model): the student's answer
    >>> session = GraderSession(["def count_params(m): ..."], ["import torch\nmodel = torch.nn.Linear(3, 3)"], kernel)
    >>> session.run_setup("import torch\nmodel = torch.nn.Linear(3, 3)")  # the instructor's setup, in the grader
    >>> [error] = session.run_test("assert count_params(model) == 12, count_params(model)", "check_count")
    >>> error["ename"], error["evalue"]
    ('AssertionError', '10')
    >>> session.close()
    """

    def __init__(self, solution_sources: list[str], setup_sources: list[str], transport: Transport):
        self.transport = transport
        self.namespace: dict[str, Any] = {"__name__": "__grader__"}
        self.student_names = set().union(*(bound_names(s) for s in solution_sources)) if solution_sources else set()
        self._used_by_solutions = (
            set().union(*(loaded_names(s) for s in solution_sources)) if solution_sources else set()
        )
        self._setup_names = set().union(*(bound_names(s) for s in setup_sources)) if setup_sources else set()
        self.deadline_left: Callable[[], float] = lambda: 120.0
        self._collect = guards._collecting()
        self._collect.__enter__()

    def close(self) -> None:
        self._collect.__exit__(None, None, None)

    # ------------------------------------------------------------------ the link to the kernel

    def _request(self, request: Request, modules: list[nn.Module]) -> Reply:
        reply = self.transport(request, modules)
        if reply.error is not None:
            ename, evalue, lines = reply.error
            if reply.internal:
                raise StudentError(f"the notebook could not answer the check ({ename}: {evalue})", lines)
            raise StudentError(f"{request.name} raised {ename}: {evalue}", lines)
        return reply

    def call(self, name: str, args: tuple, kwargs: dict) -> Any:
        modules = [a for a in (*args, *kwargs.values()) if isinstance(a, nn.Module)]
        request = Request("call", name, args=args, kwargs=kwargs, forbid=guards.active_names())
        reply = self._request(request, modules)
        if reply.missing:
            raise NameError(f"name {name!r} is not defined in the notebook")
        for module, state in zip(modules, reply.modules, strict=False):
            apply_module_state(module, state, what=f"a model passed to {name}")
        return reply.value

    def fetch(self, name: str) -> None:
        """Bind ``name`` in the grader's namespace to the student's current value (or unbind it)."""
        reply = self._request(Request("get", name), [])
        own = self.namespace.get(name)
        if reply.missing:
            self.namespace.pop(name, None)
        elif reply.callable:
            self.namespace[name] = StudentFunction(self, name)
        elif isinstance(reply.value, ModuleState) and isinstance(own, nn.Module):
            apply_module_state(own, reply.value, what=f"{name!r}")
        else:
            self.namespace[name] = reply.value

    def _students(self) -> set[str]:
        """The names a test cell takes from the student's kernel."""
        trained = {
            n for n in self._setup_names & self._used_by_solutions if isinstance(self.namespace.get(n), nn.Module)
        }
        return self.student_names | trained

    # ------------------------------------------------------------------ cells

    def run_setup(self, source: str) -> None:
        """An instructor's setup cell, in the grader's namespace (its output is not shown)."""
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                exec(compile(source, "<setup>", "exec"), self.namespace)

    def run_test(self, source: str, label: str, student_output: list[dict] | None = None) -> list[dict]:
        """Run one test cell here; return its notebook outputs (streams, a result, or an error)."""
        outputs: list[dict] = []
        out, err = io.StringIO(), io.StringIO()
        filename = f"<test {label}>"
        try:
            tree = ast.parse(source, filename)
            for name in sorted((loaded_names(source) & self._students()) - bound_names(source)):
                self.fetch(name)
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                exec(compile(tree, filename, "exec"), self.namespace)
                value = eval(compile(ast.Expression(last.value), filename, "eval"), self.namespace) if last else None
            error = None
        except BaseException as exc:  # noqa: BLE001 -- a failed check is an output, not a crash of the grader
            if isinstance(exc, KeyboardInterrupt):
                raise
            value, error = None, exc
        for name, buf in (("stdout", out), ("stderr", err)):
            if buf.getvalue():
                outputs.append({"output_type": "stream", "name": name, "text": buf.getvalue()})
        if student_output:
            outputs.extend(student_output)
        if error is not None:
            outputs.append(_error_output(error, filename))
        elif value is not None:
            outputs.append({"output_type": "execute_result", "data": {"text/plain": repr(value)}, "metadata": {}})
        return outputs


def _error_output(exc: BaseException, filename: str) -> dict:
    """The error as a notebook output: line numbers of the test cell, never its (hidden) source lines."""
    lines = ["Traceback (most recent call last):"]
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == filename:
            lines.append(f"  test cell, line {frame.lineno}")
    ename = type(exc).__name__
    evalue = str(exc.args[0]) if isinstance(exc, StudentError) else str(exc)
    if isinstance(exc, StudentError) and len(exc.args) > 1:
        lines.append("  in the student's code:")
        lines.extend(exc.args[1])
    if isinstance(exc, KernelTimeout):
        ename = CELL_TIMEOUT
    elif isinstance(exc, KernelDied):
        ename = KERNEL_DIED
    lines.append(f"{ename}: {evalue}" if evalue else ename)
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": lines}
