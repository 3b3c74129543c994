"""Feedback that explains: what each check earned, why it failed, and what to fix first.

A graded notebook already holds everything a student needs to act on -- each check's
points (nbgrader's ``GetGrades`` puts ``score`` and ``points`` into the grade cells'
metadata) and, for a failed check, the message its error output carries
(``CheckFailed: softmax(z): shape (0, 1, 1) where (2,) was expected``,
``PolicyViolation: ...``). This module reads them into :class:`Outcome` rows, so that
the summary at the top of the class's feedback (:class:`FeedbackSummary`, an nbgrader
preprocessor in ``GenerateFeedback.preprocessors``) and the self-paced page of
``ftlab check`` (:mod:`.feedback_page`) say the same thing.

Nothing here reads a test's code beyond its docstring's first paragraph (the check's
title, visible in the student's copy too): the expected values of hidden checks never
appear in their messages (:mod:`.checks`), and the test source is not needed.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import nbformat
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor

from .protocol import POLICY

__all__ = [
    "Outcome",
    "outcomes",
    "fix_first",
    "totals",
    "state_of",
    "summary_markdown",
    "FeedbackSummary",
    "SUMMARY_TAG",
    "check_title",
    "first_error",
    "HiddenChecksPassFail",
]

SUMMARY_TAG = "ftlab-feedback-summary"  # the inserted cell's tag: inserted once, however often feedback is made


@dataclass
class Outcome:
    """One graded cell: a check (autograded) or a written answer (graded by hand).

    >>> o = Outcome("check_count", "count_params counts every parameter.", 0.0, 2.0, "CheckFailed: 10, not 12")
    >>> o.failed, o.policy
    (True, False)
    >>> Outcome("explain_freezing", "", None, 2.0, by_hand=True).failed  # a person has yet to grade it
    False
    """

    grade_id: str
    title: str  # the check's docstring (its first paragraph), or "" for a written answer
    score: float | None  # None: not graded yet (a written answer waiting for a person)
    points: float
    message: str = ""  # "Name: why" for a failed check
    by_hand: bool = False

    @property
    def failed(self) -> bool:
        return not self.by_hand and (self.score or 0) < self.points

    @property
    def policy(self) -> bool:
        return self.message.startswith(POLICY)


def _meta(cell: NotebookNode) -> dict:
    return cell.metadata.get("nbgrader", {})


def check_title(source: str) -> str:
    r"""A test cell's docstring, first paragraph on one line ("" when it has none or does not parse).

    >>> check_title("'''softmax(z): each row\n   sums to 1.\n\nHidden inputs: random logits.'''\nexpect(True, '')")
    'softmax(z): each row sums to 1.'
    >>> check_title("expect(")
    ''
    """
    try:
        doc = ast.get_docstring(ast.parse(source)) or ""
    except SyntaxError:
        return ""
    return " ".join(doc.split("\n\n")[0].split())


def first_error(cell: NotebookNode) -> str:
    """``Name: message`` of a cell's first error output, "" when it has none.

    >>> cell = nbformat.v4.new_code_cell("expect_equal(count_params(model), 12)")
    >>> cell.outputs = [nbformat.v4.new_output("error", ename="CheckFailed", evalue="count_params: 10, not 12")]
    >>> first_error(cell)
    'CheckFailed: count_params: 10, not 12'
    >>> cell.outputs = [nbformat.v4.new_output("error", ename="NotImplementedError", evalue="")]
    >>> first_error(cell)
    'NotImplementedError (not answered yet)'
    """
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            value = str(out.get("evalue", "")).strip().rstrip(":").strip()
            text = f"{out.get('ename', 'Error')}: {value}" if value else str(out.get("ename", "Error"))
            return text + " (not answered yet)" if text.endswith("NotImplementedError") else text
    return ""


def outcomes(nb: NotebookNode, scores: dict[str, tuple[float | None, float]] | None = None) -> list[Outcome]:
    r"""The graded cells of ``nb`` in notebook order.

    ``scores`` maps a grade id to (score, points); without it, the scores ``GetGrades``
    wrote into the cells' metadata are used.

    >>> check = nbformat.v4.new_code_cell("'''count_params counts every parameter.'''\nexpect(False, '10, not 12')")
    >>> check.metadata.nbgrader = {"grade": True, "grade_id": "check_count", "points": 2, "score": 0}
    >>> check.outputs = [nbformat.v4.new_output("error", ename="CheckFailed", evalue="10, not 12")]
    >>> [o] = outcomes(nbformat.v4.new_notebook(cells=[check]))
    >>> o.title, o.score, o.points, o.message
    ('count_params counts every parameter.', 0, 2.0, 'CheckFailed: 10, not 12')
    """
    found = []
    for cell in nb.cells:
        meta = _meta(cell)
        if not meta.get("grade") or not meta.get("grade_id"):
            continue
        gid = meta["grade_id"]
        score, points = scores[gid] if scores and gid in scores else (meta.get("score"), meta.get("points", 0))
        by_hand = bool(meta.get("solution"))
        title = "" if by_hand else check_title(cell.source)
        found.append(Outcome(gid, title, score, float(points or 0), "" if by_hand else first_error(cell), by_hand))
    return found


def fix_first(found: list[Outcome]) -> list[Outcome]:
    """The failed checks to work on, in order: what the own-work policy set to 0 first, then notebook order.

    >>> found = [
    ...     Outcome("check_count", "", 2.0, 2.0),
    ...     Outcome("check_softmax", "", 0.0, 3.0, "CheckFailed: softmax(z): rows do not sum to 1"),
    ...     Outcome("check_lrs", "", 0.0, 1.0, "PolicyViolation: cell 5, line 2: uses layerwise_lrs"),
    ... ]
    >>> [o.grade_id for o in fix_first(found)]
    ['check_lrs', 'check_softmax']
    """
    failed = [o for o in found if o.failed]
    return [o for o in failed if o.policy] + [o for o in failed if not o.policy]


def totals(found: list[Outcome]) -> tuple[float, float]:
    """(points earned, points possible) over every graded cell.

    >>> totals([Outcome("check_count", "", 2.0, 2.0), Outcome("explain", "", None, 3.0, by_hand=True)])
    (2.0, 5.0)
    """
    return sum(o.score or 0 for o in found), sum(o.points for o in found)


def state_of(o: Outcome) -> str:
    """One word or three for a graded cell: passed, failed, policy, graded by a person.

    >>> state_of(Outcome("check_count", "", 2.0, 2.0))
    'passed'
    >>> state_of(Outcome("check_lrs", "", 0.0, 1.0, "PolicyViolation: uses layerwise_lrs"))
    'not your own work (policy)'
    """
    if o.by_hand:
        return "graded by a person"
    return "passed" if not o.failed else ("not your own work (policy)" if o.policy else "failed")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summary_markdown(found: list[Outcome]) -> str:
    r"""The summary at the top of a feedback notebook: total, points per question, what to fix first.

    >>> found = [Outcome("check_count", "", 2.0, 2.0), Outcome("check_softmax", "", 0.0, 3.0, "CheckFailed: a | b")]
    >>> print(summary_markdown(found))
    ## Your result: 2 / 5 points
    <BLANKLINE>
    | question | points | possible | |
    |---|---:|---:|---|
    | `check_count` | 2 | 2 | passed |
    | `check_softmax` | 0 | 3 | failed |
    <BLANKLINE>
    ### What to fix first
    <BLANKLINE>
    1. `check_softmax` (3 points): CheckFailed: a \| b
    """
    got, possible = totals(found)
    lines = [
        f"## Your result: {got:g} / {possible:g} points",
        "",
        "| question | points | possible | |",
        "|---|---:|---:|---|",
    ]
    for o in found:
        state = state_of(o)
        score = "–" if o.score is None else f"{o.score:g}"
        lines.append(f"| `{o.grade_id}` | {score} | {o.points:g} | {state} |")
    todo = fix_first(found)
    lines += ["", "### What to fix first", ""]
    if not todo:
        lines.append("Every autograded check passed.")
    for i, o in enumerate(todo, 1):
        lines.append(f"{i}. `{o.grade_id}` ({o.points:g} points): {_cell(o.message or 'failed')}")
    return "\n".join(lines)


class FeedbackSummary(NbGraderPreprocessor):
    """Insert the summary as the first cell of a feedback notebook (after ``GetGrades``).

    nbgrader's feedback shows scores next to each cell but no overview; a student with
    a 40-cell notebook should not have to hunt for the one check that failed.

    >>> check = nbformat.v4.new_code_cell("expect(True, '')")
    >>> check.metadata.nbgrader = {"grade": True, "grade_id": "check_count", "points": 2, "score": 2}
    >>> nb, _ = FeedbackSummary().preprocess(nbformat.v4.new_notebook(cells=[check]), {})
    >>> nb.cells[0].source.splitlines()[0], nb.cells[0].metadata.tags
    ('## Your result: 2 / 2 points', ['ftlab-feedback-summary'])
    """

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        nb.cells = [c for c in nb.cells if SUMMARY_TAG not in c.metadata.get("tags", [])]
        cell = nbformat.v4.new_markdown_cell(summary_markdown(outcomes(nb)))
        cell.metadata["tags"] = [SUMMARY_TAG]
        nb.cells.insert(0, cell)
        return nb, resources


HIDDEN_MARK = "### BEGIN HIDDEN TESTS"


class HiddenChecksPassFail(NbGraderPreprocessor):
    r"""In feedback, a test cell with hidden checks shows only "passed" or "failed: <message>".

    ``ClearHiddenTests`` removes the hidden tests' source, but not the cell's outputs: an
    error's traceback quotes the failing line -- the hidden test itself, expected values
    included. The check's message (:mod:`.checks`: with ``hidden=True`` it names what
    failed, never the values) is what the student may see. Put it before
    ``ClearHiddenTests`` (which removes the marker it looks for); ``ftlab serve`` does.

    >>> check = nbformat.v4.new_code_cell(HIDDEN_MARK + "\nexpect_close(softmax(z), want, hidden=True)")
    >>> check.metadata.nbgrader = {"grade": True, "grade_id": "check_softmax", "points": 3, "score": 0}
    >>> check.outputs = [nbformat.v4.new_output("error", ename="CheckFailed", evalue="softmax: 2 of 2 values differ",
    ...                                         traceback=["expect_close(softmax(z), torch.tensor([0.515, 0.485]))"])]
    >>> nb, _ = HiddenChecksPassFail().preprocess(nbformat.v4.new_notebook(cells=[check]), {})
    >>> nb.cells[0].outputs[0].text
    'failed: CheckFailed: softmax: 2 of 2 values differ\n'
    """

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        for cell in nb.cells:
            meta = _meta(cell)
            if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
                continue
            if HIDDEN_MARK not in cell.source:
                continue
            message = first_error(cell)
            score, points = meta.get("score"), meta.get("points", 0)
            passed = not message and (score is None or score >= points)
            text = "passed\n" if passed else f"failed: {message or 'no points'}\n"
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        return nb, resources
