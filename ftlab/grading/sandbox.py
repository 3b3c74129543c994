"""A locked-down place for a student's kernel: bubblewrap namespaces, resource limits, nothing left behind.

What a sandboxed kernel sees and may do (Linux, ``bwrap`` from the Debian/Ubuntu
package ``bubblewrap``):

* **no network** (its own network namespace: only a loopback of its own), its own
  PID, IPC, UTS and user namespaces, no capabilities, no further user namespaces;
* **read-only**: the system (``/usr``, libraries) and the Python environment; of the
  course only the ``ftlab`` package itself. The course folder, ``solutions/``, the
  gradebook, other submissions and the instructor's home do not exist in it;
* **writable**: its home and working folder and ``/tmp``, size-limited tmpfs that
  vanish with it, and the kernel's socket folder until the kernel is up (then sealed);
* **limits**: address space and file size per process (rlimits), and, where a cgroup
  can be made (root, or a delegated cgroup), the memory and number of processes of
  the whole sandbox; wall time is the executor's per-cell and per-notebook budget;
  output size is capped by the executor;
* **nothing outlives it**: every process is in its PID namespace, killed with it.

Where bubblewrap is missing or cannot create namespaces, :func:`check_available`
says why and grading refuses to start unless the instructor passes ``--no-sandbox``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = [
    "Limits",
    "Sandbox",
    "SandboxUnavailable",
    "check_available",
    "INSTALL_HINT",
    "HOME",
    "WORKDIR",
    "sandbox_python",
    "make_channel_dir",
    "seal",
]

INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: `sudo apt-get install -y bubblewrap`; Fedora: `sudo dnf install bubblewrap`), "
    "or pass --no-sandbox to grade without isolation (every report row then says so)"
)
HOME = "/home/student"
WORKDIR = f"{HOME}/work"
SUBMISSION = f"{HOME}/submission"
MiB = 1 << 20


class SandboxUnavailable(RuntimeError):
    """Grading cannot isolate submissions on this machine.

    Raised with :func:`check_available`'s reason, which says how to fix it:

    >>> import textwrap
    >>> try:
    ...     raise SandboxUnavailable(f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}")
    ... except RuntimeError as exc:
    ...     print(textwrap.fill(str(exc), 100))
    bubblewrap (bwrap) is not installed: install bubblewrap (Debian/Ubuntu: `sudo apt-get install -y
    bubblewrap`; Fedora: `sudo dnf install bubblewrap`), or pass --no-sandbox to grade without isolation
    (every report row then says so)
    """


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed kernel.

    >>> Limits(memory_mb=4096)
    Limits(memory_mb=4096, processes=128, file_size_mb=256, open_files=512, disk_mb=512)
    >>> Limits(processes=0)
    Traceback (most recent call last):
    ...
    ValueError: sandbox limit processes must be a positive integer, got 0
    """

    memory_mb: int = 8192  # address space per process; with a cgroup also the memory of the whole sandbox
    processes: int = 128  # with a cgroup: processes and threads of the whole sandbox
    file_size_mb: int = 256  # largest file a process may write
    open_files: int = 512
    disk_mb: int = 512  # each of the home folder and /tmp (tmpfs)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"sandbox limit {f.name} must be a positive integer, got {value!r}")


