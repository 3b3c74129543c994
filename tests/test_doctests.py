"""The examples in the library's docstrings are true: they are the examples the site's reference shows."""

import doctest
import importlib

import pytest

# By name: the package's ``ftlab.lr_find`` attribute is the function, not the module.
MODULES = [
    "ftlab.layers",
    "ftlab.optim",
    "ftlab.utils",
    "ftlab.train",
    "ftlab.lr_find",
    "ftlab.memory",
    "ftlab.strategies",
    "ftlab.grading.checks",
    "ftlab.grading.guards",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
