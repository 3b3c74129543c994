"""The checks test cells compare with (ftlab.grading.checks), and the test cells of solutions/ that must use them.

Issue 17: ``torch.allclose(got, want)`` broadcasts, so an answer returning an empty
tensor of shape (0, 1, 1) passed ps4's checks. Fast: no nbgrader, no kernels.
"""

from __future__ import annotations

import ast
import contextlib
import math
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from ftlab.grading import CheckFailed, expect, expect_close, expect_equal

ROOT = Path(__file__).resolve().parents[1]


def _failure(check, *args, **kwargs) -> CheckFailed:
    """The CheckFailed a check raises (the test fails if it passes)."""
    with pytest.raises(CheckFailed) as info:
        check(*args, **kwargs)
    message = str(info.value)
    assert message.startswith(kwargs.get("what", "")), message
    return info.value


# --------------------------------------------------------------------------- the checks


def test_check_failed_is_an_assertion_error_so_nbgrader_scores_zero():
    assert issubclass(CheckFailed, AssertionError)
    with pytest.raises(AssertionError):
        expect_close(torch.zeros(2), torch.ones(2), what="x")


def test_an_empty_tensor_fails_on_its_shape():
    want = torch.tensor([0.5150, 0.4850])
    assert torch.allclose(torch.empty(0, 1, 1), want)  # the hole this closes: allclose broadcasts
    failure = _failure(expect_close, torch.empty(0, 1, 1), want, what="softmax(z)")
    assert failure.prop == "shape" and "shape (0, 1, 1) where (2,) was expected" in str(failure)
    assert _failure(expect_equal, torch.empty(0, 1, 1), want, what="softmax(z)").prop == "shape"
    assert _failure(expect_close, np.empty((0, 1, 1)), want.numpy(), what="softmax(z)").prop == "shape"


@pytest.mark.parametrize("check", [expect_close, expect_equal])
def test_broadcastable_shapes_fail(check):
    assert torch.allclose(torch.ones(1), torch.ones(3))
    failure = _failure(check, torch.ones(1), torch.ones(3), what="p")
    assert failure.prop == "shape" and "shape (1,) where (3,) was expected" in str(failure)
    assert _failure(check, np.ones((3, 1)), np.ones(3), what="p").prop == "shape"
    assert _failure(check, torch.ones(3, 1), torch.ones(1, 3), what="p").prop == "shape"


def test_dtype_must_match_unless_told_otherwise():
    failure = _failure(expect_close, torch.ones(2, dtype=torch.float64), torch.ones(2), what="p")
    assert failure.prop == "dtype" and "dtype torch.float64 where torch.float32 was expected" in str(failure)
    expect_close(torch.ones(2, dtype=torch.float64), torch.ones(2), what="p", check_dtype=False)
    assert _failure(expect_close, np.ones(2, np.float32), np.ones(2), what="p").prop == "dtype"
    expect_close(np.ones(2, np.float32), np.ones(2), what="p", check_dtype=False)
    assert _failure(
        expect_equal, torch.ones(2, dtype=torch.int32), torch.ones(2, dtype=torch.int64), what="p"
    ).prop == ("dtype")


def test_nan_and_inf_fail_as_non_finite():
    got = torch.tensor([[0.5, float("nan")], [float("inf"), 0.5]])
    failure = _failure(expect_close, got, torch.full((2, 2), 0.5), what="softmax(huge logits)")
    assert failure.prop == "non-finite" and "2 of 4 values are NaN or infinite" in str(failure)
    assert _failure(expect_close, np.array([np.nan]), np.array([1.0]), what="p").prop == "non-finite"
    assert _failure(expect_close, math.nan, 1.0, what="loss").prop == "non-finite"
    assert _failure(expect_close, [1.0, math.inf], [1.0, 2.0], what="rates").prop == "non-finite"
    assert _failure(expect_equal, torch.tensor([math.nan]), torch.tensor([1.0]), what="p").prop == "non-finite"
    expect_close(torch.tensor([math.nan, math.inf]), torch.tensor([math.nan, math.inf]), what="p")  # where want is too


