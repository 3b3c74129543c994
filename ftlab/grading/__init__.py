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

import importlib
from typing import Any

# Loaded on first use (PEP 562): the checks import torch, which a sandboxed kernel
# (``python -m ftlab.grading.kernel``) and ``ftlab grade`` do not need to start.
_EXPORTS = {
    "CheckFailed": "checks",
    "expect": "checks",
    "expect_close": "checks",
    "expect_equal": "checks",
    "Forbidden": "guards",
    "forbid": "guards",
    "forbid_in_notebook": "guards",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """``ftlab.grading.expect`` and the other exported names, imported from their module when first asked for."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
