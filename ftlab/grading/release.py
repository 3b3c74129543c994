"""Feedback for one submission: made from its grades, released to that student only.

nbgrader's ``release_feedback`` puts ``<hash>.html`` into the exchange's ``feedback/``
folder, the hash made from the submission's secret (``submission_secret.txt``, written
by the student's ``nbgrader submit``) and the notebook's name; the student's
*Fetch Feedback* looks for exactly those hashes of their own submissions. So a file
released here is found by the submission it answers and by nobody else's -- the
folder is not listable by students (mode 0711, as nbgrader makes it).

The pages are made by ``nbgrader generate_feedback`` in the grading job's own process,
in its private course (:mod:`.jobproc`), with the config :func:`feedback_config` gives:
with hidden checks shown pass/fail (:class:`~.feedback.HiddenChecksPassFail`) the
hidden test cells' outputs are replaced by "passed" or "failed: <message>" -- a
traceback would show the test's code, and with it the expected values.

:func:`status_page` is the page a submission gets when it is not graded: over the
attempt limit, or grading failed twice.
"""

from __future__ import annotations

import html
import os
import re
import stat
import tempfile
from pathlib import Path

from nbgrader.utils import notebook_hash

from .safefile import read_regular_file

__all__ = ["read_secret", "release", "status_page", "feedback_config"]

_SECRET = re.compile(r"[0-9a-fA-F]{16,256}")
PASS_FAIL = "ftlab.grading.feedback.HiddenChecksPassFail"
CLEAR_HIDDEN = "nbgrader.preprocessors.ClearHiddenTests"


def read_secret(inbound: Path, name: str) -> str:
    r"""The submission's secret (hex, as ``nbgrader submit`` writes it); ValueError if it is missing or odd.

    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> inbound = Path(tmp.name)
    >>> (inbound / "alice+ps1").mkdir()
    >>> _ = (inbound / "alice+ps1" / "submission_secret.txt").write_text("0123456789abcdef0123456789abcdef\n")
    >>> read_secret(inbound, "alice+ps1")
    '0123456789abcdef0123456789abcdef'
    >>> _ = (inbound / "alice+ps1" / "submission_secret.txt").write_text("../../bob/feedback")
    >>> read_secret(inbound, "alice+ps1")
    Traceback (most recent call last):
    ...
    ValueError: submission_secret.txt is not a submission secret (hex digits)
    >>> tmp.cleanup()
    """
    dir_fd = os.open(os.path.realpath(inbound), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        data = read_regular_file(Path(name) / "submission_secret.txt", 1024, dir_fd=dir_fd)
    except OSError as exc:
        raise ValueError(f"submission_secret.txt cannot be read safely: {exc.strerror or exc}") from None
    finally:
        os.close(dir_fd)
    secret = data.decode("ascii", "replace").strip()
    if not _SECRET.fullmatch(secret):
        raise ValueError("submission_secret.txt is not a submission secret (hex digits)")
    return secret


def release(exchange_course: Path, secret: str, pages: dict[str, bytes]) -> list[Path]:
    """Put each notebook's page where that submission's *Fetch Feedback* finds it; atomically (rename).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as exchange_course:
    ...     [page] = release(Path(exchange_course), "ab12" * 8, {"count_params": b"<html>...</html>"})
    ...     page.name, oct(page.parent.stat().st_mode & 0o777)  # nbgrader's hash of secret and notebook
    ('bf6c6e8357fa629610d3c1e25f9f6b48.html', '0o711')
    """
    folder = exchange_course / "feedback"
    if folder.is_symlink():
        raise OSError(f"{folder} is a link: refusing to release feedback through it")
    folder.mkdir(exist_ok=True)
    folder.chmod(stat.S_IRWXU | stat.S_IXGRP | stat.S_IXOTH)  # 0711: a student opens their own hash, lists nothing
    written = []
    for notebook, data in pages.items():
        target = folder / f"{notebook_hash(secret=secret, notebook_id=notebook)}.html"
        fd, tmp = tempfile.mkstemp(prefix=".release-", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        written.append(target)
    return written


def status_page(title: str, message: str, assignment: str, notebook: str) -> bytes:
    """A plain page for a submission that was not graded (limit reached, grading failed).

    >>> page = status_page("Not graded", "All 3 attempts <this hour> used.", "ps1_parameters", "count_params")
    >>> b"<h1>Not graded</h1><p>All 3 attempts &lt;this hour&gt; used.</p>" in page
    True
    """
    body = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(assignment)} / {html.escape(notebook)}: {html.escape(title)}</title></head>"
        "<body style='font-family: sans-serif; max-width: 50em; margin: 2em auto'>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>"
        f"<p style='color: #666'>{html.escape(assignment)} / {html.escape(notebook)}.ipynb</p></body></html>"
    )
    return body.encode()


def feedback_config(course_config: str, hidden_pass_fail: bool) -> str:
    r"""The course's nbgrader config, with the pass/fail view of hidden checks put before ClearHiddenTests.

    >>> from traitlets.config import Config
    >>> c = Config()
    >>> c.GenerateFeedback.preprocessors = ["nbgrader.preprocessors.GetGrades", CLEAR_HIDDEN]
    >>> exec(feedback_config("# the course's nbgrader_config.py", hidden_pass_fail=True), {"c": c})
    >>> print(*c.GenerateFeedback.preprocessors, sep="\n")
    nbgrader.preprocessors.GetGrades
    ftlab.grading.feedback.HiddenChecksPassFail
    nbgrader.preprocessors.ClearHiddenTests
    """
    if not hidden_pass_fail:
        return course_config
    return course_config + (
        "\n\n# ftlab serve: hidden checks show passed/failed and their message only\n"
        f"_pp = [p for p in c.GenerateFeedback.preprocessors if p != {PASS_FAIL!r}]\n"
        f"_pp.insert(_pp.index({CLEAR_HIDDEN!r}) if {CLEAR_HIDDEN!r} in _pp else len(_pp), {PASS_FAIL!r})\n"
        "c.GenerateFeedback.preprocessors = _pp\n"
    )
