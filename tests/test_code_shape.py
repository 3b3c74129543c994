"""The library stays easy to change: no function in ftlab/ (the grading engine included) runs past a screen.

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
