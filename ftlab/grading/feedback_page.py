"""The self-paced feedback page: one self-contained HTML file a student can open anywhere.

Why not nbgrader's own feedback HTML: it prints every test cell's source, and a page
that a student keeps next to their notebook should hold only what they need -- each
check's title, points and failure message, and their own cells with their outputs.
The page has inline CSS and images as data URIs: no network, no template files.
The test cells' code, the setup cell's code and the instructor's solutions are never
written; the notebook handed in has been through ``ClearHiddenTests`` as well.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from nbformat.notebooknode import NotebookNode

from .feedback import SUMMARY_TAG, Outcome, fix_first, state_of, totals

__all__ = ["Page", "render"]

MAX_OUTPUT_CHARS = 5000  # per output: a flood of prints should not make a 50 MB page
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#1d2330;line-height:1.45}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #dde}
.note{background:#fff6dd;border-left:4px solid #e0a800;padding:.5rem .8rem;margin:.6rem 0}
.total{font-size:1.3rem;font-weight:600}
table{border-collapse:collapse;margin:.6rem 0} td,th{padding:.25rem .7rem;border-bottom:1px solid #e4e6ee;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.passed{color:#1b7a3a}.failed,.policy{color:#b3261e}.hand{color:#555}
.check{border:1px solid #dde;border-left:6px solid #1b7a3a;border-radius:4px;padding:.4rem .8rem;margin:.8rem 0}
.check.bad{border-left-color:#b3261e;background:#fdf3f2}
.msg{font-family:ui-monospace,Menlo,monospace;white-space:pre-wrap;margin:.3rem 0}
pre{background:#f5f6fa;padding:.6rem;overflow-x:auto;border-radius:4px;margin:.3rem 0}
pre.out{background:#fff;border:1px dashed #ccd} pre.err{background:#fdf3f2;border:1px solid #f0c8c4}
.label{font-size:.8rem;color:#667;margin-top:1rem}
"""


@dataclass
class Page:
    """What the page says besides the notebook: where it came from and how it was graded.

    >>> import nbformat
    >>> page = Page("Feedback on count_params.ipynb", [Outcome("check_count", "", 2.0, 2.0)], ["Visible checks only."])
    >>> text = render(page, nbformat.v4.new_notebook())
    >>> '<div class="note">Visible checks only.</div>' in text, '<p class="total">2 / 2 points</p>' in text
    (True, True)
    """

    title: str
    outcomes: list[Outcome]
    notes: list[str] = field(default_factory=list)  # shown in yellow at the top (visible checks only, ...)


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _text(value) -> str:
    text = "".join(value) if isinstance(value, list) else str(value)
    text = _ANSI.sub("", text)
    return text if len(text) <= MAX_OUTPUT_CHARS else text[:MAX_OUTPUT_CHARS] + "\n... (cut)"


def _output(out: NotebookNode) -> str:
    kind = out.get("output_type")
    if kind == "stream":
        return f'<pre class="out">{_esc(_text(out.get("text", "")))}</pre>'
    if kind == "error":
        trace = "\n".join(out.get("traceback", [])) or f"{out.get('ename')}: {out.get('evalue')}"
        return f'<pre class="err">{_esc(_text(trace))}</pre>'
    data = out.get("data", {})
    if "image/png" in data:
        png = "".join(data["image/png"]).replace("\n", "")
        return f'<img alt="figure" src="data:image/png;base64,{_esc(png)}">'
    if "text/plain" in data:  # a student's HTML output is shown as its text: the page runs no one's markup
        return f'<pre class="out">{_esc(_text(data["text/plain"]))}</pre>'
    return ""


def _check(o: Outcome) -> str:
    state = state_of(o)
    score = "–" if o.score is None else f"{o.score:g}"
    why = f'<div class="msg">{_esc(o.message)}</div>' if o.failed and o.message else ""
    return (
        f'<div class="check{" bad" if o.failed else ""}" id="{_esc(o.grade_id)}">'
        f"<b>{_esc(o.grade_id)}</b> — {score} / {o.points:g} points, <span class="
        f'"{"failed" if o.failed else "passed"}">{_esc(state)}</span>'
        f"<div>{_esc(o.title)}</div>{why}</div>"
    )


