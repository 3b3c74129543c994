"""The assignments' notebooks: house rules, exercises generated from the sources, ``nbgrader validate``, and
:class:`RobustExecute` against crashing and runaway kernels.

Fast tests read the notebooks and the config; slow ones run real nbgrader commands offline on CPU
with ``FTLAB_FAST=1``. The class end to end is in ``test_nbgrader.py``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import nbformat
import pytest
from course import ASSIGNMENTS, ROOT, TRAINING, WRITTEN, env, nbgrader
from course import is_test as _is_test
from course import make_course as _make_course
from course import meta as _meta
from course import notebooks as _notebooks

# --------------------------------------------------------------------------- fast: the files themselves


def test_every_assignment_has_a_source_and_an_exercise():
    for folder in ("solutions", "exercises"):
        found = {p.relative_to(ROOT / folder).as_posix() for p in (ROOT / folder).glob("*/*.ipynb")}
        assert found == {f"{a}/{nb}.ipynb" for a, (nb, _) in ASSIGNMENTS.items()}, folder


@pytest.mark.parametrize("folder", ["solutions", "exercises"])
def test_notebooks_have_no_outputs(folder):
    for name, nb in _notebooks(folder).items():
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (name, cell.id)


def test_points_and_written_answers():
    for name, nb in _notebooks("solutions").items():
        points = sum(_meta(c).get("points", 0) for c in nb.cells if _meta(c).get("grade"))
        assert points == ASSIGNMENTS[name][1], name
        assert f"({points} points)" in nb.cells[0].source, f"{name}: the title states the total"
    for grade_id, (assignment, points) in WRITTEN.items():
        nb = _notebooks("solutions")[assignment]
        (cell,) = [c for c in nb.cells if _meta(c).get("grade_id") == grade_id]
        assert cell.cell_type == "markdown" and _meta(cell)["solution"] and _meta(cell)["points"] == points
        assert not _meta(cell)["locked"]
        assert f"**Rubric ({points} points;" in cell.source, f"{grade_id}: the instructor's copy has a rubric"


def test_source_cells_follow_the_house_rules():
    for name, nb in _notebooks("solutions").items():
        ids = [_meta(c)["grade_id"] for c in nb.cells if _meta(c)]
        assert len(ids) == len(set(ids)), name
        setup = nb.cells[1]
        assert _meta(setup)["locked"] and "ftlab.seed_everything(" in setup.source, f"{name}: locked setup cell"
        for cell in nb.cells:
            src = cell.source
            assert not re.search(r"^\s*from\s+\S+\s+import\s+\*", src, re.M), f"{name}: star import"
            assert "interact" not in src and "input(" not in src, f"{name}: no blocking widgets or input"
            assert src.count("### BEGIN HIDDEN TESTS") == src.count("### END HIDDEN TESTS")
            if cell.cell_type == "code" and _meta(cell).get("solution"):
                assert src.count("### BEGIN SOLUTION") == src.count("### END SOLUTION") >= 1, (name, cell.id)
            if _is_test(cell):
                assert _meta(cell)["locked"] and _meta(cell)["points"] > 0, (name, cell.id)
                assert re.match(r'"""\S.*"""\n', src), f"{name}/{cell.id}: a test cell opens with a docstring"
    for name in TRAINING:
        assert "FAST = ftlab.fast_mode()" in _notebooks("solutions")[name].cells[1].source, name


def test_exercises_hold_no_solutions_or_hidden_tests():
    for name, nb in _notebooks("exercises").items():
        text = "\n".join(c.source for c in nb.cells)
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text, name
        assert "Rubric" not in text, f"{name}: a rubric leaked into the student version"
        assert "YOUR CODE HERE" in text, name
        assert ("YOUR ANSWER HERE" in text) == (name in {a for a, _ in WRITTEN.values()}), name


def test_nbgrader_config():
    from traitlets.config.loader import PyFileConfigLoader

    c = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    assert c.CourseDirectory.source_directory == "solutions"
    assert c.CourseDirectory.release_directory == "exercises"
    assert c.Autograde.autograde_preprocessors[0] == "ftlab.grading.executor.SandboxedExecute"
    assert "nbgrader.preprocessors.ClearHiddenTests" in c.GenerateFeedback.preprocessors
    assert c.OverwriteCells.add_missing_cells is True
    for assignment in TRAINING:
        settings = c.RobustExecute.overrides[ASSIGNMENTS[assignment][0]]
        assert settings["timeout"] > c.Execute.timeout, assignment
        assert settings["notebook_timeout"] > c.RobustExecute.notebook_timeout, assignment


# --------------------------------------------------------------------------- slow: nbgrader commands


def _normalized(nb: nbformat.NotebookNode) -> dict:
    return {
        "metadata": nb.metadata,
        "cells": [{k: c.get(k) for k in ("cell_type", "id", "metadata", "source")} for c in nb.cells],
    }


@pytest.mark.slow
def test_exercises_are_generated_from_solutions(tmp_path):
    course = _make_course(tmp_path)
    nbgrader("generate_assignment", "*", "--force", cwd=course)
    for assignment, (name, _) in ASSIGNMENTS.items():
        fresh = nbformat.read(course / "exercises" / assignment / f"{name}.ipynb", as_version=4)
        committed = nbformat.read(ROOT / "exercises" / assignment / f"{name}.ipynb", as_version=4)
        assert json.dumps(_normalized(fresh), sort_keys=True) == json.dumps(_normalized(committed), sort_keys=True), (
            f'exercises/{assignment} is stale: run `nbgrader generate_assignment "*" --force` in the repository root'
        )


@pytest.fixture(scope="module")
def validated() -> dict[str, str]:
    """`nbgrader validate` on the solutions and `--invert` on the exercises, the two at once (2 cores)."""
    runs = {
        "solutions": ["validate", "solutions/*/*.ipynb"],
        "exercises": ["validate", "--invert", "exercises/*/*.ipynb"],
    }
    procs = {
        key: subprocess.Popen(
            [sys.executable, "-m", "nbgrader", *args], cwd=ROOT, env=env(), stdout=subprocess.PIPE, text=True
        )
        for key, args in runs.items()
    }
    return {key: proc.communicate(timeout=1200)[0] for key, proc in procs.items()}


@pytest.mark.slow
def test_validate_passes_on_solutions(validated):
    out = validated["solutions"]
    assert out.count("Success! Your notebook passes all the tests.") == len(ASSIGNMENTS), out[-3000:]


@pytest.mark.slow
def test_validate_fails_on_exercises(validated):
    out = validated["exercises"]
    assert out.count("Success! The notebook does not pass any tests.") == len(ASSIGNMENTS), out[-3000:]


# --------------------------------------------------------------------------- slow: RobustExecute


@pytest.fixture(scope="module")
def grading():
    from ftlab.grading import executor

    return executor


def _execute(grading, sources: list[str], **traits) -> list[list[str]]:
    """Run code cells under RobustExecute as notebook "toy"; per cell, its error names and printed text."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb, _ = grading.RobustExecute(**traits).preprocess(nb, {"nbgrader": {"notebook": "toy"}})
    return [[o.get("ename") or o.get("text", "").strip() for o in c.outputs] for c in nb.cells]


@pytest.mark.slow
def test_robust_execute_replaces_a_dead_kernel(grading):
    outputs = _execute(grading, ["x = 1", "import os\nos._exit(1)", "print('fresh')", "x"], timeout=60)
    assert outputs == [[], ["DeadKernelError"], ["fresh"], ["NameError"]]


@pytest.mark.slow
def test_robust_execute_replaces_a_kernel_that_ignores_interrupts(grading):
    loop = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    outputs = _execute(grading, [loop, "print('next')"], timeout=3)
    assert outputs[0][-1] == "CellTimeoutError" and outputs[1] == ["next"]


@pytest.mark.slow
def test_robust_execute_bounds_the_whole_notebook(grading):
    start = time.monotonic()
    sources = ["import time\ntime.sleep(30)", "y = 1", "assert y == 1"]
    outputs = _execute(grading, sources, timeout=60, overrides={"toy": {"notebook_timeout": 3}})
    assert "CellTimeoutError" in outputs[0]
    assert outputs[1:] == [["NotebookTimeoutError"]] * 2  # not run, and a test cell scores 0
    assert time.monotonic() - start < 30