def test_tensor_values_within_tolerance():
    want = torch.tensor([0.5150, 0.4850])
    expect_close(torch.tensor([0.51504, 0.48496]), want, what="p", rtol=1e-5, atol=1e-4)
    failure = _failure(expect_close, torch.tensor([0.6, 0.4850]), want, what="softmax(z)", atol=1e-4)
    assert (
        failure.prop == "value"
        and "1 of 2 values differ" in str(failure)
        and "largest difference 0.085" in str(failure)
    )
    assert "want: [0.515, 0.485]" in str(failure)  # a visible check shows what it expected
    expect_close(torch.ones(2, requires_grad=True) * 2, torch.full((2,), 2.0), what="p")  # results that need grad


T = torch.tensor
SAME_VERDICT = [
    (T([0.515, 0.485]), T([0.515, 0.485])),
    (T([0.5151, 0.485]), T([0.515, 0.485])),
    (T([0.515, 0.485], dtype=torch.float64), T([0.515, 0.485])),
    (T([0.515, 0.485], dtype=torch.float16), T([0.515, 0.485])),
    (T([1, 2, 3]), T([1, 2, 4])),
    (T([1, 2, 3], dtype=torch.uint8), T([1, 2, 3])),
    (T([1, 2, 3], dtype=torch.uint32), T([1, 2, 3])),
    (T([1, 2, 3], dtype=torch.uint32), T([1, 2, 4])),
    (T([1, 2]), T([1.0, 2.4])),
    (T([True, False]), T([True, True])),
    (T([1 + 1j, 2j]), T([1 + 1j, 2.0001j])),
    (T([math.nan, math.inf]), T([math.nan, math.inf])),
    (T([-math.inf, 1.0]), T([math.inf, 1.0])),
]


@pytest.mark.parametrize("tol", [(0.0, 0.0), (1e-3, 1e-5), (0.0, 0.5)])
@pytest.mark.parametrize("got, want", SAME_VERDICT)
def test_tensor_values_pass_exactly_where_assert_close_passes(got, want, tol):
    """expect_close compares as torch.testing.assert_close does, without calling it (2 s at its first call)."""
    try:
        torch.testing.assert_close(got, want, rtol=tol[0], atol=tol[1], equal_nan=True, check_dtype=False)
        close = True
    except AssertionError:
        close = False
    try:
        expect_close(got, want, what="p", rtol=tol[0], atol=tol[1], check_dtype=False)
        passed = True
    except CheckFailed:
        passed = False
    assert passed == close


def test_one_tolerance_given_means_the_other_is_zero():
    got, want = torch.tensor([1.0]), torch.tensor([1.00003])
    expect_close(got, want, what="p", rtol=1e-4)
    assert _failure(expect_close, got, want, what="p", atol=1e-5).prop == "value"
    expect_close(got, want, what="p", rtol=1e-5, atol=3e-5)


def test_large_tensors_show_the_first_difference():
    want = torch.zeros(100)
    got = want.clone()
    got[[7, 42]] = 1.0
    failure = _failure(expect_close, got, want, what="features(x)")
    assert "2 of 100 values differ" in str(failure) and "first at index (7,): got 1, want 0" in str(failure)


def test_numpy_arrays():
    expect_close(np.array([0.1, 0.2]), np.array([0.1, 0.2 + 1e-9]), what="p")
    failure = _failure(expect_close, np.array([0.1, 0.3]), np.array([0.1, 0.2]), what="p")
    assert failure.prop == "value" and "1 of 2 values differ" in str(failure)
    assert "a torch.Tensor where a NumPy array was expected" in str(
        _failure(expect_close, torch.tensor([0.1]), np.array([0.1]), what="p")
    )
    expect_equal(np.arange(3), np.arange(3), what="labels")
    assert _failure(expect_equal, np.arange(3)[::-1].copy(), np.arange(3), what="labels").prop == "value"


def test_python_numbers():
    expect_close(0.1 + 0.2, 0.3, what="share")
    expect_close(1, 1.0, what="accuracy")
    expect_close(np.float64(0.5), 0.5, what="accuracy")
    expect_close(0.0594, 0.0590, what="share", rtol=0, atol=5e-4)
    failure = _failure(expect_close, 0.0600, 0.0590, what="share", rtol=0, atol=5e-4)
    assert failure.prop == "value" and "got 0.06 where 0.059 was expected" in str(failure)
    assert "a torch.Tensor where a number was expected" in str(
        _failure(expect_close, torch.tensor(0.5), 0.5, what="accuracy")
    )
    assert _failure(expect_close, True, 1.0, what="accuracy").prop == "type"
    expect_equal(65_922, 65_922, what="count")
    assert "a float where an int was expected" in str(_failure(expect_equal, 65_922.0, 65_922, what="count"))
    assert "a bool where an int was expected" in str(_failure(expect_equal, True, 1, what="count"))
    assert "got 3 where 4 was expected" in str(_failure(expect_equal, 3, 4, what="count"))
    expect_equal("feature_extraction", "feature_extraction", what="strategy")
    assert _failure(expect_equal, None, "head", what="strategy").prop == "type"


