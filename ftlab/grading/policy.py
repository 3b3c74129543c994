"""Did the student do their own work? Decided by the grader, from the code, before anything runs.

An exercise that asks for ``softmax`` must not be passed by calling ``torch.softmax``.
Guards inside the student's kernel (:mod:`.guards`) cannot decide that: the student
owns that process and can undo them. This module reads the code instead -- every
code cell the student wrote or changed, added cells included -- and finds

* **library functions the exercise replaces**: every dotted name the instructor's
  setup and test cells hand to :func:`~ftlab.grading.guards.forbid` (``torch.softmax``,
  ``ftlab.count_parameters``, ...). A use is any attribute, import or ``getattr`` with
  that name (``x.softmax(...)``, ``from torch import softmax``, private variants such
  as ``torch._softmax``), whoever the owner object is;
* **escape hatches** that make names dynamic or reach into the interpreter, so that no
  reading of the code could tell what runs: ``eval``, ``exec``, ``compile``,
  ``__import__``, ``importlib``, computed ``getattr``/``setattr``/``delattr``,
  ``globals``/``vars``/``locals``, dunder attributes such as ``__dict__``,
  ``__globals__``, ``__code__``, ``__builtins__``, ``__subclasses__``, frames, ``gc``,
  ``inspect``, ``ctypes``, ``sys.modules``, ``get_ipython``, ``ftlab.grading``,
  ``pickle``/``marshal``, ``operator.attrgetter``/``methodcaller``, star imports,
  assigning to attributes of imported modules (monkeypatching), cell magics that run
  other code, and imports of modules the grading environment does not have.

Which checks a finding costs (:func:`assess`): an escape hatch costs every check that
forbids anything. A library name costs the checks that forbid it -- except a plain
*call* written directly in the body of a top-level function that none of the checked
functions can reach (``train_gradually`` may call ``ftlab.unfreeze_top`` while
``freeze_bottom``'s check forbids it). A reference that is not a call (an alias, a
default argument, an entry in a list) counts everywhere, because a value can travel.

What it cannot see: code that re-implements the library by copying its source text, or
trains on data that ships in public packages -- visible to a person reading the
notebook, and a matter for academic honesty.

The examples below use a small exercise (``_example()``): a setup cell that imports
torch and lists ``FORBIDDEN = ["torch.softmax"]``, the answer cell ``softmax`` and the
check ``check_softmax``, which calls the answer inside ``forbid(*FORBIDDEN)``; and a
student's copy whose answer is ``return torch.softmax(z, -1)``.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from nbformat.notebooknode import NotebookNode

__all__ = [
    "Finding",
    "Assessment",
    "protected_checks",
    "student_cells",
    "scan",
    "assess",
    "check_notebook",
    "main",
    "build_parser",
    "run_cli",
]

HATCH_CALLS = {
    "eval",
    "exec",
    "compile",
    "__import__",
    "globals",
    "vars",
    "locals",
    "get_ipython",
}
HATCH_MODULES = (
    "importlib",
    "gc",
    "inspect",
    "ctypes",
    "pickle",
    "cPickle",
    "marshal",
    "dill",
    "cloudpickle",
    "runpy",
    "builtins",
    "code",
    "codeop",
    "ftlab.grading",
    "IPython.core",
    "ipykernel",
    "jupyter_client",
    "zmq",
)
HATCH_ATTRIBUTES = {
    "__dict__",
    "__globals__",
    "__code__",
    "__builtins__",
    "__subclasses__",
    "__bases__",
    "__base__",
    "__mro__",
    "__closure__",
    "__func__",
    "__wrapped__",
    "__self__",
    "__getattribute__",
    "__loader__",
    "__spec__",
    "__reduce__",
    "__reduce_ex__",
    "__defaults__",
    "__kwdefaults__",
    "__setattr__",
    "__delattr__",
    "__import__",
    "f_globals",
    "f_locals",
    "f_back",
    "f_builtins",
    "tb_frame",
    "gi_frame",
    "cr_frame",
    "co_code",
    "attrgetter",
    "methodcaller",
    "get_ipython",
    "ops",  # torch.ops: every aten operator under another name
}
SYS_ATTRIBUTES = {"modules", "_getframe", "meta_path", "path_hooks", "path", "settrace", "setprofile", "addaudithook"}
HARMLESS_CELL_MAGICS = {"time", "timeit", "capture"}
HARMLESS_LINE_MAGICS = {"matplotlib", "time", "timeit", "config", "pip", "who", "whos"}


def _example() -> tuple[NotebookNode, NotebookNode]:
    """For the examples: (the instructor's source, a student's copy that calls torch.softmax)."""
    import copy

    import nbformat

    def cell(source: str, **nbgrader) -> NotebookNode:
        return nbformat.v4.new_code_cell(source, metadata={"nbgrader": nbgrader})

    source = nbformat.v4.new_notebook(
        cells=[
            cell('import torch\nFORBIDDEN = ["torch.softmax"]', grade_id="setup", locked=True),
            cell("def softmax(z):\n    raise NotImplementedError()", grade_id="softmax", solution=True),
            cell(
                "with forbid(*FORBIDDEN):\n    got = softmax(torch.zeros(2))\n"
                'expect_close(got, torch.full((2,), 0.5), what="softmax(zeros)")',
                grade_id="check_softmax", grade=True, locked=True, points=2,
            ),
        ]
    )  # fmt: skip
    nb = copy.deepcopy(source)
    nb.cells[1].source = "def softmax(z):\n    return torch.softmax(z, -1)"
    return source, nb


@dataclass(frozen=True)
class Finding:
    """One thing in the student's code that a check may not accept.

    >>> Finding("softmax", 2, "softmax", hatch=False).message()
    'softmax, line 2: uses softmax, which this exercise asks you to write yourself'
    >>> Finding("cell 4", 1, "eval()", hatch=True).message().split(" -- ")[0]
    'cell 4, line 1: eval()'
    """

    cell: str  # grade id of the cell, or "cell N"
    line: int
    name: str  # the forbidden name's last part, or the escape hatch
    hatch: bool  # True: an escape hatch (costs every protected check)
    exempt_in: str | None = None  # a top-level function whose plain call this is (see module docstring)

    def message(self) -> str:
        if self.hatch:
            return (
                f"{self.cell}, line {self.line}: {self.name} -- code that changes names at run time or reaches into "
                "the interpreter cannot be checked, so the checks of your own work score 0"
            )
        return f"{self.cell}, line {self.line}: uses {self.name}, which this exercise asks you to write yourself"


@dataclass
class Assessment:
    """The policy's verdict on one notebook: which checks score 0, and why.

    >>> assessment = Assessment(costs={"check_softmax": [Finding("softmax", 2, "softmax", hatch=False)]})
    >>> assessment.reason("check_softmax")
    'softmax, line 2: uses softmax, which this exercise asks you to write yourself'
    >>> print(assessment.reason("check_count"))  # this check scores as its test says
    None
    """

    findings: list[Finding] = field(default_factory=list)
    costs: dict[str, list[Finding]] = field(default_factory=dict)  # test grade id -> findings that cost it

    def reason(self, grade_id: str) -> str | None:
        found = self.costs.get(grade_id)
        if not found:
            return None
        lines = [f.message() for f in found[:5]]
        more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
        return "; ".join(lines) + more


# --------------------------------------------------------------------------- the instructor's side


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _is_test(cell) -> bool:
    meta = _meta(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def _is_setup(cell) -> bool:
    meta = _meta(cell)
    return cell.cell_type == "code" and bool(meta.get("locked")) and not meta.get("grade") and not meta.get("solution")


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(_python_only(source)[0])
    except SyntaxError:
        return None


def _string_lists(tree: ast.Module) -> dict[str, list[str]]:
    """Top-level ``NAME = ["a.b", ...]`` of the setup cells: the lists that ``forbid(*NAME)`` spreads."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, SyntaxError):
                continue
            if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
                found[node.targets[0].id] = list(value)
    return found


