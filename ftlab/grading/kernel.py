"""The student's side of grading: runs inside the sandboxed kernel, answers the grader's requests.

``python -m ftlab.grading.kernel -f CONNECTION_FILE [--guard NAME ...] [--submission DIR]`` is the
kernel command the sandbox starts. Before any student code runs it copies the
submission's files into the working folder, installs the :mod:`~ftlab.grading.guards`
guards the instructor's notebook names (so a reference a student saves early is
guarded too), then becomes an ordinary IPython kernel.

The grader calls :func:`serve` with the path of a request it wrote (``torch.save``
of plain data and the test's inputs). The reply -- bytes made by
:func:`ftlab.grading.codec.encode`, JSON and safetensors, never a pickle -- goes into
the reply file the request names (:mod:`ftlab.grading.protocol`), announced by a small
display message of type :data:`MIME`. Everything here runs in the student's process, so a
student can break it; that only ever costs them their own answers, because the
grader decides every grade from the values alone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

from .protocol import MIME

__all__ = ["serve", "main"]


def _user_namespace() -> dict[str, Any]:
    return sys.modules["__main__"].__dict__


_reply_path: str | None = None  # the current request's reply file


def _reply(payload: bytes) -> None:
    from IPython.display import publish_display_data

    try:
        with open(_reply_path, "wb") as fh:  # type: ignore[arg-type]
            fh.write(payload)
        size = len(payload)
    except OSError as exc:  # over the sandbox's file-size limit: say so, in a reply that fits
        from .codec import encode

        with open(_reply_path, "wb") as fh:  # type: ignore[arg-type]
            fh.write(
                encode(
                    None,
                    extra={"error": ("GradingError", f"the answer is too large to send: {exc}", []), "internal": True},
                )
            )
        size = -1
    publish_display_data({MIME: {"size": size}})


def _error_reply(exc: BaseException, skip: int = 0, internal: bool = False) -> bytes:
    from .codec import encode

    frames = traceback.extract_tb(exc.__traceback__)[skip:]
    lines = [
        f'  File "{f.filename}", line {f.lineno}, in {f.name}' + (f"\n    {f.line}" if f.line else "") for f in frames
    ]
    return encode(None, extra={"error": (type(exc).__name__, str(exc)[:2000], lines[-20:]), "internal": internal})


def serve(request_path: str) -> None:
    """Answer one request: ``get`` a name from the notebook, or ``call`` a function the student wrote.

    Here outside a kernel: the notebook's namespace gets a function the student wrote,
    and the display message that announces the reply is caught.

    >>> import tempfile, torch
    >>> from unittest import mock
    >>> from ftlab.grading.codec import decode
    >>> from ftlab.grading.protocol import Request
    >>> tmp = tempfile.TemporaryDirectory()
    >>> request = Request("call", "double", args=(21,), reply_path=f"{tmp.name}/reply")
    >>> torch.save(request.to_dict(), f"{tmp.name}/request")  # what the grader writes
    >>> notebook = mock.patch.dict(_user_namespace(), double=lambda x: 2 * x)
    >>> with notebook, mock.patch("IPython.display.publish_display_data") as announce:
    ...     serve(f"{tmp.name}/request")
    >>> decode(Path(tmp.name, "reply").read_bytes())
    {'value': 42, 'modules': []}
    >>> announce.call_args.args[0]  # the reply's size, announced on the kernel's display channel
    {'application/x-ftlab-grading-reply': {'size': ...}}
    >>> tmp.cleanup()
    """
    import torch
    from torch import nn

    from . import guards
    from .codec import encode

    global _reply_path
    try:
        request = torch.load(request_path, weights_only=False)  # written by the grader, not by the student
        _reply_path = request["reply"]
        namespace = _user_namespace()
        name = request["name"]
        if name not in namespace:
            _reply(encode(None, extra={"missing": True}))
            return
        obj = namespace[name]
        if request["op"] == "get":
            if callable(obj) and not isinstance(obj, nn.Module | type):
                _reply(encode(None, extra={"callable": True}))
            else:
                _reply(encode(obj))
            return
        args, kwargs = request["args"], request["kwargs"]
        modules = [a for a in (*args, *kwargs.values()) if isinstance(a, nn.Module)]
        refs = {id(p): (i, n) for i, m in enumerate(modules) for n, p in m.named_parameters(remove_duplicate=False)}
    except Exception as exc:  # the grader's request could not be served (the student broke the namespace?)
        _reply(_error_reply(exc, internal=True))
        return
    try:
        keys = guards.activate(request.get("forbid", []))
    except Exception as exc:
        _reply(_error_reply(exc, internal=True))
        return
    try:
        result = obj(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 -- reported to the grader as the student's error
        guards.deactivate(keys)
        _reply(_error_reply(exc, skip=1))
        if isinstance(exc, KeyboardInterrupt):
            raise
        return
    guards.deactivate(keys)
    try:
        _reply(encode(result, param_refs=refs, extra={"modules": modules}))
    except Exception as exc:
        _reply(_error_reply(exc))


def _copy_submission(src: Path, dst: Path) -> None:
    """The submission's files (not its notebooks) into the working folder, which the kernel may change."""
    for item in src.iterdir():
        if item.suffix == ".ipynb" or item.name.startswith("."):
            continue
        target = dst / item.name
        if item.is_dir():
            shutil.copytree(item, target, symlinks=True, dirs_exist_ok=True)
        elif item.is_file():
            shutil.copy2(item, target)