def test_sequences():
    expect_close([1e-6, 1e-5], [1e-6, 1e-5], what="rates")
    expect_close((1e-6, 1e-5), [1e-6, 1e-5], what="rates")  # any sequence of numbers
    assert "3 numbers where 2 were expected" in str(_failure(expect_close, [1, 2, 3], [1, 2], what="rates"))
    assert "item 1 is a string where a number was expected" in str(
        _failure(expect_close, [1, "2"], [1, 2], what="rates")
    )
    assert "a torch.Tensor where a list of numbers was expected" in str(
        _failure(expect_close, torch.tensor([1.0, 2.0]), [1.0, 2.0], what="rates")
    )
    expect_equal((1_116_546, 0), (1_116_546, 0), what="count_params(net)")
    assert "a list where a tuple was expected" in str(_failure(expect_equal, [1, 0], (1, 0), what="count_params(net)"))
    assert "2 items where 3 were expected" in str(_failure(expect_equal, [1, 2], [1, 2, 3], what="plan"))
    failure = _failure(expect_equal, [["head"], ["head", "layer4"]], [["head"], ["layer4", "head"]], what="history")
    assert "item 1 differs" in str(failure)
    nested = _failure(expect_equal, [["head"], ("layer4", "head")], [["head"], ["layer4", "head"]], what="history")
    assert nested.prop == "type" and str(nested).startswith("history, item 1: a tuple where a list was expected")
    expect_equal({"a": 1, "b": [2]}, {"b": [2], "a": 1}, what="results")
    assert "missing ['b']" in str(_failure(expect_equal, {"a": 1}, {"a": 1, "b": 2}, what="results"))
    assert "unexpected ['c']" in str(_failure(expect_equal, {"a", "c"}, {"a"}, what="keys"))


def test_a_list_where_a_tensor_is_expected():
    failure = _failure(expect_close, [0.5, 0.5], torch.tensor([0.5, 0.5]), what="softmax(z)")
    assert str(failure) == "softmax(z): a list where a torch.Tensor was expected" and failure.prop == "type"
    assert _failure(expect_equal, [0.5, 0.5], torch.tensor([0.5, 0.5]), what="softmax(z)").prop == "type"


@pytest.mark.parametrize(
    ("check", "got", "want"),
    [
        (expect_close, torch.tensor([0.9, 0.1]), torch.tensor([0.123456, 0.654321])),
        (expect_close, np.array([0.9, 0.1]), np.array([0.123456, 0.654321])),
        (expect_close, 0.9, 0.123456),
        (expect_close, [0.9, 0.1], [0.123456, 0.654321]),
        (expect_equal, torch.tensor([0.9, 0.1]), torch.tensor([0.123456, 0.654321])),
        (expect_equal, (123, 0.9), (123, 0.123456)),
        (expect_equal, 7, 123456),
        (expect_equal, "head", "layer0.123456"),
        (expect_equal, {"a", "b"}, {"a", "0.123456"}),
    ],
)
def test_a_hidden_check_does_not_reveal_the_expected_values(check, got, want):
    failure = _failure(check, got, want, what="softmax(random logits)", hidden=True)
    message = str(failure)
    assert failure.prop == "value" and "correct result" in message or "missing" in message, message
    for secret in ("0.123", "123456", "0.654", "654321"):
        assert secret not in message, message
    assert "0.123" in str(_failure(check, got, want, what="p")) or check is expect_equal  # visible checks may show it


def test_hidden_message_says_what_failed():
    got, want = torch.rand(5, 3), torch.rand(5, 3) + 1
    message = str(_failure(expect_close, got, want, what="softmax(random logits)", hidden=True))
    assert message.startswith("softmax(random logits): 15 of 15 values differ from the correct result (largest")
    assert "\n" not in message