@lru_cache(maxsize=1)
def check_available() -> str | None:
    """None when bubblewrap works here, else why not (with how to fix it)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}"
    probe = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "--", "true"]
    try:
        proc = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not run ({exc}): {INSTALL_HINT}"
    if proc.returncode != 0:
        return (
            f"bubblewrap cannot create namespaces here ({proc.stderr.strip()[:200]}); enable unprivileged user "
            f"namespaces (sysctl kernel.unprivileged_userns_clone=1) or run as root, or {INSTALL_HINT.split(', or ')[-1]}"
        )
    return None


# --------------------------------------------------------------------------- cgroups (optional, whole-sandbox limits)


def _cgroup_dirs() -> list[Path]:
    """Writable cgroup folders under which a per-sandbox group with pids and memory limits can be made."""
    root = Path("/sys/fs/cgroup")
    v1 = [root / "pids", root / "memory"]
    if all(p.is_dir() and os.access(p, os.W_OK) for p in v1):
        return v1
    if (root / "cgroup.controllers").exists():  # pure cgroup v2: our own group, if delegated to us
        try:
            line = next(x for x in Path("/proc/self/cgroup").read_text().splitlines() if x.startswith("0::"))
        except (OSError, StopIteration):
            return []
        own = root / line[3:].lstrip("/")
        controllers = (own / "cgroup.subtree_control").read_text().split() if own.exists() else []
        if {"pids", "memory"} <= set(controllers) and os.access(own, os.W_OK):
            return [own]
    return []


class _Cgroup:
    def __init__(self, limits: Limits):
        self.dirs: list[Path] = []
        for base in _cgroup_dirs():
            path = base / f"ftlab-{uuid.uuid4().hex[:12]}"
            try:
                path.mkdir()
                self.dirs.append(path)
                if (path / "pids.max").exists():
                    (path / "pids.max").write_text(str(limits.processes))
                if (path / "memory.limit_in_bytes").exists():
                    (path / "memory.limit_in_bytes").write_text(str(limits.memory_mb * MiB))
                if (path / "memory.max").exists():
                    (path / "memory.max").write_text(str(limits.memory_mb * MiB))
                    (path / "memory.swap.max").write_text("0")
            except OSError:
                continue

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def kill_all(self) -> None:
        for _ in range(50):
            pids = set()
            for d in self.dirs:
                try:
                    pids |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
                except OSError:
                    pass
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        for d in self.dirs:
            for _ in range(20):
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)


# --------------------------------------------------------------------------- the sandbox


def sandbox_python() -> str:
    """The environment's interpreter, named through the real path of its folder.

    The sandbox mounts real paths only, so a venv reached through a linked folder (a git worktree's
    ``.venv -> ../main/.venv``) does not exist inside it. Only the folder is resolved: a venv's ``python`` is
    itself a link to the base interpreter, and following it would leave the venv.

    >>> python = sandbox_python()
    >>> os.path.dirname(python) == os.path.realpath(os.path.dirname(sys.executable))
    True
    >>> os.path.basename(python) == os.path.basename(sys.executable)
    True
    """
    return os.path.join(os.path.realpath(os.path.dirname(sys.executable)), os.path.basename(sys.executable))


def _python_paths() -> list[str]:
    """Folders of the Python environment to mount read-only (never the course folder)."""
    import ftlab

    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths = set(prefixes)
    paths.add(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
    for entry in sys.path:
        real = os.path.realpath(entry) if entry else ""
        if real and os.path.isdir(real) and any(real == p or real.startswith(p + os.sep) for p in prefixes):
            paths.add(real)
    paths.add(os.path.dirname(os.path.realpath(ftlab.__file__)))  # an editable install lives in the course repo
    # keep only the outermost folders
    ordered = sorted(paths, key=len)
    kept: list[str] = []
    for p in ordered:
        if not any(p == k or p.startswith(k + os.sep) for k in kept):
            kept.append(p)
    return kept


_ETC = ["ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group", "fonts", "alternatives", "ssl"]
_PASS_ENV = ("FTLAB_", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_", "CUDA_VISIBLE_DEVICES", "PYTHONHASHSEED")


class Sandbox:
    """Builds the command that runs a kernel in bubblewrap; one :meth:`command` / :meth:`stop` per kernel.

    :meth:`command` also makes the kernel's cgroup (where one can be made), which the
    launcher joins before it starts bwrap; :meth:`stop` kills what is left in it.

    What the kernel's environment is (:meth:`command` passes it with ``--clearenv``):

    >>> env = Sandbox(Limits(memory_mb=4096)).environment()
    >>> env["HOME"], env["MPLBACKEND"], env["HF_HUB_OFFLINE"], env["FTLAB_SANDBOXED"]
    ('/home/student', 'Agg', '1', '1')
    """

    def __init__(self, limits: Limits | None = None, extra_ro_binds: tuple[str, ...] = ()):
        self.limits = limits or Limits()
        self.extra_ro_binds = tuple(extra_ro_binds)
        self._cgroup: _Cgroup | None = None

    def environment(self) -> dict[str, str]:
        bin_dir = os.path.dirname(sandbox_python())
        env = {
            "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": HOME,
            "USER": "student",
            "LOGNAME": "student",
            "LANG": "C.UTF-8",
            "MPLBACKEND": "Agg",
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TORCHINDUCTOR_CACHE_DIR": "/tmp/inductor",
            "FTLAB_SANDBOXED": "1",
        }
        env.update({k: v for k, v in os.environ.items() if k.startswith(_PASS_ENV)})
        # The kernel imports the grader's own ftlab (mounted by _python_paths), also when it is a checkout on
        # PYTHONPATH rather than the copy installed in the environment; only its ftlab/ folder is visible there.
        import ftlab

        env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.realpath(ftlab.__file__)))
        return env

    def command(
        self,
        argv: list[str],
        channel_dir: str,
        submission_dir: str | None = None,
        ro_binds: tuple[str, ...] = (),
        rw_files: tuple[str, ...] = (),
    ) -> list[str]:
        """``argv`` wrapped: launcher (limits, cgroup) -> bwrap (namespaces, mounts) -> argv.

        ``rw_files`` are single files the sandbox may write (the reply file): bound on their
        own, they cannot be replaced by a link, and the file-size limit bounds them.
        """
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxUnavailable(check_available() or "bwrap not found")
        lim = self.limits
        args = [bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
        args += ["--uid", "1000", "--gid", "1000", "--cap-drop", "ALL", "--disable-userns"]
        args += ["--ro-bind", "/usr", "/usr"]
        for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            path = Path("/") / top
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                args += ["--ro-bind", str(path), str(path)]
        for name in _ETC:
            if (Path("/etc") / name).exists():
                args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        args += ["--proc", "/proc", "--dev", "/dev"]
        for dev in sorted(Path("/dev").glob("nvidia*")):  # a GPU, when the machine has one
            args += ["--dev-bind", str(dev), str(dev)]
        disk = str(lim.disk_mb * MiB)
        args += ["--size", disk, "--tmpfs", "/tmp", "--size", disk, "--tmpfs", HOME, "--dir", WORKDIR]
        if submission_dir:
            args += ["--ro-bind", submission_dir, SUBMISSION]
        # After the tmpfs mounts, which would hide them (a checkout or venv under /tmp, as in CI).
        for path in [*_python_paths(), *self.extra_ro_binds, *ro_binds]:
            args += ["--ro-bind", path, path]
        for path in rw_files:
            args += ["--bind", path, path]
        args += ["--bind", channel_dir, channel_dir, "--remount-ro", "/", "--chdir", WORKDIR, "--clearenv"]
        for key, value in self.environment().items():
            args += ["--setenv", key, value]
        self._cgroup = _Cgroup(lim)
        limits = {
            "AS": lim.memory_mb * MiB,
            "FSIZE": lim.file_size_mb * MiB,
            "NOFILE": lim.open_files,
            "CORE": 0,
        }
        if not self._cgroup.dirs and os.geteuid() != 0:  # per-user process count: the best bound without a cgroup
            limits["NPROC"] = _user_processes() + lim.processes
        spec = json.dumps({"rlimits": limits, "cgroups": self._cgroup.procs_files})
        return [*LAUNCHER, spec, "--", *args, "--", *argv]

    def stop(self) -> None:
        """Kill whatever is left in the sandbox's cgroup (the PID namespace takes the rest with it)."""
        if self._cgroup is not None:
            self._cgroup.kill_all()
            self._cgroup = None


