"""The grader's link to the student's kernel: starting it in the sandbox, and a check's calls into it.

* :class:`SandboxKernelManager` starts ``ftlab.grading.kernel`` over the ``ipc``
  transport, inside a :class:`~ftlab.grading.sandbox.Sandbox` when one is given, with a
  read-only request folder and one writable reply file (:mod:`.protocol`). Every socket
  the grader opens to it refuses messages over :data:`~.protocol.MAX_MESSAGE_BYTES`
  (``ZMQ_MAXMSGSIZE``), so no message the kernel forges can fill the grader's memory.
* :class:`KernelLink` sends a :class:`~.protocol.Request`, waits for *that* request to
  finish, and reads the reply file under a size cap. A kernel that does not come back
  from an interrupt -- still busy with the interrupted call, whatever other status
  messages it sends -- is replaced.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import zmq
import zmq.asyncio
from jupyter_client.manager import AsyncKernelManager
from nbclient.util import run_sync

from . import sandbox as sb
from .codec import DecodeError, decode
from .protocol import GRADING_ERROR, MAX_MESSAGE_BYTES, MIME, Reply, Request, read_reply
from .session import KernelDied, KernelTimeout, StudentError

__all__ = ["SandboxKernelManager", "KernelLink"]


def _bounded_context() -> zmq.asyncio.Context:
    """A zmq context whose sockets drop any peer that sends a message over MAX_MESSAGE_BYTES."""
    context = zmq.asyncio.Context()
    context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    return context


class SandboxKernelManager(AsyncKernelManager):
    """Starts ``ftlab.grading.kernel`` over ``ipc``, inside a sandbox when one is given.

    The kernel's command line without a sandbox (with one, :meth:`.Sandbox.command` wraps it),
    and the bound on every message its sockets accept:

    >>> km = SandboxKernelManager()
    >>> km.guards, km.connection_file = ["torch.softmax"], "/tmp/ftlab-kernel-1/kernel.json"
    >>> km.format_kernel_cmd()[1:]
    ['-m', 'ftlab.grading.kernel', '-f', '/tmp/ftlab-kernel-1/kernel.json', '--guard', 'torch.softmax', '--']
    >>> km.context.getsockopt(zmq.MAXMSGSIZE) == MAX_MESSAGE_BYTES
    True
    """

    sandbox: sb.Sandbox | None = None
    guards: list[str] = []
    submission_dir: str | None = None
    channel_dir: str | None = None
    request_dir: str | None = None
    reply_path: str | None = None

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("context", _bounded_context())
        super().__init__(**kwargs)

    def client(self, **kwargs: Any):
        kwargs.setdefault("context", self.context)  # the client's sockets are the ones that read the kernel
        return super().client(**kwargs)

    async def _async_pre_start_kernel(self, **kw):
        self.channel_dir = sb.make_channel_dir()
        self.request_dir = sb.make_channel_dir()
        self.reply_path = os.path.join(self.request_dir, "reply.bin")
        with open(self.reply_path, "wb"):
            pass
        os.chmod(self.reply_path, 0o666)
        os.chmod(self.request_dir, 0o755)  # the kernel reads requests and writes its one reply file, nothing else
        self.transport = "ipc"
        self.connection_file = os.path.join(self.channel_dir, "kernel.json")
        self.ip = os.path.join(self.channel_dir, "k")
        self.kernel_spec.interrupt_mode = "message"  # a signal would not cross the sandbox's session
        self.cache_ports = False
        return await super()._async_pre_start_kernel(**kw)

    def format_kernel_cmd(self, extra_arguments=None):
        python = sys.executable if self.sandbox is None else sb.sandbox_python()
        argv = [python, "-m", "ftlab.grading.kernel", "-f", self.connection_file]
        for name in self.guards:
            argv += ["--guard", name]
        if self.sandbox is None:
            return argv + ["--", *(extra_arguments or [])]
        argv += ["--submission", sb.SUBMISSION] if self.submission_dir else []
        argv += ["--", *(extra_arguments or [])]
        return self.sandbox.command(
            argv, self.channel_dir, self.submission_dir, ro_binds=(self.request_dir,), rw_files=(self.reply_path,)
        )

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        try:
            await super()._async_cleanup_resources(restart=restart)
        finally:
            if self.sandbox is not None:
                self.sandbox.stop()
            for d in (self.channel_dir, self.request_dir):
                if d and os.path.isdir(d):
                    os.chmod(d, 0o700)
                    shutil.rmtree(d, ignore_errors=True)
            self.channel_dir = self.request_dir = self.reply_path = None

    cleanup_resources = run_sync(_async_cleanup_resources)


class KernelLink:
    """A check's calls into the student's kernel, for an nbclient executor whose ``km``/``kc`` may be replaced.

    Here the kernel client is a stand-in that writes the reply file, announces it and goes idle:

    >>> import tempfile, types
    >>> from pathlib import Path
    >>> from ftlab.grading.codec import encode
    >>> from ftlab.grading.protocol import Request
    >>> tmp = tempfile.TemporaryDirectory()
    >>> km = types.SimpleNamespace(request_dir=tmp.name, reply_path=f"{tmp.name}/reply.bin")
    >>> said = [("display_data", {"data": {MIME: {}}}), ("status", {"execution_state": "idle"})]
    >>> class Client:
    ...     def execute(self, code, **options):
    ...         _ = Path(km.reply_path).write_bytes(encode(12))  # the kernel's answer: 12
    ...         return "call-1"
    ...     async def get_iopub_msg(self, timeout):
    ...         kind, content = said.pop(0)
    ...         return {"parent_header": {"msg_id": "call-1"}, "msg_type": kind, "content": content}
    >>> link = KernelLink(types.SimpleNamespace(km=km, kc=Client()), 1 << 20, print, fresh_kernel=None)
    >>> link.transport(Request("call", "count_params", args=(3,)), [], timeout=5)
    Reply(value=12, missing=False, callable=False, error=None, internal=False, modules=[])
    >>> tmp.cleanup()
    """

    def __init__(
        self,
        executor: Any,
        max_reply_bytes: int,
        keep_output: Callable[[str, str], None],
        fresh_kernel: Callable[[], Any],
    ):
        self.executor = executor  # .km and .kc: the current kernel (replaced after a crash)
        self.max_reply_bytes = max_reply_bytes
        self.keep_output = keep_output  # the student's prints during a call, for the test cell's output
        self.fresh_kernel = fresh_kernel  # async: replace the kernel
        self._count = 0

    def transport(self, request: Request, modules: list, timeout: float) -> Reply:
        """Send one request; its decoded reply (or an error the session reports as the notebook's)."""
        km = self.executor.km
        self._count += 1
        path = os.path.join(km.request_dir, f"request-{self._count}.pt")
        with open(km.reply_path, "wb"):  # empty: a stale reply is never read as this one's
            pass
        torch.save(dataclasses.replace(request, reply_path=km.reply_path).to_dict(), path)
        os.chmod(path, 0o444)
        try:
            run_sync(self._async_request)(path, timeout)
            return Reply.from_decoded(decode(read_reply(km.reply_path, self.max_reply_bytes), modules))
        except (ValueError, DecodeError) as exc:
            why = f"the reply from the notebook could not be read: {exc}"
            return Reply(error=(GRADING_ERROR, why, []), internal=True)
        finally:
            if os.path.exists(path):  # a replaced kernel took its request folder with it
                os.unlink(path)

    async def _async_request(self, path: str, timeout: float) -> None:
        kc, km = self.executor.kc, self.executor.km
        code = f"__import__('ftlab.grading.kernel', fromlist=['serve']).serve({path!r})"
        msg_id = kc.execute(code, silent=False, store_history=False, allow_stdin=False)
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                await self.give_up(msg_id, f"no answer within {timeout:.0f} s")
                raise KernelTimeout(f"the notebook's code did not return within {timeout:.0f} s")
            try:
                msg = await kc.get_iopub_msg(timeout=min(1.0, left))
            except Exception:  # queue.Empty: nothing yet
                if not await km.is_alive():
                    await self.give_up(msg_id, "the kernel died")
                    raise KernelDied("the kernel died while a check called into it") from None
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "display_data" and MIME in content.get("data", {}):
                announced = True
            elif kind == "stream":
                self.keep_output(content.get("name", "stdout"), str(content.get("text", "")))
            elif kind == "error":
                self.keep_output("stderr", f"{content.get('ename')}: {content.get('evalue')}\n")
            elif kind == "status" and content.get("execution_state") == "idle":
                break
        if not announced:  # the notebook changed how its kernel runs code (input transformers, patched IPython)
            raise StudentError("the notebook did not answer the check: its kernel no longer runs the grader's requests")

    async def give_up(self, msg_id: str, why: str) -> None:
        """Interrupt the call; a kernel whose call does not end (its own ``idle``) within 5 s is replaced."""
        self.executor.log.warning("A check's call into the notebook failed (%s)", why)
        kc, km = self.executor.kc, self.executor.km
        try:
            if await km.is_alive():
                await km.interrupt_kernel()
                end = time.monotonic() + 5
                while time.monotonic() < end:
                    try:
                        msg = await kc.get_iopub_msg(timeout=0.5)
                    except Exception:
                        continue
                    # Only the interrupted request's own idle counts: the interrupt request gets an idle of its
                    # own even when the call ignores SIGINT and runs on.
                    if (
                        msg["msg_type"] == "status"
                        and msg["content"].get("execution_state") == "idle"
                        and msg.get("parent_header", {}).get("msg_id") == msg_id
                    ):
                        return
        except Exception:
            pass
        await self.fresh_kernel()