def test_expect_takes_a_condition_and_a_message():
    expect(True, "never shown")
    expect(torch.tensor(True), "a 0-d bool tensor counts")
    failure = _failure(expect, 0.73 > 0.99, "softmax(z): each row must sum to 1; row 0 sums to 0.73")
    assert str(failure) == "softmax(z): each row must sum to 1; row 0 sums to 0.73"


def test_an_instructor_mistake_is_not_a_student_failure():
    with pytest.raises(TypeError, match="expect_equal for exact values"):
        expect_close("a", "a", what="p")


# --------------------------------------------------------------------------- the test cells in solutions/

HELPERS = {"expect", "expect_close", "expect_equal"}
BROADCASTING = ("allclose",)  # torch.allclose, np.allclose, x.allclose, np.testing.assert_allclose
EXACT_ARRAYS = {"array_equal", "array_equiv"}
# names of torch / NumPy functions, methods and attributes whose result is not a tensor or an array
NOT_TENSORS = {
    "equal", "is_tensor", "is_floating_point", "is_complex", "is_nonzero", "numel", "nelement", "item", "tolist",
    "dim", "ndimension", "size", "shape", "ndim", "dtype", "device", "requires_grad", "is_leaf", "Size", "finfo",
    "iinfo", "Generator", "manual_seed", "get_default_dtype", "is_grad_enabled", "isscalar",
}  # fmt: skip


def _is_test(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def _tensor_modules(setup_source: str) -> set[str]:
    """The names that stand for torch or NumPy in a notebook: torch, np, and what its setup cell imports from them."""
    roots = {"torch", "np", "numpy"}
    for node in ast.walk(ast.parse(setup_source)):
        if isinstance(node, ast.Import):
            roots.update(a.asname or a.name.split(".")[0] for a in node.names if a.name.split(".")[0] in roots)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("torch", "numpy"):
            roots.update(a.asname or a.name for a in node.names)
    return roots


def _rooted_at(node: ast.AST, roots: set[str]) -> bool:
    """``torch.nn.functional.softmax``, ``np.testing`` ...: an attribute chain that starts at a torch/NumPy name."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name) and node.id in roots


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _makes_tensor(node: ast.AST, roots: set[str], bound: set[str]) -> bool:
    """Whether ``node`` evaluates to a tensor or an array, as far as one can tell without running it.

    A call to a torch / NumPy function (``torch.randn(3)``, ``F.softmax(z, -1)``), a method, subscript or
    attribute of such a value (``t.sum()``, ``t[0]``, ``t.grad``), arithmetic on one, or a name the cell bound to
    one; not ``t.shape``, ``t.item()``, ``torch.equal(a, b)``, ``float(t)``, ``len(t)`` or a student's function.
    """
    if isinstance(node, ast.Call):
        if _called_name(node) in NOT_TENSORS:
            return False
        func = node.func
        if isinstance(func, ast.Name):
            return func.id in roots or func.id in bound  # a torch class, or a module the cell built
        return isinstance(func, ast.Attribute) and (_rooted_at(func, roots) or _makes_tensor(func.value, roots, bound))
    if isinstance(node, ast.Attribute):
        return node.attr not in NOT_TENSORS and not _rooted_at(node, roots) and _makes_tensor(node.value, roots, bound)
    if isinstance(node, ast.Subscript):
        return _makes_tensor(node.value, roots, bound)
    if isinstance(node, ast.Name):
        return node.id in bound
    if isinstance(node, ast.BinOp):
        return _makes_tensor(node.left, roots, bound) or _makes_tensor(node.right, roots, bound)
    if isinstance(node, ast.UnaryOp):
        return not isinstance(node.op, ast.Not) and _makes_tensor(node.operand, roots, bound)
    return False


def _bindings(tree: ast.AST, roots: set[str]) -> list[tuple[int, str, ast.AST]]:
    """(line, name, value) of every plain assignment in a cell, in source order."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    found.append((node.lineno, target.id, node.value))
                elif isinstance(target, ast.Tuple | ast.List):
                    values = node.value.elts if isinstance(node.value, ast.Tuple | ast.List) else None
                    for i, element in enumerate(target.elts):
                        if isinstance(element, ast.Name):
                            value = values[i] if values and len(values) == len(target.elts) else node.value
                            found.append((node.lineno, element.id, value))
    return sorted(found, key=lambda b: b[0])


def _tensor_names_before(line: int, bindings: list[tuple[int, str, ast.AST]], roots: set[str]) -> set[str]:
    """The names bound to a tensor or array by their last assignment before ``line``."""
    bound: set[str] = set()
    for lineno, name, value in bindings:
        if lineno >= line:
            break
        if _makes_tensor(value, roots, bound):
            bound.add(name)
        else:
            bound.discard(name)
    return bound


def cell_problems(source: str, setup_source: str = "import torch\nimport numpy as np") -> list[tuple[int, str]]:
    """(line, problem) for each comparison in a test cell that may broadcast or that bypasses the checks."""
    tree = ast.parse(source)
    roots = _tensor_modules(setup_source)
    bindings = _bindings(tree, roots)
    problems = []
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    for call in calls:
        name = _called_name(call)
        if any(b in name for b in BROADCASTING):
            problems.append((call.lineno, f"calls {ast.unparse(call.func)}, which broadcasts: use expect_close"))
        elif name in EXACT_ARRAYS:
            problems.append((call.lineno, f"calls {ast.unparse(call.func)}: use expect_equal"))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assert):
            continue
        bound = _tensor_names_before(node.lineno, bindings, roots)
        for compare in (n for n in ast.walk(node.test) if isinstance(n, ast.Compare)):
            operands = [compare.left, *compare.comparators]
            for i, op in enumerate(compare.ops):
                sides = operands[i : i + 2]
                if isinstance(op, ast.Eq | ast.NotEq) and any(_makes_tensor(s, roots, bound) for s in sides):
                    problems.append(
                        (
                            node.lineno,
                            f"asserts `{ast.unparse(compare)}` on a tensor or array: use expect_close / expect_equal",
                        )
                    )
    if not any(_called_name(c) in HELPERS and isinstance(c.func, ast.Name) for c in calls):
        problems.append((1, "calls none of expect_close / expect_equal / expect"))
    return sorted(problems)


