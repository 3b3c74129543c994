"""A course as an instructor sets one up from this repository, for the tests that grade: one set of helpers.

``classroom`` (the class tests), ``test_cluster`` (Dask) and ``benchmarks/grading.py`` build
courses, fill in answers and call ``nbgrader`` / ``ftlab grade`` the same way through here.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


# assignment -> (notebook, total points)
ASSIGNMENTS = {
    "ps1_parameters": ("parameters", 10),
    "ps2_layerwise_lr": ("layerwise_lr", 10),
    "ps3_freezing": ("freezing", 12),
    "ps4_bert_head": ("bert_head", 10),
    "ps5_finetune": ("finetune", 10),
    "ps6_strategy_choice": ("strategy_choice", 10),
    "ps7_domain_shift": ("domain_shift", 10),
    "ps8_minilm_polarity": ("minilm_polarity", 10),
    "ps9_pipeline": ("pipeline", 12),
}
# train a network: FAST settings, long timeouts
TRAINING = {"ps5_finetune", "ps7_domain_shift", "ps8_minilm_polarity", "ps9_pipeline"}
# the written answers, graded by hand: grade_id -> (assignment, points)
WRITTEN = {
    "why_smaller_lr": ("ps2_layerwise_lr", 3),
    "which_layers_first": ("ps3_freezing", 2),
    "risk_unfreezing_too_many": ("ps3_freezing", 2),
    "justify_strategy": ("ps6_strategy_choice", 4),
    "interpretation": ("ps7_domain_shift", 3),
    "phrases_answer": ("ps8_minilm_polarity", 2),
    "clinic_answer": ("ps9_pipeline", 3),
}


def env(**extra: str) -> dict[str, str]:
    """The environment nbgrader and ``ftlab grade`` run in: this venv's scripts first, small settings."""
    out = dict(os.environ)
    out["PATH"] = f"{BIN}{os.pathsep}{out.get('PATH', '')}"  # nbgrader calls its own scripts (alembic)
    out["FTLAB_FAST"] = "1"
    out["OMP_NUM_THREADS"] = "1"  # nbgrader and a kernel share 2 cores; OpenMP spinning costs 10x
    out["PYTHONHASHSEED"] = "0"
    out.update(extra)
    return out


def nbgrader(*args: str, cwd: Path, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"nbgrader {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
        )
    return proc


def ftlab_grade(course: Path, *args: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "ftlab", "grade", *args],
        cwd=course,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def report(path: Path) -> dict[str, dict]:
    """A report CSV of ``ftlab grade``, one row per student."""
    with open(path) as fh:
        return {r["student"]: r for r in csv.DictReader(fh)}


def meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def notebooks(folder: str) -> dict[str, nbformat.NotebookNode]:
    return {p.parent.name: nbformat.read(p, as_version=4) for p in sorted((ROOT / folder).glob("*/*.ipynb"))}


def is_test(cell) -> bool:
    return cell.cell_type == "code" and meta(cell).get("grade") and not meta(cell).get("solution")


def make_course(parent: Path) -> Path:
    """A fresh course directory with this repository's sources and config."""
    course = parent / "course"
    course.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints")
    shutil.copytree(ROOT / "solutions", course / "solutions", ignore=ignore)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    return course


def answers(assignment: str, root: Path = ROOT) -> dict[str, str]:
    """The instructor's solution cells (code and written), by grade_id, as a student would write them: without
    the ``### BEGIN/END SOLUTION`` lines (so the instructor's notebook is recognisable wherever it leaks)."""
    (path,) = (root / "solutions" / assignment).glob("*.ipynb")
    nb = nbformat.read(path, as_version=4)
    return {
        meta(c)["grade_id"]: "\n".join(
            line
            for line in c.source.splitlines()
            if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line
        )
        for c in nb.cells
        if meta(c).get("solution")
    }


def work_on(path: Path, replaced: dict[str, str], drop: tuple[str, ...] = (), extra: list[str] = ()) -> None:
    """Edit a student's copy: answer cells by grade_id, cells dropped, extra code cells after the setup cell."""
    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if meta(c).get("grade_id") not in drop]
    for cell in nb.cells:
        if meta(cell).get("grade_id") in replaced:
            cell.source = replaced[meta(cell)["grade_id"]]
    nb.cells[2:2] = [nbformat.v4.new_code_cell(src) for src in extra]
    nbformat.write(nb, path)


def submit_copies(course: Path, assignment: str, students: dict[str, dict[str, str]]) -> None:
    """Put each student's copy of the released exercise in ``submitted/``, with their answers."""
    (release,) = (course / "exercises" / assignment).glob("*.ipynb")
    for student, replaced in students.items():
        folder = course / "submitted" / student / assignment
        folder.mkdir(parents=True)
        shutil.copy(release, folder / release.name)
        work_on(folder / release.name, replaced)


TOY_SETUP = "import time\n\nfrom ftlab.grading import expect_equal\n\nSECONDS = 4  # each check takes this long"


TOY_HIDDEN = (
    '"""answer() holds on a hidden input."""\n### BEGIN HIDDEN TESTS\n'
    'expect_equal(answer() * 1000 + 7, 42007, what="answer(), scaled", hidden=True)\n### END HIDDEN TESTS'
)


def toy_notebook(hidden: bool = False) -> nbformat.NotebookNode:
    """The toy assignment's source: one answer, one 2-point check that takes ``SECONDS`` when answered right.

    ``hidden``: and a 1-point check that is all hidden test (:data:`TOY_HIDDEN`).
    """
    cells = [
        nbformat.v4.new_markdown_cell("# A toy assignment (2 points)"),
        nbformat.v4.new_code_cell(TOY_SETUP),
        nbformat.v4.new_code_cell(
            "def answer():\n    ### BEGIN SOLUTION\n    time.sleep(SECONDS)\n    return 42\n    ### END SOLUTION"
        ),
        nbformat.v4.new_code_cell('"""answer() is 42."""\nexpect_equal(answer(), 42, what="answer()")'),
    ]
    for cell, nbg in zip(
        cells[1:],
        [
            {"grade": False, "solution": False, "locked": True, "grade_id": "setup"},
            {"grade": False, "solution": True, "locked": False, "grade_id": "answer"},
            {"grade": True, "solution": False, "locked": True, "grade_id": "test_answer", "points": 2},
        ],
        strict=True,
    ):
        cell.metadata["nbgrader"] = {**nbg, "schema_version": 3}
    if hidden:
        cells.append(nbformat.v4.new_code_cell(TOY_HIDDEN))
        meta = {"grade": True, "solution": False, "locked": True, "grade_id": "test_hidden", "points": 1}
        cells[-1].metadata["nbgrader"] = {**meta, "schema_version": 3}
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def make_toy_course(parent: Path, assignment: str = "toy", hidden: bool = False) -> Path:
    """A one-check course whose grade takes a few seconds (no torch in the notebook): for the driver's plumbing."""
    course = parent / "course"
    (course / "source" / assignment).mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(
        (ROOT / "nbgrader_config.py").read_text().replace('"solutions"', '"source"')
    )
    nbformat.write(toy_notebook(hidden), course / "source" / assignment / "toy.ipynb")
    nbgrader("generate_assignment", assignment, "--force", cwd=course)
    return course
