"""Checks for test cells that compare type, shape, dtype, finiteness and value -- and never broadcast.

Why: ``torch.allclose(got, want)`` broadcasts, so an answer that returns an empty
tensor of shape ``(0, 1, 1)`` "equals" any ``want`` and earns the points for no work;
``assert got == want`` says nothing a student can act on. The checks here compare, in
this order, the **type**, the **shape**, the **dtype**, **non-finite values** (NaN,
inf) and only then the **values**, and stop at the first property that fails with a
:class:`CheckFailed` (an ``AssertionError``, so nbgrader scores the cell 0) whose
message starts with ``what`` and speaks in the student's terms::

    expect_close(softmax(z), torch.tensor([0.5150, 0.4850]), what="softmax([0.10, 0.04])", atol=1e-4)
    expect_equal(count_params(net), (1_116_546, 1_116_546), what="count_params(worked example)")
    expect(loss_after < loss_before, f"train_gradually: the loss went from {loss_before} to {loss_after}")

A visible check may show what it got and what it expected. A check with
``hidden=True`` (in a hidden-tests region of the cell) names the property that failed,
how many values differ and by how much at most, but never the expected values:
hidden tests exist so that answers cannot be copied into a notebook.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

__all__ = ["CheckFailed", "expect", "expect_close", "expect_equal"]

# torch.testing.assert_close's documented default tolerances (rtol, atol) per dtype; other dtypes compare exactly.
_TORCH_TOLERANCES = {
    torch.float16: (1e-3, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-5),
    torch.float32: (1.3e-6, 1e-5),
    torch.float64: (1e-7, 1e-7),
    torch.complex32: (1e-3, 1e-5),
    torch.complex64: (1.3e-6, 1e-5),
    torch.complex128: (1e-7, 1e-7),
}
_NUMPY_TOLERANCES = (1e-7, 0.0)  # np.testing.assert_allclose's defaults
_NUMBER_TOLERANCES = (1e-9, 0.0)  # math.isclose's defaults
_SHOW_AT_MOST = 16  # a visible message lists every value of results up to this size


class CheckFailed(AssertionError):
    """A check in a test cell failed; the message is meant for the student.

    A subclass of ``AssertionError``, so nbgrader scores the cell 0 as it would for
    a failed ``assert``. ``prop`` says which property failed: ``"type"``, ``"shape"``,
    ``"dtype"``, ``"non-finite"``, ``"value"`` or ``"condition"``.

    >>> issubclass(CheckFailed, AssertionError)
    True
    """

    def __init__(self, message: str, prop: str = "condition"):
        super().__init__(message)
        self.prop = prop


# --------------------------------------------------------------------------- public checks


def expect(condition: bool, message: str) -> None:
    """Fail with ``message`` unless ``condition`` holds: for properties rather than values.

    For what a single comparison cannot say -- rows sum to 1, the loss went down, a
    frozen layer did not move -- with a message that says what was wrong.

    >>> expect(1 + 1 == 2, "arithmetic")
    >>> expect(0.73 == 1.0, "softmax(z): each row must sum to 1; row 0 sums to 0.73")
    Traceback (most recent call last):
    ...
    ftlab.grading.checks.CheckFailed: softmax(z): each row must sum to 1; row 0 sums to 0.73
    """
    if not condition:
        raise CheckFailed(message)


def expect_close(
    got: Any,
    want: Any,
    *,
    what: str,
    rtol: float | None = None,
    atol: float | None = None,
    check_dtype: bool = True,
    hidden: bool = False,
) -> None:
    """Check that ``got`` is ``want`` up to a tolerance: same type, exactly the same shape, same dtype, finite, close.

    ``want`` decides what is compared:

    * a ``torch.Tensor``: ``got`` must be a tensor of the same shape (never broadcast)
      and, with ``check_dtype``, dtype; values as :func:`torch.testing.assert_close`
      does: ``|got - want| <= atol + rtol * |want|``;
    * a NumPy array: the same, with :func:`numpy.testing.assert_allclose`;
    * a number (int or float, not bool): ``got`` must be a number (a tensor is not);
      values as :func:`math.isclose` does;
    * a list or tuple of numbers: ``got`` must be a list or tuple of as many numbers,
      each compared as :func:`math.isclose` does.

    Tolerances: give both, or one (the other is then 0). With neither, each kind uses
    its library's defaults (``torch.testing.assert_close``'s per dtype,
    ``assert_allclose``'s ``rtol=1e-7``, ``math.isclose``'s ``rel_tol=1e-9``).
    NaN or inf in ``got`` where ``want`` is finite fails before the values are compared.
    With ``hidden=True`` the message names the property that failed, how many values
    differ and the largest difference, never the expected values.

    >>> import torch
    >>> expect_close(torch.tensor([0.515, 0.485]), torch.tensor([0.5150, 0.4850]), what="softmax(z)", atol=1e-4)
    >>> expect_close(torch.empty(0, 1, 1), torch.tensor([0.5150, 0.4850]), what="softmax(z)")
    Traceback (most recent call last):
    ...
    ftlab.grading.checks.CheckFailed: softmax(z): shape (0, 1, 1) where (2,) was expected
    >>> expect_close([0.5, 0.5], torch.tensor([0.5150, 0.4850]), what="softmax(z)")
    Traceback (most recent call last):
    ...
    ftlab.grading.checks.CheckFailed: softmax(z): a list where a torch.Tensor was expected
    >>> expect_close(torch.tensor([0.6, 0.4]), torch.tensor([0.5150, 0.4850]), what="softmax(z)", atol=1e-4)
    Traceback (most recent call last):
    ...
    ftlab.grading.checks.CheckFailed: softmax(z): 2 of 2 values differ from the expected result (largest difference 0.085; tolerance rtol=0, atol=0.0001)
      got:  [0.6, 0.4]
      want: [0.515, 0.485]
    >>> expect_close(torch.tensor([0.6, 0.4]), torch.tensor([0.5150, 0.4850]), what="softmax(random logits)", hidden=True)
    Traceback (most recent call last):
    ...
    ftlab.grading.checks.CheckFailed: softmax(random logits): 2 of 2 values differ from the correct result (largest difference 0.085)
    >>> expect_close(0.66, 0.6636, what="accuracy", atol=0.01)
    """
    if isinstance(want, torch.Tensor):
        _close_tensors(got, want, what, rtol, atol, check_dtype, hidden)
    elif isinstance(want, np.ndarray):
        _close_arrays(got, want, what, rtol, atol, check_dtype, hidden)
    elif _is_number(want):
        _close_numbers(got, want, what, rtol, atol, hidden)
    elif isinstance(want, list | tuple) and all(_is_number(w) for w in want):
        _close_sequences(got, want, what, rtol, atol, hidden)
    else:
        raise TypeError(
            f"expect_close compares tensors, NumPy arrays, numbers and lists of numbers, not {_kind(want)}"
            " (use expect_equal for exact values)"
        )


def expect_equal(got: Any, want: Any, *, what: str, hidden: bool = False) -> None:
    """Check that ``got`` equals ``want`` exactly, type first: for counts, names, plans, shapes, exact tensors.

    * ints, floats, strings, bools, None: ``got`` must have the same kind of type (an
      int is not a float, a bool is not an int) and be ``==``;
    * lists and tuples: the same container type (a list is not a tuple), the same
      length, then item by item, recursively; dicts: the same keys, then the values;
      sets: the same elements;
    * tensors and NumPy arrays: the same type, shape and dtype, then every value equal
      (NaN equals NaN), as :func:`torch.equal` says.

    With ``hidden=True`` the message says which property failed and how many items
    differ, never the expected values.

    >>> expect_equal([1, 2, 3, 3], [1, 2, 3, 3], what="unfreeze_plan(3, 4)")
    >>> expect_equal((1_116_546, 0), (1_116_546, 1_116_546), what="count_params(worked example)")
    Traceback (most recent call last):
    ...
    ftlab.grading.checks.CheckFailed: count_params(worked example): item 1 differs from the expected result
      got:  (1116546, 0)
      want: (1116546, 1116546)
    >>> expect_equal([1116546, 1116546], (1_116_546, 1_116_546), what="count_params(worked example)")
    Traceback (most recent call last):
    ...
    ftlab.grading.checks.CheckFailed: count_params(worked example): a list where a tuple was expected
    >>> expect_equal(["head", "layer4"], ["layer4", "head"], what="trainable groups", hidden=True)
    Traceback (most recent call last):
    ...
    ftlab.grading.checks.CheckFailed: trainable groups: 2 of 2 items differ from the correct result
    """
    _equal(got, want, what, hidden)


# --------------------------------------------------------------------------- kinds and formatting


def _is_number(x: Any) -> bool:
    """A real number, but not a bool: ``True`` is not an answer for a count or a share."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool | np.bool_)