def _solution_test_cells():
    for path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for index, cell in enumerate(nb.cells):
            if _is_test(cell):
                yield path.relative_to(ROOT), index, cell, nb.cells[1].source


def test_solution_test_cells_compare_through_the_checks():
    cells = list(_solution_test_cells())
    assert len(cells) == 28, "a test cell was added or lost: check this count"  # ps6: input checks on their own; ps9: 4
    problems = [
        f"{path} cell {index} ({cell.metadata.nbgrader['grade_id']}), line {line}: {problem}"
        for path, index, cell, setup in cells
        for line, problem in cell_problems(cell.source, setup)
    ]
    assert not problems, "\n".join(problems)


def test_hidden_checks_are_marked_hidden():
    """Inside ### BEGIN HIDDEN TESTS, expect_close / expect_equal say hidden=True; before it, they do not."""
    wrong = []
    for path, index, cell, _ in _solution_test_cells():
        start = (
            cell.source.split("\n").index("### BEGIN HIDDEN TESTS") + 1 if "### BEGIN HIDDEN" in cell.source else 10**9
        )
        for call in (n for n in ast.walk(ast.parse(cell.source)) if isinstance(n, ast.Call)):
            if isinstance(call.func, ast.Name) and call.func.id in ("expect_close", "expect_equal"):
                hidden = any(k.arg == "hidden" and ast.literal_eval(k.value) is True for k in call.keywords)
                if hidden != (call.lineno > start):
                    wrong.append(f"{path} cell {index}, line {call.lineno}: hidden={hidden}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    "source",
    [
        "torch.allclose(a, b)",
        "assert np.allclose(a, b)",
        "assert got.allclose(want, atol=1e-5)",
        "np.testing.assert_allclose(a, b)",
        "assert np.array_equal(a, b)",
        "assert torch.tensor([1.0]) == x",
        "assert x != F.softmax(z, dim=-1)",
        "t = torch.zeros(3)\nassert t[0] == 0",
        "t = torch.zeros(3)\nassert ok and t.sum() == 1",
        "z, y = torch.randn(3) * 4, 1\nassert z.grad == g",
        "head = torch.nn.Linear(2, 2)\nassert head(x) == y",
        "assert 1 < 2 == np.ones(3)",
    ],
)
def test_the_source_check_catches_broadcasting_comparisons(source):
    setup = "import numpy as np\nimport torch\nimport torch.nn.functional as F"
    problems = cell_problems(f'"""doc"""\n{source}\nexpect(True, "")', setup)
    assert len(problems) == 1 and problems[0][0] == source.count("\n") + 2, problems


