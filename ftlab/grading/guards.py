"""Name the library functions an exercise replaces -- and switch them off, as a second layer.

What :func:`forbid` names is what the grader's own-work policy
(:mod:`ftlab.grading.policy`) enforces, by reading the student's code: that decides the
grade. The runtime guards below are a second layer and a teaching aid -- a student who
calls the library while working sees :class:`Forbidden` at once -- but they run in the
student's process, which the student controls, so no grade depends on them.

An exercise that asks for ``count_params`` must not be passed by
``return ftlab.count_parameters(model)``. Test cells say what is off limits::

    with forbid("ftlab.count_parameters"):
        got = count_params(model)        # the student's function; the library raises inside it

and a setup cell can switch functions off for the whole notebook with
:func:`forbid_in_notebook`. The same lines work in three places:

* **in the student's own kernel** (JupyterLab, ``nbgrader validate``): the functions
  raise :class:`Forbidden` while the block runs;
* **in the grader** (:mod:`ftlab.grading.executor`), where test cells run outside the
  student's kernel: the names travel with every call into the student's kernel;
* **in the sandboxed student kernel**, where :mod:`ftlab.grading.kernel` installed the
  guards *before the first student cell ran*.

A guard on a Python function replaces the function's code, so every reference to it
(``from ftlab import count_parameters as c`` included) is guarded; a builtin
(``torch.softmax``) is guarded where it is looked up by name.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Forbidden", "forbid", "forbid_in_notebook", "install", "active_names", "activate", "deactivate"]


class Forbidden(RuntimeError):
    """Raised by a library function the exercise asks the student to write themselves.

    >>> import ftlab
    >>> with forbid("ftlab.layerwise_lrs"):
    ...     ftlab.layerwise_lrs(1e-3, 0.1, 4)
    Traceback (most recent call last):
    ...
    ftlab.grading.guards.Forbidden: ftlab.optim.layerwise_lrs is not available in this exercise: compute it yourself
    """


_originals: dict[str, Callable] = {}  # guard key -> the original callable
_keys: dict[str, str] = {}  # dotted name -> guard key
_active: dict[str, int] = {}  # guard key -> how many forbid blocks hold it
_grader: list[list[str]] | None = None  # in the grader: the names of the enclosing forbid blocks


def _resolve(name: str) -> tuple[Any, str, Any]:
    """(owner, attribute, object) for a dotted name such as ``torch.nn.functional.softmax``."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:-1]:
                owner = getattr(owner, attr)
            return owner, parts[-1], getattr(owner, parts[-1])
        except AttributeError:
            break
    raise ValueError(f"cannot forbid {name!r}: not a dotted name of an importable function")


def _dispatch(key: str, args: tuple, kwargs: dict) -> Any:
    if _active.get(key):
        raise Forbidden(f"{key} is not available in this exercise: compute it yourself")
    return _originals[key](*args, **kwargs)


_GUARD_SOURCE = "def {name}(*args, **kwargs):\n    return __ftlab_forbid_dispatch__({key!r}, args, kwargs)\n"


def install(name: str) -> str:
    """Guard the function called ``name`` (idempotent); return its guard key.

    A guard does nothing until a :func:`forbid` block (or :func:`activate`) switches it on.

    >>> install("ftlab.layerwise_lrs")  # the key: where the function is defined
    'ftlab.optim.layerwise_lrs'
    >>> import ftlab
    >>> ftlab.layerwise_lrs(1e-3, 0.5, 2)
    [0.0005, 0.001]
    >>> install("math.pi")
    Traceback (most recent call last):
    ...
    ValueError: cannot forbid 'math.pi': it is a float, not a function
    """
    if name in _keys:
        return _keys[name]
    owner, attr, obj = _resolve(name)
    if isinstance(obj, types.FunctionType) and not obj.__closure__:
        key = f"{obj.__module__}.{obj.__qualname__}"
        if key not in _originals:
            clone = types.FunctionType(obj.__code__, obj.__globals__, obj.__name__, obj.__defaults__)
            clone.__kwdefaults__ = obj.__kwdefaults__
            _originals[key] = clone
            scope: dict[str, Any] = {}
            exec(compile(_GUARD_SOURCE.format(name=obj.__name__, key=key), f"<forbid {key}>", "exec"), scope)
            obj.__globals__["__ftlab_forbid_dispatch__"] = _dispatch
            obj.__code__ = scope[obj.__name__].__code__  # every reference to obj now goes through the guard
    elif callable(obj):
        key = name
        if key not in _originals:
            _originals[key] = obj

            def guard(*args: Any, _key: str = key, **kwargs: Any) -> Any:
                return _dispatch(_key, args, kwargs)

            guard.__name__ = guard.__qualname__ = attr
            guard.__doc__ = getattr(obj, "__doc__", None)
            setattr(owner, attr, guard)
    else:
        raise ValueError(f"cannot forbid {name!r}: it is a {type(obj).__name__}, not a function")
    _keys[name] = key
    return key


