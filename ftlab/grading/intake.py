"""A submission is data, never a path to follow.

Everything a student hands in is read here, once, before anything else looks at it:

* only **regular files with a single link** are accepted -- a symbolic link, a hard
  link (``st_nlink > 1``: it could be the instructor's solution or the gradebook),
  a device, a FIFO or a socket is left out and named in the report;
* files are opened **without following links** (``O_NOFOLLOW``, every folder on the
  way opened relative to its parent with ``O_NOFOLLOW | O_DIRECTORY``) and re-checked
  on the open file, so a link swapped in after the check is not followed either
  (:func:`~.safefile.read_regular_file`);
* only the assignment's notebooks and the extra files its source declares are taken,
  each under a size cap;
* a notebook's nbgrader metadata is the instructor's, not the student's
  (:func:`restore_instructor_cells`): edited points, a deleted or duplicated test, a
  "bonus" test the student added -- the honest answers are graded and the tampering
  is noted.

:class:`SafeExchangeCollect` is nbgrader's ``collect`` with the same rules (nbgrader
copies the exchange with ``copytree``, which follows links).
"""

from __future__ import annotations

import copy
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from nbformat.notebooknode import NotebookNode
from nbgrader.exchange.default.collect import ExchangeCollect

from .safefile import _DIR, UnsafeFile, _describe, _open_dir, read_regular_file

__all__ = [
    "Intake",
    "read_submission",
    "read_regular_file",
    "UnsafeFile",
    "restore_instructor_cells",
    "copy_tree_safely",
    "SafeExchangeCollect",
    "MAX_NOTEBOOK_BYTES",
    "MAX_FILE_BYTES",
    "collect",
]

MAX_NOTEBOOK_BYTES = 32 << 20  # a notebook of answers is kilobytes; outputs with figures a few MiB
MAX_FILE_BYTES = 64 << 20  # an extra file the assignment declares (data, a saved model)


@dataclass
class Intake:
    """What was accepted from one submission folder, and what was left out (and why).

    >>> Intake({"count_params.ipynb": b"{}"}, ["data.csv: a symbolic link"]).notes()
    ['left out data.csv: a symbolic link']
    """

    files: dict[str, bytes] = field(default_factory=dict)  # relative path -> bytes
    left_out: list[str] = field(default_factory=list)  # "name: why", for the report
    problem: str | None = None  # the folder itself could not be read safely

    def notes(self) -> list[str]:
        return [f"left out {item}" for item in self.left_out]


def _walk_names(dir_fd: int, prefix: str = "", depth: int = 0) -> list[tuple[str, int]]:
    """(relative name, lstat mode) of everything below ``dir_fd``, folders entered without following links."""
    found = []
    for entry in sorted(os.listdir(dir_fd)):
        rel = f"{prefix}{entry}"
        mode = os.lstat(entry, dir_fd=dir_fd).st_mode
        found.append((rel, mode))
        if stat.S_ISDIR(mode) and depth < 8:
            try:
                sub = os.open(entry, _DIR, dir_fd=dir_fd)
            except OSError:
                continue
            try:
                found.extend(_walk_names(sub, rel + "/", depth + 1))
            finally:
                os.close(sub)
    return found


def _open_below(base: str | Path, rel: str | Path) -> int:
    """A folder descriptor for ``base/rel``: ``base`` is the instructor's (trusted), ``rel`` is walked without links."""
    base_fd = os.open(os.path.realpath(base), _DIR)
    try:
        return _open_dir(list(Path(rel).parts), base_fd)
    finally:
        os.close(base_fd)


