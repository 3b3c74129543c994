"""The examples in the library's docstrings are true, and every public name has one: they are the examples the
site's reference shows next to each signature."""

import doctest
import importlib
import inspect
import pkgutil

import pytest

import ftlab


def _modules() -> list[str]:
    """``ftlab`` and every module under it that the reference documents (private ones and ``__main__`` left out)."""
    names = [m.name for m in pkgutil.walk_packages(ftlab.__path__, "ftlab.")]
    return ["ftlab", *sorted(n for n in names if not any(p.startswith("_") for p in n.split(".")))]


MODULES = _modules()


def _public(module) -> list[str]:
    """The functions and classes a module defines under a public name: each has a reference entry."""
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and getattr(obj, "__module__", None) == module.__name__
        and (inspect.isfunction(obj) or inspect.isclass(obj))
    ]


def test_the_walk_finds_the_modules():
    assert {"ftlab.train", "ftlab.layers", "ftlab.grading.checks", "ftlab.grading.sandbox"} <= set(MODULES)
    assert "ftlab.__main__" not in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} docstring examples failed"


def test_every_public_function_and_class_has_an_example():
    """The reference shows an example under each public name's signature: a name without one is listed here."""
    missing = [
        f"{name}.{item}"
        for name in MODULES
        for item in _public(importlib.import_module(name))
        if ">>>" not in (inspect.getdoc(getattr(importlib.import_module(name), item)) or "")
    ]
    assert missing == [], f"{len(missing)} public names without a docstring example: {missing}"