def main(argv: list[str] | None = None) -> None:
    """The sandbox's kernel command: copy the submission's files, install the guards, become an IPython kernel.

    Arguments after ``--`` go to ipykernel. Without a connection file it stops at once:

    >>> import contextlib, io
    >>> with contextlib.redirect_stderr(io.StringIO()) as err:
    ...     try:
    ...         main(["--guard", "torch.softmax"])
    ...     except SystemExit as exc:
    ...         print(exc.code)
    2
    >>> err.getvalue().splitlines()[-1]
    '...: error: the following arguments are required: -f'
    """
    parser = argparse.ArgumentParser(description="the sandboxed grading kernel")
    parser.add_argument("-f", dest="connection_file", required=True)
    parser.add_argument("--guard", action="append", default=[], help="a function to guard before student code runs")
    parser.add_argument("--submission", help="folder whose files are copied into the working folder")
    argv = sys.argv[1:] if argv is None else argv
    ours, kernel_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    args = parser.parse_args(ours)
    # Modules come from the environment only: a .py file the submission brings or the notebook writes into its folder
    # is not importable (it could shadow a library the grader's policy trusts, or one a guard below imports).
    cwd = os.getcwd()
    sys.path[:] = [p for p in sys.path if p not in ("", ".", cwd)]
    if args.submission and Path(args.submission).is_dir():
        _copy_submission(Path(args.submission), Path.cwd())
    if args.guard:
        from . import guards

        for name in args.guard:
            try:
                guards.install(name)
            except Exception as exc:  # an instructor's typo must not stop the kernel; the check will fail loudly
                print(f"ftlab grading: cannot guard {name}: {exc}", file=sys.stderr)
    # What `serve` answers the grader's calls with (torch.load, the codec), loaded before the first cell: a check's
    # time limit is the student's, and the import (seconds on a busy machine) must not be charged to it.
    from . import codec  # noqa: F401

    os.environ.pop("JPY_PARENT_PID", None)  # in a PID namespace the parent poller would see PID 1 and exit
    from ipykernel.kernelapp import launch_new_instance

    sys.argv = [sys.argv[0], "-f", args.connection_file, "--IPKernelApp.ignore_cwd=True", *kernel_args]
    launch_new_instance()


if __name__ == "__main__":
    main()
