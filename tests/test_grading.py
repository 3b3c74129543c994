"""The grading engine's parts: the safe codec, forbidden functions, the sandbox, the grader's session.

The whole engine runs end to end, attack submissions included, in ``tests/test_nbgrader.py``.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from procs import command_lines
from torch import nn

import ftlab
from ftlab.cli import main as ftlab_main
from ftlab.grading import Forbidden, forbid, forbid_in_notebook, guards
from ftlab.grading.codec import DecodeError, ModuleState, apply_module_state, decode, encode
from ftlab.grading.driver import check_nbgrader_args
from ftlab.grading.protocol import Reply
from ftlab.grading.sandbox import INSTALL_HINT, Limits, Sandbox, check_available, make_channel_dir, sandbox_python
from ftlab.grading.session import GraderSession, bound_names

REPO_FILE = Path(__file__).resolve().parent / "PWNED"  # the course repository: invisible in the sandbox

# --------------------------------------------------------------------------- codec


def test_codec_round_trip_keeps_types():
    value = {
        "tuple": (1, 2.5, "x", None, True),
        3: [float("nan"), float("inf"), -float("inf")],
        (1, 2): {"set": {1, 2}},
        "tensor": torch.arange(6.0).reshape(2, 3),
        "grad": torch.ones(2, requires_grad=True),
        "array": np.arange(4, dtype=np.int16),
        "dtype": torch.bfloat16,
        "size": torch.Size([2, 3]),
        "scalar": np.float32(0.5),
    }
    got = decode(encode(value))["value"]
    assert got["tuple"] == (1, 2.5, "x", None, True)
    assert math.isnan(got[3][0]) and got[3][1:] == [math.inf, -math.inf]
    assert got[(1, 2)] == {"set": {1, 2}}
    assert torch.equal(got["tensor"], value["tensor"]) and got["grad"].requires_grad
    assert got["array"].dtype == np.int16 and list(got["array"]) == [0, 1, 2, 3]
    assert got["dtype"] is torch.bfloat16 and got["size"] == (2, 3) and got["scalar"] == 0.5


def test_codec_carries_module_state_and_parameter_identity():
    student, grader = (
        nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)),
        nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)),
    )
    student[0].weight.requires_grad_(False)
    student[1].running_mean += 1
    student.eval()
    refs = {id(p): (0, n) for n, p in student.named_parameters()}
    reply = decode(encode([{"params": [student[1].weight]}], param_refs=refs, extra={"m": student}), [grader])
    assert reply["value"][0]["params"][0] is grader[1].weight  # a reference to the grader's own parameter
    apply_module_state(grader, reply["m"])
    assert torch.equal(grader[1].running_mean, student[1].running_mean)
    assert not grader[0].weight.requires_grad and not grader.training
    with pytest.raises(ValueError, match="not the expected Linear"):
        apply_module_state(nn.Linear(3, 5, bias=False), reply["m"])


def test_codec_refuses_what_it_cannot_carry_safely():
    with pytest.raises(TypeError, match="cannot be sent"):
        encode(object())
    with pytest.raises(TypeError, match="cannot be sent"):
        encode(lambda: 1)
    buf = io.BytesIO()
    torch.save({"a": 1}, buf)  # a pickle is never read
    for payload in [buf.getvalue(), b"\x05\x00\x00\x00\x00\x00\x00\x00{bad}", b"\x02" + b"\x00" * 7 + b"{}junk"]:
        with pytest.raises(DecodeError):
            decode(payload)
    header = b'{"value": {"$eval": "1"}}'
    with pytest.raises(DecodeError, match="unknown tag"):
        decode(len(header).to_bytes(8, "little") + header)


# --------------------------------------------------------------------------- forbidden functions


def test_forbid_guards_every_reference_to_a_python_function():
    from ftlab.layers import count_parameters as saved_early

    net = nn.Linear(2, 2)
    with forbid("ftlab.count_parameters"):
        for call in (ftlab.count_parameters, saved_early, ftlab.layers.count_parameters):
            with pytest.raises(Forbidden, match="count_parameters"):
                call(net)
    assert saved_early(net).total == 6  # back to normal after the block


def test_forbid_guards_builtins_and_methods_and_nests():
    z = torch.tensor([[0.10, 0.04]])
    with forbid("torch.softmax", "torch.Tensor.softmax"):
        with forbid("torch.softmax"):
            pass
        with pytest.raises(Forbidden):
            torch.softmax(z, dim=-1)
        with pytest.raises(Forbidden):
            z.softmax(-1)
    assert torch.allclose(torch.softmax(z, -1), torch.tensor([[0.5150, 0.4850]]), atol=1e-4)
    with pytest.raises(ValueError, match="cannot forbid"):
        with forbid("torch.no_such_function"):
            pass


def test_forbid_in_notebook_and_in_the_grader():
    from ftlab.optim import unfreeze_schedule

    with guards._collecting():  # the grader only records what the checks forbid
        forbid_in_notebook("ftlab.unfreeze_schedule")
        with forbid("ftlab.layerwise_lrs"):
            assert guards.active_names() == ["ftlab.layerwise_lrs", "ftlab.unfreeze_schedule"]
            assert ftlab.layerwise_lrs(1.0, 0.5, 2) == [0.5, 1.0]  # the grader's own library is untouched
    keys = guards.activate(["ftlab.unfreeze_schedule"])
    try:
        with pytest.raises(Forbidden):
            unfreeze_schedule(3, 3)
    finally:
        guards.deactivate(keys)
    assert unfreeze_schedule(3, 3) == [1, 2, 3]


# --------------------------------------------------------------------------- the grader's session


def test_bound_names_are_what_a_solution_cell_defines():
    src = "import math\nfrom torch import nn as tnn\ndef f(x):\n    y = 1\n    return y\nA, (B, C) = 1, (2, 3)\nfor i in []:\n    pass\n[q for q in []]"
    assert bound_names(src) == {"math", "tnn", "f", "A", "B", "C", "i"}


def test_session_runs_checks_in_the_grader_with_the_students_values():
    kernel = {"answer": 41, "double": "callable", "net": None}
    calls = []

    def transport(request, modules):
        calls.append(request)
        if request.op == "get":
            if request.name == "double":
                return Reply(callable=True)
            return Reply(value=kernel[request.name]) if request.name in kernel else Reply(missing=True)
        modules[0].weight.data.fill_(2.0)  # what a student's function might do to an argument
        state = decode(encode(None, extra={"m": modules[0]}))["m"]
        return Reply(value=request.args[1] * 2, modules=[state])

    session = GraderSession(["answer = 41\ndef double(m, x):\n    return 2 * x"], ["import torch"], transport)
    try:
        session.run_setup("import torch\nexpected = 42\n")
        out = session.run_test(
            '"""doc"""\nlin = torch.nn.Linear(1, 1)\nwith forbid_me():\n    pass\nassert double(lin, 21) == expected\n'
            "assert float(lin.weight) == 2.0\nanswer + 1",
            "t",
        )
        assert out[-1]["output_type"] == "error" and out[-1]["ename"] == "NameError"  # forbid_me is not defined
        out = session.run_test(
            '"""doc"""\nlin = torch.nn.Linear(1, 1)\nassert double(lin, 21) == expected\nanswer + 1', "t"
        )
        assert out == [{"output_type": "execute_result", "data": {"text/plain": "42"}, "metadata": {}}]
        out = session.run_test('"""doc"""\nassert answer == expected, "hidden detail"', "t")
        assert out[0]["ename"] == "AssertionError"
        assert all("answer ==" not in line for line in out[0]["traceback"])  # no test source in the feedback
    finally:
        session.close()
    assert [c.op for c in calls if c.name == "double"] == [
        "get",
        "get",
        "call",
    ]  # the first check failed before calling


def test_session_takes_a_trained_model_as_state_into_the_graders_copy():
    student = nn.Linear(2, 1)
    nn.init.constant_(student.weight, 3.0)

    def transport(request, modules):
        return Reply.from_decoded(decode(encode(student)))

    session = GraderSession(["model.weight"], ["model = make()"], transport)
    try:
        session.namespace["make"] = lambda: nn.Linear(2, 1)
        session.run_setup("model = make()")
        own = session.namespace["model"]
        out = session.run_test('"""doc"""\nassert float(model.weight.sum()) == 6.0', "t")
        assert out == [] and session.namespace["model"] is own  # the grader's object, the student's weights
        assert isinstance(decode(encode(student))["value"], ModuleState)
    finally:
        session.close()


# --------------------------------------------------------------------------- options


def test_unknown_options_are_refused():
    check_nbgrader_args(["--Execute.timeout=30", "--SandboxedExecute.memory_mb=2048"])
    for bad in (["--no-such-option"], ["--Execute"], ["--Bogus.timeout=1"], ["--SandboxedExecute.nope=1"]):
        with pytest.raises(ValueError, match="unknown option"):
            check_nbgrader_args(bad)
    with pytest.raises(ValueError, match="must be a positive integer"):
        Limits(memory_mb=0)


def test_ftlab_grade_refuses_unknown_options_before_reading_the_course(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert ftlab_main(["grade", "ps1", "--frobnicate"]) == 2
    assert "unknown option '--frobnicate'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_ftlab_grade_forks_its_jobs_warm_unless_told_to_start_them_cold(monkeypatch, tmp_path):
    """`ftlab grade` grades with warm jobs by default; ``--cold-start`` starts each as a new interpreter."""
    from ftlab.grading import driver

    seen = []
    monkeypatch.setattr(driver, "grade_class", lambda *args, **kw: seen.append(kw["warm"]) or [])
    assert ftlab_main(["grade", "ps1"]) == 0 and ftlab_main(["grade", "ps1", "--cold-start"]) == 0
    assert seen == [True, False]
    monkeypatch.undo()

    class Made(Exception):
        """Raised by the stand-in runner: grade_class stops before it reads the course."""

    def local_runner(jobs, warm):
        raise Made(warm)

    monkeypatch.setattr(driver, "LocalRunner", local_runner)
    for warm in (True, False):
        with pytest.raises(Made) as made:
            driver.grade_class("ps1", root=tmp_path, warm=warm)
        assert made.value.args == (warm,)


# --------------------------------------------------------------------------- the sandbox itself


def _sandboxed(code: str, tmp_path, **limits) -> subprocess.CompletedProcess:
    problem = check_available()
    assert problem is None, f"the sandbox tests need bubblewrap: {problem}"
    box = Sandbox(Limits(**limits))
    channel = make_channel_dir(str(tmp_path))
    try:
        cmd = box.command([sandbox_python(), "-c", code], channel)  # the interpreter as the sandbox sees it
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        box.stop()


def test_install_hint_names_the_package():
    assert "apt-get install -y bubblewrap" in INSTALL_HINT and "--no-sandbox" in INSTALL_HINT


def test_sandbox_hides_the_host_and_blocks_the_network(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("instructor only")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    code = f"""
import os, socket
out = []
for path in [{str(secret)!r}, "/etc/shadow", os.path.expanduser("~root") + "/.bashrc"]:
    out.append(os.path.exists(path))
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2)
    out.append("connected")
