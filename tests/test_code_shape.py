"""The library stays easy to change: no function in ftlab/ (the grading engine included) runs past a screen, and
no module imports one that imports it back.

A function longer than 80 lines of code mixes several ideas; split it, or say
in a comment why it must be long and list it in ``EXPLAINED`` here. Lines of
code exclude the docstring, comments and blank lines.
"""

import ast
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "ftlab"
MAX_LINES = 80
EXPLAINED: dict[str, str] = {}  # "module.function" -> why it is longer (also said in a comment there)


def code_lines(source: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of ``node`` that hold code: not blank, not a comment, not its docstring."""
    docstring: set[int] = set()
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        docstring = set(range(first.lineno, first.end_lineno + 1))
    return sum(
        1
        for number in range(node.lineno, node.end_lineno + 1)
        if number not in docstring and source[number - 1].strip() and not source[number - 1].strip().startswith("#")
    )


def functions(path: Path):
    source = path.read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield (
                f"{path.relative_to(LIBRARY).with_suffix('').as_posix().replace('/', '.')}.{node.name}",
                code_lines(source.splitlines(), node),
            )


MODULES = sorted(LIBRARY.rglob("*.py"))


def test_the_counter_counts_code_only():
    source = '''def f(x):
    """Doc
    string."""
    # a comment

    y = x + 1  # code
    return y
'''
    node = ast.parse(source).body[0]
    assert code_lines(source.splitlines(), node) == 3  # def, y = ..., return


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_no_function_is_longer_than_a_screen(path):
    too_long = {name: n for name, n in functions(path) if n > MAX_LINES and name not in EXPLAINED}
    assert not too_long, f"functions over {MAX_LINES} lines of code: {too_long} -- split them"


# --------------------------------------------------------------------------- import cycles


def module_name(path: Path) -> str:
    parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = {module_name(path): path for path in MODULES}


def imports(module: str) -> set[str]:
    """The ftlab modules ``module`` imports, at its top or inside a function (a lazy import is still a dependency)."""
    path = FILES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . / from .. / from .x
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in FILES]
            names = submodules or [base]
        else:
            continue
        found |= {name for name in names if name in FILES and name != module}
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop (``[a, b, ..., a]``) in ``graph``, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return None
        for dep in sorted(graph[node]):
            if cycle := visit(dep, path + [node]):
                return cycle
        done.add(node)
        return None

    return next((cycle for node in sorted(graph) if (cycle := visit(node, []))), None)


def test_the_cycle_finder_finds_a_loop_and_the_import_walk_sees_lazy_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    assert "ftlab.grading.warm" in imports("ftlab.grading.jobs")  # imported inside run_job only
    assert {"ftlab.grading.stages", "ftlab.grading.process"} <= imports("ftlab.grading.jobs")  # from . import stages


def test_no_import_cycle_in_ftlab():
    """No module of ftlab imports, even inside a function, a module that imports it back (directly or round a loop)."""
    graph = {module: imports(module) for module in FILES}
    assert len(graph) > 40 and graph["ftlab.train"], "the walk found too little"
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"