def _kind(x: Any) -> str:
    """What a student would call the type of ``x``, with an article."""
    if isinstance(x, torch.Tensor):
        return "a torch.Tensor"
    if isinstance(x, np.ndarray):
        return "a NumPy array"
    if x is None:
        return "None"
    if isinstance(x, bool | np.bool_):
        return "a bool"
    if isinstance(x, numbers.Integral):
        return "an int"
    if isinstance(x, numbers.Real):
        return "a float"
    for kind, name in ((str, "a string"), (list, "a list"), (tuple, "a tuple"), (dict, "a dict")):
        if isinstance(x, kind):
            return name
    if isinstance(x, set | frozenset):
        return "a set"
    name = type(x).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _fail(what: str, detail: str, prop: str) -> CheckFailed:
    return CheckFailed(f"{what}: {detail}", prop)


def _wrong_type(what: str, got: Any, expected: str) -> CheckFailed:
    return _fail(what, f"{_kind(got)} where {expected} was expected", "type")


def _shape(shape: Any) -> str:
    return str(tuple(int(n) for n in shape))


def _num(x: Any) -> str:
    """A number as a student reads it: ints in full, floats to 6 significant digits."""
    if isinstance(x, numbers.Integral):
        return str(int(x))
    return f"{float(x):.6g}"