@contextmanager
def _collecting() -> Iterator[None]:
    """Used by the grader: forbid blocks record their names instead of guarding this process."""
    global _grader
    saved, _grader = _grader, []
    try:
        yield
    finally:
        _grader = saved


def active_names() -> list[str]:
    """In the grader: the names every enclosing forbid block holds, to send with a call into the kernel.

    >>> with _collecting(), forbid("torch.softmax"), forbid("ftlab.count_parameters"):  # as in a grader session
    ...     active_names()
    ['ftlab.count_parameters', 'torch.softmax']
    >>> active_names()
    []
    """
    return sorted({n for names in (_grader or []) for n in names})


def _check(names: Iterable[str]) -> list[str]:
    names = list(names)
    for name in names:
        if not isinstance(name, str) or "." not in name:
            raise ValueError(f"forbid takes dotted names such as 'torch.softmax', got {name!r}")
    return names


@contextmanager
def forbid(*names: str) -> Iterator[None]:
    """While the block runs, calling any of the named functions raises :class:`Forbidden`.

    >>> import ftlab
    >>> with forbid("ftlab.layerwise_lrs"):
    ...     ftlab.layerwise_lrs(1e-3, 0.1, 4)
    Traceback (most recent call last):
    ...
    ftlab.grading.guards.Forbidden: ...
    >>> ftlab.layerwise_lrs(1e-3, 0.5, 2)  # allowed again after the block
    [0.0005, 0.001]
    """
    names = _check(names)
    if _grader is not None:
        _grader.append(names)
        try:
            yield
        finally:
            _grader.remove(names)
        return
    keys = [install(n) for n in names]
    for key in keys:
        _active[key] = _active.get(key, 0) + 1
    try:
        yield
    finally:
        for key in keys:
            _active[key] -= 1


def forbid_in_notebook(*names: str) -> None:
    """From here on, for the rest of the notebook, the named functions raise :class:`Forbidden`.

    >>> import ftlab
    >>> forbid_in_notebook("ftlab.layerwise_lrs")
    >>> ftlab.layerwise_lrs(1e-3, 0.5, 2)
    Traceback (most recent call last):
    ...
    ftlab.grading.guards.Forbidden: ftlab.optim.layerwise_lrs is not available in this exercise: compute it yourself
    >>> deactivate(["ftlab.optim.layerwise_lrs"])  # (a notebook never does; the example cleans up)
    """
    names = _check(names)
    if _grader is not None:
        _grader.insert(0, names)  # stays for the whole grading session
        return
    for key in (install(n) for n in names):
        _active[key] = _active.get(key, 0) + 1


def activate(names: Iterable[str]) -> list[str]:
    """Kernel side of a check: switch the guards for ``names`` on; return the keys to pass to deactivate.

    >>> import ftlab
    >>> keys = activate(["ftlab.layerwise_lrs"])  # the names a check's request carries
    >>> ftlab.layerwise_lrs(1e-3, 0.5, 2)
    Traceback (most recent call last):
    ...
    ftlab.grading.guards.Forbidden: ftlab.optim.layerwise_lrs is not available in this exercise: compute it yourself
    >>> deactivate(keys)
    >>> ftlab.layerwise_lrs(1e-3, 0.5, 2)
    [0.0005, 0.001]
    """
    keys = [install(n) for n in names]
    for key in keys:
        _active[key] = _active.get(key, 0) + 1
    return keys


def deactivate(keys: Iterable[str]) -> None:
    """Kernel side, after the call: switch off what :func:`activate` switched on (never below zero).

    >>> import ftlab
    >>> keys = activate(["ftlab.layerwise_lrs"])
    >>> deactivate(keys)
    >>> deactivate(keys)  # once too often: still off, and a later forbid block still works
    >>> ftlab.layerwise_lrs(1e-3, 0.5, 2)
    [0.0005, 0.001]
    """
    for key in keys:
        _active[key] = max(0, _active.get(key, 0) - 1)
