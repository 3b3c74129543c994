"""The examples in the library's docstrings are true."""

import doctest

import pytest

import ftlab.grading.checks
import ftlab.memory
import ftlab.optim


@pytest.mark.parametrize("module", [ftlab.optim, ftlab.memory, ftlab.grading.checks])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