def _values(x: torch.Tensor) -> str:
    """A small tensor's values, up to 6 decimals, nested like the tensor."""
    if x.is_floating_point():
        x = x.to(torch.float64)
    return np.array2string(x.detach().cpu().numpy(), precision=6, separator=", ")


def _same_layout(got: Any, want: Any, what: str, check_dtype: bool) -> None:
    """Exactly the same shape (nothing broadcasts: an empty result is not a match), then the same dtype."""
    if got.shape != want.shape:
        raise _fail(what, f"shape {_shape(got.shape)} where {_shape(want.shape)} was expected", "shape")
    if check_dtype and got.dtype != want.dtype:
        raise _fail(what, f"dtype {got.dtype} where {want.dtype} was expected", "dtype")


def _tolerances(rtol: float | None, atol: float | None, default: tuple[float, float]) -> tuple[float, float]:
    """Both given: those; one given: it alone (the other is 0); none: the default."""
    if rtol is None and atol is None:
        return default
    return (0.0 if rtol is None else float(rtol), 0.0 if atol is None else float(atol))


def _differ(what: str, n: int, total: int, largest: float, hidden: bool, tol: tuple[float, float]) -> str:
    """The first line of a value mismatch: how many differ and by how much at most."""
    if hidden:
        return f"{what}: {n} of {total} values differ from the correct result (largest difference {largest:.2g})"
    return (
        f"{what}: {n} of {total} values differ from the expected result "
        f"(largest difference {largest:.3g}; tolerance rtol={tol[0]:g}, atol={tol[1]:g})"
    )


# --------------------------------------------------------------------------- expect_close