@pytest.mark.parametrize(
    "source",
    [
        "assert len(x) == 3",
        "assert float(torch.tensor(1.0)) == 1.0",
        "t = torch.zeros(3)\nassert t.shape == (3,)",
        "t = torch.zeros(3)\nassert t.item() == 0 and tuple(t.shape) == (3,)",
        "assert torch.equal(a, b) == True",
        "t = torch.zeros(3)\nt = count(t)\nassert t == 3",
        "assert got == (1, 2)",
        "assert torch.float32 == t.dtype",
        "t = torch.zeros(3)\nassert t.sum() < 1",
        "z, y = f(), torch.ones(2)\nassert z == 1",
    ],
)
def test_the_source_check_lets_plain_comparisons_through(source):
    assert cell_problems(f'"""doc"""\n{source}\nexpect(True, "")') == []


def test_a_test_cell_must_call_a_check():
    assert cell_problems('"""doc"""\nassert count(x) == 3') == [
        (1, "calls none of expect_close / expect_equal / expect")
    ]


# --------------------------------------------------------------------------- a hostile ps4 answer


def _ps4_grader_namespace() -> tuple[dict, dict[str, str]]:
    """ps4's setup cell run as the grader runs it, and its test cells by grade_id."""
    nb = nbformat.read(ROOT / "solutions" / "ps4_bert_head" / "bert_head.ipynb", as_version=4)
    namespace: dict = {"__name__": "__grader__"}
    exec(compile(nb.cells[1].source, "<setup>", "exec"), namespace)
    namespace["forbid"] = lambda *names: contextlib.nullcontext()  # the fake answers call no library function
    tests = {c.metadata.nbgrader["grade_id"]: c.source for c in nb.cells if _is_test(c)}
    solutions = {
        c.metadata.nbgrader["grade_id"]: c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")
    }
    return namespace, {**tests, **{f"solution:{k}": v for k, v in solutions.items()}}


def test_ps4_empty_tensors_score_zero():
    """An answer returning torch.empty(0, 1, 1) used to pass ps4's softmax and cls_logits checks; now each fails."""
    namespace, cells = _ps4_grader_namespace()
    for name in ("cls_logits", "softmax"):
        namespace[name] = lambda *args: torch.empty(0, 1, 1)
        with pytest.raises(CheckFailed, match=r"shape \(0, 1, 1\) where"):
            exec(cells[f"test_{name}"], dict(namespace))


def test_ps4_hidden_checks_refuse_empty_tensors_too():
    """Right on the visible inputs (copied from the notebook), empty everywhere else: the hidden checks catch it."""
    namespace, cells = _ps4_grader_namespace()
    calls = []

    def cls_logits(hidden_states, weight, bias):
        calls.append(1)
        return hidden_states[:, 0] @ weight.T + bias if len(calls) == 1 else torch.empty(0, 1, 1)

    def softmax(z):
        return torch.tensor([0.5150, 0.4850]) if z.shape == (2,) else torch.empty(0, 1, 1)

    for name, fake in (("cls_logits", cls_logits), ("softmax", softmax)):
        with pytest.raises(CheckFailed) as info:
            exec(cells[f"test_{name}"], {**namespace, name: fake})
        assert "shape (0, 1, 1) where" in str(info.value) and "correct result" not in str(info.value)
        hidden_from = cells[f"test_{name}"].split("\n").index("### BEGIN HIDDEN TESTS") + 1
        assert info.value.__traceback__.tb_next.tb_lineno > hidden_from


def test_ps4_solutions_pass_their_checks():
    """The instructor's answers pass the same cells run the same way (so the failures above are the fakes')."""
    namespace, cells = _ps4_grader_namespace()
    for grade_id in ("cls_logits", "softmax", "cross_entropy", "ce_grad"):
        exec(cells[f"solution:{grade_id}"], namespace)
        exec(cells[f"test_{grade_id}"], namespace)