except OSError:
    out.append("no-network")
for path in ["/usr/PWNED", "/PWNED", {str(REPO_FILE)!r}]:
    try:
        open(path, "w").write("x")
        out.append("wrote")
    except OSError:
        out.append("read-only")
open("/tmp/ok", "w").write("scratch")
out.append(os.getcwd())
print(out)
"""
    proc = _sandboxed(code, tmp_path)
    listener.close()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(
        [False, False, False, "no-network", "read-only", "read-only", "read-only", "/home/student/work"]
    )
    assert not REPO_FILE.exists()


def test_sandbox_limits_memory_file_size_and_processes(tmp_path):
    code = """
import os
try:
    bytearray(16 << 30)
    print("memory: allocated")
except MemoryError:
    print("memory: limited")
try:
    with open("/tmp/big", "wb") as fh:
        fh.write(b"x" * (40 << 20))
    print("file: written")
except OSError as exc:
    print("file: limited", exc.errno)
children = 0
for _ in range(300):
    try:
        if os.fork() == 0:
            os.execv("/bin/sleep", ["/bin/sleep", "60"])
        children += 1
    except OSError:
        break
print("children:", children)
"""
    proc = _sandboxed(code, tmp_path, memory_mb=2048, file_size_mb=32, processes=40)
    lines = proc.stdout.splitlines()
    assert lines[0] == "memory: limited" and lines[1].startswith("file: limited"), proc.stdout + proc.stderr
    children = int(lines[2].split()[-1])
    if os.geteuid() == 0:  # as root the process limit needs a cgroup; these machines have one
        assert children < 40, lines


def test_sandbox_leaves_no_process_behind(tmp_path):
    marker = f"ftlab-test-{uuid.uuid4().hex[:8]}"
    code = f"""
import subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", {marker!r}], start_new_session=True)
print("started")
"""
    proc = _sandboxed(code, tmp_path)
    assert proc.stdout.strip() == "started", proc.stderr
    assert [pid for pid, cmd in command_lines().items() if marker in cmd] == []


def test_ftlab_grade_refuses_to_run_unsandboxed_unless_asked(tmp_path, monkeypatch, capsys, request):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # a machine without bwrap
    check_available.cache_clear()  # the answer is cached per process: ask again, and forget this one after
    request.addfinalizer(check_available.cache_clear)
    assert ftlab_main(["grade", "ps1"]) == 2
    err = capsys.readouterr().err
    assert "bubblewrap (bwrap) is not installed" in err, err
    assert "apt-get install -y bubblewrap" in err and "--no-sandbox" in err
    assert ftlab_main(["grade", "ps1", "--no-sandbox"]) == 2
    err = capsys.readouterr().err
    assert "is not a course root" in err, err  # past the sandbox check
    assert list(tmp_path.iterdir()) == []


def _cell(source: str, **nbgrader) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    if nbgrader:
        cell.metadata["nbgrader"] = nbgrader
    return cell


@pytest.mark.slow  # a sandboxed kernel under nbgrader's executor
def test_only_the_instructors_tests_run_in_the_grader(tmp_path):
    """A student cell dressed up as a test cell runs in the sandbox; the real test runs in the grader."""
    from ftlab.grading.executor import SandboxedExecute

    assert check_available() is None, check_available()
    test = dict(grade=True, solution=False, locked=True, points=1)
    setup = _cell("import ftlab", grade_id="setup", locked=True, grade=False, solution=False)
    answer = _cell("def f():\n    return __name__", grade_id="f", solution=True, grade=False, locked=False)
    real = _cell('"""doc"""\nprint("test runs in", __name__, "answer from", f())', grade_id="t", **test)
    source = nbformat.v4.new_notebook(cells=[setup, answer, real])
    source.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(source, tmp_path / "toy.ipynb")
    planted = tmp_path / "planted"
    fake = _cell(f'print("fake runs in", __name__)\nopen({str(planted)!r}, "w")', grade_id="fake", **test)
    submission = nbformat.from_dict(json.loads(json.dumps(source)))
    submission.cells.append(fake)
    executor = SandboxedExecute(source_notebook=str(tmp_path / "toy.ipynb"), timeout=60)
    graded, _ = executor.preprocess(submission, {"nbgrader": {"notebook": "toy"}, "metadata": {"path": str(tmp_path)}})
    texts = [[o.get("text", o.get("ename")) for o in c.outputs] for c in graded.cells]
    assert texts[2] == ["test runs in __grader__ answer from __main__\n"], texts
    assert texts[3][0] == "fake runs in __main__\n" and texts[3][-1] == "FileNotFoundError", texts
    assert not planted.exists()


def test_the_environment_is_mounted_after_the_tmpfs_that_could_hide_it():
    """A checkout or venv under /tmp (CI clones there) must not vanish under the sandbox's own /tmp."""
    box = Sandbox()
    try:
        args = box.command([sys.executable, "-c", "1"], "/tmp/channel")
    finally:
        box.stop()
    first_tmpfs = args.index("--tmpfs")
    prefix = os.path.realpath(sys.prefix)
    binds = [i for i, a in enumerate(args) if a == "--ro-bind" and args[i + 1] == prefix]
    assert binds and binds[0] > first_tmpfs