def read_submission(
    base: str | Path,
    folder: str | Path,
    notebooks: list[str],
    extra_files: list[str] = (),
    max_notebook_bytes: int = MAX_NOTEBOOK_BYTES,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> Intake:
    """Read ``base/folder``'s ``<notebook>.ipynb`` files and the declared ``extra_files``, as bytes, safely.

    ``base`` is the instructor's (the course root); ``folder`` (``submitted/<student>/<assignment>``)
    must not be reached through a link: ``submitted/<student>`` being a link to another
    student's folder is refused as a whole. Files that are not asked
    for are ignored; asked-for files that are links, hard links or special files are
    left out and named.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as course:
    ...     folder = Path(course, "submitted/alice/ps1_parameters")
    ...     folder.mkdir(parents=True)
    ...     _ = (folder / "count_params.ipynb").write_text("{}")
    ...     (folder / "solution.ipynb").symlink_to("/course/source/ps1_parameters/count_params.ipynb")
    ...     Path(course, "submitted/mallory").symlink_to(folder.parent)  # another student's work
    ...     print(read_submission(course, "submitted/alice/ps1_parameters", ["count_params"]))
    ...     print(read_submission(course, "submitted/mallory/ps1_parameters", ["count_params"]).problem)
    Intake(files={'count_params.ipynb': b'{}'}, left_out=['solution.ipynb: a symbolic link'], problem=None)
    the submission folder cannot be read safely: mallory is a link or not a folder
    """
    intake = Intake()
    try:
        dir_fd = _open_below(base, folder)
    except FileNotFoundError:
        intake.problem = "no submission folder"
        return intake
    except OSError as exc:
        intake.problem = f"the submission folder cannot be read safely: {exc.strerror or exc}"
        return intake
    try:
        wanted = {f"{name}.ipynb": max_notebook_bytes for name in notebooks}
        wanted.update(dict.fromkeys(extra_files, max_file_bytes))
        present = dict(_walk_names(dir_fd))
        for rel, mode in present.items():
            if rel in wanted or stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode) or rel.endswith(".ipynb"):
                intake.left_out.append(
                    f"{rel}: {_describe(mode) if not stat.S_ISREG(mode) else 'not part of the assignment'}"
                )
        for rel, cap in wanted.items():
            if rel not in present:
                continue
            try:
                intake.files[rel] = read_regular_file(rel, cap, dir_fd=dir_fd)
            except OSError as exc:
                intake.left_out.append(f"{rel}: {exc.strerror or exc}")
    finally:
        os.close(dir_fd)
    return intake


# --------------------------------------------------------------------------- the instructor's cells


