"""The website's generated pages, from files alone (fast): the site build itself is in test_lessons.py.

Assignment pages come from exercises/ and hold no solution, hidden test or rubric; each lesson links to the
assignments the syllabus map names; a widget becomes its default state and a note; the link checker finds a
broken link; the README's links to the guides resolve.
"""

from __future__ import annotations

import re

import nbformat
import pytest
from sitecheck import MARKERS, ROOT, build_site, problems_with_links, secret_lines

WIDGET_VIEW = build_site.WIDGET_VIEW
ASSIGNMENTS = sorted(p.name for p in (ROOT / "exercises").iterdir() if p.is_dir())


@pytest.mark.parametrize("stem", ASSIGNMENTS)
def test_assignment_page_has_the_questions_and_no_secret(stem):
    taught = build_site.syllabus_links()
    lessons = [(lesson, lesson) for lesson in sorted(taught) if stem in taught[lesson]]
    text = build_site.assignment_page(stem, lessons)
    nb = nbformat.read(build_site.exercise_notebook(stem), as_version=4)
    headings = [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()]
    assert all(h in text for h in headings if h.startswith("## ")), "a question is missing"
    assert text.startswith("# Assignment ") and f"exercises/{stem}/" in text
    for marker in MARKERS:
        assert marker not in text
    leaked = [line for _, line in secret_lines() if line in " ".join(text.replace("`", "").split())]
    assert not leaked, leaked


def test_assignment_page_refuses_a_solution_marker(tmp_path, monkeypatch):
    nb = nbformat.read(build_site.exercise_notebook("ps2_layerwise_lr"), as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code")
    cell.source = cell.source.replace("# YOUR CODE HERE", "### BEGIN SOLUTION\n    return []\n    ### END SOLUTION")
    (tmp_path / "ps2_layerwise_lr").mkdir()
    nbformat.write(nb, tmp_path / "ps2_layerwise_lr" / "layerwise_lr.ipynb")
    monkeypatch.setattr(build_site, "EXERCISES", tmp_path)
    with pytest.raises(ValueError, match="solution or hidden-test marker"):
        build_site.assignment_page("ps2_layerwise_lr", [])


def test_every_lesson_links_to_an_assignment():
    taught = build_site.syllabus_links()
    lessons = sorted(p.stem for p in (ROOT / "lessons").glob("*.ipynb"))
    assert set(taught) == set(lessons)
    assert all(taught[lesson] and taught[lesson] <= set(ASSIGNMENTS) for lesson in lessons), taught


def _executed_with_widget() -> nbformat.NotebookNode:
    """A lesson's first cells, as nbclient leaves them after displaying an explorer (a VBox: slider + Output)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 9. A lesson\n\nIts opening."), nbformat.v4.new_code_cell("x")]
    nb.cells[1].outputs = [
        nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": "box"}, "text/plain": "VBox()"})
    ]
    drawn = [
        {"output_type": "stream", "name": "stdout", "text": "top 3 of 5 groups trainable\n"},
        {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}, "metadata": {}},
    ]
    nb.metadata["widgets"] = {
        build_site.WIDGET_STATE: {
            "state": {
                "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_row", "IPY_MODEL_out"]}},
                "row": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_k"]}},
                "k": {"model_name": "IntSliderModel", "state": {"description": "groups unfrozen", "value": 3}},
                "out": {"model_name": "OutputModel", "state": {"outputs": drawn}},
            }
        }
    }
    nb.metadata["ftlab_run"] = {"mode": "fast", "seconds": 75.4, "cpus": 2, "date": "2026-01-01"}
    return nb


def test_a_widget_becomes_its_default_state_and_a_note():
    page = build_site.lesson_page(_executed_with_widget(), [("ps3_freezing", "Assignment 3")])
    assert "widgets" not in page.metadata  # no widget state: no page loads the widget JavaScript
    title, note, intro, code = page.cells
    assert title.source == "# 9. A lesson" and intro.source == "Its opening."
    assert "**Run time:** 1 min 15 s with the fast settings" in note.source
    assert "[Assignment 3](../assignments/ps3_freezing.md)" in note.source
    outputs = code.outputs
    assert [o.output_type for o in outputs] == ["display_data", "stream", "display_data"]
    assert "*groups unfrozen = 3*" in outputs[0].data["text/markdown"] and "make lab" in outputs[0].data["text/markdown"]
    assert outputs[1].text.startswith("top 3 of 5") and "image/png" in outputs[2].data
    assert not any(WIDGET_VIEW in o.get("data", {}) for o in outputs)


def test_cache_key_follows_code_and_mode_not_prose():
    nb = _executed_with_widget()
    key = build_site.cache_key(nb, fast=True)
    nb.cells[0].source += " More prose."
    assert build_site.cache_key(nb, fast=True) == key  # a prose edit does not re-run the lesson
    assert build_site.cache_key(nb, fast=False) != key  # fast numbers are never served as full ones
    nb.cells[1].source = "y"
    assert build_site.cache_key(nb, fast=True) != key


def test_link_checker_finds_what_is_broken(tmp_path):
    (tmp_path / "a.html").write_text(
        '<p id="here"><a href="b.html#there">ok</a> <a href="#here">self</a> <a href="b.html#nowhere">x</a>'
        ' <a href="gone.html">y</a> <script src="https://cdn.example/x.js"></script>'
        ' <a href="https://example.org/">a link out is fine</a></p>'
    )
    (tmp_path / "b.html").write_text('<h1 id="there">B</h1>')
    problems = problems_with_links(tmp_path)
    assert len(problems) == 3
    assert any("nowhere" in p for p in problems) and any("gone.html" in p for p in problems)
    assert any("loads from the network" in p for p in problems)


def test_readme_links_resolve_and_guides_are_not_copied_back():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    assert "docs/guides/students.md" in links and "docs/guides/threat-model.md" in links
    for link in links:
        if not link.startswith("http"):
            assert (ROOT / link).exists(), link
    assert "make site" in readme
    for guide in (ROOT / "docs" / "guides").glob("*.md"):  # each guide's text lives in one place
        paragraphs = [p for p in guide.read_text(encoding="utf-8").split("\n\n") if len(p) > 200]
        assert not [p for p in paragraphs if p in readme], guide.name


@pytest.mark.slow
def test_lessons_run_side_by_side_each_with_its_own_settings(tmp_path):
    """run_lessons(jobs=2): two notebooks at once, each kernel in fast mode and in its folder, results by path."""
    paths = []
    for name in ("a", "b", "c"):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(f"import os, time\ntime.sleep(1)\nprint({name!r}, os.environ['FTLAB_FAST'], os.getcwd())")]
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
        paths.append(tmp_path / f"{name}.ipynb")
    runs = build_site.run_lessons(fast=True, cache=tmp_path / "cache", paths=paths, reuse=False, jobs=2)
    assert list(runs) == paths
    assert [runs[p].cells[0].outputs[0].text.split() for p in paths] == [[n, "1", str(tmp_path)] for n in "abc"]
    with pytest.raises(ValueError, match="jobs must be a positive int, got 0"):
        build_site.run_lessons(fast=True, cache=tmp_path / "cache", paths=paths, jobs=0)