def test_a_venv_reached_through_a_linked_folder_is_started_by_its_real_path(tmp_path, monkeypatch):
    """The sandbox mounts real paths only: a venv reached through a link (a git worktree's `.venv`) must be
    started by its real folder, or the kernel dies before its first reply."""
    from ftlab.grading import sandbox
    from ftlab.grading.link import SandboxKernelManager

    real_bin = os.path.realpath(os.path.dirname(sys.executable))
    (tmp_path / "checkout").mkdir()
    (tmp_path / "checkout" / ".venv").symlink_to(os.path.dirname(real_bin), target_is_directory=True)
    linked = str(tmp_path / "checkout" / ".venv" / "bin" / os.path.basename(sys.executable))
    monkeypatch.setattr(sys, "executable", linked)
    assert sandbox.sandbox_python() == os.path.join(real_bin, os.path.basename(linked))
    assert os.path.islink(sandbox.sandbox_python()) or os.path.isfile(sandbox.sandbox_python())
    box = Sandbox()
    try:
        assert box.environment()["PATH"].startswith(real_bin + ":")
        manager = SandboxKernelManager()
        manager.sandbox, manager.channel_dir, manager.request_dir = box, str(tmp_path), str(tmp_path)
        manager.reply_path, manager.connection_file = str(tmp_path / "r"), str(tmp_path / "k.json")
        argv = manager.format_kernel_cmd()
    finally:
        box.stop()
    inside = argv[next(i for i, a in enumerate(argv) if a.endswith("bwrap")) :]  # what runs in the sandbox
    assert sandbox.sandbox_python() in inside and linked not in inside, inside