def _forbid_args(call: ast.Call, lists: dict[str, list[str]]) -> list[str]:
    names = []
    for arg in call.args:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            names.append(arg.value)
        elif isinstance(arg, ast.Starred) and isinstance(arg.value, ast.Name):
            names.extend(lists.get(arg.value.id, []))
    return names


def _call_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        func = node.func
        return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    return None


def protected_checks(source: NotebookNode) -> dict[str, list[tuple[set[str], list[str]]]]:
    """Per test cell (grade id): the ``forbid`` blocks it has, as (student names called inside, forbidden names).

    ``forbid_in_notebook(...)`` in a setup cell protects every name in every test cell.

    >>> source, _ = _example()
    >>> [(test, sorted(called), names) for test, blocks in protected_checks(source).items() for called, names in blocks]
    [('check_softmax', ['got', 'softmax', 'torch'], ['torch.softmax'])]
    """
    lists: dict[str, list[str]] = {}
    notebook_wide: list[str] = []
    for cell in source.cells:
        if _is_setup(cell) and (tree := _parse(cell.source)) is not None:
            lists.update(_string_lists(tree))
            for node in ast.walk(tree):
                if _call_name(node) == "forbid_in_notebook":
                    notebook_wide.extend(_forbid_args(node, lists))
    protected: dict[str, list[tuple[set[str], list[str]]]] = {}
    for cell in source.cells:
        if not _is_test(cell) or (tree := _parse(cell.source)) is None:
            continue
        local = dict(lists)
        local.update(_string_lists(tree))
        blocks = []
        for node in ast.walk(tree):
            if isinstance(node, ast.With):
                for item in node.items:
                    if _call_name(item.context_expr) == "forbid":
                        called = {n.id for stmt in node.body for n in ast.walk(stmt) if isinstance(n, ast.Name)}
                        blocks.append((called, _forbid_args(item.context_expr, local)))
        if notebook_wide:
            blocks.append(({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}, notebook_wide))
        if blocks:
            protected[_meta(cell)["grade_id"]] = blocks
    return protected