def _close_tensors(
    got: Any,
    want: torch.Tensor,
    what: str,
    rtol: float | None,
    atol: float | None,
    check_dtype: bool,
    hidden: bool,
) -> None:
    if not isinstance(got, torch.Tensor):
        raise _wrong_type(what, got, "a torch.Tensor")
    got, want = got.detach().cpu(), want.detach().cpu()
    _same_layout(got, want, what, check_dtype)
    _tensor_finite(got, want, what)
    defaults = [_TORCH_TOLERANCES.get(d, (0.0, 0.0)) for d in (got.dtype, want.dtype)]
    tol = _tolerances(rtol, atol, (max(d[0] for d in defaults), max(d[1] for d in defaults)))
    # What torch.testing.assert_close does for dense tensors -- isclose in the promoted dtype -- without calling
    # it: torch 2.14's imports torch.distributed.tensor (and sympy) at every call, 1-4 s of CPU at a grading
    # job's first check.
    common = _common_dtype(got.dtype, want.dtype)
    g, w = got.to(common), want.to(common)
    close = torch.isclose(g, w, rtol=tol[0], atol=tol[1], equal_nan=True)
    if bool(close.all()):
        return
    diff = (g.to(torch.complex128) if common.is_complex else g.to(torch.float64)) - (
        w.to(torch.complex128) if common.is_complex else w.to(torch.float64)
    )
    largest = float(diff.abs()[~close].nan_to_num(nan=math.inf).max())
    message = _differ(what, int((~close).sum()), got.numel(), largest, hidden, tol)
    raise CheckFailed(message + ("" if hidden else _tensor_detail(got, want, close)), "value")


def _common_dtype(a: torch.dtype, b: torch.dtype) -> torch.dtype:
    """``torch.promote_types``, with uint16/32/64 taken as int64 as assert_close takes them (promote_types refuses)."""
    wide = (torch.uint16, torch.uint32, torch.uint64)
    return torch.promote_types(torch.int64 if a in wide else a, torch.int64 if b in wide else b)