# --------------------------------------------------------------------------- the kernel's start


def _start_kernel(folder: Path, *args: str) -> list[str]:
    """``ftlab.grading.kernel.main`` in a fresh interpreter started in ``folder``, up to launching ipykernel."""
    code = (
        "import sys\nfrom unittest import mock\nimport ftlab.grading.kernel as kernel\n"
        f"with mock.patch('ipykernel.kernelapp.launch_new_instance') as launch:\n    kernel.main({list(args)!r})\n"
        "import colorsys\n"
        "print(launch.called, 'torch' in sys.modules, 'ftlab.grading.codec' in sys.modules, colorsys.__file__)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=folder, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def test_a_sandboxed_kernel_loads_torch_before_the_first_cell(tmp_path):
    """What answers the grader's calls (torch.load, the codec) is loaded before ipykernel starts: a check's time
    limit is the student's, and importing torch on the first call would spend seconds of it."""
    launched, torch_loaded, codec_loaded, _ = _start_kernel(tmp_path, "-f", "kernel.json")
    assert (launched, torch_loaded, codec_loaded) == ("True", "True", "True")


def test_a_module_in_the_submission_shadows_nothing_the_kernel_imports(tmp_path):
    """A submission that brings ``colorsys.py`` (or ``torch.py``) gets it copied into the kernel's folder, but the
    guards and the kernel import the environment's modules: the folder leaves the import path first."""
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / "colorsys.py").write_text("raise SystemExit('the submission shadowed colorsys')\n")
    work = tmp_path / "work"
    work.mkdir()
    args = ["-f", "kernel.json", "--submission", str(tmp_path / "submission"), "--guard", "colorsys.rgb_to_hsv"]
    *_, colorsys_file = _start_kernel(work, *args)
    assert (work / "colorsys.py").is_file()  # copied: the notebook may read its own files
    assert Path(colorsys_file).parent != work and colorsys_file.endswith("colorsys.py")


# --------------------------------------------------------------------------- the executor against hostile kernels


def _grade_toy(tmp_path, answers: dict[str, str], tests: dict[str, str], setup: str = "import math", **traits):
    """Grade a toy notebook (setup, then each answer followed by its test); per cell, output texts/error names."""
    from ftlab.grading.executor import SandboxedExecute

    assert check_available() is None, check_available()
    cells = [_cell(setup, grade_id="setup", locked=True, grade=False, solution=False)]
    for (answer_id, answer), (test_id, test) in zip(answers.items(), tests.items(), strict=True):
        cells.append(_cell(answer, grade_id=answer_id, solution=True, grade=False, locked=False))
        cells.append(
            _cell(f'"""{test_id}"""\n{test}', grade_id=test_id, grade=True, solution=False, locked=True, points=1)
        )
    source = nbformat.v4.new_notebook(cells=cells)
    source.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(source, tmp_path / "toy.ipynb")
    executor = SandboxedExecute(source_notebook=str(tmp_path / "toy.ipynb"), **traits)
    resources = {"nbgrader": {"notebook": "toy"}, "metadata": {"path": str(tmp_path)}}
    graded, _ = executor.preprocess(copy.deepcopy(source), resources)
    return [[(o.get("ename") or o.get("text", "")).strip() for o in c.outputs] for c in graded.cells]