def student_cells(nb: NotebookNode, source: NotebookNode) -> list[tuple[str, str]]:
    r"""(label, source) of every code cell of ``nb`` that the student wrote or changed.

    The instructor's locked cells (setup and tests, put back by nbgrader) are not the
    student's; neither is an unlocked cell the student left exactly as released.

    >>> import nbformat
    >>> source, nb = _example()
    >>> nb.cells.append(nbformat.v4.new_code_cell("print(softmax(torch.ones(3)))"))
    >>> student_cells(nb, source)
    [('softmax', 'def softmax(z):\n    return torch.softmax(z, -1)'), ('cell 4', 'print(softmax(torch.ones(3)))')]
    """
    locked = {_meta(c).get("grade_id") for c in source.cells if _meta(c).get("locked")}
    given = {c.source.strip() for c in source.cells if c.cell_type == "code" and not _meta(c).get("solution")}
    cells = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        grade_id = _meta(cell).get("grade_id")
        if grade_id in locked and grade_id is not None:
            continue
        if cell.source.strip() in given:
            continue
        cells.append((grade_id or f"cell {i + 1}", cell.source))
    return cells


# --------------------------------------------------------------------------- reading the student's code


def _python_only(source: str) -> tuple[str, list[tuple[int, str]]]:
    """The cell as Python (IPython magics blanked) and the magics that are escape hatches, with their lines."""
    lines = source.splitlines()
    hatches: list[tuple[int, str]] = []
    if lines and lines[0].lstrip().startswith("%%"):
        magic = lines[0].lstrip()[2:].split()[0] if lines[0].lstrip()[2:].split() else ""
        if magic not in HARMLESS_CELL_MAGICS:
            hatches.append((1, f"the cell magic %%{magic}"))
            return "", hatches
        lines[0] = ""
    out = []
    for number, line in enumerate(lines, 1):
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")) or re.match(r"^\w+\s*=\s*[%!]", stripped):
            word = re.sub(r"^\w+\s*=\s*", "", stripped)
            magic = word[1:].split()[0] if word.startswith("%") and word[1:].split() else ""
            if word.startswith("%") and magic not in HARMLESS_LINE_MAGICS:
                hatches.append((number, f"the magic %{magic}"))
            out.append(line[: len(line) - len(stripped)] + "pass")
        elif stripped.endswith("?") and not stripped.startswith("#"):
            out.append(line[: len(line) - len(stripped)] + "pass")
        else:
            out.append(line)
    return "\n".join(out), hatches


