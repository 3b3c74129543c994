"""One file a student may have made, read safely: regular, single link, no link followed, size-capped.

The primitive under :mod:`.intake` (a submission's files), :mod:`.release` (a
submission's secret) and :mod:`.protocol` (the reply file the sandboxed kernel
writes). It needs the standard library only, so that reading a kernel's reply does
not import nbgrader.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["UnsafeFile", "read_regular_file"]

_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_DIR = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


class UnsafeFile(OSError):
    """A path that is not a regular single-link file reached without links, or is too large.

    An ``OSError``, so that callers report it as they report any unreadable file, by its ``strerror``:

    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> _ = Path(tmp.name, "answers.ipynb").write_text("{}")
    >>> os.link(Path(tmp.name, "answers.ipynb"), Path(tmp.name, "gradebook.db"))  # a second name for one file
    >>> folder = os.open(tmp.name, os.O_RDONLY | os.O_DIRECTORY)
    >>> try:
    ...     read_regular_file("answers.ipynb", 1024, dir_fd=folder)
    ... except OSError as exc:
    ...     print(type(exc).__name__, exc.errno == errno.EMLINK, exc.strerror)
    UnsafeFile True answers.ipynb is a hard link (2 names for one file)
    >>> os.close(folder); tmp.cleanup()
    """


def _describe(mode: int) -> str:
    for test, what in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
    ):
        if test(mode):
            return what
    return "not a regular file"


def _open_dir(parts: list[str], dir_fd: int | None) -> int:
    """Open the folders ``parts`` one by one below ``dir_fd``, never through a link."""
    fd = dir_fd
    opened: list[int] = []
    try:
        for part in parts:
            if part in ("", ".", "..") or "/" in part:
                raise UnsafeFile(errno.EINVAL, f"{part!r} is not a plain folder name")
            try:
                fd = os.open(part, _DIR, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafeFile(exc.errno, f"{part} is a link or not a folder") from None
                raise
            opened.append(fd)
        return os.dup(fd) if fd is not None else os.open(".", _DIR)
    finally:
        for f in opened:
            os.close(f)


def read_regular_file(path: str | Path, max_bytes: int, dir_fd: int | None = None) -> bytes:
    """The bytes of ``path`` if it is a regular file with one link, reached without following any link.

    ``path`` is relative to ``dir_fd`` when given. Raises :class:`UnsafeFile` (saying why)
    for a link, a hard link, anything that is not a regular file, or more than ``max_bytes``.

    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> _ = Path(tmp.name, "answers.ipynb").write_text("{}")
    >>> Path(tmp.name, "data.csv").symlink_to("/course/gradebook.db")
    >>> folder = os.open(tmp.name, os.O_RDONLY | os.O_DIRECTORY)
    >>> read_regular_file("answers.ipynb", 1024, dir_fd=folder)
    b'{}'
    >>> read_regular_file("data.csv", 1024, dir_fd=folder)
    Traceback (most recent call last):
    ...
    ftlab.grading.safefile.UnsafeFile: [Errno 22] data.csv is a symbolic link
    >>> os.close(folder); tmp.cleanup()
    """
    parts = Path(path).parts
    if not parts or Path(path).is_absolute():
        raise UnsafeFile(errno.EINVAL, f"{str(path)!r} is not a relative path")
    dir_fd_owned = _open_dir(list(parts[:-1]), dir_fd)
    name = parts[-1]
    try:
        info = os.lstat(name, dir_fd=dir_fd_owned)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(errno.EINVAL, f"{name} is {_describe(info.st_mode)}")
        fd = os.open(name, _NOFOLLOW, dir_fd=dir_fd_owned)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not isinstance(exc, UnsafeFile):  # swapped for a link after the lstat
            raise UnsafeFile(exc.errno, f"{name} is a symbolic link") from None
        raise
    finally:
        os.close(dir_fd_owned)
    try:
        info = os.fstat(fd)  # the file actually opened: a link swapped in after the lstat is caught here
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(errno.EINVAL, f"{name} is {_describe(info.st_mode)}")
        if info.st_nlink != 1:
            raise UnsafeFile(errno.EMLINK, f"{name} is a hard link ({info.st_nlink} names for one file)")
        if info.st_size > max_bytes:
            raise UnsafeFile(errno.EFBIG, f"{name} is {info.st_size:,} bytes, over the limit of {max_bytes:,}")
        # A regular file comes whole from one read, into one buffer (no chunks joined into a second copy).
        data = os.read(fd, info.st_size + 1)
        while len(data) <= max_bytes:
            more = os.read(fd, max_bytes + 1 - len(data))
            if not more:
                break
            data += more  # a short read: rare
        if len(data) > max_bytes:  # it grew while we read it
            raise UnsafeFile(errno.EFBIG, f"{name} is over the limit of {max_bytes:,} bytes")
        return data
    finally:
        os.close(fd)