@pytest.mark.slow  # a sandboxed kernel under nbgrader's executor
def test_the_kernels_channel_folder_is_sealed_once_the_kernel_is_up(tmp_path):
    """The first kernel's too: nbclient starts it through a sync wrapper bound to its own coroutine."""
    plant = (
        "import os\nfrom ipykernel.connect import get_connection_file\ndef plant():\n"
        "    path = os.path.join(os.path.dirname(get_connection_file()), 'planted')\n"
        "    try:\n        open(path, 'w').close()\n    except OSError as exc:\n        return type(exc).__name__\n"
        "    return 'written'"
    )
    outputs = _grade_toy(tmp_path, {"plant": plant}, {"t_plant": "print(plant())"}, timeout=30)
    assert outputs[2] == ["PermissionError"], outputs


@pytest.mark.slow  # a sandboxed kernel under nbgrader's executor
def test_a_call_that_ignores_interrupts_costs_only_its_own_check(tmp_path):
    """The interrupted call never ends: its kernel is replaced -- the interrupt request's own idle status must not
    pass for the call's -- and the notebook's earlier cells run again there, so the later answers are graded."""
    earlier = "def h():\n    return 3"
    stubborn = (
        "import signal\ndef f():\n    signal.signal(signal.SIGINT, signal.SIG_IGN)\n    while True:\n        pass"
    )
    honest = "def g():\n    return math.sqrt(16) + h()"
    answers = {"h": earlier, "f": stubborn, "g": honest}
    tests = {"t_h": "assert h() == 3", "t_f": "f()", "t_g": "assert g() == 7.0"}
    outputs = _grade_toy(tmp_path, answers, tests, timeout=5)
    assert outputs[2] == [] and outputs[4] == ["CellTimeoutError"], outputs
    assert outputs[5:] == [[], []], outputs  # g, with the setup's `math` and the earlier h, passes its check


@pytest.mark.slow  # a sandboxed kernel under nbgrader's executor
def test_a_reply_over_the_cap_fails_its_check_without_being_read(tmp_path):
    """A kernel that forges a 96 MiB reply file: the grader reads at most the cap (16 MiB) and fails the check."""
    forged = (
        "import ftlab.grading.kernel as k\n"
        "from IPython.display import publish_display_data\n"
        "def forge(payload):\n"
        "    with open(k._reply_path, 'wb') as fh:\n"
        "        fh.write(b'\\xff' * (96 << 20))\n"
        "    publish_display_data({'application/x-ftlab-grading-reply': {'size': 1}})\n"
        "k._reply = forge\n"
        "def f():\n    return 1"
    )
    outputs = _grade_toy(tmp_path, {"f": forged}, {"t_f": "assert f() == 1"}, timeout=60, max_reply_mb=16, policy=False)
    assert outputs[2][-1] == "StudentError", outputs
    graded_text = json.dumps(outputs)
    assert "over the limit of 16,777,216" in graded_text or "StudentError" in graded_text


@pytest.mark.slow  # a sandboxed kernel under nbgrader's executor
def test_a_value_too_large_for_the_sandbox_is_an_error_not_a_crash(tmp_path):
    """The reply file is bounded by the sandbox's file-size limit: a 64 MiB tensor with an 8 MiB limit fails."""
    big = "import torch\ndef f():\n    return torch.zeros(16 << 20)"
    outputs = _grade_toy(tmp_path, {"f": big}, {"t_f": "f()"}, timeout=120, file_size_mb=8, max_reply_mb=8)
    assert outputs[2][-1] == "StudentError", outputs


@pytest.mark.slow  # a sandboxed kernel under nbgrader's executor
def test_the_policy_decides_in_the_grader(tmp_path):
    """A check whose forbidden function the answer uses is not run: 0, with the reason in its output."""
    setup = "import math\nfrom ftlab.grading import forbid"
    answers = {"f": "def f(x):\n    return math.sqrt(x)", "g": "def g(x):\n    return x ** 0.5"}
    tests = {
        "t_f": "with forbid('math.sqrt'):\n    assert f(9) == 3",
        "t_g": "with forbid('math.sqrt'):\n    assert g(9) == 3",
    }
    outputs = _grade_toy(tmp_path, answers, tests, setup=setup, timeout=60)
    assert outputs[2] == ["PolicyViolation"], outputs
    assert outputs[4] == [], outputs