def _normal(name: str) -> str:
    return name.replace("_", "").lower()


def _leaf_matches(attr: str, leaves: set[str]) -> str | None:
    """The forbidden leaf ``attr`` stands for: itself, or a variant -- ``_softmax``, ``softmax_``, ``Softmax``,
    ``LogSoftmax``, ``CrossEntropyLoss``, ``_log_softmax_backward_data``."""
    core = _normal(attr)
    for leaf in sorted(leaves):
        if core == _normal(leaf) or core.startswith(_normal(leaf)):
            return leaf
    return None


def _module_installed(name: str) -> bool:
    top = name.split(".")[0]
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _is_submodule(module: str, name: str) -> bool:
    try:
        return importlib.util.find_spec(f"{module}.{name}") is not None
    except (ImportError, ValueError, AttributeError):
        return False


class _Scanner(ast.NodeVisitor):
    """Walks one cell; records findings, and which names are imported modules."""

    def __init__(
        self,
        label: str,
        leaves: set[str],
        methods: set[str],
        modules: dict[str, str],
        imported: set[str],
        libraries: set[str] = frozenset(),
    ):
        self.label = label
        self.libraries = libraries  # top-level packages of the forbidden names
        self.leaves = leaves  # last parts of every forbidden name
        self.methods = methods  # last parts of forbidden methods (torch.Tensor.softmax): any object's attribute
        self.modules = modules  # name -> module, for names bound to modules (shared across cells)
        self.imported = imported  # names bound by any import (modules, functions, classes): patching them is a hatch
        self.findings: list[Finding] = []
        self._callees: set[int] = set()
        self._bases: set[int] = set()  # Name nodes that are the object of an attribute
        self._function: str | None = None  # the top-level def whose own body this is
        self._depth = 0  # nesting of defs, lambdas and classes

    def hatch(self, node: ast.AST, what: str) -> None:
        self.findings.append(Finding(self.label, getattr(node, "lineno", 0), what, True))

    def use(self, node: ast.AST, leaf: str) -> None:
        direct = id(node) in self._callees and self._function is not None and self._depth == 1
        line = getattr(node, "lineno", 0)
        self.findings.append(Finding(self.label, line, leaf, False, self._function if direct else None))

    def _root(self, node: ast.AST) -> ast.AST:
        while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
            node = node.func if isinstance(node, ast.Call) else node.value
        return node

    def _in_module(self, node: ast.AST) -> bool:
        root = self._root(node)
        return isinstance(root, ast.Name) and root.id in self.modules

    def _in_guarded_library(self, node: ast.AST) -> bool:
        """Under a library that holds a forbidden name (torch, ftlab): its private names are other routes to it."""
        root = self._root(node)
        module = self.modules.get(root.id, "") if isinstance(root, ast.Name) else ""
        return module.split(".")[0] in self.libraries

    # scopes: decorators and defaults run where the function is defined, its body later
    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for outer in [*node.decorator_list, *node.args.defaults, *[d for d in node.args.kw_defaults if d]]:
            self.visit(outer)
        self._function, saved = (node.name if self._depth == 0 else self._function), self._function
        self._depth += 1
        for stmt in node.body:
            self.visit(stmt)
        self._depth -= 1
        self._function = saved

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    # calls and names
    def visit_Call(self, node: ast.Call) -> None:
        self._callees.add(id(node.func))
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name in HATCH_CALLS:
            self.hatch(node, f"{name}()")
        if name in ("getattr", "setattr", "delattr") and node.args:
            attr = node.args[1] if len(node.args) > 1 else None
            if not (isinstance(attr, ast.Constant) and isinstance(attr.value, str)):
                self.hatch(node, f"{name}() with a computed name")
            else:
                self._attribute(node, node.args[0], attr.value)
            if name != "getattr" and self._in_module(node.args[0]):
                self.hatch(node, f"{name}() on an imported module (monkeypatching)")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in ("__builtins__", "__import__", "__loader__", "__spec__"):
            self.hatch(node, node.id)
        elif isinstance(node.ctx, ast.Load) and node.id in HATCH_CALLS and id(node) not in self._callees:
            self.hatch(node, node.id)
        elif isinstance(node.ctx, ast.Load) and node.id in self.modules and id(node) not in self._bases:
            self.hatch(node, f"the module {node.id} handed around as a value")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._bases.add(id(node.value))
        self._attribute(node, node.value, node.attr)
        self.generic_visit(node)

    def _attribute(self, node: ast.AST, owner: ast.AST, attr: str) -> None:
        in_module = self._in_module(owner)
        if attr in HATCH_ATTRIBUTES:
            self.hatch(node, f".{attr}")
        root = self._root(owner)
        if isinstance(root, ast.Name) and self.modules.get(root.id) == "sys" and attr in SYS_ATTRIBUTES:
            self.hatch(node, f"sys.{attr}")
        if in_module and attr.startswith("_") and not attr.startswith("__") and self._in_guarded_library(owner):
            self.hatch(node, f"the private name .{attr} of a library")
        leaf = _leaf_matches(attr, self.leaves if in_module else self.methods)
        if leaf:
            self.use(node, leaf)

    # assignments: patching what was imported
    def _store(self, target: ast.AST) -> None:
        if isinstance(target, ast.Attribute | ast.Subscript):
            root = self._root(target)
            if isinstance(root, ast.Name) and root.id in self.imported:
                self.hatch(target, f"assigning to an attribute of {root.id} (monkeypatching)")
        elif isinstance(target, ast.Tuple | ast.List | ast.Starred):
            for elt in getattr(target, "elts", [getattr(target, "value", None)]):
                if elt is not None:
                    self._store(elt)
        elif isinstance(target, ast.Name):
            self.modules.pop(target.id, None)  # rebound: no longer the module

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._store(target)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._store(node.target)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._store(node.target)
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._store(target)
        self.generic_visit(node)

    # imports
    def _import(self, node: ast.AST, module: str) -> None:
        if any(module == h or module.startswith(h + ".") for h in HATCH_MODULES):
            self.hatch(node, f"import {module}")
        elif module == "IPython" or (module.startswith("IPython.") and not module.startswith("IPython.display")):
            self.hatch(node, f"import {module}")
        elif not _module_installed(module):
            self.hatch(node, f"import {module} (a module the grading environment does not have)")
        for part in module.split(".")[1:]:
            leaf = _leaf_matches(part, self.leaves)
            if leaf:
                self.use(node, leaf)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._import(node, alias.name)
            bound = alias.asname or alias.name.split(".")[0]
            self.modules[bound] = alias.name if alias.asname else bound
            self.imported.add(bound)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            self.hatch(node, "a relative import")
            return
        self._import(node, module)
        for alias in node.names:
            bound = alias.asname or alias.name
            if alias.name == "*":
                self.hatch(node, f"from {module} import *")
                continue
            if (
                alias.name in HATCH_CALLS
                or alias.name in HATCH_ATTRIBUTES
                or (module == "sys" and alias.name in SYS_ATTRIBUTES)
            ):
                self.hatch(node, f"from {module} import {alias.name}")
            leaf = _leaf_matches(alias.name, self.leaves)
            if leaf:
                self.use(node, leaf)
            self.imported.add(bound)
            if _is_submodule(module, alias.name):
                self.modules[bound] = f"{module}.{alias.name}"