def _student_cell(cell: NotebookNode, label: str) -> str:
    body = f'<div class="label">{_esc(label)}</div><pre>{_esc(cell.source)}</pre>'
    return body + "".join(_output(o) for o in cell.get("outputs", []))


def _cells(nb: NotebookNode, by_id: dict[str, Outcome]) -> str:
    """The notebook as the student sees it: headings, their cells and outputs, each check's verdict."""
    parts = []
    for i, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        gid = meta.get("grade_id", "")
        if SUMMARY_TAG in cell.metadata.get("tags", []):
            continue
        if gid in by_id and not by_id[gid].by_hand:  # a check: its verdict, never its code
            parts.append(_check(by_id[gid]))
        elif meta.get("solution") or not meta.get("locked"):
            if cell.cell_type == "markdown" and not meta:  # the exercise's text: its headings guide the eye
                parts += [
                    f"<h3>{_esc(line.lstrip('#').strip())}</h3>"
                    for line in cell.source.splitlines()
                    if line.startswith("#")
                ]
                continue
            label = f"your answer: {gid}" if meta.get("solution") else f"your cell {i + 1}"
            if gid in by_id:
                o = by_id[gid]
                label += f" ({'–' if o.score is None else f'{o.score:g}'} / {o.points:g} points, graded by a person)"
            parts.append(_student_cell(cell, label))
        else:  # the course's own locked cells (setup): only an error is news
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            if errors:
                first = f"{errors[0].get('ename')}: {errors[0].get('evalue')}"  # no traceback: it quotes course code
                parts.append(
                    f'<div class="label">the course\'s {_esc(gid or "cell")} cell failed</div>'
                    f'<pre class="err">{_esc(_text(first))}</pre>'
                )
    return "\n".join(parts)


def _summary(page: Page) -> str:
    got, possible = totals(page.outcomes)
    rows = "".join(
        f'<tr><td><a href="#{_esc(o.grade_id)}">{_esc(o.grade_id)}</a></td>'
        f'<td class="n">{"–" if o.score is None else f"{o.score:g}"}</td><td class="n">{o.points:g}</td>'
        f'<td class="{"hand" if o.by_hand else "failed" if o.failed else "passed"}">{_esc(state_of(o))}</td></tr>'
        for o in page.outcomes
    )
    todo = fix_first(page.outcomes)
    items = "".join(
        f'<li><a href="#{_esc(o.grade_id)}">{_esc(o.grade_id)}</a> ({o.points:g} points): '
        f'<span class="msg">{_esc(o.message or "failed")}</span></li>'
        for o in todo
    )
    fix = f"<ol>{items}</ol>" if todo else "<p>Every autograded check passed.</p>"
    return (
        f'<p class="total">{got:g} / {possible:g} points</p>'
        "<table><tr><th>question</th><th>earned</th><th>possible</th><th></th></tr>"
        f"{rows}</table><h2>What to fix first</h2>{fix}"
    )


def render(page: Page, nb: NotebookNode) -> str:
    """The whole page: summary on top, then the notebook with each check's verdict in place.

    A check shows its verdict, never its code; the student's own cells are escaped.

    >>> import nbformat
    >>> answer = nbformat.v4.new_code_cell("print('<script>')")
    >>> answer.metadata.nbgrader = {"solution": True, "grade_id": "count_params"}
    >>> check = nbformat.v4.new_code_cell("expect_equal(count_params(model), 12)")
    >>> check.metadata.nbgrader = {"grade": True, "grade_id": "check_count"}
    >>> page = Page("Feedback", [Outcome("check_count", "Counts parameters.", 0.0, 2.0, "CheckFailed: 10, not 12")])
    >>> text = render(page, nbformat.v4.new_notebook(cells=[answer, check]))
    >>> "print(&#x27;&lt;script&gt;&#x27;)" in text, "CheckFailed: 10, not 12" in text, "expect_equal" in text
    (True, True, False)
    """
    notes = "".join(f'<div class="note">{_esc(n)}</div>' for n in page.notes)
    by_id = {o.grade_id: o for o in page.outcomes}
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(page.title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{_esc(page.title)}</h1>{notes}{_summary(page)}"
        f"<h2>Your notebook, check by check</h2>{_cells(nb, by_id)}</body></html>\n"
    )