def _user_processes() -> int:
    uid = os.getuid()
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(list((entry / "task").iterdir()))
            except OSError:
                pass
    return count


def make_channel_dir(base: str | None = None) -> str:
    """A folder for the kernel's connection file and sockets, writable by the sandbox until :func:`seal`.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     channel = make_channel_dir(tmp)
    ...     oct(os.stat(channel).st_mode & 0o777), os.path.basename(channel).startswith("ftlab-kernel-")
    ('0o777', True)
    """
    path = tempfile.mkdtemp(prefix="ftlab-kernel-", dir=base)
    if os.geteuid() == 0:  # owned by nobody: once sealed, the sandbox (mapped to root) cannot write or chmod it
        os.chown(path, 65534, 65534)
    os.chmod(path, 0o777)
    return path


def seal(path: str) -> None:
    """No more files in the channel folder: the kernel has bound its sockets.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     channel = make_channel_dir(tmp)
    ...     seal(channel)
    ...     oct(os.stat(channel).st_mode & 0o777) in ("0o555", "0o500")  # (0o555 when the grader is root)
    True
    """
    os.chmod(path, 0o555 if os.geteuid() == 0 else 0o500)


# This file run by path, isolated (-I: no PYTHONPATH, no user site; -S: no site-packages): the launcher needs
# the standard library only. ``python -m ftlab.grading.sandbox`` would first import the ftlab package, and
# with it torch -- seconds of CPU per kernel start, for a process that only sets limits and execs bwrap.
LAUNCHER = (sys.executable, "-I", "-S", os.path.abspath(__file__))


def _launch(argv: list[str]) -> None:
    """``python -I -S .../sandbox.py SPEC -- bwrap ...``: join the cgroups, set rlimits, exec bwrap."""
    spec, rest = json.loads(argv[0]), argv[2:]
    for procs in spec.get("cgroups", []):
        with open(procs, "w") as fh:
            fh.write(str(os.getpid()))
    for name, value in spec.get("rlimits", {}).items():
        which = getattr(resource, f"RLIMIT_{name}")
        hard = resource.getrlimit(which)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))
    os.execv(rest[0], rest)


if __name__ == "__main__":
    _launch(sys.argv[1:])