def _setup_imports(source: NotebookNode) -> tuple[dict[str, str], set[str]]:
    """What the instructor's setup cells import: (names bound to modules, every imported name)."""
    scanner = _Scanner("setup", set(), set(), {}, set())
    for cell in source.cells:
        if _is_setup(cell) and (tree := _parse(cell.source)) is not None:
            for node in tree.body:
                if isinstance(node, ast.Import | ast.ImportFrom):
                    scanner.visit(node)
    return scanner.modules, scanner.imported


def scan(
    cells: Iterable[tuple[str, str]],
    forbidden: Iterable[str],
    modules: dict[str, str] | None = None,
    imported: Iterable[str] = (),
) -> list[Finding]:
    r"""Findings in the student's cells, in order; ``forbidden`` are dotted names.

    ``modules`` and ``imported``: what the setup cells import (``torch``, ``nn``, ``ftlab``, ...).

    >>> cells = [("softmax", "def softmax(z):\n    return z.softmax(-1)"), ("cell 4", "print(eval('1 + 1'))")]
    >>> for finding in scan(cells, ["torch.softmax", "torch.Tensor.softmax"], modules={"torch": "torch"}):
    ...     print(finding)
    Finding(cell='softmax', line=2, name='softmax', hatch=False, exempt_in='softmax')
    Finding(cell='cell 4', line=1, name='eval()', hatch=True, exempt_in=None)
    """
    forbidden = list(forbidden)
    leaves = {name.rsplit(".", 1)[-1] for name in forbidden}
    methods = {name.rsplit(".", 1)[-1] for name in forbidden if _is_method(name)}
    modules = dict(modules or {})
    imported = set(imported) | set(modules)
    findings: list[Finding] = []
    for label, source in cells:
        python, magic_hatches = _python_only(source)
        findings.extend(Finding(label, line, what, True) for line, what in magic_hatches)
        try:
            tree = ast.parse(python)
        except SyntaxError:
            continue  # it cannot run either: its checks fail on their own
        libraries = {name.split(".")[0] for name in forbidden}
        scanner = _Scanner(label, leaves, methods, modules, imported, libraries)
        scanner.visit(tree)
        findings.extend(scanner.findings)
    return findings


