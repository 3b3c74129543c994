"""Reading a submission (ftlab.grading.intake): bytes from regular single-link files, never a path to follow."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import nbformat
import pytest

from ftlab.grading.intake import (
    UnsafeFile,
    copy_tree_safely,
    read_regular_file,
    read_submission,
    restore_instructor_cells,
)

ROOT = Path(__file__).resolve().parents[1]
SECRET = b"the instructor's hidden tests"


@pytest.fixture
def course(tmp_path):
    """A course root with an instructor file outside the student's folder, and alice's submission folder."""
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "secret.ipynb").write_bytes(SECRET)
    folder = tmp_path / "submitted" / "alice" / "ps1"
    folder.mkdir(parents=True)
    (folder / "parameters.ipynb").write_bytes(b'{"honest": true}')
    return tmp_path


def test_a_regular_file_is_read(course):
    intake = read_submission(course, "submitted/alice/ps1", ["parameters"])
    assert intake.files == {"parameters.ipynb": b'{"honest": true}'} and intake.left_out == []


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo", "symlink-to-dir"])
def test_links_and_special_files_are_left_out_and_named(course, kind):
    folder = course / "submitted" / "alice" / "ps1"
    target = folder / "parameters.ipynb"
    target.unlink()
    if kind == "symlink":
        target.symlink_to(course / "solutions" / "secret.ipynb")
    elif kind == "hardlink":
        os.link(course / "solutions" / "secret.ipynb", target)
    elif kind == "fifo":
        os.mkfifo(target)  # opening it for reading would block forever
    else:
        target.symlink_to(course / "solutions")
    intake = read_submission(course, "submitted/alice/ps1", ["parameters"])
    assert intake.files == {}, intake
    (note,) = intake.notes()
    assert note.startswith("left out parameters.ipynb: ") and SECRET.decode() not in note
    assert {"symlink": "symbolic link", "hardlink": "hard link", "fifo": "FIFO", "symlink-to-dir": "symbolic link"}[
        kind
    ] in note


def test_a_linked_student_folder_is_refused_as_a_whole(course):
    """submitted/mallory -> submitted/alice: mallory would be graded on alice's work."""
    (course / "submitted" / "mallory").symlink_to(course / "submitted" / "alice")
    intake = read_submission(course, "submitted/mallory/ps1", ["parameters"])
    assert intake.files == {} and "cannot be read safely" in intake.problem


def test_only_the_assignments_files_are_taken_each_under_a_cap(course):
    folder = course / "submitted" / "alice" / "ps1"
    (folder / "data.csv").write_bytes(b"x" * 100)
    (folder / "notes.txt").write_bytes(b"not asked for")
    (folder / "extra.ipynb").write_bytes(b"{}")
    intake = read_submission(course, "submitted/alice/ps1", ["parameters"], ["data.csv"], max_file_bytes=10)
    assert set(intake.files) == {"parameters.ipynb"}
    assert any(n.startswith("left out data.csv: data.csv is 100 bytes, over the limit of 10") for n in intake.notes())
    assert any(n.startswith("left out extra.ipynb: not part of the assignment") for n in intake.notes())
    assert not any("notes.txt" in n for n in intake.notes())  # other files: ignored, not graded


def test_read_regular_file_refuses_links_on_the_way(course):
    (course / "submitted" / "alice" / "link").symlink_to(course / "solutions")
    fd = os.open(course, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(UnsafeFile, match="link"):
            read_regular_file("submitted/alice/link/secret.ipynb", 1 << 20, dir_fd=fd)
        with pytest.raises(UnsafeFile, match="not a relative path"):
            read_regular_file(str(course / "solutions" / "secret.ipynb"), 1 << 20, dir_fd=fd)
        assert read_regular_file("solutions/secret.ipynb", 1 << 20, dir_fd=fd) == SECRET
    finally:
        os.close(fd)


def test_collecting_copies_no_link(course, tmp_path):
    inbound = tmp_path / "exchange" / "inbound" / "mallory+ps1+2026-12-06 10:00:00.000000 UTC+abc"
    inbound.mkdir(parents=True)
    (inbound / "parameters.ipynb").symlink_to(course / "solutions" / "secret.ipynb")
    (inbound / "timestamp.txt").write_text("2026-12-06 10:00:00.000000 UTC")
    os.link(course / "solutions" / "secret.ipynb", inbound / "copy.ipynb")
    (inbound / "sub").mkdir()
    (inbound / "sub" / "answers.txt").write_text("mine")
    dest = tmp_path / "collected"
    skipped = copy_tree_safely(inbound, dest)
    copied = {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert copied == {"timestamp.txt": b"2026-12-06 10:00:00.000000 UTC", "sub/answers.txt": b"mine"}
    assert sorted(s.split(":")[0] for s in skipped) == ["copy.ipynb", "parameters.ipynb"]
    linked = tmp_path / "exchange" / "inbound" / "eve+ps1+x"
    linked.symlink_to(course / "solutions")
    with pytest.raises(OSError):
        copy_tree_safely(linked, tmp_path / "eve")


def test_the_instructors_metadata_replaces_the_students():
    source = nbformat.read(ROOT / "solutions" / "ps1_parameters" / "parameters.ipynb", as_version=4)
    nb = copy.deepcopy(source)
    tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_linear_params"]
    tests[0].metadata.nbgrader["points"] = 100
    bonus = nbformat.v4.new_code_cell("assert True")
    bonus.metadata["nbgrader"] = {"grade": True, "grade_id": "bonus", "points": 50, "locked": True, "solution": False}
    twin = copy.deepcopy(tests[0])
    nb.cells += [bonus, twin]
    notes = restore_instructor_cells(nb, source)
    assert tests[0].metadata.nbgrader == source.cells[nb.cells.index(tests[0])].metadata.nbgrader
    assert "nbgrader" not in bonus.metadata and "nbgrader" not in twin.metadata
    assert any("test_linear_params was edited (points)" in n for n in notes), notes
    assert any("'bonus' is marked for grading but is not one of the instructor's cells" in n for n in notes), notes
    assert any("is a second copy of an instructor's cell" in n for n in notes), notes
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells if c.metadata.get("nbgrader")]
    assert len(ids) == len(set(ids))


def test_an_honest_copy_of_the_release_has_nothing_to_note():
    """The released copy carries metadata the source does not (checksums, cell types): compared with the
    release, an untouched or honestly answered notebook is not reported as tampered with."""
    released = nbformat.read(ROOT / "exercises" / "ps1_parameters" / "parameters.ipynb", as_version=4)
    honest = copy.deepcopy(released)
    for cell in honest.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = "def f():\n    return 1\n"
    assert restore_instructor_cells(honest, released) == []
    assert [c.metadata for c in honest.cells] == [c.metadata for c in released.cells]