def _meta(cell: NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def restore_instructor_cells(nb: NotebookNode, source: NotebookNode) -> list[str]:
    """Give every nbgrader cell of ``nb`` the instructor's metadata; return notes on what the student changed.

    ``source`` is the notebook as released to students (``generate_assignment`` adds
    checksums and cell types to the metadata), or the source notebook when the release
    is not kept.

    nbgrader trusts a submission's cell metadata: a student who raises a test's points,
    marks their own cell as a test, or duplicates a grade id makes ``autograde`` fail
    or score the wrong thing. Here the source notebook decides: a cell whose grade id
    the source has gets the source's metadata (the source text of locked cells is put
    back by nbgrader itself); a second cell with the same id, or an id the source does
    not have, becomes an ordinary cell of the student's. Cells the student deleted are
    re-added by nbgrader (``OverwriteCells.add_missing_cells``).

    >>> import nbformat
    >>> source = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("expect_equal(count_params(m), 12)")])
    >>> source.cells[0].metadata.nbgrader = {"grade": True, "grade_id": "check_count", "points": 2, "locked": True}
    >>> nb = copy.deepcopy(source)
    >>> nb.cells[0].metadata.nbgrader["points"] = 100
    >>> nb.cells.append(nbformat.v4.new_code_cell("pass", metadata={"nbgrader": {"grade": True, "grade_id": "bonus"}}))
    >>> for note in restore_instructor_cells(nb, source):
    ...     print(note)
    the metadata of check_count was edited (points); the instructor's was used
    cell 'bonus' is marked for grading but is not one of the instructor's cells; graded as ordinary code
    >>> nb.cells[0].metadata.nbgrader["points"], "nbgrader" in nb.cells[1].metadata
    (2, False)
    """
    by_id = {_meta(c).get("grade_id"): c for c in source.cells if _meta(c).get("grade_id")}
    notes: list[str] = []
    seen: set[str] = set()
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if meta is None:
            continue
        grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
        own = by_id.get(grade_id) if isinstance(grade_id, str) else None
        if own is None or grade_id in seen or own.cell_type != cell.cell_type:
            del cell.metadata["nbgrader"]
            if meta.get("grade") or meta.get("locked") or meta.get("solution"):
                what = (
                    "a second copy of an instructor's cell" if grade_id in seen else "not one of the instructor's cells"
                )
                notes.append(f"cell {grade_id!r} is marked for grading but is {what}; graded as ordinary code")
            continue
        seen.add(grade_id)
        wanted = copy.deepcopy(own.metadata["nbgrader"])
        # (the checksum is put back too, unremarked: nbgrader compares the cell's source with it and reports an edit)
        changed = sorted(k for k in set(wanted) | set(meta) if k != "checksum" and wanted.get(k) != meta.get(k))
        if changed:
            notes.append(f"the metadata of {grade_id} was edited ({', '.join(changed)}); the instructor's was used")
        cell.metadata["nbgrader"] = wanted
    return notes


# --------------------------------------------------------------------------- collecting from the exchange


def copy_tree_safely(src: str | Path, dest: str | Path, max_file_bytes: int = MAX_FILE_BYTES, log=None) -> list[str]:
    """Copy the regular single-link files below ``src`` to ``dest``; return what was left out and why.

    ``src``'s last component (the student's folder in the exchange) must not be a link. Nothing is followed:
    links, hard links, devices and FIFOs are skipped, and so are files over ``max_file_bytes``.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     src = Path(tmp, "inbound", "alice+ps1_parameters+2024-05-01 12:00:00 UTC")
    ...     src.mkdir(parents=True)
    ...     _ = (src / "count_params.ipynb").write_text("{}")
    ...     (src / "notes.txt").symlink_to("/home/instructor/solutions.txt")
    ...     print(copy_tree_safely(src, Path(tmp, "submitted", "alice")))
    ...     print(sorted(p.name for p in Path(tmp, "submitted", "alice").iterdir()))
    ['notes.txt: notes.txt is a symbolic link']
    ['count_params.ipynb']
    """
    src, dest = Path(src).absolute(), Path(dest)
    skipped: list[str] = []
    dir_fd = _open_below(src.parent, src.name)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for rel, mode in _walk_names(dir_fd):
            target = dest / rel
            if stat.S_ISDIR(mode):
                target.mkdir(parents=True, exist_ok=True)
                continue
            try:
                data = read_regular_file(rel, max_file_bytes, dir_fd=dir_fd)
            except OSError as exc:
                skipped.append(f"{rel}: {exc.strerror or exc}")
                if log is not None:
                    log.warning("not collected: %s/%s (%s)", src, rel, exc.strerror or exc)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as fh:
                fh.write(data)
    finally:
        os.close(dir_fd)
    return skipped


class SafeExchangeCollect(ExchangeCollect):
    """nbgrader's collect without following links in the exchange (``nbgrader collect`` and the Formgrader).

    Selected in ``nbgrader_config.py`` with
    ``c.ExchangeFactory.collect = "ftlab.grading.intake.SafeExchangeCollect"``.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     src = Path(tmp, "alice+ps1_parameters+2024-05-01 12:00:00 UTC")
    ...     src.mkdir()
    ...     _ = (src / "count_params.ipynb").write_text("{}")
    ...     (src / "gradebook.db").symlink_to("/course/gradebook.db")
    ...     SafeExchangeCollect().do_copy(src, Path(tmp, "alice"))  # the link: a warning in nbgrader's log
    ...     sorted(p.name for p in Path(tmp, "alice").iterdir())
    ['count_params.ipynb']
    """

    def do_copy(self, src, dest, log=None):
        try:
            skipped = copy_tree_safely(src, dest, log=self.log)
        except OSError as exc:
            self.log.error("not collected: %s cannot be read safely (%s)", src, exc.strerror or exc)
            return
        for item in skipped:
            self.log.warning("left out of %s: %s", dest, item)


def collect(assignment: str, nbgrader_args: list[str] = ()) -> int:
    """``ftlab collect ASSIGNMENT``: ``nbgrader collect`` with :class:`SafeExchangeCollect`, whatever the config says.

    The exit status is nbgrader's. The command it runs (here without running it):

    >>> from unittest import mock
    >>> with mock.patch("subprocess.call", return_value=0) as call:
    ...     collect("ps1_parameters", ["--update"])
    0
    >>> print(*call.call_args.args[0][1:])
    -m nbgrader collect ps1_parameters --update --ExchangeFactory.collect=ftlab.grading.intake.SafeExchangeCollect
    """
    import subprocess
    import sys

    forced = "--ExchangeFactory.collect=ftlab.grading.intake.SafeExchangeCollect"
    return subprocess.call([sys.executable, "-m", "nbgrader", "collect", assignment, *nbgrader_args, forced])