def _is_method(name: str) -> bool:
    """``torch.Tensor.softmax`` or ``ftlab.layers.LayerGroup.num_parameters``: a method, reachable from any object."""
    parts = name.split(".")
    return len(parts) >= 3 and parts[-2][:1].isupper()


# --------------------------------------------------------------------------- what a finding costs


def _reachable(cells: list[tuple[str, str]], roots: set[str]) -> set[str]:
    """Top-level functions the ``roots`` can reach by name, through the statements that bind the names they use."""
    binders: dict[str, list[ast.stmt]] = {}
    for _, source in cells:
        tree = _parse(source)
        for stmt in tree.body if tree else []:
            names = _bound_by(stmt)
            for name in names:
                binders.setdefault(name, []).append(stmt)
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for stmt in binders.get(name, []):
            todo.extend(n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and n.id not in seen)
    return seen


def _bound_by(stmt: ast.stmt) -> set[str]:
    names: set[str] = set()
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        names.add(stmt.name)
        for node in ast.walk(stmt):  # `global x` inside the function rebinds a top-level name
            if isinstance(node, ast.Global):
                names.update(node.names)
        return names
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Global):
            names.update(node.names)
    return names


def _referenced_only_by_calls(cells: list[tuple[str, str]], name: str) -> bool:
    """True when the student's code uses ``name`` only to call it (it never hands the function itself around)."""
    for _, source in cells:
        tree = _parse(source)
        if tree is None:
            continue
        callees = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Load):
                if id(node) not in callees:
                    return False
    return True


def assess(nb: NotebookNode, source: NotebookNode, protected: dict | None = None) -> Assessment:
    """Which of ``nb``'s checks the policy sets to 0, from the student's code and the instructor's ``source``.

    ``protected`` (default: :func:`protected_checks` of ``source``) maps a test's grade id
    to its ``forbid`` blocks.

    >>> source, nb = _example()
    >>> assess(nb, source).reason("check_softmax")
    'softmax, line 2: uses softmax, which this exercise asks you to write yourself'
    >>> assess(source, source).costs  # the instructor's own answer breaks no rule
    {}
    """
    protected = protected_checks(source) if protected is None else protected
    forbidden = {n for blocks in protected.values() for _, names in blocks for n in names}
    cells = student_cells(nb, source)
    modules, imported = _setup_imports(source)
    findings = scan(cells, forbidden, modules, imported)
    result = Assessment(findings=findings)
    for grade_id, blocks in protected.items():
        leaves = {n.rsplit(".", 1)[-1] for _, names in blocks for n in names}
        reach = _reachable(cells, set().union(*(called for called, _ in blocks)))
        costly = []
        for f in findings:
            if f.hatch:
                costly.append(f)
            elif f.name in leaves:
                exempt = f.exempt_in is not None and f.exempt_in not in reach
                if not (exempt and _referenced_only_by_calls(cells, f.exempt_in)):
                    costly.append(f)
        if costly:
            result.costs[grade_id] = costly
    return result


