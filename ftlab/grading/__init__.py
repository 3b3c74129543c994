"""Grading that students cannot game: sandboxed kernels, checks in the grader, nothing lost.

* :mod:`.executor` -- nbgrader's execute step: student cells in a sandboxed kernel,
  test cells in the grader (:class:`SandboxedExecute`);
* :mod:`.sandbox` -- bubblewrap namespaces and resource limits;
* :mod:`.session`, :mod:`.kernel`, :mod:`.codec` -- the two sides of a check and the
  safe format between them (JSON + safetensors; nothing from a student is unpickled);
* :mod:`.guards` -- library functions an exercise switches off (:func:`forbid`);
* :mod:`.driver` -- ``ftlab grade``: a class, N submissions at a time, one report;
* :mod:`.feedback`, :mod:`.feedback_page` -- feedback that explains: points per question, what to fix first;
* :mod:`.selfcheck` -- ``ftlab check``: a self-paced student's copy graded by the same driver, into a page;
* :mod:`.report` -- ``ftlab report``: a graded class at a glance (HTML + PNG).

What a test cell imports from here -- a check that never broadcasts, and says what was wrong:

>>> import torch
>>> from ftlab.grading import CheckFailed, expect_close
>>> try:
...     expect_close(torch.empty(0, 1, 1), torch.tensor([0.515, 0.485]), what="softmax(z)")
... except CheckFailed as exc:
...     print(exc)
softmax(z): shape (0, 1, 1) where (2,) was expected
"""

import pkgutil

import lazy_loader

# module -> the names the package exports from it
_EXPORTS = {
    "checks": ["CheckFailed", "expect", "expect_close", "expect_equal"],
    "guards": ["Forbidden", "forbid", "forbid_in_notebook"],
}

# Loaded on first use, like ``ftlab``'s: the checks import torch, which the grading service's queue and job runner
# do not need.
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__, [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")], _EXPORTS
)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