def _tensor_finite(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    """NaN or inf in ``got`` where ``want`` is finite: a failure of its own (an unstable formula, usually)."""
    if not (got.is_floating_point() or got.is_complex()):
        return
    bad = ~torch.isfinite(got) & torch.isfinite(want)
    if bad.any():
        n, total = int(bad.sum()), got.numel()
        raise _fail(what, f"{n} of {total} values are NaN or infinite where finite values were expected", "non-finite")


def _tensor_detail(got: torch.Tensor, want: torch.Tensor, close: torch.Tensor) -> str:
    """What a visible check shows: all values of a small result, else the first value that differs."""
    if got.numel() <= _SHOW_AT_MOST:
        return f"\n  got:  {_values(got)}\n  want: {_values(want)}"
    index = tuple(int(i) for i in (~close).nonzero()[0])
    return f"\n  first at index {index}: got {_num(got[index].item())}, want {_num(want[index].item())}"


def _close_arrays(
    got: Any,
    want: np.ndarray,
    what: str,
    rtol: float | None,
    atol: float | None,
    check_dtype: bool,
    hidden: bool,
) -> None:
    if not isinstance(got, np.ndarray):
        raise _wrong_type(what, got, "a NumPy array")
    _same_layout(got, want, what, check_dtype)  # np.testing.assert_allclose alone would broadcast
    if got.dtype.kind in "fc":
        bad = ~np.isfinite(got) & np.isfinite(want)
        if bad.any():
            raise _fail(
                what,
                f"{int(bad.sum())} of {got.size} values are NaN or infinite where finite values were expected",
                "non-finite",
            )
    tol = _tolerances(rtol, atol, _NUMPY_TOLERANCES)
    as_float = np.complex128 if "c" in (got.dtype.kind, want.dtype.kind) else np.float64
    g, w = got.astype(as_float), want.astype(as_float)
    try:
        np.testing.assert_allclose(g, w, rtol=tol[0], atol=tol[1], equal_nan=True)
    except AssertionError:
        close = np.isclose(g, w, rtol=tol[0], atol=tol[1], equal_nan=True)
        largest = float(np.nan_to_num(np.abs(g - w)[~close], nan=np.inf).max())
        message = _differ(what, int((~close).sum()), got.size, largest, hidden, tol)
        detail = "" if hidden else _tensor_detail(torch.from_numpy(g), torch.from_numpy(w), torch.from_numpy(close))
        raise CheckFailed(message + detail, "value") from None


def _close_numbers(got: Any, want: float, what: str, rtol: float | None, atol: float | None, hidden: bool) -> None:
    if not _is_number(got):
        raise _wrong_type(what, got, "a number")
    if not math.isfinite(got) and math.isfinite(want):
        raise _fail(what, f"{_num(got)} where a finite number was expected", "non-finite")
    tol = _tolerances(rtol, atol, _NUMBER_TOLERANCES)
    if math.isclose(got, want, rel_tol=tol[0], abs_tol=tol[1]):
        return
    difference = abs(float(got) - float(want))
    if hidden:
        raise _fail(what, f"differs from the correct result by {difference:.2g}", "value")
    raise _fail(
        what,
        f"got {_num(got)} where {_num(want)} was expected (difference {difference:.3g}; "
        f"tolerance rtol={tol[0]:g}, atol={tol[1]:g})",
        "value",
    )


def _close_sequences(
    got: Any, want: list | tuple, what: str, rtol: float | None, atol: float | None, hidden: bool
) -> None:
    container = "a list" if isinstance(want, list) else "a tuple"
    if not isinstance(got, list | tuple):
        raise _wrong_type(what, got, f"{container} of numbers")
    if len(got) != len(want):
        raise _fail(what, f"{len(got)} numbers where {len(want)} were expected", "shape")
    for i, g in enumerate(got):
        if not _is_number(g):
            raise _fail(what, f"item {i} is {_kind(g)} where a number was expected", "type")
    nonfinite = sum(1 for g, w in zip(got, want) if not math.isfinite(g) and math.isfinite(w))
    if nonfinite:
        raise _fail(
            what,
            f"{nonfinite} of {len(got)} values are NaN or infinite where finite values were expected",
            "non-finite",
        )
    tol = _tolerances(rtol, atol, _NUMBER_TOLERANCES)
    wrong = [i for i, (g, w) in enumerate(zip(got, want)) if not math.isclose(g, w, rel_tol=tol[0], abs_tol=tol[1])]
    if not wrong:
        return
    largest = max(abs(float(got[i]) - float(want[i])) for i in wrong)
    message = _differ(what, len(wrong), len(got), largest, hidden, tol)
    if not hidden:
        message += f"\n  got:  [{', '.join(_num(g) for g in got)}]\n  want: [{', '.join(_num(w) for w in want)}]"
    raise CheckFailed(message, "value")


# --------------------------------------------------------------------------- expect_equal


def _equal(got: Any, want: Any, what: str, hidden: bool) -> None:
    if isinstance(want, torch.Tensor):
        _equal_tensors(got, want, what, hidden)
    elif isinstance(want, np.ndarray):
        if not isinstance(got, np.ndarray):
            raise _wrong_type(what, got, "a NumPy array")
        _same_layout(got, want, what, check_dtype=True)  # NumPy's names for the dtypes
        _equal_tensors(
            torch.from_numpy(np.ascontiguousarray(got)), torch.from_numpy(np.ascontiguousarray(want)), what, hidden
        )
    elif isinstance(want, list | tuple):
        _equal_sequences(got, want, what, hidden)
    elif isinstance(want, dict):
        _equal_dicts(got, want, what, hidden)
    elif isinstance(want, set | frozenset):
        _equal_sets(got, want, what, hidden)
    else:
        _equal_scalars(got, want, what, hidden)


def _same_kind(got: Any, want: Any) -> bool:
    """Whether ``got`` has the type ``want`` asks for: an int is not a float, a bool not an int, a list not a tuple."""
    if isinstance(want, bool | np.bool_):
        return isinstance(got, bool | np.bool_)
    if isinstance(want, numbers.Integral):
        return isinstance(got, numbers.Integral) and not isinstance(got, bool | np.bool_)
    if isinstance(want, numbers.Real):
        return _is_number(got)
    if want is None:
        return got is None
    return isinstance(got, type(want))


def _equal_scalars(got: Any, want: Any, what: str, hidden: bool) -> None:
    if not _same_kind(got, want):
        raise _wrong_type(what, got, _kind(want))
    if _is_number(want) and not math.isfinite(got) and math.isfinite(want):
        raise _fail(what, f"{_num(got)} where a finite number was expected", "non-finite")
    if got == want:
        return
    if hidden:
        raise _fail(what, "differs from the correct result", "value")
    shown = (_num(got), _num(want)) if _is_number(want) else (repr(got), repr(want))
    raise _fail(what, f"got {shown[0]} where {shown[1]} was expected", "value")


def _equal_sequences(got: Any, want: list | tuple, what: str, hidden: bool) -> None:
    container = "a list" if isinstance(want, list) else "a tuple"
    if not isinstance(got, list if isinstance(want, list) else tuple):
        raise _wrong_type(what, got, container)
    if len(got) != len(want):
        raise _fail(what, f"{len(got)} items where {len(want)} were expected", "shape")
    wrong = []
    for i, (g, w) in enumerate(zip(got, want)):
        try:
            _equal(g, w, f"{what}, item {i}", hidden)
        except CheckFailed as failure:
            if failure.prop != "value":
                raise  # a wrong type or shape inside says more than "differs"
            wrong.append(i)
    if not wrong:
        return
    if hidden:
        raise _fail(what, f"{len(wrong)} of {len(want)} items differ from the correct result", "value")
    which = f"item {wrong[0]}" if len(wrong) == 1 else f"items {', '.join(map(str, wrong))}"
    raise _fail(
        what, f"{which} differ{'s' if len(wrong) == 1 else ''} from the expected result" + _both(got, want), "value"
    )


def _equal_dicts(got: Any, want: dict, what: str, hidden: bool) -> None:
    if not isinstance(got, dict):
        raise _wrong_type(what, got, "a dict")
    _equal_sets(set(got), set(want), f"{what}, keys", hidden)
    for key in want:
        _equal(got[key], want[key], f"{what}[{key!r}]", hidden)


def _equal_sets(got: Any, want: set | frozenset, what: str, hidden: bool) -> None:
    if not isinstance(got, set | frozenset):
        raise _wrong_type(what, got, "a set")
    missing, unexpected = want - got, got - want
    if not (missing or unexpected):
        return
    if hidden:
        raise _fail(what, f"{len(missing)} missing and {len(unexpected)} unexpected items", "value")
    parts = [f"missing {sorted(missing, key=repr)}"] if missing else []
    parts += [f"unexpected {sorted(unexpected, key=repr)}"] if unexpected else []
    raise _fail(what, "; ".join(parts), "value")


def _equal_tensors(got: Any, want: torch.Tensor, what: str, hidden: bool) -> None:
    if not isinstance(got, torch.Tensor):
        raise _wrong_type(what, got, "a torch.Tensor")
    got, want = got.detach().cpu(), want.detach().cpu()
    _same_layout(got, want, what, check_dtype=True)
    _tensor_finite(got, want, what)
    same = got == want
    if got.is_floating_point() or got.is_complex():
        same |= torch.isnan(got) & torch.isnan(want)
    if bool(same.all()):
        return
    n = int((~same).sum())
    if hidden:
        raise _fail(what, f"{n} of {got.numel()} values differ from the correct result", "value")
    detail = _tensor_detail(got, want, same)
    raise _fail(what, f"{n} of {got.numel()} values differ from the expected result{detail}", "value")


def _both(got: Any, want: Any, limit: int = 300) -> str:
    """Got and want, one line each, cut at ``limit`` characters (visible checks only)."""

    def cut(text: str) -> str:
        return text if len(text) <= limit else text[: limit - 3] + "..."

    return f"\n  got:  {cut(repr(got))}\n  want: {cut(repr(want))}"