# --------------------------------------------------------------------------- the student's command


def check_notebook(path: str, source_path: str | None = None) -> tuple[Assessment, bool]:
    """Assess a notebook; without the instructor's source, the student's own copy stands in for it.

    A student's copy has no hidden tests, so there every dotted name its setup cell lists
    counts as forbidden in every check, for every function the check calls (the grader is
    never stricter than that). Returns the assessment and whether the source was the instructor's.

    >>> import nbformat, tempfile
    >>> _, nb = _example()
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     nbformat.write(nb, f"{tmp}/softmax.ipynb")
    ...     assessment, exact = check_notebook(f"{tmp}/softmax.ipynb")
    >>> sorted(assessment.costs), exact
    (['check_softmax'], False)
    """
    import nbformat

    nb = nbformat.read(path, as_version=4)
    if source_path:
        return assess(nb, nbformat.read(source_path, as_version=4)), True
    names = [
        n
        for cell in nb.cells
        if _is_setup(cell) and (tree := _parse(cell.source)) is not None
        for values in _string_lists(tree).values()
        for n in values
        if "." in n and " " not in n
    ]
    protected = protected_checks(nb)
    if names:
        for cell in nb.cells:
            if _is_test(cell) and (tree := _parse(cell.source)) is not None:
                called = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
                protected.setdefault(_meta(cell)["grade_id"], []).append((called, names))
    released = nbformat.from_dict({**nb, "cells": [c for c in nb.cells if _meta(c).get("locked")]})
    return assess(nb, released, protected), False


def build_parser(parser=None):
    """``ftlab policy NOTEBOOK [--source SOURCE]`` (``parser``: the subcommand's, from ``ftlab``'s own).

    >>> build_parser().parse_args(["softmax.ipynb", "--source", "solutions/ps3/softmax.ipynb"])
    Namespace(notebook='softmax.ipynb', source='solutions/ps3/softmax.ipynb')
    """
    import argparse

    parser = parser or argparse.ArgumentParser(prog="ftlab policy")
    parser.description = "What in your notebook would cost points as not your own work, before you submit."
    parser.add_argument("notebook")
    parser.add_argument("--source", help="the instructor's source notebook (instructors: the grader's exact verdict)")
    return parser


def run_cli(args) -> int:
    """Print the findings; exit 1 when a check would score 0, 2 when the notebook cannot be read.

    >>> run_cli(build_parser().parse_args(["missing.ipynb"]))
    ftlab policy: error: [Errno 2] No such file or directory: 'missing.ipynb'
    2
    """
    try:
        assessment, exact = check_notebook(args.notebook, args.source)
    except (OSError, ValueError) as exc:
        print(f"ftlab policy: error: {exc}")
        return 2
    if not assessment.findings:
        print(f"{args.notebook}: nothing in your code breaks the exercise's rules.")
        return 0
    print(f"{args.notebook}: {len(assessment.findings)} finding(s):")
    for finding in assessment.findings:
        print(f"  {finding.message()}")
    if assessment.costs:
        print("Checks that would score 0:", ", ".join(sorted(assessment.costs)))
    if not exact:
        print("(checked against your copy of the exercise: the grader is never stricter than this)")
    return 1 if assessment.costs else 0


def main(argv: list[str] | None = None) -> int:
    """``ftlab policy``'s command line: what in a notebook would cost points as not the student's own work.

    >>> import nbformat, tempfile
    >>> _, nb = _example()
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     nbformat.write(nb, f"{tmp}/softmax.ipynb")
    ...     main([f"{tmp}/softmax.ipynb"])
    /.../softmax.ipynb: 1 finding(s):
      softmax, line 2: uses softmax, which this exercise asks you to write yourself
    Checks that would score 0: check_softmax
    (checked against your copy of the exercise: the grader is never stricter than this)
    1
    """
    return run_cli(build_parser().parse_args(argv))
